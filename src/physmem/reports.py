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

import numpy as np

# Figures are made with the object-oriented API (Figure, not pyplot), so importing this
# module neither picks nor changes matplotlib's backend: %matplotlib inline keeps working.
from matplotlib.figure import Figure
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .atomic import (
    MARKER,
    OutputError,
    atomic_write,
    check_output_dir,
    is_marked,
    refuse_temp,
    replace_dir,
    write_marker,
)
from .bootcost import NS_PER_PAGE
from .checks import untrusted
from .errors import ArgumentError, PhysmemError
from .kernel import Kernel
from .machine import Machine, _firecracker, get_machine
from .mapimage import MemoryMap, memory_map, plot_memory_maps
from .trace import Replayer
from .vmparam import GIB, MIB
from .workloads import (
    REPORT_FILES,
    RUN_OWNED,
    Run,
    RunConfig,
    read_run,
    run_workload,
    write_run,
)

# Guest sizes of the boot-cost plot: both sides of Firecracker's MMIO gap (3.25 GiB).
BOOT_SIZES = (128 * MIB, 512 * MIB, 1 * GIB, 2 * GIB, 3 * GIB, 4 * GIB, 16 * GIB, 64 * GIB)


def save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


ORDER_LABELS = [f"{o} ({_s})" for o, _s in enumerate(
    ("4K", "8K", "16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M", "4M", "8M", "16M",
     "32M", "64M", "128M"))]


def _fmt(v: object) -> str:
    """A value as the report prints it: yes/no, thousands separators, fractions to 3
    places."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.3f}"
    return f"{int(v):,}"


def plot_free_blocks(samples: Sequence[dict], title: str) -> Figure:
    """A heat map of free blocks: time across, buddy order up, colour = blocks (log)."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogLocator
    orders = sorted(int(k[8:]) for k in samples[0] if k.startswith("blocks_o"))
    ops = np.array([s["op"] for s in samples], dtype=float)
    grid = np.array([[s[f"blocks_o{o}"] for s in samples] for o in orders], dtype=float)
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.subplots()
    masked = np.ma.masked_less_equal(grid, 0)
    edges = np.concatenate([ops[:1], (ops[1:] + ops[:-1]) / 2, ops[-1:]]) if len(ops) > 1 \
        else np.array([ops[0] - 0.5, ops[0] + 0.5])
    vmax = max(1.0, float(grid.max()))
    mesh = ax.pcolormesh(edges, np.arange(len(orders) + 1) - 0.5, masked, shading="flat",
                         cmap="viridis", norm=LogNorm(vmin=1, vmax=vmax))
    ax.set_facecolor("0.93")                   # no free block of that order: light grey
    ax.set_yticks(range(len(orders)), [ORDER_LABELS[o] for o in orders], fontsize="small")
    ax.set_xlabel("operations")
    ax.set_ylabel("buddy order (block size)")
    ax.set_title(title, fontsize="medium", loc="left")
    cb = fig.colorbar(mesh, ax=ax, pad=0.01)
    cb.set_label("free blocks (log scale; grey: none)")
    # ticks at 1, 2, 5, 10, 20, 50, ...: two decades of counts must be readable off the bar
    cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    cb.ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
    cb.ax.yaxis.set_minor_formatter(lambda v, _pos: "")
    return fig


def plot_fragmentation(series: dict[str, Sequence[dict]], title: str) -> Figure:
    """Fragmentation over time for one or more runs (``{label: samples}``; label "" for a
    single run): the unusable free space index (what varies, on its own scale), Linux's
    fragmentation index where an order-9 request would fail (-1, "would succeed", is
    shaded, not plotted), and the largest free run."""
    from matplotlib.ticker import PercentFormatter
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    ax, ax2, ax3 = fig.subplots(3, 1, sharex=True, height_ratios=[1.2, 1, 1])
    styles = ["-", "--", ":", "-."]
    for i, (name, ss) in enumerate(series.items()):
        ops = np.array([s["op"] for s in ss], dtype=float)
        tag = f" ({name})" if name else ""
        ls = styles[i % len(styles)]
        for key, label, c in (("unusable_o3", "order 3 (32 KiB)", "C0"),
                              ("unusable_o9", "order 9 (2 MiB)", "C1")):
            ax.plot(ops, [100 * s[key] for s in ss], ls, color=c, label=label + tag)
        ef = np.array([s["extfrag_o9"] for s in ss], dtype=float)
        fails = ef > -1
        ax2.plot(ops, np.where(fails, ef, np.nan), ls, color="C2", marker=".",
                 label="order 9" + tag)
        ax2.fill_between(ops, 0, 1, where=~fails, step="mid", color="C2", alpha=0.12,
                         linewidth=0, label=("an order-9 block is free: not fragmented"
                                             if i == 0 else None))
        ax3.plot(ops, [s["largest_free_run"] * 4096 / MIB for s in ss], ls, color="C3",
                 label="largest free run" + tag)
    ax.set_ylabel("unusable free space\n(% of free memory)")
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize="medium", loc="left")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax2.set_ylim(0, 1)
    if all(s["extfrag_o9"] <= -1 for ss in series.values() for s in ss):
        ax2.text(0.5, 0.5, "an order-9 (2 MiB) block was free throughout:\nthe index "
                 "stayed -1 (would succeed)", transform=ax2.transAxes, ha="center", va="center",
                 fontsize="small", color="0.25")
    ax2.set_ylabel("fragmentation index\n(0: no memory, 1: fragmented)")
    ax2.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax3.set_ylabel("largest contiguous\nfree run (MiB)")
    ax3.set_xlabel("operations")
    ax3.set_ylim(bottom=0)
    ax3.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def plot_lazy_init(samples: Sequence[dict], title: str) -> Figure:
    """Lazy-init progress: page structures initialised at boot, on demand and by the drain
    (stacked), and free pages never initialised (still in the LAZYINIT pool)."""
    ops = [s["op"] for s in samples]
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    ys = [[s.get(k, 0) for s in samples] for k in ("init_boot", "init_on_demand",
                                                    "init_drain")]
    ax.stackplot(ops, *ys, labels=["initialised at boot", "initialised on demand",
                                   "initialised by the drain"],
                 colors=["0.55", "C0", "C2"], alpha=0.85)
    ax.plot(ops, [s.get("lazyinit_pages", 0) for s in samples], color="C1", lw=2,
            label="free pages never initialised (LAZYINIT)")
    ax.set_xlabel("operations")
    ax.set_ylabel("pages")
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize="medium", loc="left")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def _boot_counts(m: Machine) -> tuple[int, int]:
    """Page structures initialised at boot: (eager, lazy)."""
    counts = []
    for lazy in (False, True):
        k = Kernel.from_machine(m)
        k.boot(lazy=lazy and k.param.has_lazyinit)
        counts.append(k.stats.boot)
    return counts[0], counts[1]


def boot_cost_points(sizes: Sequence[int] = BOOT_SIZES) -> list[tuple[int, int, int]]:
    """(RAM bytes, page structures initialised at boot eagerly, lazily) for Firecracker
    guests of each size."""
    return [(size, *_boot_counts(Machine(f"fc-{size >> 20}m", _firecracker(size),
                                         page_array="none", source="Firecracker layout")))
            for size in sizes]


def plot_boot_cost(points: Sequence[tuple[int, int, int]],
                   ns_per_page: float = NS_PER_PAGE,
                   machine: tuple[str, int, int, int] | None = None) -> Figure:
    """Modelled vm_page initialisation at boot against RAM, lazy and eager, for Firecracker
    guests; ``machine`` = (name, RAM bytes, eager, lazy inits) marks the run's own machine.
    The jump of the lazy curve past the MMIO gap is annotated (the kernel's behaviour)."""
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    xs = [p[0] / GIB for p in points]
    ms = 1e6 / ns_per_page
    ax.plot(xs, [p[1] / ms for p in points], "o-", color="C3", label="eager boot")
    ax.plot(xs, [p[2] / ms for p in points], "s-", color="C0", label="lazy boot")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:g} GiB" if v >= 1 else
                                 f"{v * 1024:g} MiB")
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:g} ms")
    ax.set_xlabel("guest RAM")
    ax.set_ylabel(f"modelled vm_page init at boot\n({ns_per_page:.0f} ns per page structure)")
    gap = [(p[0] / GIB, p[2] / ms) for p in points if p[0] > 0xD0000000]
    small = [p[2] / ms for p in points if p[0] <= 0xD0000000]
    if gap and small:
        x, y = gap[0]
        ax.annotate("RAM above the MMIO gap continues at 4 GiB.\nAfter the gap, "
                    "vm_page_startup()'s loop starts at the\nbeginning of the avail range, "
                    "so even a lazy boot\ninitialises the whole segment below 4 GiB\n"
                    "(FreeBSD b16b4c22d2d1 does the same)",
                    xy=(x, y), xytext=(xs[-1], y / 12), fontsize="small", va="top",
                    ha="right", arrowprops={"arrowstyle": "->", "color": "0.3"})
    if machine is not None:
        name, ram, eager, lazy = machine
        ax.plot([ram / GIB] * 2, [max(eager, 1) / ms, max(lazy, 1) / ms], "*", ms=14,
                color="k", zorder=5, label=f"this run's machine: {name}")
    ax.set_title("Boot cost of page-structure initialisation, Firecracker guests"
                 + (f" (★ {machine[0]})" if machine else ""), fontsize="medium", loc="left")
    ax.legend(loc="upper left")
    return fig


LABELS = {
    "workload": "workload", "machine": "machine", "ops": "workload steps", "seed": "seed",
    "lazy": "lazy page initialisation", "mirror": "extent mirror attached",
    "free_pages": "free pages", "largest_free_run": "largest contiguous free run (pages)",
    "unusable_o3": "unusable free space index, order 3 (32 KiB)",
    "unusable_o9": "unusable free space index, order 9 (2 MiB)",
    "extfrag_o9": "fragmentation index, order 9",
    "contig_512_ok": "2 MiB contiguous (512 pages) still possible",
    "contig_4096_ok": "16 MiB contiguous (4,096 pages) still possible",
}


def _summary_rows(cfg: dict, summary: dict) -> list[tuple[str, str]]:
    rows = [(LABELS[k], _fmt(cfg.get(k))) for k in ("workload", "machine", "ops", "seed",
                                                     "lazy", "mirror")]
    rows += [("trace operations", _fmt(summary["ops"])),
             ("model speed", f"{_fmt(summary['ops_per_second'])} operations/s")]
    final = summary["final"]
    for k in ("free_pages", "largest_free_run"):
        rows.append((LABELS[k], _fmt(final.get(k))))
    for k in ("unusable_o3", "unusable_o9"):
        rows.append((LABELS[k], f"{100 * float(final.get(k, 0)):.2f} % of free memory"))
    ef = float(final.get("extfrag_o9", -1))
    rows.append((LABELS["extfrag_o9"], "-1 (would succeed)" if ef <= -1 else f"{ef:.3f}"))
    for k in ("contig_512_ok", "contig_4096_ok"):
        rows.append((LABELS[k], "yes" if final.get(k) else "no"))
    inits = summary.get("inits", {})
    rows.append(("page structures initialised (boot / on demand / drain)",
                 f"{_fmt(inits.get('boot', 0))} / {_fmt(inits.get('on_demand', 0))} / "
                 f"{_fmt(inits.get('drain', 0))}"))
    return rows


def _summary_table(cfg: dict, summary: dict, title: str) -> Table:
    t = Table(title=title)
    t.add_column("quantity", overflow="fold")
    t.add_column("value", justify="right", overflow="fold")
    for k, v in _summary_rows(cfg, summary):
        t.add_row(untrusted(k), untrusted(v))
    return t


def map_moments(trace_lines: Sequence[str], moments: int = 3,
                at: Sequence[int] | None = None) -> list[tuple[str, MemoryMap]]:
    """Replay a trace and picture memory at chosen moments: ``at`` = numbers of trace
    operations after the boot line, or else ``moments`` evenly spaced ones from the boot
    to the end."""
    boot = next((i for i, ln in enumerate(trace_lines) if ln.split()[:1] == ["boot"]), None)
    if boot is None:
        raise ArgumentError("the trace has no boot line: nothing to picture")
    body = len(trace_lines) - boot - 1
    if at is None:
        at = [body * i // max(1, moments - 1) for i in range(moments)]
    if any(not 0 <= n <= body for n in at):
        raise ArgumentError(f"--at must be between 0 and {body:,} (the trace's operations "
                            "after boot)")
    r = Replayer()
    out, done, maps = io.StringIO(), 0, []
    for n in sorted(set(at)):
        c = boot + 1 + n
        r.replay(trace_lines[done:c], out)
        done = c
        label = "after boot" if n == 0 else f"after {n:,} trace operations"
        if r.kernel is None or not r.kernel.booted:
            raise ArgumentError("the trace did not boot a kernel")
        maps.append((label, memory_map(r.kernel)))
    return maps


def report(run_dir: str | Path, out_dir: str | Path | None = None,
           console: Console | None = None) -> dict[str, Path]:
    """Summarise a run directory and write its plots and HTML page (into ``out_dir``,
    default the run directory).  Returns the files written."""
    con = console or Console()
    cfg, samples, summary = read_run(run_dir)
    if not samples:
        raise ArgumentError(f"{run_dir}: no metric samples")
    out = Path(run_dir) if not out_dir or Path(out_dir).resolve() == Path(run_dir).resolve() \
        else _report_dir(Path(out_dir))        # a run directory's report files are its own
    title = f"{cfg['workload']} on {cfg['machine']}, seed {cfg['seed']}"
    con.print(_summary_table(cfg, summary, untrusted(title)))
    # Text from the run's files, for matplotlib: controls escaped, no mathtext ($...$).
    ptitle = untrusted(title, markup=False).replace("$", r"\$")
    con.print("buddyinfo at the end (free blocks per order, all pools):")
    con.print("\n".join(untrusted(line, markup=False) for line in
                        summary["buddyinfo"].splitlines()), markup=False, highlight=False)
    try:
        trace = (Path(run_dir) / "run.trace").read_text(errors="replace").splitlines()
    except OSError as e:
        raise ArgumentError(f"{run_dir}: run.trace unreadable ({e.strerror})") from None
    own = _own_machine(cfg["machine"])
    pmachine = untrusted(cfg["machine"], markup=False).replace("$", r"\$")
    files: dict[str, Path] = {}
    steps: list[tuple[str, Callable[[], Figure]]] = [
        ("memory-map.png", lambda: plot_memory_maps(map_moments(trace),
                                                    f"Physical memory of {pmachine}")),
        ("free-blocks.png", lambda: plot_free_blocks(samples, f"Free blocks by order: {ptitle}")),
        ("fragmentation.png", lambda: plot_fragmentation({"": samples},
                                                         f"Fragmentation: {ptitle}")),
        ("lazy-init.png", lambda: plot_lazy_init(samples, f"Lazy initialisation: {ptitle}")),
        ("boot-cost.png", lambda: plot_boot_cost(boot_cost_points(), machine=own)),
    ]
    with Progress(console=con, transient=True) as prog:
        task = prog.add_task("plots", total=len(steps) + 1)
        for name, make in steps:
            save_png(make(), out / name)
            files[name] = out / name
            prog.advance(task)
        page = _html(title, cfg, summary, samples, files, own)
        with atomic_write(out / "report.html", "w") as f:
            f.write(page)
        files["report.html"] = out / "report.html"
        prog.advance(task)
    con.print(f"wrote {', '.join(untrusted(p) for p in files.values())}")
    return files


def _report_dir(out: Path) -> Path:
    """Where a report may go: a physmem directory (its report files are physmem's to
    replace), a new directory (created and marked), or an existing one that has none of the
    report's file names (nothing of the user's is overwritten)."""
    refuse_temp(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    if not out.exists():
        out.mkdir(parents=True)
        write_marker(out, "report")
    elif not is_marked(out):
        clash = [n for n in REPORT_FILES if (out / n).exists() or (out / n).is_symlink()]
        if clash:
            raise OutputError(f"{out}: already has {clash[0]!r} and is not a physmem "
                              "directory; name a new one")
    return out



def _own_machine(spec: str) -> tuple[str, int, int, int] | None:
    """(name, RAM, eager inits, lazy inits) of the run's machine, or None if it can no
    longer be read (a map file moved away)."""
    try:
        m = get_machine(spec)
    except PhysmemError:
        return None
    return (m.name, m.ram_bytes(), *_boot_counts(m))


CAPTIONS = {
    "memory-map.png": "Physical memory itself, after boot, midway and at the end of the run: "
                      "each cell is a page (or a run of pages on large machines) coloured by "
                      "its state. Pale green speckle is fragmentation; blue is memory a lazy "
                      "boot has not initialised yet.",
    "free-blocks.png": "Free blocks of each buddy order over the run. Memory breaking up "
                       "shows as colour moving from the top rows (large blocks) to the "
                       "bottom ones.",
    "fragmentation.png": "Top: the share of free memory in blocks too small for an order-3 "
                         "or order-9 request (Linux's unusable free space index). Middle: "
                         "Linux's fragmentation index where an order-9 request would fail "
                         "(near 0: not enough memory, near 1: enough but fragmented); "
                         "shaded where a free order-9 block exists. Bottom: the largest "
                         "physically contiguous free run.",
    "lazy-init.png": "Page structures initialised so far: at boot, on demand when an "
                     "allocation takes never-initialised memory, and by the drain thread; "
                     "the line is free memory still never initialised.",
    "boot-cost.png": "What initialising page structures costs a booting kernel, modelled for "
                     "Firecracker guests of each size, lazy against eager; the star is "
                     "this run's machine.",
}


def _html(title: str, cfg: dict, summary: dict, samples: Sequence[dict],
          images: dict[str, Path], own: tuple[str, int, int, int] | None) -> str:
    def esc(x: object) -> str:
        return html.escape(str(x))

    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                   for k, v in _summary_rows(cfg, summary))
    final = summary["final"]
    lead = (f"{_fmt(summary['ops'])} operations of the <b>{esc(cfg['workload'])}</b> "
            f"workload on <b>{esc(cfg['machine'])}</b> "
            f"({'lazy' if cfg.get('lazy') else 'eager'} boot, seed {esc(cfg['seed'])}). "
            f"At the end {_fmt(final['free_pages'])} pages are free "
            f"({_fmt(round(final['free_pages'] * 4096 / MIB))} MiB); the largest "
            f"contiguous free run is {_fmt(final['largest_free_run'])} pages.")
    if own is not None:
        lead += (f" Booting {esc(own[0])} initialises {_fmt(own[2])} page structures "
                 f"eagerly and {_fmt(own[3])} lazily.")
    figs = "".join(
        f'<figure><h2>{esc(_FIG_TITLES[n])}</h2><img alt="{esc(_FIG_TITLES[n])}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{esc(CAPTIONS[n])}</figcaption></figure>"
        for n, p in images.items() if n in CAPTIONS)
    style = ("body{font-family:system-ui,sans-serif;max-width:62em;margin:2em auto;"
             "padding:0 1em;line-height:1.45;color:#222}"
             "h1{font-size:1.6em}h2{font-size:1.15em;margin:1.6em 0 .4em}"
             "table{border-collapse:collapse;margin:.5em 0}"
             "th,td{padding:.25em .8em;border-bottom:1px solid #ddd;vertical-align:top}"
             "th{text-align:left;font-weight:normal;color:#555}td{text-align:right;"
             "font-variant-numeric:tabular-nums}"
             "img{max-width:100%;height:auto;display:block}figure{margin:0 0 1.5em}"
             "figcaption{color:#444;font-size:.95em;margin-top:.3em}"
             "pre{overflow-x:auto;background:#f6f6f6;padding:.6em;font-size:.85em}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{style}</style></head><body>"
            f"<h1>physmem run: {esc(title)}</h1><p>{lead}</p>"
            f"<h2>Summary</h2><table>{rows}</table>{figs}"
            f"<h2>Free blocks per order at the end (buddyinfo)</h2>"
            f"<pre>{esc(summary['buddyinfo'])}</pre>"
            f"<p>Samples: {_fmt(len(samples))}, every "
            f"{_fmt(samples[1]['op'] - samples[0]['op'] if len(samples) > 1 else 0)} "
            f"operations (metrics.csv).</p></body></html>\n")


_FIG_TITLES = {
    "memory-map.png": "Physical memory over the run",
    "free-blocks.png": "Free blocks by order",
    "fragmentation.png": "Fragmentation",
    "lazy-init.png": "Lazy initialisation progress",
    "boot-cost.png": "Boot cost against RAM size",
}


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


def _compare_owned(e: Path) -> bool:
    """What physmem writes in a comparison directory: the plot and one run per policy."""
    if e.name == "compare-fragmentation.png":
        return e.is_file() and not e.is_symlink()
    return (e.name in POLICIES and e.is_dir() and not e.is_symlink() and is_marked(e, "run")
            and all(x.name == MARKER or RUN_OWNED(x) for x in e.iterdir()))


def compare(workload: str, machine: str, ops: int, seed: int, policies: Sequence[str],
            out_dir: str | Path, console: Console | None = None,
            force: bool = False) -> list[Run]:
    """Run ``workload`` under each policy and show the differences side by side."""
    con = console or Console()
    if len(set(policies)) != len(policies):
        raise ArgumentError(f"a policy is listed twice: {', '.join(policies)}")
    for p in policies:
        policy_config(p, workload=workload).validate()
    check_output_dir(out_dir, "compare", force, _compare_owned)
    runs = [run_workload(policy_config(p, workload=workload, machine=machine, ops=ops,
                                       seed=seed)) for p in policies]
    t = Table(title=untrusted(f"{workload} on {machine}, {ops} steps, seed {seed}"))
    t.add_column("quantity", overflow="fold")
    for p in policies:
        t.add_column(p, justify="right", overflow="fold")
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

    def build(tmp: Path) -> None:
        save_png(fig, tmp / "compare-fragmentation.png")
        for p, r in zip(policies, runs, strict=True):
            write_run(r, tmp / p)
    out = replace_dir(out_dir, "compare", build, force, _compare_owned)
    con.print(f"wrote {untrusted(out / 'compare-fragmentation.png')} and a run directory "
              "per policy")
    return runs
