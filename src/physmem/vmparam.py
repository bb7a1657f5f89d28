"""Machine-dependent VM parameters: each architecture's ``machine/vmparam.h``.

The values are those of FreeBSD commit b16b4c22d2d1 ("vm_page: Implement lazy page
initialization"), which gave amd64 and arm64 the LAZYINIT pool and left every other
platform with two pools.  riscv stands for "a platform without LAZYINIT".

=============================  ==============  ==============  ==========
constant                       amd64           arm64           riscv
=============================  ==============  ==============  ==========
VM_NFREEORDER                  13              13              12
VM_NFREEPOOL                   3               3               2
VM_FREEPOOL_LAZYINIT           0               0               (none)
VM_FREEPOOL_DEFAULT            1               1               0
VM_FREEPOOL_DIRECT             2               2               1
VM_NFREELIST                   3               2               1
VM_FREELIST_DMA32 / LOWMEM     1 / 2           1 / (none)      (none)
VM_LOWMEM_BOUNDARY             16 MiB          (none)          (none)
DMA32 boundary                 4 GiB           4 GiB           (none)
VM_DMA32_NPAGES_THRESHOLD      16 Mi pages     (none)          (none)
VM_PHYSSEG_MAX                 63              64              64
page array                     DENSE           SPARSE          SPARSE
MAXMEMDOM (NUMA)               8 (yes)         8 (yes)         1 (no)
=============================  ==============  ==============  ==========

Sources: the commit's amd64 and arm64 vmparam.h hunks; for the values it did not touch, the
architectures' vmparam.h and param.h of the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ArchError

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class VmParam:
    """One architecture's constants (see the module table)."""

    name: str
    nfreeorder: int
    nfreepool: int
    freepool_lazyinit: int | None
    freepool_default: int
    freepool_direct: int
    nfreelist: int
    freelist_default: int
    freelist_dma32: int | None
    freelist_lowmem: int | None
    lowmem_boundary: int | None
    dma32_boundary: int | None
    dma32_npages_threshold: int | None
    physseg_max: int
    physseg_dense: bool
    maxmemdom: int
    numa: bool
    sizeof_vm_page: int = 104  # bytes; for the page-array footprint in phys_avail derivation

    @property
    def has_lazyinit(self) -> bool:
        return self.freepool_lazyinit is not None

    @property
    def max_npages(self) -> int:
        """Largest ``vm_phys_alloc_npages`` request: 2**(VM_NFREEORDER - 1)."""
        return 1 << (self.nfreeorder - 1)

    def pool_names(self) -> dict[str, int]:
        """Names a caller may use for pools (``lazyinit`` is the allocator's own)."""
        return {"default": self.freepool_default, "direct": self.freepool_direct}

    def freelist_names(self) -> dict[str, int]:
        """``VM_FREELIST_*`` names this machine defines, by id."""
        names = {"default": self.freelist_default}
        if self.freelist_dma32 is not None:
            names["dma32"] = self.freelist_dma32
        if self.freelist_lowmem is not None:
            names["lowmem"] = self.freelist_lowmem
        return names

    def pool_label(self, pool: int) -> str:
        if pool == self.freepool_lazyinit:
            return "lazyinit"
        if pool == self.freepool_default:
            return "default"
        return "direct"

    def split_points(self) -> tuple[int, ...]:
        """Where vm_phys_add_seg() cuts a segment, in the order it tests them."""
        pts = []
        if self.freelist_lowmem is not None and self.lowmem_boundary is not None:
            pts.append(self.lowmem_boundary)
        if self.freelist_dma32 is not None and self.dma32_boundary is not None:
            pts.append(self.dma32_boundary)
        return tuple(pts)


AMD64 = VmParam(
    name="amd64", nfreeorder=13, nfreepool=3, freepool_lazyinit=0, freepool_default=1,
    freepool_direct=2, nfreelist=3, freelist_default=0, freelist_dma32=1, freelist_lowmem=2,
    lowmem_boundary=16 * MIB, dma32_boundary=4 * GIB, dma32_npages_threshold=16777216,
    physseg_max=63, physseg_dense=True, maxmemdom=8, numa=True,
)
ARM64 = VmParam(
    name="arm64", nfreeorder=13, nfreepool=3, freepool_lazyinit=0, freepool_default=1,
    freepool_direct=2, nfreelist=2, freelist_default=0, freelist_dma32=1, freelist_lowmem=None,
    lowmem_boundary=None, dma32_boundary=4 * GIB, dma32_npages_threshold=None,
    physseg_max=64, physseg_dense=False, maxmemdom=8, numa=True,
)
RISCV = VmParam(
    name="riscv", nfreeorder=12, nfreepool=2, freepool_lazyinit=None, freepool_default=0,
    freepool_direct=1, nfreelist=1, freelist_default=0, freelist_dma32=None, freelist_lowmem=None,
    lowmem_boundary=None, dma32_boundary=None, dma32_npages_threshold=None,
    physseg_max=64, physseg_dense=False, maxmemdom=1, numa=False,
)

ARCHES: dict[str, VmParam] = {p.name: p for p in (AMD64, ARM64, RISCV)}


def get_arch(name: str) -> VmParam:
    """The parameters of architecture ``name`` (amd64, arm64, riscv)."""
    try:
        return ARCHES[name]
    except KeyError:
        raise ArchError(f"unknown arch {name!r} (known: {', '.join(ARCHES)})") from None
