"""The extent mirror fed with net runs (issue 13 part 4): the extent's coalesced regions
depend only on the set of free pages, so the net change of a call's queue changes
(vm_phys.log_net) leaves it exactly as one extent operation per queue change would.
Checked on random change sequences (the netting alone) and on random Kernel calls (a
compiled kernel netting against a plain one applying every change), and the constrained
allocator's answers against main's."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import physmem
from physmem.freebsd import vm_phys as V
from physmem.netbsd.extent import Extent
from tests.conftest import DATA, PAGE

NPAGES = 256


def _extents(free: set[int]) -> tuple[Extent, Extent]:
    """Two extents of NPAGES pages whose holes are ``free`` (page numbers)."""
    out = []
    for _ in range(2):
        ex = Extent("t", 0, NPAGES * PAGE - 1)
        assert ex.alloc_region(0, NPAGES * PAGE) == 0
        for p in sorted(free):
            assert ex.free(p * PAGE, PAGE) == 0
        out.append(ex)
    return out[0], out[1]


@pytest.mark.parametrize("seed", range(6))
def test_netted_log_leaves_the_extent_as_the_changes_one_by_one(seed):
    """Random consistent sequences of block adds and removes (orders 0-4 over 256 pages),
    a few page-array entries among them, one "call" at a time: the per-change extent and
    the netted one print the same after every call, the netted one took one operation per
    run, and the page-array entries come out first, in their order."""
    rng = random.Random(seed)
    k = physmem.boot("firecracker-128m", lazy=False)
    phys = k.phys
    nv = phys.nv
    md = phys._log_md[0]
    at = nv[md + 3]
    room = 3 * phys.log_cap[0]
    free = {p for p in range(NPAGES) if rng.random() < 0.5}
    one, net = _extents(free)
    for _call in range(150):
        log: list[tuple[int, int, int]] = []
        for _ in range(rng.randint(1, 14)):
            if rng.random() < 0.1:
                log.append((V.LOG_INIT, rng.randrange(1 << 20),
                            rng.randrange(12)))
                continue
            o = rng.randrange(5)
            m = rng.randrange(NPAGES >> o) << o
            pages = set(range(m, m + (1 << o)))
            if pages <= free:           # a free block leaves the queues
                free -= pages
                assert one.alloc_region(m * PAGE, len(pages) * PAGE) == 0
                log.append((V.LOG_REM, m, o))
            elif not pages & free:      # an allocated block is queued
                free |= pages
                assert one.free(m * PAGE, len(pages) * PAGE) == 0
                log.append((V.LOG_ADD, m, o))
        for i, (kind, m, x) in enumerate(log):
            nv[at + 3 * i], nv[at + 3 * i + 1], nv[at + 3 * i + 2] = kind, m, x
        nv[md + 2] = len(log)
        n = V.log_net.py(nv, md, room)
        out = [tuple(nv[at + 3 * i:at + 3 * i + 3].tolist()) for i in range(n)]
        nv[md + 2] = 0
        changes = sum(1 for kind, _m, _x in log if kind in (V.LOG_ADD, V.LOG_REM))
        kept = [e for e in log if e[0] == V.LOG_INIT]
        if changes < 2:
            assert out == log           # nothing to net
            runs = [(kind, m, 1 << x) for kind, m, x in log
                    if kind in (V.LOG_ADD, V.LOG_REM)]
        else:
            assert out[:len(kept)] == kept
            assert out[-1][0] == V.LOG_NET and out[-1][1] == changes
            runs = out[len(kept):-1]
            assert out[-1][2] == len(runs) <= changes
            assert [m for _k, m, _n in runs] == sorted(m for _k, m, _n in runs)
        for kind, m, npages in runs:
            if kind in (V.LOG_ADD, V.LOG_FREED):
                assert net.free(m * PAGE, npages * PAGE) == 0
            else:
                assert net.alloc_region(m * PAGE, npages * PAGE) == 0
        one.check()
        net.check()
        assert net.print() == one.print()


def _workload(k: physmem.Kernel, rng: random.Random, held: list[tuple[int, int]]) -> None:
    """One random Kernel call that changes the free queues."""
    r = rng.random()
    if r < 0.4 or not held:
        o = rng.choice((0, 0, 0, 1, 2, 4, 9))
        pool = rng.choice(("default", "direct"))
        if rng.random() < 0.8:
            pa = k.alloc_pages(0, pool, o)
        else:
            pa = k.alloc_freelist_pages(0, rng.choice(("default", "lowmem")), pool, o)
        if pa is not None:
            held.append((pa, 1 << o))
    elif r < 0.5:
        n = rng.choice((1, 3, 16, 100))
        held.extend((pa, n) for pa, n in k.alloc_npages_runs(0, "default", n))
    elif r < 0.6:
        n = rng.choice((1, 5, 64, 700))
        pa = k.alloc_contig(0, n, 0, 1 << 40, PAGE << rng.randrange(4), 0)
        if pa is not None:
            held.append((pa, n))
    elif r < 0.65:
        n = rng.choice((1, 4, 33))
        pa = k.alloc_constrained(n, 0, 1 << 40, PAGE << rng.randrange(3), 0)
        if pa is not None:
            held.append((pa, n))
    else:
        pa, n = held.pop(rng.randrange(len(held)))
        if n & (n - 1) == 0 and not (pa >> 12) & (n - 1) and rng.random() < 0.5:
            k.free_pages(pa, n.bit_length() - 1)
        else:
            k.free_contig(pa, n)


@pytest.mark.parametrize("lazy", [False, True])
def test_compiled_calls_netted_keep_the_extent_of_one_operation_per_change(lazy):
    """A compiled kernel (the one-block fast paths hand their block to the mirror, the
    other calls' logs netted) and a plain one whose netting is turned off (every queue
    change one extent operation, seed 002's design) run the same random calls: their
    extents print the same after every call, both check, the queue changes counted are
    equal, and the netted mirror applied fewer operations."""
    netted = physmem.boot("firecracker-128m", lazy=lazy, jit=True)
    each = physmem.boot("firecracker-128m", lazy=lazy, jit=False)
    each.phys._k = each.phys._k._replace(net=lambda st, md, room: st[md + 2])
    mirrors = [k.attach_extent_mirror() for k in (netted, each)]
    assert netted.phys.obs == V.OBS_DIRECT
    rngs = [random.Random(5), random.Random(5)]
    helds: list[list[tuple[int, int]]] = [[], []]
    for step in range(600):
        for k, rng, held in zip((netted, each), rngs, helds, strict=True):
            _workload(k, rng, held)
        assert helds[0] == helds[1]
        assert mirrors[0].ex.print() == mirrors[1].ex.print(), step
        if step % 50 == 0:
            for m in mirrors:
                m.check()
    for m in mirrors:
        m.check()
    c_net, c_each = (m.counts() for m in mirrors)
    assert c_each["extent_ops"] == c_each["queue_changes"]
    assert c_net["queue_changes"] == c_each["queue_changes"]
    assert c_net["extent_ops"] < c_net["queue_changes"]


def test_two_observers_get_each_calls_net_change():
    """The extent mirror and pglist's free bitmap attached together: the one-block fast
    paths hand each call's block to both (VmPhys.net_add / net_rem loop over them), the
    other paths their logs; after random calls (lazy runs among them) the extent's holes
    and the bitmap are both exactly the free pages."""
    k = physmem.boot("firecracker-128m", lazy=True, jit=True)
    mirror = k.attach_extent_mirror()
    assert k.pglist_alloc(1) is not None            # attaches the bitmap
    phys = k.phys
    assert phys.obs == V.OBS_DIRECT and len(phys.on_add) == 2
    rng = random.Random(9)
    held: list[tuple[int, int]] = []
    for _ in range(500):
        _workload(k, rng, held)
    mirror.check()
    free = np.zeros(phys.pages.npages, dtype=bool)
    for _d, _f, _p, o, m in phys.free_blocks():
        free[m - phys.pages.base_pfn:m - phys.pages.base_pfn + (1 << o)] = True
    assert (k.pglist.free.bits == free).all()
    assert phys.nv[phys.cfg + V.C_POPS] > 0        # lazy runs' chunks taken compiled


@pytest.mark.parametrize("call", ["free_pages", "free_contig"])
def test_a_free_left_to_python_at_a_stage_keeps_the_extent_in_step(call):
    """A compiled free whose merge meets a buddy only Python can judge (no head, its word
    not dense: initialised alone, the page array's ``lone``) stops there and Python
    finishes (free_pages: all of it, stage 1; free_contig: the tail piece, stage 3).  The
    part done compiled reaches the mirror as one logged run, the rest through Python's
    log: the extent prints as a plain kernel's with one operation per change, and the
    queue changes count the same.  (The buddy is an allocated page whose word is moved
    from the dense array to ``lone`` for the call: no merge either way.)"""
    kernels = [physmem.boot("firecracker-128m", lazy=False, jit=jit) for jit in (True, False)]
    kernels[1].phys._k = kernels[1].phys._k._replace(net=lambda st, md, room: st[md + 2])
    mirrors = [k.attach_extent_mirror() for k in kernels]
    npages = 3 if call == "free_contig" else 1
    for k in kernels:                       # the compiled fast paths' first calls
        k.free_contig(k.alloc_contig(0, 4, 0, 1 << 40, 4 * PAGE, 0), 4)
        k.free_pages(k.alloc_pages(0, "default", 0), 0)
    stages = []
    for k in kernels:
        # four pages aligned to 4: the run (or the one page) ends just below its last,
        # whose buddy at order 0 is that fourth page, allocated
        base = k.alloc_contig(0, 4, 0, 1 << 40, 4 * PAGE, 0)
        if npages == 1:
            k.free_contig(base, 2)
        pa = base + (3 - npages) * PAGE
        f = (base >> 12) + 3
        phys = k.phys
        i = f - phys.pages.base_pfn
        w = phys.pages.mv[i]
        if k is kernels[0]:
            phys.pages.lone[f] = w
            phys.kwords[i] = 0
            kf, kc = phys.kfree, phys.kfreec
            phys.kfree = lambda *a, kf=kf: _stage(stages, kf, a)
            phys.kfreec = lambda *a, kc=kc: _stage(stages, kc, a)
        if call == "free_pages":
            k.free_pages(pa, 0)
        else:
            k.free_contig(pa, npages)
        if k is kernels[0]:
            phys.kwords[i] = w
            del phys.pages.lone[f]
            phys.kfree, phys.kfreec = kf, kc
        k.free_pages(f << 12, 0)
    assert stages == [1 if call == "free_pages" else 3]
    assert mirrors[0].ex.print() == mirrors[1].ex.print()
    for m in mirrors:
        m.check()
    assert mirrors[0].counts()["queue_changes"] == mirrors[1].counts()["queue_changes"]


def _stage(stages: list[int], fn, args) -> int:
    r = fn(*args)
    stages.append(r & 3)
    return r


def test_counts_of_a_pair_that_splits_and_merges():
    """An order-0 pair that splits s orders and merges them back: 2 (s + 1) queue
    changes, 2 extent operations; one that neither splits nor merges: 2 and 2."""
    k = physmem.boot("firecracker-128m", lazy=False)
    mirror = k.attach_extent_mirror()
    p = k.param.freepool_default
    s = next(o for o in range(k.param.nfreeorder) if k.phys.count(0, 0, p, o))
    assert s >= 2
    mirror.reset_counts()
    k.free_pages(k.alloc_pages(0, "default", 0), 0)
    assert mirror.counts() == {"queue_changes": 2 * (s + 1), "extent_ops": 2}
    k.alloc_pages(0, "default", 0)          # its buddy stays on the order-0 queue
    mirror.reset_counts()
    k.free_pages(k.alloc_pages(0, "default", 0), 0)
    assert mirror.counts() == {"queue_changes": 2, "extent_ops": 2}
    mirror.check()


# Main's answers (before the netting) on this workload: tests/data/constrained_main.json,
# made by running _constrained_answers on main's tree.
def _constrained_answers(machine: str, lazy: bool, seed: int, n: int) -> list:
    k = physmem.boot(machine, lazy=lazy)
    k.attach_extent_mirror()
    rng = random.Random(seed)
    held: list[tuple[int, int]] = []
    out: list = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            o = rng.choice((0, 0, 1, 2, 3, 5))
            pa = k.alloc_pages(rng.randrange(k.phys.ndomains),
                               rng.choice(("default", "direct")), o)
            out.append(pa)
            if pa is not None:
                held.append((pa, 1 << o))
        elif r < 0.5:
            npages = rng.choice((1, 3, 8, 17, 64))
            pa = k.alloc_contig(0, npages, 0, 1 << 40, 4096 << rng.choice((0, 2, 4)), 0)
            out.append(pa)
            if pa is not None:
                held.append((pa, npages))
        elif r < 0.7:
            npages = rng.choice((1, 2, 4, 4, 8, 16, 64, 256))
            high = rng.choice((16 << 20, 1 << 32, (1 << 64) - 1))
            align = 4096 << rng.choice((0, 1, 2, 4, 6))
            boundary = rng.choice((0, 0, 1 << 16, 1 << 20))
            if boundary and boundary < npages * 4096:
                boundary = 0
            pa = k.alloc_constrained(npages, 0, high, align, boundary)
            out.append(["c", pa])
            if pa is not None:
                held.append((pa, npages))
        elif r < 0.75:
            npages = rng.choice((1, 4, 8))
            pas = k.pglist_alloc(npages, 0, 1 << 32, 4096, 0, nsegs=rng.choice((1, npages)))
            out.append(["p", pas])
            if pas is not None:
                held.extend((p, 1) for p in pas)
        elif held:
            pa, npages = held.pop(rng.randrange(len(held)))
            k.free_contig(pa, npages)
    k.check()
    out.append(k.digest())
    return out


CONSTRAINED_RUNS = (("firecracker-128m", False), ("firecracker-128m", True),
                    ("server-96g-2dom", True))


@pytest.mark.parametrize(("machine", "lazy"), CONSTRAINED_RUNS)
def test_constrained_allocators_answer_as_main_did(machine, lazy):
    """alloc_constrained (through the mirror's extent), pglist_alloc and the buddy
    allocator among them give main's pages on a random workload, and end in main's
    state (digest)."""
    want = json.loads((DATA / "constrained_main.json").read_text())[f"{machine}/{lazy}"]
    got = json.loads(json.dumps(_constrained_answers(machine, lazy, 11, 1500)))
    assert sum(1 for a in got if isinstance(a, list) and a[0] == "c" and a[1]) > 100
    assert got == want
