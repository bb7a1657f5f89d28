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
_FTRACE = os.path.join(os.path.dirname(__file__), "data", "ftrace")


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
    # Issue 15's ftrace numbers: non-ASCII digits and a 5,000-digit pfn, one line each.
    ["ftrace", f"{_FTRACE}/arabic_indic_pfn.txt", "--strict", "-o",
     os.path.join(tempfile.gettempdir(), "physmem-catalogue-ftrace.trace")],
    ["ftrace", f"{_FTRACE}/huge_decimal_pfn.txt", "--strict", "-o",
     os.path.join(tempfile.gettempdir(), "physmem-catalogue-ftrace.trace")],
    ["machine", "show", "/dev/zero"],
    ["ftrace", "/dev/zero", "-o",
     os.path.join(tempfile.gettempdir(), "physmem-catalogue-ftrace.trace")],
    ["sysctl", "vm.phys_segs", "--machine", "firecracker-1g", "--arch", "arm64"],
)]


def _bad_map(text: str, via: str = "import"):
    def run():
        if via == "toml":
            machine_from_toml(text)
        elif via in ("amd64", "arm64", "riscv"):
            import_map(text, arch=via)
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
    # Issue 15's parser limits: bounded, linear, one line each.
    Case("map: 100 k System RAM lines", "map", _bad_map("".join(
        f"{i * 0x2000:08x}-{i * 0x2000 + 0xfff:08x} : System RAM\n" for i in range(100_000))),
        E.MapFormatError),
    Case("map: 100 k SMAP RAM lines", "map", _bad_map("".join(
        f"SMAP type=01 base={i * 0x2000:016x} len=0000000000001000\n"
        for i in range(100_000))), E.MapFormatError),
    Case("map: 50 KB line of hex digits", "map", _bad_map("f" * 50_000 + " : System RAM\n"),
         E.MapFormatError),
    Case("map: 4 KB hex address in an e820 line", "map", _bad_map(
        "BIOS-e820: [mem 0x" + "1" * 4000 + "-0x2] usable\n"), E.MapFormatError),
    Case("map: decimal of 5,000 digits", "map", _bad_map(
        "0x0000000000010000 - 0x000000000009bfff, " + "9" * 5000 + " bytes (1 pages)\n"),
        E.MapFormatError),
    Case("map: decimal of 1,000 digits", "map", _bad_map(
        "0x0000000000010000 - 0x000000000009bfff, " + "9" * 1000 + " bytes (1 pages)\n"),
        E.MapFormatError),
    Case("map: /dev/zero", "map", lambda: physmem.get_machine("/dev/zero"), E.MapFormatError),
    Case("map: arm64 map forced to amd64 over VM_PHYSSEG_MAX", "map", _bad_map("".join(
        f"{0x80000000 + i * 0x200000:09x}-{0x80000000 + i * 0x200000 + 0xfffff:09x} : "
        "System RAM\n" for i in range(64)), "amd64"), E.MapFormatError),
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

# -- Issue 15: hostile and careless input on every surface ----------------------------------
_HUGE = "9" * 5000                          # beyond Python's 4,300-digit int() limit
_HERE = os.path.abspath(__file__)          # an existing file, for options checked first

API += [
    _api("pool given as a list", lambda k: k.alloc_pages(0, ["default"], 0), E.PoolError),
    _api("booleans as domain and order", lambda k: k.alloc_pages(False, "default", True),
         E.DomainError),
    _api("float domain 0.0", lambda k: k.alloc_pages(0.0, "default", 0), E.DomainError),
    _api("float order 1.0", lambda k: k.alloc_pages(0, "default", 1.0), E.OrderError),
    _api("blacklist_add of a float", lambda k: k.blacklist_add(1.5), E.ArgumentError),
    _api("npages of 16,610 bits", lambda k: k.alloc_npages(0, "default", 10 ** 5000),
         E.ArgumentError),
    _api("address of 16,610 bits", lambda k: k.free_pages(10 ** 5000, 0), E.ArgumentError),
    _api("contig npages True", lambda k: k.alloc_contig(0, True, 0, 1 << 30, PAGE, 0),
         E.ArgumentError),
    _api("free_contig npages 2.0", lambda k: k.free_contig(0x2000000, 2.0), E.ArgumentError),
    _api("free list given as a list",
         lambda k: k.alloc_freelist_pages(0, ["default"], "default", 0), E.FreeListError),
    _api("find_range npages 1.0", lambda k: k.find_range(0, 1.0, 0, 1 << 30),
         E.ArgumentError),
    _api("pglist nsegs True", lambda k: k.pglist_alloc(1, 0, 1 << 30, PAGE, 0, True),
         E.ArgumentError),
    _api("boot lazy='yes'", lambda k: physmem.boot("firecracker-128m", lazy="yes"),
         E.ArgumentError),
    _api("a machine given as a number", lambda k: physmem.kernel_for(123), E.ArgumentError),
    _api("arch given as a list", lambda k: physmem.Kernel(["amd64"]), E.ArchError),
    _api("segment domain True", lambda k: physmem.Kernel("amd64").add_segment(0, PAGE, True),
         E.DomainError),
    _api("a workload given as a list", lambda k: _run_cfg(workload=["churn"])),
    _api("a run of True operations", lambda k: _run_cfg(ops=True)),
    _api("a run with tunables as one string", lambda k: _run_cfg(tunables="vm.blacklist=1")),
    _api("snapshot path a number", lambda k: physmem.load_snapshot(5)),
    _api("snapshot saved over a directory",
         lambda k: physmem.save_snapshot(k, tempfile.gettempdir())),
    _api("get_machine of a number", lambda k: physmem.get_machine(5),
         E.UnknownMachineError),
]


def _run_cfg(**kw):
    from physmem.workloads import RunConfig, run_workload
    run_workload(RunConfig(**{"workload": "churn", "ops": 10, **kw}))

CLI += [Case(f"cli: {' '.join(a if len(a) < 40 else a[:30] + '...' for a in argv)}", "cli",
             argv) for argv in (
    ["demo", "--ops", "-5"],
    ["dfly", "run", "anon", "--ops", "-1"],
    ["contig", "--npages", "4", "--fragment", "inf"],
    ["contig", "--npages", "4", "--fragment", "nan"],
    ["contig", "--npages", "4", "--fragment", "2"],
    ["sweep", _HERE, "--workers", "-1"],
    ["sweep", _HERE, "--workers", "10000"],
    ["sweep", _HERE, "--scheduler", "nonsense://x"],
    ["run", "churn", "--ops", "100", "--interval", "500"],
    ["run", "churn", "--ops", "-1"],
    ["run", "churn", "--ops", "100000000000"],
    ["run", "churn", "--seed", "-1"],
    ["run", "churn", "--bogus-option"],
    ["machine", "show", "[/]"],
    ["run", "[link=https://example.org]churn"],
    ["run", "churn", "-m", "[bold red]x\x1b[2J"],
    ["snapshot", "show", "/dev/zero"],
    ["replay", "-", "--load", "/dev/zero"],
    ["sweep", "/dev/zero"],
    ["report", "/dev/null"],
    ["sysctl", "vm.phys_free", "--tunable", "vm.blacklist=" + _HUGE],
    ["boot", "--tunable", "vm.dma_reserved=" + _HUGE],
    ["dfly", "run", "anon", "--cpus", _HUGE + "x1"],
    ["contig", "--npages", "4", "--low", _HUGE],
    ["boot", "--ns-per-page", "nan"],
    ["boot", "--ns-per-page", "inf"],
    ["run", "churn", "-o", ""],
    ["sweep", _HERE, "--scheduler", ""],
    ["dfly", "run", "pagecache", "--bytes", "1" + "0" * 30],
    ["ddb", "show", "page", "--trace", "/dev/zero"],
)]

MAPS += [
    Case("map: TOML decimal of 5,000 digits", "map",
         _bad_map(f"ram = [[0, {_HUGE}, 0]]\n", "toml"), E.MapFormatError),
    Case("map: TOML hex of 10,000 digits", "map",
         _bad_map(f"ram = [[0, 0x{'f' * 10000}, 0]]\n", "toml"), E.MapFormatError),
    Case("map: TOML 2,000 ram ranges", "map", _bad_map("ram = [" + ", ".join(
        f"[{i << 13}, {(i << 13) + 4096}, 0]" for i in range(2000)) + "]\n", "toml"),
        E.MapFormatError),
    Case("map: TOML of 10^6 ram ranges (20 MB) refused by size", "map",
         lambda: machine_from_toml("ram = [" + "[0, 4096, 0], " * 1_000_000 + "]"),
         E.MapFormatError),
    Case("map: TOML arrays nested 100,000 deep", "map",
         _bad_map("ram = " + "[" * 100_000 + "]" * 100_000 + "\n", "toml"),
         E.MapFormatError),
    Case("map: TOML domain 100 (the message names the file)", "map",
         lambda: _names_file(lambda: machine_from_toml(
             "ram = [[0x100000, 0x200000, 100]]\n", "m.toml"), "m.toml"), E.SegmentError),
    Case("sweep: ops of 5,000 digits", "map", lambda: _sweep(ops="9" * 5000)),
    Case("sweep: seeds true", "map", lambda: _sweep(seeds="[true]")),
    Case("sweep: a grid of 120,000 runs", "map", lambda: _sweep(
        seeds="[" + ", ".join(map(str, range(20_000))) + "]",
        policies='["lazy", "eager", "lazy+mirror", "eager+mirror", "lazy", "eager"]')),
    Case("sweep: arrays nested 100,000 deep", "map",
         lambda: _sweep_text("x = " + "[" * 100_000 + "]" * 100_000)),
    Case("sweep: machines given as numbers", "map", lambda: _sweep(machines="[1]")),
    Case("sweep: /dev/zero as a machine", "map", lambda: _sweep(machines='["/dev/zero"]')),
    Case("map: /dev/zero as a machine", "map", lambda: physmem.get_machine("/dev/zero"),
         E.MapFormatError),
    Case("map: an eager boot of 16 TiB", "map", lambda: _boot_toml(
        "ram = [[0x100000, 0x100000000000, 0]]\n", lazy=False), E.SegmentError),
    Case("map: a lazy boot of 8 TiB", "map", lambda: _boot_toml(
        "ram = [[0x100000, 0x80000000000, 0]]\n", lazy=True), E.SegmentError),
    Case("map: addresses spanning 2^63 bytes", "map", lambda: _boot_toml(
        "ram = [[0x100000, 0x200000, 0], [0x7fff000000000000, 0x7fff000000100000, 0]]\n",
        lazy=True), E.SegmentError),
]


def _names_file(fn, name: str):
    try:
        fn()
    except E.PhysmemError as e:
        assert name in str(e), str(e)
        raise


def _sweep_text(text: str):
    from physmem.sweep import load_sweep
    load_sweep(text, "s.toml")


def _sweep(**kw):
    d = {"machines": '["firecracker-128m"]', "policies": '["lazy"]', "workloads": '["churn"]',
         "seeds": "[1]", "ops": "10", **kw}
    _sweep_text("".join(f"{k} = {v}\n" for k, v in d.items()))


def _boot_toml(text: str, lazy: bool):
    k = physmem.Kernel.from_machine(machine_from_toml(text))
    k.boot(lazy=lazy)


TUNABLES += [Case(f"tunable: {t[:40]}...", "tunable", t, E.TunableError) for t in (
    "vm.blacklist=" + _HUGE, "vm.dma_reserved=" + _HUGE,
    "debug.vm.lazy_page_init=" + "0" * 70, "vm.blacklist=0x" + "f" * 30,
)]


def _snapshot_arrays() -> tuple[dict, dict]:
    """The arrays and meta of a snapshot of a lazily booted firecracker-128m (cached)."""
    global _SNAP
    if _SNAP is None:
        import json

        import numpy as np
        k = physmem.boot("firecracker-128m", lazy=True)
        k.alloc_pages(0, "default", 3)
        with tempfile.TemporaryDirectory() as d:
            physmem.save_snapshot(k, os.path.join(d, "s.npz"))
            with np.load(os.path.join(d, "s.npz")) as z:
                arrays = {n: z[n] for n in z.files}
        _SNAP = arrays, json.loads(bytes(arrays["meta"]).decode())
    return _SNAP


_SNAP = None


def _crafted_snapshot(change_meta=None, raw_meta: str | None = None, extra=None):
    """A snapshot file with its meta record changed, or an array added to its zip."""
    def run():
        import json
        import zipfile

        import numpy as np
        arrays, meta = _snapshot_arrays()
        meta = json.loads(json.dumps(meta))
        if change_meta:
            change_meta(meta)
        arrays = {**arrays, "meta": np.frombuffer(
            (raw_meta or json.dumps(meta)).encode(), dtype=np.uint8)}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for n, a in {**arrays, **(extra or {})}.items():
                b = io.BytesIO()
                np.lib.format.write_array(b, a)
                zf.writestr(n + ".npy", b.getvalue())
        _bad_snapshot(buf.getvalue())()
    return run


def _zeros(n: int, dtype: str):
    import numpy as np
    return np.zeros(n, dtype=dtype)


SNAPSHOTS += [
    Case("snapshot: ndomains 100", "snapshot",
         _crafted_snapshot(lambda m: m.update(ndomains=100)), E.PhysmemError),
    Case("snapshot: flind_of out of range", "snapshot",
         _crafted_snapshot(lambda m: m["flind_of"].__setitem__(0, 9))),
    Case("snapshot: default_freepool 7", "snapshot",
         _crafted_snapshot(lambda m: m.update(default_freepool=7))),
    Case("snapshot: npages 2^62", "snapshot",
         _crafted_snapshot(lambda m: m["pages"].update(npages=2 ** 62))),
    Case("snapshot: meta nested 100,000 deep", "snapshot", _crafted_snapshot(
        raw_meta='{"format": "physmem-snapshot", "version": 1, "x": '
                 + "[" * 100_000 + "]" * 100_000 + "}")),
    Case("snapshot: an unknown array", "snapshot",
         _crafted_snapshot(extra={"payload": _zeros(16, "uint8")})),
    Case("snapshot: a 64 MiB array in a small file (zip bomb)", "snapshot",
         _crafted_snapshot(extra={"queue_heads": _zeros(8 << 20, "int64")})),
    Case("snapshot: a segment beyond 64 bits", "snapshot",
         _crafted_snapshot(lambda m: m.update(seg_lines=[[0, 2 ** 70, 0]]))),
    Case("snapshot: free counts of another machine", "snapshot",
         _crafted_snapshot(lambda m: m.update(free_counts=[1, 2]))),
    Case("snapshot: lazy_page_init true", "snapshot",
         _crafted_snapshot(lambda m: m["tunables"].update(lazy_page_init=True))),
    Case("snapshot: version -1", "snapshot", _crafted_snapshot(
        lambda m: m.update(version=-1))),
]


# Output paths: each case is (set-up in an empty temporary working directory, argv); it
# must be refused in one line and leave the directory (and /) exactly as it was.
_RUN = ["run", "churn", "-m", "firecracker-128m", "--ops", "50"]


def _userdir(d):
    os.mkdir(os.path.join(d, "mydocs"))
    with open(os.path.join(d, "mydocs", "thesis.txt"), "w") as f:
        f.write("four years")
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("notes")
    os.mkdir(os.path.join(d, "sub"))


def _markedrun(d, extra: bool = False):
    _userdir(d)
    r = os.path.join(d, "r")
    os.mkdir(r)
    with open(os.path.join(r, ".physmem"), "w") as f:
        f.write('{"format": "physmem-output", "kind": "run"}\n')
    with open(os.path.join(r, "config.json"), "w") as f:
        f.write("{}")
    if extra:
        with open(os.path.join(r, "mine.txt"), "w") as f:
            f.write("mine")


def _validrun(d):
    from physmem.workloads import RunConfig, run_workload, write_run
    _userdir(d)
    with open(os.path.join(d, "mydocs", "report.html"), "w") as f:
        f.write("my page")
    write_run(run_workload(RunConfig("churn", "firecracker-128m", ops=50)),
              os.path.join(d, "r"))


def _binfile(d):
    with open(os.path.join(d, "bin.trace"), "wb") as f:
        f.write(bytes(range(256)) * 8)


def _tmpfile(d):
    _userdir(d)
    with open(os.path.join(d, ".t.trace.99999999.abc.physmem-tmp"), "w") as f:
        f.write("boot eager\n")


FILES = [Case(f"output: {name}", "files", (setup, argv)) for name, setup, argv in (
    ("run -o a user's directory", _userdir, [*_RUN, "-o", "mydocs"]),
    ("run -o a user's directory --force", _userdir, [*_RUN, "-o", "mydocs", "--force"]),
    ("run -o a user's file", _userdir, [*_RUN, "-o", "notes.txt", "--force"]),
    ("run -o .", _userdir, [*_RUN, "-o", ".", "--force"]),
    ("run -o ..", _userdir, [*_RUN, "-o", "..", "--force"]),
    ("run -o /", _userdir, [*_RUN, "-o", "/", "--force"]),
    ("run -o sub/..", _userdir, [*_RUN, "-o", "sub/..", "--force"]),
    ("run -o a run directory without --force", _markedrun, [*_RUN, "-o", "r"]),
    ("run -o a run directory holding a user's file", lambda d: _markedrun(d, True),
     [*_RUN, "-o", "r", "--force"]),
    ("run --record over a user's file", _userdir, [*_RUN, "-o", "new", "--record",
                                                   "notes.txt"]),
    ("compare -o a user's directory", _userdir,
     ["compare", "churn", "-m", "firecracker-128m", "--ops", "50", "-o", "mydocs",
      "--force"]),
    ("compare with a policy twice", _userdir,
     ["compare", "churn", "-m", "firecracker-128m", "--ops", "50", "--policies",
      "lazy,lazy", "-o", "new"]),
    ("sweep -o a user's directory", _userdir, ["sweep", _HERE, "-o", "mydocs", "--force"]),
    ("ftrace -o over a user's file", _userdir,
     ["ftrace", "notes.txt", "-m", "firecracker-128m", "-o", "notes.txt"]),
    ("ftrace -o a directory", _userdir, ["ftrace", "notes.txt", "-o", "mydocs"]),
    ("replay --save over a user's file", _userdir,
     ["replay", "notes.txt", "--save", "notes.txt"]),
    ("replay --save --force over a file that is no snapshot", _userdir,
     ["replay", "notes.txt", "--save", "notes.txt", "--force"]),
    ("ftrace -o --force over a file that is no trace", _userdir,
     ["ftrace", "notes.txt", "-m", "firecracker-128m", "-o", "notes.txt", "--force"]),
    ("run --record --force over a file that is no trace", _userdir,
     [*_RUN, "-o", "new", "--record", "notes.txt", "--force"]),
    ("replay of a temporary file", _tmpfile,
     ["replay", ".t.trace.99999999.abc.physmem-tmp"]),
    ("ftrace of a temporary file", _tmpfile,
     ["ftrace", ".t.trace.99999999.abc.physmem-tmp", "-o", "x.trace"]),
    ("report -o over a user's report.html", _validrun, ["report", "r", "-o", "mydocs"]),
    ("ddb show --trace of a binary file", _binfile, ["ddb", "show", "page", "--trace",
                                                     "bin.trace"]),
)]



def _damaged_run(damage):
    """A set-up: a real run directory ``r``, then ``damage(path of r)``."""
    def setup(d):
        _validrun(d)
        damage(os.path.join(d, "r"))
    return setup


def _rewrite(name: str, fn):
    def damage(r):
        p = os.path.join(r, name)
        with open(p) as f:
            text = f.read()
        with open(p, "w") as f:
            f.write(fn(text))
    return damage


def _json_edit(name: str, fn):
    import json

    def edit(text):
        d = json.loads(text)
        fn(d)
        return json.dumps(d)
    return _rewrite(name, edit)


def _csv_edit(fn):
    def edit(text):
        lines = text.splitlines()
        return "\n".join(fn(lines)) + "\n"
    return _rewrite("metrics.csv", edit)


FILES += [Case(f"report: {name}", "files", (_damaged_run(damage), ["report", "r"]))
          for name, damage in (
    ("config.json missing", lambda r: os.unlink(os.path.join(r, "config.json"))),
    ("config.json not JSON", _rewrite("config.json", lambda t: t[:10])),
    ("config.json a list", _rewrite("config.json", lambda t: "[1, 2]")),
    ("config.json nested 100,000 deep", _rewrite(
        "config.json", lambda t: "[" * 100_000 + "]" * 100_000)),
    ("config without workload", _json_edit("config.json", lambda d: d.pop("workload"))),
    ("config seed a string", _json_edit("config.json", lambda d: d.update(seed="1"))),
    ("config lazy a number", _json_edit("config.json", lambda d: d.update(lazy=1))),
    ("summary without final", _json_edit("summary.json", lambda d: d.pop("final"))),
    ("summary ops 1e308", _json_edit("summary.json", lambda d: d.update(ops=1e308))),
    ("summary final free_pages a string",
     _json_edit("summary.json", lambda d: d["final"].update(free_pages="x"))),
    ("summary buddyinfo a list",
     _json_edit("summary.json", lambda d: d.update(buddyinfo=[1]))),
    ("summary inits missing", _json_edit("summary.json", lambda d: d.pop("inits"))),
    ("summary.json of 8 MiB", _rewrite("summary.json", lambda t: " " * (8 << 20) + t)),
    ("metrics.csv missing", lambda r: os.unlink(os.path.join(r, "metrics.csv"))),
    ("metrics.csv empty", _csv_edit(lambda ls: [])),
    ("metrics.csv header only", _csv_edit(lambda ls: ls[:1])),
    ("metrics.csv short row", _csv_edit(lambda ls: [*ls[:2], ls[2].rsplit(",", 3)[0]])),
    ("metrics.csv long row", _csv_edit(lambda ls: [*ls[:2], ls[2] + ",7"])),
    ("metrics.csv 1e308", _csv_edit(lambda ls: [ls[0], "1e308" + ls[1][1:]])),
    ("metrics.csv inf", _csv_edit(lambda ls: [ls[0], "inf," + ls[1].split(",", 1)[1]])),
    ("metrics.csv nan", _csv_edit(lambda ls: [ls[0], "nan," + ls[1].split(",", 1)[1]])),
    ("metrics.csv text", _csv_edit(lambda ls: [ls[0], "x," + ls[1].split(",", 1)[1]])),
    ("metrics.csv without op", _csv_edit(lambda ls: [ls[0].replace("op,", "po,"), *ls[1:]])),
    ("metrics.csv repeated column",
     _csv_edit(lambda ls: [ls[0].replace("seconds", "op"), *ls[1:]])),
    ("run directory is a file", lambda r: (__import__("shutil").rmtree(r),
                                           open(r, "w").close())),
)]

CATALOGUE: list[Case] = API + TRACE + CLI + MAPS + TUNABLES + SNAPSHOTS + PAGELAYER + FILES


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
    elif case.surface == "files":
        _run_files_case(case)
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


def _tree(d: str) -> dict[str, bytes]:
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs:
            out[os.path.relpath(os.path.join(root, n), d)] = b"<dir>"
        for n in files:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = f.read()
    return out


def _run_files_case(case: Case) -> None:
    """An output-path case in a fresh working directory: refused in one line, nothing in
    the directory (nor in /) created, changed or removed."""
    setup, argv = case.action
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as top:
        work = os.path.join(top, "work")
        os.mkdir(work)
        setup(work)
        before, root = _tree(top), sorted(os.listdir("/"))
        os.chdir(work)
        try:
            res = CliRunner().invoke(main, argv)
        finally:
            os.chdir(cwd)
        assert res.exit_code != 0, (case.name, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("physmem: error: "), \
            (case.name, res.output)
        assert _tree(top) == before, f"{case.name}: files changed"
        assert sorted(os.listdir("/")) == root, f"{case.name}: / changed"
