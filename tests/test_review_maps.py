"""Fresh captures of the kinds issue 14 names (written for the review, not taken from the
other map tests) under every kind of paste debris: each usable range, the architecture and
phys_avail survive."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from physmem.mapimport import import_map

MAPS = Path(__file__).parent / "data" / "maps" / "review"
G = 1 << 30

EXPECTED = {
    "desk.iomem": ("amd64", [(0x1000, 0xa0000), (0x100000, 0x9c00000), (0xa000000, 0xa200000),
                             (0xa20d000, 0xb000000), (0xb020000, 0xb7b2b000),
                             (0xb7b2c000, 0xb9e6d000), (0xb9e6e000, 0xbae08000),
                             (0xbcfff000, 0xbe000000), (4 * G, 0x83f380000)]),
    "e820.journal": ("amd64", [(0x0, 0x9f000), (0x100000, 0x7ffdb000), (4 * G, 6 * G)]),
    "e820new-T.dmesg": ("amd64", [(0x0, 0xa0000), (0x100000, 0x9c00000),
                                  (0xa000000, 0xb7b2b000), (0xbcfff000, 0xbe000000),
                                  (4 * G, 0x83f380000)]),
    "e820old.syslog": ("amd64", [(0x0, 0x9f800), (0x100000, 0xbfee0000), (4 * G, 5 * G)]),
    "fbsd-arm64.boot": ("arm64", [(0x200000, 0xf0000000), (0xf2000000, 0xf4c78000)]),
    "fbsd-verbose.boot": ("amd64", [(0x0, 0x9fc00), (0x100000, 0xbffdf000), (4 * G, 9 * G)]),
    "laptop.iomem": ("amd64", [(0x1000, 0x9f000), (0x100000, 0x40000000),
                               (0x40400000, 0x6ad2d000), (0x6ad2f000, 0x7a3e5000),
                               (0x7c4ff000, 0x7c500000), (4 * G, 0x47f800000)]),
    "rk3399.iomem": ("arm64", [(0x200000, 0xf8000000)]),
    "server2s.iomem": ("amd64", [(0x1000, 0x9c000), (0x100000, 0x5a3d3000),
                                 (0x6ebff000, 0x70000000), (4 * G, 0x8080000000)]),
    "sysctl.smap": ("amd64", [(0x0, 0x9f000), (0x100000, 0x7fffe000), (4 * G, 6 * G)]),
    "vf2.iomem": ("riscv", [(0x42000000, 0x200000000)]),
    # a Xen guest prints the hypervisor's map as "Xen: [mem ...]" instead of "BIOS-e820:"
    "xen-guest.dmesg": ("amd64", [(0x0, 0xa0000), (0x100000, 0xf0000000),
                                  (4 * G, 0x210000000)]),
    # FreeBSD booted by UEFI prints no SMAP lines: its chunks alone, in amd64's format
    "fbsd-uefi-amd64.boot": ("amd64", [(0x1000, 0xa0000), (0x100000, 0x200000),
                                       (0x4c00000, 0x73f3f000), (4 * G, 0x47f800000)]),
}


def _qp(text: str) -> str:
    """Quoted-printable as a mailer writes it: '=' as =3D, soft breaks at 76 columns."""
    out = []
    for line in text.split("\n"):
        line = line.replace("=", "=3D")
        while len(line) > 75:
            cut = 75
            if "=" in line[cut - 2:cut]:
                cut = line.rfind("=", 0, cut)
            out.append(line[:cut] + "=")
            line = line[cut:]
        out.append(line)
    return "\n".join(out)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _wrap(t: str, width: int, prefix: str = "") -> str:
    return "\n".join(prefix + x for line in t.split("\n")
                     for x in (textwrap.wrap(line, width, break_long_words=False) or [""]))


DEBRIS = {
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "bom": lambda t: "\ufeff" + t,
    "bom+crlf": lambda t: "\ufeff" + t.replace("\n", "\r\n"),
    "tab indent": lambda t: "\n".join("\t" + line for line in t.split("\n")),
    "markdown indent": lambda t: "my map:\n\n" + "\n".join("    " + x for x in t.split("\n")),
    "code fence": lambda t: "My machine:\n```text\n" + t + "\n```\nAny idea?\n",
    "quoted twice": lambda t: "\n".join("> > " + x for x in t.split("\n")),
    "quoted without space": lambda t: "\n".join(">" + x for x in t.split("\n")),
    "<br> lines": lambda t: "<html><body>" + "".join(_esc(x) + "<br>\n" for x in t.split("\n")),
    "<br /> on one line": lambda t: "<p>" + "<br />".join(_esc(x) for x in t.split("\n")),
    "<pre>": lambda t: "<div class=post><pre><code>" + _esc(t) + "</code></pre></div>",
    "&nbsp;": lambda t: "<br>".join(_esc(x).replace("  ", "&nbsp;&nbsp;") for x in t.split("\n")),
    "raw no-break spaces": lambda t: t.replace(" ", "\u00a0"),
    "zero-width spaces": lambda t: t.replace(" : ", "\u200b : "),
    "MIME headers": lambda t: ("Content-Type: text/plain; charset=us-ascii\n"
                               "Content-Disposition: attachment; filename=\"map.txt\"\n\n" + t),
    "quoted-printable with header": lambda t: ("Content-Transfer-Encoding: quoted-printable\n\n"
                                               + _qp(t)),
    "quoted-printable alone": _qp,
    "quoted-printable, quoted, CRLF": lambda t: "\n".join(
        "> " + x for x in _qp(t).split("\n")).replace("\n", "\r\n"),
    "signature": lambda t: t + "\n\n-- \nJohn Doe\nSent from my phone\n",
    "trailing spaces": lambda t: "\n".join(x + "   " for x in t.split("\n")),
    "wrapped at 72": lambda t: _wrap(t, 72),
    "wrapped at 60": lambda t: _wrap(t, 60),
    "quoted and wrapped": lambda t: _wrap(t, 70, "> "),
    "syslog prefix in HTML": lambda t: "".join("Dec  5 10:11:02 host kernel: " + _esc(x) + "<br>"
                                               for x in t.split("\n")),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fresh_captures_import_under_every_kind_of_debris(name):
    arch, ram = EXPECTED[name]
    text = (MAPS / name).read_text()
    base = import_map(text, source=name)
    assert (base.arch, [(r.start, r.end) for r in base.ram]) == (arch, ram)
    failed = []
    for what, mangle in DEBRIS.items():
        m = import_map(mangle(text), source=name)
        if (m.arch, m.ram, m.avail_override) != (base.arch, base.ram, base.avail_override):
            failed.append(what)
    assert failed == []


def test_the_architecture_line_names_the_format_once():
    from click.testing import CliRunner

    from physmem.cli import main
    res = CliRunner().invoke(main, ["sysctl", "vm.phys_segs", "-m", str(MAPS / "vf2.iomem")])
    line = next(x for x in res.output.splitlines() if x.startswith("machine "))
    assert "riscv (" in line and line.endswith("1 RAM segment(s) from Linux /proc/iomem")
