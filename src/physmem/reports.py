"""Reports on runs: a rich summary, PNG plots (matplotlib) and one self-contained HTML page.

:func:`report` reads a run directory (:func:`physmem.workloads.write_run`) and writes
``free-blocks.png`` (free blocks by order over time), ``fragmentation.png`` (Linux's
unusable-free-space and fragmentation indices over time, and the largest free run),
``boot-cost.png`` (modelled vm_page initialisation at boot against RAM size, lazy and
eager) and ``report.html`` (the three plots embedded, the summary and the final buddyinfo).
:func:`compare` runs one workload under two configurations side by side.  Every file is
written atomically.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .atomic import atomic_write
from .bootcost import NS_PER_PAGE
from .errors import ArgumentError
from .kernel import Kernel
from .machine import Machine, _firecracker
from .vmparam import GIB, MIB
from .workloads import Run, RunConfig, read_run, run_workload, write_run

BOOT_SIZES = (128 * MIB, 512 * MIB, 1 * GIB, 4 * GIB, 16 * GIB, 64 * GIB)


def save_png(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def plot_free_blocks(samples: Sequence[dict], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ops = [s["op"] for s in samples]
    orders = sorted(int(k[8:]) for k in samples[0] if k.startswith("blocks_o"))
    for o in orders:
        ys = [s[f"blocks_o{o}"] for s in samples]
        if any(ys):
            ax.plot(ops, ys, label=f"order {o}")
    ax.set_xlabel("operations")
    ax.set_ylabel("free blocks")
    ax.set_yscale("symlog")
    ax.set_title(title)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


def plot_fragmentation(series: dict[str, Sequence[dict]], title: str) -> Figure:
    """Fragmentation over time for one or more runs (``{label: samples}``; label "" for
    a single run)."""
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, ss in series.items():
        ops = [s["op"] for s in ss]
        tag = f" ({name})" if name else ""
        for key, label in (("unusable_o9", "unusable index, order 9"),
                           ("unusable_o3", "unusable index, order 3"),
                           ("extfrag_o9", "fragmentation index, order 9")):
            ax.plot(ops, [s[key] for s in ss], label=label + tag)
        ax2.plot(ops, [s["largest_free_run"] for s in ss], label="largest free run" + tag)
    ax.set_ylabel("index")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax2.set_xlabel("operations")
    ax2.set_ylabel("pages")
    ax2.legend(fontsize="small")
    fig.tight_layout()
    return fig


def boot_cost_points(sizes: Sequence[int] = BOOT_SIZES) -> list[tuple[int, int, int]]:
    """(RAM bytes, page structures initialised at boot eagerly, lazily) for Firecracker
    guests of each size."""
    out = []
    for size in sizes:
        m = Machine(f"fc-{size >> 20}m", _firecracker(size), page_array="none",
                    source="Firecracker layout")
        counts = []
        for lazy in (False, True):
            k = Kernel.from_machine(m)
            k.boot(lazy=lazy)
            counts.append(k.stats.boot)
        out.append((size, counts[0], counts[1]))
    return out


def plot_boot_cost(points: Sequence[tuple[int, int, int]],
                   ns_per_page: float = NS_PER_PAGE) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = [p[0] / GIB for p in points]
    ax.plot(xs, [p[1] * ns_per_page / 1e6 for p in points], "o-", label="eager")
    ax.plot(xs, [p[2] * ns_per_page / 1e6 for p in points], "s-", label="lazy")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("RAM (GiB)")
    ax.set_ylabel(f"modelled vm_page init at boot (ms, {ns_per_page:.1f} ns/page)")
    ax.set_title("Boot cost of page-structure initialisation, lazy vs eager")
    ax.legend()
    fig.tight_layout()
    return fig


def _summary_table(cfg: dict, summary: dict, title: str) -> Table:
    t = Table(title=title)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k in ("workload", "machine", "ops", "seed", "lazy", "mirror"):
        t.add_row(k, str(cfg.get(k)))
    t.add_row("trace operations", f"{summary['ops']:,}")
    t.add_row("model speed", f"{summary['ops_per_second']:,} ops/s")
    final = summary["final"]
    for k in ("free_pages", "largest_free_run", "unusable_o3", "unusable_o9", "extfrag_o9",
              "contig_512_ok", "contig_4096_ok"):
        t.add_row(k, str(final.get(k)))
    inits = summary.get("inits", {})
    t.add_row("page inits (boot / on demand / drain)",
              f"{inits.get('boot', 0):,} / {inits.get('on_demand', 0):,} / "
              f"{inits.get('drain', 0):,}")
    return t


def report(run_dir: str | Path, out_dir: str | Path | None = None,
           console: Console | None = None) -> dict[str, Path]:
    """Summarise a run directory and write its plots and HTML page (into ``out_dir``,
    default the run directory).  Returns the files written."""
    con = console or Console()
    cfg, samples, summary = read_run(run_dir)
    if not samples:
        raise ArgumentError(f"{run_dir}: no metric samples")
    out = Path(out_dir) if out_dir else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{cfg['workload']} on {cfg['machine']}, seed {cfg['seed']}"
    con.print(_summary_table(cfg, summary, title))
    con.print("buddyinfo at the end (free blocks per order, all pools):")
    con.print(summary["buddyinfo"], markup=False, highlight=False)
    files: dict[str, Path] = {}
    steps: list[tuple[str, Callable[[], Figure]]] = [
        ("free-blocks.png", lambda: plot_free_blocks(samples, f"Free blocks by order: {title}")),
        ("fragmentation.png", lambda: plot_fragmentation({"": samples},
                                                         f"Fragmentation: {title}")),
        ("boot-cost.png", lambda: plot_boot_cost(boot_cost_points())),
    ]
    with Progress(console=con, transient=True) as prog:
        task = prog.add_task("plots", total=len(steps) + 1)
        for name, make in steps:
            fig = make()
            save_png(fig, out / name)
            plt.close(fig)
            files[name] = out / name
            prog.advance(task)
        page = _html(title, cfg, summary, files)
        with atomic_write(out / "report.html", "w") as f:
            f.write(page)
        files["report.html"] = out / "report.html"
        prog.advance(task)
    con.print(f"wrote {', '.join(str(p) for p in files.values())}")
    return files


def _html(title: str, cfg: dict, summary: dict, images: dict[str, Path]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in [*cfg.items(), ("trace operations", summary["ops"]),
                                ("ops/s", summary["ops_per_second"]),
                                *summary["final"].items()])
    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(n)}'
        f"</figcaption></figure>" for n, p in images.items())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>body{{font-family:sans-serif;max-width:60em;margin:auto}}"
            f"th{{text-align:left;padding-right:1em}}img{{max-width:100%}}</style></head>"
            f"<body><h1>physmem: {html.escape(title)}</h1><table>{rows}</table>"
            f"<h2>buddyinfo</h2><pre>{html.escape(summary['buddyinfo'])}</pre>{imgs}"
            f"</body></html>\n")


# ---------------------------------------------------------------------------------------
# Side by side
# ---------------------------------------------------------------------------------------
POLICIES = {"lazy": {"lazy": True}, "eager": {"lazy": False},
            "lazy+mirror": {"lazy": True, "mirror": True},
            "eager+mirror": {"lazy": False, "mirror": True}}


def policy_config(policy: str, **kw) -> RunConfig:
    if policy not in POLICIES:
        raise ArgumentError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    return RunConfig(**{**kw, **POLICIES[policy]})


def compare(workload: str, machine: str, ops: int, seed: int, policies: Sequence[str],
            out_dir: str | Path, console: Console | None = None) -> list[Run]:
    """Run ``workload`` under each policy and show the differences side by side."""
    con = console or Console()
    runs = [run_workload(policy_config(p, workload=workload, machine=machine, ops=ops,
                                       seed=seed)) for p in policies]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = Table(title=f"{workload} on {machine}, {ops} steps, seed {seed}")
    t.add_column("quantity")
    for p in policies:
        t.add_column(p, justify="right")
    keys = ["free_pages", "largest_free_run", "unusable_o3", "unusable_o9", "extfrag_o9",
            "contig_512_ok", "contig_4096_ok"]
    t.add_row("trace operations", *[f"{r.summary['ops']:,}" for r in runs])
    t.add_row("model speed (ops/s)", *[f"{r.summary['ops_per_second']:,}" for r in runs])
    for k in keys:
        t.add_row(k, *[str(r.summary["final"][k]) for r in runs])
    for k in ("boot", "on_demand", "drain"):
        t.add_row(f"page inits: {k}", *[f"{r.summary['inits'][k]:,}" for r in runs])
    con.print(t)
    fig = plot_fragmentation({p: r.samples for p, r in zip(policies, runs, strict=True)},
                             f"{workload}: {' vs '.join(policies)}")
    save_png(fig, out / "compare-fragmentation.png")
    plt.close(fig)
    for p, r in zip(policies, runs, strict=True):
        write_run(r, out / p)
    con.print(f"wrote {out / 'compare-fragmentation.png'} and a run directory per policy")
    return runs
