"""Workloads for DragonFly's page layer, runnable on either free-page source.

* ``pagecache``: read files sequentially through ``vm_page_grab`` (the buffer cache's way
  in), a fraction of pages re-referenced; once the file data exceeds RAM the pagedaemon
  must move pages active -> inactive -> cache -> free for reads to go on.
* ``anon``: processes fault anonymous pages in (``vm_page_grab`` + dirty), touch, wire and
  unwire some, madvise DONTNEED/FREE ranges, and exit (freeing their objects).

:func:`run` returns a :class:`DflyResult` (counts, pageout activity, time); with
``threads`` > 1 the work is split over Python threads, one CPU each, so the page and queue
spinlocks are exercised.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .bits import PAGE_SHIFT
from .dragonfly.vm_object import VmObject
from .dragonfly.vm_page import VM_ALLOC_NORMAL, VM_ALLOC_RETRY, CpuTopology, DragonflyVm
from .dragonfly.vm_page_array import VM_PAGE_BITS_ALL
from .dragonfly.vm_pageout import MADV_DONTNEED, MADV_FREE
from .errors import ArgumentError

DFLY_WORKLOADS = ("pagecache", "anon")


@dataclass
class DflyResult:
    """What a run did and cost."""

    workload: str
    machine: str
    source: str
    pages: int = 0                 # pages brought in (grabs that allocated)
    seconds: float = 0.0
    pageout_passes: int = 0
    deactivated: int = 0
    cached: int = 0
    freed_by_daemon: int = 0
    laundered: int = 0
    waits: int = 0
    killed: int = 0
    free: int = 0
    cache: int = 0
    inactive: int = 0
    active: int = 0
    interrupted: bool = False      # stopped early (Ctrl-C): the counts are up to then

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["pages_per_s"] = round(self.pages_per_s)
        return d


@dataclass
class RunControl:
    """Shared by a run's worker threads and its caller: pages done per worker (each
    writes only its own slot) and a stop request, checked between steps (Ctrl-C)."""

    done: list[int] = field(default_factory=lambda: [0])
    stop: threading.Event = field(default_factory=threading.Event)


def pagecache_fill(vm: DragonflyVm, nbytes: int, files: int = 8, reref: float = 0.05,
                   seed: int = 1, cpu: int = 0, ctl: RunControl | None = None,
                   slot: int = 0, per_call: bool = False) -> int:
    """Read ``nbytes`` of file data (``files`` vnode objects, round robin in 64 KiB reads);
    returns the pages allocated (fewer if ``ctl`` asked it to stop).  Each page is one
    :meth:`DragonflyVm.pagecache_read`, or with ``per_call`` the public calls it stands
    for one by one (the same state: tests compare the two)."""
    rng = random.Random(seed)
    read = (lambda o, pi: _grab_valid(vm, o, pi)) if per_call else vm.pagecache_read
    objs = [vm.object_create("vnode") for _ in range(files)]
    npages = nbytes >> PAGE_SHIFT
    per = max(1, npages // files)
    done = 0
    with vm.on_cpu(cpu):
        pos = [0] * files
        f = 0
        while done < npages:
            if ctl is not None:
                ctl.done[slot] = done
                if ctl.stop.is_set():
                    break
            o = objs[f]
            for _ in range(16):
                pi = pos[f]
                pos[f] += 1
                read(o, pi)
                done += 1
                if rng.random() < reref and pi:
                    with o.token:   # (as anon_churn's: the page cannot be freed meanwhile)
                        back = vm.vm_page_lookup(o, rng.randrange(max(0, pi - 64), pi))
                        if back is not None:
                            vm.vm_page_reference(back)
            if pos[f] >= per:
                pos[f] = 0                      # the next pass re-reads the file
            f = (f + 1) % files
    return done


def _grab_valid(vm: DragonflyVm, o: VmObject, pi: int) -> None:
    """Fault one file page in, call by call: grab, fill, mark valid, activate, unbusy
    (what :meth:`DragonflyVm.pagecache_read` does in one call; kept to check it)."""
    m = vm.vm_page_grab(o, pi, VM_ALLOC_NORMAL | VM_ALLOC_RETRY)
    assert m is not None
    p = vm.pages
    if p.valid[m] != VM_PAGE_BITS_ALL:
        vm.vm_page_set_validclean(m, 0, 1 << PAGE_SHIFT)
    vm.vm_page_activate(m)
    vm.vm_page_wakeup(m)


def anon_churn(vm: DragonflyVm, ops: int, seed: int = 1, cpu: int = 0,
               ctl: RunControl | None = None, slot: int = 0) -> int:
    """Processes that fault in, dirty, wire, madvise and exit; returns pages allocated
    (fewer steps if ``ctl`` asked it to stop)."""
    rng = random.Random(seed)
    live: list[tuple[object, VmObject, int]] = []
    allocated = 0
    with vm.on_cpu(cpu):
        for _ in range(ops):
            if ctl is not None:
                ctl.done[slot] = allocated
                if ctl.stop.is_set():
                    break
            r = rng.random()
            if r < 0.05 or not live:
                proc = vm.proc_create(rng.choice((0, 0, 5, -5)))
                o = vm.object_create("default")
                proc.objects.append(o)
                live.append((proc, o, 0))
                continue
            k = rng.randrange(len(live))
            proc, o, n = live[k]
            if r < 0.75:
                for pi in range(n, n + rng.randrange(1, 9)):
                    m = vm.vm_page_grab(o, pi, VM_ALLOC_NORMAL | VM_ALLOC_RETRY)
                    assert m is not None
                    vm.vm_page_set_validdirty(m, 0, 1 << PAGE_SHIFT)
                    vm.vm_page_activate(m)
                    vm.vm_page_wakeup(m)
                    allocated += 1
                    n = pi + 1
                live[k] = (proc, o, n)
            elif r < 0.85 and n:
                with o.token:       # held as the kernel's caller holds it: no free between
                    m = vm.vm_page_lookup(o, rng.randrange(n))
                    if m is not None:
                        vm.vm_page_reference(m)
            elif r < 0.9 and n:
                m, busy = vm.vm_page_lookup_busy_try(o, rng.randrange(n), True)
                if m is not None and not busy:
                    vm.vm_page_wire(m)
                    vm.vm_page_unwire(m, rng.random() < 0.5)
                    vm.vm_page_wakeup(m)
            elif r < 0.95 and n:
                s = rng.randrange(n)
                vm.vm_object_madvise(o, s, rng.randrange(1, 17),
                                     rng.choice((MADV_DONTNEED, MADV_FREE)))
            else:
                vm.vm_object_terminate(o)
                live.pop(k)
    return allocated


def run(workload: str, machine: str = "firecracker-1g", source: str = "dragonfly",
        nbytes: int | None = None, ops: int = 20_000, seed: int = 1, threads: int = 1,
        cpus: CpuTopology | None = None,
        progress: Callable[[int, int], None] | None = None) -> tuple[DflyResult, DragonflyVm]:
    """Boot a page layer and run a workload on it (``threads`` Python threads, one CPU
    each); returns the result and the page layer.  With ``progress`` the work runs on
    worker threads while this thread calls ``progress(pages so far, pageout passes)``
    about ten times a second; Ctrl-C then stops the workers between steps and the result
    (marked ``interrupted``) covers the work done."""
    if workload not in DFLY_WORKLOADS:
        raise ArgumentError(f"unknown workload {workload!r} ({', '.join(DFLY_WORKLOADS)})")
    if not isinstance(threads, int) or threads < 1:
        raise ArgumentError(f"threads {threads!r} must be a positive integer")
    vm = DragonflyVm(machine, source=source, cpus=cpus)   # default: the machine's CPUs
    if threads > vm.ncpus:
        raise ArgumentError(f"{threads} threads but only {vm.ncpus} CPUs (give more CPUs, "
                            "e.g. --cpus 1x4)")
    if nbytes is None:
        nbytes = 2 * vm.vmstats.v_page_count << PAGE_SHIFT
    res = DflyResult(workload, vm.machine.name, source)
    ctl = RunControl([0] * threads)

    def work(i: int) -> int:
        if workload == "pagecache":
            return pagecache_fill(vm, nbytes // threads, seed=seed + i, cpu=i, ctl=ctl,
                                  slot=i)
        return anon_churn(vm, ops // threads, seed=seed + i, cpu=i, ctl=ctl, slot=i)

    t0 = time.perf_counter()
    if threads == 1 and progress is None:
        res.pages = work(0)
    else:
        out = [0] * threads
        errors: list[BaseException] = []

        def body(i: int) -> None:
            try:
                out[i] = work(i)
            except BaseException as e:     # reported after the join
                errors.append(e)

        ts = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(threads)]
        for t in ts:
            t.start()
        # Poll with sleep, not Thread.join(timeout): a Ctrl-C that lands inside join can
        # leave the thread looking finished while it still runs (CPython 3.11).
        try:
            while any(t.is_alive() for t in ts):
                time.sleep(0.1)
                if progress is not None:
                    progress(sum(ctl.done), vm.pageout_stats.passes)
        except KeyboardInterrupt:
            ctl.stop.set()                 # the workers finish their step and return
            res.interrupted = True
            while any(t.is_alive() for t in ts):
                time.sleep(0.02)
        if errors:
            raise errors[0]
        res.pages = sum(out)
    res.seconds = time.perf_counter() - t0
    vm.vmstats_rollup()
    st = vm.pageout_stats
    res.pageout_passes, res.deactivated, res.cached = st.passes, st.deactivated, st.cached
    res.freed_by_daemon, res.laundered, res.waits, res.killed = (st.freed, st.laundered,
                                                                  st.waits, st.killed)
    c = vm.counts()
    res.free = vm.vmstats.v_free_count
    res.cache, res.inactive, res.active = c["cache"], c["inactive"], c["active"] + c["hold"]
    return res, vm
