"""The colour search against a line-by-line transcription of DragonFly's loops
(_vm_page_list_find_wide / _vm_page_list_find2_wide), on random queue occupancies: the
body (vm_page_core.select_free_or_cache) must visit, count and remember exactly what the
kernel's probe loop does."""

from __future__ import annotations

import random

import numpy as np
import pytest

from physmem import jit
from physmem.dragonfly.vm_page_array import (
    PQ_CACHE,
    PQ_COUNT,
    PQ_FREE,
    PQ_L2_MASK,
    R_BUSY,
    R_HEAD,
    R_LASTQ,
    R_LCNT,
    R_NONEMPTY,
    R_QUEUE,
    R_TAIL,
    ROW_MIN,
    W1_ROWS,
    W2_ROWS,
    W4_ROWS,
)
from physmem.dragonfly.vm_page_core import SEL_FOUND, SEL_NONE, select_free_or_cache


def kernel_find_wide(nonempty, base, index, lastq, sam):
    """Returns (colour found or None, new lastq dict entries)."""
    lastp = lastq.get(base + index, -1)
    orig = index
    if lastp >= 0:
        index = lastp
    pqmask = sam >> 1
    count = 0
    skip_start = skip_next = -1
    while True:
        pqmask = (pqmask << 1) | 1
        pqi, rng = index, pqmask + 1
        while rng > 0:
            if skip_start <= pqi < skip_next:
                rng -= skip_next - pqi
                pqi = (pqi & ~pqmask) | (skip_next & pqmask)
            if rng > 0 and nonempty[base + pqi]:
                if count >= 8:
                    lastq[base + orig] = pqi & PQ_L2_MASK
                return pqi
            rng -= 1
            count += 1
            pqi = (pqi & ~pqmask) | ((pqi + 1) & pqmask)
        skip_start = pqi & ~pqmask
        skip_next = (pqi | pqmask) + 1
        if pqmask == PQ_L2_MASK:
            return None


def kernel_find2_wide(nonempty, b1, b2, index, lastq, sam):
    orig = index
    if lastq.get(b1 + index, -1) >= 0:
        index = lastq[b1 + index]
    m1 = m2 = sam >> 1
    c1 = c2 = 0
    s1 = n1 = s2 = n2 = -1
    while True:
        if m1 != PQ_L2_MASK:
            m1 = (m1 << 1) | 1
            pqi, rng = index, m1 + 1
            while rng > 0:
                if s1 <= pqi < n1:
                    rng -= n1 - pqi
                    pqi = (pqi & ~m1) | (n1 & m1)
                if rng > 0 and nonempty[b1 + pqi]:
                    if c1 >= 8:
                        lastq[b1 + orig] = pqi
                    return b1, pqi
                rng -= 1
                c1 += 1
                pqi = (pqi & ~m1) | ((pqi + 1) & m1)
            s1, n1 = pqi & ~m1, (pqi | m1) + 1
        if not m1 < ((sam << 1) | 1):
            m2 = (m2 << 1) | 1
            pqi, rng = index, m2 + 1
            while rng > 0:
                if s2 <= pqi < n2:
                    rng -= n2 - pqi
                    pqi = (pqi & ~m2) | (n2 & m2)
                if rng > 0 and nonempty[b2 + pqi]:
                    if c2 >= 8:
                        lastq[b2 + orig] = pqi
                    return b2, pqi
                rng -= 1
                c2 += 1
                pqi = (pqi & ~m2) | ((pqi + 1) & m2)
            s2, n2 = pqi & ~m2, (pqi | m2) + 1
        if m1 == PQ_L2_MASK or m2 == PQ_L2_MASK:
            return None


def make(density: float, rng: random.Random):
    """Just enough of a page array for the search body: each non-empty queue q holds
    one page, page q (so a page found names its queue), idle and reusable."""
    w4 = np.zeros((W4_ROWS, ROW_MIN), np.uint32)
    w2 = np.zeros((W2_ROWS, ROW_MIN), np.uint16)
    w1 = np.zeros((W1_ROWS, ROW_MIN), np.uint8)
    w4[R_LASTQ, :PQ_COUNT] = 0xFFFFFFFF
    for base in (PQ_FREE, PQ_CACHE):
        for c in range(1024):
            if rng.random() < density:
                link(w4, w2, w1, base + c)
    return w4, w2, w1


def link(w4, w2, w1, q: int) -> None:
    w4[R_HEAD, q] = w4[R_TAIL, q] = q + 1
    w4[R_LCNT, q] = 1
    w1[R_NONEMPTY, q] = 1
    w2[R_QUEUE, q] = q
    w4[R_BUSY, q] = 0


def search(rows, b1: int, b2: int, idx: int, sam: int):
    """The body's search for colour ``idx`` when its own queue is empty (the wide
    search); the queue found, as (base, colour), or None.  The page taken is put back."""
    w4, w2, w1 = rows
    st, m, base = select_free_or_cache.compiled()(w4, w2, w1, 0, b1, b2, idx, sam, 1)
    if st == SEL_NONE:
        return None
    assert st == SEL_FOUND and w4[R_BUSY, m]
    link(w4, w2, w1, m)
    return base, m - base


@pytest.mark.parametrize("sam", [15, 31, 511, 1023])
def test_search_matches_the_kernel_loop(sam):
    rng = random.Random(sam)
    for _ in range(300 if jit.enabled() else 15):
        rows = make(rng.choice([0.0, 0.001, 0.01, 0.05, 0.3]), rng)
        w4 = rows[0]
        lastq: dict[int, int] = {}
        for _ in range(5):
            idx = rng.randrange(1024)
            for b in (PQ_FREE, PQ_CACHE):      # the exact colour empty: the wide search
                if rows[2][R_NONEMPTY, b + idx]:
                    rows[2][R_NONEMPTY, b + idx] = 0
                    w4[R_HEAD, b + idx] = w4[R_TAIL, b + idx] = w4[R_LCNT, b + idx] = 0
            if rng.random() < 0.3:
                hint = rng.randrange(1024)
                lastq[PQ_FREE + idx] = hint
                w4[R_LASTQ, PQ_FREE + idx] = hint
            want = kernel_find_wide(rows[2][R_NONEMPTY], PQ_FREE, idx, lastq, sam)
            got = search(rows, PQ_FREE, 0, idx, sam)
            assert (None if got is None else got[1]) == want
            for k, v in lastq.items():
                assert w4[R_LASTQ, k] == v
            want2 = kernel_find2_wide(rows[2][R_NONEMPTY], PQ_FREE, PQ_CACHE, idx, lastq,
                                      sam)
            assert search(rows, PQ_FREE, PQ_CACHE, idx, sam) == want2
            for k, v in lastq.items():
                assert w4[R_LASTQ, k] == v


def test_the_plain_memchr_matches_the_compiled_loop():
    """_next_nonempty's plain version (bytes.find) and its loop (what numba compiles)
    agree on random rows and ranges, through a memoryview and on the array."""
    from physmem.dragonfly.vm_page_core import _next_nonempty, _next_nonempty_py
    rng = random.Random(5)
    for _ in range(200):
        w1 = np.zeros((W1_ROWS, ROW_MIN), np.uint8)
        for q in rng.sample(range(PQ_COUNT), rng.choice([0, 1, 5, 50])):
            w1[R_NONEMPTY, q] = 1
        a = rng.randrange(PQ_COUNT)
        b = rng.randrange(a, PQ_COUNT + 1)
        want = _next_nonempty.fn(w1, a, b)
        assert _next_nonempty_py(w1, a, b) == want
        assert _next_nonempty_py(memoryview(w1), a, b) == want
