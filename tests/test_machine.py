"""Machine descriptions: presets, the phys_avail rule, TOML files and map importers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import physmem
from physmem import errors as E
from physmem.cli import main
from physmem.machine import PRESETS, Machine, RamRange, machine_from_toml, machine_to_toml
from physmem.mapimport import detect_format, import_map
from tests.conftest import DATA, GB, MB

PC8G_SEGS = [(0x1000, 0x9F000, 0), (0x100000, 0x7FFDC000, 0), (0x100000000, 0x280000000, 0)]


@pytest.mark.parametrize("name,fmt", [("pc8g.iomem", "iomem"), ("pc8g.dmesg", "e820"),
                                      ("pc8g.smap", "smap")])
def test_the_three_formats_of_one_pc_give_the_same_segments(name, fmt):
    text = (DATA / "maps" / name).read_text()
    assert detect_format(text) == fmt
    m = import_map(text, name="pc8g")
    assert m.segments() == PC8G_SEGS


def test_sysctl_smap_format():
    m = import_map((DATA / "maps" / "sysctl.smap").read_text())
    assert m.segments() == PC8G_SEGS[:2]


def test_unaligned_edges_are_rounded_inward_and_adjacent_ranges_merged():
    text = ("[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n"
            "[    0.000000] BIOS-e820: [mem 0x0000000000100800-0x00000000001fffff] usable\n"
            "[    0.000000] BIOS-e820: [mem 0x0000000000200000-0x00000000003ff7ff] usable\n")
    m = import_map(text)
    # 0x100800 rounds up to 0x101000; 0x3ff800 (exclusive) rounds down to 0x3ff000;
    # [0x100800, 0x200000) and [0x200000, 0x3ff800) are one range.
    assert m.segments() == [(0x1000, 0x9F000, 0), (0x101000, 0x3FF000, 0)]


def test_old_style_e820_lines_have_exclusive_ends():
    text = (" BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)\n"
            " BIOS-e820: 0000000000100000 - 0000000020000000 (usable)\n"
            " BIOS-e820: 00000000fffc0000 - 0000000100000000 (reserved)\n")
    assert import_map(text).segments() == [(0x1000, 0x9F000, 0), (0x100000, 0x20000000, 0)]


def test_user_defined_e820_map_wins():
    text = ("BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable\n"
            "user-defined physical RAM map:\n"
            "user: [mem 0x0000000000100000-0x000000003fffffff] usable\n")
    assert import_map(text).segments() == [(0x100000, 0x40000000, 0)]


def test_iomem_read_without_privilege_is_refused():
    text = "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n"
    with pytest.raises(E.MapFormatError, match="root"):
        import_map(text)


def test_iomem_nested_system_ram_counts_once():
    text = ("00100000-3fffffff : System RAM\n"
            "  00200000-002fffff : System RAM\n"
            "40000000-4fffffff : Reserved\n")
    assert import_map(text).segments() == [(0x100000, 0x40000000, 0)]


@pytest.mark.parametrize("text,msg", [
    ("hello world\n", "no memory map"),
    ("", "no memory map"),
    ("BIOS-e820: [mem 0x00000000000fffff-0x0000000000000000] usable\n", "line 1"),
    ("x\nBIOS-e820: [mem 0xzz-0x10] usable\n", "line 2"),
    ("SMAP type=01 base=zz len=10\n", "line 1"),
    ("00001000-0009fbff : Reserved\n", "no usable RAM"),
])
def test_malformed_maps_are_refused_with_line_numbers(text, msg):
    with pytest.raises(E.MapFormatError, match=msg):
        import_map(text)


def test_phys_avail_rule_on_the_firecracker_presets_matches_the_oracle_maps():
    m = PRESETS["firecracker-128m"]
    assert m.segments() == [(0x1000, 0x9F000, 0), (0x100000, 0x8000000, 0)]
    assert m.phys_avail() == [(0x1000, 0x9F000), (0x2000000, 0x8000000)]
    m = PRESETS["firecracker-1g"]
    assert m.phys_avail() == [(0x1000, 0x9F000), (0x2000000, 0x40000000)]


def test_firecracker_guests_above_the_mmio_gap_continue_at_4g():
    m = PRESETS["firecracker-64g"]
    assert m.segments()[-1][0] == 4 * GB
    assert m.ram_bytes() == 64 * GB - 0x1000 - (0x100000 - 0x9F000)


def test_page_array_is_carved_from_the_top_of_each_domain():
    m = PRESETS["server-96g-2dom"]
    avail = m.phys_avail()
    segs = m.segments()
    pages = sum(e - s for s, e, _ in segs) // 4096
    reserved = sum(e - s for s, e, _ in segs) - sum(e - s for s, e in avail)
    kernel = 0x2000000 - 0x100000
    assert reserved - kernel - 0x1000 >= pages * 104       # the whole page array
    assert avail[-1][1] < segs[-1][1]                      # taken from the top of domain 1


def test_server_96g_has_two_domains_and_a_dma32_list():
    k = physmem.boot("server-96g-2dom", lazy=True)
    assert k.phys.ndomains == 2
    assert k.phys.nfreelists == 3
    assert k.free_count(0) > 0 and k.free_count(1) > 0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_boots_lazily_or_eagerly(name):
    if name == "server-1t":
        pytest.skip("covered by the lazy-boot tests (eager 1 TiB is a benchmark)")
    m = PRESETS[name]
    assert m.source, "every preset documents where its numbers come from"
    k = physmem.boot(m, lazy=False)
    assert sum(k.free_counts) == sum(
        e - s for s, e in m.phys_avail()) // 4096


def test_toml_round_trip_and_explicit_phys_avail(tmp_path):
    m = Machine("t", [RamRange(0, 0x9FC00), RamRange(0x100000, 256 * MB)],
                kernel=(0x100000, 0x1000000), page_array="none",
                avail_override=[(0x1000, 0x9F000), (0x1000000, 256 * MB)])
    text = machine_to_toml(m)
    m2 = machine_from_toml(text)
    assert m2.segments() == m.segments() and m2.phys_avail() == m.phys_avail()
    p = tmp_path / "t.toml"
    p.write_text(text)
    k = physmem.boot(str(p), lazy=False)
    assert k.free_count(0) == (0x9F000 - 0x1000 + 256 * MB - 0x1000000) // 4096


@pytest.mark.parametrize("text,cls", [
    ("ram = [[0, 0x1000000, 0]\n", E.MapFormatError),                  # TOML syntax
    ("name = 'x'\n", E.MapFormatError),                                # no ram
    ("ram = [[0, 0x1000000, 0]]\nbogus = 1\n", E.MapFormatError),       # typo'd key
    ("ram = [[0x2000000, 0x1000000, 0]]\n", E.SegmentError),            # inverted
    ("ram = [[0, 0x2000000, 0], [0x1000000, 0x3000000, 0]]\n", E.SegmentError),
    ("ram = [[0, 0x2000000, 1]]\n", E.SegmentError),                   # domains not 0..n-1
    ("ram = [[0, 0x2000000, 0]]\narch = 'vax'\n", E.ArchError),
    ("ram = [[0, 0x2000000, 0]]\nphys_avail = [[0x1000, 0x1800]]\n", E.MapFormatError),
    ("ram = [['a', 'b']]\n", E.MapFormatError),
])
def test_bad_toml_machines(text, cls):
    with pytest.raises(cls):
        machine_from_toml(text)


def test_binary_garbage_file_is_refused(tmp_path):
    p = tmp_path / "garbage.bin"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(E.MapFormatError, match="binary"):
        physmem.get_machine(str(p))


def test_cli_machine_show_prints_segments_free_lists_and_sizes():
    res = CliRunner().invoke(main, ["machine", "show", "pc-6g"])
    assert res.exit_code == 0, res.output
    for text in ("0x100000000", "0x1c0000000", "LOWMEM", "DEFAULT", "phys_avail", "GiB"):
        assert text in res.output


def test_cli_machine_show_reads_a_map_file():
    res = CliRunner().invoke(main, ["machine", "show", str(DATA / "maps" / "pc8g.dmesg")])
    assert res.exit_code == 0, res.output
    assert "0x7ffdc000" in res.output


def test_cli_sysctl_prints_like_sysctl8():
    res = CliRunner().invoke(main, ["sysctl", "vm.phys_segs", "--machine", "firecracker-128m"])
    assert res.exit_code == 0
    assert res.output.startswith("vm.phys_segs: \nSEGMENT 0:\n\nstart:     0x1000\n")
    res = CliRunner().invoke(main, ["sysctl", "debug.vm.lazy_page_init",
                                    "--tunable", "debug.vm.lazy_page_init=0"])
    assert res.output == "debug.vm.lazy_page_init: 0\n"
