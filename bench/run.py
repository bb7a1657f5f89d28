#!/usr/bin/env python3
"""physmem benchmarks (``make bench``).  Prints a markdown report; bench/RESULTS.md keeps
the figures with the command that gives them.

    python bench/run.py [GROUP ...]        groups: micro pair boot lazy replay constrained
                                           tools pagelayer layout (default: all)

Groups (style guide: primitive, targeted, replay):
  pair    primitive: order-0 alloc_pages + free_pages, at the vm_phys level and through the
          Kernel API (validation, ownership, locks), on a 1 GiB machine with ~10 % of its
          pages held in blocks of orders 0-3
  boot    targeted: eager and lazy boot of 128 MiB, 1 GiB, 64 GiB and 1 TiB, each boot in
          its own process: wall time, pages/s, peak RSS
  lazy    targeted: the first allocations after a lazy boot (ns per page structure
          initialised on demand) next to the same allocations after an eager boot
  replay  replay: a 100k-operation random trace made by the oracle's generator (orders 0-3,
          every operation), parse + execute + print, checked against the oracle's output;
          the oracle's own time if ORACLE=path/to/freebsd-oracle is set

  pagelayer  primitive + targeted: DragonFly's vm_page_alloc + vm_page_free pair (both
          free-page sources, WITNESS off/on), page-layer boot, 4 GiB page-cache fill under
          memory pressure (pages/s)

Timing is min or median of repeated runs, as each line says; ratios are measured side by
side in one run.  Nothing here asserts a target: the report says whether it was met.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import physmem  # noqa: E402
from physmem.trace import Replayer  # noqa: E402


def header() -> None:
    print(f"# physmem benchmarks, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"\nPython {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs; command: `python bench/run.py {' '.join(sys.argv[1:])}`\n")


# ---------------------------------------------------------------------------------------
# pair
# ---------------------------------------------------------------------------------------
def fragmented_1g(seed: int = 1, pools: tuple[str, ...] = ("default", "direct")
                  ) -> physmem.Kernel:
    """A booted 1 GiB machine with ~10 % of its pages held in blocks of orders 0-3 at
    random (allocated, half freed again, topped up), so that pairs do not always split and
    merge all 12 orders."""
    k = physmem.boot("firecracker-1g", lazy=False)
    rng = random.Random(seed)
    held: list[tuple[int, int]] = []
    total = k.free_count(0)

    def fill() -> None:
        while sum(1 << o for _, o in held) < total // 10:
            o = rng.randint(0, 3)
            held.append((k.alloc_pages(0, rng.choice(pools), o), o))
    fill()
    rng.shuffle(held)
    for pa, o in held[: len(held) // 2]:
        k.free_pages(pa, o)
    del held[: len(held) // 2]
    fill()
    return k


def _levels(k: physmem.Kernel) -> int:
    """How many orders an order-0 DEFAULT allocation splits in this state."""
    p = k.param.freepool_default
    return next(o for o in range(13) if k.phys.count(0, 0, p, o))


def bench_pair() -> None:
    batches, n = 201, 2000
    print("## pair: order-0 alloc_pages + free_pages, steady state\n")
    print(f"1 GiB machine, ~10 % of its pages held in blocks of orders 0-3; median of "
          f"{batches} batches of {n} pairs.  State A holds blocks of both pools, so the "
          "DEFAULT order-0 and order-1 queues are empty and every pair splits and merges "
          "two orders; state B is A plus one more order-0 page held, which leaves its "
          "buddy on the order-0 queue: pairs then neither split nor merge.  vm_phys is "
          "the allocator alone; the Kernel API adds argument checks, "
          "the ownership check against double frees, the domain lock and the free count.\n")
    print("| state | levels split/merged | level | median per pair | target ≤ 2 µs |")
    print("|---|---|---|---|---|")
    for state in ("A", "B"):
        k = fragmented_1g()
        if state == "B":
            k.alloc_pages(0, "default", 0)
        phys = k.phys
        pool = k.param.freepool_default
        levels = _levels(k)

        def api(k: physmem.Kernel = k) -> float:
            ap, fp = k.alloc_pages, k.free_pages
            t = time.perf_counter()
            for _ in range(n):
                fp(ap(0, "default", 0), 0)
            return (time.perf_counter() - t) / n

        def core(phys=phys, pool: int = pool) -> float:
            ap, fp = phys.alloc_pages, phys.free_pages
            t = time.perf_counter()
            for _ in range(n):
                fp(ap(0, pool, 0), 0)
            return (time.perf_counter() - t) / n

        for name, fn in (("vm_phys", core), ("Kernel API", api)):
            fn()
            v = statistics.median(fn() for _ in range(batches))
            print(f"| {state} | {levels} | {name} | {v * 1e6:.2f} µs | "
                  f"{'met' if v <= 2e-6 else 'not met'} |")
        k.check()
    print()


# ---------------------------------------------------------------------------------------
# boot
# ---------------------------------------------------------------------------------------
BOOT_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import physmem
machine, lazy = sys.argv[2], sys.argv[3] == "lazy"
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best = None
for i in range(int(sys.argv[4])):
    k = physmem.kernel_for(machine)
    t = time.perf_counter()
    k.boot(lazy=lazy)
    dt = time.perf_counter() - t
    best = dt if best is None else min(best, dt)
    pages = sum(s.epfn - s.spfn for s in k.phys.segs)
    inits = k.stats.boot
    if i + 1 < int(sys.argv[4]):
        del k
print(json.dumps({"seconds": best, "pages": pages, "inits": inits, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def boot_in_child(machine: str, mode: str, reps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", BOOT_CHILD, str(HERE.parent / "src"),
                          machine, mode, str(reps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def bench_boot() -> None:
    print("## boot: vm_page_startup, eager vs lazy, each machine in its own process\n")
    print("Wall time is the best of N boots in one process; peak RSS is the process's "
          "maximum resident set (interpreter + numpy + physmem + the booted machine), "
          "with the interpreter's own baseline beside it.\n")
    print("| machine | RAM | mode | boot (best) | pages/s | page structs initialised | "
          "peak RSS | baseline RSS | lazy speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for machine, reps in (("firecracker-128m", 20), ("firecracker-1g", 20),
                          ("firecracker-64g", 5), ("server-1t", 1)):
        r = {mode: boot_in_child(machine, mode, reps) for mode in ("eager", "lazy")}
        ram = physmem.get_machine(machine).ram_bytes()
        for mode in ("eager", "lazy"):
            x = r[mode]
            speed = f"{r['eager']['seconds'] / x['seconds']:.1f}×" if mode == "lazy" else ""
            print(f"| {machine} | {ram / 2**30:.2f} GiB | {mode} | {x['seconds'] * 1e3:.2f} ms | "
                  f"{x['pages'] / x['seconds'] / 1e6:.0f} M | {x['inits']:,} | "
                  f"{x['peak_kb'] / 1024:.0f} MiB | {x['base_kb'] / 1024:.0f} MiB | {speed} |")
    print()


# ---------------------------------------------------------------------------------------
# lazy: cost of first allocations
# ---------------------------------------------------------------------------------------
def bench_lazy() -> None:
    print("## lazy: the first allocations after boot\n")
    print("Allocate all of a 1 GiB machine's memory in order-9 blocks (2 MiB), right after "
          "boot; best of 5.  After a lazy boot each 16 MiB LAZYINIT chunk taken is "
          "initialised on demand (vm_phys_set_pool).\n")
    print("| boot | time to allocate everything | page structs initialised on demand | "
          "ns per page initialised |")
    print("|---|---|---|---|")
    res = {}
    for lazy in (False, True):
        best = None
        for _ in range(5):
            k = physmem.boot("firecracker-1g", lazy=lazy)
            t = time.perf_counter()
            while k.alloc_pages(0, "default", 9) is not None:
                pass
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
            ondemand = k.stats.on_demand
        res[lazy] = (best, ondemand)
    for lazy, (dt, n) in res.items():
        extra = dt - res[False][0] if lazy else 0.0
        per = f"{extra / n * 1e9:.1f} (extra time / pages)" if lazy and n else "—"
        print(f"| {'lazy' if lazy else 'eager'} | {dt * 1e3:.2f} ms | {n:,} | {per} |")
    print()


# ---------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------
def bench_replay() -> None:
    trace = gzip.decompress((HERE / "data" / "bench_fc1g_lazy_100k.trace.gz").read_bytes())
    expected = gzip.decompress((HERE / "data" / "bench_fc1g_lazy_100k.expected.gz").read_bytes())
    text = trace.decode()
    lines = text.splitlines(True)
    nops = sum(1 for line in lines if line.split("#")[0].split())
    best = None
    out_text = ""
    for _ in range(5):
        out = io.StringIO()
        t = time.perf_counter()
        Replayer().replay(lines, out)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
        out_text = out.getvalue()
    same = out_text.encode() == expected
    # end to end through the CLI, interpreter start-up included
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "physmem-bench.trace"
    tmp.write_bytes(trace)
    cli = [str(Path(sys.executable).parent / "physmem"), "replay", str(tmp)]
    cli_best = min(_timed(cli) for _ in range(3))
    start = min(_timed([sys.executable, "-c", "import physmem.cli"]) for _ in range(3))
    oracle = os.environ.get("ORACLE")
    print("## replay: a long random trace, parse + execute + print\n")
    print(f"`bench/data/bench_fc1g_lazy_100k.trace.gz`: {nops:,} operations made by the "
          "oracle's generator (t_random, fc(1 GiB), lazy boot, maxorder 3, seed 2024); "
          f"output {len(expected) / 1e6:.1f} MB. Output identical to the oracle's: "
          f"**{'yes' if same else 'NO'}**.\n")
    print("| what | time | ops/s |")
    print("|---|---|---|")
    print(f"| physmem, in process (best of 5) | {best * 1e3:.0f} ms | {nops / best / 1e3:.0f} k |")
    print(f"| physmem CLI end to end (best of 3) | {cli_best * 1e3:.0f} ms | "
          f"{nops / cli_best / 1e3:.0f} k |")
    print(f"| interpreter + imports alone | {start * 1e3:.0f} ms | |")
    if oracle and Path(oracle).exists():
        o = min(_timed([oracle, str(tmp)]) for _ in range(5))
        print(f"| FreeBSD vm_phys.c oracle (C, best of 5) | {o * 1e3:.0f} ms | "
              f"{nops / o / 1e3:.0f} k |")
        print(f"\nphysmem CLI / oracle: {cli_best / o:.1f}×; in-process physmem / oracle: "
              f"{best / o:.1f}×.")
    print(f"\nTarget ≥ 300 k ops/s in process: {'met' if nops / best >= 3e5 else 'not met'}.\n")
    _replay_breakdown(lines)


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def _replay_breakdown(lines: list[str]) -> None:
    from collections import Counter

    from physmem.trace import tokenize
    r = Replayer()
    tt: Counter = Counter()
    nn: Counter = Counter()
    pc = time.perf_counter
    for line in lines:
        tok = tokenize(line)
        if not tok:
            continue
        t = pc()
        r.run_line(line)
        tt[tok[0]] += pc() - t
        nn[tok[0]] += 1
    total = sum(tt.values())
    print("Where the time goes (one timed pass):\n")
    print("| operation | count | share of time | µs per op |")
    print("|---|---|---|---|")
    for op, v in tt.most_common(8):
        print(f"| {op} | {nn[op]:,} | {v / total * 100:.0f} % | {v / nn[op] * 1e6:.1f} |")
    print()


def bench_micro() -> None:
    """Why the page array is read through a memoryview (docs/implementation.md §2)."""
    import timeit

    import numpy as np
    n = 1 << 20
    a = np.zeros(n, dtype=np.uint16)
    mv = memoryview(a)
    lst = [0] * n
    d = dict.fromkeys(range(0, n, 16), 0)
    env = {"a": a, "mv": mv, "lst": lst, "d": d}
    print("## micro: one element read from Python\n")
    print("| container | ns per read (best of 5 × 10⁶) |")
    print("|---|---|")
    for name, stmt in (("numpy ndarray a[i]", "a[12345]"), ("memoryview of it mv[i]",
                       "mv[12345]"), ("list", "lst[12345]"), ("dict.get", "d.get(12344)"),
                       ("slice fill of 4096 entries (numpy)", "a[4096:8192] = 7")):
        t = min(timeit.repeat(stmt, globals=env, number=1_000_000, repeat=5)) * 1000
        print(f"| {name} | {t:.1f} |")
    print()


# ---------------------------------------------------------------------------------------
# constrained allocation (issue 6)
# ---------------------------------------------------------------------------------------
def fragmented_4g(seed: int, mirror: bool) -> physmem.Kernel:
    """A 4 GiB Firecracker guest, eagerly booted, with about half of its memory held in
    random blocks of orders 0-3 (allocated in a churn that also frees), the rest free."""
    from physmem.machine import Machine, _firecracker
    m = Machine("firecracker-4g", _firecracker(4 << 30), page_array="none",
                source="Firecracker layout")
    k = physmem.Kernel.from_machine(m)
    k.boot(lazy=False)
    if mirror:
        k.attach_extent_mirror()
    rng = random.Random(seed)
    held: list[tuple[int, int]] = []
    total = sum(k.free_counts)
    owned = 0
    while owned < total // 2:
        if rng.random() < 0.8 or not held:
            o = rng.choice((0, 0, 1, 2, 3))
            pa = k.alloc_pages(0, rng.choice(("default", "direct")), o)
            held.append((pa, o))
            owned += 1 << o
        else:
            pa, o = held.pop(rng.randrange(len(held)))
            k.free_pages(pa, o)
            owned -= 1 << o
    return k


def constrained_requests(seed: int, n: int) -> list[tuple[int, int, int, int, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        npages = rng.choice((1, 2, 4, 4, 8, 16, 64, 256))
        high = rng.choice((16 << 20, 1 << 32, 1 << 32, (1 << 64) - 1))
        align = 4096 << rng.choice((0, 1, 1, 2, 4, 6, 8))
        boundary = rng.choice((0, 0, 1 << 16, 1 << 20, 1 << 22))
        if boundary and boundary < npages * 4096:
            boundary = 0
        out.append((npages, 0, high, align, boundary))
    return out


def bench_constrained() -> None:
    print("## constrained: one run under low/high/alignment/boundary, three allocators\n")
    print("4 GiB Firecracker guest, half its memory held in random blocks of orders 0-3 "
          "(seeded churn); 400 seeded requests (1-256 pages, high 16 MiB / 4 GiB / none, "
          "alignment 4 KiB-1 MiB, boundary none / 64 KiB / 1 MiB / 4 MiB), each freed right "
          "after it succeeds, so every allocator sees the same state.\n")
    reqs = constrained_requests(7, 400)
    print("| allocator | success rate | median time per request | mean |")
    print("|---|---|---|---|")
    for name in ("buddy (vm_phys_alloc_contig)", "extent mirror (seed 002)",
                 "uvm_pglistalloc"):
        k = fragmented_4g(3, mirror=name.startswith("extent"))
        times, ok = [], 0
        for npages, low, high, align, boundary in reqs:
            t = time.perf_counter()
            if name.startswith("buddy"):
                pa = k.alloc_contig(0, npages, low, high, align, boundary)
                pas = None if pa is None else [pa]
            elif name.startswith("extent"):
                pa = k.alloc_constrained(npages, low, high, align, boundary)
                pas = None if pa is None else [pa]
            else:
                pas = k.pglist_alloc(npages, low, high, align, boundary)
            times.append(time.perf_counter() - t)
            if pas:
                ok += 1
                k.free_contig(pas[0], npages)
        k.check()
        print(f"| {name} | {ok / len(reqs):.1%} | {statistics.median(times) * 1e6:.0f} µs | "
              f"{statistics.mean(times) * 1e6:.0f} µs |")
    print()
    print("The mirror's cost on every allocation and free (1997's objection): order-0 "
          "alloc_pages + free_pages pairs on the same fragmented 4 GiB machine, median of "
          "101 batches of 1000, with and without the mirror attached.\n")
    print("| mirror | median per pair | ratio |")
    print("|---|---|---|")
    base = None
    for mirror in (False, True):
        k = fragmented_4g(3, mirror)
        ap, fp = k.alloc_pages, k.free_pages

        def batch(ap=ap, fp=fp) -> float:
            t = time.perf_counter()
            for _ in range(1000):
                fp(ap(0, "default", 0), 0)
            return (time.perf_counter() - t) / 1000
        batch()
        v = statistics.median(batch() for _ in range(101))
        base = base or v
        verdict = ""
        if mirror:
            verdict = f"(target ≤ 2×: {'met' if v / base <= 2 else 'not met'})"
        print(f"| {'with' if mirror else 'without'} | {v * 1e6:.2f} µs | {v / base:.2f}× "
              f"{verdict} |")
    print()


# ---------------------------------------------------------------------------------------
# tools: ftrace import, workloads, sweeps (issue 8)
# ---------------------------------------------------------------------------------------
def synthetic_ftrace(n: int, seed: int = 5) -> list[str]:
    """``n`` lines shaped like a real trace_pipe capture: page allocations and frees of
    orders 0-3 with a working set of a few thousand pages, other events and stack lines
    interleaved."""
    rng = random.Random(seed)
    live: list[tuple[int, int]] = []
    out = []
    t = 100.0
    while len(out) < n:
        t += rng.random() / 1000
        x = rng.random()
        pre = f"{'bash':>16}-{2210:<7} [{rng.randrange(8):03d}] .....{t:13.6f}: "
        if x < 0.05:
            out.append(pre + "mm_page_alloc_zone_locked: page=00000000f2a1c5d7 "
                       "pfn=0x12f5c0 order=0 migratetype=1 percpu_refill=1")
        elif x < 0.08:
            out.append(" => __alloc_pages+0x1d4/0x350")
        elif x < 0.55 or not live:
            o = rng.choice((0, 0, 0, 1, 2, 3))
            pfn = (rng.randrange(0x10000, 0x30000) >> o) << o
            live.append((pfn, o))
            out.append(pre + f"mm_page_alloc: page=000000006b3c09f1 pfn={pfn:#x} order={o} "
                       f"migratetype={rng.choice((0, 1, 1, 2))} gfp_flags=GFP_KERNEL")
        else:
            pfn, o = live.pop(rng.randrange(len(live)))
            ev = "mm_page_free_batched" if o == 0 and rng.random() < 0.3 else "mm_page_free"
            out.append(pre + f"{ev}: page=0000000039e4d2a0 pfn={pfn:#x} order={o}")
    return out


def bench_tools() -> None:
    from physmem.ftrace import FtraceImporter
    from physmem.sweep import load_sweep, run_sweep
    from physmem.workloads import WORKLOADS, RunConfig, run_workload
    print("## tools: ftrace import, workloads, sweeps\n")
    lines = synthetic_ftrace(400_000)
    best = None
    for _ in range(3):
        imp = FtraceImporter(physmem.get_machine("pc-6g"))
        t = time.perf_counter()
        n = sum(1 for _ in imp.convert(lines))
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    print(f"ftrace import (parse + convert) of {len(lines):,} synthetic trace_pipe lines "
          f"({n:,} trace lines out): {best * 1e3:.0f} ms, **{len(lines) / best / 1e3:.0f} k "
          f"lines/s** (target ≥ 200 k: {'met' if len(lines) / best >= 2e5 else 'not met'}); "
          "best of 3.\n")
    print("| workload (firecracker-1g, 20,000 steps) | trace operations | ops/s |")
    print("|---|---|---|")
    for w in WORKLOADS:
        r = run_workload(RunConfig(w, "firecracker-1g", ops=20_000, seed=1))
        print(f"| {w} | {r.summary['ops']:,} | {r.summary['ops_per_second']:,} |")
    grid = ('machines = ["firecracker-128m", "firecracker-1g"]\npolicies = ["lazy", "eager"]\n'
            'workloads = ["churn", "fragment"]\nseeds = [1, 2]\nops = 20000\n')
    specs = load_sweep(grid)
    times = {}
    for workers in (1, 2):
        t = time.perf_counter()
        run_sweep(specs, workers=workers)
        times[workers] = time.perf_counter() - t
    print(f"\nSweep of {len(specs)} configurations (2 machines × 2 policies × 2 workloads × "
          f"2 seeds, 20,000 steps each): 1 worker {times[1]:.1f} s, 2 workers "
          f"{times[2]:.1f} s: **speed-up {times[1] / times[2]:.2f}×** on this 2-core machine.\n")


# ---------------------------------------------------------------------------------------
# pagelayer (DragonFly's vm_page)
# ---------------------------------------------------------------------------------------
def bench_pagelayer() -> None:
    from physmem.dfly_workloads import run as dfly_run
    from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm

    batches, n = 101, 2000
    print("## pagelayer: DragonFly's page layer\n")
    print(f"vm_page_alloc(obj, pindex, VM_ALLOC_NORMAL) + vm_page_free on a freshly booted "
          f"firecracker-1g (each pair takes the head of the colour's free queue and puts "
          f"it back), page and queue spinlocks taken as the kernel does; median of "
          f"{batches} batches of {n} pairs.  WITNESS: the lock-order checker on.  The "
          f"buddy source hands out and takes back order-0 pages through FreeBSD's "
          f"Kernel API instead of PQ_FREE.\n")
    print("| free-page source | WITNESS | median per pair | target ≤ 5 µs |")
    print("|---|---|---|---|")
    for source in ("dragonfly", "buddy"):
        for witness in (False, True):
            vm = DragonflyVm("firecracker-1g", source=source, witness=witness)
            o = vm.object_create()
            alloc, free = vm.vm_page_alloc, vm.vm_page_free

            def pair(alloc=alloc, free=free, o=o) -> float:
                t = time.perf_counter()
                for i in range(n):
                    free(alloc(o, i, VM_ALLOC_NORMAL))
                return (time.perf_counter() - t) / n

            pair()
            v = statistics.median(pair() for _ in range(batches))
            print(f"| {source} | {'on' if witness else 'off'} | {v * 1e6:.2f} µs | "
                  f"{'met' if v <= 5e-6 else 'not met'} |")
            vm.check()
    print()
    print("Boot (vm_page_startup + vm_numa_organize + vm_page_startup_finish), min of 3:\n")
    print("| machine | pages | boot |")
    print("|---|---|---|")
    for machine in ("firecracker-1g", "pc-6g", "server-96g-2dom"):
        best = None
        for _ in range(3):
            t = time.perf_counter()
            vm = DragonflyVm(machine)
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        print(f"| {machine} | {vm.vmstats.v_page_count:,} | {best * 1e3:.0f} ms |")
        del vm
    print()
    size = 4 << 30
    print(f"Page-cache fill under pressure: read {size >> 30} GiB of file data (8 vnode "
          "objects, 64 KiB reads, 5 % of reads re-reference a recent page) on "
          "firecracker-1g, i.e. 4x its RAM: vm_page_grab(NORMAL|RETRY) + set_validclean + "
          "activate + wakeup per page; allocations that hit v_free_reserved wait in "
          "vm_wait, which runs the pagedaemon (active -> inactive -> cache -> free).\n")
    print("| free-page source | pages | time | pages/s | daemon passes | deactivated | "
          "cached | freed by daemon |")
    print("|---|---|---|---|---|---|---|---|")
    for source in ("dragonfly", "buddy"):
        res, vm = dfly_run("pagecache", "firecracker-1g", source=source, nbytes=size)
        print(f"| {source} | {res.pages:,} | {res.seconds:.1f} s | {res.pages_per_s:,.0f} | "
              f"{res.pageout_passes} | {res.deactivated:,} | {res.cached:,} | "
              f"{res.freed_by_daemon:,} |")
        vm.check()
    print()


# ---------------------------------------------------------------------------------------
# layout: free-queue data layouts for vm_phys (issue 13)
# ---------------------------------------------------------------------------------------
def _pair_three_dicts(nxt: dict, prv: dict, ho: dict) -> None:
    """State A's queue work with vm_phys's layout: pop the head of the order-2 queue, split
    it (order-1 and order-0 buddies to their tails), then merge both back and requeue."""
    s = -3
    m = nxt[s]
    n = nxt.pop(m)
    del prv[m]
    nxt[s] = n
    prv[n] = s
    del ho[m]
    for q, b, o in ((-2, m + 2, 1), (-1, m + 1, 0)):
        ho[b] = o
        last = prv[q]
        prv[b] = last
        nxt[b] = q
        nxt[last] = b
        prv[q] = b
    for b, o in ((m ^ 1, 0), (m ^ 2, 1)):
        if ho.get(b) == o:
            p = prv.pop(b)
            n = nxt.pop(b)
            nxt[p] = n
            prv[n] = p
            del ho[b]
    ho[m] = 2
    last = prv[s]
    prv[m] = last
    nxt[m] = s
    nxt[last] = m
    prv[s] = m


def _pair_one_dict(h: dict) -> None:
    """The same work with one structure per head: ``h[m] = [prev, next, order]``."""
    s = -3
    sn = h[s]
    m = sn[1]
    n = h.pop(m)[1]
    sn[1] = n
    h[n][0] = s
    for q, b, o in ((-2, m + 2, 1), (-1, m + 1, 0)):
        qn = h[q]
        last = qn[0]
        h[b] = [last, q, o]
        h[last][1] = b
        qn[0] = b
    for b, o in ((m ^ 1, 0), (m ^ 2, 1)):
        bn = h.get(b)
        if bn is not None and bn[2] == o:
            h[bn[0]][1] = bn[1]
            h[bn[1]][0] = bn[0]
            del h[b]
    last = sn[0]
    h[m] = [last, s, 2]
    h[last][1] = m
    sn[0] = m


def bench_layout() -> None:
    """The queue work of one state-A pair (1 pop, 2 splits, 2 merges, 1 insert) in vm_phys's
    three dicts and in one dict of [prev, next, order] lists, 2,000 other heads queued."""
    import timeit
    nxt = {-1: -1, -2: -2, -3: -3}
    prv = dict(nxt)
    ho: dict[int, int] = {}
    h: dict[int, list[int]] = {q: [q, q, -1] for q in (-1, -2, -3)}
    for m in [1 << 20, *range(1 << 22, (1 << 22) + 4 * 2000, 4)]:
        ho[m] = 2
        last = prv[-3]
        prv[m], nxt[m], nxt[last], prv[-3] = last, -3, m, m
        hn = h[-3]
        h[m] = [hn[0], -3, 2]
        h[hn[0]][1] = m
        hn[0] = m
    n = 20000
    res = {}
    for name, fn, args in (("three dicts (nxt, prv, head_order)", _pair_three_dicts,
                            (nxt, prv, ho)),
                           ("one dict of [prev, next, order]", _pair_one_dict, (h,))):
        res[name] = min(timeit.repeat(lambda fn=fn, args=args: fn(*args), number=n,
                                      repeat=15)) / n
    print("## layout: free-queue layouts for vm_phys (issue 13)\n")
    print("The dict work of one order-0 pair in state A (pop, 2 splits, 2 merges, insert), "
          "without the rest of vm_phys; min of 15 runs of 20,000.\n")
    print("| layout | per pair | ratio |")
    print("|---|---|---|")
    base = res["three dicts (nxt, prv, head_order)"]
    for name, v in res.items():
        print(f"| {name} | {v * 1e9:.0f} ns | {v / base:.2f} |")
    print()


GROUPS = {"micro": bench_micro, "pair": bench_pair, "boot": bench_boot, "lazy": bench_lazy,
          "replay": bench_replay, "constrained": bench_constrained, "tools": bench_tools,
          "pagelayer": bench_pagelayer, "layout": bench_layout}


# ---------------------------------------------------------------------------------------
# frontdoor (issue 14): map import as pasted, hostile maps, the memory picture, reports
# ---------------------------------------------------------------------------------------
def _old_mapimport():
    """main's map importer before issue 14, loaded beside the new one for ratios."""
    import importlib.util
    import subprocess as sp
    src = sp.run(["git", "show", "388bdd3:src/physmem/mapimport.py"], capture_output=True,
                 text=True, cwd=Path(__file__).parents[1]).stdout
    if not src:
        return None
    spec = importlib.util.spec_from_loader("physmem._old_mapimport", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "physmem"
    exec(compile(src, "old mapimport", "exec"), mod.__dict__)
    return mod


def _best(fn, reps: int = 3) -> float:
    best = None
    for _ in range(reps):
        t = time.perf_counter()
        with contextlib.suppress(physmem.PhysmemError):
            fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best


def bench_frontdoor() -> None:
    from physmem.mapimage import memory_map
    from physmem.mapimport import import_map
    from physmem.reports import report
    from physmem.workloads import RunConfig, run_workload, write_run
    print("## frontdoor (issue 14): pasted maps, hostile maps, the memory picture\n")
    old = _old_mapimport()
    maps = Path(__file__).parents[1] / "tests" / "data" / "maps"
    print("| input | new importer | main's importer (388bdd3) |")
    print("|---|---|---|")
    for f in sorted(maps.iterdir()):
        text = f.read_text()
        new_t = _best(lambda text=text: import_map(text))
        try:
            old.import_map(text)
            old_res = f"{_best(lambda text=text: old.import_map(text)) * 1e3:.2f} ms"
        except physmem.PhysmemError as e:
            old_res = f"refused: {str(e)[:50]}"
        print(f"| {f.name} | {new_t * 1e3:.2f} ms | {old_res} |")
    # (name, text for the new importer, text for main's, main's share of the new text):
    # main's importer is run on a slice where it would take minutes on the whole.
    ram = "".join(f"{i * 0x2000:08x}-{i * 0x2000 + 0xfff:08x} : System RAM\n"
                  for i in range(100_000))
    hexline, hex4k = "f" * 50_000 + " : System RAM\n", "1" * 4000 + " : x\n"
    hostile = [
        ("10 k System RAM lines", ram[:len(ram) // 10], ram[:len(ram) // 10], ""),
        ("100 k System RAM lines", ram, None, "quadratic: not run"),
        ("160 lines of 50 KB hex digits (8 MB)", hexline * 160, hexline, "1 line"),
        ("2,000 lines of 4,000 hex digits + ' : '", hex4k * 2000, hex4k * 20, "20 lines"),
    ]
    print("\n| hostile input | new importer (refused) | main's importer |")
    print("|---|---|---|")
    for name, text, old_text, note in hostile:
        new_t = _best(lambda text=text: import_map(text), reps=1)
        if old_text is None:
            old_res = note
        else:
            old_t = _best(lambda t=old_text: old.import_map(t), reps=1)
            old_res = f"{old_t:.2f} s" + (f" for {note}" if note else "")
        print(f"| {name} | {new_t:.3f} s | {old_res} |")
    print("\n| memory picture (memory_map, lazy boot) | free blocks | cells | time |")
    print("|---|---|---|---|")
    for m in ("firecracker-1g", "firecracker-64g", "server-1t"):
        k = physmem.boot(m, lazy=True)
        nblocks = sum(1 for _ in k.phys.free_blocks())
        t = _best(lambda k=k: memory_map(k))
        mm = memory_map(k)
        print(f"| {m} | {nblocks:,} | {sum(len(c) for c in mm.cells):,} "
              f"({mm.pages_per_cell:,} pages each) | {t * 1e3:.0f} ms |")
    run = run_workload(RunConfig("fragment", "firecracker-1g", ops=20_000, seed=1))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        rd = write_run(run, Path(d) / "r")
        t = time.perf_counter()
        from rich.console import Console
        report(rd, console=Console(file=io.StringIO()))
        dt = time.perf_counter() - t
    print(f"\n`physmem report` of a 20,000-step fragment run on firecracker-1g (5 PNGs, three "
          f"memory pictures replayed from the trace, report.html): {dt:.1f} s.\n")


GROUPS["frontdoor"] = bench_frontdoor


def main() -> int:
    groups = sys.argv[1:] or list(GROUPS)
    header()
    for g in groups:
        if g not in GROUPS:
            print(f"unknown group {g!r} (known: {', '.join(GROUPS)})", file=sys.stderr)
            return 2
        GROUPS[g]()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
