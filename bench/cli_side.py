#!/usr/bin/env python3
"""Issue 13 (start-up): `physmem replay` from the command line, this tree against another,
and where one process's CPU time goes.

    python bench/cli_side.py OTHER_TREE ROUNDS TRACE...     # e.g. /tmp/base 3 a.trace

Side by side: CPU time (user + system of the child) of ``import physmem.cli``, of
``import physmem.cli, numba`` and of ``physmem replay --jit auto|on|off TRACE`` for each
tree, the trees alternated, best of ROUNDS, numba's cache warmed first.  Then, for this
tree and each trace, the phases of one ``--jit on`` process: interpreter, imports,
numba's import, reading, the first replay (boot, cache load) and a warm replay; and for both
trees, what a ``replay --jit auto`` process spends after ``main()`` returns (the
interpreter's exit: its last garbage collections, the modules' teardown).  Bytecode
is written under a temporary PYTHONPYCACHEPREFIX (this environment sets
PYTHONDONTWRITEBYTECODE=1, under which every import compiles physmem's sources).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = "import sys; from physmem.cli import main; sys.argv[0] = 'physmem'; main()"
PHASES = r'''
import sys, time
pt = time.process_time
c0 = pt()
import physmem.cli
c1 = pt()
import numba
c2 = pt()
from physmem.kernel import Kernel
from physmem.trace import Replayer
lines = open(sys.argv[1]).read().splitlines(True)
c3 = pt()
class Null:
    def write(self, s):
        return len(s)
def rep():
    Replayer(kernel_factory=lambda arch: Kernel(arch, jit=True)).replay(lines, Null())
rep()
c4 = pt()
warm = 9e9
for _ in range(2):
    a = pt()
    rep()
    warm = min(warm, pt() - a)
n = sum(1 for ln in lines if ln.split("#")[0].split())
print(f"| {sys.argv[1].rsplit('/', 1)[-1]} | {c0:.3f} | {c1 - c0:.3f} | {c2 - c1:.3f} | "
      f"{c3 - c2:.3f} | {c4 - c3 - warm:.3f} | {warm:.3f} s = {n / warm / 1e3:.0f} k ops/s |")
'''


# The CLI, then the process's CPU time when main() has returned (on stderr).
AT_EXIT = ("import sys, time; from physmem.cli import main; sys.argv[0] = 'physmem'\n"
           "try:\n    main()\nexcept SystemExit:\n    pass\n"
           "print(time.process_time(), file=sys.stderr)")


def exit_cost(args: list[str], env: dict) -> float:
    """CPU s of a process after its main() returned: the whole process's less that."""
    t0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    t1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime
            - float(r.stderr.split()[-1]))


def cpu(args: list[str], env: dict) -> float:
    t0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    t1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime


def main() -> int:
    other, rounds, traces = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    trees = {"other": other, "this": str(HERE.parent)}
    py = sys.executable
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        envs = {}
        for name, tree in trees.items():
            env = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONDONTWRITEBYTECODE", "PHYSMEM_JIT_TIER", "PHYSMEM_JIT",
                                "NUMBA_DISABLE_JIT")}
            env.update(PYTHONPATH=str(Path(tree) / "src"),
                       PYTHONPYCACHEPREFIX=str(Path(tmp) / f"pyc-{name}"),
                       NUMBA_CACHE_DIR=str(Path(tmp) / f"numba-{name}"))
            envs[name] = env
            for t in traces:            # bytecode and numba's cache warmed
                subprocess.run([py, "-c", CLI, "replay", "--jit", "on", t], env=env,
                               check=True, stdout=subprocess.DEVNULL)
        for _ in range(rounds):
            for name in trees:
                rows = [("`import physmem.cli`", [py, "-c", "import physmem.cli"]),
                        ("`import physmem.cli, numba`",
                         [py, "-c", "import physmem.cli, numba"])]
                rows += [(f"`replay --jit {m}` {Path(t).name}",
                          [py, "-c", CLI, "replay", "--jit", m, t])
                         for t in traces for m in ("auto", "on", "off")]
                for key, args in rows:
                    d = best.setdefault(key, {})
                    d[name] = min(d.get(name, 9e9), cpu(args, envs[name]))
                for t in traces:
                    d = best.setdefault(f"exit of `replay --jit auto` {Path(t).name}", {})
                    d[name] = min(d.get(name, 9e9),
                                  exit_cost([py, "-c", AT_EXIT, "replay", t], envs[name]))
        print(f"# bench/cli_side.py: CPU s, best of {rounds}; other = {other}\n")
        print("| command | other | this tree |")
        print("|---|---|---|")
        for key, d in best.items():
            print(f"| {key} | {d['other']:.3f} s | {d['this']:.3f} s |")
        print("\n| trace (`--jit on`, this tree) | interpreter | import physmem.cli | "
              "import numba | read | boot + cache load | warm replay |")
        print("|---|---|---|---|---|---|---|")
        for t in traces:
            subprocess.run([py, "-c", PHASES, t], env=envs["this"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
