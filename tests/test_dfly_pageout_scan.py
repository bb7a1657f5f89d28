"""The pagedaemon's decisions and counters as DragonFly's vm_pageout.c makes them:
vm_pageout_page frees invalid pages and caches valid clean ones (whether or not they belong
to an object); v_pdpages counts every entry the inactive scan steps to and the active
scan's pages past its wired check; vm_pageout_thread keeps vm_pages_needed and its
TARGET1/TARGET2 state across turns."""

from __future__ import annotations

from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.dragonfly.vm_page_array import (
    PQ_CACHE,
    PQ_FREE,
    PQ_INACTIVE,
    VM_PAGE_BITS_ALL,
    queue_base,
)
from physmem.dragonfly.vm_pageout import PAGING_IDLE, PAGING_TARGET2

from .test_dfly_pageout_counters import small, total


def inactive_page(vm: DragonflyVm, obj, pindex: int, valid: int, unbusy: bool = True) -> int:
    """A page of ``obj`` (or of no object) with ``valid`` bits, clean, on PQ_INACTIVE."""
    m = vm.vm_page_alloc(obj, pindex, VM_ALLOC_NORMAL)
    vm.pages.valid[m] = valid
    vm.vm_page_deactivate(m)
    if unbusy:
        vm.vm_page_wakeup(m)
    return m


def one_pass(vm: DragonflyVm, deficit: int = 1000) -> None:
    """One vm_pageout_scan with a deficit (vm_pageout_deficit) to work off: plenty of
    memory is free, so the deficit alone sets the inactive scan's shortage."""
    vm.deficit = deficit
    vm.vm_pageout_scan(0)


def test_inactive_scan_frees_invalid_pages_and_caches_valid_clean_ones():
    vm = small()
    o = vm.object_create("default")
    with_obj_valid = inactive_page(vm, o, 0, VM_PAGE_BITS_ALL)
    with_obj_invalid = inactive_page(vm, o, 1, 0)
    no_obj_valid = inactive_page(vm, None, 0, VM_PAGE_BITS_ALL)
    no_obj_invalid = inactive_page(vm, None, 0, 0)
    freed0, dfree0 = vm.pageout_stats.freed, total(vm, "v_dfree")
    one_pass(vm)
    q = vm.pages.queue
    # vm_pageout_page: "Invalid pages can be easily freed" -- object or not
    assert queue_base(q[with_obj_invalid]) == PQ_FREE
    assert queue_base(q[no_obj_invalid]) == PQ_FREE
    # "Clean pages can be placed onto the cache queue" -- object or not
    assert queue_base(q[with_obj_valid]) == PQ_CACHE
    assert queue_base(q[no_obj_valid]) == PQ_CACHE
    assert vm.vm_page_lookup(o, 0) == with_obj_valid       # a cache page keeps its object
    assert vm.vm_page_lookup(o, 1) is None
    assert vm.pageout_stats.freed - freed0 == 2
    assert total(vm, "v_dfree") - dfree0 == 2               # counted per page freed
    vm.vmstats_rollup()
    vm.check()


def test_dirty_pages_are_laundered_on_their_second_visit_then_cached():
    vm = small()
    o = vm.object_create("default")
    m = inactive_page(vm, o, 0, VM_PAGE_BITS_ALL, unbusy=False)
    vm.vm_page_dirty(m)
    vm.vm_page_wakeup(m)
    one_pass(vm)                # first scan: second chance (requeued); second: laundered
    assert vm.pageout_stats.laundered == 1
    assert queue_base(vm.pages.queue[m]) == PQ_CACHE
    assert vm.pages.dirty[m] == 0
    vm.vmstats_rollup()
    vm.check()


def test_v_pdpages_counts_inactive_entries_stepped_to_and_eligible_active_pages():
    vm = small()
    o = vm.object_create("default")
    pi = 0
    # inactive: 6 clean valid pages (cached on the first visit), one busy page (stepped
    # to and skipped on both inactive scans of the pass), one wired page (leaves the queue)
    for _ in range(6):
        inactive_page(vm, o, pi, VM_PAGE_BITS_ALL)
        pi += 1
    busy = inactive_page(vm, o, pi, VM_PAGE_BITS_ALL, unbusy=False)
    pi += 1
    wired = inactive_page(vm, o, pi, VM_PAGE_BITS_ALL, unbusy=False)
    vm.vm_page_wire(wired)
    vm.vm_page_wakeup(wired)
    pi += 1
    # active: 5 pages that age but stay (act_count above the decline), one wired and one
    # busy page (neither counted by vm_pageout_scan_active)
    for _ in range(5):
        m = vm.vm_page_alloc(o, pi, VM_ALLOC_NORMAL)
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
        pi += 1
    aw = vm.vm_page_alloc(o, pi, VM_ALLOC_NORMAL)
    vm.vm_page_activate(aw)
    vm.vm_page_wire(aw)
    vm.vm_page_wakeup(aw)
    pi += 1
    ab = vm.vm_page_alloc(o, pi, VM_ALLOC_NORMAL)
    vm.vm_page_activate(ab)
    assert total(vm, "v_pdpages") == 0
    one_pass(vm)
    # inactive scan: 8 entries, then the second scan of the pass steps to the busy page
    # again; active scan: the 5 unwired, unbusied pages
    assert total(vm, "v_pdpages") == 8 + 1 + 5
    assert queue_base(vm.pages.queue[busy]) == PQ_INACTIVE
    vm.vm_page_wakeup(busy)
    vm.vm_page_wakeup(ab)
    vm.vmstats_rollup()
    vm.check()


def fill_inactive_until_paging_starts(vm: DragonflyVm) -> None:
    """Clean, valid inactive pages until vm_paging_start says the daemon should run (the
    allocations kick it: vm_pages_needed 1, the synchronous daemon not yet run)."""
    o = vm.object_create("default")
    i = 0
    while not vm.start():
        inactive_page(vm, o, i, VM_PAGE_BITS_ALL)
        i += 1
    vm.vmstats_rollup()


def avail(vm: DragonflyVm) -> int:
    s = vm.local()
    return s.v_free_count + s.v_cache_count


def test_vm_pages_needed_and_target2_state_persist_across_turns():
    vm = small()
    fill_inactive_until_paging_starts(vm)
    assert vm.vm_pages_needed == 1 and vm.pageout_state == PAGING_IDLE
    # one turn: woken in TARGET1, it pages up to target1 but stays short of target2, so
    # vm_pageout_thread keeps vm_pages_needed = 2 in TARGET2 (it does not go to sleep)
    vm.vm_pageout(max_passes=1)
    assert vm.pageout_stats.passes == 1
    assert not vm.target1() and vm.target2()
    assert vm.vm_pages_needed == 2
    assert vm.pageout_state == PAGING_TARGET2
    # kicks while it pages: above v_free_min they leave vm_pages_needed at 2
    assert not vm.min()
    vm.pagedaemon_wakeup()
    assert vm.vm_pages_needed == 2
    # the next turns need no kick nor force: the daemon loops on toward target2, then
    # sleeps (vm_pages_needed 0) once target2 is met
    vm.vm_pageout()
    assert vm.pageout_stats.passes > 1
    assert avail(vm) >= vm.local().v_paging_target2
    assert vm.vm_pages_needed == 0 and vm.pageout_state == PAGING_IDLE
    passes = vm.pageout_stats.passes
    vm.vm_pageout()                 # asleep, not kicked, paging need not start: no turn
    assert vm.pageout_stats.passes == passes
    assert total(vm, "v_pdwakeups") == passes
    vm.check()

