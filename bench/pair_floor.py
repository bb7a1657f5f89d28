#!/usr/bin/env python3
"""The order-0 pair (alloc_pages + free_pages, state B) through the Kernel API and the
floor under it -- the two compiled calls made directly, without and with the domain lock
-- for one or more physmem trees, alternated in fresh interpreters (issue 13).  CPU time,
best of 41 batches of 2,000 pairs, on bench/run.py's ``fragmented_1g()``, the queue core
compiled (``jit=True``).

    python bench/pair_floor.py [ROUNDS] [TREE...]      # default: 3 rounds, this tree
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import importlib.util, sys, time
tree = sys.argv[1]
sys.path.insert(0, tree + "/src")
spec = importlib.util.spec_from_file_location("br", tree + "/bench/run.py")
br = importlib.util.module_from_spec(spec)
spec.loader.exec_module(br)
pt = time.process_time
k = br.fragmented_1g()
k.jit = True
k.start_jit()
k.alloc_pages(0, "default", 0)                  # state B: no split, no merge
ap, fp = k.alloc_pages, k.free_pages
fp(ap(0, "default", 0), 0)                      # compiles (or loads) the fast paths
phys = k.phys
ka, kf, st, w = phys.kalloc, phys.kfree, phys._st, phys.kwords
base, pool, dfp = phys.search_bases[0][0], k._pools["default"], phys.default_freepool
lock = phys.domain_locks[0]
n = 2000


def best(f):
    b = 9e9
    for _ in range(41):
        t = pt()
        f()
        b = min(b, (pt() - t) / n)
    return b * 1e6


def api():
    for _ in range(n):
        fp(ap(0, "default", 0), 0)


def compiled():
    for _ in range(n):
        kf(st, w, ka(st, w, base, pool, 0, dfp, 0), 0, 0)


def locked():
    for _ in range(n):
        lock.acquire()
        m = ka(st, w, base, pool, 0, dfp, 0)
        lock.release()
        lock.acquire()
        kf(st, w, m, 0, 0)
        lock.release()


print(f"{best(api):.3f} {best(compiled):.3f} {best(locked):.3f}")
k.check()
'''


def main() -> int:
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 3
    trees = args or [str(HERE.parent)]
    print("| tree | Kernel API pair (µs) | compiled calls alone | with the domain lock |")
    print("|---|---|---|---|")
    for _ in range(rounds):
        for tree in trees:
            r = subprocess.run([sys.executable, "-c", CHILD, tree], capture_output=True,
                               text=True, check=True)
            api, comp, locked = r.stdout.split()
            print(f"| {tree} | {api} | {comp} | {locked} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
