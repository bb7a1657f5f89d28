#!/usr/bin/env python3
"""Where the extent mirror's cost on an order-0 pair goes (issue 13 part 4), one tree:

    python bench/mirror_split.py [TREE]          # default: this tree

On bench/run.py's fragmented 1 GiB machine, states A (2 orders split and merged) and B
(neither), CPU time per pair (min over 31 batches of 2000), the hand-off taken apart:

- ``plain``: no observer (the compiled calls log nothing);
- ``handoff``: no-op observers attached: the compiled calls count their queue changes and
  the Kernel hands each call's block to an observer that does nothing (in a tree before
  the direct hand-off: the calls log and net, and VmPhys._flush hands the runs over);
- ``mirror``: the extent mirror attached;

and ``extent_ops``: the pair's two extent operations alone (``_alloc_region`` then
``_free`` of the page the pair takes, on the mirror's extent).  Last, ``contig``: an
alloc_contig + free_contig pair of 5 pages, without / with the mirror.  Run it on two
trees alternately to compare.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

tree = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, tree + "/src")
spec = importlib.util.spec_from_file_location("br", tree + "/bench/run.py")
br = importlib.util.module_from_spec(spec)
spec.loader.exec_module(br)

pt = time.process_time
N = 2000


def best_of(body) -> float:
    best = 9e9
    for _ in range(31):
        t = pt()
        body(N)
        best = min(best, (pt() - t) / N)
    return best * 1e6


def pairs(k):
    ap, fp = k.alloc_pages, k.free_pages

    def body(n):
        for _ in range(n):
            fp(ap(0, "default", 0), 0)
    return body


def _noop(m: int, npages: int) -> None:
    return None


def main() -> None:
    for state in "AB":
        out = {}

        def machine(state=state):
            k = br.fragmented_1g()
            if state == "B":
                k.alloc_pages(0, "default", 0)
            return k
        out["plain"] = best_of(pairs(machine()))
        k = machine()
        k.phys.observe(_noop, _noop)
        out["handoff"] = best_of(pairs(k))
        k = machine()
        m = k.attach_extent_mirror()
        out["mirror"] = best_of(pairs(k))
        m.check()
        pa = k.alloc_pages(0, "default", 0)
        k.free_pages(pa, 0)
        a, f = m.ex._alloc_region, m.ex._free

        def ops(n, a=a, f=f, pa=pa):
            for _ in range(n):
                a(pa, 4096, 0)
                f(pa, 4096, 0)
        out["extent_ops"] = best_of(ops)
        m.check()
        print(f"state {state}: " + "  ".join(f"{key} {v:.3f}" for key, v in out.items())
              + "  (µs a pair)")
    out = []
    for mirror in (False, True):
        k = br.fragmented_1g()
        if mirror:
            k.attach_extent_mirror()
        ac, fc = k.alloc_contig, k.free_contig

        def contig(n, ac=ac, fc=fc):
            for _ in range(n):
                fc(ac(0, 5), 5)
        out.append(best_of(contig))
        k.check()
    print(f"contig: 5 pages, without / with the mirror {out[0]:.3f} / {out[1]:.3f} µs a pair")


if __name__ == "__main__":
    main()
