"""The pagedaemon's cache -> free as one body (vm_pageout_core.cache_to_free): the same
state as the page-by-page loop it replaced, plain and compiled, on both page sources;
a lock or an object token another thread holds."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from physmem import jit
from physmem.dragonfly.locks import ME
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
from physmem.dragonfly.vm_page_array import (
    PQ_CACHE,
    PQ_FREE,
    PQ_L2_MASK,
    PQ_L2_SIZE,
    PQ_PRIME2,
    W_QUEUE,
    queue_base,
)
from physmem.dragonfly.vm_pageout_core import CF_DONE, CF_WAIT, cache_to_free
from physmem.machine import Machine, RamRange

from .dfly_util import digest
from .test_dfly_core import _held_elsewhere

MIB = 1 << 20


def small(**kw) -> DragonflyVm:
    return DragonflyVm(Machine("t48", [RamRange(0x100000, 48 * MIB)], page_array="none"),
                       **kw)


def loop_cache_to_free(vm: DragonflyVm) -> None:
    """The page-by-page loop the body replaced (main before issue 12 part 3's last
    round), through the page layer's Python primitives: the reference."""
    tries = 0
    while tries < PQ_L2_SIZE:
        s = vm.local()
        if s.v_free_count >= s.v_free_target or s.v_cache_count <= 16:
            break
        c = vm._cache_rover
        vm._cache_rover = (c + PQ_PRIME2) & PQ_L2_MASK
        m = vm.first_locked(PQ_CACHE + c)
        if m is None:
            tries += 1
            continue
        busy = vm._busy_try(m, True)
        vm.page_unlock(m)
        if busy:
            tries += 1
            continue
        tries = 0
        vm.vm_page_free(m)
        vm.cpu[vm.curcpu()].cnt["v_dfree"] += 1
        vm.pageout_stats.freed += 1


def setup(vm: DragonflyVm, cached: int = 3000) -> list[int]:
    """``cached`` file pages on PQ_CACHE (some referenced, some modified by the pmap,
    some soft-busied: failed tries), v_free_target raised 2,500 pages above
    v_free_count; a vm_wait sleeper waiting.  Returns the cached pages."""
    objs = [vm.object_create("vnode") for _ in range(5)]
    pages = []
    for i in range(cached):
        o = objs[i % 5]
        m = vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL)
        vm.vm_page_set_validclean(m, 0, 4096)
        if i % 7 == 0:
            vm.vm_page_reference(m)
        vm.vm_page_cache(m)
        if i % 11 == 0:
            vm.vm_page_modify(m)         # a pmap write seen after the page was cached
        if i % 97 == 0:
            vm.sbusy_try(m)
        pages.append(m)
    vm.vmstats_rollup()
    g = vm.vmstats
    g.v_free_target = g.v_free_count + 2500       # far short of the free target
    vm.vmstats_rollup()
    vm.vm_pages_waiting = 1
    return pages


def _rover_at_a_free_head(vm: DragonflyVm) -> int:
    """Step the cache rover (by PQ_PRIME2, as the daemon) to the first colour whose
    queue's head is not busy; returns it."""
    rover = vm._cache_rover
    while not vm.queues.lcnt[PQ_CACHE + rover] or \
            vm.pages.busy_count[vm.queues.first(PQ_CACHE + rover)]:
        rover = (rover + PQ_PRIME2) & PQ_L2_MASK
    vm._cache_rover = rover
    return rover


def state(vm: DragonflyVm) -> tuple:
    vm.check()
    return (digest(vm), vars(vm.pageout_stats), [dict(c.cnt) for c in vm.cpu],
            vm._cache_rover, vm.vm_pages_waiting, vm.vm_pageout_pages_needed)


@pytest.mark.parametrize("source", ["dragonfly", "buddy"])
def test_the_body_leaves_what_the_page_by_page_loop_left(source):
    modes = [False] + ([True] if jit.enabled() else [])
    for compiled in modes:
        ref, vm = small(jit=compiled, source=source), small(jit=compiled, source=source)
        setup(ref)
        setup(vm)
        loop_cache_to_free(ref)
        vm._cache_to_free()
        want = state(ref)
        assert want[1]["freed"] > 2000 and want[4] == 0       # freed, the sleeper woken
        assert state(vm) == want


def test_the_body_counts_what_the_loop_counts():
    vm = small(jit=False)
    setup(vm)
    s, c = vm.local(), vm.cpu[0].cnt
    free0, cache0, tfree0 = s.v_free_count, s.v_cache_count, c["v_tfree"]
    vm._cache_to_free()
    n = vm.pageout_stats.freed
    assert s.v_free_count == free0 + n == s.v_free_target
    assert s.v_cache_count == cache0 - n
    assert c["v_dfree"] == n and c["v_tfree"] == tfree0 + n
    assert c["v_ppwakeups"] == 1


@pytest.fixture(params=["plain", "compiled"])
def short(request) -> DragonflyVm:
    """A page layer short of free pages with 3,000 cached (``setup``), its bodies plain
    (under the gate) or compiled."""
    if request.param == "compiled" and not jit.enabled():
        pytest.skip("the JIT is off")
    vm = small(jit=request.param == "compiled")
    setup(vm)
    return vm


def test_a_queue_lock_held_elsewhere_makes_the_body_wait(short):
    vm = short
    before = digest(vm)
    rover = _rover_at_a_free_head(vm)
    t, done = _held_elsewhere(vm.queue_spin[PQ_CACHE + rover])
    try:
        p, tab = vm.pages, vm.objtab
        f = cache_to_free.compiled() if vm._core else cache_to_free.py
        r = f(p.w4, p.w2, p.w1, p.pi, tab.ot, tab.ob, vm.stats, np.zeros(8, np.int64),
              vm.queues.off, 0, rover, 0, 0, 0, 0, 16, ME.t)
        assert r == (CF_WAIT, rover, 0, 0, W_QUEUE + PQ_CACHE + rover)
        assert digest(vm) == before                    # nothing changed
        # the daemon's call blocks on that lock, then goes on
        runner = threading.Thread(target=vm._cache_to_free)
        runner.start()
        time.sleep(0.2)
        assert runner.is_alive() and digest(vm) == before
    finally:
        done.set()
        t.join()
    runner.join(10)
    assert not runner.is_alive() and vm.pageout_stats.freed > 2000
    assert vm.local().v_free_count == vm.local().v_free_target
    vm.check()


def test_an_object_token_held_elsewhere_defers_its_page_to_python(short):
    vm = short
    # the page the rover reaches first belongs to an object another thread holds
    first = vm.queues.first(PQ_CACHE + _rover_at_a_free_head(vm))
    t, done = _held_elsewhere(vm.objects[vm.pages.obj[first]].token)
    runner = threading.Thread(target=vm._cache_to_free)
    try:
        runner.start()
        time.sleep(0.2)
        # vm_page_free waits for the token with the page busied, nothing freed yet
        assert runner.is_alive()
        assert vm.pages.busy_count[first] and queue_base(vm.pages.queue[first]) == PQ_CACHE
        assert vm.pageout_stats.freed == 0
    finally:
        done.set()
        t.join()
    runner.join(10)
    assert not runner.is_alive()
    assert queue_base(vm.pages.queue[first]) == PQ_FREE and vm.pages.busy_count[first] == 0
    assert vm.local().v_free_count == vm.local().v_free_target
    vm.check()


def test_the_body_returns_with_nothing_to_do():
    vm = small(jit=False)
    p, tab = vm.pages, vm.objtab
    out = memoryview(np.zeros(8, np.int64))
    assert cache_to_free.py(p.w4, p.w2, p.w1, p.pindex, tab.vot, tab.vob, vm._st, out,
                            vm.queues.off, 0, 5, 0, 0, 0, 0, 16, ME.t) == (CF_DONE, 5, 0, 0, 0)
