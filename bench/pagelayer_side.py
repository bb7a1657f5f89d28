#!/usr/bin/env python3
"""Issue 12's page-layer figures for one physmem source tree, for side-by-side runs.

    python bench/pagelayer_side.py [--src DIR] [--fill GIB] [--machines M,M,...]

Each boot runs in a fresh child process (time of DragonflyVm(machine), min of 3, and the
child's peak RSS); the vm_page_alloc + vm_page_free pair is the median of 31 batches of
2,000 on firecracker-1g; the page-cache fill reads --fill GiB on firecracker-1g (pages/s).
--src points at another checkout's src/ (e.g. an export of main) so that before and after
run on the same machine in one session.
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from physmem.dragonfly.vm_page import DragonflyVm
machine = sys.argv[1]
best = None
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    vm = DragonflyVm(machine)
    dt = time.perf_counter() - t
    best = dt if best is None else min(best, dt)
    del vm
print(json.dumps({"boot_ms": best * 1e3,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PAIR = r"""
import json, statistics, time, sys
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.dfly_workloads import run
out = {}
for source in ("dragonfly", "buddy"):
    vm = DragonflyVm("firecracker-1g", source=source)
    o = vm.object_create()
    alloc, free = vm.vm_page_alloc, vm.vm_page_free
    def pair(n=2000):
        t = time.perf_counter()
        for i in range(n):
            free(alloc(o, i, VM_ALLOC_NORMAL))
        return (time.perf_counter() - t) / n
    pair()
    out[f"pair_{source}_us"] = statistics.median(pair() for _ in range(31)) * 1e6
fill = float(sys.argv[1])
if fill:
    res, vm = run("pagecache", "firecracker-1g", source="dragonfly", nbytes=int(fill * (1 << 30)))
    out["fill_pages_s"] = res.pages_per_s
print(json.dumps(out))
"""


def child(src: str, code: str, *args: str, timeout: int = 900) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    r = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:120]}
    return json.loads(r.stdout)


def main() -> int:
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=here)
    ap.add_argument("--fill", type=float, default=1.0)
    ap.add_argument("--machines", default="firecracker-1g,pc-6g,server-96g-2dom")
    a = ap.parse_args()
    row = {"src": a.src}
    for m in a.machines.split(","):
        row[m] = child(a.src, CHILD, m, "3" if m != "server-1t" else "1")
    row.update(child(a.src, PAIR, str(a.fill)))
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
