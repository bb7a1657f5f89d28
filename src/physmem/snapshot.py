"""Snapshots: the whole state of a booted :class:`~physmem.kernel.Kernel` in one
file, and back.

The file is a numpy ``.npz`` archive (no pickles): a JSON ``meta`` record with the format
name and version, the machine, the tunables, the counts and vm_phys's scalar state; the
page-array words of each segment span; the lone page entries; and every free queue's block
heads in queue order.  It is written atomically (:func:`physmem.atomic.atomic_write`), so an
interrupted save leaves the previous file, or none.  Loading checks the format and version
(a newer version, a truncated or foreign file is a :class:`SnapshotError`), rebuilds the
state and runs the INVARIANTS checker before handing the kernel back.

Not saved: the extent mirror, the pglist bitmap and the DMA reserve (a kernel with one of
them attached is refused), and a running drain thread (wait for it first).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import InvariantError, PhysmemError, StateError
from .freebsd.vm_phys import MemAffinity, Seg
from .kernel import InitStats, Kernel, Tunables, VmDomain
from .pagearray import PageArray

FORMAT = "physmem-snapshot"
VERSION = 1


class SnapshotError(PhysmemError, ValueError):
    """A snapshot that cannot be written or read (corrupt, foreign, newer version)."""


def save(k: Kernel, path: str | Path) -> None:
    """Write the state of booted kernel ``k`` to ``path`` (atomically)."""
    if not k.booted:
        raise StateError("snapshot: the kernel is not booted")
    if k.mirror is not None or k.pglist is not None or k.dma is not None:
        raise SnapshotError("snapshot: a kernel with an extent mirror, a pglist bitmap or a "
                            "DMA reserve attached cannot be saved")
    if k.drain_thread is not None and k.drain_thread.is_alive():
        raise StateError("snapshot: the lazy-init thread is running (wait_lazy_init() first)")
    phys, pages = k.phys, k.phys.pages
    stats = k.stats
    meta = {
        "format": FORMAT, "version": VERSION, "arch": k.param.name,
        "seg_lines": k.seg_lines, "phys_avail": k.phys_avail, "lazy": k.lazy,
        "tunables": {"lazy_page_init": k.tunables.lazy_page_init,
                     "blacklist": k.tunables.blacklist},
        "free_counts": k.free_counts, "count_skew": k.count_skew,
        "domains": [[d.page_count, d.segs] for d in k.domains], "blacklist": k.blacklist,
        "stats": [stats.boot, stats.drain, stats.boot_seconds],
        "segs": [[s.start, s.end, s.domain, s.flind, s.fq] for s in phys.segs],
        "ndomains": phys.ndomains,
        "mem_affinity": None if phys.mem_affinity is None else
        [[a.start, a.end, a.domain] for a in phys.mem_affinity],
        "nfreelists": phys.nfreelists, "flind_of": phys.flind_of,
        "default_freepool": phys.default_freepool, "initdone": phys.initdone,
        "drain_inits": phys.drain_inits,
        "pages": {"base_pfn": pages.base_pfn, "npages": pages.npages, "spans": pages.spans,
                  "ninit": pages.ninit},
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for i, (_pfn, w) in enumerate(pages.span_words()):
        arrays[f"words{i}"] = np.ascontiguousarray(w)
    lone = sorted(pages.lone.items())
    arrays["lone_pfn"] = np.array([p for p, _ in lone], dtype=np.int64)
    arrays["lone_word"] = np.array([w for _, w in lone], dtype=np.uint16)
    qs, lens, heads = [], [], []
    for q, n in enumerate(phys.lcnt):
        if n:
            blocks = list(phys.queue_iter(q))
            qs.append(q)
            lens.append(len(blocks))
            heads.extend(blocks)
    arrays["queue"] = np.array(qs, dtype=np.int64)
    arrays["queue_len"] = np.array(lens, dtype=np.int64)
    arrays["queue_heads"] = np.array(heads, dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def load(path: str | Path) -> Kernel:
    """Read a snapshot written by :func:`save`; the kernel passes INVARIANTS."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise SnapshotError(f"{path}: not a physmem snapshot ({e})") from None
    try:
        meta = json.loads(bytes(data["meta"]).decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise SnapshotError(f"{path}: no readable meta record") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"{path}: not a physmem snapshot")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise SnapshotError(f"{path}: snapshot version {version} is newer than this "
                            f"physmem's ({VERSION})")
    try:
        return _rebuild(meta, data)
    except (KeyError, TypeError, ValueError, IndexError, InvariantError) as e:
        raise SnapshotError(f"{path}: inconsistent snapshot ({type(e).__name__}: {e})") \
            from None


def _rebuild(meta: dict, data: dict) -> Kernel:
    k = Kernel(meta["arch"])
    k.seg_lines = [tuple(s) for s in meta["seg_lines"]]
    k.phys_avail = [tuple(a) for a in meta["phys_avail"]]
    k.tunables = Tunables(**meta["tunables"])
    phys = k.phys
    phys.segs = [Seg(*s) for s in meta["segs"]]
    for s in phys.segs:
        s.spfn, s.epfn = s.start >> 12, s.end >> 12
    phys.seg_ends = [s.end for s in phys.segs]
    phys.ndomains = meta["ndomains"]
    aff = meta["mem_affinity"]
    phys.mem_affinity = None if aff is None else [MemAffinity(*a) for a in aff]
    phys.nfreelists = meta["nfreelists"]
    phys.flind_of = list(meta["flind_of"])
    seen: set[int] = set()
    phys.search_freelists = []
    for fl, flind in enumerate(phys.flind_of):
        if flind >= 0 and flind not in seen:
            seen.add(flind)
            phys.search_freelists.append(fl)
    NFL, NFP, NFO = phys.NFL, phys.NFP, phys.NFO
    phys.search_bases = [[(d * NFL + phys.flind_of[fl]) * NFP * NFO
                          for fl in phys.search_freelists]
                         for d in range(k.param.maxmemdom)]
    phys.default_freepool = meta["default_freepool"]
    phys.initdone = list(meta["initdone"])
    phys.drain_inits = meta["drain_inits"]
    pm = meta["pages"]
    pages = PageArray(pm["base_pfn"], pm["npages"], [tuple(s) for s in pm["spans"]])
    for i, (pfn, end) in enumerate(pages.spans):
        w = data[f"words{i}"]
        if w.dtype != np.uint16 or len(w) != end - pfn:
            raise ValueError(f"words{i} has the wrong size or type")
        pages.words[pfn - pages.base_pfn:end - pages.base_pfn] = w
    pages.lone = dict(zip(data["lone_pfn"].tolist(), data["lone_word"].tolist(),
                          strict=True))
    pages.ninit = pm["ninit"]
    phys.pages = pages
    heads = data["queue_heads"].tolist()
    pos = 0
    for q, n in zip(data["queue"].tolist(), data["queue_len"].tolist(), strict=True):
        for m in heads[pos:pos + n]:
            phys.freelist_add(q, m, q % NFO, True)
        pos += n
    if pos != len(heads):
        raise ValueError("queue lengths do not add up")
    phys.initialized = True
    k.domains = [VmDomain(page_count=d[0], segs=d[1]) for d in meta["domains"]]
    k.free_counts = list(meta["free_counts"])
    k.count_skew = list(meta["count_skew"])
    k._ndomains = phys.ndomains
    k.blacklist = list(meta["blacklist"])
    k.lazy = meta["lazy"]
    boot, drain, secs = meta["stats"]
    k._stats = InitStats(boot, 0, drain, secs)
    k.booted = True
    k.check()
    return k
