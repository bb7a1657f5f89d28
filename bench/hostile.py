#!/usr/bin/env python3
"""Issue 15's figures: how fast hostile input is refused, that vm.blacklist boots stay
linear, and what the argument checks cost the hot path (``python bench/hostile.py
[--base SRC]``; prints markdown for bench/RESULTS.md).

* refusal: the issue's heavy attacks, each timed in this process (best of 3);
* blacklist: a lazy boot of firecracker-1g with N vm.blacklist addresses, N = 10 k, 20 k and
  100 k, this tree and (with ``--base``, not at 100 k) another tree, each in its own process;
* pair: order-0 alloc_pages + free_pages through the Kernel API on a 1 GiB machine with one
  page held (no split or merge),
  median of 101 batches of 2,000 pairs, this tree and ``--base`` alternately in child
  processes (5 rounds), so the ratio is measured side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import physmem
what = sys.argv[2]
if what == "pair":
    k = physmem.boot("firecracker-1g", lazy=False)
    k.alloc_pages(0, "default", 0)      # its buddy waits on the order-0 queue: no splits
    ap, fp = k.alloc_pages, k.free_pages
    def batch(n=2000):
        t = time.perf_counter()
        for _ in range(n):
            fp(ap(0, "default", 0), 0)
        return (time.perf_counter() - t) / n
    batch()
    print(json.dumps(statistics.median(batch() for _ in range(101))))
else:
    n = int(what)
    bl = "vm.blacklist=" + ",".join(hex(0x2000000 + i * 4096) for i in range(n))
    k = physmem.kernel_for("firecracker-1g")
    t = time.perf_counter()
    k.boot(lazy=True, tunables=[bl])
    print(json.dumps(time.perf_counter() - t))
"""


def child(src: Path, what: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), what], capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def refusals() -> None:
    sys.path.insert(0, str(HERE.parent / "src"))
    sys.path.insert(0, str(HERE.parent))
    from tests.catalogue import CATALOGUE, run_case

    import physmem
    from physmem.machine import machine_from_toml
    from physmem.sweep import load_sweep

    def eager_16t() -> None:
        k = physmem.Kernel.from_machine(machine_from_toml(
            "ram = [[0x100000, 0x100000000000, 0]]\n"))
        k.boot(lazy=False)

    big_toml = "ram = [" + "[0, 4096, 0], " * 1_000_000 + "]"
    sweep_1m = ('machines = ["firecracker-128m"]\npolicies = ["lazy"]\nworkloads = ["churn"]\n'
                f"seeds = [{', '.join(map(str, range(1_000_000)))}]\nops = 10\n")
    bomb = next(c for c in CATALOGUE if "zip bomb" in c.name)
    attacks = [("eager boot of a 16 TiB machine", eager_16t),
               ("TOML machine with 10^6 ram ranges (20 MB)", lambda: machine_from_toml(big_toml)),
               ("sweep of 10^6 runs (7 MB)", lambda: load_sweep(sweep_1m)),
               ("snapshot with a 64 MiB array in 0.1 MB (zip bomb)", lambda: run_case(bomb))]
    print("| attack | time to a one-line refusal (best of 3) |\n|---|---|")
    for name, fn in attacks:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            with contextlib.suppress(physmem.PhysmemError):
                fn()
            best = min(best, time.perf_counter() - t)
        print(f"| {name} | {best * 1e3:.1f} ms |")
    t = time.perf_counter()
    for c in CATALOGUE:
        run_case(c)
    print(f"\nThe whole bad-input catalogue: {len(CATALOGUE)} attacks in "
          f"{time.perf_counter() - t:.1f} s (one pass).\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path, help="another tree's src/ (e.g. main's)")
    a = ap.parse_args()
    mine = HERE.parent / "src"
    print("## hostile input (issue 15): `python bench/hostile.py"
          + (" --base SRC`" if a.base else "`") + "\n")
    refusals()
    trees = [("this tree", mine)] + ([("base", a.base)] if a.base else [])
    print("| vm.blacklist addresses (lazy boot, firecracker-1g) | "
          + " | ".join(n for n, _ in trees) + " |\n|---|" + "---|" * len(trees))
    for n in ("10000", "20000", "100000"):
        # the base is skipped at 100 k: quadratic there, ~40 s
        print(f"| {int(n):,} | " + " | ".join(
            f"{child(src, n):.2f} s" if name == "this tree" or n != "100000" else "(skipped)"
            for name, src in trees) + " |")
    if a.base:
        rounds: dict[str, list[float]] = {"this tree": [], "base": []}
        for _ in range(5):
            for name, src in trees:
                rounds[name].append(child(src, "pair"))
        m, b = (statistics.median(rounds[k]) for k in ("this tree", "base"))
        print(f"\nKernel API order-0 alloc_pages + free_pages pair, 1 GiB eager, median of 5 "
              f"rounds (each a median of 101 × 2,000 pairs), alternating: this tree "
              f"{m * 1e9:.0f} ns, base {b * 1e9:.0f} ns, **ratio {m / b:.3f}**.")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
