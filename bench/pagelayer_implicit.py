#!/usr/bin/env python3
"""Issue 12: the page layer's implicit blocks -- what boot leaves implicit, and whether
the state is the same as a tree that links every page.

    python bench/pagelayer_implicit.py layout [SPEC ...]
    python bench/pagelayer_implicit.py digests --base /tmp/main12a/src [SPEC ...]
    python bench/pagelayer_implicit.py finalize [SPEC ...]

A SPEC is ``MACHINE`` or ``MACHINE@SxCxT`` (sockets x cores x threads); MACHINE is a
built-in machine or ``dN-Gg``: G GiB from 1 MiB up, in N equal NUMA domains.

``layout`` boots each machine in a fresh child (this tree) and prints: boot time, the
child's peak RSS, the 1024-page blocks left implicit (of them, the ones flagged MOVED:
holding pages vm_numa_organize_finalize moved) (their pages' ``pc``/``queue``/
``next``/``prev`` given by the boot colour rule, see ``Queues``), the ones materialised
and the ones holding no page (holes, the carved top).

``digests`` runs, for each SPEC (``MACHINE`` or ``MACHINE@SxCxT``), the same boot and
workload in this tree and in ``--base`` (each in a fresh child) and prints the SHA-256 of
the whole page-layer state (every page field of every page -- implicit blocks as the rule
gives them --, queues, counters, objects) after boot, after a page-cache fill with
pagedaemon passes, and after anonymous churn: a base tree without implicit blocks must give
the same digests.

``finalize`` checks the finalize's program (the moved pages' fields by arithmetic, see
``FinalizeMoves``) against the kernel's loop transcribed page by page, in one child per
SPEC: every field of every page (implicit blocks by rule, read in numpy), the queue
heads, tails and counts; it prints the moves, the MOVED blocks and both boot times.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
SRC = os.path.join(REPO, "src")

MACHINE = r"""
from physmem.dragonfly.vm_page import CpuTopology
from physmem.machine import Machine, RamRange

def spec(s):
    name, _, cpus = s.partition("@")
    kw = {"cpus": CpuTopology(*map(int, cpus.split("x")))} if cpus else {}
    if name.startswith("d") and name.endswith("g") and "-" in name:
        n, g = int(name[1:name.index("-")]), int(name[name.index("-") + 1:-1])
        step = (g << 30) // n
        name = Machine(name, [RamRange(max(0x100000, i * step), (i + 1) * step, i)
                              for i in range(n)], page_array="none")
    return name, kw
"""

CHILD_LAYOUT = MACHINE + r"""
import json, resource, sys, time
import numpy as np
from physmem.dragonfly.vm_page import DragonflyVm
machine, kw = spec(sys.argv[1])
t = time.perf_counter()
vm = DragonflyVm(machine, **kw)
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
                  "moved_flag": int(np.count_nonzero(imp & 0x80)),
                  "materialised": int(len(imp) - np.count_nonzero(imp)) - empty,
                  "no_pages": empty, "free_pages": vm.vmstats.v_free_count}))
"""

CHILD_DIGESTS = MACHINE + r"""
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

machine, kw = spec(sys.argv[1])
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

CHILD_FINALIZE = MACHINE + r"""
import json, sys, time
import numpy as np
from physmem.dragonfly.vm_page import DragonflyVm
from physmem.dragonfly.vm_page_boot import BootMixin
machine, kw = spec(sys.argv[1])
t = time.perf_counter()
bulk = DragonflyVm(machine, **kw)
t_bulk = time.perf_counter() - t
BootMixin.bulk_finalize = False
t = time.perf_counter()
loop = DragonflyVm(machine, **kw)
t_loop = time.perf_counter() - t
a, b = bulk.queues.fields(), loop.queues.fields()
free = np.flatnonzero(b["queue"])
differ = [n for n in a if not np.array_equal(a[n], b[n])]
qa, qb = bulk.queues, loop.queues
differ += [n for n in ("head", "tail", "lcnt") if getattr(qa, n) != getattr(qb, n)]
m = qa.moves
print(json.dumps({"spec": sys.argv[1], "identical": not differ, "differ": differ,
                  "free_pages": len(free), "moves": m.total if m is not None else None,
                  "implicit": int(np.count_nonzero(qa.implicit_arr)),
                  "moved_flag": int(np.count_nonzero(qa.implicit_arr & 0x80)),
                  "boot_bulk_s": round(t_bulk, 3), "boot_loop_s": round(t_loop, 3)}))
"""

FINALIZE_SPECS = [f"{m}@{s}x2x1" for m in ("firecracker-1g", "d1-16g", "d2-16g", "d4-16g")
                  for s in (1, 2, 3, 4)] + ["pc-6g@4x2x1", "server-96g-2dom@4x2x1"]


def child(code: str, src: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    r = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("layout", "digests", "finalize"))
    ap.add_argument("specs", nargs="*")
    ap.add_argument("--base", help="the other tree's src directory (digests)")
    ap.add_argument("--src", default=SRC, help="this tree's src directory")
    a = ap.parse_intermixed_args()
    if a.mode == "layout":
        for m in a.specs or ["firecracker-1g", "pc-6g", "server-96g-2dom", "server-1t",
                             "server-96g-2dom@4x2x1", "server-1t@4x2x1"]:
            print(json.dumps(child(CHILD_LAYOUT, a.src, m)), flush=True)
        return
    if a.mode == "finalize":
        specs = a.specs or FINALIZE_SPECS
        same = 0
        for m in specs:
            r = child(CHILD_FINALIZE, a.src, m)
            same += r["identical"]
            print(json.dumps(r), flush=True)
        print(f"{same} of {len(specs)} identical")
        return
    if not a.base:
        ap.error("digests needs --base")
    specs = a.specs or ["firecracker-1g", "pc-6g@1x2x1", "pc-6g@2x4x2", "pc-6g@4x2x1",
                        "server-96g-2dom", "server-96g-2dom@4x2x1", "d2-16g@3x2x1",
                        "d2-16g@4x2x1"]
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
