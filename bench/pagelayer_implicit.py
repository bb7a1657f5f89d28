#!/usr/bin/env python3
"""Issue 12: the page layer's implicit blocks -- what boot leaves implicit, and whether
the state is the same as a tree that links every page.

    python bench/pagelayer_implicit.py layout [MACHINE ...]
    python bench/pagelayer_implicit.py digests --base /tmp/main12a/src [SPEC ...]

``layout`` boots each machine in a fresh child (this tree) and prints: boot time, the
child's peak RSS, the 1024-page blocks left implicit (their pages' ``pc``/``queue``/
``next``/``prev`` given by the boot colour rule, see ``Queues``), the ones materialised
and the ones holding no page (holes, the carved top).

``digests`` runs, for each SPEC (``MACHINE`` or ``MACHINE@SxCxT``), the same boot and
workload in this tree and in ``--base`` (each in a fresh child) and prints the SHA-256 of
the whole page-layer state (every page field of every page -- implicit blocks as the rule
gives them --, queues, counters, objects) after boot, after a page-cache fill with
pagedaemon passes, and after anonymous churn: a base tree without implicit blocks must give
the same digests.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
SRC = os.path.join(REPO, "src")

CHILD_LAYOUT = r"""
import json, resource, sys, time
import numpy as np
from physmem.dragonfly.vm_page import DragonflyVm
t = time.perf_counter()
vm = DragonflyVm(sys.argv[1])
boot = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10     # before the count
imp = vm.queues.implicit_arr
# blocks with no page at all (holes, the carved top): nothing to write there
hole = np.ones(len(imp) << 10, dtype=np.uint8)
off = vm.queues.off
hole[off:off + vm.pages.npages] = np.frombuffer(vm.unmanaged, dtype=np.uint8)
empty = int(np.count_nonzero(hole.reshape(-1, 1024).all(axis=1)))
print(json.dumps({"machine": sys.argv[1], "boot_s": round(boot, 3),
                  "peak_rss_mib": rss,
                  "blocks": len(imp), "implicit": int(np.count_nonzero(imp)),
                  "materialised": int(len(imp) - np.count_nonzero(imp)) - empty,
                  "no_pages": empty, "free_pages": vm.vmstats.v_free_count}))
"""

CHILD_DIGESTS = r"""
import json, sys
sys.path.insert(0, sys.argv[2])                 # this repository: tests.dfly_util.digest
from physmem.dfly_workloads import anon_churn, pagecache_fill
from physmem.dragonfly.vm_page import CpuTopology, DragonflyVm
from physmem.dragonfly.vm_page_array import Queues
from tests.dfly_util import digest as full_digest
if not hasattr(Queues, "fields"):               # a tree without implicit blocks
    Queues.fields = lambda self: self.pages.arrays

def digest(vm):
    return full_digest(vm)[:16]

machine, _, cpus = sys.argv[1].partition("@")
kw = {"cpus": CpuTopology(*map(int, cpus.split("x")))} if cpus else {}
vm = DragonflyVm(machine, **kw)
out = {"boot": digest(vm)}
mem = vm.vmstats.v_page_count << 12
pagecache_fill(vm, min(mem * 5 // 4, 1536 << 20), files=4, seed=3)
vm.vm_pageout(force=True)
out["fill"] = digest(vm)
anon_churn(vm, 3000, seed=5)
vm.vm_pageout(force=True)
out["churn"] = digest(vm)
print(json.dumps(out))
"""


def child(code: str, src: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    r = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("layout", "digests"))
    ap.add_argument("specs", nargs="*")
    ap.add_argument("--base", help="the other tree's src directory (digests)")
    ap.add_argument("--src", default=SRC, help="this tree's src directory")
    a = ap.parse_intermixed_args()
    if a.mode == "layout":
        for m in a.specs or ["firecracker-1g", "pc-6g", "server-96g-2dom", "server-1t"]:
            print(json.dumps(child(CHILD_LAYOUT, a.src, m)), flush=True)
        return
    if not a.base:
        ap.error("digests needs --base")
    specs = a.specs or ["firecracker-1g", "pc-6g@1x2x1", "pc-6g@2x4x2", "pc-6g@4x2x1",
                        "server-96g-2dom"]
    same = 0
    for spec in specs:
        mine = child(CHILD_DIGESTS, a.src, spec, REPO)
        base = child(CHILD_DIGESTS, a.base, spec, REPO)
        ok = mine == base
        same += ok
        print(json.dumps({"spec": spec, "identical": ok, "this": mine, "base": base}),
              flush=True)
    print(f"{same} of {len(specs)} identical")


if __name__ == "__main__":
    main()
