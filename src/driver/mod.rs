//! What software writes into machine memory for a unit to read: second-level page tables
//! ([`pagetable`]: plan, then execute; atomic under out-of-memory and corrupted tables) and
//! root/context tables ([`context`]). Writes only well-formed entries, through `spec`.
//! Imports only `spec`, `mem`, `addr` and `error`.

pub mod context;
pub mod pagetable;
