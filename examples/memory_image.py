"""Walk tables that someone else wrote: load a memory image, point a remapping unit at it.

An emulated guest driver (or a crash dump) leaves root, context and page tables in memory.
vtdwalk's hardware model walks them as the hardware would, trusting nothing: here we build the
image by hand with raw 64-bit writes, the layout QEMU's own qtest uses (tables at 0x10000000,
a 4-level table, DID 1, the device at 00:02.0 DMA-ing to IOVA 0x8080604000), save it as a RAM
dump file (the shape of QEMU's `pmemsave`: guest RAM from address 0), map the file with `mmap`
and walk it in place: a node given as `(base, buffer)` uses the buffer's memory without a copy.
Mapped read-only the dump cannot be changed (a write raises MemoryAccessError); mapped
copy-on-write it can, and the file stays as it was.

Run: python examples/memory_image.py
"""

from __future__ import annotations

import mmap
import tempfile
from pathlib import Path

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


def save_dump(path: Path) -> None:
    """Write a 512 MiB RAM dump holding the image at its address (a sparse file on disk)."""
    origin, image = build_image()
    with path.open("wb") as f:
        f.truncate(512 << 20)
        f.seek(origin)
        f.write(image)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        dump = Path(d) / "guest-ram.bin"
        save_dump(dump)
        with dump.open("r+b") as f:
            ram = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            walk_read_only(ram)
            del ram  # (released with the PhysMem that used it)
            ram = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            corrupt_a_private_copy(ram)
        leaf_at = BASE + 5 * 0x1000 + 8 * ((IOVA >> 12) & 0x1FF)
        leaf = int.from_bytes(dump.read_bytes()[leaf_at : leaf_at + 8], "little")
        assert leaf == TARGET | 3, "the file is unchanged"


def walk_read_only(ram: mmap.mmap) -> None:
    mem = vtdwalk.PhysMem([(0, ram)])  # the dump's memory, used in place
    unit = vtdwalk.Remapper(mem, root_table=BASE)
    t = unit.translate(SID, IOVA + 0x123, write=True)
    print(f"00:02.0 writes IOVA {IOVA + 0x123:#x} -> host {t.hpa:#x} (DID {t.domain_id})")
    assert t.hpa == TARGET + 0x123
    try:
        unit.translate(SID, IOVA + 0x1000)
    except vtdwalk.DmaFault as f:
        print(f"the next page is not mapped: fault {f.reason:#x} {f.name}")
    try:
        mem.write_u64(BASE, 0)
    except vtdwalk.MemoryAccessError as e:
        print(f"the read-only dump refuses writes: {e}")


def corrupt_a_private_copy(ram: mmap.mmap) -> None:
    mem = vtdwalk.PhysMem([(0, ram)])
    unit = vtdwalk.Remapper(mem, root_table=BASE)
    # Someone corrupts the image: a reserved bit in the leaf. The walk faults, it never crashes.
    leaf_at = BASE + 5 * 0x1000 + 8 * ((IOVA >> 12) & 0x1FF)
    mem.write_u64(leaf_at, TARGET | 3 | (1 << 62))
    assert int.from_bytes(ram[leaf_at : leaf_at + 8], "little") >> 62 == 1  # seen both ways
    try:
        unit.translate(SID, IOVA)
    except vtdwalk.DmaFault as f:
        print(f"after corruption: fault {f.reason:#x} {f.name}")


if __name__ == "__main__":
    main()
