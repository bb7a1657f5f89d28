"""The ``physmem`` command line.

    physmem demo                               boot firecracker-1g, run a workload
    physmem machine list                       the presets
    physmem machine show NAME|FILE             segments, free lists, phys_avail, sizes
    physmem sysctl OID --machine NAME          vm.phys_free, vm.phys_segs, ... after boot
    physmem replay FILE|- [--check]            replay a trace (physmem help trace-format)
    physmem boot --machine NAME [--compare]    boot and report what it cost
    physmem contig --npages N [--via ...]      one constrained contiguous allocation
    physmem run WORKLOAD --machine NAME        a seeded workload -> a run directory
    physmem report RUN_DIR                     summary, PNG plots, report.html
    physmem compare WORKLOAD --policies a,b    one workload, two configurations
    physmem ftrace FILE --machine NAME -o T    Linux ftrace page events -> a trace
    physmem sweep CONFIG.toml                  a grid of runs in parallel (or on Dask)
    physmem snapshot show FILE                 a saved model state
    physmem ddb show page|pageq --machine M    DragonFly's DDB views of the page layer
    physmem dfly run WORKLOAD --machine M      a page-layer workload on both free-page sources
    physmem map-image TRACE|SNAPSHOT -o PNG    a picture of physical memory, page states
    physmem help [TOPIC]                       the documentation shipped with physmem

Errors print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

import click

from .atomic import (
    check_output_dir,
    check_output_file,
    is_snapshot_file,
    is_trace_file,
    refuse_temp,
    signals_as_exceptions,
)
from .checks import check_int, untrusted
from .errors import ArgumentError, PhysmemError
from .kernel import JIT_TIER_OPS, Kernel, jit_mode
from .machine import (
    DEFAULT_MACHINE,
    PRESETS,
    get_machine,
    load_machine_file,
    machine_spec,
    machine_to_toml,
)


# rich is imported by the commands that print tables, not at start-up: `physmem replay`
# never needs it (~30 ms of CPU a process; issue 13, bench/RESULTS.md).
def Console(**kw: Any) -> Any:
    """rich's Console, imported on first use."""
    from rich.console import Console
    return Console(**kw)


def Table(**kw: Any) -> Any:
    """rich's Table, imported on first use."""
    from rich.table import Table
    return Table(**kw)


# A trace file this long has ~20,000 lines or more (JIT_TIER_OPS lines of 64 bytes; the bench
# traces' average 27): `replay --jit auto` compiles from the first call instead of running
# the plain tier first (0.19 s of CPU less on the 100 k-op bench trace; bench/RESULTS.md).
_LONG_TRACE = JIT_TIER_OPS * 64


def _long_trace(path: str) -> bool:
    """Whether ``path`` is a regular file of at least _LONG_TRACE bytes."""
    try:
        return path != "-" and os.path.isfile(path) and os.path.getsize(path) >= _LONG_TRACE
    except OSError:
        return False


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """Leave the objects alive now out of the garbage collector's walks while the command
    runs, and out of the interpreter's last collections at exit.  A replay makes little
    cyclic garbage; what the collector walked were the imports' objects and numba's (a
    full collection during numba's import, ~0.02 s of CPU, and the exit's, ~0.05 s, of a
    compiled replay; bench/RESULTS.md, issue 13).  Unfrozen when the command returns (a
    test's process goes on); ``gc.freeze()`` is registered (once) as an exit function,
    which run before the exit's collections: the memory goes back with the process."""
    import atexit
    import gc
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        atexit.unregister(gc.freeze)
        atexit.register(gc.freeze)


def _fail(message: str) -> None:
    """Print one line, ``physmem: error: MESSAGE``, on stderr and exit 2."""
    line = untrusted(message.strip() or "unknown error", markup=False, limit=600)
    click.echo(f"physmem: error: {line}", err=True)
    sys.exit(2)


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a PhysmemError (or an unreadable file) into a one-line message and exit 2."""
    @wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            with signals_as_exceptions():
                return fn(*a, **kw)
        except PhysmemError as e:
            _fail(str(e))
        except OSError as e:
            why = e.strerror or " ".join(str(e).split()) or type(e).__name__
            _fail(f"{e.filename}: {why}" if e.filename else why)
        except MemoryError:
            _fail("out of memory (is an input far larger than it should be?)")
        except UnicodeDecodeError as e:
            _fail(f"not UTF-8 text ({e.reason} at byte {e.start})")
        except KeyboardInterrupt:
            click.echo("physmem: interrupted", err=True)
            sys.exit(130)
    return wrapper


force_opt = click.option("--force", is_flag=True, help="Replace an existing output that "
                         "physmem wrote (never anything else).")
arch_opt = click.option("--arch", type=click.Choice(["amd64", "arm64", "riscv"]),
                        default=None, help="Architecture of a memory-map file (default: "
                        "detected from the map and printed).")


def _resolve_machine(machine: str, arch: str | None) -> str:
    """Check ``--machine``/``--arch`` before the command runs; name the architecture chosen
    for a memory-map file on stderr.  Returns the machine spec the command passes on."""
    spec = machine_spec(machine, arch)
    m = get_machine(spec)
    reason = m.extra.get("arch_reason")
    if reason:
        click.echo(f"machine {machine}: {m.arch} ({reason}); "
                   f"{len(m.segments())} RAM segment(s) from "
                   f"{m.description.split(' (')[0].removeprefix('imported from ')}",
                   err=True)
    return spec


def machine_opt(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--machine`` and ``--arch``; the command receives the resolved machine spec."""
    @wraps(fn)
    def wrapper(*a: Any, machine: str, arch: str | None, **kw: Any) -> Any:
        return fn(*a, machine=_errors(_resolve_machine)(machine, arch), **kw)
    wrapper = arch_opt(wrapper)
    return click.option("--machine", "-m", default=DEFAULT_MACHINE, show_default=True,
                        help="Preset name or machine file (TOML, or a memory map: "
                             "/proc/iomem, e820 or SMAP lines, FreeBSD memory chunks; "
                             "`physmem help machines`).")(wrapper)


tunable_opt = click.option("--tunable", "-t", "tunables", multiple=True, metavar="NAME=VALUE",
                           help="Loader tunable, e.g. debug.vm.lazy_page_init=0 or "
                                "vm.blacklist=0x2000000,0x2001000 (repeatable).")


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())   # click >= 8.2


class _OneLineGroup(click.Group):
    """The top-level group: a usage error (unknown option, bad value) is one line too."""

    def main(self, *args: Any, standalone_mode: bool = True, **kw: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kw)
        try:
            rv = super().main(*args, standalone_mode=False, **kw)
        except _NO_ARGS_IS_HELP as e:            # `physmem`, `physmem machine`: the help
            e.show()
            sys.exit(e.exit_code)
        except click.ClickException as e:
            cmd = e.ctx.command_path + ": " if getattr(e, "ctx", None) else ""
            click.echo(f"physmem: error: {untrusted(cmd + e.format_message(), markup=False)}",
                       err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("physmem: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_OneLineGroup)
@click.version_option(package_name="physmem")
def main() -> None:
    """physmem: FreeBSD's physical page allocator, modelled faithfully."""


@main.command()
@machine_opt
@click.option("--ops", default=5000, show_default=True, help="Workload operations.")
@click.option("--seed", default=1, show_default=True)
@_errors
def demo(machine: str, ops: int, seed: int) -> None:
    """Boot a machine, print vm.phys_free, run a seeded workload, show the costs."""
    from .demo import run_demo
    run_demo(machine, ops, seed)


@main.group()
def machine() -> None:
    """Machine descriptions: presets and files."""


@machine.command("list")
def machine_list() -> None:
    """List the built-in machine presets."""
    t = Table(title="machine presets")
    for col in ("name", "arch", "RAM", "domains", "description"):
        t.add_column(col)
    for m in PRESETS.values():
        t.add_row(m.name, m.arch, _size(m.ram_bytes()), str(m.ndomains()), m.description)
    Console().print(_fold(t))


@machine.command("show")
@click.argument("name")
@arch_opt
@click.option("--toml", "as_toml", is_flag=True, help="Print the machine as the TOML "
              "physmem reads (edit it to add NUMA domains or CPUs, then use the file).")
@_errors
def machine_show(name: str, arch: str | None, as_toml: bool) -> None:
    """Show a machine's vm_phys segments (after splitting and coalescing), free lists,
    phys_avail and sizes.  NAME is a preset, a file, or - for standard input (a pasted
    memory map)."""
    m = load_machine_file(None, arch) if name == "-" else get_machine(name, arch)
    if as_toml:
        click.echo(machine_to_toml(m), nl=False)
        return
    k = Kernel.from_machine(m)
    k.boot(lazy=False) if not k.param.has_lazyinit else k.boot(lazy=True)
    con = Console()
    con.print(f"[bold]{untrusted(m.name)}[/bold] ({untrusted(m.arch)}): "
              f"{untrusted(m.description)}")
    if m.extra.get("arch_reason"):
        con.print(f"architecture: {untrusted(m.arch)} ({untrusted(m.extra['arch_reason'])})",
                  highlight=False)
    if m.source:
        con.print(f"source: {untrusted(m.source)}", highlight=False)
    names = {v: n.upper() for n, v in k.param.freelist_names().items()}
    flind_names: dict[int, list[str]] = {}
    for fl, flind in enumerate(k.phys.flind_of):
        if flind >= 0 and fl in names:
            flind_names.setdefault(flind, []).append(names[fl])
    t = Table(title="vm_phys segments")
    for col in ("segind", "start", "end", "size", "domain", "free list"):
        t.add_column(col)
    for i, s in enumerate(k.phys.segs):
        t.add_row(str(i), f"{s.start:#x}", f"{s.end:#x}", _size(s.end - s.start),
                  str(s.domain), f"{s.flind} ({'/'.join(flind_names.get(s.flind, []))})")
    con.print(t)
    t = Table(title="phys_avail")
    for col in ("start", "end", "size"):
        t.add_column(col)
    for s, e in k.phys_avail:
        t.add_row(f"{s:#x}", f"{e:#x}", _size(e - s))
    con.print(t)
    total = sum(d.page_count for d in k.domains)
    con.print(f"RAM {_size(m.ram_bytes())} in {len(k.phys.segs)} segments, "
              f"{k.phys.ndomains} domain(s), {k.phys.nfreelists} free list(s); "
              f"{total} pages ({_size(total * 4096)}) handed to the allocator at boot")
    so, co, th = m.topology()
    con.print(f"CPUs {so * co * th}: {so} socket(s) x {co} core(s) x {th} thread(s)"
              + ("" if m.cpus else " (default: a socket per domain)"))


@main.command()
@click.argument("oid")
@machine_opt
@tunable_opt
@_errors
def sysctl(oid: str, machine: str, tunables: tuple[str, ...]) -> None:
    """Print a sysctl after boot: vm.phys_free, vm.phys_segs, vm.page_blacklist,
    debug.vm.lazy_page_init."""
    k = Kernel.from_machine(machine)
    k.boot(tunables=list(tunables))
    text = k.sysctl(oid)
    click.echo(f"{oid}: {text}")


@main.command()
@click.argument("trace", type=click.Path(allow_dash=True))
@click.option("--check", is_flag=True, help="Run the invariant checker after every "
              "operation.")
@click.option("--load", "load_from", type=click.Path(exists=True, dir_okay=False),
              help="Start from this snapshot instead of an empty machine.")
@click.option("--save", "save_to", type=click.Path(dir_okay=False),
              help="Save a snapshot of the final state (written atomically).")
@click.option("--jit", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True,
              help="Compile vm_phys's hot paths with numba. Its import and cache load cost "
              "~0.2 s once, repaid after ~20,000 operations: 'auto' compiles after "
              f"{JIT_TIER_OPS:,} operations (PHYSMEM_JIT_TIER=N: after N), or from the "
              f"start for a file of {_LONG_TRACE:,} bytes "
              f"({_LONG_TRACE / (1 << 20):.2f} MiB) or more.")
@force_opt
@_errors
def replay(trace: str, check: bool, load_from: str | None, save_to: str | None,
           jit: str, force: bool) -> None:
    """Replay a trace (FILE, or - for standard input); exit 1 if any line failed."""
    from .trace import Replayer, read_trace_blocks
    refuse_temp(trace)
    if save_to is not None:         # (an empty --save is refused, not ignored)
        check_output_file(save_to, force, is_snapshot_file, "snapshot")
    mode = {"on": True, "off": False}.get(jit, jit_mode())
    if jit == "auto" and "PHYSMEM_JIT_TIER" not in os.environ and _long_trace(trace):
        mode = True         # it would pass the tier anyway: compiled from the first call
    r = Replayer(check=check, kernel_factory=lambda arch: Kernel(arch, jit=mode))
    if load_from:
        from .snapshot import load
        r.kernel = load(load_from)
        r.kernel.jit = mode
        r.kernel.start_jit()
        r.arch = r.kernel.param.name
        r.nops = 1   # an arch line can no longer come first
    out = sys.stdout
    with _frozen():
        if trace == "-":
            errors = r.replay_blocks(read_trace_blocks(sys.stdin.buffer, "-"), out)
        else:
            with open(trace, "rb") as f:
                errors = r.replay_blocks(read_trace_blocks(f, trace), out)
    out.flush()
    if save_to:
        from .snapshot import save
        save(r.k, save_to)
    sys.exit(1 if errors else 0)


@main.group("snapshot")
def snapshot_group() -> None:
    """Saved model states (physmem replay --save)."""


@snapshot_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@_errors
def snapshot_show(file: str) -> None:
    """Load a snapshot, check its invariants, print vm.phys_segs and vm.phys_free."""
    from . import snapshot
    k = snapshot.load(file)
    click.echo(f"{untrusted(file, markup=False)}: {k.param.name}, {len(k.phys.segs)} "
               f"segments, free pages {sum(k.free_counts)}, lazy={int(k.lazy)}; INVARIANTS ok")
    click.echo("vm.phys_segs: " + k.sysctl("vm.phys_segs"), nl=False)
    click.echo("vm.phys_free: " + k.sysctl("vm.phys_free"), nl=False)


@main.command("boot")
@machine_opt
@tunable_opt
@click.option("--compare", is_flag=True, help="Boot lazily and eagerly, each in its own "
              "process, and compare what each costs.")
@click.option("--ns-per-page", type=float, default=None, metavar="NS",
              help="Modelled kernel cost of one vm_page_init_page() (default: 82.0 ns, "
                   "calibrated on the 21.5 ms FreeBSD commit b16b4c22d2d1 reports for a 1 GiB "
                   "Firecracker guest).")
@_errors
def boot_cmd(machine: str, tunables: tuple[str, ...], compare: bool,
             ns_per_page: float | None) -> None:
    """Boot a machine and report what vm_page_startup did and what it cost."""
    from . import bootcost
    ns = bootcost.NS_PER_PAGE if ns_per_page is None else ns_per_page
    if not 0 <= ns <= 1e9:                  # also refuses nan and inf
        raise click.BadParameter(f"{ns} is not a time from 0 to 1e9 ns",
                                 param_hint="--ns-per-page")
    con = Console()
    if not compare:
        k = Kernel.from_machine(machine)
        k.boot(tunables=list(tunables))
        t = Table(title=f"boot {untrusted(machine)}")
        t.add_column("quantity")
        t.add_column("value", justify="right")
        t.add_row("debug.vm.lazy_page_init", str(k.tunables.lazy_page_init))
        t.add_row("segments", str(len(k.phys.segs)))
        t.add_row("free pages", f"{sum(k.free_counts):,}")
        t.add_row("page structures initialised at boot", f"{k.stats.boot:,}")
        t.add_row("modelled vm_page init time", f"{k.stats.boot * ns / 1e6:.2f} ms")
        t.add_row("physmem's own time to model it (Python)",
                  f"{k.stats.boot_seconds * 1e3:.2f} ms")
        if k.blacklist:
            t.add_row("vm.page_blacklist", k.sysctl("vm.page_blacklist"))
        con.print(t)
        return
    rows = bootcost.compare(machine, list(tunables))
    t = Table(title=f"boot {untrusted(machine)}: lazy vs eager page initialisation "
                    f"({ns:.1f} ns per page structure)", title_justify="left")
    for col in ("mode", "pages", "page structs initialised at boot",
                "modelled kernel time (vm_page init)", "physmem's own time *",
                "physmem's peak RSS *"):
        t.add_column(col, justify="right" if col != "mode" else "left", overflow="fold")
    for r in rows:
        t.add_row(r.mode, f"{r.pages:,}", f"{r.inits_at_boot:,}",
                  f"{r.modelled_ms(ns):.2f} ms", f"{r.model_seconds * 1e3:.2f} ms",
                  f"{r.peak_rss_kb / 1024:.0f} MiB")
    con.print(t)
    con.print("* what this Python process spent modelling the boot, not what the kernel "
              "spends: the model initialises page structures in bulk, so its own time says "
              "nothing about lazy vs eager; the modelled kernel time does.", highlight=False)
    if len(rows) == 2:
        eager, lazy = rows
        saved = eager.modelled_ms(ns) - lazy.modelled_ms(ns)
        con.print(f"lazy initialisation moves {eager.inits_at_boot - lazy.inits_at_boot:,} "
                  f"page-structure initialisations ({saved:.2f} ms of modelled kernel time) "
                  "out of boot, to first use and the vmlazyinit thread")
    else:
        con.print(f"{rows[0].arch} has no VM_FREEPOOL_LAZYINIT: eager boot only")
    seed = bootcost.SEED_FIGURES.get(machine)
    if seed is not None and len(rows) == 2:
        ms, share = seed
        boot_ms = ms / share
        eager_ms = rows[0].modelled_ms(ns)
        lazy_ms = rows[1].modelled_ms(ns)
        con.print(f"FreeBSD commit b16b4c22d2d1 reports vm_page init {ms} ms = {share:.0%} "
                  f"of a {boot_ms:.1f} ms "
                  f"kernel boot; model: {eager_ms:.2f} ms eager, {lazy_ms:.2f} ms lazy "
                  f"(kernel boot {boot_ms - ms + lazy_ms:.1f} ms, "
                  f"{lazy_ms / (boot_ms - ms + lazy_ms):.1%} of it)")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number") from None


@main.command()
@machine_opt
@tunable_opt
@click.option("--npages", required=True, type=int, help="Pages wanted.")
@click.option("--low", default="0", show_default=True, help="Lowest physical address.")
@click.option("--high", default="0xffffffffffffffff", show_default=True,
              help="Exclusive upper physical address.")
@click.option("--align", "align", default="0x1000", show_default=True, help="Alignment, bytes.")
@click.option("--boundary", default="0", show_default=True,
              help="Boundary the run may not cross, bytes (0: none).")
@click.option("--via", type=click.Choice(["buddy", "extent", "pglist", "dma"]),
              default="buddy", show_default=True,
              help="vm_phys_alloc_contig, an extent of free pages (NetBSD's 1997 proposal), "
                   "uvm_pglistalloc, or DragonFly's "
                   "contigmalloc (DMA reserve first).")
@click.option("--fragment", default=0.0, show_default=True,
              help="First hold this fraction of memory in random blocks of orders 0-3.")
@click.option("--seed", default=1, show_default=True)
@_errors
def contig(machine: str, tunables: tuple[str, ...], npages: int, low: str, high: str,
           align: str, boundary: str, via: str, fragment: float, seed: int) -> None:
    """Allocate one physically contiguous, constrained run and say where it landed."""
    import math
    import random
    import time
    if not (math.isfinite(fragment) and 0.0 <= fragment <= 1.0):
        raise click.BadParameter(f"{fragment} is not a fraction from 0 to 1",
                                 param_hint="--fragment")
    check_int(seed, "--seed", 0, (1 << 64) - 1)
    k = Kernel.from_machine(machine)
    k.boot(tunables=list(tunables))
    if via == "extent":
        k.attach_extent_mirror()
    if fragment:
        rng = random.Random(seed)
        target = int(sum(k.free_counts) * fragment)
        held = 0
        while held < target:
            o = rng.choice((0, 0, 1, 2, 3))
            if k.alloc_pages(0, rng.choice(("default", "direct")), o) is None:
                break
            held += 1 << o
    lo, hi, al, bd = _int(low), _int(high), _int(align), _int(boundary)
    t = time.perf_counter()
    if via == "buddy":
        pa = k.alloc_contig(0, npages, lo, hi, al, bd)
    elif via == "extent":
        pa = k.alloc_constrained(npages, lo, hi, al, bd)
    elif via == "pglist":
        pas = k.pglist_alloc(npages, lo, hi, al, bd)
        pa = pas[0] if pas else None
    else:
        pa = k.contigmalloc(npages, lo, hi, al, bd)
    dt = time.perf_counter() - t
    k.check()
    if pa is None:
        click.echo(f"NULL ({via}, {dt * 1e6:.0f} µs)")
        sys.exit(1)
    click.echo(f"{pa:#x} - {pa + npages * 4096 - 1:#x} ({via}, {dt * 1e6:.0f} µs)")


@main.command("run")
@click.argument("workload")
@machine_opt
@tunable_opt
@click.option("--ops", default=20_000, show_default=True, help="Workload steps.")
@click.option("--seed", default=1, show_default=True)
@click.option("--eager", is_flag=True, help="Boot with debug.vm.lazy_page_init=0.")
@click.option("--mirror", is_flag=True, help="Keep an extent map of free pages in step with "
              "the free lists (NetBSD's 1997 proposal).")
@click.option("--interval", default=0, help="Sample metrics every N steps (default ops/100).")
@click.option("-o", "--out", "out_dir", default=None,
              help="Run directory (default runs/WORKLOAD-MACHINE-SEED).")
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              help="Also write the run's trace to this file.")
@force_opt
@_errors
def run_cmd(workload: str, machine: str, tunables: tuple[str, ...], ops: int, seed: int,
            eager: bool, mirror: bool, interval: int, out_dir: str | None,
            record: str | None, force: bool) -> None:
    """Run a seeded workload (churn, pagecache, forkexec, dma, fragment) and write a run
    directory: config, trace, metrics over time, summary."""
    from rich.progress import Progress

    from .atomic import atomic_write
    from .workloads import RUN_OWNED, RunConfig, run_workload, write_run
    cfg = RunConfig(workload=workload, machine=machine, ops=ops, seed=seed, lazy=not eager,
                    tunables=list(tunables), interval=interval, mirror=mirror)
    cfg.validate()
    get_machine(machine)                      # refused before the progress bar shows
    _not_empty(out_dir, "-o")
    out_dir = out_dir or f"runs/{workload}-{Path(machine).stem}-{seed}"
    check_output_dir(out_dir, "run", force, RUN_OWNED)     # before any work
    if record is not None:          # (an empty --record is refused, not ignored)
        check_output_file(record, force, is_trace_file, "trace")
        if _inside(record, out_dir):
            raise click.BadParameter(f"{record} is inside the run directory {out_dir}",
                                     param_hint="--record")
    with Progress(transient=True) as prog:
        task = prog.add_task(untrusted(f"{workload} on {machine}"), total=ops)
        run = run_workload(cfg, progress=lambda n: prog.update(task, completed=n))
    out = write_run(run, out_dir, force)
    if record:
        with atomic_write(record, "w") as f:
            f.write("\n".join(run.trace) + "\n")
    final = run.summary["final"]
    click.echo(f"{untrusted(out, markup=False)}: {run.summary['ops']:,} operations, "
               f"{run.summary['ops_per_second']:,} ops/s; free pages {final['free_pages']}, "
               "unusable index (order 9) "
               f"{final['unusable_o9']}, largest free run {final['largest_free_run']} pages")


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", "out_dir", default=None, help="Where to write (default RUN_DIR).")
@_errors
def report_cmd(run_dir: str, out_dir: str | None) -> None:
    """Summarise a run directory; write PNG plots and a self-contained report.html."""
    from .reports import report
    report(run_dir, out_dir)


@main.command("compare")
@click.argument("workload")
@machine_opt
@click.option("--ops", default=20_000, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--policies", default="lazy,eager", show_default=True,
              help="Comma-separated: lazy, eager, lazy+mirror, eager+mirror.")
@click.option("-o", "--out", "out_dir", default=None,
              help="Output directory (default compare-WORKLOAD).")
@force_opt
@_errors
def compare_cmd(workload: str, machine: str, ops: int, seed: int, policies: str,
                out_dir: str | None, force: bool) -> None:
    """Run one workload under two (or more) configurations and compare them."""
    from .reports import compare
    _not_empty(out_dir, "-o")
    pols = [p.strip() for p in policies.split(",") if p.strip()]
    if len(pols) < 2:
        raise click.BadParameter("give at least two policies", param_hint="--policies")
    compare(workload, machine, ops, seed, pols, out_dir or f"compare-{workload}", force=force)


# -- DragonFly's page layer ------------------------------------------------------------------
source_opt = click.option("--source", type=click.Choice(["dragonfly", "buddy"]),
                          default="dragonfly", show_default=True,
                          help="Free-page source: DragonFly's coloured PQ_FREE queues or "
                               "FreeBSD's buddy allocator.")
cpus_opt = click.option("--cpus", default=None, metavar="SxC[xT]",
                        help="CPU topology (default: the machine's).")


MAX_LINE = 4096                # characters of one page-layer trace line (ddb --trace)


def _dfly_vm(machine: str, source: str, cpus: str | None, trace: str | None):
    """Boot a DragonFly page layer and replay a trace of page-layer operations on it."""
    from .dragonfly.vm_page import CpuTopology, DragonflyVm
    topo = CpuTopology.parse(cpus) if cpus else None
    vm = DragonflyVm(machine, source=source, cpus=topo)
    if trace is not None:
        from .trace import Replayer
        r = Replayer()
        r.dfly.vm = vm
        refuse_temp(trace)
        with click.open_file(trace, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), ""), 1):
                if len(line) > MAX_LINE:        # /dev/zero: never read a whole "line"
                    raise PhysmemError(f"{trace}:{n}: line longer than {MAX_LINE} "
                                       "characters; not a trace")
                out = r.run_line(line)
                if out is not None and out.startswith("error:"):
                    raise PhysmemError(f"{trace}:{n}: {out[7:].strip()}")
    return vm


@main.group("ddb")
def ddb_group() -> None:
    """DragonFly's DDB views of the page layer."""


@ddb_group.command("show")
@click.argument("what", type=click.Choice(["page", "pageq"]))
@machine_opt
@source_opt
@cpus_opt
@click.option("--trace", type=click.Path(allow_dash=True, dir_okay=False), default=None,
              help="Page-layer trace operations to run first (physmem help trace-format).")
@_errors
def ddb_show(what: str, machine: str, source: str, cpus: str | None,
             trace: str | None) -> None:
    """`show page` (vmstats) or `show pageq` (lcnt per colour), as DragonFly prints them."""
    vm = _dfly_vm(machine, source, cpus, trace)
    click.echo(vm.show_page() if what == "page" else vm.show_pageq(), nl=False)


@main.group("dfly")
def dfly_group() -> None:
    """Workloads on DragonFly's page layer."""


@dfly_group.command("run")
@click.argument("workload", type=click.Choice(["pagecache", "anon"]))
@machine_opt
@click.option("--source", type=click.Choice(["dragonfly", "buddy", "both"]),
              default="both", show_default=True, help="Free-page source(s) to run on.")
@cpus_opt
@click.option("--bytes", "nbytes", default=None, help="pagecache: file data to read "
              "(default twice the RAM), e.g. 4G.")
@click.option("--ops", default=20_000, show_default=True, help="anon: workload steps.")
@click.option("--threads", default=1, show_default=True, help="Python threads, one CPU each.")
@click.option("--seed", default=1, show_default=True)
@_errors
def dfly_run(workload: str, machine: str, source: str, cpus: str | None, nbytes: str | None,
             ops: int, seed: int, threads: int) -> None:
    """Run a page-layer workload on one or both free-page sources, side by side."""
    from .dfly_workloads import run
    from .dragonfly.vm_page import CpuTopology
    from .workloads import MAX_OPS
    check_int(ops, "--ops", 1, MAX_OPS)
    check_int(seed, "--seed", 0, (1 << 64) - 1)
    topo = CpuTopology.parse(cpus) if cpus else None
    size = _bytes(nbytes) if nbytes else None
    sources = ["dragonfly", "buddy"] if source == "both" else [source]
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed:,.0f} pages"),
                  TextColumn("{task.fields[rate]:,.0f} pages/s"),
                  TextColumn("{task.fields[passes]} pagedaemon passes"),
                  TimeElapsedColumn(), transient=True) as prog:
        for src in sources:
            # pagecache: the pages to read when --bytes says (else twice the RAM, known
            # after the boot); anon: open-ended (pages allocated as it goes)
            total = size >> 12 if workload == "pagecache" and size else None
            task = prog.add_task(f"{workload} on {src}", total=total, rate=0, passes=0)
            t0 = time.perf_counter()

            def show(done: int, passes: int, task=task, t0=t0) -> None:
                dt = time.perf_counter() - t0
                prog.update(task, completed=done, rate=done / dt if dt else 0,
                            passes=passes)

            res, vm = run(workload, machine, src, size, ops, seed, threads, topo,
                          progress=show)
            prog.update(task, visible=False)
            vm.check()
            results.append(res.as_dict())
            if res.interrupted:
                break                         # Ctrl-C: report what ran, skip the rest
    t = Table(title=f"{untrusted(workload)} on {untrusted(machine)}")
    t.add_column("")
    for r in results:
        t.add_column(str(r["source"]), justify="right")
    for key in results[0]:
        if key in ("workload", "machine", "source"):
            continue
        t.add_row(key, *[f"{r[key]:.3f}" if isinstance(r[key], float) else str(r[key])
                         for r in results])
    Console().print(t)


def _inside(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or lies inside it (after resolving links)."""
    p, d = Path(path).resolve(), Path(directory).resolve()
    return p == d or d in p.parents


def _not_empty(value: str | None, option: str) -> None:
    """An option given as an empty string is a mistake, not "use the default"."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty", param_hint=option)


MAX_READ_BYTES = 256 << 30     # dfly run pagecache --bytes: file data read (docs/workloads.md)


def _bytes(text: str) -> int:
    """``4G``, ``512M``, ``64K`` or a number of bytes."""
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        if t and t[-1] in mult:
            v = int(t[:-1], 0) * mult[t[-1]]
        else:
            v = int(t, 0)
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r}") from None
    if not 0 < v <= MAX_READ_BYTES:
        raise click.BadParameter(f"size must be positive and at most "
                                 f"{MAX_READ_BYTES >> 30} GiB: {text[:40]!r}")
    return v


@main.command("ftrace")
@click.argument("file", type=click.Path(allow_dash=True))
@machine_opt
@click.option("-o", "--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The trace to write (atomically).")
@click.option("--eager", is_flag=True, help="Boot line: eager instead of lazy.")
@click.option("--strict", is_flag=True, help="Stop at the first malformed event line.")
@force_opt
@_errors
def ftrace_cmd(file: str, machine: str, out_file: str, eager: bool, strict: bool,
               force: bool) -> None:
    """Import Linux mm_page_alloc / mm_page_free(_batched) ftrace text as a trace."""
    from .atomic import atomic_write
    from .ftrace import import_ftrace
    from .machine import get_machine
    refuse_temp(file)
    check_output_file(out_file, force, is_trace_file, "trace")
    m = get_machine(machine)
    with contextlib.ExitStack() as stack:
        src = sys.stdin if file == "-" else stack.enter_context(
            open(file, encoding="utf-8", errors="replace"))
        with atomic_write(out_file, "w") as out:
            summary = import_ftrace(src, out, m, lazy=not eager, strict=strict)
    t = Table(title=f"ftrace import: {untrusted(file)} -> {untrusted(out_file)}")
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("lines read", f"{summary.lines:,}")
    t.add_row("allocations imported", f"{summary.allocs:,}")
    t.add_row("frees imported", f"{summary.frees:,}")
    t.add_row("other lines (headers, stacks, other events)", f"{summary.other_lines:,}")
    t.add_row("allocations of pages outside the machine (asked of domain 0)",
              f"{summary.outside:,}")
    if summary.elided:
        t.add_row("allocations with the pfn elided (requests of domain 0; no free can "
                  "name them)", f"{summary.elided:,}")
    for why, n in sorted(summary.skipped.items()):
        t.add_row(f"skipped: {untrusted(why)}", f"{n:,}")
    Console().print(t)


@main.command("map-image")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("-o", "--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="PNG file to write.")
@click.option("--at", "at", multiple=True, type=int, metavar="N",
              help="A trace: picture memory after N operations past the boot line "
                   "(repeatable; default: after boot and at the end).")
@force_opt
@_errors
def map_image_cmd(source: str, out_file: str, at: tuple[int, ...], force: bool) -> None:
    """Picture physical memory: each page (or run of pages) coloured by state -- free by
    order, allocated, LAZYINIT, reserved -- for a trace (replayed) or a snapshot (.npz)."""
    from .atomic import is_png_file
    from .mapimage import memory_map, plot_memory_maps
    from .reports import map_moments, save_png
    check_output_file(out_file, force, is_png_file, "PNG image")      # before any work
    if source.endswith(".npz"):
        from .snapshot import load
        k = load(source)
        name = k.machine.name if k.machine is not None else Path(source).name
        maps = [(f"snapshot {Path(source).name}", memory_map(k))]
    else:
        lines = (sys.stdin.read() if source == "-" else
                 Path(source).read_text(encoding="utf-8", errors="replace")).splitlines()
        name = "standard input" if source == "-" else source
        maps = map_moments(lines, moments=2, at=list(at) or None)
    save_png(plot_memory_maps(maps, f"Physical memory: {name}"), Path(out_file))
    click.echo(f"wrote {out_file} ({len(maps)} moment(s), a cell = "
               f"{maps[0][1].pages_per_cell * 4:,} KiB)")


HELP_TOPICS = {
    "trace-format": "the trace format: replay, record, ftrace import, page-layer operations",
    "machines": "machine descriptions, presets, the phys_avail rule, memory maps, TOML",
    "pagelayer": "DragonFly's page layer: lifecycle, colours, locks, memory pressure",
    "constrained": "constrained allocation: extent(9), uvm_pglistalloc, the DMA reserve",
    "workloads": "workloads, run directories, ftrace import, reports, sweeps",
}


def help_text(topic: str) -> str:
    """The text of a documentation topic shipped with the package."""
    from importlib.resources import files
    if topic not in HELP_TOPICS:
        raise ArgumentError(f"no help topic {topic!r} (topics: {', '.join(HELP_TOPICS)})")
    return files("physmem").joinpath("docs", f"{topic}.md").read_text(encoding="utf-8")


@main.command("help")
@click.argument("topic", required=False)
@click.option("--raw", is_flag=True, help="Print the Markdown source (the default when "
              "standard output is not a terminal).")
@_errors
def help_cmd(topic: str | None, raw: bool) -> None:
    """Documentation shipped with physmem: TOPIC is one of trace-format, machines,
    pagelayer, constrained, workloads (none: list them)."""
    if topic is None:
        t = Table(title="physmem help TOPIC")
        t.add_column("topic", no_wrap=True)
        t.add_column("what it covers")
        for name, what in HELP_TOPICS.items():
            t.add_row(name, what)
        Console().print(t)
        return
    text = help_text(topic)
    if raw or not sys.stdout.isatty():
        click.echo(text, nl=False)
        return
    from rich.markdown import Markdown
    Console().print(Markdown(text))


@main.command("sweep")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--workers", type=int, default=None,
              help="Local processes, 1-64 (default: CPUs).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask cluster (tcp://host:8786) instead; needs physmem[dask].")
@click.option("-o", "--out", "out_dir", default="sweep", show_default=True)
@force_opt
@_errors
def sweep_cmd(config: str, workers: int | None, scheduler: str | None, out_dir: str,
              force: bool) -> None:
    """Run a grid of machines × policies × workloads × seeds in parallel.  Each row is
    written to OUT/results.csv as its run finishes; a failed run is a row with its error."""
    from rich.progress import Progress

    from .sweep import (
        MAX_SWEEP_BYTES,
        SweepWriter,
        check_scheduler,
        check_workers,
        load_sweep,
        run_sweep,
        write_results,
    )
    refuse_temp(config)
    _not_empty(scheduler, "--scheduler")
    _not_empty(out_dir, "-o")
    if scheduler is None:
        check_workers(workers)
    else:
        check_scheduler(scheduler)
    with open(config, "rb") as f:
        raw = f.read(MAX_SWEEP_BYTES + 1)
    specs = load_sweep(raw.decode("utf-8", errors="replace"), config)
    writer = SweepWriter(out_dir, force)
    try:
        with Progress(transient=True) as prog:
            task = prog.add_task(f"{len(specs)} runs", total=len(specs))
            rows = run_sweep(specs, workers, scheduler,
                             progress=lambda n: prog.update(task, completed=n),
                             on_row=writer.add)
    finally:
        writer.close()
    files = write_results(rows, writer.out)
    t = Table(title=f"sweep {untrusted(config)}: {len(rows)} runs")
    cols = {"machine": "machine", "policy": "policy", "workload": "workload", "seed": "seed",
            "ops_per_second": "ops/s", "unusable_o9": "unusable index, order 9",
            "largest_free_run": "largest free run (pages)", "error": "error"}
    for key, head in cols.items():
        t.add_column(head, justify="right" if key in ("seed", "ops_per_second",
                                                      "unusable_o9",
                                                      "largest_free_run") else "left")
    for r in rows:
        t.add_row(*[untrusted(_cell(r[c])) for c in cols])
    Console().print(_fold(t))
    failed = sum(1 for r in rows if r["error"])
    click.echo("wrote " + ", ".join(untrusted(f, markup=False) for f in files)
               + (f"; {failed} run(s) failed (see the error column)" if failed else ""))
    if failed:
        sys.exit(1)


def _fold(t: Table) -> Table:
    """Fold, never truncate, cells on a narrow terminal: two rows must not both read
    ``firecrack…``."""
    for c in t.columns:
        c.overflow = "fold"
    return t


def _cell(v: object) -> str:
    """A table cell: integers with thousands separators, fractions to 3 places."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:,.3f}"


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if (n >= 1 << shift and n % (1 << (shift - 10)) == 0) or n >= 10 << shift:
            v = n / (1 << shift)
            return f"{v:,.0f} {unit}" if v == int(v) else f"{v:,.1f} {unit}"
    return f"{n:,} B"


if __name__ == "__main__":
    main()
