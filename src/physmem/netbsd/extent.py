"""NetBSD's extent(9) resource map (sys/kern/subr_extent.c 1.76-1.86, sys/sys/extent.h 1.25).

An extent manages the integer range ``[ex_start, ex_end]`` (64-bit ``u_long``) and records
the *allocated* regions, sorted and, unless ``EX_NOCOALESCE``, merged when they touch; free
space is implicit.  All ends are inclusive.  This is a faithful port, quirks included
(docs/extent.md lists them): best fit by default and first fit with ``EX_FAST``, candidates
bumped to a boundary line and not re-aligned, boundary lines counted from ``ex_start``
unless the *allocation* passes ``EX_BOUNDZERO``, the final gap's slack off by one, u_long
wrap-around, and region descriptors taken before anything else (so ``ENOMEM`` can come
before ``EAGAIN``).

Map: :class:`Extent` (extent_create), :meth:`Extent.alloc_region`,
:meth:`Extent.alloc_subregion` (extent_alloc_subregion1), :meth:`Extent.alloc`,
:meth:`Extent.free`, :meth:`Extent.print` (extent_print), :meth:`Extent.destroy`.

Return values are the kernel's: 0 or an errno (``EAGAIN``, ``ENOMEM``, ``EINVAL``), and for
the subregion allocator ``(0, start)``.  Where the kernel would panic (freeing a region that
is not allocated, a partial free of an ``EX_NOCOALESCE`` region) or sleep (``EX_WAITOK`` or
``EX_WAITSPACE`` with nothing available: the model has no other thread to wake it),
:class:`ExtentPanic` or :class:`ExtentWouldSleep` is raised and the extent is unchanged.
Arguments that a DIAGNOSTIC kernel panics on and a non-DIAGNOSTIC one turns into garbage
(size 0, an alignment or boundary that is not a power of two, a boundary below the size)
raise :class:`~physmem.errors.ArgumentError`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from ..errors import ArgumentError, PhysmemError

M64 = (1 << 64) - 1

# Flags passed to the functions (sys/extent.h 1.25).
EX_NOWAIT = 0x00
EX_WAITOK = 0x01
EX_FAST = 0x02
EX_CATCH = 0x04
EX_NOCOALESCE = 0x08
EX_MALLOCOK = 0x10
EX_WAITSPACE = 0x20
EX_BOUNDZERO = 0x40
EX_EARLY = 0x80
EX_NOALIGN = 1
EX_NOBOUNDARY = 0
FLAG_NAMES = {"EX_NOWAIT": EX_NOWAIT, "EX_WAITOK": EX_WAITOK, "EX_FAST": EX_FAST,
              "EX_CATCH": EX_CATCH, "EX_NOCOALESCE": EX_NOCOALESCE,
              "EX_MALLOCOK": EX_MALLOCOK, "EX_WAITSPACE": EX_WAITSPACE,
              "EX_BOUNDZERO": EX_BOUNDZERO, "EX_EARLY": EX_EARLY}

# Internal ex_flags, what extent_print shows.
EXF_FIXED = 0x01
EXF_NOCOALESCE = 0x02
EXF_EARLY = 0x04

# NetBSD errno values.
EINTR = 4
ENOMEM = 12
EINVAL = 22
EAGAIN = 35
ERRNO_NAMES = {0: "0", EINTR: "EINTR", ENOMEM: "ENOMEM", EINVAL: "EINVAL", EAGAIN: "EAGAIN"}


class ExtentPanic(PhysmemError, RuntimeError):
    """What the kernel would panic on (e.g. ``extent_free: region not found``)."""


class ExtentWouldSleep(PhysmemError, RuntimeError):
    """EX_WAITOK / EX_WAITSPACE with nothing available: the kernel would sleep, and in the
    model nothing else can free space or descriptors."""


def parse_flags(text: str) -> int:
    """``0``, a number, or flag names joined by ``|`` (``EX_FAST|EX_BOUNDZERO``)."""
    value = 0
    for part in text.split("|"):
        part = part.strip()
        if part in FLAG_NAMES:
            value |= FLAG_NAMES[part]
        else:
            try:
                value |= int(part, 0)
            except ValueError:
                raise ArgumentError(f"unknown extent flag {part!r}") from None
    return value


def _align(x: int, a: int, skew: int) -> int:
    """EXTENT_ALIGN: round ``x`` up to the next value congruent to ``skew`` mod ``a``
    (u_long arithmetic, so it wraps)."""
    return ((((x - skew) + (a - 1)) & M64 & -a) + skew) & M64


def _le_ov(x: int, y: int, z: int) -> bool:
    """LE_OV: ``x + y <= z`` and ``x + y`` did not wrap."""
    s = x + y
    return s <= M64 and s <= z


@dataclass(slots=True)
class Region:
    """struct extent_region: ``[start, end]`` inclusive; ``pool`` is ER_ALLOC (the
    descriptor came from the pool, not from the extent's fixed storage)."""

    start: int
    end: int
    pool: bool = True


class Extent:
    """extent_create(): a map of ``[start, end]``.

    ``descriptors`` is the number of region descriptors in caller storage
    (``EXTENT_FIXED_STORAGE_SIZE(descriptors)``); None means no storage: descriptors come
    from the pool, which never runs dry in the model."""

    def __init__(self, name: str, start: int, end: int, flags: int = 0,
                 descriptors: int | None = None) -> None:
        for v, what in ((start, "start"), (end, "end")):
            if not isinstance(v, int) or not 0 <= v <= M64:
                raise ArgumentError(f"extent {name}: {what} {v!r} is not a u_long")
        if end < start:
            raise ArgumentError(f"extent {name}: end {end:#x} < start {start:#x}")
        if descriptors is not None and descriptors < 0:
            raise ArgumentError(f"extent {name}: negative descriptor count")
        self.name = name
        self.start = start
        self.end = end
        self.flags = 0
        if descriptors is not None:
            self.flags |= EXF_FIXED
        if flags & EX_NOCOALESCE:
            self.flags |= EXF_NOCOALESCE
        if flags & EX_EARLY:
            self.flags |= EXF_EARLY
        self.regions: list[Region] = []
        self._starts: list[int] = []       # region starts, for bisection
        self.free_descriptors = descriptors or 0
        self.fixed = descriptors is not None
        # Coalescing, descriptors from the pool (no count to keep): _alloc_region's short
        # path for an append may skip extent_insert_and_optimize's descriptor steps.
        self.pooled = not self.fixed and not self.flags & EXF_NOCOALESCE
        # True while the region list is sorted and disjoint, as it is unless a u_long wrap
        # put a region out of place (the kernel then walks the list as it stands, and so
        # does physmem: the bisecting shortcuts below need order).
        self.ordered = True
        # pooled and ordered: _alloc_region and _free try the extent mirror's commonest
        # cases first, in a few steps (kept with ``ordered``).
        self.quick = self.pooled

    # -- descriptors ----------------------------------------------------------------------
    def _get_descriptor(self, flags: int) -> bool | None:
        """extent_alloc_region_descriptor(): True for a pool descriptor, False for one from
        fixed storage, None if there is none (the caller returns ENOMEM)."""
        if self.fixed:
            if self.free_descriptors:
                self.free_descriptors -= 1
                return False
            if flags & EX_MALLOCOK:
                return True
            if flags & EX_WAITOK:
                raise ExtentWouldSleep(f"extent {self.name}: EX_WAITOK and no free region "
                                       "descriptor: the kernel would sleep")
            return None
        return True

    def _release(self, pool: bool) -> None:
        """extent_free_region_descriptor()."""
        if self.fixed and not pool:
            self.free_descriptors += 1

    # -- the region list ------------------------------------------------------------------
    def _insert_at(self, i: int, r: Region) -> None:
        self.regions.insert(i, r)
        self._starts.insert(i, r.start)

    def _delete_at(self, i: int) -> Region:
        self._starts.pop(i)
        return self.regions.pop(i)

    def _insert_and_optimize(self, start: int, size: int, after: int, rp: bool) -> None:
        """extent_insert_and_optimize(): put ``[start, start+size-1]`` after region index
        ``after`` (-1: at the head), merging with neighbours unless EX_NOCOALESCE; ``rp`` is
        the descriptor obtained for it."""
        i = self._insert(start, (start + size - 1) & M64, after, rp)
        if self.ordered:
            regs = self.regions
            r = regs[i]
            if r.end < r.start or (i > 0 and regs[i - 1].end >= r.start) or \
                    (i + 1 < len(regs) and r.end >= regs[i + 1].start):
                self.ordered = self.quick = False

    def _insert(self, start: int, end: int, after: int, rp: bool) -> int:
        """The body of extent_insert_and_optimize for ``[start, end]`` (``end`` wrapped
        as u_long); returns the index of the region that now holds the range.  The
        kernel's cases in the order the mirror meets them: appended to the region before
        (``after``, -1: none), prepended to the one after, both, or a new region."""
        regs = self.regions
        nxt = after + 1
        if self.flags & EXF_NOCOALESCE:
            self._insert_at(nxt, Region(start, end, rp))
            return nxt
        # The range touches the next region (the kernel's start + size == next's start).
        joins = nxt < len(regs) and regs[nxt].start == (end + 1) & M64
        if after >= 0:
            a = regs[after]
            if (a.end + 1) & M64 == start:          # appended
                if joins:
                    a.end = regs[nxt].end
                    self._release(self._delete_at(nxt).pool)
                else:
                    a.end = end
                if self.fixed:
                    self._release(rp)
                return after
        if joins:                                   # prepended
            regs[nxt].start = self._starts[nxt] = start
            if self.fixed:
                self._release(rp)
            return nxt
        self._insert_at(nxt, Region(start, end, rp))
        return nxt

    # -- allocation ---------------------------------------------------------------------------
    def alloc_region(self, start: int, size: int, flags: int = 0) -> int:
        """extent_alloc_region(): claim exactly ``[start, start + size - 1]``; 0, EAGAIN
        (busy), ENOMEM (no descriptor) or EINVAL (outside the extent)."""
        _check_range("extent_alloc_region", start, size)
        return self._alloc_region(start, size, flags)

    def _alloc_region(self, start: int, size: int, flags: int) -> int:
        """extent_alloc_region() on checked arguments (the extent mirror calls this)."""
        end = start + size - 1
        if start < self.start or end > self.end:
            return EINVAL
        if self.quick:
            # The extent mirror's commonest case (a run taken at a hole's start): the last
            # region starting at or before `end` ends just before `start` and the next
            # one starts beyond end + 1 -- extent_insert_and_optimize appends the range
            # to it, no merge, no descriptor kept (bench/RESULTS.md, issue 13 part 4).
            starts = self._starts
            i = bisect_right(starts, end) - 1
            if i >= 0:
                r = self.regions[i]
                if r.end + 1 == start and (i + 1 == len(starts) or starts[i + 1] != end + 1):
                    r.end = end
                    return 0
        rp = self._get_descriptor(flags) if self.fixed else True
        if rp is None:
            return ENOMEM
        if self.ordered:
            # The last region that starts at or before `end` decides: regions are disjoint.
            i = bisect_left(self._starts, end + 1) - 1
            regs = self.regions
            if i < 0 or regs[i].end < start:
                # Between regs[i] (ends before start) and regs[i + 1] (starts after end):
                # the list stays ordered, so _insert_and_optimize's check is not needed.
                self._insert(start, end, i, rp)
                return 0
            busy = True
        else:
            # the kernel's walk, in list order
            i, busy = -1, False
            for j, r in enumerate(self.regions):
                if r.start > end:
                    break
                if r.end >= start:
                    busy = True
                    break
                i = j
        if busy:
            self._release(rp)
            if flags & EX_WAITSPACE:
                raise ExtentWouldSleep(f"extent {self.name}: [{start:#x}, {end:#x}] is busy "
                                       "and EX_WAITSPACE would sleep")
            return EAGAIN
        self._insert_and_optimize(start, size, i, rp)
        return 0

    def alloc_subregion(self, substart: int, subend: int, size: int, alignment: int = 1,
                        skew: int = 0, boundary: int = 0, flags: int = 0) -> tuple[int, int]:
        """extent_alloc_subregion1(): ``size`` units in ``[substart, subend]``, aligned to
        ``alignment`` (phase ``skew``), not crossing a multiple of ``boundary``; best fit, or
        first fit with EX_FAST.  Returns ``(0, start)`` or ``(errno, 0)``."""
        for v, what in ((substart, "substart"), (subend, "subend"), (size, "size"),
                        (alignment, "alignment"), (skew, "skew"), (boundary, "boundary")):
            _u64(v, what)
        if size == 0:
            raise ArgumentError("extent_alloc_subregion: size 0")
        if alignment == 0 or alignment & (alignment - 1):
            raise ArgumentError(f"extent_alloc_subregion: alignment {alignment:#x} is not a "
                                "power of 2")
        if boundary & (boundary - 1):
            raise ArgumentError(f"extent_alloc_subregion: boundary {boundary:#x} is not a "
                                "power of 2")
        if boundary and boundary < size:
            raise ArgumentError(f"extent_alloc_subregion: boundary {boundary:#x} is smaller "
                                f"than the size {size:#x}")
        rp = self._get_descriptor(flags)
        if rp is None:
            return ENOMEM, 0
        found = self._search(substart, subend, size, alignment, skew, boundary, flags)
        if found is None:
            self._release(rp)
            if flags & EX_WAITSPACE:
                raise ExtentWouldSleep(f"extent {self.name}: no space and EX_WAITSPACE "
                                       "would sleep")
            return EAGAIN, 0
        if found[0] < 0:
            self._release(rp)
            return EINVAL, 0
        newstart, last = found
        self._insert_and_optimize(newstart, size, last, rp)
        return 0, newstart

    def _search(self, substart: int, subend: int, size: int, alignment: int, skew: int,
                boundary: int, flags: int) -> tuple[int, int] | None:
        """The candidate search of extent_alloc_subregion1: (start, index of the region to
        insert after), (-1, 0) for EINVAL, or None for no space."""
        ex_start, ex_end = self.start, self.end
        regs = self.regions
        fast = flags & EX_FAST
        bskew = 0 if flags & EX_BOUNDZERO else ex_start
        best_ovh = 0
        best_start = best_last = 0
        exend = ex_end
        newstart = _align(substart, alignment, skew)
        if newstart < ex_start:
            return (-1, 0)
        # last: the last region with start < newstart; i: the first with start >= newstart
        if self.ordered:
            i = bisect_left(self._starts, newstart)
        else:
            i = 0
            while i < len(regs) and regs[i].start < newstart:
                i += 1
        last = i - 1
        if last >= 0 and regs[last].end >= newstart:
            newstart = _align(regs[last].end + 1, alignment, skew)
        n = len(regs)
        failed = False
        while i < n:
            r = regs[i]
            if r.start > subend:
                exend = r.start
                break
            if _le_ov(newstart, size, r.start):
                skip = False
                if boundary:
                    newend = (newstart + size - 1) & M64
                    dontcross = (_align((newstart + 1) & M64, boundary, bskew) - 1) & M64
                    if dontcross < ex_start:
                        dontcross = ex_end
                    elif newend > dontcross:
                        newstart = (dontcross + 1) & M64
                        dontcross = (dontcross + boundary) & M64
                        if not _le_ov(newstart, size, r.start):
                            skip = True
                    if not skip and ((newstart + size - 1) & M64 > ex_end or
                                     dontcross < newstart):
                        failed = True
                        break
                if not skip:
                    ovh = (r.start - newstart - size) & M64
                    if fast or ovh == 0:
                        return newstart, last
                    if best_ovh == 0 or ovh < best_ovh:
                        best_ovh, best_start, best_last = ovh, newstart, last
            newstart = _align((r.end + 1) & M64, alignment, skew)
            if newstart < r.end:
                failed = True
                break
            last = i
            i += 1
        if not failed and _le_ov(newstart, size - 1, subend):
            ok = True
            if boundary:
                newend = (newstart + size - 1) & M64
                dontcross = (_align((newstart + 1) & M64, boundary, bskew) - 1) & M64
                if dontcross < ex_start:
                    dontcross = ex_end
                elif newend > dontcross:
                    newstart = (dontcross + 1) & M64
                    dontcross = (dontcross + boundary) & M64
                    if not _le_ov(newstart, size - 1, subend):
                        ok = False
                if ok and ((newstart + size - 1) & M64 > ex_end or dontcross < newstart):
                    ok = False
            if ok:
                ovh = (exend - newstart - (size - 1)) & M64
                if fast or ovh == 0:
                    return newstart, last
                if best_ovh == 0 or ovh < best_ovh:
                    best_ovh, best_start, best_last = ovh, newstart, last
        if not fast and best_ovh != 0:
            return best_start, best_last
        return None

    def alloc(self, size: int, alignment: int = 1, boundary: int = 0,
              flags: int = 0) -> tuple[int, int]:
        """extent_alloc(): extent_alloc_subregion1 over the whole extent, skew 0."""
        return self.alloc_subregion(self.start, self.end, size, alignment, 0, boundary, flags)

    # -- freeing ----------------------------------------------------------------------------
    def free(self, start: int, size: int, flags: int = 0) -> int:
        """extent_free(): release all of one region, or (coalescing extents) its head, tail
        or middle.  0, or ENOMEM when a split would need a descriptor and none is free;
        anything else is the kernel's panic ("region not found")."""
        _check_range("extent_free", start, size)
        return self._free(start, size, flags)

    def _free(self, start: int, size: int, flags: int) -> int:
        """extent_free() on checked arguments (the extent mirror calls this)."""
        end = start + size - 1
        if self.quick:
            # The extent mirror's commonest case (a run given back at a region's end):
            # the last region starting at or before `start` ends at `end` and starts
            # before `start` -- its tail is trimmed.
            i = bisect_right(self._starts, start) - 1
            if i >= 0:
                r = self.regions[i]
                if r.end == end and r.start != start:
                    r.end = start - 1
                    return 0
        if self.pooled:
            coalesce = nrp = True
        else:
            coalesce = not self.flags & EXF_NOCOALESCE
            nrp = None
            if coalesce:
                # The kernel takes the descriptor a split would need before looking.
                nrp = self._get_descriptor(flags) if self.fixed else True
                if nrp is None:
                    return ENOMEM
        # The one region that holds the whole range.
        regs = self.regions
        if self.ordered:
            # The last region that starts at or before `start` (regions are disjoint): all
            # of it, or -- coalescing -- its head, tail or middle.
            i = bisect_left(self._starts, start + 1) - 1
            if i >= 0:
                r = regs[i]
                if r.end < end or (not coalesce and (r.start != start or r.end != end)):
                    i = -1
        else:
            i = self._find_free_region(start, end, coalesce)
            r = regs[i] if i >= 0 else None
        if i < 0:
            if nrp is not None:
                self._release(nrp)
            raise ExtentPanic(f"extent_free: start {start:#x}, end {end:#x}: region not found")
        # (descriptors are counted only with fixed storage: _release is a no-op without)
        if start == r.start:
            if end == r.end:            # all of it
                del self._starts[i]
                if self.fixed:
                    self._release(regs.pop(i).pool)
                else:
                    del regs[i]
            else:
                r.start = self._starts[i] = end + 1
        elif end == r.end:
            r.end = start - 1
        else:
            tail = Region(end + 1, r.end, nrp)  # type: ignore[arg-type]
            r.end = start - 1
            self._insert_at(i + 1, tail)
            nrp = None
        if nrp is not None and self.fixed:
            self._release(nrp)
        return 0

    def _find_free_region(self, start: int, end: int, coalesce: bool) -> int:
        """extent_free's search in list order, as the kernel walks it (the list is out of
        order, :attr:`ordered`): the index of the region the range may be freed from
        (whole, or -- coalescing -- its head, tail or middle), or -1 (the kernel panics)."""
        for i, r in enumerate(self.regions):
            if r.end < start:
                continue
            if r.start > end:
                break
            if r.start == start and r.end == end:
                return i
            if coalesce and start >= r.start and end <= r.end:
                return i
        return -1

    def destroy(self) -> None:
        """extent_destroy(): release every region."""
        for r in self.regions:
            self._release(r.pool)
        self.regions.clear()
        self._starts.clear()

    # -- output -----------------------------------------------------------------------------
    def print(self) -> str:
        """extent_print(): the header line, then one line per region."""
        out = [f"extent `{self.name}' ({self.start:#x} - {self.end:#x}), flags = "
               f"{self.flags:#x}\n"]
        out.extend(f"     {r.start:#x} - {r.end:#x}\n" for r in self.regions)
        return "".join(out)

    def allocated(self) -> list[tuple[int, int]]:
        """The regions as (start, end) pairs, inclusive."""
        return [(r.start, r.end) for r in self.regions]

    def check(self) -> None:
        """The extent's invariants: regions sorted, disjoint, inside the map (subend may
        extend one past, see docs), not touching when coalescing; descriptors counted."""
        from ..errors import InvariantError
        if not self.ordered:
            return      # a u_long wrap disordered the list, in the kernel too
        prev = None
        for r in self.regions:
            if r.end < r.start:
                raise InvariantError(f"extent {self.name}: inverted region {r}")
            if prev is not None:
                if r.start <= prev.end:
                    raise InvariantError(f"extent {self.name}: regions overlap at {r.start:#x}")
                if not self.flags & EXF_NOCOALESCE and prev.end + 1 == r.start:
                    raise InvariantError(f"extent {self.name}: regions touch at {r.start:#x}")
            prev = r
        if self._starts != [r.start for r in self.regions]:
            raise InvariantError(f"extent {self.name}: stale start index")


def _check_range(fn: str, start: int, size: int) -> None:
    """The arguments of a [start, start + size - 1] range: u_longs, size > 0, no wrap."""
    _u64(start, "start")
    _u64(size, "size")
    if size == 0:
        raise ArgumentError(f"{fn}: size 0")
    if start + size - 1 > M64:
        raise ArgumentError(f"{fn}: {start:#x} + {size:#x} overflows")


def _u64(v: int, what: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= M64:
        raise ArgumentError(f"{what} {v!r} is not a u_long")
