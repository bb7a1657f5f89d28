#!/usr/bin/env python3
"""Issue 12, third round: how implicit is the page layer's free-queue layout after boot?

    PYTHONPATH=src python bench/pagelayer_implicit.py [MACHINE ...]

The design of the implicit representation rests on one fact: the boot colour
``pc = (pfn ^ pfn/1024 ^ pfn/1M) & 1023`` gives every 1024-page block exactly one page of
each colour (``sockets`` pages of each colour after vm_numa_organize's ``pc % share +
socket * share``), and the queues read from the highest address down, so a page's queue
neighbours are computable from its pfn and colour alone.  This script boots each machine
(the real bulk boot) and checks, for every free page at once (numpy, in pieces), that its
stored ``next``/``prev`` equal the ones the rule computes; the pages where they differ are
the ones an implicit layout would keep as real links (range edges, domain edges, the DMA
reserve's returned pages, vm_numa_organize_finalize's moves).  Prints per machine: free
pages, pages the rule explains, explicit pages, the 1024-page blocks holding them (what a
block-lazy layout would materialise at boot) out of all blocks, and the time of the check
(the cost of computing every page's links by rule in numpy).
"""
import json
import sys
import time

import numpy as np

from physmem.dragonfly.vm_page import DragonflyVm
from physmem.dragonfly.vm_page_array import PQ_FREE, PQ_L2_MASK, PQ_L2_SIZE

PIECE = 1 << 20


def rule_links(pfn: np.ndarray, pc: np.ndarray, sockets: int) -> tuple[np.ndarray, np.ndarray]:
    """The pfns of each page's queue neighbours by rule over an untouched range: next = the
    next lower-addressed page of the same final colour (same block, else the block below),
    prev = the next higher one.  The colour class of final colour c in block b is the
    ``sockets`` offsets ``(c % share + j * share) ^ x(b)``, x(b) = (b ^ b >> 10) & 1023."""
    share = PQ_L2_SIZE // sockets
    b = pfn >> 10
    low = pfn & PQ_L2_MASK
    base = (pc % share).astype(np.int64)

    def offsets(blk: np.ndarray) -> np.ndarray:     # (n, sockets): the class in block blk
        x = (blk ^ (blk >> 10)) & PQ_L2_MASK
        return np.stack([(base + j * share) ^ x for j in range(sockets)], axis=1)

    here = offsets(b)
    below = np.where(here < low[:, None], here, -1).max(axis=1)
    above = np.where(here > low[:, None], here, PQ_L2_SIZE).min(axis=1)
    nxt = np.where(below >= 0, (b << 10) | below, ((b - 1) << 10) | offsets(b - 1).max(axis=1))
    prv = np.where(above < PQ_L2_SIZE, (b << 10) | above,
                   ((b + 1) << 10) | offsets(b + 1).min(axis=1))
    return nxt, prv


def probe(machine: str) -> dict:
    t = time.perf_counter()
    vm = DragonflyVm(machine)
    boot = time.perf_counter() - t
    a = vm.pages.arrays
    sockets = vm.topology.sockets if vm.topology.cores > 0 else 1
    t = time.perf_counter()
    free = explained = explicit = 0
    blocks: set[int] = set()                      # 1024-page blocks holding explicit pages
    for i0 in range(0, vm.pages.npages, PIECE):
        i1 = min(i0 + PIECE, vm.pages.npages)
        q = a["queue"][i0:i1].astype(np.int64)
        sel = np.flatnonzero((q >= PQ_FREE) & (q < PQ_FREE + PQ_L2_SIZE))
        if not len(sel):
            continue
        idx = sel + i0
        pfn = idx.astype(np.int64) + vm.first_pfn
        nxt, prv = rule_links(pfn, a["pc"][idx], sockets)
        # stored links are index + 1 (0 = none); the rule's neighbour must also be on the
        # same queue for the link to be implicit
        ok = (a["next"][idx] == nxt - vm.first_pfn + 1) & (a["prev"][idx] == prv - vm.first_pfn + 1)
        free += len(idx)
        explained += int(ok.sum())
        explicit += len(idx) - int(ok.sum())
        blocks.update(np.unique(pfn[~ok] >> 10).tolist())
    check = time.perf_counter() - t
    return {"machine": machine, "sockets": sockets, "boot_s": round(boot, 3),
            "free_pages": free, "rule_explains": explained, "explicit_pages": explicit,
            "explicit_share": round(explicit / max(free, 1), 6),
            "explicit_blocks": len(blocks), "blocks": -(-vm.pages.npages // PQ_L2_SIZE),
            "check_s": round(check, 3)}


if __name__ == "__main__":
    for m in sys.argv[1:] or ["firecracker-1g", "pc-6g", "server-96g-2dom"]:
        print(json.dumps(probe(m)), flush=True)
