"""The DragonFly page layer's constants and small types (vm_page.h's VM_ALLOC_* flags and
limits, the CPU topology, PageStateError, fake pages), shared by :mod:`physmem.dragonfly.vm_page`
and its subsystem modules."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..errors import ArgumentError, StateError
from ..machine import parse_cpus
from .locks import ME
from .vm_page_array import (
    PBUSY_LOCKED,
    PG_FICTITIOUS,
    PG_UNQUEUED,
)

VM_ALLOC_NORMAL = 0x1
VM_ALLOC_SYSTEM = 0x2
VM_ALLOC_INTERRUPT = 0x4
VM_ALLOC_ZERO = 0x8
VM_ALLOC_QUICK = 0x10
VM_ALLOC_FORCE_ZERO = 0x20
VM_ALLOC_NULL_OK = 0x40
VM_ALLOC_RETRY = 0x80
VM_ALLOC_USE_GD = 0x100
VM_ALLOC_CPU_SPEC = 0x200
ALLOC_CLASSES = VM_ALLOC_NORMAL | VM_ALLOC_QUICK | VM_ALLOC_SYSTEM | VM_ALLOC_INTERRUPT
REQ_NAMES = {"NORMAL": VM_ALLOC_NORMAL, "SYSTEM": VM_ALLOC_SYSTEM,
             "INTERRUPT": VM_ALLOC_INTERRUPT, "ZERO": VM_ALLOC_ZERO, "QUICK": VM_ALLOC_QUICK,
             "FORCE_ZERO": VM_ALLOC_FORCE_ZERO, "NULL_OK": VM_ALLOC_NULL_OK,
             "RETRY": VM_ALLOC_RETRY, "USE_GD": VM_ALLOC_USE_GD}
LOW_PHYS_RESERVED = 65536                  # pages (256 MiB)
SIZEOF_VM_PAGE = 128                       # bytes of struct vm_page (amd64)
DEFAULT_DMA_RESERVED = 128 << 20
_RACE = -1                                 # _alloc_*: lost (obj, pindex) to another thread
PINDEX_LIMIT = 1 << 63                     # vm_pindex_t fits the int64 field
EMERG_LAUNDER = 100                        # vm.emerg_launder (the emergency pager)
RETRY_LIMIT = 1000        # waits before VM_ALLOC_RETRY gives up (the kernel never does)


def VM_ALLOC_CPU(n: int) -> int:
    return (n << 16) | VM_ALLOC_CPU_SPEC


def parse_req(text: str) -> int:
    """``NORMAL|ZERO``, ``CPU(3)|QUICK`` or a number."""
    req = 0
    for part in text.split("|"):
        part = part.strip().upper().removeprefix("VM_ALLOC_")
        if part in REQ_NAMES:
            req |= REQ_NAMES[part]
        elif part.startswith("CPU(") and part.endswith(")") and part[4:-1].isdigit():
            req |= VM_ALLOC_CPU(int(part[4:-1]))
        else:
            try:
                req |= int(part, 0)
            except ValueError:
                raise ArgumentError(f"unknown allocation flag {part!r}") from None
    return req


class _CpuLocal(threading.local):
    """The CPU a thread runs as (0 until :meth:`DragonflyVm.on_cpu` says otherwise) and
    its ``thread_color``: vm_quickcolor()'s ``(intptr_t)curthread >> 10`` term.  A kernel
    thread address is not knowable, so each thread gets a documented constant: 0 unless
    :meth:`DragonflyVm.set_thread_color` says otherwise (the oracle's single thread is 0)."""

    cpu = 0
    thread_color = 0

    def __init__(self) -> None:
        self.me = ME.t          # the thread's number for the lock words (locks.ME)


class PageStateError(StateError):
    """What DragonFly would panic on: freeing a busy, wired or held page, unbusying a page
    that is not busy, wiring a free page, dirtying a free or cached page, ..."""


@dataclass(frozen=True)
class CpuTopology:
    """Sockets × cores × threads; socket s owns NUMA domain s (mod the domains)."""

    sockets: int = 1
    cores: int = 2
    threads: int = 1

    @property
    def ncpus(self) -> int:
        return self.sockets * self.cores * self.threads

    @classmethod
    def parse(cls, text: str) -> CpuTopology:
        """``SOCKETSxCORES[xTHREADS]``, e.g. ``2x4`` or ``1x4x2`` (machine files' ``cpus``)."""
        return cls(*parse_cpus(text))

    def ids(self, cpu: int) -> tuple[int, int, int]:
        """(physical id, core id, hyperthread id) of a CPU."""
        per_socket = self.cores * self.threads
        return cpu // per_socket, (cpu % per_socket) // self.threads, cpu % self.threads


@dataclass
class FakePage:
    """A fictitious page (vm_page_initfake): device memory outside the page array."""

    paddr: int
    memattr: int = 0
    flags: int = PG_FICTITIOUS | PG_UNQUEUED
    busy_count: int = PBUSY_LOCKED
    wire_count: int = 1
