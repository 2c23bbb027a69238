"""The native spec vocabulary: CAP / ECAP fields, root and context entry decoders, fault
names and the level / AW / width conversions, with expected values from vtd-hardware.md."""

from __future__ import annotations

import pytest

import vtdwalk
from vtdwalk import (
    Cap,
    ContextEntry,
    Ecap,
    InvalidArgument,
    PhysMem,
    Remapper,
    RootEntry,
    aw_to_levels,
    fault_name,
    fault_names,
    levels_to_aw,
    levels_to_width,
)

# vtd-hardware.md §1.3 "Computed values".
CAP_AW48 = 0x80D2008C222F0606
CAP_AW39 = 0x80D2008C22260206
CAP_CM = 0x80D2008C222F0686
ECAP_TCG = 0x0000000000F00F4A
ECAP_EIM = 0x0000000000F00F5A
ECAP_NO_IR = 0x0000000000000F42


def test_default_cap_decodes_to_the_spec_fields() -> None:
    c = Cap.default()
    assert int(c) == c.value == CAP_AW48
    # §1.3: ND 6, SAGAW 39+48-bit, MGAW aw-1 = 47, FRO 0x22, 2M+1G, PSI, NFR 0, MAMV 18,
    # DWD/DRD, ESRTPS.
    assert (c.nd, c.sagaw, c.mgaw, c.fro, c.sllps, c.nfr, c.mamv) == (
        6,
        0b00110,
        47,
        0x22,
        0b11,
        0,
        18,
    )
    assert c.psi and c.dwd and c.drd and c.esrtps
    assert not (c.cm or c.fs1gp or c.rwbf or c.afl)
    assert (c.did_bits, c.did_mask, c.ndoms, c.aw_bits) == (16, 0xFFFF, 65536, 48)
    assert c.levels_supported == [3, 4]
    assert c.superpages == ["2M", "1G"]


def test_the_default_is_what_a_remapper_starts_from() -> None:
    r = Remapper(PhysMem([(0, 1 << 24)]), fault_records=1)
    assert r.cap == CAP_AW48
    assert r.ecap == int(Ecap.default()) == ECAP_TCG | 1 << 2  # plus DT


def test_cap_from_keywords_matches_the_computed_values() -> None:
    assert int(Cap(CAP_AW48, sagaw=0b10, mgaw=38)) == CAP_AW39
    assert int(Cap.default().replace(cm=True)) == CAP_CM
    assert int(Cap(CAP_AW48, fs1gp=True)) == 0x81D2008C222F0606
    built = Cap(
        nd=6,
        sagaw=0b110,
        mgaw=47,
        fro=0x22,
        sllps=3,
        psi=True,
        mamv=18,
        dwd=True,
        drd=True,
        esrtps=True,
    )
    assert built == Cap.default() and hash(built) == hash(Cap.default())
    assert Cap(CAP_AW39).levels_supported == [3]
    assert Cap(CAP_AW39).aw_bits == 39


def test_ecap_fields() -> None:
    e = Ecap(ECAP_TCG)
    assert e.qi and e.ir and e.pt and not e.dt and not e.eim and not e.c and not e.sc
    assert (e.iro, e.mhmv, e.pss) == (0xF, 15, 0)
    assert int(e.replace(eim=True)) == ECAP_EIM
    assert int(Ecap(ECAP_TCG, ir=False, mhmv=0)) == ECAP_NO_IR
    # scalable mode + x-flts + pasid + svm + device-iotlb.
    full = Ecap(
        ECAP_TCG, dt=True, smts=True, fsts=True, pasid=True, pds=True, pss=7, prs=True, nwfs=True
    )
    assert int(full) == 0x00008D3A20F00F4E
    assert full.fields()["pss"] == 7 and full.fields()["smts"] is True


@pytest.mark.parametrize(
    ("nd", "bits"), [(0, 4), (1, 6), (2, 8), (3, 10), (4, 12), (5, 14), (6, 16), (7, 16)]
)
def test_did_width_from_nd(nd: int, bits: int) -> None:
    c = Cap(nd=nd)
    assert (c.did_bits, c.did_mask, c.ndoms) == (bits, (1 << bits) - 1, 1 << bits)


def test_bad_cap_keywords_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match="nope"):
        Cap(nope=1)
    with pytest.raises(InvalidArgument, match="nd"):
        Cap(nd=8)  # 3 bits
    with pytest.raises(InvalidArgument, match="mamv"):
        Cap(mamv=-1)
    with pytest.raises(InvalidArgument):
        Cap(1 << 64)


def test_context_entry_decoder() -> None:
    # §1.5: lo P bit 0, FPD bit 1, TT 3:2, SLPTPTR 63:12; hi AW 2:0, DID 23:8.
    lo = 0x1234_5000 | 1 << 2 | 0b11
    hi = 2 | 0xABCD << 8
    c = ContextEntry(lo, hi)
    assert (c.present, c.fpd, c.tt, c.slptptr, c.aw, c.levels, c.did) == (
        True,
        True,
        1,
        0x1234_5000,
        2,
        4,
        0xABCD,
    )
    assert (c.lo, c.hi) == (lo, hi)
    assert not c.reserved(48)
    assert ContextEntry(lo | 0x10, hi).reserved(48)  # lo bits 11:4 reserved
    assert ContextEntry(lo, hi | 0x80).reserved(48)  # hi bit 7 reserved
    assert ContextEntry(lo | 1 << 50, hi).reserved(48)  # above the host width
    assert not ContextEntry().present
    assert ContextEntry(lo, hi) == ContextEntry(lo, hi)


def test_root_entry_decoder() -> None:
    r = RootEntry(0x7000 | 1, 0)
    assert r.present and r.ctp == 0x7000 and not r.reserved(48)
    assert RootEntry(0x7000 | 1 | 2, 0).reserved(48)
    assert RootEntry(0x7001, 1).reserved(48)
    assert not RootEntry(0x7000).present


def test_decoders_read_what_root_table_writes() -> None:
    mem = PhysMem([(0, 1 << 24)])
    rt = vtdwalk.RootTable(mem)
    rt.alloc()
    rt.set_context(3, 8, 0x5000, 2, 42, tt=2, fpd=True)
    c = ContextEntry(*rt.raw_context(3, 8))
    assert (c.present, c.slptptr, c.aw, c.did, c.tt, c.fpd) == (True, 0x5000, 2, 42, 2, True)
    r = RootEntry(*rt.raw_root(3))
    assert r.present and r.ctp == rt.context_table(3)


def test_fault_names_from_the_spec_table() -> None:
    # §1.13 "Every fault reason".
    expected = {
        0x01: "ROOT_ENTRY_P",
        0x02: "CONTEXT_ENTRY_P",
        0x03: "CONTEXT_ENTRY_INV",
        0x04: "ADDR_BEYOND_MGAW",
        0x05: "WRITE",
        0x06: "READ",
        0x07: "PAGING_ENTRY_INV",
        0x08: "ROOT_TABLE_INV",
        0x09: "CONTEXT_TABLE_INV",
        0x0A: "ROOT_ENTRY_RSVD",
        0x0B: "CONTEXT_ENTRY_RSVD",
        0x0C: "PAGING_ENTRY_RSVD",
        0x0D: "CONTEXT_ENTRY_TT",
        0x0E: "INTERRUPT_ADDR",
        0x20: "IR_REQ_RSVD",
        0x21: "IR_INDEX_OVER",
        0x22: "IR_ENTRY_P",
        0x23: "IR_ROOT_INVAL",
        0x24: "IR_IRTE_RSVD",
        0x25: "IR_REQ_COMPAT",
        0x26: "IR_SID_ERR",
        0x47: "SM_PRE_ABS",
        0x50: "PASID_DIR_ACCESS_ERR",
        0x51: "PASID_DIR_ENTRY_P",
        0x58: "PASID_TABLE_ACCESS_ERR",
        0x59: "PASID_ENTRY_P",
        0x5B: "PASID_TABLE_ENTRY_INV",
        0x70: "FS_PAGING_ENTRY_INV",
        0x71: "FS_PAGING_ENTRY_P",
        0x72: "FS_PAGING_ENTRY_RSVD",
        0x73: "PASID_ENTRY_FSPTPTR_INV",
        0x80: "FS_NON_CANONICAL",
        0x81: "FS_PAGING_ENTRY_US",
        0x85: "SM_WRITE",
        0x87: "SM_INTERRUPT_ADDR",
        0x91: "FS_BIT_UPDATE_FAILED",
    }
    assert fault_names() == expected
    assert list(fault_names()) == sorted(expected)
    for code, name in expected.items():
        assert fault_name(code) == name
    assert fault_name(0) is None and fault_name(0x31) is None and fault_name(1 << 40) is None


def test_width_conversions() -> None:
    # §1.5: AW 1 = 39-bit 3-level, 2 = 48-bit 4-level, 3 = 57-bit 5-level.
    for aw, levels, width in [(1, 3, 39), (2, 4, 48), (3, 5, 57)]:
        assert levels_to_aw(levels) == aw
        assert aw_to_levels(aw) == levels
        assert levels_to_width(levels) == width
    for bad in (2, 6):
        with pytest.raises(InvalidArgument, match="levels"):
            levels_to_width(bad)
        with pytest.raises(InvalidArgument, match="levels"):
            levels_to_aw(bad)
    for bad in (0, 4):
        with pytest.raises(InvalidArgument, match="aw"):
            aw_to_levels(bad)
