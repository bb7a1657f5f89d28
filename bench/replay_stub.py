#!/usr/bin/env python3
"""The replay's own cost (issue 13): the bench trace replayed with the Kernel's hot methods
replaced by answers recorded from a real replay of the same trace (the same addresses and
alloc_npages runs, in order), so that what is left is reading, splitting, parsing,
dispatch and printing of the real output.  CPU time, best of 5.

    python bench/replay_stub.py
"""

from __future__ import annotations

import gzip
import io
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import physmem.kernel as K  # noqa: E402
from physmem.trace import Replayer  # noqa: E402

HOT = ("alloc_pages", "alloc_freelist_pages", "alloc_contig", "free_pages", "free_contig",
       "alloc_npages_runs", "free_count", "find_range", "unfree_page", "sysctl")


def main() -> int:
    lines = gzip.decompress((HERE / "data" / "bench_fc1g_lazy_100k.trace.gz").read_bytes()
                            ).decode().splitlines(True)
    # One real replay, recording each hot method's results in order.
    answers: dict[str, list] = {name: [] for name in HOT}
    real = {name: getattr(K.Kernel, name) for name in HOT}

    def recorder(name):
        def rec(self, *a):
            r = real[name](self, *a)
            answers[name].append(r)
            return r
        return rec

    for name in HOT:
        setattr(K.Kernel, name, recorder(name))
    want = io.StringIO()
    Replayer().replay(lines, want)
    best = 9e9
    for _ in range(5):
        its = {name: iter(answers[name]) for name in HOT}
        for name in HOT:
            nxt = its[name].__next__
            setattr(K.Kernel, name, lambda self, *a, nxt=nxt: nxt())
        out = io.StringIO()
        t = time.process_time()
        Replayer().replay(lines, out)
        best = min(best, time.process_time() - t)
    assert out.getvalue() == want.getvalue()
    print(f"replay of {len(lines):,} lines with the Kernel's answers recorded: "
          f"{best:.3f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
