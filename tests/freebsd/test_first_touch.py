"""First touch after a lazy boot (issue 13): the compiled allocation path takes a lazy run's
first chunk and initialises it without calling Python, and leaves the page array's part
(the run's rule moving up a chunk, the chunk head's lone entry) in the domain's log until
Python reads those (``VmPhys.sync``).  Every reader must see the same state as a kernel
whose Python path did the same work at once."""

from __future__ import annotations

import pytest

import physmem
from physmem.freebsd.vm_phys import LOG_DEFER

MB = 1 << 20


def _counts(k) -> tuple[int, int, int]:
    s = k.stats
    return s.boot, s.on_demand, s.drain


def _pair(machine: str):
    """The same lazily booted machine compiled and as plain Python (no deferral)."""
    return (physmem.boot(machine, lazy=True, jit=True),
            physmem.boot(machine, lazy=True, jit=False))


@pytest.mark.parametrize("machine,domains", [("firecracker-1g", 1), ("server-96g-2dom", 2)])
def test_deferred_first_touch_reads_as_done(tmp_path, machine, domains):
    k, plain = _pair(machine)
    step = 1 << (k.phys.NFO - 1)
    got = []
    for kk in (k, plain):
        got.append([kk.alloc_pages(d, "default", 9) for _ in range(40) for d in range(domains)])
    assert got[0] == got[1] and None not in got[0]
    phys = k.phys
    # The bookkeeping is waiting in the logs (this is what makes the first touch cheap).
    assert all(phys.nv[phys.log_at(d)] for d in range(domains))
    assert not plain.phys.nv[plain.phys.log_at(0)]
    # Lookups: a chunk taken is no lazy-run chunk any more; the run's next chunk is.
    heads = [pa >> 12 for pa in got[0] if not (pa >> 12) % step]
    assert len(heads) >= 4 * domains
    for m in heads:
        seen = [(kk.phys.order_of(m), kk.phys.free_block_of(m + 5),
                 kk.phys.order_of(m + step * 5)) for kk in (k, plain)]
        assert seen[0] == seen[1]
        if domains == 1:        # allocated: no head; five chunks on, still in the run
            assert seen[0] == (phys.NFO, None, phys.NFO - 1)
    assert _counts(k) == _counts(plain) and _counts(k)[1] == 5 * domains * (step - 1)
    assert k.phys.pages.ninit == plain.phys.pages.ninit
    # Readers: digests (lone entries, runs), INVARIANTS, snapshots.
    assert k.digest() == plain.digest()
    k.check()
    p = tmp_path / "s.npz"
    physmem.save_snapshot(k, p)
    assert physmem.load_snapshot(p).digest() == plain.digest()
    # The Python path takes a chunk from a run's middle and frees around it.
    for kk in (k, plain):
        got = [kk.alloc_contig(0, 3 * step, low=256 * MB), kk.alloc_pages(0, "direct", 12)]
        kk.free_pages(got[1], 12)
        kk.free_contig(got[0], 3 * step)
    assert k.digest() == plain.digest()
    k.check()


def test_the_log_is_read_before_it_fills():
    """4,096 chunks taken by the compiled path leave at most LOG_DEFER entries waiting."""
    k, plain = _pair("firecracker-64g")
    phys = k.phys
    most = 0
    for _ in range(4000):
        k.alloc_pages(0, "default", 12)
        most = max(most, phys.nv[phys.log_at(0)])
    assert 0 < most <= LOG_DEFER
    for _ in range(4000):
        plain.alloc_pages(0, "default", 12)
    assert _counts(k) == _counts(plain) and k.digest() == plain.digest()
    k.check()
