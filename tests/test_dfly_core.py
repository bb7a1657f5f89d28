"""The page layer's compiled fast paths (dragonfly/vm_page_core.py): the same state as the
Python paths, plain or compiled, and they respect the locks other threads hold."""

from __future__ import annotations

import sys
import threading

import pytest

from physmem import jit
from physmem.dfly_workloads import anon_churn, pagecache_fill
from physmem.dragonfly.locks import ME
from physmem.dragonfly.vm_page import _BODIES, VM_ALLOC_NORMAL, DragonflyVm
from physmem.dragonfly.vm_page_array import PQ_CACHE, PQ_FREE, PQ_INACTIVE, W_ATOMIC, W_QUEUE
from physmem.dragonfly.vm_page_core import (
    SEL_WAIT,
    WAIT,
    free_toq,
    select_insert,
)
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


@pytest.mark.parametrize("mib,source", [(48, "dragonfly"), (130, "dragonfly"),
                                        (48, "buddy")])
def test_compiled_plain_and_witness_runs_leave_the_same_state(mib, source):
    """One implementation: the bodies plain (under the gate), compiled, and with
    WITNESS (the lock order of their paths checked) leave the same whole state."""
    plain = small(mib, jit=False, source=source)
    assert not plain._core and plain._gate is not None
    runs = [plain, small(mib, jit=False, witness=True, source=source)]
    if jit.enabled():
        compiled = small(mib, jit=True, source=source)
        assert compiled._core and compiled._gate is None
        runs += [compiled, small(mib, jit=True, witness=True, source=source)]
    assert len({work(vm) for vm in runs}) == 1
    assert runs[1].witness.checked > 0


@needs_jit
def test_the_tier_switches_to_the_compiled_bodies_after_n_allocations():
    vm = small(jit=50)
    o = vm.object_create()
    for i in range(49):
        vm.vm_page_free(vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL))
    assert not vm._core and vm._c_select is select_insert.py
    vm.vm_page_free(vm.vm_page_alloc(o, 49, VM_ALLOC_NORMAL))
    assert vm._core and vm._gate is None and vm._gate_ref == [None]
    assert small(witness=True, jit=True)._core      # WITNESS checks the bodies' paths


def _pending(vm: DragonflyVm) -> set[str]:
    """The bodies not compiled yet for ``vm``: still their first-call stand-in."""
    return {name for name, _ in _BODIES if hasattr(getattr(vm, name), "pending")}


@needs_jit
def test_each_body_compiles_on_its_first_call_after_the_switch():
    # The switch installs stand-ins; a body is compiled (or loaded from numba's cache)
    # when a path first calls it, so the dragonfly source never compiles the buddy
    # source's bodies, nor a table primitive no path of its run used.
    vm = small(jit=True)
    assert _pending(vm) == {name for name, _ in _BODIES} - {"_c_vmstats_rollup"}  # (boot's)
    o = vm.object_create("vnode")
    vm.vm_page_free(vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL))
    vm.pagecache_read(o, 1)
    left = _pending(vm)
    assert not left & {"_c_select", "_c_free_toq", "_c_read"}
    assert {"_c_buddy_pre", "_c_buddy_take", "_c_insert", "_c_remove"} <= left
    assert vm._c_select is not select_insert.py     # the compiled code, called directly
    b = small(jit=True, source="buddy")
    ob = b.object_create()
    b.vm_page_free(b.vm_page_alloc(ob, 0, VM_ALLOC_NORMAL))
    assert not _pending(b) & {"_c_buddy_pre", "_c_buddy_take", "_c_free_toq"}
    vm.check()
    b.check()


@needs_jit
@pytest.mark.parametrize("source", ["dragonfly", "buddy"])
def test_threads_meeting_the_first_calls_race_nothing(source):
    # Eight threads start together right after the switch: several reach a body's
    # stand-in at once (one compiles or loads it, the others wait for that, then call
    # the same code); nothing is lost or handed out twice.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        vm = small(jit=True, source=source)
        start = threading.Barrier(8)
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                o = vm.object_create("vnode")
                start.wait(10)
                for i in range(60):
                    m = vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL)
                    vm.pagecache_read(o, 1000 + i)
                    if i % 3:
                        vm.vm_page_free(m)
            except BaseException as e:      # reported below
                errors.append(e)
        ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert not _pending(vm) & {"_c_select", "_c_free_toq", "_c_read"} or source == "buddy"
    vm.check()


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


@pytest.fixture(params=["plain", "compiled"])
def vm(request) -> DragonflyVm:
    """A small page layer running its bodies plain (under the gate) or compiled."""
    if request.param == "compiled" and not jit.enabled():
        pytest.skip("the JIT is off")
    return small(jit=request.param == "compiled")


def _select(vm: DragonflyVm, color: int) -> tuple[int, int, int]:
    p = vm.pages
    t = vm.objtab
    return vm._body("_c_select", p.w4, p.w2, p.w1, p.pi, t.ot, t.ob, vm.stats,
                    vm.queues.off, PQ_FREE, PQ_CACHE, color, vm.set_assoc_mask, 0, 0, -1, 0,
                    ME.t)


def test_alloc_waits_for_a_queue_lock_held_by_another_thread(vm):
    o = vm.object_create()
    color = vm.vm_get_pg_color(0, o, 0)
    q = PQ_FREE + color
    head = vm.queues.first(q)
    t, done = _held_elsewhere(vm.queue_spin[q])
    before = digest(vm)
    # the body stops before changing anything and names the lock to wait for ...
    assert _select(vm, color) == (SEL_WAIT, W_QUEUE + q, 0)
    assert digest(vm) == before
    # ... so vm_page_alloc blocks on that queue lock
    out: list[int | None] = []
    a = threading.Thread(target=lambda: out.append(vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)))
    a.start()
    a.join(0.3)
    assert a.is_alive() and not out and digest(vm) == before
    done.set()
    t.join()
    a.join(10)
    assert out == [head]
    # with every word down the body takes the next head
    nxt = vm.queues.first(q)
    p2 = vm._color_cs                          # the same colour
    assert vm.vm_get_pg_color(0, o, p2) == color
    assert vm.vm_page_alloc(o, p2, VM_ALLOC_NORMAL) == nxt
    vm.check()


def test_bodies_skip_a_page_whose_lock_another_thread_holds(vm):
    o = vm.object_create()
    color = vm.vm_get_pg_color(0, o, 0)
    q = PQ_FREE + color
    head = vm.queues.first(q)
    second = vm.pages.next[head] - 1
    # the head's page spinlock (its stripe) is held elsewhere: the kernel's walk only
    # tries page locks, so the search takes the next page of the queue
    t, done = _held_elsewhere(vm.page_spin[head & 1023])
    try:
        m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
        assert m == second and vm.queues.first(q) == head
        # freeing a page whose stripe another thread holds waits for it
        before = digest(vm)
        a = threading.Thread(target=lambda: vm.vm_page_free(m))
        if m & 1023 == head & 1023:
            a.start()
            a.join(0.3)
            assert a.is_alive() and digest(vm) == before
    finally:
        done.set()
        t.join()
    if not a.is_alive() and a.ident is None:
        a.start()
    a.join(10)
    assert vm.queues.first(q) == m
    vm.check()


def test_free_waits_while_the_atomic_is_held_elsewhere_then_frees(vm):
    o = vm.object_create()
    m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
    vm.vm_page_remove(m)
    p = vm.pages
    t, done = _held_elsewhere(vm.atomic)
    before = digest(vm)
    try:
        tb = vm.objtab
        assert vm._body("_c_free_toq", p.w4, p.w2, p.w1, p.pi, tb.ot, tb.ob, vm.stats,
                        vm.queues.off, m, 0, 0, ME.t) == -WAIT - W_ATOMIC
        assert digest(vm) == before
        a = threading.Thread(target=lambda: vm.vm_page_free(m))
        a.start()
        a.join(0.3)
        # (the body changed nothing: the page has not moved, v_tfree not counted)
        assert a.is_alive() and p.queue[m] == 0 and p.busy_count[m]
    finally:
        done.set()
        t.join()
    a.join(10)
    assert not a.is_alive()
    assert vm.queues.first(PQ_FREE + p.pc[m]) == m
    vm.check()


def test_a_lock_the_caller_holds_does_not_stop_a_body(vm):
    """A page stripe the calling thread holds (reentrant) is as good as taken: the body
    frees the page instead of waiting for itself."""
    o = vm.object_create()
    m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
    spin = vm.page_spin[m & 1023]
    with spin:
        vm.vm_page_free(m)
    assert vm.queues.first(PQ_FREE + vm.pages.pc[m]) == m
    vm.check()


def test_plain_bodies_are_the_compiled_ones_own_python():
    """The plain mode runs the very functions numba compiles (their ``.py``)."""
    vm = small(jit=False)
    assert vm._c_select is select_insert.py and vm._c_free_toq is free_toq.py


def test_the_search_sets_aside_a_cache_page_it_cannot_recycle(vm):
    """vm_page_select_cache on a cache page that became dirty (the pmap's modify bit,
    poked here): busied, deactivated to the tail of PQ_INACTIVE + pc, unbusied, and the
    search goes on (to nothing: it was the only cache page)."""
    o = vm.object_create()
    m = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
    p = vm.pages
    vm.vm_page_set_validclean(m, 0, 4096)
    vm.vm_page_cache(m)                        # (unbusies)
    assert p.queue[m] == PQ_CACHE + p.pc[m]
    p.dirty[m] = p.valid[m]
    assert vm._select(PQ_CACHE, 0, p.pc[m]) == (None, PQ_CACHE)
    assert p.queue[m] == PQ_INACTIVE + p.pc[m]
    assert vm.queues.tail[PQ_INACTIVE + p.pc[m]] == m + 1 and not p.busy_count[m]
    vm.check()
