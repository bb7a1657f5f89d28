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
