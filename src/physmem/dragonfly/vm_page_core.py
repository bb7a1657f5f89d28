"""The page layer's bodies: the kernel steps of vm_page_alloc's colour search
(vm_page_select_free/_cache/_free_or_cache), vm_page_free_toq, the page-cache read's
last steps and the buddy source's busy take, each written once as loops over the page
array's rows.  The page layer always runs them: compiled by numba (:mod:`physmem.jit`)
once the JIT's tier is reached, and as the same plain Python before it and with the JIT
off (``PHYSMEM_JIT=0``, ``NUMBA_DISABLE_JIT=1``).

They take the page array as its three row arrays (:class:`~.vm_page_array.PageArray`
``w4``, ``w2``, ``w1``: three arrays to unbox, not twenty, and no view made inside) and
use the queue list operations that Python's :class:`~.vm_page_array.Queues` uses too
(``q_insert``, ``q_remove``).

Locks: a body takes no Python lock.  Each page-layer lock the kernel's path takes (the
queue spinlocks, the page spinlock stripes, the busy atomic) has a word in row
``R_WORDS`` that its :class:`~.locks.WordLock` raises while a thread holds it, with the
holder's number beside it (``NWORDS + word``).  A body runs atomically with respect to
the holders: compiled, it holds the GIL (no ``nogil``); as plain Python, the caller runs
it holding the page layer's gate, under which the words are raised too.  Where the
kernel would block on a lock whose word another thread holds, the body returns
``-WAIT - word`` (SEL_WAIT) before changing anything: the caller waits for that lock
and calls the body again.  Where the kernel only tries a page lock (a queue's walk), a
held stripe passes the page over, as the kernel's trylock.  A word held by the calling
thread itself (``me``, :data:`~.locks.ME`) does not stop a body: the lock is as good as
taken.  WITNESS checks the order of the locks each body's path stands for
(:meth:`~.locks.Witness.path`).

Implicit blocks (vm_page_array.py): the rule that gives their pages' fields is numpy code
(``Queues.materialise``); a body that would read or write a link of a page of an
implicit block returns ``-2 - page`` (SEL_MATERIALISE) without changing anything, the
caller materialises that block and calls again.
"""

from __future__ import annotations

from .vm_meter import (
    CNT_TFREE,
    GD_CNT,
    GD_SIZE,
    V_ACTIVE_COUNT,
    V_CACHE_COUNT,
    V_FREE_COUNT,
    V_FREE_RESERVED,
    V_INACTIVE_COUNT,
    V_INTERRUPT_FREE_MIN,
    V_PAGING_START,
    vmstats_count,
)
from .vm_object import (
    O_FLAGS,
    O_HOLDER,
    O_TOKEN,
    T_M,
    T_META,
    TM_MOVED,
    tab_find,
    tab_insert,
    tab_lookup,
    tab_put,
    tab_remove,
    tab_room,
)
from .vm_page_array import (
    ACT_INIT,
    NWORDS,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPED,
    PG_MAPPEDMULTI,
    PG_NEED_COMMIT,
    PG_NOSYNC,
    PG_UNQUEUED,
    PG_WRITEABLE,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
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
    R_MDREF,
    R_NEXT,
    R_NONEMPTY,
    R_OBJ,
    R_PC,
    R_QUEUE,
    R_VALID,
    R_WIRE,
    R_WORDS,
    VM_PAGE_BITS_ALL,
    W_ATOMIC,
    W_PAGE,
    W_QUEUE,
    W_TOKEN,
    q_insert,
    q_remove,
    rows_fn,
)

NO_HINT = 0xFFFFFFFF    # lastq -1 (no hint) in w4's uint32 row (Python's int32 view: -1)
WAIT = 1 << 40        # -WAIT - w: lock word w is held by another thread (wait for it)
# The bodies and their helpers: compiled for one signature (the rows, then int64s), so
# the page layer calls their machine code's entry point (Lazy.entry: no type matching),
# and without numba's runtime (so they make no array views: w4[R_WORDS, w], not a row).
body = rows_fn



@body
def _held(w4, w: int, me: int) -> bool:
    """Lock word ``w`` is up and its holder is not the calling thread ``me`` (a lock
    the caller holds is as good as taken; the page stripes are reentrant).  (Indexed
    in w4, not through a row view: the typed bodies run without numba's runtime.)"""
    return w4[R_WORDS, w] != 0 and w4[R_WORDS, NWORDS + w] != me


@body
def _page_wait(w4, m: int, me: int) -> int:
    """Page ``m``'s spinlock and the busy atomic, as a body takes them: -WAIT - word for
    the first that another thread holds, else 0."""
    s = W_PAGE + (m & PQ_L2_MASK)
    if _held(w4, s, me):
        return -WAIT - s
    if _held(w4, W_ATOMIC, me):
        return -WAIT - W_ATOMIC
    return 0


# -- the counts: a body counts its own queue changes (vm_meter.vmstats_count) -----------------
WAKE = 1 << 36          # in a body's result: below v_paging_start (kick the pagedaemon)
FLOOR_SYSTEM, FLOOR_INTERRUPT = 0x2, 0x4     # vm_page_defs' VM_ALLOC_SYSTEM, _INTERRUPT


# the vmstats field each queue base counts in (by (base - 1) >> 10; PQ_HOLD as active)
BASE_FIELD = (V_FREE_COUNT, V_INACTIVE_COUNT, V_ACTIVE_COUNT, V_CACHE_COUNT, V_ACTIVE_COUNT)


@body
def count_base(st, cpu: int, base: int, delta: int) -> None:
    """Count a page into (``delta`` 1) or out of (-1) a queue of ``base`` on CPU ``cpu``
    (PQ_HOLD counts as active): _vm_page_add/rem_queue_spinlocked's counts."""
    vmstats_count(st, cpu, BASE_FIELD[(base - 1) >> 10], delta, 1)


@body
def wake_test(st, cpu: int) -> int:
    """WAKE if CPU ``cpu``'s view has free pages below v_paging_start (vm_page_alloc's
    and the select's pagedaemon test), else 0."""
    b = cpu * GD_SIZE
    return WAKE if st[b + V_FREE_COUNT] < st[b + V_PAGING_START] else 0


@body
def floor_ok(st, cpu: int, req: int) -> bool:
    """vm_page_alloc's class floor on CPU ``cpu``'s view: free pages at or above
    v_free_reserved; INTERRUPT: any; SYSTEM: above v_interrupt_free_min while no page
    is cached."""
    b = cpu * GD_SIZE
    free = st[b + V_FREE_COUNT]
    return (free >= st[b + V_FREE_RESERVED] or (req & FLOOR_INTERRUPT != 0 and free > 0)
            or (req & FLOOR_SYSTEM != 0 and st[b + V_CACHE_COUNT] == 0 and
                free > st[b + V_INTERRUPT_FREE_MIN]))


# -- objects: vm_page_insert, vm_page_remove, vm_page_lookup ------------------------------------
RETRY = -1     # an object array was replaced, or the table is full: ObjectTable.fix(), again
LOOKUP_NONE = -2


@body
def _obj_wait(ot, ob, oid: int, me: int) -> int:
    """Object ``oid``'s token, as a body takes it (vm_page_insert/remove/lookup run with
    the object held): -WAIT - (W_TOKEN + oid) if another thread holds it, RETRY if
    ``ot`` or ``ob`` has been replaced by a larger array, else 0."""
    if ot[T_META, TM_MOVED] or ob[O_FLAGS, 0]:
        return RETRY
    if ob[O_TOKEN, oid] != 0 and ob[O_HOLDER, oid] != me:
        return -WAIT - (W_TOKEN + oid)
    return 0


@body
def page_insert(w4, w1, pi, ot, ob, m: int, oid: int, pindex: int, me: int) -> int:
    """vm_page_insert under object ``oid``'s token: page ``m`` enters it at ``pindex``
    (:func:`~.vm_object.tab_insert`).  Returns 0, 1 if ``pindex`` is taken; or, nothing
    changed, RETRY (the table is full or replaced) or -WAIT - word."""
    r = _obj_wait(ot, ob, oid, me)
    if r:
        return r
    if not tab_room(ot):
        return RETRY
    return tab_insert(w4, w1, pi, ot, ob, m, oid, pindex)


@body
def page_remove(w4, pi, ot, ob, m: int, me: int) -> int:
    """vm_page_remove under the page's object's token (a page of no object: nothing).
    Returns 0; or, nothing changed, RETRY or -WAIT - word."""
    oid = int(w4[R_OBJ, m])
    if not oid:
        return 0
    r = _obj_wait(ot, ob, oid, me)
    if r:
        return r
    tab_remove(w4, pi, ot, ob, m)
    return 0


@body
def page_lookup(ot, ob, oid: int, pindex: int, me: int) -> int:
    """vm_page_lookup under object ``oid``'s token: its page at ``pindex``, LOOKUP_NONE;
    or RETRY or -WAIT - word."""
    r = _obj_wait(ot, ob, oid, me)
    if r:
        return r
    m = tab_lookup(ot, oid, pindex)
    return m if m >= 0 else LOOKUP_NONE


# -- vm_page_free_toq ------------------------------------------------------------------------
FREED_FICT = 0x10000     # free_toq's result bits besides the old queue's base
FREED_HOLD = 0x20000
FREED_GIVE = 0x40000
FREE_ERR = 1 << 38       # free_toq refused the page (nothing changed): | one of
FREE_ERR_BUSY, FREE_ERR_FREE, FREE_ERR_WIRED = 1, 2, 3


@body
def free_toq(w4, w2, w1, pi, ot, ob, st, off: int, m: int, give: int, cpu: int,
             me: int) -> int:
    """vm_page_free_toq for a hard-busied page (else FREE_ERR | FREE_ERR_BUSY; one on
    PQ_FREE or PQ_HOLD: FREE_ERR_FREE; wired and not fictitious: FREE_ERR_WIRED; nothing
    changed): vm_page_remove (out of its object, under the object's token), then a
    fictitious page
    loses PG_MAPPED/WRITEABLE and is unbusied (FREED_FICT); otherwise it leaves its
    queue, its valid and dirty bits are cleared, PG_MAPPED/WRITEABLE/NEED_COMMIT/
    UNQUEUED dropped, and it goes to the tail of PQ_HOLD + pc while held (FREED_HOLD),
    back to vm_phys with ``give`` (the buddy source: FREED_GIVE, the caller gives it),
    else to the head of PQ_FREE + pc; unbusied.  Locks (as words): the page's spinlock,
    the atomic, the old and new queues'.  Returns the old queue's base (PQ_NONE if on
    none) | the FREED_* bit | PBUSY_WANTED if a thread waits for the busy; or, nothing
    changed, -WAIT - word (a lock held by another thread), RETRY (an object array was
    replaced) or -2 - k (materialise page k first).  Counts on CPU ``cpu``: v_tfree, the
    removal, then the new queue (v_free_count for the buddy source's too); the caller
    gives a FREED_GIVE page to vm_phys and wakes."""
    b = int(w4[R_BUSY, m])          # vm_page_free's door: the page's state first
    if b & (PBUSY_LOCKED | PBUSY_MASK) != PBUSY_LOCKED:
        return FREE_ERR | FREE_ERR_BUSY
    q = int(w2[R_QUEUE, m])
    if q and ((q - 1) >> 10 == 0 or (q - 1) >> 10 == 4):     # on PQ_FREE or PQ_HOLD
        return FREE_ERR | FREE_ERR_FREE
    f = int(w4[R_FLAGS, m])
    if w4[R_WIRE, m] and not f & PG_FICTITIOUS:
        return FREE_ERR | FREE_ERR_WIRED
    oid = int(w4[R_OBJ, m])
    if oid:
        r = _obj_wait(ot, ob, oid, me)
        if r:
            return r
    r = _page_wait(w4, m, me)
    if r:
        return r
    if f & PG_FICTITIOUS:
        if oid:
            tab_remove(w4, pi, ot, ob, m)
        st[cpu * GD_SIZE + GD_CNT + CNT_TFREE] += 1
        w4[R_FLAGS, m] = f & ~(PG_MAPPED | PG_WRITEABLE)
        w4[R_BUSY, m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
        return FREED_FICT | (b & PBUSY_WANTED)
    held = w4[R_HOLD, m] != 0
    dest = 0
    if held:
        dest = PQ_HOLD + int(w2[R_PC, m])
    elif not give:
        dest = PQ_FREE + int(w2[R_PC, m])
    if q and _held(w4, W_QUEUE + q, me):
        return -WAIT - (W_QUEUE + q)
    if dest and _held(w4, W_QUEUE + dest, me):
        return -WAIT - (W_QUEUE + dest)
    if dest:
        h = int(w4[R_HEAD, dest])
        if h and w1[R_IMPLICIT, (h - 1 + off) >> 10]:
            return -1 - h
    base = PQ_NONE
    if q:
        r = q_remove(w4, w2, w1, off, q, m)
        if r:
            return r
        base = ((q - 1) & ~PQ_L2_MASK) + 1
    if oid:
        tab_remove(w4, pi, ot, ob, m)
    w1[R_VALID, m] = 0
    w1[R_DIRTY, m] = 0
    w4[R_FLAGS, m] = f & ~(PG_MAPPED | PG_WRITEABLE | PG_NEED_COMMIT | PG_UNQUEUED)
    how = FREED_GIVE
    if dest:
        q_insert(w4, w2, w1, dest, m, 0 if held else 1)
        how = FREED_HOLD if held else 0
    w4[R_BUSY, m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
    st[cpu * GD_SIZE + GD_CNT + CNT_TFREE] += 1
    if base:
        count_base(st, cpu, base, -1)
    count_base(st, cpu, PQ_HOLD if held else PQ_FREE, 1)
    return int(base | how | (b & PBUSY_WANTED))


# -- the page-cache read's last steps ------------------------------------------------------------
READ_ACTIVATE = 2       # read_done: the page is on another queue (the caller activates it)


@body
def activate_insert(w4, w2, w1, m: int) -> None:
    """vm_page_activate's insertion, for a page off every queue (the caller holds
    PQ_ACTIVE + pc's spinlock, or its word is 0): act_count raised to ACT_INIT, the tail
    of PQ_ACTIVE + pc.  The caller counts v_active_count.  (The read's tail and the
    transitions' activate, plain or in the scans' batches, share it.)"""
    if w1[R_ACT, m] < ACT_INIT:
        w1[R_ACT, m] = ACT_INIT
    q_insert(w4, w2, w1, PQ_ACTIVE + int(w2[R_PC, m]), m, 0)


@body
def read_done(w4, w2, w1, off: int, m: int, me: int) -> int:
    """pagecache_read after vm_page_grab, for a hard-busied page: vm_page_set_validclean
    of the whole page unless it is all valid, then, for a page on no queue or already
    active, vm_page_activate (act_count raised to ACT_INIT, the tail of PQ_ACTIVE + pc;
    nothing for a fictitious or unqueued page) and vm_page_wakeup.  Locks (as words):
    the page's spinlock, the atomic, PQ_ACTIVE + pc's.  Returns 1 if the page joined
    PQ_ACTIVE (the caller counts it), else 0, | PBUSY_WANTED if a thread waits for the
    busy; READ_ACTIVATE (valid, still busied) for a page on another queue: the caller
    activates and unbusies it; -WAIT - word, nothing changed."""
    q = int(w2[R_QUEUE, m])
    aq = PQ_ACTIVE + int(w2[R_PC, m])
    r = _page_wait(w4, m, me)
    if r:
        return r
    if _held(w4, W_QUEUE + aq, me):
        return -WAIT - (W_QUEUE + aq)
    if w1[R_VALID, m] != VM_PAGE_BITS_ALL:
        w1[R_VALID, m] = VM_PAGE_BITS_ALL
        w1[R_DIRTY, m] = 0
        w4[R_FLAGS, m] = int(w4[R_FLAGS, m]) & ~PG_NOSYNC
    added = 0
    if not int(w4[R_FLAGS, m]) & (PG_FICTITIOUS | PG_UNQUEUED):
        if q and q != aq:
            return READ_ACTIVATE
        if not q:
            activate_insert(w4, w2, w1, m)
            added = 1
        elif w1[R_ACT, m] < ACT_INIT:
            w1[R_ACT, m] = ACT_INIT
    b = int(w4[R_BUSY, m])
    w4[R_BUSY, m] = b & ~(PBUSY_LOCKED | PBUSY_WANTED)
    return added | (b & PBUSY_WANTED)


# -- vm_page_select_free / _cache / _free_or_cache: the colour search ---------------------------
SEL_FOUND, SEL_NONE, SEL_WAIT, SEL_MATERIALISE, SEL_BUSY, SEL_UNUSABLE = range(6)
SEL_RETRY, SEL_TAKEN, SEL_FLOOR = 6, 7, 8     # select_insert: an object array to fix;
# pindex taken; the class floor reached


@body
def _first_lockable(w4, w1, off: int, q: int, me: int) -> int:
    """_vm_page_list_find's walk of queue ``q`` (its spinlock taken): the first page whose
    page spinlock can be had (its stripe's word down, or held by the caller).  Returns
    the page, -1 if none can, -WAIT - word if the queue's lock is held by another thread,
    or -2 - k (materialise page k to walk on)."""
    if _held(w4, W_QUEUE + q, me):
        return -WAIT - (W_QUEUE + q)
    n = int(w4[R_HEAD, q])
    while n:
        m = n - 1
        if w1[R_IMPLICIT, (m + off) >> 10]:
            return -2 - m
        if not _held(w4, W_PAGE + (m & PQ_L2_MASK), me):
            return m
        n = int(w4[R_NEXT, m])
    return -1


@body
def _next_nonempty(w1, a: int, b: int) -> int:
    """The first queue q in [a, b) whose non-empty byte is set, or -1 (memchr over the
    row).  A primitive, not a kernel step: compiled, this loop; as plain Python,
    :func:`_next_nonempty_py` (``bytes.find``, C speed), tested equal."""
    for q in range(a, b):
        if w1[R_NONEMPTY, q]:
            return q
    return -1


def _next_nonempty_py(w1, a: int, b: int) -> int:
    """_next_nonempty for the plain bodies: over a memoryview of the rows (or the rows
    themselves), one ``bytes.find`` instead of a Python loop."""
    rows = w1.obj if isinstance(w1, memoryview) else w1
    j = rows[R_NONEMPTY, a:b].tobytes().find(1)
    return j + a if j >= 0 else -1


_next_nonempty._py = _next_nonempty_py      # what Lazy.py (the plain bodies) calls


@body
def _probe_set(w4, w1, off: int, base: int, idx: int, mask: int, s0: int, s1: int,
               count: int, me: int):
    """One widening step of the colour search, as the kernel's probe loop: the ``mask +
    1`` colours of idx's aligned set from idx on, wrapping, skipping [s0, s1) (the set
    already searched), counting probes; a non-empty queue is walked for a page whose
    lock can be had.  A run of empty colours is stepped over at once, counted as the
    loop would count it (not past the set's end, the searched set or the range left).
    Returns (colour or -1, the page or _first_lockable's code, s0, s1, count) -- the
    new skip set when none."""
    q, rng = idx, mask + 1
    while rng > 0:
        if s0 <= q < s1:
            rng -= s1 - q
            q = (q & ~mask) | (s1 & mask)
        if rng > 0:
            if not w1[R_NONEMPTY, base + q]:
                lim = min((q | mask) + 1, q + rng)
                if s0 > q:
                    lim = min(lim, s0)
                j = _next_nonempty(w1, base + q, base + lim)
                d = (j - base if j >= 0 else lim) - q
                rng -= d
                count += d
                q = (q & ~mask) | ((q + d) & mask)
                continue
            m = _first_lockable(w4, w1, off, base + q, me)
            if m != -1:
                return q, m, s0, s1, count
        rng -= 1
        count += 1
        q = (q & ~mask) | ((q + 1) & mask)
    return -1, -1, q & ~mask, (q | mask) + 1, count


@body
def select_free_or_cache(w4, w2, w1, off: int, b1: int, b2: int, color: int, sam: int,
                         me: int):
    """vm_page_select_free (``b1`` PQ_FREE, ``b2`` 0), vm_page_select_cache (PQ_CACHE, 0)
    and vm_page_select_free_or_cache (PQ_FREE, PQ_CACHE), one search each: the exact
    colour's queue of ``b1`` (a page found there clears the colour's hints), else
    _vm_page_list_find_wide's sets of 16, 32, ... colours, or with ``b2``
    _vm_page_list_find2_wide's interleave (b1 16, b1 32, b2 16, b1 64, ...), both from
    b1's ``lastq`` hint; a search of 8 or more probes leaves the colour found in the
    hint.  Locks (as words): each queue's spinlock, then the page's by try (a page whose
    stripe another thread holds is passed over), the atomic.  The page found, if it can
    be busied (and, from PQ_CACHE, recycled: not mapped, held, wired, dirty or
    NEED_COMMIT), is dequeued and hard-busied, and a free page's flags, act_count and
    valid bits cleared for vm_page_alloc.  Returns (SEL_FOUND, page, base);
    (SEL_NONE, -1, 0) when the bases are empty or the search finds nothing;
    (SEL_BUSY or SEL_UNUSABLE, page, base) with only the hints changed, the page still
    queued, for the caller to set aside (deactivate) before searching again; or, nothing
    changed, (SEL_WAIT, word, 0) -- a lock another thread holds -- or
    (SEL_MATERIALISE, page, 0).  The caller counts the removal."""
    q = b1 + color
    hq, hint = 0, -1                            # the hint to leave, on success
    m = -1
    base = b1
    if w1[R_NONEMPTY, q]:
        m = _first_lockable(w4, w1, off, q, me)
        if m >= 0:
            hq = -1                             # the exact colour: clear its hints
    if m == -1:
        if _next_nonempty(w1, b1, b1 + PQ_L2_SIZE) < 0 and not (
                b2 and _next_nonempty(w1, b2, b2 + PQ_L2_SIZE) >= 0):
            return SEL_NONE, -1, 0          # both bases empty
        lastp = int(w4[R_LASTQ, q])
        start = color if lastp == -1 or lastp == 0xFFFFFFFF else lastp
        m1 = m2 = sam >> 1
        s1 = n1 = s2 = n2 = -1
        c1 = c2 = 0
        widest = (sam << 1) | 1
        while True:
            if m1 != PQ_L2_MASK:
                m1 = m1 * 2 + 1
                found, m, s1, n1, c1 = _probe_set(w4, w1, off, b1, start, m1, s1, n1, c1,
                                                  me)
                if found >= 0:
                    if c1 >= 8:
                        hq, hint = b1 + color, found
                    break
            if b2 and m1 >= widest:
                m2 = m2 * 2 + 1
                found, m, s2, n2, c2 = _probe_set(w4, w1, off, b2, start, m2, s2, n2, c2,
                                                  me)
                if found >= 0:
                    base = b2
                    if c2 >= 8:
                        hq, hint = b2 + color, found
                    break
            if m1 == PQ_L2_MASK or (b2 and m2 == PQ_L2_MASK):
                return SEL_NONE, -1, 0
        q = base + found
    if m <= -WAIT:
        return SEL_WAIT, -WAIT - m, 0
    if m < 0:
        return SEL_MATERIALISE, -2 - m, 0
    if _held(w4, W_ATOMIC, me):
        return SEL_WAIT, W_ATOMIC, 0
    b = int(w4[R_BUSY, m])
    st = SEL_FOUND
    if b & (PBUSY_LOCKED | PBUSY_MASK):
        st = SEL_BUSY
    elif base == PQ_CACHE and (int(w4[R_FLAGS, m]) & (PG_NEED_COMMIT | PG_MAPPED) or
                               w4[R_HOLD, m] or w4[R_WIRE, m] or
                               w1[R_DIRTY, m] & w1[R_VALID, m]):
        st = SEL_UNUSABLE
    else:
        r = q_remove(w4, w2, w1, off, q, m)
        if r:
            return SEL_MATERIALISE, -r - 2, 0
        w4[R_BUSY, m] = b | PBUSY_LOCKED
        if base == PQ_FREE:
            w4[R_FLAGS, m] = 0
            w1[R_ACT, m] = 0
            w1[R_VALID, m] = 0
    if hq == -1:
        w4[R_LASTQ, b1 + color] = NO_HINT
        if b2:
            w4[R_LASTQ, b2 + color] = NO_HINT
    elif hq:
        w4[R_LASTQ, hq] = hint
    return st, m, base


@body
def _obj_slot(ot, ob, oid: int, pindex: int, me: int):
    """Object ``oid``'s token as a body takes it, room for one more entry, then
    (oid, pindex)'s slot: (0, :func:`~.vm_object.tab_find`'s result); or, nothing
    changed, (SEL_RETRY, 0) -- a table full or replaced -- or (SEL_WAIT, word)."""
    r = _obj_wait(ot, ob, oid, me)
    if r == RETRY:
        return SEL_RETRY, 0
    if r:
        return SEL_WAIT, -WAIT - r
    if not tab_room(ot):
        return SEL_RETRY, 0
    return 0, tab_find(ot, oid, pindex)


@body
def select_insert(w4, w2, w1, pi, ot, ob, st, off: int, b1: int, b2: int, color: int,
                  sam: int, cpu: int, req: int, oid: int, pindex: int, me: int):
    """vm_page_alloc's select and vm_page_insert as one step: with ``req`` (vm_page_alloc's
    flags), its class floor on CPU ``cpu``'s view first (SEL_FLOOR); with ``oid`` > 0,
    object oid's token (SEL_WAIT on it, SEL_RETRY for a full or replaced table,
    SEL_TAKEN if ``pindex`` is taken); all before anything changes.  Then
    :func:`select_free_or_cache`: the page found is counted out of its queue on CPU
    ``cpu``, and one found on PQ_FREE enters the object at ``pindex`` (``oid`` 0: an
    object-less page, its pindex set; ``oid`` -1: the select alone).  A page found on
    PQ_CACHE is left to the caller (recycled: another object's page).  Returns
    select_free_or_cache's triple, with WAKE in the base of a page found when the
    pagedaemon's test passes."""
    if req and not floor_ok(st, cpu, req):
        return SEL_FLOOR, 0, 0
    slot = -1
    if oid > 0:
        r, slot = _obj_slot(ot, ob, oid, pindex, me)
        if r:
            return r, slot, 0
        if slot >= 0:
            return SEL_TAKEN, 0, 0
    s, m, base = select_free_or_cache(w4, w2, w1, off, b1, b2, color, sam, me)
    if s != SEL_FOUND:
        return s, m, base
    if base == PQ_FREE and oid >= 0:
        if oid:
            tab_put(w4, w1, pi, ot, ob, -1 - slot, m, oid, pindex)
        else:
            pi[m] = pindex
    count_base(st, cpu, base, -1)
    return s, m, base | wake_test(st, cpu)


RD_HIT, RD_NEW, RD_PART, RD_SLOW, RD_RECYCLED, RD_CACHE = 9, 10, 11, 12, 13, 14
NW_SHIFT = 40       # page_read: the pagedaemon wakeups due, << NW_SHIFT in its third value
RD_HASH = 1 << 32           # page_read: a page found is PG_MAPPEDMULTI (vm_page_hash_enter)


@body
def _recycle(w4, w2, w1, pi, ot, ob, st, off: int, m: int, cpu: int, me: int) -> int:
    """vm_page_alloc's found_cache for cache page ``m`` (dequeued, busied, counted):
    freed (:func:`free_toq`) if its object's token can be had now (vm_object_hold_try).
    Returns free_toq's result, or -1 with nothing changed: the token or a lock free_toq
    needs is held elsewhere (the caller's Python recycle deactivates or waits)."""
    o = int(w4[R_OBJ, m])
    if o and ob[O_TOKEN, o] != 0 and ob[O_HOLDER, o] != me:
        return -1
    r = free_toq(w4, w2, w1, pi, ot, ob, st, off, m, 0, cpu, me)
    return -1 if r < 0 or r & FREE_ERR else r


@body
def page_read(w4, w2, w1, pi, ot, ob, st, off: int, b2: int, color: int, sam: int,
              alloc: int, stop: int, recycle: int, cpu: int, oid: int, pindex: int,
              me: int):
    """The page-cache read (DragonflyVm.pagecache_read) as one step, under object
    ``oid``'s token: vm_page_grab(NORMAL | RETRY) -- vm_page_lookup, the page found
    hard-busied, or on a miss (with ``alloc``) vm_page_alloc's loop: the NORMAL floor on
    CPU ``cpu``, its select (free or ``b2`` cache; at the floor, cache alone), a cache
    page recycled (:func:`_recycle`) and the loop again, a free page entered into the
    object -- then :func:`read_done` (validclean, activate, wakeup).  The queue changes
    are counted on CPU ``cpu``.  Where vm_page_alloc would kick the pagedaemon (a page
    taken below v_paging_start), the body returns first, so that the caller's wakeup
    reads the counts the kernel's does: a cache page so taken comes back as (RD_CACHE,
    page, PQ_CACHE), for the caller to kick and pass back as ``recycle`` (recycled
    first thing); for the free page, the two kicks due (the select's, vm_page_alloc's:
    nothing they read changes after) are << NW_SHIFT in the third value.  Returns
    (RD_HIT or RD_NEW, page, read_done's result without its count bit | RD_HASH for a
    PG_MAPPEDMULTI page found); (RD_PART, page, kicks): allocated and inserted,
    read_done left to the caller (a lock it needs is held elsewhere); (RD_RECYCLED,
    page, free_toq's result): a cache page freed, and a thread waits for it or ``stop``
    says the caller has more to do after that free (1: always -- the pmap's modified
    set, free-page waiters; 2: for a page whose ``mdref`` byte is set, which the pmap's
    reference counts may hold) -- the caller finishes that free and calls again;
    (SEL_FOUND, page, PQ_CACHE): a cache page dequeued, busied and counted that this
    body could not free, for the caller to recycle; (RD_SLOW, 0, 0): the page found
    is busy, no page could be selected, or no ``alloc`` (the caller's vm_page_grab
    path, from the state left); or, changing nothing more, select_free_or_cache's
    SEL_WAIT, SEL_RETRY, SEL_MATERIALISE, SEL_BUSY, SEL_UNUSABLE triples."""
    if recycle >= 0:
        r = _recycle(w4, w2, w1, pi, ot, ob, st, off, recycle, cpu, me)
        if r < 0:
            return SEL_FOUND, recycle, PQ_CACHE
        if stop == 1 or (stop == 2 and w1[R_MDREF, recycle]) or r & PBUSY_WANTED:
            return RD_RECYCLED, recycle, r
    r, slot = _obj_slot(ot, ob, oid, pindex, me)
    if r:
        return r, slot, 0
    if slot >= 0:
        m = int(ot[T_M, slot]) - 1
        r = _page_wait(w4, m, me)         # read_done's locks, before the busy
        if r:
            return SEL_WAIT, -WAIT - r, 0
        aq = W_QUEUE + PQ_ACTIVE + int(w2[R_PC, m])
        if _held(w4, aq, me):
            return SEL_WAIT, aq, 0
        b = int(w4[R_BUSY, m])
        if b & (PBUSY_LOCKED | PBUSY_MASK):
            return RD_SLOW, 0, 0
        w4[R_BUSY, m] = b | PBUSY_LOCKED
        h = RD_HASH if int(w4[R_FLAGS, m]) & PG_MAPPEDMULTI else 0
        r = read_done(w4, w2, w1, off, m, me)
        if r != READ_ACTIVATE and r & 1:
            count_base(st, cpu, PQ_ACTIVE, 1)
            r &= ~1
        return RD_HIT, m, r | h
    if not alloc:
        return RD_SLOW, 0, 0
    recycled = False
    while True:
        if floor_ok(st, cpu, 1):
            s, m, base = select_free_or_cache(w4, w2, w1, off, PQ_FREE, b2, color, sam, me)
        else:
            s, m, base = select_free_or_cache(w4, w2, w1, off, PQ_CACHE, 0, color, sam,
                                              me)
        if s == SEL_NONE:
            return RD_SLOW, 0, 0
        if s != SEL_FOUND:
            return s, m, base
        count_base(st, cpu, base, -1)
        if base == PQ_FREE:
            break
        if wake_test(st, cpu):          # the select's kick first, then the recycle
            return RD_CACHE, m, PQ_CACHE
        r = _recycle(w4, w2, w1, pi, ot, ob, st, off, m, cpu, me)
        if r < 0:
            return SEL_FOUND, m, PQ_CACHE
        recycled = True
        if stop == 1 or (stop == 2 and w1[R_MDREF, m]) or r & PBUSY_WANTED:
            return RD_RECYCLED, m, r
    nw = 2 if wake_test(st, cpu) else 0
    if recycled:                    # a removal shifts entries: the empty slot again
        slot = tab_find(ot, oid, pindex)
    tab_put(w4, w1, pi, ot, ob, -1 - slot, m, oid, pindex)
    if _page_wait(w4, m, me) or _held(w4, W_QUEUE + PQ_ACTIVE + int(w2[R_PC, m]), me):
        return RD_PART, m, nw << NW_SHIFT
    r = read_done(w4, w2, w1, off, m, me)
    if r & 1:                       # (a new page: on no queue, never READ_ACTIVATE)
        count_base(st, cpu, PQ_ACTIVE, 1)
        r &= ~1
    return RD_NEW, m, r | (nw << NW_SHIFT)


# -- the buddy source's take ---------------------------------------------------------------------
BUDDY_FLOOR, BUDDY_TAKEN, BUDDY_RACED = 1, 2, 4     # buddy_pre's bits; the caller's


@body
def buddy_pre(ot, ob, st, cpu: int, req: int, oid: int, pindex: int, me: int) -> int:
    """The buddy source's vm_page_alloc before it asks vm_phys: BUDDY_FLOOR if the class
    floor (``req``) lets it allocate on CPU ``cpu``, | BUDDY_TAKEN if object ``oid`` (>
    0) has a page at ``pindex`` (under its token); or RETRY, or -WAIT - word."""
    r = 0
    if oid > 0:
        r = _obj_wait(ot, ob, oid, me)
        if r:
            return r
        if tab_find(ot, oid, pindex) >= 0:
            r = BUDDY_TAKEN
    if floor_ok(st, cpu, req):
        r |= BUDDY_FLOOR
    return r


@body
def buddy_take(w4, w1, pi, ot, ob, st, m: int, cpu: int, oid: int, pindex: int,
               me: int) -> int:
    """The buddy source's select after vm_phys handed page ``m`` out, and vm_page_alloc's
    insert: hard-busy it and clear its flags, act_count and valid bits, enter it into
    object ``oid`` (> 0) at ``pindex`` (0: an object-less page, its pindex set; -1:
    nothing), count it out of v_free_count on CPU ``cpu``.  Locks (as words): the page's
    spinlock, the atomic, the object's token.  Returns 0 or WAKE (the pagedaemon's
    test); or, nothing changed: 1 if the page is busy (it came back busy: the caller's
    error), 2 if ``pindex`` is taken, RETRY, -WAIT - word."""
    r = _page_wait(w4, m, me)
    if r:
        return r
    slot = -1
    if oid > 0:
        r = _obj_wait(ot, ob, oid, me)
        if r:
            return r
        if not tab_room(ot):
            return RETRY
        slot = tab_find(ot, oid, pindex)
        if slot >= 0:
            return 2
    b = int(w4[R_BUSY, m])
    if b & (PBUSY_LOCKED | PBUSY_MASK):
        return 1
    w4[R_BUSY, m] = b | PBUSY_LOCKED
    w4[R_FLAGS, m] = 0
    w1[R_ACT, m] = 0
    w1[R_VALID, m] = 0
    if oid > 0:
        tab_put(w4, w1, pi, ot, ob, -1 - slot, m, oid, pindex)
    elif oid == 0:
        pi[m] = pindex
    count_base(st, cpu, PQ_FREE, -1)
    return wake_test(st, cpu)


# Python calls these through their entry points and compiled bodies call them too: one
# dispatcher with the CPython wrapper serves both (physmem.jit; two would be two compiles,
# ~0.6 s of a cold start: bench/RESULTS.md, issue 12 part 3, wt12j).
for _f in (free_toq, read_done, vmstats_count):
    _f.python = True
