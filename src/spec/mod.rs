//! The architecture's vocabulary, importing nothing from the rest of the crate: register
//! offsets ([`regs`]), CAP and ECAP ([`cap`]), address widths ([`width`]), root/context
//! entries and second-level PTEs ([`entry`]), fault reasons ([`fault`]), invalidation queue
//! descriptors ([`qi`]), IRTEs and the interrupt message formats ([`irte`]). Everything else
//! decodes through here. PASID entries (§1.6) and first-stage PTEs (§1.8) get their files here
//! when the features that use them land.

pub mod cap;
pub mod entry;
pub mod fault;
pub mod irte;
pub mod qi;
pub mod regs;
pub mod width;

pub use cap::{Cap, Ecap, Field};
pub use entry::*;
pub use fault::FaultReason;
pub use width::*;
