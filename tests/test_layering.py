"""Data flows one way: machine description -> page array -> vm_phys -> vm_page -> traces,
reports, CLI.  A module may import only modules of its own layer or below."""

from __future__ import annotations

import ast
from pathlib import Path

import physmem

SRC = Path(physmem.__file__).parent

LAYERS = {
    "physmem.bits": 0, "physmem.errors": 0, "physmem.atomic": 0, "physmem.checks": 0,
    "physmem.jit": 0,
    "physmem.vmparam": 1, "physmem.reprs": 0,
    "physmem.machine": 2, "physmem.mapimport": 2,
    "physmem.pagearray": 3,
    "physmem.freebsd.vm_phys": 4,
    "physmem.freebsd.sysctl": 5, "physmem.freebsd.invariants": 5,
    "physmem.freebsd.vm_page": 5,
    # The composite machine: FreeBSD's allocator with NetBSD's and DragonFly's policies.
    "physmem.kernel": 6,
    "physmem.netbsd.extent": 4, "physmem.netbsd.mirror": 5, "physmem.netbsd.pglist": 5,
    "physmem.dragonfly.alist": 4, "physmem.dragonfly.dma_reserve": 5,
    # DragonFly's page layer sits above the free-page allocators (the buddy source).
    "physmem.dragonfly.locks": 1, "physmem.dragonfly.vm_object": 3.52,
    "physmem.dragonfly.vm_meter": 3.4,
    "physmem.dragonfly.vm_page_array": 3.5, "physmem.dragonfly.vm_pageout": 6.5,
    "physmem.dragonfly.vm_page_core": 3.55,
    "physmem.dragonfly.invariants": 6.55, "physmem.dragonfly.vm_page": 6.6,
    # vm_page.py's subsystems (mixed into DragonflyVm) and the names they share
    "physmem.dragonfly.vm_page_defs": 3.6, "physmem.dragonfly.vm_page_boot": 6.5,
    "physmem.dragonfly.vm_page_search": 6.5, "physmem.dragonfly.vm_page_busy": 6.5,
    "physmem.dragonfly.vm_page_alloc": 6.5, "physmem.dragonfly.vm_page_transitions": 6.5,
    "physmem.dragonfly.vm_page_objects": 6.5, "physmem.dragonfly.vm_page_bits": 6.5,
    "physmem.dragonfly.vm_pageout_core": 6.5,
    "physmem.dragonfly.vm_page_views": 6.57,
    "physmem.trace_dfly": 6.8, "physmem.dfly_workloads": 8,
    "physmem.trace": 7, "physmem.snapshot": 7,
    "physmem.workloads": 8, "physmem.demo": 8, "physmem.bootcost": 8, "physmem.ftrace": 8,
    "physmem.reports": 8.5, "physmem.sweep": 8.7, "physmem.mapimage": 8.2,
    "physmem.cli": 9, "physmem": 9,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str) -> set[str]:
    out = set()
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    # Imports for type checking only do not run: they are not dependencies.
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and isinstance(
        n.test, ast.Name) and n.test.id == "TYPE_CHECKING")]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("physmem"):
                out.add(mod)
                for a in node.names:
                    if f"{mod}.{a.name}" in LAYERS:
                        out.add(f"{mod}.{a.name}")
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("physmem"))
    return out


def test_every_module_has_a_layer():
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        if name.endswith("__init__") or name in ("physmem.freebsd", "physmem.netbsd",
                                                  "physmem.dragonfly"):
            continue
        assert name in LAYERS, f"{name} has no layer in tests/test_layering.py"


def test_no_module_imports_a_layer_above_it():
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        if name not in LAYERS:
            continue
        for dep in imports(path, name):
            if dep in ("physmem.freebsd", "physmem.netbsd", "physmem.dragonfly") or \
                    dep not in LAYERS:
                continue
            assert LAYERS[dep] <= LAYERS[name], f"{name} imports {dep}, a layer above it"
