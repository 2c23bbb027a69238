//! Address widths: page-table levels <-> context AW field <-> input address width
//! (vtd-hardware.md §1.5 "AW", §1.7). The one place for `12 + 9 * levels`, `levels - 2` and
//! `aw + 2`.

/// Bits of the second-level page-table index at each level.
pub const LEVEL_STRIDE: u32 = 9;
/// Entries per table.
pub const PTE_NUM: u64 = 512;
/// Mask of a level's index.
pub const LEVEL_MASK: u64 = PTE_NUM - 1;

/// Fewest and most page-table levels supported (AW 1..=3: 39, 48, 57-bit).
pub const MIN_LEVELS: u32 = 3;
pub const MAX_LEVELS: u32 = 5;

/// Bit offset of the index at `level` (1-based): L1 12, L2 21, L3 30, L4 39, L5 48.
#[inline]
pub const fn level_to_offset_bits(level: u32) -> u32 {
    12 + LEVEL_STRIDE * (level - 1)
}

/// The index into the level-`level` table for `addr` (`vtd_iova_level_offset`).
#[inline]
pub const fn address_level_offset(addr: u64, level: u32) -> u64 {
    (addr >> level_to_offset_bits(level)) & LEVEL_MASK
}

/// Bytes mapped by one entry at `level` (4 KiB, 2 MiB, 1 GiB, ...).
#[inline]
pub const fn level_size(level: u32) -> u64 {
    1u64 << level_to_offset_bits(level)
}

/// Context AW field -> levels (AW + 2).
#[inline]
pub const fn aw_to_levels(aw: u32) -> u32 {
    aw + 2
}

/// Levels -> context AW field (levels - 2).
#[inline]
pub const fn levels_to_aw(levels: u32) -> u32 {
    levels - 2
}

/// Levels -> input address width in bits (3: 39, 4: 48, 5: 57): the bits above the last
/// level's index, `12 + 9 * levels`.
#[inline]
pub const fn levels_to_width(levels: u32) -> u32 {
    12 + LEVEL_STRIDE * levels
}

/// AW field -> input address width in bits (`agaw_to_width`: 30 + 9 AW).
#[inline]
pub const fn aw_to_width(aw: u32) -> u32 {
    levels_to_width(aw_to_levels(aw))
}

/// Bits at and above `aw_bits`: the part of an address the host address width forbids.
#[inline]
pub const fn above_width_mask(aw_bits: u32) -> u64 {
    if aw_bits >= 64 {
        0
    } else {
        !((1u64 << aw_bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_from_the_spec() {
        // vtd-hardware.md §1.5: AW 1 = 39-bit (3 levels), 2 = 48-bit (4), 3 = 57-bit (5).
        for (aw, levels, width) in [(1, 3, 39), (2, 4, 48), (3, 5, 57)] {
            assert_eq!(aw_to_levels(aw), levels);
            assert_eq!(levels_to_aw(levels), aw);
            assert_eq!(levels_to_width(levels), width);
            assert_eq!(aw_to_width(aw), width);
        }
    }

    #[test]
    fn level_formulas() {
        assert_eq!(level_to_offset_bits(4), 39);
        assert_eq!(address_level_offset(0x8080604000, 4), 1);
        assert_eq!(address_level_offset(0x8080604000, 3), 2);
        assert_eq!(address_level_offset(0x8080604000, 2), 3);
        assert_eq!(address_level_offset(0x8080604000, 1), 4);
        assert_eq!(levels_to_width(3), 39);
        assert_eq!(levels_to_width(5), 57);
        assert_eq!(level_size(3), 1 << 30);
        assert_eq!(above_width_mask(48), 0xffff_0000_0000_0000);
        assert_eq!(above_width_mask(64), 0);
    }
}
