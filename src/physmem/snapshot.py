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
import itertools
import json
import os
import re
import stat
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write, check_output_file, is_snapshot_file, refuse_temp
from .checks import untrusted
from .errors import ArgumentError, InvariantError, PhysmemError, SegmentError, StateError
from .freebsd.vm_phys import MemAffinity, Seg
from .kernel import InitStats, Kernel, Tunables, VmDomain, check_boot_size
from .machine import MAX_RAM_RANGES
from .pagearray import PageArray
from .vmparam import get_arch

FORMAT = "physmem-snapshot"
VERSION = 1


class SnapshotError(PhysmemError, ValueError):
    """A snapshot that cannot be written or read (corrupt, foreign, newer version)."""


def save(k: Kernel, path: str | Path) -> None:
    """Write the state of booted kernel ``k`` to ``path`` (atomically).  An existing file
    at ``path`` is replaced only if it is a snapshot (physmem replaces nothing else)."""
    if not isinstance(k, Kernel):
        raise ArgumentError(f"snapshot: expected a Kernel, got {type(k).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"snapshot: the path must be a string, got {type(path).__name__}")
    check_output_file(path, True, is_snapshot_file, "snapshot")
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
    lone = pages.lone_items()
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


MAX_META_BYTES = 1 << 20          # the JSON meta record
_NPY_HEADER = 4096                 # room for an .npy header beside an array's data
_ARRAYS = re.compile(r"(meta|words\d{1,6}|lone_pfn|lone_word|queue|queue_len|queue_heads)"
                     r"\.npy")
_MAX_LIST = 1 << 16                # any list in the meta record


def load(path: str | Path) -> Kernel:
    """Read a snapshot written by :func:`save`; the kernel passes INVARIANTS.

    Before any state is built: only the arrays a snapshot has are accepted, the meta record
    is size-limited and validated field by field against the machine it names (segments,
    domains, free lists, pools, page array), and each array's size is checked against what
    that machine allows before it is read (so a small file cannot unpack into gigabytes).
    A refusal is one :class:`SnapshotError` line: the first problem and how many more."""
    if not isinstance(path, (str, os.PathLike)):
        raise SnapshotError(f"snapshot path must be a path, not {type(path).__name__}")
    refuse_temp(path)
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except OSError as e:
        raise SnapshotError(f"{path}: {e.strerror}") from None
    if not regular:                     # /dev/zero, a FIFO: reading would never end
        raise SnapshotError(f"{path}: not a regular file")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SnapshotError(f"{path}: is a directory") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise SnapshotError(f"{path}: not a physmem snapshot ({e})") from None
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        unknown = [n for n in infos if not _ARRAYS.fullmatch(n)]
        if unknown:
            raise SnapshotError(f"{path}: unknown array {unknown[0]!r}"
                                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1
                                   else "") + "; not a physmem snapshot")
        info = infos.get("meta.npy")
        if info is None:
            raise SnapshotError(f"{path}: no readable meta record")
        if info.file_size > MAX_META_BYTES + _NPY_HEADER:
            raise SnapshotError(f"{path}: meta record of {info.file_size:,} bytes (at most "
                                f"{MAX_META_BYTES:,})")
        try:
            meta = json.loads(bytes(_read(zf, "meta.npy")).decode())
        except RecursionError:
            raise SnapshotError(f"{path}: meta record nested too deeply") from None
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError):
            raise SnapshotError(f"{path}: no readable meta record") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise SnapshotError(f"{path}: not a physmem snapshot")
        version = meta.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SnapshotError(f"{path}: snapshot version {untrusted(version, False, 40)} "
                                "is not one physmem wrote")
        if version > VERSION:
            raise SnapshotError(f"{path}: snapshot version {version} is newer than this "
                                f"physmem's ({VERSION})")
        problems, sizes = _validate(meta)
        if not problems:
            problems = _check_sizes(infos, sizes)
        _refuse(path, problems)
        try:
            data = {n[:-4]: _read(zf, n) for n in infos}
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as e:
            raise SnapshotError(f"{path}: unreadable array ({e})") from None
    _refuse(path, _check_arrays(data, sizes))
    try:
        return _rebuild(meta, data)
    except (KeyError, TypeError, ValueError, IndexError, InvariantError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
        raise SnapshotError(f"{path}: inconsistent snapshot ({type(e).__name__}: "
                            f"{lines[0]}" + (f"; and {len(lines) - 1} more" if len(lines) > 1
                                             else "") + ")") from None


def _refuse(path: str | Path, problems: list[str]) -> None:
    """One line for a refused snapshot: the first problem and how many more."""
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise SnapshotError(f"{path}: refused: {problems[0]}{more}")


def _read(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _is_int(v: object, lo: int = 0, hi: int = (1 << 64) - 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _same(a: object, b: object) -> bool:
    """Whether a meta value is exactly the expected one: ``True`` is not ``1``, and a list
    or dict where a number belongs is a mismatch, not a TypeError."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _int_list(v: object, n: int | None, lo: int = 0, hi: int = (1 << 64) - 1) -> bool:
    return (isinstance(v, list) and len(v) <= _MAX_LIST and (n is None or len(v) == n)
            and all(_is_int(x, lo, hi) for x in v))


def _validate(meta: dict) -> tuple[list[str], dict[str, int]]:
    """Problems with the meta record, checked against the machine it names (rebuilt from
    its segment lines and phys_avail, without booting); and the largest element count
    of each array that machine allows."""
    bad: list[str] = []
    for key, ok in (("arch", isinstance(meta.get("arch"), str)),
                    ("seg_lines", isinstance(meta.get("seg_lines"), list)
                     and len(meta["seg_lines"]) <= MAX_RAM_RANGES
                     and all(_int_list(x, 3) for x in meta["seg_lines"])),
                    ("phys_avail", isinstance(meta.get("phys_avail"), list)
                     and len(meta["phys_avail"]) <= MAX_RAM_RANGES
                     and all(_int_list(x, 2) for x in meta["phys_avail"])),
                    ("tunables", isinstance(meta.get("tunables"), dict)),
                    ("lazy", isinstance(meta.get("lazy"), bool)),
                    ("pages", isinstance(meta.get("pages"), dict))):
        if not ok:
            bad.append(f"{key} is missing or malformed")
    if bad:
        return bad, {}
    try:
        param = get_arch(meta["arch"])
        ref = Kernel(param)
        for s, e, d in meta["seg_lines"]:
            ref.add_segment(s, e, d)
        for s, e in meta["phys_avail"]:
            ref.add_avail(s, e)
        if not ref.seg_lines:
            raise SegmentError("no segments")
        check_boot_size(ref.seg_lines, meta["lazy"])
        ndomains = max(d for _, _, d in ref.seg_lines) + 1
        if ndomains > param.maxmemdom or any(
                not any(sd == d for _, _, sd in ref.seg_lines) for d in range(ndomains)):
            raise SegmentError("segment domains are not dense and zero-based")
        phys = ref.phys
        if ndomains > 1:        # as Kernel._startup, up to the page initialisation
            phys.register_domains(ndomains, [MemAffinity(s, e, d)
                                             for s, e, d in sorted(ref.seg_lines)])
        for s, e, _ in ref.seg_lines:
            phys.add_seg(s, e)
        phys.init()
    except PhysmemError as e:
        return [f"machine: {e}"], {}
    pages = phys.pages
    npages, nq = pages.npages, len(phys.lcnt)
    lo_pfn, hi_pfn = pages.base_pfn, pages.base_pfn + pages.npages
    want = {
        "segs": [[s.start, s.end, s.domain, s.flind, s.fq] for s in phys.segs],
        "ndomains": phys.ndomains, "nfreelists": phys.nfreelists,
        "flind_of": phys.flind_of,
        "mem_affinity": None if phys.mem_affinity is None else
        [[a.start, a.end, a.domain] for a in phys.mem_affinity],
    }
    for key, v in want.items():
        if not _same(meta.get(key), v):
            bad.append(f"{key} {untrusted(meta.get(key), False, 60)} is not the machine's "
                       f"({untrusted(v, False, 60)})")
    pools = {phys.DEFAULT} | ({phys.LAZYINIT} if phys.LAZYINIT is not None else set())
    if not any(_same(meta.get("default_freepool"), p) for p in pools):
        bad.append(f"default_freepool {untrusted(meta.get('default_freepool'), False, 40)} "
                   f"is not one of {sorted(pools)}")
    if meta["lazy"] and not param.has_lazyinit:
        bad.append(f"lazy boot on {param.name}, which has no VM_FREEPOOL_LAZYINIT")
    tun = meta["tunables"]
    if set(tun) != {"lazy_page_init", "blacklist"} or tun.get("lazy_page_init") not in (0, 1) \
            or isinstance(tun.get("lazy_page_init"), bool) \
            or not _int_list(tun.get("blacklist"), None):
        bad.append("tunables are malformed")
    nd = phys.ndomains
    checks = (
        ("initdone", isinstance(meta.get("initdone"), list)
         and len(meta["initdone"]) == param.maxmemdom
         and all(isinstance(x, bool) for x in meta["initdone"])),
        ("drain_inits", _is_int(meta.get("drain_inits"), 0, npages)),
        ("domains", isinstance(meta.get("domains"), list) and len(meta["domains"]) == nd
         and all(_int_list(x, 2) and x[0] <= npages and x[1] < 1 << len(phys.segs)
                 for x in meta["domains"])),
        ("free_counts", _int_list(meta.get("free_counts"), nd, 0, npages)),
        ("count_skew", _int_list(meta.get("count_skew"), nd, -npages, npages)),
        ("blacklist", _int_list(meta.get("blacklist"), None)
         and len(meta["blacklist"]) <= npages),
        ("stats", isinstance(meta.get("stats"), list) and len(meta["stats"]) == 3
         and _is_int(meta["stats"][0], 0, npages) and _is_int(meta["stats"][1], 0, npages)
         and isinstance(meta["stats"][2], (int, float))
         and not isinstance(meta["stats"][2], bool)),
    )
    bad += [f"{key} is malformed or out of range for the machine" for key, ok in checks
            if not ok]
    pm = meta["pages"]
    if not (_same(pm.get("base_pfn"), lo_pfn) and _same(pm.get("npages"), npages)):
        bad.append(f"page array base_pfn/npages {untrusted(pm.get('base_pfn'), False, 30)}/"
                   f"{untrusted(pm.get('npages'), False, 30)} is not the machine's "
                   f"({lo_pfn}/{npages})")
    spans = pm.get("spans")
    if not (isinstance(spans, list) and len(spans) <= _MAX_LIST
            and all(_int_list(x, 2, lo_pfn, hi_pfn) and x[0] < x[1] for x in spans)
            and all(a[1] <= b[0] for a, b in itertools.pairwise(spans))):
        bad.append("page array spans are malformed or outside the machine")
        spans = []
    if not _is_int(pm.get("ninit"), 0, 1 << 62):
        bad.append("page array ninit is malformed")
    sizes = {f"words{i}": e - s for i, (s, e) in enumerate(spans)}
    sizes.update(lone_pfn=npages, lone_word=npages, queue=nq, queue_len=nq,
                 queue_heads=npages, meta=MAX_META_BYTES)
    sizes["_nq"], sizes["_lo"], sizes["_hi"] = nq, lo_pfn, hi_pfn
    return bad, sizes


_ITEMSIZE = {"lone_word": 2, "meta": 1}


def _check_sizes(infos: dict, sizes: dict[str, int]) -> list[str]:
    """Each array's unpacked size against the most the machine allows, before reading."""
    bad = []
    names = {n[:-4] for n in infos}
    for n in sorted(names):
        if n not in sizes:
            bad.append(f"array {n!r} does not belong to this machine's snapshot")
            continue
        item = 2 if n.startswith("words") else _ITEMSIZE.get(n, 8)
        if infos[n + ".npy"].file_size > sizes[n] * item + _NPY_HEADER:
            bad.append(f"array {n!r} unpacks to {infos[n + '.npy'].file_size:,} bytes, more "
                       f"than the machine allows ({sizes[n] * item:,})")
    missing = [n for n in sizes if not n.startswith("_") and n not in names]
    bad += [f"array {n!r} is missing" for n in missing]
    return bad


def _check_arrays(data: dict[str, np.ndarray], sizes: dict[str, int]) -> list[str]:
    """Types, shapes and ranges of the arrays (now read)."""
    bad = []
    lo, hi, nq = sizes["_lo"], sizes["_hi"], sizes["_nq"]
    for n, a in data.items():
        want = np.uint16 if n.startswith("words") or n == "lone_word" else \
            np.uint8 if n == "meta" else np.int64
        if a.dtype != want or a.ndim != 1:
            bad.append(f"array {n!r} is {a.dtype} of {a.ndim} dimensions, not 1-D {want.__name__}")
        elif n.startswith("words") and len(a) != sizes[n]:
            bad.append(f"array {n!r} has {len(a)} words, not {sizes[n]}")
    if bad:
        return bad
    if len(data["lone_pfn"]) != len(data["lone_word"]):
        bad.append("lone_pfn and lone_word differ in length")
    if len(data["queue"]) != len(data["queue_len"]):
        bad.append("queue and queue_len differ in length")
    for n, a, lo_, hi_ in (("lone_pfn", data["lone_pfn"], lo, hi - 1),
                           ("queue", data["queue"], 0, nq - 1),
                           ("queue_len", data["queue_len"], 0, hi - lo),
                           ("queue_heads", data["queue_heads"], lo, hi - 1)):
        if len(a) and (a.min() < lo_ or a.max() > hi_):
            bad.append(f"array {n!r} has values outside {lo_}..{hi_}")
    if not bad and int(data["queue_len"].sum()) != len(data["queue_heads"]):
        bad.append("queue lengths do not add up to the queue heads")
    return bad


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
    phys.setup_queues()
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
    k.start_jit()
    k.check()
    return k
