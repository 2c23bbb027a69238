"""NUMA: the nodes (memory ranges, in PhysMem node order) and which ACPI proximity domains
belong to each, the role of the SRAT; :meth:`Numa.pxm_to_node` has Xen's semantics, with
``None`` playing NUMA_NO_NODE."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vtdwalk._args import shown
from vtdwalk.errors import InvalidArgument, PlatformError
from vtdwalk.topology._fields import _int, _read_description

if TYPE_CHECKING:
    from vtdwalk._core import PhysMem

__all__ = ["DEFAULT_NODE_SIZE", "MAX_NUMNODES", "Numa", "NumaNode"]

#: Xen's MAX_NUMNODES on x86: the size of its pxm -> node table.
MAX_NUMNODES = 64

DEFAULT_NODE_SIZE = 64 << 30


@dataclass(frozen=True)
class NumaNode:
    """One NUMA node: its memory ``[base, base + size)`` and the proximity domains it holds."""

    base: int
    size: int
    pxms: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "pxms", tuple(self.pxms))
        for what, v in (("base", self.base), ("size", self.size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise PlatformError(f"NUMA node {what} {shown(v)} is not a non-negative integer")
        if self.size == 0 or self.size & 0xFFF or self.base & 0xFFF:
            raise PlatformError(
                f"NUMA node [{self.base:#x}, +{self.size:#x}) must be non-empty and 4 KiB aligned"
            )
        for p in self.pxms:
            if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p <= 0xFFFF_FFFF:
                raise PlatformError(f"proximity domain {shown(p)} is not a 32-bit unsigned integer")


@dataclass
class Numa:
    """NUMA nodes (in PhysMem node order) and Xen's proximity-domain -> node table.

    The table is filled as Xen's ``setup_node`` fills ``pxm2node[MAX_NUMNODES]`` from the SRAT:
    node by node, each pxm in slot ``pxm`` when that slot is free, else in the first free slot.
    """

    nodes: list[NumaNode]
    _slots: list[tuple[int, int] | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.nodes = list(self.nodes)
        for n in self.nodes:
            if not isinstance(n, NumaNode):
                raise PlatformError(
                    f"NUMA nodes must be NumaNode(base, size, pxms), not {shown(n)}"
                )
        if not self.nodes:
            raise PlatformError("a NUMA description needs at least one node")
        if len(self.nodes) > MAX_NUMNODES:
            raise PlatformError(f"{len(self.nodes)} NUMA nodes: at most {MAX_NUMNODES}")
        spans = sorted((n.base, n.base + n.size, i) for i, n in enumerate(self.nodes))
        for (_, e1, i1), (b2, _, i2) in itertools.pairwise(spans):
            if b2 < e1:
                raise PlatformError(f"NUMA nodes {i1} and {i2} overlap")
        if spans[-1][1] > 1 << 52:
            raise PlatformError("NUMA memory must lie below 2^52")
        slots: list[tuple[int, int] | None] = [None] * MAX_NUMNODES
        seen: dict[int, int] = {}
        for node, n in enumerate(self.nodes):
            for pxm in n.pxms:
                if pxm in seen:
                    raise PlatformError(
                        f"proximity domain {pxm} is given to nodes {seen[pxm]} and {node}"
                    )
                seen[pxm] = node
                idx = pxm if pxm < MAX_NUMNODES and slots[pxm] is None else None
                if idx is None:
                    idx = next((i for i, s in enumerate(slots) if s is None), None)
                if idx is None:
                    raise PlatformError(f"more than {MAX_NUMNODES} proximity domains")
                slots[idx] = (pxm, node)
        self._slots = slots

    def pxm_to_node(self, pxm: int | None) -> int | None:
        """Xen's ``pxm_to_node``: slot ``pxm`` first, then a linear search; None = NUMA_NO_NODE
        (also for ``pxm`` None: no proximity domain)."""
        if pxm is None:
            return None
        if isinstance(pxm, bool) or not isinstance(pxm, int | np.integer):
            raise InvalidArgument(f"proximity domain {shown(pxm)} is not an integer")
        pxm = int(pxm)
        if 0 <= pxm < MAX_NUMNODES:
            s = self._slots[pxm]
            if s is not None and s[0] == pxm:
                return s[1]
        for s in self._slots:
            if s is not None and s[0] == pxm:
                return s[1]
        return None

    @property
    def pxm_map(self) -> dict[int, int]:
        """Proximity domain -> node index."""
        return {s[0]: s[1] for s in self._slots if s is not None}

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """Each node's ``(base, size)``, in node order (what PhysMem takes)."""
        return [(n.base, n.size) for n in self.nodes]

    def __len__(self) -> int:
        return len(self.nodes)

    def make_mem(self) -> PhysMem:
        """A fresh PhysMem with these nodes."""
        from vtdwalk._core import PhysMem

        return PhysMem(self.ranges)

    @classmethod
    def default(
        cls,
        pxms: Iterable[int] = (),
        size: int = DEFAULT_NODE_SIZE,
        haw_bits: int | None = None,
    ) -> Numa:
        """One node per distinct proximity domain (ascending), or one node without any.

        Without ``haw_bits``, node i spans ``[(i + 1) * size, (i + 2) * size)``: distinct
        bases, none at address 0. With a table's host address width ``haw_bits``, memory is
        sized to fit it: the nodes follow each other from 4 GiB (below: the MMIO hole, where
        register bases and RMRRs sit), each ``size`` or less so that all end below
        ``2 ** haw_bits`` (in whole GiB; the first layout when not even 1 GiB each fits).
        """
        distinct = sorted(set(pxms))
        if len(distinct) > MAX_NUMNODES:
            raise PlatformError(f"{len(distinct)} proximity domains: at most {MAX_NUMNODES}")
        groups: list[tuple[int, ...]] = [(p,) for p in distinct] or [()]
        if haw_bits is not None:
            low, gib = 4 << 30, 1 << 30
            each = min(size, ((1 << haw_bits) - low) // len(groups) // gib * gib)
            if each >= gib:
                return cls([NumaNode(low + i * each, each, g) for i, g in enumerate(groups)])
        return cls([NumaNode((i + 1) * size, size, g) for i, g in enumerate(groups)])

    @classmethod
    def from_dict(cls, data: Any) -> Numa:
        """``{"nodes": [{"base": .., "size": .., "pxms": [..]}, ...]}`` or just the list.

        ``base``/``size`` are integers or strings: hex (``"0x100000000"``) or with a binary
        suffix (``"64G"``, ``"512MiB"``). A node without ``pxms`` gets none.
        """
        if isinstance(data, Mapping):
            unknown = set(data) - {"nodes"}
            if unknown:
                raise PlatformError(f"unknown numa keys: {', '.join(sorted(unknown))}")
            data = data.get("nodes")
        if not isinstance(data, list):
            raise PlatformError("numa needs a list of nodes")
        nodes = []
        for i, e in enumerate(data):
            if not isinstance(e, Mapping):
                raise PlatformError(f"numa node {i} must be a table/object")
            unknown = set(e) - {"base", "size", "pxms"}
            if unknown:
                raise PlatformError(f"numa node {i}: unknown keys {', '.join(sorted(unknown))}")
            if "base" not in e or "size" not in e:
                raise PlatformError(f"numa node {i} needs base and size")
            pxms = e.get("pxms", [])
            if not isinstance(pxms, list):
                raise PlatformError(f"numa node {i}: pxms must be a list")
            nodes.append(
                NumaNode(
                    _int(e["base"], f"numa node {i} base"),
                    _int(e["size"], f"numa node {i} size"),
                    tuple(_int(p, f"numa node {i} pxm") for p in pxms),
                )
            )
        return cls(nodes)

    def to_dict(self) -> dict[str, Any]:
        """``{"nodes": [{"base", "size", "pxms"}]}``, as :meth:`from_dict` reads it."""
        return {
            "nodes": [{"base": n.base, "size": n.size, "pxms": list(n.pxms)} for n in self.nodes]
        }

    @classmethod
    def load(cls, path: str | Path) -> Numa:
        """Load the ``numa`` part of a TOML or JSON description file."""
        data = _read_description(path)
        if "numa" not in data:
            raise PlatformError(f"{path}: no 'numa' section")
        return cls.from_dict(data["numa"])


# --------------------------------------------------------------------------------------------
# Description files
