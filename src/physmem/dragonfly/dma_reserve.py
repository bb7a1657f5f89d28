"""DragonFly BSD's DMA reserve (sys/vm/vm_page.c, vm_contig.c), grafted onto physmem's
FreeBSD allocator.

At boot DragonFly keeps the low pages -- below ``vm_low_phys_reserved`` = 65536 pages
(256 MiB), at most a quarter of memory -- out of the free queues and gives them to an alist
(:class:`~physmem.dragonfly.alist.Alist`, indexed by PFN).  ``vm_page_startup_finish`` then
hands the excess over ``vm.dma_reserved`` (bytes; default 128 MiB, at most 1/16 of memory)
back to the free queues, from the top down: while the alist has more free blocks than the
reserve, take the trailing free chunk it reports, trim it to the excess, round its length
down to a power of two keeping its top end, allocate exactly that from the alist and free
its pages normally; the reserve line moves down to its start.  It prints
``DMA space used: <k>k, remaining available: <k>k``.

Contiguous allocations try the reserve first (``vm_page_alloc_contig``: ``alist_alloc(0,
n)``, failing if the run ends above ``high``; ``low``, alignment and boundary are not
checked, as in DragonFly) and fall back to the buddy allocator.  Freeing pages below the
reserve line returns them to the alist.

Here the reserve's pages are taken off vm_phys's queues after FreeBSD's boot loop has put
them there (:meth:`~physmem.freebsd.vm_phys.VmPhys.take_free_run`), and stay marked
allocated in the page array while the reserve holds them, so vm_phys's INVARIANTS (nothing
lost, nothing on two lists) keep holding.  Only pages that were free at boot enter the
reserve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..bits import PAGE_SHIFT
from ..errors import ArgumentError, DoubleFreeError, InvariantError
from ..pagearray import PG_PHYS_ALLOC
from .alist import ALIST_BLOCK_NONE, Alist

if TYPE_CHECKING:
    from ..kernel import Kernel

LOW_PHYS_RESERVED = 65536            # pages, 256 MiB
DEFAULT_DMA_RESERVED = 128 << 20     # bytes


class DmaReserve:
    """The DMA reserve of a booted kernel (created by boot with ``vm.dma_reserved``)."""

    def __init__(self, k: Kernel, dma_reserved: int | None) -> None:
        phys = k.phys
        self.k = k
        total = sum(s.epfn - s.spfn for s in phys.segs)
        # pa < total_bytes / 4 per page (vm_add_new_page): a partial page counts.
        self.low_phys_reserved = min(LOW_PHYS_RESERVED, -(-total // 4))
        want = DEFAULT_DMA_RESERVED if dma_reserved is None else dma_reserved
        self.dma_reserved = min(want, (total << PAGE_SHIFT) // 16)
        self.alist = Alist(LOW_PHYS_RESERVED)
        self.dma_pages = 0                         # v_dma_pages
        self.handed_out: dict[int, int] = {}       # first pfn -> npages, from the reserve
        self.messages: list[str] = []
        self._carve()
        self._startup_finish()

    # -- boot ------------------------------------------------------------------------------
    def _free_runs_below(self, limit: int) -> list[tuple[int, int]]:
        spans = sorted((m, min(m + (1 << o), limit))
                       for _d, _f, _p, o, m in self.k.phys.free_blocks() if m < limit)
        runs: list[tuple[int, int]] = []
        for s, e in spans:
            if runs and runs[-1][1] == s and self.k.phys.paddr_to_seg(s << PAGE_SHIFT) is \
                    self.k.phys.paddr_to_seg((s - 1) << PAGE_SHIFT):
                runs[-1] = (runs[-1][0], e)
            else:
                runs.append((s, e))
        return runs

    def _carve(self) -> None:
        """vm_page_startup: every free page below the reserve line goes to the alist."""
        k, phys = self.k, self.k.phys
        for s, e in self._free_runs_below(self.low_phys_reserved):
            seg = phys.paddr_to_seg(s << PAGE_SHIFT)
            assert seg is not None
            with phys.domain_locks[seg.domain]:
                phys.take_free_run(s, e - s)
                phys.pages.set_alloc(s, e - s)
                k.free_counts[seg.domain] -= e - s
            self.alist.free(s, e - s)
            self.dma_pages += e - s

    def _startup_finish(self) -> None:
        """vm_page_startup_finish: give back the excess over vm.dma_reserved, top down."""
        reserved = self.dma_reserved >> PAGE_SHIFT
        while True:
            bfree, start, count = self.alist.free_info()
            if bfree <= reserved or count == 0:
                break
            n = min(count, bfree - reserved)
            n = 1 << (n.bit_length() - 1)
            start = start + count - n
            blk = self.alist.alloc(start, n)
            if blk != start:
                if blk != ALIST_BLOCK_NONE:
                    self.alist.free(blk, n)
                self.messages.append(f"vm_page_startup_finish: Unable to return dma space "
                                     f"@{start << PAGE_SHIFT:#x}")
                break
            self.dma_pages -= n
            self.low_phys_reserved = start
            self._give_back(start, n)
        used = self.dma_pages << (PAGE_SHIFT - 10)
        avail = self.alist.bfree << (PAGE_SHIFT - 10)
        self.messages.append(f"DMA space used: {used}k, remaining available: {avail}k")

    def _give_back(self, start: int, n: int) -> None:
        """Free reserve pages into vm_phys, one segment piece at a time."""
        k, phys = self.k, self.k.phys
        m = start
        while m < start + n:
            seg = phys.paddr_to_seg(m << PAGE_SHIFT)
            assert seg is not None, "reserve page outside every segment"
            end = min(start + n, seg.epfn)
            with phys.domain_locks[seg.domain]:
                phys.pages.clear_alloc(m, end - m)
                phys.free_contig(m, end - m)
                k.free_counts[seg.domain] += end - m
            m = end

    # -- allocation --------------------------------------------------------------------------
    def alloc_contig(self, npages: int, high: int) -> int | None:
        """vm_page_alloc_contig(): ``npages`` from the reserve, or None (none free, or the run
        would end above ``high``; 0 means no limit)."""
        blk = self.alist.alloc_below(npages, (high >> PAGE_SHIFT) if high else None)
        if blk == ALIST_BLOCK_NONE:
            return None
        self.handed_out[blk] = npages
        return blk

    def owns(self, m: int, npages: int) -> bool:
        """Whether ``[m, m + npages)`` lies below the reserve line (vm_page_free_contig's
        test), i.e. goes back to the alist when freed."""
        return m + npages <= LOW_PHYS_RESERVED and m < self.low_phys_reserved

    def free_contig(self, m: int, npages: int) -> None:
        """vm_page_free_contig() below the reserve line: back to the alist."""
        held = self.alist.free_map[m:m + npages]
        if held.any() or not self._handed(m, npages):
            raise DoubleFreeError(f"DMA reserve: {m << PAGE_SHIFT:#x} + {npages} pages was "
                                  "not handed out by the reserve")
        self.alist.free(m, npages)
        self._unhand(m, npages)

    def _handed(self, m: int, npages: int) -> bool:
        covered = np.zeros(npages, dtype=bool)
        for s, n in self.handed_out.items():
            a, b = max(s, m), min(s + n, m + npages)
            if a < b:
                covered[a - m:b - m] = True
        return bool(covered.all())

    def _unhand(self, m: int, npages: int) -> None:
        for s, n in list(self.handed_out.items()):
            a, b = max(s, m), min(s + n, m + npages)
            if a >= b:
                continue
            del self.handed_out[s]
            if s < a:
                self.handed_out[s] = a - s
            if b < s + n:
                self.handed_out[b] = s + n - b

    # -- views ---------------------------------------------------------------------------------
    def sysctl(self, name: str) -> str:
        if name == "vm.dma_reserved":
            return str(self.dma_reserved)
        if name == "vm.dma_free_pages":
            return str(self.alist.bfree)
        raise ArgumentError(f"unknown oid {name!r}")

    def check(self) -> None:
        """Reserve pages are marked allocated in the page array and on no free queue; the
        alist's free blocks lie below the reserve limit."""
        pages = self.k.phys.pages
        free = np.flatnonzero(self.alist.free_map)
        for m in free[:4096].tolist():
            if not pages.raw(m) & PG_PHYS_ALLOC:
                raise InvariantError(f"DMA reserve page {m << PAGE_SHIFT:#x} is not held")
            if self.k.phys.free_block_of(m) is not None:
                raise InvariantError(f"DMA reserve page {m << PAGE_SHIFT:#x} is on a free "
                                     "queue too")
