"""First touch after a lazy boot (issue 13): the compiled allocation path takes a lazy run's
first chunk and initialises it without calling Python; the page array's part (the run's
rule moving up, the old chunk head's lone entry) follows when Python next looks
(``VmPhys.sync``).  Every reader must see the same state as a kernel whose Python path
did the same work at once."""

from __future__ import annotations

import pytest

import physmem

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
    # The page array lags (this is what makes the first touch cheap): its runs still
    # start at chunks that were taken.
    stale = [m0 for d in range(domains) for m0, s in phys.run_nodes[d].items()
             if phys.nv[4 * s + 3] != m0]
    assert len(stale) >= domains
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


def test_whole_runs_taken():
    """Every chunk of every run taken by the compiled path (a run's last two by Python's),
    then given back: the same pages, counts and state as plain Python."""
    k, plain = _pair("firecracker-64g")
    got = [[kk.alloc_pages(0, "default", 12) for _ in range(4200)] for kk in (k, plain)]
    assert got[0] == got[1]
    assert _counts(k) == _counts(plain) and k.digest() == plain.digest()
    k.check()
    assert not k.phys.pages.runs
    for kk, pas in zip((k, plain), got, strict=True):
        for pa in pas[::3]:
            if pa is not None:
                kk.free_pages(pa, 12)
    assert k.digest() == plain.digest()
    k.check()


def test_taken_chunks_come_back_through_pythons_contig_path():
    """Two chunks taken compiled into another pool, freed, then taken by alloc_contig's
    Python path (a run longer than a block), which moves them to DEFAULT: the first
    chunk's old lone entry must not make it look LAZYINIT again (the counts would say)."""
    k, plain = _pair("firecracker-1g")
    step = 1 << (k.phys.NFO - 1)
    for kk in (k, plain):
        a, b = kk.alloc_pages(0, "direct", 12), kk.alloc_pages(0, "direct", 12)
        assert b == a + (step << 12)
        kk.free_pages(a, 12)
        kk.free_pages(b, 12)
        assert kk.alloc_contig(0, 2 * step, low=a, high=a + (2 * step << 12)) == a
        kk.check()
    assert _counts(k) == _counts(plain)
    assert k.digest() == plain.digest()


def test_the_page_arrays_hook_keeps_no_kernel_alive():
    """The page array's sync hook is a weak reference: a plain kernel dropped is freed at
    once (its arrays with it), not at the next garbage collection."""
    import weakref
    k = physmem.boot("firecracker-1g", lazy=True, jit=False)
    assert k.phys.pages.sync is not None
    phys = weakref.ref(k.phys)
    del k
    assert phys() is None
