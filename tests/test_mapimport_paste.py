"""Memory maps as people paste them: web pages, mails, forums; new formats; --arch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import physmem.errors as E
from physmem import Kernel
from physmem.cli import main
from physmem.machine import get_machine, machine_from_toml, machine_to_toml
from physmem.mapimport import import_map

MAPS = Path(__file__).parent / "data" / "maps"
G = 1 << 30

# file -> (arch, usable RAM ranges [start, end) as the map states them)
PASTED = {
    "laptop-e820-br.html": ("amd64", [(0, 0x9D800), (0x100000, 0xC9B3F000),
                                      (0xCAEFF000, 0xCAF00000), (4 * G, 0x12F600000)]),
    "desktop-e820-qp.eml": ("amd64", [(0, 0x58000), (0x59000, 0x9F000), (0x100000, 0x7A3C7000),
                                      (0x7A3C9000, 0x8A88E000), (0x8CFFF000, 0x8D000000),
                                      (4 * G, 0x26F000000)]),
    "laptop-e820-new.dmesg": ("amd64", [(0, 0x9F000), (0x100000, 0x9B00000),
                                        (0x9E00000, 0x9F00000), (0x9F3C000, 0x6C2CE000),
                                        (0x6F5CE000, 0x7C000000), (4 * G, 0x47E300000)]),
    "workstation-iomem.mime": ("amd64", [(0x1000, 0x9F000), (0x100000, 0x5D1B1000),
                                         (0x5D1B2000, 0x6EA3B000), (0x71AFF000, 0x71B00000),
                                         (4 * G, 0x88F000000)]),
    "nuc-iomem-indented.md": ("amd64", [(0x1000, 0x9F000), (0x100000, 0x5D1B1000)]),
    "rpi4-8g.iomem": ("arm64", [(0, 0x3B400000), (0x40000000, 0xFC000000), (4 * G, 8 * G)]),
    "freebsd-amd64-verbose.boot": ("amd64", [(0, 0x9C000), (0x100000, 0xB7F5F000),
                                             (0xB8356000, 0xBA200000), (4 * G, 0x448000000)]),
    "freebsd-loader-smap.txt": ("amd64", [(0, 0x9C000), (0x100000, 0xB7F5F000),
                                          (0xB8356000, 0xBA200000), (4 * G, 0x448000000)]),
    "freebsd-arm64-chunks.boot": ("arm64", [(0x40000000, 0x40100000),
                                            (0x41C1E000, 0x13E780000),
                                            (0x13FFF0000, 0x140000000)]),
}


@pytest.mark.parametrize("name", sorted(PASTED))
def test_pasted_maps_import_with_every_usable_range(name):
    arch, ram = PASTED[name]
    m = get_machine(str(MAPS / name))
    assert m.arch == arch
    assert [(r.start, r.end) for r in m.ram] == ram
    assert m.extra["arch_reason"]


def test_the_wrapped_and_quoted_printable_mails_read_as_the_same_map():
    qp = get_machine(str(MAPS / "desktop-e820-qp.eml"))
    wrapped = get_machine(str(MAPS / "desktop-e820-wrapped.txt"))
    assert qp.ram == wrapped.ram


def test_freebsd_chunks_are_the_phys_avail_over_the_smap_ram():
    m = get_machine(str(MAPS / "freebsd-amd64-verbose.boot"))
    k = Kernel.from_machine(m)
    assert k.phys_avail == [(0x10000, 0x9C000), (0x2D47000, 0xB7F5F000),
                            (0xB8356000, 0xBA200000), (4 * G, 0x43D3AA000)]
    k.boot(lazy=True)
    k.check()


def test_a_chunk_whose_counts_do_not_add_up_is_refused():
    text = ("Physical memory chunk(s):\n"
            "0x0000000000010000 - 0x000000000009bfff, 573440 bytes (141 pages)\n")
    with pytest.raises(E.MapFormatError, match=r"line 2: memory chunk .* does not add up"):
        import_map(text)


def test_rpi4_is_arm64_without_the_amd64_lowmem_list():
    k = Kernel.from_machine(get_machine(str(MAPS / "rpi4-8g.iomem")))
    k.boot(lazy=True)
    assert "lowmem" not in k.param.freelist_names()
    assert k.phys_avail[0][0] == 0x1000 or k.phys_avail[0][0] == 0
    assert all(s.start != 0x1000000 for s in k.phys.segs)     # no cut at 16 MiB


def test_arm64_server_fits_arm64s_physseg_max_but_not_amd64s():
    path = str(MAPS / "arm64-server-fragmented.iomem")
    m = get_machine(path)
    assert m.arch == "arm64" and len(m.segments()) == 63
    k = Kernel.from_machine(m)
    k.boot(lazy=True)
    assert len(k.phys.segs) == 64          # one fragment split at 4 GiB (DMA32)
    with pytest.raises(E.MapFormatError, match=r"VM_PHYSSEG_MAX 63 .*arm64"):
        get_machine(path, "amd64")


def test_arch_can_be_forced_on_a_map_but_not_changed_on_a_preset():
    m = get_machine(str(MAPS / "rpi4-8g.iomem"), "amd64")
    assert m.arch == "amd64"
    assert get_machine(str(MAPS / "rpi4-8g.iomem") + "?arch=riscv").arch == "riscv"
    with pytest.raises(E.ArchError, match=r"firecracker-1g.* is amd64"):
        get_machine("firecracker-1g", "arm64")


def test_nothing_parses_names_the_formats_and_the_first_map_like_line():
    text = "Hello,\nmy map:\n  BIOS-e820 [mem 0x0-0x9fbff] usable\nthanks\n"
    with pytest.raises(E.MapFormatError) as ei:
        import_map(text)
    msg = str(ei.value)
    assert "/proc/iomem" in msg and "e820" in msg and "SMAP" in msg and "chunk" in msg
    assert "line 3" in msg and "BIOS-e820 [mem" in msg and "'BIOS-e820: [mem 0x" in msg


def test_toml_is_tried_for_toml_files_and_when_no_map_matches(tmp_path):
    f = tmp_path / "m.txt"
    f.write_text('name = "x"\nram = [[0x100000, 0x10000000, 0]]\n')
    assert get_machine(str(f)).name == "x"
    g = tmp_path / "mail.txt"       # MIME headers with '=' are not TOML
    g.write_text('Content-Type: text/plain; charset="us-ascii"\n\n'
                 "00100000-0fffffff : System RAM\n")
    assert get_machine(str(g)).ram[0].start == 0x100000


def test_machine_show_toml_round_trips(tmp_path):
    for src in ("rpi4-8g.iomem", "freebsd-amd64-verbose.boot"):
        res = CliRunner().invoke(main, ["machine", "show", str(MAPS / src), "--toml"])
        assert res.exit_code == 0, res.output
        m0 = get_machine(str(MAPS / src))
        m1 = machine_from_toml(res.stdout)
        assert (m1.arch, m1.ram, m1.phys_avail(), m1.segments()) == \
            (m0.arch, m0.ram, m0.phys_avail(), m0.segments())
    m = machine_from_toml(machine_to_toml(get_machine("server-96g-2dom")))
    assert m.ndomains() == 2 and m.cpus == "2x12x2"


def test_machine_show_reads_standard_input():
    text = (MAPS / "rpi4-8g.iomem").read_text()
    res = CliRunner().invoke(main, ["machine", "show", "-"], input=text)
    assert res.exit_code == 0, res.output
    assert "(arm64)" in res.stdout and "device-tree" in res.stdout


def test_every_machine_command_takes_arch_and_says_what_it_chose():
    path = str(MAPS / "rpi4-8g.iomem")
    res = CliRunner().invoke(main, ["sysctl", "vm.phys_segs", "--machine", path])
    assert res.exit_code == 0 and "arm64 (device-tree" in res.stderr
    res = CliRunner().invoke(main, ["sysctl", "vm.phys_segs", "--machine", path,
                                    "--arch", "amd64"])
    assert res.exit_code == 0 and "amd64 (given)" in res.stderr
    assert "start:     0x1000\n" in res.stdout        # amd64 leaves page 0 out
    for cmd in (["boot"], ["contig", "--npages", "1"], ["demo"], ["run", "churn"],
                ["compare", "churn"], ["ftrace", "x", "-o", "y"], ["ddb", "show", "page"],
                ["dfly", "run", "anon"]):
        res = CliRunner().invoke(main, [*cmd, "--help"])
        assert "--arch" in res.stdout, cmd


# -- bounded, linear parsing of hostile input (issue 15) --------------------------------
def test_a_hundred_thousand_ram_lines_are_refused_at_the_phys_avail_bound():
    text = "".join(f"{i * 0x2000:08x}-{i * 0x2000 + 0xfff:08x} : System RAM\n"
                   for i in range(100_000))
    with pytest.raises(E.MapFormatError, match="line 129: more than 128 RAM entries"):
        import_map(text)
    smap = "".join(f"SMAP type=01 base={i * 0x2000:016x} len=0000000000001000\n"
                   for i in range(100_000))
    with pytest.raises(E.MapFormatError, match="VM_PHYSSEG_MAX"):
        import_map(smap)


@pytest.mark.parametrize("text", [
    "0" * 50_000 + "\n",                               # skipped: longer than a map line
    "1" * 4000 + " : System RAM\n",
    "BIOS-e820: [mem 0x" + "f" * 4000 + "\n",
    "SMAP type=01 base=" + "0" * 4000 + "\n",
    "0x" + "0" * 4000 + " - 0x" + "\n",
])
def test_long_hex_lines_fail_with_one_line_not_backtracking(text):
    with pytest.raises(E.MapFormatError) as ei:
        import_map(text)
    assert "\n" not in str(ei.value) and len(str(ei.value)) < 600


@pytest.mark.parametrize("digits,msg", [(1000, "line 2: the byte count has 1,000 digits"),
                                        (5000, "longer than 4096 characters were skipped")])
def test_huge_decimal_numbers_give_one_line(digits, msg):
    text = ("Physical memory chunk(s):\n0x0000000000010000 - 0x000000000009bfff, "
            + "9" * digits + " bytes (139 pages)\n")
    with pytest.raises(E.MapFormatError, match=msg) as ei:
        import_map(text)
    assert "\n" not in str(ei.value)


def test_dev_zero_and_huge_files_are_not_maps(tmp_path):
    with pytest.raises(E.MapFormatError, match="binary data"):
        get_machine("/dev/zero")
    big = tmp_path / "big.map"
    big.write_bytes(b"# padding\n" * (1 << 20))
    with pytest.raises(E.MapFormatError, match="larger than 8 MiB"):
        get_machine(str(big))


def test_machine_show_of_dev_zero_is_one_line():
    r = subprocess.run([sys.executable, "-m", "physmem.cli", "machine", "show", "/dev/zero"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_a_pc_map_cut_to_its_ram_lines_stays_amd64():
    text = ("00001000-0009fbff : System RAM\n00100000-7ffdbfff : System RAM\n"
            "  1a000000-1ae02b1f : Kernel code\n100000000-27fffffff : System RAM\n")
    assert import_map(text).arch == "amd64"
    assert import_map(text.replace("00001000-0009fbff : System RAM\n", "")).arch == "arm64"


def test_a_bad_entry_is_not_mended_with_the_next_lines_entry():
    text = ("BIOS-e820: [mem 0xzz-0x10] usable\n"
            "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable\n")
    with pytest.raises(E.MapFormatError, match="line 1: unreadable e820 entry"):
        import_map(text)


def _indent(t: str) -> str:
    return "".join("    " + ln + "\n" for ln in t.splitlines())


def _fence(t: str) -> str:
    return "Here it is:\n```\n" + t + "```\nthanks\n"


def _quote(t: str) -> str:
    return "On Monday you wrote:\n" + "".join("> " + ln + "\n" for ln in t.splitlines())


def _html(t: str) -> str:
    import html
    return ("<html><body><p>My map:</p><div>" +
            "".join(html.escape(ln).replace(" ", "&nbsp;", 1) + "<br>\n"
                    for ln in t.splitlines()) + "</div></body></html>\n")


def _qp(t: str) -> str:
    import quopri
    return ("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: "
            "quoted-printable\n\n" + quopri.encodestring(t.encode()).decode())


DEBRIS = [_indent, _fence, _quote, _html, _qp]


@pytest.mark.parametrize("name", ["pc8g.iomem", "pc8g.dmesg", "pc8g.smap", "rpi4-8g.iomem"])
@pytest.mark.parametrize("mask", range(1, 32))
def test_any_combination_of_paste_debris_keeps_the_map(name, mask):
    clean = (MAPS / name).read_text()
    text = clean
    for i, f in enumerate(DEBRIS):
        if mask >> i & 1:
            text = f(text)
    got, want = import_map(text), import_map(clean)
    assert (got.ram, got.arch) == (want.ram, want.arch), text[:300]


def test_e820_lines_with_a_size_column_read_as_without():
    text = ("BIOS-e820: [mem 0x0000000000000000-0x000000000009efff]  636 KB System RAM\n"
            "BIOS-e820: [gap 0x000000000009f000-0x00000000000fffff]  388 KB\n"
            "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff]    2.0 GB System RAM\n"
            "BIOS-e820: [mem 0x0000000080000000-0x00000000803fffff]    4 MB device reserved\n")
    assert [(r.start, r.end) for r in import_map(text).ram] == [(0, 0x9F000),
                                                                (0x100000, 0x80000000)]
