"""The trace examples in docs/trace-format.md replay without errors and print what their
comments say."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from physmem.trace import Replayer, tokenize

DOC = Path(__file__).parents[1] / "docs" / "trace-format.md"
BLOCKS = re.findall(r"```\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_replays(block):
    r = Replayer(check=True)
    for line in block.splitlines():
        if not tokenize(line):
            continue
        out = io.StringIO()
        assert r.replay([line], out) == 0, line
        comment = line.partition("#")[2].strip()
        m = re.match(r"(0x[0-9a-f]+|\d+)\b", comment)
        if m:
            assert out.getvalue().split()[0] == m.group(1), line


def test_docs_have_examples():
    assert len(BLOCKS) >= 3
