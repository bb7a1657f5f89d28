"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

The page queues: _vm_page_add/rem_queue_spinlocked, the pagedaemon's way into a queue.
The colour search (_vm_page_list_find, _vm_page_list_find_wide and
_vm_page_list_find2_wide) is a body: vm_page_core.select_free_or_cache.
"""

from __future__ import annotations

from .locks import PAGE_STRIPES
from .vm_page_array import (
    COUNTER,
    PG_FICTITIOUS,
    PG_UNQUEUED,
    PQ_FREE,
    PQ_L2_MASK,
    PQ_NONE,
    Queues,
)


class QueueSearchMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # Queues
    # ======================================================================================
    def _add_queue(self, m: int, q: int, athead: bool) -> None:
        """_vm_page_add_queue_spinlocked: FREE queues always at the head.  Counts the page
        in this CPU's view and pending delta (an addition never folds)."""
        p = self.pages
        base = ((q - 1) & ~PQ_L2_MASK) + 1                  # queue_base(q), q != PQ_NONE
        assert p.queue[m] == PQ_NONE and not p.flags[m] & (PG_FICTITIOUS | PG_UNQUEUED)
        lock = self.queue_spin[q]
        lock.acquire()
        self.queues.insert(q, m, athead or base == PQ_FREE)
        lock.release()
        self._count(COUNTER[base], 1)

    def _rem_queue(self, m: int) -> int:
        """Dequeue the page; returns its old base (PQ_NONE if it was on none)."""
        q = self.pages.queue[m]
        if q == PQ_NONE:
            return PQ_NONE
        base = ((q - 1) & ~PQ_L2_MASK) + 1
        lock = self.queue_spin[q]
        lock.acquire()
        self.queues.remove(q, m)
        lock.release()
        self._count(COUNTER[base], -1)
        return base

    def first_locked(self, q: int) -> int | None:
        """The first page of queue ``q`` whose page spinlock could be taken, returned with
        that spinlock HELD (the caller releases it with :meth:`page_unlock`); the page
        stays queued.  The pagedaemon's way into a queue."""
        qs = self.queues
        if not qs.lcnt[q]:
            return None
        lock = self.queue_spin[q]
        lock.acquire()
        try:
            return self._first_trylock(qs, q)
        finally:
            lock.release()

    def _first_trylock(self, qs: Queues, q: int) -> int | None:
        """Queue ``q``'s first page whose page spinlock is free, taken (HELD on return);
        None if there is none.  The caller holds the queue spinlock."""
        spins = self.page_spin
        m = qs.first(q)                             # the head, nearly always free
        if m is not None and spins[m & (PAGE_STRIPES - 1)].acquire(False):
            return m
        for m in qs.iter(q):
            if spins[m & (PAGE_STRIPES - 1)].acquire(False):
                return m
        return None

    def page_unlock(self, m: int) -> None:
        self.page_spin[m & (PAGE_STRIPES - 1)].release()
