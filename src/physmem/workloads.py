"""Seeded, named workloads: operation streams through the Kernel API, recorded as traces,
with fragmentation metrics sampled over time.

Workloads (:data:`WORKLOADS`):

* ``churn``      -- boot, then steady churn of mixed orders (0-5, both pools) around a
  target occupancy;
* ``pagecache``  -- a page-cache fill: batches of single pages (alloc_npages) until memory
  is nearly full, then LRU-like eviction of the oldest batches and refill;
* ``forkexec``   -- a fork/exec storm: processes of small allocations (page tables from
  DIRECT, data from DEFAULT) that live a short while and exit all at once;
* ``dma``        -- drivers asking for constrained DMA buffers (below 4 GiB or 16 MiB,
  aligned, not crossing 64 KiB or 1 MiB lines) over background churn;
* ``fragment``   -- long-running fragmentation: long-lived allocations accumulate while
  short-lived ones of mixed orders come and go.

:func:`run_workload` runs one on a booted kernel through a :class:`TracedKernel`, which
writes every operation in the trace format (so the run replays exactly), and samples
:func:`metrics` every ``interval`` operations.  :func:`write_run` stores a run directory
(``config.json``, ``run.trace``, ``metrics.csv``, ``summary.json``) atomically: the
directory appears complete or not at all.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .bits import PAGE_SHIFT
from .errors import ArgumentError, PhysmemError
from .kernel import Kernel, Tunables

PAGE = 1 << PAGE_SHIFT


class WorkloadError(PhysmemError, ValueError):
    """An unknown workload, or bad workload parameters."""


class TracedKernel:
    """The Kernel API, writing each operation as a trace line (physmem trace format)."""

    def __init__(self, k: Kernel, out: list[str]) -> None:
        self.k = k
        self.out = out

    def alloc_pages(self, domain: int, pool: str, order: int) -> int | None:
        self.out.append(f"alloc_pages {domain} {pool} {order}")
        return self.k.alloc_pages(domain, pool, order)

    def alloc_npages(self, domain: int, pool: str, npages: int) -> list[int]:
        self.out.append(f"alloc_npages {domain} {pool} {npages}")
        return self.k.alloc_npages(domain, pool, npages)

    def alloc_contig(self, domain: int, npages: int, low: int, high: int, alignment: int,
                     boundary: int) -> int | None:
        self.out.append(f"alloc_contig {domain} {npages} {low:#x} {high:#x} {alignment:#x} "
                        f"{boundary:#x}")
        return self.k.alloc_contig(domain, npages, low, high, alignment, boundary)

    def free_pages(self, pa: int, order: int) -> None:
        self.out.append(f"free_pages {pa:#x} {order}")
        self.k.free_pages(pa, order)

    def free_contig(self, pa: int, npages: int) -> None:
        self.out.append(f"free_contig {pa:#x} {npages}")
        self.k.free_contig(pa, npages)

    def lazy_init(self) -> None:
        self.out.append("lazy_init")
        self.k.lazy_init()


def setup_lines(k: Kernel) -> list[str]:
    """The trace lines that rebuild ``k``'s machine and boot it as it was booted."""
    out = []
    if k.param.name != "amd64":
        out.append(f"arch {k.param.name}")
    out += [f"seg {s:#x} {e:#x} {d}" for s, e, d in k.seg_lines]
    out += [f"avail {s:#x} {e:#x}" for s, e in k.phys_avail]
    if k.tunables.blacklist:
        out.append("tunable vm.blacklist=" + ",".join(f"{pa:#x}" for pa in
                                                        k.tunables.blacklist))
    out.append(f"boot {'lazy' if k.lazy else 'eager'}")
    return out


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------
def unusable_index(nr: list[int], j: int) -> int:
    """Linux's unusable free space index for order ``j``, times 1000 (formats.md §6)."""
    free_pages = sum(n << o for o, n in enumerate(nr))
    if free_pages == 0:
        return 1000
    suitable = sum(n << (o - j) for o, n in enumerate(nr) if o >= j)
    return (free_pages - (suitable << j)) * 1000 // free_pages


def extfrag_index(nr: list[int], j: int) -> int:
    """Linux's fragmentation index for order ``j``, times 1000 (-1000: would succeed)."""
    free_pages = sum(n << o for o, n in enumerate(nr))
    free_blocks = sum(nr)
    if free_blocks == 0:
        return 0
    if any(n for o, n in enumerate(nr) if o >= j):
        return -1000
    return 1000 - (1000 + free_pages * 1000 // (1 << j)) // free_blocks


def buddyinfo(k: Kernel) -> str:
    """``/proc/buddyinfo``-style text: one line per domain and free list, blocks per order
    (all pools together)."""
    phys = k.phys
    names = {}
    for name, fl in k.param.freelist_names().items():
        flind = phys.flind_of[fl]
        if flind >= 0:
            names.setdefault(flind, name.upper())
    lines = []
    for d in range(phys.ndomains):
        for f in range(phys.nfreelists):
            nr = [sum(phys.count(d, f, p, o) for p in range(phys.NFP)) for o in range(phys.NFO)]
            lines.append(f"Domain {d}, list {names.get(f, str(f)):>8} " +
                         "".join(f"{n:6d} " for n in nr))
    return "\n".join(lines) + "\n"


def largest_free_run(k: Kernel) -> int:
    """The longest run of physically contiguous free pages (across blocks)."""
    spans = sorted((m, m + (1 << o)) for _d, _f, _p, o, m in k.phys.free_blocks())
    best = run_start = run_end = 0
    for s, e in spans:
        if s == run_end:
            run_end = e
        else:
            run_start, run_end = s, e
        best = max(best, run_end - run_start)
    return best


def metrics(k: Kernel, op: int, elapsed: float) -> dict:
    """One sample: free pages, blocks per order, fragmentation indices, largest free run,
    and which contiguous sizes vm_phys_alloc_contig could still serve."""
    phys = k.phys
    nr = [0] * phys.NFO
    for d in range(phys.ndomains):
        for f in range(phys.nfreelists):
            for o in range(phys.NFO):
                nr[o] += sum(phys.count(d, f, p, o) for p in range(phys.NFP))
    row: dict = {"op": op, "seconds": round(elapsed, 6), "free_pages": sum(k.free_counts)}
    for o, n in enumerate(nr):
        row[f"blocks_o{o}"] = n
    for j in (3, 9):
        row[f"unusable_o{j}"] = unusable_index(nr, j) / 1000
        row[f"extfrag_o{j}"] = extfrag_index(nr, j) / 1000
    row["largest_free_run"] = largest_free_run(k)
    top = max((o for o, n in enumerate(nr) if n), default=-1)
    for pages in (16, 512, 4096):
        row[f"contig_{pages}_ok"] = int(top >= (pages - 1).bit_length())
    return row


# ---------------------------------------------------------------------------------------
# The workloads
# ---------------------------------------------------------------------------------------
@dataclass
class Held:
    """What a workload holds: (address, npages, order or None for free_contig)."""

    blocks: list[tuple[int, int, int | None]] = field(default_factory=list)
    pages: int = 0

    def add(self, pa: int | None, npages: int, order: int | None) -> None:
        if pa is not None:
            self.blocks.append((pa, npages, order))
            self.pages += npages

    def free_one(self, t: TracedKernel, i: int) -> None:
        pa, n, o = self.blocks.pop(i)
        if o is None:
            t.free_contig(pa, n)
        else:
            t.free_pages(pa, o)
        self.pages -= n


def _churn(t: TracedKernel, rng: random.Random, nops: int, fill: float = 0.5) -> Iterator[int]:
    total = sum(t.k.free_counts)
    held = Held()
    for i in range(nops):
        if held.pages < total * fill and (rng.random() < 0.6 or not held.blocks):
            o = rng.choices(range(6), weights=(30, 15, 10, 8, 5, 3))[0]
            held.add(t.alloc_pages(0, rng.choice(("default", "direct")), o), 1 << o, o)
        elif held.blocks:
            held.free_one(t, rng.randrange(len(held.blocks)))
        yield i


def _pagecache(t: TracedKernel, rng: random.Random, nops: int) -> Iterator[int]:
    total = sum(t.k.free_counts)
    batches: list[list[int]] = []
    held = 0
    for i in range(nops):
        if held < total * 0.9 and rng.random() < 0.7:
            pas = t.alloc_npages(0, "default", rng.choice((16, 32, 64)))
            if pas:
                batches.append(pas)
                held += len(pas)
        elif batches:
            oldest = batches.pop(0)             # evict the oldest batch (LRU)
            for pa in oldest:
                t.free_pages(pa, 0)
            held -= len(oldest)
        yield i


def _forkexec(t: TracedKernel, rng: random.Random, nops: int) -> Iterator[int]:
    procs: list[Held] = []
    for i in range(nops):
        x = rng.random()
        if x < 0.15 or not procs:
            procs.append(Held())                                  # fork
        elif x < 0.85:
            p = procs[rng.randrange(len(procs))]
            if rng.random() < 0.3:
                p.add(t.alloc_pages(0, "direct", 0), 1, 0)        # a page-table page
            else:
                o = rng.choice((0, 0, 0, 1, 2))
                p.add(t.alloc_pages(0, "default", o), 1 << o, o)
        else:
            p = procs.pop(rng.randrange(len(procs)))              # exit
            while p.blocks:
                p.free_one(t, len(p.blocks) - 1)
        yield i


def _dma(t: TracedKernel, rng: random.Random, nops: int) -> Iterator[int]:
    background = _churn(t, rng, nops, fill=0.4)
    held = Held()
    for i in range(nops):
        if rng.random() < 0.25:
            if held.blocks and rng.random() < 0.45:
                held.free_one(t, rng.randrange(len(held.blocks)))
            else:
                n = rng.choice((1, 2, 4, 4, 8, 16, 64))
                high = rng.choice((16 << 20, 1 << 32, 1 << 32))
                align = PAGE << rng.choice((0, 1, 2, 4))
                bound = rng.choice((0, 1 << 16, 1 << 20))
                if bound and bound < n * PAGE:
                    bound = 0
                held.add(t.alloc_contig(0, n, 0, high, align, bound), n, None)
        else:
            next(background, None)
        yield i


def _fragment(t: TracedKernel, rng: random.Random, nops: int) -> Iterator[int]:
    total = sum(t.k.free_counts)
    long_lived, short = Held(), Held()
    for i in range(nops):
        x = rng.random()
        if x < 0.08 and long_lived.pages < total * 0.5:
            o = rng.choice((0, 0, 1, 2, 3))
            long_lived.add(t.alloc_pages(0, "default", o), 1 << o, o)
        elif x < 0.55 and short.pages < total * 0.3:
            o = rng.choice((0, 1, 2, 3, 4, 6, 9))
            short.add(t.alloc_pages(0, rng.choice(("default", "direct")), o), 1 << o, o)
        elif short.blocks:
            short.free_one(t, rng.randrange(len(short.blocks)))
        yield i


WORKLOADS: dict[str, Callable] = {"churn": _churn, "pagecache": _pagecache,
                                  "forkexec": _forkexec, "dma": _dma, "fragment": _fragment}


@dataclass
class RunConfig:
    """What a run was: workload, machine, operations, seed, boot and sampling."""

    workload: str
    machine: str = "firecracker-1g"
    ops: int = 20_000
    seed: int = 1
    lazy: bool = True
    tunables: list[str] = field(default_factory=list)
    interval: int = 0          # 0: ops / 100
    mirror: bool = False

    def validate(self) -> None:
        if self.workload not in WORKLOADS:
            raise WorkloadError(f"unknown workload {self.workload!r} "
                                f"(known: {', '.join(WORKLOADS)})")
        if not isinstance(self.ops, int) or self.ops <= 0:
            raise WorkloadError(f"ops must be a positive integer, not {self.ops!r}")
        if self.interval < 0:
            raise WorkloadError("interval must not be negative")


@dataclass
class Run:
    config: RunConfig
    trace: list[str]
    samples: list[dict]
    summary: dict


def run_workload(cfg: RunConfig, progress: Callable[[int], None] | None = None) -> Run:
    """Boot the machine, run the workload through a traced kernel, sample metrics."""
    cfg.validate()
    k = Kernel.from_machine(cfg.machine)
    tun = Tunables.parse(cfg.tunables, k.param)
    k.boot(lazy=cfg.lazy and k.param.has_lazyinit, tunables=tun)
    if cfg.mirror:
        k.attach_extent_mirror()
    lines = setup_lines(k)
    t = TracedKernel(k, lines)
    rng = random.Random(cfg.seed)
    interval = cfg.interval or max(1, cfg.ops // 100)
    samples = [metrics(k, 0, 0.0)]
    t0 = time.perf_counter()
    for i in WORKLOADS[cfg.workload](t, rng, cfg.ops):
        if (i + 1) % interval == 0:
            samples.append(metrics(k, i + 1, time.perf_counter() - t0))
            if progress:
                progress(i + 1)
    elapsed = time.perf_counter() - t0
    k.check()
    ops_run = len(lines) - len(setup_lines(k))
    summary = {"ops": ops_run, "seconds": round(elapsed, 6),
               "ops_per_second": round(ops_run / elapsed if elapsed else 0.0),
               "final": samples[-1], "buddyinfo": buddyinfo(k),
               "inits": asdict(k.stats)}
    return Run(cfg, lines, samples, summary)


def write_run(run: Run, out_dir: str | Path) -> Path:
    """Write a run directory atomically: built in a temporary directory beside it and
    renamed into place (an existing directory of that name is replaced)."""
    out = Path(out_dir)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        (tmp / "config.json").write_text(json.dumps(asdict(run.config), indent=2) + "\n")
        (tmp / "run.trace").write_text("\n".join(run.trace) + "\n")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(run.samples[0]))
        w.writeheader()
        w.writerows(run.samples)
        (tmp / "metrics.csv").write_text(buf.getvalue())
        (tmp / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_run(run_dir: str | Path) -> tuple[dict, list[dict], dict]:
    """The config, metric samples and summary of a run directory."""
    d = Path(run_dir)
    try:
        cfg = json.loads((d / "config.json").read_text())
        with open(d / "metrics.csv", newline="") as f:
            samples = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        summary = json.loads((d / "summary.json").read_text())
    except FileNotFoundError as e:
        raise ArgumentError(f"{run_dir}: not a run directory ({Path(e.filename).name} "
                            "missing)") from None
    except (ValueError, KeyError) as e:
        raise ArgumentError(f"{run_dir}: unreadable run directory ({e})") from None
    return cfg, samples, summary
