"""Threads racing on one Kernel: ownership is checked and changed under the domain's free
lock on every free path (two threads freeing one page: exactly one succeeds), and the
extent mirror, one map shared by every domain, stays in step when threads allocate and
free in different domains at once.  Each test is bounded (a few hundred operations per
thread) and its race is made likely by a short thread switch interval."""

from __future__ import annotations

import random
import sys
import threading
import time

import pytest

import physmem
from physmem import errors as E

PAGE = 4096


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _race_free(k, free, pa, arg) -> list[str]:
    """Two threads free the same run while the domain lock is held, then it is released:
    both have passed any check made before the lock.  Returns their outcomes."""
    out: list[str] = []

    def freer() -> None:
        try:
            free(pa, arg)
            out.append("ok")
        except E.DoubleFreeError:
            out.append("double free")
        except BaseException as e:  # reported in the main thread
            out.append(repr(e))

    lock = k.phys.domain_locks[0]
    threads = [threading.Thread(target=freer) for _ in range(2)]
    with lock:
        for t in threads:
            t.start()
        time.sleep(0.002)
    for t in threads:
        t.join()
    return sorted(out)


@pytest.mark.parametrize("order", [0, 2])
def test_two_threads_freeing_one_block_exactly_one_succeeds(order, fast_switching):
    k = physmem.boot("firecracker-1g", lazy=False)
    before = k.free_count(0)
    for _ in range(15):
        pa = k.alloc_pages(0, "default", order)
        assert _race_free(k, k.free_pages, pa, order) == ["double free", "ok"]
        assert k.free_count(0) == before
    k.check()


def test_two_threads_freeing_one_run_exactly_one_succeeds(fast_switching):
    k = physmem.boot("firecracker-1g", lazy=False)
    before = k.free_count(0)
    for _ in range(10):
        pa = k.alloc_contig(0, 5, 0, 1 << 40, PAGE, 0)
        assert _race_free(k, k.free_contig, pa, 5) == ["double free", "ok"]
        assert k.free_count(0) == before
    k.check()


def test_extent_mirror_with_threads_in_two_domains(fast_switching):
    k = physmem.boot("server-96g-2dom", lazy=False)
    k.attach_extent_mirror()
    counts = [k.free_count(d) for d in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(domain: int, seed: int) -> None:
        rng = random.Random(seed)
        held: list[tuple[int, int]] = []
        try:
            start.wait()
            for _ in range(1000):
                if held and rng.random() < 0.5:
                    pa, o = held.pop(rng.randrange(len(held)))
                    k.free_pages(pa, o)
                else:
                    o = rng.randrange(3)
                    pa = k.alloc_pages(domain, "default", o)
                    assert pa is not None
                    held.append((pa, o))
            for pa, o in held:
                k.free_pages(pa, o)
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    for rnd in range(8):      # one round lets the unlocked mirror through about half the time
        threads = [threading.Thread(target=worker, args=(i % 2, 4 * rnd + i))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert [k.free_count(d) for d in range(2)] == counts
        k.check()        # the mirror's holes are exactly the free blocks
