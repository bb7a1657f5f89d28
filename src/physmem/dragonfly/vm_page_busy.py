"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

Hard and soft busy (vm_page_busy_try/wait, vm_page_wakeup, vm_page_sbusy_*,
vm_page_io_start/finish), wiring and holding.
"""

from __future__ import annotations

from .locks import page_op
from .vm_meter import V_WIRE_COUNT
from .vm_page_array import (
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_NEED_COMMIT,
    PG_REFERENCED,
    PG_UNQUEUED,
    PQ_FREE,
    PQ_HOLD,
    queue_base,
)
from .vm_page_defs import (
    PageStateError,
)


class BusyMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # Busy, wire, hold
    # ======================================================================================
    @page_op()
    def busy_try(self, m: int, also_m_busy: bool) -> bool:
        """vm_page_busy_try: True if it FAILED (hard-busied or, ``also``, soft-busied)."""
        return self._busy_try(m, also_m_busy)

    def _busy_try(self, m: int, also_m_busy: bool) -> bool:
        """busy_try for a page the caller knows to be valid and not free (the internal
        paths: no argument checks)."""
        bc = self.pages.busy_count
        lock = self.atomic
        lock.acquire()
        b = bc[m]
        if b & PBUSY_LOCKED or (also_m_busy and b & PBUSY_MASK):
            lock.release()
            return True
        bc[m] = b | PBUSY_LOCKED
        lock.release()
        return False

    def _busy_acquire(self, m: int) -> None:
        if self._busy_try(m, True):
            raise PageStateError(f"page {self.pa(m):#x} is busy")

    def busy_wait(self, m: int, also_m_busy: bool, timeout: float = 5.0) -> None:
        """vm_page_busy_wait: hard-busy the page, sleeping while it is busy."""
        with self.sleep:
            while self.busy_try(m, also_m_busy):
                with self.atomic:
                    self.pages.busy_count[m] |= PBUSY_WANTED
                    self.pages.flags[m] |= PG_REFERENCED
                if not self.sleep.wait(timeout):
                    raise PageStateError(f"page {self.pa(m):#x} stayed busy (deadlock?)")

    def _sleep_busy(self, m: int, timeout: float = 5.0) -> None:
        """vm_page_sleep_busy(m, TRUE): sleep until the page is neither hard- nor
        soft-busied, without taking it (the holder may free it meanwhile: the caller
        looks the page up again)."""
        bc = self.pages.busy_count
        with self.sleep:
            while True:
                with self.atomic:
                    b = bc[m]
                    if not b & (PBUSY_LOCKED | PBUSY_MASK):
                        return
                    bc[m] = b | PBUSY_WANTED
                if not self.sleep.wait(timeout):
                    raise PageStateError(f"page {self.pa(m):#x} stayed busy (deadlock?)")

    @page_op(refuse_free=False)
    def vm_page_wakeup(self, m: int) -> None:
        """Release a hard busy; wake sleepers if one wanted the page."""
        self._wakeup(m)

    def _wakeup(self, m: int) -> None:
        """vm_page_wakeup without argument checks (internal paths)."""
        bc = self.pages.busy_count
        lock = self.atomic
        lock.acquire()
        b = bc[m]
        if not b & PBUSY_LOCKED:
            lock.release()
            raise PageStateError(f"vm_page_wakeup: page {self.pa(m):#x} is not busied")
        bc[m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
        lock.release()
        if b & PBUSY_WANTED:
            with self.sleep:
                self.sleep.notify_all()

    @page_op()
    def sbusy_try(self, m: int) -> bool:
        """vm_page_sbusy_try: soft-busy unless hard-busied; True if it FAILED."""
        with self.atomic:
            b = self.pages.busy_count[m]
            if b & PBUSY_LOCKED:
                return True
            self.pages.busy_count[m] = b + 1
            return False

    @page_op(refuse_free=False)
    def sbusy_drop(self, m: int) -> None:
        with self.atomic:
            b = self.pages.busy_count[m]
            if not b & PBUSY_MASK:
                raise PageStateError(f"vm_page_sbusy_drop: page {self.pa(m):#x} is not "
                                     "soft-busied")
            b -= 1
            if b == PBUSY_WANTED:
                b = 0
            self.pages.busy_count[m] = b
        with self.sleep:
            self.sleep.notify_all()

    @page_op()
    def io_start(self, m: int) -> None:
        self._need_hard_busy(m, "vm_page_io_start")
        with self.atomic:
            self.pages.busy_count[m] += 1

    @page_op(refuse_free=False)
    def io_finish(self, m: int) -> None:
        with self.atomic:
            if not self.pages.busy_count[m] & PBUSY_MASK:
                raise PageStateError("vm_page_io_finish: no I/O in progress")
            self.pages.busy_count[m] -= 1

    def _need_hard_busy(self, m: int, fn: str) -> None:
        if not self.pages.busy_count[m] & PBUSY_LOCKED:
            raise PageStateError(f"{fn}: page {self.pa(m):#x} is not hard-busied")

    @page_op(locked=True)
    def vm_page_wire(self, m: int) -> None:
        """Wire a (hard-busied) page; 0->1 counts in v_wire_count.  It stays queued."""
        p = self.pages
        if p.flags[m] & PG_FICTITIOUS:
            return
        self._need_hard_busy(m, "vm_page_wire")
        if queue_base(p.queue[m]) == PQ_FREE:
            raise PageStateError(f"vm_page_wire: page {self.pa(m):#x} is free")
        p.wire_count[m] += 1
        if p.wire_count[m] == 1:
            self._count_adj(V_WIRE_COUNT, 1)

    @page_op(locked=True)
    def vm_page_unwire(self, m: int, activate: bool) -> None:
        """Unwire; on 1->0 the page goes to the active (``activate``, or NEED_COMMIT) or
        the inactive queue's tail.  Never to cache."""
        if self.pages.flags[m] & PG_FICTITIOUS:
            return
        if self.pages.wire_count[m] <= 0:
            raise PageStateError(f"vm_page_unwire: page {self.pa(m):#x} is not wired")
        self._need_hard_busy(m, "vm_page_unwire")
        self._unwire(m, activate)

    def _unwire(self, m: int, activate: bool) -> None:
        p = self.pages
        p.wire_count[m] -= 1
        if p.wire_count[m] == 0:
            self._count_adj(V_WIRE_COUNT, -1)
            if p.flags[m] & PG_UNQUEUED:
                return
            if activate or p.flags[m] & PG_NEED_COMMIT:
                self.vm_page_activate(m)
            else:
                self.vm_page_deactivate(m)

    @page_op(refuse_free=False, locked=True)
    def vm_page_hold(self, m: int) -> None:
        """Hold a page (a free page may not be held; one parked on PQ_HOLD may)."""
        if queue_base(self.pages.queue[m]) == PQ_FREE or (self.kernel is not None and
                                                         self._buddy_free(m)):
            raise PageStateError(f"vm_page_hold: page {self.pa(m):#x} is free")
        with self.atomic:
            self.pages.hold_count[m] += 1

    @page_op(refuse_free=False, locked=True)
    def vm_page_unhold(self, m: int) -> None:
        """Drop a hold; the last one moves a page parked on PQ_HOLD to PQ_FREE."""
        p = self.pages
        if p.hold_count[m] <= 0:
            raise PageStateError(f"vm_page_unhold: page {self.pa(m):#x} is not held")
        if queue_base(p.queue[m]) == PQ_FREE:
            raise PageStateError(f"vm_page_unhold: page {self.pa(m):#x} is free")
        with self.atomic:
            p.hold_count[m] -= 1
            last = p.hold_count[m] == 0
        if last and queue_base(p.queue[m]) == PQ_HOLD:
            self._rem_queue(m)
            self._give_free(m)
