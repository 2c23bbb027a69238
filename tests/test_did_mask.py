"""A DID is the low CAP.ND-given bits of what is written, everywhere the unit uses one
(vtd-hardware.md §1.3 ND: 2^(4 + 2 ND) domains): the context entry's DID is cached masked, and
invalidation by DID (IOTLB domain and page, context domain) masks the DID it is given alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vtdwalk import Cap, PageTable, PhysMem, Remapper, RootTable

BUS, DEVFN = 3, 8
SID = BUS << 8 | DEVFN
IOVA = 0x8080604000
PAGE_A, PAGE_B = 0x40_0000, 0x50_0000
CAP_ND2 = int(Cap.default().replace(nd=2))  # 8-bit DIDs


def build(cap: int, did: int) -> tuple[PageTable, Remapper]:
    mem = PhysMem([(0, 1 << 24)])
    pt = PageTable(mem, 4)
    pt.map(IOVA, PAGE_A, 4096)
    rt = RootTable(mem)
    rt.alloc()
    rt.set_context(BUS, DEVFN, pt.root, 2, did)
    return pt, Remapper(mem, root_table=rt.maddr, cap=cap)


def remap(pt: PageTable) -> None:
    pt.unmap(IOVA, 4096)
    pt.map(IOVA, PAGE_B, 4096)


Invalidate = Callable[[Remapper], None]
BY_DID: dict[str, Invalidate] = {
    "iotlb domain": lambda r: r.invalidate_iotlb("domain", did=0x1234),
    "iotlb page": lambda r: r.invalidate_iotlb("page", did=0x1234, addr=IOVA),
    "iotlb page, other high bits": lambda r: r.invalidate_iotlb("page", did=0xAB34, addr=IOVA),
}


def test_context_did_is_cached_masked() -> None:
    _, r = build(CAP_ND2, 0x1234)
    assert r.translate(SID, IOVA).domain_id == 0x34
    _, r16 = build(int(Cap.default()), 0x1234)
    assert r16.translate(SID, IOVA).domain_id == 0x1234


@pytest.mark.parametrize("what", list(BY_DID))
def test_invalidation_by_did_masks_the_did(what: str) -> None:
    pt, r = build(CAP_ND2, 0x1234)
    assert r.translate(SID, IOVA).hpa == PAGE_A | (IOVA & 0xFFF)
    remap(pt)
    assert r.translate(SID, IOVA).hpa == PAGE_A | (IOVA & 0xFFF)  # stale, cached
    BY_DID[what](r)
    assert r.translate(SID, IOVA).hpa == PAGE_B | (IOVA & 0xFFF)


def test_context_domain_invalidation_masks_the_did() -> None:
    _, r = build(CAP_ND2, 0x1234)
    r.translate(SID, IOVA)
    before = r.stats()
    r.invalidate_context("domain", did=0x1234)
    r.translate(SID, IOVA)
    after = r.stats()
    assert after["context_misses"] == before["context_misses"] + 1


def test_another_low_did_is_not_invalidated() -> None:
    pt, r = build(CAP_ND2, 0x1234)
    r.translate(SID, IOVA)
    remap(pt)
    r.invalidate_iotlb("domain", did=0x1235)
    r.invalidate_iotlb("page", did=0x0135, addr=IOVA)
    assert r.translate(SID, IOVA).hpa == PAGE_A | (IOVA & 0xFFF)
    before = r.stats()
    r.invalidate_context("domain", did=0x1235)
    r.translate(SID, IOVA)
    assert r.stats()["context_misses"] == before["context_misses"]


def test_sixteen_bit_dids_are_not_masked() -> None:
    pt, r = build(int(Cap.default()), 0x1234)
    r.translate(SID, IOVA)
    remap(pt)
    r.invalidate_iotlb("domain", did=0x34)
    assert r.translate(SID, IOVA).hpa == PAGE_A | (IOVA & 0xFFF)
    r.invalidate_iotlb("domain", did=0x1234)
    assert r.translate(SID, IOVA).hpa == PAGE_B | (IOVA & 0xFFF)
