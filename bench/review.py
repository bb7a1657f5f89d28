"""The review of issues 14 and 15: the map importer's cost after the review's cleaning
changes (no-break spaces, BOM, quoted-printable by =3D, wrapped entries in detection),
side by side with the importer before them, in one process.

    python bench/review.py [--base COMMIT]     (default: 98b104e, the integration branch)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import physmem
from physmem.mapimport import import_map

ROOT = Path(__file__).parents[1]


def _old(commit: str):
    src = subprocess.run(["git", "show", f"{commit}:src/physmem/mapimport.py"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    spec = importlib.util.spec_from_loader("physmem._base_mapimport", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "physmem"
    sys.modules[spec.name] = mod            # (its dataclasses look their module up)
    exec(compile(src, "base mapimport", "exec"), mod.__dict__)
    return mod


def _best(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        with contextlib.suppress(physmem.PhysmemError):
            fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="98b104e")
    a = ap.parse_args()
    old = _old(a.base)
    maps = sorted((ROOT / "tests" / "data" / "maps").rglob("*"))
    texts = [(f.relative_to(ROOT / "tests" / "data" / "maps"), f.read_text())
             for f in maps if f.is_file()]
    new_t = sum(_best(lambda t=t: import_map(t), 20) for _, t in texts)
    old_t = sum(_best(lambda t=t: old.import_map(t), 20) for _, t in texts)
    print(f"all {len(texts)} map fixtures, sum of best of 20: review {new_t * 1e3:.2f} ms, "
          f"base {old_t * 1e3:.2f} ms, ratio {new_t / old_t:.2f}")
    ram = "".join(f"{i * 0x2000:08x}-{i * 0x2000 + 0xfff:08x} : System RAM\n"
                  for i in range(100_000))
    wrapped = "BIOS-e820: 0000000000100000 -\n" * 200_000
    for name, text in (("100 k System RAM lines (refused)", ram),
                       ("200 k e820 lines cut after '-' (none parses)", wrapped),
                       ("8 MB of no-break spaces", "\xa0" * ((8 << 20) - 16))):
        n, o = _best(lambda t=text: import_map(t), 3), _best(lambda t=text: old.import_map(t), 3)
        print(f"{name}: review {n:.3f} s, base {o:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
