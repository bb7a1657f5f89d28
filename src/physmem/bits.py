"""Bit helpers shared by every layer (the kernel's ffs/fls/powerof2 family).

All take non-negative Python ints; like the kernel's 64-bit variants they return 0 for 0.
"""

from __future__ import annotations

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1


def ffs(x: int) -> int:
    """Index (1-based) of the lowest set bit of ``x``, 0 if ``x`` is 0 (ffsll)."""
    return (x & -x).bit_length()


def fls(x: int) -> int:
    """Index (1-based) of the highest set bit of ``x``, 0 if ``x`` is 0 (flsll)."""
    return x.bit_length()


def powerof2(x: int) -> bool:
    """The kernel's powerof2(): true for 0 and for every power of two."""
    return (x & (x - 1)) == 0


def roundup2(x: int, y: int) -> int:
    """Round ``x`` up to a multiple of the power of two ``y``."""
    return (x + (y - 1)) & ~(y - 1)


def rounddown2(x: int, y: int) -> int:
    """Round ``x`` down to a multiple of the power of two ``y``."""
    return x & ~(y - 1)


def atop(pa: int) -> int:
    """Physical address to page frame number."""
    return pa >> PAGE_SHIFT


def ptoa(pfn: int) -> int:
    """Page frame number to physical address."""
    return pfn << PAGE_SHIFT


def round_page(x: int) -> int:
    return (x + PAGE_MASK) & ~PAGE_MASK


def trunc_page(x: int) -> int:
    return x & ~PAGE_MASK


def c_hex(x: int) -> str:
    """C's ``%#jx``: ``0x``-prefixed lower-case hex, except that 0 prints as ``0``."""
    return f"{x:#x}" if x else "0"
