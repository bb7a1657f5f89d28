#!/usr/bin/env python3
"""``make torture``: long runs that `make test` cannot afford.  One line per suite with its
counts; exit status 1 if any suite found a problem.

    python -m tests.torture [--steps N] [--ops N] [--quick] [SUITE ...]

With SUITE names, only those run (in the order below).

Suites:
  stateful     seeded random operations on vm_phys (eager, and lazy with random drains)
               against a set-of-free-pages model: every result checked against the model,
               the INVARIANTS checker every 2,000 steps and at the end
  catalogue    every entry of the bad-input catalogue (tests/catalogue.py)
  attacks      the review's hostile inputs on every command (tests/attacks.py)
  threads      the lazy-init drain thread plus 4 allocating/freeing threads: no page handed
               out twice, none lost, invariants clean, free counts exact
  fuzz         the parsers (trace, maps, TOML, tunables) under generated text
  snapshots    save/load round trips at random points of a workload
  oracle       every oracle trace in tests/data replayed: divergences from the kernels' output
  pagelayer    DragonFly's page layer: 2 threads of anonymous churn with the WITNESS lock-
               order checker on, then 2 page-cache readers against the pagedaemon thread on a
               48 MiB machine overcommitted 8x: INVARIANTS after each, no lock-order reversal,
               every page accounted for
  pagelayer_races  8 threads of object churn and page-cache reads on both page sources,
               with/without the pagedaemon and WITNESS, Python switching threads every
               microsecond: no thread dies, INVARIANTS clean
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import random
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "src"))

import physmem  # noqa: E402
from physmem.trace import Replayer  # noqa: E402

PAGE = 4096
SEGS = [(0x100000, 0x1000000, 0), (0x1000000, 0x4000000, 0)]   # LOWMEM + DEFAULT, 63 MiB
AVAIL = [(0x200000, 0x1000000), (0x1000000, 0x4000000)]


def stateful(steps: int, seed: int = 1) -> str:
    done = 0
    problems = 0
    for lazy in (False, True):
        k = physmem.Kernel()
        for s, e, d in SEGS:
            k.add_segment(s, e, d)
        for a in AVAIL:
            k.add_avail(*a)
        k.boot(lazy=lazy)
        rng = random.Random(seed + lazy)
        free = {p for s, e in AVAIL for p in range(s >> 12, e >> 12)}
        held: list[tuple[int, int, int | None]] = []      # pfn, npages, order or None
        for step in range(steps // 2):
            x = rng.random()
            if x < 0.30:
                o = rng.choice((0, 0, 0, 1, 2, 3, 5, 8))
                pa = k.alloc_pages(0, rng.choice(("default", "direct")), o)
                if pa is not None:
                    m = pa >> 12
                    run = range(m, m + (1 << o))
                    if m % (1 << o) or not free.issuperset(run):
                        problems += 1
                    free.difference_update(run)
                    held.append((m, 1 << o, o))
            elif x < 0.40:
                pas = k.alloc_npages(0, "default", rng.randint(1, 40))
                for pa in pas:
                    if pa >> 12 not in free:
                        problems += 1
                    free.discard(pa >> 12)
                    held.append((pa >> 12, 1, 0))
            elif x < 0.47:
                n = rng.randint(1, 300)
                pa = k.alloc_contig(0, n, 0, 1 << 32, PAGE << rng.randint(0, 6), 0)
                if pa is not None:
                    run = range(pa >> 12, (pa >> 12) + n)
                    if not free.issuperset(run):
                        problems += 1
                    free.difference_update(run)
                    held.append((pa >> 12, n, None))
            elif x < 0.93 and held:
                m, n, o = held.pop(rng.randrange(len(held)))
                if o is not None and rng.random() < 0.7:
                    k.free_pages(m << 12, o)
                else:
                    k.free_contig(m << 12, n)
                free.update(range(m, m + n))
            elif x < 0.97:
                m = rng.randrange(0x200, 0x4000)
                if k.unfree_page(m << 12) != (m in free):
                    problems += 1
                if m in free:
                    free.discard(m)
                    held.append((m, 1, 0))
            elif lazy:
                k.phys.lazy_init_domain(0, False) if rng.random() < 0.5 else k.lazy_init()
            if k.free_count(0) != len(free):
                problems += 1
            if step % 2000 == 0:
                k.check()
            done += 1
        k.check()
    return f"stateful: {done:,} steps (eager and lazy), divergences found = {problems}"


def catalogue() -> str:
    from tests.catalogue import CATALOGUE, run_case
    failed = 0
    for case in CATALOGUE:
        try:
            run_case(case)
        except AssertionError as e:
            failed += 1
            print(f"  catalogue: {case.name}: {e}", file=sys.stderr)
    surfaces = len({c.surface for c in CATALOGUE})
    return (f"catalogue: {len(CATALOGUE)} bad inputs tried on {surfaces} surfaces, "
            f"divergences found = {failed}")


def attacks() -> str:
    from tests.attacks import ATTACKS, run_attack
    failed = 0
    for a in ATTACKS:
        problems = run_attack(a)
        if problems:
            failed += 1
            print(f"  attacks: {a.name}: {problems}", file=sys.stderr)
    return f"attacks: {len(ATTACKS)} hostile inputs (review), divergences found = {failed}"


def threads(total_ops: int, nthreads: int = 4) -> str:
    k = physmem.boot("firecracker-1g", lazy=True)
    seen: set[int] = set()
    lock = threading.Lock()
    problems: list[str] = []
    per = total_ops // nthreads

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[tuple[int, int]] = []
        try:
            for _ in range(per):
                if rng.random() < 0.52 or not mine:
                    o = rng.choice((0, 0, 0, 1, 2, 4, 9))
                    pa = k.alloc_pages(0, rng.choice(("default", "direct")), o)
                    if pa is None:
                        continue
                    pages = range(pa, pa + (PAGE << o), PAGE)
                    with lock:
                        if seen.intersection(pages):
                            problems.append(f"{pa:#x} handed out twice")
                        seen.update(pages)
                    mine.append((pa, o))
                else:
                    pa, o = mine.pop(rng.randrange(len(mine)))
                    with lock:
                        seen.difference_update(range(pa, pa + (PAGE << o), PAGE))
                    k.free_pages(pa, o)
            for pa, o in mine:
                with lock:
                    seen.difference_update(range(pa, pa + (PAGE << o), PAGE))
                k.free_pages(pa, o)
        except Exception as e:          # reported below
            problems.append(f"{type(e).__name__}: {e}")

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for t in ts:
        t.start()
    k.start_aps()
    for t in ts:
        t.join()
    if not k.wait_lazy_init(timeout=600):
        problems.append("drain thread did not finish")
    try:
        k.check()
    except AssertionError as e:
        problems.append(str(e))
    expected = (0x9F000 - 0x1000 + 0x40000000 - 0x2000000) // PAGE
    if k.free_count(0) != expected or seen:
        problems.append(f"free count {k.free_count(0)} != {expected} or pages still out")
    for p in problems[:5]:
        print(f"  threads: {p}", file=sys.stderr)
    return (f"threads: drain thread + {nthreads} threads × {per:,} ops = {nthreads * per:,} "
            f"ops, divergences found = {len(problems)}")


def fuzz(examples: int) -> str:
    import os
    os.environ["PHYSMEM_FUZZ_EXAMPLES"] = str(examples)
    import tests.test_fuzz as tf
    names = [n for n in dir(tf) if n.startswith("test_")]
    failures = 0
    for name in names:
        try:
            getattr(tf, name)()
        except Exception as e:
            failures += 1
            print(f"  fuzz: {name}: {type(e).__name__}: {e}", file=sys.stderr)
    return (f"fuzz: {examples * len(names):,} generated inputs to {len(names)} parsers, "
            f"divergences found = {failures}")


def snapshots(rounds: int, tmp: Path) -> str:
    rng = random.Random(9)
    k = physmem.boot("firecracker-128m", lazy=True)
    held: list[tuple[int, int]] = []
    bad = 0
    for i in range(rounds):
        for _ in range(50):
            if rng.random() < 0.6 or not held:
                o = rng.randint(0, 5)
                pa = k.alloc_pages(0, rng.choice(("default", "direct")), o)
                if pa is not None:
                    held.append((pa, o))
            else:
                pa, o = held.pop(rng.randrange(len(held)))
                k.free_pages(pa, o)
        if i == rounds // 2:
            k.lazy_init()
        path = tmp / "torture.npz"
        physmem.save_snapshot(k, path)
        k2 = physmem.load_snapshot(path)
        if k2.digest() != k.digest():
            bad += 1
        k = k2
    return f"snapshots: {rounds} save/load round trips, divergences found = {bad}"


def oracle() -> str:
    data = HERE / "data"
    pairs = []
    for t in sorted(data.rglob("*.trace")) + sorted(data.rglob("*.trace.gz")):
        exp = Path(str(t).replace(".trace", ".expected"))
        if exp.exists():
            pairs.append((t, exp))
    diverged = 0
    for t, exp in pairs:
        def read(p: Path) -> str:
            return gzip.decompress(p.read_bytes()).decode() if p.suffix == ".gz" \
                else p.read_text()
        out = io.StringIO()
        # dfly-oracle traces name their machine files by bare name, beside them
        with contextlib.chdir(t.parent):
            Replayer().replay(io.StringIO(read(t)), out)
        got, want = out.getvalue().splitlines(), read(exp).splitlines()
        same = len(got) == len(want) and all(
            a == b or (b.startswith("error:") and a.startswith("error:"))
            for a, b in zip(got, want, strict=True))
        if not same:
            diverged += 1
            print(f"  oracle: {t.name} diverges", file=sys.stderr)
    return f"oracle: {len(pairs)} kernel traces replayed, divergences found = {diverged}"


def pagelayer(ops: int, overcommit: int = 8) -> str:
    from physmem.dfly_workloads import anon_churn, pagecache_fill
    from physmem.dragonfly.vm_page import DragonflyVm
    from physmem.machine import Machine, RamRange
    m = Machine("t48", [RamRange(0x100000, 48 << 20)], page_array="none")
    problems = 0
    vm = DragonflyVm(m, witness=True)
    errors: list[BaseException] = []

    def body(fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as e:     # reported below
            errors.append(e)

    ts = [threading.Thread(target=body, args=(anon_churn, vm, ops // 2, 11 + c, c))
          for c in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    vm.vmstats_rollup()
    for check in (vm.check,):
        try:
            check()
        except AssertionError as e:
            print(f"  pagelayer: {e}", file=sys.stderr)
            problems += 1
    checked = vm.witness.checked
    vm2 = DragonflyVm(m)
    vm2.start_pagedaemon()
    size = overcommit * (48 << 20)
    ts = [threading.Thread(target=body, args=(pagecache_fill, vm2, size // 2, 4, 0.05, c, c))
          for c in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    vm2.stop_pagedaemon()
    vm2.vmstats_rollup()
    try:
        vm2.check()
    except AssertionError as e:
        print(f"  pagelayer: {e}", file=sys.stderr)
        problems += 1
    for e in errors:
        print(f"  pagelayer: {type(e).__name__}: {e}", file=sys.stderr)
    problems += len(errors)
    return (f"pagelayer: {ops:,} churn steps on 2 threads ({checked:,} lock acquisitions "
            f"checked), {size >> 20} MiB read on 2 threads with the pagedaemon thread "
            f"({vm2.pageout_stats.passes} passes), divergences found = {problems}")


def pagelayer_races(rounds: int) -> str:
    """tests/test_dfly_threads.py's runs, longer and repeated: 8 threads on 1x8 CPUs, both
    page sources, with and without the pagedaemon and WITNESS."""
    from tests.dfly_util import race_run
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    problems = runs = 0
    try:
        for r in range(rounds):
            for source in ("dragonfly", "buddy"):
                for daemon, witness in ((True, False), (False, True), (True, True)):
                    runs += 1
                    for p in race_run(source, 8, 3000, seed=1000 + r, daemon=daemon,
                                      witness=witness):
                        print(f"  pagelayer_races: {source}: {p}", file=sys.stderr)
                        problems += 1
    finally:
        sys.setswitchinterval(old)
    return (f"pagelayer_races: {runs} runs of 8 threads (object churn and page-cache "
            f"readers, switch interval 1 us), divergences found = {problems}")


SUITES = ("stateful", "catalogue", "attacks", "threads", "fuzz", "snapshots", "oracle",
          "pagelayer", "pagelayer_races")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--fuzz", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1/100 of each")
    ap.add_argument("suites", nargs="*", metavar="SUITE",
                    help="run only these suites: " + ", ".join(SUITES))
    a = ap.parse_args()
    if unknown := [x for x in a.suites if x not in SUITES]:
        ap.error(f"unknown suite {unknown[0]!r}; expected one of: {', '.join(SUITES)}")
    if a.quick:
        a.steps, a.ops, a.fuzz = a.steps // 100, a.ops // 100, a.fuzz // 20
    import tempfile
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for _name, fn in (("stateful", lambda: stateful(a.steps)), ("catalogue", catalogue),
                         ("attacks", attacks),
                         ("threads", lambda: threads(a.ops)), ("fuzz", lambda: fuzz(a.fuzz)),
                         ("snapshots", lambda: snapshots(200, Path(tmp))),
                         ("oracle", oracle),
                         ("pagelayer", lambda: pagelayer(max(2000, a.ops // 10),
                                                         2 if a.quick else 8)),
                         ("pagelayer_races", lambda: pagelayer_races(1 if a.quick else 5))):
            if a.suites and _name not in a.suites:
                continue
            t = time.perf_counter()
            line = fn()
            line += f" ({time.perf_counter() - t:.0f} s)"
            print(line, flush=True)
            lines.append(line)
    return 1 if any("divergences found = 0" not in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
