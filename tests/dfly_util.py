"""Helpers for the DragonFly page-layer tests."""

from __future__ import annotations

import hashlib

from physmem.dragonfly.vm_page import DragonflyVm


def digest(vm: DragonflyVm) -> str:
    """A hash of the whole page-layer state: page fields, queues, counters, objects."""
    h = hashlib.sha256()
    for name, a in vm.queues.fields().items():     # implicit blocks as materialised
        h.update(name.encode())
        h.update(a.tobytes())
    q = vm.queues
    h.update(repr((list(q.head), list(q.tail), list(q.lcnt), list(q.lastq),
                   bytes(q.nonempty))).encode())
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




MIB = 1 << 20


def race_run(source: str, threads: int = 8, ops: int = 600, seed: int = 1,
             daemon: bool = True, witness: bool = False, mib: int = 48) -> list[str]:
    """One multi-threaded run on a ``mib`` MiB machine with 1 x ``threads`` CPUs: even
    threads churn anonymous objects (``ops`` steps), odd ones read 4 x ``ops`` pages of
    files; returns what went wrong (a thread's exception, the INVARIANTS checker)."""
    import threading

    from physmem.dfly_workloads import anon_churn, pagecache_fill
    from physmem.dragonfly.vm_page import CpuTopology
    from physmem.machine import Machine, RamRange

    m = Machine(f"t{mib}", [RamRange(0x100000, mib * MIB)], page_array="none")
    vm = DragonflyVm(m, source=source, cpus=CpuTopology(1, threads, 1), witness=witness)
    problems: list[str] = []

    def body(c: int) -> None:
        try:
            if c % 2:
                pagecache_fill(vm, 4 * ops << 12, files=2, seed=seed * 100 + c, cpu=c)
            else:
                anon_churn(vm, ops, seed=seed * 100 + c, cpu=c)
        except BaseException as e:       # collected: a test thread must not die silently
            problems.append(f"thread {c}: {type(e).__name__}: {e}")

    if daemon:
        vm.start_pagedaemon()
    try:
        ts = [threading.Thread(target=body, args=(c,)) for c in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        if daemon:
            vm.stop_pagedaemon()
    vm.vmstats_rollup()
    try:
        vm.check()
    except AssertionError as e:
        problems.append(f"INVARIANTS: {e}")
    return problems
