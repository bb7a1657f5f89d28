"""Trace replay: the physmem trace format, version 1 (docs/trace-format.md).

A trace is a text file of operations on one model of physical memory; :class:`Replayer`
runs each line on a :class:`~physmem.kernel.Kernel` (and the named extent maps)
and writes exactly one result line per operation -- the multi-line sysctl and
``extent_print`` texts excepted -- so that two implementations can be compared with
``diff``.  A bad line prints ``error: line N: <message>``, changes nothing, and replay goes
on.  A file that is not a trace at all (NUL bytes, invalid UTF-8, a line longer than
:data:`MAX_LINE` characters, more than :data:`MAX_TRACE_BYTES` bytes) is refused as a
whole with one :class:`~physmem.errors.TraceFormatError` (:func:`read_trace`).

Usage::

    r = Replayer()
    errors = r.replay(open("t.trace"), sys.stdout)

or ``physmem replay t.trace`` on the command line.

The replay engine: one handler per operation (``op_*``) that checks its argument count and
parses its numbers inline, called straight from :meth:`Replayer.replay`'s loop; lines with
handles (``->``, ``$``) or ``--check`` take the general path (:meth:`Replayer.run_line`).
Every handler calls the same :class:`~physmem.kernel.Kernel` methods as the Python API.
Lines are read, run and their results written in blocks of :data:`BLOCK_LINES`.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import accumulate, islice
from typing import BinaryIO, TextIO

from .errors import PhysmemError, StateError, TraceFormatError
from .kernel import Kernel, Tunables
from .netbsd.extent import ERRNO_NAMES, Extent, parse_flags
from .trace_dfly import DFLY_HANDLE_OPS, DFLY_PAGE_OPS, DflyOps

U64 = 1 << 64
# Operations that may bind a named handle ("-> NAME"), and those that take "$NAME".
HANDLE_OPS = frozenset(("alloc_pages", "alloc_freelist_pages", "alloc_contig",
                        "alloc_constrained", "contigmalloc")) | DFLY_HANDLE_OPS
ADDRESS_OPS = frozenset(("free_pages", "free_contig", "unfree_page")) | DFLY_PAGE_OPS
# Operations whose handlers replay() calls directly (each result is one line), and the
# number of words after the operation's name.
HOT_OPS = {"alloc_pages": 3, "alloc_freelist_pages": 4, "alloc_npages": 3, "alloc_contig": 6,
           "free_pages": 2, "free_contig": 2, "unfree_page": 1, "find_range": 4,
           "free_count": 1}
# replay() takes the input in blocks of this many lines: each block is checked for
# comments and handles at once, run, and its results written with one write().
BLOCK_LINES = 4096
# Input limits of a trace file (read_trace): no line of the format comes near the first;
# the second stops a runaway input (a device, a wrong file) long before memory or time do.
MAX_LINE = 1 << 16
MAX_TRACE_BYTES = 1 << 36
READ_BLOCK = 1 << 20


def _shown(s: str) -> str:
    """A word for an error message, shortened if it is huge (one line stays readable)."""
    return s if len(s) <= 40 else f"{s[:20]}...({len(s)} characters)"


def parse_u64(s: str, what: str = "number") -> int:
    """A trace number: decimal, or ``0x``-prefixed hexadecimal, below 2**64.

    Digits beyond the 20 (decimal) or 16 (hexadecimal) that a 64-bit value can have, once
    leading zeros are dropped, are refused before any conversion: no 4,300-digit limit,
    no time spent on a huge number."""
    # The common case first: "0x" and at most 16 hexadecimal digits, all ASCII letters or
    # digits (int() would also take signs, blanks and underscores: the format does not).
    if s[:2] == "0x" and len(s) <= 18 and s.isalnum() and s.isascii():
        try:
            return int(s, 16)
        except ValueError:
            pass
    if s.isdigit():
        if s.isascii():
            if len(s) > 20:
                s2 = s.lstrip("0")
                if len(s2) > 20:
                    raise TraceFormatError(f"bad {what} '{_shown(s)}' (not below 2**64)")
                s = s2 or "0"
            v = int(s)
            if v < U64:
                return v
    elif s[:2] in ("0x", "0X"):
        digits = s[2:]
        if digits.isalnum() and digits.isascii():
            if len(digits) > 16 and len(digits.lstrip("0")) > 16:
                raise TraceFormatError(f"bad {what} '{_shown(s)}' (not below 2**64)")
            try:
                v = int(digits, 16)
            except ValueError:
                pass
            else:
                if v < U64:
                    return v
    raise TraceFormatError(f"bad {what} '{_shown(s)}'")


# Each Replayer remembers the words parse_u64 accepted, and their values: a trace repeats
# its numbers (orders, domains, counts, each address allocated then freed), and a dict
# lookup costs a sixth of parsing.  Cleared when it grows past NUM_CACHE entries.
NUM_CACHE = 1 << 17
# alloc_npages prints up to 4096 addresses a line: those of the pages of a 16 MiB chunk
# are formatted once and kept as one text (HEX_CHUNKS chunks at most, ~12 MiB: 4 GiB).
HEX_SHIFT = 24
HEX_PFN_SHIFT = HEX_SHIFT - 12
HEX_MASK = (1 << HEX_PFN_SHIFT) - 1
HEX_CHUNKS = 256
# The last six hexadecimal digits of the addresses of the pages of a 16 MiB chunk.
_LOW_DIGITS = [f"{j:03x}000" for j in range(1 << (HEX_SHIFT - 12))]


def tokenize(line: str) -> list[str]:
    """The words of a trace line, without its comment."""
    i = line.find("#")
    if i >= 0:
        line = line[:i]
    return line.split()


def read_trace(f: BinaryIO, name: str = "trace") -> Iterator[str]:
    """The lines of a trace file opened in binary mode, decoded as UTF-8, without their
    line ends (``\\n``, ``\\r\\n`` or ``\\r``, as a text file reads them).  A byte-order
    mark at the start is dropped by :meth:`Replayer.replay`.

    Raises TraceFormatError, naming the line, for a file that is not a trace: a NUL byte,
    bytes that are not UTF-8, a line longer than MAX_LINE characters, or more than
    MAX_TRACE_BYTES bytes.  Each block of READ_BLOCK bytes is checked before any of its
    lines is yielded, so a file shorter than that is refused before anything runs; in a
    longer one, the blocks before the faulty one have been replayed."""
    for lines, _ in read_trace_blocks(f, name):
        yield from lines


def read_trace_blocks(f: BinaryIO, name: str = "trace") -> Iterator[tuple[list[str], bool]]:
    """:func:`read_trace`'s lines as the list of each block read, with whether the block's
    text holds ``#``, ``$`` or ``->`` (a comment or a handle, which the replay's fast path
    leaves to the general one): :meth:`Replayer.replay_blocks` takes them as they are,
    with no step per line in between.  The same checks and errors as read_trace."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    carry = ""
    lineno = 0       # lines yielded so far
    total = 0
    read = getattr(f, "read1", f.read)   # what is there: a pipe need not fill a block
    while True:
        block = read(READ_BLOCK)
        total += len(block)
        if total > MAX_TRACE_BYTES:
            raise TraceFormatError(f"{name}: more than {MAX_TRACE_BYTES} bytes: not a trace")
        nul = block.find(b"\0")
        if nul >= 0:
            at = lineno + carry.count("\n") + block.count(b"\n", 0, nul) + 1
            raise TraceFormatError(f"{name}: line {at}: NUL byte: not a text file")
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as e:
            at = lineno + block.count(b"\n", 0, max(e.start, 0)) + 1
            raise TraceFormatError(f"{name}: line {at}: not UTF-8 text") from None
        data = carry + text if carry else text
        tail = ""
        if "\r" in data:
            if block and data.endswith("\r"):   # its "\n" may be in the next block
                data, tail = data[:-1], "\r"
            data = data.replace("\r\n", "\n").replace("\r", "\n")
        lines = data.split("\n")
        carry = lines.pop() + tail
        if len(carry) > MAX_LINE or (lines and _long_line(data) and
                                     max(map(len, lines)) > MAX_LINE):
            at = lineno + next((i for i, ln in enumerate(lines) if len(ln) > MAX_LINE),
                               len(lines)) + 1
            raise TraceFormatError(f"{name}: line {at}: longer than {MAX_LINE} characters")
        lineno += len(lines)
        if lines:
            yield lines, _special(data)
        if not block:
            if carry:
                yield [carry], _special(carry)
            return


def _long_line(text: str) -> bool:
    """Whether ``text`` may hold a line longer than MAX_LINE: a stretch of MAX_LINE // 2
    characters without a newline, at a multiple of that (such a line covers a whole one).
    A few ``find()`` calls a block, instead of the length of each of its lines."""
    h = MAX_LINE // 2
    return any(text.find("\n", j, j + h) < 0 for j in range(0, len(text) - h + 1, h))


def _special(text: str) -> bool:
    """Whether ``text`` may hold a comment or a handle (``#``, ``$``, ``->``)."""
    return "#" in text or "$" in text or "->" in text


def _blocks(lines: Iterable[str]) -> Iterator[tuple[list[str], bool]]:
    """Any lines as :func:`read_trace_blocks` gives them: lists of BLOCK_LINES lines.  If
    ``lines`` fails, the lines read before the failure come first, then the error."""
    it = iter(lines)
    while True:
        block: list[str] = []
        try:
            block.extend(islice(it, BLOCK_LINES))
        except Exception:
            if block:
                yield block, _special("".join(block))
            raise
        if not block:
            return
        yield block, _special("".join(block))


class Replayer:
    """Replays trace operations on one Kernel (created on first use, amd64 unless the
    trace's first operation is ``arch``) and the trace's extent maps."""

    def __init__(self, check: bool = False, kernel_factory: Callable[[str], Kernel] = Kernel):
        self.check = check
        self.kernel_factory = kernel_factory
        self.kernel: Kernel | None = None
        self.arch = "amd64"
        self.nops = 0
        self.extents: dict[str, Extent] = {}
        self.tunables: list[str] = []
        self._tun: Tunables | None = None     # self.tunables parsed, one line at a time
        self.handles: dict[str, int | None] = {}
        self.errors = 0
        self._num: dict[str, int] = {}      # words parsed so far -> values (see NUM_CACHE)
        self._hex: dict[int, tuple[str, int]] = {}  # see _hex_chunk
        self._hex0: tuple[str, list[int]] | None = None
        self.dfly = DflyOps(parse_u64)
        self._ops: dict[str, Callable[[list[str]], str]] = {
            "arch": self.op_arch,
            "seg": self.op_seg,
            "avail": self.op_avail,
            "boot": self.op_boot,
            **dict.fromkeys(HOT_OPS, self.op_hot),
            "lazy_init": self.op_lazy_init,
            "phys_free": self.op_phys_free,
            "phys_segs": self.op_phys_segs,
            "tunable": self.op_tunable,
            "sysctl": self.op_sysctl,
            "extent_mirror": self.op_extent_mirror,
            "alloc_constrained": self.op_alloc_constrained,
            "pglist_alloc": self.op_pglist_alloc,
            "contigmalloc": self.op_contigmalloc,
            "extent_create": self.op_extent_create,
            "extent_alloc_region": self.op_extent_alloc_region,
            "extent_alloc_subregion": self.op_extent_alloc_subregion,
            "extent_free": self.op_extent_free,
            "extent_print": self.op_extent_print,
            "extent_destroy": self.op_extent_destroy,
            **self.dfly.ops(),
        }
        # The hot operations' handlers (see _fast) and the kernel they were made for.
        self._fast_ops: dict[str, Callable[[list[str]], str]] = {}
        self._fast_for: Kernel | None = None

    # -- driving --------------------------------------------------------------------------
    @property
    def k(self) -> Kernel:
        if self.kernel is None:
            self.kernel = self.kernel_factory(self.arch)
        return self.kernel

    def execute(self, tok: list[str]) -> str:
        """Run one tokenized operation; return its result text (without the final newline
        for one-line results).  Raises PhysmemError for a bad line."""
        self.nops += 1
        fn = self._ops.get(tok[0])
        if fn is None:
            raise TraceFormatError(f"unknown operation '{tok[0]}'")
        name = None
        if len(tok) > 2 and tok[-2] == "->":
            # a named handle: "alloc_pages 0 default 0 -> buf" (docs/trace-format.md)
            if tok[0] not in HANDLE_OPS:
                raise TraceFormatError(f"{tok[0]} cannot bind a handle")
            name = tok[-1]
            if not name.isidentifier():
                raise TraceFormatError(f"bad handle name '{name}'")
            tok = tok[:-2]
        elif len(tok) > 1 and tok[1].startswith("$"):
            if tok[0] not in ADDRESS_OPS:
                raise TraceFormatError(f"{tok[0]} takes no handle")
            pa = self._resolve(tok[1])
            if pa is None:
                return "NULL"     # the handle's allocation failed: nothing to do
            tok = [tok[0], hex(pa), *tok[2:]]
        out = fn(tok)
        if name is not None:
            self.handles[name] = None if out == "NULL" else int(out, 16)
        return out

    def _resolve(self, ref: str) -> int | None:
        """``$NAME`` or ``$NAME+PAGES``: the address a handle was bound to (plus pages)."""
        name, plus, off = ref[1:].partition("+")
        if name not in self.handles:
            raise TraceFormatError(f"unknown handle '{name}'")
        pa = self.handles[name]
        if pa is None:
            return None
        return pa + (parse_u64(off, "page offset") << 12 if plus else 0)

    def run_line(self, line: str, lineno: int | None = None) -> str | None:
        """Run one trace line; its output (with newline), or None for a blank line.
        ``lineno``, if given, is named in an error line (``error: line N: ...``)."""
        tok = tokenize(line)
        if not tok:
            return None
        try:
            out = self.execute(tok)
        except PhysmemError as e:
            self.errors += 1
            return f"error: {e}\n" if lineno is None else f"error: line {lineno}: {e}\n"
        if self.check and self.kernel is not None and self.kernel.booted:
            self.kernel.check()
        if self.check and self.dfly.vm is not None:
            self.dfly.vm.check()
        return out if out.endswith("\n") else out + "\n"

    def replay(self, lines: Iterable[str], out: TextIO) -> int:
        """Replay every line, writing results to ``out``; returns the number of lines that
        printed ``error:``.  A byte-order mark before the first line is ignored.

        Lines are taken in blocks of BLOCK_LINES: a block is tested for comments and
        handles (``#``, ``$``, ``->``) as one text, its hot operations (HOT_OPS: one-line
        results, once a kernel is booted) run through the handlers of :meth:`_fast`, and
        its results are written with one ``write()``.  Any other operation, a line of a
        block with a comment or a handle, and ``check`` mode go through :meth:`run_line`,
        which does the same with the general checks.  If the input fails (read_trace's
        TraceFormatError), the lines read before it are run and printed first."""
        return self.replay_blocks(_blocks(lines), out)

    def replay_blocks(self, blocks: Iterable[tuple[list[str], bool]], out: TextIO) -> int:
        """:meth:`replay` of lines given as :func:`read_trace_blocks` gives them: lists of
        lines, each with whether it may hold a comment or a handle.  Each list is run in
        blocks of BLOCK_LINES lines (results written after each); the error count."""
        # NOTE: buf holds result lines without their "\n" (joined per block), and the
        # operations run here are counted in n, added to self.nops before run_line runs
        # (op_arch reads it) and at the end: per line, that is two fewer attribute writes.
        buf: list[str] = []
        append = buf.append
        run_line = self.run_line
        hot = self._hot_now()
        lineno = 1                  # of the block's first line
        n = 0
        first = True
        try:
            for lines, any_special in blocks:
                if first and lines:
                    first = False
                    if lines[0].startswith("\ufeff"):
                        lines[0] = lines[0][1:]
                size = BLOCK_LINES
                for at in range(0, len(lines), size):
                    block = lines[at:at + size] if len(lines) > size else lines
                    special = any_special and _special("".join(block))
                    for i, line in enumerate(block, lineno):
                        tok = line.split()
                        if not tok:
                            continue
                        fn = hot.get(tok[0])
                        if fn is None or (special and ("#" in line or "$" in line or
                                                      "->" in line)):
                            self.nops += n
                            n = 0
                            r = run_line(line, i)
                            if r is not None:
                                append(r[:-1])
                            hot = self._hot_now()       # after arch, boot, ...
                        else:
                            n += 1
                            try:
                                append(fn(tok))
                            except PhysmemError as e:
                                self.errors += 1
                                append(f"error: line {i}: {e}")
                    lineno += len(block)
                    if buf:
                        buf.append("")
                        out.write("\n".join(buf))
                        buf.clear()
                    if len(self._num) >= NUM_CACHE:
                        self._num.clear()
        finally:
            self.nops += n
            if buf:
                buf.append("")
                out.write("\n".join(buf))
        return self.errors

    def _hot_now(self) -> dict[str, Callable[[list[str]], str]]:
        """The handlers replay() calls directly now: :meth:`_fast`'s once a kernel is
        booted (none before, and none in ``check`` mode)."""
        k = self.kernel
        if self.check or k is None or not k.booted:
            return {}
        return self._fast(k)

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _nargs(tok: list[str], want: int) -> None:
        if len(tok) != want + 1:
            raise TraceFormatError(f"{tok[0]}: expected {want} arguments, got {len(tok) - 1}")

    def _booted(self) -> Kernel:
        k = self.k
        if not k.booted:
            raise StateError("not booted")
        return k

    # -- operations -----------------------------------------------------------------------
    def op_arch(self, tok: list[str]) -> str:
        self._nargs(tok, 1)
        if self.nops != 1:
            raise TraceFormatError("arch must be the first operation")
        from .vmparam import get_arch
        get_arch(tok[1])
        self.arch = tok[1]
        self.kernel = None
        return "ok"

    def op_seg(self, tok: list[str]) -> str:
        self._nargs(tok, 3)
        self.k.add_segment(parse_u64(tok[1], "start"), parse_u64(tok[2], "end"),
                           parse_u64(tok[3], "domain"))
        return "ok"

    def op_avail(self, tok: list[str]) -> str:
        self._nargs(tok, 2)
        self.k.add_avail(parse_u64(tok[1], "start"), parse_u64(tok[2], "end"))
        return "ok"

    def op_boot(self, tok: list[str]) -> str:
        self._nargs(tok, 1)
        if tok[1] not in ("lazy", "eager"):
            raise TraceFormatError("boot wants lazy or eager")
        if self._tun is not None:
            self.k.boot(lazy=tok[1] == "lazy", tunables=replace(self._tun))
        else:
            self.k.boot(lazy=tok[1] == "lazy")
        return "ok"

    def op_hot(self, tok: list[str]) -> str:
        """A hot operation (HOT_OPS) on the general path: the argument count, a booted
        kernel, then :meth:`_fast`'s handler (the one implementation of each)."""
        self._nargs(tok, HOT_OPS[tok[0]])
        k = self._booted()
        if len(self._num) >= NUM_CACHE:     # (replay() checks once per block)
            self._num.clear()
        return self._fast(k)[tok[0]](tok)

    def _fast(self, k: Kernel) -> dict[str, Callable[[list[str]], str]]:
        """The handlers of the hot operations on booted kernel ``k`` (made once per
        kernel): each checks its argument count, looks its numbers up in the words
        parsed so far (``self._num``; parse_u64 for a new word), calls the Kernel method
        the Python API offers and returns the result line.  An address it prints is
        remembered as a parsed word: the free lines of a trace name the addresses its
        alloc lines printed."""
        if self._fast_for is k:
            return self._fast_ops
        num = self._num
        get = num.get
        nargs = self._nargs

        def u64(s: str, what: str) -> int:
            # A word not parsed before (replay() bounds the cache between blocks).
            v = parse_u64(s, what)
            num[s] = v
            return v

        def printed(pa: int | None) -> str:
            if pa is None:
                return "NULL"
            s = f"{pa:#x}"
            num[s] = pa
            return s

        alloc_pages = k.alloc_pages

        def op_alloc_pages(tok: list[str]) -> str:
            if len(tok) != 4:
                nargs(tok, 3)
            d = get(tok[1])
            if d is None:
                d = u64(tok[1], "domain")
            o = get(tok[3])
            if o is None:
                o = u64(tok[3], "order")
            pa = alloc_pages(d, tok[2], o)
            if pa is None:
                return "NULL"
            s = f"{pa:#x}"
            num[s] = pa
            return s

        alloc_freelist_pages = k.alloc_freelist_pages

        def op_alloc_freelist_pages(tok: list[str]) -> str:
            if len(tok) != 5:
                nargs(tok, 4)
            d = get(tok[1])
            if d is None:
                d = u64(tok[1], "domain")
            o = get(tok[4])
            if o is None:
                o = u64(tok[4], "order")
            return printed(alloc_freelist_pages(d, tok[2], tok[3], o))

        alloc_npages_pfns = k.alloc_npages_pfns
        hexes = self._hex
        hex_run = self._hex_run

        def op_alloc_npages(tok: list[str]) -> str:
            if len(tok) != 4:
                nargs(tok, 3)
            d = get(tok[1])
            if d is None:
                d = u64(tok[1], "domain")
            n = get(tok[3])
            if n is None:
                n = u64(tok[3], "npages")
            # The runs are printed as they come: no list of every page in between.  Each
            # run lies in one 16 MiB chunk (a buddy block), whose pages' words are made
            # once as one text: a run is one slice of it, however many pages it has.
            # (the runs as page frame numbers and counts, flat: no tuple per run)
            out = [""]
            append = out.append
            total = 0
            it = iter(alloc_npages_pfns(d, tok[2], n))
            for m, c in zip(it, it, strict=True):
                total += c
                h = hexes.get(m >> HEX_PFN_SHIFT)
                if h is None:           # a chunk not made yet, or chunk 0 (never in hexes)
                    append(hex_run(m, c))
                else:
                    text, w = h
                    j = (m & HEX_MASK) * w
                    append(text[j:j + c * w])
            out[0] = str(total)
            return "".join(out)

        alloc_contig = k.alloc_contig

        def op_alloc_contig(tok: list[str]) -> str:
            if len(tok) != 7:
                nargs(tok, 6)
            # NOTE: word by word, no loop: 0.6 µs a line, where a generator over the
            # misses took 1.4 (most lines have new low and high words).
            _, t1, t2, t3, t4, t5, t6 = tok
            d = get(t1)
            if d is None:
                d = u64(t1, "domain")
            n = get(t2)
            if n is None:
                n = u64(t2, "npages")
            low = get(t3)
            if low is None:
                low = u64(t3, "low")
            high = get(t4)
            if high is None:
                high = u64(t4, "high")
            align = get(t5)
            if align is None:
                align = u64(t5, "alignment")
            boundary = get(t6)
            if boundary is None:
                boundary = u64(t6, "boundary")
            return printed(alloc_contig(d, n, low, high, align, boundary))

        def freeing(free: Callable[[int, int], None], what: str) -> Callable[[list[str]], str]:
            """free_pages ADDRESS ORDER, free_contig ADDRESS NPAGES."""
            def op(tok: list[str]) -> str:
                if len(tok) != 3:
                    nargs(tok, 2)
                pa = get(tok[1])
                if pa is None:
                    pa = u64(tok[1], "address")
                n = get(tok[2])
                if n is None:
                    n = u64(tok[2], what)
                free(pa, n)
                return "ok"
            return op

        op_free_pages = freeing(k.free_pages, "order")
        op_free_contig = freeing(k.free_contig, "npages")

        def op_unfree_page(tok: list[str]) -> str:
            nargs(tok, 1)
            return "true" if k.unfree_page(parse_u64(tok[1], "address")) else "false"

        def op_find_range(tok: list[str]) -> str:
            nargs(tok, 4)
            return str(k.find_range(parse_u64(tok[1], "domain"), parse_u64(tok[2], "npages"),
                                    parse_u64(tok[3], "low"), parse_u64(tok[4], "high")))

        def op_free_count(tok: list[str]) -> str:
            nargs(tok, 1)
            return str(k.free_count(parse_u64(tok[1], "domain")))

        self._fast_ops = {
            "alloc_pages": op_alloc_pages, "alloc_freelist_pages": op_alloc_freelist_pages,
            "alloc_npages": op_alloc_npages, "alloc_contig": op_alloc_contig,
            "free_pages": op_free_pages, "free_contig": op_free_contig,
            "unfree_page": op_unfree_page, "find_range": op_find_range,
            "free_count": op_free_count}
        self._fast_for = k
        return self._fast_ops

    def _hex_chunk(self, key: int) -> tuple[str, int | list[int]]:
        """The printed addresses of the pages of 16 MiB chunk ``key``, each after a blank,
        as one text, and the width of each page's word in it -- or, for chunk 0, whose
        words have several widths, where each word starts.  Made once: chunk 0 is kept
        apart, the others in ``self._hex`` (a bounded cache, which alloc_npages' printing
        reads: all its entries have one width)."""
        if not key:
            if self._hex0 is None:
                words = [f" {pa:#x}" for pa in range(0, 1 << HEX_SHIFT, 4096)]
                self._hex0 = ("".join(words), [0, *accumulate(map(len, words))])
            return self._hex0
        h = self._hex.get(key)
        if h is None:
            if len(self._hex) >= HEX_CHUNKS:
                self._hex.clear()
            # Every address of the chunk is the chunk's number in hexadecimal then six
            # digits (HEX_SHIFT is 24): one join, and the words all have one width.
            sep = f" {key:#x}"
            h = self._hex[key] = (sep + sep.join(_LOW_DIGITS), len(sep) + 6)
        return h

    def _hex_run(self, m: int, c: int) -> str:
        """The printed addresses of the ``c`` pages from page ``m`` (one chunk's), each
        after a blank: alloc_npages' printing for a chunk not in ``self._hex``."""
        text, w = self._hex_chunk(m >> HEX_PFN_SHIFT)
        j = m & HEX_MASK
        if isinstance(w, int):
            return text[j * w:(j + c) * w]
        return text[w[j]:w[j + c]]

    def op_lazy_init(self, tok: list[str]) -> str:
        self._nargs(tok, 0)
        self._booted().lazy_init()
        return "ok"

    def op_phys_free(self, tok: list[str]) -> str:
        self._nargs(tok, 0)
        return self._booted().sysctl("vm.phys_free")

    def op_phys_segs(self, tok: list[str]) -> str:
        self._nargs(tok, 0)
        return self._booted().sysctl("vm.phys_segs")


    # -- physmem's own operations (docs/trace-format.md, "Extensions") ---------------------
    def op_tunable(self, tok: list[str]) -> str:
        self._nargs(tok, 1)
        if self.k.booted:
            raise StateError("tunable after boot")
        base = self._tun if self._tun is not None else Tunables.parse((), self.k.param)
        self._tun = base.with_item(tok[1], self.k.param)   # validates; linear in lines
        self.tunables.append(tok[1])
        return "ok"

    def op_sysctl(self, tok: list[str]) -> str:
        self._nargs(tok, 1)
        return self.k.sysctl(tok[1])

    def op_extent_mirror(self, tok: list[str]) -> str:
        self._nargs(tok, 0)
        self._booted().attach_extent_mirror()
        return "ok"

    def _constraint_args(self, tok: list[str]) -> tuple[int, int, int, int, int]:
        return (parse_u64(tok[1], "npages"), parse_u64(tok[2], "low"),
                parse_u64(tok[3], "high"), parse_u64(tok[4], "alignment"),
                parse_u64(tok[5], "boundary"))

    def op_alloc_constrained(self, tok: list[str]) -> str:
        self._nargs(tok, 5)
        pa = self._booted().alloc_constrained(*self._constraint_args(tok))
        return "NULL" if pa is None else f"{pa:#x}"

    def op_pglist_alloc(self, tok: list[str]) -> str:
        self._nargs(tok, 6)
        pas = self._booted().pglist_alloc(*self._constraint_args(tok),
                                          nsegs=parse_u64(tok[6], "nsegs"))
        return "NULL" if pas is None else " ".join([str(len(pas)), *map(hex, pas)])

    def op_contigmalloc(self, tok: list[str]) -> str:
        self._nargs(tok, 5)
        pa = self._booted().contigmalloc(*self._constraint_args(tok))
        return "NULL" if pa is None else f"{pa:#x}"

    # -- extent(9) ------------------------------------------------------------------------
    def _extent(self, name: str) -> Extent:
        ex = self.extents.get(name)
        if ex is None:
            raise TraceFormatError(f"no extent named {name!r}")
        return ex

    def _checked(self, ex: Extent, result: str) -> str:
        if self.check:
            ex.check()
        return result

    def op_extent_create(self, tok: list[str]) -> str:
        if len(tok) not in (5, 6):
            raise TraceFormatError(f"extent_create: expected 4 or 5 arguments, got "
                                   f"{len(tok) - 1}")
        name = tok[1]
        if name in self.extents:
            raise TraceFormatError(f"extent {name!r} already exists")
        desc = parse_u64(tok[5], "descriptor count") if len(tok) == 6 else None
        self.extents[name] = Extent(name, parse_u64(tok[2], "start"), parse_u64(tok[3], "end"),
                                    parse_flags(tok[4]), desc)
        return "ok"

    def op_extent_alloc_region(self, tok: list[str]) -> str:
        self._nargs(tok, 4)
        ex = self._extent(tok[1])
        rc = ex.alloc_region(parse_u64(tok[2], "start"), parse_u64(tok[3], "size"),
                             parse_flags(tok[4]))
        return self._checked(ex, ERRNO_NAMES[rc])

    def op_extent_alloc_subregion(self, tok: list[str]) -> str:
        self._nargs(tok, 8)
        ex = self._extent(tok[1])
        rc, start = ex.alloc_subregion(
            parse_u64(tok[2], "substart"), parse_u64(tok[3], "subend"),
            parse_u64(tok[4], "size"), parse_u64(tok[5], "alignment"),
            parse_u64(tok[6], "skew"), parse_u64(tok[7], "boundary"), parse_flags(tok[8]))
        return self._checked(ex, f"0 {start:#x}" if rc == 0 else ERRNO_NAMES[rc])

    def op_extent_free(self, tok: list[str]) -> str:
        self._nargs(tok, 4)
        ex = self._extent(tok[1])
        rc = ex.free(parse_u64(tok[2], "start"), parse_u64(tok[3], "size"),
                     parse_flags(tok[4]))
        return self._checked(ex, ERRNO_NAMES[rc])

    def op_extent_print(self, tok: list[str]) -> str:
        self._nargs(tok, 1)
        return self._extent(tok[1]).print()

    def op_extent_destroy(self, tok: list[str]) -> str:
        self._nargs(tok, 1)
        self._extent(tok[1]).destroy()
        del self.extents[tok[1]]
        return "ok"


def replay_file(path: str, out: TextIO, check: bool = False) -> int:
    """Replay the trace at ``path`` (``-`` for standard input) to ``out``; the number of
    error lines."""
    import sys
    r = Replayer(check=check)
    if path == "-":
        return r.replay_blocks(read_trace_blocks(sys.stdin.buffer, "-"), out)
    with open(path, "rb") as f:
        return r.replay_blocks(read_trace_blocks(f, path), out)
