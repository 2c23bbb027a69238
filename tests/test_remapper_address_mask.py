"""Page-selective IOTLB invalidation with the widest address masks CAP.MAMV can allow."""

from __future__ import annotations

import pytest

from reference import present_table
from vtdwalk import PageTable, PhysMem, Remapper, RootTable

MAMV_SHIFT = 48


@pytest.mark.parametrize("am", [51, 52, 63])
def test_wide_mask_drops_the_stale_entry(am: int) -> None:
    mem = PhysMem([(1 << 32, 1 << 30)])
    pt = PageTable(mem, levels=4)
    pt.map(0x7000, 0xA000_0000, 0x1000)
    rt = RootTable(mem)
    rt.set_context(0, 0x10, present_table(pt.root), 2, 1)
    base = Remapper(mem).cap
    cap = (base & ~(0x3F << MAMV_SHIFT)) | (63 << MAMV_SHIFT)
    unit = Remapper(mem, root_table=rt.maddr, cap=cap)
    assert unit.translate(0x10, 0x7000).hpa == 0xA000_0000
    pt.map(0x7000, 0xB000_0000, 0x1000)  # rewritten without invalidation: still cached
    assert unit.translate(0x10, 0x7000).hpa == 0xA000_0000
    unit.invalidate_iotlb("page", did=1, addr=0x1234_5000, am=am)
    assert unit.translate(0x10, 0x7000).hpa == 0xB000_0000
