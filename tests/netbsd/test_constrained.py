"""Constrained allocation beside vm_phys: seed 002's extent mirror and its allocator,
uvm_pglistalloc, DragonFly's DMA reserve."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import physmem
from physmem import errors as E
from tests.conftest import MB, PAGE


def seed_request_ok(pa, npages=4):
    """The seed's example: 16 KiB contiguous, aligned to 8 KiB, not crossing a 64 KiB
    line, below 16 MiB."""
    end = pa + npages * PAGE
    return pa % 0x2000 == 0 and pa // 0x10000 == (end - 1) // 0x10000 and end <= 16 * MB


@pytest.mark.parametrize("lazy", [False, True])
def test_the_seeds_request_is_served_through_the_extent(lazy):
    k = physmem.boot("firecracker-128m", lazy=lazy)
    k.attach_extent_mirror()
    k.check()
    pas = [k.alloc_constrained(4, 0, 16 * MB, 0x2000, 0x10000) for _ in range(20)]
    assert all(pa is not None and seed_request_ok(pa) for pa in pas)
    assert len(set(pas)) == 20
    k.check()
    for pa in pas:
        k.free_contig(pa, 4)
    k.check()


def test_mirror_follows_every_queue_change():
    k = physmem.boot("firecracker-128m", lazy=True)
    mirror = k.attach_extent_mirror()
    rng = random.Random(3)
    held = []
    for _ in range(400):
        if rng.random() < 0.6 or not held:
            o = rng.choice((0, 1, 2, 5, 9))
            pa = k.alloc_pages(0, rng.choice(("default", "direct")), o)
            if pa is not None:
                held.append((pa, 1 << o))
        else:
            pa, n = held.pop(rng.randrange(len(held)))
            k.free_contig(pa, n)
    mirror.check()
    k.lazy_init()
    mirror.check()
    assert mirror.holes()  # free memory is holes in the extent


def test_the_extent_finds_runs_inside_free_blocks_that_alloc_contig_misses():
    # vm_phys_alloc_contig tests block heads only: with the low 16 MiB held by one
    # allocation, a run that must start 4 KiB into a free block is missed by it and found
    # through the extent.
    k = physmem.boot("firecracker-128m", lazy=False)
    low = 0x2001000
    assert k.alloc_contig(0, 2, low, low + 0x8000, PAGE, 0) is None
    assert k.alloc_constrained(2, low, low + 0x8000, PAGE, 0) == low


def test_pglist_contig_and_simple():
    k = physmem.boot("firecracker-128m", lazy=False)
    run = k.pglist_alloc(8, 0, 1 << 32, 0x8000, 0)
    assert run is not None and run[0] % 0x8000 == 0
    assert run == [run[0] + i * PAGE for i in range(8)]
    scattered = k.pglist_alloc(16, 0, 1 << 32, PAGE, 0, nsegs=16)
    assert scattered is not None and len(set(scattered)) == 16
    assert not set(run) & set(scattered)
    k.check()
    # the start hint moves on: the next contiguous run comes after the previous one
    run2 = k.pglist_alloc(8, 0, 1 << 32, 0x8000, 0)
    assert run2 is not None and run2[0] > run[0]
    for pa in run + scattered + run2:
        k.free_pages(pa, 0)
    k.check()


def test_pglist_boundary_and_limits():
    k = physmem.boot("firecracker-128m", lazy=False)
    run = k.pglist_alloc(4, 0x2000000, 0x3000000, PAGE, 0x4000)
    assert run is not None and run[0] // 0x4000 == (run[-1]) // 0x4000
    assert k.pglist_alloc(64, 0x2000000, 0x2010000, PAGE, 0) is None   # does not fit: ENOMEM
    with pytest.raises(E.ArgumentError):
        k.pglist_alloc(1, 0x9F000, 0xA0000, PAGE, 0)      # no segment: EINVAL


@pytest.mark.parametrize("args", [
    (0, 0, 1 << 30, PAGE, 0), (4, 1 << 30, 1 << 20, PAGE, 0), (4, 0, 1 << 30, 3 * PAGE, 0),
    (4, 0, 1 << 30, PAGE, 3 * PAGE), (16, 0, 1 << 30, PAGE, 0x4000), (4, 0, 1 << 30, 0, 0),
])
@pytest.mark.parametrize("via", ["alloc_constrained", "pglist_alloc", "contigmalloc"])
def test_bad_constraints_raise_and_change_nothing(args, via):
    k = physmem.boot("firecracker-128m", lazy=False)
    before = k.digest()
    with pytest.raises(E.ArgumentError):
        getattr(k, via)(*args)
    assert k.digest() == before


def test_dma_reserve_keeps_the_low_pages_and_serves_contig_first():
    k = physmem.boot("firecracker-1g", tunables=["vm.dma_reserved=0x1000000"])
    assert k.sysctl("vm.dma_reserved") == str(0x1000000)
    assert k.sysctl("vm.dma_free_pages") == "4096"
    assert k.dma.messages[-1] == "DMA space used: 16384k, remaining available: 16384k"
    # the reserve holds the lowest free pages: [0x1000, 0x9f000) and from 32 MiB up
    assert k.free_count(0) == (0x40000000 - 0x2000000) // PAGE + 158 - 4096
    pa = k.contigmalloc(16, 0, 1 << 32, PAGE, 0)
    assert pa == 0x10000                    # alist first fit, aligned to the power of two
    assert k.sysctl("vm.dma_free_pages") == str(4096 - 16)
    k.check()
    k.free_contig(pa, 16)
    assert k.sysctl("vm.dma_free_pages") == "4096"
    with pytest.raises(E.DoubleFreeError):
        k.free_contig(pa, 16)
    # a request the reserve cannot hold falls back to the buddy allocator
    big = k.contigmalloc(8192, 0, 1 << 32, PAGE, 0)
    assert big is not None and big >= k.dma.low_phys_reserved * PAGE
    k.check()


def test_one_page_frees_of_reserve_pages_go_through_the_reserve():
    """free_pages of one page checks the reserve like any free: a reserve page never
    handed out is refused (it is free in the alist), a handed-out one goes back there."""
    k = physmem.boot("firecracker-1g", lazy=False, tunables=["vm.dma_reserved=0x1000000"])
    before = k.digest()
    with pytest.raises(E.DoubleFreeError):
        k.free_pages(0x1000, 0)
    assert k.digest() == before
    pa = k.contigmalloc(1, 0, 1 << 32, PAGE, 0)
    assert pa is not None and pa < k.dma.low_phys_reserved * PAGE
    k.free_pages(pa, 0)
    assert k.sysctl("vm.dma_free_pages") == "4096"
    k.check()


def test_dma_reserve_is_capped_at_a_sixteenth_of_memory():
    k = physmem.boot("firecracker-128m", tunables=["vm.dma_reserved=0x8000000"])
    pages = (0x9F000 - 0x1000 + 0x8000000 - 0x100000) // PAGE       # the segments' pages
    assert int(k.sysctl("vm.dma_reserved")) == pages * PAGE // 16
    k.check()


class MirrorMachine(RuleBasedStateMachine):
    """The mirror and the buddy lists never disagree, whatever the operation."""

    def __init__(self):
        super().__init__()
        self.k = physmem.boot("firecracker-128m", lazy=True)
        self.mirror = self.k.attach_extent_mirror()
        self.held: list[tuple[int, int]] = []

    @rule(order=st.integers(0, 10), pool=st.sampled_from(["default", "direct"]))
    def alloc(self, order, pool):
        pa = self.k.alloc_pages(0, pool, order)
        if pa is not None:
            self.held.append((pa, 1 << order))

    @rule(n=st.integers(1, 64))
    def npages(self, n):
        self.held.extend((pa, 1) for pa in self.k.alloc_npages(0, "default", n))

    @rule(n=st.integers(1, 40), align=st.integers(0, 5), bshift=st.integers(0, 3))
    def constrained(self, n, align, bshift):
        boundary = 0 if bshift == 0 else 1 << (18 + bshift)
        pa = self.k.alloc_constrained(n, 0, 64 * MB, PAGE << align, boundary)
        if pa is not None:
            self.held.append((pa, n))

    @rule(n=st.integers(1, 300))
    def contig(self, n):
        pa = self.k.alloc_contig(0, n, 0, 1 << 32, PAGE, 0)
        if pa is not None:
            self.held.append((pa, n))

    @rule(data=st.data())
    def free(self, data):
        if self.held:
            pa, n = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
            self.k.free_contig(pa, n)

    @rule()
    def drain(self):
        self.k.lazy_init()

    @rule(data=st.data())
    def unfree(self, data):
        pa = data.draw(st.integers(0x2000, 0x7FFF)) * PAGE
        if self.k.unfree_page(pa):
            self.held.append((pa, 1))

    @invariant()
    def agree(self):
        self.k.check()


TestMirror = MirrorMachine.TestCase
TestMirror.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])
