"""Shared fixtures.  Every Kernel a test boots is run through the INVARIANTS checker when
the test ends (the kernel's INVARIANTS, on for every test)."""

from __future__ import annotations

import gzip
import os
import weakref
from pathlib import Path

import pytest

# The suite runs vm_phys's queue core compiled from the first call after boot, as long
# runs do (Kernel's default compiles after 20,000 calls: the short runs here would never
# get there); tests of the tier itself pass their own count.
os.environ.setdefault("PHYSMEM_JIT_TIER", "0")

from physmem.dragonfly.vm_page import DragonflyVm
from physmem.kernel import Kernel

DATA = Path(__file__).parent / "data"
ORACLE = DATA / "oracle"

_live: list[weakref.ref] = []
_orig_init = Kernel.__init__


def _tracking_init(self, *a, **kw):
    _orig_init(self, *a, **kw)
    _live.append(weakref.ref(self))


Kernel.__init__ = _tracking_init  # type: ignore[method-assign]

_dfly_live: list[weakref.ref] = []
_orig_dfly_init = DragonflyVm.__init__


def _dfly_tracking_init(self, *a, **kw):
    _orig_dfly_init(self, *a, **kw)
    _dfly_live.append(weakref.ref(self))


DragonflyVm.__init__ = _dfly_tracking_init  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def invariants_after_each_test(request):
    """Check every kernel the test created, once it is done with them."""
    _live.clear()
    _dfly_live.clear()
    yield
    if request.node.get_closest_marker("no_final_check"):
        return
    for ref in list(_dfly_live):
        vm = ref()
        if vm is not None:
            vm.stop_pagedaemon()
            vm.check()
    _dfly_live.clear()
    for ref in list(_live):
        k = ref()
        if k is not None and k.booted:
            k.wait_lazy_init(timeout=60)
            k.check()
    _live.clear()


def pytest_configure(config):
    config.addinivalue_line("markers", "no_final_check: skip the end-of-test invariant check")
    config.addinivalue_line("markers", "torture: long runs for make torture only")
    config.addinivalue_line("markers", "slow: slower tests")


def read_text(path: Path) -> str:
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def make_kernel(segs, avails, lazy=False, arch="amd64", tunables=None) -> Kernel:
    """A booted kernel from (start, end[, domain]) segments and (start, end) avails."""
    k = Kernel(arch)
    for s in segs:
        k.add_segment(s[0], s[1], s[2] if len(s) > 2 else 0)
    for a in avails:
        k.add_avail(*a)
    k.boot(lazy=lazy, tunables=tunables)
    return k


MB = 1 << 20
GB = 1 << 30
PAGE = 4096


def fc(mem: int, lazy: bool = False) -> Kernel:
    """The oracle's Firecracker-like map: [0x1000, 0x9f000) + [1 MiB, mem), avail from
    32 MiB."""
    return make_kernel([(0x1000, 0x9F000), (0x100000, mem)],
                       [(0x1000, 0x9F000), (0x2000000, mem)], lazy=lazy)
