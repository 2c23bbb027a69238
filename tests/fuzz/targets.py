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


TARGETS = {"dmar": fuzz_dmar, "walk": fuzz_walk, "pagetable": fuzz_pagetable}
SEEDS = {"walk": walk_seeds}
