"""DragonFly's VM statistics (sys/vm/vm_meter.c, sys/vmmeter.h): the global
``struct vmstats vmstats``, each CPU's view ``gd_vmstats``, its pending deltas
``gd_vmstats_adj`` and its event counters ``gd_cnt`` -- all in one int64 array, so that
the page layer's compiled bodies count in it as the kernel's code does.

Layout (``DragonflyVm.stats``, ``(ncpus + 1) * GD_SIZE`` int64s): one block of
``GD_SIZE`` per CPU, as its ``struct globaldata`` holds them, then the global vmstats::

    block c (CPU c) at c * GD_SIZE:
        [GD_VMSTATS + f]  gd_vmstats.f       this CPU's view (f: V_* below)
        [GD_ADJ + f]      gd_vmstats_adj.f   deltas not yet folded (only the COUNTS)
        [GD_CNT + k]      gd_cnt.k           event counters (k: CNT_* below)
    block ncpus:
        [f]               vmstats.f          the global vmstats (GD_VMSTATS is 0)

Who writes what: a queue change counts itself in its CPU's view and delta at once
(:func:`vmstats_count`: _vm_page_add/rem_queue_spinlocked's two atomic adds), and a
removal that leaves the delta below -1024 while paging should start
(``vm_paging_start(-1024 * ncpus)`` on this CPU's view, :func:`paging_start`) folds the
delta into the global vmstats at once; :func:`vmstats_rollup` (the kernel's hardclock
work) folds every CPU's deltas and copies the global vmstats into every CPU's view.
These functions are the only writers after boot (boot and the pagedaemon's start-up set
fields through :class:`VmStats` views before any other thread runs), and they run as
bodies do (vm_page_core.py): compiled, one call holds the GIL, so each is atomic as the
kernel's atomic ops are; as plain Python (before the JIT's tier, the JIT off) under the
page layer's gate.  No Python lock guards them (``stats_lock`` no longer does).

Python reads through :class:`VmStats` (``vm.vmstats``, ``vm.local()``,
``vm.cpu[c].vmstats``: attribute views of a block) and :class:`CpuStats` (``.adj``,
``.cnt``: mappings by name); their ``repr`` is the old dataclasses' and dicts'.  Hot
Python paths index a memoryview of the array with the constants below.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import numpy as np

from ..jit import njit_typed

# struct vmstats's fields, in the model's order (VmStats' repr and the sysctl text)
VMSTATS_FIELDS = ("v_page_count", "v_free_count", "v_cache_count", "v_inactive_count",
                  "v_active_count", "v_wire_count", "v_dma_pages", "v_free_min",
                  "v_free_reserved", "v_free_severe", "v_pageout_free_min",
                  "v_interrupt_free_min", "v_free_target", "v_inactive_target",
                  "v_paging_wait", "v_paging_start", "v_paging_target1", "v_paging_target2")
(V_PAGE_COUNT, V_FREE_COUNT, V_CACHE_COUNT, V_INACTIVE_COUNT, V_ACTIVE_COUNT,
 V_WIRE_COUNT, V_DMA_PAGES, V_FREE_MIN, V_FREE_RESERVED, V_FREE_SEVERE,
 V_PAGEOUT_FREE_MIN, V_INTERRUPT_FREE_MIN, V_FREE_TARGET, V_INACTIVE_TARGET,
 V_PAGING_WAIT, V_PAGING_START, V_PAGING_TARGET1, V_PAGING_TARGET2) = range(18)
NVMSTATS = len(VMSTATS_FIELDS)
# the counts the queues (and wiring) change: the only fields with per-CPU deltas
COUNTS = VMSTATS_FIELDS[V_FREE_COUNT:V_WIRE_COUNT + 1]
# gd_cnt's event counters the page layer counts
CNT_FIELDS = ("v_tfree", "v_reactivated", "v_pdwakeups", "v_ppwakeups", "v_dfree",
              "v_pdpages")
CNT_TFREE, CNT_REACTIVATED, CNT_PDWAKEUPS, CNT_PPWAKEUPS, CNT_DFREE, CNT_PDPAGES = range(6)
NCNT = len(CNT_FIELDS)
# a CPU's block
GD_VMSTATS = 0
GD_ADJ = NVMSTATS
GD_CNT = 2 * NVMSTATS
GD_SIZE = 2 * NVMSTATS + NCNT
FOLD_SLOP = 1024        # a removal folds a delta below -FOLD_SLOP (when paging should start)


def stats_array(ncpus: int) -> np.ndarray:
    """The zeroed statistics of ``ncpus`` CPUs and the global vmstats."""
    return np.zeros((ncpus + 1) * GD_SIZE, np.int64)


# The statistics' bodies: compiled for one signature (the array, then int64s), without
# numba's runtime (no views made), like the page layer's (vm_page_core.py), which call
# them; Python calls their entry points.
stats_fn = njit_typed(st="int64[::1]")


@stats_fn
def paging_start(st, b: int, adj: int) -> bool:
    """vm_paging_start(adj) on the view at ``b`` (a CPU's block, or the global one):
    free + cache below v_paging_start, free below v_free_min (each with ``adj`` added),
    or free below v_free_reserved."""
    free = st[b + V_FREE_COUNT]
    return (st[b + V_PAGING_START] > free + st[b + V_CACHE_COUNT] + adj or
            st[b + V_FREE_MIN] > free + adj or st[b + V_FREE_RESERVED] > free)


@stats_fn
def vmstats_count(st, cpu: int, f: int, delta: int, view: int) -> int:
    """Count ``delta`` pages into field ``f`` of CPU ``cpu``'s pending deltas, and of its
    view when ``view`` (a queue add or remove; vm_page_wire/unwire's v_wire_count
    changes only the delta).  A queue removal that leaves the delta below -FOLD_SLOP while
    paging should start (vm_paging_start(-1024 * ncpus) on this CPU's view) folds it
    into the global vmstats at once (_vm_page_rem_queue_spinlocked).  Returns 1 if it
    folded, else 0."""
    b = cpu * GD_SIZE
    a = st[b + GD_ADJ + f] + delta
    st[b + GD_ADJ + f] = a
    if not view:
        return 0
    st[b + GD_VMSTATS + f] += delta
    if delta < 0 and a < -FOLD_SLOP:
        ncpus = len(st) // GD_SIZE - 1
        if paging_start(st, b, -FOLD_SLOP * ncpus):
            st[ncpus * GD_SIZE + f] += a
            st[b + GD_ADJ + f] = 0
            return 1
    return 0


@stats_fn
def vmstats_rollup(st) -> None:
    """vmstats_rollup: fold every CPU's pending deltas into the global vmstats, then
    copy it into every CPU's view."""
    ncpus = len(st) // GD_SIZE - 1
    g = ncpus * GD_SIZE
    for c in range(ncpus):
        b = c * GD_SIZE + GD_ADJ
        for f in range(V_FREE_COUNT, V_WIRE_COUNT + 1):
            a = st[b + f]
            if a:
                st[g + f] += a
                st[b + f] = 0
    for c in range(ncpus):
        b = c * GD_SIZE + GD_VMSTATS
        for f in range(NVMSTATS):
            st[b + f] = st[g + f]


# -- Python's views --------------------------------------------------------------------------
class VmStats:
    """``struct vmstats``: counts and thresholds, read and written by name
    (``s.v_free_count``) in a block of a statistics array -- a CPU's view, or the global
    vmstats -- or in one of its own (``VmStats(v_page_count=...)``, ``copy()``)."""

    __slots__ = ("_b", "_mv")

    def __init__(self, _mv: memoryview | None = None, _b: int = 0, **fields: int) -> None:
        if _mv is None:
            _mv = memoryview(np.zeros(NVMSTATS, np.int64))
        self._mv, self._b = _mv, _b
        for k, v in fields.items():
            setattr(self, k, v)

    def copy(self) -> VmStats:
        """A detached copy (its own array)."""
        return VmStats(**self.as_dict())

    def as_dict(self) -> dict[str, int]:
        mv, b = self._mv, self._b
        return {n: mv[b + i] for i, n in enumerate(VMSTATS_FIELDS)}

    def __repr__(self) -> str:
        return "VmStats(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VmStats):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]     # mutable, as the dataclass was


def _field(i: int) -> property:
    def get(self: VmStats) -> int:
        return self._mv[self._b + i]

    def put(self: VmStats, v: int) -> None:
        self._mv[self._b + i] = v
    return property(get, put, doc=f"vmstats.{VMSTATS_FIELDS[i]}")


for _i, _n in enumerate(VMSTATS_FIELDS):
    setattr(VmStats, _n, _field(_i))


class CounterView(MutableMapping):
    """Named int64 counters in a statistics array (a CPU's ``gd_vmstats_adj`` counts or
    its ``gd_cnt``): a mapping whose keys are fixed; ``repr`` as a dict's."""

    __slots__ = ("_idx", "_mv")

    def __init__(self, mv: memoryview, idx: dict[str, int]) -> None:
        self._mv, self._idx = mv, idx

    def __getitem__(self, k: str) -> int:
        return self._mv[self._idx[k]]

    def __setitem__(self, k: str, v: int) -> None:
        self._mv[self._idx[k]] = v

    def __delitem__(self, k: str) -> None:
        raise TypeError("statistics counters cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._idx)

    def __len__(self) -> int:
        return len(self._idx)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class CpuStats:
    """A CPU's statistics in the array: ``vmstats`` (``gd_vmstats``, its view, adjusted
    at once), ``adj`` (``gd_vmstats_adj``: deltas not yet folded into the global vmstats,
    by name, the COUNTS only) and ``cnt`` (``gd_cnt``'s event counters, by name)."""

    __slots__ = ("adj", "cnt", "vmstats")

    def __init__(self, mv: memoryview, cpu: int) -> None:
        b = cpu * GD_SIZE
        self.vmstats = VmStats(mv, b + GD_VMSTATS)
        self.adj = CounterView(mv, {n: b + GD_ADJ + VMSTATS_FIELDS.index(n) for n in COUNTS})
        self.cnt = CounterView(mv, {n: b + GD_CNT + i for i, n in enumerate(CNT_FIELDS)})
