"""A second, independent set of hostile and careless inputs (the review of issues 14 and 15).

Each attack runs in a fresh temporary working directory holding a user's files (a
directory of documents, a notes file, a real run directory, a real trace and snapshot).
The CLI is invoked in-process; an attack must finish within :data:`LIMIT` seconds, exit
non-zero with exactly one line naming an error (or, for ``ok=True`` attacks, succeed), show
no traceback and no raw terminal escape, leave every file it found exactly as it was, and
leave no temporary file behind.  API attacks must raise a PhysmemError subclass and leave
the kernel's digest unchanged.  Used by tests/test_attacks.py and `make torture`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from click.testing import CliRunner

import physmem
from physmem import errors as E
from physmem.cli import main

LIMIT = 20                       # seconds; generous for a shared 2-core machine
HUGE = "9" * 5000


@dataclass(frozen=True)
class Attack:
    name: str
    argv: list[str] | None = None          # CLI attack
    stdin: bytes | None = None
    setup: Callable[[str], None] | None = None
    api: Callable[[], object] | None = None  # API attack (on a fresh kernel: see _K)
    ok: bool = False                        # a careless input that must simply work
    # "error": one error line; "replay": replay's own report (each bad line an
    # "error: line N: ..." line, exit 1); "fail": a kernel failure (NULL), one line, exit 1;
    # "last": the output could not be written after the work: the last line says so
    expect: str = "error"
    replaces: tuple[str, ...] = ()          # files the attack may replace (``--force``)


def _w(path: str, data: bytes | str) -> None:
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


_CACHE: dict[str, bytes] = {}


def _fixture(name: str) -> bytes:
    """A real trace (``trace``) or snapshot (``snap``) of firecracker-128m, made once."""
    if name not in _CACHE:
        with tempfile.TemporaryDirectory() as d:
            res = CliRunner().invoke(main, ["run", "churn", "-m", "firecracker-128m",
                                            "--ops", "200", "-o", os.path.join(d, "r"),
                                            "--record", os.path.join(d, "t.trace")])
            assert res.exit_code == 0, res.output
            res = CliRunner().invoke(main, ["replay", os.path.join(d, "t.trace"), "--save",
                                            os.path.join(d, "s.npz")])
            assert res.exit_code == 0, res.output
            for n, p in (("trace", "t.trace"), ("snap", "s.npz")):
                with open(os.path.join(d, p), "rb") as f:
                    _CACHE[n] = f.read()
    return _CACHE[name]


def user_files(d: str) -> None:
    """What a user has in the directory physmem runs in."""
    os.mkdir(os.path.join(d, "mydocs"))
    _w(os.path.join(d, "mydocs", "thesis.txt"), "four years")
    _w(os.path.join(d, "notes.txt"), "notes")
    _w(os.path.join(d, "empty"), "")
    _w(os.path.join(d, "t.trace"), _fixture("trace"))
    _w(os.path.join(d, "s.npz"), _fixture("snap"))
    _w(os.path.join(d, "half.npz"), _fixture("snap")[: len(_fixture("snap")) // 2])
    _w(os.path.join(d, "bin"), bytes(range(256)) * 64)


def _files(d: str) -> dict[str, str]:
    out = {}
    for root, dirs, names in os.walk(d):
        for n in names + dirs:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                out[rel] = "link to " + os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = "dir"
            else:
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha1(f.read()).hexdigest()
    return out


class _Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise _Timeout()


def run_attack(a: Attack) -> list[str]:
    """Run one attack; the list of broken promises (empty: it was handled cleanly)."""
    problems: list[str] = []
    old = os.getcwd()
    prev = signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            user_files(d)
            if a.setup is not None:
                a.setup(d)
            before = _files(d)
            signal.alarm(LIMIT)
            try:
                if a.api is not None:
                    problems += _api(a)
                else:
                    problems += _cli(a)
            except _Timeout:
                problems.append(f"still running after {LIMIT} s")
            finally:
                signal.alarm(0)
            after = _files(d)
            for p, h in before.items():
                if after.get(p) != h and not (p in a.replaces and p in after):
                    problems.append(f"{p} changed or removed")
            for p in after:
                if p not in before and (a.ok is False or "tmp" in p):
                    problems.append(f"left {p} behind")
        finally:
            os.chdir(old)
            signal.signal(signal.SIGALRM, prev)
    return problems


def _cli(a: Attack) -> list[str]:
    res = CliRunner().invoke(main, a.argv, input=a.stdin)
    out = res.output
    problems = []
    if "Traceback" in out or (res.exception is not None
                              and not isinstance(res.exception, SystemExit)):
        problems.append(f"traceback: {res.exception!r}")
    if "\x1b" in out:
        problems.append("raw escape sequence on the terminal")
    if a.ok:
        if res.exit_code != 0:
            problems.append(f"refused: {out.strip()[:200]}")
        return problems
    lines = out.strip().splitlines()
    if res.exit_code == 0:
        problems.append(f"accepted: {out.strip()[:200]!r}")
    elif a.expect == "replay":
        errs = [ln for ln in lines if ln.startswith("error")]
        if not errs or any(not ln.startswith("error: line ") for ln in errs):
            problems.append(f"replay errors without their line: {errs[:3]}")
    elif a.expect == "last":      # the work's output, then the one line saying why not saved
        if not lines[-1].startswith("physmem: error: /proc/x.npz: ") or "tmp" in lines[-1]:
            problems.append(f"last line: {lines[-1][:200]!r}")
    elif a.expect == "fail":
        if len(lines) != 1:
            problems.append(f"not one line: {out.strip()[:300]!r}")
    elif len(lines) != 1 or "error" not in lines[0].lower():
        problems.append(f"not one error line: {out.strip()[:300]!r}")
    return problems


def _api(a: Attack) -> list[str]:
    try:
        a.api()
    except E.PhysmemError as e:
        if "\n" in str(e):
            return [f"a message of several lines: {e}"]
        return []
    except Exception as e:          # the point is to catch every kind
        return [f"{type(e).__name__} instead of a PhysmemError: {e}"]
    return ["accepted"]


def _k() -> physmem.Kernel:
    return physmem.boot("firecracker-128m", lazy=True)


def _kapi(name: str, fn: Callable[[physmem.Kernel], object]) -> Attack:
    """An API attack on a booted kernel that must also leave its digest unchanged."""
    def run():
        k = _k()
        before = k.digest()
        try:
            fn(k)
        finally:
            if k.digest() != before:
                raise AssertionError("state changed")
    return Attack(f"api: {name}", api=run)


def _cli_a(argv: list[str], name: str | None = None, **kw) -> Attack:
    label = " ".join(x if len(x) < 40 else x[:30] + "..." for x in argv)
    return Attack(f"cli: {name or label}", argv=argv, **kw)


_M = ["-m", "firecracker-128m"]
_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
_RUN = ["run", "churn", *_M, "--ops", "50"]


def _mk(path: str, data: bytes | str) -> Callable[[str], None]:
    def setup(d: str) -> None:
        full = os.path.join(d, path)
        os.makedirs(os.path.dirname(full) or d, exist_ok=True)
        _w(full, data)
    return setup


def _trace(body: str) -> Callable[[str], None]:
    return _mk("x.trace", body)


_SEGS = "seg 0x1000 0x9f000 0\nseg 0x100000 0x8000000 0\n"

# -- the CLI, command by command ------------------------------------------------------------
CLI = [_cli_a(argv) for argv in (
    # replay
    ["replay", "mydocs"], ["replay", "empty", "--load", "notes.txt"],
    ["replay", "empty", "--load", "half.npz"], ["replay", "empty", "--load", "mydocs"],
    ["replay", "empty", "--load", "empty"], ["replay", "empty", "--load", "bin"],
    ["replay", "t.trace", "--save", "nodir/x.npz"], ["replay", "t.trace", "--save", "/"],
    ["replay", "t.trace", "--save", ""], ["replay", "t.trace", "--save", "."],
    ["replay", "t.trace", "--save", "mydocs"], ["replay", "t.trace", "--save", "s.npz"],
    ["replay", "t.trace", "--save", "t.trace", "--force"], ["replay", "bin"],
    ["replay", "s.npz"], ["replay", "half.npz"], ["replay", "x.trace"],
    # machine
    ["machine", "show", "empty"], ["machine", "show", "mydocs"], ["machine", "show", "bin"],
    ["machine", "show", "notes.txt"], ["machine", "show", "s.npz"],
    ["machine", "show", "firecracker-128m", "--arch", "arm64"],
    ["machine", "show", "foo\nbar"], ["machine", "show", "a\x1b[31mred"],
    ["machine", "show", "x.toml"], ["machine", "show", ""],
    # sysctl / boot
    ["sysctl", "vm.phys_free", "-t", "noequals"], ["sysctl", "vm.phys_free", "-t", "=1"],
    ["sysctl", "vm.phys_free", "-t", "debug.vm.lazy_page_init="],
    ["sysctl", "vm.phys_free", "-t", "debug.vm.lazy_page_init=2"],
    ["sysctl", "vm.phys_free", "-t", "vm.blacklist=-0x1000"],
    ["sysctl", "vm.phys_free", "-t", "vm.blacklist=0x1000;0x2000"],
    ["sysctl", "vm.phys_free", "-t", "vm.nonexistent=1"],
    ["sysctl", ""], ["sysctl", "vm.phys_free\n"], ["sysctl", "vm.phys_free", "-m", "empty"],
    ["boot", "--ns-per-page", "-1"], ["boot", "--ns-per-page", "1e400"],
    ["boot", "-t", "vm.dma_reserved=-1"], ["boot", "-t", "vm.dma_reserved=1e3"],
    ["boot", *_M, "--arch", "riscv"], ["boot", "-m", "bin"], ["boot", "-m", "mydocs"],
    # contig
    ["contig", "--npages", "1e3"], ["contig", "--npages", "4", "--low", "-1"],
    ["contig", "--npages", "4", "--align", "0"], ["contig", "--npages", "4", "--boundary",
                                                   "3"],
    ["contig", "--npages", "4", "--align", "0x"],
    ["contig", "--npages", "4", "--fragment", "-0.5"],
    ["contig", "--npages", "4", "--high", "0x" + "f" * 5000],
    ["contig", "--npages", HUGE], ["contig", "--npages", "4", "--via", "nope"],
    ["contig", "--npages", "4", "--seed", HUGE],
    # run
    ["run", "nosuch"], ["run", "churn", "--ops", "0"],
    ["run", "churn", "--interval", "-1"], ["run", "churn", "--ops", HUGE],
    ["run", "churn", "--seed", HUGE], [*_RUN, "--record", "/"], [*_RUN, "--record", ""],
    [*_RUN, "--record", "mydocs"], [*_RUN, "--record", "nodir/x.trace"],
    ["run", "churn", "-m", "/dev/null"],
    ["run", "churn", "-m", ""], [*_RUN, "-o", "mydocs/thesis.txt"],
    [*_RUN, "-o", "t.trace", "--force"], [*_RUN, "-o", "s.npz", "--force"],
    [*_RUN, "-o", "r", "--record", "r"], [*_RUN, "-o", "./"],
    [*_RUN, "-o", "mydocs/"],
    # compare
    ["compare", "churn", *_M, "--ops", "50", "--policies", ""],
    ["compare", "churn", *_M, "--ops", "50", "--policies", "lazy,nonsense"],
    ["compare", "churn", *_M, "--ops", "50", "--policies", ","],
    ["compare", "churn", *_M, "--ops", "50", "-o", "notes.txt"],
    ["compare", "churn", *_M, "--ops", "50", "-o", "."],
    ["compare", "nosuch", *_M, "--ops", "50"],
    # report
    ["report", "nosuch"], ["report", "."], ["report", "mydocs"], ["report", "notes.txt"],
    ["report", "t.trace"], ["report", ""],
    # map-image
    ["map-image", "nosuch", "-o", "x.png"], ["map-image", "notes.txt", "-o", "x.png"],
    ["map-image", "bin", "-o", "x.png"], ["map-image", "half.npz", "-o", "x.png"],
    ["map-image", "t.trace", "-o", "x.png", "--at", "-1"],
    ["map-image", "t.trace", "-o", "x.png", "--at", HUGE],
    ["map-image", "t.trace", "-o", ""], ["map-image", "t.trace", "-o", "mydocs"],
    ["map-image", "t.trace", "-o", "notes.txt"], ["map-image", "t.trace", "-o", "/"],
    ["map-image", "t.trace", "-o", "nodir/x.png"], ["map-image", "s.npz", "-o", "t.trace"],
    ["map-image", "mydocs", "-o", "x.png"], ["map-image", "empty", "-o", "x.png"],
    # ftrace
    ["ftrace", "bin", "-o", "x.trace"],
    ["ftrace", "mydocs", "-o", "x.trace"], ["ftrace", "notes.txt", "-o", "s.npz",
                                            "--force"],
    ["ftrace", "notes.txt", "-o", "t.trace"], ["ftrace", "notes.txt", "-o", ""],
    ["ftrace", "notes.txt", "-o", "nodir/x.trace"],
    ["ftrace", "notes.txt", *_M, "--arch", "arm64", "-o", "x.trace"],
    # sweep
    ["sweep", "empty"], ["sweep", "bin"], ["sweep", "mydocs"], ["sweep", "notes.txt"],
    ["sweep", "x.toml"], ["sweep", "nosuch.toml"],
    # dfly / ddb
    ["dfly", "run", "nosuch"], ["dfly", "run", "anon", "--threads", "0"],
    ["dfly", "run", "anon", "--threads", "100000"], ["dfly", "run", "anon", "--cpus", "0x0"],
    ["dfly", "run", "anon", "--cpus", "abc"], ["dfly", "run", "pagecache", "--bytes", "-1"],
    ["dfly", "run", "anon", "--source", "nope"], ["dfly", "run", "anon", "--ops", HUGE],
    ["dfly", "run", "anon", "--cpus", "1x" + HUGE], ["ddb", "show", "nosuch"],
    ["ddb", "show", "page", "--trace", "nosuch"], ["ddb", "show", "page", "--trace", "mydocs"],
    # help / snapshot / misc
    ["help", "nosuch"], ["help", "../../../etc/passwd"], ["help", ""],
    ["help", "machines\x1b[2J"], ["snapshot", "show", "mydocs"],
    ["snapshot", "show", "notes.txt"], ["snapshot", "show", "empty"],
    ["snapshot", "show", "half.npz"], ["snapshot", "show", "bin"], ["nosuchcommand"],
    ["run", "--ops"], ["demo", "--seed", HUGE], ["demo", "-m", "x\ny"],
)]

# Careless but valid, or the kernel's own answer: these must work (or fail as the
# kernel does).
OK = [
    _cli_a(["sysctl", "vm.phys_free", "-t", "vm.blacklist=0x1001"], ok=True,
           name="vm.blacklist of an unaligned address (the kernel takes its page)"),
    _cli_a([*_RUN, "-t", "vm.blacklist=" + ",".join(hex(0x1000000 + i * 4096)
                                                    for i in range(100_000))],
           name="vm.blacklist of 100,000 addresses", ok=True),
    _cli_a(["run", "churn", *_M, "--ops", "50", "--interval", "0"], ok=True,
           name="run --interval 0 (the default)"),
    _cli_a([*_RUN, "-o", "nodir/deeper/r"], ok=True),
    _cli_a(["ftrace", "empty", "-o", "x.trace"], ok=True),
    _cli_a(["contig", "--npages", "4", "--high", "0"], expect="fail"),
    _cli_a(["contig", "--npages", "4", "--low", "0x10000", "--high", "0x5000"],
           expect="fail"),
    _cli_a(["contig", "--npages", "99999999999999"], expect="fail"),
    _cli_a(["map-image", "s.npz", "-o", "old.png", "--force"], setup=_mk("old.png", _PNG),
           name="map-image --force over a PNG", ok=True, replaces=("old.png",)),
    _cli_a(["machine", "show", "firecracker-128m"], ok=True),
    _cli_a(["replay", "-"], stdin=b"\xef\xbb\xbf" + _SEGS.encode() + b"boot lazy\r\n",
           name="replay - of a BOM and CRLF trace", ok=True),
    _cli_a(["machine", "show", "-"], stdin=b"\xef\xbb\xbf00100000-07ffffff : System RAM\r\n",
           name="machine show - of a BOM iomem", ok=True),
    _cli_a(["help", "machines"], ok=True),
    _cli_a([*_RUN, "-o", "fresh"], name="run -o a new directory", ok=True),
    _cli_a(["snapshot", "show", "s.npz"], ok=True),
    _cli_a(["map-image", "s.npz", "-o", "new.png"], ok=True),
]

def _link(name: str, target: str) -> Callable[[str], None]:
    def setup(d: str) -> None:
        os.symlink(target, os.path.join(d, name))
    return setup


def _run_dir(d: str) -> None:
    res = CliRunner().invoke(main, [*_RUN, "-o", os.path.join(d, "r")])
    assert res.exit_code == 0, res.output


_LONG = "a" * 300

# Paths: symlinks, names too long, files where directories should be.
PATHS = [
    _cli_a([*_RUN, "-o", "link"], setup=_link("link", "mydocs"), name="run -o a link to a "
           "user's directory"),
    _cli_a([*_RUN, "-o", "link", "--force"], setup=_link("link", "mydocs"),
           name="run -o a link to a user's directory --force"),
    _cli_a([*_RUN, "-o", "dangling"], setup=_link("dangling", "nowhere"),
           name="run -o a dangling link"),
    _cli_a(["replay", "t.trace", "--save", "link.npz", "--force"],
           setup=_link("link.npz", "notes.txt"), name="--save --force over a link to notes"),
    _cli_a(["map-image", "s.npz", "-o", "link.png", "--force"],
           setup=_link("link.png", "notes.txt"), name="map-image --force over a link to notes"),
    _cli_a([*_RUN, "-o", _LONG], name="run -o a name of 300 characters"),
    _cli_a(["replay", "t.trace", "--save", _LONG + ".npz"], name="--save a name of 300 "
           "characters"),
    _cli_a(["map-image", "s.npz", "-o", _LONG + ".png"], name="map-image -o 300 characters"),
    _cli_a([*_RUN, "-o", "notes.txt/r"], name="run -o below a file"),
    _cli_a(["replay", "t.trace", "--save", "notes.txt/x.npz"], name="--save below a file"),
    _cli_a(["map-image", "s.npz", "-o", "notes.txt/x.png"], name="map-image -o below a file"),
    _cli_a(["ftrace", "notes.txt", "-o", "notes.txt/x.trace"], name="ftrace -o below a file"),
    _cli_a([*_RUN, "-o", "/proc/r"], name="run -o in /proc"),
    _cli_a(["replay", "t.trace", "--save", "/proc/x.npz"], name="--save in /proc",
           expect="last"),
    _cli_a(["report", "r", "-o", "notes.txt"], setup=_run_dir, name="report -o a user's file"),
    _cli_a(["report", "r", "-o", "mydocs"], setup=_run_dir,
           name="report -o a user's directory", ok=True),
    _cli_a(["report", "r"], setup=_run_dir, name="report of a fresh run", ok=True),
    _cli_a(["machine", "show", "%s%n{0}"], name="a machine named like a format string"),
    _cli_a(["help", "[bold]machines"], name="help of markup"),
    _cli_a(["compare", "churn", *_M, "--ops", "50", "-o", "link"],
           setup=_link("link", "mydocs"), name="compare -o a link to a user's directory"),
    _cli_a(["sweep", "x.toml", "-o", "link", "--force"], setup=lambda d: (_link(
        "link", "mydocs")(d), _mk("x.toml", 'machines = ["firecracker-128m"]\n'
                              'policies = ["lazy"]\nworkloads = ["churn"]\nseeds = [1]\n'
                              "ops = 10\n")(d)), name="sweep -o a link to a user's directory"),
]

def _show(file: str, text: str, **kw) -> Attack:
    """``physmem machine show`` of a crafted machine or map file."""
    return _cli_a(["machine", "show", file], setup=_mk(file, text), **kw)


def _sweep(name: str, **fields: str) -> Attack:
    """``physmem sweep`` of a small valid sweep file with ``fields`` replaced."""
    d = {"machines": '["firecracker-128m"]', "policies": '["lazy"]',
         "workloads": '["churn"]', "seeds": "[1]", "ops": "10", **fields}
    return _cli_a(["sweep", "x.toml"], name=name,
                  setup=_mk("x.toml", "".join(f"{k} = {v}\n" for k, v in d.items())))


_TOMLS = [
    ("TOML with no RAM", "ram = []\n"),
    ("TOML negative address", "ram = [[-4096, 0, 0]]\n"),
    ("TOML addresses as strings", 'ram = [["0", "1", "0"]]\n'),
    ("TOML arch sparc", 'arch = "sparc"\nram = [[0x100000, 0x8000000, 0]]\n'),
    ("TOML cpus 0x0", 'cpus = "0x0"\nram = [[0x100000, 0x8000000, 0]]\n'),
    ("TOML cpus 10^14", 'cpus = "9999999x9999999"\nram = [[0x100000, 0x8000000, 0]]\n'),
    ("TOML page_array sideways", 'page_array = "sideways"\nram = [[0x100000, 0x8000000, 0]]\n'),
    ("TOML unknown key and a markup name",
     'name = "[/]\\u001b[2J"\nram = [[0x100000, 0x8000000, 0]]\nbogus = 1\n'),
    ("TOML overlapping ranges", "ram = [[0x100000, 0x8000000, 0], [0x4000000, 0x9000000, 0]]\n"),
]


# Stdin and crafted files.
FILES = [
    _cli_a(["map-image", "s.npz", "-o", "old.png"], setup=_mk("old.png", _PNG),
           name="map-image over a PNG without --force"),
    _cli_a(["replay", "-"], stdin=b"", name="replay - of nothing", ok=True),
    _cli_a(["replay", "-"], stdin=bytes(range(256)) * 4, name="replay - of binary"),
    _cli_a(["machine", "show", "-"], stdin=b"", name="machine show - of nothing"),
    _cli_a(["machine", "show", "-"], stdin=bytes(range(256)) * 4,
           name="machine show - of binary"),
    _cli_a(["machine", "show", "-"], stdin=b"\xff\xfe0\x001\x00", name="machine show - UTF-16"),
    _cli_a(["sweep", "-"], stdin=b"", name="sweep - of nothing"),
    *(_show("x.toml", text, name=name) for name, text in _TOMLS),
    _show("x.toml", "ram = [[0x100800, 0x8000000, 0]]\n", name="TOML unaligned start",
        ok=True),
    _show("x.toml", "ram = 5\n",
           name="TOML ram a number"),
    _show("x.toml", "[ram]\nx = 1\n",
           name="TOML ram a table"),
    _show("x.iomem", "00000000-ffffffffffffffffff : System RAM\n", name="iomem beyond 64 bits"),
    _show("x.iomem", "08000000-00100000 : System RAM\n", name="iomem inverted range"),
    _show("x.iomem", "00000000-00000fff : System RAM\n", name="iomem one page at 0"),
    _show("x.iomem", "".join(f"{i << 21:08x}-{(i << 21) + 4095:08x} : System RAM\n"
                           for i in range(2000)), name="iomem 2,000 fragments"),
    _show("x.dmesg", "BIOS-e820: [mem 0x0000000000100000-0x0000000000000fff] usable\n",
        name="e820 inverted"),
    _show("x.smap", "SMAP type=01 base=ffffffffffff0000 len=0000000000100000\n",
        name="SMAP wrapping past 2^64"),
    _show("x.smap", "SMAP type=01 base=0000000000100000 len=" + "f" * 5000 + "\n",
        name="SMAP length of 5,000 hex digits"),
    _show("x.txt", "0x0000000000100000 - 0x0000000007ffffff, 133169152 bytes (32512 pages)\n"
        * 3, name="chunks repeated", ok=True),
    _show("x.txt", ("a" * 60 + " : ") * 2000,
           name="a 100 KB line of ' : '"),
    _show("x.txt", "BIOS-e820: [mem " * 20000,
           name="e820 openers repeated"),
    _show("x.txt", "SMAP type=01 base=" * 20000,
           name="SMAP openers repeated"),
    _show("x.txt", "<br>" * 500_000,
           name="half a million <br>"),
    _show("x.txt", "=\n" * 200_000,
           name="200,000 soft line breaks"),
    _show("x.txt", "> " * 100_000 + "\n",
           name="quote markers 100,000 deep"),
    _show("x.txt", " - 0x\n" * 200_000,
           name="200,000 chunk openers"),
    _cli_a(["replay", "x.trace"], setup=_trace(_SEGS + "boot lazy\n" + "sysctl vm.phys_free\n"
                                                * 20000), name="20,000 sysctl lines", ok=True),
    _cli_a(["replay", "x.trace"], setup=_trace(_SEGS + "seg 0x100000 0x8000000 0\nboot lazy\n"),
           name="trace overlapping segments", expect="replay"),
    _cli_a(["replay", "x.trace"], setup=_trace("boot lazy\n"), name="trace boot without RAM",
           expect="replay"),
    _cli_a(["replay", "x.trace"], setup=_trace("arch sparc\n"), name="trace arch sparc",
           expect="replay"),
    _cli_a(["replay", "x.trace"], setup=_trace(_SEGS + "boot lazy\nalloc_pages 0 default ٣\n"),
           name="trace Arabic-Indic order", expect="replay"),
    _cli_a(["replay", "x.trace"], setup=_trace(_SEGS + "boot lazy\nalloc_pages 0 default ３\n"),
           name="trace full-width order", expect="replay"),
    _cli_a(["replay", "x.trace"], setup=_trace(_SEGS + "boot lazy\nalloc_npages 0 default 1e3\n"),
           name="trace float npages", expect="replay"),
    _cli_a(["replay", "x.trace"], setup=_trace(
        _SEGS + "boot lazy\nalloc_pages 0 default 0 " + "x " * 100_000 + "\n"),
        name="trace line of 100,000 tokens"),
    _cli_a(["replay", "x.trace"], setup=_trace(_SEGS * 20000),
           name="trace of 40,000 overlapping seg lines", expect="replay"),
    _cli_a(["replay", "x.trace"], setup=_trace(
        "seg 0x100000 0x100000000000 0\nboot eager\n"), name="trace eager boot of 16 TiB",
        expect="replay"),
    _cli_a(["replay", "x.trace", "--load", "s.npz"], setup=_trace("seg 0x1000 0x2000 0\n"),
           name="seg after a loaded snapshot"),
    _sweep(name="sweep of no machines", machines="[]"),
    _sweep(name="sweep policy nope", policies='["nope"]'),
    _sweep(name="sweep workload nope", workloads='["nope"]'),
    _sweep(name="sweep ops 0", ops="0"),
    _sweep(name="sweep no seeds", seeds="[]"),
    _sweep(name="sweep of a machine that is a user's notes", machines='["notes.txt"]'),
]


_EV = "  bash-1 [000] .....   1.000000: "


def _ftrace(body: str, *extra: str, **kw) -> Attack:
    """``physmem ftrace`` of a crafted event file: malformed events are skipped and counted
    (the summary says so), so the attack must be handled: exit 0 with a summary, or one
    error line; never a traceback."""
    return _cli_a(["ftrace", "f.txt", *_M, "-o", "out.trace", *extra], setup=_mk("f.txt", body),
                  **kw)


FTRACE = [
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=0x" + "f" * 5000 + " order=0\n",
            name="ftrace pfn of 5,000 hex digits", ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=" + "9" * 5000 + " order=0\n",
            name="ftrace pfn of 5,000 decimal digits", ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=0x100 order=" + "9" * 5000 + "\n",
            name="ftrace order of 5,000 digits", ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=0x100 order=99\n", name="ftrace order 99",
            ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=0x100 order=-1\n", name="ftrace order -1",
            ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=０x100 order=0\n", name="ftrace full-width pfn",
            ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=0x100 order=٣\n", name="ftrace Arabic order",
            ok=True),
    _ftrace((_EV + "mm_page_free: page=1 pfn=0x100 order=0\r\n") * 1000,
            name="ftrace 1,000 frees of a page never allocated, CRLF", ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=0xffffffffffff order=0\n",
            name="ftrace pfn beyond the machine", ok=True),
    _ftrace((_EV + "mm_page_alloc: page=<...> pfn=<...> order=10\n") * 5000,
            name="ftrace 5,000 elided order-10 allocations (more than RAM)", ok=True),
    _ftrace(_EV + "mm_page_alloc: " + "x=" * 100_000 + "\n", name="ftrace 200 KB event line",
            ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=0x100 order=0\n", "--strict",
            name="ftrace --strict of a good event", ok=True),
    _ftrace(_EV + "mm_page_alloc: page=1 pfn=zzz order=0\n", "--strict",
            name="ftrace --strict of a bad pfn"),
    _ftrace("\0" * 100, name="ftrace of NUL bytes"),
    _ftrace("\ufeff" + _EV + "mm_page_alloc: page=1 pfn=0x100 order=0\n",
            name="ftrace behind a BOM", ok=True),
]


def _snapshot_parts() -> tuple[dict, dict]:
    """The arrays and meta record of the real snapshot in ``_fixture("snap")``."""
    import io
    import json

    import numpy as np
    with np.load(io.BytesIO(_fixture("snap"))) as z:
        arrays = {n: z[n] for n in z.files}
    return arrays, json.loads(bytes(arrays["meta"]).decode())


def _crafted(name: str, change) -> Attack:
    """Load a snapshot whose meta record or arrays ``change(meta, arrays)`` altered (the
    crafted file is written by the set-up: it is the attacker's, not physmem's output)."""
    def setup(d: str) -> None:
        import io
        import json
        import zipfile

        import numpy as np
        arrays, meta = _snapshot_parts()
        change(meta, arrays)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with zipfile.ZipFile(os.path.join(d, "crafted.npz"), "w") as zf:
            for n, a in arrays.items():
                b = io.BytesIO()
                np.lib.format.write_array(b, a)
                zf.writestr(n + ".npy", b.getvalue())
    return Attack(name, setup=setup, api=lambda: physmem.load_snapshot("crafted.npz"))


def _snapshot_attacks() -> list[Attack]:
    """Every meta field (and each field of its dicts) replaced by a value of another type,
    and every array emptied, halved, made float or negative: each load must be refused."""
    import json

    import numpy as np
    arrays, meta = _snapshot_parts()
    out = []

    def put(path, v):
        def change(m, _a):
            for p in path[:-1]:
                m = m[p]
            m[path[-1]] = v
        return change

    fields = [(k,) for k in meta] + [(k, sub) for k in meta if isinstance(meta[k], dict)
                                     for sub in meta[k]]
    for path in fields:
        orig = meta[path[0]] if len(path) == 1 else meta[path[0]][path[1]]
        for v in ([], {}, "x", True, None, -1, [[1, 2, 3]]):
            if json.dumps(v) != json.dumps(orig):
                out.append(_crafted(f"snapshot: meta {'.'.join(path)} = {v!r}",
                                    put(path, v)))
    for name, a in arrays.items():
        if name == "meta":
            continue
        for what, f in (("empty", lambda a: a[:0]), ("halved", lambda a: a[: len(a) // 2]),
                        ("float", lambda a: a.astype(np.float64)),
                        ("negative", lambda a: -np.abs(a.astype(np.int64)) - 1)):
            out.append(_crafted(f"snapshot: array {name} {what}",
                                lambda _m, arr, name=name, f=f: arr.__setitem__(
                                    name, f(arr[name]))))
    return out


def _sysctl(k, name):
    return k.sysctl(name)


API = [
    _kapi("free_pages of a string address", lambda k: k.free_pages("0x2000000", 0)),
    _kapi("alloc_pages domain '0'", lambda k: k.alloc_pages("0", "default", 0)),
    _kapi("alloc_pages order None", lambda k: k.alloc_pages(0, "default", None)),
    _kapi("alloc_contig low a float", lambda k: k.alloc_contig(0, 1, 0.5, 1 << 30, 4096, 0)),
    _kapi("alloc_contig high None", lambda k: k.alloc_contig(0, 1, 0, None, 4096, 0)),
    _kapi("sysctl of a number", lambda k: _sysctl(k, 5)),
    _kapi("sysctl of None", lambda k: _sysctl(k, None)),
    _kapi("unfree_page negative", lambda k: k.unfree_page(-4096)),
    _kapi("blacklist_add negative", lambda k: k.blacklist_add(-4096)),
    _kapi("blacklist_add True", lambda k: k.blacklist_add(True)),
    _kapi("free_count '0'", lambda k: k.free_count("0")),
    _kapi("alloc_npages npages a numpy float", lambda k: k.alloc_npages(
        0, "default", __import__("numpy").float64(2))),
    _kapi("free_pages order 2**70", lambda k: k.free_pages(0x2000000, 2 ** 70)),
    _kapi("alloc_pages order a string", lambda k: k.alloc_pages(0, "default", "0")),
    _kapi("pglist_alloc of None", lambda k: k.pglist_alloc(None, 0, 1 << 30, 4096, 0)),
    _kapi("find_range of strings", lambda k: k.find_range(0, "1", 0, 1 << 30)),
    _kapi("boot again", lambda k: k.boot()),
    Attack("api: boot of None", api=lambda: physmem.boot(None)),
    Attack("api: boot tunables=[5]", api=lambda: physmem.boot("firecracker-128m",
                                                            tunables=[5])),
    Attack("api: boot tunables a dict", api=lambda: physmem.boot(
        "firecracker-128m", tunables={"debug.vm.lazy_page_init": "0"})),
    Attack("api: Machine ram a string", api=lambda: physmem.Machine(name="x", ram="abc")),
    Attack("api: Machine ram of 4-tuples", api=lambda: physmem.Machine(
        name="x", ram=[(1, 2, 3, 4)])),
    Attack("api: Machine name a number", api=lambda: physmem.boot(physmem.Machine(
        name=5, ram=[physmem.machine.RamRange(0x100000, 0x8000000, 0)]))),
    Attack("api: import_map of bytes", api=lambda: __import__(
        "physmem.mapimport").mapimport.import_map(b"00100000-07ffffff : System RAM\n")),
    Attack("api: import_map of None", api=lambda: __import__(
        "physmem.mapimport").mapimport.import_map(None)),
    Attack("api: machine_from_toml of None", api=lambda: __import__(
        "physmem.machine").machine.machine_from_toml(None)),
    Attack("api: load_snapshot of /dev/zero", api=lambda: physmem.load_snapshot("/dev/zero")),
    Attack("api: load_snapshot of a directory", api=lambda: physmem.load_snapshot(".")),
    Attack("api: load_snapshot of a truncated file",
           api=lambda: physmem.load_snapshot("half.npz")),
    Attack("api: save_snapshot of None", api=lambda: physmem.save_snapshot(None, "x.npz")),
    Attack("api: save_snapshot over the user's notes",
           api=lambda: physmem.save_snapshot(_k(), "notes.txt")),
    Attack("api: kernel_for of a list", api=lambda: physmem.kernel_for(["firecracker-128m"])),
    Attack("api: get_machine of ''", api=lambda: physmem.get_machine("")),
    Attack("api: get_machine of a directory", api=lambda: physmem.get_machine("mydocs")),
    Attack("api: get_machine of the user's notes", api=lambda: physmem.get_machine(
        "notes.txt")),
]

ATTACKS: list[Attack] = CLI + OK + PATHS + FILES + FTRACE + API + _snapshot_attacks()


def surfaces() -> dict[str, int]:
    """How many attacks each surface has (for the report)."""
    out: dict[str, int] = {}
    for a in ATTACKS:
        s = a.name.split(":", 1)[0] if a.api else (a.argv[0] if a.argv else "?")
        out[s] = out.get(s, 0) + 1
    return out
