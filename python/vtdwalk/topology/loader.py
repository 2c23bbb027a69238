"""The machine description file (TOML or JSON): PCI topology and NUMA nodes."""

from __future__ import annotations

from pathlib import Path

from vtdwalk.errors import PlatformError
from vtdwalk.topology._fields import _read_description
from vtdwalk.topology.numa import Numa
from vtdwalk.topology.pci import Topology

__all__ = ["load_description"]


def load_description(path: str | Path, what: str = "path") -> tuple[Topology | None, Numa | None]:
    """Read a TOML/JSON file with a ``devices`` list and/or a ``numa`` section (``what``: the
    argument that named it, for errors)."""
    data = _read_description(path, what)
    numa = Numa.from_dict(data["numa"]) if "numa" in data else None
    topo_keys = {"devices", "ioapics", "hpets"}
    topo = (
        Topology.from_dict({k: v for k, v in data.items() if k != "numa"})
        if topo_keys & set(data)
        else None
    )
    unknown = set(data) - topo_keys - {"numa"}
    if unknown:
        raise PlatformError(f"{path}: unknown keys: {', '.join(sorted(unknown))}")
    return topo, numa
