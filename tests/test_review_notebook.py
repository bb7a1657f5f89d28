"""The README's Python examples in a real Jupyter kernel (skipped where nbclient or
ipykernel is not installed), and the calls a notebook user writes first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import physmem


def test_a_machine_from_ram_alone_as_the_issue_writes_it():
    m = physmem.Machine(ram=[(0x100000, 0x8000000, 0)])
    assert [(r.start, r.end, r.domain) for r in m.ram] == [(0x100000, 0x8000000, 0)]
    assert physmem.boot(m).free_count(0) > 0
    with pytest.raises(physmem.MapFormatError, match="no RAM"):
        physmem.Machine()


def test_readme_examples_in_a_jupyter_kernel():
    nbformat = pytest.importorskip("nbformat", reason="nbformat not installed")
    nbclient = pytest.importorskip("nbclient", reason="nbclient not installed")
    pytest.importorskip("ipykernel", reason="ipykernel not installed")
    from jupyter_client.kernelspec import NoSuchKernel
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    cells = [nbformat.v4.new_code_cell("%matplotlib inline")] + [
        nbformat.v4.new_code_cell(b) for b in blocks] + [
        nbformat.v4.new_code_cell("import matplotlib, physmem.reports\n"
                                  "print(matplotlib.get_backend())"),
        nbformat.v4.new_code_cell("k")]
    nb = nbformat.v4.new_notebook(cells=cells)
    try:
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    except NoSuchKernel:
        pytest.skip("no python3 Jupyter kernel registered")
    outs = [o for c in nb.cells for o in c.outputs]
    assert not [o for o in outs if o.output_type == "error"]
    shown = [o.data for o in outs if o.output_type == "execute_result"]
    assert any("DragonflyVm" in d["text/html"] for d in shown)      # the README's `vm`
    assert "<table>" in shown[-1]["text/html"] and "0x" in shown[-1]["text/html"]
    printed = "".join(o.text for o in outs if o.output_type == "stream")
    assert "vm.phys_free" in printed or "FREE LIST" in printed
    assert "inline" in printed.splitlines()[-1]      # physmem.reports left the backend alone
