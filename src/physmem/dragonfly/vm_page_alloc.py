"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

vm_get_pg_color, vm_page_select_free/cache/free_or_cache, vm_page_alloc and its wrappers,
the DMA reserve's vm_page_alloc_contig/free_contig, vm_page_free_toq; the buddy source's
take and give.
"""

from __future__ import annotations

from ..bits import PAGE_SHIFT
from ..errors import AddressError, ArgumentError
from .alist import ALIST_BLOCK_NONE
from .locks import PAGE_STRIPES, page_op
from .vm_meter import (
    V_ACTIVE_COUNT,
    V_FREE_COUNT,
)
from .vm_object import VmObject
from .vm_page_array import (
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PQ_CACHE,
    PQ_FREE,
    PQ_L2_MASK,
    PQ_L2_SIZE,
    VM_PAGE_BITS_ALL,
    queue_base,
)
from .vm_page_core import (
    BUDDY_FLOOR,
    BUDDY_RACED,
    BUDDY_TAKEN,
    FREE_ERR,
    FREE_ERR_FREE,
    FREED_FICT,
    FREED_GIVE,
    LOOKUP_NONE,
    NW_SHIFT,
    RD_CACHE,
    RD_HASH,
    RD_HIT,
    RD_NEW,
    RD_PART,
    RD_RECYCLED,
    RD_SLOW,
    READ_ACTIVATE,
    RETRY,
    SEL_FLOOR,
    SEL_FOUND,
    SEL_MATERIALISE,
    SEL_NONE,
    SEL_RETRY,
    SEL_TAKEN,
    SEL_WAIT,
    WAIT,
    WAKE,
)
from .vm_page_defs import (
    ALLOC_CLASSES,
    PINDEX_LIMIT,
    RETRY_LIMIT,
    VM_ALLOC_CPU_SPEC,
    VM_ALLOC_FORCE_ZERO,
    VM_ALLOC_NORMAL,
    VM_ALLOC_NULL_OK,
    VM_ALLOC_RETRY,
    VM_ALLOC_ZERO,
    PageStateError,
)
from .vm_pageout import Proc


class AllocMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # Allocation
    # ======================================================================================
    def vm_get_pg_color(self, cpu: int, obj: VmObject | None, pindex: int) -> int:
        """The colour for (obj, pindex) on ``cpu``: the CPU's slice of the colours
        (socket, core, thread) plus (pindex + the object's colour) modulo the slice."""
        k = pindex + (obj.pg_color if obj is not None else 0)
        cs = self._color_cs
        return (self._color_base[cpu] + k % cs) & PQ_L2_MASK

    def _color_slices(self) -> None:
        """Each CPU's first colour and the slice width, as vm_get_pg_color computes them:
        phys_id * (1024/sockets) + core_id * (that/cores) + ht_id * (that/threads)."""
        t = self.topology
        phys = PQ_L2_SIZE // t.sockets
        grp = phys // t.cores
        cs = grp // t.threads
        self._color_cs = cs
        self._color_base = []
        for cpu in range(self.ncpus):
            phys_id, core_id, ht_id = t.ids(cpu)
            self._color_base.append(phys_id * phys + core_id * grp + ht_id * cs)

    def _cache_ok(self, m: int) -> bool:
        """A busied cache page that can be recycled (vm_page_select_cache's test)."""
        p = self.pages
        return not (p.flags[m] & (PG_NEED_COMMIT | PG_MAPPED) or p.hold_count[m] or
                    p.wire_count[m] or p.dirty[m] & p.valid[m])

    def _select(self, b1: int, b2: int, color: int, oid: int = -1, pindex: int = 0,
                req: int = 0) -> tuple[int | None, int]:
        """vm_page_select_free (``b1`` PQ_FREE, ``b2`` 0), vm_page_select_cache
        (PQ_CACHE, 0) or vm_page_select_free_or_cache (PQ_FREE, PQ_CACHE): the body
        :func:`~.vm_page_core.select_insert` (the removal counted in it; with ``req``,
        vm_page_alloc's class floor first; with ``oid`` >= 0 a free page found enters
        object ``oid`` at ``pindex`` in the same call), then the pagedaemon kicked
        (twice for vm_page_alloc's page: the select's test and its own).  Returns (the
        page, dequeued and hard-busied, the base it came from), (None, b1), (None, -1)
        if ``pindex`` is taken or (None, -2) at the class floor (nothing changed).
        Between the body's calls, what it leaves to Python: a lock another thread holds
        (waited for), a block to materialise, a full table, a page found that cannot be
        taken (set aside: :meth:`_set_aside`)."""
        if self._witness_on:
            self.witness.path(("queue", False), ("page", True))
        p, tab, t = self.pages, self.objtab, self._tls
        w4, w2, w1, off, sam = p.w4, p.w2, p.w1, self.queues.off, self.set_assoc_mask
        cpu, me = t.cpu, t.me
        while True:
            if self._gate is None:
                st, m, r = self._c_select(w4, w2, w1, p.pi, tab.ot, tab.ob, self.stats, off,
                                          b1, b2, color, sam, cpu, req, oid, pindex, me)
            else:
                st, m, r = self._body("_c_select", p.mw4, p.mw2, p.mw1, p.pindex, tab.vot, tab.vob,
                                      self._st, off, b1, b2, color, sam, cpu, req, oid,
                                      pindex, me)
            if st == SEL_FOUND:
                base = r & 0xFFFF
                if r & WAKE:
                    self.pagedaemon_wakeup()       # (it tests no more below that)
                    if req and base == PQ_FREE and oid >= 0:
                        self.pagedaemon_wakeup()   # vm_page_alloc's own test
                return m, base
            if st == SEL_NONE:
                return None, b1
            if st == SEL_FLOOR:
                return None, -2
            if st == SEL_WAIT:
                self._wait_word(m)
            elif st == SEL_RETRY:
                tab.fix()
            elif st == SEL_TAKEN:
                return None, -1
            elif st == SEL_MATERIALISE:
                self.queues.materialise(m)
            else:
                self._set_aside(m, r)

    def _set_aside(self, m: int, base: int) -> None:
        """The select loops' way past a page they found but cannot take (busy, or a cache
        page that cannot be recycled): dequeued and deactivated under its spinlock (a
        cache page busied meanwhile and unbusied after).  If the page left its queue
        before the spinlock was had, or can be taken now, nothing: the caller searches
        again."""
        p = self.pages
        spin = self.page_spin[m & (PAGE_STRIPES - 1)]
        spin.acquire()
        try:
            if queue_base(p.queue[m]) != base:
                return
            if self._busy_try(m, True):
                self._rem_queue(m)
                self._deactivate_locked(m, False)
            elif base == PQ_CACHE and not self._cache_ok(m):
                self._rem_queue(m)
                self._deactivate_locked(m, False)
                self._wakeup(m)
            else:
                self._wakeup(m)
        finally:
            spin.release()

    def _recycle(self, m: int) -> None:
        """vm_page_alloc's found_cache: a busied cache page on its way back to PQ_FREE.
        It belongs to some object the caller may not hold: free it only if that object's
        token can be had without waiting (vm_object_hold_try), else deactivate and unbusy
        it (another thread, e.g. vm_object_terminate, is working on that object)."""
        oid = self.pages.obj[m]
        obj = self.objects.get(oid) if oid else None
        if obj is None:
            self.vm_page_free(m)
            return
        if not obj.token.acquire(False):
            self.vm_page_deactivate(m)
            self._wakeup(m)
            return
        try:
            self.vm_page_free(m)
        finally:
            obj.token.release()

    def vm_page_alloc(self, obj: VmObject | None, pindex: int, req: int) -> int | None:
        """Allocate a page for (obj, pindex); returns it hard-busied and unqueued, or None
        when the class's floor is reached (the pagedaemon is kicked)."""
        if type(req) is not int or not req & ALLOC_CLASSES:
            raise ArgumentError("vm_page_alloc: one of NORMAL, QUICK, SYSTEM, INTERRUPT "
                                "is required")
        if type(pindex) is not int or not 0 <= pindex < PINDEX_LIMIT:
            self._check_pindex(pindex, "vm_page_alloc")
        # (the exact type first: a subclass or a stranger gets _check_obj's full test)
        if obj is not None and (type(obj) is not VmObject or
                                self.objects.get(obj.id) is not obj):
            self._check_obj(obj, "vm_page_alloc")
        return self._alloc(obj, pindex, req)

    def _alloc(self, obj: VmObject | None, pindex: int, req: int) -> int | None:
        """vm_page_alloc past its argument checks (vm_page_grab's way in: it checked
        them)."""
        if obj is not None:
            k = pindex + obj.pg_color
            oid = obj.id
            # The kernel has no pre-check: it selects a page (recycling PQ_CACHE pages on
            # the way), vm_page_insert fails, the page is freed again and NULL returned
            # with VM_ALLOC_NULL_OK.  Without it the kernel panics ("PAGE RACE"): refuse
            # that before anything changes.  The bodies test it first (select_insert's
            # SEL_TAKEN, buddy_pre); the paths that do not reach them test it here.
        else:
            k = pindex
            oid = 0
        here = self._tls.cpu
        if req & VM_ALLOC_CPU_SPEC:
            cpu = req >> 16
            if not 0 <= cpu < self.ncpus:
                if oid and not req & VM_ALLOC_NULL_OK and self._present(oid, pindex):
                    return self._page_race(obj, pindex, req)
                raise ArgumentError(f"VM_ALLOC_CPU({cpu}) out of range 0..{self.ncpus - 1}")
        else:
            cpu = here
        buddy = self.kernel is not None
        # vm_get_pg_color (the buddy source needs it only for PQ_CACHE)
        color = 0 if buddy else (self._color_base[cpu] + k % self._color_cs) & PQ_L2_MASK
        if self._tier > 0:                  # the JIT's tier: compiled after N allocations
            self._tier -= 1
            if not self._tier:
                self._enter_core()
        b2 = PQ_CACHE if req & VM_ALLOC_NORMAL else 0
        retries = 0
        taken = False               # (obj, pindex) taken, VM_ALLOC_NULL_OK: select only
        while True:
            if not buddy:
                # the class floor, the select, the insert, the counts: one body
                m, base = self._select(PQ_FREE, b2, color, -1 if taken else oid, pindex,
                                       req & ALLOC_CLASSES)
                if base == -1:
                    if not req & VM_ALLOC_NULL_OK:
                        return self._page_race(obj, pindex, req)
                    taken = True
                    continue
                ok = base != -2
            else:
                # the buddy source: both selects begin with the buddy take
                m, wake = self._buddy_take(req, -1 if taken else oid, pindex)
                if wake & BUDDY_TAKEN:
                    if not req & VM_ALLOC_NULL_OK:
                        return self._page_race(obj, pindex, req)
                    taken = True
                if wake & BUDDY_RACED:       # lost (obj, pindex) to another thread
                    self.vm_page_free(m)
                    return self._page_race(obj, pindex, req)
                ok = wake & BUDDY_FLOOR
                base = PQ_FREE
                if ok:
                    if m is None and b2:
                        m, base = self._select(PQ_CACHE, 0,
                                               self.vm_get_pg_color(cpu, obj, pindex))
            if ok:
                if m is None:
                    # The count raced (or is stale): fold the per-CPU deltas and look
                    # again.  The kernel loops forever; the model gives up after a few.
                    self.vmstats_rollup()
                    retries += 1
                    if retries > 3:
                        break
                    continue
                if base == PQ_CACHE:
                    self._recycle(m)
                    continue
                if taken:                   # vm_page_insert failed: freed again, NULL
                    self.vm_page_free(m)
                    return None
                if buddy and wake & WAKE:
                    self.pagedaemon_wakeup()    # vm_page_alloc's test, after the insert
                return m
            if oid and not req & VM_ALLOC_NULL_OK and self._present(oid, pindex):
                return self._page_race(obj, pindex, req)
            if b2:
                if buddy:
                    color = self.vm_get_pg_color(cpu, obj, pindex)
                m, _ = self._select(PQ_CACHE, 0, color)
                if m is not None:
                    self._recycle(m)
                    continue
            break
        self.deficit += 1
        self.pagedaemon_wakeup()
        return None

    def _present(self, oid: int, pindex: int) -> bool:
        """Whether object ``oid`` has a page at ``pindex`` (the lookup body, under its
        token)."""
        t = self.objtab
        me = self._tls.me
        while True:
            if self._gate is None:
                m = self._c_lookup(t.ot, t.ob, oid, pindex, me)
            else:
                m = self._body("_c_lookup", t.vot, t.vob, oid, pindex, me)
            if m >= 0 or m == LOOKUP_NONE:
                return m >= 0
            self._obj_retry(m)

    @staticmethod
    def _page_race(obj: VmObject, pindex: int, req: int) -> None:
        """(obj, pindex) is taken: NULL with VM_ALLOC_NULL_OK, else the kernel's panic."""
        if req & VM_ALLOC_NULL_OK:
            return None
        raise PageStateError(f"vm_page_alloc: object {obj.id} already has page {pindex} "
                             "(PAGE RACE)")

    def vm_page_grab(self, obj: VmObject, pindex: int, req: int,
                     proc: Proc | None = None) -> int | None:
        """vm_page_grab: the object's page at ``pindex`` hard-busied, allocated when absent
        (with VM_ALLOC_RETRY it waits for memory instead of failing); VM_ALLOC_ZERO zeroes
        a new page and marks it valid, VM_ALLOC_FORCE_ZERO zeroes even a valid one."""
        self._check_obj(obj, "vm_page_grab")
        self._check_pindex(pindex, "vm_page_grab")
        for _ in range(RETRY_LIMIT):
            m, busy = self._lookup_busy_try(obj, pindex, True)     # under the token
            if busy:
                if not req & VM_ALLOC_RETRY:
                    return None
                self._sleep_busy(m)     # vm_page_sleep_busy: the page may be freed
                continue                # meanwhile: the lookup again
            if m is None:
                r = (req & ~VM_ALLOC_RETRY) | (VM_ALLOC_NULL_OK if req & VM_ALLOC_RETRY else 0)
                # (obj and pindex checked above; the class: vm_page_alloc's error)
                m = self._alloc(obj, pindex, r) if r & ALLOC_CLASSES else \
                    self.vm_page_alloc(obj, pindex, r)
                if m is None:
                    self.vm_wait(proc)
                    if not req & VM_ALLOC_RETRY:
                        return None
                    continue
            if req & VM_ALLOC_FORCE_ZERO or (req & VM_ALLOC_ZERO and
                                            self.pages.valid[m] != VM_PAGE_BITS_ALL):
                self.zeroed_pages += 1
                self.pages.valid[m] = VM_PAGE_BITS_ALL
            return m
        raise PageStateError(f"vm_page_grab: no page for {pindex} after {RETRY_LIMIT} waits")

    def pagecache_read(self, obj: VmObject, pindex: int, proc: Proc | None = None) -> int:
        """One file page read through the buffer cache, as the page-cache workloads do it:
        ``vm_page_grab(obj, pindex, NORMAL | RETRY)``; unless the page is all valid,
        ``vm_page_set_validclean`` over the whole page; ``vm_page_activate``;
        ``vm_page_wakeup`` -- the same steps in the same order, the arguments checked
        once.  Returns the page (unbusied, active).  The common cases (a page found
        idle; a miss allocated from PQ_FREE) are one body
        (:func:`~.vm_page_core.page_read`); a busy page, the class floor or an empty
        search take vm_page_grab's path."""
        if type(obj) is not VmObject or self.objects.get(obj.id) is not obj:
            self._check_obj(obj, "vm_page_grab")
        if type(pindex) is not int or not 0 <= pindex < PINDEX_LIMIT:
            self._check_pindex(pindex, "vm_page_grab")
        p, tab, t = self.pages, self.objtab, self._tls
        here = t.cpu
        color = (self._color_base[here] + (pindex + obj.pg_color) % self._color_cs) & \
            PQ_L2_MASK                      # vm_get_pg_color
        if self._witness_on:
            self.witness.path(("queue", False), ("page", True))
            self.witness.path(("page", False), ("queue", False))
        off, sam, oid, me = self.queues.off, self.set_assoc_mask, obj.id, t.me
        alloc = 1 if self.kernel is None else 0    # (the buddy source's misses: grab's)
        recycle = -1
        while True:
            # whether a free needs Python after its body: the pmap's sets, waiters
            stop = 1 if (self.md_mod or self.vm_pageout_pages_needed or
                         self.vm_pages_waiting) else (2 if self.md_refs else 0)
            if self._gate is None:
                st, m, r = self._c_read(p.w4, p.w2, p.w1, p.pi, tab.ot, tab.ob, self.stats,
                                        off, PQ_CACHE, color, sam, alloc, stop, recycle,
                                        here, oid, pindex, me)
            else:
                st, m, r = self._body("_c_read", p.mw4, p.mw2, p.mw1, p.pindex, tab.vot,
                                      tab.vob, self._st, off, PQ_CACHE, color, sam, alloc,
                                      stop, recycle, here, oid, pindex, me)
            recycle = -1                    # (the body recycles it first, or hands it back)
            if st == RD_HIT:
                if r & RD_HASH and self.hash is not None:
                    self.hash_enter(m)
                return self._read_end(m, r & 0xFFFFFFFF)
            if st in (RD_NEW, RD_PART):
                if r >> NW_SHIFT:           # the select's kick, then vm_page_alloc's
                    self.pagedaemon_wakeup()
                    self.pagedaemon_wakeup()
                if self._tier > 0:          # the JIT's tier: compiled after N allocations
                    self._tier -= 1
                    if not self._tier:
                        self._enter_core()
                if st == RD_NEW:
                    return self._read_end(m, r & 0xFFFFFFFF)
                return self._read_done(m)
            if st == RD_CACHE:              # a cache page taken: the kick, then its recycle
                self.pagedaemon_wakeup()
                recycle = m
            elif st == RD_RECYCLED:         # the rest of that cache page's free
                self._freed(m, r)
            elif st == RD_SLOW:
                return self._read_done(self.vm_page_grab(obj, pindex,
                                                         VM_ALLOC_NORMAL | VM_ALLOC_RETRY,
                                                         proc))
            elif st == SEL_FOUND:           # a cache page: recycled, then again
                self._recycle(m)
            elif st == SEL_WAIT:
                self._wait_word(m)
            elif st == SEL_RETRY:
                tab.fix()
            elif st == SEL_MATERIALISE:
                self.queues.materialise(m)
            else:
                self._set_aside(m, r)

    def _read_done(self, m: int | None) -> int:
        """pagecache_read after vm_page_grab: the body :func:`~.vm_page_core.read_done`
        (waiting for the locks it meets held), then :meth:`_read_end`."""
        assert m is not None
        p = self.pages
        me = self._tls.me
        while True:
            if self._gate is None:
                r = self._c_read_done(p.w4, p.w2, p.w1, self.queues.off, m, me)
            else:
                r = self._body("_c_read_done", p.mw4, p.mw2, p.mw1, self.queues.off, m, me)
            if r >= 0:
                return self._read_end(m, r)
            self._wait_word(-WAIT - r)

    def _read_end(self, m: int, r: int) -> int:
        """The read's tail after read_done's result ``r``: a page on another queue is
        activated and unbusied here; a page that joined PQ_ACTIVE is counted; busy
        waiters are woken.  Returns the page."""
        if r == READ_ACTIVATE:       # on another queue: vm_page_activate, then the wakeup
            spin = self.page_spin[m & (PAGE_STRIPES - 1)]
            spin.acquire()
            try:
                self._activate(m)
            finally:
                spin.release()
            self._wakeup(m)
            return m
        if r & 1:                    # _add_queue's count (an addition never folds)
            self._count(V_ACTIVE_COUNT, 1)
        if r & PBUSY_WANTED:
            with self.sleep:
                self.sleep.notify_all()
        return m

    def vm_page_alloczwq(self, pindex: int, req: int, proc: Proc | None = None) -> int | None:
        """vm_page_alloczwq: an object-less page, wired and unbusied (zeroed if asked)."""
        for _ in range(RETRY_LIMIT):
            m = self.vm_page_alloc(None, pindex, req & ~VM_ALLOC_RETRY)
            if m is not None:
                break
            self.vm_wait(proc)
            if not req & VM_ALLOC_RETRY:
                return None
        else:
            raise PageStateError(f"vm_page_alloczwq: no page after {RETRY_LIMIT} waits")
        if req & (VM_ALLOC_ZERO | VM_ALLOC_FORCE_ZERO):
            self.zeroed_pages += 1
            self.pages.valid[m] = VM_PAGE_BITS_ALL
        self.vm_page_wire(m)
        self._wakeup(m)
        return m

    @page_op()
    def vm_page_freezwq(self, m: int) -> None:
        """vm_page_freezwq: busy, unwire, free a page from vm_page_alloczwq."""
        p = self.pages
        if (p.wire_count[m] != 1 or p.obj[m] or p.flags[m] & PG_FICTITIOUS
                or p.busy_count[m] & PBUSY_MASK):
            raise PageStateError(f"vm_page_freezwq: page {self.pa(m):#x} is not an idle "
                                 "vm_page_alloczwq page")
        self.busy_wait(m, False)
        self._unwire(m, False)
        self.vm_page_free(m)

    def vm_page_alloc_contig(self, npages: int, high: int = 0) -> int | None:
        """vm_page_alloc_contig from the DMA reserve: ``npages`` wired, fictitious, unbusied
        pages, or None (low, alignment and boundary are not looked at, as in the kernel)."""
        if not isinstance(npages, int) or npages <= 0:
            raise ArgumentError(f"npages {npages!r} must be a positive integer")
        if self.dma_alist is None:
            return None
        blk = self.dma_alist.alloc_below(npages, (high >> PAGE_SHIFT) if high else None)
        if blk == ALIST_BLOCK_NONE:
            return None
        self.dma_out[blk] = npages
        return blk - self.first_pfn

    def vm_page_free_contig(self, m: int, npages: int) -> None:
        """vm_page_free_contig: a run from vm_page_alloc_contig back to the reserve."""
        if type(m) is not int or type(npages) is not int:
            raise ArgumentError("vm_page_free_contig: page and npages must be integers")
        pfn = m + self.first_pfn
        if self.dma_out.get(pfn) != npages:
            raise PageStateError(f"vm_page_free_contig: {self.pa(m):#x} + {npages} pages "
                                 "was not allocated by vm_page_alloc_contig")
        if pfn < self.low_phys_reserved and \
                (pfn + npages) << PAGE_SHIFT > self.low_phys_reserved_pa:
            # KKASSERT(pa + size <= vm_low_phys_reserved): a run that reaches into the
            # partial page above a reserve line that is not page aligned.
            raise PageStateError(f"vm_page_free_contig: {self.pa(m):#x} + {npages} pages "
                                 "ends above vm_low_phys_reserved "
                                 f"{self.low_phys_reserved_pa:#x}")
        del self.dma_out[pfn]
        assert self.dma_alist is not None
        self.dma_alist.free(pfn, npages)

    # ======================================================================================
    # Freeing
    # ======================================================================================
    def vm_page_free(self, m: int) -> None:
        """vm_page_free_toq: the page (hard-busied) goes to the head of PQ_FREE + pc, or
        the tail of PQ_HOLD while it is held; it leaves its object, loses its valid and
        dirty bits, and is unbusied.  Takes the object's token, then the page's
        spinlock (the kernel's order: token, page, queue)."""
        p = self.pages
        if type(m) is not int or not 0 <= m < p.npages or self.unmanaged[m]:
            raise AddressError(f"vm_page_free: {m!r} is not a page of this machine")
        # the page's state is checked by the body, before it changes anything.  (A page
        # free in vm_phys is never hard-busied -- every busying path refuses free pages
        # -- so the body's busy test refuses it too, as "not hard-busied", the error the
        # old door gave it first.)
        give = 0 if self.kernel is None else 1
        if self._witness_on:
            self.witness.path(("page", False), ("queue", False))
        t, tab = self._tls, self.objtab
        w4, w2, w1, off = p.w4, p.w2, p.w1, self.queues.off
        cpu, me = t.cpu, t.me
        while True:         # the body (vm_page_core.free_toq): the removal, the counts
            if self._gate is None:
                r = self._c_free_toq(w4, w2, w1, p.pi, tab.ot, tab.ob, self.stats, off, m,
                                     give, cpu, me)
            else:
                r = self._body("_c_free_toq", p.mw4, p.mw2, p.mw1, p.pindex, tab.vot, tab.vob,
                               self._st, off, m, give, cpu, me)
            if r >= 0:
                break
            if r <= -WAIT:
                self._wait_word(-WAIT - r)
            elif r == RETRY:
                tab.fix()
            else:
                self.queues.materialise(-r - 2)
        if r & FREE_ERR:
            self._free_refused(m, r & 0xFF)
        if r & FREED_GIVE:                   # _buddy_give (counted in the body)
            k = self.kernel
            assert k is not None
            k.free_pages((m + self.first_pfn) << PAGE_SHIFT, 0)
        if r & (FREED_FICT | PBUSY_WANTED) or self.md_mod or self.md_refs or \
                self.vm_pageout_pages_needed or self.vm_pages_waiting:
            self._freed(m, r)

    def _freed(self, m: int, r: int) -> None:
        """vm_page_free_toq's end after its body (result ``r``; a FREED_GIVE page given
        to vm_phys already): the pmap's records of the page dropped, the page's busy
        waiters and the free-page waiters woken."""
        wanted = r & PBUSY_WANTED
        if r & FREED_FICT:
            if wanted:
                with self.sleep:
                    self.sleep.notify_all()
            return
        if self.md_mod:
            self.md_mod.discard(m)
        if self.md_refs:
            self.md_refs.pop(m, None)
            self.pages.mdref[m] = 0      # (its mirror: the pagedaemon's scans read it)
        if wanted or self.vm_pageout_pages_needed or self.vm_pages_waiting:
            self._freed_wakeups(wanted)

    def _free_refused(self, m: int, why: int) -> None:
        """vm_page_free's typed error for page ``m``: not hard-busied (or soft-busied)
        first, then already free (``why`` FREE_ERR_FREE), wired."""
        b = self.pages.busy_count[m]
        if b & (PBUSY_LOCKED | PBUSY_MASK) != PBUSY_LOCKED:
            what = "soft-busied" if b & PBUSY_LOCKED else "not hard-busied"
            raise PageStateError(f"vm_page_free: page {self.pa(m):#x} is {what}")
        if why == FREE_ERR_FREE:
            raise PageStateError(f"vm_page_free: page {self.pa(m):#x} is already free")
        raise PageStateError(f"vm_page_free: page {self.pa(m):#x} is wired")

    def _freed_wakeups(self, wanted: int) -> None:
        """vm_page_free_toq's end: wake the page's busy waiters (``wanted``: its
        PBUSY_WANTED bit), then vm_page_free_wakeup if the pagedaemon or vm_wait sleepers
        wait for free pages."""
        if wanted:
            with self.sleep:
                self.sleep.notify_all()
        if self.vm_pageout_pages_needed or self.vm_pages_waiting:
            self.vm_page_free_wakeup()

    def _give_free(self, m: int) -> None:
        if self.source == "buddy":
            self._buddy_give(m)
        else:
            self._add_queue(m, PQ_FREE + self.pages.pc[m], True)

    def _buddy_take(self, req: int, oid: int, pindex: int) -> tuple[int | None, int]:
        """The buddy source's select and vm_page_alloc's insert: the body
        :func:`~.vm_page_core.buddy_pre` (the class floor of ``req``, (oid, pindex)
        taken); then, unless the floor is reached or (without VM_ALLOC_NULL_OK) the
        pindex taken, an order-0 page from vm_phys, this CPU's domain first, then the
        others in order (the colour is not used), and the body
        :func:`~.vm_page_core.buddy_take`: the page hard-busied, entered into object
        ``oid`` at ``pindex`` (see there; not when taken) and counted out of
        v_free_count.  Returns (the page or None, buddy_pre's bits | the WAKE bit |
        BUDDY_RACED if ``pindex`` was taken meanwhile: the page busied and counted, not
        inserted)."""
        t, tab, p = self._tls, self.objtab, self.pages
        cpu, me = t.cpu, t.me
        while True:
            if self._gate is None:
                pre = self._c_buddy_pre(tab.ot, tab.ob, self.stats, cpu,
                                        req & ALLOC_CLASSES, oid, pindex, me)
            else:
                pre = self._body("_c_buddy_pre", tab.vot, tab.vob, self._st, cpu,
                                 req & ALLOC_CLASSES, oid, pindex, me)
            if pre >= 0:
                break
            self._obj_retry(pre)
        if not pre & BUDDY_FLOOR:
            return None, pre
        if pre & BUDDY_TAKEN:
            if not req & VM_ALLOC_NULL_OK:
                return None, pre
            oid = -1                        # the select alone: its insert would fail
        k = self.kernel
        assert k is not None
        alloc = k.alloc_pages
        for d in self._buddy_domains[cpu]:
            pa = alloc(d, "default", 0)
            if pa is not None:
                m = (pa >> PAGE_SHIFT) - self.first_pfn
                if self._witness_on:
                    self.witness.path(("page", False))
                while True:          # the body (vm_page_core.buddy_take)
                    if self._gate is None:
                        r = self._c_buddy_take(p.w4, p.w1, p.pi, tab.ot, tab.ob, self.stats,
                                               m, cpu, oid, pindex, me)
                    else:
                        r = self._body("_c_buddy_take", p.mw4, p.mw1, p.pindex, tab.vot,
                                       tab.vob, self._st, m, cpu, oid, pindex, me)
                    if r == 1:
                        raise PageStateError("buddy page came back busy")
                    if r == 2:       # taken meanwhile: busied and counted, not inserted
                        pre, oid = pre | BUDDY_RACED, -1
                        continue
                    if r >= 0:
                        return m, pre | r
                    self._obj_retry(r)
        return None, pre

    def _buddy_domains_by_cpu(self) -> list[list[int]]:
        """Per CPU, the vm_phys domains the buddy source tries: the CPU's socket's domain
        (socket modulo the domains), then the others in order."""
        assert self.kernel is not None
        nd = self.kernel.phys.ndomains
        out = []
        for cpu in range(self.ncpus):
            dom = self.topology.ids(cpu)[0] % nd
            out.append([dom, *[d for d in range(nd) if d != dom]])
        return out

    def _buddy_give(self, m: int) -> None:
        """The buddy source's free: the page back to vm_phys, counted in v_free_count."""
        assert self.kernel is not None
        self.kernel.free_pages((m + self.first_pfn) << PAGE_SHIFT, 0)
        self._count(V_FREE_COUNT, 1)
