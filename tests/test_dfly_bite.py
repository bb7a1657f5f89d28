"""Kernel details of the page layer that no other test pins: each test builds a state in
which the detail decides the outcome, so changing the detail fails the test.

- _vm_page_list_find2_wide interleaves its free and cache probes: free 16, free 32, then
  cache 16, free 64, cache 32, ... (vm_page.c);
- vm_page_free_wakeup wakes vm_wait sleepers only past v_free_min + the hysteresis (16);
- the active scan declines default/swap pages by vm.anonmem_decline and vnode pages by
  vm.filemem_decline (vm_pageout.c's switch on the object type);
- the pagedaemon moves cache pages to PQ_FREE while v_free_count < v_free_target and
  more than 16 pages are cached, and stops at whichever comes first.
"""

from __future__ import annotations

import pytest

from physmem.dragonfly.vm_page import (
    VM_ALLOC_CPU,
    VM_ALLOC_INTERRUPT,
    VM_ALLOC_NORMAL,
    VM_ALLOC_QUICK,
    CpuTopology,
    DragonflyVm,
)
from physmem.dragonfly.vm_page_array import PQ_ACTIVE, PQ_CACHE, PQ_FREE
from physmem.dragonfly.vm_pageout_core import SCAN_DONE
from physmem.machine import Machine, RamRange

MIB = 1 << 20


def small(mib: int = 48, cpus: CpuTopology | None = None) -> DragonflyVm:
    m = Machine(f"t{mib}", [RamRange(0x100000, mib * MIB)], page_array="none")
    return DragonflyVm(m, cpus=cpus)


# -- the colour search ------------------------------------------------------------------
# 64 CPUs: set_assoc_mask 15, so the search widens 16, 32, 64 ... colours; each CPU owns
# 16 colours (CPU n: 16n .. 16n+15, the pindex picks one).
TARGET = 320                      # CPU 20's first colour, the start of an aligned 64-set


def _at(colour: int) -> tuple[int, int]:
    """(pindex, flags) that ask for ``colour``."""
    return colour % 16, VM_ALLOC_CPU(colour // 16)


def _drained(vm: DragonflyVm) -> dict[int, list[int]]:
    """Take every free page of colours TARGET .. TARGET+63 (each from its own colour,
    object-less); returns them by colour.  Other colours keep their pages, so the class
    gate still lets NORMAL allocations search the free queues."""
    q = vm.queues
    taken: dict[int, list[int]] = {}
    for c in range(TARGET, TARGET + 64):
        while q.lcnt[PQ_FREE + c]:
            pindex, cpu = _at(c)
            m = vm.vm_page_alloc(None, pindex, VM_ALLOC_QUICK | cpu)
            assert m is not None and vm.pages.pc[m] == c
            taken.setdefault(c, []).append(m)
    assert all(q.lastq[PQ_FREE + c] == -1 for c in range(TARGET, TARGET + 64))
    return taken


def _to_cache(vm: DragonflyVm, m: int) -> None:
    o = vm.object_create("vnode")
    assert vm.vm_page_insert(m, o, 0)
    vm.vm_page_set_validclean(m, 0, 4096)
    vm.vm_page_cache(m)
    assert vm.pages.queue[m] == PQ_CACHE + vm.pages.pc[m]


@pytest.mark.parametrize("free_colour,cache_colour,want", [
    # free 16 finds nothing, free 32 finds the free page before cache 16 is probed
    (TARGET + 20, TARGET + 5, "free"),
    # free 16 and free 32 find nothing, cache 16 comes before free 64
    (TARGET + 40, TARGET + 5, "cache"),
    # cache 16 finds nothing; free 64 comes before cache 32
    (TARGET + 40, TARGET + 20, "free"),
])
def test_find2_wide_interleaves_free_and_cache_probes(free_colour, cache_colour, want):
    vm = small(cpus=CpuTopology(1, 64, 1))
    assert vm.set_assoc_mask == 15 and vm._color_cs == 16
    taken = _drained(vm)
    f = taken[free_colour][0]
    c = taken[cache_colour][0]
    _to_cache(vm, c)
    vm.vm_page_free(f)
    pindex, cpu = _at(TARGET)
    got = vm.vm_page_alloc(None, pindex, VM_ALLOC_NORMAL | cpu)
    # a cache page found is recycled (freed) and the search runs again, which then takes
    # that page from PQ_FREE: either way the page found first comes back
    assert got == (f if want == "free" else c)
    assert vm.pages.obj[got] == 0
    vm.check()


# -- vm_page_free_wakeup's hysteresis -------------------------------------------------------
@pytest.mark.parametrize("over_min,woken", [(15, False), (16, True), (40, True)])
def test_free_wakeup_waits_for_the_hysteresis(over_min, woken):
    vm = small()
    s = vm.local()
    assert vm.page_free_hysteresis == 16
    # free + cache just above v_free_min: sleepers stay asleep until 16 more are free
    s.v_cache_count = 0
    s.v_free_count = s.v_free_min + over_min
    assert s.v_free_count < s.v_paging_target1          # target1 alone would not wake
    vm.vm_pages_waiting = 1
    before = vm.cpu[0].cnt["v_ppwakeups"]
    vm.vm_page_free_wakeup()
    assert (vm.vm_pages_waiting == 0) is woken
    assert vm.cpu[0].cnt["v_ppwakeups"] == before + woken


# -- the active scan's decline -------------------------------------------------------------
@pytest.mark.parametrize("via", ["visit", "batch"])
def test_active_scan_declines_anonymous_and_file_pages_differently(via):
    vm = small()
    if via == "batch" and not vm._core:
        pytest.skip("the compiled batches are off")
    vm.anonmem_decline, vm.filemem_decline = 3, 7       # distinct, to see which applies
    pages = {}
    for kind in ("default", "swap", "vnode"):
        o = vm.object_create(kind)
        m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
        vm.vm_page_set_validclean(m, 0, 4096)
        vm.vm_page_activate(m)
        vm.pages.act_count[m] = 20
        vm.vm_page_wakeup(m)
        pages[kind] = m
    if via == "visit":                      # Python's way: each page locked, one visit
        for m in pages.values():
            qa = PQ_ACTIVE + vm.pages.pc[m]
            vm.page_spin[m & 1023].acquire()
            try:
                assert vm._active_page(m, qa) == 0
            finally:
                vm.page_spin[m & 1023].release()
    else:       # the compiled scan: one page of every colour, no deactivation, no decline
        pd = vm.cpu[0].cnt["v_pdpages"]
        assert vm._scan_body(True, 0, 0, 0, 0, 0, 1, 1, 1) == (SCAN_DONE, 0, 1024, 0, 0, 0, -1)
        assert vm.cpu[0].cnt["v_pdpages"] == pd + 3
    p = vm.pages
    assert p.act_count[pages["default"]] == 17 and p.act_count[pages["swap"]] == 17
    assert p.act_count[pages["vnode"]] == 13


# -- the pagedaemon's cache -> free ---------------------------------------------------------
def _short(vm: DragonflyVm, below_target: int, cached: int) -> list[int]:
    """Allocate until v_free_count is ``below_target`` under v_free_target, then move
    ``cached`` of the pages to PQ_CACHE (the rest stay busied, off every queue)."""
    s = vm.local()
    held = []
    i = 0
    while s.v_free_count > s.v_free_target - below_target:
        m = vm.vm_page_alloc(None, i, VM_ALLOC_INTERRUPT)
        assert m is not None
        held.append(m)
        i += 1
    for m in held[:cached]:
        vm.vm_page_cache(m)
    assert s.v_cache_count == cached
    return held


def test_cache_to_free_stops_at_the_free_target():
    vm = small()
    s = vm.local()
    _short(vm, 40, 100)
    vm.vm_pageout_scan()
    assert s.v_free_count == s.v_free_target and s.v_cache_count == 60
    vm.check()


def test_cache_to_free_keeps_sixteen_cached_pages():
    vm = small()
    s = vm.local()
    _short(vm, 100, 60)
    vm.vm_pageout_scan()
    assert s.v_cache_count == 16 and s.v_free_count == s.v_free_target - 100 + 44
    vm.check()
