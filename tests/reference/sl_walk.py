"""A second-level page walk written from the spec (vtd-hardware.md §1.7, xen-driver.md §4.1-§4.2).

It reads PTEs itself with ``PhysMem.read_u64`` and knows nothing of the Rust code: index at level
L = (iova >> (12 + 9(L-1))) & 511; present = R or W; a leaf at L1, or with PS at L2 (2 MiB) or
L3 (1 GiB); the address field is bits 51:12; permissions are the AND over every level.
"""

from __future__ import annotations

import numpy as np

from vtdwalk import PhysMem

R = 1 << 0
W = 1 << 1
PS = 1 << 7
ADDR_MASK = 0x000F_FFFF_FFFF_F000


def offset_bits(level: int) -> int:
    return 12 + 9 * (level - 1)


def walk(
    mem: PhysMem, root: int | None, levels: int, iova: int
) -> tuple[int, int, bool, bool] | None:
    """(maddr of iova, page size, read, write), or None when not mapped (or no table)."""
    if root is None or root == 0:
        return None
    table = root
    read = write = True
    for level in range(levels, 0, -1):
        index = (iova >> offset_bits(level)) & 511
        pte = mem.read_u64(table + 8 * index)
        if pte & (R | W) == 0:
            return None
        read = read and bool(pte & R)
        write = write and bool(pte & W)
        if level == 1 or (pte & PS and level in (2, 3)):
            size = 1 << offset_bits(level)
            base = pte & ADDR_MASK & ~(size - 1)
            return base + (iova & (size - 1)), size, read, write
        table = pte & ADDR_MASK
    raise AssertionError("unreachable: level 1 always ends the walk")


def leaves(mem: PhysMem, root: int | None, levels: int) -> list[tuple[int, int, int, bool, bool]]:
    """Every leaf as (iova, maddr, size, read, write) in IOVA order; also checks that every
    intermediate entry is exactly a R+W pointer (the driver's rule) and PS sits only at L2/L3."""
    out: list[tuple[int, int, int, bool, bool]] = []
    if root is None or root == 0:
        return out

    def visit(table: int, level: int, base: int) -> None:
        words = mem.read_u64s(table, 512)
        size = 1 << offset_bits(level)
        for i in np.flatnonzero(words & np.uint64(R | W)).tolist():
            pte = int(words[i])
            iova = base + i * size
            if level == 1 or pte & PS:
                assert level <= 3, f"PS at level {level}"
                addr = pte & ADDR_MASK
                assert addr & (size - 1) == 0, "superpage address not aligned"
                out.append((iova, addr, size, bool(pte & R), bool(pte & W)))
            else:
                assert pte & ~ADDR_MASK == R | W, f"intermediate entry {pte:#x} is not plain R+W"
                visit(pte & ADDR_MASK, level - 1, iova)

    visit(root, levels, 0)
    return out


def merge(
    runs: list[tuple[int, int, int, bool, bool]],
) -> list[tuple[int, int, int, bool, bool]]:
    """Merge (iova, maddr, size, read, write) runs contiguous in both addresses, equal perms."""
    out: list[tuple[int, int, int, bool, bool]] = []
    for iova, maddr, size, r, w in runs:
        if out:
            pi, pm, ps, pr, pw = out[-1]
            if pi + ps == iova and pm + ps == maddr and (pr, pw) == (r, w):
                out[-1] = (pi, pm, ps + size, pr, pw)
                continue
        out.append((iova, maddr, size, r, w))
    return out
