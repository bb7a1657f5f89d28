"""The composite machine: FreeBSD's free-page allocator with its callers' bookkeeping, the
public API, and the policies of the other kernels attached to it.

:class:`Kernel` is a FreeBSD kernel's physical memory as vm_page.c and the trace format see
it: the segments and ``phys_avail[]`` given before boot, boot through
:func:`~physmem.freebsd.vm_page.vm_page_startup` (eager, or lazy as in commit
b16b4c22d2d1), the per-domain free counts that vm_phys's callers keep
(``vmd_free_count``), the RAM blacklist, the lazy init thread, and every vm_phys operation
as a method that takes and returns physical addresses.  Attached policies from the other
kernels: DragonFly's DMA reserve (``vm.dma_reserved``), seed 002's extent mirror and
NetBSD's ``uvm_pglistalloc``.

Locking: every queue change happens under the domain's free lock, and so does every test
and change of a page's ownership bit (two threads freeing one page: one wins, the other
gets DoubleFreeError); the DMA reserve has its own lock.

Every method validates its arguments and the caller's ownership *before* changing anything
and raises a :class:`~physmem.errors.PhysmemError` subclass on bad input, so after an error
the state is exactly as before (:meth:`Kernel.digest` proves it in the tests).  What the
kernel itself would not check -- freeing pages twice, freeing a run that mixes pools -- is
checked here, with the ``PG_PHYS_ALLOC`` bit of the page array recording which pages the
allocator has handed out.

Map: set-up (:meth:`~Kernel.add_segment`, :meth:`~Kernel.add_avail`, :meth:`~Kernel.boot`,
:meth:`~Kernel.start_aps`); allocation (:meth:`~Kernel.alloc_pages`,
:meth:`~Kernel.alloc_freelist_pages`, :meth:`~Kernel.alloc_npages`,
:meth:`~Kernel.alloc_npages_runs`, :meth:`~Kernel.alloc_contig`); freeing
(:meth:`~Kernel.free_pages`, :meth:`~Kernel.free_contig`); rare operations
(:meth:`~Kernel.unfree_page`, :meth:`~Kernel.find_range`, :meth:`~Kernel.lazy_init`,
:meth:`~Kernel.blacklist_add`);
queries (:meth:`~Kernel.free_count`, :meth:`~Kernel.sysctl`, :meth:`~Kernel.check`,
:meth:`~Kernel.digest`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Sequence

from .bits import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, c_hex, powerof2
from .checks import check_int
from .dragonfly.dma_reserve import DmaReserve
from .errors import (
    AddressError,
    ArchError,
    ArgumentError,
    DomainError,
    DoubleFreeError,
    FreeListError,
    OrderError,
    PoolError,
    PoolMixError,
    SegmentError,
    StateError,
)
from .freebsd import sysctl as _sysctl
from .freebsd.vm_page import InitStats, Tunables, VmDomain, parse_blacklist, vm_page_startup
from .freebsd.vm_phys import LOGGED, OBS_LOG, VmPhys
from .machine import Machine, get_machine
from .netbsd.mirror import FreePageExtent
from .netbsd.pglist import PgList
from .pagearray import PG_PHYS_ALLOC, SEGIND_SHIFT
from .reprs import as_html, as_text, fmt_pages, fmt_ranges, fmt_size
from .vmparam import VmParam, get_arch

U64_MAX = (1 << 64) - 1
# ptoa(npages) must not overflow 64 bits.
MAX_RUN_PAGES = 1 << 52
# Kernel(jit=...)'s default: fast-path calls run as plain Python before the queue core is
# compiled.  numba's start-up with a warm cache (~0.2-0.3 s since issue 13's start-up
# round; ~0.45 s before) is about what 20,000 plain operations lose: short runs (the demo,
# oracle traces, tests) never pay it, and a long run loses ~0.2 s.
JIT_TIER_OPS = 20_000
# Blocks the drain thread initialises per batch, between which it yields.
DRAIN_BATCH = 8


# What one boot may model (docs/machines.md), checked before anything is allocated: RAM
# (segment bytes), whose page words (2 bytes a page) an eager boot initialises -- and a
# drain after a lazy boot too; 2 TiB is 1 GiB of words -- and the span of physical
# addresses, for which the page array reserves address space (untouched, but it must fit).
MAX_RAM_BYTES = {False: 2 << 40, True: 4 << 40}      # by lazy boot
MAX_SPAN_BYTES = 1 << 48                             # 256 TiB: 128 GiB of address space


def check_boot_size(seg_lines: Sequence[tuple[int, int, int]], lazy: bool) -> None:
    """Refuse a machine too large to model before anything is allocated."""
    ram = sum(e - s for s, e, _ in seg_lines)
    if ram > MAX_RAM_BYTES[lazy]:
        raise SegmentError(f"{ram >> 30} GiB of RAM; {'a lazy' if lazy else 'an eager'} "
                           f"boot models at most {MAX_RAM_BYTES[lazy] >> 40} TiB "
                           "(docs/machines.md)")
    span = max(e for _, e, _ in seg_lines) - min(s for s, _, _ in seg_lines)
    if span > MAX_SPAN_BYTES:
        raise SegmentError(f"RAM spans {span >> 40} TiB of physical addresses; at most "
                           f"{MAX_SPAN_BYTES >> 40} TiB (docs/machines.md)")


def jit_mode(jit: object = None) -> bool | int:
    """``jit`` checked: True, False, or a number of fast-path calls (see :class:`Kernel`);
    None is the default, ``PHYSMEM_JIT_TIER`` from the environment or JIT_TIER_OPS."""
    if jit is None:
        env = os.environ.get("PHYSMEM_JIT_TIER")
        if env is None:
            return JIT_TIER_OPS
        try:
            jit = int(env)
        except ValueError:
            raise ArgumentError(f"PHYSMEM_JIT_TIER must be a number of calls >= 0, "
                                f"not {env!r}") from None
    if isinstance(jit, bool) or (type(jit) is int and 0 <= jit < 1 << 63):
        return jit
    raise ArgumentError(f"jit must be True, False or a number of calls >= 0, not {jit!r}")


class Kernel:
    """A FreeBSD kernel's physical memory: vm_phys plus vm_page.c's boot and bookkeeping.

    Build one with segments and phys_avail ranges, then :meth:`boot`::

        k = Kernel("amd64")
        k.add_segment(0x1000, 0x9f000, 0)
        k.add_segment(0x100000, 0x40000000, 0)
        k.add_avail(0x1000, 0x9f000)
        k.add_avail(0x2000000, 0x40000000)
        k.boot(lazy=False)
        pa = k.alloc_pages(0, "default", 0)
        k.free_pages(pa, 0)

    (:func:`physmem.boot` does this from a machine description.)
    """

    def __init__(self, arch: str | VmParam = "amd64", *, jit: bool | int | None = None) -> None:
        """``jit``: vm_phys's queue core after boot runs compiled by numba (True), as plain
        Python (False), or plain for that many fast-path calls and compiled from then on
        (an int; None: ``PHYSMEM_JIT_TIER`` from the environment, else JIT_TIER_OPS):
        numba's import and cache load cost ~0.2-0.3 s and ~110 MiB once per process,
        repaid after some 20,000 operations.  ``PHYSMEM_JIT=0`` turns it off everywhere."""
        if not isinstance(arch, (str, VmParam)):
            raise ArchError(f"arch must be a name (amd64, arm64, riscv), not "
                            f"{type(arch).__name__}")
        self.param = arch if isinstance(arch, VmParam) else get_arch(arch)
        self.phys = VmPhys(self.param)
        self.jit = jit_mode(jit)
        self.seg_lines: list[tuple[int, int, int]] = []
        self.phys_avail: list[tuple[int, int]] = []
        self.booted = False
        self.lazy = False
        self.domains: list[VmDomain] = []
        self.free_counts: list[int] = []     # vmd_free_count of each domain
        # vmd_free_count minus the pages on the domain's queues: unfree_page charges
        # vm_phys_domain(pa), which can name the neighbouring domain (kernel quirk).
        self.count_skew: list[int] = []
        self.blacklist: list[int] = []       # pages vm_page_blacklist_add removed
        self._stats = InitStats()
        self.tunables = Tunables(lazy_page_init=1 if self.param.has_lazyinit else 0)
        self.drain_thread: threading.Thread | None = None
        self.machine: Machine | None = None
        self.dma: DmaReserve | None = None          # DragonFly's DMA reserve (vm.dma_reserved)
        self._dma_lock = threading.Lock()           # guards the reserve's alist
        self.mirror: FreePageExtent | None = None   # seed 002's extent of free pages
        self.pglist: PgList | None = None           # NetBSD's uvm_pglistalloc
        self._pools = self.param.pool_names()
        self._nfo = self.param.nfreeorder
        self._max_npages = self.param.max_npages
        self._ndomains = 0                   # vm_ndomains once booted
        self._freelists = self.param.freelist_names()

    @classmethod
    def from_machine(cls, machine: str | Machine) -> Kernel:
        """A Kernel with a machine's segments and phys_avail (a preset name, a machine file
        or a :class:`~physmem.machine.Machine`), not yet booted."""
        if not isinstance(machine, (str, os.PathLike, Machine)):
            raise ArgumentError(f"machine must be a name, a file path or a Machine, not "
                                f"{type(machine).__name__}")
        m = machine if isinstance(machine, Machine) else get_machine(machine)
        k = cls(m.arch)
        for s, e, d in m.segments():
            k.add_segment(s, e, d)
        for s, e in m.phys_avail():
            k.add_avail(s, e)
        k.machine = m
        return k

    def _summary(self) -> tuple[str, list[tuple[str, str]]]:
        """(title, rows) for repr() and Jupyter: machine, segments, free pages, lazy init."""
        name = self.machine.name if self.machine is not None else "a machine"
        segs = [(s, e) for s, e, _ in sorted(self.seg_lines)]
        rows = [("architecture", self.param.name),
                ("segments", f"{len(segs)}: {fmt_ranges(segs)}"),
                ("RAM", fmt_size(sum(e - s for s, e in segs)))]
        if not self.booted:
            return f"Kernel {name}, not booted", rows
        total = sum(d.page_count for d in self.domains)
        st = self.stats
        rows += [("domains", str(len(self.free_counts))),
                 ("free", f"{fmt_pages(sum(self.free_counts))} of {total:,} managed"),
                 ("page init", f"{'lazy' if self.lazy else 'eager'}: {st.boot:,} at boot, "
                               f"{st.on_demand:,} on demand, {st.drain:,} by the drain")]
        return f"Kernel {name}, booted", rows

    def __repr__(self) -> str:
        return as_text(*self._summary())

    def _repr_html_(self) -> str:
        return as_html(*self._summary())

    # =======================================================================================
    # Set-up: the memory map before boot
    # =======================================================================================
    def add_segment(self, start: int, end: int, domain: int = 0) -> None:
        """A physical segment ``[start, end)`` in NUMA ``domain`` (the trace's ``seg``)."""
        self._need_not_booted("seg")
        _check_page_range("segment", start, end)
        check_int(domain, "domain", error=DomainError)
        if not 0 <= domain < self.param.maxmemdom:
            raise DomainError(f"domain {domain} out of range (MAXMEMDOM {self.param.maxmemdom})")
        for s, e, _ in self.seg_lines:
            if start < e and s < end:
                raise SegmentError(f"segment [{start:#x}, {end:#x}) overlaps "
                                   f"[{s:#x}, {e:#x})")
        # Each line is at least one vm_phys segment (boot checks the split total).
        if len(self.seg_lines) >= self.param.physseg_max:
            raise SegmentError(f"too many segments (VM_PHYSSEG_MAX {self.param.physseg_max})")
        self.seg_lines.append((start, end, domain))

    def add_avail(self, start: int, end: int) -> None:
        """One ``phys_avail[]`` pair: ``[start, end)`` goes to the allocator at boot."""
        self._need_not_booted("avail")
        _check_page_range("phys_avail", start, end)
        if self.phys_avail and start < self.phys_avail[-1][1]:
            raise SegmentError(f"phys_avail [{start:#x}, {end:#x}): entries must ascend "
                               "without overlap")
        if not any(start < e and s < end for s, e, _ in self.seg_lines):
            raise SegmentError(f"phys_avail [{start:#x}, {end:#x}) lies outside every segment")
        if len(self.phys_avail) >= self.param.physseg_max:    # PHYS_AVAIL_ENTRIES / 2
            raise SegmentError("too many phys_avail entries (at most "
                               f"{self.param.physseg_max})")
        self.phys_avail.append((start, end))

    # =======================================================================================
    # Boot: vm_page_startup()
    # =======================================================================================
    def boot(self, lazy: bool | None = None, tunables: Tunables | Iterable[str] | None = None,
             start_aps: bool = False) -> None:
        """vm_page_startup(): create the segments, run vm_phys_init(), initialise page
        structures and hand every phys_avail page to the allocator, then apply the RAM
        blacklist.

        ``lazy`` overrides the ``debug.vm.lazy_page_init`` tunable (default 1 where the
        LAZYINIT pool exists).  ``start_aps`` also runs the "APs start" step, which starts
        the lazy-init drain thread (see :meth:`start_aps`)."""
        if tunables is None:
            tun = Tunables(lazy_page_init=self.tunables.lazy_page_init)
        elif isinstance(tunables, Tunables):
            tun = tunables
        else:
            tun = Tunables.parse(tunables, self.param)
        if lazy is not None and not isinstance(lazy, bool):
            raise ArgumentError(f"lazy must be True, False or None, not {lazy!r:.40}")
        if lazy is not None:
            tun.lazy_page_init = 1 if lazy else 0
        if tun.lazy_page_init and not self.param.has_lazyinit:
            raise ArchError(f"boot lazy: {self.param.name} has no VM_FREEPOOL_LAZYINIT "
                            "(no debug.vm.lazy_page_init)")
        if self.booted:
            raise StateError("already booted")
        if not self.seg_lines:
            raise StateError("no segments before boot")
        ndomains = max(d for _, _, d in self.seg_lines) + 1
        for d in range(ndomains):
            if not any(sd == d for _, _, sd in self.seg_lines):
                raise DomainError("domains must be dense and zero-based "
                                  f"(no segment in domain {d})")
        npieces = sum(1 + sum(1 for b in self.param.split_points() if s < b < e)
                      for s, e, _ in self.seg_lines)
        if npieces > self.param.physseg_max:
            raise SegmentError(f"{npieces} segments after splitting exceed VM_PHYSSEG_MAX "
                               f"{self.param.physseg_max}")
        for pa in tun.blacklist:
            _check_u64(pa, "vm.blacklist address")
        check_boot_size(self.seg_lines, bool(tun.lazy_page_init))
        self.tunables = tun
        t0 = time.perf_counter()
        self._startup(ndomains, bool(tun.lazy_page_init))
        for pa in tun.blacklist:
            self.blacklist_add(pa)
        if tun.dma_reserved is not None:
            self.dma = DmaReserve(self, tun.dma_reserved)
        # Everything vm_page_startup initialised, a blacklist's early drain included.
        self._stats.boot = self.phys.pages.ninit
        self._stats.drain = 0
        self._stats.boot_seconds = time.perf_counter() - t0
        # From here on vm_phys's queue core runs compiled (numba is imported and the
        # functions compiled on their first call, not during boot: docs/implementation.md).
        self.start_jit()
        if start_aps:
            self.start_aps()

    def start_jit(self) -> None:
        """After boot (or a snapshot's load): the queue core's mode as ``self.jit`` says
        (see :meth:`__init__`; numba is imported on the first compiled call, not here)."""
        if isinstance(self.jit, bool):
            self.phys.use_jit(self.jit)
        else:
            self.phys.tier_jit(self.jit)

    def _startup(self, ndomains: int, lazy: bool) -> None:
        phys = self.phys
        self.domains, self.free_counts = vm_page_startup(phys, self.seg_lines,
                                                         self.phys_avail, ndomains, lazy)
        self._ndomains = phys.ndomains
        self.count_skew = [0] * phys.ndomains
        self.lazy = lazy
        self.booted = True

    def start_aps(self) -> threading.Thread | None:
        """The boot step "APs start" (SI_SUB_SMP): vm_phys_lazy_sysinit() starts the
        ``vmlazyinit`` thread, which drains the LAZYINIT pools in the background.

        Returns the thread (already started), or None when there is nothing to drain."""
        self._need_booted()
        if not self.param.has_lazyinit or self.drain_thread is not None:
            return self.drain_thread
        t = threading.Thread(target=self._lazy_init_kthr, name="vmlazyinit", daemon=True)
        self.drain_thread = t
        t.start()
        return t

    def _lazy_init_kthr(self) -> None:
        """vm_phys_lazy_init_kthr(): vm_phys_lazy_init() at idle priority -- in batches of
        DRAIN_BATCH blocks, taking the domain's free lock per batch and yielding the CPU
        between batches so that allocating threads run first."""
        phys = self.phys
        for domain in range(phys.ndomains):
            while True:
                before = phys.drain_inits
                done = phys.lazy_init_domain(domain, False, batch=DRAIN_BATCH)
                self._account_drain(phys.drain_inits - before)
                if done:
                    break
                time.sleep(0)  # yield: the kernel thread runs at PRI_MIN_IDLE
        phys.default_freepool = phys.DEFAULT

    def wait_lazy_init(self, timeout: float | None = None) -> bool:
        """Wait for the drain thread to finish; True if it has (or never ran)."""
        t = self.drain_thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()

    def _account_drain(self, n: int) -> None:
        self._stats.drain += n

    @property
    def stats(self) -> InitStats:
        """Page-structure initialisations so far: at boot, on demand (allocations taking
        LAZYINIT chunks) and by the drain (lazy_init, the drain thread, find_range and
        unfree_page)."""
        s = self._stats
        on_demand = self.phys.pages.ninit - s.boot - s.drain if self.booted else 0
        return InitStats(s.boot, on_demand, s.drain, s.boot_seconds)

    # =======================================================================================
    # Argument checking shared by the operations
    # =======================================================================================
    def _need_booted(self) -> None:
        if not self.booted:
            raise StateError("not booted")

    def _need_not_booted(self, what: str) -> None:
        if self.booted:
            raise StateError(f"{what} after boot")

    def _domain(self, domain: int) -> int:
        check_int(domain, "domain", error=DomainError)
        if not 0 <= domain < self.phys.ndomains:
            raise DomainError(f"domain {domain!r} out of range (vm_ndomains "
                              f"{self.phys.ndomains})")
        return domain

    def _pool(self, pool: str) -> int:
        if not isinstance(pool, str):
            raise PoolError(f"pool must be a name (default, direct), not "
                            f"{type(pool).__name__}")
        p = self._pools.get(pool)
        if p is None:
            if pool == "lazyinit" and self.param.has_lazyinit:
                raise PoolError("pool lazyinit is rejected by vm_phys_pool_valid()")
            if pool == "lazyinit":
                raise PoolError(f"bad pool 'lazyinit' ({self.param.name} has no "
                                "VM_FREEPOOL_LAZYINIT)")
            raise PoolError(f"unknown pool {pool!r} (default, direct)")
        return p

    def _freelist(self, freelist: str) -> int:
        if not isinstance(freelist, str):
            raise FreeListError(f"free list must be a name, not {type(freelist).__name__}")
        f = self._freelists.get(freelist)
        if f is None:
            if freelist in ("default", "dma32", "lowmem"):
                raise FreeListError(f"free list {freelist!r}: {self.param.name} has no "
                                    f"VM_FREELIST_{freelist.upper()}")
            raise FreeListError(f"unknown free list {freelist!r}")
        return f

    def _order(self, order: int) -> int:
        check_int(order, "order", error=OrderError)
        if not 0 <= order < self.param.nfreeorder:
            raise OrderError(f"order {order!r} out of range 0..{self.param.nfreeorder - 1}")
        return order

    def _run_domain(self, pa: int, npages: int) -> tuple[int, int]:
        """Check that ``[pa, pa + npages pages)`` is a page-aligned run inside one segment;
        return (first pfn, segment domain).  Needs no lock: segments never change after
        boot."""
        _check_u64(pa, "address")
        if pa & PAGE_MASK:
            raise AddressError(f"address {pa:#x} is not page aligned")
        if npages <= 0:
            raise ArgumentError(f"npages {npages} must be positive")
        seg = self.phys.paddr_to_seg(pa)
        if seg is None:
            raise AddressError(f"address {pa:#x} is not in a segment")
        m = pa >> PAGE_SHIFT
        if m + npages > seg.epfn:
            raise AddressError(f"run {pa:#x} + {npages} pages crosses the end of its segment "
                               f"({c_hex(seg.end)})")
        return m, seg.domain

    @staticmethod
    def _run_pages(npages: int) -> None:
        """A page count of a run: positive, and ptoa() of it fits 64 bits."""
        check_int(npages, "npages")
        if npages <= 0:
            raise ArgumentError(f"npages {npages!r} must be positive")
        if npages >= MAX_RUN_PAGES:
            raise ArgumentError(f"npages {npages} too large (ptoa() would overflow)")

    def _owned_run(self, pa: int, npages: int) -> None:
        """Check that the run ``_run_domain`` accepted is allocated and from one pool.

        Requires: the lock that guards the run's ownership (the domain's free lock, or the
        DMA reserve's).  The pages of such a run have identical page words (segment, pool,
        initialised, allocated), so one comparison per page checks everything; the precise
        error is worked out only when a page differs."""
        pages = self.phys.pages
        m = pa >> PAGE_SHIFT
        w = pages.mv[m - pages.base_pfn]
        if not w & PG_PHYS_ALLOC:
            raise DoubleFreeError(f"page {pa:#x} is not allocated (free of a free page)")
        bad = pages.first_unlike(m, npages, w) if npages > 1 else None
        if bad is not None:
            bw = pages.raw(bad)
            if not bw & PG_PHYS_ALLOC:
                raise DoubleFreeError(f"page {bad << PAGE_SHIFT:#x} is not allocated "
                                      "(free of a free page)")
            raise PoolMixError(f"page {bad << PAGE_SHIFT:#x} belongs to another pool than "
                               f"{pa:#x} (a freed run must come from one pool)")

    # =======================================================================================
    # Allocation
    # =======================================================================================
    def alloc_pages(self, domain: int, pool: str, order: int) -> int | None:
        """vm_phys_alloc_pages(): a 2**order-page block; its physical address or None."""
        # NOTE: the checks all pass in one expression first (the common case), for speed;
        # the helpers, in the same order, only build the error.
        p = self._pools.get(pool) if type(pool) is str else None
        if not (self.booted and type(domain) is int and 0 <= domain < self._ndomains and
                p is not None and type(order) is int and 0 <= order < self._nfo):
            self._need_booted()
            self._domain(domain)
            p = self._pool(pool)
            self._order(order)
        phys = self.phys
        lock = phys.domain_locks[domain]
        lock.acquire()  # NOTE: acquire/release, not "with": 90 ns cheaper per call
        try:
            ka = phys.kalloc
            if ka is not None:
                # The compiled fast path: the first free list's own pool, the split and
                # the ownership words in one call (-1: nothing changed, the whole path).
                obs = phys.obs
                m = ka(phys._st, phys.kwords, phys.search_bases[domain][0], p, order,
                       phys.default_freepool, obs)
                if m >= 0:
                    if m >= LOGGED:
                        phys._flush(domain)
                        m -= LOGGED
                    if obs:     # the call's net change: the block left the free set
                        phys.net_rem(m, 1 << order)
                    self.free_counts[domain] -= 1 << order
                    return m << PAGE_SHIFT
            m = phys.alloc_pages(domain, p, order)
            if m is None:
                return None
            if order == 0:
                pages = phys.pages
                pages.mv[m - pages.base_pfn] |= PG_PHYS_ALLOC
            else:
                phys.pages.set_alloc(m, 1 << order)
            self.free_counts[domain] -= 1 << order
        finally:
            lock.release()
        return m << PAGE_SHIFT

    def alloc_freelist_pages(self, domain: int, freelist: str, pool: str,
                             order: int) -> int | None:
        """vm_phys_alloc_freelist_pages(): a block from one free list (``default``,
        ``dma32``, ``lowmem``); its physical address or None."""
        # NOTE: the checks all pass in one expression first (the common case), for speed;
        # the helpers, in the same order, only build the error.
        f = self._freelists.get(freelist) if type(freelist) is str else None
        p = self._pools.get(pool) if type(pool) is str else None
        if not (self.booted and type(domain) is int and 0 <= domain < self._ndomains and
                f is not None and p is not None and type(order) is int and
                0 <= order < self._nfo):
            self._need_booted()
            self._domain(domain)
            f = self._freelist(freelist)
            p = self._pool(pool)
            self._order(order)
        d = domain
        phys = self.phys
        lock = phys.domain_locks[d]
        lock.acquire()
        try:
            ka = phys.kalloc
            flind = phys.flind_of[f]
            if ka is not None and flind >= 0:
                # The compiled fast path of alloc_pages on this free list: it is the
                # whole of vm_phys_alloc_freelist_pages (own pool, then the steal), so -1
                # (nothing changed) is the kernel's NULL; -2 (the JIT's plain tier): the
                # Python path.
                obs = phys.obs
                m = ka(phys._st, phys.kwords, phys.qindex(d, flind, 0, 0), p, order,
                       phys.default_freepool, obs)
                if m >= 0:
                    if m >= LOGGED:
                        phys._flush(d)
                        m -= LOGGED
                    if obs:
                        phys.net_rem(m, 1 << order)
                    self.free_counts[d] -= 1 << order
                    return m << PAGE_SHIFT
                if m == -1:
                    return None
            m = phys.alloc_freelist_pages(d, f, p, order)
            if m is None:
                return None
            phys.pages.set_alloc(m, 1 << order)
            self.free_counts[d] -= 1 << order
        finally:
            lock.release()
        return m << PAGE_SHIFT

    def alloc_npages(self, domain: int, pool: str, npages: int) -> list[int]:
        """vm_phys_alloc_npages(): up to ``npages`` single pages (1..2**(NFO-1)), in the order
        the kernel fills its array; fewer if the domain runs short."""
        return [p for pa, n in self.alloc_npages_runs(domain, pool, npages)
                for p in range(pa, pa + (n << PAGE_SHIFT), PAGE_SIZE)]

    def alloc_npages_runs(self, domain: int, pool: str, npages: int) -> list[tuple[int, int]]:
        """:meth:`alloc_npages` as runs: (address, pages) of what was taken from each free
        block, in the kernel's order (the pages of each run are consecutive)."""
        it = iter(self.alloc_npages_pfns(domain, pool, npages))
        return [(m << PAGE_SHIFT, n) for m, n in zip(it, it, strict=True)]

    def alloc_npages_pfns(self, domain: int, pool: str, npages: int) -> list[int]:
        """:meth:`alloc_npages_runs` as one flat list of page frame numbers and counts,
        ``[m0, n0, m1, n1, ...]``: no tuple per run (the replay prints from it)."""
        p = self._pools.get(pool) if type(pool) is str else None
        # NOTE: the checks all pass in one expression first (the common case), for speed.
        if not (self.booted and type(domain) is int and 0 <= domain < self._ndomains and
                p is not None and type(npages) is int and
                0 < npages <= self._max_npages):
            self._need_booted()
            self._domain(domain)
            p = self._pool(pool)
            check_int(npages, "npages")
            if not 0 < npages <= self.param.max_npages:
                raise ArgumentError(f"npages {npages!r} out of range "
                                    f"1..{self.param.max_npages}")
        d = domain
        phys = self.phys
        runs: list[tuple[int, int]] = []
        lock = phys.domain_locks[d]
        lock.acquire()
        try:
            ka = phys.kallocn
            if ka is not None:
                # The compiled fast path: the first free list's own pool, when it holds
                # enough, and the ownership words (-1: nothing changed, the whole path).
                obs = phys.obs & OBS_LOG        # (the log: several runs)
                out = phys._outv[d]
                got = ka(phys._st, phys.kwords, phys.search_bases[d][0] + p * self._nfo,
                         npages, out, obs)
                if got >= 0:
                    if obs:
                        phys._flush(d)
                    self.free_counts[d] -= got
                    # (out: the count of runs, then each run's page and length)
                    return phys._outs[d][1:1 + 2 * int(out[0])].tolist()
            got = phys.alloc_npages_runs(d, p, npages, runs)
            pages = phys.pages
            mv, base = pages.mv, pages.base_pfn
            for m, n in runs:
                # NOTE: PageArray.set_alloc inlined for the one-page runs (most of them).
                if n == 1:
                    mv[m - base] |= PG_PHYS_ALLOC
                else:
                    pages.set_alloc(m, n)
            self.free_counts[d] -= got
        finally:
            lock.release()
        return [x for run in runs for x in run]

    def alloc_contig(self, domain: int, npages: int, low: int = 0, high: int = (1 << 64) - 1,
                     alignment: int = PAGE_SIZE, boundary: int = 0) -> int | None:
        """vm_phys_alloc_contig(): ``npages`` contiguous pages in ``[low, high)``, aligned to
        ``alignment``, not crossing a multiple of ``boundary`` (0: none); the first page's
        address or None."""
        # NOTE: the checks all pass in one expression first (the common case), for speed.
        if not (self.booted and type(domain) is int and 0 <= domain < self._ndomains and
                type(npages) is int and 0 < npages < MAX_RUN_PAGES and
                type(low) is int and type(high) is int and type(alignment) is int and
                type(boundary) is int and 0 <= low <= U64_MAX and 0 <= high <= U64_MAX and
                0 < alignment <= U64_MAX and not alignment & (alignment - 1) and
                0 <= boundary <= U64_MAX and not boundary & (boundary - 1)):
            self._need_booted()
            self._domain(domain)
            self._run_pages(npages)
            for v, what in ((low, "low"), (high, "high"), (alignment, "alignment"),
                            (boundary, "boundary")):
                _check_u64(v, what)
            if alignment == 0 or not powerof2(alignment):
                raise ArgumentError(f"alignment {alignment:#x} is not a power of 2")
            if not powerof2(boundary):
                raise ArgumentError(f"boundary {boundary:#x} is not a power of 2")
        d = domain
        phys = self.phys
        lock = phys.domain_locks[d]
        lock.acquire()
        try:
            kc = phys.kcontig
            if kc is not None:
                # The compiled path (-2: nothing changed, Python's path decides).  The
                # 64-bit masks as signed words, addresses clamped to 2**62 (above any
                # page), as the queue core takes them.
                obs = phys.obs
                m = kc(phys._st, phys.kwords, d, npages, low if low < 1 << 62 else 1 << 62,
                       high if high < 1 << 62 else 1 << 62, alignment - 1, -boundary,
                       phys.default_freepool, obs)
                if m != -2:
                    if phys.nv[phys.log_at(d)]:
                        phys._flush(d)
                    if m < 0:
                        return None
                    if obs:     # the call's net change: the run left the free set
                        phys.net_rem(m, npages)
                    self.free_counts[d] -= npages
                    return m << PAGE_SHIFT
            m = phys.alloc_contig(d, npages, low, high, alignment, boundary)
            if m is None:
                return None
            phys.pages.set_alloc(m, npages)
            self.free_counts[d] -= npages
        finally:
            lock.release()
        return m << PAGE_SHIFT

    # =======================================================================================
    # Freeing
    # =======================================================================================
    def free_pages(self, pa: int, order: int) -> None:
        """vm_phys_free_pages(): give back the 2**order block at ``pa`` (allocated pages,
        aligned to the order, one segment, one pool); it coalesces with free buddies."""
        phys = self.phys
        # NOTE: one mask tests the page alignment and the order's (the common case).
        if type(pa) is int and type(order) is int and 0 <= order < self._nfo and \
                self.booted and self.dma is None and not pa & ((PAGE_SIZE << order) - 1):
            m = pa >> PAGE_SHIFT
            if phys.kfree is not None:
                if self._fast_free(m, 1 << order, order):
                    return
            elif order == 0:
                # NOTE: fast path for one page without the JIT, inlined for speed: an
                # allocated page is initialised, dense and inside a segment, so its word
                # answers every check (with a DMA reserve, whose pages are marked
                # allocated, the slow path decides).  The segment (hence the domain) of an
                # initialised page never changes, so it may be read before the lock;
                # ownership is tested and changed under it.
                pages = phys.pages
                i = m - pages.base_pfn
                if 0 <= i < pages.npages:
                    mv = pages.mv
                    w = mv[i]
                    if w & PG_PHYS_ALLOC:
                        dom = phys.segs[w >> SEGIND_SHIFT].domain
                        lock = phys.domain_locks[dom]
                        lock.acquire()
                        try:
                            w = mv[i]
                            if w & PG_PHYS_ALLOC:
                                w &= ~PG_PHYS_ALLOC
                                mv[i] = w
                                phys.free_pages(m, 0, w)
                                self.free_counts[dom] += 1
                                return
                        finally:
                            lock.release()
                    # Another thread freed it first: the slow path reports the double free.
        self._need_booted()
        self._order(order)
        _check_u64(pa, "address")
        if (pa >> PAGE_SHIFT) & ((1 << order) - 1):
            raise AddressError(f"address {pa:#x} is not aligned to order {order}")
        self._free_run(pa, 1 << order, order)

    def _fast_free(self, m: int, npages: int, order: int) -> bool:
        """The compiled fast path of free_pages (``order``) and free_contig (``order``
        -1): ownership tested and changed and vm_phys's work done in one call under the
        domain's lock.  False, with nothing changed, when the run is not an owned run of
        one segment (the slow path then says what is wrong).

        Requires: the run page aligned and positive; no DMA reserve.  An allocated page
        is initialised, dense and in a segment, whose domain never changes: its word,
        read before the lock, names the lock; the compiled call checks it again."""
        phys = self.phys
        pages = phys.pages
        i = m - pages.base_pfn
        if i < 0 or i + npages > pages.npages:
            return False
        if self._ndomains > 1:
            w = pages.mv[i]
            if not w & PG_PHYS_ALLOC:
                return False
            dom = phys.segs[w >> SEGIND_SHIFT].domain
        else:
            dom = 0     # (the compiled call tests ownership: -1 if not owned)
        lock = phys.domain_locks[dom]
        lock.acquire()
        try:
            obs = phys.obs
            if order >= 0:
                r = phys.kfree(phys._st, phys.kwords, m, order, obs)
            else:
                r = phys.kfreec(phys._st, phys.kwords, m, npages, obs)
            if r < 0:
                return False
            if r & 4:
                phys._flush(dom)
            stage = r & 3
            if stage == 1:                  # a buddy only Python can judge
                phys.free_pages(m, order)
            elif stage:
                phys.free_contig_finish(m, npages, stage)
            elif obs:           # the call's net change: the run joined the free set
                phys.net_add(m, npages)
            self.free_counts[dom] += npages
            return True
        finally:
            lock.release()

    def _free_run(self, pa: int, npages: int, order: int | None) -> None:
        """Give back an owned run: the DMA reserve's, or vm_phys's free_pages (``order``)
        or free_contig (``order`` None).  Ownership is checked and cleared under the lock
        that guards the run (the domain's free lock, or the reserve's), so two threads
        freeing the same pages cannot both succeed."""
        phys = self.phys
        m, dom = self._run_domain(pa, npages)
        if self.dma is not None and self.dma.owns(m, npages):
            with self._dma_lock:
                self._owned_run(pa, npages)
                self.dma.free_contig(m, npages)
            return
        with phys.domain_locks[dom]:
            self._owned_run(pa, npages)
            phys.pages.clear_alloc(m, npages)
            if order is None:
                phys.free_contig(m, npages)
            else:
                phys.free_pages(m, order)
            self.free_counts[dom] += npages

    def free_contig(self, pa: int, npages: int) -> None:
        """vm_phys_free_contig(): give back an arbitrary run of allocated pages (one segment,
        one pool)."""
        if type(pa) is int and type(npages) is int and 0 < npages < MAX_RUN_PAGES and \
                self.booted and not pa & PAGE_MASK and self.dma is None and \
                self.phys.kfree is not None and self._fast_free(pa >> PAGE_SHIFT, npages, -1):
            return
        self._need_booted()
        check_int(npages, "npages")
        self._free_run(pa, npages, None)

    # =======================================================================================
    # Rare operations
    # =======================================================================================
    def unfree_page(self, pa: int) -> bool:
        """vm_phys_unfree_page(): take one free page out of the allocator (it becomes
        allocated, as a blacklisted page is); False if the page is not free.

        Drains the domain's LAZYINIT pool first.  The free count of ``vm_phys_domain(pa)``
        drops by one, with the kernel's inclusive-end quirk."""
        self._need_booted()
        _check_u64(pa, "address")
        if pa & PAGE_MASK:
            raise AddressError(f"address {pa:#x} is not page aligned")
        phys = self.phys
        seg = phys.paddr_to_seg(pa)
        if seg is None:
            raise AddressError(f"address {pa:#x} is not in a segment")
        m = pa >> PAGE_SHIFT
        if not phys.pages.raw(m) and not self._in_avail(pa):
            raise AddressError(f"page {pa:#x} was never initialised (lazy boot, outside "
                               "phys_avail)")
        # vm_phys_domain(pa) may name the neighbouring domain (the kernel's inclusive-end
        # quirk): its count changes too, so hold both free locks, in index order.
        d = phys.domain(pa)
        # (-1, no affinity entry, indexes the last domain's count, as before.)
        locks = [phys.domain_locks[x] for x in sorted({seg.domain, d % phys.ndomains})]
        for lock in locks:
            lock.acquire()
        try:
            before = phys.drain_inits
            found = phys.unfree_page(pa)
            self._account_drain(phys.drain_inits - before)
            if found:
                phys.pages.set_alloc(m, 1)
                self.free_counts[d] -= 1
                if d != seg.domain:
                    self.count_skew[d] -= 1
                    self.count_skew[seg.domain] += 1
        finally:
            for lock in reversed(locks):
                lock.release()
        return found

    def blacklist_add(self, pa: int) -> bool:
        """vm_page_blacklist_add(): remove the page at ``pa`` from the free lists for good;
        True if it is now blacklisted (or does not exist), False if it was not free."""
        self._need_booted()
        _check_u64(pa, "address")
        pa &= ~PAGE_MASK
        if self.phys.paddr_to_seg(pa) is None:
            return True  # page does not exist, no failure
        # NOTE: a page already blacklisted is allocated, so unfree_page() says False for it
        # as the kernel's vm_phys_unfree_page() does (no scan of the list: boot stays
        # linear in the number of vm.blacklist addresses).
        found = self.unfree_page(pa)
        if found:
            self.blacklist.append(pa)
        return found

    def find_range(self, domain: int, npages: int, low: int, high: int) -> int:
        """vm_phys_find_range() from segment 0: the index of the first segment of ``domain``
        that may hold ``npages`` pages in ``[low, high)``, or -1.  Drains the domain's
        LAZYINIT pool when it returns a segment."""
        self._need_booted()
        d = self._domain(domain)
        self._run_pages(npages)
        _check_u64(low, "low")
        _check_u64(high, "high")
        before = self.phys.drain_inits
        segind, _bounds = self.phys.find_range(0, d, npages, low, high)
        self._account_drain(self.phys.drain_inits - before)
        return segind

    def lazy_init(self) -> None:
        """vm_phys_lazy_init(): drain every domain's LAZYINIT pool now, synchronously."""
        self._need_booted()
        if not self.param.has_lazyinit:
            raise ArchError(f"lazy_init: {self.param.name} has no VM_FREEPOOL_LAZYINIT")
        before = self.phys.drain_inits
        self.phys.lazy_init()
        self._account_drain(self.phys.drain_inits - before)

    # =======================================================================================
    # Constrained allocation beside vm_phys: seed 002's extent, uvm_pglistalloc, the DMA
    # reserve
    # =======================================================================================
    def _constraints(self, npages: int, low: int, high: int, alignment: int,
                     boundary: int) -> None:
        check_int(npages, "npages")
        if not 0 < npages < MAX_RUN_PAGES:
            raise ArgumentError(f"npages {npages!r} out of range")
        for v, what in ((low, "low"), (high, "high"), (alignment, "alignment"),
                        (boundary, "boundary")):
            _check_u64(v, what)
        if low >= high:
            raise ArgumentError(f"low {low:#x} is not below high {high:#x}")
        if alignment == 0 or not powerof2(alignment):
            raise ArgumentError(f"alignment {alignment:#x} is not a power of 2")
        if not powerof2(boundary):
            raise ArgumentError(f"boundary {boundary:#x} is not a power of 2")
        if boundary and boundary < npages << PAGE_SHIFT:
            raise ArgumentError(f"boundary {boundary:#x} is smaller than the request "
                                f"({npages} pages)")

    def _took(self, m: int, npages: int) -> None:
        """Account for a run taken off the free lists outside vm_phys's own allocators."""
        phys = self.phys
        phys.pages.set_alloc(m, npages)
        p = m
        while p < m + npages:
            seg = phys.paddr_to_seg(p << PAGE_SHIFT)
            assert seg is not None
            end = min(m + npages, seg.epfn)
            self.free_counts[seg.domain] -= end - p
            p = end

    def attach_extent_mirror(self, fast: bool = False) -> FreePageExtent:
        """Keep an extent map of free pages in step with the free lists (seed 002)."""
        self._need_booted()
        if self.mirror is None:
            # Attaching reads every queue: no domain may change meanwhile.
            locks = self.phys.domain_locks[:self.phys.ndomains]
            for lock in locks:
                lock.acquire()
            try:
                if self.mirror is None:
                    self.mirror = FreePageExtent(self.phys, fast)
            finally:
                for lock in locks:
                    lock.release()
        return self.mirror

    def alloc_constrained(self, npages: int, low: int = 0, high: int = (1 << 64) - 1,
                          alignment: int = PAGE_SIZE, boundary: int = 0) -> int | None:
        """``npages`` contiguous pages in ``[low, high)``, aligned, not crossing a multiple
        of ``boundary``, found through the extent mirror; the first page's address or
        None.  Attaches the mirror if needed."""
        self._need_booted()
        self._constraints(npages, low, high, alignment, boundary)
        mirror = self.attach_extent_mirror()
        locks = self.phys.domain_locks[:self.phys.ndomains]
        for lock in locks:
            lock.acquire()
        try:
            m = mirror.alloc_constrained(npages, low, high, alignment, boundary)
            if m is None:
                return None
            self._took(m, npages)
        finally:
            for lock in locks:
                lock.release()
        return m << PAGE_SHIFT

    def pglist_alloc(self, npages: int, low: int = 0, high: int = (1 << 64) - 1,
                     alignment: int = PAGE_SIZE, boundary: int = 0,
                     nsegs: int = 1) -> list[int] | None:
        """uvm_pglistalloc(): ``npages`` pages in ``[low, high)``, one contiguous run when
        ``nsegs`` < npages or a constraint is given, else any free pages; their addresses,
        or None (ENOMEM)."""
        self._need_booted()
        self._constraints(npages, low, high, alignment, boundary)
        check_int(nsegs, "nsegs")
        if nsegs < 1:
            raise ArgumentError(f"nsegs {nsegs!r} must be at least 1")
        if self.pglist is None:
            self.pglist = PgList(self.phys)
        locks = self.phys.domain_locks[:self.phys.ndomains]
        for lock in locks:
            lock.acquire()
        try:
            rc, pfns = self.pglist.alloc(npages << PAGE_SHIFT, low, high, alignment,
                                         boundary, nsegs)
            if rc == 22:
                raise ArgumentError("uvm_pglistalloc: EINVAL (no segment in [low, high))")
            if rc:
                return None
            for p in pfns:
                self._took(p, 1)
        finally:
            for lock in locks:
                lock.release()
        return [p << PAGE_SHIFT for p in pfns]

    def contigmalloc(self, npages: int, low: int = 0, high: int = (1 << 64) - 1,
                     alignment: int = PAGE_SIZE, boundary: int = 0,
                     domain: int = 0) -> int | None:
        """DragonFly's contigmalloc path: the DMA reserve first (vm_page_alloc_contig, which
        honours only ``high``), then vm_phys_alloc_contig."""
        self._need_booted()
        self._constraints(npages, low, high, alignment, boundary)
        if self.dma is not None:
            with self._dma_lock:
                m = self.dma.alloc_contig(npages, high)
            if m is not None:
                return m << PAGE_SHIFT
        return self.alloc_contig(domain, npages, low, high, alignment, boundary)

    # =======================================================================================
    # Queries
    # =======================================================================================
    def free_count(self, domain: int) -> int:
        """``vmd_free_count`` of ``domain`` as the kernel's callers keep it (u_int)."""
        self._need_booted()
        return self.free_counts[self._domain(domain)] & 0xFFFFFFFF

    def sysctl(self, name: str) -> str:
        """The text of a sysctl: ``vm.phys_free``, ``vm.phys_segs``, ``vm.page_blacklist``,
        ``debug.vm.lazy_page_init``."""
        if name == "debug.vm.lazy_page_init":
            if not self.param.has_lazyinit:
                raise ArgumentError(f"unknown oid {name!r} on {self.param.name}")
            return str(self.tunables.lazy_page_init)
        self._need_booted()
        if name == "vm.phys_free":
            return _sysctl.sysctl_vm_phys_free(self.phys)
        if name == "vm.phys_segs":
            return _sysctl.sysctl_vm_phys_segs(self.phys)
        if name == "vm.page_blacklist":
            return ",".join(c_hex(pa) for pa in self.blacklist)
        if name in ("vm.dma_reserved", "vm.dma_free_pages") and self.dma is not None:
            return self.dma.sysctl(name)
        raise ArgumentError(f"unknown oid {name!r} (vm.phys_free, vm.phys_segs, "
                            "vm.page_blacklist, debug.vm.lazy_page_init)")

    def check(self, strict_buddies: bool = False) -> None:
        """Run the INVARIANTS checker over the whole state; raises InvariantError.
        ``strict_buddies``: see :mod:`physmem.freebsd.invariants`."""
        from .freebsd.invariants import check_kernel
        check_kernel(self, strict_buddies)
        if self.mirror is not None:
            self.mirror.check()
        if self.dma is not None:
            self.dma.check()

    def digest(self) -> str:
        """A hash of the whole state: equal digests mean equal states."""
        h = hashlib.sha256()
        h.update(repr((self.booted, self.lazy, self.seg_lines, self.phys_avail,
                       self.blacklist)).encode())
        if self.booted:
            phys = self.phys
            h.update(repr((self.free_counts, [(d.page_count, d.segs)
                                              for d in self.domains])).encode())
            h.update(repr((phys.default_freepool, phys.initdone, list(phys.lcnt))).encode())
            h.update(repr(list(phys.free_blocks())).encode())
            h.update(repr(phys.pages.lone_items()).encode())
            for pfn, w in phys.pages.span_words():
                h.update(pfn.to_bytes(8, "little"))
                h.update(w.tobytes())
        return h.hexdigest()

    def _in_avail(self, pa: int) -> bool:
        return any(lo <= pa < hi for lo, hi in self.phys_avail)

    @property
    def segments(self) -> Sequence:
        """The vm_phys segments (after boot's splitting and coalescing)."""
        return self.phys.segs


def _check_page_range(what: str, start: int, end: int) -> None:
    _check_u64(start, "start")
    _check_u64(end, "end")
    if (start | end) & PAGE_MASK:
        raise SegmentError(f"{what} [{start:#x}, {end:#x}) is not page aligned")
    if end <= start:
        raise SegmentError(f"{what} [{start:#x}, {end:#x}) is empty")


def _check_u64(v: int, what: str) -> None:
    check_int(v, what)
    if not 0 <= v < 1 << 64:
        raise ArgumentError(f"{what} {v!r} is not a 64-bit unsigned integer")


__all__ = ["InitStats", "Kernel", "Tunables", "VmDomain", "check_boot_size", "parse_blacklist"]
