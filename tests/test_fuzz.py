"""Parsers under generated text: the trace format, the map importers, TOML machines,
tunables.  Anything may be refused, but only with a PhysmemError -- never another
exception -- and a refused trace line changes nothing."""

from __future__ import annotations

import contextlib
import io
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from physmem.errors import PhysmemError
from physmem.kernel import Tunables
from physmem.machine import machine_from_toml
from physmem.mapimport import import_map
from physmem.trace import Replayer

OPS = ["arch", "seg", "avail", "boot", "alloc_pages", "alloc_freelist_pages", "alloc_npages",
       "alloc_contig", "free_pages", "free_contig", "unfree_page", "find_range", "lazy_init",
       "free_count", "phys_free", "phys_segs", "extent_create", "extent_alloc_region",
       "extent_alloc_subregion", "extent_free", "extent_print", "extent_destroy", "tunable",
       "sysctl", "extent_mirror", "alloc_constrained", "pglist_alloc", "contigmalloc"]
WORDS = ["0", "1", "12", "13", "0x1000", "0x2000000", "0x8000000", "0xffffffffffffffff",
         "0x10000000000000000", "-1", "default", "direct", "lazyinit", "dma32", "lowmem",
         "lazy", "eager", "amd64", "arm64", "riscv", "EX_FAST", "EX_FAST|EX_BOUNDZERO", "a",
         "vm.blacklist=0x3000000", "debug.vm.lazy_page_init=0", "vm.phys_free", "#", "0x"]
token = st.one_of(st.sampled_from(WORDS), st.text(max_size=6),
                  st.integers(0, 1 << 66).map(hex), st.integers(-5, 5000).map(str))
line = st.tuples(st.sampled_from(OPS), st.lists(token, max_size=9)).map(
    lambda t: " ".join([t[0], *t[1]]))
SETUP = ("seg 0x1000 0x9f000 0\nseg 0x100000 0x8000000 0\navail 0x1000 0x9f000\n"
         "avail 0x2000000 0x8000000\n")

# make torture raises the count through the environment (tests/torture.py).
FUZZ = settings(max_examples=int(os.environ.get("PHYSMEM_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FUZZ
@given(st.lists(st.one_of(line, st.text(max_size=40)), max_size=25), st.booleans())
def test_trace_lines_never_escape_as_other_exceptions(lines, boot_first):
    r = Replayer()
    setup = SETUP + ("boot lazy\n" if boot_first else "")
    r.replay(io.StringIO(setup), io.StringIO())
    for text in lines:
        before = r.kernel.digest() if r.kernel is not None else None
        out = r.run_line(text)          # raises only if something escapes
        if out is not None and out.startswith("error:") and before is not None:
            assert r.kernel.digest() == before, text
    if r.kernel is not None and r.kernel.booted:
        r.kernel.check()


map_line = st.one_of(
    st.builds(lambda a, b, n: f"{a:08x}-{b:08x} : {n}", st.integers(0, 1 << 40),
              st.integers(0, 1 << 40), st.sampled_from(["System RAM", "Reserved", "x"])),
    st.builds(lambda a, b, t: f"[    0.000000] BIOS-e820: [mem {a:#018x}-{b:#018x}] {t}",
              st.integers(0, 1 << 66), st.integers(0, 1 << 66),
              st.sampled_from(["usable", "reserved", "ACPI NVS", ""])),
    st.builds(lambda t, a, n: f"SMAP type={t:02x} base={a:016x} len={n:016x}",
              st.integers(0, 20), st.integers(0, 1 << 64), st.integers(0, 1 << 64)),
    st.text(max_size=60))


@FUZZ
@given(st.lists(map_line, max_size=20), st.integers(0, 60))
def test_map_importers_never_escape(lines, cut):
    text = "\n".join(lines)
    text = text[: len(text) - cut] if cut < len(text) else text   # pasted, cut off
    try:
        m = import_map(text)
    except PhysmemError:
        return
    segs = m.segments()
    assert all(s < e and not (s | e) & 0xFFF for s, e, _ in segs)


@FUZZ
@given(st.text(max_size=200))
def test_toml_machines_never_escape(text):
    with contextlib.suppress(PhysmemError):
        machine_from_toml(text)


@FUZZ
@given(st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    ["debug.vm.lazy_page_init", "vm.blacklist", "vm.dma_reserved", "vm.x"]),
    st.one_of(token, st.text(max_size=12))), max_size=4))
def test_tunables_never_escape(items):
    with contextlib.suppress(PhysmemError):
        Tunables.parse(items)
