"""vm_phys's queue core runs compiled (numba, physmem.jit) after boot and as plain Python
during boot and with the JIT off: both give the kernel's output, and boot never imports
numba."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import physmem
from physmem import jit

ROOT = Path(__file__).resolve().parents[2]
# Whether numba is installed: what jit.enabled() says in a child process whose
# environment drops PHYSMEM_JIT and NUMBA_DISABLE_JIT (this one's may set them).
_NUMBA = importlib.util.find_spec("numba") is not None

_REPLAY_ALL = r'''
import gzip, io, sys
from pathlib import Path
from physmem.trace import Replayer
import physmem.jit
root = Path(sys.argv[1]) / "tests" / "data"
paths = sorted((root / "oracle").glob("samples/vm_phys-*.trace")) + \
    sorted((root / "oracle").glob("generated/*.trace.gz")) + \
    sorted((root / "golden").glob("*.trace"))
def text(p):
    return gzip.decompress(p.read_bytes()).decode() if p.suffix == ".gz" else p.read_text()
bad = []
for p in paths:
    out = io.StringIO()
    errors = Replayer().replay(io.StringIO(text(p)), out)
    exp = p.with_name(p.name.replace(".trace", ".expected"))
    if errors or out.getvalue() != text(exp):
        bad.append(p.name)
print(len(paths), physmem.jit.enabled(), "numba" in sys.modules, *bad)
'''


@pytest.mark.parametrize("env", [{"NUMBA_DISABLE_JIT": "1"}, {"PHYSMEM_JIT": "0"}],
                         ids=["NUMBA_DISABLE_JIT", "PHYSMEM_JIT"])
def test_every_oracle_trace_replays_identically_without_the_jit(env):
    out = subprocess.run([sys.executable, "-c", _REPLAY_ALL, str(ROOT)], capture_output=True,
                         text=True, check=True, env={**os.environ, **env}).stdout.split()
    assert int(out[0]) >= 40 and out[1] == "False"
    assert out[3:] == []                     # no trace differs
    if "PHYSMEM_JIT" in env:
        assert out[2] == "False"             # numba never imported


def test_boot_does_not_import_numba_and_the_first_call_does():
    code = ("import sys, json, physmem; k = physmem.boot('firecracker-1g', lazy=True, jit=True); "
            "a = 'numba' in sys.modules; k.free_pages(k.alloc_pages(0, 'default', 0), 0); "
            "print(json.dumps([a, 'numba' in sys.modules, k.phys.jitted]))")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_DISABLE_JIT", "PHYSMEM_JIT")}
    before, after, jitted = json.loads(subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env=env).stdout)
    assert not before
    assert after == jitted == _NUMBA    # (the child's environment has the JIT on)


_FIRST_PAIR = r'''
import json, physmem
from physmem.freebsd import vm_phys as V
k = physmem.boot("firecracker-1g", lazy=True, jit=True)
phys = k.phys
def pair(order):
    k.free_pages(k.alloc_pages(0, "default", order), order)
pair(0)
out = {"netting_compiled": V.log_net._compiled is not None}
m = k.attach_extent_mirror()
flushed = []                # VmPhys._flush's netting of a log: the direct hand-off has none
net = phys._k.net
phys._k.net = lambda *a: flushed.append(a) or net(*a)
pair(0)                     # it splits and merges ten orders: 22 queue changes, 2 runs
out["handed_directly"] = not flushed and phys.queue_counts()[1] == 2
m.check()
print(json.dumps(out))
'''


@pytest.mark.skipif(not _NUMBA, reason="numba is not installed")
def test_first_pair_does_not_compile_the_netting_and_the_mirror_gets_the_net_change():
    """The fast paths hand their one run to the observers (the direct hand-off), so the
    first compiled pair does not compile log_net (bench/RESULTS.md, issue 13, wt13c and
    wt13m); with the extent mirror attached, a pair that splits and merges ten orders
    reaches it as its two runs without any log netted in Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_DISABLE_JIT", "PHYSMEM_JIT")}
    out = json.loads(subprocess.run([sys.executable, "-c", _FIRST_PAIR], capture_output=True,
                                    text=True, check=True, env=env).stdout)
    assert out == {"netting_compiled": False, "handed_directly": True}


def test_enabled_follows_the_environment(monkeypatch):
    monkeypatch.setenv("PHYSMEM_JIT", "0")
    assert not jit.enabled()
    monkeypatch.delenv("PHYSMEM_JIT")
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    assert not jit.enabled()


def test_a_lazy_function_is_plain_python_with_the_jit_off(monkeypatch):
    monkeypatch.setenv("PHYSMEM_JIT", "0")

    def twice(x):
        return 2 * x

    f = jit.njit(twice)
    assert f(21) == 42 and f.compiled() is twice and f.py is twice


def test_compiled_and_plain_queue_cores_reach_the_same_state():
    """The same random requests on two kernels, one with the queue core compiled and one
    plain: same pages handed out, same digest (INVARIANTS run on both at the end)."""
    import random
    ks = [physmem.boot("firecracker-1g", lazy=True, jit=j) for j in (True, False)]
    rng = random.Random(13)
    held: list[list[tuple[int, int]]] = [[], []]
    for _ in range(3000):
        op = rng.random()
        order = rng.choice((0, 0, 0, 1, 2, 5, 9))
        npages = rng.choice((1, 3, 17, 100, 600))
        state = rng.getstate()
        res = []
        for k, h in zip(ks, held, strict=True):
            rng.setstate(state)
            if op < 0.45:
                pa = k.alloc_pages(0, "default", order)
                if pa is not None:
                    h.append((pa, 1 << order))
                res.append(pa)
            elif op < 0.6:
                runs = k.alloc_npages_runs(0, "default", npages)
                h.extend(runs)
                res.append(runs)
            elif op < 0.7:
                pa = k.alloc_contig(0, npages)
                if pa is not None:
                    h.append((pa, npages))
                res.append(pa)
            elif h:
                pa, n = h.pop(rng.randrange(len(h)))
                k.free_contig(pa, n)
                res.append((pa, n))
            else:
                res.append(None)
        assert res[0] == res[1]
    # (the fused paths run unless PHYSMEM_JIT=0; with NUMBA_DISABLE_JIT=1 as Python)
    assert ks[0].phys.jitted == (os.environ.get("PHYSMEM_JIT", "1") != "0")
    assert not ks[1].phys.jitted
    assert ks[0].digest() == ks[1].digest()


def test_an_unwritable_package_directory_sends_numbas_cache_elsewhere(monkeypatch, tmp_path):
    """Where physmem's directory is not writable (a system install), numba's cache goes
    to NUMBA_CACHE_DIR, else under the user's cache directory."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = os.access
    pkg = os.path.dirname(jit.__file__)
    monkeypatch.setattr(os, "access", lambda p, m: False if p == pkg else real(p, m))
    jit._numba()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "physmem-numba")


_CLI_REPLAY = r'''
import sys
from physmem import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print("numba" in sys.modules, file=sys.stderr)
'''


@pytest.mark.parametrize("mode, numba_expected", [("auto", False), ("off", False),
                                                  ("on", True)])
def test_replay_compiles_only_when_asked_or_the_trace_is_long(mode, numba_expected):
    # `physmem replay --jit auto` on a short trace stays plain Python: numba's start-up
    # (~0.5 s, ~100 MiB) would cost more than the trace.  Output is the kernel's either way.
    trace = ROOT / "tests/data/oracle/samples/vm_phys-eager-fc128m_basic.trace"
    exp = trace.with_name(trace.name.replace(".trace", ".expected")).read_text()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PHYSMEM_JIT", "NUMBA_DISABLE_JIT", "PHYSMEM_JIT_TIER")}
    r = subprocess.run([sys.executable, "-c", _CLI_REPLAY, "replay", "--jit", mode, str(trace)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.stdout == exp
    assert r.stderr.strip().splitlines()[-1] == str(numba_expected and _NUMBA)


def _churn(k, n, seed, domain=0):
    import random
    rng = random.Random(seed)
    held = []
    for _ in range(n):
        if held and rng.random() < 0.45:
            pa, o = held.pop(rng.randrange(len(held)))
            k.free_pages(pa, o)
        else:
            o = rng.choice((0, 0, 0, 1, 2, 5))
            pa = k.alloc_pages(domain, "default", o)
            if pa is not None:
                held.append((pa, o))
    return held


@pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or the JIT is off")
def test_the_core_is_compiled_after_the_tier_and_nothing_else_changes():
    # Kernel(jit=N): plain Python for N fast-path calls, then compiled, same answers.
    tiered = physmem.boot("firecracker-1g", lazy=True, jit=300)
    plain = physmem.boot("firecracker-1g", lazy=True, jit=False)
    assert not tiered.phys.jitted
    _churn(tiered, 250, 7)
    assert not tiered.phys.jitted
    _churn(tiered, 750, 8)
    assert tiered.phys.jitted
    _churn(plain, 250, 7)
    _churn(plain, 750, 8)
    assert not plain.phys.jitted
    assert tiered.digest() == plain.digest()
    tiered.check()


@pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or the JIT is off")
def test_threads_in_two_domains_cross_the_tier_cleanly():
    import threading
    k = physmem.boot("server-96g-2dom", lazy=True, jit=400)
    errors = []

    def work(d, seed):
        try:
            for pa, o in _churn(k, 600, seed, d):
                k.free_pages(pa, o)
        except Exception as e:      # reported below
            errors.append(e)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        ts = [threading.Thread(target=work, args=(i % 2, i)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    assert k.phys.jitted
    k.check()


def test_jit_must_be_a_mode_or_a_count(monkeypatch):
    for bad in (-1, 1.5, "on", 1 << 63):
        with pytest.raises(physmem.PhysmemError, match="jit must be"):
            physmem.Kernel("amd64", jit=bad)
    monkeypatch.setenv("PHYSMEM_JIT_TIER", "12")
    assert physmem.Kernel("amd64").jit == 12
    monkeypatch.delenv("PHYSMEM_JIT_TIER")
    assert physmem.Kernel("amd64").jit == physmem.kernel.JIT_TIER_OPS
    monkeypatch.setenv("PHYSMEM_JIT_TIER", "soon")
    with pytest.raises(physmem.PhysmemError, match="PHYSMEM_JIT_TIER"):
        physmem.Kernel("amd64")


def test_the_largest_compiled_call_keeps_the_extent_mirror_in_step():
    """The queue core logs each queue change of a compiled call for the extent mirror in
    a fixed-size per-domain log: the largest call, alloc_npages of the most pages over
    single-page blocks (4,096 removals and the excess's adds), must fit it, and so must a
    free_contig of a whole segment's worth of pages."""
    k = physmem.boot("firecracker-128m", lazy=False)
    mirror = k.attach_extent_mirror()
    big = k.alloc_contig(0, 4096 * 4)
    assert big is not None
    held = []
    while (pa := k.alloc_pages(0, "default", 0)) is not None:
        held.append(pa)
    # Odd pages first (their buddies are held: no merge), then the even ones through
    # free_contig, which does not coalesce one page: every free block is one page.
    for pa in sorted(held, key=lambda p: not (p >> 12) & 1):
        k.free_contig(pa, 1)
    phys = k.phys
    assert phys.count(0, 0, phys.DEFAULT, 0) + phys.count(0, 1, phys.DEFAULT, 0) > 8192
    runs = k.alloc_npages_runs(0, "default", k.param.max_npages)
    assert len(runs) == k.param.max_npages and {n for _, n in runs} == {1}
    mirror.check()
    k.check()
    for pa, _ in runs:
        k.free_contig(pa, 1)
    k.free_contig(big, 4096 * 4)
    mirror.check()
    k.check()


_SECOND = r'''
import sys
import physmem.cli
k = physmem.boot("firecracker-1g", lazy=True, jit=True)
k.free_pages(k.alloc_pages(0, "default", 0), 0)
from physmem.freebsd import vm_phys
d = vm_phys.kernel_alloc_pages.compiled()
print(sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()),
      "numba.np.linalg" in sys.modules, "rich" in sys.modules)
'''


@pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or the JIT is off")
def test_a_second_process_loads_the_cache_without_numbas_compiler_setup(tmp_path):
    # The first process compiles into an empty cache; the second loads the fused path
    # without installing numba's typing and lowering registries (which only a compile
    # needs, ~0.1 s a process), and the command line's import leaves rich out.
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("PHYSMEM_JIT", "NUMBA_DISABLE_JIT", "PHYSMEM_JIT_TIER")},
           "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", _SECOND], capture_output=True, text=True,
                           env=env, check=True, timeout=300).stdout.split()
            for _ in range(2)]
    assert runs[0][:2] == ["0", "1"]             # compiled: a miss
    assert runs[1] == ["1", "0", "False", "False"]


def test_one_signature_per_compiled_function():
    # Each queue-core function is compiled for one signature (arrays by name, every other
    # argument an int64), so that a compiled caller's literal arguments do not compile
    # versions of their own.
    from physmem.freebsd import vm_phys
    f = vm_phys.kernel_free_pages
    assert f.sig == "(int64[::1], uint16[::1], int64, int64, int64,)"
    assert vm_phys.vm_freelist_add.python and not vm_phys._log.python


@pytest.mark.skipif(not _NUMBA, reason="numba is not installed")
def test_replay_auto_compiles_a_long_trace_file_from_the_start(tmp_path):
    # `--jit auto` on a file of 1,280,000 bytes or more (~20,000 lines or more): compiled from the
    # first call.  Here 12,000 operations, each with a comment that makes the file long:
    # the tier alone (20,000 calls) would never import numba.  Same output as plain.
    import gzip
    lines = gzip.decompress((ROOT / "bench/data/bench_fc1g_lazy_100k.trace.gz").read_bytes()
                            ).decode().splitlines()[:12000]
    text = "".join(f"{ln}  # {'padding ' * 12}\n" if ln and not ln.startswith("#") else
                   ln + "\n" for ln in lines)
    assert len(text) >= 20_000 * 64
    trace = tmp_path / "long.trace"
    trace.write_text(text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PHYSMEM_JIT", "NUMBA_DISABLE_JIT", "PHYSMEM_JIT_TIER")}
    outs = []
    for mode in ("auto", "off"):
        r = subprocess.run([sys.executable, "-c", _CLI_REPLAY, "replay", "--jit", mode,
                            str(trace)], capture_output=True, text=True, env=env, timeout=600)
        outs.append(r.stdout)
        assert r.stderr.strip().splitlines()[-1] == str(mode == "auto")
    assert outs[0] == outs[1] and outs[0].count("\n") > 10_000


@pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or the JIT is off")
def test_a_free_list_runs_dry_the_same_plain_tiered_and_compiled():
    # alloc_freelist_pages: the compiled call searches the whole free list, so its "none"
    # is the answer (NULL); the plain tier's "not now" must still take the Python path.
    # Each kernel takes lowmem blocks until NULL: the same blocks, the same NULL, the same
    # state, with the tier crossed half-way.
    kernels = [physmem.boot("firecracker-1g", lazy=True, jit=mode) for mode in (False, 40, True)]
    got = []
    for k in kernels:
        held = []
        while True:
            pa = k.alloc_freelist_pages(0, "lowmem", "default", 0)
            if pa is None:
                break
            held.append(pa)
        before = k.digest()
        assert k.alloc_freelist_pages(0, "lowmem", "default", 0) is None
        assert k.digest() == before             # a NULL changes nothing
        k.check()
        got.append((held, before))
    assert len(got[0][0]) > 40 and got[0] == got[1] == got[2]
    assert kernels[1].phys.jitted
