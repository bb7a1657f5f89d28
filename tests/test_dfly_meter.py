"""The page layer's statistics in one array (dragonfly/vm_meter.py): the counting body
against the dict-and-dataclass model it replaced (the fold rule, the rollup, the
per-CPU views), plain and compiled; the views' text; the fold seen through the page
layer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physmem import jit
from physmem.dragonfly.vm_meter import (
    CNT_FIELDS,
    COUNTS,
    GD_SIZE,
    VMSTATS_FIELDS,
    CpuStats,
    VmStats,
    stats_array,
    vmstats_count,
    vmstats_rollup,
)
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, CpuTopology, DragonflyVm
from physmem.dragonfly.vm_pageout import derive_thresholds


class Model:
    """The per-CPU statistics as main kept them: a dict per CPU view, a dict of deltas,
    the global dict; _count's fold: a removal that leaves the delta below -1024 while
    vm_paging_start(-1024 * ncpus) holds on this CPU's view folds it."""

    def __init__(self, ncpus: int, glob: dict[str, int]) -> None:
        self.ncpus = ncpus
        self.glob = dict(glob)
        self.view = [dict(glob) for _ in range(ncpus)]
        self.adj = [dict.fromkeys(COUNTS, 0) for _ in range(ncpus)]

    def start(self, cpu: int, adj: int) -> bool:
        s = self.view[cpu]
        free, cache = s["v_free_count"], s["v_cache_count"]
        return (s["v_paging_start"] > free + cache + adj or s["v_free_min"] > free + adj
                or s["v_free_reserved"] > free)

    def count(self, cpu: int, k: str, delta: int, view: int) -> int:
        self.adj[cpu][k] += delta
        if not view:
            return 0
        self.view[cpu][k] += delta
        a = self.adj[cpu][k]
        if delta < 0 and a < -1024 and self.start(cpu, -1024 * self.ncpus):
            self.glob[k] += a
            self.adj[cpu][k] = 0
            return 1
        return 0

    def rollup(self) -> None:
        for a in self.adj:
            for k, v in a.items():
                self.glob[k] += v
                a[k] = 0
        self.view = [dict(self.glob) for _ in range(self.ncpus)]


def _start_state(ncpus: int, pages: int) -> tuple[np.ndarray, Model]:
    arr = stats_array(ncpus)
    g = VmStats(memoryview(arr), ncpus * GD_SIZE, v_page_count=pages,
                v_free_count=pages - 100, v_wire_count=100)
    derive_thresholds(g)
    vmstats_rollup.py(memoryview(arr))
    return arr, Model(ncpus, g.as_dict())


def _same(arr: np.ndarray, model: Model) -> None:
    mv = memoryview(arr)
    ncpus = model.ncpus
    assert VmStats(mv, ncpus * GD_SIZE).as_dict() == model.glob
    for c in range(ncpus):
        cs = CpuStats(mv, c)
        assert cs.vmstats.as_dict() == model.view[c]
        assert dict(cs.adj) == model.adj[c]


OPS = st.lists(st.one_of(
    st.tuples(st.just("count"), st.integers(0, 3), st.sampled_from(COUNTS),
              st.one_of(st.sampled_from([-1, 1]), st.integers(-3000, 3000)),
              st.sampled_from([0, 1])),
    st.just(("rollup",))), max_size=60)


@settings(max_examples=60, deadline=None)
@given(ncpus=st.integers(1, 4), pages=st.integers(2_000, 400_000), ops=OPS)
def test_counting_body_matches_the_dict_model(ncpus, pages, ops):
    """Random adds, removals, delta-only changes and rollups: the body (plain over a
    memoryview, and compiled over the array) leaves what the old model left, fold by
    fold."""
    runs = [(memoryview, vmstats_count.py, vmstats_rollup.py)]
    if jit.enabled():
        runs.append((lambda a: a, vmstats_count.compiled(), vmstats_rollup.compiled()))
    for wrap, count, rollup in runs:
        arr, model = _start_state(ncpus, pages)
        a = wrap(arr)
        for op in ops:
            if op[0] == "rollup":
                rollup(a)
                model.rollup()
                continue
            _, cpu, k, delta, view = op
            cpu %= ncpus
            f = VMSTATS_FIELDS.index(k)
            assert count(a, cpu, f, delta, view) == model.count(cpu, k, delta, view)
        _same(arr, model)


def test_a_removal_folds_only_below_the_slop_while_paging_should_start():
    arr, _ = _start_state(2, 100_000)
    mv = memoryview(arr)
    f = VMSTATS_FIELDS.index("v_free_count")
    g = VmStats(mv, 2 * GD_SIZE)
    g0 = g.v_free_count
    for _ in range(1024):                 # -1024 is not below the slop
        assert vmstats_count.py(mv, 1, f, -1, 1) == 0
    assert g.v_free_count == g0 and CpuStats(mv, 1).adj["v_free_count"] == -1024
    # paging should not start (plenty free): -1025 does not fold either
    assert vmstats_count.py(mv, 1, f, -1, 1) == 0
    # now it should: the next removal folds the whole delta, CPU 1's view stays
    CpuStats(mv, 1).vmstats.v_paging_start = 10**9
    assert vmstats_count.py(mv, 1, f, -1, 1) == 1
    assert g.v_free_count == g0 - 1026 and CpuStats(mv, 1).adj["v_free_count"] == 0
    assert CpuStats(mv, 1).vmstats.v_free_count == g0 - 1026
    assert CpuStats(mv, 0).vmstats.v_free_count == g0      # CPU 0 sees it at the rollup
    # a delta-only change (wiring) never folds, however low
    w = VMSTATS_FIELDS.index("v_wire_count")
    assert vmstats_count.py(mv, 1, w, -5000, 0) == 0
    assert CpuStats(mv, 1).adj["v_wire_count"] == -5000


def test_views_print_as_the_dataclass_and_dicts_did():
    s = VmStats(v_page_count=7, v_free_count=3)
    assert repr(s) == ("VmStats(" + ", ".join(
        f"{n}={7 if n == 'v_page_count' else 3 if n == 'v_free_count' else 0}"
        for n in VMSTATS_FIELDS) + ")")
    c = s.copy()
    c.v_free_count = 4
    assert s.v_free_count == 3 and c != s and c.copy() == c
    cs = CpuStats(memoryview(stats_array(1)), 0)
    cs.cnt["v_tfree"] += 2
    assert repr(cs.adj) == repr(dict.fromkeys(COUNTS, 0))
    assert repr(cs.cnt) == repr({k: 2 if k == "v_tfree" else 0 for k in CNT_FIELDS})
    assert cs.cnt.get("v_tfree") == 2 and list(cs.cnt) == list(CNT_FIELDS)
    with pytest.raises(TypeError):
        del cs.cnt["v_tfree"]
    with pytest.raises(KeyError):
        cs.adj["v_page_count"]                # thresholds have no delta


@pytest.mark.parametrize("mode", ["plain", "compiled"])
def test_the_page_layer_folds_the_1025th_removal_when_paging_should_start(mode):
    if mode == "compiled" and not jit.enabled():
        pytest.skip("the JIT is off")
    vm = DragonflyVm("firecracker-128m", cpus=CpuTopology(1, 2, 1), jit=mode == "compiled")
    vm.vmstats.v_paging_start = 10**9          # paging should start from now on
    vm.vmstats_rollup()
    g0 = vm.vmstats.v_free_count
    o = vm.object_create()
    with vm.on_cpu(1):
        for i in range(1025):
            assert vm.vmstats.v_free_count == g0       # the deltas wait on CPU 1
            vm.vm_page_alloc(o, i, VM_ALLOC_NORMAL)
        assert vm.vmstats.v_free_count == g0 - 1025    # folded by the 1025th removal
        assert vm.cpu[1].adj["v_free_count"] == 0
        assert vm.local().v_free_count == g0 - 1025
    assert vm.cpu[0].vmstats.v_free_count == g0
    # the frees (additions) never fold; the rollup brings every CPU's view in line
    with vm.on_cpu(1):
        for i in range(10):
            vm.vm_page_free(vm.vm_page_lookup(o, i))
    assert vm.vmstats.v_free_count == g0 - 1025 and vm.cpu[1].adj["v_free_count"] == 10
    assert vm.cpu[1].cnt["v_tfree"] == 10
    vm.vmstats_rollup()
    assert [c.vmstats.v_free_count for c in vm.cpu] == [g0 - 1015] * 2
    assert vm.vmstats.v_free_count == g0 - 1015
    assert vm.show_page().splitlines()[0] == f"vmstats.v_free_count: {g0 - 1015}"
    vm.check()
