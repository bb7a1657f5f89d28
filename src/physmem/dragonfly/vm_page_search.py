"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

The page queues and the colour search: _vm_page_add/rem_queue_spinlocked,
_vm_page_list_find (the exact colour, then _vm_page_list_find_wide and
_vm_page_list_find2_wide's widening sets).
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
    find_nonempty,
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
        counter = COUNTER[base]                            # _count(counter, +1)
        c = self.cpu[self._tls.cpu]
        lock = self.stats_lock
        lock.acquire()
        c.vmstats.__dict__[counter] += 1
        c.adj[counter] += 1
        lock.release()

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

    def _list_first_trylock(self, q: int) -> int | None:
        """The first page of queue ``q`` whose page spinlock can be taken, dequeued while
        both locks are held (_vm_page_list_find's loop, then _vm_page_rem_queue_spinlocked);
        None if there is none.  Returns with the page's spinlock HELD, as the kernel's
        does: the caller busies the page (or deactivates it) before releasing it with
        :meth:`page_unlock`, so a thread holding the page busy cannot requeue it
        meanwhile."""
        qs = self.queues
        if not qs.lcnt[q]:
            return None
        lock = self.queue_spin[q]
        lock.acquire()
        try:
            m = self._first_trylock(qs, q)
            if m is None:
                return None
            if m == qs.first(q):
                qs.remove_head(q)
            else:
                qs.remove(q, m)
        finally:
            lock.release()
        self._count(COUNTER[((q - 1) & ~PQ_L2_MASK) + 1], -1)
        return m

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

    def _list_find(self, base: int, idx: int) -> int | None:
        """_vm_page_list_find + removal: the exact colour (which clears its skip hint),
        then the widening search.  The page comes back dequeued."""
        if self.queues.empty(base):
            return None
        m = self._list_first_trylock(base + idx)
        if m is not None:
            self.queues.lastq[base + idx] = -1
            return m
        return self._find_wide(base, idx)

    def _find_wide(self, base: int, idx: int) -> int | None:
        """_vm_page_list_find_wide: sets of 16, 32, ... 1024 colours around the start
        (the queue's ``lastq`` hint if set); a search that probed 8 or more colours
        leaves the colour it found in the original queue's hint."""
        last = self.queues.lastq
        start = last[base + idx] if last[base + idx] >= 0 else idx
        mask = self.set_assoc_mask >> 1
        level = (-1, -1, 0)
        while True:
            mask = mask * 2 + 1
            m, q, level = self._probe_set(base, start, mask, level)
            if m is not None:
                if level[2] >= 8:
                    last[base + idx] = q
                return m
            if mask == PQ_L2_MASK:
                return None

    def _find2_wide(self, b1: int, b2: int, idx: int) -> tuple[int | None, int]:
        """_vm_page_list_find2_wide: the free and cache searches interleaved -- free
        16, free 32, cache 16, free 64, cache 32, ... free 1024, cache 512 -- both from
        the free queue's hint.  Returns (page, base it came from)."""
        last = self.queues.lastq
        start = last[b1 + idx] if last[b1 + idx] >= 0 else idx
        mask1 = mask2 = self.set_assoc_mask >> 1
        lv1 = lv2 = (-1, -1, 0)
        widest = (self.set_assoc_mask << 1) | 1
        while True:
            if mask1 != PQ_L2_MASK:
                mask1 = mask1 * 2 + 1
                m, q, lv1 = self._probe_set(b1, start, mask1, lv1)
                if m is not None:
                    if lv1[2] >= 8:
                        last[b1 + idx] = q
                    return m, b1
            if mask1 >= widest:
                mask2 = mask2 * 2 + 1
                m, q, lv2 = self._probe_set(b2, start, mask2, lv2)
                if m is not None:
                    if lv2[2] >= 8:
                        last[b2 + idx] = q
                    return m, b2
            if mask1 == PQ_L2_MASK or mask2 == PQ_L2_MASK:
                return None, b1

    def _probe_set(self, base: int, idx: int, mask: int,
                   level: tuple[int, int, int]) -> tuple[int | None, int, tuple[int, int, int]]:
        """One widening step: probe the ``mask + 1`` colours of idx's aligned set from
        idx on, wrapping, skipping the set already searched (``level`` = skip start,
        skip end, probe count).  Returns (page or None, colour, new level)."""
        s0, s1, count = level
        ne = self.queues.nonempty
        q, rng = idx, mask + 1
        while rng > 0:
            if s0 <= q < s1:
                rng -= s1 - q
                q = (q & ~mask) | (s1 & mask)
            if rng > 0:
                if not ne[base + q]:
                    # Jump over empty colours as the probe loop would step over them:
                    # not past the set's end, the searched set or the range left.
                    lim = min((q | mask) + 1, q + rng)
                    if s0 > q:
                        lim = min(lim, s0)
                    j = find_nonempty(ne, base + q, base + lim)
                    d = (j - base if j >= 0 else lim) - q
                    rng -= d
                    count += d
                    q = (q & ~mask) | ((q + d) & mask)
                    continue
                m = self._list_first_trylock(base + q)
                if m is not None:
                    return m, q, (s0, s1, count)
            rng -= 1
            count += 1
            q = (q & ~mask) | ((q + 1) & mask)
        return None, q, (q & ~mask, (q | mask) + 1, count)
