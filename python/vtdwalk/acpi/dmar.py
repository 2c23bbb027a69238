"""The ACPI DMA Remapping Reporting (DMAR) table: decode, validate, build and serialise.

Layouts follow the VT-d specification as Xen's ``dmar.c`` reads it (``shared/spec/xen-driver.md``
§1): a 48-byte header, then remapping structures (``type: u16, length: u16, ...``) one after
another, DRHD/RMRR/ATSR/SATC/SIDP carrying device-scope entries.

Every byte of a parsed table is kept somewhere in the model (reserved fields, odd trailing bytes,
the ANDD name padding), so an unmodified parsed table serialises back byte for byte. A table built
from the dataclasses, or a parsed one whose structures were edited or reordered, serialises with
its lengths and checksum computed.

Malformed input raises :class:`DmarError` (with the byte offset) and nothing else.
``parse(data, strict=False)`` instead keeps what it cannot decode as raw bytes and reports it as
:class:`Problem` entries, which :meth:`DmarTable.validate` returns along with every semantic check.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from vtdwalk._args import DMAR_CAP, read_regular_file
from vtdwalk.acpi.severity import Severity, severity_of
from vtdwalk.errors import DmarError, InvalidArgument

__all__ = [
    "ANDD",
    "ATSR",
    "DRHD",
    "HEADER_LEN",
    "HOST_TABLE_PATH",
    "RHSA",
    "RMRR",
    "SATC",
    "SCOPE_BRIDGE",
    "SCOPE_ENDPOINT",
    "SCOPE_HPET",
    "SCOPE_IOAPIC",
    "SCOPE_NAMESPACE",
    "SIDP",
    "Andd",
    "Atsr",
    "DeviceScope",
    "DmarError",
    "DmarTable",
    "Drhd",
    "Problem",
    "Rhsa",
    "Rmrr",
    "Satc",
    "Sidp",
    "Structure",
    "UnknownStructure",
    "format_table",
    "parse",
    "read_host",
    "structure_bytes",
    "structure_name",
]

HOST_TABLE_PATH = "/sys/firmware/acpi/tables/DMAR"
HEADER_LEN = 48  # 36-byte ACPI header + HAW, flags, 10 reserved bytes
_ACPI_HEADER_LEN = 36

# Remapping structure type codes.
DRHD, RMRR, ATSR, RHSA, ANDD, SATC, SIDP = range(7)
STRUCTURE_NAMES = {
    DRHD: "DRHD",
    RMRR: "RMRR",
    ATSR: "ATSR",
    RHSA: "RHSA",
    ANDD: "ANDD",
    SATC: "SATC",
    SIDP: "SIDP",
}
# Fixed part of each structure (header included): anything shorter cannot be decoded.
MIN_LENGTH = {DRHD: 16, RMRR: 24, ATSR: 8, RHSA: 20, ANDD: 8, SATC: 8, SIDP: 8}

# Device scope entry types.
SCOPE_ENDPOINT = 1
SCOPE_BRIDGE = 2
SCOPE_IOAPIC = 3
SCOPE_HPET = 4
SCOPE_NAMESPACE = 5
SCOPE_NAMES = {
    SCOPE_ENDPOINT: "endpoint",
    SCOPE_BRIDGE: "bridge",
    SCOPE_IOAPIC: "ioapic",
    SCOPE_HPET: "hpet",
    SCOPE_NAMESPACE: "namespace",
}
SCOPE_HEADER_LEN = 6
MIN_SCOPE_LEN = 8  # Xen's MIN_SCOPE_LEN: header plus one path element

# Flag bits.
INTR_REMAP = 1 << 0
X2APIC_OPT_OUT = 1 << 1
DMA_CTRL_PLATFORM_OPT_IN = 1 << 2
TABLE_FLAG_NAMES = (
    (INTR_REMAP, "INTR_REMAP"),
    (X2APIC_OPT_OUT, "X2APIC_OPT_OUT"),
    (DMA_CTRL_PLATFORM_OPT_IN, "DMA_CTRL_PLATFORM_OPT_IN"),
)
INCLUDE_PCI_ALL = 1
ALL_PORTS = 1
ATC_REQUIRED = 1


def _flag_names(value: int, names: Sequence[tuple[int, str]]) -> list[str]:
    out = [name for bit, name in names if value & bit]
    known = 0
    for bit, _ in names:
        known |= bit
    rest = value & ~known
    if rest:
        out.append(f"{rest:#x}")
    return out


# --------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """One finding about a table: ``code`` is stable, ``offset`` is from the table start."""

    severity: Severity
    offset: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity} [{self.code}] at {self.offset:#x}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """``{severity, offset, code, message}``."""
        return {
            "severity": self.severity,
            "offset": self.offset,
            "code": self.code,
            "message": self.message,
        }


# --------------------------------------------------------------------------------------------
# Encoding helpers


def _check(value: int, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise DmarError(f"{what} = {value!r} does not fit in {bits} bits")
    return value


def _fixed_str(text: str, size: int, what: str) -> bytes:
    try:
        raw = text.encode("latin-1")
    except (UnicodeEncodeError, AttributeError) as e:
        raise DmarError(f"{what} {text!r} is not a latin-1 string") from e
    if len(raw) > size:
        raise DmarError(f"{what} {text!r} is longer than {size} bytes")
    return raw.ljust(size, b"\0")


def _str(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip("\0")


def _u16(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 2], "little")


def _u32(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 4], "little")


def _u64(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 8], "little")


# --------------------------------------------------------------------------------------------
# Device scopes


@dataclass
class DeviceScope:
    """A device scope entry: ``path`` holds (device, function) pairs from ``start_bus`` down.

    ``extra`` keeps bytes past the last whole path element (an odd entry length) so that a parsed
    entry serialises unchanged.
    """

    type_code: int
    flags: int = 0
    enumeration_id: int = 0
    start_bus: int = 0
    path: list[tuple[int, int]] = field(default_factory=list)
    offset: int | None = field(default=None, compare=False)
    reserved: int = 0
    extra: bytes = b""

    @property
    def type(self) -> str:
        """The scope type's name: endpoint, bridge, ioapic, hpet, namespace or reserved."""
        return SCOPE_NAMES.get(self.type_code, "reserved")

    @property
    def length(self) -> int:
        """The entry's length in bytes: the 6-byte header, 2 per path element, extra bytes."""
        return SCOPE_HEADER_LEN + 2 * len(self.path) + len(self.extra)

    @property
    def target(self) -> tuple[int, int] | None:
        """The (device, function) the path ends at, or None for an empty path."""
        return self.path[-1] if self.path else None

    @property
    def bdf(self) -> tuple[int, int, int] | None:
        """(bus, device, function) when the path has exactly one element, else None.

        A longer path goes through bridges whose secondary bus numbers only the PCI
        configuration space knows.
        """
        if len(self.path) != 1:
            return None
        dev, fn = self.path[0]
        return (self.start_bus, dev, fn)

    def path_str(self) -> str:
        """``bb:dd.f`` for the first element, then ``/dd.f`` for each further one."""
        if not self.path:
            return f"{self.start_bus:02x}:(empty path)"
        first = f"{self.start_bus:02x}:{self.path[0][0]:02x}.{self.path[0][1]:x}"
        return first + "".join(f"/{d:02x}.{f:x}" for d, f in self.path[1:])

    def to_bytes(self) -> bytes:
        """The entry as it sits in a table."""
        if not isinstance(self.path, list | tuple):
            raise TypeError(
                f"path: expected a list of (device, function) pairs, not {type(self.path).__name__}"
            )
        if not isinstance(self.extra, bytes | bytearray):
            raise TypeError(f"extra: expected bytes, not {type(self.extra).__name__}")
        length = self.length
        if length > 0xFF:
            raise DmarError(f"device scope too long ({length} bytes, at most 255)")
        out = bytearray(
            (
                _check(self.type_code, 8, "scope type"),
                length,
                _check(self.flags, 8, "scope flags"),
                _check(self.reserved, 8, "scope reserved byte"),
                _check(self.enumeration_id, 8, "enumeration id"),
                _check(self.start_bus, 8, "start bus"),
            )
        )
        for elem in self.path:
            if not isinstance(elem, tuple | list) or len(elem) != 2:
                raise DmarError(f"path element {elem!r} is not a (device, function) pair")
            out.append(_check(elem[0], 8, "path device"))
            out.append(_check(elem[1], 8, "path function"))
        out += self.extra
        return bytes(out)

    def to_dict(self, offset: int | None = None) -> dict[str, Any]:
        """A JSON-ready description (``offset``: where the entry sits, when known)."""
        return {
            "type": self.type,
            "type_code": self.type_code,
            "offset": self.offset if offset is None else offset,
            "length": self.length,
            "flags": self.flags,
            "enumeration_id": self.enumeration_id,
            "start_bus": self.start_bus,
            "path": [[d, f] for d, f in self.path],
        }

    # Convenience constructors for tables built by hand.
    @classmethod
    def endpoint(cls, bus: int, dev: int, fn: int) -> DeviceScope:
        """A PCI endpoint scope entry for ``bus:dev.fn``."""
        return cls(SCOPE_ENDPOINT, start_bus=bus, path=[(dev, fn)])

    @classmethod
    def bridge(cls, bus: int, dev: int, fn: int) -> DeviceScope:
        """A PCI bridge (sub-hierarchy) scope entry for ``bus:dev.fn``."""
        return cls(SCOPE_BRIDGE, start_bus=bus, path=[(dev, fn)])

    @classmethod
    def ioapic(cls, apic_id: int, bus: int, dev: int, fn: int) -> DeviceScope:
        """An IOAPIC scope entry: enumeration id ``apic_id`` at ``bus:dev.fn``."""
        return cls(SCOPE_IOAPIC, enumeration_id=apic_id, start_bus=bus, path=[(dev, fn)])

    @classmethod
    def hpet(cls, hpet_id: int, bus: int, dev: int, fn: int) -> DeviceScope:
        """An MSI-capable HPET scope entry: enumeration id ``hpet_id`` at ``bus:dev.fn``."""
        return cls(SCOPE_HPET, enumeration_id=hpet_id, start_bus=bus, path=[(dev, fn)])

    @classmethod
    def namespace(cls, device_number: int, bus: int, dev: int, fn: int) -> DeviceScope:
        """An ACPI namespace device scope entry: ANDD ``device_number`` at ``bus:dev.fn``."""
        return cls(SCOPE_NAMESPACE, enumeration_id=device_number, start_bus=bus, path=[(dev, fn)])


def _scopes_bytes(scopes: Sequence[DeviceScope]) -> bytes:
    if not isinstance(scopes, list | tuple):
        raise TypeError(f"scopes: expected a list of DeviceScope, not {type(scopes).__name__}")
    for s in scopes:
        if not isinstance(s, DeviceScope):
            raise TypeError(f"scopes: expected DeviceScope entries, not {type(s).__name__}")
    return b"".join(s.to_bytes() for s in scopes)


# --------------------------------------------------------------------------------------------
# Remapping structures


@dataclass
class Drhd:
    """DMA Remapping Hardware unit Definition (type 0): one remapping unit's registers."""

    type_code: ClassVar[int] = DRHD
    type_name: ClassVar[str] = "DRHD"
    flags: int
    segment: int
    address: int
    scopes: list[DeviceScope] = field(default_factory=list)
    size: int = 0
    offset: int | None = field(default=None, compare=False)
    extra: bytes = b""

    @property
    def include_all(self) -> bool:
        """Flag INCLUDE_PCI_ALL: the unit covers every device of its segment no other unit names."""
        return bool(self.flags & INCLUDE_PCI_ALL)

    @property
    def flag_names(self) -> list[str]:
        """The names of the set flags."""
        return _flag_names(self.flags, ((INCLUDE_PCI_ALL, "INCLUDE_PCI_ALL"),))

    @property
    def register_pages(self) -> int:
        """Size of the register set in 4 KiB pages (2^size)."""
        return 1 << self.size

    def _body(self) -> bytes:
        return (
            bytes((_check(self.flags, 8, "DRHD flags"), _check(self.size, 8, "DRHD size")))
            + struct.pack(
                "<HQ",
                _check(self.segment, 16, "DRHD segment"),
                _check(self.address, 64, "DRHD address"),
            )
            + _scopes_bytes(self.scopes)
            + self.extra
        )

    def _fields(self) -> dict[str, Any]:
        return {
            "flags": self.flags,
            "size": self.size,
            "segment": self.segment,
            "address": self.address,
        }


@dataclass
class Rmrr:
    """Reserved Memory Region Reporting (type 1): ``limit`` is inclusive (the last byte)."""

    type_code: ClassVar[int] = RMRR
    type_name: ClassVar[str] = "RMRR"
    segment: int
    base: int
    limit: int
    scopes: list[DeviceScope] = field(default_factory=list)
    reserved: int = 0
    offset: int | None = field(default=None, compare=False)
    extra: bytes = b""

    def _body(self) -> bytes:
        return (
            struct.pack(
                "<HHQQ",
                _check(self.reserved, 16, "RMRR reserved"),
                _check(self.segment, 16, "RMRR segment"),
                _check(self.base, 64, "RMRR base"),
                _check(self.limit, 64, "RMRR limit"),
            )
            + _scopes_bytes(self.scopes)
            + self.extra
        )

    def _fields(self) -> dict[str, Any]:
        return {"segment": self.segment, "base": self.base, "limit": self.limit}


@dataclass
class _FlagsSegmentScopes:
    """The layout ATSR and SATC share: flags, a reserved byte, a segment, device scopes."""

    type_name: ClassVar[str]
    _flag: ClassVar[tuple[int, str]]
    flags: int
    segment: int
    scopes: list[DeviceScope] = field(default_factory=list)
    reserved: int = 0
    offset: int | None = field(default=None, compare=False)
    extra: bytes = b""

    @property
    def flag_names(self) -> list[str]:
        return _flag_names(self.flags, (self._flag,))

    def _body(self) -> bytes:
        name = self.type_name
        return (
            bytes(
                (
                    _check(self.flags, 8, f"{name} flags"),
                    _check(self.reserved, 8, f"{name} reserved"),
                )
            )
            + struct.pack("<H", _check(self.segment, 16, f"{name} segment"))
            + _scopes_bytes(self.scopes)
            + self.extra
        )

    def _fields(self) -> dict[str, Any]:
        return {"flags": self.flags, "segment": self.segment}


@dataclass
class Atsr(_FlagsSegmentScopes):
    """Root Port ATS Capability Reporting (type 2)."""

    type_code: ClassVar[int] = ATSR
    type_name: ClassVar[str] = "ATSR"
    _flag: ClassVar[tuple[int, str]] = (ALL_PORTS, "ALL_PORTS")

    @property
    def all_ports(self) -> bool:
        """Flag ALL_PORTS: the ATSR covers every root port of its segment."""
        return bool(self.flags & ALL_PORTS)


@dataclass
class Rhsa:
    """Remapping Hardware Static Affinity (type 3): the NUMA proximity domain of a unit."""

    type_code: ClassVar[int] = RHSA
    type_name: ClassVar[str] = "RHSA"
    address: int
    proximity_domain: int
    reserved: int = 0
    offset: int | None = field(default=None, compare=False)
    extra: bytes = b""

    def _body(self) -> bytes:
        return (
            struct.pack(
                "<IQI",
                _check(self.reserved, 32, "RHSA reserved"),
                _check(self.address, 64, "RHSA address"),
                _check(self.proximity_domain, 32, "RHSA proximity domain"),
            )
            + self.extra
        )

    def _fields(self) -> dict[str, Any]:
        return {"address": self.address, "proximity_domain": self.proximity_domain}


@dataclass
class Andd:
    """ACPI Namespace Device Declaration (type 4): names the device a namespace scope means.

    ``name`` is the object path up to its NUL; ``terminated`` says whether a NUL follows it and
    ``extra`` keeps the padding after that NUL.
    """

    type_code: ClassVar[int] = ANDD
    type_name: ClassVar[str] = "ANDD"
    device_number: int
    name: str
    reserved: int = 0
    offset: int | None = field(default=None, compare=False)
    terminated: bool = True
    extra: bytes = b""

    def _body(self) -> bytes:
        try:
            name = self.name.encode("latin-1")
        except (UnicodeEncodeError, AttributeError) as e:
            raise DmarError(f"ANDD name {self.name!r} is not a latin-1 string") from e
        if b"\0" in name:
            raise DmarError(f"ANDD name {self.name!r} contains a NUL")
        return (
            _check(self.reserved, 24, "ANDD reserved").to_bytes(3, "little")
            + bytes((_check(self.device_number, 8, "ANDD device number"),))
            + name
            + (b"\0" if self.terminated else b"")
            + self.extra
        )

    def _fields(self) -> dict[str, Any]:
        return {"device_number": self.device_number, "name": self.name}


@dataclass
class Satc(_FlagsSegmentScopes):
    """SoC Integrated Address Translation Cache reporting (type 5)."""

    type_code: ClassVar[int] = SATC
    type_name: ClassVar[str] = "SATC"
    _flag: ClassVar[tuple[int, str]] = (ATC_REQUIRED, "ATC_REQUIRED")

    @property
    def atc_required(self) -> bool:
        """Flag ATC_REQUIRED: the devices must have ATS enabled for the OS to use them safely."""
        return bool(self.flags & ATC_REQUIRED)


@dataclass
class Sidp:
    """SoC Integrated Device Property reporting (type 6)."""

    type_code: ClassVar[int] = SIDP
    type_name: ClassVar[str] = "SIDP"
    segment: int
    scopes: list[DeviceScope] = field(default_factory=list)
    reserved: int = 0
    offset: int | None = field(default=None, compare=False)
    extra: bytes = b""

    def _body(self) -> bytes:
        return (
            struct.pack(
                "<HH",
                _check(self.reserved, 16, "SIDP reserved"),
                _check(self.segment, 16, "SIDP segment"),
            )
            + _scopes_bytes(self.scopes)
            + self.extra
        )

    def _fields(self) -> dict[str, Any]:
        return {"segment": self.segment}


@dataclass
class UnknownStructure:
    """A structure kept as raw bytes: a reserved type, or (non-strict parse) an undecodable one.

    ``data`` is everything after the 4-byte type/length header.
    """

    type_name: ClassVar[str] = "UNKNOWN"
    type_code: int
    data: bytes = b""
    offset: int | None = field(default=None, compare=False)

    def _body(self) -> bytes:
        _check(self.type_code, 16, "structure type")
        return bytes(self.data)

    def _fields(self) -> dict[str, Any]:
        return {"data": self.data.hex()}


Structure = Drhd | Rmrr | Atsr | Rhsa | Andd | Satc | Sidp | UnknownStructure
_SCOPED = (Drhd, Rmrr, Atsr, Satc, Sidp)


def structure_name(s: Structure) -> str:
    """DRHD, RMRR, ... or UNKNOWN (also for a known type kept raw because it was undecodable)."""
    return s.type_name


def structure_bytes(s: Structure) -> bytes:
    """One structure with its type/length header; the length is computed."""
    body = s._body()
    length = 4 + len(body)
    if length > 0xFFFF:
        raise DmarError(f"{structure_name(s)} structure too long ({length} bytes, at most 65535)")
    return struct.pack("<HH", s.type_code, length) + body


# --------------------------------------------------------------------------------------------
# The table


@dataclass
class DmarTable:
    """A DMAR table. ``host_address_width`` is the raw byte: N means N+1 address bits.

    ``padding`` holds bytes inside the table length that form no structure (kept by a non-strict
    parse); ``trailer`` holds bytes of the input beyond the table length.
    """

    host_address_width: int
    flags: int
    structures: list[Structure] = field(default_factory=list)
    revision: int = 1
    oem_id: str = "VTDWLK"
    oem_table_id: str = "VTDWALK"
    oem_revision: int = 1
    creator_id: str = "VTDW"
    creator_revision: int = 1
    signature: str = "DMAR"
    reserved: bytes = bytes(10)
    padding: bytes = b""
    trailer: bytes = b""
    checksum: int | None = field(default=None, compare=False)
    parse_problems: list[Problem] = field(default_factory=list, compare=False, repr=False)
    _raw: bytes | None = field(default=None, compare=False, repr=False)

    # ---- accessors
    @property
    def haw_bits(self) -> int:
        """The host address width in bits (the field plus one)."""
        return self.host_address_width + 1

    @property
    def flag_names(self) -> list[str]:
        """The names of the set header flags (INTR_REMAP, X2APIC_OPT_OUT,
        DMA_CTRL_PLATFORM_OPT_IN)."""
        return _flag_names(self.flags, TABLE_FLAG_NAMES)

    @property
    def intr_remap(self) -> bool:
        """Header flag INTR_REMAP: the platform supports interrupt remapping."""
        return bool(self.flags & INTR_REMAP)

    @property
    def x2apic_opt_out(self) -> bool:
        """Header flag X2APIC_OPT_OUT: firmware asks the OS not to enable x2APIC mode."""
        return bool(self.flags & X2APIC_OPT_OUT)

    @property
    def dma_ctrl_platform_opt_in(self) -> bool:
        """Header flag DMA_CTRL_PLATFORM_OPT_IN: firmware asks for DMA protection at boot."""
        return bool(self.flags & DMA_CTRL_PLATFORM_OPT_IN)

    @property
    def drhds(self) -> list[Drhd]:
        """The DRHD structures, in table order."""
        return [s for s in self.structures if isinstance(s, Drhd)]

    @property
    def rmrrs(self) -> list[Rmrr]:
        """The RMRR structures, in table order."""
        return [s for s in self.structures if isinstance(s, Rmrr)]

    @property
    def atsrs(self) -> list[Atsr]:
        """The ATSR structures, in table order."""
        return [s for s in self.structures if isinstance(s, Atsr)]

    @property
    def rhsas(self) -> list[Rhsa]:
        """The RHSA structures, in table order."""
        return [s for s in self.structures if isinstance(s, Rhsa)]

    @property
    def andds(self) -> list[Andd]:
        """The ANDD structures, in table order."""
        return [s for s in self.structures if isinstance(s, Andd)]

    @property
    def satcs(self) -> list[Satc]:
        """The SATC structures, in table order."""
        return [s for s in self.structures if isinstance(s, Satc)]

    @property
    def sidps(self) -> list[Sidp]:
        """The SIDP structures, in table order."""
        return [s for s in self.structures if isinstance(s, Sidp)]

    @property
    def unknown(self) -> list[UnknownStructure]:
        """The structures of unknown type (or too short to decode), kept raw."""
        return [s for s in self.structures if isinstance(s, UnknownStructure)]

    # ---- serialisation
    def _layout(self) -> Iterator[tuple[int, Structure, bytes]]:
        off = HEADER_LEN
        for s in self.structures:
            b = structure_bytes(s)
            yield off, s, b
            off += len(b)

    def _encode(self, checksum: int) -> bytes:
        body = b"".join(b for _, _, b in self._layout()) + self.padding
        length = HEADER_LEN + len(body)
        if length > 0xFFFFFFFF:
            raise DmarError(f"table too long ({length} bytes)")
        if len(self.reserved) != 10:
            raise DmarError(f"header reserved field must be 10 bytes, not {len(self.reserved)}")
        head = (
            _fixed_str(self.signature, 4, "signature")
            + struct.pack(
                "<IBB",
                length,
                _check(self.revision, 8, "revision"),
                _check(checksum, 8, "checksum"),
            )
            + _fixed_str(self.oem_id, 6, "OEM id")
            + _fixed_str(self.oem_table_id, 8, "OEM table id")
            + struct.pack("<I", _check(self.oem_revision, 32, "OEM revision"))
            + _fixed_str(self.creator_id, 4, "creator id")
            + struct.pack("<I", _check(self.creator_revision, 32, "creator revision"))
            + bytes(
                (
                    _check(self.host_address_width, 8, "host address width"),
                    _check(self.flags, 8, "flags"),
                )
            )
            + bytes(self.reserved)
        )
        return head + body

    def to_bytes(self) -> bytes:
        """The table as firmware would hold it.

        A parsed table that is unchanged comes back byte for byte (checksum included, even a
        wrong one); anything else gets its lengths and checksum computed.
        """
        if self._raw is not None and self.checksum is not None:
            same = self._encode(self.checksum) + self.trailer
            if same == self._raw:
                return same
        table = bytearray(self._encode(0))
        table[9] = (-sum(table)) & 0xFF
        return bytes(table) + self.trailer

    @property
    def length(self) -> int:
        """The table length as ``to_bytes()`` writes it in the header."""
        return len(self._encode(0))

    # ---- checks
    def validate(self) -> list[Problem]:
        """Every problem found: those a non-strict parse recorded, then the checks below.

        Offsets are where each item sits in ``to_bytes()`` (for an unchanged parsed table: where
        it was read from).
        """
        return _validate(self)

    # ---- export
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (see issue 3 for the shape; keys may be added, not renamed)."""
        data = self.to_bytes()
        length = int.from_bytes(data[4:8], "little")
        out: dict[str, Any] = {
            "signature": self.signature,
            "length": length,
            "revision": self.revision,
            "checksum": data[9],
            "oem_id": self.oem_id,
            "oem_table_id": self.oem_table_id,
            "oem_revision": self.oem_revision,
            "creator_id": self.creator_id,
            "creator_revision": self.creator_revision,
            "host_address_width": self.haw_bits,
            "flags": self.flags,
            "flag_names": self.flag_names,
        }
        structures = []
        for off, s, b in self._layout():
            d: dict[str, Any] = {
                "type": structure_name(s),
                "type_code": s.type_code,
                "offset": off,
                "length": len(b),
            }
            d.update(s._fields())
            if isinstance(s, Drhd | Atsr | Satc):
                d["flag_names"] = s.flag_names
            if isinstance(s, _SCOPED):
                d["scopes"] = [sc.to_dict(so) for so, sc in _scope_offsets(off, s)]
            structures.append(d)
        out["structures"] = structures
        out["problems"] = [p.to_dict() for p in self.validate()]
        return out


def _scope_start(s: Structure) -> int:
    return {Drhd: 16, Rmrr: 24, Atsr: 8, Satc: 8, Sidp: 8}.get(type(s), 0)


def _scope_offsets(struct_off: int, s: Structure) -> Iterator[tuple[int, DeviceScope]]:
    if not isinstance(s, _SCOPED):
        return
    off = struct_off + _scope_start(s)
    for sc in s.scopes:
        yield off, sc
        off += sc.length


# --------------------------------------------------------------------------------------------
# Parsing


class _Parser:
    def __init__(self, data: bytes, strict: bool) -> None:
        self.data = data
        self.strict = strict
        self.problems: list[Problem] = []

    def fail(self, offset: int, code: str, message: str) -> None:
        """Raise in strict mode; otherwise record an error and let the caller recover."""
        if self.strict:
            raise DmarError(message, offset)
        self.problems.append(Problem(severity_of(code), offset, code, message))

    def scopes(self, start: int, end: int, owner: str) -> tuple[list[DeviceScope], bytes]:
        """Scope entries in data[start:end]; undecodable remains come back as raw bytes."""
        data = self.data
        out: list[DeviceScope] = []
        p = start
        while p < end:
            left = end - p
            if left < 2:
                self.fail(
                    p, "scope-truncated", f"{left} stray byte(s) after the scopes of a {owner}"
                )
                return out, data[p:end]
            length = data[p + 1]
            if length < SCOPE_HEADER_LEN:
                self.fail(
                    p, "scope-too-short", f"device scope length {length} in a {owner} is below 6"
                )
                return out, data[p:end]
            if length > left:
                self.fail(
                    p,
                    "scope-overrun",
                    f"device scope of length {length} runs past the end of its {owner} "
                    f"({left} bytes left)",
                )
                return out, data[p:end]
            npath = (length - SCOPE_HEADER_LEN) // 2
            q = p + SCOPE_HEADER_LEN
            path = [(data[q + 2 * i], data[q + 2 * i + 1]) for i in range(npath)]
            out.append(
                DeviceScope(
                    type_code=data[p],
                    flags=data[p + 2],
                    enumeration_id=data[p + 4],
                    start_bus=data[p + 5],
                    path=path,
                    offset=p,
                    reserved=data[p + 3],
                    extra=data[q + 2 * npath : p + length],
                )
            )
            p += length
        return out, b""

    def structure(self, p: int, type_code: int, length: int) -> Structure:
        data = self.data
        end = p + length
        if type_code not in STRUCTURE_NAMES:
            return UnknownStructure(type_code, data[p + 4 : end], offset=p)
        name = STRUCTURE_NAMES[type_code]
        if length < MIN_LENGTH[type_code]:
            self.fail(
                p,
                "structure-too-short",
                f"{name} length {length} is below its minimum {MIN_LENGTH[type_code]}",
            )
            return UnknownStructure(type_code, data[p + 4 : end], offset=p)
        if type_code == DRHD:
            scopes, extra = self.scopes(p + 16, end, name)
            return Drhd(
                flags=data[p + 4],
                size=data[p + 5],
                segment=_u16(data, p + 6),
                address=_u64(data, p + 8),
                scopes=scopes,
                offset=p,
                extra=extra,
            )
        if type_code == RMRR:
            scopes, extra = self.scopes(p + 24, end, name)
            return Rmrr(
                reserved=_u16(data, p + 4),
                segment=_u16(data, p + 6),
                base=_u64(data, p + 8),
                limit=_u64(data, p + 16),
                scopes=scopes,
                offset=p,
                extra=extra,
            )
        if type_code == RHSA:
            return Rhsa(
                reserved=_u32(data, p + 4),
                address=_u64(data, p + 8),
                proximity_domain=_u32(data, p + 16),
                offset=p,
                extra=data[p + 20 : end],
            )
        if type_code == ANDD:
            raw = data[p + 8 : end]
            nul = raw.find(b"\0")
            if nul < 0:
                name_b, terminated, extra = raw, False, b""
            else:
                name_b, terminated, extra = raw[:nul], True, raw[nul + 1 :]
            return Andd(
                reserved=int.from_bytes(data[p + 4 : p + 7], "little"),
                device_number=data[p + 7],
                name=name_b.decode("latin-1"),
                offset=p,
                terminated=terminated,
                extra=extra,
            )
        scopes, extra = self.scopes(p + 8, end, name)
        if type_code in (ATSR, SATC):
            return (Atsr if type_code == ATSR else Satc)(
                flags=data[p + 4],
                reserved=data[p + 5],
                segment=_u16(data, p + 6),
                scopes=scopes,
                offset=p,
                extra=extra,
            )
        return Sidp(
            reserved=_u16(data, p + 4),
            segment=_u16(data, p + 6),
            scopes=scopes,
            offset=p,
            extra=extra,
        )

    def table(self) -> DmarTable:
        data = self.data
        if len(data) < HEADER_LEN:
            raise DmarError(
                f"{len(data)} bytes is too short for a DMAR table header ({HEADER_LEN})",
                len(data),
            )
        signature = _str(data[0:4])
        if signature not in ("DMAR", "RMAD"):
            self.fail(0, "bad-signature", f"signature {data[0:4]!r} is not 'DMAR'")
        length = _u32(data, 4)
        end = length
        if length < HEADER_LEN:
            self.fail(4, "length-mismatch", f"table length {length} is below the header size")
            end = len(data)
        elif length > len(data):
            self.fail(
                4,
                "length-mismatch",
                f"table length {length} runs past the {len(data)} bytes of data",
            )
            end = len(data)
        structures: list[Structure] = []
        padding = b""
        p = HEADER_LEN
        while p < end:
            left = end - p
            if left < 4:
                self.fail(
                    p, "structure-truncated", f"{left} stray byte(s) after the last structure"
                )
                padding = data[p:end]
                break
            type_code = _u16(data, p)
            slen = _u16(data, p + 2)
            if slen < 4:
                # Xen: "Invalid ACPI DMAR entry length", fatal; also the only guard against a
                # walk that never advances.
                self.fail(p, "structure-length", f"structure length {slen} is below 4")
                padding = data[p:end]
                break
            if slen > left:
                self.fail(
                    p,
                    "structure-overrun",
                    f"structure of type {type_code} and length {slen} runs past the end of the "
                    f"table ({left} bytes left)",
                )
                padding = data[p:end]
                break
            structures.append(self.structure(p, type_code, slen))
            p += slen
        t = DmarTable(
            host_address_width=data[36],
            flags=data[37],
            structures=structures,
            revision=data[8],
            oem_id=_str(data[10:16]),
            oem_table_id=_str(data[16:24]),
            oem_revision=_u32(data, 24),
            creator_id=_str(data[28:32]),
            creator_revision=_u32(data, 32),
            signature=signature,
            reserved=data[38:48],
            padding=padding,
            trailer=data[end:],
            checksum=data[9],
            parse_problems=self.problems,
            _raw=data,
        )
        # A header that disagrees with the data cannot be reproduced from the model: keep the
        # raw bytes only when the model re-encodes to them exactly.
        try:
            if t._encode(data[9]) + t.trailer != data:
                t._raw = None
        except DmarError:  # pragma: no cover - every parsed value fits its field
            t._raw = None
        return t


def parse(data: bytes | bytearray | memoryview, strict: bool = True) -> DmarTable:
    """Decode a DMAR table.

    strict (the default): any structural fault (a length field that is too small or runs past
    its parent, truncated data, a wrong signature) raises :class:`DmarError` with its offset.
    strict=False: what cannot be decoded is kept as raw bytes (``UnknownStructure``, a
    structure's ``extra``, the table's ``padding``) and reported by ``validate()``; only input
    shorter than the 48-byte header still raises.
    """
    if isinstance(data, memoryview | bytearray):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise DmarError(f"expected bytes, not {type(data).__name__}")
    return _Parser(data, strict).table()


def read_host(path: str | Path = HOST_TABLE_PATH, strict: bool = True) -> DmarTable:
    """Read and parse the running machine's DMAR table (``/sys/firmware/acpi/tables/DMAR``)."""
    try:
        data = read_regular_file(path, "path", DMAR_CAP)
    except FileNotFoundError as e:
        raise DmarError(
            f"no DMAR table at {path}: the platform has no VT-d, it is disabled in the firmware "
            "setup, or a hypervisor hides it"
        ) from e
    except PermissionError as e:
        raise DmarError(f"cannot read {path}: permission denied (ACPI tables need root)") from e
    except InvalidArgument as e:  # not a regular file, too large, a NUL in the path
        raise DmarError(f"cannot read {str(path)[:200]!r}: {e}") from e
    except OSError as e:
        raise DmarError(f"cannot read {path}: {e.strerror or e}") from e
    return parse(data, strict=strict)


# --------------------------------------------------------------------------------------------
# Validation

_T = TypeVar("_T")


class RangeIndex(Generic[_T]):
    """Inclusive ranges ``[base, end]`` with an item each, asked for the first one added that
    overlaps a given range (what Xen's RMRR registration checks, against each registered RMRR in
    turn). Ranges disjoint from those before them are kept sorted by base, so their ends are
    sorted too and a look-up is a binary search; the few that overlap earlier ones (or are
    inverted) are kept apart and scanned. n disjoint RMRRs cost O(n log n), not O(n**2)."""

    def __init__(self) -> None:
        self._bases: list[int] = []
        self._ends: list[int] = []
        self._order: list[int] = []  # insertion index of each sorted range
        self._others: list[tuple[int, int, int]] = []  # (insertion index, base, end)
        self._items: list[_T] = []

    def __len__(self) -> int:
        return len(self._items)

    def _first(self, base: int, end: int) -> int | None:
        first: int | None = None
        i = bisect.bisect_left(self._ends, base)
        while i < len(self._bases) and self._bases[i] <= end:
            k = self._order[i]
            first = k if first is None else min(first, k)
            i += 1
        for k, b, e in self._others:
            if base <= e and b <= end and (first is None or k < first):
                first = k
        return first

    def first_overlap(self, base: int, end: int) -> _T | None:
        """The item of the first range added that overlaps ``[base, end]``, or None."""
        k = self._first(base, end)
        return None if k is None else self._items[k]

    def add(self, base: int, end: int, item: _T) -> None:
        k = len(self._items)
        self._items.append(item)
        disjoint = base <= end and (
            (i := bisect.bisect_left(self._ends, base)) == len(self._bases) or self._bases[i] > end
        )
        if disjoint:
            i = bisect.bisect_left(self._bases, base)
            self._bases.insert(i, base)
            self._ends.insert(i, end)
            self._order.insert(i, k)
        else:
            self._others.append((k, base, end))


# Scope types each structure may carry (VT-d spec 8.3.1 and friends).
_ALLOWED_SCOPES: dict[type, frozenset[int]] = {
    Drhd: frozenset({SCOPE_ENDPOINT, SCOPE_BRIDGE, SCOPE_IOAPIC, SCOPE_HPET, SCOPE_NAMESPACE}),
    Rmrr: frozenset({SCOPE_ENDPOINT, SCOPE_BRIDGE}),
    Atsr: frozenset({SCOPE_BRIDGE}),
    Satc: frozenset({SCOPE_ENDPOINT}),
    Sidp: frozenset({SCOPE_ENDPOINT, SCOPE_BRIDGE}),
}


def _classify_extra(extra: bytes, owner: str) -> tuple[Severity, str, str]:
    """Name what the undecoded bytes after a structure's scopes are."""
    if len(extra) < 2:
        return "warning", "scope-odd-bytes", f"{len(extra)} stray byte(s) after the {owner} scopes"
    length = extra[1]
    if length < SCOPE_HEADER_LEN:
        return "error", "scope-too-short", f"device scope length {length} in a {owner} is below 6"
    return (
        "error",
        "scope-overrun",
        f"device scope of length {length} runs past the end of its {owner} "
        f"({len(extra)} bytes left)",
    )


def _validate(t: DmarTable) -> list[Problem]:
    """Every check of the table: its header, then each structure in table order (its place in
    the type order, its device scopes, then the checks of its own kind)."""
    c = _Checker(t)
    c.header()
    for off, s, b in t._layout():
        c.order(off, s, b)
        if isinstance(s, _SCOPED):
            c.scopes(off, s, b)
        if isinstance(s, Drhd):
            c.drhd(off, s)
        elif isinstance(s, Rmrr):
            c.rmrr(off, s)
        elif isinstance(s, Atsr):
            c.atsr(off, s)
        elif isinstance(s, Rhsa):
            c.rhsa(off, s)
    # A non-strict parse's findings first; a model check that repeats one is dropped.
    seen = {(p.code, p.offset) for p in t.parse_problems}
    return list(t.parse_problems) + [p for p in c.probs if (p.code, p.offset) not in seen]


class _Checker:
    """The per-structure validators of :func:`_validate`, with what they share across
    structures (the include-all and ALL_PORTS units seen per segment, DRHD addresses, the
    registered RMRRs)."""

    def __init__(self, t: DmarTable) -> None:
        self.t = t
        self.probs: list[Problem] = []
        self.include_all_seen: dict[int, int] = {}
        self.all_ports_seen: dict[int, int] = {}
        self.drhd_addr: dict[int, int] = {}
        self.registered_rmrrs: RangeIndex[tuple[int, Rmrr]] = RangeIndex()
        self.andd_numbers = {s.device_number for s in t.andds}
        self.drhd_addresses = {d.address for d in t.drhds}
        self.last_type = -1
        self.order_reported = False

    def add(self, sev: Severity, off: int, code: str, msg: str, segment: int = 0) -> None:
        # ``sev`` documents the call site; the one table decides (vtdwalk.acpi.severity).
        del sev
        self.probs.append(Problem(severity_of(code, segment), off, code, msg))

    def header(self) -> None:
        t, add = self.t, self.add
        parse_offsets = {p.offset for p in t.parse_problems}
        data = t.to_bytes()
        length = int.from_bytes(data[4:8], "little")
        if t.signature == "RMAD":
            add("warning", 0, "signature-zapped", "signature 'RMAD': a hypervisor hid this table")
        elif t.signature != "DMAR":
            add("error", 0, "bad-signature", f"signature {t.signature!r} is not 'DMAR'")
        if length <= len(data) and sum(data[:length]) & 0xFF:
            add(
                "error",
                9,
                "bad-checksum",
                f"checksum byte {data[9]:#04x} leaves a byte sum of "
                f"{sum(data[:length]) & 0xFF:#04x}",
            )
        if t.trailer:
            add(
                "warning",
                length,
                "trailing-data",
                f"{len(t.trailer)} byte(s) of data follow the table length {length}",
            )
        if t.host_address_width == 0:
            add("error", 36, "haw-zero", "host address width 0 (Xen: 'Zero: Invalid DMAR width')")
        if t.flags & ~(INTR_REMAP | X2APIC_OPT_OUT | DMA_CTRL_PLATFORM_OPT_IN):
            add("warning", 37, "reserved-flags", f"reserved flag bits set in {t.flags:#04x}")
        if t.x2apic_opt_out and not t.intr_remap:
            add(
                "warning",
                37,
                "x2apic-opt-out-without-intremap",
                "X2APIC_OPT_OUT is set without INTR_REMAP",
            )
        if t.padding and length - len(t.padding) not in parse_offsets:
            add(
                "error",
                length - len(t.padding),
                "unparsed-bytes",
                f"{len(t.padding)} byte(s) at the end of the table form no structure",
            )

    def order(self, off: int, s: Structure, b: bytes) -> None:
        """Unknown or too-short structures, and the first one out of type order."""
        add = self.add
        name = structure_name(s)
        if isinstance(s, UnknownStructure):
            if s.type_code in STRUCTURE_NAMES:
                add(
                    "error",
                    off,
                    "structure-too-short",
                    f"{STRUCTURE_NAMES[s.type_code]} length {len(b)} is below its minimum "
                    f"{MIN_LENGTH[s.type_code]}",
                )
            else:
                add("warning", off, "unknown-structure", f"unknown structure type {s.type_code}")
        elif s.type_code < self.last_type and not self.order_reported:
            add(
                "warning",
                off,
                "structure-order",
                f"{name} after a structure of type {self.last_type}: structures are not in "
                "type order",
            )
            self.order_reported = True
        self.last_type = max(self.last_type, s.type_code)

    def scopes(self, off: int, s: Drhd | Rmrr | Atsr | Satc | Sidp, b: bytes) -> None:
        """A scoped structure's device scopes and any bytes after them."""
        add = self.add
        name = structure_name(s)
        allowed = _ALLOWED_SCOPES[type(s)]
        for so, sc in _scope_offsets(off, s):
            if sc.length < MIN_SCOPE_LEN:
                add(
                    "error",
                    so,
                    "scope-too-short",
                    f"device scope length {sc.length} is below {MIN_SCOPE_LEN} (Xen: fatal)",
                )
            elif sc.extra:
                add(
                    "warning",
                    so,
                    "scope-odd-length",
                    f"device scope length {sc.length} leaves half a path element",
                )
            if sc.type_code not in SCOPE_NAMES:
                add(
                    "warning",
                    so,
                    "unknown-scope-type",
                    f"reserved device scope type {sc.type_code} in a {name}",
                )
            elif sc.type_code not in allowed:
                add(
                    "warning",
                    so,
                    "unexpected-scope-type",
                    f"{sc.type} device scope in a {name}",
                )
            if len(sc.path) > 1:
                add(
                    "warning",
                    so,
                    "multi-level-path",
                    f"{sc.type} scope path {sc.path_str()} goes through bridges: its target "
                    "depends on bus numbering",
                )
            if sc.type_code == SCOPE_NAMESPACE and sc.enumeration_id not in self.andd_numbers:
                add(
                    "warning",
                    so,
                    "namespace-no-andd",
                    f"namespace scope names ACPI device {sc.enumeration_id}, which no ANDD "
                    "declares",
                )
        if s.extra:
            sev, code, msg = _classify_extra(s.extra, name)
            add(sev, off + len(b) - len(s.extra), code, msg)

    def drhd(self, off: int, s: Drhd) -> None:
        add = self.add
        if s.address in (0, 0xFFFF_FFFF_FFFF_FFFF):
            add(
                "error",
                off,
                "drhd-address-invalid",
                f"DRHD register base {s.address:#x} (Xen: -ENODEV, VT-d disabled)",
            )
        elif s.address & 0xFFF:
            add(
                "warning",
                off,
                "drhd-address-misaligned",
                f"DRHD register base {s.address:#x} is not 4 KiB aligned",
            )
        if s.address in self.drhd_addr:
            add(
                "warning",
                off,
                "duplicate-drhd-address",
                f"DRHD register base {s.address:#x} already used by the DRHD at "
                f"{self.drhd_addr[s.address]:#x}",
            )
        else:
            self.drhd_addr[s.address] = off
        if s.include_all:
            if s.segment in self.include_all_seen:
                add(
                    "error",
                    off,
                    "duplicate-include-all",
                    f"second INCLUDE_PCI_ALL DRHD on segment {s.segment:#x} (first at "
                    f"{self.include_all_seen[s.segment]:#x}; Xen: fatal on segment 0)",
                    s.segment,
                )
            else:
                self.include_all_seen[s.segment] = off
        elif s.segment in self.include_all_seen:
            add(
                "warning",
                self.include_all_seen[s.segment],
                "include-all-not-last",
                f"the INCLUDE_PCI_ALL DRHD of segment {s.segment:#x} is followed by the DRHD "
                f"at {off:#x}",
            )

    def rmrr(self, off: int, s: Rmrr) -> None:
        add = self.add
        end_ok = True
        if s.base > s.limit:
            add(
                "error",
                off,
                "rmrr-base-above-limit",
                f"RMRR base {s.base:#x} is above its limit {s.limit:#x} (Xen: fatal)",
            )
            end_ok = False
        if s.base & 0xFFF or (s.limit + 1) & 0xFFF:
            add(
                "warning",
                off,
                "rmrr-misaligned",
                f"RMRR [{s.base:#x}, {s.limit:#x}] is not a whole number of 4 KiB pages",
            )
        if s.base == 0:
            add(
                "warning",
                off,
                "rmrr-base-zero",
                f"RMRR [{s.base:#x}, {s.limit:#x}] starts at address 0",
            )
        hit = self.registered_rmrrs.first_overlap(s.base, s.limit)
        if hit is not None:
            o_off, o = hit
            add(
                "error",
                off,
                "rmrr-overlap",
                f"RMRR [{s.base:#x}, {s.limit:#x}] overlaps the RMRR at {o_off:#x} "
                f"[{o.base:#x}, {o.limit:#x}] (Xen: fatal)",
            )
        counted = [sc for sc in s.scopes if 1 <= sc.type_code <= 4]
        if not counted:
            add(
                "warning",
                off,
                "rmrr-no-devices",
                "RMRR has no PCI device in its scope (Xen drops it)",
            )
        elif end_ok:
            self.registered_rmrrs.add(s.base, s.limit, (off, s))

    def atsr(self, off: int, s: Atsr) -> None:
        add = self.add
        if s.all_ports and s.scopes:
            add(
                "warning",
                off,
                "all-ports-with-scopes",
                "ALL_PORTS ATSR lists device scopes (Xen does not parse them)",
            )
        if s.all_ports:
            if s.segment in self.all_ports_seen:
                add(
                    "error",
                    off,
                    "duplicate-all-ports",
                    f"second ALL_PORTS ATSR on segment {s.segment:#x} (first at "
                    f"{self.all_ports_seen[s.segment]:#x}; Xen: fatal on segment 0)",
                    s.segment,
                )
            else:
                self.all_ports_seen[s.segment] = off

    def rhsa(self, off: int, s: Rhsa) -> None:
        if s.address not in self.drhd_addresses:
            self.add("warning", off, "rhsa-no-drhd", f"RHSA base {s.address:#x} matches no DRHD")


# --------------------------------------------------------------------------------------------
# Text decoding


def _size_str(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def format_table(t: DmarTable, problems: Sequence[Problem] | None = None) -> str:
    """A readable decode: header, each structure with its decoded flags and scope paths,
    then the problems (``validate()`` unless given)."""
    data = t.to_bytes()
    length = int.from_bytes(data[4:8], "little")
    if problems is None:
        problems = t.validate()
    lines = [
        f"{t.signature} table: {length} bytes, revision {t.revision}, checksum {data[9]:#04x}",
        f"  OEM {t.oem_id!r} table {t.oem_table_id!r} revision {t.oem_revision:#x}; "
        f"creator {t.creator_id!r} revision {t.creator_revision:#x}",
        f"  host address width {t.haw_bits} bits (raw {t.host_address_width})",
        f"  flags {t.flags:#04x} {' | '.join(t.flag_names) or '(none)'}",
    ]

    def fl(flags: int, names: list[str]) -> str:
        return f"flags {flags:#04x}" + (f" {' | '.join(names)}" if names else "")

    for off, s, b in t._layout():
        head = f"[{off:#06x}] {structure_name(s):<7} len {len(b):<4}"
        if isinstance(s, Drhd):
            desc = (
                f"segment {s.segment:04x} base {s.address:#x} "
                f"({_size_str(4096 << s.size) if s.size < 40 else f'2^{s.size} pages'}) "
                f"{fl(s.flags, s.flag_names)}"
            )
        elif isinstance(s, Rmrr):
            span = _size_str(s.limit - s.base + 1) if s.limit >= s.base else "base above limit"
            desc = f"segment {s.segment:04x} [{s.base:#x}, {s.limit:#x}] ({span})"
        elif isinstance(s, Atsr | Satc):
            desc = f"segment {s.segment:04x} {fl(s.flags, s.flag_names)}"
        elif isinstance(s, Sidp):
            desc = f"segment {s.segment:04x}"
        elif isinstance(s, Rhsa):
            desc = f"base {s.address:#x} proximity domain {s.proximity_domain}"
        elif isinstance(s, Andd):
            desc = f"device {s.device_number} {s.name!r}"
        else:
            desc = f"type {s.type_code}, {len(s.data)} byte(s) of data"
        lines.append(f"{head} {desc}")
        for so, sc in _scope_offsets(off, s):
            extra = ""
            if sc.type_code in (SCOPE_IOAPIC, SCOPE_HPET, SCOPE_NAMESPACE):
                extra = f" id {sc.enumeration_id}"
            flags = f" flags {sc.flags:#04x}" if sc.flags else ""
            tname = sc.type if sc.type_code in SCOPE_NAMES else f"reserved({sc.type_code})"
            lines.append(f"  [{so:#06x}]   {tname:<9} {sc.path_str()}{extra}{flags}")
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        lines.extend(f"  {p}" for p in problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)
