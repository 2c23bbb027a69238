"""Domain mappings and their IOTLB flushes (xen-driver.md §4.5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import vtdwalk
from vtdwalk import DmaFault, InvalidArgument, Platform, PlatformError
from vtdwalk import dmar as D
from vtdwalk.driver.domain import Flush
from vtdwalk.driver.iommu import QEMU_CAP, QEMU_ECAP

B = vtdwalk.Bdf.parse
DATA = Path(vtdwalk.__file__).resolve().parent / "data"
CM = 1 << 7  # CAP.CM
PSI = 1 << 39  # CAP.PSI
MAMV = 0x3F << 48
RWBF = 1 << 4


def two_units(cap: int = QEMU_CAP, cap2: int | None = None) -> Platform:
    """Two units on one segment: 0xa000 for bus 1 (behind 00:01.0), include-all 0xb000."""
    table = D.DmarTable(
        host_address_width=38,
        flags=0,
        structures=[
            D.Drhd(flags=0, segment=0, address=0xA000, scopes=[D.DeviceScope.bridge(0, 1, 0)]),
            D.Drhd(flags=1, segment=0, address=0xB000),
        ],
    )
    topo = vtdwalk.Topology(
        [
            vtdwalk.Device(B("00:01.0"), vtdwalk.DeviceKind.PCIE_PORT, secondary=1, subordinate=1),
            vtdwalk.Device(B("01:00.0")),
            vtdwalk.Device(B("00:02.0")),
        ]
    )
    caps = {0xA000: (cap, QEMU_ECAP), 0xB000: (cap if cap2 is None else cap2, QEMU_ECAP)}
    return Platform(table, topology=topo, unit_caps=caps)


def test_map_unmap_flush_kinds() -> None:
    p = two_units()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    (u,) = d.units
    did = d.did(u)
    # New mappings over nothing: no caching mode, so nothing to invalidate.
    assert d.map(0x1000, 0x100000, 0x1000) is False
    assert d.flush_log[-1] == Flush(u.index, "none", did or 0, non_present=True)
    # Remap one page: page-selective, mask 0, the domain's DID.
    assert d.map(0x1000, 0x200000, 0x1000) is True
    assert d.flush_log[-1] == Flush(u.index, "page", did or 0, 0x1000, 0)
    # 8 aligned pages: mask 3. 3 pages or a misaligned run: domain-selective.
    d.map(0x8000, 0x300000, 0x8000)
    d.map(0x8000, 0x400000, 0x8000)
    assert d.flush_log[-1] == Flush(u.index, "page", did or 0, 0x8000, 3)
    d.map(0x8000, 0x500000, 0x3000)
    assert d.flush_log[-1].kind == "domain"
    d.map(0x9000, 0x600000, 0x2000)
    assert d.flush_log[-1].kind == "domain"
    # A 2 MiB superpage remapped: one PSI with mask 9 (QEMU's MAMV is 18).
    d.map(0x20_0000, 0x4000_0000, 0x20_0000)
    d.map(0x20_0000, 0x4020_0000, 0x20_0000)
    assert d.flush_log[-1] == Flush(u.index, "page", did or 0, 0x20_0000, 9)
    assert d.unmap(0x20_0000, 0x20_0000) is True
    assert d.flush_log[-1] == Flush(u.index, "page", did or 0, 0x20_0000, 9)
    # Unmapping nothing flushes nothing.
    n = len(d.flush_log)
    assert d.unmap(0x7000_0000, 0x1000) is False
    assert len(d.flush_log) == n
    assert d.flush_counts["page"] == 4 and d.flush_counts["domain"] == 2


def test_psi_limits_fall_back_to_dsi() -> None:
    p = two_units(cap=QEMU_CAP & ~PSI, cap2=(QEMU_CAP & ~MAMV) | (2 << 48))
    d = p.create_domain()
    p.assign_device(d, "01:00.0")  # unit without PSI
    p.assign_device(d, "00:02.0")  # unit with MAMV 2
    a, b = sorted(d.units, key=lambda u: u.address)
    d.map(0, 0x100000, 0x10000)
    d.map(0, 0x200000, 0x1000)
    kinds = {f.unit: f.kind for f in d.flush_log[-2:]}
    assert kinds == {a.index: "domain", b.index: "page"}
    d.map(0, 0x300000, 0x4000)  # mask 2: still PSI on b
    assert {f.unit: (f.kind, f.am) for f in d.flush_log[-2:]} == {
        a.index: ("domain", 0),
        b.index: ("page", 2),
    }
    d.map(0, 0x300000, 0x8000)  # mask 3 > MAMV: DSI on b
    assert {f.unit: f.kind for f in d.flush_log[-2:]} == {a.index: "domain", b.index: "domain"}


def test_caching_mode_flushes_non_present_with_did_zero() -> None:
    p = two_units(cap=QEMU_CAP | CM | RWBF)
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    (u,) = d.units
    assert u.caching_mode and d.did(u) != 0  # DID 0 is reserved under caching mode
    d.map(0x1000, 0x100000, 0x1000)
    assert d.flush_log[-1] == Flush(u.index, "page", 0, 0x1000, 0, non_present=True)
    p2 = two_units(cap=QEMU_CAP | RWBF)
    d2 = p2.create_domain()
    p2.assign_device(d2, "01:00.0")
    d2.map(0x1000, 0x100000, 0x1000)
    assert d2.flush_log[-1].kind == "none" and d2.flush_log[-1].wbf
    assert d2.flush_counts["wbf"] == 1


def test_flush_reaches_every_unit_and_takes_effect() -> None:
    p = two_units()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    p.assign_device(d, "00:02.0")
    assert len(d.units) == 2
    d.map(0x5000, 0x100000, 0x1000)
    assert p.translate("01:00.0", 0x5000).hpa == 0x100000
    assert p.translate("00:02.0", 0x5000).hpa == 0x100000
    d.map(0x5000, 0x900000, 0x1000)
    assert sorted(f.unit for f in d.flush_log[-2:]) == sorted(u.index for u in d.units)
    assert p.translate("01:00.0", 0x5000).hpa == 0x900000
    assert p.translate("00:02.0", 0x5000).hpa == 0x900000
    # A domain with no device is on no unit: its changes flush nothing.
    e = p.create_domain()
    e.map(0, 0x100000, 0x1000)
    e.map(0, 0x200000, 0x1000)
    assert e.flush_log == []


def test_batches() -> None:
    p = two_units()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    (u,) = d.units
    iovas = np.arange(0x10000, 0x14000, 0x1000, dtype=np.uint64)
    assert d.map_pages(iovas, iovas + np.uint64(0x100000)) is False
    assert d.flush_log[-1].kind == "none"
    assert d.map_pages(iovas[::-1].copy(), iovas[::-1] + np.uint64(0x200000)) is True
    assert d.flush_log[-1] == Flush(u.index, "page", d.did(u) or 0, 0x10000, 2)
    hpa, fault = p.translate_batch(["01:00.0"] * 4, iovas)
    assert fault.tolist() == [0] * 4 and hpa.tolist() == (iovas + 0x200000).tolist()
    # A batch is flushed as [min, max + 4K): two scattered pages of an aligned 4-page run
    # give one PSI over the run (more than what changed, never less).
    scattered = np.array([0x13000, 0x10000], dtype=np.uint64)
    assert d.unmap_pages(scattered) is True
    assert d.flush_log[-1] == Flush(u.index, "page", d.did(u) or 0, 0x10000, 2)
    _, fault = p.translate_batch(["01:00.0"] * 4, iovas)
    assert fault.tolist() == [6, 0, 0, 6]
    # [0x11000, 0x13000] spans 3 pages: domain-selective.
    assert d.unmap_pages(np.array([0x12000, 0x11000], dtype=np.uint64)) is True
    assert d.flush_log[-1] == Flush(u.index, "domain", d.did(u) or 0)
    # Duplicates in a batch: the range is still one page.
    d.map_pages([0x11000, 0x11000], [0x500000, 0x500000])
    d.map_pages([0x11000, 0x11000], [0x600000, 0x600000])
    assert d.flush_log[-1] == Flush(u.index, "page", d.did(u) or 0, 0x11000, 0)
    assert d.map_pages([0x20000], [0x300000]) is False  # lists are accepted
    for bad in ([[1]], ["x"], [-4096], [4096.0], [True]):
        with pytest.raises(InvalidArgument, match="iovas"):
            d.map_pages(bad, [0x1000])
    with pytest.raises(InvalidArgument, match="maddrs"):
        d.map_pages([0x1000], [-1])


def test_bad_mappings_change_nothing() -> None:
    p = two_units()
    d = p.create_domain(levels=3)
    p.assign_device(d, "01:00.0")
    d.map(0x1000, 0x100000, 0x1000)
    n = len(d.flush_log)
    for args, msg in (
        ((0x1001, 0x100000, 0x1000), "^iova: 0x1001 is not 4 KiB aligned"),
        ((1 << 39, 0x100000, 0x1000), r"^iova: .* beyond the 39-bit address width"),
        ((0x2000, 1 << 52, 0x1000), r"^maddr: .* beyond 2\^52"),
        ((0x2000, 0x100000, 0), "^size: must not be 0$"),
    ):
        with pytest.raises(InvalidArgument, match=msg):
            d.map(*args)
    with pytest.raises(InvalidArgument, match=r"^read/write: a mapping needs read or write"):
        d.map(0x2000, 0x100000, 0x1000, read=False, write=False)
    assert len(d.flush_log) == n
    assert p.translate("01:00.0", 0x1000).hpa == 0x100000
    with pytest.raises(DmaFault):
        p.translate("01:00.0", 0x2000)


def test_domain_teardown() -> None:
    p = two_units()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    d.map(0, 0x100000, 0x40_0000)
    with pytest.raises(PlatformError, match="still has devices"):
        p.destroy_domain(d)
    p.deassign_device("01:00.0")
    before = sum(s["allocated_pages"] for s in p.mem.stats())
    pages = sum(d.table_pages().values())
    p.destroy_domain(d)
    assert sum(s["allocated_pages"] for s in p.mem.stats()) == before - pages
    assert d not in p.domains


def test_dsi_is_decided_first_and_never_non_present() -> None:
    # xen-driver.md §4.5: a count that is not a power of two (or a misaligned address) is a
    # domain-selective flush with non_present = 0 and the domain's DID, even when nothing was
    # present before; only a page-selective flush is a non-present one.
    p = two_units(cap=QEMU_CAP | RWBF)
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    (u,) = d.units
    did = d.did(u)
    assert did is not None
    d.map(0x1000, 0x100000, 0x3000)  # 3 new pages
    assert d.flush_log[-1] == Flush(u.index, "domain", did)
    d.map_pages([0x10000, 0x12000], [0x200000, 0x300000])  # new, spans 3 pages
    assert d.flush_log[-1] == Flush(u.index, "domain", did)
    d.map(0x20000, 0x400000, 0x2000)  # 2 new aligned pages: PSI, non-present: nothing
    assert d.flush_log[-1] == Flush(u.index, "none", did, non_present=True, wbf=True)
    # Under caching mode: DSI keeps the real DID; a non-present PSI uses DID 0.
    cm = two_units(cap=QEMU_CAP | CM)
    e = cm.create_domain()
    cm.assign_device(e, "01:00.0")
    (v,) = e.units
    edid = e.did(v)
    assert edid is not None and edid != 0
    e.map(0x1000, 0x100000, 0x3000)
    assert e.flush_log[-1] == Flush(v.index, "domain", edid)
    e.map(0x8000, 0x200000, 0x1000)
    assert e.flush_log[-1] == Flush(v.index, "page", 0, 0x8000, 0, non_present=True)
    # A unit without CAP.PSI turns a non-present PSI into a DSI that keeps DID 0.
    nopsi = two_units(cap=(QEMU_CAP | CM) & ~PSI)
    f = nopsi.create_domain()
    nopsi.assign_device(f, "01:00.0")
    (w,) = f.units
    f.map(0x8000, 0x200000, 0x1000)
    assert f.flush_log[-1] == Flush(w.index, "domain", 0, non_present=True)
    assert f.flush_counts == {"domain": 1}


def test_domain_levels_and_freed_domain() -> None:
    p = two_units()
    for lv in (2, 6, True, "4"):
        with pytest.raises(InvalidArgument, match="levels"):
            p.create_domain(levels=lv)  # type: ignore[arg-type]
    d = p.create_domain()
    d.map(0x1000, 0x100000, 0x1000)
    p.free()
    pages = sum(s["allocated_pages"] for s in p.mem.stats())
    calls: list[Callable[[], object]] = [
        lambda: d.map(0x2000, 0x100000, 0x1000),
        lambda: d.map_pages([0x3000], [0x100000]),
        lambda: d.unmap(0x1000, 0x1000),
    ]
    for call in calls:
        with pytest.raises(PlatformError, match="freed"):
            call()
    assert sum(s["allocated_pages"] for s in p.mem.stats()) == pages
