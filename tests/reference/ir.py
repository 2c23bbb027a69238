"""A reference model of interrupt remapping, written from vtd-hardware.md §1.10 and VT-d §5.1
and §9.10 (not from vtdwalk): what a unit does with one interrupt request, given the table it
latched and its status bits.

``remap`` returns ``("ok", address, data, index)`` for a delivered message (index None when it
passed unremapped) or ``("fault", reason, index)``.
"""

from __future__ import annotations

from collections.abc import Callable

SQ_MASKS = (0xFFFF, 0xFFFB, 0xFFF9, 0xFFF8)


def remap(
    *,
    ire: bool,
    cfis: bool,
    irta: int,
    eim: bool,
    read: Callable[[int], tuple[int, int] | None],
    sid: int,
    address: int,
    data: int,
) -> tuple[object, ...]:
    """``read(address)`` gives the IRTE's two words at a table address, None where there is no
    memory."""
    in_window = 0xFEE0_0000 <= address < 0xFEF0_0000
    if not ire:
        return ("ok", address, data, None)
    if not in_window:
        return ("fault", 0x20, None)
    if not address >> 4 & 1:  # compatibility format
        return ("ok", address, data, None) if cfis else ("fault", 0x25, None)
    shv = address >> 3 & 1
    if shv and data >> 16:
        return ("fault", 0x20, None)
    index = (address >> 5 & 0x7FFF) | (address >> 2 & 1) << 15
    if shv:
        index += data & 0xFFFF
    entries = 2 << (irta & 0xF)
    if index >= entries:
        return ("fault", 0x21, index if index <= 0xFFFF else None)
    eime = bool(irta >> 11 & 1) and eim
    words = read((irta & ~0xFFF) + 16 * index)
    if words is None:
        return ("fault", 0x23, index)
    lo, hi = words
    if not lo & 1:
        return ("fault", 0x22, index)
    dst = lo >> 32
    rsvd = lo >> 12 & 0x7 or lo >> 15 & 1 or lo >> 24 & 0xFF or hi >> 20
    if rsvd or (not eime and dst & 0xFFFF_00FF):
        return ("fault", 0x24, index)
    svt, sq, esid = hi >> 18 & 3, hi >> 16 & 3, hi & 0xFFFF
    if svt == 1:
        ok = sid & SQ_MASKS[sq] == esid & SQ_MASKS[sq]
    elif svt == 2:
        ok = esid >> 8 <= sid >> 8 <= esid & 0xFF
    else:
        ok = svt == 0
    if not ok:
        return ("fault", 0x26, index)
    dest = dst if eime else dst >> 8 & 0xFF
    out_addr = (
        0xFEE0_0000
        | (dest & 0xFF) << 12
        | (lo >> 3 & 1) << 3
        | (lo >> 2 & 1) << 2
        | (dest & 0xFFFF_FF00) << 32
    )
    out_data = (lo >> 16 & 0xFF) | (lo >> 5 & 7) << 8 | (lo >> 4 & 1) << 15
    return ("ok", out_addr, out_data, index)


def fpd_suppresses(reason: int, lo: int) -> bool:
    """Whether the IRTE's FPD (bit 1 of ``lo``) keeps ``reason`` out of the fault records."""
    return reason in (0x22, 0x24, 0x26) and bool(lo >> 1 & 1)
