#!/usr/bin/env python3
"""Issue 13's first-touch figure side by side: this tree against another physmem tree.

    git archive main | tar -x -C /tmp/base      # any other tree
    python bench/first_touch.py /tmp/base [ROUNDS]

Allocate all of a 1 GiB machine in 2 MiB blocks (order 9) right after a lazy boot and
right after an eager one, with the queue core compiled (``jit=True``) and as plain Python
(``jit=False``, what a Kernel runs for its first 20,000 calls).  Each figure is the
minimum CPU time (``process_time``) over 11 boots in a fresh interpreter per tree, mode
and round, the eager and lazy boots alternating; the trees alternate too.  "lazy + sync"
adds what the first touch leaves for later: ``VmPhys.sync_all()`` (the page array's lazy
runs brought up to their nodes), which the next reader or Python path would pay.

Also per tree: the lazy boot of server-1t (CPU ms beyond start-up, peak RSS), and, on a
64 GiB machine, the CPU time per 16 MiB chunk taken whole (order 12) and the minor page
faults per chunk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import gc, json, resource, sys, time
tree, what, mode = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, tree + "/src")
import physmem
pt = time.process_time
jit = mode == "jit"
out = {}
def flt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
if what == "touch":
    def once(lazy, sync, machine="firecracker-1g", order=9):
        gc.collect()        # the kernel before goes now (its memory is reused alike)
        k = physmem.boot(machine, lazy=lazy, jit=jit)
        a = k.alloc_pages
        f0 = flt()
        t = pt()
        while a(0, "default", order) is not None:
            pass
        if sync and hasattr(k.phys, "sync_all"):
            k.phys.sync_all()
        return pt() - t, flt() - f0
    once(True, False)       # compile, warm up
    once(False, False)
    # The three cases alternate, so that the machine's load hits them alike.
    best = {"eager": 9e9, "lazy": 9e9, "lazy_sync": 9e9}
    for _ in range(11):
        for key, lazy, sync in (("eager", False, False), ("lazy", True, False),
                                ("lazy_sync", True, True)):
            best[key] = min(best[key], once(lazy, sync)[0])
    for key, v in best.items():
        out[f"{key}_us"] = v * 1e6
    nch = 64 * 1024 // 16
    for lazy in (False, True):
        t, f = min(once(lazy, True, "firecracker-64g", 12) for _ in range(3))
        out[f"chunk_{'lazy' if lazy else 'eager'}_us"] = t * 1e6 / nch
        out[f"chunk_{'lazy' if lazy else 'eager'}_faults"] = f / nch
elif what == "boot1t":
    k = physmem.kernel_for("server-1t")
    t = pt()
    k.boot(lazy=True)
    out["boot1t_lazy_ms"] = (pt() - t) * 1e3
    out["boot1t_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
'''


def child(tree: str, what: str, mode: str = "jit") -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, tree, what, mode],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main() -> int:
    other = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    trees = {"before": other, "after": str(HERE.parent)}
    runs: dict[str, list[dict]] = {f"{t} {m}": [] for t in trees for m in ("jit", "plain")}
    boots: dict[str, list[dict]] = {t: [] for t in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            for mode in ("jit", "plain"):
                runs[f"{name} {mode}"].append(child(tree, "touch", mode))
            boots[name].append(child(tree, "boot1t"))
    print("| tree, queue core | eager | lazy | lazy + sync | lazy / eager | (lazy + sync) / "
          "eager | per 16 MiB chunk, eager / lazy | faults per chunk, eager / lazy |")
    print("|---|---|---|---|---|---|---|---|")
    for key, rs in runs.items():
        def rng(f, fmt="{:.0f}", rs=rs):
            vals = [f(r) for r in rs]
            return fmt.format(min(vals)) + "-" + fmt.format(max(vals))
        print(f"| {key} | {rng(lambda r: r['eager_us'])} µs | {rng(lambda r: r['lazy_us'])} µs | "
              f"{rng(lambda r: r['lazy_sync_us'])} µs | "
              f"{rng(lambda r: r['lazy_us'] / r['eager_us'], '{:.2f}')} | "
              f"{rng(lambda r: r['lazy_sync_us'] / r['eager_us'], '{:.2f}')} | "
              f"{rng(lambda r: r['chunk_eager_us'], '{:.2f}')} / "
              f"{rng(lambda r: r['chunk_lazy_us'], '{:.2f}')} µs | "
              f"{rng(lambda r: r['chunk_eager_faults'], '{:.1f}')} / "
              f"{rng(lambda r: r['chunk_lazy_faults'], '{:.1f}')} |")
    print()
    print("| tree | lazy boot of server-1t, CPU | peak RSS |")
    print("|---|---|---|")
    for name, bs in boots.items():
        ms = [b["boot1t_lazy_ms"] for b in bs]
        rss = [b["boot1t_rss_mib"] for b in bs]
        print(f"| {name} | {min(ms):.1f}-{max(ms):.1f} ms | {min(rss):.0f}-{max(rss):.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
