"""A picture of physical memory: the whole machine as an image, coloured by page state.

No kernel tool draws this.  Each segment of the machine (vm_phys's segments, in address
order, the holes between them marked) is laid out in rows of cells; a cell is a page, or a
power-of-two run of pages on large machines, coloured by the state most of its pages are
in:

* free, by the order of the buddy block holding it (light: order 0, dark: order 12);
* LAZYINIT: free but never initialised (lazy boot; ``vm_page_init_page`` not yet run);
* allocated: inside phys_avail but not free;
* reserved: in a segment but not in phys_avail (kernel, page array, firmware).

The image is computed from runs, never page by page: free blocks come from the free
queues, allocated and reserved runs by subtracting them from phys_avail and the segments,
and each state's pages per cell from a cumulative sum evaluated at the cell edges
(:func:`cell_counts`), so a 1 TiB machine costs what its number of free blocks costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .bits import PAGE_SHIFT
from .kernel import Kernel
from .reprs import fmt_size

ROW_CELLS = 512                  # cells per row of the image
TARGET_CELLS = 1 << 18           # the cell size grows (powers of two) to stay near this

RESERVED, ALLOCATED, LAZYINIT = 0, 1, 2
FREE0 = 3                        # state FREE0 + o: free in a block of order o


def state_names(nfreeorder: int) -> list[str]:
    """Legend labels, by state number."""
    return (["reserved (kernel, page array, firmware)", "allocated",
             "LAZYINIT (never initialised)"] +
            [f"free, order {o} ({fmt_size(4096 << o)} blocks)" for o in range(nfreeorder)])


def state_colours(nfreeorder: int) -> np.ndarray:
    """RGB (0-255) per state: greys and red for used pages, a blue for LAZYINIT, a
    light-to-dark green ramp for free orders (so fragmentation shows as pale speckle)."""
    greens = colormaps["YlGn"](np.linspace(0.25, 1.0, nfreeorder))[:, :3]
    fixed = np.array([[0.42, 0.42, 0.42], [0.80, 0.22, 0.17], [0.62, 0.79, 0.88]])
    return (np.vstack([fixed, greens]) * 255).astype(np.uint8)


HOLE_RGB = np.array([255, 255, 255], dtype=np.uint8)


def _subtract(ranges: list[tuple[int, int]], cuts: list[tuple[int, int]]
              ) -> list[tuple[int, int]]:
    """``ranges`` minus ``cuts`` (both sorted, disjoint, [start, end) in pages): one merge
    pass over the two lists."""
    out: list[tuple[int, int]] = []
    j = 0
    for s, e in ranges:
        while j < len(cuts) and cuts[j][1] <= s:
            j += 1
        k = j
        cur = s
        while k < len(cuts) and cuts[k][0] < e:
            if cuts[k][0] > cur:
                out.append((cur, cuts[k][0]))
            cur = max(cur, cuts[k][1])
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


def page_runs(k: Kernel) -> dict[int, list[tuple[int, int]]]:
    """Runs ``[start, end)`` of pfns per state for a booted kernel (see the module)."""
    assert k.booted, "page_runs: boot the kernel first"
    phys = k.phys
    runs: dict[int, list[tuple[int, int]]] = {}
    free: list[tuple[int, int]] = []
    lazy = getattr(phys, "LAZYINIT", None)
    for _d, _f, pool, order, m in phys.free_blocks():
        st = LAZYINIT if lazy is not None and pool == lazy else FREE0 + order
        runs.setdefault(st, []).append((m, m + (1 << order)))
        free.append((m, m + (1 << order)))
    free.sort()
    segs = [(s.start >> PAGE_SHIFT, s.end >> PAGE_SHIFT) for s in phys.segs]
    avail = sorted((s >> PAGE_SHIFT, e >> PAGE_SHIFT) for s, e in k.phys_avail)
    runs[ALLOCATED] = _subtract(avail, free)
    runs[RESERVED] = _subtract(segs, avail)
    for v in runs.values():
        v.sort()
    return runs


def cell_counts(runs: list[tuple[int, int]], edges: np.ndarray) -> np.ndarray:
    """Pages of ``runs`` (sorted, disjoint) inside each cell ``[edges[i], edges[i+1])``:
    the difference of the cumulative page count F(x) = pages of the runs below x."""
    if not runs:
        return np.zeros(len(edges) - 1, dtype=np.int64)
    r = np.asarray(runs, dtype=np.int64)
    st, ln = r[:, 0], r[:, 1] - r[:, 0]
    cum = np.concatenate([[0], np.cumsum(ln)])
    i = np.searchsorted(st, edges, side="right") - 1
    ic = np.clip(i, 0, None)
    f = np.where(i >= 0, cum[ic] + np.minimum(edges - st[ic], ln[ic]), 0)
    return np.diff(f)


@dataclass
class MemoryMap:
    """The cell states of one moment: one array of states per segment (-1: past the
    segment's end), with the cell size in pages."""

    segments: list[tuple[int, int, int]]     # (start pfn, end pfn, domain)
    cells: list[np.ndarray]
    pages_per_cell: int
    nfreeorder: int

    def rgb(self) -> tuple[np.ndarray, list[int]]:
        """The image (rows x ROW_CELLS x 3) and the first row of each segment; segments
        are separated by blank rows (a hole, or a segment boundary), 1/80 of the image."""
        colours = state_colours(self.nfreeorder)
        total = sum(-(-len(c) // ROW_CELLS) for c in self.cells)
        gap = max(1, total // 80)
        rows, starts, r0 = [], [], 0
        for i, c in enumerate(self.cells):
            if i:
                rows.append(np.broadcast_to(HOLE_RGB, (gap, ROW_CELLS, 3)))
                r0 += gap
            n = -(-len(c) // ROW_CELLS) * ROW_CELLS
            padded = np.full(n, -1, dtype=np.int16)
            padded[:len(c)] = c
            img = np.where(padded[:, None] >= 0, colours[np.clip(padded, 0, None)], HOLE_RGB)
            rows.append(img.reshape(-1, ROW_CELLS, 3))
            starts.append(r0)
            r0 += n // ROW_CELLS
        return np.vstack(rows).astype(np.uint8), starts


def memory_map(k: Kernel, pages_per_cell: int | None = None) -> MemoryMap:
    """The cell states of ``k`` now."""
    runs = page_runs(k)
    segs = [(s.start >> PAGE_SHIFT, s.end >> PAGE_SHIFT, s.domain) for s in k.phys.segs]
    total = sum(e - s for s, e, _ in segs)
    ppc = pages_per_cell or 1 << max(0, (-(-total // TARGET_CELLS) - 1).bit_length())
    nstates = FREE0 + k.param.nfreeorder
    cells = []
    for s, e, _ in segs:
        edges = np.minimum(np.arange(s, e + ppc, ppc, dtype=np.int64), e)
        if edges[-1] != e:
            edges = np.append(edges, e)
        edges = np.unique(edges)
        counts = np.stack([cell_counts(runs.get(st, []), edges) for st in range(nstates)])
        cells.append(counts.argmax(axis=0).astype(np.int16))
    return MemoryMap(segs, cells, ppc, k.param.nfreeorder)


def plot_memory_maps(maps: Sequence[tuple[str, MemoryMap]], title: str) -> Figure:
    """Side-by-side pictures of one machine at several moments, with one legend."""
    first = maps[0][1]
    n = len(maps)
    img0, _ = first.rgb()
    height = min(9.0, max(3.5, 2.0 + img0.shape[0] / 90))
    fig = Figure(figsize=(max(8.0, min(15.0, 1.8 + 3.6 * n)), height + 1.2),
                 layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (label, mm) in zip(axes, maps, strict=True):
        img, starts = mm.rgb()
        ax.imshow(img, aspect="auto", interpolation="nearest")
        ax.set_xticks([])
        ticks: list[int] = []
        names: list[str] = []
        min_gap = img.shape[0] / 30          # labels closer than this would overlap
        for (s, e, d), r in zip(mm.segments, starts, strict=True):
            if ticks and r - ticks[-1] < min_gap:
                continue
            ticks.append(r)
            names.append(f"{s << PAGE_SHIFT:#x}  dom {d}  {fmt_size((e - s) << PAGE_SHIFT)}")
        ax.set_yticks(ticks, names, fontsize="x-small")
        ax.set_title(label, fontsize="medium")
        for spine in ax.spines.values():
            spine.set_visible(False)
    cell = fmt_size(first.pages_per_cell * 4096)
    fig.suptitle(f"{title}\nrows of {ROW_CELLS} cells, a cell = {cell}, addresses ascend "
                 "left to right, top to bottom; white rows separate segments",
                 fontsize="medium")
    colours = state_colours(first.nfreeorder) / 255
    names = state_names(first.nfreeorder)
    shown = sorted({int(v) for _, mm in maps for c in mm.cells for v in np.unique(c)})
    handles = [Patch(facecolor=colours[s], edgecolor="0.5", label=names[s]) for s in shown]
    fig.legend(handles=handles, loc="outside lower center", fontsize="small",
               ncols=min(4, len(handles)), title="page state", frameon=False)
    return fig
