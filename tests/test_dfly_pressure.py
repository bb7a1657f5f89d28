"""DragonFly page layer under memory pressure, on several threads, through traces and the
command line; the hypothesis state machine over the whole page lifecycle."""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from physmem.cli import main
from physmem.dfly_workloads import pagecache_fill, run
from physmem.dragonfly.locks import LockOrderError
from physmem.dragonfly.vm_page import (
    VM_ALLOC_NORMAL,
    VM_ALLOC_RETRY,
    CpuTopology,
    DragonflyVm,
    PageStateError,
)
from physmem.dragonfly.vm_page_array import PQ_CACHE, PQ_FREE, PQ_HOLD, queue_base
from physmem.dragonfly.vm_pageout import MADV_DONTNEED, MADV_FREE, MADV_WILLNEED
from physmem.errors import PhysmemError
from physmem.machine import Machine, RamRange
from physmem.trace import Replayer

from .dfly_util import digest

MIB = 1 << 20


def small(mib: int = 48, **kw) -> DragonflyVm:
    m = Machine(f"t{mib}", [RamRange(0x100000, mib * MIB)], page_array="none")
    return DragonflyVm(m, **kw)


# -- predicates and thresholds --------------------------------------------------------------
def test_min_nice_margin():
    vm = small()
    g = vm.vmstats
    d = (g.v_paging_wait - g.v_free_min - 1) >> 1
    # nice 0 adds nothing; nice n adds trunc((n + 20) * d / 40), even for negative n
    s = vm.local()
    s.v_free_count = g.v_free_min + 1
    s.v_cache_count = 0
    assert not vm.min_nice(0)
    assert vm.min_nice(1) == (g.v_free_min + int(21 * d / 40) > s.v_free_count)
    assert vm.min_nice(-1) == (g.v_free_min + int(19 * d / 40) > s.v_free_count)
    vm.vmstats_rollup()


def test_pagecache_fill_beyond_ram_is_served_by_the_pagedaemon():
    for source in ("dragonfly", "buddy"):
        res, vm = run("pagecache", small(48).machine, source=source)
        assert res.pages == 2 * vm.vmstats.v_page_count // 16 * 16 or res.pages > 0
        assert res.pageout_passes > 0 and res.deactivated > 0 and res.cached > 0
        assert res.killed == 0
        # the daemon kept free + cache around its targets, not at zero
        vm.vmstats_rollup()
        s = vm.vmstats
        assert s.v_free_count + s.v_cache_count >= s.v_free_reserved
        vm.check()


@pytest.mark.parametrize("mib, source, seed, cpus, cpu", [
    (48, "dragonfly", 1, None, 0),
    (48, "buddy", 2, None, 1),
    (40, "dragonfly", 3, CpuTopology(2, 2, 1), 3),
])
def test_pagecache_read_leaves_the_state_of_its_calls_one_by_one(mib, source, seed, cpus,
                                                                 cpu):
    # The workload's one-call read (pagecache_read) against the public calls it stands
    # for (grab, set_validclean, activate, wakeup), over 2.5x RAM: the pagedaemon runs
    # in both, and the whole state must come out the same.
    digests, passes = [], []
    for per_call in (False, True):
        vm = small(mib, source=source, cpus=cpus)
        pagecache_fill(vm, 5 * mib * MIB // 2, seed=seed, cpu=cpu, per_call=per_call)
        digests.append(digest(vm))
        passes.append(vm.pageout_stats.passes)
        vm.vmstats_rollup()
        vm.check()
    assert passes[0] == passes[1] > 0
    assert digests[0] == digests[1]


def test_referenced_pages_survive_the_scan():
    vm = small(48)
    o = vm.object_create("vnode")
    hot = []
    for i in range(200):
        m = vm.vm_page_grab(o, i, VM_ALLOC_NORMAL | VM_ALLOC_RETRY)
        vm.vm_page_set_validclean(m, 0, 4096)
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
        hot.append(m)
    f = vm.object_create("vnode")
    n = 0
    while vm.pageout_stats.passes < 3:
        for m in hot:
            vm.vm_page_reference(m)
        for _ in range(256):
            m = vm.vm_page_grab(f, n, VM_ALLOC_NORMAL | VM_ALLOC_RETRY)
            vm.vm_page_set_validclean(m, 0, 4096)
            vm.vm_page_activate(m)
            vm.vm_page_wakeup(m)
            n += 1
    assert all(vm.pages.obj[m] == o.id for m in hot)        # still resident
    cold_left = f.resident_page_count
    assert cold_left < n


def test_dirty_anonymous_pages_are_laundered_to_swap_and_oom_kills_when_swap_is_full():
    vm = small(48)
    vm.swap_pages = 1000
    procs = []
    for _ in range(2):
        p = vm.proc_create()
        p.objects.append(vm.object_create("default"))
        procs.append(p)
    big, other = procs
    i = 0
    while not big.lowmemkill and i < 40_000:
        o = big.objects[0]
        m = vm.vm_page_grab(o, i, VM_ALLOC_NORMAL)
        if m is None:
            vm.vm_wait_pfault(big)
            continue
        vm.vm_page_set_validdirty(m, 0, 4096)
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
        i += 1
    assert vm.swap_used == 1000 and vm.pageout_stats.laundered >= 1000
    assert big.lowmemkill and not other.lowmemkill
    assert vm.kill_log == [f"pid {big.pid}, was killed: out of swap space"]
    assert big.objects[0].resident_page_count == 0


def test_lowmemkill_process_breaks_out_of_pfault_wait():
    vm = small(48)
    p = vm.proc_create(nice=5)
    p.lowmemkill = True
    s = vm.local()
    s.v_free_count = 0
    vm.swap_pages = 0
    waits = vm.pageout_stats.waits
    vm.vm_wait_pfault(p)
    assert vm.pageout_stats.waits == waits + 1               # one round, then out
    vm.vmstats_rollup()


def test_madvise():
    vm = small(48)
    o = vm.object_create("default")
    pages = []
    for i in range(64):
        m = vm.vm_page_grab(o, i, VM_ALLOC_NORMAL)
        vm.vm_page_set_validdirty(m, 0, 4096)
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
        pages.append(m)
    vm.dnweight = 0x10                     # past the "leave" window
    assert vm.vm_object_madvise(o, 0, 8, MADV_FREE) == 8
    for m in pages[:8]:
        assert vm.pages.dirty[m] == 0 and vm.pages.act_count[m] == 0
        assert queue_base(vm.pages.queue[m]) != 0
    assert vm.vm_object_madvise(o, 8, 8, MADV_DONTNEED) == 8
    assert vm.vm_object_madvise(o, 0, 4, MADV_WILLNEED) == 4
    # a busy page is skipped
    assert not vm.busy_try(pages[20], True)
    assert vm.vm_object_madvise(o, 20, 1, MADV_DONTNEED) == 0
    vm.vm_page_wakeup(pages[20])
    # MADV_FREE is refused on vnode objects
    v = vm.object_create("vnode")
    assert vm.vm_object_madvise(v, 0, 4, MADV_FREE) == 0


def test_pagedaemon_thread_serves_waiters():
    vm = small(48)
    vm.start_pagedaemon()
    try:
        res = []

        def reader(cpu: int) -> None:
            from physmem.dfly_workloads import pagecache_fill
            res.append(pagecache_fill(vm, 40 * MIB, files=2, seed=cpu, cpu=cpu))

        ts = [threading.Thread(target=reader, args=(c,)) for c in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        vm.stop_pagedaemon()
    assert sum(res) == 2 * (40 * MIB >> 12) and vm.pageout_stats.passes > 0


# -- locks ----------------------------------------------------------------------------------
def test_lock_order_checker_catches_queue_before_page():
    vm = small(48, witness=True)
    with vm.page_spin[3], vm.queue_spin[PQ_FREE]:                  # page before queue: fine
        pass
    with vm.queue_spin[PQ_FREE]:
        assert vm.page_spin[3].try_acquire()          # a try under the queue lock: fine
        vm.page_spin[3].release()
        with pytest.raises(LockOrderError):
            vm.page_spin[3].acquire()                 # blocking: a reversal
    assert vm.witness.checked > 0


def test_threads_with_the_lock_order_checker_on():
    _, vm = run("anon", small(48).machine, ops=8_000, threads=2)
    vm.check()
    vm2 = DragonflyVm(small(48).machine, witness=True)
    errors: list[BaseException] = []

    def body(cpu: int) -> None:
        try:
            from physmem.dfly_workloads import anon_churn
            anon_churn(vm2, 3000, seed=cpu, cpu=cpu)
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=body, args=(c,)) for c in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and vm2.witness.checked > 10_000
    vm2.vmstats_rollup()
    vm2.check()


# -- traces and the command line ------------------------------------------------------------
TRACE = """\
dfly_boot firecracker-128m
object_create f vnode
vm_page_alloc f 0 NORMAL -> a
vm_page_info $a
vm_page_set_valid $a 0 4096
vm_page_activate $a
vm_page_wakeup $a
vm_page_free $a
vm_page_busy_try $a 0
vm_page_hold $a
vm_page_free $a
vm_page_info $a
vm_page_unhold $a
vm_page_info $a
vm_page_lookup f 0
dfly_counts
"""


def test_trace_ops():
    # firecracker-128m: phys_avail [0x1000, 0x9f000) + [0x2000000, 0x8000000), 24734
    # pages.  vm_page_startup takes the minidump bitmap (4 KiB) and the page array
    # (32767 pages x 128 bytes) off the top of the largest range: new_end = 0x7bff000,
    # so 158 + 23551 = 23709 pages; the 158 below 0x9f000 are the DMA reserve
    # (vm_low_phys_reserved = total/4 ~ 25 MB), 23551 are free.
    # Object 1 has pg_color 0 (vm_quickcolor's first), so pindex 0 wants colour 0 (CPU 0
    # of 1x2); the highest pfn below 0x7bff with (pfn ^ pfn>>10 ^ pfn>>20) & 1023 == 0 is
    # 0x781e.
    r = Replayer(check=True)
    out = [r.run_line(ln) for ln in TRACE.splitlines()]
    assert out[0] == "pages 23709 free 23551\n"
    assert out[2] == "0x781e000\n"
    assert out[3] == ("0x781e000 queue=PQ_NONE pc=0 flags=0x0 busy=0x80000000 wire=0 "
                      "hold=0 act=0 valid=0x00 dirty=0x00 object=1 pindex=0\n")
    assert out[7].startswith("error: vm_page_free: page 0x781e000 is not hard-busied")
    assert out[8] == "0\n"
    assert " queue=PQ_HOLD+0 " in out[11] and " hold=1 " in out[11]
    assert " queue=PQ_FREE+0 " in out[13] and " busy=0x0 " in out[13]
    assert out[14] == "NULL\n"
    assert out[15].startswith("free ") and " active 0 hold 0" in out[15]


@pytest.mark.parametrize("line", [
    "vm_page_free 0x7c00001", "vm_page_alloc nosuch 0 NORMAL", "vm_page_alloc - 0 BOGUS",
    "vm_page_unwire $a 2", "vm_page_set_valid $a 4000 200", "dfly_boot nosuch-machine",
    "dfly_boot firecracker-128m cpus=0x2", "vm_page_wire 0x7c3f000", "object_create 9x",
    "vm_object_madvise f 0 1 sometimes", "vm_page_hold 0xa0000",
])
def test_bad_trace_lines_change_nothing(line):
    r = Replayer()
    for ln in TRACE.splitlines()[:3]:
        r.run_line(ln)
    before = digest(r.dfly.vm)
    out = r.run_line(line)
    assert out.startswith("error: ")
    assert digest(r.dfly.vm) == before


def test_ops_before_dfly_boot_are_errors():
    r = Replayer()
    assert r.run_line("show_page").startswith("error: no DragonFly page layer")


def test_cli_ddb_show(tmp_path):
    t = tmp_path / "t.trace"
    t.write_text("object_create f vnode\nvm_page_alloc f 0 NORMAL -> a\n"
                 "vm_page_activate $a\nvm_page_wakeup $a\n")
    r = CliRunner().invoke(main, ["ddb", "show", "pageq", "-m", "firecracker-128m",
                                  "--trace", str(t)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    active = [int(x) for x in lines[2].split(":")[1].split()]
    assert lines[2].startswith("PQ_ACTIVE:") and sum(active) == 1 and active[0] == 1
    r = CliRunner().invoke(main, ["ddb", "show", "page", "-m", "firecracker-128m"])
    assert r.exit_code == 0 and r.output.count("\n") == 13
    t.write_text("vm_page_free 0x7c00000\n")
    r = CliRunner().invoke(main, ["ddb", "show", "page", "--trace", str(t)])
    assert r.exit_code != 0 and "not hard-busied" in r.output and "Traceback" not in r.output


def test_cli_dfly_run():
    r = CliRunner().invoke(main, ["dfly", "run", "anon", "-m", "firecracker-128m",
                                  "--ops", "2000"])
    assert r.exit_code == 0, r.output
    assert "dragonfly" in r.output and "buddy" in r.output and "pages_per_s" in r.output


# -- the state machine ----------------------------------------------------------------------
class PageLifecycle(RuleBasedStateMachine):
    """Random lifecycle calls on a small page layer; a set-based model of who holds what;
    INVARIANTS after every step; refused calls leave the digest unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.vm = small(40)
        self.objs = [self.vm.object_create(t) for t in ("default", "vnode", "swap")]
        self.busy: set[int] = set()        # pages we hard-busied
        self.idle: set[int] = set()        # pages we own, unbusied, queued
        self.wired: dict[int, int] = {}
        self.held: dict[int, int] = {}
        self.next_pi = 0

    @initialize()
    def start(self) -> None:
        pass

    def _pick(self, data, pool) -> int:
        return data.draw(st.sampled_from(sorted(pool)))

    @rule(data=st.data(), req=st.sampled_from([1, 2, 4, 0x10]), obj=st.integers(-1, 2),
          cpu=st.integers(0, 1))
    def alloc(self, data, req, obj, cpu) -> None:
        o = None if obj < 0 else self.objs[obj]
        self.next_pi += 1
        with self.vm.on_cpu(cpu):
            m = self.vm.vm_page_alloc(o, self.next_pi, req)
        if m is not None:
            assert m not in self.busy | self.idle, "page handed out twice"
            self.busy.add(m)

    @precondition(lambda self: self.busy)
    @rule(data=st.data(), how=st.sampled_from(["activate", "deactivate", "head"]))
    def queue_and_release(self, data, how) -> None:
        m = self._pick(data, self.busy)
        if how == "activate":
            self.vm.vm_page_activate(m)
        else:
            self.vm.vm_page_deactivate(m, how == "head")
        self.vm.vm_page_wakeup(m)
        self.busy.discard(m)
        self.idle.add(m)

    @precondition(lambda self: self.idle)
    @rule(data=st.data())
    def rebusy(self, data) -> None:
        m = self._pick(data, self.idle)
        assert not self.vm.busy_try(m, True)
        self.idle.discard(m)
        self.busy.add(m)

    @precondition(lambda self: self.busy)
    @rule(data=st.data())
    def free(self, data) -> None:
        m = self._pick(data, self.busy)
        if self.wired.get(m):
            before = digest(self.vm)
            with pytest.raises(PageStateError):
                self.vm.vm_page_free(m)
            assert digest(self.vm) == before
            return
        self.vm.vm_page_free(m)
        self.busy.discard(m)
        q = queue_base(self.vm.pages.queue[m])
        assert q == (PQ_HOLD if self.held.get(m) else PQ_FREE) or self.vm.kernel is not None

    @precondition(lambda self: self.busy)
    @rule(data=st.data(), up=st.booleans())
    def wire(self, data, up) -> None:
        m = self._pick(data, self.busy)
        if up:
            self.vm.vm_page_wire(m)
            self.wired[m] = self.wired.get(m, 0) + 1
        elif self.wired.get(m):
            self.vm.vm_page_unwire(m, False)
            self.wired[m] -= 1
        else:
            before = digest(self.vm)
            with pytest.raises(PageStateError):
                self.vm.vm_page_unwire(m, False)
            assert digest(self.vm) == before

    @precondition(lambda self: self.busy | self.idle)
    @rule(data=st.data(), up=st.booleans())
    def hold(self, data, up) -> None:
        m = self._pick(data, self.busy | self.idle)
        if up:
            self.vm.vm_page_hold(m)
            self.held[m] = self.held.get(m, 0) + 1
        elif self.held.get(m):
            self.vm.vm_page_unhold(m)
            self.held[m] -= 1

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def unhold_freed(self, data) -> None:
        m = self._pick(data, {k for k, v in self.held.items() if v})
        self.vm.vm_page_unhold(m)
        self.held[m] -= 1

    @precondition(lambda self: self.busy)
    @rule(data=st.data(), dirty=st.booleans())
    def cache(self, data, dirty) -> None:
        m = self._pick(data, self.busy)
        if dirty and self.vm.pages.queue[m]:
            self.vm.vm_page_dirty(m)
        else:
            self.vm.vm_page_set_validclean(m, 0, 4096)
        self.vm.vm_page_cache(m)                     # always unbusies
        self.busy.discard(m)
        if queue_base(self.vm.pages.queue[m]) == PQ_CACHE:
            # a cache page may be recycled by any NORMAL allocation: no longer ours
            pass
        else:
            self.idle.add(m)

    @precondition(lambda self: self.idle)
    @rule(data=st.data())
    def bad_calls(self, data) -> None:
        m = self._pick(data, self.idle)
        for fn in (lambda: self.vm.vm_page_free(m), lambda: self.vm.vm_page_wakeup(m),
                   lambda: self.vm.vm_page_bits(1, 4096)):
            before = digest(self.vm)
            with pytest.raises(PhysmemError):
                fn()
            assert digest(self.vm) == before

    @rule()
    def pageout(self) -> None:
        self.vm.vm_pageout(force=True)
        # the daemon may have freed or cached our idle pages (they were unbusied)
        p = self.vm.pages
        for m in list(self.idle):
            if queue_base(p.queue[m]) in (PQ_FREE, PQ_CACHE) or (p.queue[m] == 0 and \
                    not self.wired.get(m)):
                self.idle.discard(m)

    @rule()
    def rollup(self) -> None:
        self.vm.vmstats_rollup()

    @invariant()
    def consistent(self) -> None:
        self.vm.check()


PageLifecycle.TestCase.settings = settings(max_examples=25, stateful_step_count=40,
                                           deadline=None)
TestPageLifecycle = PageLifecycle.TestCase


def test_act_count_aging_scan():
    # vm_pageout_page_stats on one active colour: referenced pages gain 3 + refs (cap 64),
    # unreferenced ones lose 1; at 0 a page is deactivated when the inactive queue is short.
    vm = small(48)
    o = vm.object_create()
    # fill memory so that active >= free + cache + inactive (the scan's precondition)
    pages = []
    while (m := vm.vm_page_alloc(o, len(pages), VM_ALLOC_NORMAL)) is not None:
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
        pages.append(m)
    vm.vmstats_rollup()
    colour = vm._stats_rover
    q = 2049 + colour
    on_q = list(vm.queues.iter(q))
    assert on_q
    hot, cold = on_q[0], on_q[-1]
    vm.vm_page_reference(hot)
    vm.vm_page_reference(hot)
    vm.pages.act_count[cold] = 0
    before = {m: vm.pages.act_count[m] for m in on_q}
    assert vm.vm_pageout_page_stats() == len(on_q)
    assert vm.pages.act_count[hot] == min(64, before[hot] + 3 + 2)
    assert queue_base(vm.pages.queue[cold]) == (1025 if vm.inactive() else 2049)
    for m in on_q[1:-1]:
        assert vm.pages.act_count[m] == before[m] - 1


def test_page_layer_sysctls():
    vm = small(48)
    assert vm.sysctl("vm.anonmem_decline") == "1" and vm.sysctl("vm.filemem_decline") == "2"
    assert vm.sysctl("vm.page_free_hysteresis") == "16"
    assert vm.sysctl("vm.emerg_launder") == "100"
    with pytest.raises(PhysmemError):
        vm.sysctl("vm.nonesuch")
