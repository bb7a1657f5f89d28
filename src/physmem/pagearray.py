"""The page array: one ``struct vm_page`` entry per physical page (vm_page.c's vm_page_array).

Only the fields the free-page allocator reads and writes live here, packed into one 16-bit
word per page:

=======  =========================================================================
bits     field
=======  =========================================================================
0-1      ``pool``: the free pool the page belongs to (``VM_FREEPOOL_*``)
2        ``PG_INIT``: vm_page_init_page() has run on this entry
3        ``PG_PHYS_ALLOC``: vm_phys handed the page out and has not had it back
8-15     ``segind``: index of the page's vm_phys segment
=======  =========================================================================

A word of 0 means *never initialised*: the kernel would read garbage there, and
:meth:`PageArray.word` raises :class:`~physmem.errors.UninitializedPageError` instead.
``order`` and the free-queue links are not here: only free-block heads have them, and
they live in vm_phys's queue core, one node per head (see :mod:`physmem.freebsd.vm_phys`).

Layout, and why (figures: bench/RESULTS.md, ``make bench``, 2-core x86_64 box):

* **Structure of arrays in numpy, 2 bytes per page.** Boot and set_pool touch whole runs
  of pages: one numpy slice assignment initialises a 16 MiB chunk (4096 entries) in about
  1 us, where a Python loop takes about 300 us.
* **Scalar access through a memoryview.** The hot paths (free_pages, the buddy checks) read
  one entry at a time.  Indexing a memoryview of the numpy buffer costs ~22 ns and returns a
  plain ``int``; indexing the ndarray itself costs ~43 ns and returns a numpy scalar whose
  arithmetic is slower still (``python bench/micro_access.py``).
* **Zero-filled anonymous memory, so untouched pages cost nothing.**  The array is a
  private anonymous mapping (``mmap`` with ``MAP_NORESERVE`` where the OS has it): the
  operating system materialises a 4 KiB page of the array (2048 entries) only when it is
  written.  A 1 TiB machine (268 M pages) reserves 512 MiB of address space and uses only
  what boot and allocation initialise; an arm64 server whose second socket starts at
  0x4088_0000_0000 reserves 34 GB of address space and uses a few MiB.  Whole-array
  operations (counts, digests) walk only the segments' spans.
* **Lone entries in a dict.**  A lazy boot initialises one entry per free chunk (the chunk
  head) and the entry after each run.  Writing those into the dense array would
  materialise one OS page per 16 MiB chunk: 256 MiB for 1 TiB.  They go to ``lone``
  instead, a dict keyed by page frame number, and move to the dense array when their chunk
  is initialised as a whole (:meth:`init_range`).
* **Lazy runs: chunk heads by rule.**  Boot queues a lazy phys_avail range as consecutive
  16 MiB LAZYINIT chunks, and vm_phys_enq_chunk initialises the head of each next chunk:
  65,536 entries for 1 TiB.  vm_phys keeps such a run as one queue node
  (:mod:`physmem.freebsd.vm_phys`) and registers it here with :meth:`add_run`: the heads
  of its chunks after the first share one word and are answered by rule, not stored
  (``runs``; ``lone`` or the dense array, where they hold the entry, win).  A chunk head
  leaves the rule (becomes an ordinary lone entry) when vm_phys takes its chunk off the
  run.

Indexing: entry ``pfn - base_pfn``.  The array spans the lowest to the highest segment page
plus one spare entry (vm_phys_enq_chunk() initialises the page after a boot run, which may
lie just past the last segment).  On VM_PHYSSEG_SPARSE machines the kernel packs segments
together; physmem keeps physical indexing (holes cost address space only) and the
difference is invisible to vm_phys, which reaches pages by physical address.
"""

from __future__ import annotations

import itertools
import mmap
import sys
import weakref
from array import array
from bisect import bisect_right

import numpy as np

from .errors import InvariantError, UninitializedPageError

POOL_MASK = 0x3
PG_INIT = 0x4
PG_PHYS_ALLOC = 0x8
SEGIND_SHIFT = 8

# Reserve address space without committing memory (Python < 3.12 lacks the constant).
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)

# Python loops beat a numpy call below this many pages (numpy's per-call overhead is ~1 us).
SMALL_RUN = 16
# Runs up to this many pages are written and compared through memoryview slices of a
# cached run of one word (~0.2 us for any length; a Python loop costs ~30 ns a page and
# numpy ~0.3 us to write, ~1.6 us to compare: bench/RESULTS.md, issue 13).
SLICE_RUN = 1024
# Runs up to this many pages (a 16 MiB chunk) are *written* through memoryview slices:
# copying 8 KiB that way costs ~0.1 us, numpy's slice assignment ~0.4 us (the chunk
# initialised on first touch after a lazy boot, issue 13).
FILL_RUN = 4096
_runs: dict[int, memoryview] = {}


def _run_of(w: int) -> memoryview:
    """FILL_RUN entries of the word ``w``, as a memoryview to slice from (cached)."""
    r = _runs.get(w)
    if r is None:
        r = _runs[w] = memoryview(array("H", [w]) * FILL_RUN)
    return r


def zeros(n: int, dtype) -> np.ndarray:
    """A zero-filled array whose untouched pages cost no memory: large ones are private
    anonymous mappings reserved without commitment (``MAP_NORESERVE``)."""
    nbytes = n * np.dtype(dtype).itemsize
    if nbytes < 1 << 26:
        return np.zeros(n, dtype=dtype)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=flags), dtype=dtype)


# Generations of the run tables' changes (PageArray.run_cache); next() on it is atomic.
_RUN_GEN = itertools.count(1)


def make_word(segind: int, pool: int) -> int:
    """The word vm_page_init_page() leaves: initialised, free, in ``pool`` and ``segind``."""
    return (segind << SEGIND_SHIFT) | PG_INIT | pool


class PageArray:
    """Per-page ``struct vm_page`` fields for the pages ``[base_pfn, base_pfn + npages)``.

    Reading an entry that was never initialised raises
    :class:`~physmem.errors.UninitializedPageError`.
    """

    __slots__ = ("_map", "_more", "_ninit", "base_pfn", "boot_ranges", "lone", "mv", "npages",
                 "run_cache", "run_gen", "runs", "spans", "sync", "words")

    def __init__(self, base_pfn: int, npages: int,
                 spans: list[tuple[int, int]] | None = None) -> None:
        self.base_pfn = base_pfn
        self.npages = npages
        # The pfn ranges that hold pages (the segments); whole-array work visits only these.
        self.spans = spans if spans is not None else [(base_pfn, base_pfn + npages)]
        self.words = zeros(npages, np.uint16)
        self._map = None
        self.mv = memoryview(self.words)
        self.lone: dict[int, int] = {}
        self._ninit = 0  # vm_page_init_page() calls, for boot-cost accounting: see ninit
        self._more = memoryview(array("q", [0]))
        # Called before the readers below look at ``lone`` and ``runs`` (set by vm_phys:
        # its queue core may leave that bookkeeping of a lazy chunk's first touch for
        # later).  A weak reference, so that the owner is freed as soon as it is dropped.
        self.sync: weakref.WeakMethod | None = None
        # While vm_page_startup runs: the pfn ranges its init loop wrote densely (the only
        # dense entries then), so that boot asks them, not 65 k untouched OS pages, whether
        # a chunk head is dense.  None once boot is over.
        self.boot_ranges: list[tuple[int, int]] | None = []
        # Lazy runs (see the module docstring): first chunk head -> (chunks, step, word,
        # dense); the entries first + j * step for 0 < j < chunks hold ``word``, those in
        # ``dense`` (written densely by boot) in the dense array, the others by rule.
        # ``run_cache`` is (generation, sorted list of the keys), for bisection, valid while
        # ``run_gen`` is that generation: each change draws a new one from _RUN_GEN.  The
        # domains change their own runs under their own locks, so a lookup's rebuild may
        # race another domain's change: the list it stores then carries the generation read
        # before sorting, which that change has already replaced (no stale list is kept).
        self.runs: dict[int, tuple[int, int, int, frozenset[int]]] = {}
        self.run_gen = 0
        self.run_cache: tuple[int, list[int]] = (-1, [])

    @property
    def ninit(self) -> int:
        """vm_page_init_page() calls so far: Python's count plus the count the owner's
        compiled code keeps in its own array (:meth:`count_into`)."""
        return self._ninit + self._more[0]

    @ninit.setter
    def ninit(self, v: int) -> None:
        self._ninit = v - self._more[0]

    def _synced(self) -> None:
        """Let the owner bring ``lone`` and ``runs`` up to date (see ``sync``)."""
        f = self.sync() if self.sync is not None else None
        if f is not None:
            f()

    def count_into(self, more: memoryview) -> None:
        """Count initialisations made by compiled code in the one-word ``more`` (a view of
        its state array) from now on; the total so far is kept."""
        self._ninit += self._more[0]
        self._more = more
        self._ninit -= more[0]

    # -- reading ---------------------------------------------------------------------------
    def raw(self, pfn: int) -> int:
        """The entry's word, 0 if never initialised (no check)."""
        i = pfn - self.base_pfn
        if 0 <= i < self.npages:
            w = self.mv[i]
            if w:
                return w
        w = self.lone.get(pfn, 0)
        if w or not self.runs:
            return w
        r = self.runs.get(self.run_of(pfn))
        return r[2] if r is not None else 0

    def word(self, pfn: int) -> int:
        """The entry's word; raises UninitializedPageError if it was never initialised."""
        w = self.raw(pfn)
        if not w:
            raise UninitializedPageError(
                f"page {pfn << 12:#x}: reading a vm_page that was never initialised")
        return w

    def pool(self, pfn: int) -> int:
        return self.word(pfn) & POOL_MASK

    def segind(self, pfn: int) -> int:
        return self.word(pfn) >> SEGIND_SHIFT

    def is_init(self, pfn: int) -> bool:
        return self.raw(pfn) != 0

    def is_dense(self, pfn: int) -> bool:
        i = pfn - self.base_pfn
        return 0 <= i < self.npages and self.mv[i] != 0

    # -- lazy runs ----------------------------------------------------------------------------
    def run_of(self, pfn: int) -> int:
        """The first chunk head of the lazy run whose entries by rule include ``pfn``
        (``pfn`` is the head of one of its later chunks), or -1."""
        gen, starts = self.run_cache
        if gen != self.run_gen:     # rebuilt after a change: runs are few, changes cheap
            gen = self.run_gen
            starts = sorted(self.runs)
            self.run_cache = (gen, starts)
        i = bisect_right(starts, pfn) - 1
        if i < 0:
            return -1
        m0 = starts[i]
        # (``runs`` is shared by the domains and each changes its own runs under its own
        # lock: a list built before another domain's change may name a start that is
        # gone, never one of the caller's domain's runs -- runs are disjoint ranges.)
        r = self.runs.get(m0)
        if r is None:
            return -1
        n, step, _, _ = r
        d = pfn - m0
        return m0 if 0 < d < n * step and not d % step else -1

    def add_run(self, m0: int, nchunks: int, step: int, w: int,
                dense: frozenset[int] = frozenset()) -> None:
        """Register the run of ``nchunks`` chunks of ``step`` pages from ``m0``: the heads
        of its chunks after the first hold the word ``w``; ``dense`` holds those (and
        maybe others) whose entries boot wrote densely -- known, so that nobody reads an
        untouched page of the array (a page fault) to find out.  Requires: ``m0`` starts
        no other run; the first head's entry is stored (lone or dense)."""
        assert m0 not in self.runs and nchunks > 1
        self.runs[m0] = (nchunks, step, w, dense)
        self.run_gen = next(_RUN_GEN)

    def del_run(self, m0: int) -> tuple[int, int, int, frozenset[int]]:
        """Unregister the run from ``m0``; returns its (chunks, step, word, dense).  Entries that
        were answered by rule are no longer answered (the caller stores those it keeps)."""
        r = self.runs.pop(m0)
        self.run_gen = next(_RUN_GEN)
        return r

    def shift_run(self, m0: int, k: int = 1) -> int:
        """The run from ``m0`` loses its first ``k`` chunks: it starts at chunk ``k``, whose
        entry is stored (lone, unless it is dense); returns that chunk's head."""
        n, step, w, dense = self.runs.pop(m0)
        assert 0 < k < n
        r = m0 + k * step
        if n - k > 1:
            self.runs[r] = (n - k, step, w, dense)
        self.run_gen = next(_RUN_GEN)
        if r not in dense:
            self.lone[r] = w
        return r

    def run_entries(self) -> list[tuple[int, int]]:
        """(pfn, word) of every entry answered by a run's rule, in pfn order."""
        self._synced()
        out = []
        for m0, (n, step, w, dense) in sorted(self.runs.items()):
            out.extend((p, w) for p in range(m0 + step, m0 + n * step, step)
                       if p not in dense)
        return out

    def lone_items(self) -> list[tuple[int, int]]:
        """Every entry initialised outside the dense array (lone or by a run's rule), as
        sorted (pfn, word) pairs: what snapshots and digests record."""
        self._synced()
        return sorted(list(self.lone.items()) + self.run_entries())

    # -- vm_page_init_page -------------------------------------------------------------------
    def init_page(self, pfn: int, segind: int, pool: int) -> None:
        """vm_page_init_page() for one entry.

        An entry initialised on its own goes to the sparse ``lone`` store unless its dense
        slot is already materialised (see the module docstring)."""
        w = make_word(segind, pool)
        self._ninit += 1
        i = pfn - self.base_pfn
        if 0 <= i < self.npages and self.mv[i]:
            self.mv[i] = w
        else:
            self.lone[pfn] = w

    def init_range(self, pfn: int, npages: int, segind: int, pool: int,
                   scan_lone: bool = False, head_done: bool = False) -> None:
        """vm_page_init_page() for every entry of ``[pfn, pfn + npages)``, densely.

        A lone entry at ``pfn`` moves to the dense array.  Lone entries further into the
        run are looked for only with ``scan_lone`` (boot's gap loop): set_pool initialises
        a whole free chunk, whose only lone entry is its head (``head_done``: it was
        initialised before, so it is not counted again)."""
        if npages <= 0:
            return
        w = make_word(segind, pool)
        i = pfn - self.base_pfn
        if i < 0 or i + npages > self.npages:
            raise InvariantError(f"init_range {pfn:#x}+{npages} outside the page array")
        self._ninit += npages - head_done
        if scan_lone and self.boot_ranges is not None:
            self.boot_ranges.append((pfn, pfn + npages))
        lone = self.lone
        if lone:
            lone.pop(pfn, None)
            if scan_lone:
                for p in [p for p in lone if pfn <= p < pfn + npages]:
                    del lone[p]
        self.fill(i, npages, w)

    # -- field updates on initialised runs ---------------------------------------------------
    def set_pool_range(self, pfn: int, npages: int, pool: int) -> None:
        """Set ``pool`` on every entry of an initialised, dense run."""
        i = pfn - self.base_pfn
        if npages <= SMALL_RUN:
            mv = self.mv
            for j in range(i, i + npages):
                mv[j] = (mv[j] & ~POOL_MASK) | pool
        else:
            s = self.words[i:i + npages]
            s &= ~POOL_MASK & 0xFFFF
            s |= pool

    def set_alloc(self, pfn: int, npages: int) -> None:
        """Mark a run that vm_phys just handed out.  The pages of a free block share one
        word (segment, pool, initialised), so the run becomes that word | PG_PHYS_ALLOC."""
        i = pfn - self.base_pfn
        w = self.mv[i] | PG_PHYS_ALLOC
        self.fill(i, npages, w)

    def clear_alloc(self, pfn: int, npages: int) -> None:
        """Mark a run given back to vm_phys (an owned run: all its words are equal)."""
        i = pfn - self.base_pfn
        self.fill(i, npages, self.mv[i] & ~PG_PHYS_ALLOC)

    def fill(self, i: int, npages: int, w: int) -> None:
        """Set entries ``[i, i + npages)`` (array indices) to the word ``w``."""
        if npages == 1:
            self.mv[i] = w
        elif npages <= FILL_RUN:
            self.mv[i:i + npages] = _run_of(w)[:npages]
        else:
            self.words[i:i + npages] = w

    def first_unlike(self, pfn: int, npages: int, w: int) -> int | None:
        """The first page of ``[pfn, pfn + npages)`` whose word is not ``w``, or None.
        The run must lie inside the array."""
        i = pfn - self.base_pfn
        if npages <= SLICE_RUN:
            mv = self.mv
            if mv[i:i + npages] == _run_of(w)[:npages]:
                return None
            for j in range(i, i + npages):
                if mv[j] != w:
                    return self.base_pfn + j
        bad = np.flatnonzero(self.words[i:i + npages] != w)
        return None if bad.size == 0 else pfn + int(bad[0])

    def span_words(self):
        """(first pfn, words) for each span, as numpy views."""
        for s, e in self.spans:
            yield s, self.words[s - self.base_pfn:e - self.base_pfn]

    def allocated_count(self) -> int:
        return sum(int(np.count_nonzero(w & PG_PHYS_ALLOC)) for _, w in self.span_words())

    def initialized_count(self) -> int:
        """Entries initialised, densely or alone (entries outside the spans included)."""
        self._synced()
        return sum(int(np.count_nonzero(w)) for _, w in self.span_words()) + sum(
            1 for p in self.lone if not self.is_dense(p)) + len(self.run_entries())

    def dense_bytes(self) -> int:
        """Bytes of the dense array in OS pages that hold an initialised entry: what the
        array costs in resident memory."""
        per = 4096 // self.words.itemsize
        total = 0
        for s, w in self.span_words():
            if not len(w):
                continue
            # Align the blocks to the array's own 4 KiB boundaries.
            off = (s - self.base_pfn) % per
            idx = np.arange(0, len(w) + off, per) - off
            idx[0] = 0
            total += int(np.count_nonzero(np.add.reduceat(w != 0, idx)))
        return total * 4096

