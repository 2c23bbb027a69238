//! The context cache: the resolved context of each source-id (one slot per source-id), with
//! global, domain-selective and device-selective (function-masked) invalidation.

use super::context::Context;

/// The context cache: the resolved context of each source-id, or nothing.
#[derive(Clone, Debug)]
pub struct ContextCache {
    slots: Vec<Option<Context>>,
    enabled: bool,
}

/// Function-mask semantics of device-selective invalidation: SID bits masked for FM 0..=3.
pub const FM_MASKS: [u16; 4] = [0, 0b100, 0b110, 0b111];

impl ContextCache {
    pub fn new(enabled: bool) -> Self {
        ContextCache {
            slots: if enabled {
                vec![None; 1 << 16]
            } else {
                Vec::new()
            },
            enabled,
        }
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    #[inline]
    pub fn get(&self, sid: u16) -> Option<Context> {
        self.slots.get(sid as usize).copied().flatten()
    }
    #[inline]
    pub fn insert(&mut self, sid: u16, c: Context) {
        if let Some(s) = self.slots.get_mut(sid as usize) {
            *s = Some(c);
        }
    }
    pub fn invalidate_all(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }
    pub fn invalidate_domain(&mut self, did: u16) {
        for s in &mut self.slots {
            if s.is_some_and(|c| c.did == did) {
                *s = None;
            }
        }
    }
    /// Device-selective with function mask `fm` (0..=3): SID bits {}, {2}, {2:1}, {2:0} ignored.
    pub fn invalidate_device(&mut self, sid: u16, fm: u32) {
        let m = FM_MASKS.get(fm as usize).copied().unwrap_or(0b111);
        // Only SIDs that differ from `sid` in the masked bits match: at most eight slots.
        let base = sid & !m;
        for low in (0..8u16).filter(|low| low & !m == 0) {
            if let Some(slot) = self.slots.get_mut((base | low) as usize) {
                *slot = None;
            }
        }
    }
    /// Cached entries.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_cache_function_mask() {
        let c = Context {
            did: 7,
            levels: 4,
            tt: crate::spec::TranslationType::MultiLevel,
            slptptr: 0,
            fpd: false,
        };
        let mut cc = ContextCache::new(true);
        for s in 0x100..0x110u16 {
            cc.insert(s, c);
        }
        cc.invalidate_device(0x104, 2); // bits 2:1 ignored: 0x100..=0x107 with bit 0 == 0
        assert!(cc.get(0x100).is_none() && cc.get(0x106).is_none());
        assert!(cc.get(0x101).is_some() && cc.get(0x108).is_some());
        cc.invalidate_domain(7);
        assert!(cc.is_empty());
        // Every function mask against the definition, around a SID with all low bits mixed.
        for fm in 0..4u32 {
            let m = FM_MASKS[fm as usize];
            let mut cc = ContextCache::new(true);
            for s in 0x100..0x120u16 {
                cc.insert(s, c);
            }
            cc.invalidate_device(0x10d, fm);
            for s in 0x100..0x120u16 {
                let gone = s & !m == 0x10d & !m;
                assert_eq!(cc.get(s).is_none(), gone, "fm {fm} sid {s:#x}");
            }
        }
    }
}
