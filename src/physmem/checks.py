"""Shared checks for what comes from outside: integer arguments and untrusted text.

* :func:`check_int` -- the one integer-argument check of the public API: an ``int`` that is
  not a ``bool`` (``True`` is not order 1, ``0.0`` is not domain 0), within bounds;
* :func:`untrusted` -- text that came from a file or the user (names, paths, lines), made
  safe to print: control characters (ESC sequences, carriage returns, bidi overrides) shown
  escaped, and -- for rich -- markup escaped, so ``[/]`` or ``[link=...]`` is printed as is.
"""

from __future__ import annotations

import re

from .errors import ArgumentError, PhysmemError

# C0 and C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MAX_SHOWN = 500            # characters of one untrusted value shown in a message


def _escape_control(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def untrusted(text: object, markup: bool = True, limit: int = _MAX_SHOWN) -> str:
    """``text`` safe to print on a terminal (and, with ``markup``, inside rich markup):
    control characters escaped, rich markup escaped, at most ``limit`` characters."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + f"... ({len(s) - limit:,} more characters)"
    s = _CONTROL.sub(_escape_control, s)
    if markup:
        from rich.markup import escape
        s = escape(s)
    return s


def check_int(value: object, what: str, lo: int | None = None, hi: int | None = None,
              error: type[PhysmemError] = ArgumentError) -> int:
    """``value`` if it is an integer (not a bool, not a float) of at most 64 bits in
    ``lo .. hi`` (inclusive bounds, either optional); otherwise raise ``error`` naming
    ``what`` (without printing a number too long for ``str()``)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{what} must be an integer, not {type(value).__name__} "
                    f"{untrusted(repr(value), markup=False, limit=60)}")
    if value.bit_length() > 64:          # beyond every kernel integer (and str()'s limit)
        raise error(f"{what} is a {value.bit_length()}-bit number; at most 64 bits")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo if lo is not None else '-inf'} .. {hi if hi is not None else 'inf'}"
        raise error(f"{what} {value} is out of range ({rng})")
    return value
