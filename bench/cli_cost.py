#!/usr/bin/env python3
"""Issue 13: where the time of ``physmem replay`` goes for the 100 k-op bench trace.

Each part is a fresh interpreter (CPU time of the child, user + system, best of N):

* Python itself (``-c pass``), then ``import physmem.cli`` (click, numpy, physmem);
* numba: ``import numba`` after numpy, and the first compiled call after a boot (numba
  imported and the replay's functions loaded from numba's cache, warmed first);
* the whole command, ``physmem replay`` with ``--jit off`` and ``--jit on``.

Then numba's import broken down by package (``python -X importtime -c 'import numba'``,
self time summed per top two levels of the module name), to see what share of it the
compiled queue core does not use.

    python bench/cli_cost.py [N]
"""

from __future__ import annotations

import collections
import gzip
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")
CLI = "import sys; from physmem.cli import main; sys.argv[0] = 'physmem'; main()"
FIRST = ("import physmem; k = physmem.boot('firecracker-1g', lazy=True); "
         "k.free_pages(k.alloc_pages(0, 'default', 0), 0)")


def cpu(args: list[str], env: dict, n: int) -> float:
    """Best CPU time (user + system of the child) of ``n`` runs of ``args``."""
    best = 9e9
    for _ in range(n):
        t0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        t1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime)
    return best


def numba_imports(py: str, env: dict) -> collections.Counter[str]:
    """Self time (µs, wall) of each module ``import numba`` loads after physmem.cli (so
    numpy and physmem are loaded already), summed by package: numba's and llvmlite's
    by their first two name levels, any other by its first."""
    err = subprocess.run([py, "-X", "importtime", "-c", "import physmem.cli, numba"],
                         env=env, check=True, capture_output=True, text=True).stderr
    lines = err.splitlines()
    after = next(i for i, ln in enumerate(lines) if ln.endswith("| physmem.cli"))
    groups: collections.Counter[str] = collections.Counter()
    for line in lines[after + 1:]:
        self_us, _, name = (p.strip() for p in line[12:].split("|"))
        top = name.split(".")
        groups[".".join(top[:2]) if top[0] in ("numba", "llvmlite") else
               f"{top[0]} (pulled in by numba)"] += int(self_us)
    return groups


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=SRC)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "bench.trace"
        trace.write_bytes(gzip.decompress(
            (HERE / "data" / "bench_fc1g_lazy_100k.trace.gz").read_bytes()))
        env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba")
        subprocess.run([py, "-c", FIRST], env=env, check=True)          # warm the cache
        subprocess.run([py, "-c", CLI, "replay", "--jit", "on", str(trace)], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        rows = {
            "Python start-up (`-c pass`)": cpu([py, "-c", "pass"], env, n),
            "`import physmem.cli`": cpu([py, "-c", "import physmem.cli"], env, n),
            "`import numpy`": cpu([py, "-c", "import numpy"], env, n),
            "`import numpy, numba`": cpu([py, "-c", "import numpy, numba"], env, n),
            "boot + first pair, PHYSMEM_JIT=0": cpu([py, "-c", FIRST],
                                                    dict(env, PHYSMEM_JIT="0"), n),
            "boot + first pair, compiled (cache)": cpu([py, "-c", FIRST], env, n),
            "`physmem replay --jit off`": cpu([py, "-c", CLI, "replay", "--jit", "off",
                                               str(trace)], env, n),
            "`physmem replay --jit on`": cpu([py, "-c", CLI, "replay", "--jit", "on",
                                              str(trace)], env, n),
        }
        groups = numba_imports(py, env)
    print(f"# bench/cli_cost.py {n}: CPU seconds, best of {n}, 100,008-line trace\n")
    print("| part | CPU |")
    print("|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.3f} s |")
    total = sum(groups.values())
    print(f"\n`import numba` after `import physmem.cli`, self time by package "
          f"(-X importtime, wall, one run): {total / 1e6:.3f} s\n")
    print("| package | ms | share |")
    print("|---|---|---|")
    for k, v in groups.most_common(20):
        print(f"| {k} | {v / 1e3:.0f} | {v / total:.0%} |")
    numba_own = sum(v for k, v in groups.items() if k.startswith(("numba", "llvmlite")))
    print(f"| (all numba.* and llvmlite.*) | {numba_own / 1e3:.0f} | "
          f"{numba_own / total:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
