#!/usr/bin/env python3
"""Issue 12 part 3: what the page layer's compiled fast paths (dragonfly/vm_page_core.py)
cost to get: a fresh process boots firecracker-1g and makes one call of each (a
vm_page_alloc + vm_page_free pair, a page-cache read, and a fill past RAM that runs the
colour search and the active scan), with numba's cache empty (``cold``: a new
NUMBA_CACHE_DIR) and then filled (``cached``), printing the CPU seconds of the boot, of
the first calls, and the child's peak RSS:

    python bench/pagelayer_jit.py [--src DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, time
t0 = time.process_time()
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.dfly_workloads import pagecache_fill
try:
    vm = DragonflyVm("firecracker-128m", jit=True)
except TypeError:                     # a tree before the compiled paths
    vm = DragonflyVm("firecracker-128m")
t1 = time.process_time()
o = vm.object_create("vnode")
vm.vm_page_free(vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL))
vm.pagecache_read(o, 1)
t2 = time.process_time()
pagecache_fill(vm, 200 << 20)
t3 = time.process_time()
print(json.dumps({"import_boot_s": round(t1 - t0, 2), "first_pair_read_s": round(t2 - t1, 2),
                  "fill_200m_s": round(t3 - t2, 2),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10}))
"""


def main() -> int:
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=here)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        for name in ("cold", "cached"):
            env = dict(os.environ, PYTHONPATH=a.src, NUMBA_CACHE_DIR=cache)
            r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                               text=True, timeout=900)
            if r.returncode:
                print(json.dumps({"run": name, "error": r.stderr.strip()[-300:]}))
                return 1
            print(json.dumps({"run": name, **json.loads(r.stdout)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
