#!/usr/bin/env python3
"""Where the extent mirror's cost on an order-0 pair goes (issue 13 part 4), one tree:

    python bench/mirror_split.py [TREE]          # default: this tree

On bench/run.py's fragmented 1 GiB machine, states A (2 orders split and merged) and B
(neither), CPU time per pair (min over 31 batches of 2000), the hand-off taken apart by
replacing the mirror's flush with variants of it:

- ``plain``: no observer (the compiled calls log nothing);
- ``handoff``: the compiled calls log and net, the Kernel calls a flush that only reads and
  clears the one-run word (the generic VmPhys._flush for anything else);
- ``decode``: that flush also decodes the word and calls a no-op in place of the extent
  operation;
- ``decode_ext``: the same calling the extent's ``_free`` / ``_alloc_region``;
- ``mirror``: the mirror's own flush;

and ``extent_ops``: the pair's two extent operations alone (``_alloc_region`` then
``_free`` of the page the pair takes, on the mirror's extent).  Run it on two trees
alternately to compare.
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

from physmem.bits import PAGE_SHIFT  # noqa: E402
from physmem.freebsd.vm_phys import LOG_RUN, RUN_SHIFT, VmPhys  # noqa: E402

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


def variant_flush(k, m, variant: str) -> None:
    """Detach the mirror and hand the log to a variant of its flush."""
    phys = k.phys
    nv = phys.nv
    m.detach()
    free, alloc = m.ex._free, m.ex._alloc_region
    if variant == "decode":
        def free(s, z, f):
            return 0
        alloc = free
    ra = [nv[md + 3] + LOG_RUN for md in phys._log_md]
    mask = (1 << (RUN_SHIFT - 1)) - 1

    def flush(d):
        r = ra[d]
        w = nv[r]
        if not w:
            VmPhys._flush(phys, d)
            return
        nv[r] = 0
        if variant == "handoff":
            return
        start = (w >> RUN_SHIFT) << PAGE_SHIFT
        size = ((w >> 1) & mask) << PAGE_SHIFT
        if (free if w & 1 else alloc)(start, size, 0):
            raise RuntimeError("extent operation failed")

    add, rem = (m._observers[0], m._observers[1]) if variant == "decode_ext" else \
        (lambda a, b: None, lambda a, b: None)
    phys.observe(add, rem, flush)


def main() -> None:
    for state in "AB":
        out = {}

        def machine(state=state):
            k = br.fragmented_1g()
            if state == "B":
                k.alloc_pages(0, "default", 0)
            return k
        out["plain"] = best_of(pairs(machine()))
        for variant in ("handoff", "decode", "decode_ext", "mirror"):
            k = machine()
            m = k.attach_extent_mirror()
            if variant != "mirror":
                variant_flush(k, m, variant)
            out[variant] = best_of(pairs(k))
            if variant in ("decode_ext", "mirror"):
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


if __name__ == "__main__":
    main()
