"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

Queue transitions: vm_page_activate, vm_page_deactivate, vm_page_cache, vm_page_unqueue,
vm_page_try_to_free and their helpers.

The one-page steps the pagedaemon's scans share with these methods are written once, as
functions over the page array's rows (:class:`~.vm_page_array.PageArray` ``w4``/``w2``/
``w1``) that numba compiles for the scans' batches (:mod:`.vm_pageout_core`) and that the
methods here run as plain Python over the rows' memoryviews, holding the kernel's locks:
``deactivate_insert`` (the insertion after the page left its queue) and ``cache_decide``
(vm_page_cache's tests); ``activate_insert``, which the page-cache read's tail uses too,
is :mod:`.vm_page_core`'s.
"""

from __future__ import annotations

from .locks import page_op
from .vm_meter import CNT_REACTIVATED, V_ACTIVE_COUNT, V_INACTIVE_COUNT
from .vm_page_array import (
    ACT_INIT,
    PBUSY_MASK,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_L2_MASK,
    R_ADDS,
    R_BUSY,
    R_DIRTY,
    R_FLAGS,
    R_HOLD,
    R_PC,
    R_QUEUE,
    R_WIRE,
    VM_PAGE_BITS_ALL,
    q_insert,
    queue_base,
    rows_fn,
)
from .vm_page_core import activate_insert
from .vm_page_defs import (
    PageStateError,
)

# vm_page_cache's decision (cache_decide)
C_NONE, C_DEACTIVATE, C_CACHE = 0, 1, 2
C_DIRTIED = 4           # | the pmap's modify bit made the page all dirty (vm_page_dirty)


# -- the one-page steps (the caller holds the page's spinlock, or its word is 0) -------------
# Typed (rows_fn: the rows, then int64s; no numba runtime), so that the scans' typed bodies
# (vm_pageout_core.py) can call them.
@rows_fn
def deactivate_insert(w4, w2, w1, m: int, athead: int) -> None:
    """_vm_page_deactivate_locked's insertion, for a page off every queue (the caller
    holds PQ_INACTIVE + pc's spinlock, or its word is 0): PG_WINATCFLS cleared, the head
    or tail of PQ_INACTIVE + pc; a tail insert counts in ``adds``.  The caller counts
    v_inactive_count."""
    w4[R_FLAGS, m] = int(w4[R_FLAGS, m]) & ~PG_WINATCFLS
    q = PQ_INACTIVE + int(w2[R_PC, m])
    q_insert(w4, w2, w1, q, m, athead)
    if not athead:
        w4[R_ADDS, q] += 1


@rows_fn
def cache_decide(w4, w2, w1, m: int, modified: int) -> int:
    """vm_page_cache's tests on a hard-busied page (its spinlock held): C_NONE for a page
    it leaves (unqueued, NEED_COMMIT, fictitious, soft-busied, wired, held, or already
    cached); else PG_MAPPED/WRITEABLE dropped, vm_page_test_dirty (``modified``: the pmap
    saw a write; the page becomes all dirty, | C_DIRTIED: the caller marks its object),
    and C_DEACTIVATE for a dirty page, C_CACHE for a clean one.  Moves nothing."""
    f = int(w4[R_FLAGS, m])
    if f & (PG_UNQUEUED | PG_NEED_COMMIT | PG_FICTITIOUS) or \
            w4[R_BUSY, m] & PBUSY_MASK or w4[R_WIRE, m] or w4[R_HOLD, m]:
        return C_NONE
    q = int(w2[R_QUEUE, m])
    if q and ((q - 1) & ~PQ_L2_MASK) + 1 == PQ_CACHE:
        return C_NONE
    w4[R_FLAGS, m] = f & ~(PG_MAPPED | PG_WRITEABLE)
    r = C_CACHE
    if modified and w1[R_DIRTY, m] != VM_PAGE_BITS_ALL:
        w1[R_DIRTY, m] = VM_PAGE_BITS_ALL
        r |= C_DIRTIED
    if w1[R_DIRTY, m]:
        r = (r & C_DIRTIED) | C_DEACTIVATE
    return r


# Python's way in: the plain functions over the rows' memoryviews (no numba import)
_activate_insert_py = activate_insert.py
_deactivate_insert_py = deactivate_insert.py
_cache_decide_py = cache_decide.py


class TransitionMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # State transitions
    # ======================================================================================
    @page_op(locked=True)
    def vm_page_activate(self, m: int) -> None:
        """To the tail of PQ_ACTIVE + pc with act_count >= ACT_INIT."""
        self._activate(m)

    def _activate(self, m: int) -> None:
        """vm_page_activate's work: the caller holds the page's spinlock and knows the
        page is valid and not free (the internal paths: no argument checks)."""
        p = self.pages
        if p.flags[m] & (PG_FICTITIOUS | PG_UNQUEUED):
            return
        base = queue_base(p.queue[m])
        if base == PQ_ACTIVE:
            if p.act_count[m] < ACT_INIT:
                p.act_count[m] = ACT_INIT
            return
        if base == PQ_FREE:
            raise PageStateError(f"vm_page_activate: page {self.pa(m):#x} is free")
        old = self._rem_queue(m)
        if old == PQ_CACHE:
            self._cv[self._tls.cpu][CNT_REACTIVATED] += 1
        self._insert_locked(PQ_ACTIVE + p.pc[m], V_ACTIVE_COUNT, _activate_insert_py,
                            m)
        if old in (PQ_FREE, PQ_CACHE):
            self.pagedaemon_wakeup()

    def _insert_locked(self, q: int, counter: int, insert, m: int, *args) -> None:
        """Run one-page insertion ``insert`` (``activate_insert``, ``deactivate_insert``:
        their plain functions) for page ``m``, off every queue, holding queue ``q``'s
        spinlock; then count the page in this CPU's view and pending delta."""
        p = self.pages
        lock = self.queue_spin[q]
        lock.acquire()
        insert(p.mw4, p.mw2, p.mw1, m, *args)
        lock.release()
        self._count(counter, 1)

    @page_op()
    def vm_page_soft_activate(self, m: int) -> None:
        if queue_base(self.pages.queue[m]) == PQ_ACTIVE:
            return
        self.vm_page_activate(m)

    @page_op(locked=True)
    def vm_page_deactivate(self, m: int, athead: bool = False) -> None:
        """To PQ_INACTIVE + pc (tail, or head with ``athead``); act_count untouched."""
        self._deactivate(m, athead)

    def _deactivate(self, m: int, athead: bool = False) -> None:
        """vm_page_deactivate's work (page spinlock held, page valid and not free)."""
        p = self.pages
        if p.flags[m] & (PG_FICTITIOUS | PG_UNQUEUED):
            return
        base = queue_base(p.queue[m])
        if base == PQ_INACTIVE:
            return
        if base == PQ_FREE:
            raise PageStateError(f"vm_page_deactivate: page {self.pa(m):#x} is free")
        old = self._rem_queue(m)
        if old == PQ_CACHE:
            self._cv[self._tls.cpu][CNT_REACTIVATED] += 1
        self._deactivate_locked(m, athead)

    def _deactivate_locked(self, m: int, athead: bool) -> None:
        """_vm_page_deactivate_locked's insertion (the page is off every queue): clear
        PG_WINATCFLS, head or tail of PQ_INACTIVE + pc; tail inserts count in ``adds``."""
        self._insert_locked(PQ_INACTIVE + self.pages.pc[m], V_INACTIVE_COUNT,
                            _deactivate_insert_py, m, athead)

    @page_op(locked=True)
    def vm_page_cache(self, m: int) -> None:
        """Move a clean, busied page to PQ_CACHE (a dirty one is deactivated); always
        unbusies."""
        self._need_hard_busy(m, "vm_page_cache")
        self._cache(m)

    def _cache(self, m: int) -> None:
        """vm_page_cache's work on a hard-busied page (page spinlock held, page valid and
        not free)."""
        p = self.pages
        try:
            r = _cache_decide_py(p.mw4, p.mw2, p.mw1, m, m in self.md_mod)
            if r & C_DIRTIED:
                self._object_maybe_dirty(m)         # vm_page_dirty's object half
            r &= ~C_DIRTIED
            if r == C_DEACTIVATE:
                self._deactivate(m)
            elif r == C_CACHE:
                self._rem_queue(m)
                self._add_queue(m, PQ_CACHE + p.pc[m], False)
                self.vm_page_free_wakeup()
        finally:
            self._wakeup(m)

    @page_op(refuse_free=False, locked=True)
    def vm_page_try_to_free(self, m: int) -> bool:
        if self._is_free(m):
            return False
        p = self.pages
        if self._busy_try(m, True):
            return False
        if (p.dirty[m] or p.hold_count[m] or p.wire_count[m] or
                p.flags[m] & (PG_UNQUEUED | PG_NEED_COMMIT | PG_FICTITIOUS) or
                queue_base(p.queue[m]) in (PQ_FREE, PQ_HOLD)):
            self._wakeup(m)
            return False
        self._test_dirty(m)
        if p.dirty[m]:
            self._wakeup(m)
            return False
        self.vm_page_free(m)
        return True

    @page_op(locked=True)
    def vm_page_unqueue(self, m: int) -> None:
        if self._rem_queue(m) in (PQ_FREE, PQ_CACHE):
            self.pagedaemon_wakeup()

    @page_op()
    def vm_page_need_commit(self, m: int) -> None:
        self.pages.flags[m] |= PG_NEED_COMMIT
        self._object_maybe_dirty(m)

    @page_op()
    def vm_page_clear_commit(self, m: int) -> None:
        self.pages.flags[m] &= ~PG_NEED_COMMIT
