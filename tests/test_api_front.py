"""The Python API as a notebook user meets it: reprs, typed errors, dir(), no backend."""

from __future__ import annotations

import subprocess
import sys

import pytest

import physmem
from physmem.dragonfly.vm_page import VM_ALLOC_NORMAL, DragonflyVm


def test_reprs_name_the_machine_in_hex_with_free_pages_and_lazy_state():
    k = physmem.kernel_for("firecracker-128m")
    assert "not booted" in repr(k) and "[0x100000, 0x8000000)" in repr(k)
    k.boot(lazy=True)
    r = repr(k)
    assert r.startswith("<Kernel firecracker-128m, booted>")
    assert f"{sum(k.free_counts):,} pages" in r and "lazy: " in r
    h = k._repr_html_()
    assert h.startswith("<table>") and "firecracker-128m" in h and "[0x1000, 0x9f000)" in h
    m = physmem.get_machine("server-96g-2dom")
    assert "NUMA domains  2" in repr(m) and "<th" in m._repr_html_()


def test_dragonfly_repr_counts_from_the_queues_not_the_lagging_vmstats():
    vm = DragonflyVm("firecracker-128m")
    free0 = vm.counts()["free"]
    obj = vm.object_create("vnode")
    m = vm.vm_page_alloc(obj, 0, VM_ALLOC_NORMAL)
    vm.vm_page_activate(m)
    vm.vm_page_wakeup(m)
    r = repr(vm)
    assert f"free              {free0 - 1:,} pages" in r
    assert "active            1 page (4 KiB)" in r and "objects           1" in r
    assert "<table>" in vm._repr_html_()


@pytest.mark.parametrize("call", [
    lambda: physmem.boot(5),
    lambda: physmem.kernel_for(None),
    lambda: physmem.Machine("x", ram=[("a", "b")]),
    lambda: physmem.Machine("x", ram=5),
    lambda: physmem.Machine(5, ram=[(0, 1 << 30)]),
    lambda: physmem.boot("firecracker-128m", tunables=5),
    lambda: physmem.boot("firecracker-128m", tunables=[5]),
    lambda: physmem.boot("firecracker-128m", tunables="debug.vm.lazy_page_init"),
    lambda: DragonflyVm(3.5),
])
def test_wrong_argument_types_raise_physmem_errors(call):
    with pytest.raises(physmem.PhysmemError):
        call()


def test_tuples_make_a_machine_and_one_string_is_one_tunable():
    m = physmem.Machine("t", ram=[(0x100000, 1 << 30), (1 << 32, 1 << 33, 0)])
    assert m.ram[1] == physmem.RamRange(1 << 32, 1 << 33, 0)
    k = physmem.boot("firecracker-128m", tunables="debug.vm.lazy_page_init=0")
    assert not k.lazy


def test_dir_shows_only_the_public_api():
    names = dir(physmem)
    assert "boot" in names and "Kernel" in names and "PhysmemError" in names
    assert not {"freebsd", "errors", "machine", "snapshot", "Iterable", "annotations"} & \
        set(names)


def test_importing_reports_leaves_the_matplotlib_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import physmem.reports, "
            "physmem.cli; print(matplotlib.get_backend())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.stdout.strip() == "svg", r.stderr


def test_page_counts_in_reprs_read_as_english():
    from physmem.reprs import fmt_pages
    assert fmt_pages(1) == "1 page (4 KiB)"
    assert fmt_pages(262144) == "262,144 pages (1 GiB)"
