#!/usr/bin/env python3
"""Issue 13, third round: what the compiled queue core costs outside the hot loops.

* cold start: a fresh process with an empty numba cache -- ``import physmem``, a lazy boot
  of firecracker-1g, then the first alloc_pages + free_pages (numba imported, the fused
  paths compiled) -- and the same in a second process that finds the cache;
* memory: peak RSS (the child's VmHWM) of lazy and eager boots, before and after the first
  compiled call, for server-1t and firecracker-1g.

    python bench/jit_cost.py [SRC]      # SRC: another tree's src/ to compare (e.g. main)

Each figure is one fresh interpreter (wall time; best of 3 for the timings).
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
t0 = time.perf_counter()
import physmem
t1 = time.perf_counter()
k = physmem.boot(sys.argv[1], lazy=sys.argv[2] == "lazy")
t2 = time.perf_counter()
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
boot_hwm = hwm()
numba_at_boot = "numba" in sys.modules
t3 = time.perf_counter()
k.free_pages(k.alloc_pages(0, "default", 0), 0)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "boot_s": t2 - t1, "first_pair_s": t4 - t3,
                  "total_s": t4 - t0, "boot_hwm_mib": boot_hwm, "hwm_mib": hwm(),
                  "numba_at_boot": numba_at_boot, "numba_after": "numba" in sys.modules}))
'''


def child(machine: str, lazy: bool, env: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, machine, "lazy" if lazy else "eager"],
                       capture_output=True, text=True, check=True, env=env)
    return json.loads(r.stdout)


def main() -> int:
    src = sys.argv[1] if len(sys.argv) > 1 else str(HERE.parent / "src")
    base = dict(os.environ, PYTHONPATH=src)
    print(f"# bench/jit_cost.py, tree {src}\n")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(base, NUMBA_CACHE_DIR=cache)
        cold = child("firecracker-1g", True, env)
        warm = min((child("firecracker-1g", True, env) for _ in range(3)),
                   key=lambda r: r["total_s"])
    print("| start | import | lazy boot | first alloc+free pair | total |")
    print("|---|---|---|---|---|")
    for name, r in (("cold (empty numba cache)", cold), ("second process (cache)", warm)):
        print(f"| {name} | {r['import_s']:.2f} s | {r['boot_s'] * 1e3:.0f} ms | "
              f"{r['first_pair_s']:.2f} s | {r['total_s']:.2f} s |")
    print("\n| machine, boot | peak RSS after boot | numba imported by boot | "
          "peak RSS after the first pair |")
    print("|---|---|---|---|")
    for machine in ("firecracker-1g", "server-1t"):
        for lazy in (True, False):
            r = child(machine, lazy, base)
            print(f"| {machine} {'lazy' if lazy else 'eager'} | {r['boot_hwm_mib']} MiB | "
                  f"{r['numba_at_boot']} | {r['hwm_mib']} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
