"""PCI topology of a simulated machine.

PCI: every function is a :class:`Device` with its :class:`Bdf` (segment, bus, device, function)
and its kind, the kinds Xen's ``pdev_type()`` tells apart (xen-driver.md §5.3): host bridge, PCIe
endpoint, PCIe root or switch port, PCIe-to-PCI bridge, PCI-to-PCIe bridge, legacy PCI bridge,
conventional PCI device. Bridges carry their secondary and subordinate bus numbers; endpoints may
carry a phantom-function stride, an ATS capability, SR-IOV virtual functions (each VF names its
physical function) and ARI (functions 8..255 of an ARI device are "extended functions").

A :class:`Topology` checks that the bus numbering is consistent (bridge ranges nest, every device
sits on a root bus or on the secondary bus of the innermost bridge above it) and answers what
Xen asks of the PCI layer: configuration reads of secondary/subordinate bus numbers (how DMAR
scope paths are resolved, §1.4) and ``find_upstream_bridge`` (§5.3).

A Topology can be declared in Python, loaded from TOML or JSON
(:func:`vtdwalk.topology.loader.load_description`), or synthesised from a DMAR table
(:meth:`Topology.from_dmar`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vtdwalk._args import shown
from vtdwalk.errors import InvalidArgument, PlatformError
from vtdwalk.topology._fields import _int, _read_description

if TYPE_CHECKING:
    from vtdwalk.acpi.dmar import DmarTable

__all__ = ["Bdf", "BdfLike", "Device", "DeviceKind", "Topology", "sriov_vf_bdfs"]

#: Xen's MAX_NUMNODES on x86: the size of its pxm -> node table.
MAX_NUMNODES = 64
#: Default size of each synthesised NUMA node, and the stride between their bases.
DEFAULT_NODE_SIZE = 64 << 30

_BDF_RE = re.compile(
    r"^\s*(?:(?P<seg>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})"
    r"\.(?P<fn>[0-7])\s*$"
)


def _short(value: object, limit: int = 40) -> str:
    """The repr of a bad argument, cut to a short prefix for an error message."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + "..."


@dataclass(frozen=True, order=True, slots=True)
class Bdf:
    """A PCI function address: segment, bus, device (0-31), function (0-7).

    ``devfn`` is ``dev << 3 | fn`` and ``sid`` (the source-id of its DMA) ``bus << 8 | devfn``.
    ARI functions 8..255 are written with ``dev = fn_number >> 3`` as usual.
    """

    segment: int
    bus: int
    dev: int
    fn: int

    def __post_init__(self) -> None:
        for name, value, top in (
            ("segment", self.segment, 0xFFFF),
            ("bus", self.bus, 0xFF),
            ("device", self.dev, 31),
            ("function", self.fn, 7),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise InvalidArgument(f"PCI {name} {shown(value)} is not an integer in 0..{top}")

    @classmethod
    def from_devfn(cls, segment: int, bus: int, devfn: int) -> Bdf:
        """The function ``devfn`` (``dev << 3 | fn``) of ``bus`` on ``segment``."""
        if not isinstance(devfn, int) or not 0 <= devfn <= 0xFF:
            raise InvalidArgument(f"devfn: {shown(devfn)} is not an integer in 0..255")
        return cls(segment, bus, devfn >> 3, devfn & 7)

    @classmethod
    def from_sid(cls, segment: int, sid: int) -> Bdf:
        """The function with source-id ``sid`` (``bus << 8 | devfn``) on ``segment``."""
        if not isinstance(sid, int) or not 0 <= sid <= 0xFFFF:
            raise InvalidArgument(f"sid: source-id {shown(sid)} is not an integer in 0..0xffff")
        return cls(segment, sid >> 8, (sid >> 3) & 31, sid & 7)

    @classmethod
    def parse(cls, text: str, segment: int = 0, what: str = "text") -> Bdf:
        """``"ssss:bb:dd.f"`` or ``"bb:dd.f"`` (hex; the segment defaults to ``segment``).
        A malformed address raises InvalidArgument naming the argument (``what``)."""
        m = _BDF_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise InvalidArgument(
                f"{what}: {_short(text)} is not a PCI address of the form [ssss:]bb:dd.f"
            )
        seg = int(m["seg"], 16) if m["seg"] else segment
        try:
            return cls(seg, int(m["bus"], 16), int(m["dev"], 16), int(m["fn"], 16))
        except InvalidArgument as e:
            raise InvalidArgument(f"{what}: {_short(text)}: {e}") from None

    @classmethod
    def coerce(cls, value: BdfLike, what: str = "bdf") -> Bdf:
        """A Bdf from a Bdf, a Device, a ``"[ssss:]bb:dd.f"`` string, a (seg, bus, dev, fn), or
        an integer ``segment << 16 | source-id`` (a plain source-id is segment 0). Anything
        else raises InvalidArgument naming the argument (``what``)."""
        if isinstance(value, Bdf):
            return value
        if isinstance(value, Device):
            return value.bdf
        if isinstance(value, str):
            return cls.parse(value, what=what)
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            v = int(value)
            if not 0 <= v <= 0xFFFF_FFFF:
                raise InvalidArgument(
                    f"{what}: {v:#x} is not a PCI address (segment << 16 | source-id)"
                )
            return cls.from_sid(v >> 16, v & 0xFFFF)
        if isinstance(value, tuple) and len(value) == 4:
            try:
                return cls(*value)
            except InvalidArgument as e:
                raise InvalidArgument(f"{what}: {e}") from None
        raise InvalidArgument(f"{what}: cannot read a PCI address from {_short(value)}")

    @property
    def devfn(self) -> int:
        """``dev << 3 | fn``."""
        return self.dev << 3 | self.fn

    @property
    def sid(self) -> int:
        """The source-id of the function's DMA: ``bus << 8 | devfn``."""
        return self.bus << 8 | self.devfn

    def __str__(self) -> str:
        return f"{self.segment:04x}:{self.bus:02x}:{self.dev:02x}.{self.fn}"


class DeviceKind(str, Enum):
    """What a PCI function is, as Xen's ``pdev_type()`` classifies it."""

    HOST_BRIDGE = "host-bridge"  # class 0x0600: DEV_TYPE_PCI_HOST_BRIDGE
    PCIE_ENDPOINT = "pcie-endpoint"  # PCIe capability, not a bridge: DEV_TYPE_PCIe_ENDPOINT
    PCIE_PORT = "pcie-port"  # root port or switch port: DEV_TYPE_PCIe_BRIDGE
    PCIE_TO_PCI_BRIDGE = "pcie-to-pci-bridge"  # PCIe port type 7: DEV_TYPE_PCIe2PCI_BRIDGE
    PCI_TO_PCIE_BRIDGE = "pci-to-pcie-bridge"  # PCIe port type 8: DEV_TYPE_PCI2PCIe_BRIDGE
    LEGACY_PCI_BRIDGE = "pci-bridge"  # class 0x0604 without PCIe: DEV_TYPE_LEGACY_PCI_BRIDGE
    PCI = "pci"  # conventional PCI function: DEV_TYPE_PCI

    @property
    def is_bridge(self) -> bool:
        """True for the kinds that forward DMA from a secondary bus (ports and bridges)."""
        return self in _BRIDGE_KINDS

    def __str__(self) -> str:
        return self.value


_BRIDGE_KINDS = frozenset(
    {
        DeviceKind.PCIE_PORT,
        DeviceKind.PCIE_TO_PCI_BRIDGE,
        DeviceKind.PCI_TO_PCIE_BRIDGE,
        DeviceKind.LEGACY_PCI_BRIDGE,
    }
)
# Bridges that may retag their secondary side's requests (Xen's bus2bridge, §5.3).
_ALIASING_BRIDGES = frozenset({DeviceKind.PCIE_TO_PCI_BRIDGE, DeviceKind.LEGACY_PCI_BRIDGE})


@dataclass(frozen=True)
class Device:
    """One PCI function.

    * ``secondary``/``subordinate``: a bridge's bus range (both required for bridges, absent
      otherwise).
    * ``phantom_stride``: 0 (none), 1, 2 or 4 (``8 >> DEVCAP.phantom``); as in Xen it is
      ignored (``effective_phantom_stride`` 0) when the function number is not below it.
    * ``ats``: the function has an ATS capability (``ats_queue_depth``: 0 means 32).
    * ``physfn``: set on an SR-IOV virtual function, naming its physical function.
    * ``ari``: the function sits on an ARI link; its functions 8..255 are extended functions.
    """

    bdf: Bdf
    kind: DeviceKind = DeviceKind.PCIE_ENDPOINT
    secondary: int | None = None
    subordinate: int | None = None
    phantom_stride: int = 0
    ats: bool = False
    ats_queue_depth: int = 0
    physfn: Bdf | None = None
    ari: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.bdf, Bdf):
            object.__setattr__(self, "bdf", Bdf.coerce(self.bdf))
        if not isinstance(self.kind, DeviceKind):
            try:
                object.__setattr__(self, "kind", DeviceKind(self.kind))
            except ValueError:
                kinds = ", ".join(k.value for k in DeviceKind)
                raise PlatformError(
                    f"{self.bdf}: unknown device kind {shown(self.kind)} (one of {kinds})"
                ) from None
        if self.physfn is not None and not isinstance(self.physfn, Bdf):
            object.__setattr__(self, "physfn", Bdf.coerce(self.physfn))
        where = str(self.bdf)
        if self.kind.is_bridge:
            if self.secondary is None or self.subordinate is None:
                raise PlatformError(f"{where}: a {self.kind} needs secondary and subordinate buses")
            for what, v in (("secondary", self.secondary), ("subordinate", self.subordinate)):
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFF:
                    raise PlatformError(f"{where}: {what} bus {shown(v)} is not in 0..255")
            if self.secondary > self.subordinate:
                raise PlatformError(
                    f"{where}: secondary bus {self.secondary:#04x} is above subordinate "
                    f"{self.subordinate:#04x}"
                )
            if self.secondary <= self.bdf.bus <= self.subordinate:
                raise PlatformError(
                    f"{where}: its own bus {self.bdf.bus:#04x} lies in its range "
                    f"{self.secondary:#04x}-{self.subordinate:#04x}"
                )
        elif self.secondary is not None or self.subordinate is not None:
            raise PlatformError(f"{where}: a {self.kind} has no secondary/subordinate bus")
        if self.phantom_stride not in (0, 1, 2, 4):
            raise PlatformError(
                f"{where}: phantom stride {shown(self.phantom_stride)} not 0, 1, 2 or 4"
            )
        if self.phantom_stride and self.kind is not DeviceKind.PCIE_ENDPOINT:
            raise PlatformError(f"{where}: only a PCIe endpoint has phantom functions")
        if not isinstance(self.ats_queue_depth, int) or not 0 <= self.ats_queue_depth <= 31:
            raise PlatformError(
                f"{where}: ATS queue depth {shown(self.ats_queue_depth)} not in 0..31"
            )
        if self.physfn is not None:
            if self.kind is not DeviceKind.PCIE_ENDPOINT:
                raise PlatformError(f"{where}: a virtual function must be a PCIe endpoint")
            if self.physfn.segment != self.bdf.segment:
                raise PlatformError(
                    f"{where}: its physical function {self.physfn} is on another segment"
                )
            if self.physfn == self.bdf:
                raise PlatformError(
                    f"{where}: a virtual function cannot be its own physical function"
                )

    @property
    def is_bridge(self) -> bool:
        """True when the device forwards DMA from its secondary bus (a port or bridge)."""
        return self.kind.is_bridge

    @property
    def is_virtfn(self) -> bool:
        """True for an SR-IOV virtual function (it has a ``physfn``)."""
        return self.physfn is not None

    @property
    def is_extfn(self) -> bool:
        """An ARI extended function (Linux/Xen: ARI enabled on its link and slot != 0)."""
        return self.ari and self.bdf.dev != 0

    @property
    def effective_phantom_stride(self) -> int:
        """Xen's ``phantom_stride``: cleared when the function number is not below the stride."""
        s = self.phantom_stride
        return s if s and self.bdf.fn < s else 0

    def phantom_devfns(self) -> list[int]:
        """The devfns Xen maps beside the real one: devfn + k*stride within the same slot."""
        s = self.effective_phantom_stride
        if not s:
            return []
        return [d for d in range(self.bdf.devfn + s, (self.bdf.dev + 1) << 3, s)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, in the form the topology file uses."""
        d: dict[str, Any] = {"bdf": str(self.bdf), "kind": self.kind.value}
        if self.secondary is not None:
            d["secondary"] = self.secondary
            d["subordinate"] = self.subordinate
        if self.phantom_stride:
            d["phantom_stride"] = self.phantom_stride
        if self.ats:
            d["ats"] = True
            if self.ats_queue_depth:
                d["ats_queue_depth"] = self.ats_queue_depth
        if self.physfn is not None:
            d["physfn"] = str(self.physfn)
        if self.ari:
            d["ari"] = True
        if self.name:
            d["name"] = self.name
        return d


#: What names a PCI function: see :meth:`Bdf.coerce`.
BdfLike = Bdf | Device | str | tuple[int, int, int, int] | int


def sriov_vf_bdfs(pf: Bdf, num_vfs: int, offset: int, stride: int = 1) -> list[Bdf]:
    """The routing IDs of a PF's VFs: PF RID + offset + i*stride (may spill onto later buses)."""
    if not isinstance(num_vfs, int) or num_vfs < 0:
        raise PlatformError(f"{pf}: number of VFs {shown(num_vfs)} is not a non-negative integer")
    if not isinstance(offset, int) or not 1 <= offset <= 0xFFFF:
        raise PlatformError(f"{pf}: First VF Offset {shown(offset)} is not in 1..0xffff")
    if not isinstance(stride, int) or not 1 <= stride <= 0xFFFF:
        raise PlatformError(f"{pf}: VF Stride {shown(stride)} is not in 1..0xffff")
    out = []
    for i in range(num_vfs):
        rid = pf.sid + offset + i * stride
        if rid > 0xFFFF:
            raise PlatformError(f"{pf}: VF {i} routing ID {rid:#x} runs past bus 0xff")
        out.append(Bdf.from_sid(pf.segment, rid))
    return out


# --------------------------------------------------------------------------------------------
# Topology


class Topology:
    """The PCI functions of a machine (all segments), with Xen's PCI-layer queries.

    ``ioapics`` and ``hpets`` map an IOAPIC id / HPET number to the requester id its interrupts
    carry; they are not PCI functions and are kept apart.
    """

    def __init__(
        self,
        devices: Iterable[Device] = (),
        ioapics: Mapping[int, BdfLike] | None = None,
        hpets: Mapping[int, BdfLike] | None = None,
    ) -> None:
        self._devices: dict[Bdf, Device] = {}
        self.ioapics: dict[int, Bdf] = {}
        self.hpets: dict[int, Bdf] = {}
        self._bridges_by_secondary: dict[tuple[int, int], Device] = {}
        self._bus2bridge: dict[tuple[int, int], Bdf] = {}
        self._vfs: dict[Bdf, list[Bdf]] = {}
        self._install(list(devices), ioapics or {}, hpets or {})

    # ---- construction
    def _install(
        self,
        devices: list[Device],
        ioapics: Mapping[int, BdfLike],
        hpets: Mapping[int, BdfLike],
    ) -> None:
        """Check everything, then commit (a failed check leaves the topology unchanged)."""
        table: dict[Bdf, Device] = dict(self._devices)
        for d in devices:
            if not isinstance(d, Device):
                raise PlatformError(f"expected a Device, not {type(d).__name__}")
            if d.bdf in table:
                raise PlatformError(f"{d.bdf} is declared twice")
            table[d.bdf] = d
        io = dict(self.ioapics)
        for k, v in ioapics.items():
            io[_id8(k, "IOAPIC id")] = Bdf.coerce(v)
        hp = dict(self.hpets)
        for k, v in hpets.items():
            hp[_id8(k, "HPET number")] = Bdf.coerce(v)
        by_sec, bus2bridge, vfs = _check_buses(table)
        self._devices = dict(sorted(table.items()))
        self.ioapics, self.hpets = io, hp
        self._bridges_by_secondary, self._bus2bridge, self._vfs = by_sec, bus2bridge, vfs
        #: Replaced by every change: a look-up cached against it is valid while it is the same.
        self.version = object()

    def add(self, *devices: Device) -> None:
        """Add functions (checked together with the existing ones; all or nothing)."""
        self._install(list(devices), {}, {})

    def add_vfs(
        self, pf: BdfLike, num_vfs: int, offset: int, stride: int = 1, ats: bool | None = None
    ) -> list[Device]:
        """Create ``num_vfs`` SR-IOV virtual functions of ``pf`` (VF i at PF RID+offset+i*stride).

        VFs inherit the PF's ATS capability and ARI setting unless ``ats`` says otherwise.
        """
        pfd = self.get(pf)
        if pfd is None:
            raise PlatformError(f"no physical function at {Bdf.coerce(pf)}")
        if pfd.kind is not DeviceKind.PCIE_ENDPOINT or pfd.is_virtfn:
            raise PlatformError(f"{pfd.bdf}: only a PCIe endpoint PF can have virtual functions")
        vfs = [
            Device(
                b,
                DeviceKind.PCIE_ENDPOINT,
                ats=pfd.ats if ats is None else ats,
                physfn=pfd.bdf,
                ari=pfd.ari,
            )
            for b in sriov_vf_bdfs(pfd.bdf, num_vfs, offset, stride)
        ]
        self.add(*vfs)
        return vfs

    # ---- container protocol
    def __len__(self) -> int:
        return len(self._devices)

    def __iter__(self) -> Iterator[Device]:
        return iter(self._devices.values())

    def __contains__(self, bdf: object) -> bool:
        try:
            return Bdf.coerce(bdf) in self._devices  # type: ignore[arg-type]
        except InvalidArgument:
            return False

    def __getitem__(self, bdf: BdfLike) -> Device:
        d = self.get(bdf)
        if d is None:
            raise PlatformError(f"no PCI function at {Bdf.coerce(bdf)}")
        return d

    def get(self, bdf: BdfLike) -> Device | None:
        """The device at ``bdf``, or None."""
        return self._devices.get(Bdf.coerce(bdf))

    @property
    def devices(self) -> Mapping[Bdf, Device]:
        """Every device, by address."""
        return self._devices

    @property
    def segments(self) -> list[int]:
        """The PCI segments with at least one device, ascending."""
        segs = {b.segment for b in self._devices}
        segs.update(b.segment for b in self.ioapics.values())
        segs.update(b.segment for b in self.hpets.values())
        return sorted(segs)

    def buses(self, segment: int) -> list[int]:
        """Buses of ``segment`` that hold a function or are some bridge's secondary bus."""
        out = {b.bus for b in self._devices if b.segment == segment}
        out.update(bus for (seg, bus) in self._bridges_by_secondary if seg == segment)
        return sorted(out)

    def root_buses(self, segment: int) -> list[int]:
        """Buses of ``segment`` under no bridge (each hangs off a host bridge)."""
        return [b for b in self.buses(segment) if self.bridge_above(segment, b) is None]

    def bridges(self) -> list[Device]:
        """The devices that forward DMA from a secondary bus (ports and bridges)."""
        return [d for d in self._devices.values() if d.is_bridge]

    def vfs(self, pf: BdfLike) -> list[Device]:
        """The SR-IOV virtual functions of the physical function ``pf``."""
        return [self._devices[b] for b in self._vfs.get(Bdf.coerce(pf), [])]

    # ---- PCI-layer queries
    def bridge_above(self, segment: int, bus: int) -> Device | None:
        """The innermost bridge whose [secondary, subordinate] range holds ``bus``."""
        best: Device | None = None
        for d in self._devices.values():
            if (
                d.is_bridge
                and d.bdf.segment == segment
                and d.secondary is not None
                and d.subordinate is not None
                and d.secondary <= bus <= d.subordinate
                and (best is None or (best.secondary or 0) <= d.secondary)
            ):
                best = d
        return best

    def parent(self, bdf: BdfLike) -> Device | None:
        """The bridge directly upstream of a function (None on a root bus)."""
        b = Bdf.coerce(bdf)
        return self._bridges_by_secondary.get((b.segment, b.bus)) or self.bridge_above(
            b.segment, b.bus
        )

    def config_read8(self, segment: int, bus: int, dev: int, fn: int, reg: int) -> int:
        """A byte of configuration space, as far as the model knows it.

        Absent functions read 0xFF (master abort). Bridges answer 0x19 (secondary bus) and
        0x1a (subordinate bus); everything else reads 0.
        """
        d = self._devices.get(Bdf(segment, bus, dev, fn))
        if d is None:
            return 0xFF
        if d.is_bridge and reg == 0x19:
            return d.secondary or 0
        if d.is_bridge and reg == 0x1A:
            return d.subordinate or 0
        return 0

    def resolve_path(self, segment: int, start_bus: int, path: Sequence[tuple[int, int]]) -> Bdf:
        """Xen's scope-path walk (§1.4): every element but the last is taken to be a bridge and
        the next one lives on its secondary bus (read from config space, 0xFF when absent)."""
        if not path:
            raise PlatformError(f"empty device scope path from bus {start_bus:#04x}")
        bus = start_bus
        for dev, fn in path[:-1]:
            bus = self.config_read8(segment, bus, dev, fn, 0x19)
        dev, fn = path[-1]
        return Bdf(segment, bus, dev, fn)

    def find_upstream_bridge(self, bdf: BdfLike) -> tuple[Bdf, int] | None:
        """Xen's ``find_upstream_bridge`` (§5.3): the top-most PCIe-to-PCI or legacy PCI bridge
        above the function and the bus directly below it, or None when there is none."""
        b = Bdf.coerce(bdf)
        bus = b.bus
        if bus == 0:
            return None
        key = (b.segment, bus)
        if key not in self._bus2bridge:
            return None
        top: Bdf | None = None
        secbus = bus
        steps = 0
        while key in self._bus2bridge:
            steps += 1
            if steps > 256:
                raise PlatformError(f"{b}: bridge loop above bus {bus:#04x}")
            secbus = key[1]
            top = self._bus2bridge[key]
            key = (b.segment, top.bus)
        assert top is not None
        return top, secbus

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, in the form the topology file uses."""
        out: dict[str, Any] = {"devices": [d.to_dict() for d in self._devices.values()]}
        if self.ioapics:
            out["ioapics"] = [{"id": k, "bdf": str(v)} for k, v in sorted(self.ioapics.items())]
        if self.hpets:
            out["hpets"] = [{"id": k, "bdf": str(v)} for k, v in sorted(self.hpets.items())]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Topology:
        """Build from the ``devices`` (and optional ``ioapics``/``hpets``) lists of a description.

        Each device entry: ``bdf`` (required), ``kind``, ``secondary``, ``subordinate``,
        ``phantom_stride``, ``ats``, ``ats_queue_depth``, ``physfn``, ``ari``, ``name``, and
        ``sriov = {num_vfs, offset, stride}`` to create the function's VFs.
        """
        if not isinstance(data, Mapping):
            raise PlatformError("a topology description must be a table/object")
        unknown = set(data) - {"devices", "ioapics", "hpets", "numa"}
        if unknown:
            raise PlatformError(f"unknown topology keys: {', '.join(sorted(unknown))}")
        entries = data.get("devices", [])
        if not isinstance(entries, list):
            raise PlatformError("'devices' must be a list")
        devices: list[Device] = []
        sriov: list[tuple[Bdf, Mapping[str, Any]]] = []
        for i, e in enumerate(entries):
            d, vf = _device_from_dict(e, i)
            devices.append(d)
            if vf is not None:
                sriov.append((d.bdf, vf))
        topo = cls(
            devices,
            _id_map(data.get("ioapics", []), "ioapics"),
            _id_map(data.get("hpets", []), "hpets"),
        )
        for pf, spec in sriov:
            extra = set(spec) - {"num_vfs", "offset", "stride"}
            if extra:
                raise PlatformError(f"{pf}: unknown sriov keys: {', '.join(sorted(extra))}")
            if "num_vfs" not in spec or "offset" not in spec:
                raise PlatformError(f"{pf}: sriov needs num_vfs and offset")
            topo.add_vfs(
                pf,
                _int(spec["num_vfs"], f"{pf} sriov.num_vfs"),
                _int(spec["offset"], f"{pf} sriov.offset"),
                _int(spec.get("stride", 1), f"{pf} sriov.stride"),
            )
        return topo

    @classmethod
    def load(cls, path: str | Path) -> Topology:
        """Load the topology part of a TOML or JSON description file."""
        return cls.from_dict(_read_description(path))

    # ---- synthesis
    @classmethod
    def from_dmar(cls, table: DmarTable) -> Topology:
        """A topology in which every device a DMAR scope names exists.

        Every structure's scopes count (DRHD, RMRR, ATSR, SATC, SIDP). Endpoints become PCIe
        endpoints; bridges named by a bridge scope, and every intermediate element of a
        multi-level path, become PCIe ports. Each bridge gets fresh secondary buses, chosen among
        the buses no scope starts on (so no bridge range swallows a device named elsewhere), a
        range covering the bridges below it. IOAPIC and HPET scopes fill ``ioapics``/``hpets``.
        Namespace and reserved scope types name no PCI function and are skipped.
        """
        return _synthesise(table)

    def __repr__(self) -> str:
        return f"Topology({len(self._devices)} functions on segments {self.segments})"


def _id8(value: Any, what: str) -> int:
    v = _int(value, what)
    if not 0 <= v <= 0xFF:
        raise PlatformError(f"{what} {v} is not in 0..255")
    return v


def _id_map(entries: Any, what: str) -> dict[int, Bdf]:
    if isinstance(entries, Mapping):
        return {_id8(k, what): _bdf_field(v, what) for k, v in entries.items()}
    if not isinstance(entries, list):
        raise PlatformError(f"'{what}' must be a list of {{id, bdf}} entries")
    out: dict[int, Bdf] = {}
    for e in entries:
        if not isinstance(e, Mapping) or set(e) != {"id", "bdf"}:
            raise PlatformError(f"each '{what}' entry needs exactly 'id' and 'bdf', got {shown(e)}")
        out[_id8(e["id"], what)] = _bdf_field(e["bdf"], what)
    return out


def _bdf_field(v: Any, what: str) -> Bdf:
    if not isinstance(v, str):
        raise PlatformError(f"{what}: PCI address {shown(v)} must be a string like '0000:00:1f.0'")
    return Bdf.parse(v, what=what)


_DEVICE_KEYS = {
    "bdf",
    "kind",
    "secondary",
    "subordinate",
    "phantom_stride",
    "ats",
    "ats_queue_depth",
    "physfn",
    "ari",
    "name",
    "sriov",
}


def _device_from_dict(e: Any, i: int) -> tuple[Device, Mapping[str, Any] | None]:
    if not isinstance(e, Mapping):
        raise PlatformError(f"devices[{i}] must be a table/object")
    if "bdf" not in e:
        raise PlatformError(f"devices[{i}] has no 'bdf'")
    bdf = _bdf_field(e["bdf"], f"devices[{i}].bdf")
    unknown = set(e) - _DEVICE_KEYS
    if unknown:
        raise PlatformError(f"{bdf}: unknown device keys: {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {}
    for key in ("secondary", "subordinate", "phantom_stride", "ats_queue_depth"):
        if key in e:
            kw[key] = _int(e[key], f"{bdf} {key}")
    for key in ("ats", "ari"):
        if key in e:
            if not isinstance(e[key], bool):
                raise PlatformError(f"{bdf}: {key} must be true or false")
            kw[key] = e[key]
    if "physfn" in e:
        kw["physfn"] = _bdf_field(e["physfn"], f"{bdf} physfn")
    if "name" in e:
        kw["name"] = str(e["name"])
    kind = e.get("kind", DeviceKind.PCIE_ENDPOINT.value)
    sriov = e.get("sriov")
    if sriov is not None and not isinstance(sriov, Mapping):
        raise PlatformError(f"{bdf}: sriov must be a table/object")
    return Device(bdf, kind, **kw), sriov


def _check_buses(
    table: Mapping[Bdf, Device],
) -> tuple[dict[tuple[int, int], Device], dict[tuple[int, int], Bdf], dict[Bdf, list[Bdf]]]:
    """Check bus numbering; return (secondary -> bridge, Xen's bus2bridge, PF -> VFs)."""
    by_sec: dict[tuple[int, int], Device] = {}
    bridges = sorted((d for d in table.values() if d.is_bridge), key=lambda d: d.bdf)
    for d in bridges:
        assert d.secondary is not None
        key = (d.bdf.segment, d.secondary)
        if key in by_sec:
            raise PlatformError(
                f"{d.bdf} and {by_sec[key].bdf} both have secondary bus {d.secondary:#04x}"
            )
        by_sec[key] = d
    # Ranges must nest or be disjoint.
    for i, a in enumerate(bridges):
        for b in bridges[i + 1 :]:
            if a.bdf.segment != b.bdf.segment:
                continue
            assert a.secondary is not None and a.subordinate is not None
            assert b.secondary is not None and b.subordinate is not None
            lo, hi = max(a.secondary, b.secondary), min(a.subordinate, b.subordinate)
            if lo > hi:
                continue
            inner, outer = (
                (a, b) if a.subordinate - a.secondary < b.subordinate - b.secondary else (b, a)
            )
            assert outer.secondary is not None and outer.subordinate is not None
            assert inner.secondary is not None and inner.subordinate is not None
            if not (
                outer.secondary <= inner.secondary
                and inner.subordinate <= outer.subordinate
                and outer.secondary <= inner.bdf.bus <= outer.subordinate
                and inner.secondary != outer.secondary
            ):
                raise PlatformError(
                    f"bus ranges of bridges {a.bdf} ({a.secondary:#04x}-{a.subordinate:#04x}) "
                    f"and {b.bdf} ({b.secondary:#04x}-{b.subordinate:#04x}) overlap without nesting"
                )

    def innermost(seg: int, bus: int) -> Device | None:
        best: Device | None = None
        for d in bridges:
            assert d.secondary is not None and d.subordinate is not None
            if (
                d.bdf.segment == seg
                and d.secondary <= bus <= d.subordinate
                and (
                    best is None
                    or (best.secondary or 0) < d.secondary
                    or (best.secondary == d.secondary and (best.subordinate or 0) > d.subordinate)
                )
            ):
                best = d
        return best

    vfs: dict[Bdf, list[Bdf]] = {}
    for d in table.values():
        up = innermost(d.bdf.segment, d.bdf.bus)
        if d.physfn is not None:
            pf = table.get(d.physfn)
            if pf is None:
                raise PlatformError(f"{d.bdf}: its physical function {d.physfn} does not exist")
            if pf.is_virtfn or pf.kind is not DeviceKind.PCIE_ENDPOINT:
                raise PlatformError(f"{d.bdf}: {d.physfn} is not a PCIe endpoint PF")
            vfs.setdefault(pf.bdf, []).append(d.bdf)
            # VFs may spill onto buses past the PF's; they need only share its bridge.
            pf_up = innermost(pf.bdf.segment, pf.bdf.bus)
            if up is not pf_up and not (
                pf_up is not None
                and pf_up.secondary is not None
                and pf_up.subordinate is not None
                and pf_up.secondary <= d.bdf.bus <= pf_up.subordinate
            ):
                raise PlatformError(
                    f"{d.bdf}: a virtual function must sit below the same bridge as its PF {pf.bdf}"
                )
            continue
        if up is not None and up.secondary != d.bdf.bus:
            raise PlatformError(
                f"{d.bdf}: bus {d.bdf.bus:#04x} lies under bridge {up.bdf} "
                f"({up.secondary:#04x}-{up.subordinate:#04x}) but is not its secondary bus"
            )
    # Xen's bus2bridge: devices scanned by ascending bus, so inner bridges overwrite.
    bus2bridge: dict[tuple[int, int], Bdf] = {}
    for d in sorted(bridges, key=lambda d: (d.bdf.segment, d.bdf.bus, d.bdf.devfn)):
        if d.kind in _ALIASING_BRIDGES:
            assert d.secondary is not None and d.subordinate is not None
            for bus in range(d.secondary, d.subordinate + 1):
                bus2bridge[(d.bdf.segment, bus)] = d.bdf
    return by_sec, bus2bridge, vfs


def _synthesise(table: DmarTable) -> Topology:
    from vtdwalk.acpi import dmar

    # (segment, start_bus, path, scope type) of every scope naming a PCI function or an APIC.
    entries: list[tuple[int, dmar.DeviceScope]] = []
    for s in table.structures:
        seg = getattr(s, "segment", None)
        scopes = getattr(s, "scopes", None)
        if seg is None or scopes is None:
            continue
        if isinstance(s, dmar.Atsr) and s.all_ports:
            continue  # Xen does not parse an ALL_PORTS ATSR's scopes
        entries.extend((seg, sc) for sc in scopes)

    used: dict[int, set[int]] = {}
    for seg, sc in entries:
        if sc.path and sc.type_code in (1, 2, 3, 4):
            used.setdefault(seg, set()).add(sc.start_bus)

    # A tree of bridges: key (seg, parent, dev, fn) where parent is ("bus", n) or a bridge key.
    Key = tuple[int, object, int, int]
    children: dict[object, list[Key]] = {}
    kinds: dict[Key, DeviceKind] = {}
    ioapics: dict[int, tuple[int, object, int, int]] = {}
    hpets: dict[int, tuple[int, object, int, int]] = {}

    def node(seg: int, parent: object, dev: int, fn: int, bridge: bool) -> Key:
        k: Key = (seg, parent, dev, fn)
        if k not in kinds:
            kinds[k] = DeviceKind.PCIE_PORT if bridge else DeviceKind.PCIE_ENDPOINT
            children.setdefault(parent, []).append(k)
        elif bridge:
            kinds[k] = DeviceKind.PCIE_PORT  # named both ways: a path runs through it
        return k

    for seg, sc in entries:
        if not sc.path or sc.type_code not in (1, 2, 3, 4):
            continue
        parent: object = ("bus", seg, sc.start_bus)
        for dev, fn in sc.path[:-1]:
            parent = node(seg, parent, dev, fn, True)
        dev, fn = sc.path[-1]
        if sc.type_code == 3:
            ioapics.setdefault(sc.enumeration_id, (seg, parent, dev, fn))
        elif sc.type_code == 4:
            hpets.setdefault(sc.enumeration_id, (seg, parent, dev, fn))
        else:
            node(seg, parent, dev, fn, sc.type_code == 2)

    def subtree_bridges(k: Key) -> int:
        return 1 + sum(subtree_bridges(c) for c in children.get(k, []) if kinds[c].is_bridge)

    # Assign bus numbers: each top-level bridge takes the lowest run of free buses above its own
    # bus (else anywhere) big enough for its subtree, numbered depth first.
    free: dict[int, list[bool]] = {}
    buses_of: dict[Key, tuple[int, int]] = {}
    bus_of: dict[object, int] = {}

    def place(k: Key, lo: int) -> int:
        """Number k's subtree from bus lo; return its subordinate bus."""
        buses_of[k] = (lo, lo)
        bus_of[k] = lo
        nxt = lo
        for c in sorted(children.get(k, []), key=lambda c: (c[2], c[3])):
            if kinds[c].is_bridge:
                nxt = place(c, nxt + 1)
        buses_of[k] = (lo, nxt)
        return nxt

    # Sorted, so that the numbering does not depend on the order of the table's structures.
    roots = sorted(p for p in children if isinstance(p, tuple) and p[0] == "bus")
    for parent_key in roots:
        _, seg, bus = parent_key
        bus_of[parent_key] = bus
        taken = free.setdefault(seg, [b in used.get(seg, set()) for b in range(256)])
        for k in sorted(children[parent_key], key=lambda c: (c[2], c[3])):
            if not kinds[k].is_bridge:
                continue
            n = subtree_bridges(k)
            start = _free_run(taken, n, bus + 1)
            if start is None:
                start = _free_run(taken, n, 0)
            if start is None:
                raise PlatformError(
                    f"segment {seg:#x}: no run of {n} free bus numbers left for the bridge "
                    f"{Bdf(seg, bus, k[2], k[3])}"
                )
            for b in range(start, start + n):
                taken[b] = True
            place(k, start)

    def busnum(parent: object) -> int:
        if isinstance(parent, tuple) and parent[0] == "bus":
            return int(parent[2])
        return bus_of[parent]

    devices: list[Device] = []
    for k, kind in kinds.items():
        seg, parent, dev, fn = k
        bdf = Bdf(seg, busnum(parent), dev, fn)
        if kind.is_bridge:
            sec, sub = buses_of[k]
            devices.append(Device(bdf, kind, secondary=sec, subordinate=sub))
        else:
            devices.append(Device(bdf, kind))
    io = {i: Bdf(s, busnum(p), d, f) for i, (s, p, d, f) in ioapics.items()}
    hp = {i: Bdf(s, busnum(p), d, f) for i, (s, p, d, f) in hpets.items()}
    return Topology(devices, io, hp)


def _free_run(taken: list[bool], n: int, lo: int) -> int | None:
    run = 0
    for b in range(lo, 256):
        run = 0 if taken[b] else run + 1
        if run == n:
            return b - n + 1
    return None


# --------------------------------------------------------------------------------------------
# NUMA
