"""The colour search against a line-by-line transcription of DragonFly's loops
(_vm_page_list_find_wide / _vm_page_list_find2_wide), on random queue occupancies: the
model's search jumps over empty colours with bytearray.find and must visit, count and
remember exactly what the kernel's probe loop does."""

from __future__ import annotations

import random

import pytest

from physmem.dragonfly.vm_page_array import PQ_CACHE, PQ_FREE, PQ_L2_MASK


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


def make(density: float, rng: random.Random, sam: int):
    """Just enough of a DragonflyVm for the search: occupancy, hints, the mask; a
    'page' found is the queue index itself."""
    from physmem.dragonfly.vm_page import DragonflyVm
    vm = DragonflyVm.__new__(DragonflyVm)
    from physmem.dragonfly.vm_page_array import PQ_COUNT, Queues
    q = Queues.__new__(Queues)
    q.nonempty = bytearray(PQ_COUNT)
    q.lastq = [-1] * PQ_COUNT
    for base in (PQ_FREE, PQ_CACHE):
        for c in range(1024):
            if rng.random() < density:
                q.nonempty[base + c] = 1
    vm.queues = q
    vm.set_assoc_mask = sam
    vm._list_first_trylock = lambda qi: qi if q.nonempty[qi] else None
    return vm


@pytest.mark.parametrize("sam", [15, 31, 511, 1023])
def test_search_matches_the_kernel_loop(sam):
    rng = random.Random(sam)
    for _ in range(300):
        vm = make(rng.choice([0.0, 0.001, 0.01, 0.05, 0.3]), rng, sam)
        lastq: dict[int, int] = {}
        for _ in range(5):
            idx = rng.randrange(1024)
            if rng.random() < 0.3:
                hint = rng.randrange(1024)
                lastq[PQ_FREE + idx] = hint
                vm.queues.lastq[PQ_FREE + idx] = hint
            want = kernel_find_wide(vm.queues.nonempty, PQ_FREE, idx, lastq, sam)
            got = vm._find_wide(PQ_FREE, idx)
            assert (None if got is None else got - PQ_FREE) == want
            for k, v in lastq.items():
                assert vm.queues.lastq[k] == v
            want2 = kernel_find2_wide(vm.queues.nonempty, PQ_FREE, PQ_CACHE, idx, lastq, sam)
            m, base = vm._find2_wide(PQ_FREE, PQ_CACHE, idx)
            assert (None if m is None else (base, m - base)) == want2
            for k, v in lastq.items():
                assert vm.queues.lastq[k] == v
