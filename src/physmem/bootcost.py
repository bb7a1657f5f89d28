"""Boot-cost accounting: what lazy page initialisation saves, modelled and measured.

The seed commit (b16b4c22d2d1) gives two figures for FreeBSD booting in Firecracker:
vm_page initialisation takes 3 ms (9 % of kernel boot) with 128 MiB and 21.5 ms (37 %)
with 1 GiB.  The cost model turns counts of page-structure initialisations into kernel
time with one per-page cost, by default calibrated on the 1 GiB figure:
21.5 ms / 262,144 pages = 82.0 ns per page.  Calibrated there, it *predicts* the 128 MiB
figure, which :func:`seed_check` compares with the seed's 3 ms.

:func:`compare` boots one machine lazily and eagerly, each in its own process (so peak RSS
is the boot's own), and returns the rows of ``physmem boot --compare``: page structures
initialised at boot, modelled vm_page init time, the model's own wall time and peak RSS.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from .kernel import Kernel
from .machine import get_machine

SEED_1G_MS = 21.5
SEED_1G_PAGES = 262_144
NS_PER_PAGE = SEED_1G_MS * 1e6 / SEED_1G_PAGES      # 82.0 ns
# The seed's figures: (vm_page init ms, share of kernel boot) per Firecracker machine.
SEED_FIGURES = {"firecracker-128m": (3.0, 0.09), "firecracker-1g": (21.5, 0.37)}


@dataclass
class BootCost:
    """One boot, measured in its own process."""

    machine: str
    arch: str
    mode: str                 # "lazy" or "eager"
    pages: int                # pages in the vm_phys segments
    inits_at_boot: int        # vm_page_init_page() calls during vm_page_startup
    free_pages: int
    model_seconds: float      # the model's wall time for vm_page_startup
    peak_rss_kb: int          # the process's peak resident set after boot
    base_rss_kb: int          # ... and before it (interpreter + imports)

    def modelled_ms(self, ns_per_page: float = NS_PER_PAGE) -> float:
        """Modelled kernel time for the page-structure initialisation done at boot."""
        return self.inits_at_boot * ns_per_page / 1e6


def measure(machine: str, mode: str, tunables: list[str] | None = None) -> BootCost:
    """Boot ``machine`` in this process and measure it."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    k = Kernel.from_machine(machine)
    t = time.perf_counter()
    k.boot(lazy=mode == "lazy", tunables=tunables)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return BootCost(machine=machine, arch=k.param.name, mode=mode,
                    pages=sum(s.epfn - s.spfn for s in k.phys.segs),
                    inits_at_boot=k.stats.boot, free_pages=sum(k.free_counts),
                    model_seconds=dt, peak_rss_kb=peak, base_rss_kb=base)


def measure_in_child(machine: str, mode: str, tunables: list[str] | None = None) -> BootCost:
    """:func:`measure` in a fresh Python process."""
    cmd = [sys.executable, "-m", "physmem.bootcost", machine, mode, *(tunables or [])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        from .errors import PhysmemError
        raise PhysmemError(out.stderr.strip().splitlines()[-1] if out.stderr else
                           f"boot of {machine} failed")
    return BootCost(**json.loads(out.stdout))


def compare(machine: str, tunables: list[str] | None = None) -> list[BootCost]:
    """Eager and (where the architecture has LAZYINIT) lazy boots, each in its own
    process."""
    m = get_machine(machine)
    from .vmparam import get_arch
    modes = ["eager", "lazy"] if get_arch(m.arch).has_lazyinit else ["eager"]
    tun = [t for t in (tunables or []) if not t.startswith("debug.vm.lazy_page_init")]
    return [measure_in_child(machine, mode, tun) for mode in modes]


def seed_check(ns_per_page: float = NS_PER_PAGE) -> list[dict]:
    """The model's prediction of the seed's figures next to the figures themselves."""
    rows = []
    for name, (ms, share) in SEED_FIGURES.items():
        k = Kernel.from_machine(name)
        k.boot(lazy=False)
        eager = k.stats.boot
        k = Kernel.from_machine(name)
        k.boot(lazy=True)
        lazy = k.stats.boot
        boot_ms = ms / share                     # the seed's whole kernel boot
        rows.append({"machine": name, "seed_ms": ms, "seed_share": share,
                     "model_ms": eager * ns_per_page / 1e6,
                     "lazy_ms": lazy * ns_per_page / 1e6,
                     "boot_ms": boot_ms})
    return rows


def _child(argv: list[str]) -> int:
    machine, mode, *tunables = argv
    print(json.dumps(asdict(measure(machine, mode, tunables or None))))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
