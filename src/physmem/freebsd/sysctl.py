"""The vm_phys sysctl handlers and DDB's ``show freepages``: text byte for byte as the kernel
builds it (sys/vm/vm_phys.c at b16b4c22d2d1).  They only read state.

* ``vm.phys_free`` -> :func:`sysctl_vm_phys_free`
* ``vm.phys_segs`` -> :func:`sysctl_vm_phys_segs`
* DDB ``show freepages`` -> :func:`db_show_freepages`

Like the sysctl strings, both sysctl texts begin with a newline; ``sysctl(8)`` would print
``vm.phys_free: `` before them.  The kernel address printed after ``free list:`` is, by the
convention of the trace format, ``0xffffffff81e00000`` plus the byte offset of
``&vm_phys_free_queues[domain][flind]`` (24-byte ``struct vm_freelist`` entries).
"""

from __future__ import annotations

from ..bits import PAGE_SHIFT, c_hex
from .vm_phys import VmPhys

FREE_QUEUES_KVA = 0xFFFFFFFF81E00000
SIZEOF_VM_FREELIST = 24


def free_queues_kva(phys: VmPhys, domain: int, flind: int) -> int:
    """The kernel virtual address of ``&vm_phys_free_queues[domain][flind]``."""
    per_flind = phys.NFP * phys.NFO * SIZEOF_VM_FREELIST
    return FREE_QUEUES_KVA + (domain * phys.NFL + flind) * per_flind


def _table(phys: VmPhys, dom: int, flind: int, order_fmt: str, count_fmt: str) -> list[str]:
    out = [f"\nFREE LIST {flind}:\n\n  ORDER (SIZE)  |  NUMBER\n              "]
    out.extend(f"  |  POOL {pind}" for pind in range(phys.NFP))
    out.append("\n--            ")
    out.extend("-- --      " for _ in range(phys.NFP))
    out.append("--\n")
    for oind in range(phys.NFO - 1, -1, -1):
        out.append(order_fmt % (oind, 1 << (PAGE_SHIFT - 10 + oind)))
        for pind in range(phys.NFP):
            out.append(count_fmt % phys.count(dom, flind, pind, oind))
        out.append("\n")
    return out


def sysctl_vm_phys_free(phys: VmPhys) -> str:
    """``sysctl vm.phys_free``: free blocks (not pages) per domain, free list, order and
    pool."""
    out: list[str] = []
    for dom in range(phys.ndomains):
        out.append(f"\nDOMAIN {dom}:\n")
        for flind in range(phys.nfreelists):
            out.extend(_table(phys, dom, flind, "  %2d (%6dK)", "  |  %6d"))
    return "".join(out)


def sysctl_vm_phys_segs(phys: VmPhys) -> str:
    """``sysctl vm.phys_segs``: the segments after vm_phys_init's coalescing."""
    out: list[str] = []
    for segind, seg in enumerate(phys.segs):
        out.append(f"\nSEGMENT {segind}:\n\n")
        out.append(f"start:     {c_hex(seg.start)}\n")
        out.append(f"end:       {c_hex(seg.end)}\n")
        out.append(f"domain:    {seg.domain}\n")
        out.append(f"free list: {free_queues_kva(phys, seg.domain, seg.flind):#x}\n")
    return "".join(out)


def db_show_freepages(phys: VmPhys) -> str:
    """DDB ``show freepages``: the same table with zero-padded numbers and blank lines."""
    out: list[str] = []
    for dom in range(phys.ndomains):
        out.append(f"DOMAIN: {dom}\n")
        for flind in range(phys.nfreelists):
            t = _table(phys, dom, flind, "  %2.2d (%6.6dK)", "  |  %6.6d")
            t[0] = t[0][1:]  # db_printf("FREE LIST %d:\n" ...) has no leading newline
            out.extend(t)
            out.append("\n")
        out.append("\n")
    return "".join(out)
