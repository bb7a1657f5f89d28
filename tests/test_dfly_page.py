"""DragonFly's page layer: boot, colours, allocation classes, freeing, busy/wire/hold,
transitions, objects and the page hash, valid/dirty bits, fictitious pages, per-CPU
vmstats, views.  Expectations are derived by hand from the kernel's rules (comments)."""

from __future__ import annotations

import numpy as np
import pytest

from physmem.dragonfly.vm_page import (
    VM_ALLOC_CPU,
    VM_ALLOC_INTERRUPT,
    VM_ALLOC_NORMAL,
    VM_ALLOC_NULL_OK,
    VM_ALLOC_QUICK,
    VM_ALLOC_SYSTEM,
    VM_ALLOC_ZERO,
    CpuTopology,
    DragonflyVm,
    PageStateError,
    parse_req,
)
from physmem.dragonfly.vm_page_array import (
    ACT_INIT,
    PBUSY_LOCKED,
    PG_FICTITIOUS,
    PG_MAPPEDMULTI,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_COUNT,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_NONE,
    VM_PAGE_BITS_ALL,
    VmStats,
    boot_color,
    queue_base,
)
from physmem.dragonfly.vm_pageout import derive_thresholds
from physmem.errors import AddressError, ArgumentError, PhysmemError
from physmem.machine import Machine, RamRange

from .dfly_util import digest

MIB = 1 << 20


@pytest.fixture
def vm() -> DragonflyVm:
    return DragonflyVm("firecracker-128m")


def small(mib: int = 64, source: str = "dragonfly", **kw) -> DragonflyVm:
    m = Machine(f"t{mib}", [RamRange(0, 0x9FC00), RamRange(0x100000, mib * MIB)],
                page_array="none")
    return DragonflyVm(m, source=source, **kw)


def alloc(vm: DragonflyVm, obj=None, pindex: int = 0, req: int = VM_ALLOC_NORMAL) -> int:
    m = vm.vm_page_alloc(obj, pindex, req)
    assert m is not None
    return m


# -- constants and arithmetic -------------------------------------------------------------
def test_queue_indices_and_colour_formula():
    assert (PQ_FREE, PQ_INACTIVE, PQ_ACTIVE, PQ_CACHE, PQ_HOLD, PQ_COUNT) == \
        (1, 1025, 2049, 3073, 4097, 5121)
    assert queue_base(PQ_ACTIVE + 1023) == PQ_ACTIVE and queue_base(PQ_CACHE) == PQ_CACHE
    assert queue_base(PQ_NONE) == PQ_NONE
    # pc = (pfn ^ pfn/1024 ^ pfn/1M) & 1023
    assert boot_color(0x7c00) == (0x7c00 ^ 0x1f ^ 0) & 1023 == 0x1f
    assert boot_color(0x123456) == (0x123456 ^ 0x48D ^ 0x1) & 1023


def test_thresholds_match_the_fact_sheet_example():
    v = VmStats(v_page_count=4_000_000)
    derive_thresholds(v)
    assert (v.v_free_min, v.v_free_reserved, v.v_free_severe, v.v_pageout_free_min,
            v.v_interrupt_free_min, v.v_free_target, v.v_paging_wait, v.v_paging_start,
            v.v_paging_target1, v.v_paging_target2) == \
        (20064, 10039, 10032, 5023, 2515, 40128, 40128, 60192, 80256, 100320)


def test_parse_req():
    assert parse_req("NORMAL|ZERO") == VM_ALLOC_NORMAL | VM_ALLOC_ZERO
    assert parse_req("cpu(3)|quick") == VM_ALLOC_CPU(3) | VM_ALLOC_QUICK
    assert VM_ALLOC_CPU(3) == (3 << 16) | 0x200
    with pytest.raises(ArgumentError):
        parse_req("NORMAL|BOGUS")


# -- boot -----------------------------------------------------------------------------------
def test_queue_fast_operations_are_their_plain_ones():
    # Queues.remove_head and move_to_tail (the allocation's and the pagedaemon's fused
    # operations) must leave what remove/insert leave, whatever the representation.
    import random

    from physmem.dragonfly.vm_page_array import PageArray, Queues

    rng = random.Random(5)
    fast, plain = Queues(PageArray(0, 64)), Queues(PageArray(0, 64))
    where = {}                                     # page -> queue, the same in both
    for _ in range(3000):
        q = rng.choice((1, 2, 3))
        members = [i for i, qq in where.items() if qq == q]
        op = rng.random()
        if op < 0.4:
            free = [i for i in range(64) if i not in where]
            if free:
                i, head = rng.choice(free), rng.random() < 0.5
                fast.insert(q, i, head)
                plain.insert(q, i, head)
                where[i] = q
        elif op < 0.7 and members:
            m = fast.remove_head(q)
            first = plain.first(q)
            plain.remove(q, first)
            assert m == first
            del where[m]
        elif members:
            i = rng.choice(members)
            fast.move_to_tail(q, i)
            plain.remove(q, i)
            plain.insert(q, i, False)
        for qq in (1, 2, 3):
            assert list(fast.iter(qq)) == list(plain.iter(qq))
            assert fast.lcnt[qq] == plain.lcnt[qq] and fast.nonempty[qq] == plain.nonempty[qq]
        assert bytes(fast.pages.arrays["queue"]) == bytes(plain.pages.arrays["queue"])


def test_boot_counts_and_queue_order(vm):
    c = vm.counts()
    assert c["free"] == vm.vmstats.v_free_count and c["active"] == c["cache"] == 0
    assert vm.vmstats.v_page_count == c["free"] + vm.vmstats.v_dma_pages
    # Pages were added in ascending order at the head: each colour's queue reads from the
    # highest address down.
    for colour in (0, 31, 500):
        pages = list(vm.queues.iter(PQ_FREE + colour))
        assert pages == sorted(pages, reverse=True)
        assert all(vm.pages.pc[m] == colour == boot_color(m + vm.first_pfn) for m in pages)


def test_dma_reserve_pages_are_wired_fictitious_and_not_free(vm):
    a = vm.pages.arrays
    low = [m for m in range(vm.pages.npages) if m + vm.first_pfn < vm.low_phys_reserved
           and a["wire_count"][m]]
    assert low and all(a["flags"][m] & PG_FICTITIOUS | PG_UNQUEUED for m in low)
    assert all(a["queue"][m] == PQ_NONE for m in low)
    assert int(vm.sysctl("vm.dma_free_pages")) == vm.dma_alist.bfree


# -- allocation -----------------------------------------------------------------------------
def test_colour_choice_one_socket_two_cores(vm):
    # 1 socket x 2 cores x 1 thread: phys 1024, grp 512, cs 512:
    # colour = core*512 + (pindex + pg_color) % 512
    vm.object_create()
    o = vm.object_create()              # vm_quickcolor: 0, 23, 46, ... on this CPU
    assert o.pg_color == 23
    assert vm.vm_get_pg_color(0, o, 0) == 23
    assert vm.vm_get_pg_color(1, o, 0) == 512 + 23
    assert vm.vm_get_pg_color(1, o, 500) == 512 + (523 % 512)
    assert vm.vm_get_pg_color(0, None, 7) == 7


def test_object_colour_is_vm_quickcolor_per_cpu_plus_the_thread_term(vm):
    # gd_quick_color is per CPU and steps by PQ_PRIME2; the creating thread's term
    # (curthread >> 10) is added unmasked.
    assert [vm.object_create().pg_color for _ in range(3)] == [0, 23, 46]
    with vm.on_cpu(1):
        assert vm.object_create().pg_color == 0        # CPU 1's own counter
        vm.set_thread_color(5000)
        assert vm.object_create().pg_color == 5000 + 23
    assert vm.object_create().pg_color == 5000 + 69     # CPU 0's counter, this thread's term
    vm.set_thread_color(0)
    assert vm.object_create().pg_color == 92
    with pytest.raises(ArgumentError):
        vm.set_thread_color(-1)


def test_alloc_takes_the_head_of_its_colour_and_free_puts_it_back(vm):
    o = vm.object_create()
    colour = vm.vm_get_pg_color(0, o, 0)
    head = vm.queues.first(PQ_FREE + colour)
    m = alloc(vm, o, 0)
    assert m == head
    p = vm.pages
    assert p.queue[m] == PQ_NONE and p.busy_count[m] == PBUSY_LOCKED
    assert p.obj[m] == o.id and p.pindex[m] == 0 and vm.vm_page_lookup(o, 0) == m
    assert p.act_count[m] == 0 and p.valid[m] == 0
    vm.vm_page_free(m)
    # free_toq: head of PQ_FREE + pc, unbusied, out of the object
    assert vm.queues.first(PQ_FREE + colour) == m
    assert p.busy_count[m] == 0 and p.obj[m] == 0 and vm.vm_page_lookup(o, 0) is None
    assert alloc(vm, o, 0) == m                  # LIFO: the same page again


def test_widening_search_when_the_colour_is_empty(vm):
    colour = 5
    q = PQ_FREE + colour
    taken = []
    while vm.queues.lcnt[q]:
        taken.append(alloc(vm, None, colour))
    # The colour is empty: the search widens to colour 6 first (same 16-set, next one).
    nxt = vm.queues.first(PQ_FREE + 6)
    assert alloc(vm, None, colour) == nxt
    for m in taken:
        vm.vm_page_free(m)


def test_class_floors():
    vm = small(64)
    s = vm.vmstats
    held = []
    # NORMAL stops at v_free_reserved.
    while True:
        m = vm.vm_page_alloc(None, 0, VM_ALLOC_QUICK)
        if m is None:
            break
        held.append(m)
    vm.vmstats_rollup()
    assert s.v_free_count == s.v_free_reserved - 1
    assert vm.deficit >= 1
    # SYSTEM goes on while free > interrupt_free_min and the cache is empty.
    while (m := vm.vm_page_alloc(None, 0, VM_ALLOC_SYSTEM)) is not None:
        held.append(m)
    vm.vmstats_rollup()
    assert s.v_free_count == s.v_interrupt_free_min
    # INTERRUPT drains to zero.
    while (m := vm.vm_page_alloc(None, 0, VM_ALLOC_INTERRUPT)) is not None:
        held.append(m)
    vm.vmstats_rollup()
    assert s.v_free_count == 0 and vm.counts()["free"] == 0
    for m in held:
        vm.vm_page_free(m)
    vm.vmstats_rollup()
    assert vm.counts()["free"] == s.v_free_count


def test_normal_recycles_cache_pages_quick_does_not():
    vm = small(64)
    o = vm.object_create("vnode")
    pages = []
    while (m := vm.vm_page_alloc(o, len(pages), VM_ALLOC_QUICK)) is not None:
        pages.append(m)
    for m in pages[:50]:
        vm.vm_page_set_validclean(m, 0, 4096)
        vm.vm_page_cache(m)                       # clean: to PQ_CACHE, unbusied
        assert queue_base(vm.pages.queue[m]) == PQ_CACHE
    assert vm.vm_page_alloc(None, 0, VM_ALLOC_QUICK) is None
    free_before = vm.counts()["free"]
    m = vm.vm_page_alloc(None, 0, VM_ALLOC_NORMAL)
    # A cache page was recycled through PQ_FREE (which lifted free to the floor), then
    # the search by colour took a free page: the cache shrank by one, free is unchanged.
    assert m is not None and vm.pages.obj[m] == 0
    assert vm.counts()["cache"] == 49 and vm.counts()["free"] == free_before
    assert vm.cpu[0].cnt["v_tfree"] >= 1
    vm.vm_page_free(m)
    for m in pages[50:]:
        vm.vm_page_free(m)


def test_page_race_and_null_ok(vm):
    o = vm.object_create()
    m = alloc(vm, o, 3)
    before = digest(vm)
    with pytest.raises(PageStateError):
        vm.vm_page_alloc(o, 3, VM_ALLOC_NORMAL)
    assert digest(vm) == before
    assert vm.vm_page_alloc(o, 3, VM_ALLOC_NORMAL | VM_ALLOC_NULL_OK) is None
    vm.vm_page_free(m)


# -- busy, wire, hold -----------------------------------------------------------------------
def test_bad_lifecycle_calls_are_refused_and_change_nothing(vm):
    o = vm.object_create()
    m = alloc(vm, o, 0)
    vm.vm_page_activate(m)
    vm.vm_page_wakeup(m)
    free_page = vm.queues.first(PQ_FREE + 100)
    cases = [
        lambda: vm.vm_page_free(m),                       # not busied
        lambda: vm.vm_page_wakeup(m),                     # not busied
        lambda: vm.sbusy_drop(m),                         # not soft-busied
        lambda: vm.vm_page_unwire(m, False),              # not wired
        lambda: vm.vm_page_unhold(m),                     # not held
        lambda: vm.vm_page_hold(free_page),               # free
        lambda: vm.vm_page_dirty(free_page),              # free
        lambda: vm.vm_page_bits(4000, 200),               # beyond the page
        lambda: vm.vm_page_set_valid(m, 0, 4097),
        lambda: vm.vm_page_alloc(None, 0, VM_ALLOC_CPU(2) | VM_ALLOC_NORMAL),  # CPU 2 of 2
        lambda: vm.vm_page_alloc(None, 0, VM_ALLOC_ZERO),  # no class
        lambda: vm.page(0x1001),
        lambda: vm.page(1 << 40),
    ]
    for fn in cases:
        before = digest(vm)
        with pytest.raises(PhysmemError):
            fn()
        assert digest(vm) == before
    # wiring, busying, unqueueing, dirtying a free page
    for fn in (vm.vm_page_wire, lambda m: vm.busy_try(m, True), vm.vm_page_unqueue,
               lambda m: vm.vm_page_set_validdirty(m, 0, 512)):
        before = digest(vm)
        with pytest.raises(PageStateError):
            fn(free_page)
        assert digest(vm) == before


def test_free_refuses_soft_busy_and_wired(vm):
    m = alloc(vm)
    assert vm.sbusy_try(m) is not False or True
    vm.vm_page_wakeup(m)
    assert vm.sbusy_try(m) is False               # soft-busied now
    assert vm.busy_try(m, True) is True            # hard busy with also_m_busy fails
    assert vm.busy_try(m, False) is False          # ...without it succeeds
    before = digest(vm)
    with pytest.raises(PageStateError):
        vm.vm_page_free(m)
    assert digest(vm) == before
    vm.sbusy_drop(m)
    vm.vm_page_wire(m)
    assert vm.vmstats.v_wire_count + sum(c.adj["v_wire_count"] for c in vm.cpu) > 0
    with pytest.raises(PageStateError):
        vm.vm_page_free(m)
    vm.vm_page_unwire(m, False)                   # 1 -> 0: to the inactive tail
    assert queue_base(vm.pages.queue[m]) == PQ_INACTIVE
    assert vm.queues.tail[vm.pages.queue[m]] == m + 1
    vm.vm_page_free(m)


def test_held_page_parks_on_pq_hold_until_the_last_unhold(vm):
    m = alloc(vm)
    vm.vm_page_hold(m)
    vm.vm_page_hold(m)
    vm.vm_page_free(m)
    assert queue_base(vm.pages.queue[m]) == PQ_HOLD
    assert vm.counts()["hold"] == 1
    vm.vm_page_unhold(m)
    assert queue_base(vm.pages.queue[m]) == PQ_HOLD
    vm.vm_page_unhold(m)
    assert queue_base(vm.pages.queue[m]) == PQ_FREE
    assert vm.queues.first(vm.pages.queue[m]) == m


# -- transitions ----------------------------------------------------------------------------
def test_activate_deactivate_cache(vm):
    o = vm.object_create("vnode")
    m = alloc(vm, o, 0)
    pc = vm.pages.pc[m]
    vm.vm_page_activate(m)
    assert vm.pages.queue[m] == PQ_ACTIVE + pc and vm.pages.act_count[m] == ACT_INIT
    vm.vm_page_deactivate(m)
    assert vm.pages.queue[m] == PQ_INACTIVE + pc and vm.pages.act_count[m] == ACT_INIT
    vm.vm_page_set_validclean(m, 0, 4096)
    vm.vm_page_cache(m)
    assert vm.pages.queue[m] == PQ_CACHE + pc and vm.pages.busy_count[m] == 0
    vm.vm_page_activate(m)                        # from cache: v_reactivated
    assert vm.cpu[0].cnt["v_reactivated"] == 1
    assert vm.pages.queue[m] == PQ_ACTIVE + pc
    # a dirty page is deactivated instead of cached
    assert not vm.busy_try(m, True)
    vm.vm_page_dirty(m)
    vm.vm_page_cache(m)
    assert vm.pages.queue[m] == PQ_INACTIVE + pc and vm.pages.busy_count[m] == 0
    assert not vm.busy_try(m, True)
    vm.vm_page_free(m)


def test_deactivate_at_head_and_tail(vm):
    a, b, c = alloc(vm, None, 0), alloc(vm, None, 1024), alloc(vm, None, 2048)
    q = PQ_INACTIVE + vm.pages.pc[a]
    assert vm.pages.pc[a] == vm.pages.pc[b] == vm.pages.pc[c]
    vm.vm_page_deactivate(a)
    vm.vm_page_deactivate(b)
    vm.vm_page_deactivate(c, athead=True)
    assert list(vm.queues.iter(q)) == [c, a, b]
    for m in (a, b, c):
        vm.vm_page_free(m)


def test_dontneed_fractions(vm):
    # dnweight counts calls.  (dnw & 0x1f0) == 0 leaves the page with act_count - 1
    # (dnw 1..15 and 0x200: 16 of 512); otherwise a clean page goes to the inactive head
    # unless (dnw & 0x70) == 0 (dnw 0x80..0x8f, 0x100..0x10f, 0x180..0x18f: 48), tail.
    o = vm.object_create()
    # pindex multiples of 512 share a colour (cs 512), and colour 31 has 24 free pages:
    # 16 pages cycle through activate + dontneed, a marker keeps the inactive queue busy.
    pages = [alloc(vm, o, i * 512) for i in range(17)]
    assert len({vm.pages.pc[m] for m in pages}) == 1
    marker, pages = pages[0], pages[1:]
    vm.vm_page_deactivate(marker)
    q = vm.pages.queue[marker]
    leave = head = tail = 0
    for call in range(512):
        m = pages[call % 16]
        vm.vm_page_activate(m)
        dnw = vm.dnweight + 1
        vm.vm_page_dontneed(m)
        if queue_base(vm.pages.queue[m]) == PQ_ACTIVE:
            leave += 1
            assert vm.pages.act_count[m] == ACT_INIT - 1 and dnw & 0x1F0 == 0
        elif vm.queues.head[q] == m + 1:
            head += 1
        else:
            assert vm.queues.tail[q] == m + 1 and dnw & 0x70 == 0
            tail += 1
    assert (leave, tail, head) == (16, 48, 512 - 16 - 48)
    for m in [marker, *pages]:
        vm.vm_page_free(m)


# -- objects, lookup, hash ------------------------------------------------------------------
def test_insert_remove_rename_lookup(vm):
    a, b = vm.object_create(), vm.object_create()
    m = alloc(vm, a, 7)
    assert a.resident_page_count == 1 and vm.vm_page_lookup(a, 7) == m
    n = alloc(vm, b, 1)
    with pytest.raises(PageStateError):
        vm.vm_page_rename(m, b, 1)               # b already has pindex 1
    vm.vm_page_rename(m, b, 2)
    assert vm.vm_page_lookup(a, 7) is None and vm.vm_page_lookup(b, 2) == m
    assert vm.pages.dirty[m] == VM_PAGE_BITS_ALL  # rename always dirties
    assert vm.vm_page_next(n) == m
    vm.vm_page_free(m)
    vm.vm_page_free(n)
    assert a.resident_page_count == b.resident_page_count == 0


def test_page_hash_only_for_mappedmulti_pages():
    vm = DragonflyVm("firecracker-128m")
    o = vm.object_create("vnode")
    m = alloc(vm, o, 5)
    vm.vm_page_wakeup(m)
    vm.vm_page_lookup(o, 5)
    assert vm.vm_page_hash_get(o, 5) is None      # not PG_MAPPEDMULTI: never entered
    vm.pages.flags[m] |= PG_MAPPEDMULTI
    vm.vm_page_lookup(o, 5)
    got = vm.vm_page_hash_get(o, 5)
    assert got == m and vm.pages.busy_count[m] == 1   # soft-busied
    vm.sbusy_drop(m)
    assert vm.hash.size == 4096                   # 4096 while < array_size / 16
    assert not vm.busy_try(m, True)
    vm.vm_page_free(m)
    assert vm.vm_page_hash_get(o, 5) is None      # stale entry: the page left the object


def test_hash_vnode_only():
    vm = DragonflyVm("firecracker-128m", hash_vnode_only=True)
    o = vm.object_create("default")
    m = alloc(vm, o, 1)
    vm.pages.flags[m] |= PG_MAPPEDMULTI
    vm.vm_page_wakeup(m)
    vm.vm_page_lookup(o, 1)
    assert vm.vm_page_hash_get(o, 1) is None
    assert vm.sysctl("vm.page_hash_vnode_only") == "1"
    assert not vm.busy_try(m, True)
    vm.vm_page_free(m)


# -- valid / dirty --------------------------------------------------------------------------
def test_page_bits():
    b = DragonflyVm.vm_page_bits
    assert b(0, 4096) == 0xFF and b(512, 512) == 0x02 and b(100, 1) == 0x01
    assert b(511, 2) == 0x03 and b(0, 0) == 0 and b(3584, 512) == 0x80


def test_valid_dirty_ops(vm):
    m = alloc(vm)
    vm.vm_page_set_validdirty(m, 0, 1024)
    assert vm.pages.valid[m] == 0x03 and vm.pages.dirty[m] == 0x03
    assert vm.vm_page_is_valid(m, 0, 1024) and not vm.vm_page_is_valid(m, 0, 2048)
    vm.vm_page_clear_dirty(m, 512, 512)
    assert vm.pages.dirty[m] == 0x01
    vm.vm_page_set_validclean(m, 0, 4096)
    assert vm.pages.valid[m] == 0xFF and vm.pages.dirty[m] == 0
    vm.vm_page_set_invalid(m, 1024, 1024)
    assert vm.pages.valid[m] == 0xF3
    vm.vm_page_zero_invalid(m, True)
    assert vm.pages.valid[m] == 0xFF
    vm.vm_page_modify(m)                          # the pmap saw a write
    vm.vm_page_test_dirty(m)
    assert vm.pages.dirty[m] == 0xFF
    vm.vm_page_free(m)
    assert vm.pages.valid[m] == vm.pages.dirty[m] == 0


def test_need_commit_pages_are_not_cached_and_unwire_activates(vm):
    o = vm.object_create("vnode")
    m = alloc(vm, o, 0)
    vm.vm_page_need_commit(m)
    assert vm.pages.flags[m] & PG_NEED_COMMIT and o.writeable
    vm.vm_page_wire(m)
    vm.vm_page_unwire(m, False)
    assert queue_base(vm.pages.queue[m]) == PQ_ACTIVE
    vm.vm_page_cache(m)                           # refused, unbusied
    assert queue_base(vm.pages.queue[m]) == PQ_ACTIVE and vm.pages.busy_count[m] == 0
    assert vm.vm_page_try_to_free(m) is False
    vm.vm_page_clear_commit(m)
    assert vm.vm_page_try_to_free(m) is True


# -- fictitious -----------------------------------------------------------------------------
def test_initfake(vm):
    f = vm.vm_page_initfake(0xFE000000, memattr=2)
    assert f.flags == PG_FICTITIOUS | PG_UNQUEUED and f.busy_count == PBUSY_LOCKED
    assert f.wire_count == 1 and f.memattr == 2
    assert vm.vm_page_initfake(0xFE000000, 0) is f
    with pytest.raises(AddressError):
        vm.vm_page_initfake(0xFE000001)


# -- per-CPU vmstats ------------------------------------------------------------------------
def test_per_cpu_counts_fold_in_at_rollup(vm):
    g0 = vm.vmstats.v_free_count
    with vm.on_cpu(1):
        m = alloc(vm)
        assert vm.local().v_free_count == g0 - 1
    assert vm.cpu[0].vmstats.v_free_count == g0   # CPU 0 has not seen it
    assert vm.vmstats.v_free_count == g0
    vm.vmstats_rollup()
    assert vm.vmstats.v_free_count == g0 - 1 == vm.cpu[0].vmstats.v_free_count
    with pytest.raises(ArgumentError), vm.on_cpu(2):
        pass
    vm.vm_page_free(m)


# -- NUMA -----------------------------------------------------------------------------------
def two_socket() -> DragonflyVm:
    # 64 MiB free per domain (the kernel occupies 1..32 MiB of domain 0)
    m = Machine("t2", [RamRange(0x100000, 96 * MIB, 0), RamRange(96 * MIB, 160 * MIB, 1)],
                page_array="none", cpus="2x2")
    return DragonflyVm(m)


def test_numa_organize_gives_each_socket_its_colours():
    vm = two_socket()
    p = vm.pages
    free = [m for q in range(PQ_FREE, PQ_FREE + 1024) for m in vm.queues.iter(q)]
    # memory of socket s on colours s*512 .. s*512+511, except pages moved by finalize
    moved = sum(1 for m in free
                if (m + vm.first_pfn) * 4096 >= 96 * MIB and p.pc[m] < 512)
    assert moved < len(free) // 10
    assert all(vm.queues.lcnt[PQ_FREE + c] for c in range(1024))   # none empty
    lc = [vm.queues.lcnt[PQ_FREE + c] for c in range(1024)]
    assert min(lc) >= sum(lc) // 1024 * 9 // 10
    # CPU 2 (socket 1) allocates from socket 1's colours and memory
    with vm.on_cpu(2):
        m = alloc(vm, None, 0)
    assert p.pc[m] >= 512 and (m + vm.first_pfn) * 4096 >= 96 * MIB
    vm.vm_page_free(m)


def test_topology_colours_for_sockets_cores_threads():
    vm = DragonflyVm("firecracker-128m", cpus=CpuTopology(2, 4, 2))
    # phys 512, grp 128, cs 64: colour = phys_id*512 + core*128 + ht*64 + k % 64
    assert vm.vm_get_pg_color(0, None, 0) == 0
    assert vm.vm_get_pg_color(1, None, 0) == 64            # thread 1 of core 0
    assert vm.vm_get_pg_color(2, None, 70) == 128 + 6      # core 1
    assert vm.vm_get_pg_color(8, None, 0) == 512           # socket 1


# -- views ----------------------------------------------------------------------------------
def test_show_page_and_pageq_text(vm):
    text = vm.show_page()
    lines = text.splitlines()
    assert len(lines) == 13 and lines[0] == f"vmstats.v_free_count: {vm.vmstats.v_free_count}"
    assert lines[-1] == f"vmstats.v_paging_target2: {vm.vmstats.v_paging_target2}"
    q = vm.show_pageq().splitlines()
    assert [ln.split(":")[0] for ln in q] == ["PQ_FREE", "PQ_CACHE", "PQ_ACTIVE",
                                              "PQ_INACTIVE"]
    free = [int(x) for x in q[0].split(":")[1].split()]
    assert len(free) == 1024 and sum(free) == vm.counts()["free"]
    assert q[0].startswith("PQ_FREE: ") and "  " not in q[0]


def test_buddy_source_runs_the_same_calls():
    vm = small(64, source="buddy")
    o = vm.object_create()
    m = alloc(vm, o, 0)
    assert vm.kernel is not None and vm.counts()["free"] == 0
    vm.vm_page_activate(m)
    vm.vm_page_wakeup(m)
    assert not vm.busy_try(m, True)
    vm.vm_page_free(m)
    vm.vmstats_rollup()
    assert vm.vmstats.v_free_count == sum(vm.kernel.free_counts)


# -- bulk boot against the kernel's page-by-page boot ---------------------------------------
def _queues_page_by_page(vm: DragonflyVm) -> dict[int, list[int]]:
    """The free queues as the kernel builds them: vm_add_new_page for each pfn of the
    model's phys_avail runs in ascending order (the reserve below vm_low_phys_reserved
    stays off the queues), at the head of its colour; then, on several sockets,
    vm_numa_organize moves each queued page of each NUMA range (ascending) to the head of
    pc % share + socket * share, and vm_numa_organize_finalize evens the colours out.
    Returns colour -> page indices, head first (before the DMA return)."""
    managed = [i for i in range(vm.pages.npages) if not vm.unmanaged[i]]
    q: dict[int, list[int]] = {}
    pc: dict[int, int] = {}
    for i in managed:
        pfn = i + vm.first_pfn
        pc[i] = (pfn ^ (pfn >> 10) ^ (pfn >> 20)) & 1023
        if pfn >= vm.low_phys_reserved:         # nothing returned: as at boot
            q.setdefault(pc[i], []).insert(0, i)
    t = vm.topology
    if t.sockets > 1:
        share = 1024 // t.sockets
        where = {i: c for c, pages in q.items() for i in pages}
        for s, e, dom in vm.machine.segments():
            for i in managed:
                if not s <= (i + vm.first_pfn) << 12 < e:
                    continue
                new = pc[i] % share + (dom % t.sockets) * share
                if i in where:
                    q[where[i]].remove(i)
                    q.setdefault(new, []).insert(0, i)
                    where[i] = new
                pc[i] = new
        # vm_numa_organize_finalize: the average over vm_page_queues[0 .. scale_lim-1]
        # (PQ_NONE, empty, and colours 0 .. scale_lim-2); colours below 90 % of it take
        # pages, head to head, from a cursor's colours at or above it
        scale_lim = 1024 // t.sockets // t.cores // t.threads * t.threads * t.cores \
            * t.sockets
        hi = sum(len(q.get(c, [])) for c in range(scale_lim - 1)) // scale_lim
        lo = hi - hi // 10
        it = 0
        for i in range(scale_lim):
            while len(q.get(i, [])) < lo:
                it = (it + 1) & 1023
                if len(q.get(it, [])) >= hi:
                    q.setdefault(i, []).insert(0, q[it].pop(0))
    return {c: pages for c, pages in q.items() if pages}


@pytest.mark.parametrize("chunk", [1000, 1 << 22])
@pytest.mark.parametrize("cpus", [None, "2x2"])
def test_bulk_boot_queues_are_the_kernels_page_by_page_order(monkeypatch, chunk, cpus):
    # The boot builds its queues piece by piece (bounded temporaries): pieces that cut
    # 1024-page colour blocks anywhere must give the kernel's order (no DMA return here:
    # dma_reserved = the whole reserve; on 2 sockets finalize moves ~500 pages).
    import physmem.dragonfly.vm_page_boot as boot
    monkeypatch.setattr(boot, "_CHUNK", chunk)
    m = Machine("t2", [RamRange(0x100000, 160 * MIB, 0), RamRange(160 * MIB, 224 * MIB, 1)],
                page_array="none", cpus=cpus or "1x2")
    vm = DragonflyVm(m, dma_reserved=1 << 40)
    assert vm.vmstats.v_dma_pages > 1_000             # a reserve, kept off the queues
    want = _queues_page_by_page(vm)
    got = {c: list(vm.queues.iter(PQ_FREE + c)) for c in range(1024)
           if vm.queues.lcnt[PQ_FREE + c]}
    assert got == want
    vm.check()


@pytest.mark.parametrize("source", ["dragonfly", "buddy"])
def test_holes_and_the_carved_top_are_no_pages(source):
    """Every page address inside the page array but outside the runs boot added (holes
    of phys_avail, and on the DragonFly source the carved top of the largest range) is
    refused; the pages on either side of each edge are pages."""
    vm = DragonflyVm("pc-6g", source=source)
    hole = np.asarray(vm.unmanaged, dtype=np.uint8)
    pages = int((hole == 0).sum())
    assert pages == vm.vmstats.v_page_count and 0 < pages < vm.pages.npages
    edges = np.flatnonzero(np.diff(hole)).tolist()
    assert edges
    for i in edges:                      # i and i + 1 differ: one is a page, one is not
        for m in (i, i + 1):
            pa = vm.pa(m)
            if hole[m]:
                with pytest.raises(AddressError, match="hole"):
                    vm.page(pa)
                with pytest.raises(AddressError):
                    vm.vm_page_free(m)
            else:
                assert vm.page(pa) == m
