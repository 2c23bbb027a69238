"""Root and context entries read straight from PhysMem, from the layouts of xen-driver.md §5.1.

Nothing here uses vtdwalk's assignment code: a root entry is 16 bytes at ``root + 16 * bus``
(P bit 0, context-table pointer bits 63:12), a context entry 16 bytes at ``table + 16 * devfn``
(lo: P 0, FPD 1, TT 3:2, SLPTPTR 63:12; hi: AW 2:0, DID 23:8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vtdwalk import PhysMem

ADDR = 0x000F_FFFF_FFFF_F000


@dataclass(frozen=True)
class Ctx:
    bus: int
    devfn: int
    present: bool
    fpd: bool
    tt: int
    slptptr: int
    aw: int
    did: int

    @property
    def bdf(self) -> str:
        return f"{self.bus:02x}:{self.devfn >> 3:02x}.{self.devfn & 7}"


def context_table(mem: PhysMem, root: int, bus: int) -> int | None:
    lo = mem.read_u64(root + 16 * bus)
    return (lo & ADDR) if lo & 1 else None


def entry(mem: PhysMem, root: int, bus: int, devfn: int) -> Ctx | None:
    t = context_table(mem, root, bus)
    if t is None:
        return None
    lo = mem.read_u64(t + 16 * devfn)
    hi = mem.read_u64(t + 16 * devfn + 8)
    return Ctx(
        bus, devfn, bool(lo & 1), bool(lo & 2), (lo >> 2) & 3, lo & ADDR, hi & 7, (hi >> 8) & 0xFFFF
    )


def present_entries(mem: PhysMem, root: int) -> dict[str, Ctx]:
    """Every present context entry under the root table, keyed "bb:dd.f"."""
    out: dict[str, Ctx] = {}
    roots = mem.read_u64s(root, 512)
    for bus in range(256):
        r = int(roots[2 * bus])
        if not r & 1:
            continue
        words = mem.read_u64s(r & ADDR, 512)
        for devfn in np.flatnonzero(words[0::2] & np.uint64(1)).tolist():
            lo, hi = int(words[2 * devfn]), int(words[2 * devfn + 1])
            e = Ctx(
                bus, devfn, True, bool(lo & 2), (lo >> 2) & 3, lo & ADDR, hi & 7, (hi >> 8) & 0xFFFF
            )
            out[e.bdf] = e
    return out


def context_table_pages(mem: PhysMem, root: int) -> list[int]:
    """Addresses of the context tables the root table points at."""
    return [t for bus in range(256) if (t := context_table(mem, root, bus)) is not None]


def table_pages(mem: PhysMem, top: int, levels: int) -> list[int]:
    """Every page-table page reachable from ``top`` (non-leaf entries: R|W without PS above
    L1)."""
    out = [top]
    if levels == 1:
        return out
    words = mem.read_u64s(top, 512)
    for i in np.flatnonzero(words & np.uint64(3)).tolist():
        pte = int(words[i])
        if pte & (1 << 7):
            continue
        out.extend(table_pages(mem, pte & ADDR, levels - 1))
    return out
