"""Bad input beyond the catalogue (tests/catalogue.py): pool mixes, memory maps before
boot, domains, architectures, and replay going on after an error."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import physmem
from physmem import errors as E
from physmem.cli import main
from tests.catalogue import _booted
from tests.conftest import PAGE, make_kernel


def test_freeing_a_run_that_mixes_pools_is_refused():
    k = make_kernel([(0x1000, 0x100000)], [(5 * PAGE, 25 * PAGE)])
    assert k.alloc_pages(0, "direct", 0) == 8 * PAGE       # steals the order-3 block at 8
    assert [k.alloc_pages(0, "default", 0) for _ in range(4)] == [
        5 * PAGE, 24 * PAGE, 6 * PAGE, 7 * PAGE]
    before = k.digest()
    with pytest.raises(E.PoolMixError, match="0x8000"):
        k.free_contig(7 * PAGE, 2)
    assert k.digest() == before
    with pytest.raises(E.PoolMixError):
        k.free_contig(6 * PAGE, 3)
    assert k.digest() == before


def test_digest_notices_a_change():
    k = _booted()
    before = k.digest()
    k.free_pages(0x2000000, 0)
    assert k.digest() != before


@pytest.mark.parametrize("segs,avails,cls", [
    ([(0x1000, 0x1000)], [], E.SegmentError),                       # empty
    ([(0x1000, 0x1800)], [], E.SegmentError),                       # unaligned
    ([(0x1000, 0x10000), (0x8000, 0x20000)], [], E.SegmentError),   # overlap
    ([(0x1000, 0x10000)], [(0x20000, 0x30000)], E.SegmentError),    # avail outside
    ([(0x1000, 0x100000)], [(0x8000, 0x9000), (0x4000, 0x5000)], E.SegmentError),  # order
    ([(0x1000, 0x100000)], [(0x8000, 0x9000), (0x8800, 0xA000)], E.SegmentError),
])
def test_bad_memory_map_before_boot(segs, avails, cls):
    k = physmem.Kernel()
    with pytest.raises(cls):
        for s in segs:
            k.add_segment(*s)
        for a in avails:
            k.add_avail(*a)


def test_domain_beyond_maxmemdom_and_sparse_domains():
    k = physmem.Kernel()
    with pytest.raises(E.DomainError):
        k.add_segment(0x100000, 0x200000, 8)
    k.add_segment(0x100000, 0x200000, 1)
    k.add_avail(0x100000, 0x200000)
    before = k.digest()
    with pytest.raises(E.DomainError, match="dense"):
        k.boot()
    assert k.digest() == before and not k.booted


def test_riscv_has_no_lazy_boot():
    k = physmem.Kernel("riscv")
    k.add_segment(0x80000000, 0x80400000)
    k.add_avail(0x80000000, 0x80400000)
    with pytest.raises(E.ArchError, match="LAZYINIT"):
        k.boot(lazy=True)
    with pytest.raises(E.TunableError):
        k.boot(tunables=["debug.vm.lazy_page_init=1"])
    k.boot()
    with pytest.raises(E.ArchError):
        k.lazy_init()
    with pytest.raises(E.FreeListError, match="DMA32"):
        k.alloc_freelist_pages(0, "dma32", "default", 0)


def test_operations_before_boot_are_refused():
    k = physmem.Kernel()
    with pytest.raises(E.StateError):
        k.alloc_pages(0, "default", 0)
    with pytest.raises(E.StateError):
        k.free_pages(0x1000, 0)


def test_replay_goes_on_after_an_error_and_exits_1(tmp_path):
    t = tmp_path / "t.trace"
    t.write_text("seg 0x100000 0x8000000 0\navail 0x2000000 0x8000000\nboot eager\n"
                 "free_pages 0x2000000 0\nalloc_pages 0 default 0\nfree_count 0\n")
    res = CliRunner().invoke(main, ["replay", str(t)])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert lines[3].startswith("error: ")
    assert lines[4:] == ["0x2000000", str((0x8000000 - 0x2000000) // PAGE - 1)]


@pytest.mark.parametrize("jit", [True, False], ids=["compiled", "plain"])
@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_a_freed_run_across_two_domains_is_refused_and_changes_nothing(jit, lazy):
    """Two domains' segments meet at 5 GiB and phys_avail covers both: allocated pages on
    either side of the line, freed as one run or block, are refused with nothing changed
    (the extent mirror attached), by the compiled fast paths and the plain ones alike."""
    from physmem.kernel import Kernel
    k = Kernel("amd64", jit=jit)
    k.add_segment(0x100000000, 0x140000000, 0)
    k.add_segment(0x140000000, 0x180000000, 1)
    k.add_avail(0x100000000, 0x180000000)
    k.boot(lazy=lazy)
    mirror = k.attach_extent_mirror()
    line = 0x140000000
    for pa in range(line - 4 * PAGE, line + 4 * PAGE, PAGE):
        assert k.unfree_page(pa)
    before = (k.digest(), k.sysctl("vm.phys_free"), list(mirror.holes()))
    for free, pa, arg in ((k.free_contig, line - 4 * PAGE, 8), (k.free_contig, line - PAGE, 2),
                          (k.free_pages, line - 4 * PAGE, 3)):
        with pytest.raises(E.AddressError):
            free(pa, arg)
        assert (k.digest(), k.sysctl("vm.phys_free"), list(mirror.holes())) == before
    k.free_contig(line - 4 * PAGE, 4)
    k.free_contig(line, 4)
    mirror.check()
    k.check()


@pytest.mark.parametrize("jit", [True, False])
def test_the_first_bad_argument_is_the_one_reported_and_nothing_changes(jit):
    """The fast paths test every argument in one expression; when one is bad, the
    helpers report the first in the signature's order, as they did one by one."""
    k = physmem.boot("firecracker-128m", lazy=False, jit=jit)
    k.free_pages(k.alloc_pages(0, "default", 0), 0)
    before = k.digest()
    cases = [
        (lambda: k.alloc_pages(7, ["x"], 99), E.DomainError),
        (lambda: k.alloc_pages(0, ["x"], 99), E.PoolError),
        (lambda: k.alloc_pages(0, "lazyinit", 99), E.PoolError),
        (lambda: k.alloc_pages(0, "default", 99), E.OrderError),
        (lambda: k.alloc_freelist_pages(7, ["x"], ["x"], 99), E.DomainError),
        (lambda: k.alloc_freelist_pages(0, ["x"], ["x"], 99), E.FreeListError),
        (lambda: k.alloc_freelist_pages(0, "default", ["x"], 99), E.PoolError),
        (lambda: k.alloc_freelist_pages(0, "default", "default", 99), E.OrderError),
        (lambda: k.alloc_npages_runs(0, "default", 0), E.ArgumentError),
        (lambda: k.free_pages(PAGE + 1, 0), E.AddressError),
        (lambda: k.free_pages(PAGE, 3), E.AddressError),
        (lambda: physmem.Kernel().alloc_pages(7, ["x"], 99), E.StateError),
        (lambda: physmem.Kernel().alloc_freelist_pages(7, ["x"], ["x"], 99), E.StateError),
    ]
    for call, error in cases:
        with pytest.raises(error):
            call()
        assert k.digest() == before
