"""Plots and reports that answer questions: the memory picture, lazy-init progress,
narrow terminals, boot --compare's columns."""

from __future__ import annotations

import csv
import itertools
import random

import numpy as np
from click.testing import CliRunner

import physmem
from physmem.cli import main
from physmem.mapimage import (
    ALLOCATED,
    FREE0,
    LAZYINIT,
    RESERVED,
    cell_counts,
    memory_map,
    page_runs,
)
from physmem.reports import plot_boot_cost, plot_fragmentation
from physmem.workloads import RunConfig, run_workload, write_run
from tests.conftest import make_kernel

PAGE = 4096


def test_memory_map_states_page_by_page_on_a_small_machine():
    # Segment pages [1, 256), phys_avail [5, 25): free 5 (o0), 6 (o1), 8 and 16 (o3), 24.
    k = make_kernel([(0x1000, 0x100000)], [(5 * PAGE, 25 * PAGE)])
    assert k.alloc_pages(0, "default", 0) == 5 * PAGE
    mm = memory_map(k, pages_per_cell=1)
    cells = mm.cells[0]
    want = np.full(255, RESERVED)
    want[5 - 1] = ALLOCATED
    want[6 - 1:8 - 1] = FREE0 + 1
    want[8 - 1:24 - 1] = FREE0 + 3
    want[24 - 1] = FREE0 + 0
    assert cells.tolist() == want.tolist()


def test_memory_map_shows_lazyinit_and_stays_by_runs_at_1_tib():
    k = physmem.boot("server-1t", lazy=True)
    runs = page_runs(k)
    assert sum(e - s for s, e in runs[LAZYINIT]) > 250_000_000 // 1   # pages never touched
    mm = memory_map(k)
    assert mm.pages_per_cell == 1024 and sum(len(c) for c in mm.cells) < 300_000
    assert {int(v) for c in mm.cells for v in np.unique(c)} >= {RESERVED, LAZYINIT}
    assert [s[2] for s in mm.segments] == [0, 0, 0, 0, 1]     # split at 16 MiB, 4 GiB


def test_cell_counts_match_a_page_by_page_count():
    rng = random.Random(5)
    for _ in range(50):
        pts = sorted(rng.sample(range(0, 2000), 20))
        runs = [(pts[i], pts[i + 1]) for i in range(0, 20, 2)]
        edges = np.array(sorted({0, 2000, *rng.sample(range(1, 2000), 30)}))
        brute = [sum(1 for s, e in runs for p in range(s, e) if a <= p < b)
                 for a, b in itertools.pairwise(edges)]
        assert cell_counts(runs, edges).tolist() == brute


def test_metrics_csv_has_lazy_init_progress(tmp_path):
    run = run_workload(RunConfig("pagecache", "firecracker-128m", ops=3000, seed=1))
    d = write_run(run, tmp_path / "r")
    rows = list(csv.DictReader((d / "metrics.csv").open()))
    lz = [int(r["lazyinit_pages"]) for r in rows]
    assert lz[0] > 0 and lz[-1] < lz[0] and all(a >= b for a, b in itertools.pairwise(lz))
    last = rows[-1]
    assert int(last["init_on_demand"]) > 0
    assert int(last["init_boot"]) == run.summary["inits"]["boot"]


def test_map_image_cli_for_a_trace_and_a_snapshot(tmp_path):
    run = run_workload(RunConfig("churn", "firecracker-128m", ops=500, seed=1))
    d = write_run(run, tmp_path / "r")
    r = CliRunner()
    res = r.invoke(main, ["map-image", str(d / "run.trace"), "-o", str(tmp_path / "a.png"),
                          "--at", "0", "--at", "200"])
    assert res.exit_code == 0 and "2 moment(s)" in res.output, res.output
    res = r.invoke(main, ["replay", str(d / "run.trace"), "--save", str(tmp_path / "s.npz")])
    assert res.exit_code == 0
    res = r.invoke(main, ["map-image", str(tmp_path / "s.npz"), "-o", str(tmp_path / "b.png")])
    assert res.exit_code == 0 and (tmp_path / "b.png").stat().st_size > 10_000
    res = r.invoke(main, ["map-image", str(d / "run.trace"), "-o", str(tmp_path / "c.png"),
                          "--at", "999999"])
    assert res.exit_code == 2 and "--at must be between 0 and" in res.output


def test_fragmentation_plot_does_not_draw_minus_one_as_a_value():
    samples = [{"op": i, "unusable_o3": 0.001 * i, "unusable_o9": 0.002 * i,
                "extfrag_o9": -1.0 if i < 5 else 0.5, "largest_free_run": 100}
               for i in range(10)]
    fig = plot_fragmentation({"": samples}, "t")
    top, mid, _ = fig.axes
    assert top.get_ylim()[1] < 5          # percent of free memory: scaled to 0..1.8 %
    y = mid.get_lines()[0].get_ydata()
    assert np.isnan(y[:5]).all() and (y[5:] == 0.5).all()
    assert mid.get_ylim() == (0, 1)


def test_boot_cost_plot_names_the_machine_and_explains_the_jump():
    pts = [(1 << 30, 262_000, 8_000), (4 << 30, 1_048_000, 850_000)]
    fig = plot_boot_cost(pts, machine=("my-guest", 2 << 30, 500_000, 8_000))
    ax = fig.axes[0]
    assert "my-guest" in ax.get_title(loc="left")
    assert any("MMIO gap" in t.get_text() for t in ax.texts)
    assert "this run's machine: my-guest" in [t.get_text() for t in ax.get_legend().texts]


def test_narrow_terminals_fold_names_instead_of_truncating(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('machines = ["firecracker-128m", "firecracker-1g"]\npolicies = ["lazy"]\n'
                    'workloads = ["churn"]\nseeds = [1]\nops = 200\n')
    res = CliRunner().invoke(main, ["sweep", str(grid), "--workers", "1", "-o",
                                    str(tmp_path / "s")], env={"COLUMNS": "50"})
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    flat = "".join(ch for ch in res.output if ch.isalnum() or ch == "-")
    assert "128m" in flat and "1g" in flat
    res = CliRunner().invoke(main, ["machine", "list"], env={"COLUMNS": "40"})
    assert "…" not in res.output


def test_boot_compare_defines_its_time_columns():
    res = CliRunner().invoke(main, ["boot", "--machine", "firecracker-128m", "--compare"])
    assert res.exit_code == 0, res.output
    assert "model wall time" not in res.output
    assert "not what the kernel" in res.output and "modelled kernel time" in res.output


def test_report_of_a_run_without_its_trace_is_a_typed_error(tmp_path):
    import pytest

    from physmem.reports import report
    run = run_workload(RunConfig("churn", "firecracker-128m", ops=200, seed=1))
    d = write_run(run, tmp_path / "r")
    (d / "run.trace").unlink()
    with pytest.raises(physmem.PhysmemError, match=r"run\.trace"):
        report(d)
