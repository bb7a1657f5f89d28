"""FreeBSD's vm_page.c, as far as the free-page allocator sees it: the boot loops of
vm_page_startup() (page-structure initialisation, eager or lazy as in commit b16b4c22d2d1,
and the enqueue of every phys_avail page), the loader tunables it reads and the RAM
blacklist's parser.

The composite machine that runs these -- boot, the public API with its argument and
ownership checks, the attached policies of the other kernels -- is
:class:`physmem.kernel.Kernel`, one layer up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..bits import PAGE_MASK, PAGE_SHIFT
from ..errors import TunableError
from ..vmparam import AMD64, VmParam
from .vm_phys import MemAffinity, VmPhys


@dataclass
class VmDomain:
    """Fields of ``struct vm_domain`` that boot fills in (``vmd_free_count`` lives in
    :attr:`Kernel.free_counts`, a plain list, because every allocation updates it)."""

    page_count: int = 0      # vmd_page_count
    segs: int = 0            # vmd_segs: bit mask of segment indices


@dataclass
class InitStats:
    """Page-structure initialisations (vm_page_init_page calls), by phase."""

    boot: int = 0
    on_demand: int = 0
    drain: int = 0
    boot_seconds: float = 0.0  # the model's own wall time for vm_page_startup

    @property
    def total(self) -> int:
        return self.boot + self.on_demand + self.drain


@dataclass
class Tunables:
    """Loader tunables that vm_page_startup reads."""

    lazy_page_init: int = 1               # debug.vm.lazy_page_init
    blacklist: list[int] = field(default_factory=list)  # vm.blacklist
    dma_reserved: int | None = None       # vm.dma_reserved (DragonFly; None: no reserve)

    @classmethod
    def parse(cls, items: Iterable[str], param: VmParam = AMD64) -> Tunables:
        """Parse loader.conf-style ``name=value`` strings (as ``--tunable`` takes them)."""
        t = cls(lazy_page_init=1 if param.has_lazyinit else 0)
        if isinstance(items, str):
            items = [items]             # one "name=value", not its characters
        if not isinstance(items, Iterable):
            raise TunableError(f"tunables must be 'name=value' strings, not "
                               f"{type(items).__name__}")
        for item in items:
            t = t.with_item(item, param)
        return t

    def with_item(self, item: str, param: VmParam = AMD64) -> Tunables:
        """These tunables with one more ``name=value`` applied (a later setting of a name
        wins, as in loader.conf); self is unchanged.  Costs the same however many came
        before, so a trace's 20,000 ``tunable`` lines take linear time."""
        if not isinstance(item, str):
            raise TunableError(f"tunable {item!r:.60}: expected a name=value string")
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip().strip('"')
        if not sep:
            raise TunableError(f"tunable {item[:60]!r}: expected name=value")
        if name != "vm.blacklist" and len(value) > 64:   # no number has 64 characters
            raise TunableError(f"{name[:60]}={value[:20]!r}...: value too long")
        t = replace(self)       # the blacklist list is replaced, never changed in place
        if name == "debug.vm.lazy_page_init":
            if not param.has_lazyinit:
                raise TunableError(f"{name}: {param.name} has no VM_FREEPOOL_LAZYINIT")
            try:
                v = int(value, 0)
            except ValueError:
                raise TunableError(f"{name}={value!r}: not an integer") from None
            if v not in (0, 1):
                raise TunableError(f"{name}={value!r}: must be 0 or 1")
            t.lazy_page_init = v
        elif name == "vm.blacklist":
            t.blacklist = parse_blacklist(value)
        elif name == "vm.dma_reserved":
            try:
                v = int(value, 0)
            except ValueError:
                raise TunableError(f"{name}={value!r}: not a byte count") from None
            if not 0 <= v < 1 << 64:
                raise TunableError(f"{name}={value!r}: out of range")
            t.dma_reserved = v
        else:
            raise TunableError(f"unknown tunable {name!r} (known: "
                               "debug.vm.lazy_page_init, vm.blacklist, vm.dma_reserved)")
        return t


# strtoq base 0: hexadecimal with 0x, octal with a leading 0, else decimal (ASCII only)
_STRTOQ = re.compile(r"0[xX]([0-9a-fA-F]+)|0[0-7]*|[1-9][0-9]*")


def parse_blacklist(text: str) -> list[int]:
    """vm.blacklist: addresses separated by blanks, commas or newlines, read as
    vm_page_blacklist_next() reads them (``strtoq`` base 0, each truncated to its page,
    entries of 0 skipped).  Where the kernel would print "Garbage in RAM blacklist,
    skipping" and drop the rest, physmem refuses the tunable with a TunableError."""
    out = []
    for tok in text.replace(",", " ").split():
        m = _STRTOQ.fullmatch(tok)
        if m is None:
            raise TunableError(f"vm.blacklist: {tok!r} is not an address")
        if len(tok.lstrip("0xX")) > 22:     # beyond 64 bits in any base (and int()'s limit)
            raise TunableError(f"vm.blacklist: {tok[:40]!r}... is out of range")
        v = int(m[1], 16) if m[1] is not None else int(tok, 8) if tok.startswith("0") \
            else int(tok)
        if v < 0 or v >= 1 << 64:
            raise TunableError(f"vm.blacklist: {tok!r} is out of range")
        if v & ~PAGE_MASK:     # vm_page_blacklist_check skips a page address of 0
            out.append(v & ~PAGE_MASK)
    return out


def vm_page_startup(phys: VmPhys, seg_lines: Sequence[tuple[int, int, int]],
                    phys_avail: Sequence[tuple[int, int]], ndomains: int,
                    lazy: bool) -> tuple[list[VmDomain], list[int]]:
    """vm_page_startup()'s part for the free-page allocator: register the domains, create
    the segments, run vm_phys_init(), initialise the page structures (all of them, or with
    ``lazy`` only those outside phys_avail and each free chunk's head) and enqueue every
    phys_avail page.  Requires: arguments already validated, nothing booted yet.  Returns
    the domains' ``struct vm_domain`` fields and their ``vmd_free_count``."""
    if ndomains > 1:
        # The oracle's mem_affinity: one entry per segment line, sorted by address.
        phys.register_domains(ndomains, [MemAffinity(s, e, d)
                                         for s, e, d in sorted(seg_lines)])
    for s, e, _ in seg_lines:
        phys.add_seg(s, e)
    phys.init()
    domains = [VmDomain() for _ in range(phys.ndomains)]
    free_counts = [0] * phys.ndomains
    pages = phys.pages
    DEFAULT, LAZYINIT = phys.DEFAULT, phys.LAZYINIT
    avail = phys_avail
    for segind, seg in enumerate(phys.segs):
        # (a) Initialise the page structures.
        if lazy:
            startp = seg.start
            for lo, hi in avail:
                if startp >= seg.end:
                    break
                if hi < startp:
                    continue
                if lo <= startp:
                    startp = hi
                    continue
                # NOTE: the kernel leaves startp at the start of this range, not its end.
                endp = min(lo, seg.end)
                pages.init_range(startp >> PAGE_SHIFT, (endp - startp) >> PAGE_SHIFT,
                                 segind, DEFAULT, scan_lone=True)
                startp = endp
        else:
            pages.init_range(seg.spfn, seg.epfn - seg.spfn, segind, DEFAULT,
                             scan_lone=True)
        # (b) Add the segment's phys_avail pages to the free lists.
        for lo, hi in avail:
            if seg.end <= lo or seg.start >= hi:
                continue
            startp = max(seg.start, lo)
            endp = min(seg.end, hi)
            n = (endp - startp) >> PAGE_SHIFT
            if n == 0:
                continue
            m = startp >> PAGE_SHIFT
            if lazy:
                pages.init_page(m, segind, LAZYINIT)
            vmd = domains[seg.domain]
            with phys.domain_locks[seg.domain]:
                phys.enqueue_contig(m, n)
            free_counts[seg.domain] += n
            vmd.page_count += n
            vmd.segs |= 1 << segind
    pages.boot_ranges = None
    return domains, free_counts


__all__ = ["InitStats", "Tunables", "VmDomain", "parse_blacklist", "vm_page_startup"]
