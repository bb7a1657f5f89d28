#!/usr/bin/env python3
"""Issue 13 (wt13c): the cold compile with the extent mirror, side by side with another tree.

What the first compiled pair compiles depends on whether observers are attached (with
the mirror's direct hand-off the fast paths no longer call the log's netting; a kernel
that attaches the mirror after running compiled may compile more then).  Per tree and
round, fresh processes with an empty numba cache each (CPU s,
process_time): the first alloc_pages + free_pages pair of a lazily booted firecracker-1g
with ``jit=True`` (a) without the mirror, then the first pair after attaching it, and
(b) with the mirror attached at boot.

    python bench/jit_observers.py OTHER_SRC [ROUNDS]     # e.g. /tmp/base/src
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import json, sys, time
cpu = time.process_time
import physmem
k = physmem.boot("firecracker-1g", lazy=True, jit=True)
def pair():
    k.free_pages(k.alloc_pages(0, "default", 0), 0)
if sys.argv[1] == "later":
    c = cpu(); pair(); first = cpu() - c
    k.attach_extent_mirror()
    c = cpu(); pair(); print(json.dumps([first, cpu() - c]))
else:
    k.attach_extent_mirror()
    c = cpu(); pair(); print(json.dumps([cpu() - c]))
'''


def main() -> int:
    other = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    trees = {"other": other, "this": str(HERE.parent / "src")}
    res: dict = {t: {"first": [], "attach": [], "boot": []} for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items()
                if k not in ("PHYSMEM_JIT", "NUMBA_DISABLE_JIT", "PHYSMEM_JIT_TIER",
                             "PYTHONDONTWRITEBYTECODE")}
        for t, src in trees.items():
            env = dict(base, PYTHONPATH=src, PYTHONPYCACHEPREFIX=f"{tmp}/pyc-{t}")
            # bytecode of physmem and of every numba module a compile imports, written once
            subprocess.run([sys.executable, "-c", CHILD, "later"], env=dict(
                env, NUMBA_CACHE_DIR=f"{tmp}/warm-{t}"), check=True, capture_output=True)
        for i in range(rounds):
            for t, src in trees.items():
                env = dict(base, PYTHONPATH=src, PYTHONPYCACHEPREFIX=f"{tmp}/pyc-{t}")
                for mode in ("later", "boot"):
                    r = json.loads(subprocess.run(
                        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                        check=True, env=dict(env, NUMBA_CACHE_DIR=f"{tmp}/{t}-{mode}-{i}")
                    ).stdout)
                    if mode == "later":
                        res[t]["first"].append(r[0])
                        res[t]["attach"].append(r[1])
                    else:
                        res[t]["boot"].append(r[0])

    def span(xs: list[float]) -> str:
        return f"{min(xs):.2f}-{max(xs):.2f} s"
    print(f"# bench/jit_observers.py {other} {rounds}: CPU s, cold (empty numba cache)\n")
    print(f"| first compiled pair | {other} | this tree |")
    print("|---|---|---|")
    for key, label in (("first", "without observers"),
                       ("attach", "the first pair after attaching the mirror (after that)"),
                       ("boot", "with the mirror attached at boot")):
        print(f"| {label} | {span(res['other'][key])} | {span(res['this'][key])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
