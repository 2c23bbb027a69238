//! Interrupt remapping vocabulary (vtd-hardware.md §1.10; xen-driver.md §6.1; VT-d §5.1, §9.10,
//! §10.4.29): the interrupt remapping table entry (IRTE) in its remapped format, the
//! remappable-format MSI address and data, the source-id qualifier masks, the IRTA register
//! fields, and the compatibility-format message a remapped interrupt becomes.
//!
//! IRTE, 128 bits (`lo` = bits 63:0, `hi` = bits 127:64):
//!
//! | word | bits  | field |
//! |------|-------|-------|
//! | lo   | 0     | P (present) |
//! | lo   | 1     | FPD (fault processing disable) |
//! | lo   | 2     | DM (destination mode: 0 physical, 1 logical) |
//! | lo   | 3     | RH (redirection hint) |
//! | lo   | 4     | TM (trigger mode: 0 edge, 1 level) |
//! | lo   | 7:5   | DLM (delivery mode) |
//! | lo   | 11:8  | AVAIL (software) |
//! | lo   | 14:12 | reserved |
//! | lo   | 15    | IM (1: posted format; reserved here, posted interrupts are not modelled) |
//! | lo   | 23:16 | vector |
//! | lo   | 31:24 | reserved |
//! | lo   | 63:32 | DST: x2APIC mode (IRTA.EIME) the 32-bit APIC id; xAPIC mode the 8-bit APIC id in bits 47:40, bits 39:32 and 63:48 reserved |
//! | hi   | 15:0  | SID |
//! | hi   | 17:16 | SQ (source-id qualifier) |
//! | hi   | 19:18 | SVT (source validation type) |
//! | hi   | 63:20 | reserved |
//!
//! Source validation (SVT): 0 none; 1 the request's source-id equals SID under the SQ mask
//! (SQ 0..=3 ignore no bits, bit 2, bits 2:1, bits 2:0); 2 the request's bus is within
//! [SID\[15:8\], SID\[7:0\]] (start bus, end bus; VT-d §9.10); 3 reserved, a validation failure.

/// Bytes per IRTE.
pub const IRTE_SIZE: u64 = 16;

/// Source-id qualifier masks, by SQ (which requester-id bits are compared under SVT 1).
pub const SQ_MASKS: [u16; 4] = [0xFFFF, 0xFFFB, 0xFFF9, 0xFFF8];

/// Source validation types (IRTE.SVT).
pub mod svt {
    /// No validation.
    pub const NONE: u8 = 0;
    /// Requester-id against SID under the SQ mask.
    pub const SID: u8 = 1;
    /// The requester's bus within SID's start and end bus.
    pub const BUS_RANGE: u8 = 2;
}

/// One interrupt remapping table entry, as its two quadwords.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Irte {
    pub lo: u64,
    pub hi: u64,
}

/// The fields of an IRTE, each in its own unit (the constructor's input).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrteFields {
    pub present: bool,
    pub fpd: bool,
    /// 0 physical, 1 logical.
    pub destination_mode: u8,
    pub redirection_hint: u8,
    /// 0 edge, 1 level.
    pub trigger_mode: u8,
    /// 0..=7.
    pub delivery_mode: u8,
    /// 0..=15.
    pub avail: u8,
    pub vector: u8,
    /// The APIC id: 8 bits in xAPIC form, 32 in x2APIC form (see [`Irte::new`]).
    pub destination: u32,
    pub sid: u16,
    /// 0..=3.
    pub sq: u8,
    /// 0..=3.
    pub svt: u8,
}

impl Irte {
    pub const P: u64 = 1 << 0;
    pub const FPD: u64 = 1 << 1;
    pub const DM: u64 = 1 << 2;
    pub const RH: u64 = 1 << 3;
    pub const TM: u64 = 1 << 4;
    pub const DLM_SHIFT: u32 = 5;
    pub const AVAIL_SHIFT: u32 = 8;
    /// Posted format (IRTE mode), bit 15.
    pub const IM: u64 = 1 << 15;
    pub const VECTOR_SHIFT: u32 = 16;
    pub const DST_SHIFT: u32 = 32;
    /// Reserved bits of `lo` in the remapped format: 14:12, 31:24, and IM (posted interrupts
    /// are not modelled, so IM is treated as reserved).
    pub const LO_RSVD: u64 = 0x7000 | 0xff00_0000 | Self::IM;
    /// DST bits reserved in xAPIC mode (all but 15:8).
    pub const DST_XAPIC_RSVD: u32 = 0xffff_00ff;
    pub const SQ_SHIFT: u32 = 16;
    pub const SVT_SHIFT: u32 = 18;
    /// Reserved bits of `hi`: 63:20.
    pub const HI_RSVD: u64 = !0xf_ffff;

    /// The entry with `f`'s fields. `destination` is the APIC id: with `x2apic` it is DST as
    /// it is (32 bits), otherwise it goes in DST bits 15:8 (the xAPIC form) and must fit 8
    /// bits. A field above its width is refused: `Err((field name, largest value))`.
    pub fn new(f: &IrteFields, x2apic: bool) -> Result<Self, (&'static str, u64)> {
        let limits: [(&'static str, u64, u64); 7] = [
            ("destination_mode", f.destination_mode as u64, 1),
            ("redirection_hint", f.redirection_hint as u64, 1),
            ("trigger_mode", f.trigger_mode as u64, 1),
            ("delivery_mode", f.delivery_mode as u64, 7),
            ("avail", f.avail as u64, 15),
            ("sq", f.sq as u64, 3),
            ("svt", f.svt as u64, 3),
        ];
        for (name, v, max) in limits {
            if v > max {
                return Err((name, max));
            }
        }
        let dst = if x2apic {
            f.destination
        } else if f.destination > 0xff {
            return Err(("destination", 0xff));
        } else {
            f.destination << 8
        };
        let bit = |b: bool, m: u64| if b { m } else { 0 };
        let lo = bit(f.present, Self::P)
            | bit(f.fpd, Self::FPD)
            | bit(f.destination_mode != 0, Self::DM)
            | bit(f.redirection_hint != 0, Self::RH)
            | bit(f.trigger_mode != 0, Self::TM)
            | (f.delivery_mode as u64) << Self::DLM_SHIFT
            | (f.avail as u64) << Self::AVAIL_SHIFT
            | (f.vector as u64) << Self::VECTOR_SHIFT
            | (dst as u64) << Self::DST_SHIFT;
        let hi = f.sid as u64 | (f.sq as u64) << Self::SQ_SHIFT | (f.svt as u64) << Self::SVT_SHIFT;
        Ok(Irte { lo, hi })
    }

    /// The entry from its 16 bytes in memory (little-endian quadwords).
    pub fn from_bytes(b: [u8; 16]) -> Self {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        Irte {
            lo: u64::from_le_bytes(lo),
            hi: u64::from_le_bytes(hi),
        }
    }

    /// The 16 bytes software writes to the table.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..].copy_from_slice(&self.hi.to_le_bytes());
        b
    }

    #[inline]
    pub const fn present(self) -> bool {
        self.lo & Self::P != 0
    }
    #[inline]
    pub const fn fpd(self) -> bool {
        self.lo & Self::FPD != 0
    }
    #[inline]
    pub const fn destination_mode(self) -> u8 {
        (self.lo >> 2) as u8 & 1
    }
    #[inline]
    pub const fn redirection_hint(self) -> u8 {
        (self.lo >> 3) as u8 & 1
    }
    #[inline]
    pub const fn trigger_mode(self) -> u8 {
        (self.lo >> 4) as u8 & 1
    }
    #[inline]
    pub const fn delivery_mode(self) -> u8 {
        (self.lo >> Self::DLM_SHIFT) as u8 & 7
    }
    #[inline]
    pub const fn avail(self) -> u8 {
        (self.lo >> Self::AVAIL_SHIFT) as u8 & 0xf
    }
    #[inline]
    pub const fn posted(self) -> bool {
        self.lo & Self::IM != 0
    }
    #[inline]
    pub const fn vector(self) -> u8 {
        (self.lo >> Self::VECTOR_SHIFT) as u8
    }
    /// DST as stored (bits 63:32).
    #[inline]
    pub const fn dst(self) -> u32 {
        (self.lo >> Self::DST_SHIFT) as u32
    }
    /// The destination APIC id: all of DST in x2APIC mode, DST bits 15:8 in xAPIC mode.
    #[inline]
    pub const fn destination(self, eime: bool) -> u32 {
        if eime {
            self.dst()
        } else {
            (self.dst() >> 8) & 0xff
        }
    }
    #[inline]
    pub const fn sid(self) -> u16 {
        self.hi as u16
    }
    #[inline]
    pub const fn sq(self) -> u8 {
        (self.hi >> Self::SQ_SHIFT) as u8 & 3
    }
    #[inline]
    pub const fn svt(self) -> u8 {
        (self.hi >> Self::SVT_SHIFT) as u8 & 3
    }

    /// True when a bit reserved in the remapped format is set (fault 0x24), with the DST bits
    /// xAPIC mode reserves when `eime` is clear.
    #[inline]
    pub const fn reserved(self, eime: bool) -> bool {
        self.lo & Self::LO_RSVD != 0
            || self.hi & Self::HI_RSVD != 0
            || (!eime && self.dst() & Self::DST_XAPIC_RSVD != 0)
    }

    /// Source validation of a request from `sid` (fault 0x26 when false).
    #[inline]
    pub const fn source_ok(self, sid: u16) -> bool {
        match self.svt() {
            svt::NONE => true,
            svt::SID => {
                let m = SQ_MASKS[self.sq() as usize];
                sid & m == self.sid() & m
            }
            svt::BUS_RANGE => {
                let bus = sid >> 8;
                let (start, end) = (self.sid() >> 8, self.sid() & 0xff);
                start <= bus && bus <= end
            }
            _ => false,
        }
    }

    /// The compatibility-format message the entry delivers (Intel SDM vol. 3 §11.11):
    /// address 0xFEE0_0000 | APIC id 7:0 << 12 | RH << 3 | DM << 2, with the x2APIC id's bits
    /// 31:8 in the upper address (bits 63:40); data vector | DLM << 8 | TM << 15.
    pub const fn message(self, eime: bool) -> (u64, u32) {
        let d = self.destination(eime) as u64;
        let address = msi::WINDOW_BASE
            | (d & 0xff) << 12
            | (self.redirection_hint() as u64) << 3
            | (self.destination_mode() as u64) << 2
            | (d & 0xffff_ff00) << 32;
        let data = self.vector() as u32
            | (self.delivery_mode() as u32) << 8
            | (self.trigger_mode() as u32) << 15;
        (address, data)
    }
}

/// The interrupt address window and the remappable MSI format (VT-d §5.1.5.2).
pub mod msi {
    /// [`WINDOW_BASE`, `WINDOW_END`): DMA writes there are interrupt requests.
    pub const WINDOW_BASE: u64 = 0xFEE0_0000;
    pub const WINDOW_END: u64 = 0xFEF0_0000;
    /// Interrupt format (address bit 4): 1 remappable, 0 compatibility.
    pub const FORMAT_REMAPPABLE: u64 = 1 << 4;
    /// Subhandle valid (address bit 3).
    pub const SHV: u64 = 1 << 3;
    /// Handle bit 15 (address bit 2).
    pub const HANDLE_15: u64 = 1 << 2;
    /// Handle bits 14:0 (address bits 19:5).
    pub const HANDLE_SHIFT: u32 = 5;
    /// Data bits reserved when SHV is set (the subhandle is 15:0).
    pub const DATA_RSVD_SHV: u32 = 0xffff_0000;

    /// Whether `address` is in the interrupt window.
    #[inline]
    pub const fn in_window(address: u64) -> bool {
        WINDOW_BASE <= address && address < WINDOW_END
    }
    /// The 16-bit handle of a remappable-format address.
    #[inline]
    pub const fn handle(address: u64) -> u16 {
        (((address >> HANDLE_SHIFT) & 0x7fff) | ((address & HANDLE_15) << 13)) as u16
    }
    /// The (address, data) of a remappable-format message with `handle`, and with a subhandle
    /// (SHV set, data = subhandle) when given: it selects entry `handle + subhandle`.
    pub const fn remappable(handle: u16, subhandle: Option<u16>) -> (u64, u32) {
        let h = handle as u64;
        let mut address =
            WINDOW_BASE | (h & 0x7fff) << HANDLE_SHIFT | FORMAT_REMAPPABLE | (h >> 15) << 2;
        let data = match subhandle {
            Some(s) => {
                address |= SHV;
                s as u32
            }
            None => 0,
        };
        (address, data)
    }
}

/// IRTA register fields: table address 63:12, EIME bit 11, S 3:0 (2^(S+1) entries).
pub mod irta {
    pub const ADDR_MASK: u64 = !0xfff;
    /// Extended interrupt mode enable (x2APIC destinations).
    pub const EIME: u64 = 1 << 11;
    pub const S_MASK: u64 = 0xf;

    /// Entries in a table of size field `s` (0..=15).
    #[inline]
    pub const fn entries(s: u64) -> u32 {
        2 << (s & S_MASK)
    }
}

#[cfg(test)]
mod tests {
    //! Expected values from the bit tables of VT-d §9.10 and §5.1.5.2, written out here.
    use super::*;

    #[test]
    fn encode_decode_every_field() {
        let f = IrteFields {
            present: true,
            fpd: true,
            destination_mode: 1,
            redirection_hint: 1,
            trigger_mode: 1,
            delivery_mode: 5,
            avail: 0xA,
            vector: 0xEE,
            destination: 0x12,
            sid: 0x1234,
            sq: 2,
            svt: 1,
        };
        let e = Irte::new(&f, false).unwrap();
        // lo: P|FPD|DM|RH|TM = 0x1F, DLM 5 << 5 = 0xA0, AVAIL 0xA << 8, vector << 16, DST
        // 0x1200 << 32.
        assert_eq!(e.lo, 0x0000_1200_00EE_0ABF);
        assert_eq!(e.hi, 0x1234 | 2 << 16 | 1 << 18);
        assert_eq!(
            (
                e.present(),
                e.fpd(),
                e.destination_mode(),
                e.redirection_hint()
            ),
            (true, true, 1, 1)
        );
        assert_eq!(
            (e.trigger_mode(), e.delivery_mode(), e.avail(), e.vector()),
            (1, 5, 0xA, 0xEE)
        );
        assert_eq!((e.destination(false), e.dst()), (0x12, 0x1200));
        assert_eq!((e.sid(), e.sq(), e.svt()), (0x1234, 2, 1));
        assert!(!e.reserved(false));
        assert_eq!(Irte::from_bytes(e.to_bytes()), e);
        // x2APIC form: DST as is; above 8 bits the xAPIC form is refused.
        let wide = IrteFields {
            destination: 0x0001_0203,
            ..f
        };
        assert_eq!(Irte::new(&wide, false).unwrap_err(), ("destination", 0xff));
        let x = Irte::new(&wide, true).unwrap();
        assert_eq!((x.dst(), x.destination(true)), (0x0001_0203, 0x0001_0203));
        assert!(x.reserved(false) && !x.reserved(true));
        assert_eq!(Irte::new(&f, true).unwrap().dst(), 0x12);
        for (name, bad) in [
            ("sq", IrteFields { sq: 4, ..f }),
            ("svt", IrteFields { svt: 4, ..f }),
            (
                "delivery_mode",
                IrteFields {
                    delivery_mode: 8,
                    ..f
                },
            ),
            ("avail", IrteFields { avail: 16, ..f }),
            (
                "trigger_mode",
                IrteFields {
                    trigger_mode: 2,
                    ..f
                },
            ),
        ] {
            assert_eq!(Irte::new(&bad, false).unwrap_err().0, name);
        }
    }

    #[test]
    fn reserved_bits() {
        let ok = Irte {
            lo: 1 | 0x30 << 16 | 0x0100 << 32,
            hi: 0,
        };
        assert!(!ok.reserved(false));
        for lo_bit in [12, 13, 14, 15, 24, 31, 32, 39, 48, 63] {
            let e = Irte {
                lo: ok.lo | 1 << lo_bit,
                hi: 0,
            };
            assert!(e.reserved(false), "lo bit {lo_bit}");
            // With EIME the DST bits are the x2APIC id.
            assert_eq!(e.reserved(true), lo_bit < 32, "lo bit {lo_bit} (x2APIC)");
        }
        for hi_bit in [20, 40, 63] {
            let e = Irte {
                hi: 1 << hi_bit,
                ..ok
            };
            assert!(e.reserved(true), "hi bit {hi_bit}");
        }
    }

    #[test]
    fn source_validation() {
        let with = |svt: u64, sq: u64, sid: u64| Irte {
            lo: 1,
            hi: sid | sq << 16 | svt << 18,
        };
        assert!(with(0, 0, 0x1234).source_ok(0xFFFF));
        // SVT 1: SQ 0 all bits; SQ 1 ignores bit 2; SQ 2 bits 2:1; SQ 3 bits 2:0.
        let e = with(1, 0, 0x0308);
        assert!(e.source_ok(0x0308) && !e.source_ok(0x0309) && !e.source_ok(0x0408));
        let e = with(1, 1, 0x0308);
        assert!(e.source_ok(0x030C) && !e.source_ok(0x030A) && !e.source_ok(0x0309));
        let e = with(1, 2, 0x0308);
        assert!(e.source_ok(0x030E) && e.source_ok(0x030A) && !e.source_ok(0x0309));
        let e = with(1, 3, 0x0308);
        assert!(e.source_ok(0x030F) && !e.source_ok(0x0310));
        // SVT 2: bus 0x05..=0x07 (start in 15:8, end in 7:0); the device part is ignored.
        let e = with(2, 0, 0x0507);
        assert!(e.source_ok(0x0500) && e.source_ok(0x07FF) && e.source_ok(0x0618));
        assert!(!e.source_ok(0x04FF) && !e.source_ok(0x0800));
        // SVT 3: reserved, always a failure.
        assert!(!with(3, 0, 0x0308).source_ok(0x0308));
    }

    #[test]
    fn remappable_address_and_message() {
        // Handle 0x8123: bits 14:0 in 19:5, bit 15 in bit 2; format bit 4.
        let (a, d) = msi::remappable(0x8123, None);
        assert_eq!((a, d), (0xFEE0_0000 | 0x0123 << 5 | 1 << 4 | 1 << 2, 0));
        assert_eq!(msi::handle(a), 0x8123);
        let (a, d) = msi::remappable(7, Some(3));
        assert_eq!((a, d), (0xFEE0_0000 | 7 << 5 | 1 << 4 | 1 << 3, 3));
        // The message: xAPIC id 0x12, logical, RH, vector 0x41, lowest priority, level.
        let e = Irte {
            lo: 1 | Irte::DM | Irte::RH | Irte::TM | 1 << 5 | 0x41 << 16 | 0x1200 << 32,
            hi: 0,
        };
        assert_eq!(e.message(false), (0xFEE1_200C, 0x8141));
        // x2APIC id 0x0001_2345: 7:0 in address 19:12, 31:8 in upper address bits 31:8.
        let e = Irte {
            lo: 1 | 0x30 << 16 | 0x0001_2345 << 32,
            hi: 0,
        };
        assert_eq!(e.message(true), (0x0001_2300 << 32 | 0xFEE4_5000, 0x30));
        assert_eq!((irta::entries(0), irta::entries(15)), (2, 65536));
    }
}
