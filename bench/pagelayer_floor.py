#!/usr/bin/env python3
"""What one vm_page_alloc + vm_page_free pair costs in this model, beside what its locks
and Python calls cost alone (one process, medians of 31 batches of 2,000):

    PYTHONPATH=src python bench/pagelayer_floor.py
"""
import statistics
import threading
import time

from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm

vm = DragonflyVm("firecracker-1g")
o = vm.object_create()
alloc, free = vm.vm_page_alloc, vm.vm_page_free
plain, reentrant = threading.Lock(), threading.RLock()


def pair(n: int = 2000) -> float:
    t = time.perf_counter()
    for i in range(n):
        free(alloc(o, i, VM_ALLOC_NORMAL))
    return (time.perf_counter() - t) / n


def locks(n: int = 2000) -> float:
    # the pair's ten: queue, page (reentrant), busy atomic, stats, object token; twice
    seq = (plain, reentrant, plain, plain, plain) * 2
    t = time.perf_counter()
    for _ in range(n):
        for lk in seq:
            lk.acquire()
            lk.release()
    return (time.perf_counter() - t) / n


class _C:
    def f(self, a: int, b: int, c: int) -> int:
        return a


def calls(n: int = 2000) -> float:
    # the pair's six Python calls (alloc, _alloc_fast, _insert, free, _remove, _free_toq)
    f = _C().f
    t = time.perf_counter()
    for i in range(n):
        f(f(f(i, 1, 2), 1, 2), 1, 2)
        f(f(f(i, 1, 2), 1, 2), 1, 2)
    return (time.perf_counter() - t) / n


for name, fn in (("pair", pair), ("10 lock acquire+release", locks),
                 ("6 method calls", calls)):
    fn()
    print(f"{name}: {statistics.median(fn() for _ in range(31)) * 1e6:.2f} µs")
