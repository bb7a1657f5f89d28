"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

Queue transitions: vm_page_activate, vm_page_deactivate, vm_page_cache, vm_page_unqueue,
vm_page_try_to_free and their helpers.
"""

from __future__ import annotations

from .locks import page_op
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
    queue_base,
)
from .vm_page_defs import (
    PageStateError,
)


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
            self.cpu[self._tls.cpu].cnt["v_reactivated"] += 1
        if p.act_count[m] < ACT_INIT:
            p.act_count[m] = ACT_INIT
        self._add_queue(m, PQ_ACTIVE + p.pc[m], False)
        if old in (PQ_FREE, PQ_CACHE):
            self.pagedaemon_wakeup()

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
            self.cpu[self._tls.cpu].cnt["v_reactivated"] += 1
        self._deactivate_locked(m, athead)

    def _deactivate_locked(self, m: int, athead: bool) -> None:
        """_vm_page_deactivate_locked's insertion (the page is off every queue): clear
        PG_WINATCFLS, head or tail of PQ_INACTIVE + pc; tail inserts count in ``adds``."""
        self.pages.flags[m] &= ~PG_WINATCFLS
        q = PQ_INACTIVE + self.pages.pc[m]
        self._add_queue(m, q, athead)
        if not athead:
            self.queues.adds[q] += 1

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
            if (p.flags[m] & (PG_UNQUEUED | PG_NEED_COMMIT | PG_FICTITIOUS) or
                    p.busy_count[m] & PBUSY_MASK or p.wire_count[m] or p.hold_count[m]):
                return
            if queue_base(p.queue[m]) == PQ_CACHE:
                return
            p.flags[m] &= ~(PG_MAPPED | PG_WRITEABLE)
            self._test_dirty(m)
            if p.dirty[m] or p.flags[m] & PG_NEED_COMMIT:
                self._deactivate(m)
                return
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
