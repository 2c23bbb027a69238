//! Invalidation queue descriptors (vtd-hardware.md §1.12; VT-d §6.5.2): their types, field
//! positions and reserved bits, in the 128-bit form and the 256-bit form (the same low 128
//! bits; bits 255:128 reserved for the legacy types 1-5).
//!
//! The type is `lo[3:0] | lo[11:9] << 4`. Fields, by type (bit positions in `lo` / `hi`):
//!
//! | Type | Descriptor | `lo` | `hi` |
//! |---|---|---|---|
//! | 1 | context-cache | G 5:4 (1 global, 2 domain, 3 device), DID 31:16, SID 47:32, FM 49:48 | reserved |
//! | 2 | IOTLB | G 5:4 (1 global, 2 domain, 3 page), DW 6, DR 7, DID 31:16 | AM 5:0, IH 6, ADDR 63:12 |
//! | 3 | device-TLB | PFSID[3:0] 15:12, MIP (queue depth) 20:16, SID 47:32, PFSID[15:4] 63:52 | S 0, ADDR 63:12 |
//! | 4 | interrupt-entry cache | G 4 (0 global, 1 index), IM 31:27, IIDX 47:32 | reserved |
//! | 5 | invalidation wait | IF 4, SW 5, FN 6, PD 7, status data 63:32 | status address 63:2 |
//! | 6-9 | PASID-IOTLB, PASID-cache, PASID device-TLB, page group response (scalable mode) | | |
//!
//! Every bit not listed (and granularity value 0 of types 1 and 2) is reserved. Decoding
//! checks them; the unit decides what the types 6-9 and PD mean for it.

/// Descriptor type numbers.
pub mod kind {
    pub const CONTEXT_CACHE: u8 = 1;
    pub const IOTLB: u8 = 2;
    pub const DEVICE_TLB: u8 = 3;
    pub const IEC: u8 = 4;
    pub const WAIT: u8 = 5;
    pub const PASID_IOTLB: u8 = 6;
    pub const PASID_CACHE: u8 = 7;
    pub const PASID_DEVICE_TLB: u8 = 8;
    pub const PAGE_GROUP_RESPONSE: u8 = 9;
}

/// Bits of `lo` that are not reserved, by type 1-5 (the type bits 3:0 and 11:9 included).
const LO_USED: [u64; 6] = [
    0,
    // 1: type, G 5:4, type-hi 11:9, DID 31:16, SID 47:32, FM 49:48.
    0x0003_FFFF_FFFF_0E3F,
    // 2: type, G 5:4, DW 6, DR 7, type-hi 11:9, DID 31:16.
    0x0000_0000_FFFF_0EFF,
    // 3: type, type-hi, PFSID[3:0] 15:12, MIP 20:16, SID 47:32, PFSID[15:4] 63:52.
    0xFFF0_FFFF_001F_FE0F,
    // 4: type, G 4, type-hi, IM 31:27, IIDX 47:32.
    0x0000_FFFF_F800_0E1F,
    // 5: type, IF 4, SW 5, FN 6, PD 7, type-hi, status data 63:32.
    0xFFFF_FFFF_0000_0EFF,
];
/// Bits of `hi` that are not reserved, by type 1-5.
const HI_USED: [u64; 6] = [
    0,
    0,
    // 2: AM 5:0, IH 6, ADDR 63:12.
    0xFFFF_FFFF_FFFF_F07F,
    // 3: S 0, ADDR 63:12.
    0xFFFF_FFFF_FFFF_F001,
    0,
    // 5: status address 63:2.
    0xFFFF_FFFF_FFFF_FFFC,
];

/// The reserved bits of `lo` and `hi` of a type 1-5 descriptor.
pub const fn reserved_masks(ty: u8) -> Option<(u64, u64)> {
    if ty >= 1 && ty <= 5 {
        Some((!LO_USED[ty as usize], !HI_USED[ty as usize]))
    } else {
        None
    }
}

/// Granularity of context-cache and IOTLB descriptors (and of the interrupt-entry cache,
/// where only `Global` and `Index` apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    Global,
    Domain,
    /// Context-cache: one device (SID with FM); IOTLB: pages (ADDR with AM).
    Selective,
}

impl Granularity {
    const fn code(self) -> u64 {
        match self {
            Granularity::Global => 1,
            Granularity::Domain => 2,
            Granularity::Selective => 3,
        }
    }
    const fn from_code(v: u64) -> Option<Self> {
        match v {
            1 => Some(Granularity::Global),
            2 => Some(Granularity::Domain),
            3 => Some(Granularity::Selective),
            _ => None,
        }
    }
}

/// A decoded descriptor of a type the legacy queue knows, or a recognised scalable-mode one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Descriptor {
    ContextCache {
        granularity: Granularity,
        did: u16,
        sid: u16,
        fm: u8,
    },
    Iotlb {
        granularity: Granularity,
        did: u16,
        /// Page address (bits 63:12), 0 unless page-selective.
        addr: u64,
        am: u8,
        ih: bool,
        dr: bool,
        dw: bool,
    },
    DeviceTlb {
        sid: u16,
        /// Address bits 63:12 as written (the size bit decides how many low ones are size).
        addr: u64,
        size: bool,
        /// MIP: the device's invalidation queue depth (0 = 32).
        qdep: u8,
        pfsid: u16,
    },
    /// `index` None: global.
    Iec { index: Option<u16>, im: u8 },
    Wait {
        interrupt: bool,
        status_write: bool,
        fence: bool,
        /// Page-request drain (only meaningful with ECAP.PDS).
        drain: bool,
        status_data: u32,
        /// Status address (4-byte aligned).
        status_addr: u64,
    },
    /// Types 6-9: descriptors of scalable mode, only their type decoded.
    Scalable { ty: u8 },
}

/// Why a descriptor does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescError {
    /// Type 0, 10-127.
    UnknownType(u8),
    /// Reserved bits set (in `lo`, `hi`, or bits 255:128 of a 256-bit descriptor), or a
    /// reserved granularity value.
    Reserved(u8),
}

/// The type of a descriptor's low word.
#[inline]
pub const fn descriptor_type(lo: u64) -> u8 {
    ((lo & 0xF) | ((lo >> 9) & 7) << 4) as u8
}

/// Size in bytes and aligned base of a device-TLB invalidation (the ATS size encoding): with
/// `size` clear one 4 KiB page; with it set, 8 KiB shifted left once per trailing 1 of
/// `addr >> 12`, the address aligned down to that size (every bit 1: the whole 2^64 bytes).
pub fn device_tlb_range(addr: u64, size: bool) -> (u64, u128) {
    let page = addr & !0xFFF;
    if !size {
        return (page, 4096);
    }
    let ones = (page >> 12).trailing_ones();
    if ones >= 51 {
        return (0, 1u128 << 64);
    }
    let bytes = 8192u128 << ones;
    (page & !((bytes as u64) - 1), bytes)
}

impl Descriptor {
    /// Decode a 128-bit descriptor (`lo` = bits 63:0, `hi` = bits 127:64). Types 6-9 decode as
    /// [`Descriptor::Scalable`] without field checks.
    pub fn decode(lo: u64, hi: u64) -> Result<Self, DescError> {
        let ty = descriptor_type(lo);
        if (kind::PASID_IOTLB..=kind::PAGE_GROUP_RESPONSE).contains(&ty) {
            return Ok(Descriptor::Scalable { ty });
        }
        let Some((rlo, rhi)) = reserved_masks(ty) else {
            return Err(DescError::UnknownType(ty));
        };
        if lo & rlo != 0 || hi & rhi != 0 {
            return Err(DescError::Reserved(ty));
        }
        let did = (lo >> 16) as u16;
        let g = (lo >> 4) & 3;
        Ok(match ty {
            kind::CONTEXT_CACHE => Descriptor::ContextCache {
                granularity: Granularity::from_code(g).ok_or(DescError::Reserved(ty))?,
                did,
                sid: (lo >> 32) as u16,
                fm: ((lo >> 48) & 3) as u8,
            },
            kind::IOTLB => Descriptor::Iotlb {
                granularity: Granularity::from_code(g).ok_or(DescError::Reserved(ty))?,
                did,
                addr: hi & !0xFFF,
                am: (hi & 0x3F) as u8,
                ih: hi & (1 << 6) != 0,
                dr: lo & (1 << 7) != 0,
                dw: lo & (1 << 6) != 0,
            },
            kind::DEVICE_TLB => Descriptor::DeviceTlb {
                sid: (lo >> 32) as u16,
                addr: hi & !0xFFF,
                size: hi & 1 != 0,
                qdep: ((lo >> 16) & 0x1F) as u8,
                pfsid: (((lo >> 12) & 0xF) | ((lo >> 52) << 4)) as u16,
            },
            kind::IEC => Descriptor::Iec {
                index: (lo & (1 << 4) != 0).then_some((lo >> 32) as u16),
                im: ((lo >> 27) & 0x1F) as u8,
            },
            _ => Descriptor::Wait {
                interrupt: lo & (1 << 4) != 0,
                status_write: lo & (1 << 5) != 0,
                fence: lo & (1 << 6) != 0,
                drain: lo & (1 << 7) != 0,
                status_data: (lo >> 32) as u32,
                status_addr: hi & !3,
            },
        })
    }

    /// Decode a 256-bit descriptor: the low 128 bits as [`Descriptor::decode`], bits 255:128
    /// reserved for the types 1-5.
    pub fn decode_wide(w: [u64; 4]) -> Result<Self, DescError> {
        let d = Self::decode(w[0], w[1])?;
        if !matches!(d, Descriptor::Scalable { .. }) && (w[2] | w[3]) != 0 {
            return Err(DescError::Reserved(descriptor_type(w[0])));
        }
        Ok(d)
    }

    /// The type number.
    pub const fn ty(&self) -> u8 {
        match self {
            Descriptor::ContextCache { .. } => kind::CONTEXT_CACHE,
            Descriptor::Iotlb { .. } => kind::IOTLB,
            Descriptor::DeviceTlb { .. } => kind::DEVICE_TLB,
            Descriptor::Iec { .. } => kind::IEC,
            Descriptor::Wait { .. } => kind::WAIT,
            Descriptor::Scalable { ty } => *ty,
        }
    }

    /// The 128-bit encoding `(lo, hi)`. Field values wider than their field are refused.
    pub fn encode(&self) -> Result<(u64, u64), &'static str> {
        let (lo, hi) = match *self {
            Descriptor::ContextCache {
                granularity,
                did,
                sid,
                fm,
            } => {
                if fm > 3 {
                    return Err("fm");
                }
                (
                    1 | granularity.code() << 4
                        | (did as u64) << 16
                        | (sid as u64) << 32
                        | (fm as u64) << 48,
                    0,
                )
            }
            Descriptor::Iotlb {
                granularity,
                did,
                addr,
                am,
                ih,
                dr,
                dw,
            } => {
                if addr & 0xFFF != 0 {
                    return Err("addr");
                }
                if am > 0x3F {
                    return Err("am");
                }
                (
                    2 | granularity.code() << 4
                        | (dw as u64) << 6
                        | (dr as u64) << 7
                        | (did as u64) << 16,
                    addr | (ih as u64) << 6 | am as u64,
                )
            }
            Descriptor::DeviceTlb {
                sid,
                addr,
                size,
                qdep,
                pfsid,
            } => {
                if addr & 0xFFF != 0 {
                    return Err("addr");
                }
                if qdep > 0x1F {
                    return Err("qdep");
                }
                (
                    3 | ((pfsid as u64) & 0xF) << 12
                        | (qdep as u64) << 16
                        | (sid as u64) << 32
                        | ((pfsid as u64) >> 4) << 52,
                    addr | size as u64,
                )
            }
            Descriptor::Iec { index, im } => {
                if im > 0x1F {
                    return Err("im");
                }
                let (g, idx) = match index {
                    Some(i) => (1u64, i as u64),
                    None => (0, 0),
                };
                (4 | g << 4 | (im as u64) << 27 | idx << 32, 0)
            }
            Descriptor::Wait {
                interrupt,
                status_write,
                fence,
                drain,
                status_data,
                status_addr,
            } => {
                if status_addr & 3 != 0 {
                    return Err("status_addr");
                }
                (
                    5 | (interrupt as u64) << 4
                        | (status_write as u64) << 5
                        | (fence as u64) << 6
                        | (drain as u64) << 7
                        | (status_data as u64) << 32,
                    status_addr,
                )
            }
            Descriptor::Scalable { ty } => {
                if !(kind::PASID_IOTLB..=kind::PAGE_GROUP_RESPONSE).contains(&ty) {
                    return Err("type");
                }
                (ty as u64, 0)
            }
        };
        Ok((lo, hi))
    }
}

#[cfg(test)]
mod tests {
    //! Positions written out from VT-d §6.5.2 independently of the masks above.
    use super::*;

    #[test]
    fn reserved_masks_are_the_architectures() {
        // QEMU's masks where they agree with the architecture (vtd-hardware.md §1.12).
        assert_eq!(reserved_masks(2), Some((0xFFFF_FFFF_0000_F100, 0xF80)));
        assert_eq!(reserved_masks(4).map(|m| m.0), Some(0xFFFF_0000_07FF_F1E0));
        // Context-cache: QEMU's lo mask; the whole high word is reserved architecturally.
        assert_eq!(reserved_masks(1), Some((0xFFFC_0000_0000_F1C0, u64::MAX)));
        // Device-TLB: bits 8:4, 31:21, 51:48 of lo; 11:1 of hi (PFSID and MIP are fields).
        assert_eq!(reserved_masks(3), Some((0x000F_0000_FFE0_01F0, 0xFFE)));
        // Wait: bit 8 and 31:12 of lo, 1:0 of hi (PD, bit 7, is a field).
        assert_eq!(reserved_masks(5), Some((0x0000_0000_FFFF_F100, 3)));
        assert_eq!(reserved_masks(0), None);
        assert_eq!(reserved_masks(6), None);
    }

    #[test]
    fn type_includes_bits_11_9() {
        assert_eq!(descriptor_type(0x5), 5);
        assert_eq!(descriptor_type(0x200 | 0x1), 0x11);
        assert_eq!(
            Descriptor::decode(0x201, 0),
            Err(DescError::UnknownType(0x11))
        );
        assert_eq!(Descriptor::decode(0, 0), Err(DescError::UnknownType(0)));
        assert_eq!(Descriptor::decode(10, 0), Err(DescError::UnknownType(10)));
        for t in 6..=9u64 {
            assert_eq!(
                Descriptor::decode(t | 0xFFFF_0000, u64::MAX),
                Ok(Descriptor::Scalable { ty: t as u8 })
            );
        }
    }

    #[test]
    fn round_trips_and_positions() {
        let cc = Descriptor::ContextCache {
            granularity: Granularity::Selective,
            did: 0x1234,
            sid: 0xABCD,
            fm: 2,
        };
        assert_eq!(cc.encode(), Ok((0x0002_ABCD_1234_0031, 0)));
        let io = Descriptor::Iotlb {
            granularity: Granularity::Selective,
            did: 7,
            addr: 0x1234_5000,
            am: 3,
            ih: true,
            dr: true,
            dw: true,
        };
        assert_eq!(io.encode(), Ok((0x0007_00F2, 0x1234_5043)));
        let dt = Descriptor::DeviceTlb {
            sid: 0x0100,
            addr: 0x7000,
            size: true,
            qdep: 31,
            pfsid: 0xABC5,
        };
        assert_eq!(dt.encode(), Ok((0xABC0_0100_001F_5003, 0x7001)));
        let iec = Descriptor::Iec {
            index: Some(0x40),
            im: 2,
        };
        assert_eq!(iec.encode(), Ok((0x0040_1000_0014, 0)));
        let wait = Descriptor::Wait {
            interrupt: true,
            status_write: true,
            fence: true,
            drain: false,
            status_data: 0xCAFE,
            status_addr: 0x8004,
        };
        assert_eq!(wait.encode(), Ok((0xCAFE_0000_0075, 0x8004)));
        for d in [cc, io, dt, iec, wait] {
            let (lo, hi) = d.encode().unwrap();
            assert_eq!(Descriptor::decode(lo, hi), Ok(d));
            assert_eq!(Descriptor::decode_wide([lo, hi, 0, 0]), Ok(d));
            assert_eq!(
                Descriptor::decode_wide([lo, hi, 0, 1]),
                Err(DescError::Reserved(d.ty()))
            );
        }
    }

    #[test]
    fn every_reserved_bit_is_refused() {
        for ty in 1..=5u8 {
            let (rlo, rhi) = reserved_masks(ty).unwrap();
            let base = ty as u64 | if ty <= 2 { 1 << 4 } else { 0 };
            assert!(Descriptor::decode(base, 0).is_ok(), "type {ty}");
            for b in 0..64 {
                if rlo >> b & 1 == 1 {
                    assert_eq!(
                        Descriptor::decode(base | 1 << b, 0),
                        Err(DescError::Reserved(ty)),
                        "type {ty} lo bit {b}"
                    );
                }
                if rhi >> b & 1 == 1 {
                    assert_eq!(
                        Descriptor::decode(base, 1 << b),
                        Err(DescError::Reserved(ty)),
                        "type {ty} hi bit {b}"
                    );
                }
            }
        }
        // Granularity 0 of context-cache and IOTLB descriptors is reserved.
        assert_eq!(Descriptor::decode(1, 0), Err(DescError::Reserved(1)));
        assert_eq!(Descriptor::decode(2, 0), Err(DescError::Reserved(2)));
    }

    #[test]
    fn device_tlb_sizes_follow_ats() {
        assert_eq!(device_tlb_range(0x1234_5000, false), (0x1234_5000, 4096));
        // Bit 12 clear: 8 KiB.
        assert_eq!(device_tlb_range(0x1234_4000, true), (0x1234_4000, 8192));
        // Bits 12..14 set, 15 clear: 64 KiB at the aligned base.
        assert_eq!(device_tlb_range(0x0000_7000, true), (0, 65536));
        assert_eq!(
            device_tlb_range(0x1_0000_7000, true),
            (0x1_0000_0000, 65536)
        );
        // Every address bit set: all of it.
        assert_eq!(device_tlb_range(!0xFFF, true), (0, 1 << 64));
    }
}
