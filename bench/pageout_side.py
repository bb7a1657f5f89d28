#!/usr/bin/env python3
"""Issue 12 part 3 (wt12s): the pagedaemon's scans, side by side with another tree, in
CPU time (the machine is shared: CPU time is steadier than wall time).

    python bench/pageout_side.py fill [--base DIR] [--runs N] [--fill GIB] [--plain]
    python bench/pageout_side.py compile

``fill``: the page-cache fill of --fill GiB on firecracker-1g (``physmem.dfly_workloads``,
the pagedaemon running synchronously), this tree and --base alternated --runs times, each
run in a fresh child: pages per CPU second, the pagedaemon's passes and counters (trees
that model the same kernel must agree), the CPU shares of vm_page_alloc, the active and
inactive scans and cache -> free, and the scans' CPU per page visited (visits = the
scans' v_pdpages: every inactive entry stepped to, every active page past its busy and
wired checks).  ``--plain`` runs the children with PHYSMEM_JIT=0 (no compiled code).

``compile``: the CPU time to compile the pagedaemon's and the statistics' bodies
(vm_pageout_core.py's scans, cache -> free and visits; vm_meter.py's count and rollup),
in a child with an empty numba cache directory (cold) and then in a second child with
that directory (cached: loaded).  Prints JSON lines.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

FILL = r"""
import json, sys, time
from physmem.dragonfly.vm_page import DragonflyVm
from physmem.dfly_workloads import run
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
for name in ("vm_page_alloc", "_scan_active", "_scan_inactive", "_cache_to_free"):
    timed(name)
t = time.process_time()
res, vm = run("pagecache", "firecracker-1g", nbytes=int(float(sys.argv[1]) * (1 << 30)))
cpu = time.process_time() - t
pd = sum(c.cnt["v_pdpages"] for c in vm.cpu)
scans = acc.get("_scan_active", 0) + acc.get("_scan_inactive", 0)
st = vm.pageout_stats
print(json.dumps({
    "pages_per_cpu_s": round(res.pages / cpu), "cpu_s": round(cpu, 2),
    "passes": res.pageout_passes,
    "counts": [st.deactivated, st.cached, st.freed, st.laundered, st.reactivated, pd],
    "share": {k: round(v / cpu, 3) for k, v in acc.items()},
    "scan_us_per_visit": round(scans / max(pd, 1) * 1e6, 3)}))
"""

COMPILE = r"""
import json, time
from physmem import jit
from physmem.dragonfly import vm_meter, vm_pageout_core
out = {}
# the pagedaemon's and the statistics' bodies, compiled (or loaded from numba's cache)
# one after the other in a fresh process: each figure includes the callees not compiled
# before it (the visits in scan_active, free_toq and the queue operations in
# cache_to_free, ...); numba's import is counted apart
t = time.process_time()
jit._numba()
out["numba_import"] = round(time.process_time() - t, 3)
for name, lazy in (("vmstats_count", vm_meter.vmstats_count),
                   ("vmstats_rollup", vm_meter.vmstats_rollup),
                   ("scan_active", vm_pageout_core.scan_active),
                   ("scan_inactive", vm_pageout_core.scan_inactive),
                   ("cache_to_free", vm_pageout_core.cache_to_free),
                   ("active_visit", vm_pageout_core.active_visit),
                   ("inactive_visit", vm_pageout_core.inactive_visit)):
    t = time.process_time()
    lazy.compiled()
    out[name] = round(time.process_time() - t, 3)
out["total"] = round(sum(v for k, v in out.items() if k != "numba_import"), 3)
print(json.dumps(out))
"""


def child(src: str, script: str, args: list[str], env: dict | None = None) -> dict:
    e = dict(os.environ, PYTHONPATH=src, **(env or {}))
    r = subprocess.run([sys.executable, "-c", script, *args], env=e, capture_output=True,
                       text=True, timeout=3600)
    if r.returncode:
        return {"error": r.stderr.strip()[-400:]}
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("fill", "compile"))
    ap.add_argument("--base")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--fill", type=float, default=4.0)
    ap.add_argument("--plain", action="store_true")
    a = ap.parse_args()
    if a.what == "compile":
        with tempfile.TemporaryDirectory() as d:
            env = {"NUMBA_CACHE_DIR": d}
            print(json.dumps({"cold_s": child(HERE, COMPILE, [], env)}))
            print(json.dumps({"cached_s": child(HERE, COMPILE, [], env)}))
        return 0
    env = {"PHYSMEM_JIT": "0"} if a.plain else None
    trees = [("this", HERE)] + ([("base", a.base)] if a.base else [])
    for r in range(a.runs):
        for name, src in trees:
            out = child(src, FILL, [str(a.fill)], env)
            print(json.dumps({"tree": name, "run": r, "plain": a.plain, **out}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
