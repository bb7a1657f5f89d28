"""The pagedaemon's scans written once (dragonfly/vm_pageout_core.py): the compiled
batches, their own plain Python and Python's page-by-page visits leave the same state on
pages that take every branch of the visits; a scan leaves a page whose lock another
thread holds; WITNESS sees the locks the scans take."""

from __future__ import annotations

import pytest

from physmem import jit
from physmem.dragonfly.locks import PAGE_STRIPES, LockOrderError
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.dragonfly.vm_page_array import (
    PG_REFERENCED,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_INACTIVE,
    VM_PAGE_BITS_ALL,
    queue_base,
)
from physmem.dragonfly.vm_pageout_core import scan_active, scan_inactive

from .dfly_util import digest
from .test_dfly_core import _held_elsewhere
from .test_dfly_pageout_counters import small

needs_jit = pytest.mark.skipif(not jit.enabled(), reason="the JIT is off")


def mixed(vm: DragonflyVm, n: int = 3000) -> list:
    """``n`` pages of three objects (default, swap, vnode) spread over the active and
    inactive queues, taking every branch of the scans' visits: referenced (PG_REFERENCED,
    the pmap's count), written by the pmap, invalid, dirty, held, wired, soft-busied,
    PG_NEED_COMMIT, act_count from 0 to 9.  Returns the objects."""
    objs = [vm.object_create(k) for k in ("default", "swap", "vnode")]
    p = vm.pages
    for i in range(n):
        o = objs[i % 3]
        m = vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL)
        p.valid[m] = 0 if i % 11 == 0 else VM_PAGE_BITS_ALL
        if i % 7 == 0:
            p.dirty[m] = VM_PAGE_BITS_ALL
        if i % 2:
            vm.vm_page_activate(m)
        else:
            vm.vm_page_deactivate(m)
        p.act_count[m] = i % 10
        if i % 5 == 0:
            vm.vm_page_reference(m)
        if i % 13 == 0:
            p.flags[m] |= PG_REFERENCED
        if i % 17 == 0:
            vm.vm_page_modify(m)
        if i % 19 == 0:
            vm.vm_page_need_commit(m)
        if i % 29 == 0:
            vm.vm_page_wire(m)                # (it stays queued)
        vm.vm_page_wakeup(m)
        if i % 23 == 0:
            vm.vm_page_hold(m)
        if i % 31 == 0:
            vm.sbusy_try(m)
    return objs


def scans(vm: DragonflyVm) -> tuple:
    """Three pagedaemon passes over ``mixed`` pages; the state they leave."""
    objs = mixed(vm)
    for n in range(3):
        vm.deficit = 2000
        vm.vm_pageout_scan(n)
    vm.check()
    return (digest(vm), vars(vm.pageout_stats),
            [(o.writeable, o.maybe_dirty) for o in objs], vm.swap_used)


@needs_jit
def test_batches_plain_batches_and_python_visits_leave_the_same_state():
    python = small(jit=False, witness=True)    # WITNESS: every page a Python visit
    assert not python._core
    compiled = small(jit=True)
    assert compiled._core
    plain = small(jit=True)                    # the plain scans over the arrays
    plain._c_scan_active, plain._c_scan_inactive = scan_active.py, scan_inactive.py
    gated = small(jit=False)                   # the JIT off: plain scans under the gate
    assert gated._gate is not None
    want = scans(python)
    assert want[1]["cached"] and want[1]["freed"] and want[1]["deactivated"]
    assert want[1]["reactivated"] and want[1]["laundered"]
    assert scans(compiled) == want
    assert scans(plain) == want
    assert scans(gated) == want


@pytest.mark.parametrize("jit_on", [True, False])
def test_a_scan_leaves_a_page_whose_lock_another_thread_holds(jit_on):
    if jit_on and not jit.enabled():
        pytest.skip("the JIT is off")
    vm = small(jit=jit_on)
    assert vm._core is jit_on
    p = vm.pages
    for i in range(2500):                     # clean valid pages, all inactive
        m = vm.vm_page_alloc(None, i, VM_ALLOC_NORMAL)
        p.valid[m] = VM_PAGE_BITS_ALL
        vm.vm_page_deactivate(m)
        vm.vm_page_wakeup(m)
    c = next(c for c in range(1024) if vm.queues.lcnt[PQ_INACTIVE + c] >= 3)
    qi = PQ_INACTIVE + c
    pages = list(vm.queues.iter(qi))
    assert len({m & (PAGE_STRIPES - 1) for m in pages}) == len(pages)
    head = pages[0]
    t, done = _held_elsewhere(vm.page_spin[head & (PAGE_STRIPES - 1)])
    try:
        vm._inactive_rover = c
        got = vm._scan_queues(PQ_INACTIVE, "_inactive_rover", len(pages) - 1, 1 << 20)
        # the kernel only tries page locks on a queue: the held page is left as it was
        assert got == len(pages) - 1
        assert vm.queues.first(qi) == head and p.busy_count[head] == 0
        assert all(queue_base(p.queue[m]) == PQ_CACHE for m in pages[1:])
    finally:
        done.set()
        t.join()
    vm._inactive_rover = c
    assert vm._scan_queues(PQ_INACTIVE, "_inactive_rover", 1, 1 << 20) == 1
    assert queue_base(p.queue[head]) == PQ_CACHE
    vm.check()


def test_witness_checks_the_locks_a_scan_takes():
    vm = small(witness=True, jit=True)       # WITNESS: page by page, Python's locks
    o = vm.object_create("default")
    m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
    vm.vm_page_activate(m)
    vm.vm_page_wakeup(m)
    qa = PQ_ACTIVE + vm.pages.pc[m]
    before = vm.witness.checked
    vm._scan_active(1)
    assert vm.witness.checked > before
    # a scan entered holding a queue spinlock would block on a queue spinlock: caught
    vm._active_rover = qa - PQ_ACTIVE
    vm.queue_spin[PQ_INACTIVE].acquire()
    try:
        with pytest.raises(LockOrderError):
            vm._scan_active(1)
    finally:
        vm.queue_spin[PQ_INACTIVE].release()


@pytest.mark.parametrize("jit_on", [True, False])
def test_the_scans_take_the_pmaps_reference_counts_from_the_mdref_row(jit_on):
    """``mdref`` mirrors ``md_refs`` (at most 255) through references, scans, frees,
    madvise and cache -> free, so the scans visit referenced pages themselves and
    leave the state a page-by-page (WITNESS) run leaves."""
    if jit_on and not jit.enabled():
        pytest.skip("the JIT is off")
    from physmem.dfly_workloads import anon_churn, pagecache_fill
    runs = []
    for witness in (False, True):
        vm = small(jit=jit_on, witness=witness)
        pagecache_fill(vm, 56 << 20, reref=0.2, seed=4)
        anon_churn(vm, 800, seed=4)
        vm.vm_pageout(force=True)
        row = vm.pages.arrays["mdref"]
        assert vm.md_refs and {m: int(row[m]) for m in vm.md_refs} == {
            m: min(n, 255) for m, n in vm.md_refs.items()}
        assert int((row != 0).sum()) == len(vm.md_refs)
        vm.check()
        runs.append((digest(vm), vars(vm.pageout_stats), [dict(c.cnt) for c in vm.cpu]))
    assert runs[0] == runs[1]
