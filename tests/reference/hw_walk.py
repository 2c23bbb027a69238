"""A small, slow, independent reference of the VT-d legacy-mode translation (no caches).

Written from vtd-hardware.md §1.3, §1.5, §1.7 and decisions.md alone, to check the Rust walk
against: root entry, context entry, second-level walk, fault reason codes. Memory is reached
through a callable returning the 64-bit word at an address, or None outside memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Read64 = Callable[[int], "int | None"]

# Fault reasons (§1.13).
ROOT_ENTRY_P = 0x1
CONTEXT_ENTRY_P = 0x2
CONTEXT_ENTRY_INV = 0x3
ADDR_BEYOND_MGAW = 0x4
WRITE = 0x5
READ = 0x6
PAGING_ENTRY_INV = 0x7
ROOT_TABLE_INV = 0x8
CONTEXT_TABLE_INV = 0x9
ROOT_ENTRY_RSVD = 0xA
CONTEXT_ENTRY_RSVD = 0xB
PAGING_ENTRY_RSVD = 0xC
CONTEXT_ENTRY_TT = 0xD
INTERRUPT_ADDR = 0xE


def bits(hi: int, lo: int) -> int:
    """Mask of bits hi..lo inclusive."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


@dataclass(frozen=True)
class Unit:
    cap: int
    ecap: int

    @property
    def mgaw_bits(self) -> int:
        return ((self.cap >> 16) & 0x3F) + 1

    @property
    def haw(self) -> int:
        return min(self.mgaw_bits, 52)

    def aw_supported(self, aw: int) -> bool:
        return aw in (1, 2, 3) and bool((self.cap >> 8) & (1 << aw))

    @property
    def sp2m(self) -> bool:
        return bool(self.cap & (1 << 34))

    @property
    def sp1g(self) -> bool:
        return bool(self.cap & (1 << 35))

    def did_mask(self) -> int:
        nd = self.cap & 7
        return (1 << min(4 + 2 * nd, 16)) - 1

    def pte_reserved(self, level: int, pte: int) -> bool:
        """Reserved bits of a second-level entry (§1.7 table and adjustments)."""
        sc = bool(self.ecap & (1 << 7))
        common = (1 << 62) | (bits(51, self.haw) if self.haw <= 51 else 0)
        snp = 1 << 11
        ps = bool(pte & (1 << 7))
        if level == 1:
            # bit 7 of an L1 entry is ignored (no PS meaning at L1).
            return bool(pte & (common | (0 if sc else snp)))
        sp_ok = (level == 2 and self.sp2m) or (level == 3 and self.sp1g)
        if ps:
            if not sp_ok:
                return True
            low = bits(20, 12) if level == 2 else bits(29, 12)
            return bool(pte & (common | low | (0 if sc else snp)))
        return bool(pte & (common | snp))


@dataclass(frozen=True)
class Result:
    hpa: int
    fault: int
    level: int = 0
    read: bool = False
    write: bool = False
    did: int = 0


def _fault(code: int) -> Result:
    return Result(0, code)


def translate(
    unit: Unit,
    read64: Read64,
    rtaddr: int | None,
    sid: int,
    iova: int,
    write: bool,
    translation_request: bool = False,
) -> Result:
    """Translate one request; Result.fault is 0 on success."""
    if rtaddr is None:
        return _fault(ROOT_TABLE_INV)
    bus, devfn = sid >> 8, sid & 0xFF
    r_lo = read64(rtaddr + 16 * bus)
    r_hi = read64(rtaddr + 16 * bus + 8)
    if r_lo is None or r_hi is None:
        return _fault(ROOT_TABLE_INV)
    if not r_lo & 1:
        return _fault(ROOT_ENTRY_P)
    above_haw = bits(63, unit.haw)
    if r_lo & (0xFFE | above_haw) or r_hi:
        return _fault(ROOT_ENTRY_RSVD)
    ctp = r_lo & bits(63, 12)
    c_lo = read64(ctp + 16 * devfn)
    c_hi = read64(ctp + 16 * devfn + 8)
    if c_lo is None or c_hi is None:
        return _fault(CONTEXT_TABLE_INV)
    if not c_lo & 1:
        return _fault(CONTEXT_ENTRY_P)
    if c_lo & (0xFF0 | above_haw) or c_hi & 0xFFFFFFFFFF000080:
        return _fault(CONTEXT_ENTRY_RSVD)
    aw = c_hi & 7
    if not unit.aw_supported(aw):
        return _fault(CONTEXT_ENTRY_INV)
    tt = (c_lo >> 2) & 3
    dt, pt = bool(unit.ecap & (1 << 2)), bool(unit.ecap & (1 << 6))
    if tt == 3 or (tt == 1 and not dt) or (tt == 2 and not pt):
        return _fault(CONTEXT_ENTRY_INV)
    did = (c_hi >> 8) & 0xFFFF & unit.did_mask()
    if translation_request and tt != 1:
        return _fault(CONTEXT_ENTRY_TT)
    if tt == 2:
        return Result(iova, 0, 0, True, True, did)
    levels = aw + 2
    width = min(30 + 9 * aw, unit.mgaw_bits)
    if iova >= 1 << width:
        return _fault(ADDR_BEYOND_MGAW)
    table = c_lo & bits(63, 12)
    can_r = can_w = True
    for level in range(levels, 0, -1):
        index = (iova >> (12 + 9 * (level - 1))) & 0x1FF
        pte = read64(table + 8 * index)
        if pte is None:
            return _fault(CONTEXT_ENTRY_INV if level == levels else PAGING_ENTRY_INV)
        r, w = bool(pte & 1), bool(pte & 2)
        if write and not w:
            return _fault(WRITE)
        if not write and not r:
            return _fault(READ)
        if unit.pte_reserved(level, pte):
            return _fault(PAGING_ENTRY_RSVD)
        can_r, can_w = can_r and r, can_w and w
        if level == 1 or pte & (1 << 7):
            size = 1 << (12 + 9 * (level - 1))
            hpa = (pte & bits(51, 12) & ~(size - 1)) | (iova & (size - 1))
            if 0xFEE00000 <= hpa <= 0xFEEFFFFF:
                return _fault(INTERRUPT_ADDR)
            return Result(hpa, 0, level, can_r, can_w, did)
        table = pte & bits(51, 12)
    raise AssertionError("unreachable: the loop ends at level 1")
