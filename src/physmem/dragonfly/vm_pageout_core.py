"""The pagedaemon's scans (sys/vm/vm_pageout.c), written once as loops over the page
array's rows: numba compiles them (:mod:`physmem.jit`) and ``vm_pageout.py`` runs them,
or runs them as plain Python with the JIT off.

Two levels, each one implementation:

* a page's *visit* -- ``active_visit`` (vm_pageout_scan_active's steps for one page) and
  ``inactive_visit`` (vm_pageout_scan_inactive's and vm_pageout_page's) -- busies the
  page, decides, changes its fields and returns what to do with it (``V_*``): requeue it
  at its queue's tail, deactivate, reactivate, cache, free, launder, or take it off the
  queues.  It moves nothing and takes no lock: the caller holds the page's spinlock and
  the busy atomic (Python), or their words are 0 (compiled, under the GIL);
* a *scan* -- ``scan_active`` and ``scan_inactive`` -- is one call of
  vm_pageout_scan_active/_inactive's loop: the colours from the rover, PQAVERAGE pages
  of each from its queue's head (``_next_page``, the stepping ``_scan_queues`` runs),
  each page visited and its answer applied with the queue operations (``q_insert``,
  ``q_remove``) and the one-page transitions (``activate_insert``: vm_page_core.py;
  ``deactivate_insert``, ``cache_decide``: vm_page_transitions.py) that Python's
  methods run too, each removal and insertion counted in the CPU's statistics
  (``vmstats_count``: the fold rule included) and v_pdpages in its ``gd_cnt``.  It
  takes no Python lock: it reads the lock words that the page layer's ``WordLock``s
  raise (vm_page_core.py explains why that is safe) and stops.

A scan returns to Python in three ways, with its state (rover, colours started, budget
left, pages got), and Python calls it again with that state after:

* SCAN_DECLINE, *before* visiting the head page: a lock word up (another thread holds
  the queue's, the page's or the atomic's lock: Python blocks or tries as the kernel
  does), a wired, fictitious or unqueued page, a busy waiter to wake; and
  every head when the caller asks for no batch (WITNESS: Python's locks for every page;
  the inactive scan while the pmap has seen writes).  Python visits one page -- the
  same visit function, under the real locks (``_active_page``, ``_inactive_page``);
* SCAN_REFS, after a page whose visit took the pmap's reference count (``mdref``, the
  mirror of ``md_refs``, min(count, 255)): Python drops the dict's entry;
* SCAN_DEFER, *after* visiting a page whose answer only Python can carry out -- free it
  (its object's page table and token) or launder it (the pager, swap): the page comes
  back busied, with its answer, and Python finishes it (``_inactive_act``).

The event counters and vmstats are counted where the kernel counts them, in the
statistics array (vm_meter.py); the pageout stats (deactivated, cached, reactivated)
come back as counts.  The active visit reads fields with ``int()`` only where the
arithmetic needs it (act_count may go below 0; with NUMBA_DISABLE_JIT=1 the rows are
numpy arrays, whose unsigned scalars would wrap): it is the plain Python mode's per-page
cost too.
Pages on the active, inactive and cache queues are never in implicit blocks (only free
pages are), so these queue operations never need a block materialised.
"""

from __future__ import annotations

from ..jit import njit_typed
from .vm_meter import (
    CNT_DFREE,
    CNT_PDPAGES,
    GD_CNT,
    GD_SIZE,
    V_ACTIVE_COUNT,
    V_CACHE_COUNT,
    V_FREE_COUNT,
    V_FREE_MIN,
    V_FREE_RESERVED,
    V_FREE_TARGET,
    V_INACTIVE_COUNT,
    V_PAGEOUT_FREE_MIN,
    V_PAGING_TARGET1,
    vmstats_count,
)
from .vm_page_array import (
    ACT_ADVANCE,
    ACT_MAX,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_NEED_COMMIT,
    PG_REFERENCED,
    PG_UNQUEUED,
    PG_WINATCFLS,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_INACTIVE,
    PQ_L2_MASK,
    PQ_L2_SIZE,
    PQ_PRIME2,
    R_ACT,
    R_BUSY,
    R_DIRTY,
    R_FLAGS,
    R_HEAD,
    R_HOLD,
    R_LCNT,
    R_MDREF,
    R_NEXT,
    R_OBJ,
    R_TAIL,
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
from .vm_page_core import FREE_ERR, FREED_GIVE, _held, activate_insert, free_toq
from .vm_page_transitions import C_CACHE, cache_decide, deactivate_insert

# A visit's answer (the low 3 bits) ...
V_REQUEUE, V_REMOVE, V_DEACTIVATE, V_ACTIVATE, V_CACHE, V_FREE, V_LAUNDER = range(7)
V_ACTION = 7
# ... and what it did on the way (| these)
V_BUSIED = 8        # it hard-busied the page: the caller unbusies it (vm_page_wakeup)
V_PD = 16           # v_pdpages counts this page
V_REFS = 32         # it took the pmap's reference count (the caller drops md_refs[m])
V_DIRTIED = 64      # the pmap's modify bit made it all dirty (the caller marks the object)

SCAN_DONE, SCAN_DECLINE, SCAN_DEFER, SCAN_REFS = range(4)

# Compiled for one signature each (the rows, the vnode map, the statistics, then int64s)
# and without numba's runtime (no views made), as the page layer's bodies: the page
# layer calls them through their entry points.
scan_fn = njit_typed(w4="uint32[:, ::1]", w2="uint16[:, ::1]", w1="uint8[:, ::1]",
                     vnode="uint8[::1]", st="int64[::1]")


# -- one page ---------------------------------------------------------------------------------
@scan_fn
def active_visit(w4, w1, m: int, refs: int, vnode, file_decline: int,
                 anon_decline: int) -> int:
    """vm_pageout_scan_active's steps for active page ``m`` (its spinlock and the busy
    atomic held, or their words 0): the busy try (failed: V_REQUEUE); a wired page
    leaves the queues (V_REMOVE); v_pdpages counts the page (V_PD) past those checks;
    a held page goes to the tail (the kernel's hold check is #if 0); else its references
    (PG_REFERENCED + ``refs``, the pmap's count: V_REFS) age it up by ACT_ADVANCE + refs
    (at most ACT_MAX, V_REQUEUE), or it ages down by its object's decline
    (``file_decline`` for vnode objects, ``vnode[obj]``, else ``anon_decline``) and is
    requeued while act_count stays above 0, deactivated at 0 (V_DEACTIVATE).  Returns the
    answer | what it did; moves nothing."""
    b = w4[R_BUSY, m]
    if b & (PBUSY_LOCKED | PBUSY_MASK):
        return V_REQUEUE
    w4[R_BUSY, m] = b | PBUSY_LOCKED
    if w4[R_WIRE, m]:
        return V_REMOVE | V_BUSIED
    if w4[R_HOLD, m]:
        return V_REQUEUE | V_BUSIED | V_PD
    done = V_BUSIED | V_PD | V_REFS
    f = w4[R_FLAGS, m]
    if f & PG_REFERENCED:
        refs += 1
        w4[R_FLAGS, m] = f ^ PG_REFERENCED
    w1[R_MDREF, m] = 0
    act = int(w1[R_ACT, m])                     # (it may go below 0)
    if refs:
        w1[R_ACT, m] = min(ACT_MAX, act + ACT_ADVANCE + refs)
        return V_REQUEUE | done
    oid = w4[R_OBJ, m]
    if oid and oid < len(vnode) and vnode[oid]:
        act -= file_decline
    else:
        act -= anon_decline
    if act > 0:
        w1[R_ACT, m] = act
        return V_REQUEUE | done
    w1[R_ACT, m] = 0
    return V_DEACTIVATE | done


@scan_fn
def inactive_visit(w4, w1, m: int, refs: int, modified: int) -> int:
    """vm_pageout_scan_inactive's steps and vm_pageout_page's decisions for inactive page
    ``m`` (its spinlock and the busy atomic held, or their words 0).  v_pdpages counts
    every entry stepped to (V_PD, before the busy try).  A busy (V_REQUEUE), held or
    PG_NEED_COMMIT page goes to the tail; a wired one leaves the queues (V_REMOVE); a
    referenced one (PG_REFERENCED + ``refs``, the pmap's count: V_REFS) is reactivated
    with act_count + ACT_ADVANCE + refs (V_ACTIVATE); else vm_page_test_dirty
    (``modified``: the pmap saw a write, V_DIRTIED), and an invalid page is freed
    (PG_MAPPED/WRITEABLE dropped, V_FREE), a dirty one marked PG_WINATCFLS and requeued
    on its first visit, laundered on its second (V_LAUNDER), a clean one cached
    (V_CACHE).  Returns the answer | what it did; moves nothing."""
    b = w4[R_BUSY, m]
    if b & (PBUSY_LOCKED | PBUSY_MASK):
        return V_REQUEUE | V_PD
    w4[R_BUSY, m] = b | PBUSY_LOCKED
    done = V_BUSIED | V_PD
    if w4[R_WIRE, m]:
        return V_REMOVE | done
    f = int(w4[R_FLAGS, m])
    if w4[R_HOLD, m] or f & PG_NEED_COMMIT:
        return V_REQUEUE | done
    done |= V_REFS
    w1[R_MDREF, m] = 0
    if f & PG_REFERENCED:
        refs += 1
        f &= ~PG_REFERENCED
        w4[R_FLAGS, m] = f
    if refs:
        w1[R_ACT, m] = min(ACT_MAX, int(w1[R_ACT, m]) + ACT_ADVANCE + refs)
        return V_ACTIVATE | done
    if modified and w1[R_DIRTY, m] != VM_PAGE_BITS_ALL:
        w1[R_DIRTY, m] = VM_PAGE_BITS_ALL
        done |= V_DIRTIED
    if w1[R_VALID, m] == 0:
        w4[R_FLAGS, m] = f & ~(PG_MAPPED | PG_WRITEABLE)
        return V_FREE | done
    if w1[R_DIRTY, m]:
        if not f & PG_WINATCFLS:                 # dirty pages cycle through twice
            w4[R_FLAGS, m] = f | PG_WINATCFLS
            return V_REQUEUE | done
        return V_LAUNDER | done
    return V_CACHE | done


# -- a scan over the colours ----------------------------------------------------------------
@scan_fn
def _head_ok(w4, w1, qi: int, dest: int, m: int) -> bool:
    """Whether a scan may visit queue ``qi``'s head ``m`` without Python: the words of
    ``qi``, of the queue ``dest`` a page may move to (the same colour of another base),
    of the page's lock stripe and of the atomic are 0; the page is not wired,
    fictitious or unqueued, and no thread waits for its busy."""
    if w4[R_WORDS, W_QUEUE + qi] or w4[R_WORDS, W_QUEUE + dest] or \
            w4[R_WORDS, W_PAGE + (m & PQ_L2_MASK)] or w4[R_WORDS, W_ATOMIC]:
        return False
    return not (w4[R_BUSY, m] & PBUSY_WANTED or w4[R_WIRE, m] or
                int(w4[R_FLAGS, m]) & (PG_FICTITIOUS | PG_UNQUEUED))


@scan_fn
def _to_tail(w4, w2, w1, off: int, qi: int, m: int) -> None:
    """The scans' requeue: page ``m`` to the tail of its queue ``qi``."""
    if int(w4[R_TAIL, qi]) != m + 1:
        q_remove(w4, w2, w1, off, qi, m)
        q_insert(w4, w2, w1, qi, m, 0)


@scan_fn
def _requeue_count(st, cpu: int, f: int) -> None:
    """The requeue's counts (``_requeue``): the removal, which folds this CPU's delta of
    field ``f`` if it leaves it below -1024 while paging should start, then the
    addition."""
    vmstats_count(st, cpu, f, -1, 1)
    vmstats_count(st, cpu, f, 1, 1)


@scan_fn
def _unbusy(w4, m: int) -> None:
    """vm_page_wakeup for a page nobody waits for (_head_ok checked PBUSY_WANTED)."""
    w4[R_BUSY, m] = int(w4[R_BUSY, m]) & ~(PBUSY_LOCKED | PBUSY_WANTED)


@scan_fn
def _next_page(w4, base: int, c: int, k: int, budget: int, got: int, shortage: int,
               per: int) -> tuple:
    """_scan_queues' stepping: the colours from the rover ``c`` (``k`` started so far),
    PQAVERAGE ``per`` pages of each (``budget`` left of the current one), until ``got``
    reaches ``shortage`` or every colour was started.  Returns (c, k, budget, head page
    of the current colour's queue or -1 when the scan is done)."""
    while True:
        if got >= shortage:
            return c, k, budget, -1
        if budget > 0:
            n = int(w4[R_HEAD, base + ((c - 1) & PQ_L2_MASK)])
            if n:
                return c, k, budget, n - 1
            budget = 0                          # the queue ran dry: the next colour
        if k >= PQ_L2_SIZE:
            return c, k, budget, -1
        budget = min(per, int(w4[R_LCNT, base + c]))
        c = (c + 1) & PQ_L2_MASK
        k += 1


@scan_fn
def scan_active(w4, w2, w1, vnode, st, off: int, cpu: int, c: int, k: int, budget: int,
                got: int, shortage: int, per: int, batch: int, file_decline: int,
                anon_decline: int) -> tuple:
    """vm_pageout_scan_active: from the rover ``c``, PQAVERAGE ``per`` pages of each
    active colour's queue from its head (``_next_page``), until ``shortage`` pages are
    deactivated; each page visited by ``active_visit``, then requeued at the tail or
    deactivated (the tail of PQ_INACTIVE + pc: vm_page_deactivate's removal and
    insertion, each counted in CPU ``cpu``'s statistics with the fold rule), and
    unbusied; v_pdpages counted in its gd_cnt.  Stops with SCAN_DECLINE before a head
    that _head_ok leaves to Python (every head unless ``batch``): Python visits that
    page and calls again with the state.  Returns (status, c, k, budget, got,
    deactivated by this call)."""
    deact = 0
    cnt = cpu * GD_SIZE + GD_CNT
    while True:
        c, k, budget, m = _next_page(w4, PQ_ACTIVE, c, k, budget, got, shortage, per)
        if m < 0:
            return SCAN_DONE, c, k, budget, got, deact, -1
        qi = PQ_ACTIVE + ((c - 1) & PQ_L2_MASK)
        if not batch or not _head_ok(w4, w1, qi, qi - PQ_ACTIVE + PQ_INACTIVE, m):
            return SCAN_DECLINE, c, k, budget, got, deact, -1
        budget -= 1
        refs = int(w1[R_MDREF, m])              # the pmap's reference count
        a = active_visit(w4, w1, m, refs, vnode, file_decline, anon_decline)
        if a & V_PD:
            st[cnt + CNT_PDPAGES] += 1
        if a & V_ACTION == V_DEACTIVATE:
            q_remove(w4, w2, w1, off, qi, m)
            vmstats_count(st, cpu, V_ACTIVE_COUNT, -1, 1)
            deactivate_insert(w4, w2, w1, m, 0)
            vmstats_count(st, cpu, V_INACTIVE_COUNT, 1, 1)
            got += 1
            deact += 1
        else:                                   # V_REQUEUE (V_REMOVE: wired, declined)
            _to_tail(w4, w2, w1, off, qi, m)
            _requeue_count(st, cpu, V_ACTIVE_COUNT)
        if a & V_BUSIED:
            _unbusy(w4, m)
        if refs and a & V_REFS:                 # taken: Python drops md_refs[m]
            return SCAN_REFS, c, k, budget, got, deact, m


@scan_fn
def scan_inactive(w4, w2, w1, st, off: int, cpu: int, c: int, k: int, budget: int,
                  got: int, shortage: int, per: int, batch: int) -> tuple:
    """vm_pageout_scan_inactive: from the rover ``c``, PQAVERAGE ``per`` pages of each
    inactive colour's queue from its head (``_next_page``), until ``shortage`` pages are
    cached or freed; each visited by ``inactive_visit`` (with no pmap write seen: the
    caller passes ``batch`` 0 while ``md_mod`` holds pages), then requeued, reactivated
    (``activate_insert``) or cached (``cache_decide``, the tail of PQ_CACHE + pc), each
    removal and insertion counted in CPU ``cpu``'s statistics with the fold rule, and
    unbusied; v_pdpages counted in its gd_cnt.  Stops with SCAN_DECLINE before a head
    that _head_ok leaves to Python (every head unless ``batch``), and with SCAN_DEFER
    after visiting a page to free or launder: that page is still busied and queued, its
    answer returned for Python to carry out.  Python calls again with the state.
    Returns (status, c, k, budget, got, cached, reactivated by this call, deferred page
    or -1, its answer)."""
    cached = react = 0
    cnt = cpu * GD_SIZE + GD_CNT
    while True:
        c, k, budget, m = _next_page(w4, PQ_INACTIVE, c, k, budget, got, shortage, per)
        if m < 0:
            return SCAN_DONE, c, k, budget, got, cached, react, -1, 0
        qi = PQ_INACTIVE + ((c - 1) & PQ_L2_MASK)
        if not batch or not _head_ok(w4, w1, qi, qi - PQ_INACTIVE + PQ_CACHE, m) or \
                w4[R_WORDS, W_QUEUE + qi - PQ_INACTIVE + PQ_ACTIVE]:
            return SCAN_DECLINE, c, k, budget, got, cached, react, -1, 0
        budget -= 1
        refs = int(w1[R_MDREF, m])              # the pmap's reference count
        a = inactive_visit(w4, w1, m, refs, 0)
        if a & V_PD:
            st[cnt + CNT_PDPAGES] += 1
        act = a & V_ACTION
        if act >= V_FREE:                       # V_FREE, V_LAUNDER: Python's
            return SCAN_DEFER, c, k, budget, got, cached, react, m, a
        if act == V_ACTIVATE:
            q_remove(w4, w2, w1, off, qi, m)
            vmstats_count(st, cpu, V_INACTIVE_COUNT, -1, 1)
            activate_insert(w4, w2, w1, m)
            vmstats_count(st, cpu, V_ACTIVE_COUNT, 1, 1)
            react += 1
        elif act == V_CACHE:
            if cache_decide(w4, w2, w1, m, 0) == C_CACHE:
                q_remove(w4, w2, w1, off, qi, m)
                vmstats_count(st, cpu, V_INACTIVE_COUNT, -1, 1)
                q_insert(w4, w2, w1, PQ_CACHE + (qi - PQ_INACTIVE), m, 0)
                vmstats_count(st, cpu, V_CACHE_COUNT, 1, 1)
                got += 1
                cached += 1
        else:                                   # V_REQUEUE (V_REMOVE: wired, declined)
            _to_tail(w4, w2, w1, off, qi, m)
            _requeue_count(st, cpu, V_INACTIVE_COUNT)
        if a & V_BUSIED:
            _unbusy(w4, m)
        if refs and a & V_REFS:                 # taken: Python drops md_refs[m]
            return SCAN_REFS, c, k, budget, got, cached, react, m, a


# -- the pagedaemon's cache -> free ----------------------------------------------------------
CF_DONE, CF_WAIT, CF_DEFER, CF_WAKE, CF_FULL = range(5)
CF_GIVE = 1 << 40           # in ``out``: the page goes back to vm_phys (the buddy source)
CF_PAGE = CF_GIVE - 1
cf_fn = njit_typed(w4="uint32[:, ::1]", w2="uint16[:, ::1]", w1="uint8[:, ::1]",
                   pi="int64[::1]", ot="int64[:, ::1]", ob="int64[:, ::1]",
                   st="int64[::1]", out="int64[::1]")


@cf_fn
def free_wakeup_due(st, b: int, needed: int, waiting: int, hyst: int) -> int:
    """vm_page_free_wakeup's tests on the view at ``b``: 1 if the pagedaemon's own
    waiters (``needed``) may go on (free + cache reached v_pageout_free_min), | 2 if
    vm_wait's sleepers (``waiting``) may (past v_free_min plus the hysteresis ``hyst``,
    or past target1)."""
    free = st[b + V_FREE_COUNT]
    avail = free + st[b + V_CACHE_COUNT]
    short = st[b + V_FREE_RESERVED] > free
    r = 0
    if needed and avail >= st[b + V_PAGEOUT_FREE_MIN]:
        r |= 1
    if waiting and (not (st[b + V_FREE_MIN] + hyst > avail or short) or
                    not (st[b + V_PAGING_TARGET1] > avail or short)):
        r |= 2
    return r


@cf_fn
def cache_to_free(w4, w2, w1, pi, ot, ob, st, out, off: int, cpu: int, rover: int,
                  tries: int, give: int, needed: int, waiting: int, hyst: int,
                  me: int) -> tuple:
    """The pagedaemon's cache -> free: while CPU ``cpu``'s view has v_free_count below
    v_free_target and v_cache_count above 16, the ``rover`` steps by PQ_PRIME2 over the
    cache colours; the first page of the colour's queue whose lock stripe could be tried
    is busied and freed by ``free_toq`` (out of its object, to PQ_FREE, counted: v_tfree,
    the removal and the addition), v_dfree counted, the page written to ``out`` (|
    CF_GIVE when vm_phys takes it back: ``give``).  A colour with no such page, or whose
    page is busy, is a failed try; PQ_L2_SIZE failed ``tries`` in a row stop.  Locks (as
    words, as vm_page_core's bodies): the colour's queue and the atomic are waited for,
    a page's stripe only tried; free_toq tests the object's token and the rest.
    Returns (status, rover, tries, pages written to out, x), Python going on with the
    rover and tries after it: CF_DONE; CF_WAIT (x: a lock word another thread holds;
    the rover not stepped, nothing changed for that colour); CF_DEFER (x: a page busied
    here that free_toq left as it was -- a lock or token held elsewhere, an object array
    replaced, a block to materialise, a page it refuses: Python's vm_page_free frees it
    or raises, as the page-by-page loop did); CF_WAKE (after a page whose free
    vm_page_free_wakeup would act on -- ``needed``/``waiting``: the pagedaemon's and
    vm_wait's waiters, ``hyst``: the hysteresis -- or which a thread waits for: x its
    PBUSY_WANTED bit); CF_FULL (``out`` is full)."""
    b = cpu * GD_SIZE
    n = 0
    while tries < PQ_L2_SIZE:
        if st[b + V_FREE_COUNT] >= st[b + V_FREE_TARGET] or st[b + V_CACHE_COUNT] <= 16:
            break
        if n == len(out):
            return CF_FULL, rover, tries, n, 0
        q = PQ_CACHE + rover
        nxt = (rover + PQ_PRIME2) & PQ_L2_MASK
        if w4[R_LCNT, q] == 0:
            rover = nxt
            tries += 1
            continue
        if _held(w4, W_QUEUE + q, me):
            return CF_WAIT, rover, tries, n, W_QUEUE + q
        m = int(w4[R_HEAD, q]) - 1                 # the first page lock to be had
        while m >= 0 and _held(w4, W_PAGE + (m & PQ_L2_MASK), me):
            m = int(w4[R_NEXT, m]) - 1
        if m < 0:
            rover = nxt
            tries += 1
            continue
        if _held(w4, W_ATOMIC, me):
            return CF_WAIT, rover, tries, n, W_ATOMIC
        rover = nxt
        bc = int(w4[R_BUSY, m])                    # vm_page_busy_try(m, TRUE)
        if bc & (PBUSY_LOCKED | PBUSY_MASK):
            tries += 1
            continue
        w4[R_BUSY, m] = bc | PBUSY_LOCKED
        tries = 0
        r = free_toq(w4, w2, w1, pi, ot, ob, st, off, m, give, cpu, me)
        if r < 0 or r & FREE_ERR:
            return CF_DEFER, rover, tries, n, m
        st[b + GD_CNT + CNT_DFREE] += 1
        out[n] = m | CF_GIVE if r & FREED_GIVE else m
        n += 1
        if r & PBUSY_WANTED or ((needed or waiting) and
                                free_wakeup_due(st, b, needed, waiting, hyst)):
            return CF_WAKE, rover, tries, n, r & PBUSY_WANTED
    return CF_DONE, rover, tries, n, 0
