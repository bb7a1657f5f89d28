"""DragonFly BSD's alist (sys/kern/subr_alist.c): a bitmap allocator of power-of-two runs.

The kernel keeps a radix tree over a block bitmap (leaves of 32 blocks, 16-way meta nodes);
what its users see, and what this model keeps:

* ``alloc(start, count)``: a power-of-two ``count`` is placed at the lowest naturally
  aligned position at or after ``start`` where all its blocks are free (first fit); any
  other count allocates the next power of two (at least 256 when ``count`` >= 256) and
  frees the tail beyond ``count``.  ``count`` must be below the tree's radix.  Returns the
  first block or ``ALIST_BLOCK_NONE``.
* ``free(blk, count)``: any run of allocated blocks.
* ``free_info()``: the number of free blocks and "the approximate trailing largest
  contiguous free block": walking down from the root, the highest child that is wholly
  free is returned; a partly allocated one is descended into; in a leaf, the highest run of
  free blocks.

The bitmap is a numpy bool array (True = free), so a first-fit search is one vectorised
scan of the candidate positions.
"""

from __future__ import annotations

import numpy as np

ALIST_BLOCK_NONE = -1
ALIST_BMAP_RADIX = 32
ALIST_META_RADIX = 16


class Alist:
    """An alist of ``blocks`` blocks, all allocated at creation (as alist_create leaves
    them)."""

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks
        self.free_map = np.zeros(blocks, dtype=bool)
        radix = ALIST_BMAP_RADIX
        while radix < blocks:
            radix *= ALIST_META_RADIX
        self.radix = radix

    @property
    def bfree(self) -> int:
        return int(np.count_nonzero(self.free_map))

    def alloc_below(self, count: int, end: int | None) -> int:
        """vm_page_alloc_contig's use: alist_alloc(0, count), given back (and NONE) if the
        run would end past block ``end`` (None: no limit)."""
        blk = self.alloc(0, count)
        if blk != ALIST_BLOCK_NONE and end is not None and blk + count > end:
            self.free(blk, count)
            return ALIST_BLOCK_NONE
        return blk

    def alloc(self, start: int, count: int) -> int:
        """alist_alloc(): see the module docstring."""
        assert count > 0, "alist_alloc: count 0"
        if count & (count - 1):
            ncount = 1 if count < 256 else 256
            while ncount < count:
                ncount <<= 1
            blk = self.alloc(start, ncount)
            if blk != ALIST_BLOCK_NONE:
                self.free(blk + count, ncount - count)
            return blk
        if count >= self.radix:
            return ALIST_BLOCK_NONE
        first = -(-start // count) * count
        if first + count > self.blocks:
            return ALIST_BLOCK_NONE
        fm = self.free_map
        if count == 1:
            idx = np.flatnonzero(fm[first:])
            if not idx.size:
                return ALIST_BLOCK_NONE
            blk = first + int(idx[0])
        else:
            n = (self.blocks - first) // count
            view = fm[first:first + n * count].reshape(n, count)
            ok = np.flatnonzero(view.all(axis=1))
            if not ok.size:
                return ALIST_BLOCK_NONE
            blk = first + int(ok[0]) * count
        fm[blk:blk + count] = False
        return blk

    def free(self, blk: int, count: int) -> None:
        """alist_free(): the blocks must be allocated."""
        assert blk >= 0 and blk + count <= self.blocks, "alist_free: out of range"
        assert not self.free_map[blk:blk + count].any(), "alist_free: block already free"
        self.free_map[blk:blk + count] = True

    def free_info(self) -> tuple[int, int, int]:
        """alist_free_info(): (free blocks, start, count) of the trailing free chunk."""
        fm = self.free_map
        start, radix = 0, self.radix
        while radix > ALIST_BMAP_RADIX:
            radix //= ALIST_META_RADIX
            for i in range(ALIST_META_RADIX - 1, -1, -1):
                a, b = start + i * radix, min(start + (i + 1) * radix, self.blocks)
                if a >= self.blocks or not fm[a:b].any():
                    continue                          # all allocated (or beyond the end)
                if b - a == radix and fm[a:b].all():
                    return self.bfree, a, radix       # all free: the chunk
                start = a                             # partly allocated: push in
                break
            else:
                return self.bfree, 0, 0
        leaf = fm[start:min(start + radix, self.blocks)]
        idx = np.flatnonzero(leaf)
        if not idx.size:
            return self.bfree, 0, 0
        # the largest naturally aligned power-of-two run ending at the highest free block
        end = int(idx[-1]) + 1
        n = 1
        while end % (n * 2) == 0 and n * 2 <= end and leaf[end - n * 2:end].all():
            n *= 2
        return self.bfree, start + end - n, n
