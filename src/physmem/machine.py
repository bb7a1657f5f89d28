"""Machine descriptions: physical memory maps, their phys_avail, presets and TOML files.

A :class:`Machine` is what firmware tells the kernel: usable RAM ranges (each with a NUMA
domain) on one architecture.  From it physmem derives

* the **segments** handed to ``vm_phys_add_seg`` (:meth:`Machine.segments`): RAM rounded
  inward to whole pages, adjacent ranges of one domain merged; on amd64 page 0 is left out
  (FreeBSD/amd64 never uses it);
* the **phys_avail** ranges handed to the allocator at boot (:meth:`Machine.phys_avail`),
  by this rule unless the machine lists them explicitly:

  1. start from the segments;
  2. remove page 0 (the BIOS data area on a PC, the exception vectors elsewhere);
  3. remove the kernel's range ``kernel = [start, end)``: the kernel image, its preloaded
     modules and the early boot allocations (page-table pages, the message buffer);
  4. if ``page_array = "top"``, remove the page array -- ``sizeof(struct vm_page)`` (104
     bytes) per page of the segments, rounded up to 2 MiB -- from the top of the largest
     phys_avail range of each domain, as ``vm_phys_early_alloc()`` carves it.

Presets are in :data:`PRESETS`; each documents where its numbers come from.  A machine file
is TOML::

    name = "my-vm"
    arch = "amd64"                       # amd64 (default), arm64, riscv
    description = "what this is"
    ram = [[0x0, 0x9fc00, 0], [0x100000, 0x40000000, 0]]   # [start, end) and domain
    kernel = [0x100000, 0x2000000]       # optional
    page_array = "none"                  # "top" (default) or "none"
    # phys_avail = [[0x1000, 0x9f000], [0x2000000, 0x40000000]]   # overrides the rule

or a memory-map dump (``/proc/iomem``, dmesg ``BIOS-e820`` lines, FreeBSD ``SMAP`` lines),
read by :mod:`physmem.mapimport`.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from .bits import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, round_page, trunc_page
from .errors import ArchError, MapFormatError, PhysmemError, SegmentError, UnknownMachineError
from .reprs import as_html, as_text, fmt_ranges, fmt_size
from .vmparam import GIB, MIB, get_arch

SIZEOF_VM_PAGE = 104          # amd64/arm64 struct vm_page, bytes
SUPERPAGE = 2 * MIB           # the page array is mapped with 2 MiB pages


@dataclass(frozen=True)
class RamRange:
    """Usable RAM ``[start, end)`` in NUMA ``domain``, as firmware reports it (the edges
    need not be page aligned)."""

    start: int
    end: int
    domain: int = 0


@dataclass
class Machine:
    """A physical machine: architecture, RAM, and how its phys_avail is derived."""

    # Both have defaults so that Machine(ram=[...]) works as the README's readers write it
    # (a Machine without RAM is refused below with a typed error).
    name: str = "custom"
    ram: list[RamRange] = field(default_factory=list)
    arch: str = "amd64"
    description: str = ""
    source: str = ""
    kernel: tuple[int, int] | None = None
    page_array: str = "top"
    avail_override: list[tuple[int, int]] | None = None
    extra: dict = field(default_factory=dict)
    # CPU topology "SOCKETSxCORES[xTHREADS]" for DragonFly's page colouring; empty: one
    # socket per NUMA domain, 2 cores each.
    cpus: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.arch, str):
            raise MapFormatError("machine name and arch must be strings")
        if isinstance(self.ram, (str, bytes)) or not hasattr(self.ram, "__iter__"):
            raise MapFormatError(f"ram must be a list of RamRange or (start, end[, domain]) "
                                 f"tuples, not {type(self.ram).__name__}")
        self.ram = [_ram_range(r) for r in self.ram]
        get_arch(self.arch)
        if self.page_array not in ("top", "none"):
            raise MapFormatError(f"page_array must be 'top' or 'none', not {self.page_array!r}")
        if not self.ram:
            raise MapFormatError(f"machine {self.name!r} has no RAM")
        for r in self.ram:
            if not (isinstance(r.start, int) and isinstance(r.end, int)) or r.start < 0 or \
                    r.end > 1 << 64:
                raise MapFormatError(f"RAM range {r} is not a 64-bit address range")
            if r.end <= r.start:
                raise SegmentError(f"RAM range [{r.start:#x}, {r.end:#x}) is empty")
            if not 0 <= r.domain < get_arch(self.arch).maxmemdom:
                raise SegmentError(f"RAM range [{r.start:#x}, {r.end:#x}): domain {r.domain} "
                                   f"out of range for {self.arch}")
        rs = sorted(self.ram, key=lambda r: r.start)
        for a, b in itertools.pairwise(rs):
            if b.start < a.end:
                raise SegmentError(f"RAM ranges [{a.start:#x}, {a.end:#x}) and "
                                   f"[{b.start:#x}, {b.end:#x}) overlap")
        if self.cpus:
            parse_cpus(self.cpus)
        doms = {r.domain for r in self.ram}
        if doms != set(range(len(doms))):
            raise SegmentError(f"machine {self.name!r}: NUMA domains must be 0..n-1, "
                               f"got {sorted(doms)}")

    def _summary(self) -> tuple[str, list[tuple[str, str]]]:
        segs = self.segments()
        rows = [("architecture", self.arch), ("RAM", fmt_size(self.ram_bytes())),
                ("segments", f"{len(segs)}: {fmt_ranges([(s, e) for s, e, _ in segs])}"),
                ("phys_avail", fmt_ranges(self.phys_avail())),
                ("NUMA domains", str(self.ndomains()))]
        if self.description:
            rows.append(("description", self.description))
        return f"Machine {self.name}", rows

    def __repr__(self) -> str:
        return as_text(*self._summary())

    def _repr_html_(self) -> str:
        return as_html(*self._summary())

    # -- derived maps ------------------------------------------------------------------
    def segments(self) -> list[tuple[int, int, int]]:
        """The ``vm_phys_add_seg`` segments: (start, end, domain), page aligned, sorted."""
        out: list[tuple[int, int, int]] = []
        for r in sorted(self.ram, key=lambda r: r.start):
            s, e = round_page(r.start), trunc_page(r.end)
            if self.arch == "amd64" and s == 0:
                s = PAGE_SIZE
            if e <= s:
                continue
            if out and out[-1][1] == s and out[-1][2] == r.domain:
                out[-1] = (out[-1][0], e, r.domain)
            else:
                out.append((s, e, r.domain))
        if not out:
            raise SegmentError(f"machine {self.name!r} has no whole page of RAM")
        return out

    def kernel_range(self) -> tuple[int, int]:
        """The reserved kernel range (rule step 3)."""
        if self.kernel is not None:
            return self.kernel
        base = min(s for s, _, _ in self.segments()) & ~PAGE_MASK
        if self.arch == "amd64":
            return (0x100000, 0x2000000)        # 1 MiB .. 32 MiB, as in the oracle's maps
        if self.arch == "arm64":
            return (base + 2 * MIB, base + 18 * MIB)
        return (base, base + 18 * MIB)          # riscv: OpenSBI 2 MiB + kernel 16 MiB

    def phys_avail(self) -> list[tuple[int, int]]:
        """The phys_avail ranges, by the module's rule unless overridden."""
        if self.avail_override is not None:
            return list(self.avail_override)
        ranges = [(s, e) for s, e, _ in self.segments()]
        ranges = _subtract(ranges, (0, PAGE_SIZE))
        ranges = _subtract(ranges, self.kernel_range())
        if self.page_array == "top":
            segs = self.segments()
            npages = sum((e - s) >> PAGE_SHIFT for s, e, _ in segs)
            size = -(-npages * SIZEOF_VM_PAGE // SUPERPAGE) * SUPERPAGE
            ndom = max(d for _, _, d in segs) + 1
            share = -(-size // ndom // SUPERPAGE) * SUPERPAGE
            for d in range(ndom):
                mine = [(s, e) for s, e in ranges
                        if any(ss <= s and e <= se and sd == d for ss, se, sd in segs)]
                if not mine:
                    continue
                s, e = max(mine, key=lambda r: r[1] - r[0])
                top = (e & ~(SUPERPAGE - 1))
                cut = max(s, top - share)
                ranges = _subtract(ranges, (cut, e))
        return [r for r in ranges if r[1] > r[0]]

    def ram_bytes(self) -> int:
        return sum(e - s for s, e, _ in self.segments())

    def ndomains(self) -> int:
        return max(d for _, _, d in self.segments()) + 1

    def topology(self) -> tuple[int, int, int]:
        """(sockets, cores per socket, threads per core)."""
        return parse_cpus(self.cpus) if self.cpus else (self.ndomains(), 2, 1)


def _ram_range(r: object) -> RamRange:
    """A RamRange from a RamRange or a ``(start, end[, domain])`` tuple of ints."""
    if isinstance(r, RamRange):
        return r
    if isinstance(r, (tuple, list)) and len(r) in (2, 3) and all(
            isinstance(x, int) and not isinstance(x, bool) for x in r):
        return RamRange(*r)
    raise MapFormatError(f"RAM range {r!r}: expected a RamRange or (start, end[, domain]) "
                         "integers")


def parse_cpus(text: str) -> tuple[int, int, int]:
    """``SOCKETSxCORES[xTHREADS]`` (e.g. ``2x12x2``) -> (sockets, cores, threads)."""
    parts = text.lower().split("x")
    if not 2 <= len(parts) <= 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise MapFormatError(f"bad CPU topology {text[:40]!r} (SOCKETSxCORES[xTHREADS])")
    if any(len(p.lstrip("0")) > 4 for p in parts):    # above 1024 (and int()'s limit)
        raise MapFormatError(f"CPU topology {text[:40]!r}... out of range (1..1024 CPUs)")
    nums = [int(p) for p in parts] + ([1] if len(parts) == 2 else [])
    if min(nums) < 1 or nums[0] * nums[1] * nums[2] > 1024:
        raise MapFormatError(f"CPU topology {text!r} out of range (1..1024 CPUs)")
    return nums[0], nums[1], nums[2]


def _subtract(ranges: list[tuple[int, int]], cut: tuple[int, int]) -> list[tuple[int, int]]:
    a, b = cut
    out = []
    for s, e in ranges:
        if e <= a or s >= b:
            out.append((s, e))
            continue
        if s < a:
            out.append((s, a))
        if e > b:
            out.append((b, e))
    return out


# ---------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------
def _firecracker(mem: int) -> list[RamRange]:
    """Firecracker's x86_64 layout (src/vmm/src/arch/x86_64/layout.rs and mod.rs): RAM at
    [0, EBDA_START = 0x9fc00) and from HIMEM_START = 1 MiB; guests larger than
    MMIO_MEM_START = 4 GiB - 768 MiB = 0xd0000000 continue at 4 GiB."""
    gap = 0xD0000000
    if mem <= gap:
        return [RamRange(0, 0x9FC00), RamRange(0x100000, mem)]
    return [RamRange(0, 0x9FC00), RamRange(0x100000, gap),
            RamRange(4 * GIB, 4 * GIB + mem - gap)]


def _server_96g_2dom() -> list[RamRange]:
    """Two sockets of 48 GiB each.  The BIOS maps 3 GiB below the PCI hole at 0xc0000000
    (like a PC's e820 map), the rest from 4 GiB; the SRAT gives socket 0 the first
    48 GiB of RAM.  93 GiB lie above 4 GiB: more than VM_DMA32_NPAGES_THRESHOLD (64 GiB),
    so amd64 creates the DMA32 free list beside DEFAULT and LOWMEM."""
    low_end = 0xC0000000
    d0_top = 4 * GIB + 45 * GIB
    return [RamRange(0, 0x9FC00, 0), RamRange(0x100000, low_end, 0),
            RamRange(4 * GIB, d0_top, 0), RamRange(d0_top, d0_top + 48 * GIB, 1)]


def _server_1t() -> list[RamRange]:
    """Two sockets of 512 GiB: 3 GiB below the PCI hole, the rest from 4 GiB, the SRAT
    splitting at the middle of RAM."""
    low_end = 0xC0000000
    d0_top = 4 * GIB + 509 * GIB
    return [RamRange(0, 0x9FC00, 0), RamRange(0x100000, low_end, 0),
            RamRange(4 * GIB, d0_top, 0), RamRange(d0_top, d0_top + 512 * GIB, 1)]


def _preset_list() -> list[Machine]:
    fc_src = ("Firecracker x86_64 memory layout (layout.rs: EBDA_START 0x9fc00, HIMEM_START "
              "1 MiB, 768 MiB MMIO gap below 4 GiB); the FreeBSD kernel and its early "
              "allocations, page array included, occupy 1-32 MiB")
    return [
        Machine("firecracker-128m", _firecracker(128 * MIB), description=(
            "Firecracker microVM, 128 MiB: the lazy-init commit's small figure (vm_page "
            "init 3 ms, 9% of boot)"), source=fc_src, page_array="none"),
        Machine("firecracker-1g", _firecracker(1 * GIB), description=(
            "Firecracker microVM, 1 GiB: the lazy-init commit's large figure (vm_page "
            "init 21.5 ms, 37% of boot)"), source=fc_src, page_array="none"),
        Machine("firecracker-64g", _firecracker(64 * GIB), description=(
            "Firecracker microVM, 64 GiB: RAM continues at 4 GiB above the MMIO gap"),
            source=fc_src, page_array="none"),
        Machine("pc-6g", [RamRange(0, 0x9FC00), RamRange(0x100000, 0xC0000000),
                          RamRange(4 * GIB, 0x1C0000000)], description=(
            "6 GiB PC: 3 GiB below the PCI hole, 3 GiB above 4 GiB"),
            source="a PC's e820 layout (the kernel-comparison traces' pc6g map)",
            page_array="none"),
        Machine("server-96g-2dom", _server_96g_2dom(), description=(
            "two-socket amd64 server, 96 GiB, two NUMA domains; DMA32 list present"),
            source=_server_96g_2dom.__doc__ or "", cpus="2x12x2"),
        Machine("server-1t", _server_1t(), description=(
            "two-socket amd64 server, 1 TiB, two NUMA domains"),
            source=_server_1t.__doc__ or "", cpus="2x32x2"),
        Machine("rpi4-8g", [RamRange(0, 0x3B400000), RamRange(0x40000000, 0xFC000000),
                            RamRange(4 * GIB, 8 * GIB)], arch="arm64", description=(
            "Raspberry Pi 4, 8 GiB (arm64): VideoCore and peripheral holes below 4 GiB"),
            source="a Raspberry Pi 4's /proc/iomem (VideoCore and peripheral holes)", kernel=(
                0x200000, 0x1200000), page_array="none"),
        Machine("qemu-virt-arm64-1g", [RamRange(0x40000000, 0x80000000)], arch="arm64",
                description="QEMU arm64 'virt', 1 GiB at 1 GiB: DMA32 is the only free list",
                source="QEMU hw/arm/virt.c memory map (RAM at 0x40000000)", kernel=(
                    0x40080000, 0x41200000), page_array="none"),
        Machine("qemu-virt-riscv-1g", [RamRange(0x80000000, 0xC0000000)], arch="riscv",
                description="QEMU riscv 'virt', 1 GiB at 2 GiB: two pools, no lazy init",
                source="QEMU hw/riscv/virt.c memory map; OpenSBI keeps the first 2 MiB",
                page_array="none"),
    ]


PRESETS: dict[str, Machine] = {m.name: m for m in _preset_list()}
DEFAULT_MACHINE = "firecracker-1g"


MAX_TOML_CHARS = 1 << 20      # a TOML machine
MAX_RAM_RANGES = 1024         # ram / phys_avail entries (VM_PHYSSEG_MAX is 63 or 64)
ARCH_SUFFIX = "?arch="


def get_machine(name_or_path: str, arch: str | None = None) -> Machine:
    """A preset by name, or a machine file (TOML or a memory-map dump) by path.

    ``arch`` chooses the architecture of a memory-map dump (detected when None); for a
    preset or a TOML file it must agree with the machine's own.  ``PATH?arch=NAME`` is the
    same as passing ``arch`` (the form run directories record)."""
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise UnknownMachineError(f"machine must be a preset name or a file path, not "
                                  f"{type(name_or_path).__name__}")
    if arch is None and ARCH_SUFFIX in name_or_path and not Path(name_or_path).exists():
        name_or_path, arch = name_or_path.rsplit(ARCH_SUFFIX, 1)
    if arch is not None:
        get_arch(arch)
    if name_or_path in PRESETS:
        m = PRESETS[name_or_path]
    else:
        p = Path(name_or_path)
        if not p.exists():
            raise UnknownMachineError(f"unknown machine {name_or_path!r}: not a preset "
                                      f"({', '.join(PRESETS)}) nor a file")
        m = load_machine_file(p, arch)
    if arch is not None and m.arch != arch:
        raise ArchError(f"machine {m.name!r} is {m.arch}, not {arch} (--arch chooses the "
                        "architecture of a memory-map dump only)")
    return m


def machine_spec(name_or_path: str, arch: str | None) -> str:
    """The string that names ``name_or_path`` with ``arch`` (for run configs, children)."""
    return name_or_path if arch is None else f"{name_or_path}{ARCH_SUFFIX}{arch}"


MAX_MACHINE_FILE = 8 << 20      # bytes read from a machine file (a map is a few KiB)


def read_machine_text(path: Path | None, source: str) -> str:
    """The text of a machine file (``None``: standard input), bounded and refused when
    binary, so /dev/zero or a disk image fails at once with one line."""
    import sys
    try:
        if path is None:
            data = sys.stdin.buffer.read(MAX_MACHINE_FILE + 1)
        else:
            with path.open("rb") as f:
                data = f.read(MAX_MACHINE_FILE + 1)
    except OSError as e:
        raise MapFormatError(f"{source}: {e.strerror}") from None
    if b"\0" in data[:MAX_MACHINE_FILE]:
        raise MapFormatError(f"{source}: binary data, not a machine description")
    if len(data) > MAX_MACHINE_FILE:
        raise MapFormatError(f"{source}: larger than {MAX_MACHINE_FILE >> 20} MiB, not a "
                             "machine description")
    return data.decode("utf-8", errors="replace")


def load_machine_file(path: Path | None, arch: str | None = None,
                      name: str | None = None) -> Machine:
    """Read a machine from a TOML file or a memory-map dump (format detected); ``None``
    reads standard input.  TOML is tried for ``.toml`` files, and for others only when no
    memory-map format matches."""
    source = "<stdin>" if path is None else str(path)
    text = read_machine_text(path, source)
    stem = name or ("stdin" if path is None else path.stem)
    if path is not None and path.suffix == ".toml":
        return machine_from_toml(text, source)
    from .mapimport import import_map, looks_like_a_map
    if not looks_like_a_map(text, source) and _looks_like_toml(text):
        return machine_from_toml(text, source)
    return import_map(text, name=stem, source=source, arch=arch)


def _looks_like_toml(text: str) -> bool:
    """Whether the first meaningful line is a TOML key or table."""
    for line in text.splitlines()[:1000]:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        return "=" in s or (s.startswith("[") and s.endswith("]"))
    return False


def machine_from_toml(text: str, source: str = "<toml>") -> Machine:
    """Parse the TOML machine format (see the module docstring)."""
    if not isinstance(text, str):
        raise MapFormatError(f"{source}: expected TOML text, got {type(text).__name__}")
    text = text.removeprefix("\ufeff")      # a byte-order mark from a Windows editor
    if len(text) > MAX_TOML_CHARS:
        raise MapFormatError(f"{source}: larger than {MAX_TOML_CHARS >> 10} KiB; a machine "
                             f"has at most {MAX_RAM_RANGES} RAM ranges")
    import tomllib  # here, not at start-up: only machine files need it (issue 13)
    try:
        d = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        raise MapFormatError(f"{source}: {' '.join(str(e).split())[:200]}") from None
    known = {"name", "arch", "description", "source", "ram", "kernel", "page_array",
             "phys_avail", "cpus"}
    unknown = set(d) - known
    if unknown:
        raise MapFormatError(f"{source}: unknown keys {sorted(unknown)} (known: "
                             f"{sorted(known)})")
    if "ram" not in d:
        raise MapFormatError(f"{source}: no 'ram' list")

    def pair(v, what: str) -> tuple[int, ...]:
        if not isinstance(v, list) or len(v) not in (2, 3) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in v):
            shown = repr(v)[:60] if not isinstance(v, list) or len(v) < 4 else "a longer list"
            raise MapFormatError(f"{source}: {what} must be [start, end] or "
                                 f"[start, end, domain] integers, got {shown}")
        if any(x.bit_length() > 64 for x in v):
            raise MapFormatError(f"{source}: {what}: a number beyond 64 bits")
        return tuple(v)

    for k in ("ram", "phys_avail"):
        if k in d and (not isinstance(d[k], list) or len(d[k]) > MAX_RAM_RANGES):
            raise MapFormatError(f"{source}: {k} must be a list of at most "
                                 f"{MAX_RAM_RANGES} ranges")
    try:
        ram = [RamRange(*pair(r, "ram entry")) for r in d["ram"]]
        kernel = pair(d["kernel"], "kernel")[:2] if "kernel" in d else None
        avail = [pair(a, "phys_avail entry")[:2] for a in d["phys_avail"]] \
            if "phys_avail" in d else None
        m = Machine(name=str(d.get("name", Path(source).stem)), ram=ram,
                    arch=str(d.get("arch", "amd64")), description=str(d.get("description", "")),
                    source=str(d.get("source", source)), kernel=kernel,  # type: ignore[arg-type]
                    page_array=str(d.get("page_array", "top")),
                    avail_override=avail, cpus=str(d.get("cpus", "")))  # type: ignore[arg-type]
    except TypeError as e:
        raise MapFormatError(f"{source}: {e}") from None
    except PhysmemError as e:              # the Machine's own checks: name the file
        if str(e).startswith(source):
            raise
        raise type(e)(f"{source}: {e}") from None
    if avail is not None:
        for s, e in avail:
            if (s | e) & PAGE_MASK or e <= s:
                raise MapFormatError(f"{source}: phys_avail [{s:#x}, {e:#x}) must be page "
                                     "aligned and non-empty")
    return m


def machine_to_toml(m: Machine) -> str:
    """Write a machine in the TOML format that :func:`machine_from_toml` reads back to an
    equal machine (one RAM range a line, so domains are easy to edit)."""
    import json

    def q(text: str) -> str:      # a JSON string is a valid TOML basic string
        return json.dumps(text, ensure_ascii=False)

    lines = [f"name = {q(m.name)}", f"arch = {q(m.arch)}"]
    if m.description:
        lines.append(f"description = {q(m.description)}")
    if m.source:
        lines.append(f"source = {q(m.source)}")
    lines.append("# [start, end) and NUMA domain (0..n-1); split a range to give it two domains")
    lines.append("ram = [")
    lines += [f"    [{r.start:#x}, {r.end:#x}, {r.domain}]," for r in m.ram]
    lines.append("]")
    if m.kernel is not None:
        lines.append(f"kernel = [{m.kernel[0]:#x}, {m.kernel[1]:#x}]")
    lines.append(f"page_array = {q(m.page_array)}")
    if m.cpus:
        lines.append(f"cpus = {q(m.cpus)}")
    else:
        lines.append('# cpus = "1x4"           # SOCKETSxCORES[xTHREADS]')
    if m.avail_override is not None:
        lines.append("phys_avail = [")
        lines += [f"    [{s:#x}, {e:#x}]," for s, e in m.avail_override]
        lines.append("]")
    return "\n".join(lines) + "\n"
