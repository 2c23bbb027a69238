"""Fuzz targets: one function per target taking the fuzzer's bytes, raising AssertionError (or
any unexpected exception) on a finding. Run them with ``python tests/fuzz/run.py`` (atheris,
coverage-guided) or replay a file with ``python tests/fuzz/run.py TARGET --replay FILE``.

* ``dmar``: strict and lenient parse, validate, serialise, then Platform.from_dmar; only
  DmarError / VtdError subclasses may come out, and a strict parse re-encodes to its input.
* ``walk``: the input laid out as four pages of memory from address 0 (root table at 0) plus
  a 16-byte header choosing CAP/ECAP and a request; Remapper.translate (uncached, cached and
  batched) must equal the reference walker of tests/reference/hw_walk.py.
* ``pagetable``: a byte-coded list of map/unmap/map_pages/unmap_pages operations on a small
  arena against a page-granular model; a call that runs out of memory changes nothing.
* ``regs``: a byte-coded sequence of register reads and writes (any offset, size and value)
  interleaved with translations and DMA, on a unit whose memory is the input's tail; the
  register page keeps the architecture's rules (vtd-hardware.md §1.2, §1.4) throughout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the reference models

from reference import hw_walk  # noqa: E402
from reference.tables import CAP39, CAP48, CAP57  # noqa: E402
from vtdwalk import (  # noqa: E402
    DmaFault,
    DmarError,
    InvalidArgument,
    MemoryAccessError,
    OutOfMemory,
    PageTable,
    PhysMem,
    Platform,
    Remapper,
    VtdError,
    dmar,
)

# --------------------------------------------------------------------------------------------
# DMAR


def fuzz_dmar(data: bytes) -> None:
    try:
        t = dmar.parse(data)
    except DmarError as e:
        strict_ok = False
        assert e.offset is None or 0 <= e.offset <= len(data)
    else:
        strict_ok = True
        assert t.to_bytes() == data, "strict parse does not re-encode to its input"
    try:
        lenient = dmar.parse(data, strict=False)
    except DmarError:
        assert len(data) < dmar.HEADER_LEN
        return
    problems = lenient.validate()
    if not strict_ok:
        assert any(p.severity in ("error", "fatal") for p in problems)
    json.dumps(lenient.to_dict())
    dmar.format_table(lenient, problems)
    dmar.parse(lenient.to_bytes(), strict=False)
    if len(data) > 1 << 16 or data[-1] & 3:
        return  # a platform for one input in four: building one costs most of a run
    try:
        p = Platform.from_dmar(data)
    except VtdError:
        return
    p.findings()
    p.free()


# --------------------------------------------------------------------------------------------
# Hardware walk over arbitrary memory

CAPS = [CAP39, CAP48, CAP57, CAP48 & ~(1 << 35), CAP57 & ~(3 << 34), CAP48 & ~(0x4 << 8)]
ECAPS = [0xF00F4E, 0xF00F4A, 0xF00FCE, 0xF00F0A]
WALK_PAGES = 6
HEADER = 16


def fuzz_walk(data: bytes) -> None:
    if len(data) < HEADER:
        return
    head, image = data[:HEADER], data[HEADER : HEADER + WALK_PAGES * 4096]
    cap, ecap = CAPS[head[0] % len(CAPS)], ECAPS[head[1] % len(ECAPS)]
    sid = int.from_bytes(head[2:4], "little")
    iova = int.from_bytes(head[4:12], "little") >> (head[12] % 64)
    write, rt = bool(head[13] & 1), (None if head[13] & 0x80 else 0)
    iotlb = (0, 1, 8, 64)[head[14] % 4]
    mem = PhysMem([(0, WALK_PAGES * 4096)])
    mem.write(0, image)

    def read64(a: int) -> int | None:
        try:
            return mem.read_u64(a)
        except MemoryAccessError:
            return None

    unit = hw_walk.Unit(cap, ecap)
    # One source-id: one context entry, so one DID and one table (two contexts sharing a DID
    # over different tables may rightly be served each other's IOTLB entries).
    queries = [(sid, iova, write), (sid, iova ^ 0x1000, not write), (sid, iova ^ 0x20_0000, write)]
    r = Remapper(mem, rt, cap=cap, ecap=ecap, iotlb_entries=iotlb)
    want = []
    for sid_, iova_, write_ in queries:
        ref = hw_walk.translate(unit, read64, rt, sid_, iova_, write_)
        want.append((ref.hpa, ref.fault))
    for _ in range(2):
        got = []
        for sid_, iova_, write_ in queries:
            try:
                got.append((r.translate(sid_, iova_, write_).hpa, 0))
            except DmaFault as e:
                got.append((0, int(e.reason)))
        assert got == want, (got, want)
    b = Remapper(mem, rt, cap=cap, ecap=ecap, iotlb_entries=iotlb)
    h, f = b.translate_batch(
        np.array([q[0] for q in queries], np.uint16),
        np.array([q[1] for q in queries], np.uint64),
        np.array([q[2] for q in queries], np.bool_),
    )
    assert [(int(x), int(y)) for x, y in zip(h, f, strict=True)] == want


def walk_seeds() -> list[bytes]:
    """Well-formed memory images (VT-d spec layouts) that translate: a 4 KiB, a 2 MiB and a
    1 GiB leaf, for device 03:02.0 (root entry bus 3, context entry devfn 0x10)."""
    out = []
    iova = 0x4020_1123
    for cap_i, aw, leaf in ((0, 1, 1), (0, 1, 2), (1, 2, 3)):
        img = bytearray(WALK_PAGES * 4096)

        def put(addr: int, value: int, img: bytearray = img) -> None:
            img[addr : addr + 8] = value.to_bytes(8, "little")

        put(16 * 3, 0x1000 | 1)  # root entry -> context table at page 1
        put(0x1000 + 16 * 0x10, 0x2000 | 1)  # context entry -> top table at page 2
        put(0x1000 + 16 * 0x10 + 8, aw | (5 << 8))
        table, nxt = 0x2000, 0x3000
        for level in range(aw + 2, leaf, -1):
            put(table + 8 * ((iova >> (12 + 9 * (level - 1))) & 0x1FF), nxt | 3)
            table, nxt = nxt, nxt + 0x1000
        size_bits = 12 + 9 * (leaf - 1)
        ps = 1 << 7 if leaf > 1 else 0
        put(
            table + 8 * ((iova >> size_bits) & 0x1FF),
            (0x7_4000_0000 >> size_bits << size_bits) | ps | 3,
        )
        head = bytes([cap_i, 0]) + (0x0310).to_bytes(2, "little") + iova.to_bytes(8, "little")
        out.append(head + bytes([0, 0, 3, 0]) + bytes(img))
    return out


# --------------------------------------------------------------------------------------------
# Page-table operations

K4, M2 = 1 << 12, 1 << 21
WINDOW_PAGES = 1 << 12  # 16 MiB of IOVA space: operations overlap


def _runs(model: dict[int, tuple[int, bool, bool]]) -> list[tuple[int, int, int, bool, bool]]:
    out: list[tuple[int, int, int, bool, bool]] = []
    for i, (m, r, w) in sorted(model.items()):
        if out:
            pi, pm, ps, pr, pw = out[-1]
            if pi + ps == i and pm + ps == m and (pr, pw) == (r, w):
                out[-1] = (pi, pm, ps + K4, pr, pw)
                continue
        out.append((i, m, K4, r, w))
    return out


def fuzz_pagetable(data: bytes) -> None:
    if len(data) < 2:
        return
    levels = 3 + data[0] % 3
    superpages = ("none", "2M", "1G")[data[1] % 3]
    pages = (4, 8, 24, 512)[(data[1] >> 2) % 4]
    mem = PhysMem([(1 << 30, pages * K4)])
    pt = PageTable(mem, levels=levels, superpages=superpages)
    model: dict[int, tuple[int, bool, bool]] = {}
    for off in range(2, len(data) - 7, 8):
        op = data[off : off + 8]
        kind = op[0] % 4
        page = int.from_bytes(op[1:3], "little") % WINDOW_PAGES
        n = 1 + op[3] % 32
        if op[0] & 0x80:  # a 2 MiB-aligned run of 512 pages
            page, n = page & ~511, 512
        maddr = (int.from_bytes(op[4:7], "little") << 12) & ~((n * K4 - 1) if n == 512 else 0)
        read, write = ((True, True), (True, False), (False, True))[op[7] % 3]
        iovas = [(page + i) * K4 for i in range(n) if page + i < WINDOW_PAGES]
        if not iovas:
            continue
        before = (pt.mappings(), pt.table_pages(), mem.stats())
        hit = any(i in model for i in iovas)
        try:
            if kind == 0:
                was = pt.map(iovas[0], maddr, len(iovas) * K4, read=read, write=write)
                new = {i: (maddr + k * K4, read, write) for k, i in enumerate(iovas)}
            elif kind == 1:
                was = pt.unmap(iovas[0], len(iovas) * K4)
                new = {}
            elif kind == 2:
                sel = iovas[:: 1 + op[7] % 3]
                hit = any(i in model for i in sel)
                targets = [(maddr + k * K4) % (1 << 40) for k in range(len(sel))]
                was = pt.map_pages(
                    np.array(sel, np.uint64), np.array(targets, np.uint64), read, write
                )
                iovas = sel
                new = {i: (t, read, write) for i, t in zip(sel, targets, strict=True)}
            else:
                sel = iovas[:: 1 + op[7] % 3]
                hit = any(i in model for i in sel)
                was = pt.unmap_pages(np.array(sel, np.uint64))
                iovas = sel
                new = {}
        except OutOfMemory:
            assert (pt.mappings(), pt.table_pages(), mem.stats()) == before, "OOM changed state"
            continue
        assert was == hit, (kind, was, hit)
        for i in iovas:
            model.pop(i, None)
        model.update(new)
        assert pt.mappings() == _runs(model)
    pt.free()
    assert all(s["allocated_pages"] == 0 for s in mem.stats())


# --------------------------------------------------------------------------------------------
# The register file

# Facts of vtd-hardware.md §1.2 (offsets, widths, masks) for the two units fuzzed: the model's
# default CAP (QEMU's aw48 with NFR 7: FRO 0x22, 8 fault recording registers, no AFL, no
# PLMR/PHMR, RWBF clear) with ECAP QI+IR+PT+DT (IRO 0xF), or with neither QI nor IR.
REG_CAP = 0x80D2_078C_222F_0606
REG_ECAPS = [0x0000_0000_00F0_0F4E, 0x0000_0000_00F0_0F44]
ECAP_QI, ECAP_IR = 1 << 1, 1 << 3
FRO, NFR, IRO = 0x220, 8, 0xF0
PAGE_BYTES = 0x1000
M32, M64 = (1 << 32) - 1, (1 << 64) - 1
#: Registers that never change whatever software writes: (offset, bytes, value).
CONSTANT = [
    (0x00, 4, 0x10),  # VER
    (0x08, 8, REG_CAP),  # CAP
    (0x44, 4, 0),  # FEUADDR: RsvdZ without ECAP.EIM
    (0x58, 8, 0),  # AFLOG: no CAP.AFL
    (0x64, 4, 0),  # PMEN and the protected memory ranges: no CAP.PLMR/PHMR
    (0x68, 4, 0),
    (0x6C, 4, 0),
    (0x70, 8, 0),
    (0x78, 8, 0),
    (0xAC, 4, 0),  # IEUADDR: RsvdZ without ECAP.EIM
    (0xC0, 8, 0),  # PQH, PQT, PQA, PRS, PECTL..PEUADDR: no ECAP.PRS
    (0xC8, 8, 0),
    (0xD0, 8, 0),
    (0xDC, 4, 0),
    (0xE0, 8, 0),
    (0xE8, 8, 0),
    (0x100, 8, 0),  # MTRRCAP / MTRRDEF: not implemented
    (0x108, 8, 0),
    (FRO + 16 * NFR, 8, 0),  # past the last fault recording register
    (0xFF8, 8, 0),
]
#: Registers of QI and IR: read-only zero on a unit without them.
QI_IR_REGS = [(0x80, 8), (0x88, 8), (0x90, 8), (0x9C, 4), (0xA0, 4), (0xA4, 4), (0xA8, 4)]
IR_REGS = [(0xB8, 8)]
#: Write-1-to-clear bits: (offset, bytes, mask).
W1C = [(0x34, 4, 0x11), (0x9C, 4, 0x1)] + [(FRO + 16 * i + 8, 8, 1 << 63) for i in range(NFR)]
#: Plain read/write registers: what is written reads back under the mask (§1.2).
PLAIN_RW = [
    (0x3C, 4, 0x0000_FFFF),  # FEDATA
    (0x40, 4, 0xFFFF_FFFC),  # FEADDR
    (0xA4, 4, 0xFFFF_FFFF),  # IEDATA (with QI)
    (0xA8, 4, 0xFFFF_FFFC),  # IEADDR (with QI)
    (0x20, 8, 0xFFFF_FFFF_FFFF_FC00),  # RTADDR: latched only by SRTP
    (0xB8, 8, 0xFFFF_FFFF_FFFF_F80F),  # IRTA (with IR): latched only by SIRTP
]
#: GSTS bits a unit may show (§1.4): TES RTPS FLS AFLS WBFS QIES IRES IRTPS CFIS.
GSTS_BITS = 0xFF80_0000
GSTS_QI, GSTS_IR = 1 << 26, (1 << 25) | (1 << 24)
GSTS_AFL, GSTS_WBF = 1 << 28, 1 << 27  # need CAP.AFL / CAP.RWBF, both clear here
SIZES = (4, 8, 4, 8, 4, 8, 0, 1, 2, 3, 16)


#: Registers whose write starts hardware work: GCMD, CCMD (either half), IOTLB, IQT.
TRIGGERS = [(0x18, 4), (0x28, 8), (IRO + 8, 8), (0x88, 8)]


def _overlap(offset: int, size: int, o: int, n: int) -> bool:
    return offset < o + n and o < offset + size


def _part(offset: int, size: int, value: int, o: int, n: int) -> int:
    """The bits of an access (``value`` at ``offset``) that land in the register at ``o``."""
    v = value >> (8 * (o - offset)) if offset <= o else value << (8 * (offset - o))
    return v & ((1 << (8 * n)) - 1)


def _bad_shape(offset: int, size: int, page: int) -> bool:
    """An access the register interface refuses: 4 or 8 bytes, aligned, inside the page."""
    return size not in (4, 8) or offset % size != 0 or offset + size > page


def fuzz_regs(data: bytes) -> None:
    """Each op is 12 bytes: kind, offset (2), size selector, value (8). The memory of the unit
    is the last 4 pages' worth of input (a root table at 0 may be pointed at by RTADDR)."""
    if len(data) < 2:
        return
    ecap = REG_ECAPS[data[0] % 2]
    qi, ir = bool(ecap & ECAP_QI), bool(ecap & ECAP_IR)
    nops = min(data[1], 64)
    ops, image = data[2 : 2 + 12 * nops], data[2 + 12 * nops :][: 4 * 4096]
    mem = PhysMem([(0, 4 * 4096)])
    mem.write(0, image)
    events: list[object] = []
    r = Remapper(mem, cap=REG_CAP, ecap=ecap, iotlb_entries=8, interrupt=events.append)
    page = r.mmio_size
    assert page == PAGE_BYTES

    def rd(off: int, size: int) -> int:
        return r.mmio_read(off, size)

    constant = [*CONSTANT, (0x10, 8, ecap)]
    if not qi:
        constant += [(o, n, 0) for o, n in QI_IR_REGS]
    if not ir:
        constant += [(o, n, 0) for o, n in IR_REGS]
    allowed = GSTS_BITS & ~GSTS_AFL & ~GSTS_WBF
    if not qi:
        allowed &= ~GSTS_QI
    if not ir:
        allowed &= ~GSTS_IR
    ppf = False
    for off in range(0, len(ops) - 11, 12):
        kind, offset = ops[off] % 8, int.from_bytes(ops[off + 1 : off + 3], "little")
        size, value = (
            SIZES[ops[off + 3] % len(SIZES)],
            int.from_bytes(ops[off + 4 : off + 12], "little"),
        )
        if ops[off] & 0x80 == 0:
            offset = offset % (page + 0x100)  # mostly inside the page
        if ops[off] & 0x40 == 0:
            offset &= ~(max(size, 4) - 1)  # mostly aligned
        if size == 4:
            value &= M32
        gsts = rd(0x1C, 4)
        if kind <= 3:  # a write
            w1c_before = [rd(o, n) for o, n, _ in W1C]
            try:
                r.mmio_write(offset, size, value)
            except InvalidArgument:
                assert _bad_shape(offset, size, page), (offset, size)
                continue
            assert not _bad_shape(offset, size, page), (offset, size)
            starts_work = any(_overlap(offset, size, o, n) for o, n in TRIGGERS)
            for (o, n, mask), old in zip(W1C, w1c_before, strict=True):
                now = rd(o, n) & mask
                if _overlap(offset, size, o, n):
                    # A 1 written to a W1C bit clears it.
                    assert now & _part(offset, size, value, o, n) == 0, (hex(o), hex(value))
                if not starts_work:
                    # No write sets a W1C bit; only the hardware does (a fault, a queue error),
                    # and only a write that starts work (GCMD, CCMD, IOTLB, IQT) can make it.
                    assert now & ~old == 0, (hex(o), hex(old), hex(now))
            for o, n, mask in PLAIN_RW:
                present = (qi or o not in (0xA4, 0xA8)) and (ir or o != 0xB8)
                if (o, n) == (offset, size) and present:
                    assert rd(o, n) == value & mask, (hex(o), hex(value), hex(rd(o, n)))
            if not _overlap(offset, size, 0x18, 4):
                # GSTS reports what GCMD commanded: no other write moves it.
                assert rd(0x1C, 4) == gsts, (hex(offset), hex(gsts), hex(rd(0x1C, 4)))
        elif kind <= 5:  # a read
            try:
                got = r.mmio_read(offset, size)
            except InvalidArgument:
                assert _bad_shape(offset, size, page), (offset, size)
                continue
            assert not _bad_shape(offset, size, page), (offset, size)
            assert 0 <= got < (1 << (8 * size))
        elif kind == 6:
            try:
                t = r.translate(value & 0xFFFF, value >> 16, bool(ops[off + 3] & 1))
            except DmaFault as e:
                assert 1 <= int(e.reason) <= 0xFF
            else:
                assert t.page_size in (1 << 12, 1 << 21, 1 << 30)
        else:
            try:
                if ops[off + 3] & 1:
                    r.dma_write(value & 0xFFFF, offset << 4, bytes(ops[off + 4 : off + 12]))
                else:
                    assert len(r.dma_read(value & 0xFFFF, offset << 4, 1 + size)) == 1 + size
            except (DmaFault, MemoryAccessError):
                pass
        # After every step: the constant registers, write-only bits, GSTS.
        for o, n, v in constant:
            assert rd(o, n) == v, (hex(o), hex(rd(o, n)), hex(v))
        assert rd(0x18, 4) == 0  # GCMD is write-only
        assert rd(0x28, 8) & 0x3_FFFF_0000 == 0  # CCMD.FM and SID are write-only
        assert rd(IRO, 8) == 0  # IVA is write-only
        g = rd(0x1C, 4)
        assert g & ~allowed == 0, (hex(g), hex(allowed))
        fsts = rd(0x34, 4)
        pending = [i for i in range(NFR) if rd(FRO + 16 * i + 8, 8) >> 63]
        # PPF is set exactly when a fault recording register holds a fault (F set); when it
        # rises, FRI names the register the fault went to (§1.13 step 5).
        assert bool(fsts & 2) == bool(pending), (hex(fsts), pending)
        if pending and not ppf:
            assert (fsts >> 8) & 0xFF in pending, (hex(fsts), pending)
        ppf = bool(pending)
    r.translate_batch(np.array([0x10, 0x18], np.uint16), np.array([0, 1 << 20], np.uint64))


def regs_seeds() -> list[bytes]:
    """A driver's start-up in register writes: RTADDR, SRTP, context and IOTLB global
    invalidation, TE on, then a translation of 00:02.0 and a fault read back."""

    def op(kind: int, offset: int, size: int, value: int) -> bytes:
        sel = SIZES.index(size)
        return bytes([kind, offset & 0xFF, offset >> 8, sel]) + value.to_bytes(8, "little")

    ops = [
        op(0, 0x20, 8, 0),  # RTADDR = 0
        op(0, 0x18, 4, 1 << 30),  # SRTP
        op(0, 0x28, 8, (1 << 63) | (1 << 61)),  # CCMD global
        op(0, IRO + 8, 8, (1 << 63) | (1 << 60)),  # IOTLB global
        op(0, 0x18, 4, 1 << 31),  # TE
        op(0, 0x38, 4, 0),  # FECTL: unmask
        op(6, 0, 4, 0x10),  # translate 00:02.0 at 0: a fault (empty root table)
        op(4, FRO + 8, 8, 0),
        op(0, FRO + 8, 8, 1 << 63),  # clear F
        op(0, 0x34, 4, 0x11),  # clear PFO, IQE
    ]
    return [bytes([0, len(ops)]) + b"".join(ops), bytes([1, len(ops)]) + b"".join(ops)]


TARGETS = {
    "dmar": fuzz_dmar,
    "walk": fuzz_walk,
    "pagetable": fuzz_pagetable,
    "regs": fuzz_regs,
}
SEEDS = {"walk": walk_seeds, "regs": regs_seeds}
