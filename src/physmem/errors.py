"""The physmem exception hierarchy.

Three failure tiers, as in the kernel (see docs/implementation.md):

* running out is a normal result (``None``, ``-1``, a short count), never an exception;
* a broken argument contract -- what the kernel's argument KASSERTs or its callers would
  reject -- raises a subclass of :class:`PhysmemError` that also subclasses the nearest
  built-in (``ValueError``, ``KeyError``, ...), *before* any state changes;
* a broken state invariant -- what INVARIANTS would panic on -- raises
  :class:`InvariantError`, which is an ``AssertionError``: it means a bug in physmem.
"""

from __future__ import annotations


class PhysmemError(Exception):
    """Base class of every error physmem raises on purpose."""


class ArgumentError(PhysmemError, ValueError):
    """An argument the kernel would reject (range, alignment, power of two, ...)."""


class AddressError(ArgumentError):
    """A physical address that is unaligned, out of range or in no segment."""


class OrderError(ArgumentError):
    """A buddy order outside 0 .. VM_NFREEORDER - 1."""


class PoolError(ArgumentError):
    """An unknown free pool, or one the caller may not name (LAZYINIT)."""


class FreeListError(ArgumentError):
    """An unknown free list, or one this machine does not have."""


class DomainError(ArgumentError):
    """A NUMA domain outside 0 .. vm_ndomains - 1."""


class DoubleFreeError(ArgumentError):
    """Freeing a page that is not allocated: already free, or never handed out."""


class PoolMixError(ArgumentError):
    """Freeing one run whose pages came from different pools (the kernel would corrupt its
    queues)."""


class SegmentError(ArgumentError):
    """A bad physical segment or phys_avail range (empty, overlapping, unordered)."""


class StateError(PhysmemError, RuntimeError):
    """An operation that is not valid in the model's current state (e.g. before boot)."""


class ArchError(ArgumentError):
    """An unknown machine architecture, or a feature the architecture lacks."""


class TunableError(ArgumentError):
    """A loader tunable with a bad name or value."""


class MapFormatError(PhysmemError, ValueError):
    """A memory-map file (iomem, e820, SMAP, TOML) that cannot be read.

    ``line`` is the 1-based line number, when one applies."""

    def __init__(self, message: str, line: int | None = None, source: str | None = None):
        where = [w for w in (source, f"line {line}" if line is not None else None) if w]
        super().__init__(": ".join([*where, message]))
        self.line = line
        self.source = source


class TraceFormatError(PhysmemError, ValueError):
    """A malformed trace line (unknown operation, wrong arity, bad number)."""


class UnknownMachineError(PhysmemError, KeyError):
    """A machine preset name that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvariantError(AssertionError):
    """The model's state broke an invariant: a physmem bug, the kernel's panic()."""


class UninitializedPageError(InvariantError):
    """A read of a page structure that was never initialised (lazy boot): in the kernel it
    would read garbage."""
