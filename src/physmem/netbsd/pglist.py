"""NetBSD's answer instead of seed 002's extent: ``uvm_pglistalloc`` (sys/uvm/uvm_pglist.c
rev 1.90), on physmem's machine model.

It scans the physical page array for free pages -- NetBSD keeps a ``PG_FREE`` flag per page;
here :class:`FreeBitmap`, a numpy bitmap kept by vm_phys's queue primitives, plays that part
-- and takes the pages it chose off the free lists.  Two paths, as in the kernel:

* **contig** (``nsegs < npages`` or an alignment or boundary constraint): per segment, one
  run of ``npages`` free pages from the segment's start hint upward, wrapping once; a run
  crossing a ``boundary`` line moves to the line (re-aligned), a non-free page moves the
  candidate past it (keeping the pages already known free);
* **simple** (otherwise): every free page from the start hint upward, wrapping once, until
  ``npages`` are collected, from as many segments as needed.

Segments are visited by free list (``VM_FREELIST_*`` id order), then by address; each keeps
its ``start_hint``.  Alignment and boundary count from physical address 0.  ``high`` is
exclusive.  Returns 0 and the pages, ``EINVAL`` (boundary below the size, or no segment in
``[low, high)``) or ``ENOMEM``.  Not modelled: the page-daemon reserves and the ``waitok``
paths (the model has no page daemon at this layer), per-CPU caches.
"""

from __future__ import annotations

import numpy as np

from ..bits import PAGE_SHIFT, roundup2
from ..freebsd.vm_phys import Seg, VmPhys
from .extent import EINVAL, ENOMEM


class FreeBitmap:
    """One bool per page of the page array: the page is on a free queue (NetBSD's PG_FREE).
    Kept by vm_phys's queue primitives through the ``on_add``/``on_rem`` observers."""

    def __init__(self, phys: VmPhys) -> None:
        self.phys = phys
        self.base = phys.pages.base_pfn
        self.bits = np.zeros(phys.pages.npages, dtype=bool)
        for _d, _f, _p, order, m in phys.free_blocks():
            self._on_add(m, 1 << order)
        phys.observe(self._on_add, self._on_rem)

    def _on_add(self, m: int, npages: int) -> None:
        i = m - self.base
        self.bits[i:i + npages] = True

    def _on_rem(self, m: int, npages: int) -> None:
        i = m - self.base
        self.bits[i:i + npages] = False

    def detach(self) -> None:
        self.phys.unobserve(self._on_add, self._on_rem)

    def is_free(self, m: int) -> bool:
        return bool(self.bits[m - self.base])


class PgList:
    """uvm_pglistalloc / uvm_pglistfree over a booted vm_phys."""

    def __init__(self, phys: VmPhys) -> None:
        self.phys = phys
        self.free = FreeBitmap(phys)
        self.start_hint: dict[int, int] = {}   # per segment index, pages from its start

    def _segments(self) -> list[tuple[int, Seg]]:
        """Segments in the order uvm_pglistalloc visits them."""
        out = []
        seen = set()
        for freelist in range(self.phys.NFL):
            flind = self.phys.flind_of[freelist] if freelist < len(self.phys.flind_of) else -1
            if flind < 0 or flind in seen:
                continue
            seen.add(flind)
            out.extend((i, s) for i, s in enumerate(self.phys.segs) if s.flind == flind)
        return out

    def alloc(self, size: int, low: int, high: int, alignment: int, boundary: int,
              nsegs: int) -> tuple[int, list[int]]:
        """uvm_pglistalloc(size bytes, low, high, alignment, boundary, nsegs, waitok=0):
        (0, pages) or (errno, [])."""
        page = 1 << PAGE_SHIFT
        alignment = max(alignment, page)
        num = (size + page - 1) >> PAGE_SHIFT
        if boundary and boundary < size:
            return EINVAL, []
        low = roundup2(low, alignment)
        lo_pfn, hi_pfn = low >> PAGE_SHIFT, high >> PAGE_SHIFT
        segs = [(i, s) for i, s in self._segments() if s.spfn < hi_pfn and s.epfn > lo_pfn]
        if not segs:
            return EINVAL, []
        if nsegs < num or alignment != page or boundary != 0:
            for i, s in segs:
                run = self._contig(i, s, num, lo_pfn, hi_pfn, alignment >> PAGE_SHIFT,
                                   boundary >> PAGE_SHIFT)
                if run is not None:
                    self.phys.take_free_run(run, num)
                    return 0, list(range(run, run + num))
            return ENOMEM, []
        taken: list[int] = []
        for i, s in segs:
            taken.extend(self._simple(i, s, num - len(taken), lo_pfn, hi_pfn))
            if len(taken) == num:
                break
        if len(taken) < num:
            return ENOMEM, []
        for start, n in _runs(taken):
            self.phys.take_free_run(start, n)
        return 0, taken

    def _contig(self, segind: int, seg: Seg, num: int, low: int, high: int, align: int,
                boundary: int) -> int | None:
        bits, base = self.free.bits, self.free.base
        hint = self.start_hint.get(segind, 0)
        avail_start, avail_end = seg.spfn, seg.epfn
        candidate = roundup2(max(low, avail_start + hint), align)
        limit = min(high, avail_end)
        pagemask = ~(boundary - 1) if boundary else 0
        skip = 0
        second_pass = False
        while True:
            if candidate + num > limit:
                if hint == 0 or second_pass:
                    return None
                second_pass = True
                candidate = roundup2(max(low, avail_start), align)
                limit = min(limit, avail_start + hint)
                skip = 0
                continue
            if boundary and (candidate ^ (candidate + num - 1)) & pagemask:
                candidate = roundup2((candidate + num - 1) & pagemask, align)
                skip = 0
                continue
            window = bits[candidate + skip - base:candidate + num - base]
            busy = np.flatnonzero(~window)
            if busy.size:
                i = candidate + skip + int(busy[-1])      # the last non-free page
                advance = roundup2(i + 1 - candidate, align)
                skip = max(num - advance, 0)
                candidate += advance
                continue
            self.start_hint[segind] = candidate + num - avail_start
            return candidate

    def _simple(self, segind: int, seg: Seg, want: int, low: int, high: int) -> list[int]:
        bits, base = self.free.bits, self.free.base
        hint = self.start_hint.get(segind, 0)
        avail_start, avail_end = seg.spfn, seg.epfn
        out: list[int] = []
        start = max(low, avail_start + hint)
        end = min(high, avail_end)
        for lo, hi in ((start, end), (max(low, avail_start), min(end, avail_start + hint))):
            if hi <= lo or len(out) >= want:
                continue
            idx = np.flatnonzero(bits[lo - base:hi - base])[:want - len(out)]
            out.extend((idx + lo).tolist())
            last = out[-1] + 1 if out else hi
            self.start_hint[segind] = last - avail_start
        return out


def _runs(pfns: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs (start, count) of a list of page numbers."""
    out: list[tuple[int, int]] = []
    for p in sorted(pfns):
        if out and out[-1][0] + out[-1][1] == p:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((p, 1))
    return out
