"""Build a :class:`~physmem.machine.Machine` from a memory map pasted from a real machine.

Three formats (docs/formats.md has their exact shapes), detected from the content:

* Linux ``/proc/iomem``: ``start-end : name`` (inclusive hex ends, two spaces of indent per
  nesting level).  Usable RAM is every ``System RAM`` entry not nested inside another one.
* Linux boot log, ``BIOS-e820: [mem 0x…-0x…] usable`` (inclusive end), or the pre-3.7 form
  ``BIOS-e820: 0000…- 0000… (usable)`` (exclusive end).  If the log also holds a
  ``user:`` map (``mem=``/``memmap=``), that map is the one Linux used and is taken instead.
* FreeBSD verbose boot ``SMAP type=01 base=… len=…`` or ``sysctl machdep.smap``'s
  ``SMAP type=01, xattr=01, base=…, len=…``.  Type 01 is RAM; an entry overlapping an
  earlier one is ignored, as FreeBSD's add_physmap_entry() does.

Lines may carry dmesg timestamps, syslog prefixes or any surrounding text: entries are
found by pattern anywhere in a line.  Adjacent or overlapping usable ranges are merged
before the edges are rounded inward to whole pages (:meth:`Machine.segments`).  A line that
names the format but cannot be read is an error with its line number; a map with no RAM is
an error.  Imported machines have one NUMA domain; write a TOML file to assign domains.
"""

from __future__ import annotations

import re

from .errors import MapFormatError
from .machine import Machine, RamRange

_IOMEM = re.compile(r"(?P<indent> *)(?P<s>[0-9a-fA-F]+)-(?P<e>[0-9a-fA-F]+) : (?P<name>.*?)\s*$")
_E820 = re.compile(
    r"(?P<who>BIOS-e820|user|modified|reserve setup_data|e820): \[mem "
    r"0x(?P<s>[0-9a-fA-F]+)-0x(?P<e>[0-9a-fA-F]+)\] (?P<type>[^\r\n]*?)\s*$")
_E820_OLD = re.compile(
    r"(?P<who>BIOS-e820|user): (?P<s>[0-9a-fA-F]{8,16}) - (?P<e>[0-9a-fA-F]{8,16}) "
    r"\((?P<type>[^)]*)\)")
_SMAP = re.compile(
    r"SMAP type=(?P<type>[0-9a-fA-F]{1,2}),?\s+(?:xattr=[0-9a-fA-F]{1,2},?\s+)?"
    r"base=(?P<s>[0-9a-fA-F]{1,16}),?\s+len=(?P<l>[0-9a-fA-F]{1,16})")

U64 = 1 << 64


def _hex(s: str, lineno: int, source: str) -> int:
    v = int(s, 16)
    if v >= U64:
        raise MapFormatError(f"address {s} does not fit in 64 bits", lineno, source)
    return v


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def parse_iomem(text: str, source: str = "<iomem>") -> list[tuple[int, int]]:
    """Usable RAM ``[start, end)`` ranges of a /proc/iomem dump."""
    found: list[tuple[int, int, int]] = []   # (start, end, depth)
    zero = True
    for n, line in enumerate(text.splitlines(), 1):
        if " : " not in line:
            continue
        m = _IOMEM.search(line)
        if m is None:
            continue
        s = _hex(m["s"], n, source)
        e = _hex(m["e"], n, source)
        if e < s:
            raise MapFormatError(f"range {m['s']}-{m['e']} ends before it starts", n, source)
        if s or e:
            zero = False
        if m["name"] == "System RAM":
            found.append((s, e + 1, len(m["indent"]) // 2))
    if found and zero:
        raise MapFormatError("every address is 0: /proc/iomem was read without "
                             "CAP_SYS_ADMIN (read it as root)", None, source)
    # Keep System RAM not nested inside another System RAM entry.
    ram = [(s, e) for s, e, _ in found
           if not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2, _ in found)]
    return _merge(ram)


def parse_e820(text: str, source: str = "<e820>") -> list[tuple[int, int]]:
    """Usable RAM ranges of a Linux boot log's e820 map (the ``user:`` map if present)."""
    maps: dict[str, list[tuple[int, int]]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if "e820" not in line and "user: " not in line:
            continue
        if "e820: update" in line or "e820: remove" in line or "RAM buffer" in line:
            continue
        m = _E820.search(line)
        if m is not None:
            if m["who"] not in ("BIOS-e820", "user"):
                continue
            s, e = _hex(m["s"], n, source), _hex(m["e"], n, source) + 1
        else:
            m = _E820_OLD.search(line)
            if m is None:
                if "BIOS-e820:" in line and "[mem" in line:
                    raise MapFormatError(f"unreadable e820 entry: {line.strip()!r}", n, source)
                continue
            s, e = _hex(m["s"], n, source), _hex(m["e"], n, source)
        if e <= s:
            raise MapFormatError(f"e820 entry [{s:#x}, {e:#x}) is empty or inverted", n,
                                 source)
        if m["type"].strip() == "usable":
            maps.setdefault(m["who"], []).append((s, e))
        else:
            maps.setdefault(m["who"], [])
    chosen = maps.get("user") or maps.get("BIOS-e820") or []
    return _merge(chosen)


def parse_smap(text: str, source: str = "<smap>") -> list[tuple[int, int]]:
    """RAM ranges of FreeBSD SMAP lines (type 01), later overlapping entries ignored."""
    kept: list[tuple[int, int]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if "SMAP" not in line:
            continue
        m = _SMAP.search(line)
        if m is None:
            if "base=" in line:
                raise MapFormatError(f"unreadable SMAP entry: {line.strip()!r}", n, source)
            continue
        base, length = _hex(m["s"], n, source), _hex(m["l"], n, source)
        if length == 0 or int(m["type"], 16) != 1:
            continue
        if base + length > U64:
            raise MapFormatError(f"SMAP entry {base:#x}+{length:#x} wraps past 2**64", n,
                                 source)
        if any(base < e and s < base + length for s, e in kept):
            continue  # "Overlapping memory regions, ignoring second region"
        kept.append((base, base + length))
    return _merge(kept)


def detect_format(text: str) -> str:
    """``iomem``, ``e820`` or ``smap``: the format with the most matching lines."""
    counts = {"iomem": 0, "e820": 0, "smap": 0}
    for line in text.splitlines():
        if "SMAP type=" in line:
            counts["smap"] += 1
        elif "BIOS-e820" in line or ("user: " in line and "[mem" in line):
            counts["e820"] += 1
        elif " : " in line and _IOMEM.search(line):
            counts["iomem"] += 1
    fmt = max(counts, key=lambda k: counts[k])
    if counts[fmt] == 0:
        raise MapFormatError("no memory map found: expected /proc/iomem lines, "
                             "'BIOS-e820:' lines or FreeBSD 'SMAP' lines")
    return fmt


PARSERS = {"iomem": parse_iomem, "e820": parse_e820, "smap": parse_smap}


def import_map(text: str, name: str = "imported", source: str = "<input>",
               arch: str = "amd64", fmt: str | None = None) -> Machine:
    """A one-domain machine from a memory-map dump; ``fmt`` forces the format."""
    fmt = fmt or detect_format(text)
    if fmt not in PARSERS:
        raise MapFormatError(f"unknown map format {fmt!r} (iomem, e820, smap)")
    ram = PARSERS[fmt](text, source)
    if not ram:
        raise MapFormatError(f"the {fmt} map has no usable RAM", None, source)
    m = Machine(name=name, ram=[RamRange(s, e, 0) for s, e in ram], arch=arch,
                description=f"imported from {fmt} ({source})", source=source)
    m.segments()    # refuse a map without one whole page of RAM now, not at boot
    return m
