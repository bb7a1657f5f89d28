#!/usr/bin/env python3
"""Generate differential-test traces on DragonFly's own vm_page.c (the dfly-oracle).

usage: gen_dfly_traces.py ORACLE OUTDIR [NAME...]

ORACLE is the dfly-oracle binary built as ../shared/dfly-oracle/README.md explains.  This
script drives it through the generator of ../shared/dfly-oracle/gen_traces.py (its trace
recipe, run with its own functions) on specs of our own: other seeds, the stock presets
and small machine files with one, two and four sockets, and every topology shape
(sockets x cores [x threads]).  Each trace is written with its .expected output and the
machine files it names; copy them to tests/data/dfly-oracle/ (traces and expected
output gzipped) to make them part of `make test`.  tools/dfly_compare.py replays them.
"""
import gzip
import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve()
GEN = HERE.parents[2] / "shared" / "dfly-oracle" / "gen_traces.py"


def load_generator():
    """The generator's functions without its command-line entry (its last line)."""
    src = GEN.read_text()
    assert src.rstrip().endswith("main()"), "gen_traces.py changed: check its entry point"
    ns = {"__name__": "dfly_gen_traces", "__file__": str(GEN)}
    exec(compile(src.rstrip()[: -len("main()")], str(GEN), "exec"), ns)
    return ns


# Machine files of our own (bare names, written next to the traces).
TOML = {
    "numa-2g-2s.toml": 'name = "numa-2g-2s"\nram = [[0x0, 0x9fc00, 0], [0x100000, 0x40000000, 0],'
                       ' [0x40000000, 0x80000000, 1]]\npage_array = "none"\n',
    "numa-1g-4s.toml": 'name = "numa-1g-4s"\nram = [[0x0, 0x9fc00, 0], [0x100000, 0x10000000, 0],'
                       ' [0x10000000, 0x20000000, 1], [0x20000000, 0x30000000, 2],'
                       ' [0x30000000, 0x40000000, 3]]\npage_array = "none"\n',
    "numa-1g-4s-uneven.toml": 'name = "numa-1g-4s-uneven"\nram = [[0x0, 0x9fc00, 0],'
                              ' [0x100000, 0x20000000, 0], [0x20000000, 0x28000000, 1],'
                              ' [0x28000000, 0x38000000, 2], [0x38000000, 0x40000000, 3]]\n'
                              'page_array = "none"\n',
    "numa-48m-2s-hole.toml": 'name = "numa-48m-2s-hole"\nram = [[0x0, 0x9fc00, 0],'
                             ' [0x100000, 0x1000000, 0], [0x1800000, 0x3000000, 1]]\n'
                             'page_array = "none"\n',
    # 43167 pages: a quarter of the bytes is not page aligned (the reserve's last page)
    "odd-200m.toml": 'name = "odd-200m"\nram = [[0x0, 0x9fc00, 0],'
                         ' [0x100000, 0xc801000, 0]]\npage_array = "none"\n',
    "tiny-20m-odd.toml": 'name = "tiny-20m-odd"\nram = [[0x0, 0x9fc00, 0],'
                         ' [0x100000, 0x13ff000, 0]]\npage_array = "none"\n',
}

# name: (machine, cpus, seed, nops, mode, dma_reserved or None for the default)
SPECS = {
    "d_fc128m_1x4_obj": ("firecracker-128m", "1x4", 5101, 2500, "objects", None),
    "d_fc128m_2x2_mixed": ("firecracker-128m", "2x2", 5102, 2500, "mixed", None),
    "d_fc128m_1x2_sbusydrop": ("firecracker-128m", "1x2", 5103, 1500,
                               "objects+sbusydrop", None),
    "d_fc1g_4x2_obj": ("firecracker-1g", "4x2", 5104, 2500, "objects", None),
    "d_fc1g_1x16_dma": ("firecracker-1g", "1x16", 5105, 2000, "dma", None),
    "d_numa2g_2x2_obj": ("numa-2g-2s.toml", "2x2", 5106, 3000, "objects", None),
    "d_numa2g_2x4x2_alloc": ("numa-2g-2s.toml", "2x4x2", 5107, 3000, "mixed", None),
    "d_numa1g4s_4x2_obj": ("numa-1g-4s.toml", "4x2", 5108, 3000, "objects", None),
    "d_numa1g4s_4x2x2_mixed": ("numa-1g-4s.toml", "4x2x2", 5109, 3000, "mixed", None),
    "d_numa1g4su_4x4_dma": ("numa-1g-4s-uneven.toml", "4x4", 5110, 2500, "dma", None),
    "d_numa1g4su_4x1_obj": ("numa-1g-4s-uneven.toml", "4x1", 5111, 2500, "objects", None),
    "d_numa48m_2x2_exhaust": ("numa-48m-2s-hole.toml", "2x2", 5112, 4000, "exhaust", None),
    "d_numa48m_2x8_objcache": ("numa-48m-2s-hole.toml", "2x8", 5113, 4000, "objcache", None),
    "d_tiny20m_1x2_dma": ("tiny-20m-odd.toml", "1x2", 5114, 2500, "dma", None),
    "d_tiny20m_1x4_exhaust_obj": ("tiny-20m-odd.toml", "1x4", 5115, 4000, "exhaust_obj", None),
    "d_tiny20m_1x1_cache": ("tiny-20m-odd.toml", "1x1", 5116, 4000, "cache", None),
    "d_odd200m_1x2_dma": ("odd-200m.toml", "1x2", 5119, 2500, "dma", None),
    "d_odd200m_2x2_dma1m": ("odd-200m.toml", "2x2", 5120, 2500, "dma", 0x400000),
    "d_fc128m_1x3_dma64k": ("firecracker-128m", "1x3", 5117, 2000, "dma", 0x10000),
    "d_fc128m_3x2_objcache": ("firecracker-128m", "3x2", 5118, 3000, "objcache", None),
}


def main() -> int:
    exe, outdir = sys.argv[1], pathlib.Path(sys.argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    g = load_generator()
    g["TOML"].update(TOML)
    for name in sys.argv[3:] or SPECS:
        g["gen"](exe, name, outdir, SPECS[name])
    return 0


def pack(outdir: pathlib.Path, dest: pathlib.Path) -> None:
    """Copy OUTDIR's traces and expected output gzipped, machine files as they are."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(outdir.iterdir()):
        if p.suffix in (".trace", ".expected"):
            with open(p, "rb") as src, gzip.GzipFile(dest / (p.name + ".gz"), "wb",
                                                      mtime=0) as dst:
                shutil.copyfileobj(src, dst)
        elif p.suffix == ".toml":
            shutil.copy(p, dest / p.name)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--pack":
        pack(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
