"""Trace input that is not a well-formed trace: error lines name their input line; a file
that is not text (NUL bytes, invalid UTF-8, endless lines such as /dev/zero) is refused as
a whole with one line; a byte-order mark is ignored; huge numbers and thousands of
``tunable`` lines are handled without Python's int limits or quadratic work."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from physmem import errors as E
from physmem.cli import main
from physmem.kernel import Tunables
from physmem.trace import MAX_LINE, Replayer, parse_u64, read_trace, replay_file

SETUP = "seg 0x1000 0x9f000 0\nseg 0x100000 0x8000000 0\navail 0x2000000 0x8000000\n"


def replay(text: str) -> tuple[list[str], int]:
    out = io.StringIO()
    n = Replayer().replay(io.StringIO(text), out)
    return out.getvalue().splitlines(), n


def test_error_lines_name_the_input_line_blank_and_comment_lines_counted():
    lines, n = replay(SETUP + "\n# a comment\nboot eager\nfrobnicate 1\n"
                      "alloc_pages 0 default 0 -> a\nfree_pages $b 0\n")
    assert n == 2
    assert lines[3] == "ok"
    assert lines[4] == "error: line 7: unknown operation 'frobnicate'"
    assert lines[5] == "0x2000000"
    assert lines[6] == "error: line 9: unknown handle 'b'"


def test_a_byte_order_mark_at_the_start_is_ignored(tmp_path):
    text = SETUP + "boot eager\nfree_count 0\n"
    want, _ = replay(text)
    got, n = replay("\ufeff" + text)
    assert n == 0 and got == want
    p = tmp_path / "bom.trace"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    out = io.StringIO()
    assert replay_file(str(p), out) == 0
    assert out.getvalue().splitlines() == want
    # only at the start: elsewhere it is part of a word
    got, n = replay(SETUP + "\ufeffboot eager\n")
    assert n == 1 and got[-1].startswith("error: line 4: unknown operation")


def test_crlf_and_cr_line_ends_read_as_newlines(tmp_path):
    text = SETUP + "boot eager\nalloc_pages 0 default 0\nfree_count 0\n"
    want, _ = replay(text)
    for end in ("\r\n", "\r"):
        p = tmp_path / "t.trace"
        p.write_bytes(text.replace("\n", end).encode())
        out = io.StringIO()
        assert replay_file(str(p), out) == 0
        assert out.getvalue().splitlines() == want


def test_numbers_beyond_the_int_digit_limit_give_one_line_errors():
    huge = "9" * 5000
    for word in (huge, "0x" + "f" * 5000, "0x" + "0" * 5000 + "1" * 17):
        with pytest.raises(E.TraceFormatError) as ei:
            parse_u64(word, "address")
        assert "\n" not in str(ei.value) and len(str(ei.value)) < 100
    # leading zeros do not count against the 20 (16) digits of a 64-bit value
    assert parse_u64("0" * 5000 + "3") == 3
    assert parse_u64("0x" + "0" * 5000 + "ff") == 255
    assert parse_u64("18446744073709551615") == 2**64 - 1
    lines, n = replay(SETUP + "boot eager\nfree_pages " + huge + " 0\n")
    assert n == 1 and lines[-1].startswith("error: line 5: bad address '99999")


def test_twenty_thousand_tunable_lines_each_parsed_once(monkeypatch):
    calls = []
    orig = Tunables.with_item

    def counting(self, item, param=None):
        calls.append(item)
        return orig(self, item, param) if param is not None else orig(self, item)

    monkeypatch.setattr(Tunables, "with_item", counting)
    text = "".join(f"tunable vm.blacklist=0x{0x2000000 + (i % 7) * 0x1000:x}\n"
                   for i in range(20000))
    lines, n = replay(text + SETUP + "boot eager\nsysctl vm.page_blacklist\n")
    assert n == 0 and lines[-1] == "0x2000000"     # the last setting wins (19999 % 7 == 0)
    assert len(calls) == 20000


def _file(tmp_path: Path, data: bytes) -> str:
    p = tmp_path / "t.trace"
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize("data, where", [
    (b"\0" * 64, "line 1: NUL byte"),
    (SETUP.encode() + b"boot eager\x00\n", "line 4: NUL byte"),
    (SETUP.encode() + b"boot \xc3\x28 eager\n", "line 4: not UTF-8"),
    (b"# " + b"x" * MAX_LINE + b"\n", "line 1: longer than"),
    (SETUP.encode() + b"x" * (3 * MAX_LINE), "line 4: longer than"),
])
def test_a_file_that_is_not_a_trace_is_refused_with_one_line(tmp_path, data, where):
    path = _file(tmp_path, data)
    out = io.StringIO()
    with pytest.raises(E.TraceFormatError) as ei:
        replay_file(path, out)
    assert where in str(ei.value) and "\n" not in str(ei.value)
    # checked block by block before anything in the block runs: nothing ran here
    assert out.getvalue() == ""
    res = CliRunner().invoke(main, ["replay", path])
    assert res.exit_code == 2
    assert res.output.splitlines()[-1].startswith("physmem: error: ")
    assert "Traceback" not in res.output


@pytest.mark.parametrize("before", [0, 1, 7, MAX_LINE // 2 - 3, MAX_LINE // 2, 40_000])
def test_a_line_one_character_too_long_is_found_wherever_it_starts(tmp_path, before):
    # read_trace measures lines only where a stretch of MAX_LINE // 2 characters has no
    # newline: a longer line covers such a stretch wherever it starts in the block.
    head = SETUP + "#" * before + "\n" + "free_count 0\n" * 5
    for size, refused in ((MAX_LINE, False), (MAX_LINE + 1, True)):
        path = _file(tmp_path, (head + "x" * size + "\nfree_count 0\n").encode())
        out = io.StringIO()
        if refused:
            with pytest.raises(E.TraceFormatError, match="line 10: longer than"):
                replay_file(path, out)
        else:
            assert replay_file(path, out) == 7      # not booted (6), unknown operation
            assert "error: line 10: unknown operation" in out.getvalue()


def test_dev_zero_as_a_trace_is_one_line_error():
    res = CliRunner().invoke(main, ["replay", "/dev/zero"])
    assert res.exit_code == 2
    assert res.output.strip() == "physmem: error: /dev/zero: line 1: NUL byte: not a text file"


def test_a_fault_in_a_later_block_comes_after_the_earlier_blocks_ran(tmp_path,
                                                                    monkeypatch):
    import physmem.trace as T
    monkeypatch.setattr(T, "READ_BLOCK", 64)
    path = _file(tmp_path, SETUP.encode() + b"boot eager\n" + b"# pad\n" * 20 + b"\0")
    out = io.StringIO()
    with pytest.raises(E.TraceFormatError, match="line 25: NUL byte"):
        replay_file(path, out)
    assert out.getvalue() == "ok\n" * 4


def test_read_trace_splits_across_blocks(monkeypatch):
    import physmem.trace as T
    monkeypatch.setattr(T, "READ_BLOCK", 7)
    text = "alpha beta\r\ngamma\rdelta\n\nomega"
    assert list(read_trace(io.BytesIO(text.encode()))) == \
        ["alpha beta", "gamma", "delta", "", "omega"]
    assert list(read_trace(io.BytesIO("é\n".encode() * 5))) == ["é"] * 5
