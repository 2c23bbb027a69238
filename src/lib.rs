//! vtdwalk: a model of Intel VT-d DMA remapping.
//!
//! Layers (each imports only those below it; no module cycles):
//!
//! * [`spec`]: the architecture's vocabulary (registers, CAP/ECAP, entries, widths, fault
//!   reasons), importing nothing from the crate.
//! * [`addr`], [`error`]: address newtypes and the one error enum.
//! * [`mem`]: the [`mem::Memory`] trait the walks are generic over, and the arena behind it.
//! * [`hw`]: the remapping hardware (context lookup, walk, caches, fault recording, batches).
//! * [`driver`]: what software writes (page tables, root/context tables).
//! * [`py`] (feature `python`): thin PyO3 wrappers only, so `cargo test` covers the logic.

// Every module but `mem::raw` (the fenced backing of machine memory, with its soundness argument)
// is free of `unsafe`; that one module allows it.
#![deny(unsafe_code)]

pub mod addr;
pub mod driver;
pub mod error;
pub mod hw;
pub mod mem;
pub mod spec;

#[cfg(feature = "python")]
pub mod py;

pub use addr::{Iova, Maddr, SourceId, PAGE_SIZE};
pub use error::{Error, Result};
pub use mem::PhysMem;

/// A xorshift generator of test inputs from `seed` (not zero): the same sequence every run.
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
