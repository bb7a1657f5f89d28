"""Sweeps: a grid of runs (machines × policies × workloads × seeds) in parallel.

A sweep file is TOML::

    machines = ["firecracker-128m", "firecracker-1g"]
    policies = ["lazy", "eager"]              # lazy, eager, lazy+mirror, eager+mirror
    workloads = ["churn", "fragment"]
    seeds = [1, 2]
    ops = 5000                                 # steps per run

:func:`run_sweep` runs every combination on a local process pool (``workers`` processes)
or, given a scheduler address, on a Dask cluster (``pip install physmem[dask]``), and
returns one row per run.  :func:`write_results` writes them as CSV (and Parquet when
pyarrow is installed) plus a plot, each file atomically.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import tomllib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .atomic import atomic_write
from .errors import PhysmemError
from .machine import get_machine
from .reports import POLICIES, Figure, policy_config, save_png
from .workloads import WORKLOADS, run_workload

KEYS = {"machines": list, "policies": list, "workloads": list, "seeds": list, "ops": int}


class SweepConfigError(PhysmemError, ValueError):
    """A sweep file that cannot be run (syntax, unknown keys or values)."""


def load_sweep(text: str, source: str = "<sweep>") -> list[dict]:
    """The runs a sweep file asks for, validated."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"{source}: {e}") from None
    unknown = set(d) - set(KEYS)
    if unknown:
        raise SweepConfigError(f"{source}: unknown keys {sorted(unknown)} (known: "
                               f"{', '.join(KEYS)})")
    for k, typ in KEYS.items():
        if k not in d:
            raise SweepConfigError(f"{source}: missing {k!r}")
        if not isinstance(d[k], typ) or (typ is list and not d[k]):
            raise SweepConfigError(f"{source}: {k} must be a non-empty {typ.__name__}")
    if d["ops"] <= 0:
        raise SweepConfigError(f"{source}: ops must be positive")
    for m in d["machines"]:
        try:
            get_machine(str(m))
        except PhysmemError as e:
            raise SweepConfigError(f"{source}: {e}") from None
    for p in d["policies"]:
        if p not in POLICIES:
            raise SweepConfigError(f"{source}: unknown policy {p!r} (known: "
                                   f"{', '.join(POLICIES)})")
    for w in d["workloads"]:
        if w not in WORKLOADS:
            raise SweepConfigError(f"{source}: unknown workload {w!r} (known: "
                                   f"{', '.join(WORKLOADS)})")
    if not all(isinstance(s, int) for s in d["seeds"]):
        raise SweepConfigError(f"{source}: seeds must be integers")
    return [{"machine": m, "policy": p, "workload": w, "seed": s, "ops": d["ops"]}
            for m, p, w, s in itertools.product(d["machines"], d["policies"],
                                                d["workloads"], d["seeds"])]


def run_one(spec: dict) -> dict:
    """One run of a sweep: its spec and its results, flat (picklable, for any executor)."""
    cfg = policy_config(spec["policy"], workload=spec["workload"], machine=spec["machine"],
                        ops=spec["ops"], seed=spec["seed"], interval=spec["ops"])
    run = run_workload(cfg)
    final = run.summary["final"]
    return {**spec, "trace_ops": run.summary["ops"], "seconds": run.summary["seconds"],
            "ops_per_second": run.summary["ops_per_second"], "boot_inits":
            run.summary["inits"]["boot"], "on_demand_inits": run.summary["inits"]["on_demand"],
            **{k: final[k] for k in ("free_pages", "largest_free_run", "unusable_o3",
                                     "unusable_o9", "extfrag_o9", "contig_4096_ok")}}


def run_sweep(specs: list[dict], workers: int | None = None, scheduler: str | None = None,
              progress: Callable[[int], None] | None = None) -> list[dict]:
    """Run every spec; rows come back in the specs' order."""
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise SweepConfigError("the Dask backend needs physmem[dask] "
                                   "(pip install 'physmem[dask]')") from None
        with Client(scheduler) as client:
            futures = client.map(run_one, specs, pure=False)
            rows = client.gather(futures)
        if progress:
            progress(len(rows))
        return list(rows)
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        rows = []
        for spec in specs:
            rows.append(run_one(spec))
            if progress:
                progress(len(rows))
        return rows
    with ProcessPoolExecutor(max_workers=workers) as ex:
        rows = []
        for row in ex.map(run_one, specs):
            rows.append(row)
            if progress:
                progress(len(rows))
    return rows


def write_results(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """results.csv (and results.parquet with pyarrow) and unusable-index.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    with atomic_write(out / "results.csv", "w") as f:
        f.write(buf.getvalue())
    files = [out / "results.csv"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:
        table = pa.Table.from_pylist(rows)
        pbuf = io.BytesIO()
        pq.write_table(table, pbuf)
        with atomic_write(out / "results.parquet") as f:
            f.write(pbuf.getvalue())
        files.append(out / "results.parquet")
    fig = Figure(figsize=(max(6, len(rows) * 0.35), 4.5))
    ax = fig.subplots()
    labels = [f"{r['machine']}/{r['policy']}/{r['workload']}/{r['seed']}" for r in rows]
    ax.bar(range(len(rows)), [r["unusable_o9"] for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize="x-small")
    ax.set_xlabel("run (machine/policy/workload/seed)")
    ax.set_ylabel("unusable free space index, order 9")
    ax.set_title("Fragmentation at the end of each run")
    fig.tight_layout()
    save_png(fig, out / "unusable-index.png")
    files.append(out / "unusable-index.png")
    return files
