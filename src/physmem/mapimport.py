"""Build a :class:`~physmem.machine.Machine` from a memory map pasted from a real machine.

Formats (docs/machines.md shows each), detected from the content:

* Linux ``/proc/iomem``: ``start-end : name`` (inclusive hex ends, two spaces of indent per
  nesting level).  Usable RAM is every ``System RAM`` entry not nested inside another one.
* Linux boot log, ``BIOS-e820: [mem 0x…-0x…] usable`` (inclusive end; ``Xen:`` instead of
  ``BIOS-e820:`` in a Xen guest, which prints the map the hypervisor gave); the pre-3.7 form
  ``BIOS-e820: 0000…- 0000… (usable)`` (exclusive end); and the newer table with a size
  column, ``System RAM`` / ``device reserved`` labels and ``[gap …]`` lines.  If the log
  also holds a ``user:`` map (``mem=``/``memmap=``), that map is the one Linux used.
* FreeBSD verbose boot ``SMAP type=01 base=… len=…``, ``sysctl machdep.smap``'s
  ``SMAP type=01, xattr=01, base=…, len=…`` and the loader's ``… attr=01`` form.  Type 01
  is RAM; an entry overlapping an earlier one is ignored, as FreeBSD's
  add_physmap_entry() does.
* FreeBSD's ``Physical memory chunk(s):`` lines (``0x… - 0x…, N bytes (P pages)``): the
  phys_avail ranges the kernel handed to its allocator.  With SMAP lines in the same log
  they are the machine's phys_avail over the SMAP's RAM; alone, they are both.

Maps arrive pasted from web pages, mails and forums, so every line is cleaned first: HTML
tags, ``<br>`` and entities, mail quoting (``> ``), quoted-printable soft line breaks
(``=`` at the end of a line), MIME headers, code fences, indentation and syslog / dmesg
prefixes are passed over, and an entry wrapped onto the next line by a mail client is
joined with it.  The input is bounded: at most :data:`MAX_MAP_BYTES`, lines longer than
:data:`MAX_LINE` are skipped, and no pattern can backtrack (every repeat is bounded), so a
hostile file costs linear time.  A map with more RAM entries than any architecture's
phys_avail array holds (:data:`MAX_RAM_ENTRIES`) is refused as soon as the limit is
passed.

The architecture is detected when not given: device-tree node names, a ``Kernel code``
range below 4 GiB with no PC legacy ranges, or FreeBSD's arm64/riscv chunk format say
arm64 (riscv when the device tree names a PLIC or CLINT); e820 and SMAP maps are amd64.
Imported machines have one NUMA domain; write them as TOML (``physmem machine show FILE
--toml``) to assign domains or CPUs.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from .errors import MapFormatError
from .machine import Machine, RamRange
from .vmparam import ARCHES, get_arch

U64 = 1 << 64
MAX_MAP_BYTES = 8 << 20          # a real map is a few KiB; /dev/zero is not a map
MAX_LINE = 4096                  # longer lines are not map lines (and are not searched)
# phys_avail holds PHYS_AVAIL_ENTRIES / 2 = VM_PHYSSEG_MAX ranges; a map with more RAM
# entries than twice the largest architecture's (adjacent entries may still merge) is
# refused as soon as it passes the bound.
MAX_RAM_ENTRIES = 2 * max(p.physseg_max for p in ARCHES.values())
MAX_DECIMAL = 20                 # digits of a 64-bit decimal number

FORMATS = {
    "iomem": "Linux /proc/iomem",
    "e820": "Linux boot-log e820 lines",
    "smap": "FreeBSD SMAP lines (boot -v, sysctl machdep.smap)",
    "chunks": "FreeBSD 'Physical memory chunk(s)' lines",
}

_HEX = r"[0-9a-fA-F]{1,40}"
_IOMEM_RANGE = re.compile(rf"(?P<s>{_HEX})-(?P<e>{_HEX})")
_E820 = re.compile(
    r"(?P<who>BIOS-e820|Xen|user|modified|reserve setup_data|e820): \[(?P<kind>mem|gap) {1,4}"
    rf"0x(?P<s>{_HEX}) ?- ?0x(?P<e>{_HEX})\](?P<type>[^\r\n]{{0,200}})")
_E820_OLD = re.compile(
    rf"(?P<who>BIOS-e820|user): (?P<s>{_HEX}) - (?P<e>{_HEX}) \((?P<type>[^()]{{0,60}})\)")
_E820_SIZE = re.compile(r"\s{0,20}[0-9]{1,8}(?:\.[0-9]{1,3})? ?[KMGTP]i?B\s")
_SMAP = re.compile(
    r"SMAP type=(?P<type>[0-9a-fA-F]{1,8}),?\s{1,8}(?:xattr=[0-9a-fA-F]{1,8},?\s{1,8})?"
    rf"base=(?P<s>{_HEX}),?\s{{1,8}}len=(?P<l>{_HEX})\b")
_CHUNK = re.compile(
    rf"0x(?P<s>{_HEX}) - 0x(?P<e>{_HEX}), (?P<bytes>[0-9]{{1,4096}}) bytes "
    r"\((?P<pages>[0-9]{1,4096}) pages\)")
_QUOTE = re.compile(r"[ \t]{0,40}(?:>[ \t]{0,4}){1,20}")
_TAG = re.compile(r"<[^<>\n]{0,300}>")
_BR = re.compile(r"<\s{0,4}(?:br|/p|/div|/li|/tr|p|div|li|tr)\b[^<>\n]{0,200}>", re.I)
_QP_ESC = re.compile(r"=([0-9A-F]{2})")
_MIME = re.compile(r"(?:Content-[A-Za-z-]{1,40}|MIME-Version|X-[A-Za-z-]{1,40}):\s", re.I)
# Characters a web page or word processor puts where the map had plain spaces, and
# invisible ones (byte-order mark, zero-width spaces) that a copy carries along.
_SPACES = str.maketrans({c: " " for c in "\xa0\u2000\u2001\u2002\u2003\u2004\u2005"
                         "\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"}
                        | {c: None for c in "\ufeff\u200b\u200c\u200d\u2060"})
# An SMAP key with its '=' encoded as quoted-printable's =3D (a raw SMAP line cannot hold
# it: every SMAP number is zero-padded, so no real one starts with 3D).
_QP_SMAP = re.compile(r"(?:type|base|len|attr)=3D[0-9a-fA-F]")
_DT_NAME = re.compile(r"\b[a-z][a-z0-9_-]{0,40}@[0-9a-f]{1,16}\b")


@dataclass
class MapLines:
    """Cleaned candidate lines ``(line number, text)`` of a pasted map, and what was
    passed over on the way (for error messages)."""

    lines: list[tuple[int, str]]
    long_lines: int = 0
    notes: list[str] = field(default_factory=list)


def _check_text(text: str, source: str) -> None:
    """Refuse input that cannot be a memory map before looking at its lines."""
    if not isinstance(text, str):
        raise MapFormatError(f"expected the map's text, got {type(text).__name__}", None,
                             source)
    if len(text) > MAX_MAP_BYTES:
        raise MapFormatError(f"{len(text):,} characters: larger than {MAX_MAP_BYTES >> 20} "
                             "MiB, not a memory map", None, source)
    if "\0" in text:
        raise MapFormatError("binary data (NUL bytes), not a memory map", None, source)


def clean_lines(text: str, source: str = "<input>") -> MapLines:
    """The lines of ``text`` with paste debris removed, numbered as in the input.

    Runs in time linear in the input: no pattern repeats without a bound, and lines
    longer than :data:`MAX_LINE` are counted, not searched."""
    _check_text(text, source)
    text = text.translate(_SPACES)
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    htmlish = "<br" in text.lower() or "&gt;" in text or "&lt;" in text or \
        "&nbsp;" in text or "&amp;" in text or "<pre" in text.lower()
    qp = "quoted-printable" in text.lower() or _QP_SMAP.search(text) is not None or any(
        len(ln) > 1 and ln.endswith("=") and ln[-2] not in "= " for ln in raw[:20000])
    out = MapLines([])
    pending: tuple[int, str] | None = None      # a quoted-printable line cut by a soft break
    for n, line in enumerate(raw, 1):
        if len(line) > MAX_LINE:
            out.long_lines += 1
            pending = None
            continue
        if _MIME.match(line):                   # an attachment's MIME headers
            continue
        q = _QUOTE.match(line)
        if q is not None:
            line = line[q.end():]
        if qp:
            if pending is not None:
                n, line = pending[0], pending[1] + line
                pending = None
            if line.endswith("=") and not line.endswith("=="):
                pending = (n, line[:-1])
                continue
            line = _QP_ESC.sub(lambda m: chr(int(m[1], 16)), line)
        pieces = _BR.split(line) if htmlish else [line]
        for piece in pieces:
            if htmlish:
                piece = html.unescape(_TAG.sub("", piece)).replace("\xa0", " ")
                q = _QUOTE.match(piece)
                if q is not None:
                    piece = piece[q.end():]
            s = piece.strip()
            if not s or s.startswith(("```", "~~~")):
                continue
            out.lines.append((n, piece.rstrip()))
    if pending is not None:
        out.lines.append(pending)
    return out


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


def _count_ram(found: list, lineno: int, source: str) -> None:
    """Refuse a map as soon as its RAM entries overflow every phys_avail array."""
    if len(found) > MAX_RAM_ENTRIES:
        limits = ", ".join(f"{p.physseg_max} on {a}" for a, p in ARCHES.items())
        raise MapFormatError(f"more than {MAX_RAM_ENTRIES} RAM entries: no architecture's "
                             f"phys_avail holds them (VM_PHYSSEG_MAX is {limits})",
                             lineno, source)


def _lines(text: str | MapLines, source: str) -> MapLines:
    return text if isinstance(text, MapLines) else clean_lines(text, source)


def _iomem_entry(line: str) -> tuple[str, str, str, int] | None:
    """(start, end, name, indent) of a /proc/iomem line, or None.  Splits on the first
    ``" : "`` instead of searching, so a long run of hex digits costs linear time."""
    i = line.find(" : ")
    if i < 0:
        return None
    head = line[:i]
    tok = head.split()[-1] if head.split() else ""
    m = _IOMEM_RANGE.fullmatch(tok)
    if m is None:
        return None
    indent = len(head) - len(head.lstrip(" "))
    return m["s"], m["e"], line[i + 3:].strip(), indent


def parse_iomem(text: str | MapLines, source: str = "<iomem>") -> list[tuple[int, int]]:
    """Usable RAM ``[start, end)`` ranges of a /proc/iomem dump."""
    found: list[tuple[int, int]] = []
    zero = True
    for n, line in _lines(text, source).lines:
        ent = _iomem_entry(line)
        if ent is None:
            continue
        s = _hex(ent[0], n, source)
        e = _hex(ent[1], n, source)
        if e < s:
            raise MapFormatError(f"range {ent[0]}-{ent[1]} ends before it starts", n, source)
        if s or e:
            zero = False
        if ent[2] == "System RAM":
            found.append((s, e + 1))
            _count_ram(found, n, source)
    if found and zero:
        raise MapFormatError("every address is 0: /proc/iomem was read without "
                             "CAP_SYS_ADMIN (read it as root)", None, source)
    # Keep System RAM not nested inside another System RAM entry.
    ram = [(s, e) for s, e in found
           if not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2 in found)]
    return _merge(ram)


def _e820_is_ram(kind: str) -> bool:
    """Whether an e820 type column names usable RAM (old and new labels)."""
    m = _E820_SIZE.match(kind + " ")
    t = (kind[m.end():] if m else kind).strip().lower()
    return t in ("usable", "system ram") or t.endswith("usable ram")


def _search_joined(rx: re.Pattern[str], lines: list[tuple[int, str]], i: int,
                   marker: str) -> re.Match[str] | None:
    """``rx`` in line ``i``, or in line ``i`` joined with the next when the line holds
    ``marker`` but the entry was wrapped onto the next line by a mail client."""
    line = lines[i][1]
    m = rx.search(line)
    if m is None and marker in line and i + 1 < len(lines) and len(line) < MAX_LINE:
        m = rx.search(line + " " + lines[i + 1][1].strip())
        if m is not None and m.start() >= len(line):
            return None         # that is the next line's own entry, not this one's end
    return m


def parse_e820(text: str | MapLines, source: str = "<e820>") -> list[tuple[int, int]]:
    """Usable RAM ranges of a Linux boot log's e820 map (the ``user:`` map if present)."""
    maps: dict[str, list[tuple[int, int]]] = {}
    lines = _lines(text, source).lines
    for i, (n, line) in enumerate(lines):
        if "e820" not in line and "user: " not in line and "Xen: " not in line:
            continue
        if "e820: update" in line or "e820: remove" in line or "RAM buffer" in line:
            continue
        m = _search_joined(_E820, lines, i, "[mem")
        if m is not None:
            if m["who"] not in ("BIOS-e820", "Xen", "user") or m["kind"] == "gap":
                continue
            kind = m["type"].strip()
            if not kind and i + 1 < len(lines) and not _E820.search(lines[i + 1][1]):
                kind = lines[i + 1][1].strip()      # the type wrapped onto the next line
            s, e = _hex(m["s"], n, source), _hex(m["e"], n, source) + 1
        else:
            m = _search_joined(_E820_OLD, lines, i, "BIOS-e820:")
            if m is None:
                if "e820" in line and "[mem" in line and "BIOS-e820:" in line:
                    raise MapFormatError(f"unreadable e820 entry: {line.strip()[:120]!r}",
                                         n, source)
                continue
            kind = m["type"].strip()
            s, e = _hex(m["s"], n, source), _hex(m["e"], n, source)
        if e <= s:
            raise MapFormatError(f"e820 entry [{s:#x}, {e:#x}) is empty or inverted", n,
                                 source)
        ram = maps.setdefault(m["who"], [])
        if _e820_is_ram(kind):
            ram.append((s, e))
            _count_ram(ram, n, source)
    chosen = maps.get("user") or maps.get("BIOS-e820") or maps.get("Xen") or []
    return _merge(chosen)


def parse_smap(text: str | MapLines, source: str = "<smap>") -> list[tuple[int, int]]:
    """RAM ranges of FreeBSD SMAP lines (type 01), later overlapping entries ignored."""
    kept: list[tuple[int, int]] = []
    lines = _lines(text, source).lines
    for i, (n, line) in enumerate(lines):
        if "SMAP" not in line:
            continue
        m = _search_joined(_SMAP, lines, i, "SMAP type=")
        if m is None:
            if "base=" in line:
                raise MapFormatError(f"unreadable SMAP entry: {line.strip()[:120]!r}", n,
                                     source)
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
        _count_ram(kept, n, source)
    return _merge(kept)


def _decimal(s: str, what: str, lineno: int, source: str) -> int:
    if len(s) > MAX_DECIMAL:
        raise MapFormatError(f"{what} has {len(s):,} digits: not a 64-bit number", lineno,
                             source)
    return int(s)


def parse_chunks(text: str | MapLines, source: str = "<chunks>") -> list[tuple[int, int]]:
    """FreeBSD's ``Physical memory chunk(s):`` ranges ``[start, end)`` (inclusive ends in
    the text), checked against their byte and page counts."""
    out: list[tuple[int, int]] = []
    lines = _lines(text, source).lines
    for i, (n, line) in enumerate(lines):
        if " - 0x" not in line:
            continue
        m = _search_joined(_CHUNK, lines, i, " - 0x")
        if m is None:
            if "pages)" in line:
                why = "a number longer than 20 digits" if re.search(
                    r"[0-9]{21}", line) else "not '0x… - 0x…, N bytes (P pages)'"
                raise MapFormatError(f"unreadable memory chunk ({why}): "
                                     f"{line.strip()[:80]!r}", n, source)
            continue
        s, e = _hex(m["s"], n, source), _hex(m["e"], n, source) + 1
        nbytes = _decimal(m["bytes"], "the byte count", n, source)
        npages = _decimal(m["pages"], "the page count", n, source)
        if e <= s or nbytes != e - s or npages != nbytes // 4096:
            raise MapFormatError(f"memory chunk {line.strip()[:120]!r} does not add up "
                                 f"({e - s} bytes from its addresses)", n, source)
        out.append((s, e))
        _count_ram(out, n, source)
    return _merge(out)


PARSERS = {"iomem": parse_iomem, "e820": parse_e820, "smap": parse_smap,
           "chunks": parse_chunks}


def _kind(line: str) -> str | None:
    """Which format a cleaned line belongs to, by cheap substring tests."""
    if "SMAP type=" in line and ("base=" not in line or _SMAP.search(line)):
        return "smap"           # (a line cut before its base= is a wrapped entry)
    if ("BIOS-e820" in line or (("user: " in line or "Xen: " in line) and "[mem" in line)) and (
            line.rstrip().endswith("[mem") or _E820.search(line) or _E820_OLD.search(line)):
        return "e820"
    if " - 0x" in line and _CHUNK.search(line):     # (also behind a syslog prefix)
        return "chunks"
    if " : " in line and _iomem_entry(line) is not None:
        return "iomem"
    return None


def _looks_like_map_line(line: str) -> bool:
    low = line.lower()
    return ("e820" in low or "smap" in low or " : " in line or "base=" in low
            or "bytes (" in low) and any(c in "0123456789" for c in line)


def _why(line: str) -> str:
    """What the line lacks to be an entry of the format it resembles most."""
    if "e820" in line.lower():
        return "an e820 entry is 'BIOS-e820: [mem 0xSTART-0xEND] TYPE'"
    if "smap" in line.lower() or "base=" in line:
        return "an SMAP entry is 'SMAP type=NN base=HEX len=HEX'"
    if "bytes (" in line:
        return "a chunk is '0xSTART - 0xEND, N bytes (P pages)'"
    return "an iomem entry is 'START-END : NAME' in hex digits"


def detect_format(text: str | MapLines, source: str = "<input>") -> str:
    """``iomem``, ``e820``, ``smap`` or ``chunks``: the format with the most lines.  FreeBSD
    chunk lines beside SMAP lines count for ``smap`` (import_map uses both)."""
    ml = _lines(text, source)
    counts = dict.fromkeys(PARSERS, 0)
    for i, (_, line) in enumerate(ml.lines):
        k = _kind(line)
        if k is None and i + 1 < len(ml.lines) and len(line) < MAX_LINE and (
                "e820" in line or "SMAP" in line or "0x" in line):
            # an entry a mail client wrapped onto the next line (the parsers join it too)
            k = _kind(line + " " + ml.lines[i + 1][1].strip())
        if k is not None:
            counts[k] += 1
    if counts["smap"] and counts["chunks"]:
        counts["smap"] += counts.pop("chunks")
    fmt = max(counts, key=lambda k: counts[k])
    if counts[fmt] == 0:
        raise MapFormatError(_nothing_found(ml), None, source if source != "<input>" else None)
    return fmt


def _nothing_found(ml: MapLines) -> str:
    tried = "; ".join(FORMATS.values())
    msg = f"no memory map found (tried {tried}; TOML for .toml files)"
    for n, line in ml.lines:
        if _looks_like_map_line(line):
            return (f"{msg}. line {n} looks like a map line but is not one ({_why(line)}): "
                    f"{line.strip()[:100]!r}")
    if ml.long_lines:
        msg += f"; {ml.long_lines} line(s) longer than {MAX_LINE} characters were skipped"
    return msg


def looks_like_a_map(text: str, source: str = "<input>") -> bool:
    """Whether any line of ``text`` is a line of a known memory-map format."""
    try:
        detect_format(text, source)
    except MapFormatError:
        return False
    return True


def detect_arch(ml: MapLines, fmt: str) -> tuple[str, str]:
    """(architecture, why) for a map of format ``fmt``."""
    if fmt in ("e820", "smap"):
        return "amd64", f"{FORMATS[fmt]} come from PCs"
    if fmt == "chunks":
        # amd64 prints 0x%016jx (16 digits); arm64 and riscv %#016jx (14 after the 0x)
        for i in range(len(ml.lines)):
            m = _search_joined(_CHUNK, ml.lines, i, " - 0x")
            if m is not None:
                if len(m["s"]) == 14:
                    return "arm64", "chunk lines in the arm64/riscv %#016jx format"
                return "amd64", "chunk lines in amd64's 0x%016jx format"
    legacy = kernel_low = False
    dt_riscv = dt = False
    for _, line in ml.lines:
        ent = _iomem_entry(line)
        if ent is None:
            continue
        name = ent[2]
        if any(w in name for w in ("System ROM", "Video ROM", "Adapter ROM", "IOAPIC",
                                    "Local APIC", "HPET", "PCI MMCONFIG")) or \
                (int(ent[0], 16) < 0x100000 and name not in ("System RAM", "Reserved",
                                                              "reserved")):
            legacy = True       # the PC's legacy ranges below 1 MiB and its chipset
        if name == "System RAM" and int(ent[1], 16) < 0xA0000:
            legacy = True       # conventional memory ending below the VGA hole
        if name == "Kernel code" and int(ent[0], 16) < 1 << 32:
            kernel_low = True
        if _DT_NAME.search(name):
            dt = True
            if "plic@" in name or "clint@" in name or "riscv" in name:
                dt_riscv = True
    if dt_riscv:
        return "riscv", "device-tree names of a RISC-V interrupt controller (PLIC/CLINT)"
    if dt and not legacy:
        return "arm64", "device-tree node names (name@address) in the map"
    if kernel_low and not legacy:
        return "arm64", "'Kernel code' below 4 GiB and no PC legacy ranges"
    return "amd64", "PC ranges in the map" if legacy else "the default"


def import_map(text: str, name: str = "imported", source: str = "<input>",
               arch: str | None = None, fmt: str | None = None) -> Machine:
    """A one-domain machine from a memory-map dump.  ``fmt`` forces the format, ``arch``
    the architecture (detected when None; ``machine.extra['arch_reason']`` says why)."""
    if arch is not None:
        get_arch(arch)
    ml = clean_lines(text, source)
    fmt = fmt or detect_format(ml, source)
    if fmt not in PARSERS:
        raise MapFormatError(f"unknown map format {fmt!r} ({', '.join(PARSERS)})")
    ram = PARSERS[fmt](ml, source)
    if not ram:
        raise MapFormatError(f"the {fmt} map has no usable RAM", None, source)
    avail = None
    if fmt == "chunks":
        avail = [(s, e) for s, e in ram]
    elif fmt == "smap":
        chunks = parse_chunks(ml, source)
        if chunks:
            avail = chunks
    if arch is None:
        arch, why = detect_arch(ml, fmt)
    else:
        why = "given"
    m = Machine(name=name, ram=[RamRange(s, e, 0) for s, e in ram], arch=arch,
                description=f"imported from {FORMATS[fmt]} ({source})", source=source,
                avail_override=avail, page_array="none" if avail else "top",
                extra={"format": fmt, "arch_reason": why})
    segs = m.segments()    # refuse a map without one whole page of RAM now, not at boot
    if avail is not None:
        for s, e in avail:
            if (s | e) & 0xFFF or not any(ss <= s and e <= se for ss, se, _ in segs):
                raise MapFormatError(f"phys_avail chunk [{s:#x}, {e:#x}) is not inside "
                                     "the SMAP's RAM", None, source)
    _check_physseg(m, source)
    return m


def _check_physseg(m: Machine, source: str) -> None:
    """Refuse a map whose segments, split at the free-list boundaries as vm_phys_add_seg()
    splits them, overflow the architecture's VM_PHYSSEG_MAX."""
    p = get_arch(m.arch)
    npieces = sum(1 + sum(1 for b in p.split_points() if s < b < e)
                  for s, e, _ in m.segments())
    if npieces > p.physseg_max:
        others = [a for a, q in ARCHES.items() if a != m.arch and npieces <= q.physseg_max]
        hint = f" (it fits {' or '.join(others)}: --arch)" if others else ""
        raise MapFormatError(f"{npieces} RAM segments exceed {m.arch}'s VM_PHYSSEG_MAX "
                             f"{p.physseg_max}{hint}", None, source)
