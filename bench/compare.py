#!/usr/bin/env python3
"""Issue 13's figures side by side: this tree against another physmem tree (e.g. main),
alternating the two, in CPU time, so that a machine shared with other work gives ratios
that mean something.

    git archive main | tar -x -C /tmp/base      # any other tree
    python bench/compare.py /tmp/base [ROUNDS] [ORACLE]

Each figure is measured in a fresh interpreter per tree and round (``process_time``, min
over repeats inside a round, then min over rounds).  The in-process replay is measured
twice: with the queue core compiled from the first call (``Kernel(jit=True)``, what the
issue's target was set on) and with the default Kernel (the JIT's tiers: its first 20,000
fast-path calls run as plain Python).  ORACLE, if given, is the C oracle
(/work/shared/freebsd-oracle) run on the same trace: its CPU time (os.times of the child),
best of 5, taken in every round as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import gzip, io, json, resource, sys, time
tree = sys.argv[1]
sys.path.insert(0, tree + "/src")
import physmem
from physmem.trace import Replayer
pt = time.process_time
out = {}
what = sys.argv[2]
data = sys.argv[3]
if what == "replay":
    lines = gzip.decompress(open(data + "/bench_fc1g_lazy_100k.trace.gz", "rb").read()
                            ).decode().splitlines(True)
    want = gzip.decompress(open(data + "/bench_fc1g_lazy_100k.expected.gz", "rb").read()
                           ).decode()
    from physmem.kernel import Kernel
    try:                    # compiled from the first call (a tree before the JIT's tiers: as is)
        Kernel("amd64", jit=True)
        compiled = lambda arch: Kernel(arch, jit=True)
    except TypeError:
        compiled = Kernel
    same = True
    for key, factory in (("replay_s", compiled), ("replay_auto_s", Kernel)):
        best = 9e9
        for _ in range(3):
            o = io.StringIO()
            t = pt()
            Replayer(kernel_factory=factory).replay(lines, o)
            best = min(best, pt() - t)
            same = same and o.getvalue() == want
        out[key] = best
    out["replay_same"] = same
elif what == "pair":
    import importlib.util
    spec = importlib.util.spec_from_file_location("br", tree + "/bench/run.py")
    br = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(br)
    n = 2000
    for mirror in (False, True):
        for state in ("A", "B"):
            k = br.fragmented_1g()
            if state == "B":
                k.alloc_pages(0, "default", 0)
            if mirror:
                k.attach_extent_mirror()
            ap, fp = k.alloc_pages, k.free_pages
            best = 9e9
            for _ in range(41):
                t = pt()
                for _ in range(n):
                    fp(ap(0, "default", 0), 0)
                best = min(best, (pt() - t) / n)
            out[f"pair_{state}{'_mirror' if mirror else ''}_us"] = best * 1e6
            if not mirror:
                phys, pool = k.phys, k.param.freepool_default
                pa, pf = phys.alloc_pages, phys.free_pages
                best = 9e9
                for _ in range(41):
                    t = pt()
                    for _ in range(n):
                        pf(pa(0, pool, 0), 0)
                    best = min(best, (pt() - t) / n)
                out[f"pair_{state}_vm_phys_us"] = best * 1e6
elif what == "boot1t":
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    k = physmem.kernel_for("server-1t")
    t = pt()
    k.boot(lazy=True)
    out["boot1t_lazy_ms"] = (pt() - t) * 1e3
    out["boot1t_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["base_rss_mib"] = base / 1024
elif what == "touch":
    for lazy in (False, True):
        best = 9e9
        for _ in range(5):
            k = physmem.boot("firecracker-1g", lazy=lazy)
            t = pt()
            while k.alloc_pages(0, "default", 9) is not None:
                pass
            best = min(best, pt() - t)
        out[f"touch_{'lazy' if lazy else 'eager'}_ms"] = best * 1e3
print(json.dumps(out))
'''


def child(tree: str, what: str) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, tree, what, str(HERE / "data")],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def cli_time(tree: str, trace: Path) -> float:
    """CPU time of `physmem replay` (interpreter start-up included) run from ``tree``, with
    its bytecode written as an installed package has it (this environment sets
    PYTHONDONTWRITEBYTECODE=1, under which every process compiles physmem's sources)."""
    import hashlib
    import tempfile
    tag = hashlib.sha1(str(Path(tree).resolve()).encode()).hexdigest()[:12]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(Path(tree) / "src"),
               PYTHONPYCACHEPREFIX=str(Path(tempfile.gettempdir()) / f"physmem-pyc-{tag}"))
    before = os.times()
    subprocess.run([sys.executable, "-c", "import sys; from physmem.cli import main; main()",
                    "replay", str(trace)], env=env, stdout=subprocess.DEVNULL, check=False)
    after = os.times()
    return (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)


def main() -> int:
    other = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    oracle = sys.argv[3] if len(sys.argv) > 3 else None
    import gzip
    trace = Path(os.environ.get("TMPDIR", "/tmp")) / "physmem-compare.trace"
    trace.write_bytes(gzip.decompress((HERE / "data" / "bench_fc1g_lazy_100k.trace.gz")
                                      .read_bytes()))
    trees = {"before": other, "after": str(HERE.parent)}
    best: dict[str, dict[str, float]] = {k: {} for k in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            res: dict = {}
            for what in ("replay", "pair", "boot1t", "touch"):
                res.update(child(tree, what))
            res["cli_s"] = min(cli_time(tree, trace) for _ in range(2))
            for k, v in res.items():
                if isinstance(v, bool):
                    best[name][k] = best[name].get(k, True) and v
                else:
                    best[name][k] = min(best[name].get(k, 9e9), v)
        if oracle:
            o = 9e9
            for _ in range(5):
                before = os.times()
                subprocess.run([oracle, str(trace)], stdout=subprocess.DEVNULL, check=False)
                after = os.times()
                o = min(o, after.children_user - before.children_user +
                        after.children_system - before.children_system)
            best["after"]["oracle_s"] = min(best["after"].get("oracle_s", 9e9), o)
    nops = 100_007
    b, a = best["before"], best["after"]
    print(f"# issue 13 side by side, {time.strftime('%Y-%m-%d %H:%M')}, {rounds} rounds; "
          f"command: `python bench/compare.py {' '.join(sys.argv[1:])}`\n")
    print("| figure | before | after | after / before |")
    print("|---|---|---|---|")

    def row(label: str, key: str, fmt: str, scale: float = 1.0) -> None:
        x, y = b[key] * scale, a[key] * scale
        print(f"| {label} | {fmt.format(x)} | {fmt.format(y)} | {y / x:.2f} |")
    print(f"| replay, in process, ops/s (CPU time; compiled from the first call) | "
          f"{nops / b['replay_s'] / 1e3:.0f} k | {nops / a['replay_s'] / 1e3:.0f} k | "
          f"{b['replay_s'] / a['replay_s']:.2f}× faster |")
    print(f"| the same, default Kernel (the JIT's tiers: the first 20,000 calls plain) | "
          f"{nops / b['replay_auto_s'] / 1e3:.0f} k | {nops / a['replay_auto_s'] / 1e3:.0f} k | "
          f"{b['replay_auto_s'] / a['replay_auto_s']:.2f}× faster |")
    print(f"| replay output identical to the oracle's | {b['replay_same']} | "
          f"{a['replay_same']} | |")
    print(f"| `physmem replay`, start-up included, ops/s | {nops / b['cli_s'] / 1e3:.0f} k | "
          f"{nops / a['cli_s'] / 1e3:.0f} k | {b['cli_s'] / a['cli_s']:.2f}× faster |")
    for st in ("A", "B"):
        row(f"order-0 pair, state {st}, vm_phys (µs)", f"pair_{st}_vm_phys_us", "{:.2f}")
        row(f"order-0 pair, state {st}, Kernel API (µs)", f"pair_{st}_us", "{:.2f}")
        row(f"order-0 pair, state {st}, Kernel API + extent mirror (µs)",
            f"pair_{st}_mirror_us", "{:.2f}")
        print(f"| extent mirror overhead, state {st} | "
              f"{b[f'pair_{st}_mirror_us'] / b[f'pair_{st}_us']:.2f}× | "
              f"{a[f'pair_{st}_mirror_us'] / a[f'pair_{st}_us']:.2f}× | |")
    row("lazy boot of server-1t (ms)", "boot1t_lazy_ms", "{:.1f}")
    row("peak RSS after that boot (MiB)", "boot1t_rss_mib", "{:.0f}")
    row("first touch, eager boot: 1 GiB in 2 MiB blocks (ms)", "touch_eager_ms", "{:.2f}")
    row("first touch, lazy boot (ms)", "touch_lazy_ms", "{:.2f}")
    print(f"| first touch lazy / eager | {b['touch_lazy_ms'] / b['touch_eager_ms']:.2f} | "
          f"{a['touch_lazy_ms'] / a['touch_eager_ms']:.2f} | |")
    if "oracle_s" in a:
        o = a["oracle_s"]
        print(f"\nC oracle on the same trace (CPU time, best of 5 per round): {o * 1e3:.0f} ms, "
              f"{nops / o / 1e3:.0f} k ops/s; physmem in process / oracle: before "
              f"{b['replay_s'] / o:.1f}×, after {a['replay_s'] / o:.1f}× (default Kernel: "
              f"{b['replay_auto_s'] / o:.1f}×, {a['replay_auto_s'] / o:.1f}×).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
