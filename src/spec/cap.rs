//! CAP and ECAP (vtd-hardware.md §1.3): typed values with named fields and a builder,
//! `Cap::new().with_nd(6).with_sagaw(0b0110)...`, and the default values the model starts from.
//! Single-bit fields read as `bool`, wider ones as `u64`; every field is also listed in
//! [`Cap::FIELDS`] / [`Ecap::FIELDS`] (name, low bit, width) for generic access by name.

/// One named field of a register: its name, lowest bit and width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub lo: u32,
    pub width: u32,
}

impl Field {
    /// The field's mask once shifted down (all ones over `width` bits).
    pub const fn max(self) -> u64 {
        if self.width >= 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        }
    }
    /// The field's value in `reg`.
    pub const fn get(self, reg: u64) -> u64 {
        (reg >> self.lo) & self.max()
    }
    /// `reg` with the field set to `v` (`None` if `v` does not fit the field).
    pub const fn set(self, reg: u64, v: u64) -> Option<u64> {
        if v > self.max() {
            return None;
        }
        let m = self.max() << self.lo;
        Some((reg & !m) | (v << self.lo))
    }
}

macro_rules! register {
    (
        $(#[$meta:meta])*
        $name:ident {
            flags { $( $(#[$fm:meta])* $flag:ident, $wflag:ident: $bit:literal; )* }
            fields { $( $(#[$vm:meta])* $field:ident, $wfield:ident: $hi:literal, $lo:literal; )* }
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Every named field, flags first, in bit order within each kind.
            pub const FIELDS: &'static [Field] = &[
                $( Field { name: stringify!($flag), lo: $bit, width: 1 }, )*
                $( Field { name: stringify!($field), lo: $lo, width: $hi - $lo + 1 }, )*
            ];

            /// All fields zero.
            pub const fn new() -> Self {
                Self(0)
            }
            /// The raw register value.
            pub const fn bits(self) -> u64 {
                self.0
            }
            /// The field named `name`, if there is one.
            pub fn field(name: &str) -> Option<Field> {
                Self::FIELDS.iter().copied().find(|f| f.name == name)
            }
            $(
                $(#[$fm])*
                #[inline]
                pub const fn $flag(self) -> bool {
                    self.0 & (1u64 << $bit) != 0
                }
                #[inline]
                pub const fn $wflag(self, v: bool) -> Self {
                    Self((self.0 & !(1u64 << $bit)) | ((v as u64) << $bit))
                }
            )*
            $(
                $(#[$vm])*
                #[inline]
                pub const fn $field(self) -> u64 {
                    (self.0 >> $lo) & ((1u64 << ($hi - $lo + 1)) - 1)
                }
                /// Set the field; bits of `v` beyond the field's width are dropped.
                #[inline]
                pub const fn $wfield(self, v: u64) -> Self {
                    let m = ((1u64 << ($hi - $lo + 1)) - 1) << $lo;
                    Self((self.0 & !m) | ((v << $lo) & m))
                }
            )*
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }
    };
}

register! {
    /// The capability register (CAP, offset 0x08).
    Cap {
        flags {
            /// Advanced fault logging.
            afl, with_afl: 3;
            /// Required write-buffer flushing.
            rwbf, with_rwbf: 4;
            /// Protected low-memory region.
            plmr, with_plmr: 5;
            /// Protected high-memory region.
            phmr, with_phmr: 6;
            /// Caching mode: not-present entries may be cached.
            cm, with_cm: 7;
            /// Zero-length read.
            zlr, with_zlr: 22;
            /// Page-selective invalidation.
            psi, with_psi: 39;
            /// Write draining.
            dwd, with_dwd: 54;
            /// Read draining.
            drd, with_drd: 55;
            /// First-stage 1 GiB pages.
            fs1gp, with_fs1gp: 56;
            /// Posted interrupts.
            pi, with_pi: 59;
            /// First-stage 5-level paging.
            fs5lp, with_fs5lp: 60;
            /// SIRTP flushes the interrupt entry cache.
            esirtps, with_esirtps: 62;
            /// SRTP flushes every cache.
            esrtps, with_esrtps: 63;
        }
        fields {
            /// Number of domains: 2^(4 + 2 ND) DIDs (ND 6: 16-bit DIDs).
            nd, with_nd: 2, 0;
            /// Supported adjusted guest address widths: bit 1 39-bit, 2 48-bit, 3 57-bit.
            sagaw, with_sagaw: 12, 8;
            /// Maximum guest address width - 1.
            mgaw, with_mgaw: 21, 16;
            /// Fault recording register offset / 16.
            fro, with_fro: 33, 24;
            /// Second-level large page support: bit 0 2 MiB, bit 1 1 GiB.
            sllps, with_sllps: 37, 34;
            /// Number of fault recording registers - 1.
            nfr, with_nfr: 47, 40;
            /// Maximum address mask value of page-selective invalidation.
            mamv, with_mamv: 53, 48;
        }
    }
}

register! {
    /// The extended capability register (ECAP, offset 0x10).
    Ecap {
        flags {
            /// Page-walk coherency.
            c, with_c: 0;
            /// Queued invalidation.
            qi, with_qi: 1;
            /// Device-IOTLB (ATS): translation type 1 contexts.
            dt, with_dt: 2;
            /// Interrupt remapping.
            ir, with_ir: 3;
            /// Extended interrupt mode (x2APIC).
            eim, with_eim: 4;
            /// Pass-through (translation type 2).
            pt, with_pt: 6;
            /// Snoop control.
            sc, with_sc: 7;
            /// Nested translation.
            nest, with_nest: 26;
            /// Page requests.
            prs, with_prs: 29;
            /// Execute requests.
            ers, with_ers: 30;
            /// Supervisor requests.
            srs, with_srs: 31;
            /// No write flag support.
            nwfs, with_nwfs: 33;
            /// Extended accessed flag.
            eafs, with_eafs: 34;
            /// PASID support.
            pasid, with_pasid: 40;
            /// Device-TLB invalidation throttle.
            dit, with_dit: 41;
            /// Page-request drain.
            pds, with_pds: 42;
            /// Scalable-mode translation.
            smts, with_smts: 43;
            /// Virtual command.
            vcs, with_vcs: 44;
            /// Second-stage accessed/dirty.
            slads, with_slads: 45;
            /// Second-stage translation.
            ssts, with_ssts: 46;
            /// First-stage translation.
            fsts, with_fsts: 47;
            /// Scalable-mode page-walk coherency.
            smpwcs, with_smpwcs: 48;
            /// RID-PASID.
            rps, with_rps: 49;
        }
        fields {
            /// IOTLB register offset / 16.
            iro, with_iro: 17, 8;
            /// Maximum handle mask value.
            mhmv, with_mhmv: 23, 20;
            /// PASID size - 1 (bits).
            pss, with_pss: 39, 35;
        }
    }
}

/// CAP.SAGAW bits: the supported page-table depths.
pub mod sagaw {
    /// 39-bit, 3 levels.
    pub const AW39: u64 = 1 << 1;
    /// 48-bit, 4 levels.
    pub const AW48: u64 = 1 << 2;
    /// 57-bit, 5 levels.
    pub const AW57: u64 = 1 << 3;
}

/// CAP.SLLPS bits.
pub mod sllps {
    pub const SP_2M: u64 = 1 << 0;
    pub const SP_1G: u64 = 1 << 1;
}

impl Cap {
    /// QEMU's CAP for aw-bits=48 with draining on (vtd-hardware.md §1.3: 0x80D2008C222F0606):
    /// ND 6, SAGAW 39+48-bit, MGAW 47, FRO 0x22, 2M+1G pages, PSI, one FRCD, MAMV 18,
    /// DWD, DRD, ESRTPS.
    pub const DEFAULT: Cap = Cap::new()
        .with_nd(6)
        .with_sagaw(sagaw::AW39 | sagaw::AW48)
        .with_mgaw(48 - 1)
        .with_fro(0x220 >> 4)
        .with_sllps(sllps::SP_2M | sllps::SP_1G)
        .with_psi(true)
        .with_nfr(0)
        .with_mamv(18)
        .with_dwd(true)
        .with_drd(true)
        .with_esrtps(true);

    /// DID bits the unit supports: 4 + 2 ND (ND 6 and 7 give 16).
    pub const fn did_bits(self) -> u32 {
        let b = 4 + 2 * self.nd() as u32;
        if b > 16 {
            16
        } else {
            b
        }
    }
    /// Mask of the DID bits the unit supports: a DID is its low [`Cap::did_bits`] bits.
    pub const fn did_mask(self) -> u16 {
        let b = self.did_bits();
        if b >= 16 {
            u16::MAX
        } else {
            (1u16 << b) - 1
        }
    }
    /// MGAW + 1: the widest input address, in bits.
    pub const fn aw_bits(self) -> u32 {
        self.mgaw() as u32 + 1
    }
}

impl Ecap {
    /// QEMU's TCG ECAP (0x00F00F4A: QI, IR, PT, IRO 0xF, MHMV 15) plus DT (bit 2), so
    /// device-IOTLB contexts (TT 1) and translation requests can be modelled out of the box.
    pub const DEFAULT: Ecap = Ecap::new()
        .with_qi(true)
        .with_dt(true)
        .with_ir(true)
        .with_pt(true)
        .with_iro(0xF)
        .with_mhmv(15);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_spec_values() {
        assert_eq!(Cap::DEFAULT.bits(), 0x80D2_008C_222F_0606);
        assert_eq!(Ecap::DEFAULT.bits(), 0x0000_0000_00F0_0F4E);
        // TCG default without DT.
        assert_eq!(Ecap::DEFAULT.with_dt(false).bits(), 0x00F0_0F4A);
    }

    #[test]
    fn computed_values_of_the_spec_table() {
        // vtd-hardware.md §1.3 "Computed values".
        let aw39 = Cap::DEFAULT.with_sagaw(sagaw::AW39).with_mgaw(38);
        assert_eq!(aw39.bits(), 0x80D2_008C_2226_0206);
        assert_eq!(Cap::DEFAULT.with_cm(true).bits(), 0x80D2_008C_222F_0686);
        assert_eq!(Cap::DEFAULT.with_fs1gp(true).bits(), 0x81D2_008C_222F_0606);
        let tcg = Ecap::DEFAULT.with_dt(false);
        assert_eq!(tcg.with_eim(true).bits(), 0x00F0_0F5A);
        assert_eq!(tcg.with_ir(false).with_mhmv(0).bits(), 0x0F42);
        assert_eq!(
            tcg.with_smts(true).with_ssts(true).with_srs(true).bits(),
            0x0000_4800_80F0_0F4A
        );
        assert_eq!(
            tcg.with_smts(true).with_fsts(true).bits(),
            0x0000_8800_00F0_0F4A
        );
        let full = tcg
            .with_dt(true)
            .with_smts(true)
            .with_fsts(true)
            .with_pasid(true)
            .with_pds(true)
            .with_pss(7)
            .with_prs(true)
            .with_nwfs(true);
        assert_eq!(full.bits(), 0x0000_8D3A_20F0_0F4E);
    }

    #[test]
    fn fields_decode_the_default() {
        let c = Cap::DEFAULT;
        assert_eq!(
            (
                c.nd(),
                c.sagaw(),
                c.mgaw(),
                c.fro(),
                c.sllps(),
                c.nfr(),
                c.mamv()
            ),
            (6, 0b0110, 47, 0x22, 0b11, 0, 18)
        );
        assert!(c.psi() && c.dwd() && c.drd() && c.esrtps() && !c.cm() && !c.fs1gp());
        assert_eq!((c.did_bits(), c.did_mask(), c.aw_bits()), (16, 0xffff, 48));
        let e = Ecap::DEFAULT;
        assert!(e.qi() && e.dt() && e.ir() && e.pt() && !e.sc() && !e.eim() && !e.c());
        assert_eq!((e.iro(), e.mhmv(), e.pss()), (0xF, 15, 0));
    }

    #[test]
    fn did_width_from_nd() {
        // 2^(4 + 2 ND) domains: ND 0 4 bits ... ND 6 16 bits; 7 is reserved, treated as 16.
        for (nd, bits, mask) in [
            (0, 4, 0xf),
            (1, 6, 0x3f),
            (2, 8, 0xff),
            (3, 10, 0x3ff),
            (4, 12, 0xfff),
            (5, 14, 0x3fff),
            (6, 16, 0xffff),
            (7, 16, 0xffff),
        ] {
            let c = Cap::new().with_nd(nd);
            assert_eq!((c.did_bits(), c.did_mask()), (bits, mask), "ND {nd}");
        }
    }

    #[test]
    fn field_table_round_trips() {
        for f in Cap::FIELDS.iter().chain(Ecap::FIELDS) {
            let v = f.set(0, f.max()).expect("max fits");
            assert_eq!(f.get(v), f.max(), "{}", f.name);
            assert_eq!(v.count_ones(), f.width, "{}", f.name);
            assert_eq!(f.set(0, f.max() + 1), None, "{}", f.name);
        }
        assert_eq!(
            Cap::field("mgaw").map(|f| f.get(Cap::DEFAULT.bits())),
            Some(47)
        );
        assert_eq!(Cap::field("nope"), None);
        // No two fields of a register overlap.
        for fields in [Cap::FIELDS, Ecap::FIELDS] {
            let mut seen = 0u64;
            for f in fields {
                let m = f.max() << f.lo;
                assert_eq!(seen & m, 0, "{}", f.name);
                seen |= m;
            }
        }
    }

    #[test]
    fn builder_drops_bits_beyond_a_field() {
        assert_eq!(Cap::new().with_nd(0xff).nd(), 7);
        assert_eq!(Cap::new().with_nd(0xff).bits(), 7);
    }
}
