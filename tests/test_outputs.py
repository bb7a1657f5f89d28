"""Nothing lost: outputs never replace what physmem did not create, temporary files are
never taken for input, and a killed writer leaves the old output (or the new one) whole."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from physmem import sweep
from physmem.atomic import MARKER, clean_stale, is_marked, signals_as_exceptions
from physmem.cli import main
from physmem.sweep import _run_dask, _run_pool, failed_row, run_one, write_results
from physmem.workloads import RunConfig, read_run, run_workload, write_run

PHYSMEM = [sys.executable, "-m", "physmem.cli"]
RUN = ["run", "churn", "-m", "firecracker-128m", "--ops", "300"]


def _cli(*argv: str):
    return CliRunner().invoke(main, list(argv))


def _refused(res, what: str = "") -> None:
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("physmem: error: "), res.output
    assert what in lines[0], lines[0]


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(d.rglob("*"))}


def test_run_into_a_users_directory_or_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "mydocs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("four years of work")
    (tmp_path / "notes.txt").write_text("notes")
    before = _tree(tmp_path)
    _refused(_cli(*RUN, "-o", "mydocs"), "not a physmem output directory")
    _refused(_cli(*RUN, "-o", "mydocs", "--force"), "not a physmem output directory")
    _refused(_cli(*RUN, "-o", "notes.txt", "--force"), "not a directory")
    _refused(_cli("compare", "churn", "-m", "firecracker-128m", "--ops", "200",
                  "-o", "mydocs", "--force"), "not a physmem output directory")
    assert _tree(tmp_path) == before                  # nothing changed, nothing left over


@pytest.mark.parametrize("target", [".", "..", "/", "CWD", "sub/..", "~"])
def test_run_into_the_current_parent_root_or_home_directory_is_refused(
        tmp_path, monkeypatch, target):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path))
    target = {"CWD": str(work), "~": str(tmp_path)}.get(target, target)
    root_before = sorted(os.listdir("/"))
    before = _tree(tmp_path)
    _refused(_cli(*RUN, "-o", target, "--force"))
    assert _tree(tmp_path) == before
    assert sorted(os.listdir("/")) == root_before


def test_a_run_directory_is_replaced_only_with_force_and_only_if_all_physmems(tmp_path):
    out = str(tmp_path / "r")
    assert _cli(*RUN, "-o", out).exit_code == 0
    assert is_marked(out, "run")
    _refused(_cli(*RUN, "-o", out), "--force")
    res = _cli(*RUN, "--seed", "2", "-o", out, "--force")
    assert res.exit_code == 0, res.output
    assert read_run(out)[0]["seed"] == 2
    (tmp_path / "r" / "mine.txt").write_text("a user's file")
    _refused(_cli(*RUN, "-o", out, "--force"), "did not write")
    assert (tmp_path / "r" / "mine.txt").read_text() == "a user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_single_file_outputs_are_not_overwritten_without_force(tmp_path):
    trace = tmp_path / "t.trace"
    trace.write_text("my notes\n")
    snap = tmp_path / "s.npz"
    snap.write_text("not a snapshot, my data")
    good = tmp_path / "good.trace"
    good.write_text("seg 0x100000 0x8000000 0\navail 0x100000 0x8000000\nboot eager\n"
                    "alloc_pages 0 default 0\n")
    _refused(_cli(*RUN, "-o", str(tmp_path / "r"), "--record", str(trace)), "--force")
    assert not (tmp_path / "r").exists()              # refused before running
    _refused(_cli("replay", str(good), "--save", str(snap)), "--force")
    src = tmp_path / "f.txt"
    src.write_text("")
    _refused(_cli("ftrace", str(src), "-o", str(trace)), "--force")
    _refused(_cli("ftrace", str(src), "-o", str(tmp_path)), "")
    _refused(_cli("replay", str(good), "--save", str(snap), "--force"), "not a physmem snapshot")
    _refused(_cli("ftrace", str(src), "-o", str(trace), "--force"), "not a physmem trace")
    assert trace.read_text() == "my notes\n" and snap.read_text() == "not a snapshot, my data"
    snap.unlink()
    assert _cli("replay", str(good), "--save", str(snap)).exit_code == 0
    res = _cli("replay", str(good), "--save", str(snap), "--force")    # physmem's own
    assert res.exit_code == 0, res.output
    rec = tmp_path / "rec.trace"
    assert _cli(*RUN, "-o", str(tmp_path / "r1"), "--record", str(rec)).exit_code == 0
    res = _cli(*RUN, "-o", str(tmp_path / "r2"), "--record", str(rec), "--force")
    assert res.exit_code == 0, res.output


def test_report_does_not_overwrite_a_users_files(tmp_path):
    out = tmp_path / "r"
    assert _cli(*RUN, "-o", str(out)).exit_code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my page")
    _refused(_cli("report", str(out), "-o", str(mine)), "report.html")
    assert (mine / "report.html").read_text() == "my page"
    assert _cli("report", str(out)).exit_code == 0          # into the run directory
    assert _cli("report", str(out)).exit_code == 0          # again: its own files
    res = _cli(*RUN, "-o", str(out), "--force")              # report files are physmem's
    assert res.exit_code == 0, res.output


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_an_interrupted_replacement_is_undone_on_the_next_start(tmp_path):
    """The process died between moving the old run aside and moving the new one in: the
    next read or write of that run directory puts the old one back."""
    run = run_workload(RunConfig("churn", "firecracker-128m", ops=200, seed=1))
    out = write_run(run, tmp_path / "r")
    pid = _dead_pid()
    aside = tmp_path / f".r.{pid}.abc123.old.physmem-tmp"
    new = tmp_path / f".r.{pid}.def456.new.physmem-tmp"
    os.replace(out, aside)
    new.mkdir()
    (new / MARKER).write_text((aside / MARKER).read_text())
    (new / "config.json").write_text("{")
    _refused(_cli("report", str(aside)), "temporary")
    cfg, _samples, _summary = read_run(out)               # recovers first
    assert cfg["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_readers_refuse_temporary_files(tmp_path):
    tmp = tmp_path / ".t.trace.1234.abcd.physmem-tmp"
    tmp.write_text("boot\nalloc_pages 0 default 0\n")
    _refused(_cli("replay", str(tmp)), "temporary")
    _refused(_cli("ftrace", str(tmp), "-o", str(tmp_path / "x.trace")), "temporary")
    _refused(_cli("snapshot", "show", str(tmp)), "temporary")
    _refused(_cli("replay", str(tmp_path / "t.trace"), "--load", str(tmp)), "temporary")


WRITER = """
import sys
from physmem.workloads import RunConfig, run_workload, write_run
runs = [run_workload(RunConfig("churn", "firecracker-128m", ops=100, seed=s)) for s in (1, 2)]
write_run(runs[0], sys.argv[1], force=True)
print("ready", flush=True)
i = 0
while True:
    i += 1
    write_run(runs[i % 2], sys.argv[1], force=True)
"""


def test_kill_9_while_replacing_a_run_directory_never_loses_it(tmp_path):
    """SIGKILL a process that replaces a run directory in a loop, at several moments:
    afterwards the directory is always a whole run (old or new), and the next start
    leaves no temporary behind."""
    out = tmp_path / "r"
    for delay in (0.0, 0.05, 0.13, 0.21, 0.34):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(out)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        time.sleep(delay)
        p.kill()
        p.wait(timeout=30)
        clean_stale(out)
        cfg, samples, summary = read_run(out)
        assert cfg["seed"] in (1, 2) and samples and summary["ops"] > 0
        assert sorted(x.name for x in tmp_path.iterdir()) == ["r"]


def test_kill_9_of_ftrace_leaves_a_file_nobody_reads_and_the_next_run_removes(tmp_path):
    out = tmp_path / "t.trace"
    line = ("  bash-1  [000] .... 1.000000: mm_page_alloc: page=0x1 pfn=0x2000 order=0 "
            "migratetype=0 gfp_flags=GFP_KERNEL\n")
    p = subprocess.Popen([*PHYSMEM, "ftrace", "-", "-m", "firecracker-128m", "-o", str(out)],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, text=True)
    assert p.stdin is not None
    p.stdin.write(line * 20000)
    p.stdin.flush()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".t.trace.*.physmem-tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.kill()
    p.wait(timeout=30)
    p.stdin.close()
    (tmp,) = tmp_path.glob(".t.trace.*.physmem-tmp")
    assert not out.exists()
    res = subprocess.run([*PHYSMEM, "replay", str(tmp)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "temporary file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    src = tmp_path / "in.txt"
    src.write_text(line)
    res = subprocess.run([*PHYSMEM, "ftrace", str(src), "-m", "firecracker-128m", "-o",
                          str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.txt", "t.trace"]


def test_sigterm_of_ftrace_removes_its_temporary_file(tmp_path):
    out = tmp_path / "t.trace"
    p = subprocess.Popen([*PHYSMEM, "ftrace", "-", "-m", "firecracker-128m", "-o", str(out)],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".t.trace.*.physmem-tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode != 0
    assert list(tmp_path.iterdir()) == []


def _dies_on_seed_13(spec: dict) -> dict:
    if spec["seed"] == 13:
        os._exit(9)                       # the worker process dies (OOM killer, kill -9)
    return {**spec, "error": ""}


def test_a_sweep_whose_worker_dies_keeps_every_other_row():
    specs = [{"seed": s} for s in range(1, 17)]
    rows: dict[int, dict] = {}
    _run_pool(specs, 2, lambda i, r: rows.__setitem__(i, r), _dies_on_seed_13)
    assert sorted(rows) == list(range(16))
    assert [r["seed"] for r in rows.values() if r["error"]] == [13]
    assert rows[12] == failed_row({"seed": 13}, rows[12]["error"])
    assert "worker process died (3 attempts)" in rows[12]["error"]


def _row_with_pid(spec: dict) -> dict:
    return {**spec, "pid": os.getpid(), "error": ""}


def _kill_and_reap(pid: int) -> None:
    """SIGKILL a pool's worker and return once the pool has noticed: its manager thread
    marks the pool broken, then joins (reaps) the dead worker."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} was never reaped")


def _collect(rows: dict[int, dict], kill_after: int):
    """A ``finish`` that keeps each row once (a second row for a run fails the test) and
    kills the worker of the ``kill_after``-th row between two of the pool's steps."""
    def finish(i: int, row: dict) -> None:
        assert i not in rows, f"run {i} reported twice"
        rows[i] = row
        if len(rows) == kill_after:
            _kill_and_reap(row["pid"])
    return finish


@pytest.mark.parametrize("kill_after", [1, 6, 12])
def test_a_worker_killed_between_two_submissions_loses_no_row(kill_after):
    """The submit after a worker died meets a broken pool (every time, not by timing
    luck): the runs in flight are re-run on a new pool, every run is one row, no error.
    Killed after the last row, the pool dies while it shuts down."""
    specs = [{"seed": s} for s in range(12)]
    rows: dict[int, dict] = {}
    _run_pool(specs, 2, _collect(rows, kill_after), _row_with_pid)
    assert sorted(rows) == list(range(12))
    assert [r["seed"] for r in rows.values()] == [specs[i]["seed"] for i in rows]
    assert not [r for r in rows.values() if r["error"]]


def _sigterm_on_seed_13(spec: dict) -> dict:
    if spec["seed"] == 13:
        os.kill(os.getpid(), signal.SIGTERM)      # as a broken pool ends its workers
        time.sleep(30)
    return {**spec, "error": ""}


def test_a_sweep_worker_dies_of_sigterm_even_under_the_clis_signal_handlers():
    """The CLI turns SIGTERM into SystemExit (to remove temporary files); its forked
    workers must not inherit that, or the SIGTERM a broken pool sends them is caught and a
    worker can outlive the sweep."""
    specs = [{"seed": s} for s in range(10, 16)]
    rows: dict[int, dict] = {}
    with signals_as_exceptions():
        _run_pool(specs, 2, lambda i, r: rows.__setitem__(i, r), _sigterm_on_seed_13)
    assert sorted(rows) == list(range(6))
    assert [r["seed"] for r in rows.values() if r["error"]] == [13]
    assert "worker process died (3 attempts)" in rows[3]["error"]


class _FutureLostInSubmit(ProcessPoolExecutor):
    """A pool that, once broken, hands out one future it never settles: what CPython
    3.11's submit does when the break lands between its check and its enqueue."""

    lost = 0

    def submit(self, fn, /, *args, **kwargs):
        if getattr(self, "_broken", False) and not _FutureLostInSubmit.lost:
            _FutureLostInSubmit.lost += 1
            return Future()
        return super().submit(fn, *args, **kwargs)


def test_a_future_the_broken_pool_never_settles_is_run_again(monkeypatch):
    monkeypatch.setattr(sweep, "ProcessPoolExecutor", _FutureLostInSubmit)
    specs = [{"seed": s} for s in range(4)]
    rows: dict[int, dict] = {}
    t = threading.Thread(target=_run_pool, daemon=True,
                         args=(specs, 1, _collect(rows, 1), _row_with_pid))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the sweep waits forever for a future nobody settles"
    assert _FutureLostInSubmit.lost == 1
    assert sorted(rows) == list(range(4))
    assert not [r for r in rows.values() if r["error"]]


def test_a_dask_sweep_whose_worker_dies_keeps_every_other_row():
    """Dask's KilledWorker (the worker process died under a run) is retried and then a
    row with its error; every other row arrives (issue 15: "KilledWorker traceback and no
    results")."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.distributed")
    specs = [{"seed": s} for s in range(10, 16)]
    rows: dict[int, dict] = {}
    # A death is the run's fault at once (no scheduler-side retries): physmem's own
    # attempts are what is tested.  One task per worker thread, so a dying worker takes
    # no other run down with it.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}), \
            dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                            dashboard_address=None) as cluster:
        _run_dask(specs, cluster.scheduler_address, lambda i, r: rows.__setitem__(i, r),
                  _dies_on_seed_13)
    assert sorted(rows) == list(range(6))
    assert [r["seed"] for r in rows.values() if r["error"]] == [13]
    assert "(3 attempts)" in rows[3]["error"]


def test_text_from_files_is_printed_escaped(tmp_path):
    """Rich markup and terminal escapes that came from a file are shown, not obeyed."""
    evil = "[/][link=https://example.org]x\x1b[2J\x1b]0;title\x07"
    toml = tmp_path / "m.toml"
    esc = evil.replace("\x1b", "\\u001b").replace("\x07", "\\u0007")
    toml.write_text(f'name = "{esc}"\n'
                    'ram = [[0x100000, 0x8000000, 0]]\n')
    res = _cli("machine", "show", str(toml))
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\\x1b[2J" in res.output
    assert "[/][link=https://example.org]x" in res.output
    out = tmp_path / "r"
    assert _cli(*RUN, "-o", str(out)).exit_code == 0
    cfg = (out / "config.json").read_text().replace('"churn"', '"[/]\\u001b[31mchurn$\\\\frac$"')
    (out / "config.json").write_text(cfg)
    res = _cli("report", str(out))
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "[/]\\x1b[31mchurn" in res.output


def test_errors_name_the_file_and_stay_on_one_line(tmp_path):
    res = _cli("sweep", str(tmp_path / "nope.toml"))
    _refused(res, "nope.toml")
    bad = tmp_path / "bad\nname.toml"
    bad.write_text("machines = [\n")
    res = _cli("sweep", str(bad))
    _refused(res, "bad\\x0aname.toml")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_killing_sweep_workers_repeatedly_loses_no_row(tmp_path):
    """SIGKILL the worker processes of a running sweep again and again: the sweep ends
    with one row per run (failed ones with their error), no traceback."""
    cfg = tmp_path / "s.toml"
    cfg.write_text('machines = ["firecracker-128m"]\npolicies = ["lazy", "eager"]\n'
                   'workloads = ["churn", "fragment"]\nseeds = [1, 2, 3]\nops = 20000\n')
    out = tmp_path / "out"
    p = subprocess.Popen([*PHYSMEM, "sweep", str(cfg), "--workers", "2", "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = 0
    deadline = time.monotonic() + 120
    while p.poll() is None and kills < 8 and time.monotonic() < deadline:
        time.sleep(0.3)
        for c in _children(p.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(c, signal.SIGKILL)
                kills += 1
    stdout, stderr = p.communicate(timeout=300)
    assert "Traceback" not in stdout + stderr, stderr
    assert p.returncode in (0, 1), stderr
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 13 and rows[0].endswith(",error")          # 12 runs, none lost
    failed = [r for r in rows[1:] if "worker process died" in r]
    assert (p.returncode == 1) == bool(failed)
    assert kills > 0


def test_failed_runs_are_rows_of_the_results(tmp_path):
    spec = {"machine": "firecracker-128m", "policy": "lazy", "workload": "churn", "seed": 1,
            "ops": 50}
    rows = [run_one(spec), failed_row({**spec, "seed": 2}, "WorkloadError: boom")]
    files = write_results(rows, tmp_path / "o")
    lines = (tmp_path / "o" / "results.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].endswith(",") and lines[2].endswith(",WorkloadError: boom")
    if any(f.suffix == ".parquet" for f in files):          # with pyarrow: nulls, not ""
        import pyarrow.parquet as pq
        t = pq.read_table(tmp_path / "o" / "results.parquet").to_pylist()
        assert t[1]["seconds"] is None and t[1]["error"] == "WorkloadError: boom"


def test_usage_errors_are_one_line_and_a_bare_group_shows_its_help():
    _refused(_cli("run"), "Missing argument")
    _refused(_cli("run", "churn", "--no-such-option"), "no-such-option")
    _refused(_cli("nosuchcommand"), "nosuchcommand")
    for argv in ([], ["machine"]):
        res = _cli(*argv)
        assert "Commands:" in res.output and "physmem: error" not in res.output
