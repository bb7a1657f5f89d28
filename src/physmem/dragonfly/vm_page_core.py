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
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PG_WRITEABLE,
    PQ_FREE,
    PQ_L2_MASK,
    PQ_NONE,
    R_ACT,
    R_BUSY,
    R_DIRTY,
    R_FLAGS,
    R_HEAD,
    R_HOLD,
    R_IMPLICIT,
    R_LASTQ,
    R_PC,
    R_QUEUE,
    R_VALID,
    R_WORDS,
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
