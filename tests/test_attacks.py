"""The review's attacks (tests/attacks.py), one test each: refused in one line (or handled),
nothing of the user's changed, nothing left behind, no traceback, in bounded time."""

from __future__ import annotations

import pytest

from tests.attacks import ATTACKS, run_attack


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_handled(attack):
    assert run_attack(attack) == []


def test_the_attacks_cover_every_command():
    covered = {a.argv[0] for a in ATTACKS if a.argv}
    assert covered >= {"replay", "machine", "sysctl", "boot", "contig", "run", "compare",
                       "report", "map-image", "ftrace", "sweep", "dfly", "ddb", "help",
                       "snapshot", "demo"}
    assert len(ATTACKS) >= 200


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_run_leaves_no_partial_output(tmp_path, sig):
    import os
    import signal
    import subprocess
    import sys
    import time
    (tmp_path / "notes.txt").write_text("notes")
    p = subprocess.Popen([sys.executable, "-m", "physmem.cli", "run", "churn", "-m",
                          "firecracker-128m", "--ops", "50000000", "-o", "r", "--record",
                          "r.trace"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    p.send_signal(getattr(signal, sig))
    out, err = p.communicate(timeout=30)
    assert p.returncode != 0
    assert "Traceback" not in err + out
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
