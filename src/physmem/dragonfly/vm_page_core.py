"""The page layer's compiled fast paths: the common cases of vm_page_alloc and
vm_page_free_toq as loops over the page array's rows, compiled by numba
(:mod:`physmem.jit`), taking no Python lock.

They take the page array as its three row arrays (:class:`~.vm_page_array.PageArray`
``w4``, ``w2``, ``w1``: three arrays to unbox, not twenty, and no view made inside) and
use the queue list operations that Python's :class:`~.vm_page_array.Queues` uses too
(``q_insert``, ``q_remove``: one implementation; Python runs their plain versions over
memoryviews, holding the queue's spinlock).

Locks: a compiled call holds the GIL (no ``nogil``), so no other Python thread runs
during it; it may act as if it held any lock that no other thread holds right now.  Each
page-layer lock these paths need (the queue spinlocks, the page spinlock stripes, the
busy atomic) has a word in row ``R_WORDS`` that its Python wrapper
(:class:`~.locks.WordLock`) raises after acquiring and lowers before releasing; where the
kernel would take or try a lock whose word is up, the path returns DECLINE before
changing anything and the caller takes the Python path, which blocks on that lock (or
fails its try-lock) as before.  (A word raised by the calling thread itself declines too:
the Python path then takes the reentrant page lock as before.)

Implicit blocks (vm_page_array.py): the rule that gives their pages' fields is numpy code
(``Queues.materialise``); a path that would write a link into a page of an implicit
block returns ``-2 - page`` without changing anything, the caller materialises that
block and calls again.
"""

from __future__ import annotations

from ..jit import njit
from .vm_page_array import (
    ACT_INIT,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_NOSYNC,
    PG_UNQUEUED,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_L2_MASK,
    PQ_L2_SIZE,
    PQ_NONE,
    R_ACT,
    R_BUSY,
    R_DIRTY,
    R_FLAGS,
    R_HEAD,
    R_HOLD,
    R_IMPLICIT,
    R_LASTQ,
    R_NONEMPTY,
    R_PC,
    R_QUEUE,
    R_VALID,
    R_WIRE,
    R_WORDS,
    VM_PAGE_BITS_ALL,
    W_ATOMIC,
    W_PAGE,
    W_QUEUE,
    q_insert,
    q_remove,
)

NO_HINT = 0xFFFFFFFF    # lastq -1 (no hint) in w4's uint32 row (Python's int32 view: -1)
DECLINE = -1          # a checked core met a lock held elsewhere (or a case it leaves)


# -- vm_page_alloc's common case -----------------------------------------------------------
@njit
def alloc_head(w4, w2, w1, off: int, q: int, q2: int) -> int:
    """vm_page_alloc when the exact colour's queue ``q`` (PQ_FREE + colour) gives its
    head, without a Python lock (a word up: DECLINE, the general path): the page
    spinlock tried and the busy taken (else DECLINE), the page dequeued
    (vm_page_select_free), hard-busied, the colour hints of ``q`` and ``q2``
    (PQ_CACHE + colour for a NORMAL request, else 0) reset, its flags, act_count and
    valid bits cleared.  Returns the page, DECLINE, or -2 - k (materialise page k
    first); nothing changed unless it returns a page."""
    n = int(w4[R_HEAD, q])
    if n == 0 or w4[R_WORDS, W_QUEUE + q]:
        return DECLINE
    m = n - 1
    if w4[R_WORDS, W_PAGE + (m & PQ_L2_MASK)] or w4[R_WORDS, W_ATOMIC]:
        return DECLINE                      # the page trylock (or the atomic) is held
    b = int(w4[R_BUSY, m])
    if b & (PBUSY_LOCKED | PBUSY_MASK):
        return DECLINE
    r = q_remove(w4, w2, w1, off, q, m)
    if r:
        return r
    w4[R_BUSY, m] = b | PBUSY_LOCKED
    w4[R_LASTQ, q] = NO_HINT
    if q2:
        w4[R_LASTQ, q2] = NO_HINT
    w4[R_FLAGS, m] = 0
    w1[R_ACT, m] = 0
    w1[R_VALID, m] = 0
    return m


# -- vm_page_free_toq ------------------------------------------------------------------------
@njit
def free_toq(w4, w2, w1, off: int, m: int) -> int:
    """vm_page_free_toq after vm_page_remove, without a Python lock (the page's, its
    queue's, PQ_FREE + pc's and the atomic's words must be 0, else DECLINE), for a page
    that is not fictitious and not held (else DECLINE): off its queue, valid and dirty
    cleared, PG_MAPPED/WRITEABLE/NEED_COMMIT/UNQUEUED dropped, at the head of
    PQ_FREE + pc, unbusied.  Returns the old queue's base (PQ_NONE if it was on none) |
    PBUSY_WANTED if a thread waits for the busy; DECLINE; or -2 - k (materialise page k
    first), nothing changed.  The caller counts (the removal, then v_free_count) and
    wakes."""
    f = int(w4[R_FLAGS, m])
    if f & PG_FICTITIOUS or w4[R_HOLD, m]:
        return DECLINE
    q = int(w2[R_QUEUE, m])
    fq = PQ_FREE + int(w2[R_PC, m])
    words = w4[R_WORDS]
    if (words[W_PAGE + (m & PQ_L2_MASK)] or words[W_ATOMIC] or words[W_QUEUE + fq] or
            (q and words[W_QUEUE + q])):
        return DECLINE
    h = int(w4[R_HEAD, fq])
    if h and w1[R_IMPLICIT, (h - 1 + off) >> 10]:
        return -1 - h
    base = PQ_NONE
    if q:
        r = q_remove(w4, w2, w1, off, q, m)
        if r:
            return r
        base = ((q - 1) & ~PQ_L2_MASK) + 1
    w1[R_VALID, m] = 0
    w1[R_DIRTY, m] = 0
    w4[R_FLAGS, m] = f & ~(PG_MAPPED | PG_WRITEABLE | PG_NEED_COMMIT | PG_UNQUEUED)
    q_insert(w4, w2, w1, fq, m, True)
    b = int(w4[R_BUSY, m])
    w4[R_BUSY, m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
    return int(base | (b & PBUSY_WANTED))


# -- the page-cache read's last steps ------------------------------------------------------------
@njit
def read_done(w4, w2, w1, off: int, m: int) -> int:
    """pagecache_read after vm_page_grab, for a hard-busied page on no queue or already
    active (else DECLINE), without a Python lock (the page's, PQ_ACTIVE + pc's and the
    atomic's words must be 0, else DECLINE): vm_page_set_validclean of the whole page
    unless it is all valid, vm_page_activate (act_count raised to ACT_INIT, the tail of
    PQ_ACTIVE + pc; nothing for a fictitious or unqueued page), vm_page_wakeup.  Returns
    1 if the page joined PQ_ACTIVE (the caller counts it), else 0, | PBUSY_WANTED if a
    thread waits for the busy; nothing changed on DECLINE."""
    q = int(w2[R_QUEUE, m])
    aq = PQ_ACTIVE + int(w2[R_PC, m])
    b = int(w4[R_BUSY, m])
    words = w4[R_WORDS]
    if (q and q != aq) or not b & PBUSY_LOCKED or words[W_PAGE + (m & PQ_L2_MASK)] or \
            words[W_ATOMIC] or words[W_QUEUE + aq]:
        return DECLINE
    if w1[R_VALID, m] != VM_PAGE_BITS_ALL:
        w1[R_VALID, m] = VM_PAGE_BITS_ALL
        w1[R_DIRTY, m] = 0
        w4[R_FLAGS, m] = int(w4[R_FLAGS, m]) & ~PG_NOSYNC
    added = 0
    if not int(w4[R_FLAGS, m]) & (PG_FICTITIOUS | PG_UNQUEUED):
        if w1[R_ACT, m] < ACT_INIT:
            w1[R_ACT, m] = ACT_INIT
        if not q:
            q_insert(w4, w2, w1, aq, m, False)
            added = 1
    w4[R_BUSY, m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
    return added | (b & PBUSY_WANTED)


# -- vm_page_select_free_or_cache: the colour search -------------------------------------------
SEL_FOUND, SEL_NONE, SEL_DECLINE, SEL_MATERIALISE = 0, 1, 2, 3


@njit
def _probe_set(w1, base: int, idx: int, mask: int, s0: int, s1: int, count: int):
    """One widening step of the colour search, as the kernel's probe loop: the ``mask +
    1`` colours of idx's aligned set from idx on, wrapping, skipping [s0, s1) (the set
    already searched), counting probes.  Returns (colour of the first non-empty queue
    or -1, s0, s1, count) -- the new skip set when none."""
    q, rng = idx, mask + 1
    while rng > 0:
        if s0 <= q < s1:
            rng -= s1 - q
            q = (q & ~mask) | (s1 & mask)
        if rng > 0 and w1[R_NONEMPTY, base + q]:
            return q, s0, s1, count
        rng -= 1
        count += 1
        q = (q & ~mask) | ((q + 1) & mask)
    return -1, q & ~mask, (q | mask) + 1, count


@njit
def _any(w1, base: int) -> bool:
    """Whether a queue of ``base``'s 1024 colours is non-empty (a loop: numba compiles
    no generator expressions here)."""
    for q in range(base, base + PQ_L2_SIZE):  # noqa: SIM110
        if w1[R_NONEMPTY, q]:
            return True
    return False


@njit
def select_free_or_cache(w4, w2, w1, off: int, color: int, sam: int):
    """vm_page_select_free_or_cache without a Python lock: the exact colour's free queue,
    else _vm_page_list_find2_wide's interleaved search (free 16, free 32, cache 16, ...
    from the free queue's ``lastq`` hint; a search of 8 or more probes leaves the colour
    found in the hint), the page at the head of the queue found, dequeued and
    hard-busied (a cache page only if it can be recycled).  Returns (SEL_FOUND, page,
    base), (SEL_NONE, -1, 0) when both bases are empty or the search finds nothing, or,
    with nothing changed, (SEL_DECLINE, -1, 0) -- a lock word up, a busy page, a cache
    page to deactivate: the Python path -- or (SEL_MATERIALISE, page, 0).  The caller
    counts the removal."""
    if not _any(w1, PQ_FREE) and not _any(w1, PQ_CACHE):
        return SEL_NONE, -1, 0
    q = PQ_FREE + color
    hq, hint = 0, -1                            # the hint to leave, on success
    if w1[R_NONEMPTY, q]:
        base = PQ_FREE
    else:
        lastp = int(w4[R_LASTQ, PQ_FREE + color])
        start = color if lastp == -1 or lastp == 0xFFFFFFFF else lastp
        m1 = m2 = sam >> 1
        s1 = n1 = s2 = n2 = -1
        c1 = c2 = 0
        widest = (sam << 1) | 1
        found = -1
        base = PQ_FREE
        while True:
            if m1 != PQ_L2_MASK:
                m1 = m1 * 2 + 1
                found, s1, n1, c1 = _probe_set(w1, PQ_FREE, start, m1, s1, n1, c1)
                if found >= 0:
                    if c1 >= 8:
                        hq, hint = PQ_FREE + color, found
                    break
            if m1 >= widest:
                m2 = m2 * 2 + 1
                found, s2, n2, c2 = _probe_set(w1, PQ_CACHE, start, m2, s2, n2, c2)
                if found >= 0:
                    base = PQ_CACHE
                    if c2 >= 8:
                        hq, hint = PQ_CACHE + color, found
                    break
            if m1 == PQ_L2_MASK or m2 == PQ_L2_MASK:
                return SEL_NONE, -1, 0
        q = base + found
    words = w4[R_WORDS]
    m = int(w4[R_HEAD, q]) - 1
    if words[W_QUEUE + q] or words[W_PAGE + (m & PQ_L2_MASK)] or words[W_ATOMIC]:
        return SEL_DECLINE, -1, 0
    b = int(w4[R_BUSY, m])
    if b & (PBUSY_LOCKED | PBUSY_MASK):
        return SEL_DECLINE, -1, 0                # busy: Python deactivates it
    if base == PQ_CACHE and (int(w4[R_FLAGS, m]) & (PG_NEED_COMMIT | PG_MAPPED) or
                             w4[R_HOLD, m] or w4[R_WIRE, m] or
                             w1[R_DIRTY, m] & w1[R_VALID, m]):
        return SEL_DECLINE, -1, 0                # not reusable: Python deactivates it
    r = q_remove(w4, w2, w1, off, q, m)
    if r:
        return SEL_MATERIALISE, -r - 2, 0
    w4[R_BUSY, m] = b | PBUSY_LOCKED
    if q == PQ_FREE + color:
        w4[R_LASTQ, PQ_FREE + color] = NO_HINT
        w4[R_LASTQ, PQ_CACHE + color] = NO_HINT
    elif hq:
        w4[R_LASTQ, hq] = hint
    return SEL_FOUND, m, base


# -- the buddy source's take ---------------------------------------------------------------------
@njit
def busy_take(w4, m: int) -> int:
    """The buddy source's select after vm_phys handed page ``m`` out: hard-busy it,
    without a Python lock (the page's and the atomic's words must be 0, else DECLINE:
    the freeing thread may still hold the page lock, the Python path waits for it).
    Returns 0, or 1 if the page is busy (it came back busy: the caller's error)."""
    words = w4[R_WORDS]
    if words[W_PAGE + (m & PQ_L2_MASK)] or words[W_ATOMIC]:
        return DECLINE
    b = int(w4[R_BUSY, m])
    if b & (PBUSY_LOCKED | PBUSY_MASK):
        return 1
    w4[R_BUSY, m] = b | PBUSY_LOCKED
    return 0
