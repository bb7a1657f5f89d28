"""Lazy page initialisation (seed b16b4c22d2d1): the LAZYINIT pool, on-demand chunk
initialisation, the drain, uninitialised page structures, the drain thread, the blacklist.
Expectations are worked out by hand from the commit's code (each test says how)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading

import pytest

import physmem
from physmem import errors as E
from tests.conftest import MB, PAGE, make_kernel

# The fact sheet's example: LOWMEM segments [0x1000, 0x9f000), [1M, 16M); DEFAULT
# [16M, 48M).  Boot queues pfn [1, 159) as orders 0..6 then 4..0, [256, 4096) as 8..11
# (LOWMEM, list 1) and two order-12 chunks at 16M and 32M (list 0), all in LAZYINIT.
SEGS = [(0x1000, 0x9F000), (0x100000, 0x3000000)]
AVAIL = [(0x1000, 0x9F000), (0x100000, 0x3000000)]


def q(k, flind, pool, order, domain=0):
    return list(k.phys.queue_iter(k.phys.qindex(domain, flind, pool, order)))


def test_lazy_boot_queues_chunks_in_the_lazyinit_pool_with_only_heads_initialised():
    k = make_kernel(SEGS, AVAIL, lazy=True)
    L = k.phys.LAZYINIT
    assert [len(q(k, 1, L, o)) for o in range(13)] == [2, 2, 2, 2, 2, 1, 1, 0, 1, 1, 1, 1, 0]
    assert q(k, 0, L, 12) == [0x1000, 0x2000]
    pages = k.phys.pages
    # chunk heads are initialised (alone: the sparse store), their other pages are not
    assert pages.raw(0x1000) and not pages.is_dense(0x1000)
    assert not pages.raw(0x1001) and not pages.raw(0x1FFF)
    with pytest.raises(E.UninitializedPageError):
        pages.word(0x1001)
    with pytest.raises(E.UninitializedPageError):
        k.phys.order_of(0x1800)


def test_enq_chunk_initialises_the_page_after_each_chunk():
    k = make_kernel(SEGS, AVAIL, lazy=True)
    pages, L = k.phys.pages, k.phys.LAZYINIT
    # run [256, 4096): chunks 256 (o8), 512 (o9), 1024 (o10), 2048 (o11); each chunk's
    # enq_chunk initialised the next head, the last one page 4096 = 0x1000000, which then
    # became the head of the next segment's run (re-initialised with its segind).
    for head in (512, 1024, 2048, 4096):
        assert pages.raw(head) & 3 == L
    assert k.phys.segind_of(4096) == 2
    # the page after the last chunk of the last run lies past every segment: initialised
    # all the same (the kernel has no bound check; the page array has a spare entry)
    assert pages.raw(0x3000) & 3 == L
    assert k.phys.paddr_to_seg(0x3000000) is None


def test_an_early_request_takes_a_whole_chunk_and_splits_it_in_the_requested_pool():
    k = make_kernel(SEGS, AVAIL, lazy=True)
    L, D = k.phys.LAZYINIT, k.param.freepool_default
    before = k.phys.pages.ninit
    # DEFAULT is empty: the largest LAZYINIT block of list 0 (the chunk at 16M) is taken,
    # initialised whole (4095 more page structures) and split: orders 11..0 in DEFAULT.
    assert k.alloc_pages(0, "default", 0) == 0x1000000
    assert k.phys.pages.ninit - before == 4095
    assert [len(q(k, 0, D, o)) for o in range(12)] == [1] * 12
    assert q(k, 0, D, 0) == [0x1001]
    assert q(k, 0, L, 12) == [0x2000]
    assert all(k.phys.pages.is_dense(p) for p in range(0x1000, 0x2000))
    assert k.stats.on_demand == 4095


def test_a_range_starting_mid_chunk_is_not_found_inside_a_lazyinit_chunk():
    k = make_kernel(SEGS, AVAIL, lazy=True)
    k.alloc_pages(0, "default", 0)
    # Every free block head of list 0 lies below 0x2001000 (the LAZYINIT chunk starts at
    # 0x2000000): contig allocation tests heads only, so nothing is found in [low, high).
    assert k.alloc_contig(0, 4, 0x2001000, 0x3000000, PAGE, 0) is None
    # ... while a request that may start at the chunk head takes it, initialising it
    assert k.alloc_contig(0, 4, 0x2000000, 0x3000000, PAGE, 0) == 0x2000000
    assert k.phys.pages.is_dense(0x2FFF)
    # and the excess of the chunk goes back to the DEFAULT queue heads
    assert q(k, 0, k.param.freepool_default, 2)[0] == 0x2004


NUMA = [(0x1000, 0x9F000, 0), (0x100000, 0x80000000, 0), (0x80000000, 0xC0000000, 1)]
NUMA_AVAIL = [(0x1000, 0x9F000), (0x2000000, 0xC0000000)]


def test_find_range_drains_only_its_domain_and_only_when_it_returns_a_segment():
    k = make_kernel(NUMA, NUMA_AVAIL, lazy=True)
    L = k.phys.LAZYINIT
    lazy_blocks = lambda d: sum(k.phys.count(d, f, L, o)  # noqa: E731
                                for f in range(k.phys.nfreelists) for o in range(13))
    assert k.find_range(0, 1, 0, 0x1000) == -1        # no segment: nothing drained
    assert lazy_blocks(0) > 0
    assert k.find_range(0, 16, 0, 1 << 40) == 0       # segment 0 of domain 0: drain 0
    assert lazy_blocks(0) == 0 and lazy_blocks(1) > 0
    assert k.phys.default_freepool == L               # only lazy_init() resets it
    # domain 1 still steals a whole chunk from LAZYINIT, domain 0 from DEFAULT
    assert k.alloc_pages(1, "direct", 0) == 0x80000000
    # unfree_page drains its domain first
    assert k.unfree_page(0x90000000) is True
    assert lazy_blocks(1) == 0
    assert k.stats.drain > 0


def test_unfree_page_charges_the_lower_domain_for_the_first_page_of_the_next():
    k = make_kernel(NUMA, NUMA_AVAIL, lazy=False)
    f0, f1 = k.free_count(0), k.free_count(1)
    # vm_phys_domain() tests mem_affinity ends inclusively: 0x80000000 is charged to 0
    assert k.unfree_page(0x80000000) is True
    assert (k.free_count(0), k.free_count(1)) == (f0 - 1, f1)
    assert k.unfree_page(0x80001000) is True
    assert (k.free_count(0), k.free_count(1)) == (f0 - 1, f1 - 1)


def test_a_segment_tail_beyond_the_last_avail_range_is_never_initialised():
    k = make_kernel([(0x100000, 0x4000000)], [(0x2000000, 0x3000000)], lazy=True)
    pages = k.phys.pages
    assert pages.raw(0x3000)            # the page after the run (enq_chunk)
    assert not pages.raw(0x3001)        # the rest of the tail: never
    before = k.digest()
    with pytest.raises(E.AddressError, match="never initialised"):
        k.unfree_page(0x3001000)
    assert k.digest() == before
    assert k.unfree_page(0x3000000) is False   # initialised, not free
    k.lazy_init()
    assert not pages.raw(0x3001)        # the drain only touches free blocks


def test_lazy_and_eager_boots_agree_on_counts_and_segments():
    for name in ("firecracker-1g", "pc-6g", "server-96g-2dom", "rpi4-8g"):
        e = physmem.boot(name, lazy=False)
        lz = physmem.boot(name, lazy=True)
        assert e.free_counts == lz.free_counts
        assert e.sysctl("vm.phys_segs") == lz.sysctl("vm.phys_segs")
        # the same blocks, in POOL 0 instead of POOL 1
        for d in range(e.phys.ndomains):
            for f in range(e.phys.nfreelists):
                for o in range(13):
                    assert e.phys.count(d, f, 1, o) == lz.phys.count(d, f, 0, o)
        lz.lazy_init()
        assert lz.free_counts == e.free_counts


def test_same_workload_in_both_modes_agrees_where_the_kernel_does():
    """free_count, find_range, unfree_page and allocation success are the same in both
    modes for a workload that never runs short; the pages returned may differ."""
    rng = random.Random(5)
    ks = {m: physmem.boot("firecracker-128m", lazy=m == "lazy") for m in ("eager", "lazy")}
    held: dict[str, list[tuple[int, int]]] = {m: [] for m in ks}
    for _ in range(600):
        x = rng.random()
        order = rng.choice((0, 0, 1, 2, 3))
        pool = rng.choice(("default", "direct"))
        pick = rng.random()
        res = {}
        for m, k in ks.items():
            if x < 0.5:
                pa = k.alloc_pages(0, pool, order)
                res[m] = pa is not None
                if pa is not None:
                    held[m].append((pa, order))
            elif x < 0.85 and held[m]:
                pa, o = held[m].pop(int(pick * len(held[m])))
                k.free_pages(pa, o)
                res[m] = True
            elif x < 0.95:
                res[m] = k.find_range(0, 64, 0, 1 << 40)
            else:
                res[m] = k.free_count(0)
        assert res["eager"] == res["lazy"]
        assert ks["eager"].free_count(0) == ks["lazy"].free_count(0)


def test_tunable_selects_the_mode_and_defaults_to_lazy():
    k = physmem.boot("firecracker-128m")
    assert k.lazy and k.sysctl("debug.vm.lazy_page_init") == "1"
    k = physmem.boot("firecracker-128m", tunables=["debug.vm.lazy_page_init=0"])
    assert not k.lazy and k.sysctl("debug.vm.lazy_page_init") == "0"
    for bad in ("debug.vm.lazy_page_init=2", "debug.vm.lazy_page_init=yes",
                "debug.vm.lazy_page_init", "vm.lazy=1"):
        with pytest.raises(E.TunableError):
            physmem.boot("firecracker-128m", tunables=[bad])


@pytest.mark.parametrize("lazy", [False, True])
def test_blacklist_tunable_removes_pages_at_boot(lazy):
    k = physmem.boot("firecracker-128m", lazy=lazy,
                     tunables=["vm.blacklist=0x2000123,0x3000000 0x9f000 0x7fff000"])
    # 0x2000123 truncates to its page; 0x9f000 lies in no segment: skipped, as the kernel
    # does ("page does not exist, no failure")
    assert k.sysctl("vm.page_blacklist") == "0x2000000,0x3000000,0x7fff000"
    assert k.free_count(0) == (0x9F000 - 0x1000 + 0x8000000 - 0x2000000) // PAGE - 3
    if lazy:
        assert k.phys.initdone[0]     # unfree_page drained the domain during boot
    assert k.blacklist_add(0x3000000) is False     # already out
    k.free_pages(0x7FFF000, 0)                     # a blacklisted page is allocated
    assert k.sysctl("vm.page_blacklist").endswith("0x7fff000")


def test_drain_thread_with_allocating_threads():
    k = physmem.boot("firecracker-1g", lazy=True)
    seen: set[int] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[tuple[int, int]] = []
        try:
            for _ in range(3000):
                if rng.random() < 0.55 or not mine:
                    o = rng.choice((0, 0, 1, 3, 9))
                    pa = k.alloc_pages(0, rng.choice(("default", "direct")), o)
                    if pa is None:
                        continue
                    with lock:
                        for p in range(pa, pa + (PAGE << o), PAGE):
                            assert p not in seen, f"page {p:#x} handed out twice"
                            seen.add(p)
                    mine.append((pa, o))
                else:
                    pa, o = mine.pop(rng.randrange(len(mine)))
                    with lock:
                        for p in range(pa, pa + (PAGE << o), PAGE):
                            seen.remove(p)
                    k.free_pages(pa, o)
            for pa, o in mine:
                with lock:
                    for p in range(pa, pa + (PAGE << o), PAGE):
                        seen.remove(p)
                k.free_pages(pa, o)
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    drain = k.start_aps()
    assert drain is not None and drain.name == "vmlazyinit"
    for t in threads:
        t.join()
    assert k.wait_lazy_init(timeout=60)
    assert not errors, errors
    assert not seen
    k.check()
    assert k.phys.default_freepool == k.param.freepool_default
    assert all(k.phys.initdone[d] for d in range(k.phys.ndomains))
    assert k.free_count(0) == (0x9F000 - 0x1000 + 0x40000000 - 0x2000000) // PAGE
    assert k.stats.drain > 0


def test_lazy_init_drains_smallest_orders_first_and_re_frees_with_coalescing():
    k = make_kernel(SEGS, AVAIL, lazy=True)
    D = k.param.freepool_default
    k.lazy_init()
    # LOWMEM list: pfn 1 (o0) is drained first, then 158 (o0), 2 (o1) ... the re-free of
    # pfn 1 finds its buddy 0 outside the segment; nothing merges across the two runs'
    # blocks because boot already cut them maximally.
    assert [len(q(k, 1, D, o)) for o in range(13)] == [2, 2, 2, 2, 2, 1, 1, 0, 1, 1, 1, 1, 0]
    assert q(k, 1, D, 0) == [0x1, 0x9E]
    assert q(k, 0, D, 12) == [0x1000, 0x2000]
    # every free page but the 18 block heads was initialised by the drain
    free = (0x9F - 0x1) + (0x3000 - 0x100)
    assert k.stats.drain == free - 18
    assert k.stats.on_demand == 0


def test_memory_follows_initialisation():
    k = physmem.boot("firecracker-1g", lazy=True)
    dense0 = k.phys.pages.dense_bytes()
    k.alloc_pages(0, "default", 0)                  # initialises one 16 MiB chunk
    grown = k.phys.pages.dense_bytes() - dense0
    assert 8 * 1024 <= grown <= 16 * 1024           # 4096 entries x 2 bytes (+ alignment)
    e = physmem.boot("firecracker-1g", lazy=False)
    assert e.phys.pages.dense_bytes() >= 262_000 * 2


def test_lazy_boot_of_1_tib_stays_small():
    # The peak is the child's own VmHWM: ru_maxrss can report the parent's (pytest's,
    # with numba loaded) when the child is started by vfork.
    code = ("import json, resource, sys, physmem; k = physmem.boot('server-1t', lazy=True); "
            "hwm = [int(x.split()[1]) for x in open('/proc/self/status') "
            "if x.startswith('VmHWM')] or [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]; "
            "print(json.dumps({'rss': hwm[0], 'numba': 'numba' in sys.modules, "
            "'heads': len(k.phys.head_order), 'free': sum(k.free_counts), "
            "'dense': k.phys.pages.dense_bytes()}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout)
    assert out["rss"] < 128 * 1024                   # KiB: under 128 MiB peak
    assert not out["numba"]                          # boot runs the queue core uncompiled
    # about one free block per 16 MiB chunk (1 TiB less the page array: ~64 K chunks)
    assert out["free"] // 4096 <= out["heads"] <= out["free"] // 4096 + 200
    # dense entries: the pages boot's gap loop initialises (the kernel image hole and the
    # page array carved from the top of domain 0, which a later phys_avail pair follows)
    assert out["dense"] < 16 * MB


def test_riscv_boots_eagerly_with_two_pools():
    k = physmem.boot("qemu-virt-riscv-1g")
    assert not k.lazy and k.phys.NFP == 2 and k.phys.NFO == 12
    assert k.free_count(0) == (0xC0000000 - 0x81200000) // PAGE
    assert k.sysctl("vm.phys_segs").endswith("free list: 0xffffffff81e00000\n")
    with pytest.raises(E.ArgumentError):
        k.sysctl("debug.vm.lazy_page_init")
