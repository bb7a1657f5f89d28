"""Writing files and directories so that they are complete or absent, and never over
something physmem did not create.

Files.  :func:`atomic_write` writes to a temporary file in the same directory and renames it
over the target only once the data is complete and flushed; an error, Ctrl-C or SIGTERM on
the way removes the temporary file and leaves any earlier version of the target untouched.

Temporary names.  Every temporary file or directory physmem makes is called
``.NAME.PID.RANDOM[.new|.old].physmem-tmp`` (:func:`temp_name`): hidden, with a suffix no
input has, so that readers refuse them (:func:`refuse_temp`) and the next write to the same
target removes those left by a process that no longer runs (``kill -9``; :func:`clean_stale`).

Directories.  :func:`replace_dir` builds an output directory (a run, a comparison, a sweep)
beside its target and moves it into place.  A directory physmem made carries a marker file,
:data:`MARKER`.  The target must not exist, or be an empty directory, or -- only with
``force`` -- be a marked physmem directory holding nothing but what physmem writes there;
anything else is refused before anything is created.  Replacing renames the old directory
aside only once the new one is complete, then moves the new one in and deletes the old one;
if the process dies between those two renames, the next write or read of the target puts
the old directory back (:func:`clean_stale`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from .errors import PhysmemError

TMP_SUFFIX = ".physmem-tmp"
MARKER = ".physmem"                       # JSON: {"format": "physmem-output", "kind": ...}
MARKER_FORMAT = "physmem-output"
_NAME_KEEP = 80                           # target-name characters kept in a temporary name
_TMP_RE = re.compile(r"^\.(?P<name>.*)\.(?P<pid>\d+)\.[A-Za-z0-9_]+(?:\.(?P<kind>new|old))?"
                     + re.escape(TMP_SUFFIX) + r"$")


class OutputError(PhysmemError, ValueError):
    """An output path physmem will not write: it would replace or delete something physmem
    did not create, or replace a physmem output without ``--force``."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_name(target: Path, kind: str = "") -> tuple[str, str]:
    """The (prefix, suffix) of a temporary name for ``target`` (for mkstemp/mkdtemp)."""
    return (f".{target.name[:_NAME_KEEP]}.{os.getpid()}.",
            (f".{kind}" if kind else "") + TMP_SUFFIX)


def is_temp(path: str | os.PathLike) -> bool:
    """Whether ``path`` names one of physmem's temporary files or directories."""
    return Path(path).name.endswith(TMP_SUFFIX)


def refuse_temp(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` if ``path`` is a temporary file of an unfinished write:
    it may be truncated, and must never be read as input."""
    if is_temp(path):
        raise OutputError(f"{path}: a temporary file of an unfinished physmem write "
                          "(perhaps killed), not an input")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale(target: str | os.PathLike) -> None:
    """Remove temporaries of ``target`` left by processes that no longer run; if a
    replacement died after moving the old directory aside, move it back first."""
    target = Path(target)
    parent = target.parent
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    want = target.name[:_NAME_KEEP]
    for e in entries:
        m = _TMP_RE.match(e.name)
        if m is None or m["name"] != want or _pid_alive(int(m["pid"])):
            continue
        p = Path(e.path)
        with contextlib.suppress(OSError):
            if m["kind"] == "old" and not target.exists() and not target.is_symlink():
                os.replace(p, target)            # the replacement died half way: undo it
            elif e.is_dir(follow_symlinks=False):
                # The marker is written first and removed last: a directory of ours
                # holds it (perhaps cut short by the kill) or nothing at all.
                if m["kind"] in ("new", "old") and ((p / MARKER).is_file()
                                                    or not any(p.iterdir())):
                    remove_marked(p)
            else:
                os.unlink(p)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it to ``path``.

    Usage::

        with atomic_write("out.npz") as f:
            f.write(data)
    """
    target = Path(path)
    refuse_temp(target)
    if target.is_dir():
        raise OutputError(f"{path}: is a directory")
    clean_stale(target)
    prefix, suffix = temp_name(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix,
                                   dir=target.parent if str(target.parent) else ".")
    except OSError as e:        # name the file the user asked for, not the temporary one
        raise OutputError(f"{path}: cannot write here: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp makes 0600; use the usual mode
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise OutputError(f"{path}: cannot write here: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_file(path: str | os.PathLike, force: bool,
                      owned: Callable[[Path], bool] | None = None, what: str = "file") -> None:
    """Refuse, before any work, to write a single output file (a snapshot, a trace) over an
    existing file without ``force``, over a file ``owned`` does not recognise as physmem's
    ``what``, over anything but a regular file, or as a temporary name."""
    if not str(path).strip():
        raise OutputError("an empty output path")
    p = Path(path)
    refuse_temp(p)
    if p.is_dir():
        raise OutputError(f"{path}: is a directory")
    if p.exists() or p.is_symlink():
        if not p.is_file():
            raise OutputError(f"{path}: exists and is not a regular file")
        if not force:
            raise OutputError(f"{path}: exists (use --force to replace it)")
        if owned is not None and not owned(p):
            raise OutputError(f"{path}: exists and is not a physmem {what}; not replacing it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist")


def is_snapshot_file(p: Path) -> bool:
    """Whether ``p`` looks like a snapshot physmem wrote (a zip with a ``meta`` array)."""
    try:
        with zipfile.ZipFile(p) as z:
            return "meta.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def is_png_file(p: Path) -> bool:
    """Whether ``p`` is a PNG image (map-image replaces nothing else)."""
    try:
        with open(p, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


_TRACE_STARTS = ("#", "arch ", "seg ")


def is_trace_file(p: Path) -> bool:
    """Whether ``p`` looks like a trace physmem wrote (``--record``, ``ftrace -o``): its
    first line is a comment, ``arch`` or ``seg``."""
    try:
        with open(p, encoding="utf-8") as f:
            return f.readline(256).startswith(_TRACE_STARTS)
    except (OSError, UnicodeDecodeError):
        return False


# ---------------------------------------------------------------------------------------
# Output directories
# ---------------------------------------------------------------------------------------
def is_marked(d: str | os.PathLike, kind: str | None = None) -> bool:
    """Whether ``d`` is a directory physmem made (of ``kind``, if given)."""
    try:
        with open(Path(d) / MARKER, encoding="utf-8") as f:
            m = json.loads(f.read(4096))
    except (OSError, ValueError):
        return False
    return (isinstance(m, dict) and m.get("format") == MARKER_FORMAT
            and (kind is None or m.get("kind") == kind))


def remove_marked(d: Path) -> None:
    """Delete a directory physmem made, its marker last (a deletion cut short leaves a
    directory still recognisably physmem's, removed by the next :func:`clean_stale`)."""
    for e in os.scandir(d):
        if e.name == MARKER:
            continue
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path)
        else:
            os.unlink(e.path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(d / MARKER)
    os.rmdir(d)


def write_marker(d: Path, kind: str) -> None:
    (d / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "kind": kind}) + "\n")


def check_output_dir(out: str | os.PathLike, kind: str, force: bool,
                     owned: Callable[[Path], bool]) -> Path:
    """Refuse, before anything is created, an output directory physmem may not replace;
    return the target path.  ``owned(entry)`` says whether an entry of an existing marked
    directory is something physmem writes there."""
    p = Path(out)
    refuse_temp(p)
    if str(out) in ("", ".", "..") or p.name in ("", ".", ".."):
        raise OutputError(f"{out!r}: not a usable output directory (name a new one)")
    try:
        real = p.resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as e:
        raise OutputError(f"{out}: cannot resolve ({e})") from None
    if real == Path(real.anchor) or real == cwd or real in cwd.parents \
            or real == Path.home().resolve():
        raise OutputError(f"{out}: refusing to replace the root, home or current directory")
    if p.is_symlink():
        raise OutputError(f"{out}: is a symbolic link; name a new directory")
    if not p.exists():
        return p
    if not p.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    try:
        entries = list(p.iterdir())
    except OSError as e:
        raise OutputError(f"{out}: cannot list ({e.strerror})") from None
    if not entries:
        return p
    if not is_marked(p):
        raise OutputError(f"{out}: exists and is not a physmem output directory; "
                          "name a new one")
    if not is_marked(p, kind):
        raise OutputError(f"{out}: is a physmem output of another kind, not a {kind}")
    if not force:
        raise OutputError(f"{out}: exists (a physmem {kind}); use --force to replace it")
    foreign = [e.name for e in entries if e.name != MARKER and not owned(e)]
    if foreign:
        raise OutputError(f"{out}: holds {len(foreign)} file(s) physmem did not write "
                          f"(first: {foreign[0]!r}); not replacing it")
    return p


def replace_dir(out: str | os.PathLike, kind: str, build: Callable[[Path], None],
                force: bool = False, owned: Callable[[Path], bool] = lambda e: False) -> Path:
    """Build an output directory with ``build(tmpdir)`` and move it to ``out`` (see the
    module's docstring for what may be replaced)."""
    out = check_output_dir(out, kind, force, owned)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    out = check_output_dir(out, kind, force, owned)     # cleaning may have restored it
    prefix, suffix = temp_name(out, "new")
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    old: Path | None = None
    try:
        write_marker(tmp, kind)
        build(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            check_output_dir(out, kind, force, owned)   # still ours, after the build
            prefix, suffix = temp_name(out, "old")
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
            os.replace(out, old)            # an empty directory is replaced by rename
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                old = None
                raise
            with contextlib.suppress(OSError):
                remove_marked(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_marked(tmp)
        raise
    return out


def owned_names(names: Iterable[str]) -> Callable[[Path], bool]:
    """An ``owned`` test for :func:`replace_dir`: regular files with one of ``names``."""
    names = frozenset(names)
    return lambda e: e.name in names and e.is_file() and not e.is_symlink()


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit in the main thread while inside, so that every
    ``finally`` and ``except BaseException`` that removes a temporary file runs."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)
    saved = {}
    for s in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):     # not the main thread
            saved[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
