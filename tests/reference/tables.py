"""Raw VT-d legacy tables written word by word into a PhysMem, for tests and benches.

Nothing here is vtdwalk logic: entries are composed from the bit layouts of vtd-hardware.md §1.5
and §1.7 and written with ``PhysMem.write_u64``.
"""

from __future__ import annotations

from vtdwalk import PhysMem

R, W, PS, SNP, TM = 1, 2, 1 << 7, 1 << 11, 1 << 62
# QEMU's aw48 CAP; with SAGAW bit 3 and MGAW 56 for 5-level walks.
CAP48 = 0x80D2008C222F0606
CAP39 = 0x80D2008C22260206
CAP57 = CAP48 | (0x8 << 8) | (56 << 16)


def level_index(iova: int, level: int) -> int:
    return (iova >> (12 + 9 * (level - 1))) & 0x1FF


class Tables:
    """A root table and context tables, page tables allocated from ``mem``."""

    def __init__(self, mem: PhysMem) -> None:
        self.mem = mem
        self.root = mem.alloc_pages(1)
        self.ctx: dict[int, int] = {}

    def page(self) -> int:
        return self.mem.alloc_pages(1)

    def context(
        self,
        sid: int,
        top: int,
        levels: int,
        did: int,
        tt: int = 0,
        fpd: bool = False,
    ) -> int:
        """Write a present context entry for ``sid``; returns the entry's address."""
        bus, devfn = sid >> 8, sid & 0xFF
        if bus not in self.ctx:
            self.ctx[bus] = self.page()
            self.mem.write_u64(self.root + 16 * bus, self.ctx[bus] | 1)
        ce = self.ctx[bus] + 16 * devfn
        self.mem.write_u64(ce, top | (tt << 2) | (2 if fpd else 0) | 1)
        self.mem.write_u64(ce + 8, (levels - 2) | (did << 8))
        return ce

    def map(
        self,
        top: int,
        levels: int,
        iova: int,
        hpa: int,
        leaf_level: int = 1,
        perm: int = R | W,
    ) -> list[int]:
        """Map ``iova`` -> ``hpa`` with a leaf at ``leaf_level``; returns the entry addresses
        from the top level down to the leaf."""
        table = top
        path = []
        for level in range(levels, leaf_level, -1):
            e = table + 8 * level_index(iova, level)
            path.append(e)
            cur = self.mem.read_u64(e)
            if cur & (R | W) and not cur & PS:
                table = cur & 0x000F_FFFF_FFFF_F000
            else:
                nxt = self.page()
                self.mem.write_u64(e, nxt | R | W)
                table = nxt
        e = table + 8 * level_index(iova, leaf_level)
        path.append(e)
        self.mem.write_u64(e, hpa | perm | (PS if leaf_level > 1 else 0))
        return path
