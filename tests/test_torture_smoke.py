"""A small run of each `make torture` suite, so that the long runs keep working."""

from __future__ import annotations

import pytest

from tests import torture


@pytest.mark.parametrize("suite", [
    lambda tmp: torture.stateful(4000),
    lambda tmp: torture.threads(4000),
    lambda tmp: torture.snapshots(5, tmp),
    lambda tmp: torture.pagelayer(2000, 1),
])
def test_torture_suite_smoke(suite, tmp_path):
    line = suite(tmp_path)
    assert line.endswith("divergences found = 0"), line


def test_named_suites_run_alone(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["torture", "--quick", "catalogue"])
    assert torture.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("catalogue:")
    monkeypatch.setattr("sys.argv", ["torture", "nosuch"])
    with pytest.raises(SystemExit):
        torture.main()
