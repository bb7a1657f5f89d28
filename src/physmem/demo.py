"""``make demo`` / ``physmem demo``: boot a machine, print vm.phys_free, run a short seeded
allocate/free workload through the API and show what happened and what each step cost."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from .bits import PAGE_SIZE
from .checks import check_int, untrusted
from .kernel import Kernel
from .workloads import MAX_OPS


@dataclass
class Step:
    name: str
    what: str
    seconds: float
    ops: int = 0


def churn(k: Kernel, nops: int, seed: int) -> dict[str, int]:
    """A seeded mix of vm_phys operations on a booted kernel; returns counts per kind.

    Holds at most ~10 % of free memory; frees blocks whole or page by page."""
    rng = random.Random(seed)
    held: list[tuple[int, int]] = []          # (pa, npages) runs the workload owns
    counts = {"alloc_pages": 0, "alloc_npages": 0, "alloc_contig": 0, "free": 0, "NULL": 0}
    limit = k.free_count(0) // 10
    owned = 0
    for _ in range(nops):
        x = rng.random()
        if (x < 0.55 and owned < limit) or not held:
            kind = rng.random()
            if kind < 0.75:
                order = rng.choice((0, 0, 0, 1, 2, 3))
                pa = k.alloc_pages(0, rng.choice(("default", "direct")), order)
                counts["alloc_pages"] += 1
                if pa is None:
                    counts["NULL"] += 1
                else:
                    held.append((pa, 1 << order))
                    owned += 1 << order
            elif kind < 0.9:
                pas = k.alloc_npages(0, "default", rng.randint(1, 16))
                counts["alloc_npages"] += 1
                held.extend((pa, 1) for pa in pas)
                owned += len(pas)
            else:
                n = rng.randint(1, 64)
                pa = k.alloc_contig(0, n, 0, 1 << 32, PAGE_SIZE << rng.randint(0, 4), 0)
                counts["alloc_contig"] += 1
                if pa is None:
                    counts["NULL"] += 1
                else:
                    held.append((pa, n))
                    owned += n
        else:
            pa, n = held.pop(rng.randrange(len(held)))
            k.free_contig(pa, n)
            owned -= n
            counts["free"] += 1
    return counts


def run_demo(machine: str = "firecracker-1g", nops: int = 5000, seed: int = 1,
             console: Console | None = None) -> list[Step]:
    """Run the demo, printing to ``console``; returns the timed steps."""
    con = console or Console()
    check_int(nops, "demo operations", 1, MAX_OPS)
    check_int(seed, "seed", 0, (1 << 64) - 1)
    steps: list[Step] = []
    k = Kernel.from_machine(machine)
    t = time.perf_counter()
    k.boot()
    steps.append(Step("boot", f"{untrusted(machine)}, debug.vm.lazy_page_init="
                      f"{k.tunables.lazy_page_init}: {k.free_count(0)} free pages, "
                      f"{k.stats.boot} page structures initialised",
                      time.perf_counter() - t))
    con.print(f"[bold]sysctl vm.phys_free[/bold] after booting {untrusted(machine)}:")
    con.print(k.sysctl("vm.phys_free"), markup=False, highlight=False)
    t = time.perf_counter()
    counts = churn(k, nops, seed)
    steps.append(Step("workload", ", ".join(f"{v} {n}" for n, v in counts.items()),
                      time.perf_counter() - t, nops))
    if k.param.has_lazyinit:
        t = time.perf_counter()
        k.lazy_init()
        steps.append(Step("lazy_init", f"drained the LAZYINIT pool: {k.stats.on_demand} "
                          f"pages initialised on demand, {k.stats.drain} by the drain",
                          time.perf_counter() - t))
    t = time.perf_counter()
    k.check()
    steps.append(Step("INVARIANTS", "every free queue, block and count checked",
                      time.perf_counter() - t))
    con.print("[bold]sysctl vm.phys_free[/bold] after the workload:")
    con.print(k.sysctl("vm.phys_free"), markup=False, highlight=False)
    table = Table(title=f"physmem demo: {untrusted(machine)}, {nops} operations, seed {seed}")
    table.add_column("step")
    table.add_column("what happened")
    table.add_column("time", justify="right")
    table.add_column("per op", justify="right")
    for s in steps:
        per = f"{s.seconds / s.ops * 1e6:.2f} µs" if s.ops else ""
        table.add_row(s.name, s.what, f"{s.seconds * 1e3:.2f} ms", per)
    con.print(table)
    return steps
