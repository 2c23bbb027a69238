"""A single look-up's `Translation` as the reference walk's tuple, its other fields checked."""

from __future__ import annotations

from vtdwalk import Translation

# The leaf level of each page size (vtd-hardware.md §1.7: a leaf at L1, or with PS at L2/L3).
LEVEL_OF_SIZE = {1 << 12: 1, 1 << 21: 2, 1 << 30: 3}


def leaf(t: Translation | None) -> tuple[int, int, bool, bool] | None:
    """``(hpa, page_size, read, write)`` of a page table's own look-up, or None when not mapped.

    It first checks what that tuple has no room for: no domain id (no context entry is
    involved) and the leaf level that goes with the page size.
    """
    if t is None:
        return None
    assert isinstance(t, Translation)
    assert t.domain_id is None
    assert t.level == LEVEL_OF_SIZE[t.page_size]
    return (t.hpa, t.page_size, t.read, t.write)
