"""DragonFly's page layer (sys/vm/vm_page.c), part of
:class:`~physmem.dragonfly.vm_page.DragonflyVm`.

DEV_BSIZE valid/dirty bits (vm_page_bits, set_valid*, clear_dirty, is_valid, dirty,
test_dirty) and fictitious pages (vm_page_initfake).
"""

from __future__ import annotations

from ..bits import PAGE_SHIFT
from ..errors import AddressError, ArgumentError
from .locks import page_op
from .vm_page_array import (
    DEV_BSIZE,
    PG_NOSYNC,
    PQ_CACHE,
    PQ_FREE,
    VM_PAGE_BITS_ALL,
    queue_base,
)
from .vm_page_defs import (
    FakePage,
    PageStateError,
)


class BitsMixin:
    """Mixed into DragonflyVm (its state is set up there)."""

    # ======================================================================================
    # Valid and dirty bits
    # ======================================================================================
    @staticmethod
    def vm_page_bits(base: int, size: int) -> int:
        if not isinstance(base, int) or not isinstance(size, int) or base < 0 or size < 0 \
                or base + size > 1 << PAGE_SHIFT:
            raise ArgumentError(f"vm_page_bits: [{base}, {base}+{size}) is not inside the "
                                "page")
        if size == 0:
            return 0
        return (2 << ((base + size - 1) >> 9)) - (1 << (base >> 9))

    def _zero_valid(self, m: int, base: int, size: int) -> None:
        """Zero the partial chunks at either end that are not valid yet."""
        v = self.pages.valid[m]
        if base & (DEV_BSIZE - 1) and not v & (1 << (base >> 9)):
            self.zeroed_pages += 1
        end = base + size
        if end & (DEV_BSIZE - 1) and not v & (1 << (end >> 9)):
            self.zeroed_pages += 1

    @page_op()
    def vm_page_set_valid(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        self._zero_valid(m, base, size)
        self.pages.valid[m] |= bits

    @page_op()
    def vm_page_set_validclean(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        self._zero_valid(m, base, size)
        p = self.pages
        p.valid[m] |= bits
        p.dirty[m] &= ~bits
        if bits == VM_PAGE_BITS_ALL:
            p.flags[m] &= ~PG_NOSYNC

    @page_op()
    def vm_page_set_validdirty(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        p = self.pages
        p.valid[m] |= bits
        p.dirty[m] |= bits
        self._object_maybe_dirty(m)

    @page_op()
    def vm_page_clear_dirty(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        p = self.pages
        p.dirty[m] &= ~bits
        if bits == VM_PAGE_BITS_ALL:
            p.flags[m] &= ~PG_NOSYNC

    @page_op()
    def vm_page_dirty(self, m: int) -> None:
        p = self.pages
        if queue_base(p.queue[m]) in (PQ_FREE, PQ_CACHE):
            raise PageStateError(f"vm_page_dirty: page {self.pa(m):#x} is free or cached")
        if p.dirty[m] != VM_PAGE_BITS_ALL:
            p.dirty[m] = VM_PAGE_BITS_ALL
            self._object_maybe_dirty(m)

    def _object_maybe_dirty(self, m: int) -> None:
        """vm_object_set_writeable_dirty on the page's object, if it has one."""
        o = self.objects.get(self.pages.obj[m])
        if o is not None:
            o.set_writeable_dirty()

    @page_op()
    def vm_page_set_invalid(self, m: int, base: int, size: int) -> None:
        bits = self.vm_page_bits(base, size)
        p = self.pages
        p.valid[m] &= ~bits
        p.dirty[m] &= ~bits
        o = self.objects.get(p.obj[m])
        if o is not None:
            o.bump_generation()

    @page_op()
    def vm_page_zero_invalid(self, m: int, setvalid: bool) -> None:
        v = self.pages.valid[m]
        runs, prev = 0, True
        for c in range(8):
            inv = not v & (1 << c)
            if inv and prev:
                runs += 1
            prev = not inv
        self.zeroed_pages += runs
        if setvalid:
            self.pages.valid[m] = VM_PAGE_BITS_ALL

    @page_op(refuse_free=False)
    def vm_page_is_valid(self, m: int, base: int, size: int) -> bool:
        bits = self.vm_page_bits(base, size)
        v = self.pages.valid[m]
        return bool(v and v & bits == bits)

    @page_op()
    def vm_page_test_dirty(self, m: int) -> None:
        self._test_dirty(m)

    def _test_dirty(self, m: int) -> None:
        """vm_page_test_dirty's work (page valid and not free): a page the pmap saw
        written becomes all dirty."""
        if m in self.md_mod and self.pages.dirty[m] != VM_PAGE_BITS_ALL:
            self.vm_page_dirty(m)

    @page_op()
    def vm_page_undirty(self, m: int) -> None:
        self.pages.dirty[m] = 0

    # ======================================================================================
    # Fictitious pages
    # ======================================================================================
    def vm_page_initfake(self, paddr: int, memattr: int = 0) -> FakePage:
        """A fictitious page for device memory at ``paddr`` (outside RAM): hard-busied,
        wired, never queued, never hashed."""
        if not isinstance(paddr, int) or paddr < 0 or paddr & ((1 << PAGE_SHIFT) - 1):
            raise AddressError(f"vm_page_initfake: {paddr!r} is not a page address")
        f = self.fake.get(paddr)
        if f is None:
            f = self.fake[paddr] = FakePage(paddr)
        f.memattr = memattr
        return f
