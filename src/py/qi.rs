//! `Descriptor` (invalidation queue descriptors, composed and decoded by
//! [`crate::spec::qi`]) and `DeviceTlbInvalidation` (what a unit's queue asked of a device).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args::{device, Flag, U64};
use super::errors::Exc;
use crate::hw::qi::DeviceTlbInvalidation;
use crate::spec::qi::{kind, DescError, Descriptor, Granularity};

fn field(name: &str, v: u64, max: u64) -> PyResult<u64> {
    if v <= max {
        Ok(v)
    } else {
        Err(Exc::InvalidArgument.msg(format!("{name}: {v:#x} is above {max:#x}")))
    }
}

fn aligned(name: &str, v: u64, align: u64) -> PyResult<u64> {
    if v % align == 0 {
        Ok(v)
    } else {
        Err(Exc::InvalidArgument.msg(format!("{name}: {v:#x} is not {align}-byte aligned")))
    }
}

fn granularity(g: &str, selective: &str) -> PyResult<Granularity> {
    match g {
        "global" => Ok(Granularity::Global),
        "domain" => Ok(Granularity::Domain),
        s if s == selective => Ok(Granularity::Selective),
        _ => Err(Exc::InvalidArgument.msg(format!(
            "granularity: {g:?} is not \"global\", \"domain\" or \"{selective}\""
        ))),
    }
}

/// An invalidation queue descriptor (VT-d §6.5.2): its two 64-bit words and their fields.
/// Built by the constructors (`context_cache`, `iotlb`, `device_tlb`, `iec`, `wait`) or read
/// back with `decode`; a word pair that is no valid descriptor decodes with `kind`
/// "invalid" and the reason in `error`. Fields a descriptor type does not have are None.
#[pyclass(name = "Descriptor", module = "vtdwalk._core", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyDescriptor {
    lo: u64,
    hi: u64,
    d: Result<Descriptor, DescErr>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum DescErr {
    Unknown,
    Reserved,
}

impl PyDescriptor {
    fn of(d: Descriptor) -> PyResult<Self> {
        let (lo, hi) = d
            .encode()
            .map_err(|what| Exc::InvalidArgument.msg(format!("{what}: out of range")))?;
        Ok(PyDescriptor { lo, hi, d: Ok(d) })
    }
}

#[pymethods]
impl PyDescriptor {
    /// A context-cache invalidation (type 1): granularity "global", "domain" (DID) or
    /// "device" (SID with the function mask FM 0-3).
    #[staticmethod]
    #[pyo3(
        signature = (granularity, did=U64(0), sid=None, fm=U64(0)),
        text_signature = "(granularity, did=0, sid=0, fm=0)"
    )]
    fn context_cache(
        granularity: &str,
        did: U64,
        sid: Option<&Bound<'_, PyAny>>,
        fm: U64,
    ) -> PyResult<Self> {
        Self::of(Descriptor::ContextCache {
            granularity: self::granularity(granularity, "device")?,
            did: field("did", did.0, 0xffff)? as u16,
            sid: sid.map(|s| device(s, "sid")).transpose()?.unwrap_or(0),
            fm: field("fm", fm.0, 3)? as u8,
        })
    }

    /// An IOTLB invalidation (type 2): granularity "global", "domain" (DID) or "page" (DID,
    /// the 4 KiB-aligned address and the address mask AM: 2^am pages), the invalidation hint
    /// IH and the read / write drains DR, DW.
    #[staticmethod]
    #[pyo3(
        signature = (granularity, did=U64(0), addr=U64(0), am=U64(0), ih=Flag(false), dr=Flag(false), dw=Flag(false)),
        text_signature = "(granularity, did=0, addr=0, am=0, ih=False, dr=False, dw=False)"
    )]
    fn iotlb(
        granularity: &str,
        did: U64,
        addr: U64,
        am: U64,
        ih: Flag,
        dr: Flag,
        dw: Flag,
    ) -> PyResult<Self> {
        Self::of(Descriptor::Iotlb {
            granularity: self::granularity(granularity, "page")?,
            did: field("did", did.0, 0xffff)? as u16,
            addr: aligned("addr", addr.0, 4096)?,
            am: field("am", am.0, 0x3f)? as u8,
            ih: ih.0,
            dr: dr.0,
            dw: dw.0,
        })
    }

    /// A device-TLB invalidation (type 3) for device `sid`: the 4 KiB-aligned address with the
    /// size bit S (ATS encoding: with S the trailing 1s of the page number widen the range),
    /// the device's invalidation queue depth `qdep` (0-31) and the physical function's
    /// source-id `pfsid`.
    #[staticmethod]
    #[pyo3(
        signature = (sid, addr, size=Flag(false), qdep=U64(0), pfsid=None),
        text_signature = "(sid, addr, size=False, qdep=0, pfsid=0)"
    )]
    fn device_tlb(
        sid: &Bound<'_, PyAny>,
        addr: U64,
        size: Flag,
        qdep: U64,
        pfsid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Self::of(Descriptor::DeviceTlb {
            sid: device(sid, "sid")?,
            addr: aligned("addr", addr.0, 4096)?,
            size: size.0,
            qdep: field("qdep", qdep.0, 0x1f)? as u8,
            pfsid: pfsid.map(|s| device(s, "pfsid")).transpose()?.unwrap_or(0),
        })
    }

    /// An interrupt-entry-cache invalidation (type 4): every entry (`index` None), or the
    /// 2^im entries from `index` aligned down to 2^im.
    #[staticmethod]
    #[pyo3(signature = (index=None, im=U64(0)), text_signature = "(index=None, im=0)")]
    fn iec(index: Option<U64>, im: U64) -> PyResult<Self> {
        let index = index.map(|i| field("index", i.0, 0xffff)).transpose()?;
        Self::of(Descriptor::Iec {
            index: index.map(|i| i as u16),
            im: field("im", im.0, 0x1f)? as u8,
        })
    }

    /// An invalidation wait (type 5): with `status_addr` (4-byte aligned) the unit writes the
    /// 32-bit `status_data` there (SW); `interrupt` (IF) sets ICS.IWC and sends the
    /// completion event; `fence` (FN).
    #[staticmethod]
    #[pyo3(
        signature = (status_addr=None, status_data=U64(0), interrupt=Flag(false), fence=Flag(false)),
        text_signature = "(status_addr=None, status_data=0, interrupt=False, fence=False)"
    )]
    fn wait(
        status_addr: Option<U64>,
        status_data: U64,
        interrupt: Flag,
        fence: Flag,
    ) -> PyResult<Self> {
        let addr = status_addr
            .map(|a| aligned("status_addr", a.0, 4))
            .transpose()?;
        Self::of(Descriptor::Wait {
            interrupt: interrupt.0,
            status_write: addr.is_some(),
            fence: fence.0,
            drain: false,
            status_data: field("status_data", status_data.0, u32::MAX as u64)? as u32,
            status_addr: addr.unwrap_or(0),
        })
    }

    /// The descriptor in the words `lo` (bits 63:0) and `hi` (bits 127:64).
    #[staticmethod]
    fn decode(lo: U64, hi: U64) -> Self {
        let d = Descriptor::decode(lo.0, hi.0).map_err(|e| match e {
            DescError::UnknownType(_) => DescErr::Unknown,
            DescError::Reserved(_) => DescErr::Reserved,
        });
        PyDescriptor {
            lo: lo.0,
            hi: hi.0,
            d,
        }
    }

    /// "context_cache", "iotlb", "device_tlb", "iec", "wait", "pasid_iotlb", "pasid_cache",
    /// "pasid_device_tlb", "page_group_response", or "invalid".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.d {
            Err(_) => "invalid",
            Ok(d) => match d.ty() {
                kind::CONTEXT_CACHE => "context_cache",
                kind::IOTLB => "iotlb",
                kind::DEVICE_TLB => "device_tlb",
                kind::IEC => "iec",
                kind::WAIT => "wait",
                kind::PASID_IOTLB => "pasid_iotlb",
                kind::PASID_CACHE => "pasid_cache",
                kind::PASID_DEVICE_TLB => "pasid_device_tlb",
                _ => "page_group_response",
            },
        }
    }

    /// Why the words are no valid descriptor ("unknown type", "reserved bits set"), or None.
    #[getter]
    fn error(&self) -> Option<&'static str> {
        match self.d {
            Ok(_) => None,
            Err(DescErr::Unknown) => Some("unknown type"),
            Err(DescErr::Reserved) => Some("reserved bits set"),
        }
    }

    /// The type number: bits 3:0 with bits 11:9 above them.
    #[getter]
    #[pyo3(name = "type")]
    fn ty(&self) -> u8 {
        crate::spec::qi::descriptor_type(self.lo)
    }

    /// Bits 63:0.
    #[getter]
    fn lo(&self) -> u64 {
        self.lo
    }

    /// Bits 127:64.
    #[getter]
    fn hi(&self) -> u64 {
        self.hi
    }

    /// Context-cache / IOTLB granularity: "global", "domain", "device" or "page"; None else.
    #[getter]
    fn granularity(&self) -> Option<&'static str> {
        let g = |g: Granularity, sel: &'static str| match g {
            Granularity::Global => "global",
            Granularity::Domain => "domain",
            Granularity::Selective => sel,
        };
        match self.d.ok()? {
            Descriptor::ContextCache { granularity, .. } => Some(g(granularity, "device")),
            Descriptor::Iotlb { granularity, .. } => Some(g(granularity, "page")),
            _ => None,
        }
    }

    /// Domain id (context-cache, IOTLB).
    #[getter]
    fn did(&self) -> Option<u16> {
        match self.d.ok()? {
            Descriptor::ContextCache { did, .. } | Descriptor::Iotlb { did, .. } => Some(did),
            _ => None,
        }
    }

    /// Source-id (context-cache, device-TLB).
    #[getter]
    fn sid(&self) -> Option<u16> {
        match self.d.ok()? {
            Descriptor::ContextCache { sid, .. } | Descriptor::DeviceTlb { sid, .. } => Some(sid),
            _ => None,
        }
    }

    /// Function mask (context-cache).
    #[getter]
    fn fm(&self) -> Option<u8> {
        match self.d.ok()? {
            Descriptor::ContextCache { fm, .. } => Some(fm),
            _ => None,
        }
    }

    /// Address bits 63:12 (IOTLB, device-TLB).
    #[getter]
    fn addr(&self) -> Option<u64> {
        match self.d.ok()? {
            Descriptor::Iotlb { addr, .. } | Descriptor::DeviceTlb { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// Address mask (IOTLB): 2^am pages.
    #[getter]
    fn am(&self) -> Option<u8> {
        match self.d.ok()? {
            Descriptor::Iotlb { am, .. } => Some(am),
            _ => None,
        }
    }

    /// Invalidation hint (IOTLB).
    #[getter]
    fn ih(&self) -> Option<bool> {
        match self.d.ok()? {
            Descriptor::Iotlb { ih, .. } => Some(ih),
            _ => None,
        }
    }

    /// Drain reads (IOTLB).
    #[getter]
    fn dr(&self) -> Option<bool> {
        match self.d.ok()? {
            Descriptor::Iotlb { dr, .. } => Some(dr),
            _ => None,
        }
    }

    /// Drain writes (IOTLB).
    #[getter]
    fn dw(&self) -> Option<bool> {
        match self.d.ok()? {
            Descriptor::Iotlb { dw, .. } => Some(dw),
            _ => None,
        }
    }

    /// Size bit S (device-TLB).
    #[getter]
    fn size(&self) -> Option<bool> {
        match self.d.ok()? {
            Descriptor::DeviceTlb { size, .. } => Some(size),
            _ => None,
        }
    }

    /// Invalidation queue depth of the device (device-TLB; 0 means 32).
    #[getter]
    fn qdep(&self) -> Option<u8> {
        match self.d.ok()? {
            Descriptor::DeviceTlb { qdep, .. } => Some(qdep),
            _ => None,
        }
    }

    /// Physical function source-id (device-TLB).
    #[getter]
    fn pfsid(&self) -> Option<u16> {
        match self.d.ok()? {
            Descriptor::DeviceTlb { pfsid, .. } => Some(pfsid),
            _ => None,
        }
    }

    /// Interrupt index (interrupt-entry cache; None for a global invalidation).
    #[getter]
    fn index(&self) -> Option<u16> {
        match self.d.ok()? {
            Descriptor::Iec { index, .. } => index,
            _ => None,
        }
    }

    /// Index mask (interrupt-entry cache).
    #[getter]
    fn im(&self) -> Option<u8> {
        match self.d.ok()? {
            Descriptor::Iec { im, .. } => Some(im),
            _ => None,
        }
    }

    /// Status address (wait with SW; None without).
    #[getter]
    fn status_addr(&self) -> Option<u64> {
        match self.d.ok()? {
            Descriptor::Wait {
                status_write: true,
                status_addr,
                ..
            } => Some(status_addr),
            _ => None,
        }
    }

    /// Status data (wait).
    #[getter]
    fn status_data(&self) -> Option<u32> {
        match self.d.ok()? {
            Descriptor::Wait { status_data, .. } => Some(status_data),
            _ => None,
        }
    }

    /// Interrupt flag IF (wait).
    #[getter]
    fn interrupt(&self) -> Option<bool> {
        match self.d.ok()? {
            Descriptor::Wait { interrupt, .. } => Some(interrupt),
            _ => None,
        }
    }

    /// Fence flag FN (wait).
    #[getter]
    fn fence(&self) -> Option<bool> {
        match self.d.ok()? {
            Descriptor::Wait { fence, .. } => Some(fence),
            _ => None,
        }
    }

    /// The descriptor as it lies in the queue: 16 bytes, or 32 (bits 255:128 zero) for a
    /// queue of 256-bit descriptors.
    #[pyo3(signature = (width=U64(16)), text_signature = "($self, width=16)")]
    fn to_bytes<'py>(&self, py: Python<'py>, width: U64) -> PyResult<Bound<'py, PyBytes>> {
        if width.0 != 16 && width.0 != 32 {
            return Err(Exc::InvalidArgument.msg(format!("width: {} is not 16 or 32", width.0)));
        }
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..16].copy_from_slice(&self.hi.to_le_bytes());
        Ok(PyBytes::new(py, &b[..width.0 as usize]))
    }

    fn __repr__(&self) -> String {
        format!(
            "Descriptor(kind={:?}, lo={:#x}, hi={:#x})",
            self.kind(),
            self.lo,
            self.hi
        )
    }
}

/// A device-TLB invalidation the unit's queue asked a device for (descriptor type 3).
#[pyclass(
    name = "DeviceTlbInvalidation",
    module = "vtdwalk._core",
    frozen,
    eq,
    hash,
    get_all
)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyDeviceTlbInvalidation {
    /// The device's source-id.
    sid: u16,
    /// First byte covered (aligned to `size`).
    address: u64,
    /// Bytes covered: 4096, or the ATS-encoded size (2**64 for everything).
    size: u128,
    /// The device's invalidation queue depth as written (0 means 32).
    qdep: u8,
    /// The physical function's source-id.
    pfsid: u16,
}

impl From<DeviceTlbInvalidation> for PyDeviceTlbInvalidation {
    fn from(e: DeviceTlbInvalidation) -> Self {
        PyDeviceTlbInvalidation {
            sid: e.sid,
            address: e.address,
            size: e.size,
            qdep: e.qdep,
            pfsid: e.pfsid,
        }
    }
}

#[pymethods]
impl PyDeviceTlbInvalidation {
    fn __repr__(&self) -> String {
        format!(
            "DeviceTlbInvalidation(sid={:#06x}, address={:#x}, size={:#x}, qdep={}, pfsid={:#06x})",
            self.sid, self.address, self.size, self.qdep, self.pfsid
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDescriptor>()?;
    m.add_class::<PyDeviceTlbInvalidation>()
}
