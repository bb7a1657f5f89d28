"""Import Linux page-allocator ftrace events into a replayable physmem trace.

Reads ``mm_page_alloc``, ``mm_page_free`` and ``mm_page_free_batched`` events as people
capture and paste them (``physmem help workloads``): the ``trace`` / ``trace_pipe`` files,
``trace-cmd report``, ``perf script`` (``kmem:`` prefixes); ``pfn=`` in hex (5.14+) or decimal
(older kernels); with or without the irq-flags column; stack traces and other events
interleaved; lines wrapped by a mail client (an event whose fields run onto the next line
is joined with it); a last line cut off; the pfn elided (``pfn=<...>``): the allocation is
still imported as a request of its order, without a handle, since no later free can name
its page (counted in the summary).  Other events, headers and stack lines are passed
over; a line that names one of the three events but cannot be read is *malformed*:
skipped and counted, or fatal with ``strict``.

Each allocation becomes a request on the chosen machine, bound to a named handle
(docs/trace-format.md): ``alloc_pages DOMAIN POOL ORDER -> hN``.  The domain is that of the
event's page on the machine (0 if the machine has no such page: counted as "outside the
machine", the request is made all the same), the pool DIRECT for
unmovable and reclaimable migratetypes (0, 2) and DEFAULT for the others.  A free refers to
the handle of the allocation that covers its page (``free_pages $hN+OFFSET ORDER``), so it
gives back whatever page the model handed out.  Frees of pages whose allocation the trace
does not show (allocated before tracing began) are skipped, as are failed allocations
(``pfn=0``) and orders beyond the machine's.

The input is read line by line and the output written as it goes (atomically: complete or
absent): memory grows with the number of live allocations, not with the trace.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from .errors import PhysmemError
from .machine import Machine

_EVENT = re.compile(r"\bmm_page_(alloc|free|free_batched):\s")
# The common shape of all three events in one search (the general path handles the rest).
# Numbers are ASCII digits of bounded length ([0-9], never \d, which matches any script's
# digits; a 64-bit pfn has at most 16 hex or 20 decimal digits): a longer or non-ASCII
# number does not match, so the event is malformed, never a huge int() or a backtrack.
_FAST = re.compile(r"\bmm_page_(alloc|free|free_batched): page=\S{1,40} "
                   r"pfn=(0x[0-9a-fA-F]{1,16}|[0-9]{1,20}) "
                   r"order=([0-9]{1,3})(?: migratetype=(-?[0-9]{1,3}))?")
_PFN = re.compile(r"\bpfn=(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})(?![0-9A-Za-z_])")
_ORDER = re.compile(r"\border=([0-9]{1,3})(?![0-9A-Za-z_])")
_MT = re.compile(r"\bmigratetype=(-?[0-9]{1,3})(?![0-9A-Za-z_])")
# A pfn elided when pasted (``pfn=<...>``, ``pfn=...``): the request is still known.
_ELIDED = re.compile(r"\bpfn=(?:<[^<>\s]{0,12}>|\.\.\.|\u2026)")
# The widest order Linux uses (MAX_PAGE_ORDER is 10 on x86-64; some configs go higher).
LINUX_MAX_ORDER = 16


class FtraceFormatError(PhysmemError, ValueError):
    """A malformed event line in strict mode (with its line number)."""


@dataclass
class ImportSummary:
    """What an import read, wrote and skipped, and why."""

    lines: int = 0
    allocs: int = 0
    frees: int = 0
    skipped: Counter = field(default_factory=Counter)
    other_lines: int = 0
    outside: int = 0       # allocations of pages the machine does not have (domain 0 asked)
    elided: int = 0        # allocations whose pfn was elided: requests without a handle

    @property
    def events(self) -> int:
        return self.allocs + self.frees + sum(self.skipped.values())


@dataclass
class _Live:
    handle: str
    order: int
    remaining: int


class FtraceImporter:
    """Converts ftrace event lines to physmem trace lines for one machine."""

    def __init__(self, machine: Machine, lazy: bool = True, strict: bool = False) -> None:
        self.machine = machine
        self.lazy = lazy
        self.strict = strict
        self.summary = ImportSummary()
        self.live: dict[int, _Live] = {}          # head pfn -> live allocation
        self.maxorder = self._maxorder()
        self._segs = machine.segments()
        self._next = 0

    def _maxorder(self) -> int:
        from .vmparam import get_arch
        return get_arch(self.machine.arch).nfreeorder - 1

    def header(self) -> list[str]:
        """The trace's set-up lines: the machine's segments, phys_avail and boot."""
        out = [f"# imported from ftrace onto {self.machine.name} ({self.machine.arch})"]
        if self.machine.arch != "amd64":
            out.append(f"arch {self.machine.arch}")
        out += [f"seg {s:#x} {e:#x} {d}" for s, e, d in self._segs]
        out += [f"avail {s:#x} {e:#x}" for s, e in self.machine.phys_avail()]
        out.append(f"boot {'lazy' if self.lazy else 'eager'}")
        return out

    def _domain(self, pfn: int) -> int:
        pa = pfn << 12
        for s, e, d in self._segs:
            if s <= pa < e:
                return d
        self.summary.outside += 1
        return 0

    def _skip(self, why: str) -> None:
        self.summary.skipped[why] += 1

    def _malformed(self, lineno: int, line: str) -> None:
        if self.strict:
            raise FtraceFormatError(f"line {lineno}: malformed event: {line.strip()[:120]!r}")
        self._skip("malformed event line")

    def convert(self, lines: Iterable[str]) -> Iterator[str]:
        """Trace lines for the events in ``lines`` (without the header)."""
        pending: tuple[int, str] | None = None     # an event line whose fields run on
        fast = _FAST.search
        for lineno, line in enumerate(lines, 1):
            self.summary.lines += 1
            if pending is None and "mm_page_" in line:
                f = fast(line)
                if f is not None and (f.group(1) != "alloc" or f.group(4) is not None):
                    # NOTE: the common case, one regex search instead of four (speed).
                    pfn_s = f.group(2)
                    pfn = int(pfn_s, 16) if pfn_s[1:2] in ("x", "X") else int(pfn_s)
                    order = int(f.group(3))
                    if order > LINUX_MAX_ORDER:
                        self._malformed(lineno, line)
                        continue
                    out = self._alloc(pfn, order, int(f.group(4))) if f.group(1) == "alloc" \
                        else self._free(pfn, order)
                    if out is not None:
                        yield out
                    continue
            m = _EVENT.search(line)
            if pending is not None:
                plineno, pline = pending
                pending = None
                if m is None:        # the rest of a wrapped event
                    out = self._event(plineno, pline.rstrip("\r\n") + " " + line.strip())
                    if out is not None:
                        yield out
                    continue
                out = self._event(plineno, pline)          # cut short: malformed
                if out is not None:
                    yield out
            if m is None:
                self.summary.other_lines += 1
                continue
            body = line[m.end():]
            if _ORDER.search(body) is None or (_PFN.search(body) is None and
                                               _ELIDED.search(body) is None) or (
                    m.group(1) == "alloc" and _MT.search(body) is None and
                    "gfp_flags=" not in body):
                pending = (lineno, line)
                continue
            out = self._event(lineno, line)
            if out is not None:
                yield out
        if pending is not None:
            out = self._event(*pending)
            if out is not None:
                yield out

    def _event(self, lineno: int, line: str) -> str | None:
        m = _EVENT.search(line)
        assert m is not None
        kind = m.group(1)
        body = line[m.end():]
        pm, om = _PFN.search(body), _ORDER.search(body)
        if pm is None and om is not None and _ELIDED.search(body) is not None:
            return self._elided(kind, int(om.group(1)), body)
        if pm is None or om is None:
            self._malformed(lineno, line)
            return None
        pfn = int(pm.group(1), 0) if pm.group(1).startswith("0x") else int(pm.group(1))
        order = int(om.group(1))
        if order > LINUX_MAX_ORDER:
            self._malformed(lineno, line)
            return None
        if kind == "alloc":
            mt = _MT.search(body)
            return self._alloc(pfn, order, int(mt.group(1)) if mt else 1)
        return self._free(pfn, order)

    def _elided(self, kind: str, order: int, body: str) -> str | None:
        """An event whose pfn was elided: an allocation is still a request of its order
        (in domain 0, with no handle: no later free can name it); a free is skipped."""
        if kind != "alloc":
            self._skip("free with its pfn elided")
            return None
        if order > self.maxorder:
            self._skip(f"order above the machine's {self.maxorder}")
            return None
        mt = _MT.search(body)
        self.summary.allocs += 1
        self.summary.elided += 1
        pool = "direct" if mt is not None and int(mt.group(1)) in (0, 2) else "default"
        return f"alloc_pages 0 {pool} {order}"

    def _alloc(self, pfn: int, order: int, migratetype: int) -> str | None:
        if pfn == 0:
            self._skip("failed allocation (pfn=0)")
            return None
        if order > self.maxorder:
            self._skip(f"order above the machine's {self.maxorder}")
            return None
        if pfn in self.live:
            self._skip("page allocated again without a free (lost events)")
            del self.live[pfn]
        handle = f"h{self._next}"
        self._next += 1
        self.live[pfn] = _Live(handle, order, 1 << order)
        self.summary.allocs += 1
        pool = "direct" if migratetype in (0, 2) else "default"
        return f"alloc_pages {self._domain(pfn)} {pool} {order} -> {handle}"

    def _free(self, pfn: int, order: int) -> str | None:
        if pfn == 0:
            self._skip("free of pfn 0")
            return None
        head = None
        live_map = self.live
        if pfn in live_map:
            head = pfn
        else:
            for o in range(1, LINUX_MAX_ORDER + 1):
                h = pfn & ~((1 << o) - 1)
                live = live_map.get(h)
                if live is not None and live.order >= o and h + (1 << live.order) > pfn:
                    head = h
                    break
        if head is None:
            self._skip("free of a page not allocated in the trace")
            return None
        live = self.live[head]
        off = pfn - head
        if off % (1 << order) or off + (1 << order) > 1 << live.order:
            self._skip("free that does not fit its allocation")
            return None
        live.remaining -= 1 << order
        if live.remaining <= 0:
            del self.live[head]
        self.summary.frees += 1
        ref = f"${live.handle}" + (f"+{off}" if off else "")
        return f"free_pages {ref} {order}"


MAX_LINE = 64 << 10     # characters: an event line is ~200; longer lines are skipped


def bounded_lines(src: TextIO, limit: int = MAX_LINE) -> Iterator[str]:
    """The lines of ``src`` read at most ``limit`` characters at a time: a longer line is
    skipped (read through to its end in bounded pieces) and NUL bytes refuse the input,
    so /dev/zero or a disk image fails at once with one line instead of exhausting
    memory."""
    n = 0
    while True:
        line = src.readline(limit + 1)
        if not line:
            return
        n += 1
        if "\0" in line:
            raise FtraceFormatError(f"line {n}: binary data (NUL bytes), not ftrace text")
        if len(line) > limit and not line.endswith("\n"):
            while line and not line.endswith("\n"):     # drop the rest of the line
                line = src.readline(limit + 1)
                if "\0" in line:
                    raise FtraceFormatError(f"line {n}: binary data (NUL bytes), not "
                                            "ftrace text")
            yield ""                                    # counted as an other line
            continue
        yield line


def import_ftrace(src: TextIO, out: TextIO, machine: Machine, lazy: bool = True,
                  strict: bool = False) -> ImportSummary:
    """Convert ftrace text from ``src`` into a trace written to ``out`` (lines longer than
    :data:`MAX_LINE` are passed over; binary input is refused)."""
    imp = FtraceImporter(machine, lazy, strict)
    out.write("\n".join(imp.header()) + "\n")
    buf: list[str] = []
    for line in imp.convert(bounded_lines(src)):
        buf.append(line)
        if len(buf) >= 4096:
            out.write("\n".join(buf) + "\n")
            buf.clear()
    if buf:
        out.write("\n".join(buf) + "\n")
    return imp.summary
