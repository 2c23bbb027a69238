//! The architecture's vocabulary for Python, from the one definition in [`crate::spec`]:
//! `Cap` and `Ecap` (decoded fields as properties), `RootEntry` and `ContextEntry` decoders,
//! fault names, and the level / AW / width conversions. Python decodes nothing itself.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use super::args::*;
use super::errors::Exc;
use crate::spec::{self, Cap, ContextEntry, Ecap, FaultReason, Field, RootEntry};

/// A domain id argument, checked the same way on every native entry point: the DID field is
/// 16 bits (context entry, invalidation registers and descriptors), so 0..=65535, else
/// InvalidArgument naming `did`. The unit uses the low CAP.ND bits of it (the hardware ignores
/// the rest); the driver layer, which knows the unit, checks against CAP.ND itself.
pub(crate) fn did_arg(did: &Bound<'_, PyAny>) -> PyResult<u16> {
    let bad = || {
        let shown = did
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "?".into());
        Exc::InvalidArgument.msg(format!("did: DID {shown} is not in 0..=65535"))
    };
    if did.is_instance_of::<PyBool>() {
        return Err(bad());
    }
    let v: i128 = did.extract().map_err(|_| bad())?;
    u16::try_from(v).map_err(|_| bad())
}

/// `value` with the `fields` keyword arguments applied, each checked against its width.
fn with_fields(
    what: &str,
    find: fn(&str) -> Option<Field>,
    mut value: u64,
    fields: Option<&Bound<'_, PyDict>>,
) -> PyResult<u64> {
    let Some(fields) = fields else {
        return Ok(value);
    };
    for (k, v) in fields.iter() {
        let name: String = k.extract()?;
        let f = find(&name)
            .ok_or_else(|| Exc::InvalidArgument.msg(format!("{name}: not a field of {what}")))?;
        let n: u64 = if v.is_instance_of::<PyBool>() {
            // True/False name a flag (a 1-bit field), never a count or a width.
            if f.width != 1 {
                return Err(Exc::InvalidArgument.msg(format!(
                    "{name}: expected an integer for the {}-bit field {what}.{name}, got a bool",
                    f.width
                )));
            }
            u64::from(v.extract::<bool>()?)
        } else {
            v.extract::<u64>().map_err(|_| {
                Exc::InvalidArgument.msg(format!("{name}: expected an integer or a bool"))
            })?
        };
        value = f.set(value, n).ok_or_else(|| {
            Exc::InvalidArgument.msg(format!(
                "{name}: {n:#x} does not fit {what}.{name} ({} bits)",
                f.width
            ))
        })?;
    }
    Ok(value)
}

/// Generates the Python class of a register: constructor from an int and keyword fields,
/// `value` / `int()`, equality, hashing, `fields()`, and one read-only property per field.
macro_rules! py_register {
    (
        $py:ident, $name:literal, $reg:ident,
        [$($flag:ident: $fdoc:literal),* $(,)?],
        [$($field:ident: $vdoc:literal),* $(,)?],
        { $($extra:tt)* }
    ) => {
        #[doc = concat!("`", $name, "`: a decoded register value; fields are properties.")]
        #[pyclass(name = $name, module = "vtdwalk._core", frozen, eq, hash)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $py(pub $reg);

        #[pymethods]
        impl $py {
            #[new]
            #[pyo3(signature = (value=U64(0), **fields), text_signature = "(value=0, **fields)")]
            fn new(#[pyo3(from_py_with = u64_value)] value: U64, fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
                with_fields($name, $reg::field, value.0, fields).map(|v| $py($reg(v)))
            }
            /// The default value of the model (QEMU's; vtd-hardware.md §1.3).
            #[staticmethod]
            fn default() -> Self {
                $py($reg::DEFAULT)
            }
            /// The raw 64-bit value.
            #[getter]
            fn value(&self) -> u64 {
                self.0.bits()
            }
            fn __int__(&self) -> u64 {
                self.0.bits()
            }
            fn __index__(&self) -> u64 {
                self.0.bits()
            }
            fn __repr__(&self) -> String {
                format!(concat!($name, "({:#018x})"), self.0.bits())
            }
            /// A copy with the given fields replaced.
            #[pyo3(signature = (**fields))]
            fn replace(&self, fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
                with_fields($name, $reg::field, self.0.bits(), fields).map(|v| $py($reg(v)))
            }
            /// Every named field: name -> value (flags as bool).
            fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let d = PyDict::new(py);
                $( d.set_item(stringify!($flag), self.0.$flag())?; )*
                $( d.set_item(stringify!($field), self.0.$field())?; )*
                Ok(d)
            }
            $(
                #[doc = $fdoc]
                #[getter]
                fn $flag(&self) -> bool {
                    self.0.$flag()
                }
            )*
            $(
                #[doc = $vdoc]
                #[getter]
                fn $field(&self) -> u64 {
                    self.0.$field()
                }
            )*
            $($extra)*
        }
    };
}

py_register!(
    PyCap,
    "Cap",
    Cap,
    [
        afl: "AFL: advanced fault logging.",
        rwbf: "RWBF: required write-buffer flushing.",
        plmr: "PLMR: protected low-memory region.",
        phmr: "PHMR: protected high-memory region.",
        cm: "CM: caching mode (not-present and invalid entries may be cached).",
        zlr: "ZLR: zero-length reads.",
        psi: "PSI: page-selective IOTLB invalidation.",
        dwd: "DWD: write draining.",
        drd: "DRD: read draining.",
        fs1gp: "FS1GP: first-stage 1 GiB pages.",
        pi: "PI: posted interrupts.",
        fs5lp: "FS5LP: first-stage 5-level paging.",
        esirtps: "ESIRTPS: SIRTP also invalidates the interrupt-entry cache.",
        esrtps: "ESRTPS: SRTP also invalidates the caches.",
    ],
    [
        nd: "ND: domain ids supported, 2 ** (4 + 2 * ND).",
        sagaw: "SAGAW: supported widths (bit 1: 39-bit 3-level, 2: 48-bit 4-level, 3: 57-bit 5-level).",
        mgaw: "MGAW: the widest input address in bits, minus 1.",
        fro: "FRO: offset of the fault recording registers, in 16-byte units.",
        sllps: "SLLPS: second-level superpages (bit 0: 2 MiB, bit 1: 1 GiB).",
        nfr: "NFR: fault recording registers, minus 1.",
        mamv: "MAMV: the largest address mask of a page-selective invalidation.",
    ],
    {
        /// DID bits: 4 + 2 ND, at most 16.
        #[getter]
        fn did_bits(&self) -> u32 {
            self.0.did_bits()
        }
        /// Mask of the DID bits: a DID is its low `did_bits` bits.
        #[getter]
        fn did_mask(&self) -> u16 {
            self.0.did_mask()
        }
        /// Domains the unit supports: 2 ** did_bits.
        #[getter]
        fn ndoms(&self) -> u32 {
            1u32 << self.0.did_bits()
        }
        /// MGAW + 1: the widest input address in bits.
        #[getter]
        fn aw_bits(&self) -> u32 {
            self.0.aw_bits()
        }
        /// Byte offset of the first fault recording register: 16 FRO.
        #[getter]
        fn fault_record_offset(&self) -> u64 {
            self.0.fault_record_offset()
        }
        /// Number of fault recording registers: NFR + 1.
        #[getter]
        fn fault_records(&self) -> u32 {
            self.0.fault_records()
        }
        /// Page-table depths SAGAW allows (a subset of [3, 4, 5]).
        #[getter]
        fn levels_supported(&self) -> Vec<u32> {
            (1..=3u32)
                .filter(|aw| self.0.sagaw() & (1 << aw) != 0)
                .map(spec::aw_to_levels)
                .collect()
        }
        /// Second-level superpage sizes SLLPS allows, as ("2M", "1G") names.
        #[getter]
        fn superpages(&self) -> Vec<&'static str> {
            let s = self.0.sllps();
            [
                (spec::cap::sllps::SP_2M, "2M"),
                (spec::cap::sllps::SP_1G, "1G"),
            ]
            .into_iter()
            .filter(|(b, _)| s & b != 0)
            .map(|(_, n)| n)
            .collect()
        }
    }
);

py_register!(
    PyEcap,
    "Ecap",
    Ecap,
    [
        c: "C: page-walk coherency (table reads snoop).",
        qi: "QI: queued invalidation.",
        dt: "DT: device-TLB (ATS).",
        ir: "IR: interrupt remapping.",
        eim: "EIM: extended interrupt mode (x2APIC destinations).",
        pt: "PT: pass-through translation type.",
        sc: "SC: snoop control.",
        nest: "NEST: nested translation.",
        prs: "PRS: page requests.",
        ers: "ERS: execute requests.",
        srs: "SRS: supervisor requests.",
        nwfs: "NWFS: no-write flag.",
        eafs: "EAFS: extended accessed flag.",
        pasid: "PASID: process address space ids.",
        dit: "DIT: device-TLB invalidation throttle.",
        pds: "PDS: page-request drain.",
        smts: "SMTS: scalable-mode translation.",
        vcs: "VCS: virtual command.",
        slads: "SLADS: second-level accessed/dirty.",
        ssts: "SSTS: second-stage translation in scalable mode.",
        fsts: "FSTS: first-stage translation.",
        smpwcs: "SMPWCS: scalable-mode page-walk coherency.",
        rps: "RPS: RID-PASID.",
    ],
    [
        iro: "IRO: offset of the IOTLB registers, in 16-byte units.",
        mhmv: "MHMV: the largest interrupt-entry invalidation handle mask.",
        pss: "PSS: PASID bits supported, minus 1.",
    ],
    {
        /// Byte offset of the IOTLB registers: 16 IRO.
        #[getter]
        fn iotlb_offset(&self) -> u64 {
            self.0.iotlb_offset()
        }
    }
);

/// A legacy root entry decoded from its two 64-bit words (vtd-hardware.md §1.5).
#[pyclass(name = "RootEntry", module = "vtdwalk._core", frozen, eq, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyRootEntry(pub RootEntry);

#[pymethods]
impl PyRootEntry {
    #[new]
    #[pyo3(signature = (lo=U64(0), hi=U64(0)), text_signature = "(lo=0, hi=0)")]
    fn new(#[pyo3(from_py_with = u64_lo)] lo: U64, #[pyo3(from_py_with = u64_hi)] hi: U64) -> Self {
        PyRootEntry(RootEntry { lo: lo.0, hi: hi.0 })
    }
    /// The low 64-bit word.
    #[getter]
    fn lo(&self) -> u64 {
        self.0.lo
    }
    /// The high 64-bit word.
    #[getter]
    fn hi(&self) -> u64 {
        self.0.hi
    }
    /// P: the entry is present (bit 0).
    #[getter]
    fn present(&self) -> bool {
        self.0.present()
    }
    /// Context-table pointer (bits 63:12).
    #[getter]
    fn ctp(&self) -> u64 {
        self.0.ctp()
    }
    /// True when a reserved bit is set for a host address width of `haw` bits (fault 0x0A).
    #[pyo3(signature = (haw=U32(48)), text_signature = "($self, haw=48)")]
    fn reserved(&self, #[pyo3(from_py_with = u32_haw)] haw: U32) -> bool {
        self.0.reserved(haw.0)
    }
    fn __repr__(&self) -> String {
        format!("RootEntry(lo={:#x}, hi={:#x})", self.0.lo, self.0.hi)
    }
}

/// A legacy context entry decoded from its two 64-bit words (vtd-hardware.md §1.5).
#[pyclass(name = "ContextEntry", module = "vtdwalk._core", frozen, eq, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyContextEntry(pub ContextEntry);

#[pymethods]
impl PyContextEntry {
    #[new]
    #[pyo3(signature = (lo=U64(0), hi=U64(0)), text_signature = "(lo=0, hi=0)")]
    fn new(#[pyo3(from_py_with = u64_lo)] lo: U64, #[pyo3(from_py_with = u64_hi)] hi: U64) -> Self {
        PyContextEntry(ContextEntry { lo: lo.0, hi: hi.0 })
    }
    /// The low 64-bit word.
    #[getter]
    fn lo(&self) -> u64 {
        self.0.lo
    }
    /// The high 64-bit word.
    #[getter]
    fn hi(&self) -> u64 {
        self.0.hi
    }
    /// P: the entry is present (bit 0).
    #[getter]
    fn present(&self) -> bool {
        self.0.present()
    }
    /// Fault processing disable.
    #[getter]
    fn fpd(&self) -> bool {
        self.0.fpd()
    }
    /// Translation type: 0 multi-level, 1 with device-IOTLB, 2 pass-through, 3 reserved.
    #[getter]
    fn tt(&self) -> u8 {
        self.0.tt() as u8
    }
    /// Second-level page-table pointer (bits 63:12).
    #[getter]
    fn slptptr(&self) -> u64 {
        self.0.slptptr()
    }
    /// The AW field (hi bits 2:0).
    #[getter]
    fn aw(&self) -> u32 {
        self.0.aw()
    }
    /// Page-table levels the AW field names (AW + 2).
    #[getter]
    fn levels(&self) -> u32 {
        spec::aw_to_levels(self.0.aw())
    }
    /// Domain id (hi bits 23:8), as written (a unit uses its low CAP.ND-given bits).
    #[getter]
    fn did(&self) -> u16 {
        self.0.did()
    }
    /// True when a reserved bit is set for a host address width of `haw` bits (fault 0x0B).
    #[pyo3(signature = (haw=U32(48)), text_signature = "($self, haw=48)")]
    fn reserved(&self, #[pyo3(from_py_with = u32_haw)] haw: U32) -> bool {
        self.0.reserved(haw.0)
    }
    fn __repr__(&self) -> String {
        format!("ContextEntry(lo={:#x}, hi={:#x})", self.0.lo, self.0.hi)
    }
}

/// The spec's name of fault reason `code` (e.g. 0x05 -> "WRITE"), or None if no reason has it.
#[pyfunction]
fn fault_name(#[pyo3(from_py_with = u64_code)] code: U64) -> Option<&'static str> {
    u8::try_from(code.0)
        .ok()
        .and_then(FaultReason::from_code)
        .map(FaultReason::name)
}

/// Every architectural fault reason: code -> name, in code order.
#[pyfunction]
fn fault_names() -> std::collections::BTreeMap<u8, &'static str> {
    FaultReason::ALL
        .iter()
        .map(|r| (r.code(), r.name()))
        .collect()
}

fn levels_arg(levels: U32) -> PyResult<u32> {
    if (spec::MIN_LEVELS..=spec::MAX_LEVELS).contains(&levels.0) {
        Ok(levels.0)
    } else {
        Err(Exc::InvalidArgument.msg(format!("levels: {} is not 3, 4 or 5", levels.0)))
    }
}

/// Input address width in bits of a `levels`-level table (3: 39, 4: 48, 5: 57).
#[pyfunction]
fn levels_to_width(#[pyo3(from_py_with = u32_levels)] levels: U32) -> PyResult<u32> {
    levels_arg(levels).map(spec::levels_to_width)
}

/// The context-entry AW field of a `levels`-level table (levels - 2).
#[pyfunction]
fn levels_to_aw(#[pyo3(from_py_with = u32_levels)] levels: U32) -> PyResult<u32> {
    levels_arg(levels).map(spec::levels_to_aw)
}

/// Page-table levels of a context-entry AW field (AW + 2); AW 1..=3.
#[pyfunction]
fn aw_to_levels(#[pyo3(from_py_with = u32_aw)] aw: U32) -> PyResult<u32> {
    if (1..=3).contains(&aw.0) {
        Ok(spec::aw_to_levels(aw.0))
    } else {
        Err(Exc::InvalidArgument.msg(format!("aw: {} is not 1, 2 or 3", aw.0)))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCap>()?;
    m.add_class::<PyEcap>()?;
    m.add_class::<PyRootEntry>()?;
    m.add_class::<PyContextEntry>()?;
    m.add_function(wrap_pyfunction!(fault_name, m)?)?;
    m.add_function(wrap_pyfunction!(fault_names, m)?)?;
    m.add_function(wrap_pyfunction!(levels_to_width, m)?)?;
    m.add_function(wrap_pyfunction!(levels_to_aw, m)?)?;
    m.add_function(wrap_pyfunction!(aw_to_levels, m)?)?;
    Ok(())
}
