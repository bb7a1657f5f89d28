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

import contextlib
import csv
import io
import itertools
import math
import os
import signal
import tomllib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import IO

from .atomic import atomic_write, check_output_dir, is_marked, owned_names, write_marker
from .checks import check_int, untrusted
from .errors import PhysmemError
from .machine import get_machine
from .reports import POLICIES, Figure, policy_config, save_png
from .workloads import MAX_OPS, WORKLOADS, run_workload

KEYS = {"machines": list, "policies": list, "workloads": list, "seeds": list, "ops": int}
MAX_RUNS = 10_000          # runs in one sweep (the grid's size is checked before anything)
MAX_WORKERS = 64           # local worker processes
MAX_SWEEP_BYTES = 1 << 20  # a sweep file


class SweepConfigError(PhysmemError, ValueError):
    """A sweep file that cannot be run (syntax, unknown keys or values)."""


def load_sweep(text: str, source: str = "<sweep>") -> list[dict]:
    """The runs a sweep file asks for, validated (sizes and types before anything is
    loaded or run)."""
    text = text.removeprefix("\ufeff")      # a byte-order mark from a Windows editor
    if len(text) > MAX_SWEEP_BYTES:
        raise SweepConfigError(f"{source}: larger than {MAX_SWEEP_BYTES >> 10} KiB; not a "
                               "sweep file")
    try:
        d = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        raise SweepConfigError(f"{source}: {' '.join(str(e).split())[:200]}") from None
    unknown = set(d) - set(KEYS)
    if unknown:
        raise SweepConfigError(f"{source}: unknown keys {sorted(unknown)[:5]} (known: "
                               f"{', '.join(KEYS)})")
    for k, typ in KEYS.items():
        if k not in d:
            raise SweepConfigError(f"{source}: missing {k!r}")
        if not isinstance(d[k], typ) or isinstance(d[k], bool) or (typ is list and not d[k]):
            raise SweepConfigError(f"{source}: {k} must be a non-empty {typ.__name__}")
    if not 0 < d["ops"] <= MAX_OPS:
        raise SweepConfigError(f"{source}: ops must be positive and at most {MAX_OPS:,}")
    nruns = math.prod(len(d[k]) for k in ("machines", "policies", "workloads", "seeds"))
    if nruns > MAX_RUNS:
        raise SweepConfigError(f"{source}: {nruns:,} runs; a sweep has at most {MAX_RUNS:,}")
    for k in ("machines", "policies", "workloads"):
        if not all(isinstance(v, str) for v in d[k]):
            raise SweepConfigError(f"{source}: {k} must be strings")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 1 << 64
               for s in d["seeds"]):
        raise SweepConfigError(f"{source}: seeds must be integers from 0 to 2^64-1")
    for p in d["policies"]:
        if p not in POLICIES:
            raise SweepConfigError(f"{source}: unknown policy {p!r} (known: "
                                   f"{', '.join(POLICIES)})")
    for w in d["workloads"]:
        if w not in WORKLOADS:
            raise SweepConfigError(f"{source}: unknown workload {w!r} (known: "
                                   f"{', '.join(WORKLOADS)})")
    for m in dict.fromkeys(d["machines"]):
        try:
            get_machine(m)
        except PhysmemError as e:
            raise SweepConfigError(f"{source}: {e}") from None
    return [{"machine": m, "policy": p, "workload": w, "seed": s, "ops": d["ops"]}
            for m, p, w, s in itertools.product(d["machines"], d["policies"],
                                                d["workloads"], d["seeds"])]


RESULT_KEYS = ("trace_ops", "seconds", "ops_per_second", "boot_inits", "on_demand_inits",
               "free_pages", "largest_free_run", "unusable_o3", "unusable_o9", "extfrag_o9",
               "contig_4096_ok")
COLUMNS = ("machine", "policy", "workload", "seed", "ops", *RESULT_KEYS, "error")
MAX_ATTEMPTS = 3           # runs of one spec whose worker died before it is reported failed
SCHEDULER_TIMEOUT = 10.0   # seconds to reach a Dask scheduler
POOL_POLL = 1.0            # seconds between checks that the process pool is not broken


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
                                     "unusable_o9", "extfrag_o9", "contig_4096_ok")},
            "error": ""}


def failed_row(spec: dict, error: str) -> dict:
    """The row of a run that did not finish: its spec, empty results and why."""
    return {**spec, **dict.fromkeys(RESULT_KEYS, ""), "error": error}


def _why(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]


def _safe_one(spec: dict) -> dict:
    """run_one, with an error in the run (not the death of its worker) as a failed row."""
    try:
        return run_one(spec)
    except Exception as e:          # any error is reported in its row
        return failed_row(spec, _why(e))


def check_workers(workers: int | None) -> int:
    """The number of local worker processes: 1 .. MAX_WORKERS (default: the CPUs)."""
    if workers is None:
        return min(os.cpu_count() or 1, MAX_WORKERS)
    return check_int(workers, "workers", 1, MAX_WORKERS, SweepConfigError)


def run_sweep(specs: list[dict], workers: int | None = None, scheduler: str | None = None,
              progress: Callable[[int], None] | None = None,
              on_row: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Run every spec; rows come back in the specs' order.  ``on_row(i, row)`` is called as
    each run finishes (to save it at once).  A run that raises is a row with its error; a
    run whose worker process died is retried up to MAX_ATTEMPTS times, then is a row with
    its error."""
    rows: list[dict | None] = [None] * len(specs)
    done = 0

    def finish(i: int, row: dict) -> None:
        nonlocal done
        rows[i] = row
        done += 1
        if on_row:
            on_row(i, row)
        if progress:
            progress(done)
    if scheduler:
        _run_dask(specs, scheduler, finish)
    else:
        nworkers = min(check_workers(workers), len(specs))
        if nworkers <= 1:
            for i, spec in enumerate(specs):
                finish(i, _safe_one(spec))
        else:
            _run_pool(specs, nworkers, finish)
    assert all(r is not None for r in rows)
    return rows  # type: ignore[return-value]


def _run_pool(specs: list[dict], nworkers: int, finish: Callable[[int, dict], None],
              work: Callable[[dict], dict] = _safe_one) -> None:
    """``work(spec)`` for every spec on a process pool, at most ``nworkers`` runs in flight
    (so a dying worker costs an attempt only to the runs it could have been running); a
    broken pool is replaced.  A worker may die at any moment (under a run, between two
    submissions, while the pool shuts down): every run then ends as exactly one row."""
    todo = list(range(len(specs)))[::-1]
    attempts = [0] * len(specs)
    while todo:
        with ProcessPoolExecutor(max_workers=nworkers, initializer=_worker_signals) as ex:
            running = _pool_round(ex, specs, nworkers, finish, work, todo, attempts)
        # The pool broke; leaving ``with`` waited for its manager thread to fail what was in
        # flight, so each run there has its result, or died with the pool (re-run it).
        for f, i in running.items():
            _settle(f, i, specs, attempts, todo, finish)


def _worker_signals() -> None:
    """A pool worker's SIGTERM and SIGHUP kill it.  Forked from the CLI, it inherits
    handlers that raise SystemExit to remove temporary files; then the SIGTERM with which a
    broken pool ends its workers (their queue locks may be held by a dead one) is only an
    exception, and a worker blocked on such a lock afterwards outlives the sweep, holding
    its stdout."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _pool_round(ex: ProcessPoolExecutor, specs: list[dict], nworkers: int,
                finish: Callable[[int, dict], None], work: Callable[[dict], dict],
                todo: list[int], attempts: list[int]) -> dict[Future, int]:
    """Runs from ``todo`` on ``ex`` until none is left (returns {}) or the pool breaks:
    then returns the runs in flight (future: spec index), not yet settled.  A run leaves
    ``todo`` only once submitted, so a submit that meets a broken pool loses nothing."""
    running: dict[Future, int] = {}
    while todo or running:
        while todo and len(running) < nworkers:
            try:
                f = ex.submit(work, specs[todo[-1]])
            except BrokenProcessPool:   # a worker died since the last wait
                return running
            except RuntimeError:        # "after shutdown": 3.11 seen half-way through a break
                if not _broken(ex):
                    raise
                return running
            i = todo.pop()
            attempts[i] += 1
            running[f] = i
        finished, _ = wait(running, timeout=POOL_POLL, return_when=FIRST_COMPLETED)
        if not finished and _broken(ex):
            return running
        for f in finished:
            if isinstance(f.exception(), BrokenProcessPool):
                return running          # the other runs in flight are failed with it
            _settle(f, running.pop(f), specs, attempts, todo, finish)
    return running


def _broken(ex: ProcessPoolExecutor) -> bool:
    """Whether ``ex`` is broken although no future said so.  CPython 3.11 marks the pool
    broken without its shutdown lock (3.12 takes it), so a worker dying during a submit can
    leave the future submitted never settled, or make the submit say "after shutdown"."""
    return bool(getattr(ex, "_broken", False))


def _settle(f: Future, i: int, specs: list[dict], attempts: list[int], todo: list[int],
            finish: Callable[[int, dict], None]) -> None:
    """Spec ``i``'s row from its future ``f`` of a pool that has finished with it: the
    result; or, if its worker died (or the pool never settled ``f``), the run again (or a
    failed row after MAX_ATTEMPTS); any other error is the row's error."""
    e = f.exception() if f.done() else BrokenProcessPool()
    if e is None:
        finish(i, f.result())
    elif isinstance(e, BrokenProcessPool):
        _retry_or_fail(i, specs, attempts, todo, finish, "worker process died")
    else:
        finish(i, failed_row(specs[i], _why(e)))


def _retry_or_fail(i: int, specs: list[dict], attempts: list[int], todo: list[int],
                   finish: Callable[[int, dict], None], why: str) -> None:
    if attempts[i] < MAX_ATTEMPTS:
        todo.append(i)
    else:
        finish(i, failed_row(specs[i], f"{why} ({attempts[i]} attempts)"))


def check_scheduler(scheduler: str) -> None:
    """Refuse an address that is no Dask scheduler's before anything connects."""
    if "://" in scheduler and not scheduler.startswith(("tcp://", "tls://", "inproc://",
                                                        "ucx://", "ws://", "wss://")):
        raise SweepConfigError(f"{untrusted(scheduler, False, 80)!r}: not a Dask scheduler "
                               "address (tcp://host:8786)")


def _run_dask(specs: list[dict], scheduler: str, finish: Callable[[int, dict], None],
              work: Callable[[dict], dict] = _safe_one) -> None:
    """``work(spec)`` for every spec on a Dask cluster; a run whose worker died
    (KilledWorker) or was lost is submitted again, up to MAX_ATTEMPTS times in all."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise SweepConfigError("the Dask backend needs physmem[dask] "
                               "(pip install 'physmem[dask]')") from None
    check_scheduler(scheduler)
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise SweepConfigError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                               f"{SCHEDULER_TIMEOUT:.0f} s ({_why(e)})") from None
    with client:
        attempts = [1] * len(specs)
        futures = {client.submit(work, s, pure=False): i for i, s in enumerate(specs)}
        ac = as_completed(futures)
        for f in ac:
            i = futures.pop(f)
            try:
                finish(i, f.result())
            except Exception as e:     # KilledWorker, lost connection, ...
                if attempts[i] < MAX_ATTEMPTS:
                    attempts[i] += 1
                    g = client.submit(work, specs[i], pure=False)
                    futures[g] = i
                    ac.add(g)
                else:
                    finish(i, failed_row(specs[i], f"{_why(e)} ({attempts[i]} attempts)"))


class SweepWriter:
    """A sweep's output directory: ``results.csv`` gets each row as its run finishes (in
    finishing order, flushed, so a crash keeps what was done), and is rewritten in the
    grid's order at the end, with results.parquet (with pyarrow) and the plot."""

    FILES = ("results.csv", "results.parquet", "unusable-index.png")

    def __init__(self, out_dir: str | Path, force: bool = False) -> None:
        self.out = check_output_dir(out_dir, "sweep", force, owned_names(self.FILES))
        self._f: IO[str] | None = None      # opened with the first row: a sweep that
        self._w: csv.DictWriter | None = None  # never starts leaves nothing behind

    def _open(self) -> None:
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        if not is_marked(out, "sweep"):
            write_marker(out, "sweep")
        for name in self.FILES[1:]:          # a result of an earlier sweep must not stay
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        self._f = open(out / "results.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._w = csv.DictWriter(self._f, fieldnames=COLUMNS)
        self._w.writeheader()

    def add(self, _i: int, row: dict) -> None:
        if self._f is None:
            self._open()
        assert self._f is not None and self._w is not None
        self._w.writerow(row)
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def write_results(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """results.csv (and results.parquet with pyarrow) and unusable-index.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
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
        # A failed run's results are nulls (not "" beside numbers in one column).
        table = pa.Table.from_pylist([{k: None if r["error"] and k in RESULT_KEYS else r[k]
                                       for k in COLUMNS} for r in rows])
        pbuf = io.BytesIO()
        pq.write_table(table, pbuf)
        with atomic_write(out / "results.parquet") as f:
            f.write(pbuf.getvalue())
        files.append(out / "results.parquet")
    ok = [r for r in rows if not r["error"]]
    fig = Figure(figsize=(max(6, len(ok) * 0.35), 4.5))
    ax = fig.subplots()
    labels = [f"{r['machine']}/{r['policy']}/{r['workload']}/{r['seed']}" for r in ok]
    ax.bar(range(len(ok)), [r["unusable_o9"] for r in ok])
    ax.set_xticks(range(len(ok)), labels, rotation=90, fontsize="x-small")
    ax.set_xlabel("run (machine/policy/workload/seed)")
    ax.set_ylabel("unusable free space index, order 9")
    ax.set_title("Fragmentation at the end of each run")
    fig.tight_layout()
    save_png(fig, out / "unusable-index.png")
    files.append(out / "unusable-index.png")
    return files
