"""Every oracle trace replays byte for byte.

samples/: the traces of ../shared/reference/oracle, with the output of FreeBSD's own
vm_phys.c compiled in user space.  generated/: more traces of the same kind, made with
tools/gen_oracle_traces.py on the same oracle (amd64, arm64, riscv; lazy and eager)."""

from __future__ import annotations

import io

import pytest

from physmem.trace import Replayer
from tests.conftest import ORACLE, read_text

SAMPLES = sorted(ORACLE.glob("samples/vm_phys-*.trace"))
GENERATED = sorted(ORACLE.glob("generated/*.trace.gz"))
GOLDEN = sorted((ORACLE.parent / "golden").glob("*.trace"))


def _expected(path):
    name = path.name.replace(".trace", ".expected")
    return read_text(path.with_name(name))


def _replay(text: str, check: bool = False) -> tuple[str, int]:
    out = io.StringIO()
    r = Replayer(check=check)
    errors = r.replay(io.StringIO(text), out)
    return out.getvalue(), errors


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_trace_replays_identically(path):
    got, errors = _replay(path.read_text())
    assert errors == 0
    assert got == _expected(path)


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name.removesuffix(".trace.gz"))
def test_generated_trace_replays_identically(path):
    got, errors = _replay(read_text(path))
    assert errors == 0
    assert got == _expected(path)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_trace_worked_out_by_hand(path):
    """tests/data/golden: expected output derived by hand (see each trace's comments) and
    confirmed on the oracle."""
    got, errors = _replay(path.read_text(), check=True)
    assert errors == 0
    assert got == path.with_suffix(".expected").read_text()


@pytest.mark.parametrize("name", ["vm_phys-eager-fc128m_basic", "vm_phys-lazy-fc1g_basic"])
def test_sample_trace_with_invariants_after_every_operation(name):
    path = ORACLE / "samples" / f"{name}.trace"
    got, errors = _replay(path.read_text(), check=True)
    assert errors == 0
    assert got == _expected(path)


def test_there_are_samples_of_every_kind():
    names = {p.stem for p in SAMPLES}
    assert any(n.startswith("vm_phys-eager-") for n in names)
    assert any(n.startswith("vm_phys-lazy-") for n in names)
    assert any(n.startswith("vm_phys-arm64-") for n in names)
    assert len(GENERATED) >= 30
