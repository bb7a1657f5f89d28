#!/usr/bin/env python3
"""Issue 13 (start-up): would compiling at the tier in a background thread help?

A plain-tier kernel (firecracker-1g, lazy) runs order-0 pairs; the fused fast paths are
compiled (empty numba cache) either synchronously, as the tier does, or in a thread while
the main thread keeps running plain pairs.  Reported: the compile's wall and CPU time,
and for the thread what the main thread got done meanwhile (pairs x their time alone)
and its slowest pair.

    python bench/jit_background.py [sync|thread] ...   # each mode in a fresh process
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time


def run(mode: str) -> str:
    import physmem
    from physmem.freebsd import vm_phys
    k = physmem.boot("firecracker-1g", lazy=True, jit=False)
    ap, fp = k.alloc_pages, k.free_pages
    for _ in range(2000):
        fp(ap(0, "default", 0), 0)
    t = time.perf_counter()
    for _ in range(20000):
        fp(ap(0, "default", 0), 0)
    alone = (time.perf_counter() - t) / 20000
    done = threading.Event()

    def compile_fused() -> None:
        for _name, fn in vm_phys._FUSED:
            fn.compiled()
        done.set()
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "sync":
        compile_fused()
        return (f"sync: compile {time.perf_counter() - t0:.2f} s wall, "
                f"{time.process_time() - c0:.2f} s CPU")
    th = threading.Thread(target=compile_fused)
    th.start()
    n, worst = 0, 0.0
    while not done.is_set():
        a = time.perf_counter()
        fp(ap(0, "default", 0), 0)
        worst = max(worst, time.perf_counter() - a)
        n += 1
    th.join()
    wall = time.perf_counter() - t0
    return (f"thread: compile {wall:.2f} s wall, {time.process_time() - c0:.2f} s CPU "
            f"(both threads); the main thread ran {n:,} pairs = {n * alone:.2f} s of plain "
            f"work ({n * alone / wall:.0%} of the wall), slowest pair {worst * 1e3:.0f} ms")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(run(sys.argv[2]))
        return 0
    for mode in sys.argv[1:] or ["sync", "thread"]:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            env.pop("PHYSMEM_JIT", None)
            subprocess.run([sys.executable, __file__, "--child", mode], env=env, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
