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
* ``"buddy"``: FreeBSD's vm_phys (an eagerly booted :class:`~physmem.freebsd.vm_page.Kernel`)
  hands out and takes back order-0 pages; PQ_FREE stays empty and ``v_free_count`` follows
  the buddy allocator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..bits import PAGE_SHIFT, PAGE_SIZE, round_page
from ..errors import AddressError, ArgumentError, PhysmemError, StateError
from ..machine import Machine, get_machine, parse_cpus
from ..pagearray import PG_PHYS_ALLOC
from .alist import ALIST_BLOCK_NONE, Alist
from .locks import PAGE_STRIPES, Witness, make_spin, page_op
from .vm_object import OBJ_TYPES, OBJT_DEFAULT, PageHash, VmObject
from .vm_page_array import (
    ACT_INIT,
    COUNTER,
    COUNTS,
    DEV_BSIZE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_MAPPEDMULTI,
    PG_NEED_COMMIT,
    PG_NOSYNC,
    PG_REFERENCED,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_COUNT,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_L2_MASK,
    PQ_L2_SIZE,
    PQ_NONE,
    PQ_PRIME2,
    VM_PAGE_BITS_ALL,
    CpuStats,
    PageArray,
    Queues,
    VmStats,
    boot_color,
    queue_base,
)
from .vm_pageout import PageoutMixin, Proc

VM_ALLOC_NORMAL = 0x1
VM_ALLOC_SYSTEM = 0x2
VM_ALLOC_INTERRUPT = 0x4
VM_ALLOC_ZERO = 0x8
VM_ALLOC_QUICK = 0x10
VM_ALLOC_FORCE_ZERO = 0x20
VM_ALLOC_NULL_OK = 0x40
VM_ALLOC_RETRY = 0x80
VM_ALLOC_USE_GD = 0x100
VM_ALLOC_CPU_SPEC = 0x200
ALLOC_CLASSES = VM_ALLOC_NORMAL | VM_ALLOC_QUICK | VM_ALLOC_SYSTEM | VM_ALLOC_INTERRUPT
REQ_NAMES = {"NORMAL": VM_ALLOC_NORMAL, "SYSTEM": VM_ALLOC_SYSTEM,
             "INTERRUPT": VM_ALLOC_INTERRUPT, "ZERO": VM_ALLOC_ZERO, "QUICK": VM_ALLOC_QUICK,
             "FORCE_ZERO": VM_ALLOC_FORCE_ZERO, "NULL_OK": VM_ALLOC_NULL_OK,
             "RETRY": VM_ALLOC_RETRY, "USE_GD": VM_ALLOC_USE_GD}
LOW_PHYS_RESERVED = 65536                  # pages (256 MiB)
SIZEOF_VM_PAGE = 128                       # bytes of struct vm_page (amd64)
DEFAULT_DMA_RESERVED = 128 << 20
_RACE = -1                                 # _alloc_*: lost (obj, pindex) to another thread
PINDEX_LIMIT = 1 << 63                     # vm_pindex_t fits the int64 field
EMERG_LAUNDER = 100                        # vm.emerg_launder (the emergency pager)
RETRY_LIMIT = 1000        # waits before VM_ALLOC_RETRY gives up (the kernel never does)


def VM_ALLOC_CPU(n: int) -> int:
    return (n << 16) | VM_ALLOC_CPU_SPEC


def parse_req(text: str) -> int:
    """``NORMAL|ZERO``, ``CPU(3)|QUICK`` or a number."""
    req = 0
    for part in text.split("|"):
        part = part.strip().upper().removeprefix("VM_ALLOC_")
        if part in REQ_NAMES:
            req |= REQ_NAMES[part]
        elif part.startswith("CPU(") and part.endswith(")") and part[4:-1].isdigit():
            req |= VM_ALLOC_CPU(int(part[4:-1]))
        else:
            try:
                req |= int(part, 0)
            except ValueError:
                raise ArgumentError(f"unknown allocation flag {part!r}") from None
    return req


class _CpuLocal(threading.local):
    """The CPU a thread runs as (0 until :meth:`DragonflyVm.on_cpu` says otherwise) and
    its ``thread_color``: vm_quickcolor()'s ``(intptr_t)curthread >> 10`` term.  A kernel
    thread address is not knowable, so each thread gets a documented constant: 0 unless
    :meth:`DragonflyVm.set_thread_color` says otherwise (the oracle's single thread is 0)."""

    cpu = 0
    thread_color = 0


class PageStateError(StateError):
    """What DragonFly would panic on: freeing a busy, wired or held page, unbusying a page
    that is not busy, wiring a free page, dirtying a free or cached page, ..."""


@dataclass(frozen=True)
class CpuTopology:
    """Sockets × cores × threads; socket s owns NUMA domain s (mod the domains)."""

    sockets: int = 1
    cores: int = 2
    threads: int = 1

    @property
    def ncpus(self) -> int:
        return self.sockets * self.cores * self.threads

    @classmethod
    def parse(cls, text: str) -> CpuTopology:
        """``SOCKETSxCORES[xTHREADS]``, e.g. ``2x4`` or ``1x4x2`` (machine files' ``cpus``)."""
        return cls(*parse_cpus(text))

    def ids(self, cpu: int) -> tuple[int, int, int]:
        """(physical id, core id, hyperthread id) of a CPU."""
        per_socket = self.cores * self.threads
        return cpu // per_socket, (cpu % per_socket) // self.threads, cpu % self.threads


@dataclass
class FakePage:
    """A fictitious page (vm_page_initfake): device memory outside the page array."""

    paddr: int
    memattr: int = 0
    flags: int = PG_FICTITIOUS | PG_UNQUEUED
    busy_count: int = PBUSY_LOCKED
    wire_count: int = 1


class DragonflyVm(PageoutMixin):
    """DragonFly's page layer over one machine's memory (see the module docstring)."""

    def __init__(self, machine: str | Machine = "firecracker-1g", source: str = "dragonfly",
                 cpus: CpuTopology | None = None, dma_reserved: int | None = None,
                 witness: bool = False, hash_vnode_only: bool = False) -> None:
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
        self.vmstats = VmStats()
        self.cpu = [CpuStats() for _ in range(self.ncpus)]
        self._tls = _CpuLocal()
        self._quick_color = [0] * self.ncpus     # globaldata gd_quick_color, 0 at boot
        self.objects: dict[int, VmObject] = {}
        self._next_obj = 1
        self.fake: dict[int, FakePage] = {}
        self.md_refs: dict[int, int] = {}           # pmap reference counts
        self.md_mod: set[int] = set()              # pmap modified pages
        self.page_spin = [make_spin("page", self.witness) for _ in range(PAGE_STRIPES)]
        self.queue_spin = [make_spin("queue", self.witness) for _ in range(PQ_COUNT)]
        self.atomic = threading.Lock()             # stands for the CPU's atomic ops
        self.stats_lock = threading.Lock()         # per-CPU deltas vs. their rollup
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

    # ======================================================================================
    # Boot: vm_page_startup, vm_numa_organize, vm_page_startup_finish
    # ======================================================================================
    def _startup(self, avail: list[tuple[int, int]], dma_reserved: int | None) -> None:
        """vm_page_startup: carve the minidump bitmap and the page array from the top of
        the largest phys_avail range, reserve low memory for DMA, add every other page in
        ascending order at the head of PQ_FREE + pc; then vm_numa_organize per NUMA
        range and vm_numa_organize_finalize on multi-socket machines."""
        p = self.pages
        avail = [(s, e) for s, e in sorted(avail) if e > s]
        total = sum(e - s for s, e in avail)
        if self.source == "buddy":
            runs = [(s >> PAGE_SHIFT, e >> PAGE_SHIFT) for s, e in avail]
        else:
            runs = self._carve(avail, total)
        # Page-array indices of the pages added (int32: 8 TiB of pages), pfn and colour.
        it = np.int32 if self.first_pfn + p.npages < 1 << 31 else np.int64
        idx = np.concatenate([np.arange(s - self.first_pfn, e - self.first_pfn, dtype=it)
                              for s, e in runs])
        pfn = idx + it(self.first_pfn)
        pc = boot_color(pfn).astype(np.uint16)
        del pfn
        p.arrays["pc"][idx] = pc
        # Which entries of the array are pages (phys_avail has holes): a bytearray, read
        # per call by page() faster than a numpy element.
        managed = np.zeros(p.npages, dtype=np.uint8)
        managed[idx] = 1
        self.managed = bytearray(managed.tobytes())
        del managed
        self.vmstats.v_page_count = len(idx)
        if self.source == "buddy":
            from ..freebsd.vm_page import Kernel
            k = Kernel.from_machine(self.machine)
            k.boot(lazy=False)
            self.kernel = k
            self.vmstats.v_free_count = sum(k.free_counts)
            self.dma_reserved = 0
        else:
            # vm_low_phys_reserved: 65536 pages, at most a quarter of the memory, in
            # bytes; vm_add_new_page reserves each page with pa < it, so a quarter that
            # is not page aligned reserves the page it falls in (round up to pages).
            self.low_phys_reserved_pa = min(LOW_PHYS_RESERVED << PAGE_SHIFT, total // 4)
            self.low_phys_reserved = -(-self.low_phys_reserved_pa // PAGE_SIZE)
            if dma_reserved:
                self.dma_reserved = dma_reserved
            else:
                self.dma_reserved = min(DEFAULT_DMA_RESERVED, total // 16)
            low = idx < it(self.low_phys_reserved - self.first_pfn)
            reserve = idx[low]
            free = idx[~low]
            del idx, low
            t = self.topology
            if t.sockets > 1 and t.cores > 0:
                # vm_numa_organize runs after the queues are built; its head inserts in
                # ascending address order rebuild each queue from the highest address
                # down, so the colours are changed first and the queues built once.
                order = self._numa_organize(avail, free)
                moves = self._finalize_moves(order)
                if moves is not None:
                    order = self._apply_finalize(order, *moves)
            else:
                order = free[::-1]
            # vm_add_new_page: ascending order, each at the HEAD of PQ_FREE + pc, so a
            # queue reads from the highest address down.
            q_of = p.arrays["pc"].astype(np.uint16)
            q_of += PQ_FREE
            self.queues.build_from(q_of, order)
            del q_of, order
            self.vmstats.v_free_count = len(free)
            # The DMA reserve: never queued, wired, fictitious, in the alist.
            self.dma_alist = Alist(LOW_PHYS_RESERVED)
            if len(reserve):
                p.arrays["flags"][reserve] = PG_FICTITIOUS | PG_UNQUEUED
                p.arrays["wire_count"][reserve] = 1
                for s, e in _runs(reserve + self.first_pfn):
                    self.dma_alist.free(s, e - s)
                self.vmstats.v_wire_count += len(reserve)
                self.vmstats.v_dma_pages = len(reserve)
            if t.sockets > 1 and t.cores > 0 and moves is None:
                self._numa_organize_finalize()
        # The boot CPU's copy; the others get theirs at the first rollup (hardclock),
        # which the model does at once.
        for c in self.cpu:
            c.vmstats = self.vmstats.copy()
        self._startup_finish()

    def _carve(self, avail: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
        """The pfn runs vm_page_startup adds: every phys_avail range, the largest cut at
        new_end (below the minidump bitmap and the page array), at most npages pages."""
        sizes = [e - s for s, e in avail]
        biggest = sizes.index(max(sizes))               # the first of the largest
        last_end = avail[-1][1]
        end = avail[biggest][1]
        dump_size = round_page(-(-(last_end >> PAGE_SHIFT) // 8))
        end -= dump_size
        first_page = avail[0][0] >> PAGE_SHIFT
        page_range = (last_end >> PAGE_SHIFT) - first_page
        npages = (total - page_range * SIZEOF_VM_PAGE) >> PAGE_SHIFT
        new_end = (end - page_range * SIZEOF_VM_PAGE) & ~((1 << PAGE_SHIFT) - 1)
        runs = []
        for i, (s, e) in enumerate(avail):
            if npages <= 0:
                break
            last_pa = new_end if i == biggest else e
            n = max(0, min((last_pa - s) >> PAGE_SHIFT, npages))
            if n:
                runs.append((s >> PAGE_SHIFT, (s >> PAGE_SHIFT) + n))
            npages -= n
        return runs

    def _numa_organize(self, avail: list[tuple[int, int]], free: np.ndarray) -> np.ndarray:
        """vm_numa_organize for each NUMA memory range (the machine's segments, in
        order): every page of the range, queued or not, gets ``pc % share + socket *
        share``; each queued page moves to the head of its new queue, in ascending
        address order.  Returns the free pages in final queue order (head first): the
        moved ones last moved first, then any outside every range (highest first)."""
        p = self.pages
        sockets = self.topology.sockets
        share = PQ_L2_SIZE // sockets
        pcs = p.arrays["pc"]
        is_free = np.zeros(p.npages, dtype=bool)
        is_free[free] = True
        moved = []
        for s, e, dom in self.machine.segments():
            for a, b in avail:
                lo, hi = max(a, s), min(b, e)
                if hi <= lo:
                    continue
                i0 = (lo >> PAGE_SHIFT) - self.first_pfn
                i1 = min((hi >> PAGE_SHIFT) - self.first_pfn, p.npages)
                pcs[i0:i1] = ((pcs[i0:i1] % share) + (dom % sockets) * share) & PQ_L2_MASK
                seg = np.flatnonzero(is_free[i0:i1]) + i0
                is_free[seg] = False                # moved: no longer "outside"
                moved.append(seg)
        mv = np.concatenate(moved) if moved else np.zeros(0, dtype=np.int64)
        stay = np.flatnonzero(is_free)[::-1]
        return np.concatenate([mv[::-1], stay])

    def _finalize_scale(self, lcnt_of_colour: np.ndarray) -> tuple[int, int, int]:
        """scale_lim, lcnt_hi, lcnt_lo of vm_numa_organize_finalize, from the free pages
        per colour (the kernel sums vm_page_queues[0 .. scale_lim-1]: PQ_NONE, which is
        empty, and colours 0 .. scale_lim-2); its message is recorded."""
        t = self.topology
        scale_lim = PQ_L2_SIZE // t.sockets // t.cores // t.threads * t.threads * t.cores \
            * t.sockets
        hi = int(lcnt_of_colour[:scale_lim - 1].sum()) // scale_lim
        self.messages.append(f"vm_page: avg {hi} pages per queue, {scale_lim} queues")
        return scale_lim, hi, hi - hi // 10

    def _finalize_moves(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """vm_numa_organize_finalize's moves without moving pages: (donor colour,
        recipient colour) per page moved, in the kernel's order.  The donor cursor walks
        the colours; within one lap only the colour it visits changes, so a lap's donors
        are the colours at or above the average when it starts: one numpy step per lap.
        None when some colour both gives and takes pages (then which pages move depends
        on the queues as they change: the page-by-page finalize runs instead)."""
        pcs = self.pages.arrays["pc"]
        lcnt = np.bincount(pcs[order], minlength=PQ_L2_SIZE).astype(np.int64)
        scale_lim, hi, lo = self._finalize_scale(lcnt)
        lap = np.arange(1, PQ_L2_SIZE + 1)
        donors: list[np.ndarray] = []
        takers: list[np.ndarray] = []
        it = 0
        for i in np.flatnonzero(lcnt[:scale_lim] < lo).tolist():
            need = lo - int(lcnt[i])
            while need > 0:
                cyc = (lap + it) & PQ_L2_MASK
                e = cyc[lcnt[cyc] >= hi]
                if not len(e):
                    break                       # no donor left: the kernel would spin
                take = e[:need]
                lcnt[take] -= 1
                lcnt[i] += len(take)
                need -= len(take)
                donors.append(take)
                takers.append(np.full(len(take), i, dtype=np.int64))
                if not need:
                    it = int(take[-1])          # else a full lap: the cursor is back
        if not donors:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        d, r = np.concatenate(donors), np.concatenate(takers)
        if np.intersect1d(d, r).size:
            return None
        return d, r

    def _apply_finalize(self, order: np.ndarray, d: np.ndarray,
                        r: np.ndarray) -> np.ndarray:
        """The queues after the moves (d, r) as a head-first page order: each move takes
        the donor's head page to the recipient's head, so a donor gives its first pages
        in order and a recipient's queue starts with what it got, last first."""
        if not len(d):
            return order
        pcs = self.pages.arrays["pc"]
        col = pcs[order].astype(np.int64)
        by = np.argsort(col, kind="stable")
        grouped = order[by]                       # each colour's queue, head first
        starts = np.searchsorted(col[by], np.arange(PQ_L2_SIZE))
        rank = np.empty(len(order), dtype=np.int64)
        rank[by] = np.arange(len(order)) - starts[col[by]]   # place in its queue
        # the k-th page a donor gives is its k-th page; the k-th a recipient gets sits at
        # -(k + 1): ahead of its own pages, the last received first
        od = np.argsort(d, kind="stable")
        kd = np.empty(len(d), dtype=np.int64)
        kd[od] = np.arange(len(d)) - np.searchsorted(d[od], d[od])
        moved = grouped[starts[d] + kd]
        orr = np.argsort(r, kind="stable")
        kr = np.empty(len(r), dtype=np.int64)
        kr[orr] = np.arange(len(r)) - np.searchsorted(r[orr], r[orr])
        pos = np.empty(self.pages.npages, dtype=np.int64)
        pos[order] = rank
        pos[moved] = -(kr + 1)
        pcs[moved] = r.astype(pcs.dtype)
        return order[np.lexsort((pos[order], pcs[order]))]

    def _numa_organize_finalize(self) -> None:
        """vm_numa_organize_finalize: average lcnt over scale_lim queues (the kernel sums
        vm_page_queues[0 .. scale_lim-1], i.e. PQ_NONE and colours 0..scale_lim-2), then
        fill each colour below 90 % of it from colours at or above the average, one page
        at a time from the donor's head to the recipient's head, a cursor walking the
        colours."""
        q, p = self.queues, self.pages
        self.messages.pop()                       # _finalize_moves recorded it already
        scale_lim, hi, lo = self._finalize_scale(
            np.array(q.lcnt[PQ_FREE:PQ_FREE + PQ_L2_SIZE], dtype=np.int64))
        it = 0
        for i in range(scale_lim):
            misses = 0
            while q.lcnt[PQ_FREE + i] < lo:
                it = (it + 1) & PQ_L2_MASK
                if q.lcnt[PQ_FREE + it] < hi:
                    misses += 1
                    if misses > PQ_L2_SIZE:        # no donor left: the kernel would spin
                        break
                    continue
                misses = 0
                m = q.first(PQ_FREE + it)
                assert m is not None
                q.remove(PQ_FREE + it, m)
                p.pc[m] = i
                q.insert(PQ_FREE + i, m, True)

    def _dma_return(self, idx: np.ndarray) -> None:
        """vm_page_startup_finish's per-page loop over the returned blocks (``idx``: their
        pages in the order the kernel frees them), in bulk.  The
        kernel, page by page in ascending order: clear PG_FICTITIOUS|PG_UNQUEUED, busy,
        vm_page_unwire(m, 0) (wire 1 -> 0: v_wire_count -1, then vm_page_deactivate: the
        tail of PQ_INACTIVE + pc, counted in that queue's ``adds``), vm_page_free (off
        PQ_INACTIVE, to the head of PQ_FREE + pc, unbusied; v_tfree +1).  Net effect:
        the inactive queues are as before but for ``adds``, each colour queue gains the
        block's pages of its colour at its head (the highest address first), the page
        fields end cleared, and the counters move by n.  Boot only (no other thread,
        nothing waits)."""
        a = self.pages.arrays
        n = len(idx)
        assert (a["wire_count"][idx] == 1).all() and not a["busy_count"][idx].any()
        assert not a["queue"][idx].any() and not a["obj"][idx].any()
        a["flags"][idx] &= np.uint32(~(PG_FICTITIOUS | PG_UNQUEUED | PG_WINATCFLS |
                                        PG_MAPPED | PG_WRITEABLE | PG_NEED_COMMIT)
                                      & 0xFFFFFFFF)
        a["wire_count"][idx] = 0
        a["valid"][idx] = 0
        a["dirty"][idx] = 0
        pcs = a["pc"][idx]
        adds = np.bincount(pcs, minlength=PQ_L2_SIZE)
        q = self.queues
        for c in np.flatnonzero(adds).tolist():
            q.adds[PQ_INACTIVE + c] += int(adds[c])
        q.push_heads(idx, (pcs + PQ_FREE).astype(np.uint16))
        c = self.cpu[self._tls.cpu]
        with self.stats_lock:
            c.vmstats.v_free_count += n
            c.adj["v_free_count"] += n
            c.adj["v_wire_count"] -= n
        c.cnt["v_tfree"] += n

    def _startup_finish(self) -> None:
        """vm_page_startup_finish: return the DMA reserve's excess, size the page hash,
        set the colour search width; the pagedaemon's thresholds (vm_pageout start)."""
        if self.dma_alist is not None:
            reserved = self.dma_reserved >> PAGE_SHIFT
            blocks: list[np.ndarray] = []        # returned in this order, page by page
            while True:
                bfree, start, count = self.dma_alist.free_info()
                if bfree <= reserved or count == 0:
                    break
                n = 1 << (min(count, bfree - reserved).bit_length() - 1)
                start = start + count - n
                blk = self.dma_alist.alloc(start, n)
                if blk != start:
                    if blk != ALIST_BLOCK_NONE:
                        self.dma_alist.free(blk, n)
                    self.messages.append("vm_page_startup_finish: Unable to return dma "
                                         f"space @{start << PAGE_SHIFT:#x}")
                    break
                self.vmstats.v_dma_pages -= n
                self.low_phys_reserved = start
                self.low_phys_reserved_pa = start << PAGE_SHIFT
                i0 = start - self.first_pfn
                blocks.append(np.arange(i0, i0 + n, dtype=np.int64))
            if blocks:
                self._dma_return(np.concatenate(blocks))
            used = self.vmstats.v_dma_pages - self.dma_alist.bfree
            self.messages.append(f"DMA space used: {used * 4}k, "
                                 f"remaining available: {self.dma_alist.bfree * 4}k")
            self.vmstats_rollup()
        self.hash = PageHash(self.pages.npages)
        ncpus_fit = 1 << (self.ncpus - 1).bit_length()
        self.set_assoc_mask = max(15, PQ_L2_SIZE // ncpus_fit - 1)
        self._derive_thresholds()

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
        if not self.managed[m]:
            raise AddressError(f"address {pa:#x} is in a hole of phys_avail: its vm_page "
                               "was never initialised")
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
        if type(m) is not int or not 0 <= m < self.pages.npages or not self.managed[m]:
            raise AddressError(f"{fn}: {m!r} is not a page of this machine")
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

    def _count(self, counter: str, delta: int) -> None:
        """A queue add (+1) or remove (-1): this CPU's local view and pending delta change
        at once.  A removal that leaves the delta below -1024 while paging should start
        folds it into the global vmstats at once (_vm_page_rem_queue_spinlocked)."""
        c = self.cpu[self._tls.cpu]
        lock = self.stats_lock
        lock.acquire()
        c.vmstats.__dict__[counter] += delta     # (dict ops: faster than setattr)
        adj = c.adj
        a = adj[counter] = adj[counter] + delta
        lock.release()
        if a < -1024 and delta < 0 and self.start(-1024 * self.ncpus):
            with lock:
                self.vmstats.__dict__[counter] += adj[counter]
                adj[counter] = 0

    def _count_adj(self, counter: str, delta: int) -> None:
        """A pending delta only (vm_page_wire/unwire's v_wire_count): no CPU sees it
        before the next rollup."""
        c = self.cpu[self.curcpu()]
        with self.stats_lock:
            c.adj[counter] += delta

    def vmstats_rollup(self) -> None:
        """Fold every CPU's pending deltas into the global vmstats, refresh the copies."""
        g = self.vmstats
        with self.stats_lock:
            for c in self.cpu:
                for k, v in c.adj.items():
                    if v:
                        setattr(g, k, getattr(g, k) + v)
                        c.adj[k] = 0
            for c in self.cpu:
                c.vmstats = g.copy()

    def local(self) -> VmStats:
        """This CPU's view of vmstats (gd_vmstats)."""
        return self.cpu[self._tls.cpu].vmstats

    # ======================================================================================
    # Queues
    # ======================================================================================
    def _add_queue(self, m: int, q: int, athead: bool) -> None:
        """_vm_page_add_queue_spinlocked: FREE queues always at the head."""
        p = self.pages
        base = queue_base(q)
        assert p.queue[m] == PQ_NONE and not p.flags[m] & (PG_FICTITIOUS | PG_UNQUEUED)
        with self.queue_spin[q]:
            self.queues.insert(q, m, athead or base == PQ_FREE)
        self._count(COUNTER[base], 1)

    def _rem_queue(self, m: int) -> int:
        """Dequeue the page; returns its old base (PQ_NONE if it was on none)."""
        q = self.pages.queue[m]
        if q == PQ_NONE:
            return PQ_NONE
        base = queue_base(q)
        with self.queue_spin[q]:
            self.queues.remove(q, m)
        self._count(COUNTER[base], -1)
        return base

    def _list_first_trylock(self, q: int) -> int | None:
        """The first page of queue ``q`` whose page spinlock can be taken, dequeued while
        both locks are held (_vm_page_list_find's loop, then _vm_page_rem_queue_spinlocked);
        None if there is none.  Returns with the page's spinlock HELD, as the kernel's
        does: the caller busies the page (or deactivates it) before releasing it with
        :meth:`page_unlock`, so a thread holding the page busy cannot requeue it
        meanwhile."""
        if not self.queues.lcnt[q]:
            return None
        spins = self.page_spin
        with self.queue_spin[q]:
            for m in self.queues.iter(q):
                spin = spins[m & (PAGE_STRIPES - 1)]
                if spin.acquire(False):
                    self.queues.remove(q, m)
                    break
            else:
                return None
        self._count(COUNTER[queue_base(q)], -1)
        return m

    def first_locked(self, q: int) -> int | None:
        """The first page of queue ``q`` whose page spinlock could be taken, returned with
        that spinlock HELD (the caller releases it with :meth:`page_unlock`); the page
        stays queued.  The pagedaemon's way into a queue."""
        if not self.queues.lcnt[q]:
            return None
        spins = self.page_spin
        with self.queue_spin[q]:
            for m in self.queues.iter(q):
                if spins[m & (PAGE_STRIPES - 1)].acquire(False):
                    return m
        return None

    def page_unlock(self, m: int) -> None:
        self.page_spin[m & (PAGE_STRIPES - 1)].release()

    def _list_find(self, base: int, idx: int) -> int | None:
        """_vm_page_list_find + removal: the exact colour (which clears its skip hint),
        then the widening search.  The page comes back dequeued."""
        if self.queues.empty(base):
            return None
        m = self._list_first_trylock(base + idx)
        if m is not None:
            self.queues.lastq[base + idx] = -1
            return m
        return self._find_wide(base, idx)

    def _find_wide(self, base: int, idx: int) -> int | None:
        """_vm_page_list_find_wide: sets of 16, 32, ... 1024 colours around the start
        (the queue's ``lastq`` hint if set); a search that probed 8 or more colours
        leaves the colour it found in the original queue's hint."""
        last = self.queues.lastq
        start = last[base + idx] if last[base + idx] >= 0 else idx
        mask = self.set_assoc_mask >> 1
        level = (-1, -1, 0)
        while True:
            mask = mask * 2 + 1
            m, q, level = self._probe_set(base, start, mask, level)
            if m is not None:
                if level[2] >= 8:
                    last[base + idx] = q
                return m
            if mask == PQ_L2_MASK:
                return None

    def _find2_wide(self, b1: int, b2: int, idx: int) -> tuple[int | None, int]:
        """_vm_page_list_find2_wide: the free and cache searches interleaved -- free
        16, free 32, cache 16, free 64, cache 32, ... free 1024, cache 512 -- both from
        the free queue's hint.  Returns (page, base it came from)."""
        last = self.queues.lastq
        start = last[b1 + idx] if last[b1 + idx] >= 0 else idx
        mask1 = mask2 = self.set_assoc_mask >> 1
        lv1 = lv2 = (-1, -1, 0)
        widest = (self.set_assoc_mask << 1) | 1
        while True:
            if mask1 != PQ_L2_MASK:
                mask1 = mask1 * 2 + 1
                m, q, lv1 = self._probe_set(b1, start, mask1, lv1)
                if m is not None:
                    if lv1[2] >= 8:
                        last[b1 + idx] = q
                    return m, b1
            if mask1 >= widest:
                mask2 = mask2 * 2 + 1
                m, q, lv2 = self._probe_set(b2, start, mask2, lv2)
                if m is not None:
                    if lv2[2] >= 8:
                        last[b2 + idx] = q
                    return m, b2
            if mask1 == PQ_L2_MASK or mask2 == PQ_L2_MASK:
                return None, b1

    def _probe_set(self, base: int, idx: int, mask: int,
                   level: tuple[int, int, int]) -> tuple[int | None, int, tuple[int, int, int]]:
        """One widening step: probe the ``mask + 1`` colours of idx's aligned set from
        idx on, wrapping, skipping the set already searched (``level`` = skip start,
        skip end, probe count).  Returns (page or None, colour, new level)."""
        s0, s1, count = level
        ne = self.queues.nonempty
        q, rng = idx, mask + 1
        while rng > 0:
            if s0 <= q < s1:
                rng -= s1 - q
                q = (q & ~mask) | (s1 & mask)
            if rng > 0:
                if not ne[base + q]:
                    # Jump over empty colours as the probe loop would step over them:
                    # not past the set's end, the searched set or the range left.
                    lim = min((q | mask) + 1, q + rng)
                    if s0 > q:
                        lim = min(lim, s0)
                    j = ne.find(1, base + q, base + lim)
                    d = (j - base if j >= 0 else lim) - q
                    rng -= d
                    count += d
                    q = (q & ~mask) | ((q + d) & mask)
                    continue
                m = self._list_first_trylock(base + q)
                if m is not None:
                    return m, q, (s0, s1, count)
            rng -= 1
            count += 1
            q = (q & ~mask) | ((q + 1) & mask)
        return None, q, (q & ~mask, (q | mask) + 1, count)

    # ======================================================================================
    # Busy, wire, hold
    # ======================================================================================
    @page_op()
    def busy_try(self, m: int, also_m_busy: bool) -> bool:
        """vm_page_busy_try: True if it FAILED (hard-busied or, ``also``, soft-busied)."""
        return self._busy_try(m, also_m_busy)

    def _busy_try(self, m: int, also_m_busy: bool) -> bool:
        """busy_try for a page the caller knows to be valid and not free (the internal
        paths: no argument checks)."""
        bc = self.pages.busy_count
        lock = self.atomic
        lock.acquire()
        b = bc[m]
        if b & PBUSY_LOCKED or (also_m_busy and b & PBUSY_MASK):
            lock.release()
            return True
        bc[m] = b | PBUSY_LOCKED
        lock.release()
        return False

    def _busy_acquire(self, m: int) -> None:
        if self._busy_try(m, True):
            raise PageStateError(f"page {self.pa(m):#x} is busy")

    def busy_wait(self, m: int, also_m_busy: bool, timeout: float = 5.0) -> None:
        """vm_page_busy_wait: hard-busy the page, sleeping while it is busy."""
        with self.sleep:
            while self.busy_try(m, also_m_busy):
                with self.atomic:
                    self.pages.busy_count[m] |= PBUSY_WANTED
                    self.pages.flags[m] |= PG_REFERENCED
                if not self.sleep.wait(timeout):
                    raise PageStateError(f"page {self.pa(m):#x} stayed busy (deadlock?)")

    @page_op(refuse_free=False)
    def vm_page_wakeup(self, m: int) -> None:
        """Release a hard busy; wake sleepers if one wanted the page."""
        self._wakeup(m)

    def _wakeup(self, m: int) -> None:
        """vm_page_wakeup without argument checks (internal paths)."""
        with self.atomic:
            b = self.pages.busy_count[m]
            if not b & PBUSY_LOCKED:
                raise PageStateError(f"vm_page_wakeup: page {self.pa(m):#x} is not busied")
            self.pages.busy_count[m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
        if b & PBUSY_WANTED:
            with self.sleep:
                self.sleep.notify_all()

    @page_op()
    def sbusy_try(self, m: int) -> bool:
        """vm_page_sbusy_try: soft-busy unless hard-busied; True if it FAILED."""
        with self.atomic:
            b = self.pages.busy_count[m]
            if b & PBUSY_LOCKED:
                return True
            self.pages.busy_count[m] = b + 1
            return False

    @page_op(refuse_free=False)
    def sbusy_drop(self, m: int) -> None:
        with self.atomic:
            b = self.pages.busy_count[m]
            if not b & PBUSY_MASK:
                raise PageStateError(f"vm_page_sbusy_drop: page {self.pa(m):#x} is not "
                                     "soft-busied")
            b -= 1
            if b == PBUSY_WANTED:
                b = 0
            self.pages.busy_count[m] = b
        with self.sleep:
            self.sleep.notify_all()

    @page_op()
    def io_start(self, m: int) -> None:
        self._need_hard_busy(m, "vm_page_io_start")
        with self.atomic:
            self.pages.busy_count[m] += 1

    @page_op(refuse_free=False)
    def io_finish(self, m: int) -> None:
        with self.atomic:
            if not self.pages.busy_count[m] & PBUSY_MASK:
                raise PageStateError("vm_page_io_finish: no I/O in progress")
            self.pages.busy_count[m] -= 1

    def _need_hard_busy(self, m: int, fn: str) -> None:
        if not self.pages.busy_count[m] & PBUSY_LOCKED:
            raise PageStateError(f"{fn}: page {self.pa(m):#x} is not hard-busied")

    @page_op(locked=True)
    def vm_page_wire(self, m: int) -> None:
        """Wire a (hard-busied) page; 0->1 counts in v_wire_count.  It stays queued."""
        p = self.pages
        if p.flags[m] & PG_FICTITIOUS:
            return
        self._need_hard_busy(m, "vm_page_wire")
        if queue_base(p.queue[m]) == PQ_FREE:
            raise PageStateError(f"vm_page_wire: page {self.pa(m):#x} is free")
        p.wire_count[m] += 1
        if p.wire_count[m] == 1:
            self._count_adj("v_wire_count", 1)

    @page_op(locked=True)
    def vm_page_unwire(self, m: int, activate: bool) -> None:
        """Unwire; on 1->0 the page goes to the active (``activate``, or NEED_COMMIT) or
        the inactive queue's tail.  Never to cache."""
        if self.pages.flags[m] & PG_FICTITIOUS:
            return
        if self.pages.wire_count[m] <= 0:
            raise PageStateError(f"vm_page_unwire: page {self.pa(m):#x} is not wired")
        self._need_hard_busy(m, "vm_page_unwire")
        self._unwire(m, activate)

    def _unwire(self, m: int, activate: bool) -> None:
        p = self.pages
        p.wire_count[m] -= 1
        if p.wire_count[m] == 0:
            self._count_adj("v_wire_count", -1)
            if p.flags[m] & PG_UNQUEUED:
                return
            if activate or p.flags[m] & PG_NEED_COMMIT:
                self.vm_page_activate(m)
            else:
                self.vm_page_deactivate(m)

    @page_op(refuse_free=False, locked=True)
    def vm_page_hold(self, m: int) -> None:
        """Hold a page (a free page may not be held; one parked on PQ_HOLD may)."""
        if queue_base(self.pages.queue[m]) == PQ_FREE or (self.kernel is not None and
                                                         self._buddy_free(m)):
            raise PageStateError(f"vm_page_hold: page {self.pa(m):#x} is free")
        with self.atomic:
            self.pages.hold_count[m] += 1

    @page_op(refuse_free=False, locked=True)
    def vm_page_unhold(self, m: int) -> None:
        """Drop a hold; the last one moves a page parked on PQ_HOLD to PQ_FREE."""
        p = self.pages
        if p.hold_count[m] <= 0:
            raise PageStateError(f"vm_page_unhold: page {self.pa(m):#x} is not held")
        if queue_base(p.queue[m]) == PQ_FREE:
            raise PageStateError(f"vm_page_unhold: page {self.pa(m):#x} is free")
        with self.atomic:
            p.hold_count[m] -= 1
            last = p.hold_count[m] == 0
        if last and queue_base(p.queue[m]) == PQ_HOLD:
            self._rem_queue(m)
            self._give_free(m)

    # ======================================================================================
    # Allocation
    # ======================================================================================
    def vm_get_pg_color(self, cpu: int, obj: VmObject | None, pindex: int) -> int:
        """The colour for (obj, pindex) on ``cpu``: the CPU's slice of the colours
        (socket, core, thread) plus (pindex + the object's colour) modulo the slice."""
        k = pindex + (obj.pg_color if obj is not None else 0)
        cs = self._color_cs
        return (self._color_base[cpu] + k % cs) & PQ_L2_MASK

    def _color_slices(self) -> None:
        """Each CPU's first colour and the slice width, as vm_get_pg_color computes them:
        phys_id * (1024/sockets) + core_id * (that/cores) + ht_id * (that/threads)."""
        t = self.topology
        phys = PQ_L2_SIZE // t.sockets
        grp = phys // t.cores
        cs = grp // t.threads
        self._color_cs = cs
        self._color_base = []
        for cpu in range(self.ncpus):
            phys_id, core_id, ht_id = t.ids(cpu)
            self._color_base.append(phys_id * phys + core_id * grp + ht_id * cs)

    def _select_free(self, color: int) -> int | None:
        """vm_page_select_free: a free page, dequeued and hard-busied (one that cannot be
        busied is deactivated out of the way)."""
        while True:
            if self.source == "buddy":
                return self._buddy_take(color)
            m = self._list_find(PQ_FREE, color)
            if m is None:
                return None
            if self._busy_try(m, True):
                self._deactivate_locked(m, False)
                self.page_unlock(m)
                continue
            p = self.pages
            assert not p.flags[m] & (PG_UNQUEUED | PG_NEED_COMMIT)
            assert p.hold_count[m] == 0 and p.wire_count[m] == 0
            self.page_unlock(m)
            self.pagedaemon_wakeup()
            return m

    def _cache_ok(self, m: int) -> bool:
        """A busied cache page that can be recycled (vm_page_select_cache's test)."""
        p = self.pages
        return not (p.flags[m] & (PG_NEED_COMMIT | PG_MAPPED) or p.hold_count[m] or
                    p.wire_count[m] or p.dirty[m] & p.valid[m])

    def _select_cache(self, color: int) -> int | None:
        """vm_page_select_cache: a reusable cache page, dequeued and hard-busied (others
        are deactivated)."""
        while True:
            m = self._list_find(PQ_CACHE, color)
            if m is None:
                return None
            if self._busy_try(m, True):
                self._deactivate_locked(m, False)
                self.page_unlock(m)
                continue
            if self._cache_ok(m):
                self.page_unlock(m)
                self.pagedaemon_wakeup()
                return m
            self._deactivate_locked(m, False)
            self._wakeup(m)
            self.page_unlock(m)

    def _select_free_or_cache(self, color: int) -> tuple[int | None, bool]:
        """vm_page_select_free_or_cache: one search over the free and cache queues
        (_vm_page_list_find2); returns (page dequeued and hard-busied, from cache)."""
        if self.source == "buddy":
            m = self._buddy_take(color)
            if m is not None:
                return m, False
            return self._select_cache(color), True
        q = self.queues
        while True:
            if q.empty(PQ_FREE) and q.empty(PQ_CACHE):
                return None, False
            m = self._list_first_trylock(PQ_FREE + color)
            base = PQ_FREE
            if m is not None:
                q.lastq[PQ_FREE + color] = q.lastq[PQ_CACHE + color] = -1
            else:
                m, base = self._find2_wide(PQ_FREE, PQ_CACHE, color)
                if m is None:
                    return None, False
            if self._busy_try(m, True):
                self._deactivate_locked(m, False)
                self.page_unlock(m)
                continue
            if base == PQ_FREE:
                self.page_unlock(m)
                self.pagedaemon_wakeup()
                return m, False
            if self._cache_ok(m):
                self.page_unlock(m)
                self.pagedaemon_wakeup()
                return m, True
            self._deactivate_locked(m, False)
            self._wakeup(m)
            self.page_unlock(m)

    def _recycle(self, m: int) -> None:
        """vm_page_alloc's found_cache: a busied cache page on its way back to PQ_FREE.
        It belongs to some object the caller may not hold: free it only if that object's
        token can be had without waiting (vm_object_hold_try), else deactivate and unbusy
        it (another thread, e.g. vm_object_terminate, is working on that object)."""
        oid = self.pages.obj[m]
        obj = self.objects.get(oid) if oid else None
        if obj is None:
            self.vm_page_free(m)
            return
        if not obj.token.acquire(False):
            self.vm_page_deactivate(m)
            self._wakeup(m)
            return
        try:
            self.vm_page_free(m)
        finally:
            obj.token.release()

    def vm_page_alloc(self, obj: VmObject | None, pindex: int, req: int) -> int | None:
        """Allocate a page for (obj, pindex); returns it hard-busied and unqueued, or None
        when the class's floor is reached (the pagedaemon is kicked)."""
        if type(req) is not int or not req & ALLOC_CLASSES:
            raise ArgumentError("vm_page_alloc: one of NORMAL, QUICK, SYSTEM, INTERRUPT "
                                "is required")
        if type(pindex) is not int or not 0 <= pindex < PINDEX_LIMIT:
            self._check_pindex(pindex, "vm_page_alloc")
        if obj is not None:
            if self.objects.get(getattr(obj, "id", None)) is not obj:
                self._check_obj(obj, "vm_page_alloc")
            # The kernel has no pre-check: it selects a page (recycling PQ_CACHE pages on
            # the way), vm_page_insert fails, the page is freed again and NULL returned
            # with VM_ALLOC_NULL_OK.  Without it the kernel panics ("PAGE RACE"): refuse
            # that before anything changes.
            if pindex in obj.memq and not req & VM_ALLOC_NULL_OK:
                return self._page_race(obj, pindex, req)
            k = pindex + obj.pg_color
        else:
            k = pindex
        cpu = req >> 16 if req & VM_ALLOC_CPU_SPEC else self._tls.cpu
        if not 0 <= cpu < self.ncpus:
            raise ArgumentError(f"VM_ALLOC_CPU({cpu}) out of range 0..{self.ncpus - 1}")
        color = (self._color_base[cpu] + k % self._color_cs) & PQ_L2_MASK   # vm_get_pg_color
        if self.kernel is None and self.nonempty[PQ_FREE + color]:
            m = self._alloc_fast(obj, pindex, req, color)
            if m is not None:
                return m if m != _RACE else self._page_race(obj, pindex, req)
        retries = 0
        while True:
            s = self.local()
            if (s.v_free_count >= s.v_free_reserved
                    or (req & VM_ALLOC_INTERRUPT and s.v_free_count > 0)
                    or (req & VM_ALLOC_SYSTEM and s.v_cache_count == 0
                        and s.v_free_count > s.v_interrupt_free_min)):
                if req & VM_ALLOC_NORMAL:
                    m, fromcache = self._select_free_or_cache(color)
                    if m is not None and fromcache:
                        self._recycle(m)
                        continue
                else:
                    m = self._select_free(color)
                if m is None:
                    # The count raced (or is stale): fold the per-CPU deltas and look
                    # again.  The kernel loops forever; the model gives up after a few.
                    self.vmstats_rollup()
                    retries += 1
                    if retries > 3:
                        break
                    continue
                m = self._alloc_finish(m, obj, pindex)
                return m if m != _RACE else self._page_race(obj, pindex, req)
            if req & VM_ALLOC_NORMAL:
                m = self._select_cache(color)
                if m is not None:
                    self._recycle(m)
                    continue
            break
        self.deficit += 1
        self.pagedaemon_wakeup()
        return None

    def _alloc_fast(self, obj: VmObject | None, pindex: int, req: int,
                    color: int) -> int | None:
        """vm_page_alloc's common case, inlined: the class may take a free page and the
        exact colour's queue gives one whose page lock and busy are free.  Same effects
        as the general path (select_free, the colour hint reset, the busy, the count,
        two pagedaemon checks, the insert); None sends the caller there."""
        c = self.cpu[self._tls.cpu]
        s = c.vmstats
        free = s.v_free_count
        if not (free >= s.v_free_reserved or (req & VM_ALLOC_INTERRUPT and free > 0) or
                (req & VM_ALLOC_SYSTEM and s.v_cache_count == 0 and
                 free > s.v_interrupt_free_min)):
            return None
        q = PQ_FREE + color
        qs = self.queues
        p = self.pages
        bc = p.busy_count
        qlock = self.queue_spin[q]
        qlock.acquire()
        h = qs.head[q]
        if not h:
            qlock.release()
            return None
        m = h - 1
        spin = self.page_spin[m & (PAGE_STRIPES - 1)]
        if not spin.acquire(False):
            qlock.release()
            return None
        atomic = self.atomic
        atomic.acquire()
        b = bc[m]
        if b & (PBUSY_LOCKED | PBUSY_MASK):
            atomic.release()
            spin.release()
            qlock.release()
            return None
        bc[m] = b | PBUSY_LOCKED
        atomic.release()
        nx = p.next[m]                                # Queues.remove of the head, inlined
        qs.head[q] = nx
        if nx:
            p.prev[nx - 1] = 0
        else:
            qs.tail[q] = 0
        p.next[m] = 0
        p.queue[m] = 0
        qs.lcnt[q] -= 1
        if not qs.lcnt[q]:
            qs.nonempty[q] = 0
        spin.release()
        qlock.release()
        slock = self.stats_lock                       # _count("v_free_count", -1)
        slock.acquire()
        s.v_free_count -= 1
        a = c.adj["v_free_count"] = c.adj["v_free_count"] - 1
        slock.release()
        if a < -1024 and self.start(-1024 * self.ncpus):
            with slock:
                self.vmstats.v_free_count += c.adj["v_free_count"]
                c.adj["v_free_count"] = 0
        qs.lastq[q] = -1
        if req & VM_ALLOC_NORMAL:
            qs.lastq[PQ_CACHE + color] = -1
        if s.v_free_count < s.v_paging_start:        # select_free's pagedaemon_wakeup
            self.pagedaemon_wakeup()
        p.flags[m] = 0
        p.act_count[m] = 0
        p.valid[m] = 0
        if obj is None:
            p.pindex[m] = pindex
        elif not self._insert(m, obj, pindex):
            self.vm_page_free(m)                      # lost (obj, pindex) to another thread
            return _RACE
        if s.v_free_count < s.v_paging_start:        # vm_page_alloc's (start() is false
            self.pagedaemon_wakeup()                   # at or above v_paging_start)
        return m

    @staticmethod
    def _page_race(obj: VmObject, pindex: int, req: int) -> None:
        """(obj, pindex) is taken: NULL with VM_ALLOC_NULL_OK, else the kernel's panic."""
        if req & VM_ALLOC_NULL_OK:
            return None
        raise PageStateError(f"vm_page_alloc: object {obj.id} already has page {pindex} "
                             "(PAGE RACE)")

    def _alloc_finish(self, m: int, obj: VmObject | None, pindex: int) -> int:
        p = self.pages
        assert p.dirty[m] == 0 and p.wire_count[m] == 0 and not p.busy_count[m] & PBUSY_MASK
        p.flags[m] = 0
        p.act_count[m] = 0
        p.valid[m] = 0
        if obj is not None:
            if not self._insert(m, obj, pindex):
                self.vm_page_free(m)                  # lost (obj, pindex) to another thread
                return _RACE
        else:
            p.pindex[m] = pindex
        self.pagedaemon_wakeup()
        return m

    def vm_page_grab(self, obj: VmObject, pindex: int, req: int,
                     proc: Proc | None = None) -> int | None:
        """vm_page_grab: the object's page at ``pindex`` hard-busied, allocated when absent
        (with VM_ALLOC_RETRY it waits for memory instead of failing); VM_ALLOC_ZERO zeroes
        a new page and marks it valid, VM_ALLOC_FORCE_ZERO zeroes even a valid one."""
        self._check_obj(obj, "vm_page_grab")
        self._check_pindex(pindex, "vm_page_grab")
        for _ in range(RETRY_LIMIT):
            m, busy = self.vm_page_lookup_busy_try(obj, pindex, True)
            if m is not None and busy:
                if not req & VM_ALLOC_RETRY:
                    return None
                self.busy_wait(m, True)
                self._wakeup(m)
                continue
            if m is None:
                m = self.vm_page_alloc(obj, pindex, (req & ~VM_ALLOC_RETRY) |
                                       (VM_ALLOC_NULL_OK if req & VM_ALLOC_RETRY else 0))
                if m is None:
                    self.vm_wait(proc)
                    if not req & VM_ALLOC_RETRY:
                        return None
                    continue
            if req & VM_ALLOC_FORCE_ZERO or (req & VM_ALLOC_ZERO and
                                            self.pages.valid[m] != VM_PAGE_BITS_ALL):
                self.zeroed_pages += 1
                self.pages.valid[m] = VM_PAGE_BITS_ALL
            return m
        raise PageStateError(f"vm_page_grab: no page for {pindex} after {RETRY_LIMIT} waits")

    def vm_page_alloczwq(self, pindex: int, req: int, proc: Proc | None = None) -> int | None:
        """vm_page_alloczwq: an object-less page, wired and unbusied (zeroed if asked)."""
        for _ in range(RETRY_LIMIT):
            m = self.vm_page_alloc(None, pindex, req & ~VM_ALLOC_RETRY)
            if m is not None:
                break
            self.vm_wait(proc)
            if not req & VM_ALLOC_RETRY:
                return None
        else:
            raise PageStateError(f"vm_page_alloczwq: no page after {RETRY_LIMIT} waits")
        if req & (VM_ALLOC_ZERO | VM_ALLOC_FORCE_ZERO):
            self.zeroed_pages += 1
            self.pages.valid[m] = VM_PAGE_BITS_ALL
        self.vm_page_wire(m)
        self._wakeup(m)
        return m

    @page_op()
    def vm_page_freezwq(self, m: int) -> None:
        """vm_page_freezwq: busy, unwire, free a page from vm_page_alloczwq."""
        p = self.pages
        if (p.wire_count[m] != 1 or p.obj[m] or p.flags[m] & PG_FICTITIOUS
                or p.busy_count[m] & PBUSY_MASK):
            raise PageStateError(f"vm_page_freezwq: page {self.pa(m):#x} is not an idle "
                                 "vm_page_alloczwq page")
        self.busy_wait(m, False)
        self._unwire(m, False)
        self.vm_page_free(m)

    def vm_page_alloc_contig(self, npages: int, high: int = 0) -> int | None:
        """vm_page_alloc_contig from the DMA reserve: ``npages`` wired, fictitious, unbusied
        pages, or None (low, alignment and boundary are not looked at, as in the kernel)."""
        if not isinstance(npages, int) or npages <= 0:
            raise ArgumentError(f"npages {npages!r} must be a positive integer")
        if self.dma_alist is None:
            return None
        blk = self.dma_alist.alloc_below(npages, (high >> PAGE_SHIFT) if high else None)
        if blk == ALIST_BLOCK_NONE:
            return None
        self.dma_out[blk] = npages
        return blk - self.first_pfn

    def vm_page_free_contig(self, m: int, npages: int) -> None:
        """vm_page_free_contig: a run from vm_page_alloc_contig back to the reserve."""
        if type(m) is not int or type(npages) is not int:
            raise ArgumentError("vm_page_free_contig: page and npages must be integers")
        pfn = m + self.first_pfn
        if self.dma_out.get(pfn) != npages:
            raise PageStateError(f"vm_page_free_contig: {self.pa(m):#x} + {npages} pages "
                                 "was not allocated by vm_page_alloc_contig")
        if pfn < self.low_phys_reserved and \
                (pfn + npages) << PAGE_SHIFT > self.low_phys_reserved_pa:
            # KKASSERT(pa + size <= vm_low_phys_reserved): a run that reaches into the
            # partial page above a reserve line that is not page aligned.
            raise PageStateError(f"vm_page_free_contig: {self.pa(m):#x} + {npages} pages "
                                 "ends above vm_low_phys_reserved "
                                 f"{self.low_phys_reserved_pa:#x}")
        del self.dma_out[pfn]
        assert self.dma_alist is not None
        self.dma_alist.free(pfn, npages)

    # ======================================================================================
    # Freeing
    # ======================================================================================
    def vm_page_free(self, m: int) -> None:
        """vm_page_free_toq: the page (hard-busied) goes to the head of PQ_FREE + pc, or
        the tail of PQ_HOLD while it is held; it leaves its object, loses its valid and
        dirty bits, and is unbusied.  Takes the page's spinlock."""
        if type(m) is not int or not 0 <= m < self.pages.npages or not self.managed[m]:
            raise AddressError(f"vm_page_free: {m!r} is not a page of this machine")
        p = self.pages
        b = p.busy_count[m]
        if not b & PBUSY_LOCKED:
            raise PageStateError(f"vm_page_free: page {self.pa(m):#x} is not hard-busied")
        if b & PBUSY_MASK:
            raise PageStateError(f"vm_page_free: page {self.pa(m):#x} is soft-busied")
        q = p.queue[m]
        if (q and queue_base(q) in (PQ_FREE, PQ_HOLD)) or (self.kernel is not None and
                                                          self._buddy_free(m)):
            raise PageStateError(f"vm_page_free: page {self.pa(m):#x} is already free")
        if p.wire_count[m] and not p.flags[m] & PG_FICTITIOUS:
            raise PageStateError(f"vm_page_free: page {self.pa(m):#x} is wired")
        self.cpu[self._tls.cpu].cnt["v_tfree"] += 1
        oid = p.obj[m]
        if oid:
            # vm_page_remove, inlined: under the object's token and before the page
            # spinlock (the kernel's order: token, then page, then queue).
            obj = self.objects[oid]
            with obj.token:
                del obj.memq[p.pindex[m]]
                obj.resident_page_count -= 1
                obj.generation += 1
                p.obj[m] = 0
        spin = self.page_spin[m & (PAGE_STRIPES - 1)]
        spin.acquire()
        try:
            self._free_toq(m)
        finally:
            spin.release()

    def _free_toq(self, m: int) -> None:
        """vm_page_free_toq after vm_page_remove (the page spinlock is held): off its
        queue, onto PQ_HOLD or PQ_FREE, unbusied."""
        p = self.pages
        q = p.queue[m]
        flags = p.flags[m] & ~(PG_MAPPED | PG_WRITEABLE)    # pmap_mapped_sync
        p.flags[m] = flags
        if flags & PG_FICTITIOUS:
            self._wakeup(m)
            return
        if q:
            self._rem_queue(m)
        p.valid[m] = 0
        p.dirty[m] = 0
        if self.md_mod:
            self.md_mod.discard(m)
        if self.md_refs:
            self.md_refs.pop(m, None)
        p.flags[m] = flags & ~(PG_NEED_COMMIT | PG_UNQUEUED)
        if p.hold_count[m]:
            self._add_queue(m, PQ_HOLD + p.pc[m], False)
        elif self.kernel is None:
            fq = PQ_FREE + p.pc[m]                     # _add_queue at the head, inlined
            qs = self.queues
            with self.queue_spin[fq]:
                h = qs.head[fq]
                p.next[m] = h
                p.prev[m] = 0
                if h:
                    p.prev[h - 1] = m + 1
                else:
                    qs.tail[fq] = m + 1
                    qs.nonempty[fq] = 1
                qs.head[fq] = m + 1
                p.queue[m] = fq
                qs.lcnt[fq] += 1
            c = self.cpu[self._tls.cpu]                # _count("v_free_count", +1)
            with self.stats_lock:
                c.vmstats.v_free_count += 1
                c.adj["v_free_count"] += 1
        else:
            self._buddy_give(m)
        lock = self.atomic
        lock.acquire()
        b = p.busy_count[m]
        p.busy_count[m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
        lock.release()
        if b & PBUSY_WANTED:
            with self.sleep:
                self.sleep.notify_all()
        if self.vm_pageout_pages_needed or self.vm_pages_waiting:
            self.vm_page_free_wakeup()

    def _give_free(self, m: int) -> None:
        if self.source == "buddy":
            self._buddy_give(m)
        else:
            self._add_queue(m, PQ_FREE + self.pages.pc[m], True)

    def _buddy_take(self, color: int) -> int | None:
        k = self.kernel
        assert k is not None
        dom = self.topology.ids(self.curcpu())[0] % k.phys.ndomains
        for d in [dom, *[x for x in range(k.phys.ndomains) if x != dom]]:
            pa = k.alloc_pages(d, "default", 0)
            if pa is not None:
                m = (pa >> PAGE_SHIFT) - self.first_pfn
                self._count("v_free_count", -1)
                # vm_page_free_toq unbusies the page under its spinlock *after* giving it
                # back (as the kernel does after the PQ_FREE insert, where allocators only
                # try the page lock): wait for that spinlock before busying.
                spin = self.page_spin[m & (PAGE_STRIPES - 1)]
                spin.acquire()
                try:
                    busy = self._busy_try(m, True)
                finally:
                    spin.release()
                if busy:
                    raise PageStateError("buddy page came back busy")
                return m
        return None

    def _buddy_give(self, m: int) -> None:
        assert self.kernel is not None
        self.kernel.free_pages(self.pa(m), 0)
        self._count("v_free_count", 1)

    # ======================================================================================
    # State transitions
    # ======================================================================================
    def _movable(self, m: int) -> bool:
        return not self.pages.flags[m] & (PG_FICTITIOUS | PG_UNQUEUED)

    @page_op(locked=True)
    def vm_page_activate(self, m: int) -> None:
        """To the tail of PQ_ACTIVE + pc with act_count >= ACT_INIT."""
        p = self.pages
        if not self._movable(m):
            return
        if queue_base(p.queue[m]) == PQ_ACTIVE:
            p.act_count[m] = max(p.act_count[m], ACT_INIT)
            return
        if queue_base(p.queue[m]) == PQ_FREE:
            raise PageStateError(f"vm_page_activate: page {self.pa(m):#x} is free")
        old = self._rem_queue(m)
        if old == PQ_CACHE:
            self.cpu[self.curcpu()].cnt["v_reactivated"] += 1
        p.act_count[m] = max(p.act_count[m], ACT_INIT)
        self._add_queue(m, PQ_ACTIVE + p.pc[m], False)
        if old in (PQ_FREE, PQ_CACHE):
            self.pagedaemon_wakeup()

    @page_op()
    def vm_page_soft_activate(self, m: int) -> None:
        if queue_base(self.pages.queue[m]) == PQ_ACTIVE:
            return
        self.vm_page_activate(m)

    @page_op(locked=True)
    def vm_page_deactivate(self, m: int, athead: bool = False) -> None:
        """To PQ_INACTIVE + pc (tail, or head with ``athead``); act_count untouched."""
        p = self.pages
        if not self._movable(m) or queue_base(p.queue[m]) == PQ_INACTIVE:
            return
        if queue_base(p.queue[m]) == PQ_FREE:
            raise PageStateError(f"vm_page_deactivate: page {self.pa(m):#x} is free")
        old = self._rem_queue(m)
        if old == PQ_CACHE:
            self.cpu[self.curcpu()].cnt["v_reactivated"] += 1
        self._deactivate_locked(m, athead)

    def _deactivate_locked(self, m: int, athead: bool) -> None:
        """_vm_page_deactivate_locked's insertion (the page is off every queue): clear
        PG_WINATCFLS, head or tail of PQ_INACTIVE + pc; tail inserts count in ``adds``."""
        self.pages.flags[m] &= ~PG_WINATCFLS
        q = PQ_INACTIVE + self.pages.pc[m]
        self._add_queue(m, q, athead)
        if not athead:
            self.queues.adds[q] += 1

    @page_op(locked=True)
    def vm_page_cache(self, m: int) -> None:
        """Move a clean, busied page to PQ_CACHE (a dirty one is deactivated); always
        unbusies."""
        p = self.pages
        self._need_hard_busy(m, "vm_page_cache")
        try:
            if (p.flags[m] & (PG_UNQUEUED | PG_NEED_COMMIT | PG_FICTITIOUS) or
                    p.busy_count[m] & PBUSY_MASK or p.wire_count[m] or p.hold_count[m]):
                return
            if queue_base(p.queue[m]) == PQ_CACHE:
                return
            p.flags[m] &= ~(PG_MAPPED | PG_WRITEABLE)
            self.vm_page_test_dirty(m)
            if p.dirty[m] or p.flags[m] & PG_NEED_COMMIT:
                self.vm_page_deactivate(m)
                return
            self._rem_queue(m)
            self._add_queue(m, PQ_CACHE + p.pc[m], False)
            self.vm_page_free_wakeup()
        finally:
            self._wakeup(m)

    @page_op(refuse_free=False, locked=True)
    def vm_page_try_to_free(self, m: int) -> bool:
        if self._is_free(m):
            return False
        p = self.pages
        if self._busy_try(m, True):
            return False
        if (p.dirty[m] or p.hold_count[m] or p.wire_count[m] or
                p.flags[m] & (PG_UNQUEUED | PG_NEED_COMMIT | PG_FICTITIOUS) or
                queue_base(p.queue[m]) in (PQ_FREE, PQ_HOLD)):
            self._wakeup(m)
            return False
        self.vm_page_test_dirty(m)
        if p.dirty[m]:
            self._wakeup(m)
            return False
        self.vm_page_free(m)
        return True

    @page_op(locked=True)
    def vm_page_unqueue(self, m: int) -> None:
        if self._rem_queue(m) in (PQ_FREE, PQ_CACHE):
            self.pagedaemon_wakeup()

    @page_op()
    def vm_page_need_commit(self, m: int) -> None:
        self.pages.flags[m] |= PG_NEED_COMMIT
        self._object_maybe_dirty(m)

    @page_op()
    def vm_page_clear_commit(self, m: int) -> None:
        self.pages.flags[m] &= ~PG_NEED_COMMIT

    # ======================================================================================
    # Objects, lookup, hash
    # ======================================================================================
    def vm_quickcolor(self) -> int:
        """vm_object.c's vm_quickcolor(): the creating thread's term plus this CPU's
        ``gd_quick_color``, which steps by PQ_PRIME2 (23) per object.  Not masked (the
        colour is used modulo the CPU's slice).  The per-CPU counter is only touched by its
        own CPU in the kernel (a critical section); here threads may share a CPU, so it is
        bumped under stats_lock.  Returns the colour."""
        cpu = self._tls.cpu
        with self.stats_lock:
            pg_color = self._tls.thread_color + self._quick_color[cpu]
            self._quick_color[cpu] += PQ_PRIME2
        return pg_color

    def set_thread_color(self, value: int) -> None:
        """Set the calling thread's vm_quickcolor() term (``curthread >> 10``; 0 by
        default).  Lets a model run give its threads distinct object colours as distinct
        kernel threads get."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 31:
            raise ArgumentError(f"thread colour {value!r} is not an int in 0..2**31-1")
        self._tls.thread_color = value

    def object_create(self, type: str = OBJT_DEFAULT) -> VmObject:
        """A new VM object (_vm_object_allocate): its colour offset is vm_quickcolor()."""
        if type not in OBJ_TYPES:
            raise ArgumentError(f"unknown object type {type!r} ({', '.join(OBJ_TYPES)})")
        with self.stats_lock:                  # ids are handed out once, on any thread
            oid = self._next_obj
            self._next_obj += 1
        o = VmObject(oid, type, self.vm_quickcolor())
        self.objects[o.id] = o
        return o

    @page_op()
    def vm_page_insert(self, m: int, obj: VmObject, pindex: int) -> bool:
        """Enter a hard-busied page into ``obj`` at ``pindex``; False if that index is
        taken."""
        self._check_obj(obj, "vm_page_insert")
        self._check_pindex(pindex, "vm_page_insert")
        self._need_hard_busy(m, "vm_page_insert")
        if self.pages.obj[m]:
            raise PageStateError(f"vm_page_insert: page {self.pa(m):#x} already in object")
        return self._insert(m, obj, pindex)

    def _insert(self, m: int, obj: VmObject, pindex: int) -> bool:
        """vm_page_insert's work, under the object's token (also on the alloc fast path)."""
        p = self.pages
        token = obj.token
        token.acquire()
        memq = obj.memq
        if pindex in memq:
            token.release()
            return False
        obj.generation += 1
        memq[pindex] = m
        obj.resident_page_count += 1
        p.obj[m] = obj.id
        p.pindex[m] = pindex
        if p.valid[m] & p.dirty[m] or p.flags[m] & (PG_WRITEABLE | PG_NEED_COMMIT):
            obj.writeable = obj.maybe_dirty = True
        token.release()
        return True

    @page_op()
    def vm_page_remove(self, m: int) -> None:
        p = self.pages
        oid = p.obj[m]
        if not oid:
            return
        self._need_hard_busy(m, "vm_page_remove")
        obj = self.objects[oid]
        with obj.token:
            del obj.memq[p.pindex[m]]
            obj.resident_page_count -= 1
            obj.generation += 1
        p.obj[m] = 0

    def vm_page_lookup(self, obj: VmObject, pindex: int) -> int | None:
        self._check_obj(obj, "vm_page_lookup")
        self._check_pindex(pindex, "vm_page_lookup")
        with obj.token:
            m = obj.memq.get(pindex)
        if m is not None:
            self.hash_enter(m)
        return m

    def vm_page_lookup_busy_try(self, obj: VmObject, pindex: int,
                                also_m_busy: bool) -> tuple[int | None, bool]:
        """(page, error): None if absent; the page and True if busy; else hard-busied."""
        m = self.vm_page_lookup(obj, pindex)
        if m is None:
            return None, False
        if self._busy_try(m, also_m_busy):
            return m, True
        return m, False

    @page_op(locked=True)
    def vm_page_rename(self, m: int, obj: VmObject, pindex: int) -> None:
        """Move a hard-busied page to (obj, pindex); a cached page is deactivated; the
        page is always dirtied."""
        self._check_obj(obj, "vm_page_rename")
        self._check_pindex(pindex, "vm_page_rename")
        self._need_hard_busy(m, "vm_page_rename")
        if pindex in obj.memq:
            raise PageStateError(f"vm_page_rename: object {obj.id} already has {pindex}")
        self.vm_page_remove(m)
        self._insert(m, obj, pindex)
        if queue_base(self.pages.queue[m]) == PQ_CACHE:
            self.vm_page_deactivate(m)
        self.vm_page_dirty(m)

    @page_op(refuse_free=False)
    def vm_page_next(self, m: int) -> int | None:
        oid = self.pages.obj[m]
        if not oid:
            return None
        return self.objects[oid].memq.get(self.pages.pindex[m] + 1)

    def hash_enter(self, m: int) -> None:
        """vm_page_hash_enter: only PG_MAPPEDMULTI pages with an object."""
        h, p = self.hash, self.pages
        if h is None or not p.flags[m] & PG_MAPPEDMULTI or not p.obj[m]:
            return
        obj = self.objects[p.obj[m]]
        if self.hash_vnode_only and obj.type != "vnode":
            return
        pindex = p.pindex[m]
        i = h.index(obj, pindex)
        self.ticks += 1
        best = i
        best_delta = self.ticks - h.ticks[i]
        for j in range(i, i + 4):
            if h.m[j] == m and h.obj[j] == obj.id and h.pindex[j] == pindex:
                h.ticks[j] = self.ticks
                return
            d = self.ticks - h.ticks[j]
            if d < -1 or best_delta < d:       # DragonFly never updates best_delta
                best = j
        h.m[best], h.obj[best], h.pindex[best], h.ticks[best] = m, obj.id, pindex, self.ticks

    def vm_page_hash_get(self, obj: VmObject, pindex: int) -> int | None:
        """The lockless heuristic lookup: a soft-busied page, or None (try the slow path)."""
        self._check_obj(obj, "vm_page_hash_get")
        self._check_pindex(pindex, "vm_page_hash_get")
        h, p = self.hash, self.pages
        if h is None:
            return None
        i = h.index(obj, pindex)
        for j in range(i, i + 4):
            m = h.m[j]
            if m < 0 or h.obj[j] != obj.id or h.pindex[j] != pindex:
                continue
            if p.obj[m] != obj.id or p.pindex[m] != pindex:
                continue
            if self.sbusy_try(m):
                continue
            if p.obj[m] != obj.id or p.pindex[m] != pindex:
                self.sbusy_drop(m)
                continue
            if h.ticks[j] != self.ticks:
                h.ticks[j] = self.ticks
            return m
        return None

    # ======================================================================================
    # Valid and dirty bits
    # ======================================================================================
    @staticmethod
    def vm_page_bits(base: int, size: int) -> int:
        if not isinstance(base, int) or not isinstance(size, int) or base < 0 or size < 0 \
                or base + size > 1 << PAGE_SHIFT:
            raise ArgumentError(f"vm_page_bits: [{base}, {base}+{size}) is not inside the "
                                "page")
        if size == 0:
            return 0
        return (2 << ((base + size - 1) >> 9)) - (1 << (base >> 9))

    def _zero_valid(self, m: int, base: int, size: int) -> None:
        """Zero the partial chunks at either end that are not valid yet."""
        v = self.pages.valid[m]
        if base & (DEV_BSIZE - 1) and not v & (1 << (base >> 9)):
            self.zeroed_pages += 1
        end = base + size
        if end & (DEV_BSIZE - 1) and not v & (1 << (end >> 9)):
            self.zeroed_pages += 1

    @page_op()
    def vm_page_set_valid(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        self._zero_valid(m, base, size)
        self.pages.valid[m] |= bits

    @page_op()
    def vm_page_set_validclean(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        self._zero_valid(m, base, size)
        p = self.pages
        p.valid[m] |= bits
        p.dirty[m] &= ~bits
        if bits == VM_PAGE_BITS_ALL:
            p.flags[m] &= ~PG_NOSYNC

    @page_op()
    def vm_page_set_validdirty(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        p = self.pages
        p.valid[m] |= bits
        p.dirty[m] |= bits
        self._object_maybe_dirty(m)

    @page_op()
    def vm_page_clear_dirty(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        p = self.pages
        p.dirty[m] &= ~bits
        if bits == VM_PAGE_BITS_ALL:
            p.flags[m] &= ~PG_NOSYNC

    @page_op()
    def vm_page_dirty(self, m: int) -> None:
        p = self.pages
        if queue_base(p.queue[m]) in (PQ_FREE, PQ_CACHE):
            raise PageStateError(f"vm_page_dirty: page {self.pa(m):#x} is free or cached")
        if p.dirty[m] != VM_PAGE_BITS_ALL:
            p.dirty[m] = VM_PAGE_BITS_ALL
            self._object_maybe_dirty(m)

    def _object_maybe_dirty(self, m: int) -> None:
        """vm_object_set_writeable_dirty on the page's object, if it has one."""
        o = self.objects.get(self.pages.obj[m])
        if o is not None:
            o.writeable = o.maybe_dirty = True

    @page_op()
    def vm_page_set_invalid(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        p = self.pages
        p.valid[m] &= ~bits
        p.dirty[m] &= ~bits
        o = self.objects.get(p.obj[m])
        if o is not None:
            o.generation += 1

    @page_op()
    def vm_page_zero_invalid(self, m: int, setvalid: bool) -> None:
        v = self.pages.valid[m]
        runs, prev = 0, True
        for c in range(8):
            inv = not v & (1 << c)
            if inv and prev:
                runs += 1
            prev = not inv
        self.zeroed_pages += runs
        if setvalid:
            self.pages.valid[m] = VM_PAGE_BITS_ALL

    @page_op(refuse_free=False)
    def vm_page_is_valid(self, m: int, base: int, size: int) -> bool:
        bits = self.vm_page_bits(base, size)
        v = self.pages.valid[m]
        return bool(v and v & bits == bits)

    @page_op()
    def vm_page_test_dirty(self, m: int) -> None:
        if self.pages.dirty[m] != VM_PAGE_BITS_ALL and m in self.md_mod:
            self.vm_page_dirty(m)

    @page_op()
    def vm_page_undirty(self, m: int) -> None:
        self.pages.dirty[m] = 0

    # ======================================================================================
    # Fictitious pages
    # ======================================================================================
    def vm_page_initfake(self, paddr: int, memattr: int = 0) -> FakePage:
        """A fictitious page for device memory at ``paddr`` (outside RAM): hard-busied,
        wired, never queued, never hashed."""
        if not isinstance(paddr, int) or paddr < 0 or paddr & ((1 << PAGE_SHIFT) - 1):
            raise AddressError(f"vm_page_initfake: {paddr!r} is not a page address")
        f = self.fake.get(paddr)
        if f is None:
            f = self.fake[paddr] = FakePage(paddr)
        f.memattr = memattr
        return f

    # ======================================================================================
    # Views
    # ======================================================================================
    def show_page(self) -> str:
        """DDB ``show page``."""
        v = self.vmstats
        names = ("v_free_count", "v_cache_count", "v_inactive_count", "v_active_count",
                 "v_wire_count", "v_free_reserved", "v_free_min", "v_free_target",
                 "v_inactive_target", "v_paging_wait", "v_paging_start", "v_paging_target1",
                 "v_paging_target2")
        return "".join(f"vmstats.{n}: {getattr(v, n)}\n" for n in names)

    def show_pageq(self) -> str:
        """DDB ``show pageq``: per colour lcnt of FREE, CACHE, ACTIVE, INACTIVE."""
        lc = self.queues.lcnt
        out = []
        for name, base in (("PQ_FREE", PQ_FREE), ("PQ_CACHE", PQ_CACHE),
                           ("PQ_ACTIVE", PQ_ACTIVE), ("PQ_INACTIVE", PQ_INACTIVE)):
            out.append(f"{name}:" + "".join(f" {lc[base + i]}" for i in range(PQ_L2_SIZE))
                       + "\n")
        return "".join(out)

    def sysctl(self, name: str) -> str:
        if name == "vm.dma_reserved":
            return str(self.dma_reserved)
        if name == "vm.dma_free_pages":
            return str(self.dma_alist.bfree if self.dma_alist else 0)
        if name == "vm.page_hash_vnode_only":
            return str(int(self.hash_vnode_only))
        if name == "vm.page_free_hysteresis":
            return str(self.page_free_hysteresis)
        if name == "vm.anonmem_decline":
            return str(self.anonmem_decline)
        if name == "vm.filemem_decline":
            return str(self.filemem_decline)
        if name == "vm.emerg_launder":
            return str(EMERG_LAUNDER)
        if name == "vm.contig_verbose":
            return "0"
        raise ArgumentError(f"unknown oid {name!r} (vm.dma_reserved, vm.dma_free_pages, "
                            "vm.page_hash_vnode_only, vm.page_free_hysteresis, "
                            "vm.anonmem_decline, vm.filemem_decline, vm.emerg_launder, "
                            "vm.contig_verbose)")

    def counts(self) -> dict[str, int]:
        """Pages per queue base, counted from the queues."""
        lc = self.queues.lcnt
        return {name: sum(lc[base:base + PQ_L2_SIZE]) for base, name in
                ((PQ_FREE, "free"), (PQ_CACHE, "cache"), (PQ_INACTIVE, "inactive"),
                 (PQ_ACTIVE, "active"), (PQ_HOLD, "hold"))}

    def check(self) -> None:
        """INVARIANTS: every queue's links and lcnt; every page on at most one queue and
        on the one its ``queue`` field names; vmstats counts equal the queues (after a
        rollup); free pages unbusied, unwired, unheld and without an object; objects and
        pages agree."""
        from .invariants import check_dragonfly
        check_dragonfly(self)


def _runs(pfns: np.ndarray) -> list[tuple[int, int]]:
    """The runs [start, end) of consecutive values in the ascending array ``pfns``."""
    if not len(pfns):
        return []
    brk = np.flatnonzero(np.diff(pfns) != 1) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(pfns)]])
    return list(zip(pfns[starts].tolist(), (pfns[ends - 1] + 1).tolist(), strict=True))


__all__ = [
    "COUNTS",
    "VM_ALLOC_CPU",
    "CpuTopology",
    "DragonflyVm",
    "PageStateError",
    "PhysmemError",
    "parse_req",
]
