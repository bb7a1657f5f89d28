"""vm_phys, function by function, with expectations worked out by hand from the kernel's
rules (each test says how).  The machine of most tests: one LOWMEM segment, pfns [1, 256),
whose phys_avail is pfns [5, 25): boot cuts that run into order 0 @5, order 1 @6, order 3 @8,
order 3 @16, order 0 @24 (vm_phys_enqueue_contig: ramp up, max blocks, ramp down)."""

from __future__ import annotations

import pytest

from physmem import errors as E
from physmem.freebsd.vm_phys import vm_addr_ok
from tests.conftest import GB, MB, PAGE, make_kernel


def small(lazy=False):
    return make_kernel([(0x1000, 0x100000)], [(5 * PAGE, 25 * PAGE)], lazy=lazy)


def queue(k, order, pool="default", flind=0, domain=0):
    """The pfns on a queue, head to tail."""
    p = k.param.pool_names()[pool] if pool != "lazyinit" else k.phys.LAZYINIT
    return list(k.phys.queue_iter(k.phys.qindex(domain, flind, p, order)))


def test_enqueue_contig_cuts_runs_into_maximal_aligned_blocks():
    k = small()
    assert queue(k, 0) == [5, 24]       # tail insertions in ascending address order
    assert queue(k, 1) == [6]
    assert queue(k, 2) == []
    assert queue(k, 3) == [8, 16]
    assert k.free_count(0) == 20


def test_flind_mapping_lowmem_only_machine_has_one_list():
    k = small()
    assert k.phys.nfreelists == 1
    # DEFAULT and DMA32 have no list (-1); LOWMEM is list 0.
    assert k.phys.flind_of == [-1, -1, 0]
    assert k.alloc_freelist_pages(0, "default", "default", 0) is None
    assert k.alloc_freelist_pages(0, "lowmem", "default", 0) == 5 * PAGE


def test_alloc_pages_takes_queue_heads_and_splits_keeping_the_lowest_part():
    k = small()
    assert k.alloc_pages(0, "default", 0) == 5 * PAGE      # head of order 0
    assert k.alloc_pages(0, "default", 0) == 24 * PAGE     # then the next one
    # order 0 is empty: split the order-1 block at 6, keep 6, queue 7 at order 0
    assert k.alloc_pages(0, "default", 0) == 6 * PAGE
    assert queue(k, 0) == [7]
    # order 2 empty, order 3 head is 8: keep 8..11, queue the upper half 12 at order 2
    assert k.alloc_pages(0, "default", 2) == 8 * PAGE
    assert queue(k, 2) == [12]
    assert queue(k, 3) == [16]


def test_free_pages_merges_with_buddy_and_queues_at_the_tail():
    k = small()
    assert k.alloc_pages(0, "default", 2) == 8 * PAGE     # splits 8 (o3): 12 queued (o2)
    k.free_pages(8 * PAGE, 2)       # buddy 12 is free at order 2: merge into 8 (o3);
    assert queue(k, 2) == []        # buddy of 8 at order 3 is pfn 0, outside the segment
    assert queue(k, 3) == [16, 8]   # the merged block goes to the TAIL


def test_free_pages_does_not_merge_with_allocated_buddy():
    k = small()
    assert k.alloc_pages(0, "default", 0) == 5 * PAGE
    assert k.alloc_pages(0, "default", 0) == 24 * PAGE
    k.free_pages(24 * PAGE, 0)      # buddy 25 lies outside phys_avail: never free
    k.free_pages(5 * PAGE, 0)       # buddy 4 likewise
    assert queue(k, 0) == [24, 5]


def test_stealing_takes_the_largest_block_and_leaves_the_remainder_in_the_requested_pool():
    k = small()
    # DIRECT is empty: steal the largest block (order 3, head 8) from DEFAULT, move it to
    # DIRECT whole, split it there: 12 (o2), 10 (o1), 9 (o0) stay in DIRECT.
    assert k.alloc_pages(0, "direct", 0) == 8 * PAGE
    assert queue(k, 2, "direct") == [12]
    assert queue(k, 1, "direct") == [10]
    assert queue(k, 0, "direct") == [9]
    assert queue(k, 3) == [16]
    assert k.phys.pool_of(15) == k.param.freepool_direct


def test_free_pages_adopts_buddies_from_other_pools():
    # pfns [32, 64): one order-5 block at 32.
    k = make_kernel([(0x20000, 0x40000)], [(0x20000, 0x40000)])
    assert k.alloc_pages(0, "default", 3) == 32 * PAGE   # queues 48 (o4), 40 (o3)
    assert k.alloc_pages(0, "direct", 3) == 48 * PAGE    # steals 48 (o4), queues 56 (o3)
    k.free_pages(48 * PAGE, 3)      # merges with DIRECT 56 into DIRECT 48 (o4)
    assert queue(k, 4, "direct") == [48]
    k.free_pages(32 * PAGE, 3)      # DEFAULT: merges 40, then DIRECT 48 moves to DEFAULT
    assert queue(k, 5) == [32]
    assert queue(k, 4, "direct") == []
    assert all(k.phys.pool_of(m) == k.param.freepool_default for m in range(32, 64))


def test_alloc_npages_fills_from_small_blocks_and_returns_the_leftover_at_the_tail():
    k = small()
    pas = k.alloc_npages(0, "default", 3)
    # order 0: 5 then 24; order 1: 6 -- one page of it, 7 goes back at order 0 (tail)
    assert pas == [5 * PAGE, 24 * PAGE, 6 * PAGE]
    assert queue(k, 0) == [7]


def test_alloc_npages_returns_a_short_count_when_memory_runs_out():
    k = small()
    pas = k.alloc_npages(0, "default", 64)
    assert len(pas) == 20
    assert pas == [p * PAGE for p in [5, 24, 6, 7, *range(8, 24)]]
    assert k.free_count(0) == 0


def test_alloc_npages_runs_are_the_same_pages_as_runs_of_the_kernel_array():
    a, b = small(), small()
    runs = a.alloc_npages_runs(0, "default", 19)
    # one run per block taken: 5 and 24 (order 0), 6-7 (order 1), 8-15, 16-23 (order 3)
    assert runs == [(5 * PAGE, 1), (24 * PAGE, 1), (6 * PAGE, 2), (8 * PAGE, 8),
                    (16 * PAGE, 7)]
    assert [p for pa, n in runs for p in range(pa, pa + n * PAGE, PAGE)] == \
        b.alloc_npages(0, "default", 19)
    assert a.digest() == b.digest()
    with pytest.raises(E.ArgumentError):
        a.alloc_npages_runs(0, "default", 0)
    # The same runs as one flat list of pfns and counts (what the replay prints from);
    # its bad arguments are refused the same way, with nothing taken.
    c = small()
    assert c.alloc_npages_pfns(0, "default", 19) == [5, 1, 24, 1, 6, 2, 8, 8, 16, 7]
    assert c.digest() == a.digest()
    for args, error in (((0, "default", 0), E.ArgumentError), ((0, "nope", 1), E.PoolError),
                        ((3, "default", 1), E.DomainError)):
        with pytest.raises(error):
            c.alloc_npages_pfns(*args)
    assert c.digest() == a.digest()


def test_alloc_contig_tests_block_heads_and_puts_the_excess_at_the_queue_heads():
    k = small()
    # 3 pages: best order fls(2) = 2, order 2 is empty, order 3's head 8 fits.
    assert k.alloc_contig(0, 3, 0, 1 << 32, PAGE, 0) == 8 * PAGE
    # the rest of the 8-block, [11, 16), goes back as 11 (o0) and 12 (o2) at the HEAD
    assert queue(k, 0) == [11, 5, 24]
    assert queue(k, 2) == [12]


def test_alloc_contig_alignment_and_boundary():
    k = small()
    # 2 pages aligned to 16 pages: only the order-3 block at 16 starts on such a line
    assert k.alloc_contig(0, 2, 0, 1 << 32, 16 * PAGE, 0) == 16 * PAGE
    # 8 pages that must not cross a 16 KiB line: impossible
    assert k.alloc_contig(0, 8, 0, 1 << 32, PAGE, 4 * PAGE) is None
    # below 9 pages: the order-3 block at 8 ends at 16 > 9: nothing fits 4 pages below 9
    assert k.alloc_contig(0, 4, 0, 9 * PAGE, PAGE, 0) is None


def test_vm_addr_ok():
    assert vm_addr_ok(0x2000, 0x4000, 0x2000, 0x10000)
    assert not vm_addr_ok(0x1000, 0x1000, 0x2000, 0)
    assert not vm_addr_ok(0xE000, 0x4000, 0x1000, 0x10000)   # crosses 64 KiB
    assert vm_addr_ok(0, 0x1000, 0, 0)                         # alignment 0 accepts only 0
    assert not vm_addr_ok(0x1000, 0x1000, 0, 0)


def test_free_contig_frees_the_interior_without_coalescing_then_the_ends():
    k = small()
    assert len(k.alloc_npages(0, "default", 20)) == 20
    # [5, 25): max_order 4; head piece 5 (o0), tail piece 24 (o0); interior [6, 24)
    # through enqueue_contig: 6 (o1), 8 (o3), 16 (o3) -- the boot layout again.
    k.free_contig(5 * PAGE, 20)
    assert queue(k, 0) == [5, 24]
    assert queue(k, 1) == [6]
    assert queue(k, 3) == [8, 16]


def test_unfree_page_returns_the_halves_to_the_queue_heads():
    k = small()
    before = k.free_count(0)
    assert k.unfree_page(9 * PAGE) is True
    # 9 lies in block 8 (o3): give back 12 (o2), 10 (o1), 8 (o0), all at the head
    assert queue(k, 3) == [16]
    assert queue(k, 2) == [12]
    assert queue(k, 1) == [10, 6]
    assert queue(k, 0) == [8, 5, 24]
    assert k.free_count(0) == before - 1
    assert k.unfree_page(9 * PAGE) is False      # already out
    k.free_pages(9 * PAGE, 0)                    # an unfreed page may be freed


def test_find_range_unsigned_quirk():
    k = make_kernel([(16 * MB, 48 * MB), (64 * MB, 80 * MB)],
                    [(16 * MB, 48 * MB), (64 * MB, 80 * MB)])
    assert k.find_range(0, 1, 0x3000000, 1 << 40) == 1     # low == seg 0's end: skipped
    assert k.find_range(0, 1, 0x3000001, 1 << 40) == 0     # low > end: wraps, seg 0
    assert k.find_range(0, 1, 0x6000000, 1 << 40) == 0     # likewise
    assert k.find_range(0, 1, 0, 16 * MB) == -1            # seg 0 starts at high


def test_add_seg_splits_at_lowmem_and_dma32_then_init_coalesces():
    k = make_kernel([(0x1000, 0x9F000), (0x100000, 6 * GB)],
                    [(0x1000, 0x9F000), (0x2000000, 6 * GB)])
    segs = [(s.start, s.end, s.flind) for s in k.phys.segs]
    # [1M, 6G) is split at 16 MiB and 4 GiB; no DMA32 list exists (3 GiB < 64 GiB above
    # 4 GiB), so [16M, 4G) and [4G, 6G) share DEFAULT's queues and coalesce again.
    assert segs == [(0x1000, 0x9F000, 1), (0x100000, 0x1000000, 1), (0x1000000, 6 * GB, 0)]
    assert k.phys.flind_of == [0, 0, 1]      # dma32 names DEFAULT's list


def test_dma32_list_exists_only_above_64_gib_over_4_gib():
    def lists(above):
        k = make_kernel([(0x100000, 3 * GB), (4 * GB, 4 * GB + above)],
                        [(0x2000000, 3 * GB), (4 * GB, 4 * GB + above)])
        return k.phys.nfreelists, k.phys.flind_of
    assert lists(64 * GB) == (2, [0, 0, 1])                # exactly 64 GiB: no DMA32
    assert lists(64 * GB + 4 * MB) == (3, [0, 1, 2])       # more: DMA32 is list 1


def test_arm64_with_all_memory_below_4g_has_only_dma32():
    k = make_kernel([(0x40000000, 0x80000000)], [(0x41200000, 0x80000000)], arch="arm64")
    assert k.phys.nfreelists == 1
    assert k.phys.flind_of == [-1, 0]
    assert k.alloc_freelist_pages(0, "default", "default", 0) is None
    assert k.alloc_freelist_pages(0, "dma32", "default", 0) is not None


def test_lazy_boot_queues_the_same_blocks_in_the_lazyinit_pool():
    eager, lazy = small(), small(lazy=True)
    for o in range(13):
        assert queue(lazy, o, "lazyinit") == queue(eager, o)
        assert queue(lazy, o) == []
    assert lazy.free_count(0) == eager.free_count(0)


def test_sysctl_phys_segs_text():
    k = small()
    assert k.sysctl("vm.phys_segs") == (
        "\nSEGMENT 0:\n\nstart:     0x1000\nend:       0x100000\ndomain:    0\n"
        # LOWMEM is flind 0 here: offset 0
        "free list: 0xffffffff81e00000\n")


def test_sysctl_phys_free_counts_blocks_per_order_and_pool():
    k = small()
    text = k.sysctl("vm.phys_free")
    lines = text.split("\n")
    assert lines[:8] == ["", "DOMAIN 0:", "", "FREE LIST 0:", "",
                         "  ORDER (SIZE)  |  NUMBER",
                         "                |  POOL 0  |  POOL 1  |  POOL 2",
                         "--            -- --      -- --      -- --      --"]
    assert "   3 (    32K)  |       0  |       2  |       0" in lines
    assert "   0 (     4K)  |       0  |       2  |       0" in lines
    assert text.endswith("   0 (     4K)  |       0  |       2  |       0\n")


@pytest.mark.parametrize("arch,cols", [("amd64", 3), ("arm64", 3), ("riscv", 2)])
def test_sysctl_phys_free_has_one_column_per_pool(arch, cols):
    k = make_kernel([(0x80000000, 0x80400000)], [(0x80000000, 0x80400000)], arch=arch)
    header = k.sysctl("vm.phys_free").split("\n")[6]
    assert header.count("POOL") == cols
