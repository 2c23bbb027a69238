"""The API conventions of the README's "Conventions" section, on every public entry point that
names a device: the forms a device may take, the error a malformed one raises (InvalidArgument
naming the argument), and "not mapped" as None."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import vtdwalk
from vtdwalk import Bdf, Device, InvalidArgument, Platform, Topology
from vtdwalk import dmar as D

B = Bdf.parse
UNIT = 0xB000


def machine() -> Platform:
    """One include-all unit with an RMRR for 01:00.0, an ALL_PORTS ATSR; 01:00.0 has ATS."""
    table = D.DmarTable(
        host_address_width=38,
        flags=0,
        structures=[
            D.Drhd(flags=1, segment=0, address=UNIT),
            D.Rmrr(
                segment=0,
                base=0x8000_0000,
                limit=0x8000_FFFF,
                scopes=[D.DeviceScope.endpoint(1, 0, 0)],
            ),
            D.Atsr(flags=1, segment=0),
        ],
    )
    topo = Topology([Device(B("01:00.0"), ats=True), Device(B("02:00.0"))])
    return Platform(table, topology=topo)


#: 01:00.0 in every form a device may take.
FORMS: list[object] = [
    B("01:00.0"),
    "0000:01:00.0",
    "01:00.0",
    (0, 1, 0, 0),
    0x0100,
    np.uint16(0x0100),
    np.int64(0x0100),
]
FORM_IDS = ["Bdf", "ssss:bb:dd.f", "bb:dd.f", "tuple", "int", "np.uint16", "np.int64"]


def _answers(p: Platform, dev: Any) -> dict[str, object]:
    """What each device-naming query says about ``dev``, on a platform where 01:00.0 is
    assigned and mapped."""
    d = p.owner_of(dev)
    unit = p.iommu_for_device(dev)
    assert unit is not None
    did = d.did(unit) if d is not None else None
    return {
        "owner": None if d is None else d.id,
        "unit": unit.address,
        "drhd": None if (x := p.drhd_for_device(dev)) is None else x.address,
        "atsr": p.atsr_for_device(dev) is not None,
        "rmrrs": [(r.base, r.end) for r in p.rmrrs_for_device(dev)],
        "in_domain": p.device_in_domain(unit, dev, did or 0),
        "translate": p.translate(dev, 0x1000).hpa,
        "batch": p.translate_batch([dev, dev], [0x1000, 0x2000])[0].tolist(),
        "topology": p.topology.get(dev),
        "contains": dev in p.topology,
    }


@pytest.mark.parametrize("dev", FORMS, ids=FORM_IDS)
def test_every_device_form_names_the_same_device(dev: object) -> None:
    p = machine()
    d = p.create_domain()
    p.assign_device(d, dev)  # type: ignore[arg-type]
    d.map(0x1000, 0x10_0000, 0x2000)
    got = _answers(p, dev)
    assert got == {
        "owner": d.id,
        "unit": UNIT,
        "drhd": UNIT,
        "atsr": True,  # ALL_PORTS
        "rmrrs": [(0x8000_0000, 0x8000_FFFF)],
        "in_domain": True,  # TT 1: ATS device, ECAP.DT (QEMU's default), an ATSR
        "translate": 0x10_0000,
        "batch": [0x10_0000, 0x10_1000],
        "topology": p.topology[B("01:00.0")],
        "contains": True,
    }
    other = p.create_domain()
    p.reassign_device(dev, other)  # type: ignore[arg-type]
    assert p.owner_of(B("01:00.0")) is other
    assert p.deassign_device(dev) is other  # type: ignore[arg-type]
    assert p.owner_of("01:00.0") is None


#: Entry points that name a device, with the argument's name, called with ``bad`` there.
ENTRY_POINTS: list[tuple[str, str, Callable[[Platform, Any], object]]] = [
    ("assign_device", "bdf", lambda p, bad: p.assign_device(p.create_domain(), bad)),
    ("deassign_device", "bdf", lambda p, bad: p.deassign_device(bad)),
    ("reassign_device", "bdf", lambda p, bad: p.reassign_device(bad, p.create_domain())),
    ("owner_of", "bdf", lambda p, bad: p.owner_of(bad)),
    ("translate", "bdf", lambda p, bad: p.translate(bad, 0)),
    ("translate_batch", "devices", lambda p, bad: p.translate_batch([bad], [0])),
    ("device_in_domain", "bdf", lambda p, bad: p.device_in_domain(0, bad, 1)),
    ("iommu_for_device", "dev", lambda p, bad: p.iommu_for_device(bad)),
    ("drhd_for_device", "dev", lambda p, bad: p.drhd_for_device(bad)),
    ("atsr_for_device", "dev", lambda p, bad: p.atsr_for_device(bad)),
    ("rmrrs_for_device", "dev", lambda p, bad: p.rmrrs_for_device(bad)),
    ("Topology.get", "bdf", lambda p, bad: p.topology.get(bad)),
    ("Bdf.coerce", "bdf", lambda p, bad: Bdf.coerce(bad)),
    ("Bdf.parse", "text", lambda p, bad: Bdf.parse(bad)),
]
BAD = ["zz", "00:20.0", "0000:100:00.0", 1 << 32, -1, (0, 256, 0, 0), 1.5, None]


@pytest.mark.parametrize("name,arg,call", ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_a_malformed_pci_address_is_invalid_argument_naming_the_argument(
    name: str, arg: str, call: Callable[[Platform, Any], object], bad: object
) -> None:
    p = machine()
    if name == "Bdf.parse" and not isinstance(bad, str):
        bad = repr(bad)  # parse takes text only
    before = p.to_dict()
    if bad is None and name in ("iommu_for_device", "drhd_for_device", "atsr_for_device"):
        assert call(p, bad) is None  # documented: no device, no unit
        return
    with pytest.raises(InvalidArgument) as ei:
        call(p, bad)
    assert type(ei.value) is InvalidArgument
    assert str(ei.value).startswith(f"{arg}: "), str(ei.value)
    assert p.owner_of("01:00.0") is None and p.to_dict() == before  # nothing changed


def test_an_invalid_argument_message_quotes_a_short_prefix() -> None:
    with pytest.raises(InvalidArgument) as ei:
        Bdf.coerce("x" * 1_000_000)
    assert len(str(ei.value)) < 200


def test_not_mapped_is_none_for_single_look_ups() -> None:
    p = machine()
    d = p.create_domain()
    assert d.lookup(0x1000) is None
    d.map(0x1000, 0x10_0000, 0x1000)
    assert d.lookup(0x1000) == (0x10_0000, 0x1000, True, True)
    assert d.lookup(0x2000) is None
    assert d.page_table is not None and d.page_table.lookup(0x2000) is None


def test_the_layers_are_exported_unchanged() -> None:
    assert vtdwalk.dmar is D
    assert {"Platform", "Domain", "Iommu", "Bdf", "Translation", "InvalidArgument"} <= set(
        vtdwalk.__all__
    )


@pytest.mark.parametrize("did", [-1, 1 << 16, np.int64(1 << 16), "1", 1.0, True])
def test_a_did_out_of_range_is_invalid_argument_naming_it(did: object) -> None:
    p = machine()
    with pytest.raises(InvalidArgument, match=r"^did: ") as ei:
        p.device_in_domain(0, "01:00.0", did)  # type: ignore[arg-type]
    assert type(ei.value) is InvalidArgument
