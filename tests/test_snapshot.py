"""Snapshots: round trips, refusal of corrupt, foreign and newer files, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

import physmem
from physmem import snapshot
from physmem.atomic import atomic_write
from physmem.cli import main
from tests.conftest import ORACLE


def busy_kernel(lazy=True, machine="firecracker-128m"):
    k = physmem.boot(machine, lazy=lazy)
    pas = [k.alloc_pages(0, "default" if i % 3 else "direct", i % 6) for i in range(60)]
    for pa in pas[::3]:
        k.free_pages(pa, pas.index(pa) % 6)
    k.unfree_page(0x7000000)
    return k


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("machine", ["firecracker-128m", "server-96g-2dom", "rpi4-8g",
                                     "qemu-virt-riscv-1g"])
def test_round_trip_keeps_the_state_and_its_future(tmp_path, lazy, machine):
    if lazy and machine == "qemu-virt-riscv-1g":
        pytest.skip("riscv has no lazy boot")
    k = physmem.boot(machine, lazy=lazy)
    for i in range(40):
        k.alloc_pages(i % k.phys.ndomains, "default", i % 5)
    p = tmp_path / "s.npz"
    physmem.save_snapshot(k, p)
    k2 = physmem.load_snapshot(p)
    assert k2.digest() == k.digest()
    assert k2.sysctl("vm.phys_free") == k.sysctl("vm.phys_free")
    assert k2.stats == k.stats
    # the same requests give the same pages afterwards
    for i in range(30):
        assert k.alloc_pages(0, "direct", i % 4) == k2.alloc_pages(0, "direct", i % 4)
    if lazy:
        k.lazy_init()
        k2.lazy_init()
    assert k2.digest() == k.digest()


def test_snapshot_cli_round_trip_through_replay(tmp_path):
    trace = ORACLE / "samples" / "vm_phys-lazy-rand_fc128m_2k_small.trace"
    lines = trace.read_text().splitlines(True)
    head, tail = lines[:900], lines[900:]
    (tmp_path / "head.trace").write_text("".join(head))
    (tmp_path / "tail.trace").write_text("".join(tail))
    r = CliRunner()
    a = r.invoke(main, ["replay", str(tmp_path / "head.trace"), "--save",
                        str(tmp_path / "mid.npz")])
    assert a.exit_code == 0
    b = r.invoke(main, ["replay", str(tmp_path / "tail.trace"), "--load",
                        str(tmp_path / "mid.npz")])
    assert b.exit_code == 0
    assert a.output + b.output == trace.with_suffix(".expected").read_text()
    c = r.invoke(main, ["snapshot", "show", str(tmp_path / "mid.npz")])
    assert c.exit_code == 0 and "INVARIANTS ok" in c.output


def _write_zip(path, arrays):
    with zipfile.ZipFile(path, "w") as z:
        for name, a in arrays.items():
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, a)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign", "newer",
                                    "no-meta", "bad-words"])
def test_damaged_snapshots_are_refused(tmp_path, damage):
    k = busy_kernel()
    p = tmp_path / "s.npz"
    physmem.save_snapshot(k, p)
    data = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        p.write_bytes(os.urandom(4096))
    elif damage == "empty":
        p.write_bytes(b"")
    else:
        with np.load(p) as z:
            arrays = {n: z[n] for n in z.files}
        meta = json.loads(bytes(arrays["meta"]).decode())
        if damage == "foreign":
            meta["format"] = "something-else"
        elif damage == "newer":
            meta["version"] = snapshot.VERSION + 1
        elif damage == "no-meta":
            del arrays["meta"]
        elif damage == "bad-words":
            arrays["words1"] = arrays["words1"][:-1]
        if "meta" in arrays:
            arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        _write_zip(p, arrays)
    with pytest.raises(physmem.SnapshotError) as e:
        physmem.load_snapshot(p)
    if damage == "newer":
        assert "newer" in str(e.value)


def test_inconsistent_queues_fail_the_invariants_and_are_refused(tmp_path):
    k = busy_kernel(lazy=False)
    p = tmp_path / "s.npz"
    physmem.save_snapshot(k, p)
    with np.load(p) as z:
        arrays = {n: z[n] for n in z.files}
    arrays["queue_heads"] = arrays["queue_heads"].copy()
    arrays["queue_heads"][0] += 1          # a head that is not aligned, overlapping
    _write_zip(p, arrays)
    with pytest.raises(physmem.SnapshotError, match="inconsistent"):
        physmem.load_snapshot(p)


def test_unsupported_states_are_refused_before_writing(tmp_path):
    k = busy_kernel()
    k.attach_extent_mirror()
    p = tmp_path / "s.npz"
    with pytest.raises(physmem.SnapshotError):
        physmem.save_snapshot(k, p)
    assert not p.exists()


def test_atomic_write_leaves_the_old_file_on_error(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(p) as f:
        f.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]
    with atomic_write(p) as f:
        f.write(b"new")
    assert p.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask      # not mkstemp's 0600


def test_ctrl_c_during_a_save_leaves_the_file_complete_or_absent(tmp_path):
    """SIGINT a process that saves snapshots of a large machine in a loop: whenever it
    stops, the file is absent or a loadable snapshot, never a torn one."""
    out = tmp_path / "big.npz"
    # A shell's background job inherits SIGINT ignored, and Python then keeps it ignored:
    # the child restores the default handler, as an interactive process has it.
    code = (f"import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"import physmem; k = physmem.boot('firecracker-64g', lazy=False)\n"
            f"print('ready', flush=True)\n"
            f"while True: physmem.save_snapshot(k, {str(out)!r})\n")
    for delay in (0.05, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        assert leftovers == []
        if out.exists():
            physmem.load_snapshot(out)
