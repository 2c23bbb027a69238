//! The crate's one error enum: misuse and resource exhaustion on the driver side and in the
//! memory arena. Architectural DMA faults are not errors; they are data (`hw::fault::FaultRecord`).
//!
//! The PyO3 glue maps every variant to a `vtdwalk.VtdError` subclass in one place
//! (`py::errors`).

use core::fmt;

use crate::addr::Maddr;

/// Everything that can go wrong when the API is called with bad input or memory runs out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// An access to machine memory that no NUMA node owns, or that crosses a node's end.
    MemoryAccess {
        addr: u64,
        len: u64,
        why: &'static str,
    },
    /// No node (neither the preferred one nor any fallback) has `npages` contiguous free pages.
    OutOfMemory { npages: u64, node: Option<u32> },
    /// The host refused memory: address space for a reservation, room for the arena's own
    /// bookkeeping, or the arena's backing limit would be passed. `bytes` is what was asked.
    HostMemory { bytes: u64, why: &'static str },
    /// A free of pages that are not allocated (double free, or never allocated).
    BadFree {
        addr: Maddr,
        npages: u64,
        why: &'static str,
    },
    /// An argument out of its range, misaligned, or inconsistent; `what` names it.
    InvalidArgument { what: &'static str, detail: String },
}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// Shorthand for `InvalidArgument`.
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MemoryAccess { addr, len, why } => {
                write!(f, "memory access of {len:#x} bytes at {addr:#x}: {why}")
            }
            Error::OutOfMemory {
                npages,
                node: Some(n),
            } => {
                write!(
                    f,
                    "out of memory: no {npages} contiguous free pages on node {n} or any other"
                )
            }
            Error::OutOfMemory { npages, node: None } => {
                write!(
                    f,
                    "out of memory: no {npages} contiguous free pages on any node"
                )
            }
            Error::HostMemory { bytes, why } => {
                write!(f, "out of host memory: {bytes:#x} bytes: {why}")
            }
            Error::BadFree { addr, npages, why } => {
                write!(f, "bad free of {npages} pages at {addr}: {why}")
            }
            Error::InvalidArgument { what, detail } => write!(f, "{what}: {detail}"),
        }
    }
}

impl std::error::Error for Error {}
