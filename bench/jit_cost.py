#!/usr/bin/env python3
"""Issue 13: what the compiled queue core costs outside the hot loops.

* cold start: a fresh process with an empty numba cache -- ``import physmem``, a lazy boot
  of firecracker-1g, then the first alloc_pages + free_pages -- and the same in a second
  process that finds the cache.  With ``jit=True`` the first pair imports numba and
  compiles (or loads) the fused paths; with the default tier it runs as plain Python, and
  the pause comes at the 20,000th fast-path call: the child then runs 30,000 pairs and
  reports the time of those over 5 ms (the switch: numba imported, the fused paths
  compiled or loaded);
* memory: peak RSS (the child's VmHWM) of lazy and eager boots, before and after the first
  compiled call, for server-1t and firecracker-1g.

    python bench/jit_cost.py [SRC] [RUNS]    # SRC: another tree's src/ (e.g. main's)

Each figure is one fresh interpreter; times are CPU seconds of the child (process_time,
every thread) and, in brackets, wall seconds; the best of RUNS (default 3), each cold run
with an empty cache of its own.  This environment sets PYTHONDONTWRITEBYTECODE=1, so
every import would compile physmem's sources (~0.08 s); the children write bytecode under
a temporary PYTHONPYCACHEPREFIX (warmed first), as an installed package has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import json, sys, time
cpu, wall = time.process_time, time.perf_counter
c0, w0 = cpu(), wall()
import physmem
c1, w1 = cpu(), wall()
jit = {"on": True, "tier": None}[sys.argv[3]]
k = physmem.boot(sys.argv[1], lazy=sys.argv[2] == "lazy", jit=jit)
c2, w2 = cpu(), wall()
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
boot_hwm = hwm()
numba_at_boot = "numba" in sys.modules
k.free_pages(k.alloc_pages(0, "default", 0), 0)
c3, w3 = cpu(), wall()
out = {"import": [c1 - c0, w1 - w0], "boot": [c2 - c1, w2 - w1],
       "first_pair": [c3 - c2, w3 - w2], "total": [c3 - c0, w3 - w0],
       "boot_hwm_mib": boot_hwm, "numba_at_boot": numba_at_boot,
       "numba_after": "numba" in sys.modules}
if jit is None and sys.argv[4] == "1":     # run past the tier: pairs over 5 ms are the switch
    pause, n = [0.0, 0.0], 0
    while not k.phys.jitted or n < 30000:
        a, b = cpu(), wall()
        k.free_pages(k.alloc_pages(0, "default", 0), 0)
        d = [cpu() - a, wall() - b]
        if d[1] > 0.005:
            pause = [pause[0] + d[0], pause[1] + d[1]]
        n += 1
    out["tier_pause"] = pause
    out["tier_numba"] = "numba" in sys.modules
out["hwm_mib"] = hwm()
print(json.dumps(out))
'''


def child(machine: str, lazy: bool, mode: str, env: dict, tier: bool = False) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, machine, "lazy" if lazy else "eager",
                        mode, "1" if tier else "0"],
                       capture_output=True, text=True, check=True, env=env)
    return json.loads(r.stdout)


def fmt(r: dict, key: str) -> str:
    cpu, wall = r[key]
    return f"{cpu:.2f} s ({wall:.2f})"


def main() -> int:
    src = sys.argv[1] if len(sys.argv) > 1 else str(HERE.parent / "src")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"# bench/jit_cost.py, tree {src}: CPU s (wall s)\n")
    with tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items()
                if k not in ("PHYSMEM_JIT", "NUMBA_DISABLE_JIT", "PHYSMEM_JIT_TIER",
                             "PYTHONDONTWRITEBYTECODE")}
        base.update(PYTHONPATH=src, PYTHONPYCACHEPREFIX=str(Path(tmp) / "pyc"))
        subprocess.run([sys.executable, "-c", "import physmem.cli"], env=base, check=True)
        print("| start | JIT | import | first alloc+free pair | import + boot + pair | "
              "the switch at the tier (pairs over 5 ms) |")
        print("|---|---|---|---|---|---|")
        for mode in ("on", "tier"):
            colds = []
            for i in range(runs):           # each cold run with an empty cache of its own
                env = dict(base, NUMBA_CACHE_DIR=str(Path(tmp) / f"numba-{mode}-{i}"))
                colds.append(child("firecracker-1g", True, mode, env, tier=True))
            cold = min(colds, key=lambda r: r["total"][0] + r.get("tier_pause", [0])[0])
            warm = min((child("firecracker-1g", True, mode, env, tier=True)
                        for _ in range(runs)), key=lambda r: r["total"][0])
            for name, r in (("cold (empty numba cache)", cold),
                            ("second process (cache)", warm)):
                pause = fmt(r, "tier_pause") if "tier_pause" in r else "—"
                print(f"| {name} | {'jit=True' if mode == 'on' else 'default tier'} | "
                      f"{fmt(r, 'import')} | {fmt(r, 'first_pair')} | {fmt(r, 'total')} | "
                      f"{pause} |")
        print("\n| machine, boot | peak RSS after boot | numba imported by boot | "
              "peak RSS after the first pair (jit=True) |")
        print("|---|---|---|---|")
        env = dict(base, NUMBA_CACHE_DIR=str(Path(tmp) / "numba-on-0"))
        for machine in ("firecracker-1g", "server-1t"):
            for lazy in (True, False):
                r = child(machine, lazy, "on", env)
                print(f"| {machine} {'lazy' if lazy else 'eager'} | {r['boot_hwm_mib']} MiB "
                      f"| {r['numba_at_boot']} | {r['hwm_mib']} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
