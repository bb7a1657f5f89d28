#!/usr/bin/env python3
"""Issue 12 part 3's figures for one physmem source tree, in CPU time (the machine is
shared: CPU time is steadier than wall time), for side-by-side runs:

    python bench/pagelayer_pressure.py [--src DIR] [--fill GIB] [--machine NAME]

In one child process with PYTHONPATH=DIR: the vm_page_alloc + vm_page_free pair on
firecracker-1g on both page sources (minimum of 15 batches of 2,000), then the page-cache
fill of --fill GiB on --machine (pages per CPU second), then the same fill again with
the share of its CPU time spent in vm_page_alloc (``_alloc``: its inner part, which
vm_page_grab calls, where a tree has one; including the cache recycling it does), the
active and inactive scans and the pagedaemon's cache -> free step (wrapped functions: the
pages per second come from the first, unwrapped fill), and its counters (deactivated, cached,
freed by the daemon, laundered; free, cache, inactive, active at the end: trees that
model the same kernel must agree).  Prints one JSON line.
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.dfly_workloads import run
out = {}
for source in ("dragonfly", "buddy"):
    vm = DragonflyVm("firecracker-1g", source=source)
    o = vm.object_create()
    alloc, free = vm.vm_page_alloc, vm.vm_page_free
    def pair(n=2000):
        t = time.process_time()
        for i in range(n):
            free(alloc(o, i, VM_ALLOC_NORMAL))
        return (time.process_time() - t) / n
    pair()
    out[f"pair_{source}_us"] = round(min(pair() for _ in range(15)) * 1e6, 2)
t = time.process_time()
res, vm = run("pagecache", sys.argv[2], nbytes=int(float(sys.argv[1]) * (1 << 30)))
cpu = time.process_time() - t
out["fill_pages_per_cpu_s"] = round(res.pages / cpu)
out["fill_passes"] = res.pageout_passes
out["fill_counts"] = [res.deactivated, res.cached, res.freed_by_daemon, res.laundered,
                      res.free, res.cache, res.inactive, res.active]
# the shares, in a second fill with the functions wrapped (the wrappers' own cost is
# left out of the pages/s above)
acc = {}
def timed(name):
    f = getattr(DragonflyVm, name)
    def w(self, *a, **k):
        t = time.process_time()
        try:
            return f(self, *a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + time.process_time() - t
    setattr(DragonflyVm, name, w)
for name in ("vm_page_alloc", "_alloc", "_scan_active", "_scan_inactive",
             "_cache_to_free"):
    if hasattr(DragonflyVm, name):
        timed(name)
t = time.process_time()
res, vm = run("pagecache", sys.argv[2], nbytes=int(float(sys.argv[1]) * (1 << 30)))
cpu = time.process_time() - t
out["fill_share"] = {k: round(v / cpu, 2) for k, v in acc.items()}
print(json.dumps(out))
"""


def main() -> int:
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=here)
    ap.add_argument("--fill", type=float, default=4.0)
    ap.add_argument("--machine", default="firecracker-1g")
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=a.src)
    r = subprocess.run([sys.executable, "-c", CHILD, str(a.fill), a.machine], env=env,
                       capture_output=True, text=True, timeout=1800)
    if r.returncode:
        print(json.dumps({"src": a.src, "error": r.stderr.strip()[-300:]}))
        return 1
    print(json.dumps({"src": a.src, **json.loads(r.stdout)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
