"""Helpers for the DragonFly page-layer tests."""

from __future__ import annotations

import hashlib

from physmem.dragonfly.vm_page import DragonflyVm


def digest(vm: DragonflyVm) -> str:
    """A hash of the whole page-layer state: page fields, queues, counters, objects."""
    h = hashlib.sha256()
    for name, a in vm.pages.arrays.items():
        h.update(name.encode())
        h.update(a.tobytes())
    q = vm.queues
    h.update(repr((q.head, q.tail, q.lcnt, q.lastq, bytes(q.nonempty))).encode())
    h.update(repr(vm.vmstats).encode())
    for c in vm.cpu:
        h.update(repr((c.vmstats, c.adj, c.cnt)).encode())
    for o in vm.objects.values():
        h.update(repr((o.id, sorted(o.memq.items()), o.resident_page_count,
                       o.generation)).encode())
    h.update(repr((vm.md_refs, sorted(vm.md_mod), vm.deficit, vm.dnweight)).encode())
    if vm.dma_alist is not None:
        h.update(vm.dma_alist.free_map.tobytes())
    if vm.kernel is not None:
        h.update(vm.kernel.digest().encode())
    return h.hexdigest()


