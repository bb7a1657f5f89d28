"""ftrace as pasted: elided pfns, hostile numbers, decimal vs hex pfns."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from physmem.cli import main
from physmem.ftrace import FtraceFormatError, FtraceImporter, import_ftrace
from physmem.machine import get_machine
from physmem.trace import Replayer

DATA = Path(__file__).parent / "data" / "ftrace"


def _body(text: str) -> list[str]:
    return [x for x in text.splitlines() if not x.startswith(("#", "seg", "avail", "boot"))]


def test_elided_pfns_wrapped_after_the_order_import_as_requests():
    out = io.StringIO()
    s = import_ftrace((DATA / "mail_elided.txt").open(), out, get_machine("firecracker-1g"))
    assert _body(out.getvalue()) == ["alloc_pages 0 default 0", "alloc_pages 0 direct 3",
                                     "alloc_pages 0 default 2"]
    assert (s.allocs, s.elided, s.frees) == (3, 3, 0)
    assert s.skipped == {"free with its pfn elided": 1}
    assert Replayer(check=True).replay(out.getvalue().splitlines(), io.StringIO()) == 0


def test_cli_summary_says_elided_allocations_cannot_be_freed(tmp_path):
    res = CliRunner().invoke(main, ["ftrace", str(DATA / "mail_elided.txt"), "-o",
                                    str(tmp_path / "t.trace")])
    assert res.exit_code == 0, res.output
    assert "pfn elided" in res.stdout and "no free can" in res.stdout


def test_decimal_pfns_are_not_read_as_hex():
    """On pc-6g pfn 1310720 (decimal) is 5 GiB, above 4 GiB; read as hex (0x1310720) it
    would be 76 GiB, outside the machine."""
    line = ("a-1 [000] .... 1.0: mm_page_alloc: page=00000000deadbeef pfn=1310720 order=0 "
            "migratetype=1 gfp_flags=GFP_KERNEL\n")
    imp = FtraceImporter(get_machine("pc-6g"))
    list(imp.convert([line]))
    assert imp.summary.outside == 0 and list(imp.live) == [1310720]
    imp = FtraceImporter(get_machine("pc-6g"))
    list(imp.convert([line.replace("pfn=1310720", "pfn=0x1310720")]))
    assert imp.summary.outside == 1


@pytest.mark.parametrize("pfn", ["\u0661\u0662\u0663", "1" * 5000, "0x" + "f" * 40,
                                 "\uff11\uff12"])
def test_hostile_pfn_numbers_are_malformed_in_one_line(pfn):
    line = (f"a-1 [000] .... 1.0: mm_page_alloc: page=0 pfn={pfn} order=0 migratetype=1 "
            "gfp_flags=GFP_KERNEL\n")
    imp = FtraceImporter(get_machine("firecracker-1g"))
    assert list(imp.convert([line])) == []
    assert imp.summary.skipped == {"malformed event line": 1}
    strict = FtraceImporter(get_machine("firecracker-1g"), strict=True)
    with pytest.raises(FtraceFormatError, match="line 1: malformed event") as ei:
        list(strict.convert([line]))
    assert "\n" not in str(ei.value) and len(str(ei.value)) < 300


def test_dev_zero_and_endless_lines_are_bounded(tmp_path):
    with open("/dev/zero", encoding="utf-8", errors="replace") as src, \
            pytest.raises(FtraceFormatError, match="line 1: binary data"):
        import_ftrace(src, io.StringIO(), get_machine("firecracker-1g"))
    text = ("x" * 200_000 + "\n" + "a-1 [000] .... 1.0: mm_page_alloc: page=0 pfn=0x2000 "
            "order=0 migratetype=1 gfp_flags=GFP_KERNEL\n")
    s = import_ftrace(io.StringIO(text), io.StringIO(), get_machine("firecracker-1g"))
    assert (s.allocs, s.lines, s.other_lines) == (1, 2, 1)
    res = CliRunner().invoke(main, ["ftrace", "/dev/zero", "-o", str(tmp_path / "t")])
    assert res.exit_code == 2 and res.output.count("\n") == 1
