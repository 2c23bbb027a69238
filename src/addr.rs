//! Address newtypes: one type per address space, so a machine address can never be passed where
//! an IOVA is expected. Arithmetic is checked; `Debug` prints hex.
//!
//! Range convention for the whole crate: ranges are half-open, `[start, end)`.

use core::fmt;

/// log2 of the base page size (4 KiB).
pub const PAGE_SHIFT: u32 = 12;
/// The base page size in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Mask of the offset within a 4 KiB page.
pub const PAGE_MASK: u64 = PAGE_SIZE - 1;
/// 64-bit entries in one 4 KiB table page.
pub const ENTRIES_PER_PAGE: usize = 512;

macro_rules! addr_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
            /// `self + off`, or None on overflow.
            #[inline]
            pub fn checked_add(self, off: u64) -> Option<Self> {
                self.0.checked_add(off).map(Self)
            }
            /// True when the address is 4 KiB aligned.
            #[inline]
            pub const fn is_page_aligned(self) -> bool {
                self.0 & PAGE_MASK == 0
            }
            /// The 4 KiB frame number.
            #[inline]
            pub const fn pfn(self) -> u64 {
                self.0 >> PAGE_SHIFT
            }
            /// The offset within the 4 KiB page.
            #[inline]
            pub const fn page_offset(self) -> u64 {
                self.0 & PAGE_MASK
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

addr_newtype!(
    /// A host machine (physical) address.
    Maddr
);
addr_newtype!(
    /// An I/O virtual address: what a device puts on the bus, the input of a walk.
    Iova
);

/// A PCI requester id, `bus << 8 | dev << 3 | fn`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct SourceId(pub u16);

impl SourceId {
    /// Build from bus, device (0-31) and function (0-7).
    pub const fn new(bus: u8, dev: u8, func: u8) -> Self {
        Self(((bus as u16) << 8) | (((dev & 0x1f) as u16) << 3) | ((func & 7) as u16))
    }
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub const fn devfn(self) -> u8 {
        self.0 as u8
    }

    /// Parse `"ssss:bb:dd.f"` or `"bb:dd.f"` (hex; device 0-0x1f, function 0-7): the segment
    /// (None when not written) and the source-id, or None when `text` is not of that form.
    pub fn parse(text: &str) -> Option<(Option<u16>, SourceId)> {
        fn hex(s: &str, digits: usize, max: u32) -> Option<u32> {
            if s.is_empty() || s.len() > digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(s, 16).ok().filter(|v| *v <= max)
        }
        let mut parts: Vec<&str> = text.split(':').collect();
        let (dev, func) = parts.pop()?.split_once('.')?;
        let (seg, bus) = match parts.as_slice() {
            [bus] => (None, *bus),
            [seg, bus] => (Some(hex(seg, 4, 0xffff)? as u16), *bus),
            _ => return None,
        };
        let bus = hex(bus, 2, 0xff)? as u8;
        let dev = hex(dev, 2, 0x1f)? as u8;
        let func = hex(func, 1, 7)? as u8;
        Some((seg, SourceId::new(bus, dev, func)))
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({self})")
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.devfn();
        write!(f, "{:02x}:{:02x}.{}", self.bus(), d >> 3, d & 7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_id_parse() {
        let ok = [
            ("03:01.0", None, 0x0308),
            ("0000:03:01.0", Some(0), 0x0308),
            ("ffff:ff:1f.7", Some(0xffff), 0xffff),
            ("00:02.0", None, 0x0010),
            ("1:2.3", None, 0x0113),
        ];
        for (text, seg, sid) in ok {
            assert_eq!(SourceId::parse(text), Some((seg, SourceId(sid))), "{text}");
        }
        for bad in [
            "",
            "03:01",
            "03.01.0",
            "03:20.0",
            "03:01.8",
            "100:01.0",
            "10000:00:01.0",
            "x:01.0",
            "0:0:0:0.0",
            "03:01.0 ",
            "+3:01.0",
            "03:01.",
        ] {
            assert_eq!(SourceId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn source_id_fields() {
        let s = SourceId::new(0x03, 0x01, 0x2);
        assert_eq!(s.0, 0x030a);
        assert_eq!(s.bus(), 3);
        assert_eq!(s.devfn(), 0x0a);
        assert_eq!(s.to_string(), "03:01.2");
    }

    #[test]
    fn checked_add_overflows_to_none() {
        assert_eq!(Maddr(u64::MAX).checked_add(1), None);
        assert_eq!(Iova(0x1000).checked_add(0x1000), Some(Iova(0x2000)));
        assert_eq!(format!("{:?}", Maddr(0x1000)), "Maddr(0x1000)");
        assert!(Maddr(0x3000).is_page_aligned());
        assert_eq!(Iova(0x3abc).page_offset(), 0xabc);
    }
}
