"""Seed 002's proposal: an extent map of free pages kept consistent with the free lists.

Jason Thorpe's tech-kern mail of March 1997 proposed keeping, beside the free list, an
extent(9) map of physical memory, so that constrained requests ("16 KiB contiguous, aligned
to 8 KiB, not crossing a 64 KiB line, below 16 MiB") could be answered by
``extent_alloc_subregion``.  As in his diff, the extent's *regions* are the space that is
not free: at creation the whole physical range is allocated with ``extent_alloc_region``,
and every block put on a free queue is ``extent_free``\\ d (it becomes a hole), every block
taken off is ``extent_alloc_region``\\ ed again.  Here vm_phys's queue primitives count
(and, where needed, log) each change, and the ``on_add`` / ``on_rem`` observers get each
call's net change: the block a Kernel fast path took or freed, or the call's log (netted
when compiled).  The extent's regions are coalesced, so that leaves them as one operation
per queue change would, and every enqueue, split, merge, allocation and free keeps the two
in step; :meth:`FreePageExtent.check` verifies that the holes are exactly the union of the
free blocks.

:meth:`FreePageExtent.alloc_constrained` is the allocator the mail calls the "Way Cool
Allocator", never written in 1997: ``extent_alloc_subregion`` over each segment's part of
``[low, high)`` finds the run, then exactly those pages come off the buddy lists
(:meth:`~physmem.freebsd.vm_phys.VmPhys.take_free_run`).
"""

from __future__ import annotations

import threading

from ..bits import PAGE_SHIFT
from ..errors import InvariantError
from ..freebsd.vm_phys import VmPhys
from .extent import EAGAIN, EX_FAST, Extent


class FreePageExtent:
    """An extent over physical memory whose holes are the free pages of ``phys``."""

    def __init__(self, phys: VmPhys, fast: bool = False) -> None:
        self.phys = phys
        top = max(s.end for s in phys.segs)
        self.ex = Extent("vm_page", 0, top - 1)
        rc = self.ex.alloc_region(0, top)
        assert rc == 0
        self.flags = EX_FAST if fast else 0
        # One extent covers every domain, but vm_phys's callers hold only their domain's
        # free lock: with several domains the extent needs its own (taken inside the domain
        # lock, never around one); with one, the domain lock covers it.  alloc_constrained
        # runs with every domain lock held, so no observer can run meanwhile.
        self.lock = threading.Lock()
        self.locked = phys.ndomains > 1
        self.attached = False
        self._counts0 = (0, 0)      # counts()
        self._observers = self._make_observers()
        self.attach()

    # -- keeping in step --------------------------------------------------------------------
    # vm_phys's observers get runs of pages that joined (on_add) or left (on_rem) the free
    # set: a queued or dequeued block, or the net change of one call -- the block a
    # Kernel fast path took or freed (VmPhys.net_add / net_rem), or a log netted by
    # VmPhys._flush.  The extent's regions are coalesced, so they depend only on the free
    # set: one extent operation per net run leaves them as one per queue change would.
    def _make_observers(self) -> tuple:
        """vm_phys's observers, made once (detach removes these very functions): each run
        of pages that joined the free set is one extent_free, each that left it one
        extent_alloc_region.  Closures over the bound extent methods, one Python frame
        each: they run on every allocation and free (~0.05 us a frame and an attribute
        lookup, ~5 % of a pair).  With several domains they take the mirror's lock."""
        free, alloc = self.ex._free, self.ex._alloc_region
        lock = self.lock

        def fail(added: bool, m: int, rc: int) -> None:
            op = "extent_free" if added else "extent_alloc_region"
            raise InvariantError(f"extent mirror: {op} of {m << PAGE_SHIFT:#x} -> {rc}")

        if self.locked:
            def on_add(m: int, npages: int) -> None:
                with lock:
                    rc = free(m << PAGE_SHIFT, npages << PAGE_SHIFT, 0)
                if rc:
                    fail(True, m, rc)

            def on_rem(m: int, npages: int) -> None:
                with lock:
                    rc = alloc(m << PAGE_SHIFT, npages << PAGE_SHIFT, 0)
                if rc:
                    fail(False, m, rc)
        else:
            def on_add(m: int, npages: int) -> None:
                rc = free(m << PAGE_SHIFT, npages << PAGE_SHIFT, 0)
                if rc:
                    fail(True, m, rc)

            def on_rem(m: int, npages: int) -> None:
                rc = alloc(m << PAGE_SHIFT, npages << PAGE_SHIFT, 0)
                if rc:
                    fail(False, m, rc)
        return on_add, on_rem

    def attach(self) -> None:
        """Start mirroring: every block now free becomes a hole, and from now on the queue
        primitives report each change."""
        if self.attached:
            return
        on_add = self._observers[0]
        for _d, _f, _p, order, m in self.phys.free_blocks():
            on_add(m, 1 << order)
        self.attach_observers_only()
        self.reset_counts()

    def reset_counts(self) -> None:
        """Start :meth:`counts` from zero."""
        self._counts0 = self.phys.queue_counts()

    def counts(self) -> dict[str, int]:
        """Since the mirror attached (or :meth:`reset_counts`): the queue changes vm_phys
        made (each enqueue or dequeue of a block: seed 002's one extent operation each)
        and the extent operations the mirror applied for them (one per net run of a call:
        VmPhys.net_add / net_rem, VmPhys._flush).  The constrained allocator's own work is
        in neither.  Requires: no other thread changing the queues."""
        changes, runs = self.phys.queue_counts()
        return {"queue_changes": changes - self._counts0[0],
                "extent_ops": runs - self._counts0[1]}

    def detach(self) -> None:
        """Stop mirroring (the extent keeps what it holds)."""
        if self.attached:
            self.phys.unobserve(*self._observers)
            self.attached = False

    def attach_observers_only(self) -> None:
        """Resume mirroring after a change the extent already holds (no re-scan)."""
        self.phys.observe(*self._observers)
        self.attached = True

    # -- the constrained allocator ----------------------------------------------------------
    def alloc_constrained(self, npages: int, low: int, high: int, alignment: int,
                          boundary: int, domain: int | None = None) -> int | None:
        """``npages`` free pages in one segment within ``[low, high)``, aligned to
        ``alignment`` bytes, not crossing a multiple of ``boundary`` (0: none); the first
        page's pfn, or None.  Segments are tried in address order; within one the extent's
        best fit (or first fit, ``fast``) picks the run.  Boundary lines count from
        address 0 (``EX_BOUNDZERO``).  Requires: the free locks."""
        phys = self.phys
        size = npages << PAGE_SHIFT
        for seg in phys.segs:
            if domain is not None and seg.domain != domain:
                continue
            lo, hi = max(low, seg.start), min(high, seg.end)
            if hi - lo < size:
                continue
            from .extent import EX_BOUNDZERO
            rc, start = self.ex.alloc_subregion(lo, hi - 1, size, max(alignment, 1), 0,
                                                boundary, self.flags | EX_BOUNDZERO)
            if rc == EAGAIN:
                continue
            if rc:
                raise InvariantError(f"extent mirror: alloc_subregion -> {rc}")
            # The extent already holds the run; take it off the buddy lists without the
            # observers (the leftovers of the blocks it cuts stay holes).
            self.detach()
            others = bool(phys.on_add)          # (pglist's changes are counted, not ours)
            c0 = phys.queue_counts() if others else (0, 0)
            try:
                phys.take_free_run(start >> PAGE_SHIFT, npages)
            finally:
                self.attach_observers_only()
                if others:
                    c1 = phys.queue_counts()
                    self._counts0 = (self._counts0[0] + c1[0] - c0[0],
                                     self._counts0[1] + c1[1] - c0[1])
            return start >> PAGE_SHIFT
        return None

    # -- INVARIANTS ---------------------------------------------------------------------------
    def holes(self) -> list[tuple[int, int]]:
        """The extent's free space as [start, end) byte ranges."""
        out = []
        pos = self.ex.start
        for s, e in self.ex.allocated():
            if s > pos:
                out.append((pos, s))
            pos = e + 1
        if pos <= self.ex.end:
            out.append((pos, self.ex.end + 1))
        return out

    def check(self) -> None:
        """The extent's holes are exactly the union of vm_phys's free blocks."""
        self.ex.check()
        spans = sorted((m << PAGE_SHIFT, (m + (1 << o)) << PAGE_SHIFT)
                       for _d, _f, _p, o, m in self.phys.free_blocks())
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        holes = self.holes()
        if holes != merged:
            diff = next((i for i, (a, b) in enumerate(zip(holes, merged, strict=False))
                         if a != b), min(len(holes), len(merged)))
            raise InvariantError(f"extent mirror disagrees with the free lists: "
                                 f"{len(holes)} holes, {len(merged)} free runs; first "
                                 f"difference at #{diff}: "
                                 f"{holes[diff:diff + 1]} vs {merged[diff:diff + 1]}")
