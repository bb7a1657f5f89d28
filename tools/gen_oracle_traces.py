#!/usr/bin/env python3
"""Generate differential-test traces on FreeBSD's own vm_phys.c (the freebsd-oracle).

usage: gen_oracle_traces.py ORACLE_BUILD_DIR OUTDIR

ORACLE_BUILD_DIR holds the oracle binaries built as ../shared/freebsd-oracle/README.md
explains (freebsd-oracle, freebsd-oracle-arm64, freebsd-oracle-riscv).  This script drives
them through the generator of ../shared/freebsd-oracle/gen_traces.py: the stock amd64,
arm64 and riscv sets, plus machine x scenario combinations the stock sets leave out (the
Ampere-like two-socket arm64 server, QEMU virt on arm64 where DMA32 is the only free list,
a riscv board with a hole).  Each trace is written with its .expected output; copy them to
tests/data/oracle/generated/ to make them part of `make test`.
"""
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve()
GEN = HERE.parents[2] / "shared" / "freebsd-oracle"
sys.path.insert(0, str(GEN))

import gen_traces as g  # noqa: E402

GB = g.GB


def extra(build: pathlib.Path):
    a64 = str(build / "freebsd-oracle-arm64")
    rv = str(build / "freebsd-oracle-riscv")
    T = [
        ("arm64-ampere2-eager-numa", a64, lambda e, o, n: g.t_numa(
            e, o, n, g.ampere2(), False, 601, arch="arm64", d1=0x408800000000,
            d1b=0x408900000000, d1end=0x408A00000000)),
        ("arm64-ampere2-lazy-numa", a64, lambda e, o, n: g.t_numa(
            e, o, n, g.ampere2(), True, 609, arch="arm64", d1=0x408800000000,
            d1b=0x408900000000, d1end=0x408A00000000)),
        ("arm64-ampere2-lazy-rand_4k", a64, lambda e, o, n: g.t_random(
            e, o, n, g.ampere2(), True, 602, 4000, arch="arm64")),
        ("arm64-ampere2-eager-rand_3k", a64, lambda e, o, n: g.t_random(
            e, o, n, g.ampere2(), False, 603, 3000, arch="arm64")),
        ("arm64-virt1g-lazy-freelists", a64, lambda e, o, n: g.t_freelists(
            e, o, n, g.arm_virt(1 * GB), True, 604, arch="arm64")),
        ("arm64-virt2g-eager-rand_3k", a64, lambda e, o, n: g.t_random(
            e, o, n, g.arm_virt(2 * GB), False, 605, 3000, arch="arm64")),
        ("arm64-virt1g-lazy-ondemand", a64, lambda e, o, n: g.t_lazy_ondemand(
            e, o, n, g.arm_virt(1 * GB), True, 606, arch="arm64")),
        ("arm64-rpi8g-lazy-basic", a64, lambda e, o, n: g.t_basic(
            e, o, n, g.rpi(4 * GB), True, 607, arch="arm64")),
        ("arm64-rpi5g-eager-freelists", a64, lambda e, o, n: g.t_freelists(
            e, o, n, g.rpi(1 * GB), False, 608, arch="arm64")),
        ("riscv-unmatched-eager-rand_4k", rv, lambda e, o, n: g.t_random(
            e, o, n, g.rv_unmatched(), False, 701, 4000, maxorder=11, arch="riscv")),
        ("riscv-virt1g-eager-basic", rv, lambda e, o, n: g.t_basic(
            e, o, n, g.rv_virt(1 * GB), False, 702, arch="riscv")),
        ("riscv-virt2g-eager-freelists", rv, lambda e, o, n: g.t_freelists(
            e, o, n, g.rv_virt(2 * GB), False, 703, arch="riscv")),
    ]
    return T


def main() -> int:
    build, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(n, str(build / "freebsd-oracle"), lambda e, o, n, f=f: f(n))
            for n, f in g.build(str(build / "freebsd-oracle"), out)]
    for arch in ("arm64", "riscv"):
        exe = str(build / f"freebsd-oracle-{arch}")
        jobs += [(n, exe, lambda e, o, n, f=f: f(n)) for n, f in g.ARCH_TRACES[arch](exe, out)]
    jobs += extra(build)
    for name, exe, fn in jobs:
        try:
            gen = fn(exe, out, name)
        except (g.OracleError, TypeError) as e:
            print(f"{name}: skipped ({e})")
            continue
        if gen is None:
            print(f"{name}: skipped")
            continue
        nops, nlines = gen.finish(out / f"{name}.trace", exe)
        print(f"{name}: {nops} ops, {nlines} expected lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
