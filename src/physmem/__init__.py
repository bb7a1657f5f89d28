"""physmem: a faithful, fast model of BSD kernels' physical page management.

Boot a machine's memory map, allocate and free pages exactly as FreeBSD's vm_phys does,
print the kernel's sysctl text, replay traces::

    import physmem
    k = physmem.boot("firecracker-1g", lazy=False)
    pa = k.alloc_pages(0, "default", 0)
    k.free_pages(pa, 0)
    print(k.sysctl("vm.phys_free"))
    k.check()                       # INVARIANTS

Layers, bottom up: :mod:`physmem.vmparam` and :mod:`physmem.machine` (machine
description) -> :mod:`physmem.pagearray` (the page array) -> :mod:`physmem.freebsd.vm_phys`
(free pages) -> :mod:`physmem.freebsd.vm_page` (boot loops), NetBSD's and DragonFly's
modules -> :mod:`physmem.kernel` (the composite: boot, the public API, attached policies)
-> :mod:`physmem.trace`, :mod:`physmem.cli` (traces, reports, command line).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .atomic import OutputError
from .errors import (
    AddressError,
    ArchError,
    ArgumentError,
    DomainError,
    DoubleFreeError,
    FreeListError,
    InvariantError,
    MapFormatError,
    OrderError,
    PhysmemError,
    PoolError,
    PoolMixError,
    SegmentError,
    StateError,
    TraceFormatError,
    TunableError,
    UninitializedPageError,
    UnknownMachineError,
)
from .kernel import Kernel, Tunables, jit_mode
from .machine import PRESETS, Machine, RamRange, get_machine

if TYPE_CHECKING:
    from .snapshot import SnapshotError
    from .snapshot import load as load_snapshot
    from .snapshot import save as save_snapshot
    from .trace import Replayer, replay_file

__version__ = "0.1.0"

# Imported on first use (PEP 562), not by ``import physmem``: the command line's modules
# import physmem first, and `physmem replay` needs neither snapshots nor, until it runs,
# the trace engine (issue 13: start-up; bench/RESULTS.md).
_LAZY = {"Replayer": ("trace", "Replayer"), "replay_file": ("trace", "replay_file"),
         "SnapshotError": ("snapshot", "SnapshotError"),
         "load_snapshot": ("snapshot", "load"), "save_snapshot": ("snapshot", "save")}


def __getattr__(name: str) -> object:
    """The names of :data:`_LAZY`, imported when first asked for."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'physmem' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(f".{where[0]}", __name__), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only (not the submodules imported on the way)."""
    return sorted(__all__)


def kernel_for(machine: str | Machine) -> Kernel:
    """A Kernel with ``machine``'s segments and phys_avail, not yet booted."""
    return Kernel.from_machine(machine)


def boot(machine: str | Machine = "firecracker-1g", lazy: bool | None = None,
         tunables: Iterable[str] | str | None = None, start_aps: bool = False,
         jit: bool | int | None = None) -> Kernel:
    """Boot ``machine`` (a preset name, a file path or a Machine) and return its Kernel.

    ``lazy`` overrides the ``debug.vm.lazy_page_init`` tunable; ``tunables`` are
    loader.conf-style strings (``"vm.blacklist=0x1000000"``; one string is one tunable).
    ``jit``: see :class:`Kernel` (by default vm_phys's hot paths are compiled by numba
    after 20,000 operations; ``PHYSMEM_JIT_TIER`` changes that).  Arguments of the
    wrong type raise a :class:`PhysmemError` subclass."""
    mode = jit_mode(jit)
    k = kernel_for(machine)
    k.jit = mode
    k.boot(lazy=lazy, tunables=tunables, start_aps=start_aps)
    return k


__all__ = [
    "PRESETS",
    "AddressError",
    "ArchError",
    "ArgumentError",
    "DomainError",
    "DoubleFreeError",
    "FreeListError",
    "InvariantError",
    "Kernel",
    "Machine",
    "MapFormatError",
    "OrderError",
    "OutputError",
    "PhysmemError",
    "PoolError",
    "PoolMixError",
    "RamRange",
    "Replayer",
    "SegmentError",
    "SnapshotError",
    "StateError",
    "TraceFormatError",
    "TunableError",
    "Tunables",
    "UninitializedPageError",
    "UnknownMachineError",
    "boot",
    "get_machine",
    "kernel_for",
    "load_snapshot",
    "replay_file",
    "save_snapshot",
]
