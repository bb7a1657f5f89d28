"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

Boot: vm_page_startup (the page array, the colour queues, the DMA reserve),
vm_numa_organize and its finalize, vm_page_startup_finish (the reserve's excess returned,
the page hash sized).
"""

from __future__ import annotations

import numpy as np

from ..bits import PAGE_SHIFT, PAGE_SIZE, round_page
from ..pagearray import zeros
from .alist import ALIST_BLOCK_NONE, Alist
from .vm_meter import CNT_TFREE, V_FREE_COUNT, V_WIRE_COUNT
from .vm_object import PageHash
from .vm_page_array import (
    MOVED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PG_WRITEABLE,
    PQ_FREE,
    PQ_INACTIVE,
    PQ_L2_MASK,
    PQ_L2_SIZE,
    FinalizeMoves,
    boot_color,
)
from .vm_page_defs import (
    DEFAULT_DMA_RESERVED,
    LOW_PHYS_RESERVED,
    SIZEOF_VM_PAGE,
)


class BootMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # Boot: vm_page_startup, vm_numa_organize, vm_page_startup_finish
    # ======================================================================================
    def _startup(self, avail: list[tuple[int, int]], dma_reserved: int | None) -> None:
        """vm_page_startup: carve the minidump bitmap and the page array from the top of
        the largest phys_avail range, reserve low memory for DMA, add every other page in
        ascending order at the head of PQ_FREE + pc; then vm_numa_organize per NUMA
        range and vm_numa_organize_finalize on multi-socket machines."""
        p = self.pages
        self._numa_spans: list[tuple[int, int, int]] = []
        avail = [(s, e) for s, e in sorted(avail) if e > s]
        total = sum(e - s for s, e in avail)
        if self.source == "buddy":
            runs = [(s >> PAGE_SHIFT, e >> PAGE_SHIFT) for s, e in avail]
        else:
            runs = self._carve(avail, total)
        # Page-array indices of the pages added (int32 up to 8 TiB of pages); the colour
        # is computed and stored run by run (no full-size pfn/colour temporaries).  Which
        # entries are no page (phys_avail's holes, the carved top) is a zero-filled
        # uint8 map with 1 in the holes, read per call through a memoryview: the pages
        # stay 0, so the map costs memory only where there are holes (a bytearray of
        # every page was 256 MiB at 1 TiB).
        it = np.int32 if self.first_pfn + p.npages < 1 << 31 else np.int64
        pcs = p.arrays["pc"]
        unmanaged = zeros(p.npages, np.uint8)
        assert all(self.first_pfn <= s <= e <= self.first_pfn + p.npages for s, e in runs)
        end = self.first_pfn
        for s, e in runs:
            unmanaged[end - self.first_pfn:s - self.first_pfn] = 1
            end = e
            if self.source == "buddy":            # (the DragonFly source: below, only
                for c in range(s, e, _CHUNK):     # where blocks are materialised)
                    i0, i1 = c - self.first_pfn, min(c + _CHUNK, e) - self.first_pfn
                    pcs[i0:i1] = boot_color(np.arange(c, c + i1 - i0, dtype=it))
        unmanaged[end - self.first_pfn:] = 1
        self.unmanaged = memoryview(unmanaged)
        self.vmstats.v_page_count = sum(e - s for s, e in runs)
        if self.source == "buddy":
            from ..kernel import Kernel
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
            # The runs as page-array index ranges, split at vm_low_phys_reserved: the
            # reserve below (at most 65536 pages), the free pages above (ascending).
            cut = self.low_phys_reserved - self.first_pfn
            spans = [(s - self.first_pfn, e - self.first_pfn) for s, e in runs]
            reserve = np.concatenate([np.arange(i0, min(i1, cut), dtype=it)
                                      for i0, i1 in spans if i0 < cut] or
                                     [np.zeros(0, dtype=it)])
            free = [(max(i0, cut), i1) for i0, i1 in spans if i1 > cut]
            nfree = sum(i1 - i0 for i0, i1 in free)
            t = self.topology
            numa = t.sockets > 1 and t.cores > 0
            if numa:
                # vm_numa_organize runs after the queues are built; its head inserts in
                # ascending address order rebuild each queue from the highest address
                # down, so the colours are decided first and the queues built once.
                ranges, self._numa_spans = self._numa_organize(avail, free)
                self.queues.share = PQ_L2_SIZE // t.sockets
                moves = self._finalize_moves(ranges, self._colour_counts(ranges))
            else:
                # vm_add_new_page: ascending order, each at the HEAD of PQ_FREE + pc, so
                # a queue reads from the highest address down.
                ranges, self._numa_spans = [(i0, i1, 0) for i0, i1 in free[::-1]], []
                moves = None
            self._build_free_queues(ranges, moves)
            self.vmstats.v_free_count = nfree
            # The DMA reserve: never queued, wired, fictitious, in the alist.
            self.dma_alist = Alist(LOW_PHYS_RESERVED)
            if len(reserve):
                p.arrays["flags"][reserve] = PG_FICTITIOUS | PG_UNQUEUED
                p.arrays["wire_count"][reserve] = 1
                for s, e in _runs(reserve + self.first_pfn):
                    self.dma_alist.free(s, e - s)
                self.vmstats.v_wire_count += len(reserve)
                self.vmstats.v_dma_pages = len(reserve)
            if numa and moves is None:
                self._numa_organize_finalize()
        # The boot CPU's copy; the others get theirs at the first rollup (hardclock),
        # which the model does at once (no deltas yet: the rollup only copies).
        self.vmstats_rollup()
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

    def _numa_organize(self, avail: list[tuple[int, int]], free: list[tuple[int, int]]
                       ) -> tuple[list[tuple[int, int, int | None]],
                                  list[tuple[int, int, int]]]:
        """vm_numa_organize for each NUMA memory range (the machine's segments, in
        order): every page of the range, queued or not, gets ``pc % share + socket *
        share``; each queued page (``free``: ascending index ranges) moves to the head of
        its new queue, in ascending address order.  Returns the free pages in final queue
        order (head first) as index ranges, each read from its top down, with the socket
        whose share their colours are in (None: outside every range, colours unchanged):
        the moved ones last moved first, then any outside every range (highest first);
        and the ranges whose colours change, (i0, i1, socket) in the kernel's order (the
        colours are computed from them where pages are materialised)."""
        p = self.pages
        sockets = self.topology.sockets
        spans: list[tuple[int, int, int]] = []
        moved: list[tuple[int, int, int | None]] = []   # in the order the kernel moves them
        for s, e, dom in self.machine.segments():
            for a, b in avail:
                lo, hi = max(a, s), min(b, e)
                if hi <= lo:
                    continue
                i0 = (lo >> PAGE_SHIFT) - self.first_pfn
                i1 = min((hi >> PAGE_SHIFT) - self.first_pfn, p.npages)
                if i1 > i0:
                    spans.append((i0, i1, dom % sockets))
                moved += [(max(f0, i0), min(f1, i1), dom % sockets) for f0, f1 in free
                          if min(f1, i1) > max(f0, i0)]
        # the queued pages no range covers keep their place: after the moved ones
        outside: list[tuple[int, int, int | None]] = []
        for f0, f1 in free:
            cuts = sorted((m0, m1) for m0, m1, _ in moved if f0 <= m0 < f1)
            for m0, m1 in cuts:
                if m0 > f0:
                    outside.append((f0, m0, None))
                f0 = max(f0, m1)
            if f1 > f0:
                outside.append((f0, f1, None))
        return moved[::-1] + outside[::-1], spans

    def _boot_colours(self, i0: int, i1: int) -> np.ndarray:
        """The ``pc`` boot leaves on pages [i0, i1) (uint16): the boot colour on the pages
        vm_page_startup added (0 elsewhere), then vm_numa_organize's ``pc % share +
        socket * share`` over its ranges."""
        pfn = np.arange(i0 + self.first_pfn, i1 + self.first_pfn, dtype=np.int64)
        pc = boot_color(pfn).astype(np.uint16)
        pc[np.frombuffer(self.unmanaged, dtype=np.uint8)[i0:i1] != 0] = 0
        share = self.queues.share
        for s0, s1, sock in self._numa_spans:
            a, b = max(s0, i0), min(s1, i1)
            if a < b:
                c = pc[a - i0:b - i0]
                c %= share
                c += sock * share
        return pc

    def _colour_counts(self, ranges: list[tuple[int, int, int | None]]) -> np.ndarray:
        """Free pages per range of ``ranges`` and colour (after vm_numa_organize), without
        a pass over the pages: each whole 1024-page block holds one page of each boot
        colour; the partial blocks at a range's ends are counted page by page."""
        share = self.queues.share
        counts = np.zeros((len(ranges), PQ_L2_SIZE), dtype=np.int64)
        for lcnt, (i0, i1, sock) in zip(counts, ranges, strict=True):
            p0, p1 = i0 + self.first_pfn, i1 + self.first_pfn
            b0, b1 = -(-p0 >> 10), p1 >> 10
            orig = np.zeros(PQ_L2_SIZE, dtype=np.int64)
            parts = [(p0, p1)] if b1 <= b0 else [(p0, b0 << 10), (b1 << 10, p1)]
            if b1 > b0:
                orig += b1 - b0
            for a, b in parts:
                if b > a:
                    orig += np.bincount(boot_color(np.arange(a, b, dtype=np.int64)),
                                        minlength=PQ_L2_SIZE)
            if sock is None:
                lcnt += orig
            else:
                lcnt += np.bincount(np.arange(PQ_L2_SIZE) % share + sock * share,
                                    weights=orig, minlength=PQ_L2_SIZE).astype(np.int64)
        return counts

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

    # Boot takes the finalize's moves as a program (FinalizeMoves) when this is set; the
    # page-by-page transcription (_numa_organize_finalize) otherwise (tests compare them).
    bulk_finalize = True

    def _finalize_moves(self, ranges: list[tuple[int, int, int | None]],
                        counts: np.ndarray) -> FinalizeMoves | None:
        """vm_numa_organize_finalize's moves without moving pages (``counts``: free pages
        per range and colour before), as a :class:`FinalizeMoves` program.
        None (the page-by-page finalize runs instead) when a recipient could become a
        donor (an average under 10 pages: lo >= hi) or bulk_finalize is off."""
        lcnt = counts.sum(axis=0)
        scale_lim, hi, lo = self._finalize_scale(lcnt)
        if not self.bulk_finalize or lo >= hi:
            return None
        prog = FinalizeMoves(self.first_pfn, ranges, self.queues.share, counts)
        prog.run(lcnt, scale_lim, hi, lo)
        return prog

    def _build_free_queues(self, ranges: list[tuple[int, int, int | None]],
                           moves: FinalizeMoves | None) -> None:
        """Build the free queues over ``ranges`` (queue order, each read top down, with
        its socket) after vm_numa_organize_finalize's ``moves``, leaving implicit every
        whole free block whose neighbours are whole free blocks of the same range and
        socket (:class:`Queues`; blocks holding moved pages are flagged MOVED).
        Materialised blocks get their ``pc`` (and their free pages their links) written;
        of each stretch of implicit blocks only the first and last are walked, to link
        their neighbours into the stretch; then the moves are applied (_apply_moves).
        Temporaries: per block (a byte or two), and per page of the materialised
        blocks."""
        q = self.queues
        off = q.off
        nb = len(q.implicit_arr)
        sock = np.full(nb, -1, dtype=np.int16)     # socket of whole free blocks
        rid = np.full(nb, -1, dtype=np.int32)      # their range
        for r, (i0, i1, s) in enumerate(ranges):
            k0, k1 = -(-(i0 + off) >> 10), (i1 + off) >> 10
            if s is not None and k1 > k0:
                sock[k0:k1] = s
                rid[k0:k1] = r
        lazy = np.zeros(nb, dtype=bool)
        if nb > 2:
            lazy[1:-1] = (rid[1:-1] >= 0) & (rid[:-2] == rid[1:-1]) & (rid[2:] == rid[1:-1])
        # the first and last block of each stretch of implicit blocks stay in the order
        edge = lazy.copy()
        edge[1:-1] &= ~(lazy[:-2] & lazy[2:])
        walked = ~lazy | edge
        pieces: list[np.ndarray] = []
        for i0, i1, _ in ranges:                  # each from its top down
            k0, k1 = (i0 + off) >> 10, ((i1 - 1 + off) >> 10) + 1
            w = walked[k0:k1]
            brk = np.flatnonzero(np.diff(w.astype(np.int8))) + 1
            for a, b in zip(np.concatenate([brk, [len(w)]])[::-1].tolist(),
                            np.concatenate([[0], brk])[::-1].tolist(), strict=True):
                if w[b]:
                    lo = max(i0, ((k0 + b) << 10) - off)
                    hi = min(i1, ((k0 + a) << 10) - off)
                    pieces.append(np.arange(hi - 1, lo - 1, -1, dtype=np.int64))
        order = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        del pieces
        col = np.empty(len(order), dtype=np.int64)
        # colours per entry, computed over the ascending spans of the order
        brk = np.flatnonzero(np.diff(order) != -1) + 1
        for a, b in zip(np.concatenate([[0], brk]).tolist(),
                        np.concatenate([brk, [len(order)]]).tolist(), strict=True):
            col[a:b] = self._boot_colours(int(order[b - 1]), int(order[a]) + 1)[::-1]
        write = ~lazy[(order + off) >> 10]
        implicit = np.flatnonzero(lazy)
        q.build_boot(order, (col + PQ_FREE).astype(np.uint16), write, implicit,
                     sock[implicit].astype(np.int64))
        # pc of the materialised blocks (pages in holes and outside the NUMA ranges
        # keep 0: nothing is written where there is nothing to write)
        pcs = self.pages.arrays["pc"]
        brk = np.flatnonzero(np.diff(lazy.astype(np.int8))) + 1
        for a, b in zip(np.concatenate([[0], brk]).tolist(),
                        np.concatenate([brk, [nb]]).tolist(), strict=True):
            if lazy[a]:
                continue
            i0, i1 = max(0, (a << 10) - off), min(self.pages.npages, (b << 10) - off)
            for c in range(i0, i1, _CHUNK):
                d = min(c + _CHUNK, i1)
                pc = self._boot_colours(c, d)
                if pc.any():
                    pcs[c:d] = pc
        if moves is not None and moves.total:
            self._apply_moves(moves, ranges, order[write], col[write])

    def _apply_moves(self, prog: FinalizeMoves, ranges: list[tuple[int, int, int | None]],
                     written: np.ndarray, col: np.ndarray) -> None:
        """vm_numa_organize_finalize on the queues just built, by its program ``prog``:
        the implicit blocks holding moved pages are flagged MOVED (the rule gives them),
        the moved pages of materialised blocks (``written``, colours ``col`` before) are
        rewritten, and each donor's new head and each recipient's old head (the only
        unmoved pages whose links change) are materialised and relinked; heads, tails
        and counts follow."""
        q, p = self.queues, self.pages
        prog.ohead = np.array([q.head[PQ_FREE + int(r)] for r in prog.recip], dtype=np.int64)
        q.moves = prog
        imp, off = q.implicit_arr, q.off
        cols = np.arange(PQ_L2_SIZE)
        for r, (_, i1, _) in enumerate(ranges):   # each range's moved pages: its top part
            last = np.minimum(prog.given, prog.base[r] + prog.cnt[r]) - 1
            c = np.flatnonzero(last >= prog.base[r])
            if len(c):
                low = int(prog.page(cols[c], last[c]).min())
                blk = imp[(low + off) >> 10:((i1 - 1 + off) >> 10) + 1]
                blk[blk != 0] |= MOVED
        a = p.arrays
        for c0 in range(0, len(written), _CHUNK):   # moved pages of materialised blocks
            idx, c = written[c0:c0 + _CHUNK], col[c0:c0 + _CHUNK]
            mv, rc, nxt, prv = prog.moved(idx.astype(np.int64), c)
            at = idx[mv]
            a["pc"][at] = rc
            a["queue"][at] = rc + PQ_FREE
            a["next"][at] = nxt
            a["prev"][at] = prv
        # donors: the first unmoved page is the head; recipients: their moves, last
        # first, then their own pages.  These pages' blocks are materialised first.
        d = np.flatnonzero(prog.given)
        left = np.array([q.lcnt[PQ_FREE + int(x)] for x in d], dtype=np.int64) - prog.given[d]
        heads = np.full(len(d), -1, dtype=np.int64)
        heads[left > 0] = prog.page(d[left > 0], prog.given[d[left > 0]])
        first = prog.page(*prog._move(prog.rstart))
        last = prog.page(*prog._move(prog.rend - 1))
        q.materialise_pages(np.concatenate([heads[heads >= 0], first, last,
                                            prog.ohead[prog.ohead > 0] - 1]))
        for x, h, n in zip(d.tolist(), heads.tolist(), left.tolist(), strict=True):
            qi = PQ_FREE + x
            q.lcnt[qi] = n
            if h >= 0:
                p.prev[h] = 0
                q.head[qi] = h + 1
            else:
                q.head[qi] = q.tail[qi] = 0
                q.nonempty[qi] = 0
        for r, f, t, oh, n in zip(prog.recip.tolist(), first.tolist(), last.tolist(),
                                  prog.ohead.tolist(), (prog.rend - prog.rstart).tolist(),
                                  strict=True):
            qi = PQ_FREE + r
            q.head[qi] = t + 1
            if oh:
                p.prev[oh - 1] = f + 1
            else:
                q.tail[qi] = f + 1
            q.lcnt[qi] += n
            q.nonempty[qi] = 1

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
        self._count(V_FREE_COUNT, n)
        self._count_adj(V_WIRE_COUNT, -n)
        self._cv[self._tls.cpu][CNT_TFREE] += n

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


# Pages per numpy step where boot computes per page: bounds the temporaries (8 MiB of
# int64) and keeps them in cache (server-96g-2dom boot: 1.9 s with 4 M, 1.3 s with 1 M).
_CHUNK = 1 << 20


def _runs(pfns: np.ndarray) -> list[tuple[int, int]]:
    """The runs [start, end) of consecutive values in the ascending array ``pfns``."""
    if not len(pfns):
        return []
    brk = np.flatnonzero(np.diff(pfns) != 1) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(pfns)]])
    return list(zip(pfns[starts].tolist(), (pfns[ends - 1] + 1).tolist(), strict=True))
