"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

Views: DDB's show page / show pageq, per-queue counts, sysctls, the INVARIANTS check.
"""

from __future__ import annotations

from ..errors import ArgumentError
from ..reprs import as_html, as_text, fmt_pages
from .vm_page_array import (
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_L2_SIZE,
)
from .vm_page_defs import (
    EMERG_LAUNDER,
)


class ViewMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # Views
    # ======================================================================================
    def show_page(self) -> str:
        """DDB ``show page``."""
        v = self.vmstats
        names = ("v_free_count", "v_cache_count", "v_inactive_count", "v_active_count",
                 "v_wire_count", "v_free_reserved", "v_free_min", "v_free_target",
                 "v_inactive_target", "v_paging_wait", "v_paging_start", "v_paging_target1",
                 "v_paging_target2")
        return "".join(f"vmstats.{n}: {getattr(v, n)}\n" for n in names)

    def show_pageq(self) -> str:
        """DDB ``show pageq``: per colour lcnt of FREE, CACHE, ACTIVE, INACTIVE."""
        lc = self.queues.lcnt
        out = []
        for name, base in (("PQ_FREE", PQ_FREE), ("PQ_CACHE", PQ_CACHE),
                           ("PQ_ACTIVE", PQ_ACTIVE), ("PQ_INACTIVE", PQ_INACTIVE)):
            out.append(f"{name}:" + "".join(f" {lc[base + i]}" for i in range(PQ_L2_SIZE))
                       + "\n")
        return "".join(out)

    def sysctl(self, name: str) -> str:
        if name == "vm.dma_reserved":
            return str(self.dma_reserved)
        if name == "vm.dma_free_pages":
            return str(self.dma_alist.bfree if self.dma_alist else 0)
        if name == "vm.page_hash_vnode_only":
            return str(int(self.hash_vnode_only))
        if name == "vm.page_free_hysteresis":
            return str(self.page_free_hysteresis)
        if name == "vm.anonmem_decline":
            return str(self.anonmem_decline)
        if name == "vm.filemem_decline":
            return str(self.filemem_decline)
        if name == "vm.emerg_launder":
            return str(EMERG_LAUNDER)
        if name == "vm.contig_verbose":
            return "0"
        raise ArgumentError(f"unknown oid {name!r} (vm.dma_reserved, vm.dma_free_pages, "
                            "vm.page_hash_vnode_only, vm.page_free_hysteresis, "
                            "vm.anonmem_decline, vm.filemem_decline, vm.emerg_launder, "
                            "vm.contig_verbose)")

    def _summary(self) -> tuple[str, list[tuple[str, str]]]:
        """(title, rows) for repr() and Jupyter: pages per queue, counted from the queues
        (vmstats lag until vmstats_rollup)."""
        c = self.counts()
        rows = [("free-page source", self.source), ("CPUs", str(self.ncpus)),
                *((q, fmt_pages(n)) for q, n in c.items()),
                ("wired", fmt_pages(self.vmstats.v_wire_count)),
                ("objects", f"{len(self.objects):,}")]
        return f"DragonflyVm {self.machine.name} ({self.machine.arch})", rows

    def __repr__(self) -> str:
        return as_text(*self._summary())

    def _repr_html_(self) -> str:
        return as_html(*self._summary())

    def counts(self) -> dict[str, int]:
        """Pages per queue base, counted from the queues."""
        lc = self.queues.lcnt
        return {name: sum(lc[base:base + PQ_L2_SIZE]) for base, name in
                ((PQ_FREE, "free"), (PQ_CACHE, "cache"), (PQ_INACTIVE, "inactive"),
                 (PQ_ACTIVE, "active"), (PQ_HOLD, "hold"))}

    def check(self) -> None:
        """INVARIANTS: every queue's links and lcnt; every page on at most one queue and
        on the one its ``queue`` field names; vmstats counts equal the queues (after a
        rollup); free pages unbusied, unwired, unheld and without an object; objects and
        pages agree."""
        from .invariants import check_dragonfly
        check_dragonfly(self)
