"""DragonFly BSD's physical page layer (sys/vm/vm_page.c, seed 004): struct vm_page, page
queues × colours, allocation classes, freeing, busy/wire/hold, state transitions, objects,
lookup and the page hash, valid/dirty bits, fictitious pages, per-CPU vmstats, the DMA
reserve, and the DDB views.  Memory pressure (thresholds, vm_wait, the pageout daemon,
madvise) is in :mod:`physmem.dragonfly.vm_pageout`, mixed into :class:`DragonflyVm`.

Pages are named by physical address at the API and by page-array index inside.  Every
operation that the kernel would panic on raises :class:`PageStateError` (a
:class:`~physmem.errors.StateError`) *before* changing anything.

The free-page source is pluggable (``source=``):

* ``"dragonfly"`` (default): DragonFly's own coloured PQ_FREE queues, built at boot from
  phys_avail in ascending order, each page at the head of ``PQ_FREE + colour``;
* ``"buddy"``: FreeBSD's vm_phys (an eagerly booted :class:`~physmem.kernel.Kernel`)
  hands out and takes back order-0 pages; PQ_FREE stays empty and ``v_free_count`` follows
  the buddy allocator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator

import numpy as np

from ..bits import PAGE_SHIFT
from ..errors import AddressError, ArgumentError, PhysmemError
from ..jit import Lazy
from ..jit import enabled as jit_enabled
from ..machine import Machine, get_machine
from ..pagearray import PG_PHYS_ALLOC
from .alist import Alist
from .locks import PAGE_STRIPES, Witness, WordLock, make_spin
from .vm_meter import (
    GD_ADJ,
    GD_CNT,
    GD_SIZE,
    GD_VMSTATS,
    CpuStats,
    VmStats,
    stats_array,
    vmstats_count,
    vmstats_rollup,
)
from .vm_object import ObjectTable, PageHash, VmObject
from .vm_page_alloc import AllocMixin
from .vm_page_array import (
    COUNTS,
    PQ_COUNT,
    PQ_FREE,
    PQ_HOLD,
    PQ_L2_MASK,
    W_ATOMIC,
    W_PAGE,
    W_QUEUE,
    W_TOKEN,
    PageArray,
    Queues,
)
from .vm_page_bits import BitsMixin
from .vm_page_boot import BootMixin
from .vm_page_busy import BusyMixin
from .vm_page_core import (
    buddy_pre,
    buddy_take,
    free_toq,
    page_insert,
    page_lookup,
    page_read,
    page_remove,
    read_done,
    select_insert,
)
from .vm_page_defs import (
    PINDEX_LIMIT,
    VM_ALLOC_CPU,
    VM_ALLOC_CPU_SPEC,
    VM_ALLOC_FORCE_ZERO,
    VM_ALLOC_INTERRUPT,
    VM_ALLOC_NORMAL,
    VM_ALLOC_NULL_OK,
    VM_ALLOC_QUICK,
    VM_ALLOC_RETRY,
    VM_ALLOC_SYSTEM,
    VM_ALLOC_USE_GD,
    VM_ALLOC_ZERO,
    CpuTopology,
    FakePage,
    PageStateError,
    _CpuLocal,
    parse_req,
)
from .vm_page_objects import ObjectMixin
from .vm_page_search import QueueSearchMixin
from .vm_page_transitions import TransitionMixin
from .vm_page_views import ViewMixin
from .vm_pageout import PageoutMixin
from .vm_pageout_core import scan_active, scan_inactive

# The bodies the page layer calls from Python (``DragonflyVm._c_<name>``), switched to
# compiled code by ``_enter_core``; each compiles on its first call after the switch.
_BODIES = (("_c_select", select_insert), ("_c_insert", page_insert),
           ("_c_remove", page_remove), ("_c_lookup", page_lookup),
           ("_c_free_toq", free_toq), ("_c_read_done", read_done), ("_c_read", page_read),
           ("_c_buddy_pre", buddy_pre), ("_c_buddy_take", buddy_take),
           ("_c_scan_active", scan_active), ("_c_scan_inactive", scan_inactive),
           ("_c_vmstats_count", vmstats_count), ("_c_vmstats_rollup", vmstats_rollup))


class DragonflyVm(BootMixin, QueueSearchMixin, BusyMixin, AllocMixin, TransitionMixin,
                  ObjectMixin, BitsMixin, ViewMixin, PageoutMixin):
    """DragonFly's page layer over one machine's memory (see the module docstring)."""

    def __init__(self, machine: str | Machine = "firecracker-1g", source: str = "dragonfly",
                 cpus: CpuTopology | None = None, dma_reserved: int | None = None,
                 witness: bool = False, hash_vnode_only: bool = False,
                 jit: bool | int | None = None) -> None:
        if not isinstance(machine, (str, Machine)):
            raise ArgumentError(f"machine must be a preset name, a file path or a Machine, "
                                f"not {type(machine).__name__}")
        m = get_machine(machine) if isinstance(machine, str) else machine
        if source not in ("dragonfly", "buddy"):
            raise ArgumentError(f"unknown free-page source {source!r} (dragonfly, buddy)")
        self.machine = m
        self.source = source
        self.topology = cpus or CpuTopology(*m.topology())
        self.ncpus = self.topology.ncpus
        self._color_slices()
        self.witness = Witness()
        self.witness.enable(witness)
        self._witness_on = bool(witness)
        if source == "buddy":
            avail = m.phys_avail()          # the pages FreeBSD's boot hands to vm_phys
        else:
            # DragonFly carves its own page array: start from the platform's map
            avail = (m.phys_avail() if m.avail_override is not None else
                     dataclasses.replace(m, page_array="none").phys_avail())
        first = min(s for s, _ in avail) >> PAGE_SHIFT
        last = max(e for _, e in avail) >> PAGE_SHIFT
        self.first_pfn = first
        self.pages = PageArray(first, last - first)
        self.queues = Queues(self.pages)
        self.nonempty = self.queues.nonempty
        self._implicit = self.queues.implicit     # untouched blocks (see Queues)
        self._implicit_off = self.queues.off
        # The statistics (vm_meter.py): one int64 array, a block per CPU (its view,
        # pending deltas and event counters) and the global vmstats; Python's views of it
        self.stats = stats_array(self.ncpus)
        self.mstats = memoryview(self.stats)
        self._st = self.mstats                   # what the plain statistics bodies index
        self.vmstats = VmStats(self.mstats, self.ncpus * GD_SIZE)
        self.cpu = [CpuStats(self.mstats, c) for c in range(self.ncpus)]
        self._local = [c.vmstats for c in self.cpu]
        # per CPU, memoryviews of its view and its event counters (the hot paths' reads)
        self._lv = [self.mstats[c * GD_SIZE + GD_VMSTATS:c * GD_SIZE + GD_ADJ]
                    for c in range(self.ncpus)]
        self._cv = [self.mstats[c * GD_SIZE + GD_CNT:(c + 1) * GD_SIZE]
                    for c in range(self.ncpus)]
        self._tls = _CpuLocal()
        self._quick_color = [0] * self.ncpus     # globaldata gd_quick_color, 0 at boot
        self.objects: dict[int, VmObject] = {}
        self._next_obj = 1
        self.vnode_ids = np.zeros(64, np.uint8)     # 1 at the ids of vnode objects
        self.fake: dict[int, FakePage] = {}
        self.md_refs: dict[int, int] = {}           # pmap reference counts
        self.md_mod: set[int] = set()              # pmap modified pages
        # The bodies (vm_page_core.py): plain Python under the gate (``_gate``) until the
        # JIT's tier, then compiled: after ``jit`` allocations (True: at once; False:
        # never; None: PHYSMEM_JIT_TIER, else 20,000), as the FreeBSD Kernel's tiers;
        # always plain with the JIT off.  Every page-layer lock raises its word for them.
        from ..kernel import jit_mode
        tier = jit_mode(jit)
        words = self.pages.words
        self._gate: threading.Lock | None = threading.Lock()
        self._gate_ref = [self._gate]              # the WordLocks' view of it
        self._core = False                         # the bodies compiled (see _tier)
        self._tier = -1 if tier is False or not jit_enabled() else \
            (0 if tier is True else int(tier))
        g = self._gate_ref
        self.page_spin = [make_spin("page", self.witness, words, W_PAGE + i, g)
                          for i in range(PAGE_STRIPES)]
        self.queue_spin = [make_spin("queue", self.witness, words, W_QUEUE + q, g)
                           for q in range(PQ_COUNT)]
        # stands for the CPU's atomic ops
        self.atomic = WordLock(threading.Lock(), words, W_ATOMIC, g)
        # the objects' page tables and tokens (vm_object.py), read by the bodies
        self.objtab = ObjectTable(self._gate_ref, self.pages.w4, self.pages.pi)
        # the bodies' plain versions until the tier's switch (_enter_core); the scans run
        # theirs through _scan_body, and only call _c_scan_* once compiled
        for name, fn in _BODIES:
            setattr(self, name, fn.py)
        if self._tier == 0:
            self._enter_core()
        self.stats_lock = threading.Lock()         # object ids, vm_quickcolor's counters
        self.sleep = threading.Condition(threading.Lock())
        self.set_assoc_mask = 15
        self.hash: PageHash | None = None
        self.hash_vnode_only = hash_vnode_only
        self.ticks = 0
        self.deficit = 0                           # vm_pageout_deficit
        self.dnweight = 0
        self.zeroed_pages = 0
        self.kernel = None
        self.dma_alist: Alist | None = None
        self.low_phys_reserved = 0           # pages: pfn < it is in the reserve
        self.low_phys_reserved_pa = 0        # the kernel's byte value
        self.dma_reserved = 0
        self.dma_out: dict[int, int] = {}          # pfn -> pages handed out by alloc_contig
        self.messages: list[str] = []
        self._init_pageout()
        self._startup(avail, dma_reserved)
        self._buddy_domains = self._buddy_domains_by_cpu() if self.kernel is not None else []

    def _enter_core(self) -> None:
        """Switch the bodies to their compiled versions, under the gate: no plain body
        runs meanwhile, and none after it (their callers read the gate, then the
        function, under it).  Each body is compiled (or loaded from numba's cache) on its
        own first call after the switch (``_first_call``), so a process compiles only the
        bodies its paths use (not the buddy source's on the dragonfly source, not the
        table primitives only rare paths call): ~1.3 s of a cold start (bench/RESULTS.md,
        issue 12 part 3, wt12j)."""
        g = self._gate
        assert g is not None
        with g:
            for name, fn in _BODIES:
                setattr(self, name, self._first_call(name, fn))
            self._st = self.stats
            self._core = True
            self._gate_ref[0] = None
            self._gate = None

    def _first_call(self, name: str, fn: Lazy) -> Callable:
        """Body ``name``'s stand-in after the switch: on its first call it compiles ``fn``
        (under physmem.jit's lock: a second thread calling meanwhile waits for that
        compile, then calls the same code), installs the dispatcher's entry point as
        ``name`` (later calls skip this) and calls it.  Only compiled callers see it
        (the gate is gone), so the plain version never runs beside it."""
        def first(*args):
            f = fn.entry() if fn.sig else fn.compiled()
            setattr(self, name, f)
            return f(*args)
        first.pending = fn          # (tests: the bodies not compiled yet)
        return first

    def _body(self, name: str, *args):
        """Call body ``name`` (``_c_<name>``) as plain Python, holding the gate (see
        :mod:`.vm_page_core`); once compiled, without it.  The hot paths test
        ``self._gate is None`` and call the compiled body themselves."""
        g = self._gate
        if g is not None:
            g.acquire()             # (not "with": ~0.1 us a call less)
            try:
                if self._gate is g:             # still plain (the switch takes the gate)
                    return getattr(self, name)(*args)
            finally:
                g.release()
        # Compiled meanwhile: the caller prepared the plain bodies' arguments, memoryviews
        # of the arrays; the compiled bodies take the arrays themselves.
        return getattr(self, name)(*[a.obj if type(a) is memoryview else a for a in args])

    def _wait_word(self, w: int) -> None:
        """A body met lock word ``w`` held by another thread: wait for that lock (take
        and drop it), as the kernel's path would block on it (an object's token:
        ``W_TOKEN + id``)."""
        if w >= W_TOKEN:
            obj = self.objects.get(w - W_TOKEN)
            if obj is not None:
                obj.token.acquire()
                obj.token.release()
            return
        if w < W_PAGE:
            lock = self.queue_spin[w - W_QUEUE]
        elif w < W_ATOMIC:
            lock = self.page_spin[w - W_PAGE]
        else:
            lock = self.atomic
        lock.acquire()
        lock.release()

    # ======================================================================================
    # Addresses, CPUs, per-CPU statistics
    # ======================================================================================
    def page(self, pa: int) -> int:
        """PHYS_TO_VM_PAGE: the page-array index of ``pa`` (an AddressError otherwise)."""
        if not isinstance(pa, int) or pa < 0 or pa & ((1 << PAGE_SHIFT) - 1):
            raise AddressError(f"address {pa!r} is not a page address")
        m = (pa >> PAGE_SHIFT) - self.first_pfn
        if not 0 <= m < self.pages.npages:
            raise AddressError(f"address {pa:#x} is outside the page array")
        if self.unmanaged[m]:
            raise AddressError(f"address {pa:#x} is in a hole of phys_avail: its vm_page "
                               "was never initialised")
        if self._implicit[(m + self._implicit_off) >> 10]:
            self.queues.materialise(m)          # its fields are read from here on
        return m

    def pa(self, m: int) -> int:
        return (m + self.first_pfn) << PAGE_SHIFT

    def _is_free(self, m: int) -> bool:
        """On PQ_FREE, parked on PQ_HOLD after its free, or free in the buddy source."""
        q = self.pages.queue[m]
        if q:
            b = ((q - 1) & ~PQ_L2_MASK) + 1
            return b in (PQ_FREE, PQ_HOLD)
        return self.kernel is not None and self._buddy_free(m)

    def _buddy_free(self, m: int) -> bool:
        """Buddy source: whether vm_phys holds the page (its page word lacks the
        PG_PHYS_ALLOC bit the FreeBSD layer sets on every page it hands out)."""
        assert self.kernel is not None
        return not self.kernel.phys.pages.raw(m + self.first_pfn) & PG_PHYS_ALLOC

    def _check_page(self, m: int, fn: str, refuse_free: bool = True) -> None:
        """A public operation's page argument: a page of this machine (AddressError),
        and not a free page unless the operation takes those (PageStateError)."""
        if type(m) is not int or not 0 <= m < self.pages.npages or self.unmanaged[m]:
            raise AddressError(f"{fn}: {m!r} is not a page of this machine")
        if self._implicit[(m + self._implicit_off) >> 10]:
            self.queues.materialise(m)          # its fields are read from here on
        if refuse_free and self._is_free(m):
            raise PageStateError(f"{fn}: page {self.pa(m):#x} is free")

    def _check_obj(self, obj: VmObject, fn: str) -> VmObject:
        if not isinstance(obj, VmObject) or self.objects.get(obj.id) is not obj:
            raise ArgumentError(f"{fn}: {obj!r} is not an object of this page layer")
        return obj

    @staticmethod
    def _check_pindex(pindex: int, fn: str) -> None:
        if type(pindex) is not int or not 0 <= pindex < PINDEX_LIMIT:
            raise ArgumentError(f"{fn}: pindex {pindex!r} must be an integer in "
                                f"[0, 2**63)")

    def curcpu(self) -> int:
        return self._tls.cpu

    @contextlib.contextmanager
    def on_cpu(self, cpu: int) -> Iterator[None]:
        """Run the block as CPU ``cpu`` (its per-CPU vmstats and colours)."""
        if not isinstance(cpu, int) or not 0 <= cpu < self.ncpus:
            raise ArgumentError(f"cpu {cpu!r} out of range 0..{self.ncpus - 1}")
        old = self.curcpu()
        self._tls.cpu = cpu
        try:
            yield
        finally:
            self._tls.cpu = old

    def _stats(self, name: str, *args) -> int:
        """Call statistics body ``name`` (``_c_vmstats_*``, vm_meter.py) on the array:
        compiled, at once (one call holds the GIL: atomic as the kernel's atomic ops);
        plain, holding the gate, over the array's memoryview."""
        g = self._gate
        if g is None:
            return getattr(self, name)(self.stats, *args)
        with g:
            return getattr(self, name)(self._st, *args)

    def _count(self, f: int, delta: int) -> None:
        """A queue add (+1) or remove (-1) of vmstats field ``f`` (vm_meter's V_*): this
        CPU's local view and pending delta change at once.  A removal that leaves the
        delta below -1024 while paging should start folds it into the global vmstats at
        once (_vm_page_rem_queue_spinlocked; vm_meter.vmstats_count)."""
        g = self._gate
        if g is None:
            self._c_vmstats_count(self.stats, self._tls.cpu, f, delta, 1)
        else:                        # _stats, inlined (the body cannot raise)
            g.acquire()
            self._c_vmstats_count(self._st, self._tls.cpu, f, delta, 1)
            g.release()

    def _count_adj(self, f: int, delta: int) -> None:
        """A pending delta only (vm_page_wire/unwire's v_wire_count): no CPU sees it
        before the next rollup."""
        self._stats("_c_vmstats_count", self._tls.cpu, f, delta, 0)

    def vmstats_rollup(self) -> None:
        """Fold every CPU's pending deltas into the global vmstats, refresh the copies."""
        self._stats("_c_vmstats_rollup")

    def local(self) -> VmStats:
        """This CPU's view of vmstats (gd_vmstats)."""
        return self._local[self._tls.cpu]


__all__ = [
    "COUNTS",
    "VM_ALLOC_CPU",
    "VM_ALLOC_CPU_SPEC",
    "VM_ALLOC_FORCE_ZERO",
    "VM_ALLOC_INTERRUPT",
    "VM_ALLOC_NORMAL",
    "VM_ALLOC_NULL_OK",
    "VM_ALLOC_QUICK",
    "VM_ALLOC_RETRY",
    "VM_ALLOC_SYSTEM",
    "VM_ALLOC_USE_GD",
    "VM_ALLOC_ZERO",
    "CpuTopology",
    "DragonflyVm",
    "PageStateError",
    "PhysmemError",
    "parse_req",
]
