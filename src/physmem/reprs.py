"""Readable ``repr()`` text and Jupyter ``_repr_html_`` tables for the model's objects.

One summary per object -- a list of (label, value) rows -- rendered both ways, so the
terminal and the notebook say the same thing.  Addresses are hex, counts have thousands
separators, sizes are binary units.  This module imports nothing from physmem (every layer
may use it).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

Rows = Sequence[tuple[str, str]]


def fmt_size(nbytes: int) -> str:
    """``nbytes`` in the largest binary unit that keeps a whole part (``1.5 GiB``)."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            v = nbytes / (1 << shift)
            return f"{v:,.0f} {unit}" if v == int(v) else f"{v:,.1f} {unit}"
    return f"{nbytes:,} B"


def fmt_pages(n: int) -> str:
    """A page count and its size: ``262,144 pages (1 GiB)``."""
    return f"{n:,} {'page' if n == 1 else 'pages'} ({fmt_size(n * 4096)})"


def fmt_ranges(rs: Sequence[tuple[int, int]], limit: int = 4) -> str:
    """``[start, end)`` ranges in hex, the first ``limit`` of them."""
    text = ", ".join(f"[{s:#x}, {e:#x})" for s, e in rs[:limit])
    return text + (f", … ({len(rs) - limit} more)" if len(rs) > limit else "")


def as_text(title: str, rows: Rows) -> str:
    """A multi-line repr: the title, then one indented ``label: value`` per row."""
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([f"<{title}>", *(f"  {k:<{width}}  {v}" for k, v in rows)])


def as_html(title: str, rows: Rows) -> str:
    """The same rows as a small HTML table (Jupyter's ``_repr_html_``)."""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                   f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>" \
           f"{body}</table>"
