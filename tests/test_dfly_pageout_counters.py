"""The pagedaemon's event counters (gd_cnt) counted where DragonFly's vm_pageout.c counts
them: v_pdwakeups once per turn of the daemon's loop (vm_pageout_thread), never in
pagedaemon_wakeup; v_dfree once per page the daemon frees."""

from __future__ import annotations

import time

from physmem.dfly_workloads import pagecache_fill
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.machine import Machine, RamRange

MIB = 1 << 20


def small(mib: int = 48, **kw) -> DragonflyVm:
    m = Machine(f"t{mib}", [RamRange(0x100000, mib * MIB)], page_array="none")
    return DragonflyVm(m, **kw)


def total(vm: DragonflyVm, counter: str) -> int:
    """The sysctl's view: vm.stats.vm.<counter> sums every CPU's gd_cnt."""
    return sum(c.cnt[counter] for c in vm.cpu)


def kick_while_asleep(vm: DragonflyVm) -> int:
    """Allocate until paging should start, then 100 more pages (each allocation kicks the
    daemon) and 100 direct kicks, staying above v_free_min so nobody waits and the
    (synchronous) daemon never runs; returns the kicks made while paging should start."""
    o = vm.object_create("default")
    i = 0
    while not vm.start():
        m = vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL)
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
        i += 1
    for _ in range(100):
        m = vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL)
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
        i += 1
    for _ in range(100):
        vm.pagedaemon_wakeup()
    assert vm.start() and not vm.min()
    return 200


def daemon_thread_until_a_pass(vm: DragonflyVm) -> None:
    """Run the pagedaemon thread until it has made a pass (20 s at most), then stop it."""
    vm.start_pagedaemon()
    try:
        deadline = time.monotonic() + 20
        while vm.pageout_stats.passes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        vm.stop_pagedaemon()


def test_kicks_to_a_sleeping_daemon_count_no_wakeup_its_passes_do():
    vm = small(48)
    kicks = kick_while_asleep(vm)
    assert kicks == 200
    # pagedaemon_wakeup only set vm_pages_needed and woke the daemon's channel
    assert vm.vm_pages_needed == 1
    assert vm.pageout_stats.passes == 0
    assert total(vm, "v_pdwakeups") == 0
    # the daemon wakes once and loops while short of target1: one count per turn
    vm.vm_pageout(force=True)
    passes = vm.pageout_stats.passes
    assert passes >= 1
    assert total(vm, "v_pdwakeups") == passes
    # the next wake counts its own turns on top
    vm.vm_pageout(force=True)
    assert vm.pageout_stats.passes > passes
    assert total(vm, "v_pdwakeups") == vm.pageout_stats.passes
    vm.vmstats_rollup()
    vm.check()


def test_the_daemon_thread_counts_its_own_wakeups():
    vm = small(48)
    kick_while_asleep(vm)
    assert total(vm, "v_pdwakeups") == 0
    daemon_thread_until_a_pass(vm)
    passes = vm.pageout_stats.passes
    assert passes >= 1
    assert total(vm, "v_pdwakeups") == passes
    vm.vmstats_rollup()
    vm.check()


def test_daemon_thread_wakes_on_its_timeout_when_paging_is_needed():
    # A kick lost to a race: vm_pages_needed and the paging predicate say work is due, but
    # the daemon's channel was never signalled.  vm_pageout_thread's sleep times out and
    # it runs anyway (and counts that wakeup).
    vm = small(48)
    kick_while_asleep(vm)
    vm._daemon_kick.clear()
    daemon_thread_until_a_pass(vm)
    assert vm.pageout_stats.passes >= 1
    assert total(vm, "v_pdwakeups") == vm.pageout_stats.passes


def test_a_fill_under_pressure_counts_passes_not_kicks_and_daemon_frees():
    vm = small(48)
    kicks = 0
    kick = vm.pagedaemon_wakeup

    def counting_kick() -> None:
        nonlocal kicks
        if vm.start():
            kicks += 1
        kick()

    vm.pagedaemon_wakeup = counting_kick        # type: ignore[method-assign]
    pagecache_fill(vm, 2 * 48 * MIB, files=2, seed=3)
    st = vm.pageout_stats
    assert st.passes > 0 and st.freed > 0
    # up to two kicks per allocation under pressure, one wakeup per daemon turn
    assert kicks > 10 * st.passes
    assert total(vm, "v_pdwakeups") == st.passes
    # v_dfree: pages the daemon freed (inactive scan frees, cache -> free)
    assert total(vm, "v_dfree") == st.freed
    vm.vmstats_rollup()
    vm.check()
