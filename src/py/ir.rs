//! `vtdwalk.Irte` and the interrupt requests of `vtdwalk.Remapper` (`msi`, and the
//! `InterruptFault` a blocked one raises): the Python face of [`crate::spec::irte`] and
//! [`crate::hw::ir`].

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use numpy::PyArray1;

use super::args::{batch_array, device, Flag, U32, U64};
use super::errors::Exc;
use super::remapper::{PyInterrupt, PyRemapper};
use crate::hw::fault::FaultRecord;
use crate::hw::ir::MsiError;
use crate::spec::irte::{msi, svt, Irte, IrteFields};

fn fit(name: &str, v: u64, max: u64) -> PyResult<u64> {
    if v <= max {
        Ok(v)
    } else {
        Err(Exc::InvalidArgument.msg(format!("{name}: {v:#x} is above {max:#x}")))
    }
}

/// An interrupt remapping table entry (IRTE, remapped format; vtd-hardware.md §1.10), built
/// from its fields or decoded from its two 64-bit words.
///
/// `destination` is the APIC id: with `x2apic` (the table is used with IRTA.EIME) the 32-bit
/// DST, otherwise an 8-bit id stored in DST bits 15:8 (the xAPIC form). `sid`, `sq` and `svt`
/// are the source validation: `svt` 0 none, 1 (`SVT_SID`) the requester-id against `sid`
/// with `sq` 0-3 ignoring no bits, bit 2, bits 2:1, bits 2:0; 2 (`SVT_BUS_RANGE`) the
/// requester's bus within `sid`'s start bus (bits 15:8) and end bus (bits 7:0).
#[pyclass(name = "Irte", module = "vtdwalk._core", frozen, eq, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyIrte {
    irte: Irte,
    x2apic: bool,
}

#[pymethods]
impl PyIrte {
    /// No source validation.
    #[classattr]
    const SVT_NONE: u8 = svt::NONE;
    /// Validate the requester-id against `sid` under the `sq` mask.
    #[classattr]
    const SVT_SID: u8 = svt::SID;
    /// Validate the requester's bus against `sid`'s bus range.
    #[classattr]
    const SVT_BUS_RANGE: u8 = svt::BUS_RANGE;

    #[new]
    #[pyo3(
        signature = (present=Flag(true), vector=U32(0), destination=U64(0), delivery_mode=U32(0), trigger_mode=U32(0), destination_mode=U32(0), redirection_hint=U32(0), fpd=Flag(false), sid=None, sq=U32(0), svt=U32(0), avail=U32(0), x2apic=Flag(false)),
        text_signature = "(present=True, vector=0, destination=0, delivery_mode=0, trigger_mode=0, destination_mode=0, redirection_hint=0, fpd=False, sid=0, sq=0, svt=0, avail=0, x2apic=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        present: Flag,
        vector: U32,
        destination: U64,
        delivery_mode: U32,
        trigger_mode: U32,
        destination_mode: U32,
        redirection_hint: U32,
        fpd: Flag,
        sid: Option<&Bound<'_, PyAny>>,
        sq: U32,
        svt: U32,
        avail: U32,
        x2apic: Flag,
    ) -> PyResult<Self> {
        let small = |name: &str, v: U32, max: u64| fit(name, v.0 as u64, max).map(|v| v as u8);
        let f = IrteFields {
            present: present.0,
            fpd: fpd.0,
            destination_mode: small("destination_mode", destination_mode, 1)?,
            redirection_hint: small("redirection_hint", redirection_hint, 1)?,
            trigger_mode: small("trigger_mode", trigger_mode, 1)?,
            delivery_mode: small("delivery_mode", delivery_mode, 7)?,
            avail: small("avail", avail, 15)?,
            vector: small("vector", vector, 0xff)?,
            destination: fit("destination", destination.0, u32::MAX as u64)? as u32,
            sid: sid.map(|s| device(s, "sid")).transpose()?.unwrap_or(0),
            sq: small("sq", sq, 3)?,
            svt: small("svt", svt, 3)?,
        };
        let irte = Irte::new(&f, x2apic.0).map_err(|(name, max)| {
            let why = if name == "destination" {
                " (an xAPIC id; x2apic=True takes 32 bits)"
            } else {
                ""
            };
            Exc::InvalidArgument.msg(format!("{name}: above {max:#x}{why}"))
        })?;
        Ok(PyIrte {
            irte,
            x2apic: x2apic.0,
        })
    }

    /// The entry with these two 64-bit words; `x2apic` says how `destination` reads DST.
    #[staticmethod]
    #[pyo3(signature = (lo, hi, x2apic=Flag(false)), text_signature = "(lo, hi, x2apic=False)")]
    fn decode(lo: U64, hi: U64, x2apic: Flag) -> Self {
        PyIrte {
            irte: Irte { lo: lo.0, hi: hi.0 },
            x2apic: x2apic.0,
        }
    }

    /// The (address, data) of a remappable-format message whose handle is `index`; with
    /// `subhandle` SHV is set and the data is the subhandle, selecting entry
    /// `index + subhandle` (multi-vector MSI).
    #[staticmethod]
    #[pyo3(signature = (index, subhandle=None), text_signature = "(index, subhandle=None)")]
    fn remappable_msi(index: U32, subhandle: Option<U32>) -> PyResult<(u64, u32)> {
        let h = fit("index", index.0 as u64, 0xffff)? as u16;
        let s = subhandle
            .map(|s| fit("subhandle", s.0 as u64, 0xffff).map(|v| v as u16))
            .transpose()?;
        Ok(msi::remappable(h, s))
    }

    /// The low 64-bit word.
    #[getter]
    fn lo(&self) -> u64 {
        self.irte.lo
    }
    /// The high 64-bit word.
    #[getter]
    fn hi(&self) -> u64 {
        self.irte.hi
    }
    /// P: the entry is present (bit 0).
    #[getter]
    fn present(&self) -> bool {
        self.irte.present()
    }
    /// FPD: fault processing disable (bit 1); suppresses the recording of faults 0x22, 0x24
    /// and 0x26 on this entry.
    #[getter]
    fn fpd(&self) -> bool {
        self.irte.fpd()
    }
    /// The vector (bits 23:16).
    #[getter]
    fn vector(&self) -> u8 {
        self.irte.vector()
    }
    /// The destination APIC id: DST bits 15:8 (xAPIC), or all of DST with `x2apic`.
    #[getter]
    fn destination(&self) -> u32 {
        self.irte.destination(self.x2apic)
    }
    /// DST as stored (bits 63:32).
    #[getter]
    fn dst(&self) -> u32 {
        self.irte.dst()
    }
    /// Whether `destination` reads DST in the x2APIC form.
    #[getter]
    fn x2apic(&self) -> bool {
        self.x2apic
    }
    /// DLM: delivery mode (bits 7:5).
    #[getter]
    fn delivery_mode(&self) -> u8 {
        self.irte.delivery_mode()
    }
    /// TM: trigger mode (bit 4; 0 edge, 1 level).
    #[getter]
    fn trigger_mode(&self) -> u8 {
        self.irte.trigger_mode()
    }
    /// DM: destination mode (bit 2; 0 physical, 1 logical).
    #[getter]
    fn destination_mode(&self) -> u8 {
        self.irte.destination_mode()
    }
    /// RH: redirection hint (bit 3).
    #[getter]
    fn redirection_hint(&self) -> u8 {
        self.irte.redirection_hint()
    }
    /// AVAIL: bits 11:8, for software.
    #[getter]
    fn avail(&self) -> u8 {
        self.irte.avail()
    }
    /// IM (bit 15): the posted format, which the model does not have (a reserved bit to it).
    #[getter]
    fn posted(&self) -> bool {
        self.irte.posted()
    }
    /// SID: the source-id to validate against (bits 79:64).
    #[getter]
    fn sid(&self) -> u16 {
        self.irte.sid()
    }
    /// SQ: the source-id qualifier (bits 81:80).
    #[getter]
    fn sq(&self) -> u8 {
        self.irte.sq()
    }
    /// SVT: the source validation type (bits 83:82).
    #[getter]
    fn svt(&self) -> u8 {
        self.irte.svt()
    }
    /// True when a bit reserved in the remapped format is set (fault 0x24), with DST's bits
    /// outside 15:8 reserved unless `x2apic`.
    fn reserved(&self) -> bool {
        self.irte.reserved(self.x2apic)
    }
    /// The 16 bytes software writes to the table (little-endian words).
    #[allow(clippy::wrong_self_convention)]
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.irte.to_bytes())
    }
    fn __repr__(&self) -> String {
        format!(
            "Irte(lo={:#x}, hi={:#x}, x2apic={})",
            self.irte.lo,
            self.irte.hi,
            if self.x2apic { "True" } else { "False" }
        )
    }
}

/// `InterruptFault(reason, name, sid, index, transferred=...)` for a blocked interrupt request.
pub(crate) fn interrupt_fault(py: Python<'_>, f: &FaultRecord, transferred: u64) -> PyErr {
    let kw = PyDict::new(py);
    if let Err(e) = kw.set_item("transferred", transferred) {
        return e;
    }
    let args = (f.reason.code(), f.reason.name(), f.sid, f.index);
    match Exc::InterruptFault
        .class(py)
        .and_then(|c| c.call(args, Some(&kw)))
    {
        Ok(obj) => PyErr::from_value(obj),
        Err(e) => e,
    }
}

/// `Remapper.msi`: the interrupt request of `sid` (`data` written to `address`).
pub(crate) fn msi(
    r: &PyRemapper,
    py: Python<'_>,
    sid: &Bound<'_, PyAny>,
    address: U64,
    data: U32,
) -> PyResult<PyInterrupt> {
    let sid = device(sid, "sid")?;
    let res = {
        let mut unit = r.unit();
        let mem = r.mem.read();
        unit.msi(&*mem, sid, address.0, data.0)
    };
    r.deliver(py)?;
    match res {
        Ok(m) => Ok(PyInterrupt::from(m)),
        Err(MsiError::Fault(f)) => Err(interrupt_fault(py, &f, 0)),
        Err(MsiError::Invalid(e)) => Err(e.into()),
    }
}

/// The three arrays `Remapper.msi_batch` returns: address, data, fault reason.
pub(crate) type MsiArrays<'py> = (
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<u8>>,
);

/// `Remapper.msi_batch`: many interrupt requests, in order; the GIL released while the unit
/// works on checked copies of the inputs.
pub(crate) fn msi_batch<'py>(
    r: &PyRemapper,
    py: Python<'py>,
    sids: &Bound<'py, PyAny>,
    addresses: &Bound<'py, PyAny>,
    datas: &Bound<'py, PyAny>,
) -> PyResult<MsiArrays<'py>> {
    let sids = batch_array::<u16>(sids, "sids")?;
    let addresses = batch_array::<u64>(addresses, "addresses")?;
    let datas = batch_array::<u32>(datas, "datas")?;
    let n = addresses.len();
    for (name, len) in [("sids", sids.len()), ("datas", datas.len())] {
        if len != n {
            return Err(
                Exc::InvalidArgument.msg(format!("{name} has {len} entries, addresses {n}"))
            );
        }
    }
    let (s, a, d) = (sids.as_slice()?, addresses.as_slice()?, datas.as_slice()?);
    let reqs: Vec<(u16, u64, u32)> = s
        .iter()
        .zip(a)
        .zip(d)
        .map(|((&s, &a), &d)| (s, a, d))
        .collect();
    let (mut oa, mut od, mut of) = (vec![0u64; n], vec![0u32; n], vec![0u8; n]);
    py.detach(|| {
        let mut unit = r.unit();
        let mem = r.mem.read();
        unit.msi_batch(&*mem, &reqs, &mut oa, &mut od, &mut of);
    });
    r.deliver(py)?;
    Ok((
        PyArray1::from_vec(py, oa),
        PyArray1::from_vec(py, od),
        PyArray1::from_vec(py, of),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIrte>()
}
