"""Bad input: a typed PhysmemError naming the bad value, and the state exactly as before
(compared by digest).  One table of cases through the API, then the same through the CLI
and the trace format."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

import physmem
from physmem import errors as E
from physmem.cli import main
from physmem.trace import Replayer
from tests.conftest import PAGE, fc, make_kernel


def booted():
    k = fc(128 << 20)
    k.alloc_pages(0, "default", 3)            # 0x2000000 .. : allocated order 3 at the head
    k.alloc_pages(0, "direct", 0)
    return k


# (id, callable on a booted kernel, expected error class, text the message must contain)
CASES = [
    ("order-13", lambda k: k.alloc_pages(0, "default", 13), E.OrderError, "13"),
    ("order-negative", lambda k: k.alloc_pages(0, "default", -1), E.OrderError, "-1"),
    ("order-not-int", lambda k: k.alloc_pages(0, "default", "3"), E.OrderError, "3"),
    ("pool-unknown", lambda k: k.alloc_pages(0, "bogus", 0), E.PoolError, "bogus"),
    ("pool-lazyinit", lambda k: k.alloc_pages(0, "lazyinit", 0), E.PoolError, "lazyinit"),
    ("domain-1", lambda k: k.alloc_pages(1, "default", 0), E.DomainError, "1"),
    ("domain-negative", lambda k: k.alloc_npages(-1, "default", 1), E.DomainError, "-1"),
    ("freelist-unknown", lambda k: k.alloc_freelist_pages(0, "high", "default", 0),
     E.FreeListError, "high"),
    ("npages-0", lambda k: k.alloc_npages(0, "default", 0), E.ArgumentError, "0"),
    ("npages-4097", lambda k: k.alloc_npages(0, "default", 4097), E.ArgumentError, "4097"),
    ("contig-npages-0", lambda k: k.alloc_contig(0, 0, 0, 1 << 30, PAGE, 0),
     E.ArgumentError, "0"),
    ("contig-align-0", lambda k: k.alloc_contig(0, 1, 0, 1 << 30, 0, 0), E.ArgumentError,
     "alignment"),
    ("contig-align-3", lambda k: k.alloc_contig(0, 1, 0, 1 << 30, 3 * PAGE, 0),
     E.ArgumentError, "alignment"),
    ("contig-boundary-3", lambda k: k.alloc_contig(0, 1, 0, 1 << 30, PAGE, 3 * PAGE),
     E.ArgumentError, "boundary"),
    ("contig-huge", lambda k: k.alloc_contig(0, 1 << 60, 0, 1 << 30, PAGE, 0),
     E.ArgumentError, "large"),
    ("contig-high-65bit", lambda k: k.alloc_contig(0, 1, 0, 1 << 65, PAGE, 0),
     E.ArgumentError, "high"),
    ("free-unaligned", lambda k: k.free_pages(0x2000800, 0), E.AddressError, "0x2000800"),
    ("free-misaligned-order", lambda k: k.free_pages(0x2001000, 1), E.AddressError,
     "order 1"),
    ("free-double", lambda k: k.free_pages(0x4000000, 0), E.DoubleFreeError, "0x4000000"),
    ("free-never-allocated-block", lambda k: k.free_pages(0x2000000, 4), E.DoubleFreeError,
     "0x2008000"),
    ("free-outside-segments", lambda k: k.free_pages(0x9F000, 0), E.AddressError,
     "not in a segment"),
    ("free-beyond-ram", lambda k: k.free_pages(1 << 40, 0), E.AddressError, "segment"),
    ("free-negative", lambda k: k.free_pages(-PAGE, 0), E.ArgumentError, "address"),
    ("free-contig-0", lambda k: k.free_contig(0x2000000, 0), E.ArgumentError, "0"),
    ("free-contig-crosses-free", lambda k: k.free_contig(0x2000000, 9), E.DoubleFreeError,
     "0x2008000"),
    ("unfree-unaligned", lambda k: k.unfree_page(0x2000001), E.AddressError, "0x2000001"),
    ("unfree-outside", lambda k: k.unfree_page(0x9F000), E.AddressError, "segment"),
    ("find-range-0", lambda k: k.find_range(0, 0, 0, 1 << 30), E.ArgumentError, "0"),
    ("sysctl-unknown", lambda k: k.sysctl("vm.nope"), E.ArgumentError, "vm.nope"),
    ("seg-after-boot", lambda k: k.add_segment(1 << 32, 2 << 32, 0), E.StateError, "boot"),
    ("avail-after-boot", lambda k: k.add_avail(1 << 32, 2 << 32), E.StateError, "boot"),
    ("boot-twice", lambda k: k.boot(), E.StateError, "already"),
    ("free-count-domain", lambda k: k.free_count(3), E.DomainError, "3"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_typed_error_and_changes_nothing(case):
    _, fn, cls, text = case
    k = booted()
    before = k.digest()
    with pytest.raises(cls) as ei:
        fn(k)
    assert isinstance(ei.value, physmem.PhysmemError)
    assert text in str(ei.value)
    assert k.digest() == before


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
    k = booted()
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


@pytest.mark.parametrize("line", [
    "alloc_pages 0 default", "alloc_pages 0 default 0 7", "alloc_pages x default 0",
    "alloc_pages 0 default 0x", "alloc_pages 0 default -1", "alloc_pages 0 default 1_0",
    "free_pages 0x99999999999999999999 0", "frobnicate", "boot sideways", "arch amd64",
    "alloc_pages 0 lazyinit 0", "alloc_freelist_pages 0 lowmem2 default 0",
])
def test_bad_trace_lines_print_error_and_change_nothing(line):
    r = Replayer()
    setup = "seg 0x1000 0x9f000 0\nseg 0x100000 0x8000000 0\navail 0x2000000 0x8000000\n" \
            "boot eager\n"
    out = io.StringIO()
    r.replay(io.StringIO(setup), out)
    before = r.kernel.digest()
    out = io.StringIO()
    assert r.replay(io.StringIO(line + "\n"), out) == 1
    assert out.getvalue().startswith("error: ")
    assert out.getvalue().count("\n") == 1
    assert r.kernel.digest() == before


def test_replay_goes_on_after_an_error_and_exits_1(tmp_path):
    t = tmp_path / "t.trace"
    t.write_text("seg 0x100000 0x8000000 0\navail 0x2000000 0x8000000\nboot eager\n"
                 "free_pages 0x2000000 0\nalloc_pages 0 default 0\nfree_count 0\n")
    res = CliRunner().invoke(main, ["replay", str(t)])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert lines[3].startswith("error: ")
    assert lines[4:] == ["0x2000000", str((0x8000000 - 0x2000000) // PAGE - 1)]


@pytest.mark.parametrize("args", [
    ["sysctl", "vm.phys_free", "--machine", "no-such-machine"],
    ["sysctl", "vm.phys_free", "--tunable", "debug.vm.lazy_page_init=7"],
    ["sysctl", "vm.phys_free", "--tunable", "vm.blacklist=zork"],
    ["sysctl", "vm.phys_free", "--tunable", "no.such=1"],
    ["sysctl", "vm.bogus"],
    ["replay", "/no/such/file"],
    ["machine", "show", "/no/such/file"],
])
def test_cli_errors_are_one_line_without_traceback(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    err = res.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("physmem: error:")
