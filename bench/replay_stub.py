#!/usr/bin/env python3
"""Where a replay's time goes, per line (issue 13), on the bench trace, the queue core
compiled from the first call (``Kernel(jit=True)``).  CPU time, best of 5 (3 for the
Kernel's calls).

1. The replay's own work: the trace replayed with the Kernel's hot methods replaced by
   answers recorded from a real replay of the same trace (the same addresses and
   alloc_npages runs, in order), so that what is left is reading, splitting, parsing,
   dispatch and printing of the real output; with ``--ops``, per operation (the lines of
   one operation replayed alone: the recorded answers do not depend on the others).
2. The Kernel's calls alone: the calls that replay made, with the same arguments, in
   order, on a freshly booted kernel; and of them, the compiled calls (numba's dispatch
   and the compiled work: each timed with ``thread_time_ns``, its cost subtracted).

    python bench/replay_stub.py [--ops] [TREE]

TREE (default: this tree) is a physmem tree to measure, e.g. main's from ``git archive``.
"""

from __future__ import annotations

import gzip
import io
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
sys.path.insert(0, str(Path(ARGS[0]) / "src" if ARGS else HERE.parent / "src"))

import physmem.kernel as K  # noqa: E402
from physmem.trace import Replayer  # noqa: E402

# (the replay's alloc_npages calls alloc_npages_pfns where the Kernel has it, else the runs)
HOT = ("alloc_pages", "alloc_freelist_pages", "alloc_contig", "free_pages", "free_contig",
       "alloc_npages_pfns" if hasattr(K.Kernel, "alloc_npages_pfns") else "alloc_npages_runs",
       "free_count", "find_range", "unfree_page", "sysctl")
OPS = ("free_pages", "free_contig", "alloc_pages", "alloc_npages", "alloc_contig",
       "alloc_freelist_pages")


def compiled(arch: str) -> K.Kernel:
    return K.Kernel(arch, jit=True)


def record(lines: list[str]) -> tuple[dict[str, list], list[tuple[str, tuple]], str]:
    """One real replay: each hot method's results in order, every call, the output."""
    answers: dict[str, list] = {name: [] for name in HOT}
    calls: list[tuple[str, tuple]] = []
    real = {name: getattr(K.Kernel, name) for name in HOT}

    def recorder(name):
        def rec(self, *a):
            r = real[name](self, *a)
            answers[name].append(r)
            calls.append((name, a))
            return r
        return rec

    for name in HOT:
        setattr(K.Kernel, name, recorder(name))
    want = io.StringIO()
    Replayer(kernel_factory=compiled).replay(lines, want)
    for name in HOT:
        setattr(K.Kernel, name, real[name])
    return answers, calls, want.getvalue()


def stubbed(lines: list[str], answers: dict[str, list]) -> tuple[float, str]:
    """The replay with the Kernel's answers recorded: its CPU time, best of 5."""
    real = {name: getattr(K.Kernel, name) for name in HOT}
    best = 9e9
    for _ in range(5):
        for name in HOT:
            nxt = iter(answers[name]).__next__
            setattr(K.Kernel, name, lambda self, *a, nxt=nxt: nxt())
        out = io.StringIO()
        t = time.process_time()
        Replayer(kernel_factory=compiled).replay(lines, out)
        best = min(best, time.process_time() - t)
    for name in HOT:
        setattr(K.Kernel, name, real[name])
    return best, out.getvalue()


def kernel_calls(head: list[str], calls: list[tuple[str, tuple]]) -> tuple[float, float]:
    """The recorded calls on a fresh kernel booted by ``head``: CPU time of all (best of
    3), and the part spent in the compiled calls."""
    def fresh() -> K.Kernel:
        r = Replayer(kernel_factory=compiled)
        r.replay(head, io.StringIO())
        return r.k

    best = 9e9
    for _ in range(3):
        k = fresh()
        seq = [(getattr(k, name), a) for name, a in calls]
        t = time.process_time()
        for f, a in seq:
            f(*a)
        best = min(best, time.process_time() - t)
    try:
        from physmem.freebsd.vm_phys import _FUSED
    except ImportError:
        return best, float("nan")
    pc = time.thread_time_ns
    cost = sorted(-pc() + pc() for _ in range(2001))[1000]   # one pc() pair
    spent = [0, 0]

    def timed(f):
        def call(*a):
            t = pc()
            r = f(*a)
            spent[0] += pc() - t
            spent[1] += 1
            return r
        return call

    k = fresh()
    for name, fn in _FUSED:
        setattr(k.phys, name, timed(fn.compiled()))
    for name, a in calls:
        getattr(k, name)(*a)
    return best, (spent[0] - cost * spent[1]) / 1e9


def main() -> int:
    lines = gzip.decompress((HERE / "data" / "bench_fc1g_lazy_100k.trace.gz").read_bytes()
                            ).decode().splitlines(True)
    answers, calls, want = record(lines)
    n = len(lines)
    own, got = stubbed(lines, answers)
    assert got == want
    head = [ln for ln in lines if ln.split()[:1] in (["seg"], ["avail"], ["boot"])]
    kern, comp = kernel_calls(head, calls)
    # What the stubs themselves cost (a call with the same arguments, the next answer).
    stub = 9e9
    for _ in range(5):
        nxt = iter(range(len(calls))).__next__
        f = (lambda self, *a, nxt=nxt: nxt()).__get__(object())
        seq = [a for _, a in calls]
        t = time.process_time()
        for a in seq:
            f(*a)
        stub = min(stub, time.process_time() - t)
    print(f"bench trace, {n:,} lines, CPU time per 100 k lines (µs a line):")
    print(f"  the replay's own work (Kernel's answers recorded): {own / n * 1e5:.3f} s "
          f"({own / n * 1e6:.2f})")
    print(f"    of which the stubs' own calls:                 {stub / n * 1e5:.3f} s "
          f"({stub / n * 1e6:.2f})")
    print(f"  the Kernel's calls alone ({len(calls):,}):           {kern / n * 1e5:.3f} s "
          f"({kern / n * 1e6:.2f})")
    print(f"    of which the compiled calls:                   {comp / n * 1e5:.3f} s "
          f"({comp / n * 1e6:.2f})")
    if "--ops" in sys.argv:
        body = [ln for ln in lines if ln not in head]
        for op in OPS:
            sel = [ln for ln in body if ln.split()[:1] == [op]]
            t, _ = stubbed(head + sel, answers)
            print(f"  {op:22s} {len(sel):6,} lines, replay's own work {t / len(sel) * 1e6:.2f} "
                  f"µs a line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
