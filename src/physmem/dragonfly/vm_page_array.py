"""DragonFly BSD's ``struct vm_page`` lifecycle fields, its page queues × colours, and vmstats.

The fields live in numpy arrays, one entry per page from the first to the last available
page (``vm_page_array``), with the names and bit values of DragonFly's ``vm_page.h``; the
hot paths read and write single entries through memoryviews.  The arrays are anonymous
mappings (:func:`physmem.pagearray.zeros`), so memory follows what boot and use touch.

=================  =======  ============================================================
field              type     meaning
=================  =======  ============================================================
``flags``          u32      ``PG_*``
``busy_count``     u32      ``PBUSY_LOCKED`` | ``PBUSY_WANTED`` | soft-busy count
``wire_count``     u32
``hold_count``     i32
``queue``          u16      queue index: ``PQ_NONE`` or base + colour
``pc``             u16      colour 0..1023
``act_count``      u8       0..``ACT_MAX``
``valid``/``dirty`` u8      one bit per 512-byte chunk
``obj``            i32      owning object's id (0: none)
``pindex``         i64      index in the object
``next``/``prev``  i32      queue links (page index + 1; 0 ends the list)
=================  =======  ============================================================

Queues: ``vm_page_queues[PQ_COUNT]`` with ``lcnt``, a head and tail, and the ``lastq`` skip
hint; queue index = base + colour (``PQ_FREE`` 1, ``PQ_INACTIVE`` 1025, ``PQ_ACTIVE``
2049, ``PQ_CACHE`` 3073, ``PQ_HOLD`` 4097).  FREE queues insert at the head (LIFO,
cache-hot); the others at the head only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..pagearray import zeros

# vm_page.h flags
PG_UNUSED0001 = 0x1
PG_UNUSED0002 = 0x2
PG_WINATCFLS = 0x4
PG_FICTITIOUS = 0x8
PG_WRITEABLE = 0x10
PG_MAPPED = 0x20
PG_MAPPEDMULTI = 0x40
PG_REFERENCED = 0x80
PG_CLEANCHK = 0x100
PG_NOSYNC = 0x400
PG_UNQUEUED = 0x800
PG_MARKER = 0x1000
PG_RAM = 0x2000
PG_SWAPPED = 0x4000
PG_NOTMETA = 0x8000
PG_NEED_COMMIT = 0x40000

PBUSY_LOCKED = 0x80000000
PBUSY_WANTED = 0x40000000
PBUSY_SWAPINPROG = 0x20000000
PBUSY_MASK = 0x1FFFFFFF

ACT_DECLINE = 1
ACT_ADVANCE = 3
ACT_INIT = 5
ACT_MAX = 64
VM_PAGE_BITS_ALL = 0xFF
DEV_BSIZE = 512

PQ_L2_SIZE = 1024
PQ_L2_MASK = PQ_L2_SIZE - 1
PQ_PRIME1 = 31
PQ_PRIME2 = 23
PQ_NONE = 0
PQ_FREE = 1
PQ_INACTIVE = 1 + PQ_L2_SIZE
PQ_ACTIVE = 1 + 2 * PQ_L2_SIZE
PQ_CACHE = 1 + 3 * PQ_L2_SIZE
PQ_HOLD = 1 + 4 * PQ_L2_SIZE
PQ_COUNT = 1 + 5 * PQ_L2_SIZE
QUEUE_NAMES = {PQ_FREE: "PQ_FREE", PQ_INACTIVE: "PQ_INACTIVE", PQ_ACTIVE: "PQ_ACTIVE",
               PQ_CACHE: "PQ_CACHE", PQ_HOLD: "PQ_HOLD"}
# The vmstats counter each queue base feeds (HOLD counts as active).
COUNTER = {PQ_FREE: "v_free_count", PQ_INACTIVE: "v_inactive_count",
           PQ_ACTIVE: "v_active_count", PQ_CACHE: "v_cache_count",
           PQ_HOLD: "v_active_count"}


def queue_base(q: int) -> int:
    """The base (PQ_FREE, PQ_INACTIVE, ...) of queue index ``q``; PQ_NONE for 0."""
    return 0 if q == 0 else ((q - 1) & ~PQ_L2_MASK) + 1


def boot_color(pfn):
    """vm_add_new_page's colour: the pfn twisted by its 1024- and 1M-page groups (an int,
    or a numpy array of pfns at boot)."""
    return (pfn ^ (pfn >> 10) ^ (pfn >> 20)) & PQ_L2_MASK


@dataclass
class VmStats:
    """``struct vmstats``: counts and thresholds (longs), as DragonFly keeps them."""

    v_page_count: int = 0
    v_free_count: int = 0
    v_cache_count: int = 0
    v_inactive_count: int = 0
    v_active_count: int = 0
    v_wire_count: int = 0
    v_dma_pages: int = 0
    v_free_min: int = 0
    v_free_reserved: int = 0
    v_free_severe: int = 0
    v_pageout_free_min: int = 0
    v_interrupt_free_min: int = 0
    v_free_target: int = 0
    v_inactive_target: int = 0
    v_paging_wait: int = 0
    v_paging_start: int = 0
    v_paging_target1: int = 0
    v_paging_target2: int = 0

    def copy(self) -> VmStats:
        return VmStats(**{f.name: getattr(self, f.name) for f in fields(self)})


COUNTS = ("v_free_count", "v_cache_count", "v_inactive_count", "v_active_count",
          "v_wire_count")


@dataclass
class CpuStats:
    """A CPU's view: ``gd_vmstats`` (local copy, adjusted at once) and
    ``gd_vmstats_adj`` (deltas not yet folded into the global vmstats), plus the event
    counters of ``gd_cnt``."""

    vmstats: VmStats = field(default_factory=VmStats)
    adj: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    cnt: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("v_tfree", "v_reactivated", "v_pdwakeups", "v_ppwakeups", "v_dfree"), 0))


class PageArray:
    """The DragonFly page array over pfns ``[first_pfn, first_pfn + npages)``."""

    FIELDS = (("flags", np.uint32), ("busy_count", np.uint32), ("wire_count", np.uint32),
              ("hold_count", np.int32), ("queue", np.uint16), ("pc", np.uint16),
              ("act_count", np.uint8), ("valid", np.uint8), ("dirty", np.uint8),
              ("obj", np.int32), ("pindex", np.int64), ("next", np.int32),
              ("prev", np.int32))

    def __init__(self, first_pfn: int, npages: int) -> None:
        self.first_pfn = first_pfn
        self.npages = npages
        self.arrays: dict[str, np.ndarray] = {}
        for name, dt in self.FIELDS:
            a = zeros(npages, dt)
            self.arrays[name] = a
            setattr(self, name, memoryview(a))

    def bytes_per_page(self) -> int:
        return sum(np.dtype(dt).itemsize for _, dt in self.FIELDS)


class Queues:
    """``vm_page_queues[PQ_COUNT]``: doubly linked lists through the page array's
    next/prev fields (index + 1, 0 = none), with ``lcnt`` and ``lastq`` per queue."""

    def __init__(self, pages: PageArray) -> None:
        self.pages = pages
        self.head = [0] * PQ_COUNT
        self.tail = [0] * PQ_COUNT
        self.lcnt = [0] * PQ_COUNT
        self.lastq = [-1] * PQ_COUNT
        self.adds = [0] * PQ_COUNT
        # 1 where a queue is non-empty: the colour search finds the next candidate with
        # bytearray.find (C speed) instead of probing empty colours one by one.
        self.nonempty = bytearray(PQ_COUNT)

    def insert(self, q: int, i: int, athead: bool) -> None:
        """Link page ``i`` into queue ``q`` (the caller holds the queue spinlock)."""
        p = self.pages
        n = i + 1
        if athead:
            h = self.head[q]
            p.next[i] = h
            p.prev[i] = 0
            if h:
                p.prev[h - 1] = n
            else:
                self.tail[q] = n
            self.head[q] = n
        else:
            t = self.tail[q]
            p.prev[i] = t
            p.next[i] = 0
            if t:
                p.next[t - 1] = n
            else:
                self.head[q] = n
            self.tail[q] = n
        p.queue[i] = q
        self.lcnt[q] += 1
        self.nonempty[q] = 1

    def remove(self, q: int, i: int) -> None:
        """Unlink page ``i`` from queue ``q``."""
        p = self.pages
        nx, pv = p.next[i], p.prev[i]
        if pv:
            p.next[pv - 1] = nx
        else:
            self.head[q] = nx
        if nx:
            p.prev[nx - 1] = pv
        else:
            self.tail[q] = pv
        p.next[i] = p.prev[i] = 0
        p.queue[i] = PQ_NONE
        self.lcnt[q] -= 1
        if not self.lcnt[q]:
            self.nonempty[q] = 0

    def remove_head(self, q: int) -> int:
        """Unlink the head page of queue ``q`` and return its index (the queue is not
        empty; the caller holds the queue spinlock).  ``remove(q, first(q))`` fused: the
        allocation fast path's one queue operation."""
        p = self.pages
        n = self.head[q]
        m = n - 1
        nx = p.next[m]
        self.head[q] = nx
        if nx:
            p.prev[nx - 1] = 0
        else:
            self.tail[q] = 0
        p.next[m] = 0
        p.queue[m] = PQ_NONE
        c = self.lcnt[q] - 1
        self.lcnt[q] = c
        if not c:
            self.nonempty[q] = 0
        return m

    def move_to_tail(self, q: int, i: int) -> None:
        """``remove(q, i)`` then ``insert(q, i, False)``: page ``i`` of queue ``q`` moves to
        its tail (the pagedaemon's requeue, under one hold of the queue spinlock)."""
        if self.tail[q] != i + 1:
            self.remove(q, i)
            self.insert(q, i, False)

    def empty(self, base: int) -> bool:
        """Whether all 1024 colours of ``base`` are empty (a C-speed scan of the
        non-empty bytes; each byte changes only under its queue's lock, so unlike a shared
        counter it cannot drift when threads change different queues)."""
        return self.nonempty.find(1, base, base + PQ_L2_SIZE) < 0

    def first(self, q: int) -> int | None:
        h = self.head[q]
        return h - 1 if h else None

    def iter(self, q: int):
        p = self.pages
        n = self.head[q]
        while n:
            yield n - 1
            n = p.next[n - 1]

    def _link_runs(self, order: np.ndarray, queues: np.ndarray
                   ) -> tuple[list[int], list[int], list[int], list[int]]:
        """Group the pages ``order`` by their queues (a stable radix sort on the 16-bit
        keys, so each queue keeps the pages' order) and link each group through next/prev
        and ``queue``.  Returns, per group: its queue, the page index + 1 of its first and
        last page, and its length: the caller sets the heads, tails and counts.  The
        temporaries are the sort's permutation and two int32 arrays per page (boot builds
        every free queue here, a piece at a time)."""
        p = self.pages
        n = len(order)
        keys = queues.astype(np.uint16, copy=False)
        perm = np.argsort(keys, kind="stable")
        qs = keys[perm]
        idx = order[perm].astype(np.int32, copy=False)
        bounds = np.flatnonzero(qs[1:] != qs[:-1])  # group ends (last position)
        arr = p.arrays
        # The links are computed in queue order and written back in the pages' order
        # (through a piece-sized scratch array): at boot ``order`` is a run of
        # consecutive pages, so the page-array writes are sequential, not a scatter
        # across the whole array.
        arr["queue"][order] = keys
        link = np.empty(n, dtype=np.int32)
        back = np.empty(n, dtype=np.int32)
        # next: the following entry + 1, 0 at a group's end; prev: the preceding one
        np.add(idx[1:], 1, out=link[:-1])
        link[-1] = 0
        link[bounds] = 0
        back[perm] = link
        arr["next"][order] = back
        np.add(idx[:-1], 1, out=link[1:])
        link[0] = 0
        link[bounds + 1] = 0
        back[perm] = link
        arr["prev"][order] = back
        del link, back, perm
        starts = np.concatenate([[0], bounds + 1])
        ends = np.concatenate([bounds, [n - 1]])
        return (qs[starts].tolist(), (idx[starts] + 1).tolist(), (idx[ends] + 1).tolist(),
                (ends - starts + 1).tolist())

    def build_from(self, pieces, colours: np.ndarray, base: int) -> None:
        """Bulk boot: link the pages of ``pieces`` (arrays of indices, together in queue
        order from head to tail) into their queues ``base + colours[page]`` -- the state
        that inserting them one by one at the tail would leave, built with numpy one
        piece at a time (each piece's runs appended to its queues' tails, so the
        temporaries are bounded by a piece).  The queues must be empty."""
        p = self.pages
        assert not any(self.lcnt[base:base + PQ_L2_SIZE]), "build_from: queue not empty"
        for order in pieces:
            if not len(order):
                continue
            queues = colours[order]
            queues += base
            for q, first, last, n in zip(*self._link_runs(order, queues), strict=True):
                t = self.tail[q]
                if t:
                    p.next[t - 1] = first
                    p.prev[first - 1] = t
                else:
                    self.head[q] = first
                self.tail[q] = last
                self.lcnt[q] += n
                self.nonempty[q] = 1

    def push_heads(self, order: np.ndarray, queues: np.ndarray) -> None:
        """Insert the pages ``order`` (indices, in insertion order) each at the head of
        its queue (``queues``, uint16, one per page of ``order``): the state that
        ``insert(q, i, True)`` one by one would leave (a queue gains its new pages
        last-inserted first, before its old ones), built with numpy.  The pages must be
        on no queue."""
        p = self.pages
        if not len(order):
            return
        # last inserted = nearest the head
        for q, first, last, n in zip(*self._link_runs(order[::-1], queues[::-1]),
                                     strict=True):
            old = self.head[q]
            p.next[last - 1] = old                 # the new run, then the old queue
            if old:
                p.prev[old - 1] = last
            else:
                self.tail[q] = last
            self.head[q] = first
            self.lcnt[q] += n
            self.nonempty[q] = 1

