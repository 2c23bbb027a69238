"""A whole machine: NUMA memory, PCI topology, and the remapping units of its DMAR table.

:meth:`Platform.from_dmar` follows Xen's ``acpi_dmar_init`` with the seed series applied
(the README's "What `vtdwalk simulate` does" and "A tour of the Python API" describe the
result):

1. Every DMAR structure is parsed in table order. Each DRHD becomes an :class:`Iommu`
   (``iommu_alloc``: CAP/ECAP, levels, DIDs, node None) with its scope resolved through the
   PCI topology; specific units are put at the head of the unit list, include-all units at the
   tail. RMRRs are checked and registered (head), ATSRs registered (ALL_PORTS at the tail,
   others at the head), RHSAs kept in table order.
2. Then, for each unit in list order, its node is set from its RHSA through ``pxm_to_node``
   (none without an RHSA), and only then is its root table allocated, on that node.

Policy ``"pre-seed"`` instead allocates each root table while its DRHD is parsed, against the
RHSAs parsed so far (on a spec-conforming table: none, so no node), as Xen did before the seed.
The unit's ``node`` (used for its later allocations) still comes from its RHSA afterwards, as the
pre-seed driver looked the RHSA up again at each of those allocations.

Firmware oddities are collected in :attr:`Platform.report` as :class:`Finding` entries (the
table-level ones are :meth:`DmarTable.validate`'s, under its codes) and the rest still works
(a DRHD at address 0 is skipped, duplicates are kept as Xen keeps them).
``strict=True`` raises :class:`PlatformError` for every condition Xen treats as fatal, before
any memory is allocated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vtdwalk import dma
from vtdwalk._args import DMAR_CAP, int_arg, plain_int, read_regular_file, shown
from vtdwalk._core import PhysMem
from vtdwalk.acpi import dmar as _dmar
from vtdwalk.acpi.severity import Severity, severity_of
from vtdwalk.driver.assign import Assignments
from vtdwalk.driver.intremap import Interrupts, RemapHandle
from vtdwalk.driver.iommu import MAX_IOMMUS, QEMU_CAP, QEMU_ECAP, Iommu, Scope
from vtdwalk.driver.machine import AtsrUnit, Machine, RmrrUnit
from vtdwalk.errors import InvalidArgument, PlatformError, VtdError
from vtdwalk.topology import Bdf, BdfLike, Device, Numa, NumaNode, Topology, load_description

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Buffer

    from vtdwalk._core import Interrupt, Remapper, Translation
    from vtdwalk.driver.domain import Domain

__all__ = ["AtsrUnit", "Finding", "Platform", "Policy", "RemapHandle", "RmrrUnit"]

Policy = Literal["seed", "pre-seed"]


class _Hex(int):
    """An int shown in hex, so register defaults read as registers in ``help()``."""

    def __repr__(self) -> str:
        return hex(self)


#: QEMU's CAP and ECAP (device-TLB on), the hardware model's defaults.
DEFAULT_CAP = _Hex(QEMU_CAP)
DEFAULT_ECAP = _Hex(QEMU_ECAP)

#: RMRRs larger than this are reported (real firmware has some of about 1 GiB).
LARGE_RMRR = 512 << 20


@dataclass(frozen=True)
class Finding:
    """One entry of the build report.

    ``severity``: from the one table of :mod:`vtdwalk.acpi.severity` ("fatal": Xen refuses the
    table or the unit, ``strict=True`` raises; "warning": firmware is odd, the platform works
    around it as Xen does; "info"). ``code`` is stable;
    ``offset`` is the byte offset of the structure concerned when the table knows it.
    """

    severity: Severity
    code: str
    message: str
    offset: int | None = None

    def __str__(self) -> str:
        where = f" (at {self.offset:#x})" if self.offset is not None else ""
        return f"{self.severity}: {self.code}: {self.message}{where}"


#: validate()'s checks the platform reports as its own findings (one code per condition).
_TABLE_CODES = frozenset(
    {
        "duplicate-include-all",
        "duplicate-all-ports",
        "duplicate-drhd-address",
        "rmrr-base-zero",
        "rhsa-no-drhd",
    }
)


def _unit_caps(unit_caps: object) -> dict[int, tuple[int, int]]:
    """``unit_caps`` checked: a mapping of register base address to (CAP, ECAP) integers."""
    if unit_caps is None:
        return {}
    if not isinstance(unit_caps, Mapping):
        raise TypeError(
            f"unit_caps: expected a mapping of address to (cap, ecap), not "
            f"{type(unit_caps).__name__}"
        )
    out: dict[int, tuple[int, int]] = {}
    for addr, pair in unit_caps.items():
        a = plain_int(addr)
        ok = isinstance(a, int) and not isinstance(a, bool) and isinstance(pair, tuple | list)
        vals = [plain_int(v) for v in pair] if ok else []
        if (
            not ok
            or len(vals) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in vals)
        ):
            raise InvalidArgument(
                f"unit_caps: expected address -> (cap, ecap) integers, got {shown(addr)}: "
                f"{shown(pair)}"
            )
        out[a] = (vals[0], vals[1])
    return out


# Device names whose unit Platform.translate remembers (hashable, never equal across types).
_CACHED_NAMES = frozenset({str, int, Bdf})


def _off(s: object) -> int | None:
    o = getattr(s, "offset", None)
    return o if isinstance(o, int) else None


class Platform:
    """A machine built from a DMAR table; see the module docstring for the order of events.

    Attributes: ``dmar`` (the table), ``topology``, ``numa``, ``mem`` (the PhysMem), ``policy``,
    ``iommus`` (units in Xen's list order), ``rmrrs`` and ``atsrs`` (Xen's list order), ``rhsas``
    (table order), ``report`` (list of :class:`Finding`), ``synthesised`` (True when the
    topology was derived from the table).
    """

    def __init__(
        self,
        dmar: _dmar.DmarTable,
        topology: Topology | Mapping[str, Any] | str | Path | None = None,
        numa: Numa | Mapping[str, Any] | Iterable[NumaNode] | str | Path | None = None,
        mem: PhysMem | None = None,
        policy: Policy = "seed",
        strict: bool = False,
        cap: int = DEFAULT_CAP,
        ecap: int = DEFAULT_ECAP,
        unit_caps: Mapping[int, tuple[int, int]] | None = None,
        iotlb_entries: int = 1024,
        fault_records: int = 8,
    ) -> None:
        if not isinstance(dmar, _dmar.DmarTable):
            raise PlatformError(f"expected a DmarTable, not {type(dmar).__name__}")
        if not isinstance(policy, str):
            raise TypeError(f"policy: expected 'seed' or 'pre-seed', not {type(policy).__name__}")
        if not isinstance(strict, bool | np.bool_):
            raise TypeError(f"strict: expected True or False, not {type(strict).__name__}")
        strict = bool(strict)
        if mem is not None and not isinstance(mem, PhysMem):
            raise TypeError(f"mem: expected a PhysMem or None, not {type(mem).__name__}")
        caps = _unit_caps(unit_caps)
        if policy not in ("seed", "pre-seed"):
            raise PlatformError(f"policy must be 'seed' or 'pre-seed', not {policy!r}")
        self.dmar = dmar
        self.policy: Policy = policy
        self.strict = strict
        self.report: list[Finding] = []

        # ---- topology and NUMA
        file_numa: Numa | None = None
        if topology is None:
            self.topology = Topology.from_dmar(dmar)
            self.synthesised = True
        else:
            self.synthesised = False
            if isinstance(topology, Topology):
                self.topology = topology
            elif isinstance(topology, str | Path):
                topo, file_numa = load_description(topology, "topology")
                self.topology = topo if topo is not None else Topology()
            elif isinstance(topology, Mapping):
                self.topology = Topology.from_dict(
                    {k: v for k, v in topology.items() if k != "numa"}
                )
                if "numa" in topology:
                    file_numa = Numa.from_dict(topology["numa"])
            else:
                raise PlatformError(f"cannot use {type(topology).__name__} as a topology")
        self.numa, self.mem = self._memory(numa if numa is not None else file_numa, mem)

        self.iommus: list[Iommu] = []
        # Platform.translate's device -> (unit's hardware, source-id), for str, int and Bdf
        # names, valid for one topology version and until a root table or assignment changes.
        self._dma_units: dict[object, tuple[Remapper, int]] = {}
        self._dma_version: object = None
        # Platform.msi's device -> (unit's hardware, source-id, message of its first vector),
        # for the same names, until the topology, an assignment or an MSI set-up changes.
        self._msi_hits: dict[object, tuple[Remapper, int, int, int]] = {}
        self.rmrrs: list[RmrrUnit] = []
        self._rmrr_index: _dmar.RangeIndex[RmrrUnit] = _dmar.RangeIndex()
        self.atsrs: list[AtsrUnit] = []
        self.rhsas: list[_dmar.Rhsa] = []
        self._unit_hw = {"iotlb_entries": iotlb_entries, "fault_records": fault_records}
        self._plan(cap, ecap, caps)
        self._check_platform()
        fatal = [f for f in self.report if f.severity == "fatal"]
        if strict and fatal:
            raise PlatformError(
                "the DMAR table is one Xen refuses: "
                + "; ".join(f"{f.code}: {f.message}" for f in fatal)
            )
        self._allocate()
        self._assignments = Assignments(
            Machine(
                mem=self.mem,
                topology=self.topology,
                iommus=self.iommus,
                policy=self.policy,
                iommu_for_device=self.iommu_for_device,
                atsr_for_device=self.atsr_for_device,
                rmrrs_for_device=self.rmrrs_for_device,
                unit_node=self._rhsa_node,
            )
        )
        self._interrupts = Interrupts(self.topology, self.iommu_for_device, self._ioapic_unit)

    # ---- builders
    @classmethod
    def from_dmar(
        cls,
        table: _dmar.DmarTable | bytes | bytearray | memoryview | str | Path,
        topology: Topology | Mapping[str, Any] | str | Path | None = None,
        numa: Numa | Mapping[str, Any] | Iterable[NumaNode] | str | Path | None = None,
        mem: PhysMem | None = None,
        policy: Policy = "seed",
        strict: bool = False,
        cap: int = DEFAULT_CAP,
        ecap: int = DEFAULT_ECAP,
        unit_caps: Mapping[int, tuple[int, int]] | None = None,
        iotlb_entries: int = 1024,
        fault_records: int = 8,
    ) -> Platform:
        """Build from a DmarTable, the raw table bytes, or a path to a binary table.

        ``topology``/``numa`` default to what the table implies (see :meth:`Topology.from_dmar`,
        :meth:`Numa.default`); ``mem`` defaults to a fresh PhysMem with the NUMA nodes.
        ``unit_caps`` maps a DRHD register base address to that unit's (CAP, ECAP); other units
        get ``cap``/``ecap`` (QEMU's, device-TLB on: the hardware model's defaults).
        ``iotlb_entries`` and ``fault_records`` size each unit's hardware model (its CAP then
        reports NFR = fault_records - 1).
        ``policy``: "seed" (default) or "pre-seed"; ``strict``: raise for what Xen refuses.
        """
        if isinstance(table, str | Path):
            path = Path(table)
            try:
                table = read_regular_file(path, "table", DMAR_CAP)
            except OSError as e:
                raise PlatformError(f"cannot read DMAR table {path}: {e.strerror or e}") from e
        if isinstance(table, bytes | bytearray | memoryview):
            table = _dmar.parse(bytes(table))
        return cls(
            table,
            topology=topology,
            numa=numa,
            mem=mem,
            policy=policy,
            strict=strict,
            cap=cap,
            ecap=ecap,
            unit_caps=unit_caps,
            iotlb_entries=iotlb_entries,
            fault_records=fault_records,
        )

    @classmethod
    def default(cls, **kwargs: Any) -> Platform:
        """The embedded default machine: a two-socket Supermicro X10DAi (its real DMAR table)
        with the matching NUMA layout and PCI population of ``data/supermicro-x10dai.toml``.
        Keyword arguments (``policy``, ``strict``, ``cap``...) go to :meth:`from_dmar`."""
        data = Path(__file__).resolve().parent / "data"
        kwargs.setdefault("topology", data / "supermicro-x10dai.toml")
        return cls.from_dmar(data / "supermicro-x10dai.dat", **kwargs)

    # ---- construction steps
    def _memory(self, numa: Any, mem: PhysMem | None) -> tuple[Numa, PhysMem]:
        if isinstance(numa, str | Path):
            _, numa = load_description(numa, "numa")
            if numa is None:
                raise PlatformError("the description file has no 'numa' section")
        elif isinstance(numa, Mapping):
            numa = Numa.from_dict(numa)
        elif numa is not None and not isinstance(numa, Numa):
            try:
                nodes = list(numa)
            except TypeError:
                raise PlatformError(
                    f"cannot use {type(numa).__name__} as a NUMA description"
                ) from None
            numa = Numa(nodes)
        if numa is None:
            if mem is not None:
                # Proximity domain i is node i.
                numa = Numa([NumaNode(b, s, (i,)) for i, (b, s) in enumerate(mem.nodes)])
            else:
                numa = Numa.default(
                    (r.proximity_domain for r in self.dmar.rhsas), haw_bits=self.dmar.haw_bits
                )
        assert isinstance(numa, Numa)
        if mem is None:
            mem = numa.make_mem()
        elif list(mem.nodes) != numa.ranges:
            raise PlatformError(
                f"the PhysMem nodes {list(mem.nodes)} differ from the NUMA description "
                f"{numa.ranges}"
            )
        return numa, mem

    def _add(self, severity: Severity, code: str, message: str, offset: int | None = None) -> None:
        # The one table decides (vtdwalk.acpi.severity); ``severity`` is the call site's
        # reading, used only for the segment-dependent codes _table_findings passes.
        if code not in ("duplicate-include-all", "duplicate-all-ports"):
            severity = severity_of(code)
        self.report.append(Finding(severity, code, message, offset))

    def _resolve(
        self, seg: int, scopes: Iterable[_dmar.DeviceScope], owner: str, offset: int | None
    ) -> tuple[Scope, list[tuple[int, Bdf]], list[tuple[int, Bdf]], list[Bdf]]:
        """Xen's ``acpi_parse_dev_scope``: (scope, ioapics, hpets, endpoint+bridge BDFs)."""
        devices: list[Bdf] = []
        buses: set[int] = set()
        ioapics: list[tuple[int, Bdf]] = []
        hpets: list[tuple[int, Bdf]] = []
        functions: list[Bdf] = []
        topo = self.topology
        for sc in scopes:
            if sc.type_code not in (1, 2, 3, 4) or not sc.path:
                continue
            if len(sc.path) > 1:
                self._add(
                    "info",
                    "multi-level-path",
                    f"{owner}: {sc.type} scope {sc.path_str()} goes through bridges",
                    sc.offset if sc.offset is not None else offset,
                )
            bdf = topo.resolve_path(seg, sc.start_bus, sc.path)
            devices.append(bdf)
            if sc.type_code == _dmar.SCOPE_BRIDGE:
                sec = topo.config_read8(seg, bdf.bus, bdf.dev, bdf.fn, 0x19)
                sub = topo.config_read8(seg, bdf.bus, bdf.dev, bdf.fn, 0x1A)
                if sec <= sub:
                    buses.update(range(sec, sub + 1))
                functions.append(bdf)
            elif sc.type_code == _dmar.SCOPE_IOAPIC:
                ioapics.insert(0, (sc.enumeration_id, bdf))
            elif sc.type_code == _dmar.SCOPE_HPET:
                hpets.insert(0, (sc.enumeration_id, bdf))
            else:
                functions.append(bdf)
        return Scope(seg, tuple(devices), frozenset(buses)), ioapics, hpets, functions

    def _plan(self, cap: int, ecap: int, caps: dict[int, tuple[int, int]]) -> None:
        """Walk the table as Xen's parser does; build units and lists, allocate nothing."""
        t = self.dmar
        if t.host_address_width == 0:
            self._add("fatal", "haw-zero", "host address width 0 ('Zero: Invalid DMAR width')", 36)
        if t.x2apic_opt_out and not t.intr_remap:
            self._add(
                "info",
                "x2apic-opt-out-without-intremap",
                "X2APIC_OPT_OUT is set but INTR_REMAP is not (Xen ignores the opt-out)",
                37,
            )
        self._table_findings()
        specific: list[Iommu] = []  # head-inserted: kept reversed at the end
        include_all: list[Iommu] = []
        include_all_seen: dict[int, int | None] = {}
        not_last_reported: set[int] = set()
        atsr_head: list[AtsrUnit] = []
        atsr_tail: list[AtsrUnit] = []
        rhsas_so_far: list[_dmar.Rhsa] = []
        self._pre_seed_node: dict[int, int | None] = {}
        index = 0
        for s in t.structures:
            off = _off(s)
            if isinstance(s, _dmar.UnknownStructure) and s.type_code in (0, 1, 2, 3):
                self._add(
                    "fatal",
                    "structure-too-short",
                    f"{_dmar.STRUCTURE_NAMES[s.type_code]} too short to decode "
                    "('Invalid ACPI DMAR entry length'); ignored",
                    off,
                )
                continue
            parsed_scopes = isinstance(s, _dmar.Drhd | _dmar.Rmrr) or (
                isinstance(s, _dmar.Atsr) and not s.all_ports
            )
            if parsed_scopes:
                for sc in getattr(s, "scopes", []):
                    if sc.length < _dmar.MIN_SCOPE_LEN:
                        self._add(
                            "fatal",
                            "scope-too-short",
                            f"device scope of length {sc.length} in a "
                            f"{_dmar.structure_name(s)} ('Invalid device scope'); ignored",
                            sc.offset if sc.offset is not None else off,
                        )
            if isinstance(s, _dmar.Drhd):
                what = f"DRHD {s.address:#x}"
                if s.address in (0, 0xFFFF_FFFF_FFFF_FFFF):
                    n = sum(1 for sc in s.scopes if sc.type_code in (1, 2, 3, 4))
                    self._add(
                        "fatal",
                        "drhd-address-invalid",
                        f"DRHD with register base {s.address:#x} on segment {s.segment:#x} "
                        f"({'include-all' if s.include_all else f'{n} scope entries'}) is "
                        "skipped (Xen: -ENODEV, VT-d disabled)",
                        off,
                    )
                    continue
                if index > MAX_IOMMUS:
                    self._add(
                        "fatal",
                        "too-many-units",
                        f"{what}: unit {index} is past Xen's MAX_IOMMUS ({MAX_IOMMUS}); skipped",
                        off,
                    )
                    continue
                if s.segment in include_all_seen and s.segment not in not_last_reported:
                    not_last_reported.add(s.segment)
                    self._add(
                        "info",
                        "include-all-not-last",
                        f"{what} follows the include-all DRHD of segment {s.segment:#x} in the "
                        "table (the unit list puts include-all units last anyway)",
                        off,
                    )
                if s.include_all:
                    include_all_seen.setdefault(s.segment, off)
                scope, ioapics, hpets, functions = self._resolve(s.segment, s.scopes, what, off)
                c, e = caps.get(s.address, (cap, ecap))
                unit = Iommu(s, index, self.mem, c, e, scope, ioapics, hpets, **self._unit_hw)
                index += 1
                if not s.include_all:
                    missing = [b for b in functions if b not in self.topology]
                    for b in missing:
                        self._add(
                            "warning",
                            "scope-device-missing",
                            f"{what}: scope names {b}, which does not exist "
                            "('Non-existent device in this DRHD's scope')",
                            off,
                        )
                if self.policy == "pre-seed":
                    rhsa = next((r for r in rhsas_so_far if r.address == s.address), None)
                    self._pre_seed_node[id(unit)] = (
                        None if rhsa is None else self.numa.pxm_to_node(rhsa.proximity_domain)
                    )
                (include_all if s.include_all else specific).append(unit)
            elif isinstance(s, _dmar.Rmrr):
                self._plan_rmrr(s, off)
            elif isinstance(s, _dmar.Atsr):
                if s.all_ports:
                    atsr_tail.append(AtsrUnit(s, s.segment, True, Scope(s.segment)))
                else:
                    scope, _, _, _ = self._resolve(s.segment, s.scopes, "ATSR", off)
                    atsr_head.append(AtsrUnit(s, s.segment, False, scope))
            elif isinstance(s, _dmar.Rhsa):
                rhsas_so_far.append(s)
        self.iommus = specific[::-1] + include_all
        self.atsrs = atsr_head[::-1] + atsr_tail
        self.rmrrs = self.rmrrs[::-1]
        self.rhsas = rhsas_so_far

    def _table_findings(self) -> None:
        """What :meth:`DmarTable.validate` finds about the table itself that the platform
        reports too, under validate's codes: the checks above and every malformed-bytes
        "error" (a bad checksum...), with the severity of :mod:`vtdwalk.acpi.severity`."""
        at = {o: s for o, s, _ in self.dmar._layout()}
        for p in self.dmar.validate():
            if p.code not in _TABLE_CODES and p.severity != "error":
                continue
            sev = severity_of(p.code, getattr(at.get(p.offset), "segment", 0))
            self._add(sev, p.code, p.message, p.offset)

    def _plan_rmrr(self, s: _dmar.Rmrr, off: int | None) -> None:
        what = f"RMRR [{s.base:#x}, {s.limit:#x}]"
        # The first registered RMRR it overlaps (a binary search, not a pass over them all).
        r = self._rmrr_index.first_overlap(s.base, s.limit)
        if r is not None:
            self._add(
                "fatal",
                "rmrr-overlap",
                f"{what} overlaps RMRR [{r.base:#x}, {r.end:#x}] (Xen: -EEXIST, VT-d "
                "disabled); not registered",
                off,
            )
            return
        if s.limit >= s.base and s.limit - s.base + 1 > LARGE_RMRR:
            self._add(
                "info",
                "rmrr-large",
                f"{what} is {(s.limit - s.base + 1) >> 20} MiB, identity-mapped for its devices",
                off,
            )
        scope, _, _, _ = self._resolve(s.segment, s.scopes, what, off)
        if not scope.devices:
            self._add("info", "rmrr-no-devices", f"{what} names no device; dropped", off)
            return
        if not any(b in self.topology for b in scope.devices):
            self._add(
                "warning",
                "rmrr-devices-missing",
                f"{what}: none of its devices ({', '.join(map(str, scope.devices))}) exists; "
                "dropped",
                off,
            )
            return
        if s.base > s.limit:
            self._add(
                "fatal",
                "rmrr-base-above-limit",
                f"{what}: base above limit ('The RMRR is incorrect', -EFAULT); not registered",
                off,
            )
            return
        unit = RmrrUnit(s, s.segment, s.base, s.limit, scope.devices)
        self._rmrr_index.add(s.base, s.limit, unit)
        self.rmrrs.append(unit)

    def _check_platform(self) -> None:
        """Findings that need the whole picture: RHSAs, devices and APICs with no unit."""
        by_addr = {u.address for u in self.iommus}
        seen_rhsa: set[int] = set()
        for r in self.rhsas:
            if r.address in by_addr and r.address in seen_rhsa:
                self._add(
                    "warning",
                    "duplicate-rhsa",
                    f"second RHSA for unit {r.address:#x}: the first one counts",
                    _off(r),
                )
            seen_rhsa.add(r.address)
            if self.numa.pxm_to_node(r.proximity_domain) is None:
                self._add(
                    "warning",
                    "rhsa-pxm-unknown",
                    f"RHSA proximity domain {r.proximity_domain} is in no NUMA node: unit "
                    f"{r.address:#x} gets no node",
                    _off(r),
                )
        if self.rhsas:
            for u in self.iommus:
                if self.drhd_to_rhsa(u.drhd) is None:
                    self._add(
                        "info",
                        "unit-no-rhsa",
                        f"unit {u.index} ({u.address:#x}) has no RHSA: its node stays unset",
                        _off(u.drhd),
                    )
        orphans = [d for d in self.topology if self.iommu_for_device(d) is None]
        if orphans:
            shown = ", ".join(str(d.bdf) for d in orphans[:16])
            more = f" and {len(orphans) - 16} more" if len(orphans) > 16 else ""
            self._add(
                "warning",
                "device-no-unit",
                f"{len(orphans)} PCI function(s) in no remapping unit's scope: {shown}{more}",
            )
        for apic_id in sorted(self.topology.ioapics):
            if self.ioapic_to_iommu(apic_id) is None:
                self._add("warning", "ioapic-no-unit", f"IOAPIC {apic_id} is in no unit's scope")
        for hpet_id in sorted(self.topology.hpets):
            if self.hpet_to_iommu(hpet_id) is None:
                self._add("warning", "hpet-no-unit", f"HPET {hpet_id} is in no unit's scope")

    def _allocate(self) -> None:
        """Give every unit its node and root table, in the order the policy dictates, then
        bring the units up (:meth:`_bring_up`)."""
        try:
            if self.policy == "pre-seed":
                for u in sorted(self.iommus, key=lambda u: u.index):
                    u.node = self._pre_seed_node.get(id(u))
                    self._alloc_root(u)
                for u in self.iommus:
                    u.node = self._rhsa_node(u)
            else:
                for u in self.iommus:
                    u.node = self._rhsa_node(u)
                    self._alloc_root(u)
            self._bring_up()
        except VtdError:
            for u in self.iommus:
                u.free()
            raise

    def _alloc_node(self, u: Iommu) -> int | None:
        """The node of the queue and interrupt remapping table: the unit's (seed), or, as
        ``alloc_pgtable_maddr(drhd, n)`` did before the seed, the node of the RHSA looked up
        at the call (which is after parsing)."""
        if self.policy == "pre-seed":
            return self._rhsa_node(u)
        return u.node

    @property
    def queued_invalidation(self) -> bool:
        """Xen's ``iommu_qinval`` after ``vtd_setup``: every unit has ECAP.QI."""
        return bool(self.iommus) and all(u.queued_invalidation for u in self.iommus)

    @property
    def interrupt_remapping(self) -> bool:
        """Xen's ``iommu_intremap`` after ``vtd_setup``: the queue is used, the DMAR flags
        have INTR_REMAP, every unit has ECAP.IR, and every IOAPIC has a unit."""
        return (
            self.queued_invalidation
            and self.dmar.intr_remap
            and all(u.intr_remap for u in self.iommus)
            and all(self.ioapic_to_iommu(a) is not None for a in self.topology.ioapics)
        )

    @property
    def x2apic(self) -> bool:
        """Extended interrupt mode (IRTA.EIME): interrupt remapping, every unit with ECAP.EIM,
        and the DMAR's X2APIC_OPT_OUT clear (``intel_iommu_supports_eim``)."""
        return (
            self.interrupt_remapping
            and not self.dmar.x2apic_opt_out
            and all(u.ecap_fields.eim for u in self.iommus)
        )

    def _bring_up(self) -> None:
        """Xen's ``init_vtd_hw`` and the translation enable of ``intel_iommu_hwdom_init``,
        each step over every unit in list order: the queue (``enable_qinval``; register-based
        flushes without one), interrupt remapping (``enable_intremap``), the root table
        (``iommu_set_root_entry``), global invalidations (``iommu_flush_all``), then TE."""
        if self.queued_invalidation:
            for u in self.iommus:
                u.enable_qinval(self._alloc_node(u))
        if self.interrupt_remapping:
            eim = self.x2apic
            for u in self.iommus:
                u.enable_intremap(self._alloc_node(u), eim)
        for u in self.iommus:
            u.set_root_table()
        for u in self.iommus:
            u.flush_all()
        for u in self.iommus:
            u.enable_translation()

    def _rhsa_node(self, u: Iommu) -> int | None:
        rhsa = self.drhd_to_rhsa(u.drhd)
        return None if rhsa is None else self.numa.pxm_to_node(rhsa.proximity_domain)

    def _alloc_root(self, u: Iommu) -> None:
        """The one seam where a unit gets its root table."""
        self._forget_dma_units()
        u.alloc_root_table()

    # ---- look-ups (Xen semantics, list order)
    def _device(self, dev: BdfLike | None) -> Device | None:
        if dev is None:
            return None
        if isinstance(dev, Device):
            return dev
        bdf = Bdf.coerce(dev, "dev")
        found = self.topology.get(bdf)
        return found if found is not None else Device(bdf)

    def iommu_for_device(self, dev: BdfLike | None) -> Iommu | None:
        """The unit of ``acpi_find_matched_drhd_unit`` (§2): a VF matches as its PF (devfn 0
        when it is an ARI extended function), an ARI extended function as devfn 0; then per
        unit in list order: same segment, an exact scope BDF, a bus below a scope bridge, or
        the include-all fallback (the last one seen)."""
        d = self._device(dev)
        if d is None:
            return None
        seg = d.bdf.segment
        if d.physfn is not None:
            bus = d.physfn.bus
            devfn = 0 if d.is_extfn else d.physfn.devfn
        elif d.is_extfn:
            bus, devfn = d.bdf.bus, 0
        else:
            bus, devfn = d.bdf.bus, d.bdf.devfn
        fallback: Iommu | None = None
        for u in self.iommus:
            if u.segment != seg:
                continue
            if u.scope.has_device(bus, devfn) or u.scope.has_bus(bus):
                return u
            if u.include_all:
                fallback = u
        return fallback

    def drhd_for_device(self, dev: BdfLike | None) -> _dmar.Drhd | None:
        """Xen's ``acpi_find_matched_drhd_unit``: the DRHD whose unit covers the device."""
        u = self.iommu_for_device(dev)
        return None if u is None else u.drhd

    def atsr_for_device(self, dev: BdfLike | None) -> _dmar.Atsr | None:
        """Xen's ``acpi_find_matched_atsr_unit``: by the device's own bus against each ATSR's
        bridge ranges (no VF/ARI translation), ALL_PORTS as the fallback (the last one seen)."""
        a = self.atsr_unit_for_device(dev)
        return None if a is None else a.atsr

    def atsr_unit_for_device(self, dev: BdfLike | None) -> AtsrUnit | None:
        """The registered ATSR covering the device: one whose scope has its bus, else its
        segment's ALL_PORTS one, else None (Xen's ``acpi_find_matched_atsr_unit``)."""
        d = self._device(dev)
        if d is None:
            return None
        fallback: AtsrUnit | None = None
        for a in self.atsrs:
            if a.segment != d.bdf.segment:
                continue
            if a.scope.has_bus(d.bdf.bus):
                return a
            if a.all_ports:
                fallback = a
        return fallback

    def ioapic_to_iommu(self, apic_id: int) -> Iommu | None:
        """The first unit (list order) whose scope has an IOAPIC with this enumeration id."""
        apic_id = int_arg(apic_id, "apic_id")
        for u in self.iommus:
            if any(i == apic_id for i, _ in u.ioapics):
                return u
        return None

    def ioapic_to_drhd(self, apic_id: int) -> _dmar.Drhd | None:
        """The DRHD of the unit whose scope names IOAPIC ``apic_id``, or None."""
        u = self.ioapic_to_iommu(apic_id)
        return None if u is None else u.drhd

    def apicid_to_bdf(self, apic_id: int) -> Bdf | None:
        """The requester id of an IOAPIC's interrupts (its scope entry's BDF)."""
        u = self.ioapic_to_iommu(apic_id)
        if u is None:
            return None
        return next(b for i, b in u.ioapics if i == apic_id)

    def hpet_to_iommu(self, hpet_id: int) -> Iommu | None:
        """The first unit (list order) whose scope has an HPET with this enumeration id."""
        hpet_id = int_arg(hpet_id, "hpet_id")
        for u in self.iommus:
            if any(i == hpet_id for i, _ in u.hpets):
                return u
        return None

    def hpet_to_drhd(self, hpet_id: int) -> _dmar.Drhd | None:
        """The DRHD of the unit whose scope names HPET ``hpet_id``, or None."""
        u = self.hpet_to_iommu(hpet_id)
        return None if u is None else u.drhd

    def drhd_to_rhsa(self, drhd: _dmar.Drhd | None) -> _dmar.Rhsa | None:
        """The first RHSA (table order) whose base address is the DRHD's."""
        if drhd is None:
            return None
        return next((r for r in self.rhsas if r.address == drhd.address), None)

    def pxm_to_node(self, pxm: int | None) -> int | None:
        """Xen's ``pxm_to_node`` over the NUMA description; None is NUMA_NO_NODE (also the
        answer for ``pxm`` None)."""
        return self.numa.pxm_to_node(pxm)

    def rmrrs_for_device(self, dev: BdfLike) -> list[RmrrUnit]:
        """Registered RMRRs (list order) naming the device in their scope."""
        b = Bdf.coerce(dev, "dev")
        return [r for r in self.rmrrs if r.segment == b.segment and b in r.devices]

    # ---- description
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: NUMA nodes, units in list order, RMRRs, ATSRs, findings."""

        def node_of(maddr: int | None) -> int | None:
            return None if maddr is None else int(self.mem.node_of(maddr))

        return {
            "policy": self.policy,
            "synthesised_topology": self.synthesised,
            "numa": self.numa.to_dict()["nodes"],
            "pci_functions": len(self.topology),
            "units": [
                {
                    "index": u.index,
                    "address": u.address,
                    "segment": u.segment,
                    "include_all": u.include_all,
                    "scope": [str(b) for b in u.scope.devices],
                    "scope_buses": sorted(u.scope.buses),
                    "ioapics": [i for i, _ in u.ioapics],
                    "hpets": [i for i, _ in u.hpets],
                    "levels": u.levels,
                    "ndoms": u.ndoms,
                    "cap": u.cap,
                    "ecap": u.ecap,
                    "node": u.node,
                    "root_table": u.root_maddr,
                    "root_table_node": node_of(u.root_maddr),
                    "queue": None if u.queue is None else u.queue[0],
                    "queue_node": None if u.queue is None else node_of(u.queue[0]),
                    "ir_table": None if u.irt is None else u.irt.maddr,
                    "ir_table_node": None if u.irt is None else node_of(u.irt.maddr),
                    "x2apic": u.eim,
                }
                for u in self.iommus
            ],
            "rmrrs": [
                {
                    "base": r.base,
                    "end": r.end,
                    "segment": r.segment,
                    "devices": [str(b) for b in r.devices],
                }
                for r in self.rmrrs
            ],
            "atsrs": [
                {"segment": a.segment, "all_ports": a.all_ports, "buses": sorted(a.scope.buses)}
                for a in self.atsrs
            ],
            "findings": [
                {"severity": f.severity, "code": f.code, "message": f.message, "offset": f.offset}
                for f in self.report
            ],
        }

    def format(self) -> str:
        """A human-readable summary (what ``vtdwalk platform`` prints)."""
        out = [repr(self)]
        for i, n in enumerate(self.numa.nodes):
            pxms = ", ".join(map(str, n.pxms)) or "-"
            out.append(f"  node {i}: [{n.base:#x}, {n.base + n.size:#x})  pxm {pxms}")
        out.append("units (Xen list order):")
        for u in self.iommus:
            what = "include-all" if u.include_all else f"{len(u.scope.devices)} scope entries"
            root = u.root_maddr
            rn = None if root is None else self.mem.node_of(root)
            where = "none" if root is None else f"{root:#x} (node {rn})"
            out.append(
                f"  #{u.index} {u.address:#x} seg {u.segment:#x} {what}, {u.levels}-level, "
                f"{u.ndoms} DIDs, node {u.node}, root table {where}"
            )
            if u.queue is not None:
                q = u.queue[0]
                line = f"      invalidation queue {q:#x} (node {self.mem.node_of(q)})"
                if u.irt is not None:
                    t = u.irt.maddr
                    mode = "x2APIC" if u.eim else "xAPIC"
                    line += f", IR table {t:#x} (node {self.mem.node_of(t)}, {mode})"
                out.append(line)
        for r in self.rmrrs:
            devs = ", ".join(map(str, r.devices))
            out.append(f"rmrr [{r.base:#x}, {r.end:#x}] seg {r.segment:#x}: {devs}")
        for a in self.atsrs:
            what = "all ports" if a.all_ports else f"buses {sorted(a.scope.buses)}"
            out.append(f"atsr seg {a.segment:#x}: {what}")
        out.append(f"findings: {len(self.report)}")
        out.extend(f"  {f}" for f in self.report)
        return "\n".join(out)

    # ---- report and teardown
    def findings(self, code: str | None = None, severity: Severity | None = None) -> list[Finding]:
        """The report's findings, of ``code`` and/or ``severity`` when given."""
        for name, v in (("code", code), ("severity", severity)):
            if v is not None and not isinstance(v, str):
                raise TypeError(f"{name}: expected a str or None, not {type(v).__name__}")
        return [
            f
            for f in self.report
            if (code is None or f.code == code) and (severity is None or f.severity == severity)
        ]

    @property
    def codes(self) -> set[str]:
        """The distinct finding codes of the report."""
        return {f.code for f in self.report}

    def free(self) -> None:
        """Free every table page the units (and the domains, if any) hold, and every interrupt
        remapping entry."""
        with self.lock:
            self._msi_hits.clear()
            self._interrupts.free()
        self._assignments.free()
        for u in self.iommus:
            u.free()

    # ---- domains and device assignment (vtdwalk.driver.assign)
    @property
    def assignments(self) -> Assignments:
        """Domains, device ownership and context entries."""
        return self._assignments

    @property
    def lock(self) -> threading.RLock:
        """The platform's re-entrant lock: every domain and assignment call holds it while
        it runs. Hold it to make several calls one step for other threads."""
        return self.assignments.lock

    @property
    def domains(self) -> list[Domain]:
        """The domains created on this platform, in creation order."""
        with self.lock:
            return list(self.assignments.domains.values())

    def create_domain(self, levels: int | None = None, passthrough: bool = False) -> Domain:
        """A new domain with an empty page table (``levels`` 3, 4 or 5; 4 by default) and no
        node; a pass-through domain has no page table and maps its devices with TT 2."""
        return self.assignments.create_domain(levels, passthrough)

    def destroy_domain(self, domain: Domain | int) -> None:
        """Free a domain's page table; it must have no devices left."""
        self.assignments.destroy_domain(domain)

    def assign_device(
        self, domain: Domain | int, bdf: BdfLike | int, relaxed: bool = False
    ) -> None:
        """Xen's ``intel_iommu_assign_device``: context entries for the device (and its
        aliases) on its unit, then its RMRRs identity-mapped. ``relaxed`` allows a device
        that shares an RMRR with other devices. See :mod:`vtdwalk.driver.assign`."""
        self._forget_dma_units()
        self.assignments.assign_device(domain, bdf, relaxed)

    def deassign_device(self, bdf: BdfLike | int) -> Domain:
        """Remove the device from its domain (its context entries cleared and flushed, its RMRR
        references dropped); returns the domain it left."""
        self._forget_dma_units()
        with self.lock:
            d = self.assignments.deassign_device(bdf)
            self._interrupts.teardown_msi(Bdf.coerce(bdf))
        return d

    def reassign_device(
        self, bdf: BdfLike | int, domain: Domain | int, relaxed: bool = False
    ) -> None:
        """Move the device to ``domain`` (or assign it, when it has no owner)."""
        self._forget_dma_units()
        self.assignments.reassign_device(bdf, domain, relaxed)

    def owner_of(self, bdf: BdfLike | int) -> Domain | None:
        """The domain the device is assigned to, if any."""
        b = Bdf.coerce(bdf)
        with self.lock:
            return self.assignments.owner.get(b)

    def translate(self, bdf: BdfLike | int, iova: int, write: bool = False) -> Translation:
        """A DMA request by the device, walked by its unit's hardware; raises DmaFault. The
        device's unit is looked up once per name (a string, integer or Bdf) and remembered
        until the topology, a root table or an assignment changes."""
        if self._dma_version is not self.topology.version:
            self._forget_dma_units()
            self._dma_version = self.topology.version
        if type(bdf) in _CACHED_NAMES:
            hit = self._dma_units.get(bdf)
            if hit is None:
                hit = self._dma_units[bdf] = dma.hardware_of(self.iommu_for_device, bdf)
            if type(iova) is not int:
                iova = plain_int(iova)
            return hit[0].translate(hit[1], iova, write)
        return dma.translate(self.iommu_for_device, bdf, iova, write)

    def _forget_dma_units(self) -> None:
        self._dma_units.clear()
        self._msi_hits.clear()

    def translate_batch(
        self,
        bdfs_or_sids: Sequence[BdfLike | int] | npt.ArrayLike,
        iovas: npt.ArrayLike,
        writes: npt.ArrayLike | None = None,
        threads: int | None = None,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
        """Many requests: (hpa, fault reason) arrays, hpa 0 where the reason is not 0.
        Devices as strings, Bdfs, or integers ``segment << 16 | source-id``; ``iovas``
        non-negative integers; ``writes`` booleans (or 0/1). Bad arrays raise InvalidArgument.
        ``threads`` goes to each unit's ``Remapper.translate_batch``."""
        return dma.translate_batch(self.iommu_for_device, bdfs_or_sids, iovas, writes, threads)

    def dma_read(self, bdf: BdfLike | int, iova: int, length: int) -> bytes:
        """``length`` bytes read by the device at ``iova`` through its unit, split at page
        boundaries as a bus does; raises DmaFault (with ``transferred``) when refused."""
        return dma.dma_read(self.iommu_for_device, bdf, iova, length)

    def dma_write(self, bdf: BdfLike | int, iova: int, data: Buffer) -> None:
        """``data`` written by the device at ``iova`` through its unit; the requests before a
        fault complete, and the fault is raised as DmaFault with ``transferred``."""
        dma.dma_write(self.iommu_for_device, bdf, iova, data)

    def mmio_read(self, address: int, size: int) -> int:
        """A 4- or 8-byte read of a unit's register at host ``address`` (DRHD base + offset)."""
        return dma.mmio_read(self.iommus, address, size)

    def mmio_write(self, address: int, size: int, value: int) -> None:
        """A 4- or 8-byte write of a unit's register at host ``address``."""
        dma.mmio_write(self.iommus, address, size, value)

    def device_in_domain(self, iommu: Iommu | int, bdf: BdfLike | int, did: int) -> bool:
        """The NUMA seed series' ``device_in_domain``: the root entry for the device's bus is
        present, and the context entry at its devfn (present bit not checked) has domain id
        ``did`` and translation type 1."""
        return self.assignments.device_in_domain(iommu, bdf, did)

    # ---- interrupts (vtdwalk.driver.intremap)
    def _ioapic_unit(self, apic_id: int) -> tuple[Iommu, Bdf] | None:
        u = self.ioapic_to_iommu(apic_id)
        return None if u is None else (u, next(b for i, b in u.ioapics if i == apic_id))

    def setup_msi(
        self,
        bdf: BdfLike | int,
        vector: int,
        destination: int,
        count: int = 1,
        delivery_mode: int = 0,
        trigger_mode: int = 0,
        destination_mode: int = 0,
        redirection_hint: int = 0,
    ) -> RemapHandle:
        """Program the device's MSI through interrupt remapping, as Xen's
        ``msi_msg_to_remap_entry`` does: ``count`` entries (1, 2, 4... 32 vectors from
        ``vector``) in its unit's table, with ``destination`` (an APIC id: 0-255, or 32 bits in
        x2APIC mode), the delivery mode (0 fixed, 1 lowest priority...), trigger mode (0 edge,
        1 level), destination mode (0 physical, 1 logical) and redirection hint, and the
        source-id check of the device (its own BDF, its bridge's, or SVT 2 below a PCIe-to-PCI
        bridge). Calling it again re-programs the device (its entries reused). Returns the
        :class:`RemapHandle` (unit, first entry, the check, the message the device sends).
        Raises PlatformError when the device's unit does not remap interrupts."""
        with self.lock:
            self._msi_hits.clear()
            return self._interrupts.setup_msi(
                self._device(bdf) or Device(Bdf.coerce(bdf, "bdf")),
                vector,
                destination,
                count,
                delivery_mode,
                trigger_mode,
                destination_mode,
                redirection_hint,
            )

    def teardown_msi(self, bdf: BdfLike | int) -> bool:
        """Free the device's interrupt remapping entries (``deassign_device`` does it too);
        whether it had any."""
        with self.lock:
            self._msi_hits.clear()
            return self._interrupts.teardown_msi(Bdf.coerce(bdf, "bdf"))

    def msi_handle(self, bdf: BdfLike | int) -> RemapHandle | None:
        """The device's interrupt remapping entries, or None."""
        with self.lock:
            return self._interrupts.msis.get(Bdf.coerce(bdf, "bdf"))

    def msi(
        self, bdf: BdfLike | int, entry: int = 0, message: tuple[int, int] | None = None
    ) -> Interrupt:
        """The device raises its ``entry``-th MSI vector: its programmed remappable message
        (or ``message``, an (address, data) pair: another device's, say) goes to its unit's
        interrupt remapping with the device's own source-id. Returns the delivered
        :class:`Interrupt`; a blocked one raises :class:`InterruptFault`. As for
        :meth:`translate`, the device's unit and first vector's message are looked up once per
        name and remembered until the topology, an assignment or an MSI set-up changes."""
        cacheable = message is None and entry == 0 and type(bdf) in _CACHED_NAMES
        if cacheable:
            if self._dma_version is not self.topology.version:
                self._forget_dma_units()
                self._dma_version = self.topology.version
            hit = self._msi_hits.get(bdf)
            if hit is not None:
                return hit[0].msi(hit[1], hit[2], hit[3])
        b = Bdf.coerce(bdf, "bdf")
        with self.lock:
            if message is None:
                address, data = self._interrupts.message(b, entry)
            else:
                address, data = (plain_int(v) for v in message)
            hw, sid = dma.hardware_of(self.iommu_for_device, b)
            if cacheable:
                self._msi_hits[bdf] = (hw, sid, address, data)
        return hw.msi(sid, address, data)

    def setup_ioapic_pin(
        self,
        apic_id: int,
        pin: int,
        vector: int,
        destination: int,
        delivery_mode: int = 0,
        trigger_mode: int = 0,
        destination_mode: int = 0,
        redirection_hint: int = 0,
    ) -> RemapHandle:
        """Program an IOAPIC pin through interrupt remapping (Xen's
        ``ioapic_rte_to_remap_entry``): one entry in the IOAPIC's unit, checked against the
        IOAPIC's BDF from the DMAR scope."""
        with self.lock:
            return self._interrupts.setup_ioapic_pin(
                apic_id,
                pin,
                vector,
                destination,
                delivery_mode,
                trigger_mode,
                destination_mode,
                redirection_hint,
            )

    def teardown_ioapic_pin(self, apic_id: int, pin: int) -> bool:
        """Free the pin's entry; whether it had one."""
        with self.lock:
            return self._interrupts.teardown_ioapic_pin(apic_id, pin)

    def ioapic_interrupt(self, apic_id: int, pin: int) -> Interrupt:
        """The IOAPIC raises ``pin``: its remappable message, with the IOAPIC's source-id,
        through its unit. Returns the Interrupt; a blocked one raises InterruptFault."""
        with self.lock:
            h = self._interrupts.pins.get((int_arg(apic_id, "apic_id"), int_arg(pin, "pin")))
            if h is None:
                raise PlatformError(f"IOAPIC {apic_id} pin {pin} is not set up")
            hw = next(u for u in self.iommus if u.index == h.unit).remapper
        return hw.msi(h.sid, h.address, h.data)

    def numa_report(self) -> dict[str, Any]:
        """Table pages per node for each unit and domain, with the misplaced ones counted."""
        return self.assignments.numa_report()

    def __repr__(self) -> str:
        return (
            f"Platform({len(self.iommus)} units, {len(self.topology)} PCI functions, "
            f"{len(self.numa)} NUMA nodes, policy={self.policy!r}, {len(self.report)} findings)"
        )
