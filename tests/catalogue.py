"""The bad-input catalogue: every surface (API, CLI, trace format, map files, tunables,
snapshots), one entry per distinct bad input.  Each entry, run on a fresh state, must raise
a typed PhysmemError (the CLI: exit non-zero with a one-line message, no traceback) and
leave the state digest unchanged.  Used by tests/test_catalogue.py and by `make torture`.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from click.testing import CliRunner

import physmem
from physmem import errors as E
from physmem.cli import main
from physmem.machine import machine_from_toml
from physmem.mapimport import import_map
from physmem.trace import Replayer

PAGE = 4096


@dataclass(frozen=True)
class Case:
    name: str
    surface: str                  # api, trace, cli, map, tunable, snapshot
    action: Callable              # api: f(kernel); trace: a line or f(); cli: argv; others: f()
    error: type = E.PhysmemError


def _booted() -> physmem.Kernel:
    """firecracker-128m, eager, with 0x2000000 (order 3, default) and 0x3000000 (order 0,
    direct) allocated."""
    k = physmem.boot("firecracker-128m", lazy=False)
    assert k.alloc_pages(0, "default", 3) == 0x2000000
    assert k.alloc_pages(0, "direct", 0) == 0x3000000
    return k


def _api(name, fn, error=E.PhysmemError):
    return Case(name, "api", fn, error)


API = [
    _api("double free", lambda k: k.free_pages(0x4000000, 0), E.DoubleFreeError),
    _api("free of a never-allocated block", lambda k: k.free_pages(0x2000000, 4),
         E.DoubleFreeError),
    _api("free of a foreign page (outside RAM)", lambda k: k.free_pages(1 << 40, 0),
         E.AddressError),
    _api("free of a page in no segment", lambda k: k.free_pages(0x9F000, 0), E.AddressError),
    _api("free of an unaligned address", lambda k: k.free_pages(0x2000800, 0),
         E.AddressError),
    _api("free misaligned to its order", lambda k: k.free_pages(0x2001000, 1),
         E.AddressError),
    _api("free_contig of 0 pages", lambda k: k.free_contig(0x2000000, 0), E.ArgumentError),
    _api("free_contig of a negative count", lambda k: k.free_contig(0x2000000, -4),
         E.ArgumentError),
    _api("free_contig over a free page", lambda k: k.free_contig(0x2000000, 9),
         E.DoubleFreeError),
    _api("order 13", lambda k: k.alloc_pages(0, "default", 13), E.OrderError),
    _api("order -1", lambda k: k.alloc_pages(0, "default", -1), E.OrderError),
    _api("unknown pool", lambda k: k.alloc_pages(0, "bogus", 0), E.PoolError),
    _api("the LAZYINIT pool", lambda k: k.alloc_npages(0, "lazyinit", 1), E.PoolError),
    _api("unknown free list", lambda k: k.alloc_freelist_pages(0, "high", "default", 0),
         E.FreeListError),
    _api("domain out of range", lambda k: k.alloc_pages(1, "default", 0), E.DomainError),
    _api("negative domain", lambda k: k.free_count(-1), E.DomainError),
    _api("npages 0", lambda k: k.alloc_npages(0, "default", 0), E.ArgumentError),
    _api("npages negative", lambda k: k.alloc_npages(0, "default", -3), E.ArgumentError),
    _api("npages above the limit", lambda k: k.alloc_npages(0, "default", 4097),
         E.ArgumentError),
    _api("huge contig request", lambda k: k.alloc_contig(0, 1 << 60, 0, 1 << 30, PAGE, 0),
         E.ArgumentError),
    _api("alignment 0", lambda k: k.alloc_contig(0, 1, 0, 1 << 30, 0, 0), E.ArgumentError),
    _api("non-power-of-two alignment",
         lambda k: k.alloc_contig(0, 1, 0, 1 << 30, 3 * PAGE, 0), E.ArgumentError),
    _api("non-power-of-two boundary",
         lambda k: k.alloc_contig(0, 1, 0, 1 << 30, PAGE, 3 * PAGE), E.ArgumentError),
    _api("address above 64 bits", lambda k: k.alloc_contig(0, 1, 0, 1 << 65, PAGE, 0),
         E.ArgumentError),
    _api("low >= high (constrained)",
         lambda k: k.alloc_constrained(4, 1 << 30, 1 << 20, PAGE, 0), E.ArgumentError),
    _api("boundary below the request",
         lambda k: k.pglist_alloc(16, 0, 1 << 30, PAGE, 0x4000), E.ArgumentError),
    _api("unfree_page unaligned", lambda k: k.unfree_page(0x2000001), E.AddressError),
    _api("unknown sysctl", lambda k: k.sysctl("vm.nope"), E.ArgumentError),
    _api("segment after boot", lambda k: k.add_segment(1 << 32, 2 << 32, 0), E.StateError),
    _api("second boot", lambda k: k.boot(), E.StateError),
]

TRACE = [Case(f"trace: {line}", "trace", line) for line in (
    "alloc_pages 0 default", "alloc_pages 0 default 0 7", "alloc_pages x default 0",
    "alloc_pages 0 default 0x", "alloc_pages 0 default -1", "alloc_pages 0 default 1_0",
    "free_pages 0x99999999999999999999 0", "frobnicate", "boot sideways", "arch amd64",
    "alloc_pages 0 lazyinit 0", "alloc_freelist_pages 0 lowmem2 default 0",
    "seg 0x100000 0x200000 0", "avail 0x9000000 0x9100000", "free_pages 0x4000000 0",
    "free_contig 0x2000000 0", "find_range 0 0 0 0x1000", "alloc_contig 0 1 0 0x1000 0x3000 0",
    "extent_print nosuch", "extent_alloc_subregion nosuch 0 1 1 1 0 0 0",
    "tunable debug.vm.lazy_page_init=0", "sysctl vm.nope", "unfree_page 0x9f000",
    "free_pages " + "9" * 5000 + " 0", "free_pages 0x" + "f" * 5000 + " 0",
    "alloc_pages 0 default " + "0" * 4400 + "1x",
)]


def _bad_trace_file(data: bytes):
    """A trace file that is not text: replay_file refuses it as a whole."""
    def run():
        with tempfile.NamedTemporaryFile(suffix=".trace", delete=False) as f:
            f.write(data)
        try:
            from physmem.trace import replay_file
            replay_file(f.name, io.StringIO())
        finally:
            os.unlink(f.name)
    return run


TRACE += [Case(f"trace file: {name}", "trace", _bad_trace_file(data), E.TraceFormatError)
          for name, data in (
              ("NUL bytes", b"seg 0x1000 0x9f000 0\n\0\0\0\0"),
              ("invalid UTF-8", b"seg 0x1000 0x9f000 0\nboot lazy \xff\xfe\n"),
              ("a line of 1 MiB", b"# " + b"x" * (1 << 20) + b"\n"),
              ("binary garbage", bytes(range(256)) * 8))]

CLI = [Case(f"cli: {' '.join(argv)}", "cli", argv) for argv in (
    ["sysctl", "vm.phys_free", "--machine", "no-such-machine"],
    ["sysctl", "vm.phys_free", "--tunable", "debug.vm.lazy_page_init=7"],
    ["sysctl", "vm.bogus"],
    ["replay", "/no/such/file"],
    ["replay", "/dev/zero"],
    ["machine", "show", "/no/such/file"],
    ["contig", "--npages", "4", "--align", "0x3000"],
    ["contig", "--npages", "0"],
    ["boot", "--machine", "firecracker-128m", "--tunable", "vm.dma_reserved=lots"],
    ["snapshot", "show", "/no/such/file.npz"],
)]


def _bad_map(text: str, via: str = "import"):
    def run():
        if via == "toml":
            machine_from_toml(text)
        else:
            import_map(text)
    return run


MAPS = [
    Case("map: empty file", "map", _bad_map(""), E.MapFormatError),
    Case("map: no map at all", "map", _bad_map("hello\nworld\n"), E.MapFormatError),
    Case("map: truncated iomem line", "map",
         _bad_map("00001000-0009fbff : Reserved\n00100000-7ff"), E.MapFormatError),
    Case("map: e820 end before start", "map", _bad_map(
        "BIOS-e820: [mem 0x0000000000100000-0x0000000000000fff] usable\n"), E.MapFormatError),
    Case("map: e820 address above 64 bits", "map", _bad_map(
        "BIOS-e820: [mem 0x100000000000000000-0x100000000000000fff] usable\n"),
        E.MapFormatError),
    Case("map: unreadable SMAP", "map", _bad_map("SMAP type=01 base=zz len=10\n"),
         E.MapFormatError),
    Case("map: iomem read without privilege", "map",
         _bad_map("00000000-00000000 : System RAM\n"), E.MapFormatError),
    Case("map: TOML syntax error", "map", _bad_map("ram = [[0, 1", "toml"), E.MapFormatError),
    Case("map: TOML overlapping segments", "map", _bad_map(
        "ram = [[0, 0x2000000, 0], [0x1000000, 0x3000000, 0]]\n", "toml"), E.SegmentError),
    Case("map: TOML typo'd key", "map", _bad_map("ram = [[0, 0x1000000, 0]]\nrm = 1\n",
                                                 "toml"), E.MapFormatError),
    Case("map: TOML huge number", "map", _bad_map(
        "ram = [[0, 0x10000000000000000000, 0]]\n", "toml"), E.MapFormatError),
    Case("map: binary garbage file", "map", lambda: _garbage_file(), E.MapFormatError),
]


def _garbage_file():
    with tempfile.NamedTemporaryFile(suffix=".map", delete=False) as f:
        f.write(bytes(range(256)) * 8)
    try:
        physmem.get_machine(f.name)
    finally:
        os.unlink(f.name)


TUNABLES = [Case(f"tunable: {t}", "tunable", t, E.TunableError) for t in (
    "debug.vm.lazy_page_init=2", "debug.vm.lazy_page_init=yes", "debug.vm.lazy_page_init",
    "vm.blacklist=0xzz", "vm.no_such=1", "vm.dma_reserved=-1",
)]


def _bad_snapshot(data: bytes):
    def run():
        with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as f:
            f.write(data)
        try:
            physmem.load_snapshot(f.name)
        finally:
            os.unlink(f.name)
    return run


SNAPSHOTS = [
    Case("snapshot: empty", "snapshot", _bad_snapshot(b"")),
    Case("snapshot: garbage", "snapshot", _bad_snapshot(os.urandom(2048))),
    Case("snapshot: a zip of nothing", "snapshot", _bad_snapshot(
        b"PK\x05\x06" + b"\0" * 18)),
]


_SETUP = ("seg 0x1000 0x9f000 0\nseg 0x100000 0x8000000 0\navail 0x2000000 0x8000000\n"
          "boot eager\nalloc_pages 0 default 3\nextent_create a 0 0xffff 0\n")


def _dfly():
    """A DragonFly page layer on firecracker-128m with page ``a`` (object f, pindex 0)
    active and unbusied, page ``b`` hard-busied and wired, and a free page ``fr``."""
    from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm
    vm = DragonflyVm("firecracker-128m")
    f = vm.object_create("vnode")
    a = vm.vm_page_alloc(f, 0, VM_ALLOC_NORMAL)
    vm.vm_page_activate(a)
    vm.vm_page_wakeup(a)
    b = vm.vm_page_alloc(f, 1, VM_ALLOC_NORMAL)
    vm.vm_page_activate(b)
    vm.vm_page_wire(b)
    fr = vm.queues.first(1 + 100)
    return vm, f, a, b, fr


def _pl(name, bad, error=E.PhysmemError, prep=None):
    """A page-layer case: ``prep`` (legal steps, before the digest), then ``bad``."""
    return Case(f"page layer: {name}", "pagelayer", (prep, bad), error)


def _busy_a(vm, f, a, b, fr):
    assert not vm.busy_try(a, True)


_N = 1                                     # VM_ALLOC_NORMAL
PAGELAYER = [
    _pl("free a page that is not busied", lambda vm, f, a, b, fr: vm.vm_page_free(a),
        E.StateError),
    _pl("free a wired page", lambda vm, f, a, b, fr: vm.vm_page_free(b), E.StateError),
    _pl("free a free page", lambda vm, f, a, b, fr: vm.vm_page_free(fr), E.StateError),
    _pl("busy a free page", lambda vm, f, a, b, fr: vm.busy_try(fr, True), E.StateError),
    _pl("free a page parked on PQ_HOLD", lambda vm, f, a, b, fr: vm.vm_page_free(a),
        E.StateError, lambda vm, f, a, b, fr: (vm.vm_page_hold(a), vm.busy_try(a, True),
                                               vm.vm_page_free(a))),
    _pl("wire a page parked on PQ_HOLD", lambda vm, f, a, b, fr: vm.vm_page_wire(a),
        E.StateError, lambda vm, f, a, b, fr: (vm.vm_page_hold(a), vm.busy_try(a, True),
                                               vm.vm_page_free(a))),
    _pl("unqueue a free page", lambda vm, f, a, b, fr: vm.vm_page_unqueue(fr),
        E.StateError),
    _pl("set valid bits on a free page", lambda vm, f, a, b, fr:
        vm.vm_page_set_valid(fr, 0, 4096), E.StateError),
    _pl("insert a free page", lambda vm, f, a, b, fr: vm.vm_page_insert(fr, f, 9),
        E.StateError),
    _pl("page index out of range", lambda vm, f, a, b, fr: vm.vm_page_wire(10 ** 8),
        E.AddressError),
    _pl("page index of the wrong type", lambda vm, f, a, b, fr: vm.vm_page_wire(1.0),
        E.AddressError),
    _pl("huge pindex", lambda vm, f, a, b, fr: vm.vm_page_alloc(f, 2 ** 70, _N),
        E.ArgumentError),
    _pl("object of another page layer", lambda vm, f, a, b, fr: vm.vm_page_alloc(
        __import__("physmem.dragonfly.vm_object", fromlist=["VmObject"]).VmObject(1), 5,
        _N), E.ArgumentError),
    _pl("flags of the wrong type", lambda vm, f, a, b, fr: vm.vm_page_alloc(f, 5, "NORMAL"),
        E.ArgumentError),
    _pl("lookup in no object", lambda vm, f, a, b, fr: vm.vm_page_lookup(None, 0),
        E.ArgumentError),
    _pl("rename a free page", lambda vm, f, a, b, fr: vm.vm_page_rename(fr, f, 7),
        E.StateError),
    _pl("freezwq of a DMA-reserve page", lambda vm, f, a, b, fr: vm.vm_page_freezwq(
        vm.page(0x1000)), E.StateError, lambda vm, f, a, b, fr: vm.vm_page_alloc_contig(1)),
    _pl("free a soft-busied page", lambda vm, f, a, b, fr: vm.vm_page_free(a),
        E.StateError, lambda vm, f, a, b, fr: (vm.sbusy_try(a), vm.busy_try(a, False))),
    _pl("unbusy a page that is not busy", lambda vm, f, a, b, fr: vm.vm_page_wakeup(a),
        E.StateError),
    _pl("drop a soft busy never taken", lambda vm, f, a, b, fr: vm.sbusy_drop(a),
        E.StateError),
    _pl("wire a free page", lambda vm, f, a, b, fr: vm.vm_page_wire(fr), E.StateError),
    _pl("unwire a page that is not wired", lambda vm, f, a, b, fr:
        vm.vm_page_unwire(a, False), E.StateError, _busy_a),
    _pl("unhold a page that is not held", lambda vm, f, a, b, fr: vm.vm_page_unhold(a),
        E.StateError),
    _pl("hold a free page", lambda vm, f, a, b, fr: vm.vm_page_hold(fr), E.StateError),
    _pl("dirty a free page", lambda vm, f, a, b, fr: vm.vm_page_dirty(fr), E.StateError),
    _pl("colour out of range (CPU 2 of 2)", lambda vm, f, a, b, fr: vm.vm_page_alloc(
        None, 0, (2 << 16) | 0x200 | _N), E.ArgumentError),
    _pl("run as CPU 7 of 2", lambda vm, f, a, b, fr: vm.on_cpu(7).__enter__(),
        E.ArgumentError),
    _pl("no allocation class", lambda vm, f, a, b, fr: vm.vm_page_alloc(None, 0, 0x8),
        E.ArgumentError),
    _pl("negative pindex", lambda vm, f, a, b, fr: vm.vm_page_alloc(f, -1, _N),
        E.ArgumentError),
    _pl("page race", lambda vm, f, a, b, fr: vm.vm_page_alloc(f, 0, _N), E.StateError),
    _pl("bits beyond the page", lambda vm, f, a, b, fr: vm.vm_page_set_valid(a, 4000, 200),
        E.ArgumentError),
    _pl("negative bit range", lambda vm, f, a, b, fr: vm.vm_page_clear_dirty(a, -1, 10),
        E.ArgumentError),
    _pl("rename onto a taken pindex", lambda vm, f, a, b, fr: vm.vm_page_rename(b, f, 0),
        E.StateError),
    _pl("address in a phys_avail hole", lambda vm, f, a, b, fr: vm.page(0xA0000),
        E.AddressError),
    _pl("unaligned address", lambda vm, f, a, b, fr: vm.page(0x2000800), E.AddressError),
    _pl("unknown object type", lambda vm, f, a, b, fr: vm.object_create("tmpfs"),
        E.ArgumentError),
    _pl("madvise with a bad advice", lambda vm, f, a, b, fr: vm.vm_object_madvise(
        f, 0, 1, 99), E.ArgumentError),
    _pl("nice out of range", lambda vm, f, a, b, fr: vm.proc_create(nice=40),
        E.ArgumentError),
    _pl("free_contig of a run never handed out", lambda vm, f, a, b, fr:
        vm.vm_page_free_contig(vm.page(0x10000), 4), E.StateError),
]


CATALOGUE: list[Case] = API + TRACE + CLI + MAPS + TUNABLES + SNAPSHOTS + PAGELAYER


def run_case(case: Case) -> None:
    """Run one catalogue entry; raises AssertionError if it is not refused cleanly."""
    if case.surface == "api":
        k = _booted()
        before = k.digest()
        try:
            case.action(k)
        except case.error as e:
            assert isinstance(e, E.PhysmemError), type(e)
        else:
            raise AssertionError(f"{case.name}: accepted")
        assert k.digest() == before, f"{case.name}: state changed"
    elif case.surface == "trace" and callable(case.action):     # a whole trace file
        try:
            case.action()
        except case.error as e:
            assert isinstance(e, E.PhysmemError) and "\n" not in str(e), (case.name, e)
        else:
            raise AssertionError(f"{case.name}: accepted")
    elif case.surface == "trace":
        r = Replayer()
        r.replay(io.StringIO(_SETUP), io.StringIO())
        before = r.kernel.digest()
        out = io.StringIO()
        assert r.replay(io.StringIO(case.action + "\n"), out) == 1, case.name
        text = out.getvalue()
        assert text.startswith("error: ") and text.count("\n") == 1, (case.name, text)
        assert r.kernel.digest() == before, f"{case.name}: state changed"
    elif case.surface == "cli":
        res = CliRunner().invoke(main, case.action)
        assert res.exit_code != 0, case.name
        assert "Traceback" not in res.output, case.name
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0].lower(), (case.name, res.output)
    elif case.surface == "tunable":
        k = physmem.kernel_for("firecracker-128m")
        before = k.digest()
        try:
            k.boot(tunables=[case.action])
        except case.error:
            pass
        else:
            raise AssertionError(f"{case.name}: accepted")
        assert k.digest() == before and not k.booted, case.name
    elif case.surface == "pagelayer":
        from tests.dfly_util import digest
        state = _dfly()
        prep, bad = case.action
        if prep is not None:
            prep(*state)
        before = digest(state[0])
        try:
            bad(*state)
        except case.error as e:
            assert isinstance(e, E.PhysmemError), type(e)
        else:
            raise AssertionError(f"{case.name}: accepted")
        assert digest(state[0]) == before, case.name
    else:
        try:
            case.action()
        except case.error as e:
            assert isinstance(e, E.PhysmemError)
        else:
            raise AssertionError(f"{case.name}: accepted")
