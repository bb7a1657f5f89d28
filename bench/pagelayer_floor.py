#!/usr/bin/env python3
"""What one vm_page_alloc + vm_page_free pair costs in this model, beside what its locks
and Python calls cost alone, and where the buddy source's pair goes (one process,
medians of 31 batches of 2,000, CPU time):

    PYTHONPATH=src python bench/pagelayer_floor.py

The buddy lines: right after boot every free block of firecracker-1g is of the top order
(4096 pages), so each order-0 allocation splits 12 times and its free merges 12 times
("split"); with one page held first, the pair's page has an allocated buddy and neither
splits nor merges ("no split").  "vm_phys pair" is the FreeBSD layer's Kernel API alone
(alloc_pages + free_pages), the rest of a buddy pair is the DragonFly page layer's.

With the compiled fast paths (issue 12 part 3; ``PHYSMEM_JIT_TIER=0`` makes them run from
the first call): "pair, no object" leaves out the object's insert and removal, "2
compiled calls" is the pair's compiled share alone (the bodies select_free_or_cache +
free_toq called directly, numba's dispatch included; alloc_head + free_toq on the tree
of branch issue12c).  The door's layers (issue 12 part 3, wt12d): "pair, _alloc" skips
vm_page_alloc's argument checks (vm_page_grab's way in), "_select + vm_page_free" also
leaves out vm_page_alloc's own steps (colour, free-count test, pagedaemon test): no
object, the select's count and vm_page_free's door around the two compiled calls.
"""
import statistics
import threading
import time

from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm


def median_us(fn) -> float:
    fn()
    return statistics.median(fn() for _ in range(31)) * 1e6


def pair_of(vm: DragonflyVm, with_object: bool = True):
    o = vm.object_create() if with_object else None
    alloc, free = vm.vm_page_alloc, vm.vm_page_free

    def pair(n: int = 2000) -> float:
        t = time.process_time()
        for i in range(n):
            free(alloc(o, i, VM_ALLOC_NORMAL))
        return (time.process_time() - t) / n
    return pair


def inner_pair_of(vm: DragonflyVm, what: str):
    o = vm.object_create()
    free, inner, select = vm.vm_page_free, getattr(vm, "_alloc", None), vm._select

    def pair(n: int = 2000) -> float:
        if inner is None:                   # a tree without the inner part
            return float("nan")
        t = time.process_time()
        if what == "_alloc":
            for i in range(n):
                free(inner(o, i, VM_ALLOC_NORMAL))
        else:                               # PQ_FREE (1), PQ_CACHE (3073)
            for i in range(n):
                free(select(1, 3073, i & 1023)[0])
        return (time.process_time() - t) / n
    return pair


def kernel_pair_of(vm: DragonflyVm):
    k = vm.kernel
    assert k is not None

    def pair(n: int = 2000) -> float:
        a, f = k.alloc_pages, k.free_pages
        t = time.process_time()
        for _ in range(n):
            f(a(0, "default", 0), 0)
        return (time.process_time() - t) / n
    return pair


plain, reentrant = threading.Lock(), threading.RLock()


def locks(n: int = 2000) -> float:
    # the pair's ten: queue, page (reentrant), busy atomic, stats, object token; twice
    seq = (plain, reentrant, plain, plain, plain) * 2
    t = time.process_time()
    for _ in range(n):
        for lk in seq:
            lk.acquire()
            lk.release()
    return (time.process_time() - t) / n


class _C:
    def f(self, a: int, b: int, c: int) -> int:
        return a


def calls(n: int = 2000) -> float:
    # four Python calls with arguments (alloc, _alloc_fast, free, insert_head/remove_head)
    f = _C().f
    t = time.process_time()
    for i in range(n):
        f(f(i, 1, 2), 1, 2)
        f(f(i, 1, 2), 1, 2)
    return (time.process_time() - t) / n


def compiled_calls(vm: DragonflyVm):
    p = vm.pages
    fs, fa = getattr(vm, "_c_select", None), getattr(vm, "_c_alloc_head", None)
    ff = getattr(vm, "_c_free_toq", None)

    def pair(n: int = 2000) -> float:
        if fs is None or not vm._core:      # a tree without them, or the JIT off
            return float("nan")
        w4, w2, w1, off = p.w4, p.w2, p.w1, vm.queues.off
        t = time.process_time()
        tab = getattr(vm, "objtab", None)
        if fa is not None:                  # issue12c's paths
            for _ in range(n):
                ff(w4, w2, w1, off, fa(w4, w2, w1, off, 1, 0))
        elif tab is not None:               # issue12r: the objects' arrays passed too
            pi, ot, ob, st = p.pi, tab.ot, tab.ob, vm.stats
            for _ in range(n):
                ff(w4, w2, w1, pi, ot, ob, st, off,
                   fs(w4, w2, w1, pi, ot, ob, st, off, 1, 3073, 0, 15, 0, 1, -1, 0, 1)[1],
                   0, 0, 1)
        else:
            for _ in range(n):
                ff(w4, w2, w1, off, fs(w4, w2, w1, off, 1, 3073, 0, 15, 1)[1], 0, 1)
        return (time.process_time() - t) / n
    return pair


vm = DragonflyVm("firecracker-1g")
rows = [("pair (dragonfly source)", pair_of(vm)), ("pair, no object", pair_of(vm, False)),
        ("pair, _alloc (no argument checks)", inner_pair_of(vm, "_alloc")),
        ("_select + vm_page_free", inner_pair_of(vm, "_select")),
        ("2 compiled calls", compiled_calls(vm)),
        ("10 lock acquire+release", locks), ("4 method calls", calls)]
buddy = DragonflyVm("firecracker-1g", source="buddy")
rows += [("buddy pair, split", pair_of(buddy)),
         ("  vm_phys pair (Kernel API), split", kernel_pair_of(buddy))]
held = DragonflyVm("firecracker-1g", source="buddy")
held.vm_page_alloc(held.object_create(), 0, VM_ALLOC_NORMAL)   # its buddy: never merged
rows += [("buddy pair, no split", pair_of(held)),
         ("  vm_phys pair (Kernel API), no split", kernel_pair_of(held))]
for name, fn in rows:
    print(f"{name}: {median_us(fn):.2f} µs")
