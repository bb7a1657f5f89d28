"""Memory pressure in DragonFly's page layer (sys/vm/vm_pageout.c, vm_page.h, seed 004):
the free-count thresholds, their predicates, vm_wait and its variants, the pagedaemon
(a simple, faithful-in-spirit scan: active -> inactive -> cache -> free toward the
targets), act_count aging, vm_page_dontneed and vm_object_madvise.

The daemon runs in one of two ways:

* synchronously (the default): a thread that would sleep in ``vm_wait`` runs a daemon pass
  itself, so a single-threaded workload that overcommits memory sees the kernel's
  behaviour -- pages move down the queues and the allocation succeeds -- instead of a hang;
* as a real thread (:meth:`PageoutMixin.start_pagedaemon`), woken by
  ``pagedaemon_wakeup``; waiters then sleep on a condition until ``vm_page_free_wakeup``.

The mixin expects the attributes and queue primitives of
:class:`physmem.dragonfly.vm_page.DragonflyVm`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..bits import PAGE_SHIFT
from ..errors import ArgumentError
from .locks import PAGE_STRIPES, page_op
from .vm_meter import (
    CNT_DFREE,
    CNT_PDPAGES,
    CNT_PDWAKEUPS,
    CNT_PPWAKEUPS,
    GD_ADJ,
    GD_SIZE,
    V_CACHE_COUNT,
    V_FREE_COUNT,
    V_FREE_MIN,
    V_FREE_RESERVED,
    V_PAGING_START,
    VmStats,
    paging_start,
)
from .vm_page_array import (
    ACT_ADVANCE,
    ACT_INIT,
    ACT_MAX,
    COUNTER,
    PBUSY_MASK,
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
    VM_PAGE_BITS_ALL,
    queue_base,
)
from .vm_pageout_core import (
    CF_DEFER,
    CF_DONE,
    CF_GIVE,
    CF_PAGE,
    CF_WAIT,
    CF_WAKE,
    SCAN_DEFER,
    SCAN_DONE,
    SCAN_REFS,
    V_ACTION,
    V_ACTIVATE,
    V_BUSIED,
    V_CACHE,
    V_DEACTIVATE,
    V_DIRTIED,
    V_FREE,
    V_LAUNDER,
    V_PD,
    V_REFS,
    V_REMOVE,
    V_REQUEUE,
    active_visit,
    cache_to_free,
    free_wakeup_due,
    inactive_visit,
    scan_active,
    scan_inactive,
)

if TYPE_CHECKING:
    from .vm_object import VmObject

# Python's visits with the compiled paths off: the plain functions (no numba import)
_active_visit_py = active_visit.py
_inactive_visit_py = inactive_visit.py
_paging_start_py = paging_start.py
_scan_active_py = scan_active.py
_scan_inactive_py = scan_inactive.py
_cache_to_free_py = cache_to_free.py
_free_wakeup_due_py = free_wakeup_due.py

MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE = range(6)
MADVICE = {"normal": MADV_NORMAL, "random": MADV_RANDOM, "sequential": MADV_SEQUENTIAL,
           "willneed": MADV_WILLNEED, "dontneed": MADV_DONTNEED, "free": MADV_FREE}
PAGE_FREE_HYSTERESIS = 16
PAGING_IDLE, PAGING_TARGET1, PAGING_TARGET2 = range(3)     # vm_pageout_thread's state


def pqaverage(n: int) -> int:
    """PQAVERAGE: the share of a shortage each colour is asked for."""
    return (n + PQ_L2_SIZE - 1) // (PQ_L2_SIZE // 2) + 1


def derive_thresholds(v: VmStats) -> None:
    """vm_pageout_thread's start-up arithmetic (fact sheet §9.2), from v_page_count."""
    free_min = 64 + v.v_page_count // 200
    v.v_free_min = free_min
    v.v_free_reserved = free_min * 4 // 8 + 7
    v.v_free_severe = free_min * 4 // 8
    v.v_pageout_free_min = free_min * 2 // 8 + 7
    v.v_interrupt_free_min = free_min // 8 + 7
    v.v_free_target = v.v_paging_wait = 2 * free_min
    v.v_paging_start = 3 * free_min
    v.v_paging_target1 = 4 * free_min
    v.v_paging_target2 = 5 * free_min
    v.v_inactive_target = v.v_free_count // 16


@dataclass(eq=False)
class Proc:
    """A process as the wait loops see it: its nice value, its P_LOWMEMKILL mark and the
    objects whose pages it owns (what the OOM killer frees)."""

    pid: int
    nice: int = 0
    lowmemkill: bool = False
    objects: list[VmObject] = field(default_factory=list)


@dataclass
class PageoutStats:
    """What the daemon did (cumulative)."""

    passes: int = 0
    deactivated: int = 0
    cached: int = 0
    freed: int = 0
    laundered: int = 0
    reactivated: int = 0
    killed: int = 0
    waits: int = 0


class _InDaemon(threading.local):
    """Per thread: whether it runs the pagedaemon's pass (a class default, so that the
    test in pagedaemon_wakeup, twice an allocation under pressure, is one attribute
    read: ``getattr`` with a default raised and caught AttributeError: the call took
    620 ns, now 263 ns)."""

    on = False


class PageoutMixin:
    """Thresholds, predicates, waiting and the pagedaemon for :class:`DragonflyVm`."""

    # ---------------------------------------------------------------- set-up
    def _init_pageout(self) -> None:
        self.vm_pages_needed = 0
        self.pageout_state = PAGING_IDLE
        self.vm_pages_waiting = 0
        self.vm_pageout_pages_needed = 0
        self.page_free_hysteresis = PAGE_FREE_HYSTERESIS
        self.anonmem_decline = 1
        self.filemem_decline = 2
        self.swap_pages = 1 << 62        # swap space in pages (default: effectively none short)
        self.swap_used = 0
        self.pageout_stats = PageoutStats()
        self.procs: dict[int, Proc] = {}
        self.kill_log: list[str] = []
        self._inactive_rover = 0
        self._active_rover = 0
        self._cache_rover = 0
        self._stats_rover = 0
        self._daemon: threading.Thread | None = None
        self._daemon_stop = False
        self._daemon_kick = threading.Event()
        self._in_daemon = _InDaemon()
        self._cf_entry = None

    def _derive_thresholds(self) -> None:
        self.vmstats_rollup()
        derive_thresholds(self.vmstats)
        self.vmstats_rollup()                    # (no deltas: every CPU's view copied)

    # ---------------------------------------------------------------- predicates (§9.3)
    @staticmethod
    def _avail(s: VmStats) -> int:
        return s.v_free_count + s.v_cache_count

    def severe(self) -> bool:
        """vm_paging_severe: below v_free_severe (free+cache) or v_free_reserved (free)."""
        s = self.local()
        return s.v_free_severe > self._avail(s) or s.v_free_reserved > s.v_free_count

    def min_dnc(self, n: int) -> bool:
        s = self.local()
        return s.v_free_min + n > self._avail(s) or s.v_free_reserved > s.v_free_count

    def min(self) -> bool:
        """vm_paging_min: below v_free_min."""
        return self.min_dnc(0)

    def min_nice(self, nice: int) -> bool:
        """vm_paging_min_nice: v_free_min plus a margin for any nice other than 0."""
        n = 0
        if nice:
            g = self.vmstats
            d = (g.v_paging_wait - g.v_free_min - 1) >> 1
            if d > 0:
                n = int((nice + 20) * d / 40)
        return self.min_dnc(n)

    def wait(self) -> bool:
        s = self.local()
        return s.v_paging_wait > self._avail(s) or s.v_free_reserved > s.v_free_count

    def start(self, adj: int = 0) -> bool:
        """vm_paging_start(adj): the pagedaemon should run (on this CPU's view)."""
        return _paging_start_py(self.mstats, self._tls.cpu * GD_SIZE, adj)

    def target1(self) -> bool:
        s = self.local()
        return s.v_paging_target1 > self._avail(s) or s.v_free_reserved > s.v_free_count

    def target1_count(self) -> int:
        s = self.local()
        return s.v_paging_target1 - self._avail(s)

    def target2(self) -> bool:
        s = self.local()
        return s.v_paging_target2 > self._avail(s) or s.v_free_reserved > s.v_free_count

    def target2_count(self) -> int:
        s = self.local()
        return s.v_paging_target2 - self._avail(s)

    def inactive(self) -> bool:
        """vm_paging_inactive: the inactive queue is short."""
        s = self.local()
        return (self._avail(s) + s.v_inactive_count <
                s.v_free_min + s.v_inactive_target)

    # ---------------------------------------------------------------- wake-ups
    def _is_daemon(self) -> bool:
        return self._in_daemon.on

    def pagedaemon_wakeup(self) -> None:
        """Kick the pagedaemon when paging should start (never from the daemon itself):
        vm_pages_needed 0 or 1 becomes 1 and the daemon is woken; above 1 it grows while
        below v_free_min.  Counts nothing: v_pdwakeups is the daemon's own count, taken
        in vm_pageout once per pass (vm_pageout.c's pagedaemon_wakeup touches no counter).
        """
        s = self._lv[self._tls.cpu]
        free = s[V_FREE_COUNT]
        # vm_paging_start(0), inlined: this runs twice per allocation
        if not (s[V_PAGING_START] > free + s[V_CACHE_COUNT] or s[V_FREE_MIN] > free or
                s[V_FREE_RESERVED] > free):
            return
        if not self._in_daemon.on:                   # not from the daemon itself
            if self.vm_pages_needed <= 1:
                self.vm_pages_needed = 1
                kick = self._daemon_kick
                if not kick.is_set():                # (set() takes its condition's lock)
                    kick.set()
            elif self.min():
                self.vm_pages_needed += 1

    def vm_page_free_wakeup(self) -> None:
        """After a page reached PQ_FREE or PQ_CACHE: wake the daemon's own waiters once
        v_pageout_free_min is met, and vm_wait sleepers past the hysteresis."""
        if not (self.vm_pageout_pages_needed or self.vm_pages_waiting):
            return
        due = _free_wakeup_due_py(self.mstats, self._tls.cpu * GD_SIZE,
                                  self.vm_pageout_pages_needed, self.vm_pages_waiting,
                                  self.page_free_hysteresis)
        if due & 1:
            self.vm_pageout_pages_needed = 0
            self._wake_waiters()
        if due & 2:
            self.vm_pages_waiting = 0
            self._cv[self._tls.cpu][CNT_PPWAKEUPS] += 1
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        with self.sleep:
            self.sleep.notify_all()

    # ---------------------------------------------------------------- waiting (§9.4)
    def _sleep_for_pages(self, timeout: float) -> None:
        """Sleep until vm_page_free_wakeup, or run the daemon here when none runs."""
        self.pageout_stats.waits += 1
        if self._daemon is not None and self._daemon.is_alive():
            self._daemon_kick.set()
            with self.sleep:
                self.sleep.wait(timeout)
            self.vmstats_rollup()
        else:
            self.vm_pageout(force=True)

    def vm_wait(self, proc: Proc | None = None, timeout: float = 1.0) -> None:
        """vm_wait: the daemon waits for v_pageout_free_min; others, when short for their
        nice value, kick the daemon and sleep once."""
        if self._is_daemon():
            if self.min():
                self.vm_pageout_pages_needed = 1
            return
        nice = proc.nice if proc is not None else 0
        if self.min_nice(nice + 1):
            self.pagedaemon_wakeup()
            self.vm_pages_waiting += 1
            self._sleep_for_pages(timeout)

    def vm_wait_pfault(self, proc: Proc | None = None, timeout: float = 0.1) -> None:
        """vm_wait_pfault: loop while severe; a P_LOWMEMKILL process breaks out."""
        nice = proc.nice if proc is not None else 0
        if not self.min_nice(nice):
            return
        for _ in range(64):
            self.pagedaemon_wakeup()
            self.vm_pages_waiting += 1
            self._sleep_for_pages(timeout)
            if proc is not None and proc.lowmemkill:
                break
            if not self.severe():
                break

    def vm_wait_nominal(self, proc: Proc | None = None) -> None:
        """vm_wait_nominal: wait while below v_free_min (bounded: the model gives up
        after a pass that reclaims nothing, where the kernel would sleep forever)."""
        while self.min():
            before = self._avail(self.local())
            self.vm_wait(proc)
            if proc is not None and proc.lowmemkill:
                return
            if self._avail(self.local()) <= before and self.pageout_stats.killed == 0:
                return

    def vm_test_nominal(self) -> bool:
        return self.min()

    # ---------------------------------------------------------------- processes
    def proc_create(self, nice: int = 0) -> Proc:
        """A process for the wait loops and the OOM killer."""
        if not isinstance(nice, int) or not -20 <= nice <= 20:
            raise ArgumentError(f"nice {nice!r} out of range -20..20")
        p = Proc(len(self.procs) + 1, nice)
        self.procs[p.pid] = p
        return p

    # ---------------------------------------------------------------- pmap stand-ins
    @page_op()
    def vm_page_reference(self, m: int) -> None:
        """The pmap saw an access (what pmap_ts_referenced will report)."""
        n = self.md_refs[m] = self.md_refs.get(m, 0) + 1
        # the scans' bodies read the count here (at most 255: more ages a page no more)
        self.pages.mdref[m] = min(n, 255)

    @page_op()
    def vm_page_modify(self, m: int) -> None:
        """The pmap saw a write (what pmap_is_modified will report)."""
        self.md_mod.add(m)

    @page_op()
    def vm_page_mapped(self, m: int) -> None:
        self.pages.flags[m] |= PG_MAPPED

    def _ts_referenced(self, m: int) -> int:
        self.pages.mdref[m] = 0
        return self.md_refs.pop(m, 0)

    # ---------------------------------------------------------------- madvise
    @page_op(locked=True)
    def vm_page_dontneed(self, m: int) -> None:
        """vm_page_dontneed: mostly deactivate to the head (28/32) or tail (3/32), leave
        1/32 of the calls (and pages already inactive/cached) with act_count - 1."""
        p = self.pages
        self.dnweight += 1
        dnw = self.dnweight
        if (dnw & 0x1F0) == 0 or queue_base(p.queue[m]) in (PQ_INACTIVE, PQ_CACHE):
            if p.act_count[m] >= ACT_INIT:
                p.act_count[m] -= 1
            return
        p.flags[m] &= ~PG_REFERENCED
        self.md_refs.pop(m, None)
        p.mdref[m] = 0                      # (the scans need not leave it to Python)
        if p.dirty[m] == 0:
            self._test_dirty(m)
        athead = not (p.dirty[m] or (dnw & 0x70) == 0)
        self._deactivate(m, athead)

    def vm_object_madvise(self, obj: VmObject, pindex: int, count: int, advice: int) -> int:
        """vm_object_madvise over [pindex, pindex + count) of ``obj``; returns the number
        of pages acted on.  Busy pages are skipped (the kernel sleeps and retries)."""
        self._check_obj(obj, "vm_object_madvise")
        if advice not in MADVICE.values():
            raise ArgumentError(f"unknown madvise advice {advice!r}")
        if not isinstance(count, int) or count < 0 or not isinstance(pindex, int) \
                or pindex < 0:
            raise ArgumentError("madvise: pindex and count must be non-negative integers")
        if advice not in (MADV_WILLNEED, MADV_DONTNEED, MADV_FREE):
            return 0
        if advice == MADV_FREE and (obj.type not in ("default", "swap") or not obj.onemapping):
            return 0
        p = self.pages
        done = 0
        for pi in range(pindex, pindex + count):
            m, busy = self.vm_page_lookup_busy_try(obj, pi, True)
            if m is None or busy:
                continue
            try:
                if (p.wire_count[m] or p.flags[m] & (PG_FICTITIOUS | PG_UNQUEUED |
                                                     PG_NEED_COMMIT)
                        or p.valid[m] != VM_PAGE_BITS_ALL):
                    continue
                if advice == MADV_WILLNEED:
                    self.vm_page_activate(m)
                elif advice == MADV_DONTNEED:
                    self.vm_page_dontneed(m)
                else:
                    self.md_mod.discard(m)
                    p.dirty[m] = 0
                    p.act_count[m] = 0
                    self.vm_page_dontneed(m)
                done += 1
            finally:
                self._wakeup(m)
        return done

    # ---------------------------------------------------------------- the daemon
    def vm_pageout(self, force: bool = False, max_passes: int = 8) -> int:
        """Run up to ``max_passes`` turns of vm_pageout_thread's loop; returns the pages
        made free or cached.  The daemon sleeps while vm_pages_needed is 0: a call then
        wakes it only when kicked (vm_pages_needed set), when paging should start (its
        sleep's timeout), or with ``force`` (a thread waiting for pages runs it).
        vm_pages_needed and the TARGET1/TARGET2 state persist across calls, as they
        persist across the kernel's turns."""
        self._in_daemon.on = True
        try:
            made = 0
            self.vmstats_rollup()
            for n in range(max_passes):
                if self.vm_pages_needed == 0 or self.pageout_state == PAGING_IDLE:
                    # vm_pageout_thread: asleep; a wake takes vm_pages_needed = 1 and
                    # TARGET1 (a later turn of this call finds it asleep and stops)
                    if n > 0 and self.vm_pages_needed == 0:
                        break
                    if not (force or self.vm_pages_needed or self.start()):
                        break
                    self.vm_pages_needed = 1
                    self.pageout_state = PAGING_TARGET1
                # vm_pageout_thread: each turn of the daemon's loop that goes on to scan
                # counts one v_pdwakeups on the daemon's CPU, whether it slept first (a
                # kick, or a timeout that found paging needed) or looped at once with
                # vm_pages_needed still set; a timeout with nothing to do counts nothing.
                self._cv[self._tls.cpu][CNT_PDWAKEUPS] += 1
                got = self.vm_pageout_scan(n)
                made += got
                self.vmstats_rollup()
                self._pageout_turn_end(self._avail_shortage)
                if got == 0 and n >= 1:
                    if self.min() and self.swap_used >= self.swap_pages:
                        self.vm_pageout_kill_biggest()
                    break
            self.vm_page_free_wakeup()
            self._wake_waiters()
            return made
        finally:
            self._in_daemon.on = False

    def _pageout_turn_end(self, avail_shortage: int) -> None:
        """vm_pageout_thread's end of a turn (daemon context, vmstats rolled up): short of
        the turn's shortage, loop at once with vm_pages_needed as it is; else keep
        vm_pages_needed = 2 in TARGET1 while paging should start or below v_free_min plus
        the hysteresis, or while short of target1; in TARGET2 while short of target2;
        else 0 (the daemon sleeps).  Waiters are woken unless still below v_paging_wait."""
        if avail_shortage > 0:
            return
        if self.start() or self.min_dnc(self.page_free_hysteresis):
            self.pageout_state = PAGING_TARGET1
            self.vm_pages_needed = 2
            if not self.wait():
                self._wake_waiters()
        elif self.vm_pages_needed:
            if self.target1():
                self.pageout_state = PAGING_TARGET1
                self.vm_pages_needed = 2
            elif self.target2():
                self.pageout_state = PAGING_TARGET2
                self.vm_pages_needed = 2
            else:
                self.vm_pages_needed = 0
                self.pageout_state = PAGING_IDLE
            self._wake_waiters()

    def vm_pageout_scan(self, npass: int = 0) -> int:
        """One pass: the inactive scan (clean pages to cache, dirty ones laundered on
        their second visit, referenced ones reactivated), the active scan (age, deactivate
        at act_count 0) to refill inactive, then cache -> free up to v_free_target.
        Returns the pages made free or cached; leaves the shortage not met in
        ``_avail_shortage``."""
        self.pageout_stats.passes += 1
        # vm_pageout_thread: the shortage is toward target2 in TARGET2, where the
        # inactive scan works in smaller batches (use), else toward target1
        if self.pageout_state == PAGING_TARGET2:
            shortage = max(0, self.target2_count()) + self.deficit
            use = min(shortage, self.vmstats.v_inactive_target // 10 + 1)
        else:
            shortage = max(0, self.target1_count()) + self.deficit
            use = shortage
        self.deficit = 0
        made = self._scan_inactive(shortage, use)
        s = self.local()
        inact_short = (s.v_inactive_target - s.v_inactive_count +
                       min(2 * max(shortage - made, 0), s.v_inactive_target // 10))
        if inact_short > 0:
            self._scan_active(inact_short)
        if made < shortage:
            made += self._scan_inactive(shortage - made, use)
        self._cache_to_free()
        self._avail_shortage = shortage - made
        return made

    def _scan_queues(self, base: int, rover: str, shortage: int, use: int | None = None
                     ) -> int:
        """Visit pages from the head of each colour of ``base`` (PQ_ACTIVE or
        PQ_INACTIVE) -- PQAVERAGE(use) per colour (``use`` defaults to ``shortage``),
        colours in the order of the rover attribute ``rover`` -- until the visits have
        deactivated (active) or cached and freed (inactive) ``shortage`` pages in all.
        The scan is a body (vm_pageout_core.scan_active/scan_inactive: compiled, or
        plain under the gate) that steps the colours, visits and moves the pages itself;
        Python visits one page where it declines (``_active_page``/``_inactive_page``:
        the same visit functions, under the kernel's locks), finishes the page it defers,
        counts the pageout stats and runs vm_page_free_wakeup after pages were cached,
        then calls it again with its state.  Under WITNESS the scan declines every page
        (Python's locks for each, so the checker sees the scans' classes); the inactive
        one too while the pmap has seen writes (``md_mod``: a set Python's visit
        reads)."""
        active = base == PQ_ACTIVE
        visit = self._active_page if active else self._inactive_page
        first_locked = self.first_locked
        spins = self.page_spin
        ps = self.pageout_stats
        per = pqaverage(shortage if use is None else use)
        batch = int(not self.witness.enabled and (active or not self.md_mod))
        cpu = self._tls.cpu
        c, k, budget, got = getattr(self, rover), 0, 0, 0
        try:
            while True:
                r = self._scan_body(active, cpu, c, k, budget, got, shortage, per, batch)
                st, c, k, budget, got = r[0], r[1], r[2], r[3], r[4]
                if active:
                    ps.deactivated += r[5]
                elif r[5] or r[6]:
                    ps.cached += r[5]
                    ps.reactivated += r[6]
                    if r[5]:
                        self.vm_page_free_wakeup()
                if st == SCAN_DONE:
                    break
                if st == SCAN_REFS:               # a visit took the pmap's count
                    self.md_refs.pop(r[6] if active else r[7], None)
                    continue
                qi = base + ((c - 1) & PQ_L2_MASK)
                if st == SCAN_DEFER:              # a page to free or launder: Python's
                    m = r[7]
                    spin = spins[m & (PAGE_STRIPES - 1)]
                    spin.acquire()
                    try:
                        got += self._inactive_act(m, qi, r[8])
                    finally:
                        spin.release()
                    continue
                budget -= 1                       # SCAN_DECLINE: one visit here
                m = first_locked(qi)
                if m is None:
                    budget = 0                    # (no page lock to try: next colour)
                    continue
                try:
                    got += visit(m, qi)
                finally:
                    spins[m & (PAGE_STRIPES - 1)].release()     # page_unlock(m)
        finally:
            setattr(self, rover, c)          # (only this scan reads its rover)
        return got

    def _scan_body(self, active: bool, *state: int) -> tuple:
        """One call of the scan body with ``state`` (cpu, rover, colours started, budget
        left, pages got, shortage, PQAVERAGE, batch): compiled over the arrays, or plain
        (its ``.py``) over the rows' memoryviews holding the gate (see
        :mod:`.vm_page_core`)."""
        p = self.pages
        off = self.queues.off
        g = self._gate
        if g is not None:
            with g:
                if not self._core:        # (else compiled while we waited for the gate)
                    if active:
                        return _scan_active_py(p.mw4, p.mw2, p.mw1, self.vnode_ids,
                                               self.mstats, off, *state,
                                               self.filemem_decline, self.anonmem_decline)
                    return _scan_inactive_py(p.mw4, p.mw2, p.mw1, self.mstats, off, *state)
        if active:
            return self._c_scan_active(p.w4, p.w2, p.w1, self.vnode_ids, self.stats,
                                       off, *state, self.filemem_decline,
                                       self.anonmem_decline)
        return self._c_scan_inactive(p.w4, p.w2, p.w1, self.stats, off, *state)

    def _scan_inactive(self, shortage: int, use: int | None = None) -> int:
        return self._scan_queues(PQ_INACTIVE, "_inactive_rover", shortage, use)

    def _scan_active(self, shortage: int) -> None:
        self._scan_queues(PQ_ACTIVE, "_active_rover", shortage)

    def _requeue(self, m: int, q: int) -> None:
        """Move a page to its queue's tail (the scan's way of skipping it): _rem_queue then
        _add_queue, fused under one hold of the queue's spinlock.  The counter's -1 and +1
        cancel; the removal's fold check stays (start() does not read the active and
        inactive counts, the only queues requeued)."""
        base = ((q - 1) & ~PQ_L2_MASK) + 1
        assert base in (PQ_ACTIVE, PQ_INACTIVE)
        lock = self.queue_spin[q]
        lock.acquire()
        self.queues.move_to_tail(q, m)
        lock.release()
        f = COUNTER[base]
        if self.mstats[self._tls.cpu * GD_SIZE + GD_ADJ + f] - 1 < -1024:
            self._count(f, -1)                       # the removal's fold ...
            self._count(f, 1)                        # ... then the addition

    def _leave(self, m: int, q: int, a: int) -> None:
        """The scans' last steps for a page they keep on queue ``q`` (answer ``a``): off
        the queues if wired, else to the tail; unbusied if the visit busied it."""
        if a & V_ACTION == V_REMOVE:
            self._rem_queue(m)                   # wired pages leave the queues
        else:
            self._requeue(m, q)
        if a & V_BUSIED:
            self._wakeup(m)

    def _active_page(self, m: int, qa: int) -> int:
        """Visit one active page (its spinlock held: the pagedaemon's way in, or a batch
        declined it) with vm_pageout_core.active_visit, then carry out its answer under
        the queue locks: deactivate (and unbusy), or ``_leave``.  Returns 1 if it was
        deactivated."""
        p = self.pages
        refs = self.md_refs.get(m, 0) if self.md_refs else 0
        atomic = self.atomic                     # the visit busies the page
        atomic.acquire()
        if self._core:                           # compiled, over the arrays
            a = active_visit.compiled()(p.w4, p.w1, m, refs, self.vnode_ids,
                                        self.filemem_decline, self.anonmem_decline)
        else:                                    # plain, over the rows' memoryviews
            a = _active_visit_py(p.mw4, p.mw1, m, refs, self.vnode_ids,
                                 self.filemem_decline, self.anonmem_decline)
        atomic.release()
        if a & V_PD:
            self._cv[self._tls.cpu][CNT_PDPAGES] += 1
        if refs and a & V_REFS:
            self.md_refs.pop(m, None)             # _ts_referenced took them
        if a & V_ACTION == V_DEACTIVATE:
            self._deactivate(m)
            self.pageout_stats.deactivated += 1
            self._wakeup(m)
            return 1
        self._leave(m, qa, a)
        return 0

    def _inactive_page(self, m: int, qi: int) -> int:
        """Visit one inactive page (its spinlock held) with
        vm_pageout_core.inactive_visit and carry out its answer (``_inactive_act``).
        Returns 1 if it was cached or freed."""
        p = self.pages
        refs = self.md_refs.get(m, 0) if self.md_refs else 0
        modified = m in self.md_mod if self.md_mod else False
        atomic = self.atomic                     # the visit busies the page
        atomic.acquire()
        if self._core:
            a = inactive_visit.compiled()(p.w4, p.w1, m, refs, int(modified))
        else:
            a = _inactive_visit_py(p.mw4, p.mw1, m, refs, int(modified))
        atomic.release()
        if refs and a & V_REFS:
            self.md_refs.pop(m, None)             # _ts_referenced took them
        self._cv[self._tls.cpu][CNT_PDPAGES] += 1     # (every inactive entry)
        return self._inactive_act(m, qi, a)

    def _inactive_act(self, m: int, qi: int, a: int) -> int:
        """Carry out inactive_visit's answer ``a`` for page ``m`` (its spinlock held, the
        page busied if ``a`` says so) under the kernel's locks: requeue, take a wired
        page off the queues, reactivate, free (vm_pageout_page_free: v_dfree), launder
        a dirty page on its second visit (requeued when swap is full) and cache it, or
        cache; unbusy.  Returns 1 if it was cached or freed."""
        st = self.pageout_stats
        act = a & V_ACTION
        if a & V_DIRTIED:
            self._object_maybe_dirty(m)          # vm_page_dirty's object half
        if act == V_FREE:
            self.vm_page_free(m)                 # unbusies
            self._cv[self._tls.cpu][CNT_DFREE] += 1
            st.freed += 1
            return 1
        if act == V_LAUNDER and not self._launder(m):
            act = V_REQUEUE                      # swap full: the page stays
            a = (a & ~V_ACTION) | V_REQUEUE
        if act in (V_CACHE, V_LAUNDER):
            # vm_pageout_page: clean pages are cached (vm_page_cache), with or without
            # an object.  A dirty page on its second visit was laundered just above (no
            # pager I/O: written at once, and cached as OBJPC_TRY_TO_CACHE asks once its
            # write completes)
            self._cache(m)                       # unbusies
            if queue_base(self.pages.queue[m]) == PQ_CACHE:
                st.cached += 1
                return 1
            return 0
        if act == V_ACTIVATE:
            self._activate(m)
            st.reactivated += 1
            self._wakeup(m)
        else:
            self._leave(m, qi, a)
        return 0

    def _launder(self, m: int) -> bool:
        """Write a dirty page out (vnode pages to their file, anonymous ones to swap);
        False when swap is full."""
        p = self.pages
        o = self.objects.get(p.obj[m])
        if o is None or o.type != "vnode":
            if self.swap_used >= self.swap_pages:
                return False
            self.swap_used += 1
        self.md_mod.discard(m)
        p.dirty[m] = 0
        p.flags[m] &= ~PG_WINATCFLS
        self.pageout_stats.laundered += 1
        return True

    def _cache_to_free(self) -> None:
        """Free cache pages while v_free_count < v_free_target and cache > 16; the rover
        steps by PQ_PRIME2 (vm_pageout_core.cache_to_free: compiled, or plain under the
        gate).  Between its calls Python does what the body leaves to it: the pmap's
        data of the pages freed (``md_mod``, ``md_refs``) and vm_phys's take-back (the
        buddy source), a wait for a lock another thread holds, a page the body could not
        free now (vm_page_free, which waits), the wakeups."""
        ps = self.pageout_stats
        p, tab, t = self.pages, self.objtab, self._tls
        off, cpu, me = self.queues.off, t.cpu, t.me
        give = 0 if self.kernel is None else 1
        # the pages a call frees (this call's own: another thread may run a pass too);
        # the buddy source's one at a time, so that vm_phys takes each page back at once
        # after the body counted it free, as vm_page_free does (a whole batch ahead of
        # vm_phys made other threads' allocations fail: the races torture)
        out = np.zeros(1 if give else 256, np.int64)
        mout = memoryview(out)
        if self._witness_on:         # the body's path: the find, then vm_page_free's
            self.witness.path(("queue", False), ("page", True))
            self.witness.path(("page", False), ("queue", False))
        rover, tries = self._cache_rover, 0
        while True:
            args = (off, cpu, rover, tries, give, self.vm_pageout_pages_needed,
                    self.vm_pages_waiting, self.page_free_hysteresis, me)
            r = None
            g = self._gate
            if g is not None:
                with g:
                    if not self._core:    # (else compiled while we waited for the gate)
                        r = _cache_to_free_py(p.w4, p.w2, p.w1, p.pindex, tab.vot,
                                              tab.vob, self.mstats, mout, *args)
            if r is None:
                f = self._cf_entry
                if f is None:
                    f = self._cf_entry = cache_to_free.entry()
                r = f(p.w4, p.w2, p.w1, p.pi, tab.ot, tab.ob, self.stats, out, *args)
            st, rover, tries, n, x = r
            self._cache_rover = rover
            if n:
                ps.freed += n
                self._cache_freed(out[:n])
            if st == CF_DONE:
                break
            if st == CF_WAIT:
                self._wait_word(x)
            elif st == CF_DEFER:
                self.vm_page_free(x)                          # unbusies (or raises)
                self._cv[cpu][CNT_DFREE] += 1                 # vm_pageout_scan_cache
                ps.freed += 1
            elif st == CF_WAKE:
                self._freed_wakeups(x)

    def _cache_freed(self, ms: np.ndarray) -> None:
        """vm_page_free's Python steps for the pages ``ms`` cache_to_free freed (in its
        order): the pmap's data dropped, a buddy page given back to vm_phys."""
        give = ms & CF_GIVE
        ms = ms & CF_PAGE
        if self.md_mod:
            self.md_mod.difference_update(ms.tolist())
        if self.md_refs:
            mdref = self.pages.arrays["mdref"]
            hit = ms[mdref[ms] != 0]
            mdref[hit] = 0
            for m in hit.tolist():
                self.md_refs.pop(m, None)
        if give.any():
            k = self.kernel
            assert k is not None
            for m in ms[give != 0].tolist():
                k.free_pages((m + self.first_pfn) << PAGE_SHIFT, 0)

    def vm_pageout_page_stats(self) -> int:
        """act_count aging of one active colour (the idle-tick scan); returns pages seen."""
        p, q = self.pages, self.queues
        s = self.local()
        if s.v_active_count < s.v_free_count + s.v_cache_count + s.v_inactive_count:
            return 0
        c = self._stats_rover
        self._stats_rover = (c + PQ_PRIME2) & PQ_L2_MASK
        qa = PQ_ACTIVE + c
        budget = min(max(16, s.v_free_count // 1024 // 16), q.lcnt[qa])
        seen = 0
        for _ in range(budget):
            m = self.first_locked(qa)
            if m is None:
                break
            if self._busy_try(m, True):
                self.page_unlock(m)
                break
            seen += 1
            try:
                if p.wire_count[m]:
                    self._rem_queue(m)
                    continue
                refs = (1 if p.flags[m] & PG_REFERENCED else 0) + self._ts_referenced(m)
                p.flags[m] &= ~PG_REFERENCED
                if refs:
                    p.act_count[m] = min(ACT_MAX, p.act_count[m] + ACT_ADVANCE + refs)
                    self._requeue(m, qa)
                elif p.act_count[m] == 0:
                    if self.inactive():
                        p.flags[m] &= ~(PG_MAPPED | PG_WRITEABLE)
                        self._deactivate(m)
                    else:
                        self._requeue(m, qa)
                else:
                    p.act_count[m] -= 1
                    self._requeue(m, qa)
            finally:
                self._wakeup(m)
                self.page_unlock(m)
        return seen

    def vm_pageout_kill_biggest(self) -> Proc | None:
        """Out of swap and still short: mark the process with the most resident pages
        P_LOWMEMKILL and free its objects' pages."""
        best, size = None, 0
        for proc in self.procs.values():
            if proc.lowmemkill:
                continue
            n = sum(o.resident_page_count for o in proc.objects)
            if n > size:
                best, size = proc, n
        if best is None:
            return None
        best.lowmemkill = True
        self.pageout_stats.killed += 1
        self.kill_log.append(f"pid {best.pid}, was killed: out of swap space")
        for o in best.objects:
            self.vm_object_terminate(o)
        return best

    def vm_object_terminate(self, obj: VmObject) -> int:
        """Free every page of ``obj`` that is not busy, wired or held; returns how many.
        An object left with no pages is gone (its id is no longer valid)."""
        self._check_obj(obj, "vm_object_terminate")
        p = self.pages
        n = 0
        # The object's token is held throughout (vm_object_terminate holds the object):
        # no page can leave it meanwhile except through this thread, and allocators that
        # meet one of its cache pages leave it alone (vm_object_hold_try fails).
        with obj.token:
            for pindex, m in list(obj.memq.items()):
                if p.wire_count[m] or p.hold_count[m] or p.busy_count[m] & PBUSY_MASK:
                    continue
                if self._busy_try(m, True):
                    continue
                if p.obj[m] != obj.id or p.pindex[m] != pindex:
                    self._wakeup(m)             # left the object before we busied it
                    continue
                self.vm_page_free(m)
                n += 1
            if not obj.memq:
                self.objects.pop(obj.id, None)
        return n

    # ---------------------------------------------------------------- daemon thread
    def start_pagedaemon(self) -> None:
        """Run the pagedaemon as a thread ("pagedaemon") woken by pagedaemon_wakeup."""
        if self._daemon is not None and self._daemon.is_alive():
            return
        self._daemon_stop = False

        def loop() -> None:
            while not self._daemon_stop:
                # vm_pageout_thread's idle sleep: woken by a kick, or on the timeout when
                # paging is needed anyway (a wakeup that raced the sleep)
                if not self._daemon_kick.wait(0.05) and not (self.vm_pages_needed or
                                                             self.start()):
                    continue
                self._daemon_kick.clear()
                if self._daemon_stop:
                    break
                self.vm_pageout(force=True)

        self._daemon = threading.Thread(target=loop, name="pagedaemon", daemon=True)
        self._daemon.start()

    def stop_pagedaemon(self) -> None:
        if self._daemon is None:
            return
        self._daemon_stop = True
        self._daemon_kick.set()
        self._daemon.join()
        self._daemon = None
