//! vtdwalk: a model of Intel VT-d DMA remapping.
//!
//! The pure Rust core (this crate without the `python` feature) holds the hot paths: the
//! simulated machine memory ([`mem`]), the entry formats ([`entry`]), and, on top of them, the
//! driver-side page tables and the hardware-side walk. The PyO3 glue lives in [`py`], behind the
//! `python` feature, as thin wrappers only, so `cargo test` covers the logic without Python.

#![forbid(unsafe_code)]

pub mod addr;
pub mod context;
pub mod error;
pub mod fault;
pub mod iotlb;
pub mod mem;
pub mod pagetable;
pub mod spec;
pub mod translate;

#[cfg(feature = "python")]
pub mod py;

pub use addr::{Iova, Maddr, SourceId, PAGE_SIZE};
pub use error::{Error, Result};
pub use mem::PhysMem;
