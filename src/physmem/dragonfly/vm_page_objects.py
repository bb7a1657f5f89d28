"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

Objects and the page hash: vm_quickcolor, object creation, vm_page_insert/remove/rename,
vm_page_lookup and its busy variants, vm_page_hash_get/enter.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError
from .locks import page_op
from .vm_object import OBJ_TYPES, OBJT_DEFAULT, OBJT_VNODE, VmObject
from .vm_object import tab_lookup as _tab_lookup
from .vm_page_array import (
    PG_MAPPEDMULTI,
    PQ_CACHE,
    PQ_PRIME2,
    queue_base,
)
from .vm_page_core import LOOKUP_NONE, RETRY, WAIT
from .vm_page_defs import (
    PageStateError,
)

tab_lookup = _tab_lookup.py        # Python's read of the table (no numba import)


class ObjectMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # Objects, lookup, hash
    # ======================================================================================
    def vm_quickcolor(self) -> int:
        """vm_object.c's vm_quickcolor(): the creating thread's term plus this CPU's
        ``gd_quick_color``, which steps by PQ_PRIME2 (23) per object.  Not masked (the
        colour is used modulo the CPU's slice).  The per-CPU counter is only touched by its
        own CPU in the kernel (a critical section); here threads may share a CPU, so it is
        bumped under stats_lock.  Returns the colour."""
        cpu = self._tls.cpu
        with self.stats_lock:
            pg_color = self._tls.thread_color + self._quick_color[cpu]
            self._quick_color[cpu] += PQ_PRIME2
        return pg_color

    def set_thread_color(self, value: int) -> None:
        """Set the calling thread's vm_quickcolor() term (``curthread >> 10``; 0 by
        default).  Lets a model run give its threads distinct object colours as distinct
        kernel threads get."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 31:
            raise ArgumentError(f"thread colour {value!r} is not an int in 0..2**31-1")
        self._tls.thread_color = value

    def object_create(self, type: str = OBJT_DEFAULT) -> VmObject:
        """A new VM object (_vm_object_allocate): its colour offset is vm_quickcolor()."""
        if type not in OBJ_TYPES:
            raise ArgumentError(f"unknown object type {type!r} ({', '.join(OBJ_TYPES)})")
        with self.stats_lock:                  # ids are handed out once, on any thread
            oid = self._next_obj
            self._next_obj += 1
            if type == OBJT_VNODE:
                # vnode objects by id, for the compiled active scan's act_count decline
                v = self.vnode_ids
                if oid >= len(v):
                    v = np.concatenate([v, np.zeros(max(len(v), oid + 1), np.uint8)])
                v[oid] = 1
                self.vnode_ids = v
        o = VmObject(oid, type, self.vm_quickcolor(), self.objtab)
        self.objects[o.id] = o
        return o

    @page_op()
    def vm_page_insert(self, m: int, obj: VmObject, pindex: int) -> bool:
        """Enter a hard-busied page into ``obj`` at ``pindex``; False if that index is
        taken."""
        self._check_obj(obj, "vm_page_insert")
        self._check_pindex(pindex, "vm_page_insert")
        self._need_hard_busy(m, "vm_page_insert")
        if self.pages.obj[m]:
            raise PageStateError(f"vm_page_insert: page {self.pa(m):#x} already in object")
        return self._insert(m, obj, pindex)

    def _insert(self, m: int, obj: VmObject, pindex: int) -> bool:
        """vm_page_insert's work, the body :func:`~.vm_page_core.page_insert` under the
        object's token (the buddy source's alloc and vm_page_rename come here)."""
        p, t = self.pages, self.objtab
        me = self._tls.me
        while True:
            if self._gate is None:
                r = self._c_insert(p.w4, p.w1, p.pi, t.ot, t.ob, m, obj.id, pindex, me)
            else:
                r = self._body("_c_insert", p.mw4, p.mw1, p.pindex, t.vot, t.vob, m, obj.id,
                               pindex, me)
            if r >= 0:
                return not r
            self._obj_retry(r)

    def _obj_retry(self, r: int) -> None:
        """An object body's decline ``r``: RETRY (fix the table), or -WAIT - word."""
        if r == RETRY:
            self.objtab.fix()
        else:
            self._wait_word(-WAIT - r)

    @page_op()
    def vm_page_remove(self, m: int) -> None:
        p = self.pages
        oid = p.obj[m]
        if not oid:
            return
        self._need_hard_busy(m, "vm_page_remove")
        self._remove(m)

    def _remove(self, m: int) -> None:
        """vm_page_remove's work on a hard-busied page of an object: the body
        :func:`~.vm_page_core.page_remove` under the object's token (no page or queue
        lock may be held: token first)."""
        p, t = self.pages, self.objtab
        me = self._tls.me
        while True:
            if self._gate is None:
                r = self._c_remove(p.w4, p.pi, t.ot, t.ob, m, me)
            else:
                r = self._body("_c_remove", p.mw4, p.pindex, t.vot, t.vob, m, me)
            if r >= 0:
                return
            self._obj_retry(r)

    def vm_page_lookup(self, obj: VmObject, pindex: int) -> int | None:
        """The page of ``obj`` at ``pindex`` (entered in the page hash), or None."""
        self._check_obj(obj, "vm_page_lookup")
        self._check_pindex(pindex, "vm_page_lookup")
        return self._lookup(obj, pindex)

    def _lookup(self, obj: VmObject, pindex: int) -> int | None:
        """vm_page_lookup's work, the body :func:`~.vm_page_core.page_lookup` under the
        object's token (``obj`` and ``pindex`` checked by the caller)."""
        t = self.objtab
        me = self._tls.me
        while True:
            if self._gate is None:
                m = self._c_lookup(t.ot, t.ob, obj.id, pindex, me)
            else:
                m = self._body("_c_lookup", t.vot, t.vob, obj.id, pindex, me)
            if m >= 0:
                break
            if m == LOOKUP_NONE:
                return None
            self._obj_retry(m)
        if self.hash is not None:
            self.hash_enter(m)
        return m

    def vm_page_lookup_busy_try(self, obj: VmObject, pindex: int,
                                also_m_busy: bool) -> tuple[int | None, bool]:
        """(page, error): None if absent; the page and True if busy; else hard-busied.
        The lookup and the busy run under the object's token, as the kernel's caller
        holds the object: otherwise another thread (the pagedaemon's cache -> free, a
        read recycling a cache page) could free the page in between, and the busy would
        land on a free page."""
        self._check_obj(obj, "vm_page_lookup_busy_try")
        self._check_pindex(pindex, "vm_page_lookup_busy_try")
        return self._lookup_busy_try(obj, pindex, also_m_busy)

    def _lookup_busy_try(self, obj: VmObject, pindex: int,
                         also_m_busy: bool) -> tuple[int | None, bool]:
        """vm_page_lookup_busy_try's work under ``obj``'s token (arguments checked)."""
        with obj.token:
            m = self._lookup(obj, pindex)
            if m is None:
                return None, False
            return m, self._busy_try(m, also_m_busy)

    @page_op(locked=True)
    def vm_page_rename(self, m: int, obj: VmObject, pindex: int) -> None:
        """Move a hard-busied page to (obj, pindex); a cached page is deactivated; the
        page is always dirtied."""
        self._check_obj(obj, "vm_page_rename")
        self._check_pindex(pindex, "vm_page_rename")
        self._need_hard_busy(m, "vm_page_rename")
        if tab_lookup(self.objtab.vot, obj.id, pindex) >= 0:
            raise PageStateError(f"vm_page_rename: object {obj.id} already has {pindex}")
        self.vm_page_remove(m)
        self._insert(m, obj, pindex)
        if queue_base(self.pages.queue[m]) == PQ_CACHE:
            self.vm_page_deactivate(m)
        self.vm_page_dirty(m)

    @page_op(refuse_free=False)
    def vm_page_next(self, m: int) -> int | None:
        oid = self.pages.obj[m]
        if not oid:
            return None
        n = tab_lookup(self.objtab.vot, oid, self.pages.pindex[m] + 1)
        return n if n >= 0 else None

    def hash_enter(self, m: int) -> None:
        """vm_page_hash_enter: only PG_MAPPEDMULTI pages with an object."""
        h, p = self.hash, self.pages
        if h is None or not p.flags[m] & PG_MAPPEDMULTI or not p.obj[m]:
            return
        obj = self.objects[p.obj[m]]
        if self.hash_vnode_only and obj.type != "vnode":
            return
        pindex = p.pindex[m]
        i = h.index(obj, pindex)
        self.ticks += 1
        best = i
        best_delta = self.ticks - h.ticks[i]
        for j in range(i, i + 4):
            if h.m[j] == m + 1 and h.obj[j] == obj.id and h.pindex[j] == pindex:
                h.ticks[j] = self.ticks
                return
            d = self.ticks - h.ticks[j]
            if d < -1 or best_delta < d:       # DragonFly never updates best_delta
                best = j
        h.m[best], h.obj[best], h.pindex[best], h.ticks[best] = m + 1, obj.id, pindex, self.ticks

    def vm_page_hash_get(self, obj: VmObject, pindex: int) -> int | None:
        """The lockless heuristic lookup: a soft-busied page, or None (try the slow path)."""
        self._check_obj(obj, "vm_page_hash_get")
        self._check_pindex(pindex, "vm_page_hash_get")
        h, p = self.hash, self.pages
        if h is None:
            return None
        i = h.index(obj, pindex)
        for j in range(i, i + 4):
            m = h.m[j] - 1                     # index + 1; 0: empty
            if m < 0 or h.obj[j] != obj.id or h.pindex[j] != pindex:
                continue
            if p.obj[m] != obj.id or p.pindex[m] != pindex:
                continue
            if self.sbusy_try(m):
                continue
            if p.obj[m] != obj.id or p.pindex[m] != pindex:
                self.sbusy_drop(m)
                continue
            if h.ticks[j] != self.ticks:
                h.ticks[j] = self.ticks
            return m
        return None
