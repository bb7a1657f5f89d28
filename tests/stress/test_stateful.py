"""Hypothesis stateful tests: vm_phys against a plain set-of-free-pages model.

The machine has two segments (LOWMEM and DEFAULT lists) with one naturally aligned
phys_avail run each, so boot leaves no unmerged buddies.  While only free_pages gives pages
back, every buddy pair must have merged (``strict_buddies``) and an order-k request may fail
only if no naturally aligned free 2**k run exists; free_contig (which does not coalesce)
turns those two checks off.  After every step: the INVARIANTS checker, and the free count
equals the model's.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import physmem
from physmem.bits import PAGE_SHIFT
from tests.conftest import make_kernel

SEGS = [(0x100000, 0x1000000), (0x1000000, 0x1400000)]
AVAIL = [(0x200000, 0x1000000), (0x1000000, 0x1400000)]
SEG_PFNS = [(s >> 12, e >> 12) for s, e in SEGS]


class VmPhysMachine(RuleBasedStateMachine):
    lazy = False
    blocks = Bundle("blocks")

    @initialize()
    def boot(self):
        self.k = make_kernel(SEGS, AVAIL, lazy=self.lazy)
        self.free = {p for s, e in AVAIL for p in range(s >> 12, e >> 12)}
        self.strict = True

    # -- helpers ------------------------------------------------------------------------
    def _take(self, pfns):
        pfns = list(pfns)
        assert all(p in self.free for p in pfns), "handed out a page that was not free"
        self.free.difference_update(pfns)

    def _has_aligned_free(self, order):
        n = 1 << order
        for s, e in SEG_PFNS:
            for b in range((s + n - 1) & ~(n - 1), e - n + 1, n):
                if all(p in self.free for p in range(b, b + n)):
                    return True
        return False

    # -- rules ----------------------------------------------------------------------------
    @rule(target=blocks, order=st.integers(0, 12), pool=st.sampled_from(["default", "direct"]))
    def alloc_pages(self, order, pool):
        pa = self.k.alloc_pages(0, pool, order)
        if pa is None:
            if self.strict:
                assert not self._has_aligned_free(order)
            return multiple_blocks()
        m = pa >> PAGE_SHIFT
        assert m % (1 << order) == 0
        self._take(range(m, m + (1 << order)))
        return (m, 1 << order, order)

    @rule(target=blocks, freelist=st.sampled_from(["default", "dma32", "lowmem"]),
          order=st.integers(0, 6))
    def alloc_freelist_pages(self, freelist, order):
        pa = self.k.alloc_freelist_pages(0, freelist, "default", order)
        if pa is None:
            return multiple_blocks()
        m = pa >> PAGE_SHIFT
        lo = freelist == "lowmem"
        assert (m < SEG_PFNS[0][1]) == lo
        self._take(range(m, m + (1 << order)))
        return (m, 1 << order, order)

    @rule(n=st.integers(1, 40))
    def alloc_npages(self, n):
        pas = self.k.alloc_npages(0, "direct", n)
        assert len(pas) == min(n, len(self.free))
        self._take(pa >> PAGE_SHIFT for pa in pas)
        for pa in pas:
            self.singles.append(pa >> PAGE_SHIFT)

    @rule(target=blocks, n=st.integers(1, 300), align=st.integers(0, 8),
          boundary=st.sampled_from([0, 1 << 16, 1 << 20, 1 << 22]))
    def alloc_contig(self, n, align, boundary):
        if boundary and boundary < n << PAGE_SHIFT:
            boundary = 0
        pa = self.k.alloc_contig(0, n, 0x100000, 0x1400000, 1 << (PAGE_SHIFT + align), boundary)
        if pa is None:
            return multiple_blocks()
        m = pa >> PAGE_SHIFT
        assert m % (1 << align) == 0
        if boundary:
            assert pa // boundary == (pa + (n << PAGE_SHIFT) - 1) // boundary
        self._take(range(m, m + n))
        return (m, n, None)

    @rule(b=consumes(blocks))
    def free_block(self, b):
        m, n, order = b
        if order is not None:
            self.k.free_pages(m << PAGE_SHIFT, order)
        else:
            self.k.free_contig(m << PAGE_SHIFT, n)
            self.strict = False
        self.free.update(range(m, m + n))

    @rule(b=consumes(blocks), data=st.data())
    def free_half(self, b, data):
        """Free an allocated block in two halves, as the kernel's callers may."""
        m, n, order = b
        if order is None or order == 0:
            self.free.update(range(m, m + n))
            if order is None:
                self.k.free_contig(m << PAGE_SHIFT, n)
                self.strict = False
            else:
                self.k.free_pages(m << PAGE_SHIFT, 0)
            return
        half = n // 2
        first = data.draw(st.booleans())
        for start in ((m, m + half) if first else (m + half, m)):
            self.k.free_pages(start << PAGE_SHIFT, order - 1)
        self.free.update(range(m, m + n))

    @precondition(lambda self: self.singles)
    @rule(data=st.data())
    def free_single(self, data):
        i = data.draw(st.integers(0, len(self.singles) - 1))
        m = self.singles.pop(i)
        self.k.free_pages(m << PAGE_SHIFT, 0)
        self.free.add(m)

    @rule(data=st.data())
    def double_free_is_refused(self, data):
        if not self.free:
            return
        m = data.draw(st.sampled_from(sorted(self.free)[:64]))
        before = self.k.digest()
        try:
            self.k.free_pages(m << PAGE_SHIFT, 0)
        except physmem.DoubleFreeError:
            pass
        else:
            raise AssertionError("double free accepted")
        assert self.k.digest() == before

    @rule(data=st.data())
    def unfree_page(self, data):
        s, e = data.draw(st.sampled_from(AVAIL))
        m = data.draw(st.integers(s >> 12, (e >> 12) - 1))
        was_free = m in self.free
        assert self.k.unfree_page(m << PAGE_SHIFT) == was_free
        if was_free:
            self.free.discard(m)
            self.singles.append(m)

    @invariant()
    def consistent(self):
        if not hasattr(self, "k"):
            return
        self.k.check(strict_buddies=self.strict)
        assert self.k.free_count(0) == len(self.free)

    singles: list[int]

    def __init__(self):
        super().__init__()
        self.singles = []


def multiple_blocks():
    from hypothesis.stateful import multiple
    return multiple()


class LazyVmPhysMachine(VmPhysMachine):
    lazy = True

    @rule()
    def drain(self):
        self.k.lazy_init()

    @rule(domain_only=st.booleans())
    def drain_domain(self, domain_only):
        self.k.phys.lazy_init_domain(0, False)


SETTINGS = settings(max_examples=40, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TestVmPhysEager = VmPhysMachine.TestCase
TestVmPhysEager.settings = SETTINGS
TestVmPhysLazy = LazyVmPhysMachine.TestCase
TestVmPhysLazy.settings = SETTINGS
