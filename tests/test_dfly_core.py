"""The page layer's compiled fast paths (dragonfly/vm_page_core.py): the same state as the
Python paths, plain or compiled, and they respect the locks other threads hold."""

from __future__ import annotations

import threading

import pytest

from physmem import jit
from physmem.dfly_workloads import anon_churn, pagecache_fill
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.dragonfly.vm_page_array import PQ_FREE
from physmem.dragonfly.vm_page_core import (
    DECLINE,
    alloc_head,
    busy_take,
    free_toq,
    read_done,
    select_free_or_cache,
)
from physmem.dragonfly.vm_pageout_core import scan_active, scan_inactive
from physmem.machine import Machine, RamRange

from .dfly_util import digest

MIB = 1 << 20
needs_jit = pytest.mark.skipif(not jit.enabled(), reason="the JIT is off")


def small(mib: int = 48, **kw) -> DragonflyVm:
    m = Machine(f"t{mib}", [RamRange(0x100000, mib * MIB)], page_array="none")
    return DragonflyVm(m, **kw)


def work(vm: DragonflyVm) -> str:
    """A page-cache fill past RAM (pagedaemon passes, cache recycling) then anonymous
    churn (wire, madvise, terminate); the digest of the state left."""
    vm.check()
    pagecache_fill(vm, 80 * MIB, seed=3)
    anon_churn(vm, 3000, seed=3)
    vm.check()
    return digest(vm)


@needs_jit
@pytest.mark.parametrize("mib,source", [(48, "dragonfly"), (130, "dragonfly"),
                                        (48, "buddy")])
def test_compiled_plain_and_python_paths_leave_the_same_state(mib, source):
    python = small(mib, jit=False, source=source)
    assert not python._core
    compiled = small(mib, jit=True, source=source)
    assert compiled._core
    plain = small(mib, jit=True, source=source)
    # the compiled functions' own Python (what NUMBA_DISABLE_JIT=1 would run)
    plain._c_alloc_head, plain._c_free_toq = alloc_head.py, free_toq.py
    plain._c_read_done, plain._c_scan_active = read_done.py, scan_active.py
    plain._c_select = select_free_or_cache.py
    plain._c_scan_inactive = scan_inactive.py
    plain._c_busy_take = busy_take.py
    assert work(python) == work(compiled) == work(plain)


@needs_jit
def test_the_tier_switches_to_the_compiled_paths_after_n_allocations():
    vm = small(jit=50)
    o = vm.object_create()
    for i in range(49):
        vm.vm_page_free(vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL))
    assert not vm._core
    vm.vm_page_free(vm.vm_page_alloc(o, 49, VM_ALLOC_NORMAL))
    assert vm._core
    assert not small(witness=True, jit=True)._core      # WITNESS keeps the Python locks


def _held_elsewhere(lock) -> tuple[threading.Thread, threading.Event]:
    """Hold ``lock`` in another thread until the returned event is set."""
    got, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            got.set()
            done.wait(10)
    t = threading.Thread(target=hold)
    t.start()
    assert got.wait(10)
    return t, done


@needs_jit
def test_compiled_alloc_waits_for_a_queue_lock_held_by_another_thread():
    vm = small(jit=True)
    o = vm.object_create()
    q = PQ_FREE + vm.vm_get_pg_color(0, o, 0)
    head = vm.queues.first(q)
    p = vm.pages
    t, done = _held_elsewhere(vm.queue_spin[q])
    before = digest(vm)
    # the compiled call declines and changes nothing ...
    assert vm._c_alloc_head(p.w4, p.w2, p.w1, vm.queues.off, q, 0) == DECLINE
    assert digest(vm) == before
    # ... so vm_page_alloc takes the Python path, which blocks on the queue lock
    out: list[int | None] = []
    a = threading.Thread(target=lambda: out.append(vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)))
    a.start()
    a.join(0.3)
    assert a.is_alive() and not out and digest(vm) == before
    done.set()
    t.join()
    a.join(10)
    assert out == [head]
    # with every word down the compiled call takes the next head
    nxt = vm.queues.first(q)
    p2 = vm._color_cs                          # the same colour
    assert vm.vm_get_pg_color(0, o, p2) == q - PQ_FREE
    assert vm.vm_page_alloc(o, p2, VM_ALLOC_NORMAL) == nxt
    vm.check()


@needs_jit
def test_compiled_paths_skip_a_page_whose_lock_another_thread_holds():
    vm = small(jit=True)
    ref = small(jit=False)
    o, ro = vm.object_create(), ref.object_create()
    q = PQ_FREE + vm.vm_get_pg_color(0, o, 0)
    head = vm.queues.first(q)
    p = vm.pages
    # the head's page spinlock (its stripe) is held elsewhere: the compiled call
    # declines, the kernel's search skips that page (it only tries page locks)
    stripe = head & 1023
    t, done = _held_elsewhere(vm.page_spin[stripe])
    t2, done2 = _held_elsewhere(ref.page_spin[stripe])
    try:
        assert vm._c_alloc_head(p.w4, p.w2, p.w1, vm.queues.off, q, 0) == DECLINE
        m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
        assert m != head and m == ref.vm_page_alloc(ro, 0, VM_ALLOC_NORMAL)
        # freeing declines while the freed page's stripe is held elsewhere ...
        m2 = vm.vm_page_alloc(o, 1, VM_ALLOC_NORMAL)
        ref.vm_page_alloc(ro, 1, VM_ALLOC_NORMAL)
    finally:
        done.set()
        done2.set()
        t.join()
        t2.join()
    # ... and succeeds after the release; both layers agree throughout
    for v in (vm, ref):
        v.vm_page_free(m)
        v.vm_page_free(m2)
    assert digest(vm) == digest(ref)
    vm.check()


@needs_jit
def test_compiled_free_declines_while_the_atomic_is_held_elsewhere():
    vm = small(jit=True)
    o = vm.object_create()
    m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
    p = vm.pages
    t, done = _held_elsewhere(vm.atomic)
    before = digest(vm)
    try:
        assert vm._c_free_toq(p.w4, p.w2, p.w1, vm.queues.off, m) == DECLINE
        assert digest(vm) == before
    finally:
        done.set()
        t.join()
    vm.vm_page_free(m)
    assert vm.queues.first(PQ_FREE + p.pc[m]) == m
    vm.check()
