"""The report's figures as a reader sees them: every text inside the figure and its panel,
the colour bar's counts readable."""

from __future__ import annotations

import pytest

from physmem.reports import plot_fragmentation, plot_free_blocks
from physmem.workloads import RunConfig, run_workload


@pytest.fixture(scope="module")
def samples():
    return run_workload(RunConfig("churn", "firecracker-1g", ops=3000)).samples


def test_the_not_fragmented_note_stays_inside_its_panel(samples):
    assert all(s["extfrag_o9"] <= -1 for s in samples)      # the case the note is for
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = plot_fragmentation({"": samples}, "t")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    r = canvas.get_renderer()
    ax2 = fig.axes[1]
    (note,) = [t for t in ax2.texts if "throughout" in t.get_text()]
    box, panel = note.get_window_extent(r), ax2.get_window_extent(r)
    assert panel.x0 <= box.x0 and box.x1 <= panel.x1


def test_the_colour_bar_reads_the_largest_counts(samples):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = plot_free_blocks(samples, "t")
    FigureCanvasAgg(fig).draw()
    cbar = fig.axes[1]
    most = max(v for s in samples for k, v in s.items() if k.startswith("blocks_o"))
    assert most >= 20
    ticks = [t for t in cbar.get_yticks() if 1 <= t <= most]
    # a labelled tick within a factor 2.5 of the largest count, not only 1 and 10
    assert max(ticks) * 2.5 >= most and len(ticks) >= 4
