"""INVARIANTS for the DragonFly page layer: :func:`check_dragonfly` verifies the whole state
and raises :class:`~physmem.errors.InvariantError` listing what is wrong.  Read-only: it
folds the per-CPU deltas into a private sum, not into vmstats.

Checked:

* queues (implicit blocks read by rule, see :class:`~.vm_page_array.Queues`, so the
  rule's links are checked against their materialised neighbours): every page's
  ``next``/``prev`` agree with its neighbours, which are on the same
  queue; each non-empty queue has exactly one first page (its head) and one last (its tail);
  ``lcnt`` equals the pages whose ``queue`` names it -- so every page is on at most one
  queue, the one its field names -- and the non-empty marks agree; small machines also walk
  every list (no cycles);
* counts: global vmstats plus the pending per-CPU deltas equal the queues (free, cache,
  inactive, active + hold) and the wired pages; with the buddy source, v_free_count equals
  the buddy allocator's free pages, which pass FreeBSD's own INVARIANTS;
* free pages are unbusied, unwired, unheld, clean, invalid and in no object; pages on
  PQ_HOLD are held; FICTITIOUS or UNQUEUED pages are on no queue; act_count <= ACT_MAX;
* objects and pages agree both ways (each object's list of pages, the object table's
  entries, ``resident_page_count``); DMA-reserve pages
  still in the alist are wired and fictitious.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvariantError
from .vm_object import O_RPC, T_M, T_META, T_OID, T_PINDEX, TM_COUNT, tab_lookup
from .vm_page_array import (
    ACT_MAX,
    COUNTS,
    MOVED,
    PG_FICTITIOUS,
    PG_UNQUEUED,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_COUNT,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_L2_SIZE,
)

if TYPE_CHECKING:
    from .vm_page import DragonflyVm

WALK_LIMIT = 1 << 19


def check_dragonfly(vm: DragonflyVm) -> None:
    """Raise InvariantError if the page layer's state is inconsistent."""
    errs: list[str] = []
    q = vm.queues
    a = q.fields()                        # implicit blocks filled by rule, nothing written
    imp = q.implicit_arr
    if np.any((imp & (MOVED - 1)) > PQ_L2_SIZE // q.share):
        errs.append("an implicit block names a socket the machine does not have")
    if q.moves is None and np.any(imp & MOVED):
        errs.append("an implicit block flagged MOVED without the finalize's moves")
    queue = a["queue"].astype(np.int64)
    nxt = a["next"].astype(np.int64)
    prv = a["prev"].astype(np.int64)
    on = np.flatnonzero(queue)
    # Link symmetry: next's prev is me, prev's next is me, neighbours share my queue.
    n_on, p_on = nxt[on], prv[on]
    hn = n_on > 0
    bad = on[hn][(prv[n_on[hn] - 1] != on[hn] + 1) | (queue[n_on[hn] - 1] != queue[on[hn]])]
    if len(bad):
        errs.append(f"{len(bad)} pages whose next link is not mutual, e.g. index {bad[0]}")
    hp = p_on > 0
    bad = on[hp][(nxt[p_on[hp] - 1] != on[hp] + 1) | (queue[p_on[hp] - 1] != queue[on[hp]])]
    if len(bad):
        errs.append(f"{len(bad)} pages whose prev link is not mutual, e.g. index {bad[0]}")
    off = np.flatnonzero((queue == 0) & ((nxt != 0) | (prv != 0)))
    if len(off):
        errs.append(f"{len(off)} unqueued pages with links, e.g. index {off[0]}")
    lcnt = np.bincount(queue[on], minlength=PQ_COUNT)
    heads = np.bincount(queue[on][p_on == 0], minlength=PQ_COUNT)
    tails = np.bincount(queue[on][n_on == 0], minlength=PQ_COUNT)
    for qi in np.flatnonzero((lcnt != np.asarray(q.lcnt)) | (heads != (lcnt > 0)) |
                             (tails != (lcnt > 0))).tolist()[:5]:
        errs.append(f"queue {qi}: lcnt {q.lcnt[qi]}, pages naming it {lcnt[qi]}, "
                    f"heads {heads[qi]}, tails {tails[qi]}")
    ne = np.frombuffer(bytes(q.nonempty), dtype=np.uint8)
    bad_ne = np.flatnonzero(ne != (lcnt > 0))
    if len(bad_ne):
        errs.append(f"queue {bad_ne[0]}: non-empty mark {ne[bad_ne[0]]}, lcnt {lcnt[bad_ne[0]]}")
    for qi in np.flatnonzero(lcnt).tolist():
        h, t = q.head[qi], q.tail[qi]
        if not h or prv[h - 1] != 0 or queue[h - 1] != qi or not t or nxt[t - 1] != 0 \
                or queue[t - 1] != qi:
            errs.append(f"queue {qi}: head/tail do not name its ends")
            break
    if len(on) <= WALK_LIMIT:
        for qi in np.flatnonzero(lcnt).tolist():
            n, i = 0, q.head[qi]
            while i:
                n += 1
                if n > lcnt[qi]:
                    break
                i = int(nxt[i - 1])
            if n != lcnt[qi]:
                errs.append(f"queue {qi}: walking it finds {n} pages, lcnt {lcnt[qi]}")
                break
    # Counts.
    g = vm.vmstats
    total = {k: getattr(g, k) + sum(c.adj[k] for c in vm.cpu) for k in COUNTS}

    def qsum(base: int) -> int:
        return int(lcnt[base:base + PQ_L2_SIZE].sum())

    want = {"v_cache_count": qsum(PQ_CACHE), "v_inactive_count": qsum(PQ_INACTIVE),
            "v_active_count": qsum(PQ_ACTIVE) + qsum(PQ_HOLD),
            "v_wire_count": int(np.count_nonzero(a["wire_count"]))}
    if vm.kernel is not None:
        want["v_free_count"] = sum(vm.kernel.free_counts)
        if qsum(PQ_FREE):
            errs.append("buddy source but pages on PQ_FREE")
    else:
        want["v_free_count"] = qsum(PQ_FREE)
    for k, v in want.items():
        if total[k] != v:
            errs.append(f"{k} is {total[k]} (global + per-CPU deltas), the pages say {v}")
    # Free, held, unqueued pages.
    base_of = np.where(queue > 0, ((queue - 1) // PQ_L2_SIZE) * PQ_L2_SIZE + 1, 0)
    free = np.flatnonzero(base_of == PQ_FREE)
    if vm.kernel is not None:
        fp = _buddy_free_indices(vm)
        free = np.concatenate([free, fp])
    for name in ("busy_count", "wire_count", "hold_count", "obj", "valid", "dirty"):
        nz = free[a[name][free] != 0]
        if len(nz):
            errs.append(f"{len(nz)} free pages with {name} != 0, e.g. {vm.pa(int(nz[0])):#x}")
    held = np.flatnonzero(base_of == PQ_HOLD)
    if np.any(a["hold_count"][held] <= 0):
        errs.append("a page on PQ_HOLD is not held")
    unq = np.flatnonzero(a["flags"] & (PG_FICTITIOUS | PG_UNQUEUED))
    if np.any(queue[unq] != 0):
        errs.append("a FICTITIOUS/UNQUEUED page is on a queue")
    if np.any(a["act_count"] > ACT_MAX):
        errs.append("act_count above ACT_MAX")
    if np.any(a["hold_count"] < 0):
        errs.append("negative hold_count")
    # Objects: each object's list against the table, and the table against the pages.
    tab = vm.objtab
    ot, ob = tab.ot, tab.ob
    owned = 0
    for o in vm.objects.values():
        pages = tab.pages(o.id)
        owned += len(pages)
        if ob[O_RPC, o.id] != len(pages):
            errs.append(f"object {o.id}: resident_page_count {ob[O_RPC, o.id]}, "
                        f"{len(pages)} pages listed")
        for pi, m in pages:
            if a["obj"][m] != o.id or a["pindex"][m] != pi:
                errs.append(f"object {o.id} pindex {pi}: page {m} says object "
                            f"{a['obj'][m]} pindex {a['pindex'][m]}")
                break
            if tab_lookup.py(ot, o.id, pi) != m:
                errs.append(f"object {o.id} pindex {pi}: page {m} listed, the table "
                            f"says {tab_lookup.py(ot, o.id, pi)}")
                break
    live = np.flatnonzero(ot[T_M])
    if ot[T_META, TM_COUNT] != len(live) or len(live) != owned:
        errs.append(f"the object table holds {len(live)} entries (count "
                    f"{ot[T_META, TM_COUNT]}), objects list {owned} pages")
    tm = ot[T_M, live] - 1
    bad = (a["obj"][tm] != ot[T_OID, live]) | (a["pindex"][tm] != ot[T_PINDEX, live])
    if np.any(bad):
        j = live[np.flatnonzero(bad)[0]]
        errs.append(f"object table slot {j}: page {ot[T_M, j] - 1} for object "
                    f"{ot[T_OID, j]} pindex {ot[T_PINDEX, j]} says otherwise")
    if vm.dma_alist is not None:
        fm = np.flatnonzero(vm.dma_alist.free_map) - vm.first_pfn
        fm = fm[(fm >= 0) & (fm < vm.pages.npages)]
        if np.any(a["wire_count"][fm] == 0) or np.any((a["flags"][fm] & PG_FICTITIOUS) == 0):
            errs.append("a page free in the DMA reserve is not wired and fictitious")
    if errs:
        raise InvariantError("DragonFly page layer INVARIANTS failed:\n  " +
                             "\n  ".join(errs[:20]))


def _buddy_free_indices(vm: DragonflyVm) -> np.ndarray:
    """Page-array indices of the pages free in the buddy allocator."""
    k = vm.kernel
    assert k is not None
    k.check()
    out = []
    for head, order in k.phys.head_order.items():
        if head >= 0:
            s = (head - vm.first_pfn)
            out.append(np.arange(s, s + (1 << order)))
    if not out:
        return np.zeros(0, dtype=np.int64)
    idx = np.concatenate(out)
    return idx[(idx >= 0) & (idx < vm.pages.npages)]

