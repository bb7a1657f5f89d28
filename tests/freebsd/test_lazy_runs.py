"""Lazy runs (issue 13): an untouched run of LAZYINIT chunks is one queue node whose later
chunk heads the page array answers by rule.  A kernel booted lazily must behave exactly as
the same kernel with every chunk its own node -- which is what a snapshot loads (it queues
each head with vm_freelist_add) -- for every request that takes chunks from a run's front,
middle or end."""

from __future__ import annotations

import random
import sys
import threading

import pytest

import physmem

MB = 1 << 20


def _twins(tmp_path, machine: str):
    """A lazily booted kernel (runs) and its snapshot twin (one node per chunk)."""
    k = physmem.boot(machine, lazy=True)
    assert k.phys.pages.runs, "a lazy boot of this machine should make lazy runs"
    p = tmp_path / "s.npz"
    physmem.save_snapshot(k, p)
    k2 = physmem.load_snapshot(p)
    assert not k2.phys.pages.runs
    assert all(len(n) == 3 for n in k2.phys.heads.values())
    assert k2.digest() == k.digest()
    return k, k2


def test_one_tebibyte_lazy_boot_is_a_few_nodes():
    k = physmem.boot("server-1t", lazy=True)
    phys = k.phys
    step = 1 << (phys.NFO - 1)
    chunks = sum(phys.lcnt[q] for q in range(len(phys.lcnt)) if q % phys.NFO == phys.NFO - 1)
    assert chunks > 60_000
    assert len(phys.heads) < 2_000 and len(phys.pages.lone) < 100
    # the readers see every chunk: queue walks, the order and word of a later chunk head
    m0, (n, st, w, _dense) = next(iter(phys.pages.runs.items()))
    assert st == step and n > 2
    later = m0 + (n - 1) * step
    assert phys.order_of(later) == phys.NFO - 1
    assert phys.pages.word(later) == w and phys.pool_of(later) == phys.LAZYINIT
    assert phys.free_block_of(later + 5) == later
    assert phys.order_of(later + step // 2) == phys.NFO     # not a head: the kernel's check
    assert sum(1 for _ in phys.free_blocks()) == sum(phys.lcnt)
    k.check()


OPS = ["alloc", "npages", "contig", "bigcontig", "free", "pglist"]
LATE_OPS = ["unfree", "blacklist"]    # these drain the domain's LAZYINIT pool first


@pytest.mark.parametrize("machine,seed", [("firecracker-1g", 1), ("firecracker-1g", 2),
                                          ("server-96g-2dom", 3)])
def test_runs_behave_as_one_node_per_chunk(tmp_path, machine, seed):
    k, k2 = _twins(tmp_path, machine)
    rng = random.Random(seed)
    held: list[tuple[str, int, int]] = []
    top = max(s.end for s in k.phys.segs)
    for step in range(150):
        op = rng.choice(OPS + LATE_OPS if step > 120 else OPS)
        d = rng.randrange(k.phys.ndomains)
        if op == "alloc":
            args = (d, rng.choice(["default", "direct"]), rng.randrange(0, 12))
            r = k.alloc_pages(*args)
            assert r == k2.alloc_pages(*args)
            if r is not None:
                held.append(("pages", r, args[2]))
        elif op == "npages":
            args = (d, "default", rng.randrange(1, 600))
            r = k.alloc_npages_runs(*args)
            assert r == k2.alloc_npages_runs(*args)
            held.extend(("contig", pa, n) for pa, n in r)
        elif op in ("contig", "bigcontig"):
            n = rng.randrange(1, 3000) if op == "contig" else rng.randrange(4097, 12000)
            lo = rng.randrange(0, top, 16 * MB)
            args = (d, n, lo, top, 1 << rng.randrange(0, 14), 0)
            r = k.alloc_contig(*args)
            assert r == k2.alloc_contig(*args)
            if r is not None:
                held.append(("contig", r, n))
        elif op == "free" and held:
            kind, pa, n = held.pop(rng.randrange(len(held)))
            for kk in (k, k2):
                (kk.free_pages if kind == "pages" else kk.free_contig)(pa, n)
        elif op == "unfree":
            pa = rng.randrange(0, top, 4096)
            assert k.unfree_page(pa) == k2.unfree_page(pa)
        elif op == "pglist":
            n = rng.randrange(1, 5000)
            lo = rng.randrange(0, top, 16 * MB)
            r = k.pglist_alloc(n, lo, top, 4096, 0, 1)
            assert r == k2.pglist_alloc(n, lo, top, 4096, 0, 1)
        elif op == "blacklist":
            pa = rng.randrange(0, top, 4096)
            assert k.blacklist_add(pa) == k2.blacklist_add(pa)
        assert k.phys.lcnt == k2.phys.lcnt and k.free_counts == k2.free_counts, \
            f"step {step}: {op}"
        if step % 30 == 29:         # the whole state (hashes every page word)
            assert k.digest() == k2.digest(), f"step {step}: {op}"
    k.check()
    k2.check()
    assert k.sysctl("vm.phys_free") == k2.sysctl("vm.phys_free")
    k.lazy_init()
    k2.lazy_init()
    assert not k.phys.pages.runs
    assert k.digest() == k2.digest()
    k.check()



def test_runs_of_two_domains_taken_by_threads():
    """Each domain changes its own runs under its own lock while the page array's run
    table is shared: four threads (two per domain) take chunks from run fronts (steals of
    large blocks) and middles (contig runs from a random low address); every page taken
    is accounted for and the state passes INVARIANTS."""
    k = physmem.boot("server-96g-2dom", lazy=True)
    counts = [k.free_count(d) for d in range(2)]
    taken = [0, 0, 0, 0]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(i: int) -> None:
        domain = i % 2
        segs = [s for s in k.phys.segs if s.domain == domain]
        rng = random.Random(i)
        try:
            start.wait()
            for _ in range(150):
                if rng.random() < 0.5:
                    seg = rng.choice(segs)
                    n = rng.randrange(1, 5000)
                    lo = rng.randrange(seg.start, seg.end, 16 * MB)
                    if k.alloc_contig(domain, n, lo, seg.end) is not None:
                        taken[i] += n
                else:
                    o = rng.randrange(8, 13)
                    if k.alloc_pages(domain, "default", o) is not None:
                        taken[i] += 1 << o
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    assert [counts[d] - k.free_count(d) for d in range(2)] == [taken[0] + taken[2],
                                                               taken[1] + taken[3]]
    k.check()


def test_a_rebuild_of_the_run_table_never_keeps_another_domains_older_runs(monkeypatch):
    """Two domains change the shared run table under two different locks.  A lookup in
    one domain rebuilds the sorted run starts; if the other domain's thread moves one of
    its runs between that rebuild and its store, the stored list must not be the older
    one (else the moved run's later chunks read as never initialised, forever after)."""
    from physmem import pagearray
    step = 4096
    pages = pagearray.PageArray(0, 64 * step)
    w = pagearray.make_word(0, 0)
    pages.lone[0] = pages.lone[32 * step] = w
    pages.add_run(0, 4, step, w)                # domain 0's run
    pages.add_run(32 * step, 4, step, w)        # domain 1's run
    real = sorted

    def other_domain_meanwhile(xs):
        out = real(xs)
        monkeypatch.setattr(pagearray, "sorted", real, raising=False)
        pages.shift_run(32 * step)              # domain 1 takes its run's first chunk
        return out

    monkeypatch.setattr(pagearray, "sorted", other_domain_meanwhile, raising=False)
    assert pages.run_of(2 * step) == 0          # domain 0's lookup rebuilds the table
    assert pages.run_of(35 * step) == 33 * step
    assert pages.raw(35 * step) == w
