//! Interrupt messages the unit sends (fault events, invalidation-completion events and
//! remapped device interrupts): the MSI address and data written by the unit,
//! decoded into the fields of the x86 MSI format (Intel SDM vol. 3 §11.11; VT-d §5.1.6).
//!
//! Address: bits 31:20 = 0xFEE, destination id 19:12, redirection hint bit 3, destination
//! mode bit 2; with extended interrupt mode the upper address register carries destination
//! bits 31:8 in its bits 31:8. Data: vector 7:0, delivery mode 10:8, trigger mode bit 15.

/// One interrupt message: the 64-bit address and 32-bit data of the write, and where it came
/// from: `sid` and `index` are the requester and the IRTE index of an interrupt the unit
/// remapped (`index` `None` when it passed through unremapped), both `None` for the unit's own
/// events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Msi {
    pub address: u64,
    pub data: u32,
    pub sid: Option<u16>,
    pub index: Option<u16>,
}

impl Msi {
    /// A message of the unit's own (no requester, no index).
    pub const fn new(address: u64, data: u32) -> Self {
        Msi {
            address,
            data,
            sid: None,
            index: None,
        }
    }
    /// Destination APIC id: address bits 19:12, plus upper-address bits 31:8 (x2APIC).
    pub const fn destination(self) -> u32 {
        (((self.address >> 12) & 0xff) | ((self.address >> 32) & 0xffff_ff00)) as u32
    }
    /// Vector: data bits 7:0.
    pub const fn vector(self) -> u8 {
        (self.data & 0xff) as u8
    }
    /// Delivery mode: data bits 10:8 (0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT).
    pub const fn delivery_mode(self) -> u8 {
        ((self.data >> 8) & 7) as u8
    }
    /// Trigger mode: data bit 15 (0 edge, 1 level).
    pub const fn trigger_mode(self) -> u8 {
        ((self.data >> 15) & 1) as u8
    }
    /// Destination mode: address bit 2 (0 physical, 1 logical).
    pub const fn destination_mode(self) -> u8 {
        ((self.address >> 2) & 1) as u8
    }
    /// Redirection hint: address bit 3.
    pub const fn redirection_hint(self) -> u8 {
        ((self.address >> 3) & 1) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_msi_format() {
        // Destination 0x12, logical, RH; vector 0x41, lowest priority, level.
        let m = Msi::new(0xFEE1_200C, 0x8141);
        assert_eq!(
            (
                m.destination(),
                m.vector(),
                m.delivery_mode(),
                m.trigger_mode(),
                m.destination_mode(),
                m.redirection_hint()
            ),
            (0x12, 0x41, 1, 1, 1, 1)
        );
        // x2APIC destination 0x0001_2345: bits 31:8 from the upper address, 7:0 from 19:12.
        let x = Msi::new((0x0001_2300u64 << 32) | 0xFEE4_5000, 0x30);
        assert_eq!(
            (x.destination(), x.vector(), x.delivery_mode()),
            (0x0001_2345, 0x30, 0)
        );
        assert_eq!(
            (x.trigger_mode(), x.destination_mode(), x.redirection_hint()),
            (0, 0, 0)
        );
    }
}
