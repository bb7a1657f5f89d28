#!/usr/bin/env python3
"""Issue 13, second round: would Numba over array-based queues reach the pair targets?

A measurement, not a second implementation: a minimal buddy allocator (one pool, one free
list, vm_phys_alloc_pages' exact-order-first search and split, vm_phys_free_pages' merge)
whose queues are arrays (``nxt``/``prv``/``order`` per page, sentinels past the pages),
compiled with Numba, against the same pair through physmem's own VmPhys and Kernel API on
the same fragmented 1 GiB state.  It measures

* the cost of crossing from Python into a jitted function (empty body, the argument
  shapes a queue primitive needs: ints and the state arrays);
* an order-0 pair (alloc + free) in state A (split and merge two levels) and state B (no
  split), as two jitted calls, bare and behind a Python wrapper doing what Kernel does
  around vm_phys (argument checks, the domain lock, the ownership word, the free count);
* the same pair fused into one jitted call per alloc and per free (wrapper included).

    python bench/numba_probe.py        # needs numba (pip install numba); ~15 s

Run it in a virtual environment that has numba; physmem itself does not depend on it.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

t0 = time.perf_counter()
import numba  # noqa: E402

T_IMPORT = time.perf_counter() - t0

NFO = 13


@numba.njit(cache=True)
def _empty(a, b, c, nxt, prv, order, lcnt):
    return a


@numba.njit(cache=True)
def _rem(nxt, prv, order, lcnt, base, q, m):
    """vm_freelist_rem over arrays: sentinel of queue q is base + q."""
    p = prv[m]
    n = nxt[m]
    nxt[p] = n
    prv[n] = p
    order[m] = NFO
    lcnt[q] -= 1


@numba.njit(cache=True)
def _add_tail(nxt, prv, order, lcnt, base, q, m, o):
    s = base + q
    last = prv[s]
    prv[m] = last
    nxt[m] = s
    nxt[last] = m
    prv[s] = m
    order[m] = o
    lcnt[q] += 1


@numba.njit(cache=True)
def alloc_pages(nxt, prv, order, lcnt, base, o):
    """vm_phys_alloc_pages for one pool of one free list: smallest sufficient order first,
    the queue head, split with the upper halves at the tails."""
    for oind in range(o, NFO):
        if lcnt[oind]:
            m = nxt[base + oind]
            _rem(nxt, prv, order, lcnt, base, oind, m)
            while oind > o:
                oind -= 1
                _add_tail(nxt, prv, order, lcnt, base, oind, m + (1 << oind), oind)
            return m
    return -1


@numba.njit(cache=True)
def free_pages(nxt, prv, order, lcnt, base, npages, m, o):
    """vm_phys_free_pages: merge with free buddies up to NFO - 1, then the tail."""
    while o < NFO - 1:
        b = m ^ (1 << o)
        if b >= npages or order[b] != o:
            break
        _rem(nxt, prv, order, lcnt, base, o, b)
        o += 1
        m &= ~((1 << o) - 1)
    _add_tail(nxt, prv, order, lcnt, base, o, m, o)


@numba.njit(cache=True)
def k_alloc(nxt, prv, order, lcnt, words, counts, base, o):
    """Kernel.alloc_pages fused: vm_phys + the ownership words + the free count."""
    m = alloc_pages(nxt, prv, order, lcnt, base, o)
    if m >= 0:
        for i in range(m, m + (1 << o)):
            words[i] |= 8
        counts[0] -= 1 << o
    return m


@numba.njit(cache=True)
def k_free(nxt, prv, order, lcnt, words, counts, base, npages, m, o):
    """Kernel.free_pages fused: ownership checked and cleared, vm_phys, the free count.
    Returns -1 if a page is not allocated (nothing changed)."""
    for i in range(m, m + (1 << o)):
        if not words[i] & 8:
            return -1
    for i in range(m, m + (1 << o)):
        words[i] &= ~8
    free_pages(nxt, prv, order, lcnt, base, npages, m, o)
    counts[0] += 1 << o
    return 0


class State:
    """Array queues holding the free blocks of a physmem kernel's DEFAULT pool (domain 0,
    free list 0): pages [0, npages), sentinels at npages + q."""

    def __init__(self, k) -> None:
        phys = k.phys
        self.npages = npages = phys.pages.base_pfn + phys.pages.npages
        self.base = npages
        self.nxt = np.zeros(npages + NFO, np.int64)
        self.prv = np.zeros(npages + NFO, np.int64)
        self.order = np.full(npages + NFO, NFO, np.int64)
        self.lcnt = np.zeros(NFO, np.int64)
        self.words = np.zeros(npages, np.int64)
        self.counts = np.zeros(1, np.int64)
        for q in range(NFO):
            self.nxt[self.base + q] = self.prv[self.base + q] = self.base + q
        pool = k.param.freepool_default
        for o in range(NFO):
            for m in phys.queue_iter(phys.qindex(0, 0, pool, o)):
                _add_tail(self.nxt, self.prv, self.order, self.lcnt, self.base, o, m, o)
        self.lock = threading.Lock()


def best_us(fn, n: int = 2000, reps: int = 21) -> float:
    pt = time.process_time
    best = 9e9
    for _ in range(reps):
        t = pt()
        for _ in range(n):
            fn()
        best = min(best, (pt() - t) / n)
    return best * 1e6


def main() -> int:
    import importlib.util
    spec = importlib.util.spec_from_file_location("br", HERE / "run.py")
    br = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(br)
    k0 = br.fragmented_1g()
    s = State(k0)
    t = time.perf_counter()
    _empty(1, 2, 3, s.nxt, s.prv, s.order, s.lcnt)
    m = alloc_pages(s.nxt, s.prv, s.order, s.lcnt, s.base, 0)
    free_pages(s.nxt, s.prv, s.order, s.lcnt, s.base, s.npages, m, 0)
    m = k_alloc(s.nxt, s.prv, s.order, s.lcnt, s.words, s.counts, s.base, 0)
    k_free(s.nxt, s.prv, s.order, s.lcnt, s.words, s.counts, s.base, s.npages, m, 0)
    t_first = time.perf_counter() - t
    print(f"numba {numba.__version__}: import {T_IMPORT:.2f} s, first calls (compile or "
          f"cache load) {t_first:.2f} s\n")
    print("| figure (µs, CPU time, best of 21 × 2000) | state A | state B |")
    print("|---|---|---|")
    rows: dict[str, list[float]] = {}
    for state in ("A", "B"):
        for name, fn in _figures(br, state).items():
            rows.setdefault(name, []).append(best_us(fn))
    for name, (a, b) in rows.items():
        print(f"| {name} | {a:.2f} | {b:.2f} |")
    return 0


def _figures(br, state: str) -> dict:
    """The pairs to time on a fresh fragmented 1 GiB kernel in ``state``."""
    k = br.fragmented_1g()
    if state == "B":
        k.alloc_pages(0, "default", 0)
    s = State(k)
    nxt, prv, order, lcnt, base, npages = s.nxt, s.prv, s.order, s.lcnt, s.base, s.npages
    words, counts, lock = s.words, s.counts, s.lock
    ap, fp = k.alloc_pages, k.free_pages
    phys, pool = k.phys, k.param.freepool_default
    pa, pf = phys.alloc_pages, phys.free_pages

    def empty():
        _empty(1, 2, 3, nxt, prv, order, lcnt)

    def jit_pair():
        free_pages(nxt, prv, order, lcnt, base, npages,
                   alloc_pages(nxt, prv, order, lcnt, base, 0), 0)

    def wrapped_alloc(domain, o):
        # what Kernel.alloc_pages does around vm_phys, in Python
        if not isinstance(o, int) or not 0 <= o < NFO or domain != 0:
            raise ValueError(o)
        with lock:
            m = alloc_pages(nxt, prv, order, lcnt, base, o)
            if m < 0:
                return None
            words[m] |= 8
            counts[0] -= 1
        return m << 12

    def wrapped_free(pa_, o):
        if not isinstance(o, int) or pa_ & 4095:
            raise ValueError(pa_)
        m = pa_ >> 12
        with lock:
            if not words[m] & 8:
                raise ValueError("double free")
            words[m] &= ~8
            free_pages(nxt, prv, order, lcnt, base, npages, m, o)
            counts[0] += 1

    def fused_alloc(domain, o):
        if not isinstance(o, int) or not 0 <= o < NFO or domain != 0:
            raise ValueError(o)
        with lock:
            m = k_alloc(nxt, prv, order, lcnt, words, counts, base, o)
        return None if m < 0 else m << 12

    def fused_free(pa_, o):
        if not isinstance(o, int) or pa_ & 4095:
            raise ValueError(pa_)
        with lock:
            if k_free(nxt, prv, order, lcnt, words, counts, base, npages, pa_ >> 12,
                      o) < 0:
                raise ValueError("double free")

    figures = {
        "one jitted call, empty body (7 arguments)": empty,
        "physmem VmPhys pair (pure Python)": lambda: pf(pa(0, pool, 0), 0),
        "physmem Kernel API pair (pure Python)": lambda: fp(ap(0, "default", 0), 0),
        "Numba pair: two jitted calls, bare": jit_pair,
        "Numba pair behind a Kernel-like Python wrapper": lambda: wrapped_free(
            wrapped_alloc(0, 0), 0),
        "Numba pair, Kernel fast path fused (one jitted call per alloc/free)":
            lambda: fused_free(fused_alloc(0, 0), 0),
    }
    return figures


if __name__ == "__main__":
    sys.exit(main())
