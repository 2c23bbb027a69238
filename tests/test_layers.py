"""The package's layering, read from the source: every import (module-level, function-level and
type-checking-only) of every module under python/vtdwalk, walked with ``ast``.

Layers, lowest first: the foundations (errors, argument checks, the native module, ``acpi``,
``topology``), ``driver``, the platform (``platform``, ``dma`` and the package facade),
``sim``, ``cli``. A module may import its own layer or lower ones, never a higher one, and the
import graph has no cycle. Inside ``driver``, only ``flush.py`` touches the unit's hardware.
No module decodes CAP/ECAP, an entry word or a level width itself, or spells a fault-reason
name: those come from the native spec layer (``Cap``, ``Ecap``, ``ContextEntry``,
``levels_to_width``/``levels_to_aw``, ``fault_name``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from vtdwalk import fault_names

PKG = Path(__file__).resolve().parent.parent / "python" / "vtdwalk"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _layer(mod: str) -> int:
    """0 foundations, 1 driver, 2 platform, 3 sim, 4 cli."""
    if mod in ("vtdwalk", "vtdwalk.platform", "vtdwalk.dma"):
        return 2
    sub = mod.split(".")[1]
    if sub in ("errors", "_args", "_core", "acpi", "topology"):
        return 0
    return {"driver": 1, "sim": 3, "cli": 4}[sub]


def _imports(mod: str) -> set[str]:
    """The vtdwalk modules ``mod`` imports (``from a import b`` names module a.b when it is
    one, else a)."""
    tree = ast.parse(MODULES[mod].read_text(), filename=str(MODULES[mod]))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{mod}: relative import"
            base = node.module or ""
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        out.update(n for n in names if n == "vtdwalk" or n.startswith("vtdwalk."))
    out.discard(mod)
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def test_the_walk_sees_the_layers() -> None:
    # The test would pass vacuously on an empty or mis-rooted walk.
    for m in (
        "vtdwalk.acpi.dmar",
        "vtdwalk.driver.assign",
        "vtdwalk.driver.flush",
        "vtdwalk.platform",
        "vtdwalk.sim.scenario",
        "vtdwalk.cli",
    ):
        assert m in MODULES
    assert "vtdwalk.driver.assign" in GRAPH["vtdwalk.platform"]
    assert "vtdwalk.driver.machine" in GRAPH["vtdwalk.driver.assign"]


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_module_imports_a_higher_layer(mod: str) -> None:
    up = sorted(t for t in GRAPH[mod] if t in MODULES and _layer(t) > _layer(mod))
    assert up == [], f"{mod} (layer {_layer(mod)}) imports higher layers: {up}"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if t not in MODULES:
                continue
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The same walk over a graph with a known cycle reports it (the check can fail).
    saved = dict(GRAPH)
    try:
        GRAPH["vtdwalk.driver.iommu"] = GRAPH["vtdwalk.driver.iommu"] | {"vtdwalk.driver.assign"}
        with pytest.raises(AssertionError):
            test_no_import_cycle()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


#: What only flush.py may do: the hardware model's invalidation calls, DMA, interrupts and its
#: handle.
_HARDWARE_ATTRS = {
    "msi",
    "device_tlb_invalidations",
    "interrupts",
    "invalidate_iotlb",
    "invalidate_context",
    "translate",
    "translate_batch",
    "hardware",
    "remapper",
    "fault_counts",
}


def _hardware_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    skip: set[int] = set()
    for node in ast.walk(tree):
        # The one hand-over: Iommu.remapper gives the hardware to the device side (DMA,
        # statistics); the driver never calls through it.
        if isinstance(node, ast.FunctionDef) and node.name == "remapper":
            skip.update(id(n) for n in ast.walk(node))
        # Type-only imports name the class without touching an object.
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Attribute) and node.attr in _HARDWARE_ATTRS:
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.Name) and node.id == "Remapper":
            found.append(f"{path.name}:{node.lineno} Remapper")
        if isinstance(node, ast.alias) and node.name == "Remapper":
            found.append(f"{path.name}: imports Remapper")
    return found


def test_only_flush_touches_the_unit_hardware() -> None:
    driver = sorted((PKG / "driver").glob("*.py"))
    assert {p.name for p in driver} >= {"flush.py", "iommu.py", "domain.py", "assign.py"}
    uses = [u for p in driver if p.name != "flush.py" for u in _hardware_uses(p)]
    assert uses == []
    # ... and the check sees a use where there is one.
    assert _hardware_uses(PKG / "driver" / "flush.py") != []


# ---- the architecture's vocabulary is decoded in one place (the native spec layer)

#: Operands that are a register or an entry word: taking them apart with a shift or a mask is
#: decoding (``cap``, ``self.ecap``, ``raw_cap``, ``ctx.lo``, ``hi``).
_WORD = re.compile(r"e?cap|\w+_e?cap|e?cap_\w+|lo|hi", re.I)
#: Width conversions written out instead of levels_to_width / levels_to_aw / aw_to_levels.
_WIDTH = [
    (re.compile(r"\b12 \+ 9 \*|\b9 \* \w+ \+ 12\b"), "level width"),
    (re.compile(r"\blevels\w* - 2\b|\baw\w* \+ 2\b"), "levels/AW"),
]


def _decoding(source: str, where: str) -> list[str]:
    """Every line of ``source`` that decodes a register, an entry word or a width itself, and
    every string literal that is an architectural fault-reason name."""
    names = set(fault_names().values())
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, (ast.RShift, ast.LShift, ast.BitAnd)):
                for side in (node.left, node.right):
                    name = (
                        side.id
                        if isinstance(side, ast.Name)
                        else side.attr
                        if isinstance(side, ast.Attribute)
                        else None
                    )
                    if name is not None and _WORD.fullmatch(name):
                        what = "entry word" if name in ("lo", "hi") else "CAP/ECAP"
                        found.add(f"{where}:{node.lineno}: {what}")
            text = ast.unparse(node)
            found.update(f"{where}:{node.lineno}: {w}" for rx, w in _WIDTH if rx.search(text))
        elif isinstance(node, ast.Constant) and node.value in names:
            found.add(f"{where}:{node.lineno}: fault name literal {node.value!r}")
    return sorted(found)


def test_python_decodes_no_register_entry_width_or_fault_name() -> None:
    found = [f for mod, path in MODULES.items() for f in _decoding(path.read_text(), mod)]
    assert found == []


def test_the_decoding_finder_finds_each_kind() -> None:
    planted = (
        "nd = cap & 7\n"
        "iro = (ecap >> 8) & 0x3FF\n"
        "did = ctx.hi >> 8 & 0xFFFF\n"
        "width = 12 + 9 * levels\n"
        "aw = levels - 2\n"
        "levels = aw + 2\n"
        "names = {1: 'ROOT_ENTRY_P'}\n"
        "ok = Cap(cap).nd + levels_to_width(levels) + page & 0xFFF\n"
    )
    assert _decoding(planted, "p") == [
        "p:1: CAP/ECAP",
        "p:2: CAP/ECAP",
        "p:3: entry word",
        "p:4: level width",
        "p:5: levels/AW",
        "p:6: levels/AW",
        "p:7: fault name literal 'ROOT_ENTRY_P'",
    ]


#: The hardware model's calls that bypass the register page (the old side doors).
_SIDE_DOORS = ("invalidate_iotlb", "invalidate_context")


def _hw_calls(path: Path) -> set[str]:
    """Every attribute used on ``self._hw`` in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_hw"
    }


def test_the_port_reaches_the_unit_only_through_its_registers() -> None:
    calls = _hw_calls(PKG / "driver" / "flush.py")
    assert calls == {"mmio_read", "mmio_write"}


def test_no_side_door_is_left() -> None:
    for p in sorted(PKG.rglob("*.py")):
        text = p.read_text()
        for name in _SIDE_DOORS:
            assert not re.search(rf"\.{name}\(", text), f"{p.name} calls {name}"
        # Nothing sets a unit's root table directly (RTADDR + SRTP is the driver's way).
        assert not re.search(r"\.root_table\s*=[^=]", text), f"{p.name} sets a root table"


def test_the_side_door_check_sees_a_side_door() -> None:
    assert re.search(r"\.invalidate_iotlb\(", "port._hw.invalidate_iotlb('global')")
    assert _hw_calls(PKG / "driver" / "flush.py") != set()
