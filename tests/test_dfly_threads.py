"""The page layer under threads: races that the kernel's locks prevent must not happen.

Each run puts 8 threads (one per CPU of a 1x8 machine) on a small machine: half churn
anonymous objects (grab, dirty, wire, madvise, vm_object_terminate), half read files
through the page cache, optionally against the pagedaemon thread and with the WITNESS
lock-order checker.  Python switches threads every microsecond here, so interleavings
that need a window of a few bytecodes happen.  What each run asserts: no thread died (the
model raises on a double free, a busy page handed out, a page on two queues), the
INVARIANTS checker passes, every page is accounted for.

Races these caught (issue 12):
- vm_object_terminate freed a page that an allocator had just recycled from PQ_CACHE
  ("page ... is already free"): the kernel holds the object's token in terminate, and
  recycling a cache page needs vm_object_hold_try on its object;
- an allocator's busy_try failed on a page dequeued without its page lock, and its
  deactivation collided with the busy holder's own requeue: the kernel's colour search
  returns the page spinlocked until it is busied or deactivated;
- on the buddy source, vm_phys handed a page back to another thread before the freeing
  thread had unbusied it ("buddy page came back busy").
The long version runs in `make torture` (tests/torture.py, suite pagelayer_races).
"""

from __future__ import annotations

import sys

import pytest

from tests.dfly_util import race_run


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("source,daemon,witness", [
    ("dragonfly", True, False),
    ("dragonfly", False, True),
    ("buddy", True, False),
    ("buddy", False, True),
])
def test_eight_threads_of_object_work_race_nothing(fast_switching, source, daemon, witness):
    for seed in (1, 2):
        problems = race_run(source, threads=8, ops=600, seed=seed, daemon=daemon,
                            witness=witness)
        assert problems == [], problems


def test_the_anon_workload_on_the_buddy_source_with_two_threads(fast_switching):
    from physmem.dfly_workloads import run
    for seed in (1, 2, 3):
        res, vm = run("anon", "firecracker-128m", source="buddy", ops=1500, threads=2,
                      seed=seed)
        vm.check()
        assert res.pages > 0


def test_a_run_reports_progress_and_stops_cleanly_on_ctrl_c():
    # `physmem dfly run` draws its progress bar from these calls and turns Ctrl-C (a
    # KeyboardInterrupt in the calling thread) into a clean stop between steps.
    from physmem.dfly_workloads import run
    seen: list[tuple[int, int]] = []

    def progress(done: int, passes: int) -> None:
        seen.append((done, passes))
        if done > 3000:
            raise KeyboardInterrupt

    total = 1 << 30                   # more than the first 0.1 s poll can see finished
    res, vm = run("pagecache", "firecracker-128m", nbytes=total, threads=2,
                  progress=progress)
    assert res.interrupted and 3000 < res.pages < total >> 12
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    vm.check()                        # no worker was stopped in the middle of a step
    res2, _ = run("pagecache", "firecracker-128m", nbytes=4 << 20, progress=progress)
    assert not res2.interrupted and res2.pages == 1024


@pytest.mark.parametrize("source", ["dragonfly", "buddy"])
@pytest.mark.parametrize("through", ["lookup_busy_try", "grab"])
def test_a_page_looked_up_cannot_be_freed_before_its_busy(source, through):
    """vm_page_lookup_busy_try and vm_page_grab look up and busy under the object's
    token, as the kernel's callers hold the object.  The races torture (JIT off) caught
    anon_churn busying a page that another thread had freed between its lookup and its
    busy ("vm_page_wire: page ... is free"): here a second thread busies and frees the
    page in that window, every time.  Without the token its free completes and the
    busy lands on a free page; with it, vm_page_free waits for the token and the busy
    try fails (the page is the freeing thread's); grab sleeps until the busy is gone
    (vm_page_sleep_busy, without taking it) and looks the page up again."""
    for pi in range(4):
        _free_in_the_window(source, through, pi)


def _free_in_the_window(source: str, through: str, pi: int) -> None:
    import threading

    from physmem.dragonfly.vm_page import DragonflyVm
    from physmem.dragonfly.vm_page_defs import VM_ALLOC_NORMAL, VM_ALLOC_RETRY
    from physmem.machine import Machine, RamRange
    m0 = Machine("t48", [RamRange(0x100000, 48 << 20)], page_array="none")
    vm = DragonflyVm(m0, source=source)
    o = vm.object_create("default")
    for i in range(4):
        m = vm.vm_page_grab(o, i, VM_ALLOC_NORMAL | VM_ALLOC_RETRY)
        vm.vm_page_activate(m)
        vm.vm_page_wakeup(m)
    lookup = vm._lookup
    errors: list[BaseException] = []
    freer: list[threading.Thread] = []

    def free_it(m: int) -> None:
        try:
            if not vm.busy_try(m, True):
                vm.vm_page_free(m)
        except BaseException as e:          # pragma: no cover (the failure shown)
            errors.append(e)

    def window(obj, pindex):                # between the lookup and the busy
        m = lookup(obj, pindex)
        if m is not None and not freer:
            t = threading.Thread(target=free_it, args=(m,))
            freer.append(t)
            t.start()
            t.join(0.3)                     # done, or waiting for the token
        return m

    vm._lookup = window
    if through == "grab":
        # grab waits for the freeing thread's busy, then finds the page gone and
        # allocates a new one at pi
        m = vm.vm_page_grab(o, pi, VM_ALLOC_NORMAL | VM_ALLOC_RETRY)
        assert not vm._is_free(m) and vm.pages.obj[m] == o.id, "grab gave a free page"
        vm.vm_page_wakeup(m)
    else:
        m, busy = vm.vm_page_lookup_busy_try(o, pi, True)
        assert busy or not vm._is_free(m), "busied a page freed after its lookup"
        if not busy:
            vm.vm_page_wakeup(m)
    freer[0].join(5)
    assert not freer[0].is_alive() and errors == [], errors
    vm.check()
