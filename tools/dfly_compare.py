#!/usr/bin/env python3
"""Compare physmem's replay of dfly-oracle traces with the oracle's answers.

usage: dfly_compare.py PHYSMEM_BIN DIR [NAME...]

Replays every DIR/NAME.trace (or NAME.trace.gz) with DIR as the working directory (traces
name their machine files by bare name) and compares the output with NAME.expected[.gz]
line by line.  Prints, per trace, the identical lines and the first difference with the
operation that produced it; then the totals.  Exit status 1 when any line differs.
"""
import gzip
import pathlib
import subprocess
import sys
import tempfile


def read(p: pathlib.Path) -> str:
    return gzip.open(p, "rt").read() if p.suffix == ".gz" else p.read_text()


def main() -> int:
    exe = str(pathlib.Path(sys.argv[1]).absolute())
    d = pathlib.Path(sys.argv[2]).resolve()
    traces = sorted(d.glob("*.trace")) + sorted(d.glob("*.trace.gz"))
    if sys.argv[3:]:
        traces = [t for t in traces if t.name.split(".trace")[0] in sys.argv[3:]]
    same_total = lines_total = bad = 0
    for t in traces:
        name = t.name.split(".trace")[0]
        exp_path = next(d.glob(f"{name}.expected*"))
        text = read(t)
        with tempfile.NamedTemporaryFile("w", suffix=".trace", dir=d, delete=False) as f:
            f.write(text)
        try:
            got = subprocess.run([exe, "replay", f.name], cwd=d, capture_output=True,
                                 text=True).stdout.splitlines()
        finally:
            pathlib.Path(f.name).unlink()
        exp = read(exp_path).splitlines()
        same = sum(1 for a, b in zip(got, exp, strict=False) if a == b)
        same_total += same
        lines_total += len(exp)
        if got == exp:
            print(f"{name}: identical ({len(exp)} lines)")
            continue
        bad += 1
        i = next((i for i, (a, b) in enumerate(zip(got, exp, strict=False)) if a != b),
                 min(len(got), len(exp)))
        ops = [x for x in text.splitlines() if x.strip() and not x.startswith("#")]
        op = ops[i] if i < len(ops) else "?"
        print(f"{name}: {same}/{len(exp)} lines identical; first difference at result {i + 1}"
              f" ({op}): kernel {exp[i] if i < len(exp) else '<none>'!r},"
              f" physmem {got[i] if i < len(got) else '<none>'!r}")
    pct = 100.0 * same_total / max(1, lines_total)
    print(f"total: {len(traces) - bad} of {len(traces)} traces identical, "
          f"{same_total}/{lines_total} lines ({pct:.1f} %)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
