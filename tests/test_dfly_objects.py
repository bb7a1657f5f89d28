"""The objects' page tables as arrays (vm_object.py's ObjectTable): the table against a
dict model, its growth, and the token as a lock word that the bodies wait for."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from physmem import jit
from physmem.dragonfly.vm_object import O_ROWS, T_ROWS, VmObject
from physmem.dragonfly.vm_page import DragonflyVm
from physmem.dragonfly.vm_page_array import W_TOKEN
from physmem.dragonfly.vm_page_core import RETRY, WAIT
from physmem.dragonfly.vm_page_defs import VM_ALLOC_NORMAL, VM_ALLOC_NULL_OK, PageStateError
from physmem.machine import Machine, RamRange

from .dfly_util import digest
from .test_dfly_core import _held_elsewhere

MIB = 1 << 20


def small(mib: int = 48, tiny: bool = True, **kw) -> DragonflyVm:
    """A small page layer; ``tiny``: its object arrays start at 8 slots and 2 objects,
    so that a few operations make both grow."""
    m = Machine(f"t{mib}", [RamRange(0x100000, mib * MIB)], page_array="none")
    vm = DragonflyVm(m, **kw)
    if tiny:
        t = vm.objtab
        t.ot = np.zeros((T_ROWS, 8), np.int64)
        t.ob = np.zeros((O_ROWS, 2), np.int64)
        t.vot, t.vob = memoryview(t.ot), memoryview(t.ob)
    return vm


MODES = ["plain", "compiled"] if jit.enabled() else ["plain"]

# pindexes that collide in a small table, and extreme ones
PINDEX = st.one_of(st.integers(0, 40), st.sampled_from([2**63 - 1, 2**62, 2**32 + 3, 1024]))
OPS = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 3), PINDEX),
    st.tuples(st.just("free"), st.integers(0, 3), st.integers(0, 1000)),
    st.tuples(st.just("lookup"), st.integers(0, 3), PINDEX),
    st.tuples(st.just("terminate"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("create"), st.just(0), st.just(0)),
), max_size=60)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_table_follows_a_dict_model(mode, ops):
    """Insert (vm_page_alloc), remove (vm_page_free), lookup and terminate sequences on
    several objects: every object's pages, in insertion order, its resident count and
    every lookup equal a dict model's; the INVARIANTS checker (the table both ways)
    passes after each step, through the arrays' growth."""
    vm = small(jit=mode == "compiled")
    objs = [vm.object_create() for _ in range(2)]
    model: dict[int, dict[int, int]] = {o.id: {} for o in objs}
    for op, i, arg in ops:
        live = [o for o in objs if o.id in vm.objects]
        if op == "create":
            o = vm.object_create()
            objs.append(o)
            model[o.id] = {}
            continue
        if not live:
            continue
        o = live[i % len(live)]
        mo = model[o.id]
        if op == "alloc":
            m = vm.vm_page_alloc(o, arg, VM_ALLOC_NORMAL | VM_ALLOC_NULL_OK)
            if arg in mo:
                assert m is None
            else:
                assert m is not None
                mo[arg] = m
                vm.vm_page_wakeup(m)
        elif op == "free" and mo:
            pindex = list(mo)[arg % len(mo)]
            m = mo.pop(pindex)
            vm.busy_wait(m, False)
            vm.vm_page_free(m)
        elif op == "lookup":
            assert vm.vm_page_lookup(o, arg) == mo.get(arg)
        elif op == "terminate":
            assert vm.vm_object_terminate(o) == len(mo)
            mo.clear()
        for ob in objs:
            if ob.id in vm.objects:
                assert list(ob.memq.items()) == list(model[ob.id].items())
                assert ob.resident_page_count == len(model[ob.id])
        vm.check()


def test_a_taken_pindex_is_refused_before_anything_changes():
    vm = small(tiny=False)
    o = vm.object_create()
    m = vm.vm_page_alloc(o, 5, VM_ALLOC_NORMAL)
    before = digest(vm)
    with pytest.raises(PageStateError, match="PAGE RACE"):
        vm.vm_page_alloc(o, 5, VM_ALLOC_NORMAL)
    assert digest(vm) == before and vm.vm_page_lookup(o, 5) == m
    vm.check()


def test_an_object_of_no_page_layer_reads_empty():
    o = VmObject(1)
    assert dict(o.memq) == {} and o.resident_page_count == 0 and not o.writeable


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("what", ["alloc", "free", "lookup"])
def test_a_body_waits_for_an_object_token_held_elsewhere(mode, what):
    """vm_page_alloc, vm_page_free and vm_page_lookup meet the object's token held by
    another thread: the body declines (-WAIT - the token's word) with nothing changed,
    the caller blocks on the token, and succeeds once it is released."""
    vm = small(tiny=False, jit=mode == "compiled")
    o = vm.object_create()
    m0 = vm.vm_page_alloc(o, 0, VM_ALLOC_NORMAL)
    p, tab = vm.pages, vm.objtab
    t, done = _held_elsewhere(o.token)
    before = digest(vm)
    try:
        # the body names the token's word and changes nothing
        assert vm._body("_c_lookup", tab.ot, tab.ob, o.id, 0, vm._tls.me) == \
            -WAIT - (W_TOKEN + o.id)
        assert vm._body("_c_free_toq", p.w4, p.w2, p.w1, p.pi, tab.ot, tab.ob, vm.stats,
                        vm.queues.off, m0, 0, 0, vm._tls.me) == -WAIT - (W_TOKEN + o.id)
        out: list = []
        run = {"alloc": lambda: out.append(vm.vm_page_alloc(o, 1, VM_ALLOC_NORMAL)),
               "free": lambda: out.append(vm.vm_page_free(m0)),
               "lookup": lambda: out.append(vm.vm_page_lookup(o, 0))}[what]
        a = threading.Thread(target=run)
        a.start()
        a.join(0.3)
        assert a.is_alive() and not out
        assert digest(vm) == before
    finally:
        done.set()
        t.join()
    a.join(10)
    assert not a.is_alive() and len(out) == 1
    if what == "alloc":
        assert vm.vm_page_lookup(o, 1) == out[0]
    elif what == "free":
        assert vm.vm_page_lookup(o, 0) is None and o.resident_page_count == 0
    else:
        assert out == [m0]
    vm.check()


def test_the_token_held_by_the_caller_does_not_stop_a_body():
    vm = small(tiny=False)
    o = vm.object_create()
    with o.token:
        m = vm.vm_page_alloc(o, 3, VM_ALLOC_NORMAL)
        assert vm.vm_page_lookup(o, 3) == m
        vm.vm_page_free(m)
    assert o.resident_page_count == 0
    vm.check()


def test_a_body_handed_a_replaced_array_retries():
    """A table replaced by a larger one is marked moved: a body handed the old one
    returns RETRY with nothing changed."""
    vm = small()
    o = vm.object_create()
    old = vm.objtab.ot
    for i in range(5):                      # 8 slots, at most half full: the fifth grows it
        vm.vm_page_wakeup(vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL))
    assert vm.objtab.ot is not old and vm.objtab.ot.shape[1] == 16
    assert vm._body("_c_lookup", old, vm.objtab.ob, o.id, 0, vm._tls.me) == RETRY
    assert [pi for pi, _ in o.memq.items()] == [0, 1, 2, 3, 4]
    vm.check()



@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("off", range(8))
def test_a_read_that_recycles_first_inserts_where_its_lookups_look(mode, off):
    """A page-cache read at the class floor recycles cache pages of another object inside
    its body before it takes a free page; each recycle removes a table entry, and the
    entries after it shift back, so the read's own empty slot can move: its page must be
    found by vm_page_lookup afterwards and the table agree with the objects (the slot
    looked up again after the recycles; without it, pindexes 0 and 4 here go wrong)."""
    vm = small(jit=mode == "compiled")
    b, a = vm.object_create("vnode"), vm.object_create("vnode")
    for i in range(3):                      # three cache pages of another object
        m = vm.vm_page_alloc(b, off * 3 + i, VM_ALLOC_NORMAL)
        vm.vm_page_set_validclean(m, 0, 4096)
        vm.vm_page_cache(m)
    i = 0
    while vm.vm_page_alloc(None, i, 0x4) is not None:    # INTERRUPT: every free page
        i += 1
    for s in [vm.vmstats] + [c.vmstats for c in vm.cpu]:
        # the floor 3 pages up, no pagedaemon kick due: the read recycles in its body
        s.v_free_reserved, s.v_paging_start, s.v_free_min = 3, 0, 0
    m = vm.pagecache_read(a, off)
    assert vm.vm_page_lookup(a, off) == m and b.resident_page_count == 0
    vm.check()
