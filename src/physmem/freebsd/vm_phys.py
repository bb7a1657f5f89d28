"""FreeBSD's physical page allocator, sys/vm/vm_phys.c at commit b16b4c22d2d1.

A buddy allocator over physical segments, with free queues indexed
``[domain][flind][pool][order]``, the three free pools of the lazy-init commit (LAZYINIT=0,
DEFAULT=1, DIRECT=2 on amd64/arm64) and on-demand initialisation of page structures.
Every function keeps the kernel's name and does what the compiled kernel file does, down
to head-or-tail insertion and search order, so the same requests return the same pages.

Map of the module (kernel function -> method):

* segments: vm_phys_add_seg -> :meth:`VmPhys.add_seg`, vm_phys_register_domains ->
  :meth:`~VmPhys.register_domains`, vm_phys_init -> :meth:`~VmPhys.init`,
  vm_phys_paddr_to_vm_page, vm_phys_lookup_segind, vm_phys_paddr_to_seg, vm_phys_domain;
* queue primitives: vm_freelist_add / vm_freelist_rem (:meth:`~VmPhys.freelist_add`,
  :meth:`~VmPhys.freelist_rem`), the only writers of the queues;
* building blocks: split_pages, enq_chunk, enq_beg, enq_range, set_pool;
* allocation: alloc_npages, alloc_pages, alloc_freelist_pages, alloc_contig (with
  find_queues_contig and find_freelist_contig);
* freeing: free_pages (coalescing), enqueue_contig (no coalescing), free_contig;
* rare operations: find_range, unfree_page; lazy init: lazy_init_domain, lazy_init.

Pages are named by page frame number (``pfn = pa >> 12``): "the page m" of the kernel is the
int ``m``, and ``m + 1`` is the next page, as pointer arithmetic on vm_page_array is.

Data layout (figures in bench/RESULTS.md and docs/implementation.md):

* Per-page fields (pool, segind, "initialised") live in :class:`physmem.pagearray.PageArray`.
* Free-block heads are the only pages with an ``order`` and free-queue links, so those are
  nodes of an array, not fields of every page: the **queue core** (the comment above
  :func:`vm_freelist_add`).  One zero-filled int64 array holds the node slots (links as
  slot numbers, order and queue, the head's pfn), the per-domain slot lists, the counts,
  the segments, the change logs and a pfn -> slot map that costs memory only where heads
  have been.  The queue core's functions are the kernel's loops over that array, one
  implementation each: plain Python on a memoryview during boot (numba is never imported
  by a boot) and with ``PHYSMEM_JIT=0``; compiled by numba (:mod:`physmem.jit`) from the
  first call after boot.  :attr:`VmPhys.heads` shows the nodes as the old mapping
  (``heads[m] = [prev, next, order]``, sentinels ``heads[-1 - q]``) for readers.
* Kernel's hot operations (alloc_pages, alloc_npages, alloc_contig, free_pages,
  free_contig) each make one compiled call that also tests and changes the ownership
  words (``kernel_*``); what they cannot finish without Python -- a lazy run's chunk, a
  steal, a buddy whose word is a lone entry -- they leave unchanged (or report the stage
  reached) and the methods below do.
* **Lazy runs.**  A lazy boot queues each phys_avail range as consecutive max-order
  LAZYINIT chunks (65,536 for 1 TiB).  An untouched run of them is one node whose INFO
  holds ``nchunks``: it stands for the chunk heads ``m0, m0 + step, ...`` in that queue
  order, and the page array answers their entries by rule
  (:meth:`physmem.pagearray.PageArray.add_run`).  A chunk leaves the run when it is
  taken: the first by :func:`run_pop` (the node moves up one chunk in place), a later one
  by :meth:`VmPhys._run_detach`, from vm_freelist_rem (queue-head pops, alloc_contig, the
  drain); walks expand the run (:meth:`VmPhys.queue_iter`, the queue
  core's find_queues_contig) and lookups of a later chunk's head ask the page array
  (:meth:`VmPhys.order_of`, :meth:`VmPhys.free_block_of`).  Boot of 1 TiB writes a handful
  of nodes instead of 131 k entries (bench/RESULTS.md, issue 13).
* ``lcnt[q]`` counts the blocks on queue ``q`` (each chunk of a run counts);
  ``q = seg.fq + pool * NFO + order``, where ``seg.fq`` is the segment's ``free_queues``
  (``(domain * NFL + flind) * NFP * NFO``).

Locking: every method that touches the queues requires the free-queue lock of the domain
concerned (``domain_locks[d]``), as the kernel does; the callers in
:mod:`physmem.kernel` take it.  The domains share the state array, but each has its own
queues, slot range, slot list and log; compiled calls hold the GIL throughout.
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..bits import PAGE_SHIFT, fls, powerof2, roundup2
from ..errors import InvariantError, UninitializedPageError
from ..jit import Lazy, njit_typed
from ..jit import enabled as jit_enabled
from ..pagearray import POOL_MASK, SEGIND_SHIFT, PageArray, make_word, zeros
from ..vmparam import VmParam

M64 = (1 << 64) - 1


@dataclass(slots=True)
class Seg:
    """struct vm_phys_seg: one physical segment.  ``fq`` is the base queue index of its
    ``free_queues`` (= &vm_phys_free_queues[domain][flind]); ``spfn``/``epfn`` are start and
    end in pages, set by vm_phys_init (plain fields: the hot paths read them)."""

    start: int
    end: int
    domain: int
    flind: int = -1
    fq: int = -1
    spfn: int = 0
    epfn: int = 0


@dataclass(frozen=True)
class MemAffinity:
    """struct mem_affinity: ``[start, end)`` belongs to ``domain``."""

    start: int
    end: int
    domain: int


def vm_addr_ok(pa: int, size: int, alignment: int, boundary: int) -> bool:
    """vm_addr_align_ok && vm_addr_bound_ok, in 64-bit unsigned arithmetic."""
    return (pa & ((alignment - 1) & M64)) == 0 and \
        ((pa ^ ((pa + size - 1) & M64)) & (-boundary & M64)) == 0


# -------------------------------------------------------------------------------------------
# The queue core over arrays (issue 13, third round; docs/implementation.md, section 3).
#
# Everything lives in one zero-filled int64 array ``st`` -- one argument for compiled code,
# whose dispatch costs ~50 ns per array argument and whose array views cost more -- at
# offsets kept in its last CFG words (C_*):
#
# * node slots, NODE words each: PREV and NEXT (slots of the neighbours on the queue, a
#   circle through the sentinel), INFO = (order + 1) | nchunks << NCH_SHIFT | q << Q_SHIFT
#   (0: no head), PFN (the head page; a sentinel holds -1 - q).  Slots 0 .. nq-1 are the
#   queues' sentinels, slot nq + d domain d's meta (free-slot list, high-water mark, log
#   length, log offset).  Each domain's heads use a slot range of their own, so the
#   domains never share a slot list (their locks differ).  A lazy run (nchunks >= 2) is
#   one node for its chunks; only Python code (VmPhys) meets those;
# * the counts ``lcnt`` (at C_LC), the segments' (spfn, epfn, fq) (at C_SG), the
#   domains' logs;
# * the slot map: ``st[st[C_SMB] + m]`` is m's slot, 0 if m is no head.  Zero-filled, it
#   costs memory only where heads have been (as the page array).
#
# The functions below are the kernel's loops on that array.  They are compiled
# (physmem.jit) once boot is over, and run as plain Python on a memoryview of it during
# boot and with the JIT off.  Queue changes go to the domain's log as (kind, m, order)
# when ``obs`` is OBS_LOG (observers attached: the extent mirror; OBS_DIRECT: counted
# only, the caller hands the call's net change to them), and LAZYINIT blocks
# initialised here always do (LOG_INIT: VmPhys drops the head's lone entry; the pages are
# counted in the state, C_NINIT).  Callers validate; these assume a consistent state.
# -------------------------------------------------------------------------------------------
PREV, NEXT, INFO, PFN = 0, 1, 2, 3
NODE = 4
ORDER_MASK = 0x1F
NCH_SHIFT = 8
NCH_MASK = 0xFFFFFF
Q_SHIFT = 32
LOG_ADD, LOG_REM, LOG_INIT = 1, 2, 3
# What log_net leaves for the observers: runs (m, npages) that joined / left the free
# set, then one (LOG_NET, queue changes netted, runs) entry.
LOG_FREED, LOG_TAKEN, LOG_NET = 5, 6, 7
# Below each domain's log (at its offset + these): the queue changes ever logged, and
# those log_net netted away (a researcher's two figures: VmPhys.queue_counts).
# (The third word below a log, once a fast path's one run, is unused.)
LOG_CHANGES, LOG_SAVED = -3, -2
# ``obs``, the fast paths' argument: no observers (0), queue changes logged for
# VmPhys._flush (OBS_LOG), or only counted (OBS_DIRECT: Kernel's wrappers of the calls that
# take or free one block or run hand the call's net change, that run, to the observers
# themselves: VmPhys.net_add / net_rem).
OBS_LOG, OBS_DIRECT = 1, 3
CFG = 16
LOGGED = 1 << 62     # added to a returned page: the domain's log holds entries
C_NFO, C_NFP, C_LAZY, C_QPD, C_NQ, C_LC, C_SG, C_SMB, C_B, C_NSEG, C_DEFAULT = range(11)
# Lazy runs' first chunks taken by compiled code (VmPhys.sync moves the page array's rule),
# and the page structures the queue core initialised (PageArray.ninit adds them).
C_POPS, C_NINIT = 14, 15
SEGW = 4            # a segment's words: spfn, epfn, fq, domain

# The queue core's functions are compiled for one signature each: these arrays, every other
# argument an int64 (numba would compile a version per literal a caller passes); they use
# nothing numba's rewrite passes change (no array expressions, raise, literal arguments).
njit = njit_typed(st="int64[::1]", words="uint16[::1]", out="int64[::1]", rewrites=False)


@njit
def _meta(st, q):
    """Offset of the meta node of queue q's domain."""
    cfg = len(st) - CFG
    return NODE * (st[cfg + C_NQ] + q // st[cfg + C_QPD])


@njit
def _log(st, md, kind, m, order, obs):
    """Append (kind, m, order) to the domain's log (meta node at ``md``); count a queue
    change (LOG_ADD, LOG_REM).  With ``obs`` OBS_DIRECT a queue change is counted only,
    as netted away: the caller hands the call's net change over itself (_logged)."""
    n = st[md + 2]
    if kind <= LOG_REM:
        st[st[md + 3] + LOG_CHANGES] += 1
        if obs == OBS_DIRECT:
            st[st[md + 3] + LOG_SAVED] += 1
            return
    at = st[md + 3] + 3 * n
    st[at] = kind
    st[at + 1] = m
    st[at + 2] = order
    st[md + 2] = n + 1


@njit
def log_net(st, md, room):
    """Reduce the domain's log (meta node at ``md``, ``room`` words for it) to its net
    change of the free set, for the observers: the LOG_ADD/LOG_REM entries become the
    maximal runs of pages that joined the free set (LOG_FREED, m, npages) or left it
    (LOG_TAKEN), in address order, followed by (LOG_NET, entries netted, runs); LOG_INIT
    entries stay first, in their order.  A block's pages are all free or
    all not (queue changes are consistent), so a page's net change is 0 or +-1 and the
    runs are exact.  Requires: the domain's lock.  Returns the log's new length (the log
    is left as it is when it holds fewer than two queue changes, or when its room would
    not hold the output and the sort's scratch)."""
    n = st[md + 2]
    at = st[md + 3]
    k = 0
    for i in range(n):
        kind = st[at + 3 * i]
        if LOG_ADD <= kind <= LOG_REM:
            k += 1
    # Output <= n + k entries; the boundary events (2k words) go just after that (near
    # the log: the same cache lines call after call).
    if k < 2 or 3 * (n + k) + 2 * k > room:
        return n
    ev = at + 3 * (n + k)
    w = 0
    j = 0
    for i in range(n):
        o = at + 3 * i
        kind = st[o]
        m = st[o + 1]
        if LOG_ADD <= kind <= LOG_REM:
            # an event is pos * 2 + (1: the free count steps up there, 0: down)
            up = 1 if kind == LOG_ADD else 0
            st[ev + j] = 2 * m + up
            st[ev + j + 1] = 2 * (m + (1 << st[o + 2])) + 1 - up
            j += 2
        else:                       # kept, moved down in place (w <= i)
            d = at + 3 * w
            order = st[o + 2]
            st[d] = kind
            st[d + 1] = m
            st[d + 2] = order
            w += 1
    ne = 2 * k
    gap = ne // 2                   # Shell's sort: logs are short, and unsorted
    while gap > 0:
        for i in range(gap, ne):
            x = st[ev + i]
            j = i
            while j >= gap and st[ev + j - gap] > x:
                st[ev + j] = st[ev + j - gap]
                j -= gap
            st[ev + j] = x
        gap //= 2
    # Sweep: the net change is constant between consecutive positions.
    runs = 0
    cur = 0
    start = 0
    i = 0
    while i < ne:
        pos = st[ev + i] >> 1
        nxt = cur
        while i < ne and st[ev + i] >> 1 == pos:
            nxt += 1 if st[ev + i] & 1 else -1
            i += 1
        if nxt != cur:
            if cur:
                d = at + 3 * w
                st[d] = LOG_FREED if cur > 0 else LOG_TAKEN
                st[d + 1] = start
                st[d + 2] = pos - start
                w += 1
                runs += 1
            start = pos
            cur = nxt
    d = at + 3 * w
    st[d] = LOG_NET
    st[d + 1] = k
    st[d + 2] = runs
    st[at + LOG_SAVED] += k - runs
    st[md + 2] = w + 1
    return w + 1


@njit
def _slot_new(st, md):
    """A free node slot of the domain whose meta node is at ``md``."""
    s = st[md]
    if s:
        st[md] = st[NODE * s + NEXT]
    else:
        s = st[md + 1]
        st[md + 1] = s + 1
    return s


@njit
def vm_freelist_add(st, q, m, order, tail, obs):
    """vm_freelist_add(): head ``m`` of a 2**order block onto queue ``q``, at its tail or
    head.  Sets the head's order; does not touch its pool (as the kernel)."""
    cfg = len(st) - CFG
    md = _meta(st, q)
    s = _slot_new(st, md)
    st[st[cfg + C_SMB] + m] = s
    o = NODE * s
    st[o + INFO] = (order + 1) | (q << Q_SHIFT)
    st[o + PFN] = m
    so = NODE * q
    if tail:
        last = st[so + PREV]
        st[o + PREV] = last
        st[o + NEXT] = q
        st[NODE * last + NEXT] = s
        st[so + PREV] = s
    else:
        first = st[so + NEXT]
        st[o + PREV] = q
        st[o + NEXT] = first
        st[NODE * first + PREV] = s
        st[so + NEXT] = s
    st[st[cfg + C_LC] + q] += 1
    if obs:
        _log(st, md, LOG_ADD, m, order, obs)


@njit
def vm_freelist_rem(st, q, m, obs):
    """vm_freelist_rem(): unlink head ``m`` (not a lazy run) from queue ``q``; its order
    becomes VM_NFREEORDER.  Returns the order it had."""
    cfg = len(st) - CFG
    md = _meta(st, q)
    at = st[cfg + C_SMB] + m
    s = st[at]
    o = NODE * s
    p = st[o + PREV]
    n = st[o + NEXT]
    st[NODE * p + NEXT] = n
    st[NODE * n + PREV] = p
    order = (st[o + INFO] & ORDER_MASK) - 1
    st[o + INFO] = 0
    st[o + NEXT] = st[md]           # the slot goes to the domain's free list
    st[md] = s
    st[at] = 0
    st[st[cfg + C_LC] + q] -= 1
    if obs:
        _log(st, md, LOG_REM, m, order, obs)
    return order


@njit
def vm_phys_split_pages(st, m, oind, fl, order, tail, obs):
    """vm_phys_split_pages(): keep the lowest 2**order pages of the 2**oind block at ``m``
    and queue the upper halves on pool queue base ``fl``, largest first."""
    while oind > order:
        oind -= 1
        vm_freelist_add(st, fl + oind, m + (1 << oind), oind, tail, obs)


@njit
def _fls(x):
    """flsll(): the position of the highest set bit of ``x``, 0 for 0."""
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


@njit
def enq_blocks(st, m, npages, fl, tail, ascending, obs):
    """vm_phys_enq_range (``ascending``: blocks of increasing size) or vm_phys_enq_beg
    (decreasing) of a run whose pool is not LAZYINIT: enq_chunk is then
    vm_freelist_add.  Returns the page after the run."""
    while npages > 0:
        if ascending:
            order = _fls(npages & -npages) - 1
        else:
            order = _fls(npages) - 1
        vm_freelist_add(st, fl + order, m, order, tail, obs)
        m += 1 << order
        npages -= 1 << order
    return m


@njit
def enq_chunks(st, fl, m, nchunks, order, obs):
    """vm_phys_enqueue_contig's middle loop for a run that is not LAZYINIT: ``nchunks``
    max-order chunks from ``m`` at the tail, ascending."""
    for i in range(nchunks):
        vm_freelist_add(st, fl + order, m + (i << order), order, True, obs)


@njit
def alloc_freelist_own(st, fl, order, obs):
    """vm_phys_alloc_freelist_pages()'s first loop: the head of the requested pool's
    smallest sufficient non-empty queue (pool queue base ``fl``), split down to
    ``order``.  Returns the page, or -1 (the caller steals: nothing was changed)."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    lc = st[cfg + C_LC]
    for oind in range(order, nfo):
        q = fl + oind
        if st[lc + q]:
            m = st[NODE * st[NODE * q + NEXT] + PFN]
            vm_freelist_rem(st, q, m, obs)
            vm_phys_split_pages(st, m, oind, fl, order, True, obs)
            return m
    return -1


@njit
def alloc_npages_own(st, fl, npages, i, out, obs):
    """vm_phys_alloc_npages()'s loop over the requested pool's queues (base ``fl``) for
    one free list, from ``i`` pages taken.  Appends (first page, count) runs to ``out``
    (``out[0]`` counts them) and returns the pages taken so far; the excess of the last
    block returns to the pool's queues (their orders below it are empty)."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    lc = st[cfg + C_LC]
    for oind in range(nfo):
        q = fl + oind
        while st[lc + q]:
            m = st[NODE * st[NODE * q + NEXT] + PFN]
            vm_freelist_rem(st, q, m, obs)
            avail = i + (1 << oind)
            end = npages if npages < avail else avail
            k = out[0]
            out[1 + 2 * k] = m
            out[2 + 2 * k] = end - i
            out[0] = k + 1
            m += end - i
            i = end
            if i == npages:
                enq_blocks(st, m, avail - i, fl, True, True, obs)
                return i
    return i


@njit
def vm_phys_free_pages(st, words, m, order, stop, obs):
    """vm_phys_free_pages(): free the 2**order block at ``m`` (dense page word, pool not
    LAZYINIT, not a head) into m's pool, merging with free buddies of any pool within the
    segment below the maximum order; the result goes to the TAIL of its queue.

    A buddy that is no head and whose word is not in the dense array may be initialised
    alone (the page array's ``lone``) or not at all, which only Python can tell: the merge
    chain is checked first and that buddy's pfn returned, nothing changed; the caller
    decides and calls again with ``stop`` = that pfn if it is initialised.  Returns -1
    when the block is freed.  A LAZYINIT buddy is initialised here (vm_phys_set_pool) and
    logged (LOG_INIT)."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    nfp = st[cfg + C_NFP]
    smb = st[cfg + C_SMB]
    B = st[cfg + C_B]
    w = words[m - B]
    pool = w & 3
    segind = w >> 8
    sg = st[cfg + C_SG] + SEGW * segind
    spfn = st[sg]
    epfn = st[sg + 1]
    fq = st[sg + 2]
    # The merge chain, read only.
    o = order
    b0 = m
    while o < nfo - 1:
        b = b0 ^ (1 << o)
        if b < spfn or b >= epfn:
            break
        s = st[smb + b]
        if s == 0:
            if words[b - B] == 0 and b != stop:
                return b
            break
        if (st[NODE * s + INFO] & ORDER_MASK) - 1 != o:
            break
        o += 1
        b0 &= ~((1 << o) - 1)
    # The merges.
    while order < o:
        b = m ^ (1 << order)
        bq = st[NODE * st[smb + b] + INFO] >> Q_SHIFT
        bpool = (bq // nfo) % nfp
        vm_freelist_rem(st, bq, b, obs)
        if bpool != pool:
            _set_pool(st, words, pool, b, order, bq)
        order += 1
        m &= ~((1 << order) - 1)
    vm_freelist_add(st, fq + pool * nfo + order, m, order, True, obs)
    return -1


@njit
def node_insert(st, sp, m, info):
    """A node for head ``m`` with ``info`` linked after slot ``sp`` on its queue, the
    count unchanged (a lazy run's chunk made a node of its own).  Returns its slot."""
    s = _slot_new(st, _meta(st, info >> Q_SHIFT))
    st[st[len(st) - CFG + C_SMB] + m] = s
    o = NODE * s
    n = st[NODE * sp + NEXT]
    st[o + PREV] = sp
    st[o + NEXT] = n
    st[o + INFO] = info
    st[o + PFN] = m
    st[NODE * n + PREV] = s
    st[NODE * sp + NEXT] = s
    return s


@njit
def run_pop(st, q, m, obs):
    """vm_freelist_rem() of ``m``, the first chunk of a lazy run on queue ``q``: the run's
    node moves up one chunk in place (same slot, same place on the queue; a plain node
    when one chunk is left).  The page array's rule moves with it in Python
    (PageArray.shift_run).  Returns the order."""
    cfg = len(st) - CFG
    smb = st[cfg + C_SMB]
    s = st[smb + m]
    o = NODE * s
    info = st[o + INFO]
    c = (info >> NCH_SHIFT) & NCH_MASK
    order = (info & ORDER_MASK) - 1
    r = m + (1 << order)
    st[o + INFO] = (info & ~(NCH_MASK << NCH_SHIFT)) | ((c - 1 if c > 2 else 0) << NCH_SHIFT)
    st[o + PFN] = r
    st[smb + m] = 0
    st[smb + r] = s
    st[st[cfg + C_LC] + q] -= 1
    if obs:
        _log(st, _meta(st, q), LOG_REM, m, order, obs)
    return order


@njit
def _init_block(st, words, pool, m, order):
    """vm_phys_set_pool()'s vm_page_init_page() of the 2**order LAZYINIT block at ``m``
    (segment found by address), whose head was initialised already: every word becomes
    initialised, free, in ``pool``; counted in C_NINIT.  The head's lone entry is
    Python's to drop (LOG_INIT, or VmPhys.sync for a lazy run's chunk)."""
    cfg = len(st) - CFG
    B = st[cfg + C_B]
    n = 1 << order
    sg = st[cfg + C_SG]
    segind = 0
    while not st[sg + SEGW * segind] <= m < st[sg + SEGW * segind + 1]:
        segind += 1
    w = (segind << 8) | 4 | pool
    # Unsigned indices: numba drops its negative-index test and the loop becomes a block
    # store (a 16 MiB chunk: 0.2 us instead of 1.2; bench/RESULTS.md, issue 13).
    for j in range(np.uint64(m - B), np.uint64(m - B + n)):
        words[j] = w
    st[cfg + C_NINIT] += n - 1


@njit
def _set_pool(st, words, pool, m, order, q):
    """vm_phys_set_pool(): the 2**order block at ``m``, just taken off queue ``q``, moves
    to ``pool``.  A LAZYINIT block has only its head initialised: its words are written
    here (segment found by address) and logged (LOG_INIT) for Python's accounting."""
    cfg = len(st) - CFG
    B = st[cfg + C_B]
    nfo = st[cfg + C_NFO]
    n = 1 << order
    if (q // nfo) % st[cfg + C_NFP] == st[cfg + C_LAZY]:
        _init_block(st, words, pool, m, order)
        _log(st, _meta(st, q), LOG_INIT, m, order, OBS_LOG)
    else:
        for j in range(m - B, m - B + n):
            words[j] = (words[j] & 0xFFFC) | pool


@njit
def kernel_alloc_pages(st, words, base, pool, order, dfp, obs):
    """Kernel.alloc_pages' fast path in one compiled call: vm_phys_alloc_freelist_pages()
    on the first free list (queue table ``base``) -- the requested pool's smallest
    sufficient block, else the largest block of any pool from ``dfp`` (the default
    freepool) up, moved to ``pool`` whole and split there; the first chunk of a lazy run
    leaves the run here (run_pop; the page array follows at VmPhys.sync) -- and the
    block's ownership words (PG_PHYS_ALLOC: the pages of a free block share one word).
    Returns the page (+ LOGGED when the domain's log holds entries for Python), or -1
    with nothing changed (the caller takes the whole path: the other free lists).  With
    ``obs`` OBS_DIRECT the caller hands the block to the observers."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    lc = st[cfg + C_LC]
    fl = base + pool * nfo
    m = alloc_freelist_own(st, fl, order, obs)
    if m < 0:
        for oind in range(nfo - 1, order - 1, -1):
            for pind in range(dfp, st[cfg + C_NFP]):
                q = base + pind * nfo + oind
                if st[lc + q]:
                    s = st[NODE * q + NEXT]
                    m = st[NODE * s + PFN]
                    if (st[NODE * s + INFO] >> NCH_SHIFT) & NCH_MASK:
                        # A lazy run's first chunk: the run's node moves up one chunk,
                        # the chunk is initialised; the page array's rule moves when
                        # Python next looks (VmPhys.sync), not now.
                        run_pop(st, q, m, obs)
                        _init_block(st, words, pool, m, oind)
                        st[cfg + C_POPS] += 1
                    else:
                        vm_freelist_rem(st, q, m, obs)
                        _set_pool(st, words, pool, m, oind, q)
                    vm_phys_split_pages(st, m, oind, fl, order, True, obs)
                    break
            else:
                continue
            break
        if m < 0:
            return -1
    i = m - st[cfg + C_B]
    w = words[i] | 8
    for j in range(i, i + (1 << order)):
        words[j] = w
    return m + _logged(st, w, obs) * (LOGGED >> 2)


@njit
def find_queues_contig(st, queues, order, npages, low, top, amask, bmask, dfp):
    """vm_phys_find_queues_contig() for a run of at most a max-order block (``order``
    its order): the first free block head, smallest sufficient order first, pools from
    vm_default_freepool (``dfp``) up, queue order, whose address is in [low, top], not
    ``& amask`` and whose run does not cross ``bmask``.  A lazy run's chunks are tried in
    order.  The 64-bit masks come as signed words of the same bits; ``low``/``top`` are
    clamped to physical addresses by the caller.  Returns the page or -1."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    nfp = st[cfg + C_NFP]
    lc = st[cfg + C_LC]
    size = npages << 12
    for oind in range(order, nfo):
        for pind in range(dfp, nfp):
            q = queues + pind * nfo + oind
            if not st[lc + q]:
                continue
            s = st[NODE * q + NEXT]
            while s != q:
                o = NODE * s
                m = st[o + PFN]
                nch = (st[o + INFO] >> NCH_SHIFT) & NCH_MASK
                for _ in range(nch if nch else 1):
                    pa = m << 12
                    if low <= pa <= top and not pa & amask and \
                            not (pa ^ (pa + size - 1)) & bmask:
                        return m
                    m += 1 << oind
                s = st[o + NEXT]
    return -1


@njit
def vm_phys_enqueue_contig(st, words, m, npages, obs):
    """vm_phys_enqueue_contig() of a run whose pool is not LAZYINIT (enq_chunk is then
    vm_freelist_add): maximal aligned blocks at the tail of the first page's pool queues,
    without coalescing.  Requires: the run in one segment, its words dense."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    w = words[m - st[cfg + C_B]]
    fl = st[st[cfg + C_SG] + SEGW * (w >> 8) + 2] + (w & 3) * nfo
    m_end = m + npages
    if npages > 0:
        diff = m ^ (m + npages - 1)
        if diff:
            order = _fls(diff) - 1
            if order > nfo - 1:
                order = nfo - 1
            up = (m + (1 << order) - 1) & ~((1 << order) - 1)
            m = enq_blocks(st, m, up - m, fl, True, True, obs)
    order = nfo - 1
    while m + (1 << order) <= m_end:
        vm_freelist_add(st, fl + order, m, order, True, obs)
        m += 1 << order
    enq_blocks(st, m, m_end - m, fl, True, False, obs)


@njit
def _take_owned(st, words, m, npages):
    """The ownership test and change of a freed run: every page's word equal and
    allocated (PG_PHYS_ALLOC), then cleared.  Returns the cleared word, or -1 (not an
    owned run of one segment and pool: nothing changed)."""
    i = m - st[len(st) - CFG + C_B]
    w = words[i]
    if not w & 8:
        return -1
    for j in range(i + 1, i + npages):
        if words[j] != w:
            return -1
    w = w & 0xFFF7
    for j in range(i, i + npages):
        words[j] = w
    return w


@njit
def _logged(st, w, obs):
    """4 if the log of the domain of the segment in word ``w`` holds entries for
    VmPhys._flush (which nets them), else 0.  With ``obs`` OBS_DIRECT the call's queue
    changes were counted only and its net change (one run: the block or run taken or
    freed) goes to the observers from the caller: counted here as the one run handed
    over; the log then holds LOG_INIT entries (or a stage's LOG_FREED run) at most."""
    md = _seg_meta(st, w)
    if obs == OBS_DIRECT:
        st[st[md + 3] + LOG_SAVED] -= 1
    return 4 if st[md + 2] else 0


@njit
def _seg_meta(st, w):
    """The meta node of the domain of the segment in page word ``w``."""
    cfg = len(st) - CFG
    return _meta(st, st[st[cfg + C_SG] + SEGW * (w >> 8) + 2])


@njit
def kernel_free_pages(st, words, m, order, obs):
    """Kernel.free_pages in one compiled call: the ownership test and change and
    vm_phys_free_pages().  Requires: the block aligned and in the page array.  Returns
    0 (freed), -1 (not owned: nothing changed; the caller reports) or 1 (the words
    cleared, the queue work left to Python: a buddy only it can judge), + 4 when the
    domain's log holds entries.  With ``obs`` OBS_DIRECT the caller hands a freed block
    to the observers."""
    w = _take_owned(st, words, m, 1 << order)
    if w < 0:
        return -1
    if vm_phys_free_pages(st, words, m, order, -1, obs) >= 0:
        return 1 + _logged(st, w, OBS_LOG)     # (nothing changed on the queues)
    return _logged(st, w, obs)


@njit
def kernel_free_contig(st, words, m, npages, obs):
    """Kernel.free_contig in one compiled call: the ownership test and change and
    vm_phys_free_contig().  Requires: the run in the page array.  Returns 0 (freed), -1
    (not owned: nothing changed), or, with the words cleared and the queue work partly
    done, the stage Python finishes (a buddy only it can judge): 2 = both free_pages
    pieces, 3 = the last one; + 4 when the domain's log holds entries.  With ``obs``
    OBS_DIRECT the caller hands a freed run to the observers; at a stage, the part done
    here is logged as one run (LOG_FREED) and Python logs the rest."""
    cfg = len(st) - CFG
    w = _take_owned(st, words, m, npages)
    if w < 0:
        return -1
    stage = 0
    nfo = st[cfg + C_NFO]
    lo = m
    max_order = _fls(lo ^ (lo + npages)) - 1
    if max_order > nfo - 1:
        max_order = nfo - 1
    order_start = _fls(lo & -lo) - 1 if lo else 1 << 62
    m_start = m + (1 << order_start) if order_start < max_order else m
    e = lo + npages
    order_end = _fls(e & -e) - 1 if e else 1 << 62
    m_end = m + npages - (1 << order_end) if order_end < max_order else m + npages
    if m_start < m_end:
        vm_phys_enqueue_contig(st, words, m_start, m_end - m_start, obs)
    if order_start < max_order and \
            vm_phys_free_pages(st, words, m, order_start, -1, obs) >= 0:
        stage = 2
    elif order_end < max_order and \
            vm_phys_free_pages(st, words, m_end, order_end, -1, obs) >= 0:
        stage = 3
    if stage and obs == OBS_DIRECT:
        lo = m if stage == 3 else m_start
        if lo >= m_end:
            return stage + _logged(st, w, OBS_LOG)      # (nothing changed on the queues)
        _log(st, _seg_meta(st, w), LOG_FREED, lo, m_end - lo, OBS_LOG)
    return stage + _logged(st, w, obs)


@njit
def kernel_alloc_npages(st, words, fl, npages, out, obs):
    """Kernel.alloc_npages_runs' fast path in one compiled call, when the requested
    pool's queues (base ``fl``) of the first free list hold ``npages`` pages: their part
    of vm_phys_alloc_npages() (runs into ``out``, as alloc_npages_own) and the ownership
    words of every run.  Returns the pages taken, or -1 with nothing changed (the caller
    takes the whole path)."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    lc = st[cfg + C_LC]
    have = 0
    for oind in range(nfo):
        have += st[lc + fl + oind] << oind
    if have < npages:
        return -1
    out[0] = 0
    n = alloc_npages_own(st, fl, npages, 0, out, obs)
    B = st[cfg + C_B]
    for k in range(out[0]):
        i = out[1 + 2 * k] - B
        w = words[i] | 8
        for j in range(i, i + out[2 + 2 * k]):
            words[j] = w
    return n


@njit
def kernel_alloc_contig(st, words, domain, npages, low, high, amask, bmask, dfp, obs):
    """Kernel.alloc_contig in one compiled call: vm_phys_alloc_contig() for a run of at
    most a max-order block -- segments from the highest address down, each queue table
    once, find_queues_contig; whole free blocks taken, made DEFAULT (a LAZYINIT one
    initialised), the excess to the DEFAULT queue HEADS -- and the run's ownership
    words.  ``low``/``high`` clamped to physical addresses and the masks as in
    find_queues_contig.  Returns the first page, -1 (none; nothing changed) or -2
    (nothing changed: a larger run, or a block of a lazy run to take, which the caller's
    Python path handles).  With ``obs`` OBS_DIRECT the caller hands the run to the
    observers."""
    cfg = len(st) - CFG
    nfo = st[cfg + C_NFO]
    nfp = st[cfg + C_NFP]
    default = st[cfg + C_DEFAULT]
    sg = st[cfg + C_SG]
    smb = st[cfg + C_SMB]
    B = st[cfg + C_B]
    if low >= high:
        return -1
    order = _fls(npages - 1)
    if order >= nfo:
        return -2
    size = npages << 12
    queues = -1
    m_run = -1
    for k in range(st[cfg + C_NSEG] - 1, -1, -1):
        o = sg + SEGW * k
        start = st[o] << 12
        end = st[o + 1] << 12
        if start >= high or st[o + 3] != domain:
            continue
        if low >= end:
            break
        pa_start = start if low <= start else low
        pa_end = high if high < end else end
        if pa_end - pa_start < size or st[o + 2] == queues:
            continue
        queues = st[o + 2]
        m_run = find_queues_contig(st, queues, order, npages, low, high - size, amask, bmask,
                                   dfp)
        if m_run >= 0:
            break
    if m_run < 0:
        return -1
    end = m_run + npages
    m = m_run
    while m < end:                  # every block a plain node?
        s = st[smb + m]
        if s == 0 or (st[NODE * s + INFO] >> NCH_SHIFT) & NCH_MASK:
            return -2
        m += 1 << ((st[NODE * s + INFO] & ORDER_MASK) - 1)
    m = m_run
    while m < end:
        info = st[NODE * st[smb + m] + INFO]
        q = info >> Q_SHIFT
        pool = (q // nfo) % nfp
        oind = vm_freelist_rem(st, q, m, obs)
        if pool != default:
            _set_pool(st, words, default, m, oind, q)
        m += 1 << oind
    enq_blocks(st, end, m - end, queues + default * nfo, False, True, obs)
    w = words[m_run - B] | 8
    for j in range(m_run - B, end - B):
        words[j] = w
    if obs == OBS_DIRECT:           # (the run handed over: one net run, counted)
        st[st[_meta(st, queues) + 3] + LOG_SAVED] -= 1
    return m_run


def _no_observer(m: int, npages: int) -> None:
    """VmPhys.net_add / net_rem with no observer (never called: ``obs`` is 0)."""
    raise AssertionError("net change handed over with no observer")


class _Core(NamedTuple):
    """The queue core's functions called by VmPhys's methods."""

    add: Callable
    rem: Callable
    split: Callable
    enq_blocks: Callable
    enq_chunks: Callable
    alloc_own: Callable
    npages_own: Callable
    free: Callable
    insert: Callable
    run_pop: Callable
    find_queues: Callable
    net: Callable


_CORE = (vm_freelist_add, vm_freelist_rem, vm_phys_split_pages, enq_blocks, enq_chunks,
         alloc_freelist_own, alloc_npages_own, vm_phys_free_pages, node_insert, run_pop,
         find_queues_contig, log_net)
for _f in _CORE:       # VmPhys's methods call these from Python too (physmem.jit: one dispatcher)
    _f.python = True


# Kernel's fast paths: VmPhys attribute -> function.
_FUSED = (("kalloc", kernel_alloc_pages), ("kfree", kernel_free_pages),
          ("kfreec", kernel_free_contig), ("kallocn", kernel_alloc_npages),
          ("kcontig", kernel_alloc_contig))


class _CompiledCore:
    """:class:`_Core`'s functions compiled, each on its first use (then an attribute)."""

    def __getattr__(self, name: str) -> Callable:
        f = _CORE[_Core._fields.index(name)].entry()
        setattr(self, name, f)
        return f


class HeadsView(Mapping):
    """The free-block heads as a read-only mapping, as the dict they were before issue
    13's third round (:attr:`VmPhys.heads`).  Slow: for readers and tests."""

    def __init__(self, phys: VmPhys) -> None:
        self.phys = phys

    def _slot(self, m: int) -> int:
        p = self.phys
        if m < 0:
            return -1 - m if -1 - m < p.nq else -1
        s = p.slot_of(m)
        return s if s else -1

    def __getitem__(self, m: int) -> list[int]:
        s = self._slot(m)
        if s < 0:
            raise KeyError(m)
        nv = self.phys.nv
        o = NODE * s
        node = [nv[NODE * nv[o + PREV] + PFN], nv[NODE * nv[o + NEXT] + PFN]]
        info = nv[o + INFO]
        if s < self.phys.nq:
            return [*node, -1]
        node.append((info & ORDER_MASK) - 1)
        nch = (info >> NCH_SHIFT) & NCH_MASK
        return [*node, nch] if nch else node

    def __contains__(self, m: object) -> bool:
        return isinstance(m, int) and self._slot(m) >= 0

    def slots(self) -> Iterator[int]:
        """The slots in use (sentinels excluded)."""
        nv = self.phys.nv
        for d, (lo, _hi) in enumerate(self.phys.slot_ranges):
            for s in range(lo, nv[NODE * (self.phys.nq + d) + 1]):
                if nv[NODE * s + INFO]:
                    yield s

    def __iter__(self) -> Iterator[int]:
        yield from range(-1, -1 - self.phys.nq, -1)
        nv = self.phys.nv
        for s in self.slots():
            yield nv[NODE * s + PFN]

    def __len__(self) -> int:
        return self.phys.nq + sum(1 for _ in self.slots())


class VmPhys:
    """The state of sys/vm/vm_phys.c: segments, free lists, free queues, default pool."""

    def __init__(self, param: VmParam) -> None:
        self.param = param
        self.NFO = param.nfreeorder
        self.NFP = param.nfreepool
        self.NFL = param.nfreelist
        self.LAZYINIT = param.freepool_lazyinit  # None where the pool does not exist
        self.DEFAULT = param.freepool_default
        self.DIRECT = param.freepool_direct
        self.segs: list[Seg] = []
        self.ndomains = 1                       # vm_ndomains
        self.mem_affinity: list[MemAffinity] | None = None
        self.nfreelists = 0                     # vm_nfreelists
        self.flind_of: list[int] = []           # vm_freelist_to_flind
        self.search_freelists: list[int] = []
        self.search_bases: list[list[int]] = []  # per domain: queue bases of those lists
        self.default_freepool = self.DEFAULT    # vm_default_freepool
        self.initdone = [False] * param.maxmemdom  # vm_phys_lazy_init_domain's flags
        nq = param.maxmemdom * self.NFL * self.NFP * self.NFO
        self.nq = nq
        self.pages: PageArray = PageArray(0, 0)
        self._arrays(0, 0, [])
        self.seg_ends: list[int] = []           # seg.end for bisection
        self.domain_locks = [threading.Lock() for _ in range(param.maxmemdom)]
        self.initialized = False
        self.drain_inits = 0  # page structures the LAZYINIT drain initialised
        # Observers of queue changes (the extent mirror, pglist): called with runs
        # (m, npages) that joined / left the free set, from the domain's log (_flush) or,
        # for Kernel's fast paths, from Kernel itself (net_add / net_rem).
        self.on_add: list = []
        self.on_rem: list = []
        self.obs = 0                    # the fast paths' obs: 0 or OBS_DIRECT (observe)
        self.net_add: Callable = _no_observer
        self.net_rem: Callable = _no_observer
        self.use_jit(False)

    def _arrays(self, base: int, npages: int, dom_pages: list[int]) -> None:
        """Create the state array of the queue core (module comment above it) for pages
        [base, base + npages), with ``dom_pages[d]`` pages in domain d: sentinels, one meta
        node and a slot range per domain, the counts, the segments, the logs, the slot map
        and the configuration.  Zero-filled: what is never written costs no memory."""
        NFO, NFP, NFL = self.NFO, self.NFP, self.NFL
        nq = self.nq
        ndom = self.param.maxmemdom
        dom_pages = list(dom_pages) + [0] * (ndom - len(dom_pages))
        first = nq + ndom
        nslots = first + sum(dom_pages) + ndom
        # A log holds what one compiled call changes: at most a block's worth of pages of
        # alloc_npages, or one entry per max-order chunk of a run enqueued, plus splits.
        per = [(n >> (NFO - 1)) + 4 * (1 << (NFO - 1)) + 8 * NFO for n in dom_pages]
        nseg = self.param.physseg_max
        lc = NODE * nslots
        sg = lc + nq
        lg = sg + SEGW * nseg
        sm = lg + 3 * sum(per)
        cfg = sm + max(npages, 1)
        self.state = st = zeros(cfg + CFG, np.int64)
        st[cfg:cfg + 11] = (NFO, NFP, -1 if self.LAZYINIT is None else self.LAZYINIT,
                            NFL * NFP * NFO, nq, lc, sg, sm - base, base, 0, self.DEFAULT)
        self.smb = sm - base
        self.lcnt_a = st[lc:lc + nq]
        self.segs_a = st[sg:sg + SEGW * nseg]
        self.B = base
        self.span = npages
        self.nv = nv = memoryview(st)
        self.lcnt = nv[lc:lc + nq]
        for q in range(nq):
            nv[NODE * q + PREV] = nv[NODE * q + NEXT] = q
            nv[NODE * q + INFO] = q << Q_SHIFT
            nv[NODE * q + PFN] = -1 - q
        slot, at = first, lg
        self.slot_ranges = []
        for d in range(ndom):
            md = NODE * (nq + d)
            nv[md + 1] = slot
            # The log's first entry's words are counters: LOG_CHANGES, LOG_SAVED (log_net).
            nv[md + 3] = at + 3
            self.slot_ranges.append((slot, slot + dom_pages[d] + 1))
            slot += dom_pages[d] + 1
            at += 3 * per[d]
        self.log_cap = [p - 1 for p in per]
        self._log_md = [NODE * (nq + d) for d in range(ndom)]     # (for _flush)
        self.cfg = cfg
        # Pages the queue core initialises are counted in the state (PageArray.ninit).
        self.pages.count_into(nv[cfg + C_NINIT:cfg + C_NINIT + 1])
        self.pages.sync = weakref.WeakMethod(self.sync_all)
        # Per domain: each lazy run's first chunk head -> its node's slot (which run_pop
        # keeps), and the C_POPS count the last sync saw.
        self.run_nodes: list[dict[int, int]] = [{} for _ in range(ndom)]
        self._pops_seen = [0] * ndom
        self._outs = [np.zeros(2 * (1 << (NFO - 1)) + 2, np.int64) for _ in range(ndom)]

    def use_jit(self, on: bool) -> None:
        """Run the queue core compiled (``on``, once boot is over: the first call imports
        numba and compiles) or as plain Python on memoryviews (boot, PHYSMEM_JIT=0).  With
        NUMBA_DISABLE_JIT=1 the compiled paths run as plain Python on the arrays."""
        self.jitted = on = bool(on) and os.environ.get("PHYSMEM_JIT", "1") != "0"
        # Kernel's fused fast paths (None: Kernel calls the methods), each compiled on its
        # first call (numba is imported then) and then numba's dispatcher itself.
        for name, fn in _FUSED:
            setattr(self, name, self._first(name, fn) if on else None)
        # With NUMBA_DISABLE_JIT=1 the "compiled" functions are plain Python: they get
        # memoryviews (faster there, and their items are ints, not numpy scalars).
        plain = not on or not jit_enabled()
        self._net_logs = not plain      # _flush nets a log of several changes
        self._st = self.nv if plain else self.state
        self.kwords = self.pages.mv if plain else self.pages.words
        if on:
            self._k = _CompiledCore()
            self._outv = self._outs if not plain else [memoryview(o) for o in self._outs]
        else:
            self._k = _Core(*(f.py for f in _CORE))
            self._outv = [memoryview(o) for o in self._outs]

    def tier_jit(self, after: int) -> None:
        """Run the queue core as plain Python for the next ``after`` calls of Kernel's fast
        paths, then compiled (:meth:`use_jit`): numba's import and cache load (~0.5 s and
        ~100 MiB, once per process) pay back only over a long run, as a JIT's tiers do.
        Until then each fast path answers "nothing changed" and Kernel takes the plain
        path; the call that reaches ``after`` switches (see :meth:`_tier_up`)."""
        self.use_jit(False)
        if os.environ.get("PHYSMEM_JIT", "1") == "0":
            return
        self._tier_left = after
        for name, _fn in _FUSED:
            # -2 is alloc_contig's "nothing changed", -1 the others'; alloc_pages' -1
            # also means "none on this free list" (Kernel.alloc_freelist_pages answers
            # NULL), so the plain tier declines it with -2.
            setattr(self, name, self._countdown(-2 if name in ("kcontig", "kalloc") else -1))

    def _countdown(self, decline: int) -> Callable:
        def countdown(*args):
            self._tier_left -= 1
            if self._tier_left <= 0:
                self._tier_up()
            return decline
        return countdown

    def _tier_up(self) -> None:
        """Switch to the compiled core (from a fast path, which holds its domain's lock)
        when every other domain lock is free: taken without blocking, so no operation of
        another thread sees half the switch and no lock order is inverted.  Otherwise the
        next fast-path call tries again."""
        taken = []
        busy = 0
        for lock in self.domain_locks:
            if lock.acquire(blocking=False):
                taken.append(lock)
            else:
                busy += 1       # the caller's own lock is one of these
        try:
            if busy == 1:
                self.use_jit(True)
        finally:
            for lock in taken:
                lock.release()

    def _first(self, name: str, fn: Lazy) -> Callable:
        """A fast path's first call: compile it, make it the attribute, call it."""
        def first(*args):
            f = fn.entry()
            setattr(self, name, f)
            return f(*args)
        return first


    def _obs(self) -> int:
        return 1 if self.on_add or self.on_rem else 0

    def observe(self, add: Callable, rem: Callable) -> None:
        """Attach observers of the free set: ``add(m, npages)`` / ``rem(m, npages)`` get
        each run of pages that joined / left it.  Requires: every domain's lock, or no
        other thread."""
        self.on_add.append(add)
        self.on_rem.append(rem)
        self._pick_net()

    def unobserve(self, add: Callable, rem: Callable) -> None:
        """Detach observers attached by :meth:`observe`."""
        self.on_add.remove(add)
        self.on_rem.remove(rem)
        self._pick_net()

    def _pick_net(self) -> None:
        """The hand-off of Kernel's fast paths that take or free one block or run
        (alloc_pages, alloc_freelist_pages, alloc_contig, free_pages, free_contig): they
        run with ``obs`` OBS_DIRECT, the queue changes counted only, and hand the call's
        net change -- that run, which is what log_net would leave -- to :attr:`net_rem`
        / :attr:`net_add`: the one observer itself, or a loop over several.  (Their
        Python paths, alloc_npages and LOG_INIT entries keep the log.)"""
        adds, rems = tuple(self.on_add), tuple(self.on_rem)
        self.obs = OBS_DIRECT if adds else 0
        if len(adds) == 1:
            self.net_add, self.net_rem = adds[0], rems[0]
        elif adds:
            def net_add(m: int, npages: int) -> None:
                for f in adds:
                    f(m, npages)

            def net_rem(m: int, npages: int) -> None:
                for f in rems:
                    f(m, npages)
            self.net_add, self.net_rem = net_add, net_rem
        else:
            self.net_add = self.net_rem = _no_observer

    def _flush(self, domain: int) -> None:
        """Hand the domain's logged queue changes to the observers and move the lone
        entries of LAZYINIT blocks the queue core initialised.  Requires: the domain's
        lock.

        Observers get runs, ``on_add(m, npages)`` / ``on_rem(m, npages)``: a logged block,
        or -- when the log holds several queue changes -- the net change of the free set
        (:func:`log_net`: a split-then-take is one page leaving it, a merging free one page
        joining it), which leaves any map of the free set as the changes one by one would
        (docs/implementation.md, "The extent mirror"); :meth:`queue_counts` says how
        many of each."""
        nv = self.nv
        md = self._log_md[domain]
        n = nv[md + 2]
        at = nv[md + 3]
        if n == 1 and nv[at] <= LOG_REM:       # one queue change (the plain paths')
            nv[md + 2] = 0
            for f in self.on_add if nv[at] == LOG_ADD else self.on_rem:
                f(nv[at + 1], 1 << nv[at + 2])
            return
        if not n:
            return
        if n > self.log_cap[domain]:    # (sized for the largest call: _arrays; never -O'd)
            raise InvariantError(f"queue core: domain {domain}'s log overflowed ({n} "
                                 f"entries, room for {self.log_cap[domain]})")
        if n > 1 and self._net_logs and nv[at + 3 * n - 3] != LOG_NET:
            # (compiled only: netting in Python costs more than the extent work it saves)
            n = self._k.net(self._st, md, 3 * self.log_cap[domain])
        it = iter(nv[at:at + 3 * n].tolist())
        nv[md + 2] = 0
        on_add, on_rem = self.on_add, self.on_rem
        for kind, m, x in zip(it, it, it, strict=True):
            if kind == LOG_FREED:       # x: pages
                for f in on_add:
                    f(m, x)
            elif kind == LOG_TAKEN:
                for f in on_rem:
                    f(m, x)
            elif kind == LOG_NET:       # (counted by log_net)
                pass
            elif kind == LOG_ADD:       # x: the block's order
                for f in on_add:
                    f(m, 1 << x)
            elif kind == LOG_REM:
                for f in on_rem:
                    f(m, 1 << x)
            else:               # LOG_INIT: vm_phys_set_pool of a LAZYINIT block (counted)
                self.pages.lone.pop(m, None)

    def sync(self, domain: int) -> None:
        """Bring the page array's lazy runs of ``domain`` up to their nodes.  Compiled
        kernel_alloc_pages takes a run's first chunk without calling Python (run_pop: the
        node moves up in place, the chunk's words are written, C_POPS counts it); the
        page array's rule and the old head's lone entry move here, a run at a time, when
        Python next looks at them.  Until then ``PageArray.raw`` answers right (a chunk
        taken has dense words, which win over the rule and the lone entry) but ``runs``,
        ``run_of`` and ``lone`` lag.  Requires: the domain's free lock."""
        pops = self.nv[self.cfg + C_POPS]
        if pops == self._pops_seen[domain]:
            return
        self._pops_seen[domain] = pops
        nv, pages = self.nv, self.pages
        nodes = self.run_nodes[domain]
        for m0, s in list(nodes.items()):
            m = nv[NODE * s + PFN]
            if m == m0:
                continue
            del nodes[m0]
            pages.lone.pop(m0, None)    # (its chunk's words are dense now)
            n, step = pages.runs[m0][:2]
            info = nv[NODE * s + INFO]
            if info and (info & ORDER_MASK) == self.NFO and \
                    ((info >> Q_SHIFT) // self.NFO) % self.NFP == self.LAZYINIT and \
                    0 < m - m0 < n * step and not (m - m0) % step:
                # The slot still holds the run (or its last chunk, a plain node).
                r = pages.shift_run(m0, (m - m0) // step)
                if r in pages.runs:
                    nodes[r] = s
            else:
                # Its last chunk was taken too (the slot freed, maybe reused since).
                pages.del_run(m0)

    def _sync_pfn(self, m: int) -> None:
        """:meth:`sync` of page m's domain (found by address: reading m's word could fault
        in an untouched page of the array), if any domain is behind."""
        if self.nv[self.cfg + C_POPS] != min(self._pops_seen[:self.ndomains]):
            seg = self.paddr_to_seg(m << PAGE_SHIFT)
            if seg is not None:
                self.sync(seg.domain)

    def sync_all(self) -> None:
        """:meth:`sync` for the readers (INVARIANTS, digests, snapshots: the page array's
        ``lone_items``), which take no domain lock: each domain is synced under its lock,
        taken without blocking (a busy lock means another operation is running, which
        the readers do not support anyway)."""
        if self.nv[self.cfg + C_POPS] == min(self._pops_seen[:self.ndomains]):
            return
        for d in range(self.ndomains):
            lock = self.domain_locks[d]
            if lock.acquire(blocking=False):
                try:
                    self.sync(d)
                finally:
                    lock.release()

    def queue_counts(self) -> tuple[int, int]:
        """(queue changes logged for the observers, runs handed to them) since boot, over
        every domain: each enqueue or dequeue of a block while observers are attached is
        one change; several in one call reach the observers as their net runs
        (:meth:`_flush`).  Requires: no thread changing the queues."""
        nv = self.nv
        changes = saved = 0
        for md in self._log_md:
            at = nv[md + 3]
            changes += nv[at + LOG_CHANGES]
            saved += nv[at + LOG_SAVED]
        return changes, changes - saved

    def log_at(self, domain: int) -> int:
        """Where the domain's log length is kept (non-zero: :meth:`_flush` has work; a
        fast path that calls _logged says so in its result instead)."""
        return NODE * (self.nq + domain) + 2

    def _dom(self, q: int) -> int:
        return q // (self.NFL * self.NFP * self.NFO)

    def slot_of(self, m: int) -> int:
        """m's node slot, 0 if ``m`` is no head (nor the first chunk of a lazy run)."""
        return self.nv[self.smb + m] if 0 <= m - self.B < self.span else 0

    @property
    def heads(self) -> HeadsView:
        """The heads as the mapping they were before issue 13's third round, read only:
        ``heads[m] = [prev, next, order]`` (``+ [nchunks]`` for a lazy run) and the
        sentinels ``heads[-1 - q] = [last, first, -1]`` (readers, INVARIANTS, tests)."""
        return HeadsView(self)

    # ---------------------------------------------------------------------------------------
    # Segments and initialisation
    # ---------------------------------------------------------------------------------------
    def register_domains(self, ndomains: int, affinity: list[MemAffinity]) -> None:
        """vm_phys_register_domains(): record the NUMA layout (before add_seg / init).

        With one domain the affinity table is not kept, as in the kernel."""
        if ndomains > 1 and self.param.numa:
            self.ndomains = ndomains
            self.mem_affinity = list(affinity)

    def _create_seg_domain(self, start: int, end: int, domain: int) -> None:
        """_vm_phys_create_seg(): insert a segment, keeping the array sorted by address."""
        if len(self.segs) >= self.param.physseg_max:
            raise InvariantError("vm_phys_create_seg: increase VM_PHYSSEG_MAX")
        assert 0 <= domain < self.ndomains, "vm_phys_create_seg: invalid domain provided"
        i = len(self.segs)
        while i > 0 and self.segs[i - 1].start >= end:
            i -= 1
        self.segs.insert(i, Seg(start, end, domain))

    def _create_seg(self, start: int, end: int) -> None:
        """vm_phys_create_seg(): cut the piece at NUMA affinity boundaries."""
        aff = self.mem_affinity
        if not self.param.numa or aff is None:
            self._create_seg_domain(start, end, 0)
            return
        for a in aff:
            if a.end <= start:
                continue
            if a.start > start:
                raise InvariantError(f"No affinity info for start {start:x}")
            if a.end >= end:
                self._create_seg_domain(start, end, a.domain)
                return
            self._create_seg_domain(start, a.end, a.domain)
            start = a.end
        raise InvariantError("Reached end of affinity info")

    def add_seg(self, start: int, end: int) -> None:
        """vm_phys_add_seg(): add ``[start, end)``, split at the LOWMEM and DMA32 boundaries.

        Requires: both page aligned (the kernel asserts nothing else)."""
        assert (start | end) & ((1 << PAGE_SHIFT) - 1) == 0, "vm_phys_add_seg: unaligned"
        paddr = start
        for boundary in self.param.split_points():
            if paddr < boundary < end:
                self._create_seg(paddr, boundary)
                paddr = boundary
        self._create_seg(paddr, end)

    def init(self) -> None:
        """vm_phys_init(): create the free lists, give each segment its queues, coalesce.

        Also creates the page array over the segments (vm_page_startup allocates it before
        calling vm_phys_init; one spare entry follows the last page)."""
        p = self.param
        NFL, NFP, NFO = self.NFL, self.NFP, self.NFO
        flag = [0] * NFL
        npages = 0
        for seg in reversed(self.segs):
            if p.freelist_lowmem is not None and seg.end <= p.lowmem_boundary:
                flag[p.freelist_lowmem] = 1
            elif p.freelist_dma32 is not None and (
                    p.dma32_npages_threshold is None or npages > p.dma32_npages_threshold) \
                    and seg.end <= p.dma32_boundary:
                flag[p.freelist_dma32] = 1
            else:
                npages += (seg.end - seg.start) >> PAGE_SHIFT
                flag[p.freelist_default] = 1
        for fl in range(1, NFL):
            flag[fl] += flag[fl - 1]
        self.nfreelists = flag[NFL - 1]
        if self.nfreelists <= 0:
            raise InvariantError("vm_phys_init: no free lists")
        self.flind_of = [f - 1 for f in flag]
        # Free-list ids in search order, one per distinct existing flind (see alloc_pages).
        seen: set[int] = set()
        self.search_freelists = []
        for fl, flind in enumerate(self.flind_of):
            if flind >= 0 and flind not in seen:
                seen.add(flind)
                self.search_freelists.append(fl)
        for seg in self.segs:
            if p.freelist_lowmem is not None and seg.end <= p.lowmem_boundary:
                flind = self.flind_of[p.freelist_lowmem]
            elif p.freelist_dma32 is not None and seg.end <= p.dma32_boundary:
                flind = self.flind_of[p.freelist_dma32]
            else:
                flind = self.flind_of[p.freelist_default]
            assert flind >= 0, "vm_phys_init: flind < 0"
            seg.flind = flind
            seg.fq = (seg.domain * NFL + flind) * NFP * NFO
        # Coalesce segments that are contiguous and share the same free queues.
        segs = self.segs
        i = 1
        while i < len(segs):
            if segs[i - 1].end == segs[i].start and segs[i - 1].fq == segs[i].fq:
                assert segs[i - 1].domain == segs[i].domain
                segs[i - 1].end = segs[i].end
                del segs[i]
            else:
                i += 1
        for seg in segs:
            seg.spfn, seg.epfn = seg.start >> PAGE_SHIFT, seg.end >> PAGE_SHIFT
        self.seg_ends = [s.end for s in segs]
        self.search_bases = [[(d * NFL + self.flind_of[fl]) * NFP * NFO
                              for fl in self.search_freelists]
                             for d in range(self.param.maxmemdom)]
        self.default_freepool = self.LAZYINIT if self.LAZYINIT is not None else self.DEFAULT
        if segs:
            lo = segs[0].spfn
            hi = max(s.epfn for s in segs)
            self.pages = PageArray(lo, hi - lo + 1, [(s.spfn, s.epfn) for s in segs])
        self.setup_queues()
        self.initialized = True

    def setup_queues(self) -> None:
        """Empty queues for the segments and the page array (vm_phys_init; a snapshot's
        rebuild), run as plain Python until :meth:`use_jit`."""
        dom_pages = [0] * self.param.maxmemdom
        for seg in self.segs:
            dom_pages[seg.domain] += seg.epfn - seg.spfn
        self._arrays(self.pages.base_pfn, self.pages.npages, dom_pages)
        for i, seg in enumerate(self.segs):
            self.segs_a[SEGW * i:SEGW * i + SEGW] = (seg.spfn, seg.epfn, seg.fq, seg.domain)
        self.state[len(self.state) - CFG + C_NSEG] = len(self.segs)
        self.use_jit(False)

    # -- address lookups ---------------------------------------------------------------------
    def lookup_segind(self, pa: int) -> int:
        """vm_phys_lookup_segind(): index of the first segment whose end is above ``pa``."""
        return bisect_right(self.seg_ends, pa)

    def paddr_to_seg(self, pa: int) -> Seg | None:
        """vm_phys_paddr_to_seg(): the segment holding ``pa``, or None."""
        i = bisect_right(self.seg_ends, pa)
        if i < len(self.segs) and pa >= self.segs[i].start:
            return self.segs[i]
        return None

    def paddr_to_vm_page(self, pa: int) -> int | None:
        """vm_phys_paddr_to_vm_page(): the page (pfn) at ``pa``, or None outside every
        segment."""
        return pa >> PAGE_SHIFT if self.paddr_to_seg(pa) is not None else None

    def domain(self, pa: int) -> int:
        """vm_phys_domain(): the NUMA domain of ``pa`` by the affinity table.

        Quirk kept from the kernel: ``mem_affinity[].end`` is tested inclusively, so the first
        page after one domain's range is charged to that domain.  -1 if no entry matches."""
        if self.ndomains == 1 or not self.param.numa or self.mem_affinity is None:
            return 0
        for a in self.mem_affinity:
            if a.start <= pa <= a.end:
                return a.domain
        return -1

    # -- page fields ---------------------------------------------------------------------------
    def order_of(self, m: int) -> int:
        """``m->order``: the order of the free block that ``m`` heads, else VM_NFREEORDER.

        Raises UninitializedPageError for a page structure that was never initialised."""
        if 0 <= m - self.B < self.span:
            s = self.nv[self.smb + m]
            if s:
                return (self.nv[NODE * s + INFO] & ORDER_MASK) - 1
        if self.pages.runs:
            self._sync_pfn(m)
            if self.pages.run_of(m) >= 0:
                return self.NFO - 1      # the head of a later chunk of a lazy run
        if not self.pages.raw(m):
            raise UninitializedPageError(
                f"page {m << PAGE_SHIFT:#x}: reading order of an uninitialised vm_page")
        return self.NFO

    def pool_of(self, m: int) -> int:
        """``m->pool``."""
        return self.pages.word(m) & POOL_MASK

    def segind_of(self, m: int) -> int:
        """``m->segind``."""
        return self.pages.word(m) >> SEGIND_SHIFT

    @property
    def head_order(self) -> dict[int, int]:
        """Every free-block head and its order, as a new dict (for readers and checkers)."""
        step = 1 << (self.NFO - 1)
        return {p: node[2] for m, node in self.heads.items() if m >= 0
                for p in range(m, m + (node[3] if len(node) > 3 else 1) * step, step)}

    # ---------------------------------------------------------------------------------------
    # The two queue primitives (the queue core's, plus lazy runs and observers)
    # ---------------------------------------------------------------------------------------
    def freelist_add(self, q: int, m: int, order: int, tail: bool) -> None:
        """vm_freelist_add(): put head ``m`` of a 2**order block on queue ``q``.

        ``q`` is ``fl + order`` for a pool's queue base ``fl``.  Like the kernel, it sets the
        head's order and does not touch its pool."""
        obs = self._obs()
        self._k.add(self._st, q, m, order, tail, obs)
        if obs:
            self._flush(self._dom(q))

    def freelist_rem(self, q: int, m: int) -> None:
        """vm_freelist_rem(): unlink head ``m`` from queue ``q``; its order becomes
        VM_NFREEORDER.  A chunk of a lazy run leaves the run first."""
        s = self.slot_of(m)
        obs = self._obs()
        if not s or (self.nv[NODE * s + INFO] >> NCH_SHIFT) & NCH_MASK:
            d = self._dom(q)
            self.sync(d)
            if s:       # the first chunk (queue-head pops, the drain): the run moves up
                nodes = self.run_nodes[d]
                del nodes[m]
                r = self.pages.shift_run(m)
                if r in self.pages.runs:
                    nodes[r] = s
                self._k.run_pop(self._st, q, m, obs)
                if obs:
                    self._flush(d)
                return
            self._run_detach(m)
        self._k.rem(self._st, q, m, obs)
        if obs:
            self._flush(self._dom(q))

    def queue_first(self, q: int) -> int | None:
        """TAILQ_FIRST of queue ``q``."""
        s = self.nv[NODE * q + NEXT]
        return self.nv[NODE * s + PFN] if s != q else None

    def queue_iter(self, q: int) -> Iterator[int]:
        """TAILQ_FOREACH over queue ``q``, head to tail."""
        nv = self.nv
        s = nv[NODE * q + NEXT]
        while s != q:
            o = NODE * s
            info = nv[o + INFO]
            m = nv[o + PFN]
            nch = (info >> NCH_SHIFT) & NCH_MASK
            if nch:                 # a lazy run: its chunk heads in queue order
                order = (info & ORDER_MASK) - 1
                yield from range(m, m + (nch << order), 1 << order)
            else:
                yield m
            s = nv[o + NEXT]

    # -- lazy runs ---------------------------------------------------------------------------
    def _run_detach(self, m: int) -> None:
        """For vm_freelist_rem: make the chunk at ``m``, a later chunk of a lazy run, an
        ordinary node in place; the run's chunks before and after it stay runs (or single
        nodes) around it in the queue.  Its head's entry and the next chunk's become
        stored entries.  (The first chunk leaves by run_pop.)

        Requires: ``m`` the head of a later chunk of a lazy run; the domain's free lock,
        the domain synced."""
        nv, pages = self.nv, self.pages
        ins = self._k.insert
        st = self._st
        m0 = pages.run_of(m)
        assert m0 >= 0, f"page {m << PAGE_SHIFT:#x} is not on a free queue"
        s0 = self.slot_of(m0)
        o0 = NODE * s0
        info = nv[o0 + INFO]
        c = (info >> NCH_SHIFT) & NCH_MASK
        order = (info & ORDER_MASK) - 1
        plain = info & ~(NCH_MASK << NCH_SHIFT)
        nc, step, w, dense = pages.del_run(m0)
        assert nc == c and step == 1 << order
        nodes = self.run_nodes[self._dom(info >> Q_SHIFT)]
        j = (m - m0) >> order                  # chunks before m (at least one)
        rear = c - j - 1                        # chunks after m
        nv[o0 + INFO] = plain | ((j if j > 1 else 0) << NCH_SHIFT)
        if j > 1:
            pages.add_run(m0, j, step, w, dense)
        else:
            del nodes[m0]
        for h in (m, m + step) if rear else (m,):
            if h not in dense:
                pages.lone[h] = w       # by rule until now; initialised, LAZYINIT
        sm_ = ins(st, s0, m, plain)
        if rear:
            sr = ins(st, sm_, m + step, plain | ((rear if rear > 1 else 0) << NCH_SHIFT))
            if rear > 1:
                pages.add_run(m + step, rear, step, w, dense)
                nodes[m + step] = sr

    def qindex(self, domain: int, flind: int, pool: int, order: int) -> int:
        """Index of vm_phys_free_queues[domain][flind][pool][order]."""
        return ((domain * self.NFL + flind) * self.NFP + pool) * self.NFO + order

    # ---------------------------------------------------------------------------------------
    # Building blocks
    # ---------------------------------------------------------------------------------------
    def split_pages(self, m: int, oind: int, fl: int, order: int, tail: bool) -> None:
        """vm_phys_split_pages(): keep the lowest 2**order pages of the 2**oind block at
        ``m`` and queue the upper halves on pool queue base ``fl``, largest first."""
        obs = self._obs()
        self._k.split(self._st, m, oind, fl, order, tail, obs)
        if obs:
            self._flush(self._dom(fl))

    def enq_chunk(self, fl: int, m: int, order: int, tail: bool) -> None:
        """vm_phys_enq_chunk(): queue a block; if it is in the LAZYINIT pool, initialise the
        page after it (the head of the next boot chunk -- with no bound check)."""
        assert 0 <= order < self.NFO, f"vm_phys_enq_chunk: invalid order {order}"
        self.freelist_add(fl + order, m, order, tail)
        if self.LAZYINIT is not None:
            w = self.pages.word(m)
            if w & POOL_MASK == self.LAZYINIT:
                self.pages.init_page(m + (1 << order), w >> SEGIND_SHIFT, self.LAZYINIT)

    def enq_beg(self, m: int, npages: int, fl: int, tail: bool) -> None:
        """vm_phys_enq_beg(): queue ``[m, m + npages)``, whose start is aligned, as blocks
        of decreasing size."""
        assert npages == 0 or m & ((1 << (fls(npages) - 1)) - 1) == 0, \
            f"vm_phys_enq_beg: page {m:#x} and npages {npages} are misaligned"
        if npages > 1 and self._plain(m):
            self._enq_blocks(m, npages, fl, tail, False)
            return
        while npages > 0:
            assert not self.slot_of(m), f"vm_phys_enq_beg: page {m:#x} is a free head"
            order = npages.bit_length() - 1
            self.enq_chunk(fl, m, order, tail)
            m += 1 << order
            npages -= 1 << order

    def enq_range(self, m: int, npages: int, fl: int, tail: bool) -> int:
        """vm_phys_enq_range(): queue ``[m, m + npages)``, whose end is aligned, as blocks
        of increasing size.  Returns the page after the range."""
        assert npages == 0 or (m + npages) & ((1 << (fls(npages) - 1)) - 1) == 0, \
            f"vm_phys_enq_range: page {m:#x} and npages {npages} are misaligned"
        if npages > 1 and self._plain(m):
            return self._enq_blocks(m, npages, fl, tail, True)
        while npages > 0:
            assert not self.slot_of(m), f"vm_phys_enq_range: page {m:#x} is a free head"
            order = (npages & -npages).bit_length() - 1
            self.enq_chunk(fl, m, order, tail)
            m += 1 << order
            npages -= 1 << order
        return m

    def _plain(self, m: int) -> bool:
        """Whether blocks from page ``m`` on may be queued by the queue core's enq_blocks:
        m's page (hence the run's: a run is queued from one pool) is initialised and not
        LAZYINIT, so enq_chunk would initialise nothing."""
        w = self.pages.raw(m)
        return w != 0 and (w & POOL_MASK) != self.LAZYINIT

    def _enq_blocks(self, m: int, npages: int, fl: int, tail: bool, ascending: bool) -> int:
        """enq_range (``ascending``) or enq_beg of a run that :meth:`_plain` accepted, in
        one call of the queue core.  Returns the page after the run."""
        assert npages < 1 << self.NFO, "vm_phys_enq_chunk: invalid order"
        obs = self._obs()
        m = self._k.enq_blocks(self._st, m, npages, fl, tail, ascending, obs)
        if obs:
            self._flush(self._dom(fl))
        return m

    def set_pool(self, pool: int, m: int, order: int) -> None:
        """vm_phys_set_pool(): move the 2**order block at ``m`` to ``pool``.

        A LAZYINIT block has only its head initialised: this is where the rest of its page
        structures are initialised, on demand (a whole chunk of up to 4096 pages)."""
        pages = self.pages
        # A lone entry is never shadowed by a dense one (INVARIANTS) once the domain is
        # synced: asking ``lone`` first spares a LAZYINIT head the read of its untouched
        # array page (a fault).
        w = pages.lone.get(m)
        if w is not None:
            d = self.segs[w >> SEGIND_SHIFT].domain
            if self.nv[self.cfg + C_POPS] != self._pops_seen[d]:
                self.sync(d)
                w = pages.lone.get(m)
        w = w or pages.word(m)
        if w & POOL_MASK == self.LAZYINIT and self.LAZYINIT is not None:
            # The head is already initialised: the kernel re-inits only m + 1 .. (counts).
            pages.init_range(m, 1 << order, w >> SEGIND_SHIFT, pool, head_done=True)
        else:
            pages.set_pool_range(m, 1 << order, pool)

    # ---------------------------------------------------------------------------------------
    # Allocation
    # ---------------------------------------------------------------------------------------
    def alloc_npages(self, domain: int, pool: int, npages: int,
                     runs: list[tuple[int, int]] | None = None) -> list[int]:
        """vm_phys_alloc_npages(): up to ``npages`` pages, not necessarily contiguous, in the
        order the kernel fills ``ma[]``.  May return fewer (the domain ran short).
        ``runs``, if given, receives the (first page, count) runs taken from each block
        (:meth:`alloc_npages_runs`, which does the work).

        Requires: the domain's free lock; pool valid (not LAZYINIT); npages <= 2**(NFO-1)."""
        if runs is None:
            runs = []
        self.alloc_npages_runs(domain, pool, npages, runs)
        return [p for m, n in runs for p in range(m, m + n)]

    def alloc_npages_runs(self, domain: int, pool: int, npages: int,
                          runs: list[tuple[int, int]]) -> int:
        """vm_phys_alloc_npages() with ``ma[]`` kept as runs: appends to ``runs`` the
        (first page, count) taken from each block, in the kernel's order, and returns the
        number of pages (fewer than ``npages`` if the domain ran short).

        Requires: the domain's free lock; pool valid (not LAZYINIT); npages <= 2**(NFO-1)."""
        assert 0 < npages <= 1 << (self.NFO - 1)
        NFO, NFP = self.NFO, self.NFP
        lcnt = self.lcnt
        own = self._k.npages_own
        st = self._st
        out, outv = self._outv[domain], self._outs[domain]
        obs = self._obs()
        i = 0
        for freelist in range(self.NFL):
            flind = self.flind_of[freelist]
            if flind < 0:
                continue
            base = (domain * self.NFL + flind) * NFP * NFO
            fl = base + pool * NFO
            # The requested pool's queues, in the queue core.
            out[0] = 0
            i = own(st, fl, npages, i, out, obs)
            if out[0]:
                r = outv[1:1 + 2 * int(outv[0])].tolist()
                runs.extend(zip(r[::2], r[1::2], strict=True))
            if obs:
                self._flush(domain)
            if i == npages:
                return i
            for oind in range(NFO - 1, -1, -1):
                for pind in range(self.default_freepool, NFP):
                    alt = base + pind * NFO
                    q = alt + oind
                    while lcnt[q]:
                        m = self.queue_first(q)
                        self.freelist_rem(q, m)
                        self.set_pool(pool, m, oind)
                        avail = i + (1 << oind)
                        end = min(npages, avail)
                        runs.append((m, end - i))
                        m += end - i
                        i = end
                        if i == npages:
                            self.enq_range(m, avail - i, fl, True)
                            return i
        return i

    def alloc_pages(self, domain: int, pool: int, order: int) -> int | None:
        """vm_phys_alloc_pages(): a 2**order block from the first free list (by
        ``VM_FREELIST_*`` id: DEFAULT, DMA32, LOWMEM) that has one; None if none.

        Notes: a list id that aliases an earlier one's flind (DMA32 without a DMA32 list) is
        searched once here; the kernel searches it twice, finding nothing the second time."""
        NFO = self.NFO
        own = self._k.alloc_own
        st = self._st
        obs = self._obs()
        for base in self.search_bases[domain]:
            fl = base + pool * NFO
            # alloc_freelist_pages's own-pool search and split, in the queue core.
            m = own(st, fl, order, obs)
            if obs:
                self._flush(domain)
            if m >= 0:
                return m
            m = self._steal(base, fl, pool, order)
            if m is not None:
                return m
        return None

    def alloc_freelist_pages(self, domain: int, freelist: int, pool: int,
                             order: int) -> int | None:
        """vm_phys_alloc_freelist_pages(): a 2**order block from one free list.

        First the requested pool, smallest sufficient order first; then, largest order
        first, any pool from ``vm_default_freepool`` up: the block moves to the requested
        pool whole (initialising it if it was LAZYINIT) and its split remainders stay there.
        Requires: the domain's free lock.  Returns the head page, or None."""
        flind = self.flind_of[freelist]
        if flind < 0:
            return None
        NFO = self.NFO
        base = (domain * self.NFL + flind) * self.NFP * NFO
        fl = base + pool * NFO
        obs = self._obs()
        m = self._k.alloc_own(self._st, fl, order, obs)
        if obs:
            self._flush(domain)
        if m >= 0:
            return m
        return self._steal(base, fl, pool, order)

    def _steal(self, base: int, fl: int, pool: int, order: int) -> int | None:
        """alloc_freelist_pages's second step: the largest block of any pool from
        vm_default_freepool up moves to ``pool`` whole and is split there."""
        NFO = self.NFO
        lcnt = self.lcnt
        for oind in range(NFO - 1, order - 1, -1):
            for pind in range(self.default_freepool, self.NFP):
                q = base + pind * NFO + oind
                if lcnt[q]:
                    m = self.queue_first(q)
                    self.freelist_rem(q, m)
                    self.set_pool(pool, m, oind)
                    self.split_pages(m, oind, fl, order, True)
                    return m
        return None

    # ---------------------------------------------------------------------------------------
    # Freeing
    # ---------------------------------------------------------------------------------------
    def free_pages(self, m: int, order: int, w: int = 0) -> None:
        """vm_phys_free_pages(): free the 2**order block at ``m`` into m's pool, merging with
        free buddies (of any pool, within the segment, up to order NFO - 1); the result goes
        to the TAIL of its queue (the queue core's vm_phys_free_pages).

        Requires: the domain's free lock; the block allocated, m aligned to order, m's pool
        valid (not LAZYINIT), m's page word dense.  ``w``: m's page word if the caller has
        read it already."""
        pages = self.pages
        if not w:
            w = pages.word(m)
        assert w & POOL_MASK != self.LAZYINIT and w & POOL_MASK < self.NFP, \
            f"vm_phys_free_pages: page {m << PAGE_SHIFT:#x} has unexpected pool {w & 3}"
        assert not self.slot_of(m), "vm_phys_free_pages: page is already a free head"
        assert pages.is_dense(m), "vm_phys_free_pages: page word not dense"
        obs = self._obs()
        words = self.kwords
        stop = -1
        while True:
            b = self._k.free(self._st, words, m, order, stop, obs)
            if b < 0:
                break
            if not pages.raw(b):
                raise UninitializedPageError(
                    f"vm_phys_free_pages: buddy {b << PAGE_SHIFT:#x} never initialised")
            stop = b                # initialised alone: no head, so no merge
        d = self.segs[w >> SEGIND_SHIFT].domain
        if self.nv[self.log_at(d)]:
            self._flush(d)

    def enqueue_contig(self, m: int, npages: int) -> None:
        """vm_phys_enqueue_contig(): free ``[m, m + npages)`` as maximal aligned blocks,
        without looking at neighbours (no coalescing), all at the tail of the first page's
        pool queues.  Requires: the domain's free lock; the run in one segment."""
        w = self.pages.word(m)
        segind = w >> SEGIND_SHIFT
        seg = self.segs[segind]
        fl = seg.fq + (w & POOL_MASK) * self.NFO
        m_end = m + npages
        lo = m
        if npages > 0:
            diff = lo ^ (lo + npages - 1)
            if diff != 0:
                order = min(fls(diff) - 1, self.NFO - 1)
                m = self.enq_range(m, roundup2(lo, 1 << order) - lo, fl, True)
        order = self.NFO - 1
        nchunks = (m_end - m) >> order
        if nchunks > 1 and not self.on_add:
            assert seg.spfn <= m and m + (nchunks << order) <= seg.epfn, \
                "vm_phys_enqueue_contig: range spans segments"
            self._enq_chunks(fl, m, nchunks, w)
            m += nchunks << order
        while m + (1 << order) <= m_end:
            assert seg.spfn <= m < seg.epfn, "vm_phys_enqueue_contig: range spans segments"
            self.enq_chunk(fl, m, order, True)
            m += 1 << order
        self.enq_beg(m, m_end - m, fl, True)

    def _enq_chunks(self, fl: int, m: int, nchunks: int, w: int) -> None:
        """enq_chunk(fl, m + i * 2**(NFO-1), NFO - 1, tail) for i < nchunks, in bulk.

        The same final state as the loop -- max-order heads appended at the tail in
        ascending order, and for a LAZYINIT run the page after each chunk initialised --
        without one Python call per chunk.  A LAZYINIT run becomes one lazy-run node (the
        module docstring) whose later chunk heads the page array answers by rule, so that
        booting 1 TiB (65,536 chunks) writes a few entries; other runs get one node per
        chunk through dict.update over ranges.  ``w`` is the run's first page word (all
        its chunk heads share segment and pool)."""
        order = self.NFO - 1
        step = 1 << order
        end = m + nchunks * step
        q = fl + order
        if self.LAZYINIT is None or w & POOL_MASK != self.LAZYINIT:
            obs = self._obs()
            self._k.enq_chunks(self._st, fl, m, nchunks, order, obs)
            if obs:
                self._flush(self._dom(q))
            return
        self.freelist_add(q, m, order, True)
        s = self.slot_of(m)
        self.nv[NODE * s + INFO] |= nchunks << NCH_SHIFT
        self.lcnt[q] += nchunks - 1
        # vm_phys_enq_chunk's vm_page_init_page of each next chunk head: by the run's
        # rule, the last one (the page after the run) stored.  Only boot enqueues
        # LAZYINIT runs; its dense entries are the ranges its init loop wrote, and those
        # are written here (an entry written densely wins over the rule).
        pages = self.pages
        assert pages.boot_ranges is not None, "LAZYINIT run enqueued after boot"
        nw = make_word(w >> SEGIND_SHIFT, self.LAZYINIT)
        dense: list[int] = []
        for lo, hi in pages.boot_ranges:
            if lo < end + step and hi > m + step:
                first = m + step + max(0, -(-(lo - m - step) // step)) * step
                dense.extend(p for p in range(first, min(hi, end + step), step)
                             if pages.is_dense(p))
        if dense:
            pages.words[np.array(dense) - pages.base_pfn] = nw
        pages.add_run(m, nchunks, step, nw, frozenset(dense))
        self.run_nodes[self._dom(q)][m] = s
        if end not in dense:
            pages.lone[end] = nw
        pages.ninit += nchunks

    def free_contig(self, m: int, npages: int) -> None:
        """vm_phys_free_contig(): free an arbitrary run; its interior goes through
        enqueue_contig (no coalescing), then the unaligned head and tail pieces through
        free_pages.  Requires: the domain's free lock; every page from one pool."""
        m_start, m_end, _os, _oe, _mo = self._contig_pieces(m, npages)
        if m_start < m_end:
            self.enqueue_contig(m_start, m_end - m_start)
        self.free_contig_finish(m, npages, 2)

    def _contig_pieces(self, m: int, npages: int) -> tuple[int, int, int, int, int]:
        """vm_phys_free_contig's cut of a run: (m_start, m_end, order_start, order_end,
        max_order); the head piece is freed if order_start < max_order, the tail's too."""
        lo = m
        max_order = min(fls(lo ^ (lo + npages)) - 1, self.NFO - 1)
        # ffsll(0) - 1 is -1, which as the kernel's unsigned int never tests "<".
        order_start = (lo & -lo).bit_length() - 1 if lo else M64
        m_start = m + (1 << order_start) if order_start < max_order else m
        e = lo + npages
        order_end = (e & -e).bit_length() - 1 if e else M64
        m_end = m + npages - (1 << order_end) if order_end < max_order else m + npages
        return m_start, m_end, order_start, order_end, max_order

    def free_contig_finish(self, m: int, npages: int, stage: int) -> None:
        """vm_phys_free_contig's free_pages of the head piece and then the tail piece
        (``stage`` 2), or of the tail piece only (3): where the queue core stopped."""
        _s, m_end, order_start, order_end, max_order = self._contig_pieces(m, npages)
        if stage == 2 and order_start < max_order:
            self.free_pages(m, order_start)
        if order_end < max_order:
            self.free_pages(m_end, order_end)

    # ---------------------------------------------------------------------------------------
    # Lazy initialisation
    # ---------------------------------------------------------------------------------------
    def lazy_init_domain(self, domain: int, locked: bool, batch: int | None = None) -> bool:
        """vm_phys_lazy_init_domain(): initialise every page still in the domain's LAZYINIT
        pool, moving it to DEFAULT through free_pages (so blocks may coalesce).

        Runs once per domain (``initdone``).  ``batch`` (the drain thread's) stops after that
        many blocks and returns False if work remains; the kernel drops the lock per block
        instead.  Returns True when the domain is done."""
        if self.LAZYINIT is None or self.initdone[domain]:
            return True
        lock = self.domain_locks[domain]
        if not locked:
            lock.acquire()
        try:
            if self.initdone[domain]:
                return True
            NFO = self.NFO
            done = 0
            for freelist in range(self.NFL):
                flind = self.flind_of[freelist]
                if flind < 0:
                    continue
                fl = (domain * self.NFL + flind) * self.NFP * NFO + self.LAZYINIT * NFO
                for oind in range(NFO):
                    q = fl + oind
                    while self.lcnt[q]:
                        if batch is not None and done >= batch:
                            return False
                        m = self.queue_first(q)
                        before = self.pages.ninit
                        self.freelist_rem(q, m)
                        self.set_pool(self.DEFAULT, m, oind)
                        self.free_pages(m, oind)   # may initialise a LAZYINIT buddy too
                        self.drain_inits += self.pages.ninit - before
                        done += 1
            self.initdone[domain] = True
            return True
        finally:
            if not locked:
                lock.release()

    def lazy_init(self) -> None:
        """vm_phys_lazy_init(): drain every domain, then make DEFAULT the default pool."""
        for domain in range(self.ndomains):
            self.lazy_init_domain(domain, False)
        self.default_freepool = self.DEFAULT

    # ---------------------------------------------------------------------------------------
    # Rare operations
    # ---------------------------------------------------------------------------------------
    def find_range(self, segind: int, domain: int, npages: int, low: int,
                   high: int) -> tuple[int, tuple[int, int] | None]:
        """vm_phys_find_range(): the first segment from ``segind`` up in ``domain`` that may
        hold ``npages`` pages within [low, high), and its bounds (pfns), or (-1, None).

        Quirk kept: the size test is unsigned, so ``low`` above a segment's end wraps and
        selects it.  Drains the domain's LAZYINIT pool only when it returns a segment."""
        for i in range(segind, len(self.segs)):
            seg = self.segs[i]
            if seg.domain != domain:
                continue
            if seg.start >= high:
                return -1, None
            pa_start = max(low, seg.start)
            pa_end = min(high, seg.end)
            if ((pa_end - pa_start) & M64) < ((npages << PAGE_SHIFT) & M64):
                continue
            self.lazy_init_domain(domain, False)
            return i, (seg.spfn + ((pa_start - seg.start) >> PAGE_SHIFT),
                       seg.spfn + ((pa_end - seg.start) >> PAGE_SHIFT))
        return -1, None

    def unfree_page(self, pa: int) -> bool:
        """vm_phys_unfree_page(): take the page at ``pa`` out of the free lists, returning
        the rest of its block to the queue HEADS; False if the page is not free.

        Drains the domain's LAZYINIT pool first.  Requires: ``pa`` in a segment; the
        domain's free lock."""
        seg = self.paddr_to_seg(pa)
        assert seg is not None, "vm_phys_unfree_page: no segment"
        self.lazy_init_domain(seg.domain, True)
        m = pa >> PAGE_SHIFT
        NFO = self.NFO
        m_set = m
        order = 0
        while self.order_of(m_set) == NFO and order < NFO - 1:
            order += 1
            p = m & ~((1 << order) - 1)
            if p >= seg.spfn:
                m_set = p
            else:
                return False
        o = self.order_of(m_set)
        if o < order or o == NFO:
            return False
        fl = seg.fq + self.pool_of(m_set) * NFO
        order = o
        self.freelist_rem(fl + order, m_set)
        while order > 0:
            order -= 1
            half = m_set ^ (1 << order)
            if m < half:
                m_tmp = half
            else:
                m_tmp = m_set
                m_set = half
            self.freelist_add(fl + order, m_tmp, order, False)
        if m_set != m:
            raise InvariantError("vm_phys_unfree_page: fatal inconsistency")
        return True

    # ---------------------------------------------------------------------------------------
    # Contiguous allocation
    # ---------------------------------------------------------------------------------------
    def find_freelist_contig(self, fl: int, npages: int, low: int, high: int,
                             alignment: int, boundary: int) -> int | None:
        """vm_phys_find_freelist_contig(): a run of consecutive free max-order blocks (of
        any pool) in one segment, for requests above 2**(NFO-1) pages; pool queue base
        ``fl``."""
        max_order = self.NFO - 1
        size = npages << PAGE_SHIFT
        max_size = 1 << (PAGE_SHIFT + max_order)
        step = 1 << max_order
        order_of = self.order_of
        for m in self.queue_iter(fl + max_order):
            seg = self.segs[self.segind_of(m)]
            pa = m << PAGE_SHIFT
            lim = max(low, seg.start)
            if pa < lim:
                continue
            if pa >= max_size and pa - max_size >= lim and order_of(m - step) == max_order:
                continue
            top = min(high, seg.end)
            m_ret = m
            # (the sums wrap at 2**64 as the kernel's vm_paddr_t does)
            while (not vm_addr_ok(m_ret << PAGE_SHIFT, size, alignment, boundary)
                   and ((m_ret << PAGE_SHIFT) + size) & M64 <= top
                   and order_of(m_ret + step) == max_order):
                m_ret += step
            if ((m_ret << PAGE_SHIFT) + size) & M64 > top:
                continue
            m_iter = m_ret
            while m_iter < m_ret + npages and order_of(m_iter) == max_order:
                m_iter += step
            if m_iter < m_ret + npages:
                continue
            return m_ret
        return None

    def find_queues_contig(self, queues: int, npages: int, low: int, high: int,
                           alignment: int, boundary: int) -> int | None:
        """vm_phys_find_queues_contig(): the first free block head (smallest sufficient
        order first, pools from vm_default_freepool up, queue order) where the run fits;
        larger requests go to find_freelist_contig."""
        assert npages > 0 and powerof2(alignment) and powerof2(boundary)
        NFO = self.NFO
        order = fls(npages - 1)
        size = npages << PAGE_SHIFT
        if order < NFO:
            # The queue core's walk (the kernel's 64-bit masks as signed words; addresses
            # above 2**62 are no page's).
            top = min(high - size, 1 << 62)
            m = self._k.find_queues(self._st, queues, order, npages, min(low, 1 << 62), top,
                                    alignment - 1, -boundary, self.default_freepool)
            return m if m >= 0 else None
        for pind in range(self.default_freepool, self.NFP):
            m = self.find_freelist_contig(queues + pind * NFO, npages, low, high,
                                          alignment, boundary)
            if m is not None:
                return m
        return None

    def alloc_contig(self, domain: int, npages: int, low: int, high: int, alignment: int,
                     boundary: int) -> int | None:
        """vm_phys_alloc_contig(): ``npages`` contiguous pages in [low, high), aligned and
        not crossing ``boundary`` (0 = none).  Segments are searched from the highest
        address down, each queue table once; whole free blocks are taken (all become
        DEFAULT) and the excess returns to the DEFAULT queue HEADS.

        Requires: npages > 0; alignment and boundary powers of two; the domain's free
        lock.  Returns the first page, or None."""
        assert npages > 0 and powerof2(alignment) and powerof2(boundary)
        if low >= high:
            return None
        queues = None
        m_run = None
        for seg in reversed(self.segs):
            if seg.start >= high or seg.domain != domain:
                continue
            if low >= seg.end:
                break
            pa_start = seg.start if low <= seg.start else low
            pa_end = high if high < seg.end else seg.end
            if ((pa_end - pa_start) & M64) < ((npages << PAGE_SHIFT) & M64):
                continue
            if seg.fq == queues:
                continue
            queues = seg.fq
            m_run = self.find_queues_contig(queues, npages, low, high, alignment, boundary)
            if m_run is not None:
                break
        if m_run is None or queues is None:
            return None
        NFO = self.NFO
        m = m_run
        end = m_run + npages
        while m < end:
            oind = self.order_of(m)
            pool = self.pool_of(m)
            self.freelist_rem(queues + pool * NFO + oind, m)
            if pool != self.DEFAULT:
                self.set_pool(self.DEFAULT, m, oind)
            m += 1 << oind
        self.enq_range(end, m - end, queues + self.DEFAULT * NFO, False)
        pa_start = m_run << PAGE_SHIFT
        assert low <= pa_start and pa_start + (npages << PAGE_SHIFT) <= high
        assert self.segs[self.segind_of(m_run)].domain == domain
        assert vm_addr_ok(pa_start, npages << PAGE_SHIFT, alignment, boundary)
        return m_run

    # ---------------------------------------------------------------------------------------
    # physmem's own primitives for other allocators (NetBSD's, DragonFly's) -- not kernel
    # functions, but built only from the kernel's (freelist_rem, set_pool, enq_beg,
    # enq_range)
    # ---------------------------------------------------------------------------------------
    def free_block_of(self, m: int) -> int | None:
        """The head of the free block that contains page ``m``, or None if ``m`` is not
        free (vm_phys_unfree_page's search, without its drain).  Requires: the domain's
        free lock; page structures on the way initialised (or LAZYINIT heads)."""
        seg = self.paddr_to_seg(m << PAGE_SHIFT)
        if seg is None:
            return None
        nv = self.nv
        for order in range(self.NFO):
            h = m & ~((1 << order) - 1)
            if h < seg.spfn:
                return None
            sh = self.slot_of(h)
            if sh:
                o = (nv[NODE * sh + INFO] & ORDER_MASK) - 1
                return h if o >= order and h + (1 << o) > m else None
            if order == self.NFO - 1 and self.pages.runs:
                self.sync(seg.domain)
                if self.pages.run_of(h) >= 0:
                    return h            # a later chunk of a lazy run
        return None

    def take_free_run(self, m: int, npages: int) -> None:
        """Take exactly the pages ``[m, m + npages)``, all free, off the free lists, the way
        vm_phys_alloc_contig takes a run: every free block it touches is removed and moved
        to DEFAULT (initialising it if it was LAZYINIT), and the parts of those blocks
        outside the run go back to the DEFAULT queues' HEADS as maximal aligned blocks.

        Requires: the domain's free lock; every page of the run free, in one segment."""
        end = m + npages
        NFO = self.NFO
        p = m
        while p < end:
            h = self.free_block_of(p)
            if h is None:
                raise InvariantError(f"take_free_run: page {p << PAGE_SHIFT:#x} is not free")
            order = self.order_of(h)
            seg = self.segs[self.segind_of(h)]
            pool = self.pool_of(h)
            self.freelist_rem(seg.fq + pool * NFO + order, h)
            if pool != self.DEFAULT:
                self.set_pool(self.DEFAULT, h, order)
            fl = seg.fq + self.DEFAULT * NFO
            bend = h + (1 << order)
            if h < p:
                self.enq_beg(h, p - h, fl, False)
            if bend > end:
                self.enq_range(end, bend - end, fl, False)
            p = bend

    # ---------------------------------------------------------------------------------------
    # Read-only views (sysctl, checker, reports)
    # ---------------------------------------------------------------------------------------
    def free_blocks(self, domain: int | None = None) -> Iterator[tuple[int, int, int, int,
                                                                       int]]:
        """Every free block as (domain, flind, pool, order, head pfn), queue order."""
        doms = range(self.ndomains) if domain is None else (domain,)
        for d in doms:
            for flind in range(self.nfreelists):
                for pool in range(self.NFP):
                    for order in range(self.NFO):
                        q = self.qindex(d, flind, pool, order)
                        if self.lcnt[q]:
                            for m in self.queue_iter(q):
                                yield d, flind, pool, order, m

    def count(self, domain: int, flind: int, pool: int, order: int) -> int:
        """``vm_phys_free_queues[domain][flind][pool][order].lcnt``."""
        return self.lcnt[self.qindex(domain, flind, pool, order)]

    def free_pages_in(self, domain: int) -> int:
        """Pages on all of a domain's queues (sum of lcnt << order)."""
        n = 0
        for flind in range(self.nfreelists):
            for pool in range(self.NFP):
                for order in range(self.NFO):
                    n += self.lcnt[self.qindex(domain, flind, pool, order)] << order
        return n
