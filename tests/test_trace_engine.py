"""The replay engine's fast path (issue 13): the lines Replayer.replay runs itself print
what the general path (run_line) and the Python API give."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

import physmem
from physmem import trace
from physmem.trace import Replayer, parse_u64

# Low memory (the 16 MiB chunk at 0, whose addresses have several widths), memory above
# 4 GiB, and enough pages that alloc_npages takes runs from several chunks.
SETUP = """\
seg 0x1000 0x9f000 0
seg 0x100000 0x4000000 0
seg 0x100000000 0x104000000 0
avail 0x1000 0x9f000
avail 0x100000 0x4000000
avail 0x100000000 0x104000000
boot eager
"""


def replayed(text: str, r: Replayer | None = None) -> str:
    out = io.StringIO()
    (r or Replayer()).replay(text.splitlines(), out)
    return out.getvalue()


@pytest.mark.parametrize("chunks", [trace.HEX_CHUNKS, 1])
def test_alloc_npages_prints_the_pages_the_python_api_returns(monkeypatch, chunks):
    monkeypatch.setattr(trace, "HEX_CHUNKS", chunks)   # 1: the cache emptied on every chunk
    sizes = [1, 7, 4096, 3000, 158, 4096, 4096, 4000, 4096, 4096, 4096, 33]
    r = Replayer()
    got = replayed(SETUP + "".join(f"alloc_npages 0 direct {n}\n" for n in sizes), r)
    api = Replayer()
    api.replay(SETUP.splitlines(), io.StringIO())
    want = []
    for n in sizes:
        pas = api.k.alloc_npages(0, "direct", n)
        want.append(" ".join([str(len(pas)), *map(hex, pas)]) + "\n")
    assert got.splitlines(True)[7:] == want
    printed = " ".join(want)
    assert " 0x100000000 " in printed and " 0x2000000 " in printed
    r.k.check()


@pytest.mark.parametrize("key", [0, 1, 0xf, 0x10, 0x100, (1 << 40) - 1])
def test_the_printed_addresses_of_a_chunk_are_those_of_its_pages(key):
    text, w = Replayer()._hex_chunk(key)
    pages = 1 << (trace.HEX_SHIFT - 12)
    # one width for every word of the chunk, or (chunk 0) where each word starts
    offs = range(0, (pages + 1) * w, w) if isinstance(w, int) else w
    assert isinstance(w, int) == (key != 0)
    assert len(offs) == pages + 1 and offs[pages] == len(text)
    assert [text[offs[j]:offs[j + 1]] for j in range(pages)] == [
        f" {(key << trace.HEX_SHIFT) + (j << 12):#x}" for j in range(pages)]


MIXED = SETUP + """\
alloc_pages 0 default 0
alloc_pages 0 default 3 -> a
# a comment line

free_pages $a 3   # and a comment after one
free_count 0
phys_free
alloc_contig 0 5 0x0 0x1000000000000 0x4000 0x0
free_pages 0x1000 0
free_pages 0xzz 0
alloc_npages 0 bogus 3
free_contig 0x5000 1 2
nonsense 1
alloc_freelist_pages 0 dma32 default 1
find_range 0 16 0x0 0x1000000000000
unfree_page 0x3000
sysctl vm.phys_segs
free_count 0
"""


@pytest.mark.parametrize("block", [1, 2, 3, 7, trace.BLOCK_LINES])
def test_the_fast_path_prints_what_run_line_prints_line_by_line(monkeypatch, block):
    # Blocks of 1-7 lines: boot, comments, handles and errors at every place in a block.
    monkeypatch.setattr(trace, "BLOCK_LINES", block)
    general = Replayer()
    want = "".join(general.run_line(line, i) or ""
                   for i, line in enumerate(MIXED.splitlines(), 1))
    fast = Replayer()
    assert replayed(MIXED, fast) == want
    assert (fast.errors, fast.nops) == (general.errors, general.nops) and fast.errors == 5
    assert replayed(MIXED, Replayer(check=True)) == want


def test_operations_run_on_the_fast_path_count_for_arch_first():
    out = replayed("free_count 0\narch arm64\n")
    assert out == ("error: line 1: not booted\n"
                   "error: line 2: arch must be the first operation\n")


@pytest.mark.parametrize("word, value", [
    ("0x0", 0), ("0xffffffffffffffff", (1 << 64) - 1), ("0XAbC", 0xABC),
    ("0x0000000000000000001", 1), ("18446744073709551615", (1 << 64) - 1)])
def test_parse_u64_reads_hexadecimal_and_decimal(word, value):
    assert parse_u64(word) == value


@pytest.mark.parametrize("word", ["0x", "0x_1", "0x1_0", "0xg", "0x+1", "0x\u0661",
                                  "0x10000000000000000", "18446744073709551616", "-1"])
def test_parse_u64_refuses_what_the_format_does_not_allow(word):
    with pytest.raises(trace.TraceFormatError):
        parse_u64(word)


def test_results_are_written_block_by_block_as_the_input_is_read(monkeypatch):
    """A long replay's output appears as it runs: the results of each block of lines are
    written before the next block is read."""
    monkeypatch.setattr(trace, "BLOCK_LINES", 4)
    out = io.StringIO()
    seen = []

    def lines():
        yield from SETUP.splitlines()
        for _ in range(12):
            seen.append(out.getvalue().count("\n"))
            yield "free_count 0"
    Replayer().replay(lines(), out)
    assert out.getvalue().count("\n") == 7 + 12
    # each time a block of 4 lines starts, the blocks before it have been written
    assert seen == [4, 8, 8, 8, 8, 12, 12, 12, 12, 16, 16, 16]


def test_a_kernel_booted_before_the_replay_takes_the_fast_path():
    """As ``physmem replay --load`` does: the Replayer is given a booted kernel."""
    api = Replayer()
    api.replay(SETUP.splitlines(), io.StringIO())
    r = Replayer()
    r.kernel, r.nops = api.k, 1
    free = api.k.free_count(0)
    pa = replayed("alloc_pages 0 default 0\n", r).strip()
    assert r._fast_for is api.k
    assert replayed(f"free_count 0\nfree_pages {pa} 0\nfree_count 0\n", r) == \
        f"{free - 1}\nok\n{free}\n"
    assert api.k.free_count(0) == free


# A process that runs the command line, then names every module it imported (on stderr).
_MODULES = r"""
import atexit, sys
atexit.register(lambda: print(" ".join(sorted(sys.modules)), file=sys.stderr))
from physmem.cli import main
sys.argv[0] = "physmem"
main()
"""


def test_physmem_replay_imports_only_what_the_trace_needs(tmp_path):
    """Start-up (issue 13): a FreeBSD trace replayed without the JIT imports neither
    DragonFly's page layer, snapshots, workloads, tables nor numba; the API's lazy names
    still work."""
    p = tmp_path / "t.trace"
    p.write_text(SETUP + "alloc_pages 0 default 0\n")
    env = {k: v for k, v in os.environ.items() if k != "PHYSMEM_JIT_TIER"}
    r = subprocess.run([sys.executable, "-c", _MODULES, "replay", "--jit", "off", str(p)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("0x")
    mods = set(r.stderr.split())
    assert {"physmem.kernel", "physmem.trace", "click"} <= mods
    assert not [m for m in mods if m.startswith((
        "physmem.dragonfly.vm_page", "physmem.snapshot", "physmem.workloads", "physmem.reports",
        "rich", "matplotlib", "numba", "tomllib"))]
    r = subprocess.run([sys.executable, "-c",
                        "import sys, physmem; a = 'physmem.snapshot' in sys.modules; "
                        "from physmem import snapshot; "
                        "print(a, physmem.load_snapshot is snapshot.load, "
                        "physmem.Replayer is physmem.trace.Replayer)"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.stdout.split() == ["False", "True", "True"]
    assert not hasattr(physmem, "no_such_name")
