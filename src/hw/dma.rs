//! The unit's DMA port: a device's read or write of a byte range, as the bus carries it.
//!
//! An access `[iova, iova + len)` is split at 4 KiB boundaries into requests, in address order.
//! With translation enabled (GSTS.TES) each request is translated as [`Remapper::translate`]
//! does (caches, fault recording, fault events) and moves its bytes at once; the first request
//! that faults ends the access: the requests before it have completed, it and the ones after
//! have not. With translation disabled requests go to memory untranslated.
//!
//! The unit's state is held (`&mut self`) for the whole access, so no invalidation or register
//! write can fall between a request's translation and its data.
//!
//! Requests to the interrupt window 0xFEE0_0000-0xFEEF_FFFF (by their untranslated address,
//! whether TE is set or not) never reach translation or memory (VT-d §3.14): a DWORD write
//! (4 bytes, 4-byte aligned) is an interrupt request, handled as [`Remapper::msi`] does with
//! the 4 bytes (little-endian) as its data; any other write and every read there is an
//! unsupported request, refused as a memory access error with nothing written or read and no
//! fault recorded. (QEMU takes only 4-byte writes as interrupts too, and completes reads of the
//! window with no data; here a read is refused, as the architecture blocks it.)

use super::fault::FaultRecord;
use super::ir::MsiError;
use super::remapper::{Remapper, Request};
use crate::mem::MemoryBytes;
use crate::spec::irte::msi;

/// How a DMA access ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// A request faulted; `transferred` bytes before it completed.
    Fault {
        record: FaultRecord,
        transferred: u64,
    },
    /// Memory refused a request (no memory at the address); `transferred` bytes before it
    /// completed.
    Memory {
        error: crate::Error,
        transferred: u64,
    },
    /// The access itself is malformed (it wraps the address space).
    Invalid(crate::Error),
    /// An interrupt request (a DWORD write into the interrupt window) was blocked;
    /// `transferred` bytes before it completed.
    Interrupt { error: MsiError, transferred: u64 },
}

/// A request to the interrupt window that is not an interrupt request.
fn unsupported(addr: u64, len: usize, transferred: usize) -> DmaError {
    DmaError::Memory {
        error: crate::Error::MemoryAccess {
            addr,
            len: len as u64,
            why: "an unsupported request to the interrupt window (only DWORD writes there are \
                  interrupt requests)",
        },
        transferred: transferred as u64,
    }
}

/// The requests of `[iova, iova + len)`: (address, offset in the buffer, length).
fn requests(iova: u64, len: usize) -> Result<impl Iterator<Item = (u64, usize, usize)>, DmaError> {
    if len > 0 && iova.checked_add(len as u64 - 1).is_none() {
        return Err(DmaError::Invalid(crate::Error::invalid(
            "iova",
            format!("{iova:#x} + {len:#x} bytes wraps the address space"),
        )));
    }
    let mut done = 0usize;
    Ok(std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let a = iova.wrapping_add(done as u64);
        let n = ((0x1000 - (a & 0xfff)) as usize).min(len - done);
        let r = (a, done, n);
        done += n;
        Some(r)
    }))
}

impl Remapper {
    /// Where one request goes: its host address, or the fault.
    #[inline]
    fn dma_target<M: MemoryBytes + Sync + ?Sized>(
        &mut self,
        mem: &M,
        sid: u16,
        iova: u64,
        write: bool,
    ) -> Result<u64, FaultRecord> {
        if !self.regs.translation_enabled() {
            return Ok(iova);
        }
        let req = Request {
            sid,
            iova,
            write,
            translation_request: false,
        };
        self.translate(mem, &req).map(|t| t.hpa)
    }

    /// Device `sid` reads `out.len()` bytes at `iova`.
    pub fn dma_read<M: MemoryBytes + Sync + ?Sized>(
        &mut self,
        mem: &M,
        sid: u16,
        iova: u64,
        out: &mut [u8],
    ) -> Result<(), DmaError> {
        for (a, off, n) in requests(iova, out.len())? {
            if msi::in_window(a) {
                return Err(unsupported(a, n, off));
            }
            let hpa = self
                .dma_target(mem, sid, a, false)
                .map_err(|record| DmaError::Fault {
                    record,
                    transferred: off as u64,
                })?;
            let dst = out.get_mut(off..off + n).unwrap_or_default();
            mem.read_bytes(hpa, dst).map_err(|error| DmaError::Memory {
                error,
                transferred: off as u64,
            })?;
        }
        Ok(())
    }

    /// Device `sid` writes `data` at `iova`.
    pub fn dma_write<M: MemoryBytes + Sync + ?Sized>(
        &mut self,
        mem: &mut M,
        sid: u16,
        iova: u64,
        data: &[u8],
    ) -> Result<(), DmaError> {
        for (a, off, n) in requests(iova, data.len())? {
            if msi::in_window(a) {
                let dword = data
                    .get(off..off + n)
                    .and_then(|d| <[u8; 4]>::try_from(d).ok());
                match dword {
                    Some(d) if a % 4 == 0 => {
                        self.msi(&*mem, sid, a, u32::from_le_bytes(d))
                            .map_err(|error| DmaError::Interrupt {
                                error,
                                transferred: off as u64,
                            })?;
                        continue;
                    }
                    _ => return Err(unsupported(a, n, off)),
                }
            }
            let hpa = self
                .dma_target(mem, sid, a, true)
                .map_err(|record| DmaError::Fault {
                    record,
                    transferred: off as u64,
                })?;
            let src = data.get(off..off + n).unwrap_or_default();
            mem.write_bytes(hpa, src)
                .map_err(|error| DmaError::Memory {
                    error,
                    transferred: off as u64,
                })?;
        }
        Ok(())
    }
}
