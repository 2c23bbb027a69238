//! The remapping hardware: what a unit does with a DMA request, reading only machine memory
//! (through [`crate::mem::Memory`]) and never trusting it: any table content ends in the
//! architectural fault, never a panic. Imports only `spec`, `mem`, `addr` and `error`.
//!
//! * [`config`]: CAP/ECAP decoded once into what the checks use.
//! * [`context`]: root entry -> context entry (steps 1-2 of the order of checks).
//! * [`walk`]: the second-level walk, one at a time or many with their leaves prefetched.
//! * [`iotlb`], [`context_cache`]: the caches.
//! * [`fault`]: fault recording registers and counters.
//! * [`iec`]: the interrupt-entry cache (IRTEs by index); [`ir`]: interrupt remapping.
//! * [`mmio`]: the register set (GCMD/GSTS, register-based invalidation, fault events);
//!   [`qi`]: the invalidation queue behind IQA/IQH/IQT;
//!   [`interrupt`]: the messages the unit sends.
//! * [`remapper`]: one unit, the order of checks, translation of one request and the batch
//!   engine ([`batch`]: prefetching look-ahead, threads walking ahead of one in-order pass;
//!   `split`: threads that each own a run of the IOTLB's sets).

pub mod batch;
pub mod config;
pub mod context;
pub mod context_cache;
pub mod dma;
pub mod fault;
pub mod iec;
pub mod interrupt;
pub mod iotlb;
pub mod ir;
pub mod mmio;
pub mod qi;
pub mod remapper;
mod split;
pub mod walk;

pub use config::{UnitConfig, DEFAULT_CAP, DEFAULT_ECAP};
pub use remapper::{Remapper, Request, Stats, Translation};
