#!/usr/bin/env python3
"""The extent mirror's cost side by side (issue 13 part 4): this tree against another
physmem tree (e.g. main), alternating the two in fresh interpreters, in CPU time.

    git archive main | tar -x -C /tmp/base      # any other tree
    python bench/mirror_side.py /tmp/base [ROUNDS]

Per tree and round: order-0 pairs through the Kernel API on bench/run.py's fragmented
1 GiB machine, states A (2 orders split and merged) and B (neither), without and with the
mirror (bench/compare.py's method: min over 41 batches of 2000), and the floor: the
pair with its net change applied as two extent operations called directly; the constrained
allocator on bench/run.py's fragmented 4 GiB machine (its 400 seeded requests, each freed
after it succeeds: mean CPU time per request, of the frees too, and the pages it returned,
which must be the same in both trees); and, where the tree has them, the mirror's counts
of queue changes and extent operations per pair.  Minimum over rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import importlib.util, json, sys, time
tree = sys.argv[1]
sys.path.insert(0, tree + "/src")
spec = importlib.util.spec_from_file_location("br", tree + "/bench/run.py")
br = importlib.util.module_from_spec(spec)
spec.loader.exec_module(br)
pt = time.process_time
out = {}
n = 2000
for state in ("A", "B"):
    for mirror in (False, True):
        k = br.fragmented_1g()
        if state == "B":
            k.alloc_pages(0, "default", 0)
        m = k.attach_extent_mirror() if mirror else None
        ap, fp = k.alloc_pages, k.free_pages
        best = 9e9
        for _ in range(41):
            t = pt()
            for _ in range(n):
                fp(ap(0, "default", 0), 0)
            best = min(best, (pt() - t) / n)
        out[f"pair_{state}{'_mirror' if mirror else ''}_us"] = best * 1e6
        if m is not None and hasattr(m, "counts"):
            m.reset_counts()
            fp(ap(0, "default", 0), 0)
            c = m.counts()
            out[f"changes_{state}"] = c["queue_changes"]
            out[f"ops_{state}"] = c["extent_ops"]
        k.check()
        if m is not None:
            # The floor: the pair and its net change as two extent operations called
            # directly, no hand-off (the mirror detached, the extent kept in step by hand).
            m.detach()
            ex = m.ex
            best = 9e9
            for _ in range(41):
                t = pt()
                for _ in range(n):
                    pa = ap(0, "default", 0)
                    ex._alloc_region(pa, 4096, 0)
                    fp(pa, 0)
                    ex._free(pa, 4096, 0)
                best = min(best, (pt() - t) / n)
            out[f"pair_{state}_floor_us"] = best * 1e6
            m.attach_observers_only()
            m.check()
k = br.fragmented_4g(3, mirror=True)
reqs = br.constrained_requests(7, 400)
got = []
tc = tf = 0.0
for npages, low, high, align, boundary in reqs:
    t = pt()
    pa = k.alloc_constrained(npages, low, high, align, boundary)
    tc += pt() - t
    got.append(pa)
    if pa is not None:
        t = pt()
        k.free_contig(pa, npages)
        tf += pt() - t
out["constrained_us"] = tc / len(reqs) * 1e6
out["free_us"] = tf / len(reqs) * 1e6
out["constrained_pages"] = got
k.check()
print(json.dumps(out))
'''


def child(tree: str) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, tree], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout)


def main() -> int:
    other = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    trees = {"before": other, "after": str(HERE.parent)}
    best: dict[str, dict] = {k: {} for k in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            for key, v in child(tree).items():
                if isinstance(v, list):
                    best[name][key] = v
                else:
                    best[name][key] = min(best[name].get(key, 9e9), v)
    b, a = best["before"], best["after"]
    print("| figure | before | after | target |")
    print("|---|---|---|---|")
    for s in ("A", "B"):
        print(f"| pair, state {s}, without / with the mirror | {b[f'pair_{s}_us']:.2f} / "
              f"{b[f'pair_{s}_mirror_us']:.2f} µs | {a[f'pair_{s}_us']:.2f} / "
              f"{a[f'pair_{s}_mirror_us']:.2f} µs | |")
        rb = b[f"pair_{s}_mirror_us"] / b[f"pair_{s}_us"]
        ra = a[f"pair_{s}_mirror_us"] / a[f"pair_{s}_us"]
        print(f"| mirror overhead, state {s} | {rb:.2f}× | {ra:.2f}× | ≤ 2× |")
        fb = b[f"pair_{s}_floor_us"] / b[f"pair_{s}_us"]
        fa = a[f"pair_{s}_floor_us"] / a[f"pair_{s}_us"]
        print(f"| floor, state {s}: the pair + its 2 extent operations called directly | "
              f"{b[f'pair_{s}_floor_us']:.2f} µs, {fb:.2f}× | "
              f"{a[f'pair_{s}_floor_us']:.2f} µs, {fa:.2f}× | |")
        if f"changes_{s}" in a:
            was = f"{b[f'changes_{s}']} / {b[f'ops_{s}']}" if f"changes_{s}" in b else "-"
            print(f"| queue changes / extent operations per pair, state {s} | {was} | "
                  f"{a[f'changes_{s}']} / {a[f'ops_{s}']} | |")
    print(f"| alloc_constrained, mean per request (4 GiB, 400 requests) | "
          f"{b['constrained_us']:.1f} µs | {a['constrained_us']:.1f} µs | |")
    print(f"| free_contig of its runs, mean per request | {b['free_us']:.1f} µs | "
          f"{a['free_us']:.1f} µs | |")
    same = b["constrained_pages"] == a["constrained_pages"]
    ok = sum(p is not None for p in a["constrained_pages"])
    print(f"\nalloc_constrained's pages: {'the same' if same else 'DIFFERENT'} in both trees "
          f"({ok} of {len(a['constrained_pages'])} requests served)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
