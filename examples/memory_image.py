"""Walk tables that someone else wrote: load a memory image, point a remapping unit at it.

An emulated guest driver (or a crash dump) leaves root, context and page tables in memory.
vtdwalk's hardware model walks them as the hardware would, trusting nothing: here we build the
image by hand with raw 64-bit writes, the layout QEMU's own qtest uses (tables at 0x10000000,
a 4-level table, DID 1, the device at 00:02.0 DMA-ing to IOVA 0x8080604000), save it as bytes,
load it into a fresh PhysMem, and translate.

Run: python examples/memory_image.py
"""

from __future__ import annotations

import numpy as np

import vtdwalk

BASE = 0x1000_0000
IOVA = 0x80_8060_4000
TARGET = 0x2345_6000
SID = (0 << 8) | (2 << 3) | 0  # 00:02.0


def build_image() -> tuple[int, bytes]:
    """Return (origin, image bytes) of a root table, one context table and a 4-level table."""
    words = np.zeros(7 * 512, dtype=np.uint64)  # 7 pages starting at BASE

    def put(page: int, index: int, value: int) -> None:
        words[page * 512 + index] = value

    _root, ctx, l4, l3, l2, l1 = (BASE + i * 0x1000 for i in range(6))
    put(0, 2 * 0, ctx | 1)  # root entry for bus 0: context table, present
    devfn = SID & 0xFF
    put(1, 2 * devfn, l4 | 1)  # context lo: SLPTPTR, TT=0 (multi-level), present
    put(1, 2 * devfn + 1, (1 << 8) | 2)  # context hi: DID 1, AW 2 (48-bit, 4 levels)
    idx = [(IOVA >> (12 + 9 * lvl)) & 0x1FF for lvl in range(4)]
    put(2, idx[3], l3 | 3)  # L4 -> L3, R+W
    put(3, idx[2], l2 | 3)
    put(4, idx[1], l1 | 3)
    put(5, idx[0], TARGET | 3)  # 4 KiB leaf, R+W
    return BASE, words.tobytes()


def main() -> None:
    origin, image = build_image()
    mem = vtdwalk.PhysMem([(0, 1 << 30)])
    mem.write(origin, image)  # one call loads the whole image
    unit = vtdwalk.Remapper(mem, root_table=origin)
    t = unit.translate(SID, IOVA + 0x123, write=True)
    print(f"00:02.0 writes IOVA {IOVA + 0x123:#x} -> host {t.hpa:#x} (DID {t.domain_id})")
    assert t.hpa == TARGET + 0x123
    try:
        unit.translate(SID, IOVA + 0x1000)
    except vtdwalk.DmaFault as f:
        print(f"the next page is not mapped: fault {f.reason:#x} {f.name}")
    # Someone corrupts the image: a reserved bit in the leaf. The walk faults, it never crashes.
    leaf_at = origin + 5 * 0x1000 + 8 * ((IOVA >> 12) & 0x1FF)
    mem.write_u64(leaf_at, TARGET | 3 | (1 << 62))
    unit.invalidate_iotlb("global")
    try:
        unit.translate(SID, IOVA)
    except vtdwalk.DmaFault as f:
        print(f"after corruption: fault {f.reason:#x} {f.name}")


if __name__ == "__main__":
    main()
