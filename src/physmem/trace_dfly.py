"""Trace operations for DragonFly's page layer (docs/trace-format.md, "DragonFly page
layer").  :class:`DflyOps` holds the :class:`~physmem.dragonfly.vm_page.DragonflyVm` a trace
boots with ``dfly_boot`` and its named objects; :class:`~physmem.trace.Replayer` merges
:meth:`DflyOps.ops` into its table.  Pages are named by physical address (or ``$NAME`` from a
``vm_page_alloc … -> NAME``), objects by the name given to ``object_create``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import StateError, TraceFormatError

# DragonFly's modules are imported by the operations that need them (dfly_boot first), not
# with the trace engine: a FreeBSD trace never needs them (~15 modules; issue 13, the
# start-up of `physmem replay`).
if TYPE_CHECKING:
    from .dragonfly.vm_object import VmObject
    from .dragonfly.vm_page import DragonflyVm

# The operations that return a page (may bind "-> NAME") and those whose first argument is
# a page (may be "$NAME").
DFLY_HANDLE_OPS = frozenset(("vm_page_alloc", "vm_page_lookup", "vm_page_grab",
                             "vm_page_alloczwq", "vm_page_alloc_contig"))
DFLY_PAGE_OPS = frozenset((
    "vm_page_free", "vm_page_wakeup", "vm_page_busy_try", "vm_page_sbusy_try",
    "vm_page_sbusy_drop", "vm_page_wire", "vm_page_unwire", "vm_page_hold",
    "vm_page_unhold", "vm_page_activate", "vm_page_deactivate", "vm_page_cache",
    "vm_page_dontneed", "vm_page_unqueue", "vm_page_insert", "vm_page_remove",
    "vm_page_rename", "vm_page_set_valid", "vm_page_set_validclean",
    "vm_page_set_validdirty", "vm_page_clear_dirty", "vm_page_dirty", "vm_page_is_valid",
    "vm_page_test_dirty", "vm_page_reference", "vm_page_modify", "vm_page_info",
    "vm_page_try_to_free", "vm_page_freezwq", "vm_page_free_contig", "vm_page_need_commit",
    "vm_page_io_start", "vm_page_io_finish"))


def page_info(vm: DragonflyVm, m: int) -> str:
    """One line with a page's struct vm_page fields (physmem's own view)."""
    from .dragonfly.vm_page_array import PQ_NONE, QUEUE_NAMES, queue_base
    p = vm.pages
    q = p.queue[m]
    qname = "PQ_NONE" if q == PQ_NONE else f"{QUEUE_NAMES[queue_base(q)]}+{q - queue_base(q)}"
    return (f"{vm.pa(m):#x} queue={qname} pc={p.pc[m]} flags={p.flags[m]:#x} "
            f"busy={p.busy_count[m]:#x} wire={p.wire_count[m]} hold={p.hold_count[m]} "
            f"act={p.act_count[m]} valid={p.valid[m]:#04x} dirty={p.dirty[m]:#04x} "
            f"object={p.obj[m]} pindex={p.pindex[m]}")


class DflyOps:
    """The DragonFly operations of one replay."""

    def __init__(self, parse_u64: Callable[[str, str], int]) -> None:
        self.vm: DragonflyVm | None = None
        self.objects: dict[str, VmObject] = {}
        self.u64 = parse_u64

    # -- helpers --------------------------------------------------------------------------
    def _vm(self) -> DragonflyVm:
        if self.vm is None:
            raise StateError("no DragonFly page layer: dfly_boot first")
        return self.vm

    @staticmethod
    def _n(tok: list[str], lo: int, hi: int | None = None) -> None:
        n = len(tok) - 1
        if n < lo or n > (lo if hi is None else hi):
            want = lo if hi is None else f"{lo}..{hi}"
            raise TraceFormatError(f"{tok[0]}: expected {want} arguments, got {n}")

    def _page(self, s: str) -> int:
        return self._vm().page(self.u64(s, "address"))

    def _obj(self, s: str) -> VmObject | None:
        if s == "-":
            return None
        o = self.objects.get(s)
        if o is None:
            raise TraceFormatError(f"unknown object '{s}'")
        return o

    def _addr(self, m: int | None) -> str:
        return "NULL" if m is None else f"{self._vm().pa(m):#x}"

    def _bool(self, s: str) -> bool:
        if s not in ("0", "1"):
            raise TraceFormatError(f"expected 0 or 1, got '{s}'")
        return s == "1"

    # -- the table ------------------------------------------------------------------------
    def ops(self) -> dict[str, Callable[[list[str]], str]]:
        simple = {name: self._simple(name) for name in (
            "vm_page_free", "vm_page_wakeup", "vm_page_wire",
            "vm_page_hold", "vm_page_unhold", "vm_page_activate", "vm_page_cache",
            "vm_page_dontneed", "vm_page_unqueue", "vm_page_dirty", "vm_page_test_dirty",
            "vm_page_reference", "vm_page_modify", "vm_page_freezwq",
            "vm_page_need_commit")}
        simple["vm_page_io_start"] = self._simple("io_start")
        simple["vm_page_io_finish"] = self._simple("io_finish")
        simple["vm_page_sbusy_drop"] = self._simple("sbusy_drop")
        bits = {name: self._bits(name) for name in (
            "vm_page_set_valid", "vm_page_set_validclean", "vm_page_set_validdirty",
            "vm_page_clear_dirty", "vm_page_is_valid")}
        return {
            "dfly_boot": self.op_dfly_boot,
            "object_create": self.op_object_create,
            "vm_page_alloc": self.op_vm_page_alloc,
            "vm_page_grab": self.op_vm_page_grab,
            "vm_page_alloczwq": self.op_vm_page_alloczwq,
            "vm_page_alloc_contig": self.op_vm_page_alloc_contig,
            "vm_page_free_contig": self.op_vm_page_free_contig,
            "vm_page_busy_try": self.op_vm_page_busy_try,
            "vm_page_sbusy_try": self.op_vm_page_sbusy_try,
            "vm_page_unwire": self.op_vm_page_unwire,
            "vm_page_deactivate": self.op_vm_page_deactivate,
            "vm_page_try_to_free": self.op_vm_page_try_to_free,
            "vm_page_insert": self.op_vm_page_insert,
            "vm_page_remove": self.op_vm_page_remove,
            "vm_page_rename": self.op_vm_page_rename,
            "vm_page_lookup": self.op_vm_page_lookup,
            "vm_page_hash_get": self.op_vm_page_hash_get,
            "vm_page_info": self.op_vm_page_info,
            "vm_object_madvise": self.op_vm_object_madvise,
            "vm_pageout": self.op_vm_pageout,
            "vm_wait": self.op_vm_wait,
            "vmstats_rollup": self.op_vmstats_rollup,
            "show_page": self.op_show_page,
            "show_pageq": self.op_show_pageq,
            "dfly_sysctl": self.op_dfly_sysctl,
            "dfly_counts": self.op_dfly_counts,
            **simple, **bits,
        }

    def _simple(self, name: str) -> Callable[[list[str]], str]:
        def op(tok: list[str]) -> str:
            self._n(tok, 1)
            m = self._page(tok[1])
            getattr(self._vm(), name)(m)
            return "ok"
        return op

    def _bits(self, name: str) -> Callable[[list[str]], str]:
        def op(tok: list[str]) -> str:
            self._n(tok, 3)
            m = self._page(tok[1])
            r = getattr(self._vm(), name)(m, self.u64(tok[2], "base"), self.u64(tok[3], "size"))
            return "ok" if r is None else str(int(r))
        return op

    # -- operations -----------------------------------------------------------------------
    def op_dfly_boot(self, tok: list[str]) -> str:
        """dfly_boot MACHINE [source=dragonfly|buddy] [cpus=SxC[xT]] [dma_reserved=BYTES]"""
        self._n(tok, 1, 4)
        opts: dict[str, str] = {}
        for t in tok[2:]:
            k, eq, v = t.partition("=")
            if not eq or k not in ("source", "cpus", "dma_reserved"):
                raise TraceFormatError(f"dfly_boot: unknown option '{t}'")
            opts[k] = v
        from .dragonfly.vm_page import CpuTopology, DragonflyVm
        cpus = CpuTopology.parse(opts["cpus"]) if "cpus" in opts else None
        dma = self.u64(opts["dma_reserved"], "dma_reserved") if "dma_reserved" in opts \
            else None
        self.vm = DragonflyVm(tok[1], source=opts.get("source", "dragonfly"), cpus=cpus,
                              dma_reserved=dma)
        self.objects.clear()
        return f"pages {self.vm.vmstats.v_page_count} free {self.vm.vmstats.v_free_count}"

    def op_object_create(self, tok: list[str]) -> str:
        """object_create NAME [TYPE]"""
        self._n(tok, 1, 2)
        if not tok[1].isidentifier():
            raise TraceFormatError(f"bad object name '{tok[1]}'")
        if tok[1] in self.objects:
            raise TraceFormatError(f"object '{tok[1]}' exists")
        o = self._vm().object_create(tok[2] if len(tok) > 2 else "default")
        self.objects[tok[1]] = o
        return f"object {o.id} pg_color {o.pg_color}"

    def _alloc_args(self, tok: list[str]) -> tuple[VmObject | None, int, int]:
        from .dragonfly.vm_page import parse_req
        self._n(tok, 3)
        return self._obj(tok[1]), self.u64(tok[2], "pindex"), parse_req(tok[3])

    def op_vm_page_alloc(self, tok: list[str]) -> str:
        """vm_page_alloc OBJECT|- PINDEX FLAGS"""
        obj, pindex, req = self._alloc_args(tok)
        return self._addr(self._vm().vm_page_alloc(obj, pindex, req))

    def op_vm_page_grab(self, tok: list[str]) -> str:
        obj, pindex, req = self._alloc_args(tok)
        if obj is None:
            raise TraceFormatError("vm_page_grab needs an object")
        return self._addr(self._vm().vm_page_grab(obj, pindex, req))

    def op_vm_page_alloczwq(self, tok: list[str]) -> str:
        from .dragonfly.vm_page import parse_req
        self._n(tok, 2)
        return self._addr(self._vm().vm_page_alloczwq(self.u64(tok[1], "pindex"),
                                                      parse_req(tok[2])))

    def op_vm_page_alloc_contig(self, tok: list[str]) -> str:
        """vm_page_alloc_contig NPAGES HIGH"""
        self._n(tok, 2)
        return self._addr(self._vm().vm_page_alloc_contig(self.u64(tok[1], "npages"),
                                                          self.u64(tok[2], "high")))

    def op_vm_page_free_contig(self, tok: list[str]) -> str:
        self._n(tok, 2)
        self._vm().vm_page_free_contig(self._page(tok[1]), self.u64(tok[2], "npages"))
        return "ok"

    def op_vm_page_busy_try(self, tok: list[str]) -> str:
        """vm_page_busy_try PAGE ALSO_M_BUSY -> 0 (got it) or 1 (busy), as the kernel."""
        self._n(tok, 2)
        return str(int(self._vm().busy_try(self._page(tok[1]), self._bool(tok[2]))))

    def op_vm_page_sbusy_try(self, tok: list[str]) -> str:
        self._n(tok, 1)
        return str(int(self._vm().sbusy_try(self._page(tok[1]))))

    def op_vm_page_unwire(self, tok: list[str]) -> str:
        self._n(tok, 2)
        self._vm().vm_page_unwire(self._page(tok[1]), self._bool(tok[2]))
        return "ok"

    def op_vm_page_deactivate(self, tok: list[str]) -> str:
        self._n(tok, 1, 2)
        athead = self._bool(tok[2]) if len(tok) > 2 else False
        self._vm().vm_page_deactivate(self._page(tok[1]), athead)
        return "ok"

    def op_vm_page_try_to_free(self, tok: list[str]) -> str:
        self._n(tok, 1)
        return str(int(self._vm().vm_page_try_to_free(self._page(tok[1]))))

    def op_vm_page_insert(self, tok: list[str]) -> str:
        self._n(tok, 3)
        m, obj = self._page(tok[1]), self._obj(tok[2])
        if obj is None:
            raise TraceFormatError("vm_page_insert needs an object")
        return str(int(self._vm().vm_page_insert(m, obj, self.u64(tok[3], "pindex"))))

    def op_vm_page_remove(self, tok: list[str]) -> str:
        self._n(tok, 1)
        self._vm().vm_page_remove(self._page(tok[1]))
        return "ok"

    def op_vm_page_rename(self, tok: list[str]) -> str:
        self._n(tok, 3)
        m, obj = self._page(tok[1]), self._obj(tok[2])
        if obj is None:
            raise TraceFormatError("vm_page_rename needs an object")
        self._vm().vm_page_rename(m, obj, self.u64(tok[3], "pindex"))
        return "ok"

    def op_vm_page_lookup(self, tok: list[str]) -> str:
        self._n(tok, 2)
        obj = self._obj(tok[1])
        if obj is None:
            raise TraceFormatError("vm_page_lookup needs an object")
        return self._addr(self._vm().vm_page_lookup(obj, self.u64(tok[2], "pindex")))

    def op_vm_page_hash_get(self, tok: list[str]) -> str:
        """vm_page_hash_get OBJECT PINDEX -> a soft-busied page or NULL."""
        self._n(tok, 2)
        obj = self._obj(tok[1])
        if obj is None:
            raise TraceFormatError("vm_page_hash_get needs an object")
        return self._addr(self._vm().vm_page_hash_get(obj, self.u64(tok[2], "pindex")))

    def op_vm_page_info(self, tok: list[str]) -> str:
        self._n(tok, 1)
        return page_info(self._vm(), self._page(tok[1]))

    def op_vm_object_madvise(self, tok: list[str]) -> str:
        """vm_object_madvise OBJECT PINDEX COUNT willneed|dontneed|free"""
        from .dragonfly.vm_pageout import MADVICE
        self._n(tok, 4)
        obj = self._obj(tok[1])
        if obj is None or tok[4] not in MADVICE:
            raise TraceFormatError("vm_object_madvise OBJECT PINDEX COUNT "
                                   "willneed|dontneed|free")
        return str(self._vm().vm_object_madvise(obj, self.u64(tok[2], "pindex"),
                                                self.u64(tok[3], "count"), MADVICE[tok[4]]))

    def op_vm_pageout(self, tok: list[str]) -> str:
        self._n(tok, 0)
        return str(self._vm().vm_pageout(force=True))

    def op_vm_wait(self, tok: list[str]) -> str:
        self._n(tok, 0)
        self._vm().vm_wait()
        return "ok"

    def op_vmstats_rollup(self, tok: list[str]) -> str:
        self._n(tok, 0)
        self._vm().vmstats_rollup()
        return "ok"

    def op_show_page(self, tok: list[str]) -> str:
        self._n(tok, 0)
        return self._vm().show_page()

    def op_show_pageq(self, tok: list[str]) -> str:
        self._n(tok, 0)
        return self._vm().show_pageq()

    def op_dfly_sysctl(self, tok: list[str]) -> str:
        self._n(tok, 1)
        return self._vm().sysctl(tok[1])

    def op_dfly_counts(self, tok: list[str]) -> str:
        """dfly_counts -> free N cache N inactive N active N hold N (from the queues)."""
        self._n(tok, 0)
        return " ".join(f"{k} {v}" for k, v in self._vm().counts().items())
