"""The page layer's implicit blocks (issue 12): boot leaves most whole free 1024-page
blocks unwritten, their pages' pc/queue/next/prev given by the boot colour rule, and a
block is written when one of its pages is first touched.  Whether a block is implicit or
materialised must never show: the same operations give the same answers and the same
whole state on a machine booted implicitly and on the same machine with every block
materialised at once (the layout boot wrote before)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from physmem.dragonfly.vm_page import CpuTopology, DragonflyVm
from physmem.dragonfly.vm_page_array import MOVED, PQ_FREE
from physmem.dragonfly.vm_page_boot import BootMixin
from physmem.errors import InvariantError, PhysmemError
from physmem.machine import Machine, RamRange
from physmem.trace_dfly import page_info
from tests.dfly_util import digest

MIB = 1 << 20
GIB = 1 << 30
TWO = Machine("t2", [RamRange(0x100000, 160 * MIB, 0), RamRange(160 * MIB, 288 * MIB, 1)],
              page_array="none")
# 4 GiB over two uneven domains: with more sockets than domains the finalize moves about
# 450 k pages and some blocks holding moved pages stay implicit (flagged MOVED)
UNEVEN = Machine("u4g", [RamRange(0x100000, GIB, 0), RamRange(GIB, 4 * GIB, 1)],
                 page_array="none")
# four domains, a hole between the second and third, an end not block aligned
HOLE = Machine("h4", [RamRange(0x100000, 96 * MIB, 0), RamRange(96 * MIB, 192 * MIB, 1),
                      RamRange(256 * MIB, 320 * MIB, 2),
                      RamRange(320 * MIB, 448 * MIB + 5 * 4096, 3)], page_array="none")


def _machines():
    return [("firecracker-128m", None), ("firecracker-128m", CpuTopology(3, 2, 1)),
            (TWO, CpuTopology(1, 2, 1)), (TWO, CpuTopology(2, 2, 1)),
            (TWO, CpuTopology(4, 1, 1)), (UNEVEN, CpuTopology(4, 2, 1))]


def _boot(machine, cpus, materialised: bool) -> DragonflyVm:
    vm = DragonflyVm(machine, cpus=cpus)
    if materialised:
        vm.queues.materialise_all()
    return vm


def _run(vm: DragonflyVm, seed: int, steps: int) -> list[str]:
    """Random operations, pages picked by address anywhere in the machine (free pages of
    untouched blocks included); returns what each answered."""
    rng = random.Random(seed)
    objs = [vm.object_create(t) for t in ("default", "vnode", "swap")]
    busy: list[int] = []
    idle: list[int] = []
    lo, hi = vm.first_pfn, vm.first_pfn + vm.pages.npages
    out: list[str] = []
    for step in range(steps):
        op = rng.random()
        try:
            if op < 0.35 or not (busy or idle):
                m = vm.vm_page_alloc(rng.choice([*objs, None]), rng.randrange(1 << 20),
                                     rng.choice([1, 2, 4]))     # NORMAL, QUICK, SYSTEM
                if m is not None:
                    busy.append(m)
                out.append(f"alloc {m}")
            elif op < 0.5 and busy:
                m = busy.pop(rng.randrange(len(busy)))
                if rng.random() < 0.5:
                    vm.vm_page_free(m)
                    out.append(f"free {m}")
                else:
                    vm.vm_page_wakeup(m)
                    idle.append(m)
                    out.append(f"wakeup {m}")
            elif op < 0.65 and idle:
                m = rng.choice(idle)
                name = rng.choice(["vm_page_activate", "vm_page_deactivate",
                                   "vm_page_cache", "vm_page_dontneed"])
                getattr(vm, name)(m)
                out.append(f"{name} {m} {page_info(vm, m)}")
            elif op < 0.72 and idle:
                m = idle.pop(rng.randrange(len(idle)))
                if vm.busy_try(m, True):
                    idle.append(m)
                    out.append(f"busy_try {m} busy")
                else:
                    busy.append(m)
                    out.append(f"busy_try {m} got")
            elif op < 0.95:
                # any page by address: most are free pages never touched since boot
                m = vm.page(rng.randrange(lo, hi) << 12)
                name = rng.choice(["info", "vm_page_hold", "vm_page_wire", "busy_try",
                                   "vm_page_activate", "vm_page_is_valid"])
                if name == "info":
                    out.append(page_info(vm, m))
                elif name == "busy_try":
                    out.append(f"busy_try {m} {vm.busy_try(m, False)}")
                elif name == "vm_page_is_valid":
                    out.append(f"valid {m} {vm.vm_page_is_valid(m, 0, 4096)}")
                else:
                    getattr(vm, name)(m)
                    out.append(f"{name} {m} {page_info(vm, m)}")
            else:
                out.append(f"pageout {vm.vm_pageout(force=True)}")
        except PhysmemError as e:
            out.append(f"{type(e).__name__}: {e}")
        if step % 500 == 0:
            out.append(digest(vm))
    vm.vmstats_rollup()
    vm.check()
    out.append(digest(vm))
    return out


@pytest.mark.parametrize("machine,cpus", _machines(),
                         ids=lambda x: getattr(x, "name", None) or str(x))
def test_implicit_boot_is_the_materialised_layout(machine, cpus):
    lazy = _boot(machine, cpus, False)
    full = _boot(machine, cpus, True)
    imp = lazy.queues.implicit_arr
    # (on 3 sockets over one domain the finalize moves pages out of most blocks)
    assert np.count_nonzero(imp) > (len(imp) // 2 if cpus is None else 0)
    if machine is UNEVEN:                 # blocks holding moved pages, left implicit
        assert np.count_nonzero(imp & MOVED) > 10
    assert not full.queues.implicit_arr.any()
    for name, a in lazy.queues.fields().items():          # the rule = the links written
        assert np.array_equal(a, full.pages.arrays[name]), name
    assert digest(lazy) == digest(full)
    lazy.check()
    full.check()


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("machine,cpus", _machines(),
                         ids=lambda x: getattr(x, "name", None) or str(x))
def test_random_operations_cannot_tell_implicit_blocks(machine, cpus, seed):
    got = _run(_boot(machine, cpus, False), seed, 1500)
    want = _run(_boot(machine, cpus, True), seed, 1500)
    assert got == want


def test_touching_a_page_materialises_its_block_only():
    vm = DragonflyVm("firecracker-128m")
    q = vm.queues
    k = int(np.flatnonzero(q.implicit_arr)[len(np.flatnonzero(q.implicit_arr)) // 2])
    m = (k << 10) - q.off + 517
    before = np.count_nonzero(q.implicit_arr)
    assert vm.pages.queue[m] == 0                          # not written yet
    assert vm.page(vm.pa(m)) == m
    assert q.implicit_arr[k] == 0 and np.count_nonzero(q.implicit_arr) == before - 1
    assert vm.pages.queue[m] == PQ_FREE + vm.pages.pc[m]
    assert f"queue=PQ_FREE+{vm.pages.pc[m]}" in page_info(vm, m)
    vm.check()


@pytest.mark.no_final_check
def test_a_broken_implicit_block_is_caught_by_invariants():
    # the rule's links are checked against their materialised neighbours: a page of an
    # implicit block written by hand (as a bug would) breaks the mutual links
    vm = DragonflyVm("firecracker-128m")
    q = vm.queues
    k = int(np.flatnonzero(q.implicit_arr)[3])
    m = (k << 10) - q.off
    nxt = int(q.fields()["next"][m]) - 1                  # its neighbour, materialised
    vm.page(vm.pa(nxt))
    q.pages.prev[nxt] = 0
    with pytest.raises(InvariantError, match="not mutual"):
        vm.check()


def test_threads_materialising_blocks_race_nothing():
    # 8 CPUs allocate from their colours at once on a machine whose free pages start
    # almost all implicit: pops of different queues materialise the same blocks under
    # different queue locks (the materialisation lock is a leaf), with the pagedaemon
    # thread and with WITNESS; Python switches threads every microsecond.
    import sys

    from tests.dfly_util import race_run

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for seed, daemon, witness in ((1, True, False), (2, False, True)):
            problems = race_run("dragonfly", threads=8, ops=300, seed=seed, daemon=daemon,
                                witness=witness, mib=256)
            assert problems == [], problems
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("machine,cpus", [
    (TWO, CpuTopology(2, 2, 1)), (TWO, CpuTopology(3, 1, 1)), (TWO, CpuTopology(4, 1, 1)),
    ("firecracker-128m", CpuTopology(3, 2, 1)), ("firecracker-1g", CpuTopology(4, 2, 1)),
    (HOLE, CpuTopology(2, 1, 1)), (HOLE, CpuTopology(3, 2, 1)), (HOLE, CpuTopology(8, 1, 1)),
    (UNEVEN, CpuTopology(3, 2, 1)), (UNEVEN, CpuTopology(4, 2, 1)),
    # an average of 11 pages per colour: the smallest the program takes (lo < hi)
    (Machine("t80", [RamRange(0x100000, 80 * MIB)], page_array="none"),
     CpuTopology(3, 1, 1))],
    ids=lambda x: getattr(x, "name", None) or str(x))
def test_bulk_finalize_is_the_page_by_page_finalize(machine, cpus, monkeypatch):
    # vm_numa_organize_finalize as a program (moved pages left implicit, their fields
    # by arithmetic) against the kernel's loop transcribed page by page: the same pages
    # in the same queues, in the same order, with the same counts
    bulk = DragonflyVm(machine, cpus=cpus)
    assert bulk.queues.moves is not None and bulk.queues.moves.total > 0
    monkeypatch.setattr(BootMixin, "bulk_finalize", False)
    loop = DragonflyVm(machine, cpus=cpus)
    assert loop.queues.moves is None
    got, want = bulk.queues.fields(), loop.queues.fields()
    for name in got:
        assert np.array_equal(got[name], want[name]), name
    for attr in ("head", "tail", "lcnt", "nonempty"):
        assert getattr(bulk.queues, attr) == getattr(loop.queues, attr), attr
    assert bulk.messages == loop.messages
    assert digest(bulk) == digest(loop)
    bulk.check()



def test_threads_materialising_moved_blocks_race_nothing(monkeypatch):
    # 4 sockets over 2 domains, WITNESS on: 4 threads churn anonymous objects (CPUs on
    # all four sockets: donors' and recipients' queues) while 4 look up pages of MOVED
    # blocks by address (materialising them by the finalize's program), with a 1 us
    # switch interval.  Then no MOVED block is left, the links are mutual, and every
    # page has the colour the page-by-page finalize gives it (a page's pc never changes).
    import sys
    import threading

    from physmem.dfly_workloads import anon_churn

    cpus = CpuTopology(4, 2, 1)
    vm = DragonflyVm(UNEVEN, cpus=cpus, witness=True)
    q = vm.queues
    flagged = np.flatnonzero(q.implicit_arr & MOVED)
    assert len(flagged) > 10
    pages = [(int(k) << 10) - q.off + j for k in flagged for j in range(0, 1024, 61)]
    problems: list[str] = []

    def body(c: int) -> None:
        try:
            if c % 2:
                order = random.Random(c).sample(pages, len(pages))
                for m in order:
                    assert vm.page(vm.pa(m)) == m
            else:
                anon_churn(vm, 150, seed=c, cpu=c)
        except BaseException as e:
            problems.append(f"thread {c}: {type(e).__name__}: {e}")

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        ts = [threading.Thread(target=body, args=(c,)) for c in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert problems == [], problems
    assert not (q.implicit_arr & MOVED).any()
    vm.vmstats_rollup()
    vm.check()
    monkeypatch.setattr(BootMixin, "bulk_finalize", False)
    ref = DragonflyVm(UNEVEN, cpus=cpus)
    assert np.array_equal(q.fields()["pc"], ref.queues.fields()["pc"])
