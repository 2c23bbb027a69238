"""numpy integer scalars are ints on every public call, and a table change is always flushed.

``Domain.unmap(np.uint64(iova), 4096)`` once changed the page table and then failed inside the
flush, leaving the freed page reachable by DMA through a stale IOTLB entry.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import vtdwalk
from lookup import leaf
from vtdwalk import DmaFault, Platform
from vtdwalk import dmar as D
from vtdwalk.driver.domain import Flush

B = vtdwalk.Bdf.parse
SCALARS: list[Callable[[int], object]] = [np.uint64, np.int64, np.uint32, np.int32]
IOVA = 0x4000
HPA = 0x20_0000
PAGE = 4096


def one_unit() -> Platform:
    """One include-all unit, one PCIe endpoint 01:00.0 (no caching mode, PSI on: QEMU's)."""
    table = D.DmarTable(
        host_address_width=38, flags=0, structures=[D.Drhd(flags=1, segment=0, address=0xB000)]
    )
    topo = vtdwalk.Topology([vtdwalk.Device(B("01:00.0"))])
    return Platform(table, topology=topo)


@pytest.mark.parametrize("num", SCALARS, ids=lambda f: f.__name__)
def test_unmap_with_numpy_scalars_flushes_the_stale_translation(
    num: Callable[[int], object],
) -> None:
    p = one_unit()
    d = p.create_domain()
    p.assign_device(d, "01:00.0")
    (u,) = d.units
    did = d.did(u)
    assert did is not None
    assert d.map(num(IOVA), num(HPA), num(PAGE)) is False  # type: ignore[arg-type]
    # The device reads the page: the translation is now cached in the unit's IOTLB.
    assert p.translate("01:00.0", IOVA).hpa == HPA
    assert p.translate("01:00.0", num(IOVA)).hpa == HPA  # type: ignore[arg-type]
    before = u.remapper.stats()["hits"]
    assert p.translate("01:00.0", IOVA).hpa == HPA
    assert u.remapper.stats()["hits"] == before + 1  # served from the IOTLB
    assert d.unmap(num(IOVA), num(PAGE)) is True  # type: ignore[arg-type]
    # Page-selective, one page, the domain's DID: the stale entry is gone.
    assert d.flush_log[-1] == Flush(u.index, "page", did, IOVA, 0)
    with pytest.raises(DmaFault) as ei:
        p.translate("01:00.0", IOVA)
    assert ei.value.reason == 0x6  # READ: the leaf is not present any more
    assert d.lookup(num(IOVA)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("num", SCALARS, ids=lambda f: f.__name__)
def test_remap_with_numpy_scalars_flushes_the_old_translation(
    num: Callable[[int], object],
) -> None:
    p = one_unit()
    d = p.create_domain(num(4))  # type: ignore[arg-type]
    assert d.levels == 4
    p.assign_device(d, num(0x0100))  # type: ignore[arg-type]
    (u,) = d.units
    did = d.did(u)
    d.map(IOVA, HPA, PAGE)
    assert p.translate("01:00.0", IOVA).hpa == HPA
    assert d.map(num(IOVA), num(2 * HPA), num(PAGE)) is True  # type: ignore[arg-type]
    assert d.flush_log[-1] == Flush(u.index, "page", did or 0, IOVA, 0)
    assert p.translate("01:00.0", IOVA).hpa == 2 * HPA
    assert leaf(d.lookup(num(IOVA))) == (2 * HPA, PAGE, True, True)  # type: ignore[arg-type]
    assert p.device_in_domain(num(u.index), "01:00.0", num(did or 0)) is False  # type: ignore[arg-type]
    assert p.owner_of(num(0x0100)) is d  # type: ignore[arg-type]
    assert p.deassign_device(num(0x0100)) is d  # type: ignore[arg-type]
