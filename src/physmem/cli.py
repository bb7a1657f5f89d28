"""The ``physmem`` command line.

    physmem demo                               boot firecracker-1g, run a workload
    physmem machine list                       the presets
    physmem machine show NAME|FILE             segments, free lists, phys_avail, sizes
    physmem sysctl OID --machine NAME          vm.phys_free, vm.phys_segs, ... after boot
    physmem replay FILE|- [--check]            replay a trace (docs/trace-format.md)
    physmem boot --machine NAME                boot and report what it cost

Errors print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .errors import PhysmemError
from .freebsd.vm_page import Kernel
from .machine import DEFAULT_MACHINE, PRESETS, get_machine


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a PhysmemError (or an unreadable file) into a one-line message and exit 2."""
    @wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except PhysmemError as e:
            click.echo(f"physmem: error: {e}", err=True)
            sys.exit(2)
        except OSError as e:
            click.echo(f"physmem: error: {e.filename or ''}: {e.strerror}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("physmem: interrupted", err=True)
            sys.exit(130)
    return wrapper


machine_opt = click.option("--machine", "-m", default=DEFAULT_MACHINE, show_default=True,
                           help="Preset name or machine file (TOML, iomem, e820, SMAP).")
tunable_opt = click.option("--tunable", "-t", "tunables", multiple=True, metavar="NAME=VALUE",
                           help="Loader tunable, e.g. debug.vm.lazy_page_init=0 or "
                                "vm.blacklist=0x2000000,0x2001000 (repeatable).")


@click.group()
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
    Console().print(t)


@machine.command("show")
@click.argument("name")
@_errors
def machine_show(name: str) -> None:
    """Show a machine's vm_phys segments (after splitting and coalescing), free lists,
    phys_avail and sizes."""
    m = get_machine(name)
    k = Kernel.from_machine(m)
    k.boot(lazy=False) if not k.param.has_lazyinit else k.boot(lazy=True)
    con = Console()
    con.print(f"[bold]{m.name}[/bold] ({m.arch}): {m.description}")
    if m.source:
        con.print(f"source: {m.source}", highlight=False)
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
@_errors
def replay(trace: str, check: bool) -> None:
    """Replay a trace (FILE, or - for standard input); exit 1 if any line failed."""
    from .trace import replay_file
    out = sys.stdout
    errors = replay_file(trace, out, check=check)
    out.flush()
    sys.exit(1 if errors else 0)


@main.command("boot")
@machine_opt
@tunable_opt
@_errors
def boot_cmd(machine: str, tunables: tuple[str, ...]) -> None:
    """Boot a machine and report what vm_page_startup did."""
    k = Kernel.from_machine(machine)
    k.boot(tunables=list(tunables))
    con = Console()
    t = Table(title=f"boot {machine}")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("debug.vm.lazy_page_init", str(k.tunables.lazy_page_init))
    t.add_row("segments", str(len(k.phys.segs)))
    t.add_row("free pages", str(sum(k.free_counts)))
    t.add_row("page structures initialised at boot", str(k.stats.boot))
    t.add_row("model wall time", f"{k.stats.boot_seconds * 1e3:.2f} ms")
    con.print(t)


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if (n >= 1 << shift and n % (1 << (shift - 10)) == 0) or n >= 10 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


if __name__ == "__main__":
    main()
