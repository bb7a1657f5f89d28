"""Every DragonFly page-layer oracle trace replays line for line.

tests/data/dfly-oracle: traces answered by DragonFly's own vm_page.c, subr_alist.c and
vm_quickcolor() compiled in user space (../shared/dfly-oracle): its two samples, its stock
traces and ours (tools/gen_dfly_traces.py).  Traces name their machine files by bare name,
so they replay with that folder as the working directory."""

from __future__ import annotations

import io

import pytest

from physmem.trace import Replayer
from tests.conftest import DATA, read_text

DFLY = DATA / "dfly-oracle"
TRACES = sorted(DFLY.glob("*.trace.gz"))


def _replay(path, check: bool = False) -> tuple[str, int]:
    out = io.StringIO()
    errors = Replayer(check=check).replay(io.StringIO(read_text(path)), out)
    return out.getvalue(), errors


def test_the_oracle_traces_are_there():
    names = {p.name.removesuffix(".trace.gz") for p in TRACES}
    assert len(names) >= 40
    # the samples, 1-, 2- and 4-socket machines, the vm_page_sbusy_drop operation
    assert {"dfly-objects", "dfly-dma-default", "numa1g_2x2_obj", "d_numa1g4s_4x2x2_mixed",
            "fc128m_1x2_sbusydrop", "d_odd200m_2x2_dma1m"} <= names


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name.removesuffix(".trace.gz"))
def test_dfly_oracle_trace_replays_identically(path, monkeypatch):
    monkeypatch.chdir(DFLY)
    got, errors = _replay(path)
    assert errors == 0
    want = read_text(path.with_name(path.name.replace(".trace.gz", ".expected.gz")))
    assert got.splitlines() == want.splitlines()


@pytest.mark.parametrize("name", ["dfly-objects", "d_numa48m_2x2_exhaust"])
def test_dfly_oracle_trace_with_invariants_after_every_operation(name, monkeypatch):
    monkeypatch.chdir(DFLY)
    path = DFLY / f"{name}.trace.gz"
    got, errors = _replay(path, check=True)
    assert errors == 0
    assert got == read_text(DFLY / f"{name}.expected.gz")
