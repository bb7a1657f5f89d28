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


# -- docs shipped with the package: `physmem help TOPIC` -------------------------------------
def test_help_topics_print_the_shipped_docs():
    from click.testing import CliRunner

    from physmem.cli import HELP_TOPICS, main
    docs = Path(__file__).parents[1] / "docs"
    res = CliRunner().invoke(main, ["help"])
    assert res.exit_code == 0 and all(t in res.output for t in HELP_TOPICS)
    for topic in HELP_TOPICS:
        res = CliRunner().invoke(main, ["help", topic])
        assert res.exit_code == 0, topic
        assert res.output == (docs / f"{topic}.md").read_text(), topic
    res = CliRunner().invoke(main, ["help", "formats"])
    assert res.exit_code == 2 and "topics: trace-format" in res.output


def test_help_and_docs_use_no_project_internal_words_or_broken_references():
    from physmem.cli import main
    texts = {p.name: p.read_text() for p in (Path(__file__).parents[1] / "docs").glob("*.md")}
    texts["README.md"] = (Path(__file__).parents[1] / "README.md").read_text()
    texts["--help"] = "\n".join(_all_help(main))
    for name, text in texts.items():
        for bad in ("seed 0", "Seed 0", "fact sheet", "shared/reference", "formats.md", "§",
                    "oracle's pc6g", "not modelled yet"):
            assert bad not in text, (name, bad)
    for name, text in texts.items():      # every docs/X.md link points at a file
        for ref in re.findall(r"docs/([\w-]+\.md)", text):
            assert ref in texts, (name, ref)


def _all_help(group, prefix=()):
    from click.testing import CliRunner

    from physmem.cli import main
    out = [CliRunner().invoke(main, [*prefix, "--help"]).output]
    for name, cmd in getattr(group, "commands", {}).items():
        out += _all_help(cmd, (*prefix, name))
    return out


def test_readme_python_examples_run_as_written():
    """Each ```python block of the README, run as a notebook cell would run it."""
    import contextlib

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
        if "DragonflyVm" in block:
            text = out.getvalue()
            assert "'active': 1" in text and "vmstats.v_active_count: 1" in text
