"""Workloads, run directories, metrics, ftrace import, reports, comparisons and sweeps."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import pytest
from click.testing import CliRunner

import physmem
from physmem import errors as E
from physmem.atomic import OutputError
from physmem.cli import main
from physmem.ftrace import FtraceFormatError, FtraceImporter, import_ftrace
from physmem.machine import get_machine
from physmem.reports import (
    boot_cost_points,
    plot_boot_cost,
    plot_fragmentation,
    plot_free_blocks,
    report,
)
from physmem.sweep import SweepConfigError, load_sweep, run_sweep
from physmem.trace import Replayer
from physmem.workloads import (
    WORKLOADS,
    RunConfig,
    WorkloadError,
    buddyinfo,
    extfrag_index,
    read_run,
    run_workload,
    unusable_index,
    write_run,
)
from tests.conftest import DATA


def test_fragmentation_indices_match_the_linux_worked_example():
    nr = [3000, 1500, 400, 20] + [0] * 7
    assert [unusable_index(nr, j) for j in range(11)] == \
        [0, 386, 773, 979, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
    assert [extfrag_index(nr, j) for j in range(11)] == \
        [-1000, -1000, -1000, -1000, 902, 951, 976, 988, 994, 997, 999]
    assert unusable_index([0] * 11, 3) == 1000 and extfrag_index([0] * 11, 3) == 0


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_every_workload_runs_and_its_trace_replays_to_the_same_state(workload):
    run = run_workload(RunConfig(workload, "firecracker-128m", ops=1500, seed=3))
    assert run.summary["ops"] > 0 and len(run.samples) >= 50
    r = Replayer(check=False)
    assert r.replay(run.trace, io.StringIO()) == 0
    again = run_workload(RunConfig(workload, "firecracker-128m", ops=1500, seed=3))
    assert again.trace == run.trace                       # seeded: the same stream
    assert r.kernel is not None
    assert buddyinfo(r.kernel) == run.summary["buddyinfo"]
    assert sum(r.kernel.free_counts) == run.samples[-1]["free_pages"]


def test_run_directory_is_written_whole_and_read_back(tmp_path):
    run = run_workload(RunConfig("churn", "firecracker-128m", ops=800, seed=1, interval=100))
    out = write_run(run, tmp_path / "r")
    assert sorted(p.name for p in out.iterdir()) == [".physmem", "config.json",
                                                      "metrics.csv", "run.trace",
                                                      "summary.json"]
    cfg, samples, summary = read_run(out)
    assert cfg["workload"] == "churn" and len(samples) == 9
    assert samples[-1]["free_pages"] == summary["final"]["free_pages"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(OutputError, match="--force"):
        write_run(run, out)                               # not without force
    write_run(run, out, force=True)                       # replacing a run directory
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert (out / "run.trace").exists()
    with pytest.raises(E.ArgumentError):
        read_run(tmp_path)


def test_buddyinfo_text():
    k = physmem.boot("pc-6g", lazy=False)
    lines = buddyinfo(k).splitlines()
    assert lines[0].startswith("Domain 0, list  DEFAULT ")
    assert lines[1].startswith("Domain 0, list   LOWMEM ")
    assert len(lines[0].split()) == 4 + 13


@pytest.mark.parametrize("cfg", [RunConfig("nope"), RunConfig("churn", ops=0),
                                 RunConfig("churn", interval=-1)])
def test_bad_run_configs(cfg):
    with pytest.raises(WorkloadError):
        run_workload(cfg)


# -- ftrace -----------------------------------------------------------------------------------
def test_ftrace_import_of_a_trace_pipe_paste():
    out = io.StringIO()
    s = import_ftrace((DATA / "ftrace" / "trace_pipe.txt").open(), out, get_machine("pc-6g"))
    assert (s.allocs, s.frees) == (3, 4)
    assert s.skipped == {"failed allocation (pfn=0)": 1, "malformed event line": 1,
                         "free of a page not allocated in the trace": 1}
    lines = out.getvalue().splitlines()
    body = [x for x in lines if not x.startswith(("#", "seg", "avail", "boot"))]
    assert body == ["alloc_pages 0 default 0 -> h0", "alloc_pages 0 direct 3 -> h1",
                    "free_pages $h0 0", "free_pages $h1+2 1",
                    "alloc_pages 0 default 1 -> h2",             # the wrapped event
                    "free_pages $h1 1", "free_pages $h2 1"]
    r = Replayer(check=True)
    assert r.replay(lines, io.StringIO()) == 0
    total = sum(e - s for s, e in get_machine("pc-6g").phys_avail()) // 4096
    assert sum(r.kernel.free_counts) == total - 4      # half of h1 (order 3) is still out


def test_ftrace_import_of_old_decimal_perf_script_output():
    out = io.StringIO()
    s = import_ftrace((DATA / "ftrace" / "perf_script_4x.txt").open(), out,
                      get_machine("firecracker-1g"))
    assert (s.allocs, s.frees) == (2, 2)
    assert "alloc_pages 0 direct 2 -> h1" in out.getvalue()   # migratetype 2: reclaimable


def test_ftrace_import_of_trace_cmd_report_with_pages_outside_the_machine():
    out = io.StringIO()
    s = import_ftrace((DATA / "ftrace" / "trace_cmd_report.txt").open(), out,
                      get_machine("firecracker-1g"))
    assert (s.allocs, s.frees, s.outside, s.other_lines) == (2, 2, 2, 2)
    r = Replayer(check=True)
    assert r.replay(out.getvalue().splitlines(), io.StringIO()) == 0


def test_ftrace_strict_mode_names_the_line():
    text = "x-1 [000] .... 1.0: mm_page_alloc: page=0 pfn=0x10 order=zz migratetype=1\n"
    imp = FtraceImporter(get_machine("firecracker-1g"), strict=True)
    with pytest.raises(FtraceFormatError, match="line 1"):
        list(imp.convert(io.StringIO(text)))


def test_ftrace_import_streams():
    """A long input is converted lazily; memory holds only live allocations."""
    def lines(n):
        for i in range(n):
            pfn = 0x2000 + (i % 64)
            yield (f"a-1 [000] .... {i}.0: mm_page_alloc: page=0 pfn={pfn:#x} order=0 "
                   f"migratetype=1 gfp_flags=GFP_KERNEL\n")
            yield f"a-1 [000] .... {i}.5: mm_page_free: page=0 pfn={pfn:#x} order=0\n"
    imp = FtraceImporter(get_machine("firecracker-1g"))
    peak = 0
    for k, _ in enumerate(imp.convert(lines(100_000))):
        if k % 10_000 == 0:
            peak = max(peak, len(imp.live))
    assert imp.summary.allocs == imp.summary.frees == 100_000
    assert peak <= 1 and not imp.live


# -- reports -------------------------------------------------------------------------------
def test_report_writes_plots_and_a_self_contained_page(tmp_path):
    run = run_workload(RunConfig("fragment", "firecracker-128m", ops=1000, seed=2))
    d = write_run(run, tmp_path / "run")
    files = report(d)
    pngs = ("memory-map.png", "free-blocks.png", "fragmentation.png", "lazy-init.png",
            "boot-cost.png")
    for name in pngs:
        img = mpimg.imread(files[name])
        assert img.shape[0] > 100 and img.shape[1] > 100
    page = files["report.html"].read_text()
    assert page.count("data:image/png;base64,") == len(pngs)
    assert "src=\"http" not in page and "<pre>Domain 0" in page


def test_plot_axes_are_labelled():
    run = run_workload(RunConfig("churn", "firecracker-128m", ops=400, seed=1))
    fig = plot_free_blocks(run.samples, "t")
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == (
        "operations", "buddy order (block size)")
    assert fig.axes[1].get_ylabel().startswith("free blocks")        # the colour bar
    fig = plot_fragmentation({"": run.samples}, "t")
    assert [a.get_ylabel().split("\n")[0] for a in fig.axes] == [
        "unusable free space", "fragmentation index", "largest contiguous"]
    assert fig.axes[2].get_xlabel() == "operations"
    pts = boot_cost_points((128 << 20, 1 << 30))
    assert pts[1][1] > pts[1][2]                      # eager initialises more at boot
    fig = plot_boot_cost(pts)
    assert fig.axes[0].get_xlabel() == "guest RAM"


def test_compare_cli(tmp_path):
    res = CliRunner().invoke(main, ["compare", "churn", "-m", "firecracker-128m", "--ops",
                                    "500", "--policies", "lazy,eager", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output          # an empty directory may be used
    assert "page inits: boot" in res.output
    assert (tmp_path / "compare-fragmentation.png").exists()
    assert (tmp_path / "lazy" / "run.trace").exists()


def test_run_and_report_cli(tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["run", "dma", "-m", "firecracker-128m", "--ops", "600", "-o",
                          str(tmp_path / "r"), "--record", str(tmp_path / "r.trace")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["replay", str(tmp_path / "r.trace")])
    assert res.exit_code == 0
    res = r.invoke(main, ["report", str(tmp_path / "r")])
    assert res.exit_code == 0 and "report.html" in res.output
    res = r.invoke(main, ["run", "nosuch"])
    assert res.exit_code != 0 and "unknown workload" in res.output


# -- sweeps ---------------------------------------------------------------------------------
SWEEP = """machines = ["firecracker-128m"]
policies = ["lazy", "eager"]
workloads = ["churn", "forkexec"]
seeds = [1, 2]
ops = 300
"""


def _stable(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "ops_per_second")}
            for r in rows]


def test_sweep_runs_the_grid_the_same_serially_and_in_parallel():
    specs = load_sweep(SWEEP)
    assert len(specs) == 8
    one = run_sweep(specs, workers=1)
    two = run_sweep(specs, workers=2)
    assert _stable(one) == _stable(two)


def test_sweep_on_a_dask_cluster():
    dd = pytest.importorskip("dask.distributed")
    specs = load_sweep(SWEEP)[:4]
    with dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster:
        rows = run_sweep(specs, scheduler=cluster.scheduler_address)
    assert _stable(rows) == _stable(run_sweep(specs, workers=1))


@pytest.mark.parametrize("text,msg", [
    ("machines = [\n", "sweep"), (SWEEP + "policy = ['lazy']\n", "unknown keys"),
    (SWEEP.replace('"lazy"', '"lazzy"'), "unknown policy"),
    (SWEEP.replace("churn", "chrun"), "unknown workload"),
    (SWEEP.replace("firecracker-128m", "nope"), "unknown machine"),
    (SWEEP.replace("ops = 300", "ops = 0"), "positive"),
    (SWEEP.replace("seeds = [1, 2]", "seeds = []"), "non-empty"),
])
def test_sweep_configs_with_typos_are_refused(text, msg):
    with pytest.raises(SweepConfigError, match=msg):
        load_sweep(text)


def test_sweep_cli_writes_results(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.replace("seeds = [1, 2]", "seeds = [1]"))
    res = CliRunner().invoke(main, ["sweep", str(cfg), "--workers", "1", "-o",
                                    str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(text) == 5 and text[0].startswith("machine,policy,workload,seed,ops")
    assert (tmp_path / "out" / "unusable-index.png").stat().st_size > 0
