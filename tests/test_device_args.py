"""A device is named the same way on every native call that takes one: a ``Bdf``, a
``"ssss:bb:dd.f"`` / ``"bb:dd.f"`` string or an int source-id; a malformed one raises
``InvalidArgument`` naming the argument, and changes nothing."""

from __future__ import annotations

import pytest

from vtdwalk import Bdf, DmaFault, InvalidArgument, PageTable, PhysMem, Remapper, RootTable

BUS, DEV, FN = 3, 1, 0
SID = BUS << 8 | DEV << 3 | FN  # 03:01.0
IOVA = 0x1234_5000
PAGE = 0x40_0000
FORMS: list[object] = [SID, "03:01.0", "0000:03:01.0", Bdf(0, BUS, DEV, FN), Bdf.parse("03:01.0")]
BAD = ["03:01", "03:20.0", "03:01.8", "zz:01.0", "0:0:0:0.0", 0x1_0000, -1, True, 3.0, None]


def build() -> tuple[RootTable, Remapper]:
    mem = PhysMem([(0, 1 << 24)])
    pt = PageTable(mem, 4)
    pt.map(IOVA, PAGE, 4096)
    rt = RootTable(mem)
    rt.alloc()
    rt.set_context(BUS, DEV << 3 | FN, pt.root, 2, 7)
    return rt, Remapper(mem, root_table=rt.maddr)


@pytest.mark.parametrize("dev", FORMS, ids=repr)
def test_translate_takes_every_device_form(dev: object) -> None:
    _, r = build()
    t = r.translate(dev, IOVA)  # type: ignore[arg-type]
    assert (t.hpa, t.domain_id) == (PAGE, 7)


@pytest.mark.parametrize("dev", FORMS, ids=repr)
def test_invalidate_context_device_takes_every_form(dev: object) -> None:
    _, r = build()
    r.translate(SID, IOVA)
    misses = r.stats()["context_misses"]
    r.invalidate_context("device", sid=dev)  # type: ignore[arg-type]
    r.translate(SID, IOVA)
    assert r.stats()["context_misses"] == misses + 1


@pytest.mark.parametrize("dev", FORMS, ids=repr)
def test_root_table_takes_a_device_or_bus_devfn(dev: object) -> None:
    rt, _ = build()
    entry = rt.context(BUS, DEV << 3 | FN)
    assert entry is not None
    assert rt.context(dev) == entry  # type: ignore[arg-type]
    assert rt.raw_context(dev) == entry  # type: ignore[arg-type]
    assert rt.clear_context(dev) is True  # type: ignore[arg-type]
    assert rt.context(BUS, DEV << 3 | FN) is None
    assert rt.clear_context(dev) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_malformed_devices_name_the_argument(bad: object) -> None:
    rt, r = build()
    stats = r.stats()
    with pytest.raises(InvalidArgument, match=r"^sid: "):
        r.translate(bad, IOVA)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="needs sid" if bad is None else r"^sid: "):
        r.invalidate_context("device", sid=bad)  # type: ignore[arg-type]
    assert r.stats() == stats
    if bad is not None:
        with pytest.raises(InvalidArgument, match=r"^device: "):
            rt.context(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match=r"^device: "):
            rt.clear_context(bad)  # type: ignore[arg-type]
    assert rt.context(BUS, DEV << 3 | FN) is not None


def test_a_fault_names_the_source_id_whatever_the_form() -> None:
    _, r = build()
    with pytest.raises(DmaFault) as e:
        r.translate("03:01.1", IOVA)
    assert e.value.sid == SID | 1
