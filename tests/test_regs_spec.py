"""The register page of a unit in its reset state, table-driven from the architecture text.

Every row comes from vtd-hardware.md §1.2 (offsets, widths, reset values, writable, write-1-to-
clear and write-only masks), §1.3 (CAP/ECAP and where the IOTLB and fault recording registers
sit) and §1.4, read against the VT-d architecture where the issue lists a QEMU departure.
Nothing here is computed by vtdwalk: offsets and masks are literals of the text.

Writes here never set a trigger bit (GCMD, CCMD.ICC, IOTLB.IVT): those registers' side
effects are tested in test_guest_driver.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from vtdwalk import Cap, Ecap, InvalidArgument, PhysMem, Regs, Remapper

MIB = 1 << 20
ONES64 = (1 << 64) - 1
ONES32 = (1 << 32) - 1

#: QEMU's aw48 CAP (§1.3): ND 6, SAGAW 39+48, MGAW 47, FRO 0x22, SLLPS 2M+1G, PSI, MAMV 18,
#: DWD, DRD, ESRTPS; NFR 0 there.
QEMU_CAP = 0x80D2008C222F0606
#: The model's default CAP: QEMU's with NFR = 7 (8 fault recording registers, decisions.md).
DEFAULT_CAP = QEMU_CAP | (7 << 40)
#: The model's default ECAP: QEMU's TCG default (QI, IR, PT, IRO 0xF, MHMV 15) with DT.
DEFAULT_ECAP = 0x0000000000F00F4E
FRO = 0x220  # CAP.FRO (0x22) * 16
IRO = 0xF0  # ECAP.IRO (0xF) * 16


@dataclass(frozen=True)
class Reg:
    name: str
    offset: int
    size: int  # bytes
    reset: int
    rw: int = 0  # bits software writes and reads back
    w1c: int = 0  # bits cleared by writing 1
    trigger: int = 0  # bits that start an operation: never written here
    # Write-only bits are stored but read as 0: they are simply absent from rw here.


def registers(cap: int = DEFAULT_CAP, ecap: int = DEFAULT_ECAP, nfr: int = 8) -> list[Reg]:
    """The register page of a unit with the default CAP/ECAP (no AFL, no PLMR/PHMR, no EIM,
    no PRS, no MTS), from §1.2."""
    regs = [
        Reg("VER", 0x00, 4, 0x10),
        Reg("CAP", 0x08, 8, cap),
        Reg("ECAP", 0x10, 8, ecap),
        Reg("GSTS", 0x1C, 4, 0),
        # RTA 63:12, TTM 11:10 (SMT bit 10); 9:0 reserved.
        Reg("RTADDR", 0x20, 8, 0, rw=0xFFFF_FFFF_FFFF_FC00),
        # ICC 63 (trigger: never set here), CIRG 62:61 RW, CAIG 60:59 RO, FM 33:32 and SID 31:16
        # write-only, DID 15:0 RW.
        Reg("CCMD", 0x28, 8, 0, rw=0x6000_0000_0000_FFFF, trigger=1 << 63),
        # PFO bit 0 and IQE bit 4 W1C (and the other error bits, clear at reset); PPF and FRI RO.
        Reg("FSTS", 0x34, 4, 0, w1c=0x11),
        # IM bit 31 RW (set at reset), IP bit 30 RO.
        Reg("FECTL", 0x38, 4, 0x8000_0000, rw=0x8000_0000),
        Reg("FEDATA", 0x3C, 4, 0, rw=0x0000_FFFF),
        Reg("FEADDR", 0x40, 4, 0, rw=0xFFFF_FFFC),
        Reg("FEUADDR", 0x44, 4, 0),  # RsvdZ without ECAP.EIM
        Reg("AFLOG", 0x58, 8, 0),  # no CAP.AFL: reserved
        Reg("PMEN", 0x64, 4, 0),  # no CAP.PLMR/PHMR: RO
        Reg("PLMBASE", 0x68, 4, 0),
        Reg("PLMLIMIT", 0x6C, 4, 0),
        Reg("PHMBASE", 0x70, 8, 0),
        Reg("PHMLIMIT", 0x78, 8, 0),
        Reg("IQH", 0x80, 8, 0),  # RO
        Reg("IQT", 0x88, 8, 0, rw=0x7FFF0),
        Reg("IQA", 0x90, 8, 0, rw=0xFFFF_FFFF_FFFF_F807),
        Reg("ICS", 0x9C, 4, 0, w1c=0x1),
        Reg("IECTL", 0xA0, 4, 0x8000_0000, rw=0x8000_0000),
        Reg("IEDATA", 0xA4, 4, 0, rw=0xFFFF_FFFF),
        Reg("IEADDR", 0xA8, 4, 0, rw=0xFFFF_FFFC),
        Reg("IEUADDR", 0xAC, 4, 0),  # RsvdZ without ECAP.EIM
        Reg("IRTA", 0xB8, 8, 0, rw=0xFFFF_FFFF_FFFF_F80F),
        # ADDR 63:12, IH 6, AM 5:0: all write-only.
        Reg("IVA", IRO, 8, 0),
        # IVT 63 (trigger: never set here), IIRG 61:60 RW, IAIG 58:57 RO, DR 49, DW 48,
        # DID 47:32 RW.
        Reg("IOTLB", IRO + 8, 8, 0, rw=0x3003_FFFF_0000_0000, trigger=1 << 63),
    ]
    for i in range(nfr):
        regs.append(Reg(f"FRCD{i}.lo", FRO + 16 * i, 8, 0))  # FI: RO
        regs.append(Reg(f"FRCD{i}.hi", FRO + 16 * i + 8, 8, 0, w1c=1 << 63))  # F: W1C
    return regs


#: Offsets inside the page that hold no register of the default unit (no PRS: the page request
#: registers; no MTS: the MTRRs; past the last fault recording register): read 0, writes ignored.
RESERVED_8 = [0xC0, 0xC8, 0xD0, 0x100, 0x108, 0x120, 0x200, FRO + 8 * 16, 0x400, 0xFF8]
RESERVED_4 = [0x48, 0x4C, 0x50, 0x54, 0x60, 0x98, 0xB0, 0xDC, 0xE0, 0xE4, 0xE8, 0xEC, 0xFFC]

REGS = registers()


def unit(**kw: int) -> Remapper:
    return Remapper(PhysMem([(0, 16 * MIB)]), **kw)  # type: ignore[arg-type]


def read(r: Remapper, reg: Reg) -> int:
    return r.mmio_read(reg.offset, reg.size)


@pytest.mark.parametrize("reg", REGS, ids=lambda g: g.name)
def test_reset_value(reg: Reg) -> None:
    r = unit()
    assert read(r, reg) == reg.reset


@pytest.mark.parametrize("reg", REGS, ids=lambda g: g.name)
def test_writable_bits_read_back_and_the_rest_keep_their_value(reg: Reg) -> None:
    r = unit()
    ones = (ONES64 if reg.size == 8 else ONES32) & ~reg.trigger
    r.mmio_write(reg.offset, reg.size, ones)
    # RO bits keep the reset value, RW bits are set, W1C bits (clear at reset) stay clear,
    # write-only bits read 0.
    assert read(r, reg) == (reg.reset & ~reg.rw & ~reg.w1c) | reg.rw
    r.mmio_write(reg.offset, reg.size, 0)
    assert read(r, reg) == reg.reset & ~reg.rw & ~reg.w1c


@pytest.mark.parametrize("reg", [g for g in REGS if g.size == 8], ids=lambda g: g.name)
def test_64_bit_registers_in_32_bit_halves(reg: Reg) -> None:
    r = unit()
    assert r.mmio_read(reg.offset, 4) == reg.reset & ONES32
    assert r.mmio_read(reg.offset + 4, 4) == reg.reset >> 32
    # Writing the two halves, low then high, is writing the register.
    ones = ONES64 & ~reg.trigger
    r.mmio_write(reg.offset, 4, ones & ONES32)
    r.mmio_write(reg.offset + 4, 4, ones >> 32)
    assert read(r, reg) == (reg.reset & ~reg.rw & ~reg.w1c) | reg.rw
    # A half write leaves the other half alone.
    r.mmio_write(reg.offset, 4, 0)
    assert read(r, reg) == ((reg.reset & ~reg.rw & ~reg.w1c) | reg.rw) & ~ONES32 | (
        reg.reset & ~reg.rw & ~reg.w1c & ONES32
    )


def test_gcmd_reads_zero() -> None:
    # Every GCMD bit is write-only: reads return 0 whatever GSTS says.
    r = unit()
    assert r.mmio_read(0x18, 4) == 0


@pytest.mark.parametrize("offset", RESERVED_8)
def test_reserved_8_byte_offsets(offset: int) -> None:
    r = unit()
    assert r.mmio_read(offset, 8) == 0
    r.mmio_write(offset, 8, ONES64)
    assert r.mmio_read(offset, 8) == 0


@pytest.mark.parametrize("offset", RESERVED_4)
def test_reserved_4_byte_offsets(offset: int) -> None:
    r = unit()
    assert r.mmio_read(offset, 4) == 0
    r.mmio_write(offset, 4, ONES32)
    assert r.mmio_read(offset, 4) == 0


def snapshot(r: Remapper) -> list[int]:
    return [r.mmio_read(off, 4) for off in range(0, 0x1000, 4)]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 6, 7, 16])
def test_sizes_other_than_4_and_8_are_invalid(size: int) -> None:
    r = unit()
    with pytest.raises(InvalidArgument, match="size"):
        r.mmio_read(0x0, size)
    before = snapshot(r)
    with pytest.raises(InvalidArgument, match="size"):
        r.mmio_write(0x20, size, 0xF000)
    assert snapshot(r) == before


@pytest.mark.parametrize(
    ("offset", "size"),
    [(0x1, 4), (0x2, 4), (0x23, 4), (0x24, 8), (0x1C, 8), (0x3E, 4), (0x34, 8), (0xFFC, 8)],
)
def test_misaligned_accesses_are_invalid(offset: int, size: int) -> None:
    r = unit()
    with pytest.raises(InvalidArgument, match="offset"):
        r.mmio_read(offset, size)
    before = snapshot(r)
    with pytest.raises(InvalidArgument, match="offset"):
        r.mmio_write(offset, size, 0)
    assert snapshot(r) == before


@pytest.mark.parametrize(
    ("offset", "size"), [(0x1000, 4), (0x1000, 8), (0x2000, 4), (0xFFFF_FFF8, 8)]
)
def test_offsets_outside_the_page_are_invalid(offset: int, size: int) -> None:
    r = unit()
    with pytest.raises(InvalidArgument, match="offset"):
        r.mmio_read(offset, size)
    with pytest.raises(InvalidArgument, match="offset"):
        r.mmio_write(offset, size, 0)


@pytest.mark.parametrize(
    ("offset", "size", "value"),
    [(-4, 4, 0), (1 << 64, 8, 0), (0x20, -4, 0), (0x20, 8, -1), (0x20, 8, "0"), (0x20, 8, 1.0)],
)
def test_arguments_that_are_no_unsigned_integer_are_invalid(
    offset: int, size: int, value: int
) -> None:
    r = unit()
    before = snapshot(r)
    with pytest.raises(InvalidArgument):
        r.mmio_write(offset, size, value)
    assert snapshot(r) == before


@pytest.mark.parametrize("value", [1 << 32, 0xF_0000_0000, (1 << 64) - 1])
def test_values_wider_than_a_4_byte_access_are_invalid(value: int) -> None:
    r = unit()
    before = snapshot(r)
    with pytest.raises(InvalidArgument, match="value"):
        r.mmio_write(0x20, 4, value)
    assert snapshot(r) == before


def test_fault_records_follow_cap_nfr() -> None:
    # fault_records=None takes the count from CAP.NFR (bits 47:40, count - 1).
    cap = QEMU_CAP | (2 << 40)
    r = unit(cap=cap)
    assert r.mmio_read(0x08, 8) == cap
    for reg in registers(cap, nfr=3):
        assert read(r, reg) == reg.reset, reg.name
    # The fourth record's place is reserved.
    r.mmio_write(FRO + 3 * 16 + 8, 8, ONES64)
    assert r.mmio_read(FRO + 3 * 16 + 8, 8) == 0


@pytest.mark.parametrize("count", [1, 3, 8, 16])
def test_a_fault_record_count_sets_cap_nfr(count: int) -> None:
    r = unit(cap=QEMU_CAP, fault_records=count)
    cap = r.mmio_read(0x08, 8)
    assert (cap >> 40) & 0xFF == count - 1
    assert cap & ~(0xFF << 40) == QEMU_CAP & ~(0xFF << 40)


def test_the_default_unit() -> None:
    r = unit()
    assert r.mmio_read(0x08, 8) == DEFAULT_CAP
    assert r.mmio_read(0x10, 8) == DEFAULT_ECAP


def test_iotlb_registers_follow_ecap_iro_and_records_cap_fro() -> None:
    # IRO = 0x20 (registers at 0x200) and FRO = 0x30 (records at 0x300), NFR = 1 (2 records).
    cap = QEMU_CAP & ~(0x3FF << 24) | (0x30 << 24) | (1 << 40)
    ecap = DEFAULT_ECAP & ~(0x3FF << 8) | (0x20 << 8)
    r = unit(cap=cap, ecap=ecap)
    # IOTLB register: RW bits read back at 0x208; nothing at the default 0xF8.
    r.mmio_write(0x208, 8, 0x3003_FFFF_0000_0000)
    assert r.mmio_read(0x208, 8) == 0x3003_FFFF_0000_0000
    r.mmio_write(0xF8, 8, 0x3003_FFFF_0000_0000)
    assert r.mmio_read(0xF8, 8) == 0
    # Fault records at 0x300 and 0x310 (empty: 0), nothing stored at 0x220.
    assert r.mmio_read(0x300, 8) == 0 and r.mmio_read(0x318, 8) == 0
    r.mmio_write(0x220, 8, ONES64)
    assert r.mmio_read(0x220, 8) == 0


# ---- the vocabulary the driver side uses (vtdwalk.Regs), against the same text


def test_regs_offsets_and_bits() -> None:
    offsets = {
        "VER": 0x00,
        "CAP": 0x08,
        "ECAP": 0x10,
        "GCMD": 0x18,
        "GSTS": 0x1C,
        "RTADDR": 0x20,
        "CCMD": 0x28,
        "FSTS": 0x34,
        "FECTL": 0x38,
        "FEDATA": 0x3C,
        "FEADDR": 0x40,
        "FEUADDR": 0x44,
    }
    assert {k: getattr(Regs, k) for k in offsets} == offsets
    bits = {"TE": 31, "SRTP": 30, "WBF": 27, "QIE": 26, "IRE": 25, "SIRTP": 24}
    assert {k: getattr(Regs, k) for k in bits} == {k: 1 << b for k, b in bits.items()}
    assert (Regs.GLOBAL, Regs.DOMAIN, Regs.DEVICE, Regs.PAGE) == (1, 2, 3, 3)
    # Linux keeps GSTS & 0x96FFFFFF: the one-shot SRTP, SFL, WBF and SIRTP dropped.
    assert Regs.gcmd_from_gsts(0xFFFF_FFFF) == 0x96FF_FFFF
    assert Regs.gcmd_from_gsts(0xC000_0000) == 0x8000_0000


def test_regs_commands() -> None:
    assert Regs.ccmd(1) == 1 << 63 | 1 << 61
    assert (
        Regs.ccmd(3, did=0x1234, sid=0xABCD, fm=2)
        == 1 << 63 | 3 << 61 | 2 << 32 | 0xABCD << 16 | 0x1234
    )
    assert Regs.ccmd_done(3 << 61) and not Regs.ccmd_done(1 << 63)
    assert Regs.iotlb(2, did=7) == 1 << 63 | 2 << 60 | 7 << 32
    # QEMU's CAP has DRD (55) and DWD (54): Xen then asks for both drains (DR 49, DW 48).
    assert (
        Regs.iotlb(3, did=7, cap=Cap(QEMU_CAP)) == 1 << 63 | 3 << 60 | 1 << 49 | 1 << 48 | 7 << 32
    )
    assert Regs.iotlb_done(1 << 57) and not Regs.iotlb_done(1 << 63)
    assert Regs.iva(0x12_3000, am=3, ih=True) == 0x12_3000 | 1 << 6 | 3
    assert (
        Regs.iva_offset(Ecap(DEFAULT_ECAP)) == IRO
        and Regs.iotlb_offset(Ecap(DEFAULT_ECAP)) == IRO + 8
    )
    assert Regs.frcd_offset(Cap(DEFAULT_CAP)) == FRO and Regs.fault_records(Cap(DEFAULT_CAP)) == 8


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Regs.ccmd(0), "granularity"),
        (lambda: Regs.ccmd(4), "granularity"),
        (lambda: Regs.ccmd(1, did=1 << 16), "did"),
        (lambda: Regs.ccmd(3, sid=1 << 16), "sid"),
        (lambda: Regs.ccmd(3, fm=4), "fm"),
        (lambda: Regs.iotlb(1, did=1 << 16), "did"),
        (lambda: Regs.iva(0x1001), "addr"),
        (lambda: Regs.iva(0x1000, am=64), "am"),
    ],
)
def test_regs_refuse_fields_that_do_not_fit(call: Callable[[], int], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        call()
