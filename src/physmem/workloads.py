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
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import clean_stale, owned_names, refuse_temp, replace_dir
from .bits import PAGE_SHIFT
from .checks import check_int
from .errors import ArgumentError, PhysmemError
from .kernel import Kernel, Tunables

PAGE = 1 << PAGE_SHIFT


MAX_OPS = 10_000_000            # steps of one run (about a minute of model time)


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
    """Linux's unusable free space index for order ``j``, times 1000 (mm/vmstat.c's
    unusable_free_index())."""
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
    which contiguous sizes vm_phys_alloc_contig could still serve, and lazy-init progress
    (page structures initialised at boot, on demand, by the drain; pages still LAZYINIT)."""
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
    # Lazy-init progress: page structures initialised so far, by phase, and free pages
    # still in the LAZYINIT pool (never initialised).
    st = k.stats
    row["init_boot"], row["init_on_demand"], row["init_drain"] = \
        st.boot, st.on_demand, st.drain
    lz = phys.LAZYINIT
    row["lazyinit_pages"] = 0 if lz is None else sum(
        phys.count(d, f, lz, o) << o for d in range(phys.ndomains)
        for f in range(phys.nfreelists) for o in range(phys.NFO))
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
        if not isinstance(self.workload, str) or self.workload not in WORKLOADS:
            raise WorkloadError(f"unknown workload {self.workload!r} "
                                f"(known: {', '.join(WORKLOADS)})")
        check_int(self.ops, "ops", 1, MAX_OPS, WorkloadError)
        check_int(self.seed, "seed", 0, (1 << 64) - 1, WorkloadError)
        check_int(self.interval, "interval", 0, self.ops, WorkloadError)   # 0: ops / 100
        for name in ("lazy", "mirror"):
            if not isinstance(getattr(self, name), bool):
                raise WorkloadError(f"{name} must be true or false")
        if not isinstance(self.machine, str) or not isinstance(self.tunables, list) \
                or not all(isinstance(t, str) for t in self.tunables):
            raise WorkloadError("machine must be a name and tunables a list of strings")


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
    if samples[-1]["op"] != cfg.ops:          # the final state, when ops % interval != 0
        samples.append(metrics(k, cfg.ops, elapsed))
    k.check()
    ops_run = len(lines) - len(setup_lines(k))
    summary = {"ops": ops_run, "seconds": round(elapsed, 6),
               "ops_per_second": round(ops_run / elapsed if elapsed else 0.0),
               "final": samples[-1], "buddyinfo": buddyinfo(k),
               "inits": asdict(k.stats)}
    return Run(cfg, lines, samples, summary)


RUN_FILES = ("config.json", "run.trace", "metrics.csv", "summary.json")
REPORT_FILES = ("memory-map.png", "free-blocks.png", "fragmentation.png", "lazy-init.png",
                "boot-cost.png", "report.html")
RUN_OWNED = owned_names(RUN_FILES + REPORT_FILES)     # what --force may replace in a run dir


def write_run(run: Run, out_dir: str | Path, force: bool = False) -> Path:
    """Write a run directory atomically: built in a temporary directory beside it, marked
    as physmem's and renamed into place.  An existing directory is replaced only if it is
    empty, or -- with ``force`` -- a physmem run directory holding only what physmem writes
    there (:func:`physmem.atomic.replace_dir`); anything else raises OutputError."""
    def build(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(asdict(run.config), indent=2) + "\n")
        (tmp / "run.trace").write_text("\n".join(run.trace) + "\n")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(run.samples[0]))
        w.writeheader()
        w.writerows(run.samples)
        (tmp / "metrics.csv").write_text(buf.getvalue())
        (tmp / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n")
    return replace_dir(out_dir, "run", build, force, RUN_OWNED)


MAX_JSON_BYTES = 4 << 20        # config.json, summary.json of a run directory
MAX_METRICS_BYTES = 64 << 20    # metrics.csv
MAX_SAMPLES = 1_000_000
_MAX_VALUE = float(1 << 63)     # every metric is a count, an index or seconds
_CONFIG_KEYS = {"workload": str, "machine": str, "ops": int, "seed": int, "lazy": bool,
                "mirror": bool}
_SAMPLE_KEYS = ("op", "free_pages", "unusable_o3", "unusable_o9", "extfrag_o9",
                "largest_free_run")


def _read_limited(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ArgumentError(f"{path}: larger than {limit >> 20} MiB; not physmem's")
    return data.decode("utf-8", errors="replace")


def _json(path: Path) -> dict:
    try:
        d = json.loads(_read_limited(path, MAX_JSON_BYTES))
    except RecursionError:
        raise ArgumentError(f"{path}: JSON nested too deeply") from None
    except ValueError as e:
        raise ArgumentError(f"{path}: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise ArgumentError(f"{path}: not a JSON object")
    return d


def _number(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and abs(v) <= _MAX_VALUE)


def _check_fields(d: dict, want: dict, where: str) -> None:
    for k, typ in want.items():
        v = d.get(k)
        ok = _number(v) if typ is float else (isinstance(v, typ) and
                                                (typ is bool or not isinstance(v, bool)))
        if typ is int and ok and not _number(v):
            ok = False
        if not ok:
            raise ArgumentError(f"{where}: {k!r} is missing or not a "
                                f"{'number' if typ is float else typ.__name__}")


def read_run(run_dir: str | Path) -> tuple[dict, list[dict], dict]:
    """The config, metric samples and summary of a run directory, validated (sizes,
    nesting, keys, types, finite numbers, whole CSV rows) so that a damaged or crafted
    directory is one :class:`ArgumentError` naming the file and what is wrong."""
    d = Path(run_dir)
    refuse_temp(d)
    clean_stale(d)                    # an interrupted replacement is undone first
    try:
        cfg = _json(d / "config.json")
        summary = _json(d / "summary.json")
        samples = _read_samples(d / "metrics.csv")
    except FileNotFoundError as e:
        raise ArgumentError(f"{run_dir}: not a run directory ({Path(e.filename).name} "
                            "missing)") from None
    except IsADirectoryError as e:
        raise ArgumentError(f"{e.filename}: is a directory") from None
    _check_fields(cfg, _CONFIG_KEYS, str(d / "config.json"))
    _check_fields(summary, {"ops": int, "ops_per_second": float, "final": dict,
                            "buddyinfo": str, "inits": dict}, str(d / "summary.json"))
    _check_fields(summary["final"], dict.fromkeys(
        ("free_pages", "largest_free_run", "unusable_o3", "unusable_o9", "extfrag_o9",
         "contig_512_ok", "contig_4096_ok"), float), f"{d / 'summary.json'}: final")
    _check_fields(summary["inits"], dict.fromkeys(("boot", "on_demand", "drain"), int),
                  f"{d / 'summary.json'}: inits")
    if not samples:
        raise ArgumentError(f"{d / 'metrics.csv'}: no metric samples")
    return cfg, samples, summary


def _read_samples(path: Path) -> list[dict]:
    text = _read_limited(path, MAX_METRICS_BYTES)
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None:
        return []
    missing = [k for k in _SAMPLE_KEYS if k not in header]
    if missing or not any(h.startswith("blocks_o") for h in header) \
            or len(set(header)) != len(header):
        raise ArgumentError(f"{path}: not physmem's metrics (header lacks "
                            f"{(missing or ['blocks_oN'])[0]!r} or repeats a column)")
    out = []
    for n, row in enumerate(rows, 2):
        if len(row) != len(header):
            raise ArgumentError(f"{path}: line {n} has {len(row)} fields, not {len(header)}")
        try:
            vals = [float(v) for v in row]
        except ValueError:
            raise ArgumentError(f"{path}: line {n}: not a number") from None
        if not all(_number(v) for v in vals):
            raise ArgumentError(f"{path}: line {n}: a number out of range")
        out.append(dict(zip(header, vals, strict=True)))
        if len(out) > MAX_SAMPLES:
            raise ArgumentError(f"{path}: more than {MAX_SAMPLES:,} samples")
    return out
