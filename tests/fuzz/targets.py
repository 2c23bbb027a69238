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
* ``qi``: a byte-coded sequence of descriptor writes, IQT writes, FSTS.IQE and ICS.IWC
  clears, QIE toggles, IQA writes, page-table and context-entry changes and translations, on
  units with and without IR, DT, PDS, SMTS, PSI and with 8-bit DIDs; after every step the
  invalidation queue agrees with a reference written from VT-d §6.5.2 (vtd-hardware.md §1.12):
  IQE exactly at the first invalid descriptor, IQH there or at IQT, wait status writes and
  completions, device-TLB requests, and no translation a covering invalidation dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the reference models

from reference import hw_walk  # noqa: E402
from reference.tables import CAP39, CAP48, CAP57  # noqa: E402
from vtdwalk import (  # noqa: E402
    Descriptor,
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


# --------------------------------------------------------------------------------------------
# The invalidation queue

# Memory [0, QI_MEM): root table at 0, context table at 0x1000, two 4-level page tables (A at
# 0x2000, B at 0x6000) for the two contexts device 00:01.0 switches between, the status page
# of wait descriptors, and up to 8 pages of queue. Facts from vtd-hardware.md §1.2 (IQH 0x80,
# IQT 0x88 mask 0x7FFF0, IQA 0x90 mask 0xFFFFFFFFFFFFF807, ICS 0x9C, IECTL 0xA0, IEDATA 0xA4,
# IEADDR 0xA8; FSTS.IQE bit 4), §1.4 (GCMD.QIE bit 26) and §1.12 (descriptor layouts).
QI_MEM = 0x2_0000
QI_CTX, QI_STATUS, QI_QUEUE, QI_QUEUE_PAGES = 0x1000, 0xA000, 0x1_0000, 8
QI_TABLES = (0x2000, 0x6000)
QI_DIDS = (0x0105, 0x0206)  # distinct in their low 4 bits; bits above 8 ignored with ND 2
QI_SID, QI_PAGES = 0x0008, 8
QI_IEADDR, QI_IEDATA = 0xFEE0_1000, 0x55
QI_FEADDR, QI_FEDATA = 0xFEE0_2000, 0x41
IQH, IQT, IQA, ICS, IECTL = 0x80, 0x88, 0x90, 0x9C, 0xA0
TE, SRTP, QIE, IQE = 1 << 31, 1 << 30, 1 << 26, 1 << 4
QI_CAPS = (  # the model's default (ND 6, PSI, MAMV 18); without PSI; ND 2 with MAMV 9
    REG_CAP,
    REG_CAP & ~(1 << 39),
    (REG_CAP & ~(0x3F << 48) & ~7) | 9 << 48 | 2,
)
QI_ECAPS = (  # QI+DT+IR+PT; QI+PT; with PDS (bit 42); with SMTS (bit 43, 256-bit queues)
    0xF0_0F4E,
    0xF0_0F42,
    0xF0_0F4E | 1 << 42,
    0xF0_0F4E | 1 << 43,
)
#: Reserved bits of (lo, hi) by type (§1.12; PFSID a field, the whole hi of types 1 and 4).
QI_RESERVED = {
    1: (0xFFFC_0000_0000_F1C0, M64),
    2: (0xFFFF_FFFF_0000_F100, 0xF80),
    3: (0x000F_0000_FFE0_01F0, 0xFFE),
    4: (0xFFFF_0000_07FF_F1E0, M64),
    5: (0xFFFF_F100, 0x3),
}
FM_MASKS = (0, 0b100, 0b110, 0b111)


def _frame0(t: int, p: int) -> int:
    return 0x100_0000 * (t + 1) + 0x1000 * p


def _steer(w: list[int]) -> list[int]:
    """A wait descriptor's status address pointed at the status page (three times in four) or
    at an address with no memory, its reserved bits 1:0 kept."""
    if w[0] & 0xE0F == 5:
        w[1] = w[1] | 1 << 63 if w[1] >> 62 == 3 else QI_STATUS | (w[1] & 0xFFF)
    return w


def _iqa_value(sel: int, raw: int) -> int:
    """The queue memory at QS 0..7 (from QS 5 on the ring runs past the end of memory) with or
    without DW, a base elsewhere in memory holding no valid descriptor that writes status
    outside the status page (tables, zeros, the queue memory at an offset), or no memory."""
    qs, dw = sel & 3 | (sel >> 5 & 1) << 2, (sel >> 2 & 1) << 11
    where = sel >> 3 & 3
    if where <= 1:
        return QI_QUEUE | dw | qs
    if where == 2:
        page = raw % (QI_MEM // 4096)
        return (0xB if page == 0xA else page) << 12 | dw | qs
    return (raw & 0x7FFF_FFFF_F000) | 1 << 40 | dw | qs


class QiModel:
    """What the architecture says registers, memory and translations show after each step."""

    def __init__(self, cap: int, ecap: int) -> None:
        bits = min(4 + 2 * (cap & 7), 16)
        self.did_mask = (1 << bits) - 1
        self.psi, self.mamv = bool(cap >> 39 & 1), cap >> 48 & 0x3F
        self.dt, self.ir = bool(ecap >> 2 & 1), bool(ecap >> 3 & 1)
        self.pds, self.smts = bool(ecap >> 42 & 1), bool(ecap >> 43 & 1)
        self.iqa = self.iqt = self.head = self.base = self.entries = 0
        self.qie = self.wide = self.iqe = self.iwc = self.ran = False
        self.ie_masked = self.ie_pending = False  # IECTL.IM, IECTL.IP
        self.status: dict[int, int] = {}
        self.dtlb: list[tuple[int, int, int, int, int]] = []
        self.completions = 0
        self.ctx, self.ctx_allowed = 0, [True, False]
        # Per table and page: the leaf in memory first, then what an IOTLB may still hold.
        self.leaf: list[list[list[int | None]]] = [
            [[_frame0(t, p)] for p in range(QI_PAGES)] for t in range(2)
        ]

    @property
    def shift(self) -> int:
        return 5 if self.wide else 4

    def iqa_geometry(self) -> tuple[int, int]:
        qs = self.iqa & 7
        return (32, 1 << (qs + 7)) if self.iqa & 1 << 11 else (16, 1 << (qs + 8))

    def ring(self) -> tuple[int, int]:
        stride, entries = (1 << self.shift, self.entries) if self.qie else self.iqa_geometry()
        return stride, min(entries, QI_QUEUE_PAGES * 4096 // stride)

    def enable(self, mem: PhysMem) -> None:
        self.qie, self.base, self.wide = True, self.iqa & ~0xFFF, bool(self.iqa & 1 << 11)
        self.entries = self.iqa_geometry()[1]
        self.run(mem)

    def check(self, w: list[int]) -> tuple[Any, ...] | None:
        """The effect of a valid descriptor, None for one the architecture calls invalid."""
        lo, hi = w[0], w[1]
        ty = (lo & 0xF) | (lo >> 9 & 7) << 4
        if ty not in QI_RESERVED:
            return None  # 0, the scalable-mode 6-9 (no scalable mode), 10 and above
        rlo, rhi = QI_RESERVED[ty]
        if ty == 5 and not self.pds:
            rlo |= 1 << 7  # PD needs ECAP.PDS
        if lo & rlo or hi & rhi or (self.wide and (w[2] | w[3])):
            return None
        g, did = lo >> 4 & 3, (lo >> 16 & 0xFFFF) & self.did_mask
        if ty == 1:
            if g == 0:
                return None
            return (
                "ctx",
                None
                if g == 1
                else ("did", did)
                if g == 2
                else ("sid", lo >> 32 & 0xFFFF, lo >> 48 & 3),
            )
        if ty == 2:
            if g == 0:
                return None
            if g == 1:
                return ("iotlb", None, None)
            if g == 2:
                return ("iotlb", did, None)
            am = hi & 0x3F
            if am > self.mamv:
                return None
            if not self.psi:
                return ("iotlb", did, None)
            return ("iotlb", did, ((hi >> 12) & ~((1 << am) - 1), 1 << am))
        if ty == 3:
            if not self.dt:
                return None
            page = hi & ~0xFFF & M64
            if not hi & 1:
                addr, size = page, 4096
            else:  # ATS: 8 KiB << trailing ones of ADDR[63:12], aligned down to the size
                ones, x = 0, page >> 12
                while x & 1:
                    ones, x = ones + 1, x >> 1
                addr, size = (
                    (0, 1 << 64) if ones >= 51 else (page & ~((8192 << ones) - 1), 8192 << ones)
                )
            pfsid = (lo >> 12 & 0xF) | (lo >> 52) << 4
            return ("dtlb", (lo >> 32 & 0xFFFF, addr, size, lo >> 16 & 0x1F, pfsid))
        if ty == 4:
            return ("nothing",) if self.ir else None
        sw, addr = bool(lo >> 5 & 1), hi & ~3
        if sw and addr + 4 > QI_MEM:
            return None  # the status write has no memory to go to
        return ("wait", (addr, lo >> 32) if sw else None, bool(lo >> 4 & 1))

    def apply(self, e: tuple[Any, ...]) -> None:
        if e[0] == "ctx":
            scope = e[1]
            for c in range(2):
                if c == self.ctx:
                    continue
                if scope is None:
                    hit = True
                elif scope[0] == "did":
                    hit = QI_DIDS[c] & self.did_mask == scope[1]
                else:
                    m = FM_MASKS[scope[2]]
                    hit = scope[1] & ~m == QI_SID & ~m
                if hit:
                    self.ctx_allowed[c] = False
        elif e[0] == "iotlb":
            did, pages = e[1], e[2]
            for t in range(2):
                if did is not None and did != QI_DIDS[t] & self.did_mask:
                    continue
                for p in range(QI_PAGES):
                    if pages is None or 0 <= p - pages[0] < pages[1]:
                        del self.leaf[t][p][1:]
        elif e[0] == "dtlb":
            self.dtlb.append(e[1])
        elif e[0] == "wait":
            if e[1] is not None:
                a, d = e[1]
                self.status[a] = d
            # IF: IWC, and the completion event unless IWC was already set; held in IECTL.IP
            # while IECTL.IM is set.
            if e[2] and not self.iwc:
                self.iwc = True
                if self.ie_masked:
                    self.ie_pending = True
                else:
                    self.completions += 1

    def run(self, mem: PhysMem) -> None:
        """From the head to the tail, stopping (IQE) at the first descriptor that is invalid
        or cannot be read, or at once for a tail outside the ring; nothing while IQE is set."""
        if not self.qie or self.iqe:
            return
        self.ran = True
        if self.wide and (not self.smts or self.iqt & 0x10):
            self.iqe = True
            return
        tail = self.iqt >> self.shift
        if tail >= self.entries:
            self.iqe = True
            return
        stride = 1 << self.shift
        while self.head != tail:
            at = self.base + self.head * stride
            try:
                w = [mem.read_u64(at + 8 * k) for k in range(stride // 8)] + [0, 0]
            except MemoryAccessError:
                self.iqe = True
                return
            d = Descriptor.decode(w[0], w[1])
            # The descriptor vocabulary knows layouts, not the unit: no ECAP checks.
            assert (d.error is None) == _qi_layout_ok(w[0], w[1]), (d.kind, d.error, w)
            e = self.check(w)
            if e is None:
                self.iqe = True
                return
            assert d.type == w[0] & 0xF, (d.type, w)
            self.apply(e)
            self.head = (self.head + 1) % self.entries


def _qi_layout_ok(lo: int, hi: int) -> bool:
    """A 128-bit descriptor's layout (§1.12): a known type (1-5, or scalable-mode 6-9
    undecoded), no reserved bit set (PD a field), a granularity for types 1 and 2."""
    ty = (lo & 0xF) | (lo >> 9 & 7) << 4
    if 6 <= ty <= 9:
        return True
    if ty not in QI_RESERVED:
        return False
    rlo, rhi = QI_RESERVED[ty]
    return not (lo & rlo or hi & rhi) and (ty > 2 or lo >> 4 & 3 != 0)


def _qi_image() -> bytes:
    """Root, context and page tables (the pages below the status page), built once."""
    img = bytearray(QI_STATUS)

    def put(addr: int, value: int) -> None:
        img[addr : addr + 8] = value.to_bytes(8, "little")

    put(0, QI_CTX | 1)
    for t, base in enumerate(QI_TABLES):
        for lvl in range(3):
            put(base + lvl * 0x1000, (base + (lvl + 1) * 0x1000) | 3)
        for p in range(QI_PAGES):
            put(base + 0x3000 + 8 * p, _frame0(t, p) | 3)
    put(QI_CTX + 16 * (QI_SID & 0xFF), QI_TABLES[0] | 1)
    put(QI_CTX + 16 * (QI_SID & 0xFF) + 8, 2 | QI_DIDS[0] << 8)
    return bytes(img)


QI_IMAGE = _qi_image()


def _qi_setup(cap: int, ecap: int, qs: int, wide: bool) -> tuple[PhysMem, Remapper, QiModel]:
    mem = PhysMem([(0, QI_MEM)])
    model = QiModel(cap, ecap)
    mem.write(0, QI_IMAGE)
    r = Remapper(mem, cap=cap, ecap=ecap, iotlb_entries=16, fault_records=8)
    r.mmio_write(0x20, 8, 0)
    r.mmio_write(0x18, 4, SRTP)
    r.mmio_write(0x18, 4, TE)
    r.mmio_write(0xA4, 4, QI_IEDATA)
    r.mmio_write(0xA8, 4, QI_IEADDR)
    r.mmio_write(IECTL, 4, 0)
    r.mmio_write(0x3C, 4, QI_FEDATA)
    r.mmio_write(0x40, 4, QI_FEADDR)
    r.mmio_write(0x38, 4, 0)
    model.iqa = QI_QUEUE | int(wide) << 11 | (qs & 3)
    r.mmio_write(IQA, 8, model.iqa)
    r.mmio_write(0x18, 4, TE | QIE)
    model.enable(mem)
    r.interrupts()  # a queue latched with DW but no SMTS has already failed and signalled it
    return mem, r, model


def _qi_words(b: bytes, wide: bool) -> list[int]:
    b = b.ljust(32 if wide else 16, b"\0")
    w = [int.from_bytes(b[8 * k : 8 * k + 8], "little") for k in range(4 if wide else 2)]
    return _steer(w + [0] * (4 - len(w)))


def fuzz_qi(data: bytes) -> None:
    qi_session(data)


def qi_session(data: bytes) -> QiModel | None:
    """The ``qi`` target, returning the reference model at the end (None for a short input).
    Byte 0 chooses CAP (bits 1:0) and ECAP (bits 3:2), byte 1 QS (bits 1:0) and DW (bit
    2); then steps of a kind byte and a body: submitted descriptors 16 bytes each (32 with
    bit 7 of the kind byte), other steps 9 bytes (a value, a selector)."""
    if len(data) < 2:
        return None
    cap, ecap = QI_CAPS[(data[0] & 3) % 3], QI_ECAPS[data[0] >> 2 & 3]
    mem, r, m = _qi_setup(cap, ecap, data[1] & 3, bool(data[1] & 4))
    rest = data[2:]
    steps = 0
    while rest and steps < 64:
        steps += 1
        kind, body = rest[0], rest[1:]
        # PPF, PFO or IQE already set suppress the fault event of a queue error (§1.13).
        iqe_before, quiet = m.iqe, bool(r.mmio_read(0x34, 4) & 0x13)
        dlen = 32 if kind & 0x80 else 16
        v = int.from_bytes(body[:8].ljust(8, b"\0"), "little")
        b8 = body[8] if len(body) > 8 else 0
        op, used = kind % 16, 9
        if op <= 5:  # submit 1-4 descriptors (count in the first byte) at the slot IQT names
            n = 1 + (body[0] & 3 if body else 0)
            raw = body[1 : 1 + n * dlen]
            descs = [_qi_words(raw[i : i + dlen], dlen == 32) for i in range(0, len(raw), dlen)]
            used = 1 + n * dlen
            stride, entries = m.ring()
            i = (m.iqt // stride) % entries
            for w in descs:
                for k in range(stride // 8):
                    mem.write_u64(QI_QUEUE + stride * i + 8 * k, w[k])
                i = (i + 1) % entries
            r.mmio_write(IQT, 8, i * stride)
            m.iqt = (i * stride) & 0x7FFF0
            m.run(mem)
        elif op == 6:  # a descriptor written at any slot
            stride, entries = m.ring()
            w = _qi_words(body[:dlen], dlen == 32)
            for k in range(stride // 8):
                mem.write_u64(QI_QUEUE + stride * (b8 % entries) + 8 * k, w[k])
            used = dlen + 1
        elif op == 7:  # IQT: 64-bit, low half, high half alone
            value, how = (v if b8 & 4 else v & 0x3F0), b8 % 3
            if how == 0:
                r.mmio_write(IQT, 8, value)
            else:
                r.mmio_write(IQT + 4 * (how == 2), 4, value & M32)
            if how < 2:
                m.iqt = value & 0x7FFF0
                m.run(mem)
        elif op == 8:
            r.mmio_write(0x34, 4, IQE)
            m.iqe, used = False, 0
        elif op == 9:
            r.mmio_write(ICS, 4, 1)
            m.iwc = m.ie_pending = False  # IP goes with IWC
            used = 0
        elif op == 15 and b8 & 0x80:
            masked = bool(b8 & 1)
            r.mmio_write(IECTL, 4, masked << 31)
            m.ie_masked = masked
            if not masked and m.ie_pending:
                m.ie_pending = False  # unmasking sends what was held
                m.completions += 1
        elif op == 10:
            on = bool(b8 & 1)
            r.mmio_write(0x18, 4, TE | (QIE if on else 0))
            if on and not m.qie:
                m.enable(mem)
            elif not on and m.qie and m.head << m.shift == m.iqt:
                m.qie, m.head = False, 0  # honoured only with an empty queue; IQH back to 0
        elif op == 11:
            value = _iqa_value(b8, v)
            r.mmio_write(IQA, 8, value)
            m.iqa = value & 0xFFFF_FFFF_FFFF_F807
        elif op == 12:  # a leaf changes in memory (a frame from 4 GiB up, or not present)
            t, p = b8 & 1, (b8 >> 1) % QI_PAGES
            now = None if b8 & 0x80 else 1 << 32 | v & 0xF_FFFF_F000
            mem.write_u64(QI_TABLES[t] + 0x3000 + 8 * p, 0 if now is None else now | 3)
            leaf = m.leaf[t][p]
            if now in leaf:
                leaf.remove(now)
            leaf.insert(0, now)
        elif op == 13:  # the device's context entry switches to the other table and DID
            m.ctx ^= 1
            m.ctx_allowed[m.ctx] = True
            mem.write_u64(QI_CTX + 16 * (QI_SID & 0xFF), QI_TABLES[m.ctx] | 1)
            mem.write_u64(QI_CTX + 16 * (QI_SID & 0xFF) + 8, 2 | QI_DIDS[m.ctx] << 8)
            used = 0
        else:
            p = b8 % QI_PAGES
            try:
                got: int | None = r.translate(QI_SID, p << 12).hpa
            except DmaFault:
                got = None
            allowed = [m.leaf[c][p] for c in range(2) if m.ctx_allowed[c]]
            assert any(got in a for a in allowed), (p, got, allowed)
        rest = body[used:]
        msgs = r.interrupts()
        done = [i.data for i in msgs if i.address == QI_IEADDR]
        assert done == [QI_IEDATA] * m.completions, (done, m.completions)
        m.completions = 0
        if op != 14 and not (op == 15 and not b8 & 0x80):  # a translation may fault
            events = sum(i.address == QI_FEADDR for i in msgs)
            assert events == (m.iqe and not iqe_before and not quiet), (events, quiet)
        _qi_compare(mem, r, m)
    return m


def _qi_compare(mem: PhysMem, r: Remapper, m: QiModel) -> None:
    assert bool(r.mmio_read(0x34, 4) & IQE) == m.iqe, ("IQE", m.iqe)
    iqh, stride = r.mmio_read(IQH, 8), 1 << m.shift
    assert iqh % stride == 0 and (not m.qie or iqh // stride < m.entries), hex(iqh)
    assert iqh == m.head << m.shift, (hex(iqh), m.head)
    if m.ran and not m.iqe:
        assert iqh == m.iqt, (hex(iqh), hex(m.iqt))
    m.ran = False
    assert bool(r.mmio_read(0x1C, 4) & QIE) == m.qie
    assert bool(r.mmio_read(ICS, 4) & 1) == m.iwc
    for a, d in m.status.items():
        assert mem.read_u64(a & ~7) >> (8 * (a & 4)) & M32 == d, (hex(a), hex(d))
    assert r.mmio_read(IECTL, 4) == m.ie_masked << 31 | m.ie_pending << 30
    got = [(d.sid, d.address, d.size, d.qdep, d.pfsid) for d in r.device_tlb_invalidations()]
    assert got == m.dtlb, (got, m.dtlb)
    m.dtlb.clear()


def qi_seeds() -> list[bytes]:
    """A valid queue, built with ``Descriptor``: context-cache global, IOTLB global, domain and
    page, device-TLB, IEC, a wait with a status write and one with IF (IECTL masked, then
    unmasked), with translations and page-table changes between, a context switch; on each
    unit, at QS 0; and four descriptors in a 256-bit queue on the unit with SMTS."""

    def step(kind: int, value: int, sel: int) -> bytes:
        return bytes([kind]) + value.to_bytes(8, "little") + bytes([sel])

    def submit(*ds: Descriptor) -> bytes:
        return bytes([0, len(ds) - 1]) + b"".join(d.to_bytes() for d in ds)

    did = QI_DIDS[0]
    body = b"".join(
        [
            step(14, 0, 3),  # translate page 3 (cached)
            step(12, 0x7_7000, 3 << 1),  # table A page 3 -> another frame
            submit(Descriptor.context_cache("global")),
            submit(Descriptor.iotlb("global")),
            step(14, 0, 3),
            step(12, 0x7_8000, 2 << 1),
            submit(Descriptor.iotlb("domain", did=did)),
            step(14, 0, 2),
            step(12, 0x7_9000, 1 << 1),
            submit(Descriptor.iotlb("page", did=did, addr=0x1000)),
            step(14, 0, 1),
            submit(Descriptor.device_tlb(0x0310, 0x12_3000, size=True, qdep=4)),
            submit(Descriptor.iec(index=0x12, im=1)),
            submit(Descriptor.wait(status_addr=QI_STATUS + 8, status_data=0xCAFE)),
            step(15, 0, 0x81),  # IECTL masked: the completion is held in IP
            submit(Descriptor.wait(interrupt=True)),
            step(15, 0, 0x80),  # unmasked: sent
            bytes([9]),  # clear IWC
            bytes([13]),  # switch context, then invalidate the context cache
            submit(Descriptor.context_cache("global")),
            step(14, 0, 4),
        ]
    )
    wide = bytes([0x80, 3]) + b"".join(
        d.to_bytes(32)
        for d in (
            Descriptor.iotlb("global"),
            Descriptor.context_cache("domain", did=did),
            Descriptor.iec(),
            Descriptor.wait(status_addr=QI_STATUS, status_data=1, interrupt=True),
        )
    )
    seeds = [bytes([c | e << 2, 0]) + body for c in range(3) for e in range(4)]
    return [*seeds, bytes([3 << 2, 4]) + wide]


TARGETS = {
    "dmar": fuzz_dmar,
    "walk": fuzz_walk,
    "pagetable": fuzz_pagetable,
    "regs": fuzz_regs,
    "qi": fuzz_qi,
}
SEEDS = {"walk": walk_seeds, "regs": regs_seeds, "qi": qi_seeds}
