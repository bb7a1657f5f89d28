"""Tests that fail when a detail users rely on changes (each names what it guards)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import physmem
from physmem.freebsd.sysctl import db_show_freepages
from physmem.workloads import extfrag_index
from tests.conftest import make_kernel

PAGE = 4096


def test_extfrag_index_keeps_linuxs_plus_1000_term():
    """Two single pages and a pair: 4 free pages in 3 blocks.  An order-2 request fails;
    __fragmentation_index() = 1000 - (1000 + 4 * 1000 / 4) / 3 = 1000 - 666 = 334 (without
    the +1000 it would be 667); order 3: 1000 - (1000 + 500) / 3 = 500 (not 834)."""
    nr = [2, 1] + [0] * 9
    assert extfrag_index(nr, 2) == 334
    assert extfrag_index(nr, 3) == 500
    assert extfrag_index(nr, 1) == -1000          # a pair exists: would succeed
    assert extfrag_index([1] + [0] * 10, 1) == -500   # one page: 1000 - (1000 + 500) / 1


def _small():
    # Free at boot (eager): 5 (o0), 6 (o1), 8 and 16 (o3), 24 (o0) in [5, 25) pages.
    return make_kernel([(0x1000, 0x100000)], [(5 * PAGE, 25 * PAGE)])


def test_alloc_contig_takes_a_run_that_ends_exactly_at_high():
    k = _small()
    # The order-3 block at 16 is [16, 24): it ends exactly at high = 24 pages.
    assert k.alloc_contig(0, 8, 16 * PAGE, 24 * PAGE, PAGE, 0) == 16 * PAGE
    k.check()
    k = _small()
    assert k.alloc_contig(0, 8, 16 * PAGE, 24 * PAGE - 1, PAGE, 0) is None


def test_alloc_contig_takes_a_run_that_ends_exactly_at_the_segment_end():
    k = make_kernel([(16 * PAGE, 32 * PAGE)], [(16 * PAGE, 32 * PAGE)])
    # One order-4 block [16, 32): the segment's end; high beyond it.
    assert k.alloc_contig(0, 16, 0, 1 << 32, PAGE, 0) == 16 * PAGE
    k.check()
    k = make_kernel([(16 * PAGE, 32 * PAGE)], [(16 * PAGE, 32 * PAGE)])
    assert k.alloc_contig(0, 16, 0, 32 * PAGE, PAGE, 0) == 16 * PAGE
    assert k.alloc_contig(0, 1, 0, 32 * PAGE, PAGE, 0) is None


def test_ddb_show_freepages_prints_the_kernels_text():
    """DB_SHOW_COMMAND(freepages) in vm_phys.c: "DOMAIN: %d", "%2.2d (%6.6dK)" and
    "%6.6d" (zero padded), a blank line after each free list and each domain."""
    k = _small()
    head = ("DOMAIN: 0\nFREE LIST 0:\n\n  ORDER (SIZE)  |  NUMBER\n              "
            "  |  POOL 0  |  POOL 1  |  POOL 2\n--            -- --      -- --      "
            "-- --      --\n")
    counts = {3: 2, 1: 1, 0: 2}          # default pool (1) after an eager boot
    rows = "".join(f"  {o:02d} ({4 << o:06d}K)  |  000000  |  {counts.get(o, 0):06d}"
                   "  |  000000\n" for o in range(12, -1, -1))
    text = db_show_freepages(k.phys)
    assert text == head + rows + "\n\n"
    assert "  03 (000032K)  |  000000  |  000002  |  000000\n" in text


def _damaged(tmp_path, change):
    k = physmem.boot("firecracker-128m", lazy=False)
    k.alloc_pages(0, "default", 3)
    p = tmp_path / "s.npz"
    physmem.save_snapshot(k, p)
    with np.load(p) as z:
        arrays = {n: z[n].copy() for n in z.files}
    change(arrays)
    with zipfile.ZipFile(p, "w") as zf:
        for name, a in arrays.items():
            with zf.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return p


@pytest.mark.parametrize("what", ["one head too few", "one head moved to another queue",
                                  "one head too many"])
def test_a_snapshot_whose_queue_lengths_disagree_with_its_heads_is_refused(tmp_path, what):
    def change(a):
        lens = a["queue_len"]
        nz = np.flatnonzero(lens)
        if what == "one head too few":
            lens[nz[-1]] -= 1
        elif what == "one head too many":
            lens[nz[0]] += 1
        else:                             # same total, a head on the wrong queue
            lens[nz[0]] -= 1
            lens[nz[0] + 1] += 1
    with pytest.raises(physmem.SnapshotError, match=r"inconsistent|queue lengths"):
        physmem.load_snapshot(_damaged(tmp_path, change))
