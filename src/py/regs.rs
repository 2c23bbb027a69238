//! The register vocabulary for the driver side in Python, from the one definition in
//! [`crate::spec::regs`]: register offsets, GCMD/GSTS bits, invalidation granularities, and the
//! composition of the commands software writes (CCMD, IOTLB, IVA) and of their completion.
//! Python composes and decodes no register itself.

use pyo3::prelude::*;

use super::args::*;
use super::errors::Exc;
use super::spec::{PyCap, PyEcap};
use crate::spec::irte::irta;
use crate::spec::regs::{self, ccmd, ectl, fsts, gcmd, ics, iotlb, iq, iva};

/// GCMD's one-shot command bits, which software clears in the value it reads from GSTS before
/// writing GCMD (the status bits at those positions do not mean "keep doing it").
const ONE_SHOT: u32 = gcmd::SRTP | gcmd::SFL | gcmd::WBF | gcmd::SIRTP;

fn field(name: &str, v: u64, max: u64) -> PyResult<u64> {
    if v <= max {
        Ok(v)
    } else {
        Err(Exc::InvalidArgument.msg(format!("{name}: {v:#x} is above {max:#x}")))
    }
}

fn granularity(v: u64) -> PyResult<u64> {
    if (1..=3).contains(&v) {
        Ok(v)
    } else {
        Err(Exc::InvalidArgument.msg(format!(
            "granularity: {v} is not 1 (global), 2 (domain) or 3 (device / page)"
        )))
    }
}

/// A unit's register page as software sees it: offsets, command bits, and the commands.
#[pyclass(name = "Regs", module = "vtdwalk._core", frozen)]
pub struct PyRegs;

#[pymethods]
impl PyRegs {
    #[classattr]
    const VER: u64 = regs::VER;
    #[classattr]
    const CAP: u64 = regs::CAP;
    #[classattr]
    const ECAP: u64 = regs::ECAP;
    #[classattr]
    const GCMD: u64 = regs::GCMD;
    #[classattr]
    const GSTS: u64 = regs::GSTS;
    #[classattr]
    const RTADDR: u64 = regs::RTADDR;
    #[classattr]
    const CCMD: u64 = regs::CCMD;
    #[classattr]
    const FSTS: u64 = regs::FSTS;
    #[classattr]
    const FECTL: u64 = regs::FECTL;
    #[classattr]
    const FEDATA: u64 = regs::FEDATA;
    #[classattr]
    const FEADDR: u64 = regs::FEADDR;
    #[classattr]
    const FEUADDR: u64 = regs::FEUADDR;
    #[classattr]
    const IQH: u64 = regs::IQH;
    #[classattr]
    const IQT: u64 = regs::IQT;
    #[classattr]
    const IQA: u64 = regs::IQA;
    #[classattr]
    const ICS: u64 = regs::ICS;
    #[classattr]
    const IECTL: u64 = regs::IECTL;
    #[classattr]
    const IEDATA: u64 = regs::IEDATA;
    #[classattr]
    const IEADDR: u64 = regs::IEADDR;
    #[classattr]
    const IEUADDR: u64 = regs::IEUADDR;

    /// FSTS bits of the invalidation queue: IQE, ICE, ITE.
    #[classattr]
    const IQE: u32 = fsts::IQE;
    #[classattr]
    const ICE: u32 = fsts::ICE;
    #[classattr]
    const ITE: u32 = fsts::ITE;
    /// ICS.IWC: a wait descriptor with IF completed.
    #[classattr]
    const IWC: u32 = ics::IWC;
    /// FECTL / IECTL bits: interrupt mask and interrupt pending.
    #[classattr]
    const IM: u32 = ectl::IM;
    #[classattr]
    const IP: u32 = ectl::IP;
    /// IRTA: the interrupt remapping table address register (address, EIME, S).
    #[classattr]
    const IRTA: u64 = regs::IRTA;

    /// GCMD / GSTS bits.
    #[classattr]
    const TE: u32 = gcmd::TE;
    #[classattr]
    const SRTP: u32 = gcmd::SRTP;
    #[classattr]
    const WBF: u32 = gcmd::WBF;
    #[classattr]
    const QIE: u32 = gcmd::QIE;
    #[classattr]
    const IRE: u32 = gcmd::IRE;
    #[classattr]
    const SIRTP: u32 = gcmd::SIRTP;
    /// Compatibility format interrupts allowed (GCMD.CFI / GSTS.CFIS).
    #[classattr]
    const CFI: u32 = gcmd::CFI;

    /// Invalidation granularities (CCMD.CIRG, IOTLB.IIRG).
    #[classattr]
    const GLOBAL: u64 = ccmd::GLOBAL;
    #[classattr]
    const DOMAIN: u64 = ccmd::DOMAIN;
    #[classattr]
    const DEVICE: u64 = ccmd::DEVICE;
    #[classattr]
    const PAGE: u64 = iotlb::PAGE;

    /// The GCMD value that keeps what GSTS reports on: GSTS without the one-shot bits.
    #[staticmethod]
    fn gcmd_from_gsts(#[pyo3(from_py_with = u64_gsts)] gsts: U64) -> PyResult<u32> {
        let g = u32::try_from(gsts.0)
            .map_err(|_| Exc::InvalidArgument.msg("gsts: not a 32-bit register value"))?;
        Ok(g & !ONE_SHOT)
    }

    /// A context-cache invalidation command: ICC with the granularity, DID, SID and FM.
    #[staticmethod]
    #[pyo3(
        signature = (granularity, did=U64(0), sid=U64(0), fm=U64(0)),
        text_signature = "(granularity, did=0, sid=0, fm=0)"
    )]
    fn ccmd(
        #[pyo3(from_py_with = u64_granularity)] granularity: U64,
        #[pyo3(from_py_with = u64_did)] did: U64,
        #[pyo3(from_py_with = u64_sid)] sid: U64,
        #[pyo3(from_py_with = u64_fm)] fm: U64,
    ) -> PyResult<u64> {
        let g = self::granularity(granularity.0)?;
        Ok(ccmd::ICC
            | g << ccmd::CIRG_SHIFT
            | field("fm", fm.0, 3)? << ccmd::FM_SHIFT
            | field("sid", sid.0, 0xffff)? << ccmd::SID_SHIFT
            | field("did", did.0, ccmd::DID_MASK)?)
    }

    /// True once the unit has cleared CCMD.ICC.
    #[staticmethod]
    fn ccmd_done(#[pyo3(from_py_with = u64_value)] value: U64) -> bool {
        value.0 & ccmd::ICC == 0
    }

    /// An IOTLB invalidation command: IVT with the granularity and DID, and the read and
    /// write drains the unit's CAP offers (DRD, DWD), as Xen asks for them.
    #[staticmethod]
    #[pyo3(
        signature = (granularity, did=U64(0), cap=None),
        text_signature = "(granularity, did=0, cap=None)"
    )]
    fn iotlb(
        #[pyo3(from_py_with = u64_granularity)] granularity: U64,
        #[pyo3(from_py_with = u64_did)] did: U64,
        cap: Option<PyCap>,
    ) -> PyResult<u64> {
        let g = self::granularity(granularity.0)?;
        let mut v =
            iotlb::IVT | g << iotlb::IIRG_SHIFT | field("did", did.0, 0xffff)? << iotlb::DID_SHIFT;
        if let Some(c) = cap {
            if c.0.drd() {
                v |= iotlb::DR;
            }
            if c.0.dwd() {
                v |= iotlb::DW;
            }
        }
        Ok(v)
    }

    /// True once the unit has cleared IOTLB.IVT.
    #[staticmethod]
    fn iotlb_done(#[pyo3(from_py_with = u64_value)] value: U64) -> bool {
        value.0 & iotlb::IVT == 0
    }

    /// The IVA value of a page-selective invalidation: a 4 KiB-aligned address, the address
    /// mask (2^am pages) and the invalidation hint.
    #[staticmethod]
    #[pyo3(signature = (addr, am=U64(0), ih=Flag(false)), text_signature = "(addr, am=0, ih=False)")]
    fn iva(
        #[pyo3(from_py_with = u64_addr)] addr: U64,
        #[pyo3(from_py_with = u64_am)] am: U64,
        #[pyo3(from_py_with = flag_ih)] ih: Flag,
    ) -> PyResult<u64> {
        if addr.0 & !iva::ADDR_MASK != 0 {
            return Err(
                Exc::InvalidArgument.msg(format!("addr: {:#x} is not 4 KiB aligned", addr.0))
            );
        }
        let am = field("am", am.0, iva::AM_MASK)?;
        Ok(addr.0 | am | if ih.0 { iva::IH } else { 0 })
    }

    /// Offset of IVA (the IOTLB register pair starts there): ECAP.IRO in bytes.
    #[staticmethod]
    fn iva_offset(ecap: PyEcap) -> u64 {
        ecap.0.iro() * 16
    }

    /// Offset of the IOTLB register: ECAP.IRO in bytes, plus 8.
    #[staticmethod]
    fn iotlb_offset(ecap: PyEcap) -> u64 {
        ecap.0.iro() * 16 + 8
    }

    /// Offset of the first fault recording register: CAP.FRO in bytes.
    #[staticmethod]
    fn frcd_offset(cap: PyCap) -> u64 {
        cap.0.fro() * 16
    }

    /// The IQA value of a queue at `base` (4 KiB aligned) of 2^qs pages (qs 0-7), of 256-bit
    /// descriptors with `dw`.
    #[staticmethod]
    #[pyo3(signature = (base, qs, dw=false), text_signature = "(base, qs, dw=False)")]
    fn iqa(base: U64, qs: U64, dw: bool) -> PyResult<u64> {
        if base.0 & !iq::ADDR_MASK != 0 {
            return Err(
                Exc::InvalidArgument.msg(format!("base: {:#x} is not 4 KiB aligned", base.0))
            );
        }
        let qs = field("qs", qs.0, iq::QS_MASK)?;
        Ok(base.0 | qs | if dw { iq::DW } else { 0 })
    }

    /// The IQT value that places the tail at descriptor `index`.
    #[staticmethod]
    #[pyo3(signature = (index, dw=false), text_signature = "(index, dw=False)")]
    fn iqt(index: U64, dw: bool) -> PyResult<u64> {
        let s = iq::shift(dw);
        Ok(field("index", index.0, iq::OFFSET_MASK >> s)? << s)
    }

    /// The descriptor index an IQH or IQT value points at.
    #[staticmethod]
    #[pyo3(signature = (value, dw=false), text_signature = "(value, dw=False)")]
    fn iq_index(value: U64, dw: bool) -> u64 {
        (value.0 & iq::OFFSET_MASK) >> iq::shift(dw)
    }

    /// Descriptors in a queue of 2^qs pages: 2^(qs+8), or 2^(qs+7) of 256 bits.
    #[staticmethod]
    #[pyo3(signature = (qs, dw=false), text_signature = "(qs, dw=False)")]
    fn queue_entries(qs: U64, dw: bool) -> PyResult<u64> {
        Ok(iq::entries(field("qs", qs.0, iq::QS_MASK)? as u32, dw))
    }

    /// The IRTA value of an interrupt remapping table at `base` (4 KiB aligned) of
    /// 2^(s+1) entries (`s` 0..=15), with x2APIC destinations when `eime`.
    #[staticmethod]
    #[pyo3(signature = (base, s, eime=false), text_signature = "(base, s, eime=False)")]
    fn irta(base: U64, s: U64, eime: bool) -> PyResult<u64> {
        if base.0 & !irta::ADDR_MASK != 0 {
            return Err(
                Exc::InvalidArgument.msg(format!("base: {:#x} is not 4 KiB aligned", base.0))
            );
        }
        let s = field("s", s.0, irta::S_MASK)?;
        Ok(base.0 | s | if eime { irta::EIME } else { 0 })
    }

    /// Entries in an interrupt remapping table of size field `s`: 2^(s+1).
    #[staticmethod]
    fn irt_entries(s: U64) -> PyResult<u32> {
        Ok(irta::entries(field("s", s.0, irta::S_MASK)?))
    }

    /// Number of fault recording registers: CAP.NFR + 1.
    #[staticmethod]
    fn fault_records(cap: PyCap) -> u64 {
        cap.0.nfr() + 1
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRegs>()
}
