#!/usr/bin/env python3
"""The replay's own cost (issue 13): the bench trace replayed with the Kernel's hot methods
replaced by constant answers, so that what is left is reading, splitting, parsing,
dispatch and printing.  CPU time, best of 5.

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


def main() -> int:
    lines = gzip.decompress((HERE / "data" / "bench_fc1g_lazy_100k.trace.gz").read_bytes()
                            ).decode().splitlines(True)
    K.Kernel.alloc_pages = lambda self, d, p, o: 0x1000
    K.Kernel.alloc_freelist_pages = lambda self, d, f, p, o: 0x1000
    K.Kernel.alloc_contig = lambda self, *a: 0x1000
    K.Kernel.free_pages = lambda self, pa, o: None
    K.Kernel.free_contig = lambda self, pa, n: None
    # ~8 runs a call, as the bench trace's alloc_npages lines have
    K.Kernel.alloc_npages_runs = lambda self, d, p, n: [(0x100000, n - n // 8)] + [
        (0x200000 + 0x2000 * i, 1) for i in range(n // 8)]
    best = 9e9
    for _ in range(5):
        t = time.process_time()
        Replayer().replay(lines, io.StringIO())
        best = min(best, time.process_time() - t)
    print(f"replay of {len(lines):,} lines with the Kernel stubbed: {best:.3f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
