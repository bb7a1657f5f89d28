"""DragonFly BSD's ``struct vm_page`` lifecycle fields and its page queues × colours.

The fields live in numpy arrays, one entry per page from the first to the last available
page (``vm_page_array``), with the names and bit values of DragonFly's ``vm_page.h``; the
hot paths read and write single entries through memoryviews.  The arrays are anonymous
mappings (:func:`physmem.pagearray.zeros`), so memory follows what boot and use touch;
the free pages of untouched 1024-page blocks are not written at all (their ``pc``,
``queue``, ``next``, ``prev`` follow from the boot colour rule: :class:`Queues`).

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

import threading

import numpy as np

from ..jit import njit_typed
from ..pagearray import zeros
from .vm_meter import (  # noqa: F401  (COUNTS, CpuStats, VmStats: re-exported)
    COUNTS,
    V_ACTIVE_COUNT,
    V_CACHE_COUNT,
    V_FREE_COUNT,
    V_INACTIVE_COUNT,
    CpuStats,
    VmStats,
)

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
# The vmstats counter (vm_meter.py's field index) each queue base feeds (HOLD counts as
# active).
COUNTER = {PQ_FREE: V_FREE_COUNT, PQ_INACTIVE: V_INACTIVE_COUNT,
           PQ_ACTIVE: V_ACTIVE_COUNT, PQ_CACHE: V_CACHE_COUNT,
           PQ_HOLD: V_ACTIVE_COUNT}


def queue_base(q: int) -> int:
    """The base (PQ_FREE, PQ_INACTIVE, ...) of queue index ``q``; PQ_NONE for 0."""
    return 0 if q == 0 else ((q - 1) & ~PQ_L2_MASK) + 1


def boot_color(pfn):
    """vm_add_new_page's colour: the pfn twisted by its 1024- and 1M-page groups (an int,
    or a numpy array of pfns at boot)."""
    return (pfn ^ (pfn >> 10) ^ (pfn >> 20)) & PQ_L2_MASK


# The rows of PageArray's three arrays (w4 uint32, w2 uint16, w1 uint8), and the lock
# words' slots in row R_WORDS (vm_page_core.py): one per queue spinlock, one per page
# spinlock stripe, the busy atomic's; then, at NWORDS + slot, each word's holder (the
# thread's ``locks.ME.t``, meaningful while the word is up).
R_FLAGS, R_BUSY, R_WIRE, R_HOLD, R_OBJ, R_NEXT, R_PREV = range(7)
R_HEAD, R_TAIL, R_LCNT, R_LASTQ, R_WORDS, R_ADDS = range(7, 13)
R_ONEXT, R_OPREV = 13, 14      # an object's pages in insertion order (vm_object.py)
W4_ROWS = 15
R_QUEUE, R_PC = 0, 1
W2_ROWS = 2
R_ACT, R_VALID, R_DIRTY, R_NONEMPTY, R_IMPLICIT, R_MDREF = range(6)
W1_ROWS = 6
W_QUEUE, W_PAGE = 0, PQ_COUNT
W_ATOMIC = PQ_COUNT + PQ_L2_SIZE
NWORDS = W_ATOMIC + 1
ROW_MIN = 2 * NWORDS
W_TOKEN = 2 * NWORDS    # -WAIT - (W_TOKEN + id): object id's token (vm_object.py) is held


class PageArray:
    """The DragonFly page array over pfns ``[first_pfn, first_pfn + npages)``.

    The fields are grouped by width into three 2-D arrays, one row per field, so that a
    compiled call receives the page layer as three arrays (numba's dispatch costs ~50 ns
    per array argument, a view made inside a compiled call ~20 ns; :mod:`.vm_page_core`):

    - ``w4`` (uint32): flags, busy_count, wire_count, hold_count, obj, next, prev, and
      the queues' head, tail, lcnt, lastq, the lock words (vm_page_core.py) and the
      inactive queues' tail-insert counts (``adds``), and the links of each object's
      pages in insertion order (``onext``/``oprev``, page + 1: :mod:`.vm_object`);
    - ``w2`` (uint16): queue, pc;
    - ``w1`` (uint8): act_count, valid, dirty, the queues' non-empty bytes, the
      implicit-block bytes and ``mdref`` (the pmap's reference count of the page,
      ``DragonflyVm.md_refs``, up to 255: what the pagedaemon's scans read);

    plus ``pindex`` (int64).  Rows are ``max(npages, ROW_MIN)`` long and zero-filled
    anonymous memory, so the parts nothing writes cost nothing.  Python reads and writes
    single entries through memoryviews of the rows (signed fields through int32 views:
    the bits are the same)."""

    FIELDS = (("flags", np.uint32), ("busy_count", np.uint32), ("wire_count", np.uint32),
              ("hold_count", np.int32), ("queue", np.uint16), ("pc", np.uint16),
              ("act_count", np.uint8), ("valid", np.uint8), ("dirty", np.uint8),
              ("obj", np.int32), ("pindex", np.int64), ("next", np.int32),
              ("prev", np.int32))
    # (part, array, row, dtype seen from Python, length: None = npages)
    ROWS = (("flags", "w4", R_FLAGS, np.uint32, None),
            ("busy_count", "w4", R_BUSY, np.uint32, None),
            ("wire_count", "w4", R_WIRE, np.uint32, None),
            ("hold_count", "w4", R_HOLD, np.int32, None),
            ("obj", "w4", R_OBJ, np.int32, None),
            ("next", "w4", R_NEXT, np.int32, None),
            ("prev", "w4", R_PREV, np.int32, None),
            ("head", "w4", R_HEAD, np.uint32, PQ_COUNT),
            ("tail", "w4", R_TAIL, np.uint32, PQ_COUNT),
            ("lcnt", "w4", R_LCNT, np.uint32, PQ_COUNT),
            ("lastq", "w4", R_LASTQ, np.int32, PQ_COUNT),
            ("words", "w4", R_WORDS, np.uint32, 2 * NWORDS),
            ("adds", "w4", R_ADDS, np.uint32, PQ_COUNT),
            ("onext", "w4", R_ONEXT, np.uint32, None),
            ("oprev", "w4", R_OPREV, np.uint32, None),
            ("queue", "w2", R_QUEUE, np.uint16, None),
            ("pc", "w2", R_PC, np.uint16, None),
            ("act_count", "w1", R_ACT, np.uint8, None),
            ("valid", "w1", R_VALID, np.uint8, None),
            ("dirty", "w1", R_DIRTY, np.uint8, None),
            ("nonempty", "w1", R_NONEMPTY, np.uint8, PQ_COUNT),
            ("implicit", "w1", R_IMPLICIT, np.uint8, -1),
            ("mdref", "w1", R_MDREF, np.uint8, None))

    def __init__(self, first_pfn: int, npages: int) -> None:
        self.first_pfn = first_pfn
        self.npages = npages
        self.implicit_off = first_pfn & PQ_L2_MASK
        self.nblocks = (npages + self.implicit_off + PQ_L2_MASK) >> 10
        row = max(npages, ROW_MIN)
        self.w4 = zeros(W4_ROWS * row, np.uint32).reshape(W4_ROWS, row)
        self.w2 = zeros(W2_ROWS * row, np.uint16).reshape(W2_ROWS, row)
        self.w1 = zeros(W1_ROWS * row, np.uint8).reshape(W1_ROWS, row)
        self.arrays: dict[str, np.ndarray] = {"pindex": zeros(npages, np.int64)}
        for name, grp, r, dt, n in self.ROWS:
            n = npages if n is None else (self.nblocks if n == -1 else n)
            self.arrays[name] = getattr(self, grp)[r, :n].view(dt)
        for name, a in self.arrays.items():
            setattr(self, name, memoryview(a))
        self.arrays["lastq"][:] = -1
        self.pi = self.arrays["pindex"]          # the bodies' pindex array (int64[::1])
        # 2-D memoryviews for the queue core's plain Python (vm_page_core.py)
        self.mw4, self.mw2, self.mw1 = (memoryview(self.w4), memoryview(self.w2),
                                        memoryview(self.w1))

    def bytes_per_page(self) -> int:
        return sum(np.dtype(dt).itemsize for _, dt in self.FIELDS)


def find_nonempty(ne, a: int, b: int) -> int:
    """The first q in [a, b) with ``ne[q]`` set, or -1 (``bytearray.find`` at C speed, on
    a copy of the range when ``ne`` is a memoryview)."""
    if isinstance(ne, memoryview):
        j = ne[a:b].tobytes().find(1)
        return j + a if j >= 0 else -1
    return ne.find(1, a, b)


MOVED = 0x80      # implicit-block flag: some of its pages may be finalize's moved pages


def pfn_of(blk: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The pfn at low bits ``low`` of block ``blk``."""
    return (blk << 10) | low


def _owned(c: np.ndarray, share: np.ndarray, blk: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The low bits (ascending, 1024 past the end) of the pages of colour ``c`` in
    blocks ``blk`` under a colouring of ``share`` colours per socket (1024: the boot
    colours), and how many there are: the original colours ``c % share + j * share``
    below 1024, at low bits ``orig ^ x(b)``."""
    cols = np.arange(-(-PQ_L2_SIZE // int(share.min())) if len(share) else 1)
    orig = (c % share)[:, None] + share[:, None] * cols
    there = orig < PQ_L2_SIZE
    x = ((blk ^ (blk >> 10)) & PQ_L2_MASK)[:, None]
    pos = np.sort(np.where(there, orig ^ x, PQ_L2_SIZE), axis=1)
    return pos, there.sum(axis=1)


def _lowest(c: np.ndarray, share: np.ndarray, blk: np.ndarray) -> np.ndarray:
    """The lowest low bits of colour c in blocks ``blk`` for a power-of-two ``share``:
    ``(c % share) ^ (x(b) % share)``."""
    return (c & (share - 1)) ^ ((blk ^ (blk >> 10)) & (share - 1))


class FinalizeMoves:
    """vm_numa_organize_finalize's moves as a program, not as a list of pages: what a
    page of a colour queue becomes, by arithmetic.

    Before the finalize, colour queue c reads the free ranges in queue order (each from
    its top down), taking the pages of colour c: a page's rank ``k`` in its queue is
    the count of colour-c pages before it (:meth:`rank`, :meth:`page`: closed forms,
    each 1024-page block holding ``in_block`` pages of a colour).  The finalize's donor
    cursor walks the colours at or above the average; while that set stays the same
    (a *stretch*: it changes only when a donor falls below the average, so at most
    1025 stretches), move g of the stretch takes the next page of donor
    ``order[g % m]`` (m donors).  Donor d gives its first ``given[d]`` pages; recipient
    j gets moves [rstart[j], rend[j]) and puts each at its head, so its queue reads
    the moves last first, then its own pages (old head ``ohead[j]``, index + 1)."""

    def __init__(self, first_pfn: int, ranges: list[tuple[int, int, int | None]],
                 share: int, counts: np.ndarray) -> None:
        self.first = first_pfn
        nr = len(ranges)
        # ranges in queue order: page index bounds, colouring (a range's colours are in
        # its socket's share, so c % share names them; 1024: outside every NUMA range)
        self.r_i0 = np.array([r[0] for r in ranges], dtype=np.int64)
        self.r_i1 = np.array([r[1] for r in ranges], dtype=np.int64)
        self.r_share = np.array([PQ_L2_SIZE if r[2] is None else share for r in ranges],
                                dtype=np.int64)
        self.by_start = np.argsort(self.r_i0)
        self.cnt = counts                               # [range, colour]
        self.base = np.zeros((nr, PQ_L2_SIZE), dtype=np.int64)
        if nr > 1:
            self.base[1:] = np.cumsum(counts[:-1], axis=0)
        self._rkey = ((np.arange(PQ_L2_SIZE)[None, :] << 40) | self.base).T.ravel()
        self.given = np.zeros(PQ_L2_SIZE, dtype=np.int64)
        self.g0 = np.zeros(0, dtype=np.int64)          # per stretch
        self.m = np.zeros(0, dtype=np.int64)
        self.order = np.zeros((0, PQ_L2_SIZE), dtype=np.int64)
        self.pos = np.zeros((0, PQ_L2_SIZE), dtype=np.int64)
        self.kb = np.zeros((0, PQ_L2_SIZE), dtype=np.int64)
        self.recip = np.zeros(0, dtype=np.int64)       # per recipient
        self.rstart = np.zeros(0, dtype=np.int64)
        self.rend = np.zeros(0, dtype=np.int64)
        self.ohead = np.zeros(0, dtype=np.int64)
        self.total = 0

    def run(self, lcnt: np.ndarray, scale_lim: int, hi: int, lo: int) -> None:
        """Simulate the finalize (``lcnt``: free pages per colour before) a stretch at a
        time: recipients are the colours below ``lo`` (in order, each filled to lo),
        donors those at or above ``hi`` when the cursor reaches them.  Needs lo < hi, i.e.
        hi >= 10: a recipient then never reaches hi and a donor never falls below lo, so
        the two sets are fixed at the start (the caller checks)."""
        lcnt = lcnt.astype(np.int64).copy()
        recip = np.flatnonzero(lcnt[:scale_lim] < lo)
        need = lo - lcnt[recip]
        total = int(need.sum())
        g, it = 0, 0
        kb = np.zeros(PQ_L2_SIZE, dtype=np.int64)
        g0s, ms, orders, poss, kbs = [], [], [], [], []
        while g < total:
            e = np.flatnonzero(lcnt >= hi)
            if not len(e):
                break                          # no donor left: the kernel would spin
            m = len(e)
            o = e[(np.searchsorted(e, it, side="right") + np.arange(m)) % m]
            rem = lcnt[o] - hi + 1             # visits until each drops below hi
            drop = np.arange(m) + (rem - 1) * m + 1
            n = min(int(drop.min()), total - g)
            pos = np.full(PQ_L2_SIZE, -1, dtype=np.int64)
            pos[o] = np.arange(m)
            g0s.append(g)
            ms.append(m)
            orders.append(np.concatenate([o, np.zeros(PQ_L2_SIZE - m, np.int64)]))
            poss.append(pos)
            kbs.append(kb.copy())
            v = np.maximum(0, (n - np.arange(m) + m - 1) // m)
            lcnt[o] -= v
            kb[o] += v
            it = int(o[(n - 1) % m])
            g += n
        self.total = g
        self.given = kb
        if g0s:
            self.g0, self.m = np.array(g0s, np.int64), np.array(ms, np.int64)
            self.order, self.pos = np.array(orders), np.array(poss)
            self.kb = np.array(kbs)
            # donor d's stretches by rank: key d << 40 | kb (kb ascends per donor)
            self._key = ((np.arange(PQ_L2_SIZE)[None, :] << 40) | self.kb).T.ravel()
        got = np.minimum(need, np.maximum(0, g - np.concatenate([[0], np.cumsum(need)[:-1]])))
        keep = got > 0
        self.recip = recip[keep]
        self.rstart = (np.cumsum(need) - need)[keep]
        self.rend = self.rstart + got[keep]
        self.ohead = np.zeros(len(self.recip), dtype=np.int64)

    def moves(self) -> tuple[np.ndarray, np.ndarray]:
        """(donor, recipient) of every move, in order (tests; M entries)."""
        g = np.arange(self.total, dtype=np.int64)
        d, _ = self._move(g)
        return d, self.recip[np.searchsorted(self.rend, g, side="right")]

    def _move(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Donor and rank of moves ``g``."""
        s = np.searchsorted(self.g0, g, side="right") - 1
        i = g - self.g0[s]
        d = self.order[s, i % self.m[s]]
        return d, self.kb[s, d] + i // self.m[s]

    def _g(self, d: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The move that takes donor d's rank-k page (k < given[d])."""
        row = np.searchsorted(self._key, (d << 40) | k, side="right") - 1
        s = row - d * len(self.g0)
        return self.g0[s] + self.pos[s, d] + (k - self.kb[s, d]) * self.m[s]

    def rank(self, idx: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Rank of free pages ``idx`` (colour ``c`` before the finalize) in their queue."""
        r = self.by_start[np.searchsorted(self.r_i0[self.by_start], idx, side="right") - 1]
        share = self.r_share[r]
        top = self.r_i1[r] + self.first
        return self.base[r, c] + self._below(c, share, top) - \
            self._below(c, share, idx + self.first + 1)

    @staticmethod
    def _below(c: np.ndarray, share: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Pages of colour c with pfn < x under the colouring ``share``."""
        blk, lx = x >> 10, x & PQ_L2_MASK
        if not (share & (share - 1)).any():     # evenly spaced: lowest + t * share
            lo = _lowest(c, share, blk)
            return blk * (PQ_L2_SIZE // share) + np.maximum(0, lx - lo + share - 1) // share
        pos, inb = _owned(c, share, blk)
        return blk * inb + (pos < lx[:, None]).sum(axis=1)

    @staticmethod
    def _nth(c: np.ndarray, share: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The pfn of the t-th page (from 0, ascending) of colour c."""
        if not (share & (share - 1)).any():
            inb = PQ_L2_SIZE // share
            blk = t // inb
            return pfn_of(blk, _lowest(c, share, blk) + t % inb * share)
        _, inb = _owned(c, share, t >> 62)      # (the count does not depend on the block)
        blk = t // inb
        pos, _ = _owned(c, share, blk)
        return pfn_of(blk, pos[np.arange(len(c)), t % inb])

    def page(self, c: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Page index of the rank-k page of colour queue c before the finalize."""
        # its range: the last with base <= k (key c << 40 | base, ascending per colour)
        row = np.searchsorted(self._rkey, (c << 40) | k, side="right") - 1
        r = row - c * len(self.r_i0)
        assert (k < self.base[r, c] + self.cnt[r, c]).all(), "finalize: a rank past its queue"
        share = self.r_share[r]
        top = self.r_i1[r] + self.first
        t = self._below(c, share, top) - (k - self.base[r, c]) - 1     # c-pages below it
        return self._nth(c, share, t) - self.first

    def moved(self, idx: np.ndarray, c: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Of free pages ``idx`` (colours ``c`` before): which moved (a bool mask) and,
        for those, their colour after and links (index + 1)."""
        k = self.rank(idx, c)
        mv = k < self.given[c]
        if not mv.any():
            z = np.zeros(0, dtype=np.int64)
            return mv, z, z, z
        g = self._g(c[mv], k[mv])
        j = np.searchsorted(self.rend, g, side="right")
        first, last = g == self.rstart[j], g + 1 == self.rend[j]
        # the neighbouring moves' pages: mostly among these pages (a block's moves are
        # consecutive runs), else computed
        order = np.argsort(g)
        gs, ps = g[order], idx[mv][order]

        def page_of(t: np.ndarray) -> np.ndarray:
            at = np.minimum(np.searchsorted(gs, t), len(gs) - 1)
            hit = gs[at] == t
            out = ps[at]
            if not hit.all():
                out[~hit] = self.page(*self._move(t[~hit]))
            return out

        nxt = self.ohead[j].copy()
        prv = np.zeros(len(g), dtype=np.int64)
        if (~first).any():
            nxt[~first] = page_of(g[~first] - 1) + 1
        if (~last).any():
            prv[~last] = page_of(g[~last] + 1) + 1
        return mv, self.recip[j], nxt, prv


# -- queue list operations (the caller holds the queue's spinlock, or its word is 0) ------
# They index PageArray's row arrays w4/w2/w1 (numpy arrays when compiled, 2-D memoryviews
# from Python) by row and page: a compiled call makes no views (each costs ~25 ns).
# Compiled for one signature (the rows, then int64s), as the bodies that call them
# (vm_page_core.py: typed functions run without numba's runtime, and so must their
# callees).
rows_fn = njit_typed(w4="uint32[:, ::1]", w2="uint16[:, ::1]", w1="uint8[:, ::1]",
                     pi="int64[::1]", ot="int64[:, ::1]", ob="int64[:, ::1]",
                     st="int64[::1]", rewrites=False)
# (pi: the pages' pindex; ot, ob: the objects' page table and rows, vm_object.py; st: the
# statistics, vm_meter.py)


@rows_fn
def q_insert(w4, w2, w1, q: int, i: int, athead: int) -> None:
    """_vm_page_add_queue's list work: link page ``i`` (materialised) into queue ``q`` at
    its head or tail.  Heads and tails are always materialised."""
    n = i + 1
    if athead:
        h = int(w4[R_HEAD, q])
        w4[R_NEXT, i] = h
        w4[R_PREV, i] = 0
        if h:
            w4[R_PREV, h - 1] = n
        else:
            w4[R_TAIL, q] = n
        w4[R_HEAD, q] = n
    else:
        t = int(w4[R_TAIL, q])
        w4[R_PREV, i] = t
        w4[R_NEXT, i] = 0
        if t:
            w4[R_NEXT, t - 1] = n
        else:
            w4[R_HEAD, q] = n
        w4[R_TAIL, q] = n
    w2[R_QUEUE, i] = q
    w4[R_LCNT, q] += 1
    w1[R_NONEMPTY, q] = 1


@rows_fn
def q_remove(w4, w2, w1, off: int, q: int, i: int) -> int:
    """_vm_page_rem_queue's list work: unlink page ``i`` from queue ``q``.  Returns 0, or
    ``-2 - k`` without changing anything when neighbour page k's block is implicit (the
    caller materialises it and calls again; ``off``: the implicit blocks' offset)."""
    nx = int(w4[R_NEXT, i])
    pv = int(w4[R_PREV, i])
    if pv and w1[R_IMPLICIT, (pv - 1 + off) >> 10]:
        return -1 - pv
    if nx and w1[R_IMPLICIT, (nx - 1 + off) >> 10]:
        return -1 - nx
    if pv:
        w4[R_NEXT, pv - 1] = nx
    else:
        w4[R_HEAD, q] = nx
    if nx:
        w4[R_PREV, nx - 1] = pv
    else:
        w4[R_TAIL, q] = pv
    w4[R_NEXT, i] = 0
    w4[R_PREV, i] = 0
    w2[R_QUEUE, i] = PQ_NONE
    c = int(w4[R_LCNT, q]) - 1
    w4[R_LCNT, q] = c
    if not c:
        w1[R_NONEMPTY, q] = 0
    return 0


# Python's way in to the queue operations: the plain functions (no numba import).
_insert_py = q_insert.py
_remove_py = q_remove.py


class Queues:
    """``vm_page_queues[PQ_COUNT]``: doubly linked lists through the page array's
    next/prev fields (index + 1, 0 = none), with ``lcnt`` and ``lastq`` per queue.

    Untouched free pages cost nothing: a 1024-page block (pfn >> 10) that boot left
    untouched is *implicit* (``implicit[block]`` = socket + 1): its pages' ``pc``,
    ``queue``, ``next`` and ``prev`` are not stored but given by the boot colour rule
    (:meth:`rule`), and are written (the block *materialised*) before anything reads or
    writes one of them.  Every reader of those fields gets its page from a queue method
    (which materialises what it returns or links to), from
    :meth:`~physmem.dragonfly.vm_page.DragonflyVm.page` or ``_check_page`` (which
    materialise), or reads all pages at once through :meth:`fields`.  A link changes only
    through a write to the page that holds it, so the blocks not yet materialised stay
    true to the rule; heads and tails are always in materialised blocks.

    On machines with more sockets than NUMA domains vm_numa_organize_finalize moves
    pages between colours (115 M of them at 1 TiB over 4 sockets): the blocks holding
    moved pages stay implicit too, flagged MOVED, their moved pages' fields given by the
    finalize's program (:class:`FinalizeMoves`, ``moves``) and the others' by the rule."""

    def __init__(self, pages: PageArray) -> None:
        self.pages = pages
        # heads, tails (index + 1, 0 = none), counts and lastq hints: int64 parts of the
        # page array's buffer, seen through memoryviews (compiled calls read them too)
        self.head = pages.head
        self.tail = pages.tail
        self.lcnt = pages.lcnt
        self.lastq = pages.lastq
        self.adds = pages.adds
        # 1 where a queue is non-empty: the colour search jumps over runs of empty
        # colours (find_nonempty) instead of probing them one by one.
        self.nonempty = pages.nonempty
        # The implicit blocks: block of page i = (i + off) >> 10; 0 = materialised (or
        # never implicit), s = implicit, its pages in socket s - 1's share of the colours.
        self.off = pages.implicit_off
        self.implicit_arr = pages.arrays["implicit"]
        self.implicit = pages.implicit
        self.share = PQ_L2_SIZE          # colours per socket (vm_numa_organize's share)
        self.moves: FinalizeMoves | None = None    # the finalize's moves (MOVED blocks)
        self._mlock = threading.Lock()   # materialisation (a leaf lock: nothing inside)

    # -- the implicit blocks ----------------------------------------------------------------
    def rule(self, idx: np.ndarray, state: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The boot layout of implicit pages ``idx`` (their blocks' states ``state``:
        socket + 1, | MOVED where the finalize's moves apply, see :class:`FinalizeMoves`):
        (``pc``, ``next``, ``prev``), links as index + 1.  The boot colour gives block b
        the pages of original colour o at low bits ``o ^ x(b)``, x(b) = (b ^ b >> 10) &
        1023; after vm_numa_organize the final colour is ``o % share + socket * share``,
        so final colour c owns the low bits ``(c % share + j * share) ^ x(b)`` for the
        j with ``c % share + j * share < 1024``, and a queue reads from the highest
        address down: ``next`` is the next lower of those in the block, else the highest
        in block b - 1; ``prev`` symmetrically (the neighbour blocks of an implicit
        block are whole free blocks of the same range and socket: boot guarantees it)."""
        first = self.pages.first_pfn
        share = self.share
        state = state.astype(np.int64)
        sock = (state & ~MOVED) - 1
        pfn = idx.astype(np.int64) + first
        b = pfn >> 10
        low = pfn & PQ_L2_MASK
        res = (low ^ ((b ^ (b >> 10)) & PQ_L2_MASK)) % share
        pc = (res + sock.astype(np.int64) * share).astype(np.uint16)
        if not share & (share - 1):
            nxt, prv = self._rule_pow2(b, low, res)
        else:
            nxt, prv = self._rule_any(b, low, res)
        nxt, prv = nxt - first + 1, prv - first + 1
        fl = np.flatnonzero(state & MOVED)
        if len(fl):
            # the finalize's moved pages: a recipient's colour, links along its moves
            mv, rc, n2, p2 = self.moves.moved(idx[fl].astype(np.int64),
                                              pc[fl].astype(np.int64))
            at = fl[mv]
            pc[at], nxt[at], prv[at] = rc, n2, p2
        return pc, nxt.astype(np.int32), prv.astype(np.int32)

    def _rule_pow2(self, b: np.ndarray, low: np.ndarray, res: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """rule()'s next/prev (pfns) when the share is a power of two (1, 2, 4 sockets):
        colour res owns the low bits ``(res ^ x(b) % share) + t * share``, t = 0 ..
        1024 / share - 1, evenly spaced (no search)."""
        share = self.share
        mask = share - 1

        def base(blk: np.ndarray) -> np.ndarray:      # the lowest owned low bits in blk
            return res ^ ((blk ^ (blk >> 10)) & mask)

        nxt = np.where(low >= share, pfn_of(b, low - share),
                       pfn_of(b - 1, base(b - 1) + (PQ_L2_SIZE - share)))
        prv = np.where(low + share < PQ_L2_SIZE, pfn_of(b, low + share),
                       pfn_of(b + 1, base(b + 1)))
        return nxt, prv

    def _rule_any(self, b: np.ndarray, low: np.ndarray, res: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """rule()'s next/prev (pfns) for any share (a search among the owned bits)."""
        share = self.share
        # the original colours res + j * share below 1024 (a share that does not divide
        # 1024, e.g. 3 sockets, gives some residues one more)
        orig = res[:, None] + share * np.arange(-(-PQ_L2_SIZE // share))
        there = orig < PQ_L2_SIZE

        def owned(blk: np.ndarray, missing: int) -> np.ndarray:   # the low bits in blk
            x = ((blk ^ (blk >> 10)) & PQ_L2_MASK)[:, None]
            return np.where(there, orig ^ x, missing)

        here = owned(b, -1)
        below = np.where(here < low[:, None], here, -1).max(axis=1)
        here = owned(b, PQ_L2_SIZE)
        above = np.where(here > low[:, None], here, PQ_L2_SIZE).min(axis=1)
        nxt = np.where(below >= 0, (b << 10) | below,
                       ((b - 1) << 10) | owned(b - 1, -1).max(axis=1))
        prv = np.where(above < PQ_L2_SIZE, (b << 10) | above,
                       ((b + 1) << 10) | owned(b + 1, PQ_L2_SIZE).min(axis=1))
        return nxt, prv

    def _block_pages(self, blocks: np.ndarray) -> np.ndarray:
        """The page indices of whole blocks ``blocks`` (block order, ascending within)."""
        return ((blocks.astype(np.int64) << 10) - self.off)[:, None] + \
            np.arange(PQ_L2_SIZE, dtype=np.int64)

    def materialise(self, i: int) -> None:
        """Write the rule's pc/queue/next/prev into page ``i``'s block if it is implicit
        (any thread, any locks held: the materialisation lock is a leaf).  The fields are
        written before the block is marked materialised, so a reader that sees the mark
        cleared sees them."""
        k = (i + self.off) >> 10
        with self._mlock:
            if self.implicit[k]:            # (else another thread did it meanwhile)
                self._write_rule(np.array([k]))

    def materialise_pages(self, idx: np.ndarray) -> None:
        """materialise() for every page of ``idx`` at once (boot: one numpy pass)."""
        ks = np.unique((np.asarray(idx, dtype=np.int64) + self.off) >> 10)
        with self._mlock:
            ks = ks[self.implicit_arr[ks] != 0]
            for c in range(0, len(ks), 1024):        # bounded temporaries
                self._write_rule(ks[c:c + 1024])

    def _write_rule(self, blocks: np.ndarray) -> None:
        """Write the rule's fields into the implicit ``blocks`` (ascending) and mark them
        materialised (the caller holds the materialisation lock)."""
        idx = self._block_pages(blocks).ravel()     # (implicit blocks are whole)
        pc, nxt, prv = self.rule(idx, np.repeat(self.implicit_arr[blocks], PQ_L2_SIZE))
        a = self.pages.arrays
        a["pc"][idx] = pc
        a["queue"][idx] = pc + PQ_FREE
        a["next"][idx] = nxt
        a["prev"][idx] = prv
        self.implicit_arr[blocks] = 0

    def materialise_all(self) -> None:
        """Materialise every implicit block (the explicit layout, as boot linked every
        page before the implicit representation)."""
        for k in np.flatnonzero(self.implicit_arr).tolist():
            self.materialise((k << 10) - self.off)

    def fields(self) -> dict[str, np.ndarray]:
        """Every field of the page array, implicit blocks included: the live arrays, and
        for ``pc``/``queue``/``next``/``prev`` copies with the implicit blocks filled by
        rule (read-only: nothing is materialised).  For INVARIANTS, digests, tests."""
        a = {name: self.pages.arrays[name] for name, _ in PageArray.FIELDS}
        blocks = np.flatnonzero(self.implicit_arr)
        if not len(blocks):
            return a
        for name in ("pc", "queue", "next", "prev"):
            a[name] = a[name].copy()
        for c in range(0, len(blocks), 1024):       # bounded temporaries
            blk = blocks[c:c + 1024]
            idx = self._block_pages(blk).ravel()
            pc, nxt, prv = self.rule(idx, np.repeat(self.implicit_arr[blk], PQ_L2_SIZE))
            a["pc"][idx] = pc
            a["queue"][idx] = pc + PQ_FREE
            a["next"][idx] = nxt
            a["prev"][idx] = prv
        return a

    # -- list operations (the caller holds the queue's spinlock) ---------------------------
    def insert(self, q: int, i: int, athead: bool) -> None:
        """Link page ``i`` (materialised: the caller got it from a queue method or a
        checked call) into queue ``q``; the old head/tail is materialised."""
        p = self.pages
        _insert_py(p.mw4, p.mw2, p.mw1, q, i, athead)

    def remove(self, q: int, i: int) -> None:
        """Unlink page ``i`` from queue ``q`` (its neighbours materialised first)."""
        p = self.pages
        while True:
            r = _remove_py(p.mw4, p.mw2, p.mw1, self.off, q, i)
            if not r:
                return
            self.materialise(-r - 2)

    def remove_head(self, q: int) -> int:
        """Unlink the head page of queue ``q`` and return its index (the queue is not
        empty; the caller holds the queue spinlock).  The allocation's queue operation."""
        m = self.head[q] - 1
        self.remove(q, m)
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
        return find_nonempty(self.nonempty, base, base + PQ_L2_SIZE) < 0

    def first(self, q: int) -> int | None:
        h = self.head[q]
        return h - 1 if h else None

    def iter(self, q: int):
        """The pages of queue ``q`` from the head, each materialised before it is
        yielded (the caller holds the queue's spinlock)."""
        p = self.pages
        imp, off = self.implicit, self.off
        n = self.head[q]
        while n:
            if imp[(n - 1 + off) >> 10]:
                self.materialise(n - 1)
            yield n - 1
            n = p.next[n - 1]

    def _link_runs(self, order: np.ndarray, queues: np.ndarray,
                   write: np.ndarray | None = None
                   ) -> tuple[list[int], list[int], list[int], list[int]]:
        """Group the pages ``order`` by their queues (a stable radix sort on the 16-bit
        keys, so each queue keeps the pages' order) and link each group through next/prev
        and ``queue``.  Returns, per group: its queue, the page index + 1 of its first and
        last page, and its length: the caller sets the heads, tails and counts.  With
        ``write`` (a bool per entry of ``order``) only those entries' fields are written
        (boot's order also holds pages of implicit blocks, linked but not stored).  The
        temporaries are the sort's permutation and two int32 arrays per page."""
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
        dest = order if write is None else order[write]

        def put(name: str, v: np.ndarray) -> None:
            arr[name][dest] = v if write is None else v[write]

        put("queue", keys)
        link = np.empty(n, dtype=np.int32)
        back = np.empty(n, dtype=np.int32)
        # next: the following entry + 1, 0 at a group's end; prev: the preceding one
        np.add(idx[1:], 1, out=link[:-1])
        link[-1] = 0
        link[bounds] = 0
        back[perm] = link
        put("next", back)
        np.add(idx[:-1], 1, out=link[1:])
        link[0] = 0
        link[bounds + 1] = 0
        back[perm] = link
        put("prev", back)
        del link, back, perm
        starts = np.concatenate([[0], bounds + 1])
        ends = np.concatenate([bounds, [n - 1]])
        return (qs[starts].tolist(), (idx[starts] + 1).tolist(), (idx[ends] + 1).tolist(),
                (ends - starts + 1).tolist())

    def build_boot(self, order: np.ndarray, queues: np.ndarray, write: np.ndarray,
                   implicit: np.ndarray, sockets: np.ndarray) -> None:
        """Bulk boot: the free queues as ``order`` (page indices, head first per queue;
        ``queues``: each entry's queue) links them, with the pages of the blocks
        ``implicit`` (their sockets ``sockets``) left implicit.  ``order`` holds every
        page of the materialised blocks and, of each stretch of implicit blocks, its
        first and last block (so the pages beside a stretch link into it by the rule);
        only the ``write`` entries (materialised blocks) are stored.  Each implicit block
        not in ``order`` adds its pages to the colours of its socket's share.
        The queues must be empty."""
        assert not any(self.lcnt.tolist()), "build_boot: queues not empty"
        if len(order):
            for q, first, last, n in zip(*self._link_runs(order, queues, write),
                                         strict=True):
                self.head[q] = first
                self.tail[q] = last
                self.lcnt[q] += n
                self.nonempty[q] = 1
        share = self.share
        self.implicit_arr[implicit] = (sockets + 1).astype(np.uint8)
        per = np.bincount(sockets[~np.isin(implicit, np.unique(
            (order[~write] + self.off) >> 10))], minlength=-(-PQ_L2_SIZE // share))
        in_block = np.bincount(np.arange(PQ_L2_SIZE) % share)   # pages per colour
        for s, nb in enumerate(per.tolist()):
            for r in range(share) if nb else ():
                c = PQ_FREE + s * share + r
                self.lcnt[c] += nb * int(in_block[r])
                self.nonempty[c] = 1

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

