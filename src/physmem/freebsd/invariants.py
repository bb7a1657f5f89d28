"""INVARIANTS for the free-page allocator: a checker that verifies the whole state.

:func:`check_vm_phys` walks every free queue; :func:`check_kernel` adds the callers'
bookkeeping.  Both raise :class:`~physmem.errors.InvariantError` listing what is wrong (the
first problems found, then a count).  Checked:

* queue integrity: the links of every queue form one circle through its sentinel, ``lcnt``
  equals its length, and every head in ``heads`` is on exactly one queue;
* every free block: its head's ``order`` equals the queue's order and its pool word the
  queue's pool, the head is initialised, aligned to its order, and the block lies in one
  segment whose free queues (domain, free list) are the queue's;
* no two free blocks overlap, and no page inside a free block is allocated;
* LAZYINIT: empty after an eager boot and in every drained domain; nothing but LAZYINIT
  blocks has uninitialised pages;
* bookkeeping: each domain's free count equals the pages on its queues (corrected for the
  kernel's vm_phys_domain() charging quirk), and every phys_avail page is either free or
  allocated -- nothing is lost, nothing is both;
* optionally (``strict_buddies``), no two free blocks are buddies of the same order in one
  segment.  vm_phys only merges in free_pages: boot and free_contig queue runs without
  looking at their neighbours, so this holds only for histories that free with free_pages
  and boot from runs that do not abut (the stateful tests use such machines).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from ..bits import PAGE_SHIFT
from ..errors import InvariantError
from ..pagearray import PG_PHYS_ALLOC, POOL_MASK
from .vm_phys import VmPhys

if TYPE_CHECKING:
    from .vm_page import Kernel

MAX_REPORTED = 20


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.count = 0

    def add(self, msg: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(msg)

    def raise_if_any(self) -> None:
        if self.count:
            more = f"\n... and {self.count - len(self.items)} more" \
                if self.count > len(self.items) else ""
            raise InvariantError(f"{self.count} invariant violation(s):\n  "
                                 + "\n  ".join(self.items) + more)


def _free_blocks(phys: VmPhys, bad: _Problems) -> list[tuple[int, int, int, int, int]]:
    """Walk every queue, checking links and counts; return (head, order, pool, domain,
    flind) for every queued block."""
    NFL, NFP, NFO = phys.NFL, phys.NFP, phys.NFO
    heads = phys.heads
    nheads = sum(1 for m in heads if m >= 0)
    # heads stood for by lazy runs beyond their first (their own keys are in nheads)
    nchunks = sum(node[3] - 1 for m, node in heads.items() if m >= 0 and len(node) > 3)
    blocks = []
    seen: set[int] = set()
    for q in range(len(phys.lcnt)):
        s = -1 - q
        order = q % NFO
        pool = (q // NFO) % NFP
        flind = (q // (NFO * NFP)) % NFL
        domain = q // (NFO * NFP * NFL)
        n = 0
        sn = heads[s]
        m = sn[1]
        prev = s
        while m != s:
            if m < 0:
                bad.add(f"queue {q}: link to foreign sentinel {m}")
                break
            node = heads.get(m)
            if node is None:
                bad.add(f"queue {q}: link to {m << PAGE_SHIFT:#x}, which is not a head")
                break
            if node[0] != prev:
                bad.add(f"queue {q}: broken back link at {m << PAGE_SHIFT:#x}")
            if m in seen:
                bad.add(f"block {m << PAGE_SHIFT:#x} is on a queue twice")
                break
            seen.add(m)
            blocks.append((m, order, pool, domain, flind))
            n += 1
            if len(node) > 3:           # a lazy run: its later chunks
                c = node[3]
                run = phys.pages.runs.get(m)
                if run is None or run[0] != c or run[1] != 1 << order or c < 2 or \
                        order != NFO - 1 or pool != phys.LAZYINIT:
                    bad.add(f"lazy run at {m << PAGE_SHIFT:#x} ({c} chunks) on queue {q} "
                            f"does not match the page array's {run}")
                    break
                blocks.extend((p, order, pool, domain, flind)
                              for p in range(m + (1 << order), m + (c << order), 1 << order))
                n += c - 1
            prev = m
            m = node[1]
            if n > nheads + nchunks + 1:
                bad.add(f"queue {q}: cycle")
                break
        if sn[0] != prev:
            bad.add(f"queue {q}: sentinel's back link is stale")
        if n != phys.lcnt[q]:
            bad.add(f"queue d{domain} fl{flind} pool{pool} order{order}: lcnt "
                    f"{phys.lcnt[q]} != length {n}")
        if n and (domain >= phys.ndomains or flind >= phys.nfreelists):
            bad.add(f"queue {q} of a domain or free list that does not exist holds blocks")
    if len(phys.pages.runs) != sum(1 for m, node in heads.items() if m >= 0 and len(node) > 3):
        bad.add("the page array's lazy runs are not the queues' run nodes")
    if len(seen) != nheads:
        bad.add(f"{nheads} heads have an order but {len(seen)} are queued")
    if len(heads) != len(phys.lcnt) + nheads:
        bad.add("the head dict holds sentinels that are no queue's")
    return blocks


def check_vm_phys(phys: VmPhys, strict_buddies: bool = False) -> list[tuple[int, int, int]]:
    """Check vm_phys's own state; returns the free blocks as (head pfn, order, domain)."""
    bad = _Problems()
    pages = phys.pages
    phys.sync_all()     # the page array's lazy bookkeeping, as the queue core left it
    blocks = _free_blocks(phys, bad)
    out = []
    spans = []
    heads: dict[int, int] = {}
    for m, order, pool, domain, flind in blocks:
        pa = m << PAGE_SHIFT
        if phys.order_of(m) != order:
            bad.add(f"block {pa:#x} on an order-{order} queue has order "
                    f"{phys.order_of(m)}")
        w = pages.raw(m)
        if not w:
            bad.add(f"free head {pa:#x} is not initialised")
            continue
        if w & POOL_MASK != pool:
            bad.add(f"block {pa:#x} on a pool-{pool} queue has pool {w & POOL_MASK}")
        if w & PG_PHYS_ALLOC:
            bad.add(f"free head {pa:#x} is marked allocated")
        if m & ((1 << order) - 1):
            bad.add(f"block {pa:#x} is not aligned to its order {order}")
        seg = phys.paddr_to_seg(pa)
        if seg is None or (m + (1 << order)) > seg.epfn:
            bad.add(f"block {pa:#x} order {order} is not inside one segment")
        elif seg.domain != domain or seg.flind != flind:
            bad.add(f"block {pa:#x} is on domain {domain} list {flind}, its segment on "
                    f"domain {seg.domain} list {seg.flind}")
        elif phys.segs.index(seg) != w >> 8:
            bad.add(f"free head {pa:#x} has segind {w >> 8}, lies in segment "
                    f"{phys.segs.index(seg)}")
        if pool == phys.LAZYINIT and phys.LAZYINIT is not None and phys.initdone[domain]:
            bad.add(f"LAZYINIT block {pa:#x} in drained domain {domain}")
        spans.append((m, m + (1 << order)))
        heads[m] = order
        out.append((m, order, domain))
    spans.sort()
    for (a0, a1), (b0, _b1) in itertools.pairwise(spans):
        if b0 < a1:
            bad.add(f"free blocks at {a0 << PAGE_SHIFT:#x} and {b0 << PAGE_SHIFT:#x} overlap")
    for p in pages.lone:
        if pages.is_dense(p):
            bad.add(f"page {p << PAGE_SHIFT:#x} has a lone entry and a dense one")
    # Pages inside free blocks: initialised unless the block is LAZYINIT, never allocated.
    words = pages.words
    base = pages.base_pfn
    for m, order, _ in out:
        n = 1 << order
        if n == 1:
            continue
        w = pages.raw(m)
        seg_words = words[m - base + 1:m - base + n]
        if w & POOL_MASK == phys.LAZYINIT and phys.LAZYINIT is not None:
            if np.any(seg_words & PG_PHYS_ALLOC):
                bad.add(f"LAZYINIT block {m << PAGE_SHIFT:#x} holds allocated pages")
            continue
        if not np.all(seg_words != 0):
            bad.add(f"block {m << PAGE_SHIFT:#x} holds uninitialised pages")
        if np.any(seg_words & PG_PHYS_ALLOC):
            bad.add(f"block {m << PAGE_SHIFT:#x} holds allocated pages")
    if strict_buddies:
        for m, order, _ in out:
            if order >= phys.NFO - 1:
                continue
            b = m ^ (1 << order)
            if heads.get(b) == order and m < b:
                seg = phys.paddr_to_seg(m << PAGE_SHIFT)
                if seg is not None and seg.spfn <= b < seg.epfn:
                    bad.add(f"free buddies {m << PAGE_SHIFT:#x} and {b << PAGE_SHIFT:#x} "
                            f"(order {order}) did not merge")
    bad.raise_if_any()
    return out


def check_kernel(k: Kernel, strict_buddies: bool = False) -> None:
    """Check vm_phys and the callers' bookkeeping of :class:`~physmem.kernel.Kernel`."""
    if not k.booted:
        return
    phys = k.phys
    blocks = check_vm_phys(phys, strict_buddies)
    bad = _Problems()
    free_by_dom = [0] * phys.ndomains
    for _m, order, domain in blocks:
        free_by_dom[domain] += 1 << order
    for d, count in enumerate(k.free_counts):
        want = free_by_dom[d] + k.count_skew[d]
        if count != want:
            bad.add(f"domain {d}: free count {count} != {free_by_dom[d]} pages on "
                    f"its queues (skew {k.count_skew[d]})")
    if not k.lazy and phys.LAZYINIT is not None:
        for d in range(phys.ndomains):
            for flind in range(phys.nfreelists):
                for o in range(phys.NFO):
                    if phys.count(d, flind, phys.LAZYINIT, o):
                        bad.add(f"eager boot but domain {d} list {flind} has LAZYINIT "
                                f"order-{o} blocks")
    # Conservation: every phys_avail page in a segment is free or allocated, never both.
    avail_pages = 0
    for seg in phys.segs:
        for lo, hi in k.phys_avail:
            s, e = max(seg.start, lo), min(seg.end, hi)
            if s < e:
                avail_pages += (e - s) >> PAGE_SHIFT
    free_pages = sum(free_by_dom)
    allocated = phys.pages.allocated_count()
    if free_pages + allocated != avail_pages:
        bad.add(f"{free_pages} free + {allocated} allocated pages != {avail_pages} "
                "phys_avail pages (pages lost or invented)")
    bad.raise_if_any()
