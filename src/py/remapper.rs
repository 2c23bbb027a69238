//! `vtdwalk.Remapper`, `Translation`, `FaultRecord`: the Python face of
//! [`crate::hw::remapper::Remapper`].
//!
//! The unit's state sits behind a mutex; the arena is shared with the `PhysMem` it was built on.
//! Lock order: the unit, then the arena; neither is held while the GIL is being acquired.

use std::sync::{Mutex, MutexGuard};

use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::args::*;
use super::errors::Exc;
use super::mem::{with_bytes, PyPhysMem, SharedMem};
use super::spec::did_arg;
use crate::hw::dma::DmaError;
use crate::hw::fault::FaultRecord;
use crate::hw::interrupt::Msi;
use crate::hw::ir::MsiError;
use crate::hw::{self, Request, DEFAULT_CAP, DEFAULT_ECAP};
use crate::spec::Cap;

/// One translation: a DMA request the unit translated (`Remapper.translate`), or a page
/// table's own look-up of an IOVA (`PageTable.lookup`, whose `domain_id` is None: no context
/// entry is involved).
#[pyclass(name = "Translation", module = "vtdwalk._core", frozen, get_all)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PyTranslation {
    /// Host physical address of the access.
    hpa: u64,
    /// Size of the page that mapped it (4 KiB, 2 MiB, 1 GiB).
    page_size: u64,
    /// Permissions of the mapping (AND over the walk's levels).
    read: bool,
    /// Whether the mapping allows writes (AND over the walk's levels).
    write: bool,
    /// The domain id (DID) of the context entry that translated it; None for a page-table
    /// look-up.
    domain_id: Option<u16>,
    /// Leaf level (1, 2, 3); 0 for pass-through.
    level: u8,
}

impl PyTranslation {
    /// A page table's own translation of an IOVA.
    pub(crate) fn of_page_table(t: &crate::driver::pagetable::Translation) -> Self {
        PyTranslation {
            hpa: t.maddr,
            page_size: t.page_size,
            read: t.read,
            write: t.write,
            domain_id: None,
            level: t.level,
        }
    }

    /// The `(hpa, page_size, read, write)` tuple `PageTable.lookup` returned before it returned
    /// a `Translation`.
    fn old_tuple(&self) -> (u64, u64, bool, bool) {
        (self.hpa, self.page_size, self.read, self.write)
    }
}

/// The deprecation warning of the tuple spelling of a translation.
fn warn_tuple(py: Python<'_>) -> PyResult<()> {
    PyErr::warn(
        py,
        &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
        c"a Translation used as an (hpa, page_size, read, write) tuple; use its fields \
          (the tuple form goes in the next release)",
        1,
    )
}

#[pymethods]
impl PyTranslation {
    fn __repr__(&self) -> String {
        let did = self
            .domain_id
            .map_or_else(|| "None".to_owned(), |d| d.to_string());
        format!(
            "Translation(hpa={:#x}, page_size={:#x}, read={}, write={}, domain_id={}, level={})",
            self.hpa,
            self.page_size,
            py_bool(self.read),
            py_bool(self.write),
            did,
            self.level
        )
    }

    /// Equal to another `Translation` with the same fields. Deprecated: equal to the old
    /// `(hpa, page_size, read, write)` tuple of the same values (with a `DeprecationWarning`).
    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(o) = other.cast::<PyTranslation>() {
            return Ok(pyo3::types::PyBool::new(py, *o.get() == *self)
                .to_owned()
                .into_any()
                .unbind());
        }
        if let Ok(t) = other.cast::<pyo3::types::PyTuple>() {
            if t.len() == 4 {
                warn_tuple(py)?;
                let same = t
                    .extract::<(u64, u64, bool, bool)>()
                    .is_ok_and(|v| v == self.old_tuple());
                return Ok(pyo3::types::PyBool::new(py, same)
                    .to_owned()
                    .into_any()
                    .unbind());
            }
        }
        Ok(py.NotImplemented())
    }

    /// Deprecated: unpacks as the old `(hpa, page_size, read, write)` tuple, with a
    /// `DeprecationWarning`.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyIterator>> {
        warn_tuple(py)?;
        self.old_tuple().into_pyobject(py)?.try_iter()
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// One recorded fault (a fault recording register's content, plus the full IOVA).
#[pyclass(name = "FaultRecord", module = "vtdwalk._core", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct PyFaultRecord {
    /// The architectural fault reason code (FRCD.FR).
    reason: u8,
    /// The fault reason's name, e.g. "CONTEXT_ENTRY_P".
    name: &'static str,
    /// The requester's source-id (bus << 8 | devfn).
    sid: u16,
    /// The full IOVA of the request.
    iova: u64,
    /// FRCD.FI: the faulting page address.
    fault_address: u64,
    /// Whether the request was a write (FRCD.T clear); interrupt requests are writes.
    write: bool,
    /// The interrupt index of an interrupt-remapping fault (0x20-0x26) when one was
    /// computed (FRCD bits 63:48), else None; `iova` is then the request's address.
    index: Option<u16>,
}

impl From<FaultRecord> for PyFaultRecord {
    fn from(r: FaultRecord) -> Self {
        PyFaultRecord {
            reason: r.reason.code(),
            name: r.reason.name(),
            sid: r.sid,
            iova: r.iova,
            fault_address: r.fault_address(),
            write: r.write,
            index: r.index,
        }
    }
}

#[pymethods]
impl PyFaultRecord {
    fn __repr__(&self) -> String {
        format!(
            "FaultRecord(reason={:#04x}, name='{}', sid={:#06x}, iova={:#x}, write={})",
            self.reason,
            self.name,
            self.sid,
            self.iova,
            py_bool(self.write)
        )
    }
}

/// An interrupt message the unit sent: the address and data of the write, and their fields.
#[pyclass(
    name = "Interrupt",
    module = "vtdwalk._core",
    frozen,
    eq,
    hash,
    get_all
)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyInterrupt {
    /// Destination APIC id (address bits 19:12; x2APIC: upper address bits 31:8 too).
    destination: u32,
    /// The vector (data bits 7:0).
    vector: u8,
    /// Data bits 10:8 (0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT).
    delivery_mode: u8,
    /// Data bit 15 (0 edge, 1 level).
    trigger_mode: u8,
    /// Address bit 2 (0 physical, 1 logical).
    destination_mode: u8,
    /// Address bit 3.
    redirection_hint: u8,
    /// The message address (FEEx_xxxxh, with the upper address above bit 31).
    address: u64,
    /// The message data.
    data: u32,
    /// The requesting device's source-id for an interrupt request the unit remapped or let
    /// through; None for the unit's own fault and completion events.
    sid: Option<u16>,
    /// The IRTE index of a remapped interrupt; None when none was used.
    index: Option<u16>,
}

impl From<Msi> for PyInterrupt {
    fn from(m: Msi) -> Self {
        PyInterrupt {
            destination: m.destination(),
            vector: m.vector(),
            delivery_mode: m.delivery_mode(),
            trigger_mode: m.trigger_mode(),
            destination_mode: m.destination_mode(),
            redirection_hint: m.redirection_hint(),
            address: m.address,
            data: m.data,
            sid: m.sid,
            index: m.index,
        }
    }
}

#[pymethods]
impl PyInterrupt {
    fn __repr__(&self) -> String {
        format!(
            "Interrupt(destination={:#x}, vector={:#x}, delivery_mode={}, trigger_mode={}, \
             destination_mode={}, redirection_hint={}, address={:#x}, data={:#x}, sid={}, \
             index={})",
            self.destination,
            self.vector,
            self.delivery_mode,
            self.trigger_mode,
            self.destination_mode,
            self.redirection_hint,
            self.address,
            self.data,
            self.sid.map_or("None".into(), |s| format!("{s:#06x}")),
            self.index.map_or("None".into(), |i| i.to_string())
        )
    }
}

/// One VT-d remapping unit (legacy mode) over the tables in a `PhysMem`.
///
/// * Without `root_table` the unit is in its reset state (GSTS 0, translation off) and is
///   driven through `mmio_read` / `mmio_write`; `root_table=X` (and setting the property) is
///   the shortcut "RTADDR = X, SRTP, TE"; setting None turns translation off and unlatches
///   the root table. `translate` and `translate_batch` walk the latched root table whether
///   or not TE is set (no table latched: fault 0x08); `dma_read` / `dma_write` follow TE.
/// * `cap` defaults to QEMU's aw48 CAP with NFR = 7 (8 fault recording registers);
///   `fault_records=None` takes the count from CAP.NFR, a given count sets CAP.NFR.
/// * `interrupt(irq)` is called with every `Interrupt` the unit sends (fault events, and the
///   device interrupts `msi` delivers); without it they queue until `interrupts()` drains them.
///   `ecap` defaults to QEMU's TCG ECAP plus DT (0xF00F4E): pass-through (PT) and device-IOTLB
///   contexts (TT 1, and `translate(..., translation_request=True)`) are allowed. Honoured:
///   SAGAW, MGAW, SLLPS, PSI, MAMV, ND (DID width), NFR; ECAP PT, DT, SC.
/// * `iotlb_entries`: 0 turns the IOTLB off; otherwise 4-way sets with CLOCK replacement
///   (capacity rounded down to whole sets).
/// * `faults()` drains the fault recording registers; `fault_counts()` counts every fault by
///   reason, including those not recorded (FPD, compression, overflow); `stats()` splits them.
/// * `translate_batch` gives exactly the results, records and counters of the same calls one
///   by one; `threads` (default: the CPUs, at most 8) only speeds up the read-only look-ahead.
#[pyclass(name = "Remapper", module = "vtdwalk._core", frozen)]
pub struct PyRemapper {
    pub(crate) mem: SharedMem,
    unit: Mutex<hw::Remapper>,
    interrupt: Option<Py<PyAny>>,
}

fn need<T>(what: &str, gran: &str, v: Option<T>) -> PyResult<T> {
    v.ok_or_else(|| Exc::InvalidArgument.msg(format!("{gran} invalidation needs {what}")))
}

impl PyRemapper {
    pub(crate) fn unit(&self) -> MutexGuard<'_, hw::Remapper> {
        // Every mutation completes or changes nothing, so a poisoned lock still holds good data.
        self.unit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hand the messages the unit sent to the `interrupt` callback (none: they stay queued).
    /// The unit's lock is released first.
    pub(crate) fn deliver(&self, py: Python<'_>) -> PyResult<()> {
        let Some(cb) = &self.interrupt else {
            return Ok(());
        };
        let msgs = {
            let mut u = self.unit();
            if !u.has_interrupts() {
                return Ok(());
            }
            u.take_interrupts()
        };
        for m in msgs {
            cb.call1(py, (PyInterrupt::from(m),))?;
        }
        Ok(())
    }

    fn dma_err(&self, py: Python<'_>, e: DmaError) -> PyErr {
        match e {
            DmaError::Fault {
                record,
                transferred,
            } => {
                if let Err(e) = self.deliver(py) {
                    return e;
                }
                fault_exc(py, &record, transferred)
            }
            DmaError::Interrupt { error, transferred } => {
                if let Err(e) = self.deliver(py) {
                    return e;
                }
                match error {
                    MsiError::Fault(f) => super::ir::interrupt_fault(py, &f, transferred),
                    MsiError::Invalid(e) => e.into(),
                }
            }
            DmaError::Memory { error, .. } | DmaError::Invalid(error) => error.into(),
        }
    }
}

fn fault_exc(py: Python<'_>, f: &FaultRecord, transferred: u64) -> PyErr {
    let kw = pyo3::types::PyDict::new(py);
    if let Err(e) = kw.set_item("transferred", transferred) {
        return e;
    }
    let args = (f.reason.code(), f.reason.name(), f.sid, f.iova, f.write);
    match Exc::DmaFault
        .class(py)
        .and_then(|c| c.call(args, Some(&kw)))
    {
        Ok(obj) => PyErr::from_value(obj),
        Err(e) => e,
    }
}

#[pymethods]
impl PyRemapper {
    #[new]
    #[pyo3(
        signature = (mem, root_table=None, cap=U64(DEFAULT_CAP), ecap=U64(DEFAULT_ECAP), iotlb_entries=U64(1024), fault_records=None, context_cache=Flag(true), interrupt=None),
        text_signature = "(mem, root_table=None, cap=..., ecap=..., iotlb_entries=1024, fault_records=None, context_cache=True, interrupt=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        mem: &PyPhysMem,
        #[pyo3(from_py_with = opt_u64_root_table)] root_table: Option<U64>,
        #[pyo3(from_py_with = u64_cap)] cap: U64,
        #[pyo3(from_py_with = u64_ecap)] ecap: U64,
        #[pyo3(from_py_with = u64_iotlb_entries)] iotlb_entries: U64,
        #[pyo3(from_py_with = opt_u64_fault_records)] fault_records: Option<U64>,
        #[pyo3(from_py_with = flag_context_cache)] context_cache: Flag,
        interrupt: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let rt = root_table.map(|r| check_rtaddr(r.0)).transpose()?;
        let n = usize::try_from(iotlb_entries.0).unwrap_or(usize::MAX);
        let f = match fault_records {
            Some(f) => usize::try_from(f.0).unwrap_or(usize::MAX),
            None => Cap(cap.0).nfr() as usize + 1,
        };
        let interrupt = match interrupt {
            Some(cb) if cb.is_none() => None,
            Some(cb) if !cb.is_callable() => {
                return Err(Exc::InvalidArgument.msg("interrupt: expected a callable or None"))
            }
            Some(cb) => Some(cb.unbind()),
            None => None,
        };
        let unit = hw::Remapper::new(cap.0, ecap.0, rt, n, f, context_cache.0)?;
        Ok(PyRemapper {
            mem: mem.mem.clone(),
            unit: Mutex::new(unit),
            interrupt,
        })
    }

    /// Read a register: `size` 4 or 8 bytes at `offset` from the unit's base.
    fn mmio_read(
        &self,
        #[pyo3(from_py_with = u64_offset)] offset: U64,
        #[pyo3(from_py_with = u32_size)] size: U32,
    ) -> PyResult<u64> {
        Ok(self.unit().mmio_read(offset.0, size.0)?)
    }

    /// Write a register: `size` 4 or 8 bytes of `value` at `offset` from the unit's base, with
    /// its side effects (commands, invalidations, fault events).
    fn mmio_write(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = u64_offset)] offset: U64,
        #[pyo3(from_py_with = u32_size)] size: U32,
        #[pyo3(from_py_with = u64_value)] value: U64,
    ) -> PyResult<()> {
        {
            // Lock order: the unit, then its memory (as dma_write).
            let mut unit = self.unit();
            let mut mem = self.mem.write();
            unit.mmio_write(&mut *mem, offset.0, size.0, value.0)?;
        }
        self.deliver(py)
    }

    /// Bytes of the register set (4096, or more whole pages when the fault recording
    /// registers run past the first).
    #[getter]
    fn mmio_size(&self) -> u64 {
        self.unit().mmio_size()
    }

    /// The device-TLB invalidations the invalidation queue asked for since the last call,
    /// oldest first; drains them.
    fn device_tlb_invalidations(&self) -> Vec<super::qi::PyDeviceTlbInvalidation> {
        self.unit()
            .take_device_tlb_invalidations()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// The interrupts sent and not yet handed to a callback, oldest first; drains them.
    fn interrupts(&self) -> Vec<PyInterrupt> {
        self.unit()
            .take_interrupts()
            .into_iter()
            .map(PyInterrupt::from)
            .collect()
    }

    /// The interrupt request of device `sid`: `data` written to `address` (a DWORD write in
    /// the interrupt window). With interrupt remapping on (GSTS.IRES) a remappable-format
    /// message goes through its IRTE, a compatibility-format one passes only while GSTS.CFIS
    /// is set; with it off the message passes as it is. The delivered `Interrupt` (with `sid`,
    /// and `index` when remapped) is returned and also goes to the `interrupt` callback or the
    /// `interrupts()` queue; a blocked one raises `InterruptFault` (recorded as the
    /// architecture says: reasons 0x20-0x26, the index in the record, the IRTE's FPD).
    fn msi(
        &self,
        py: Python<'_>,
        sid: &Bound<'_, PyAny>,
        address: U64,
        data: U32,
    ) -> PyResult<PyInterrupt> {
        super::ir::msi(self, py, sid, address, data)
    }

    /// Many interrupt requests (`sids`, `addresses`, `datas`: arrays or sequences of one
    /// length), in order, with every effect `msi` has on the unit (interrupt-entry cache,
    /// fault recording, fault events) but the delivered messages returned rather than queued
    /// or passed to the callback: (address uint64, data uint32, fault uint8) arrays, the
    /// fault reason 0 where delivered (address and data are 0 where not; a request that is
    /// no interrupt request at all, remapping off and outside the window, gets 0x20).
    fn msi_batch<'py>(
        &self,
        py: Python<'py>,
        sids: &Bound<'py, PyAny>,
        addresses: &Bound<'py, PyAny>,
        datas: &Bound<'py, PyAny>,
    ) -> PyResult<super::ir::MsiArrays<'py>> {
        super::ir::msi_batch(self, py, sids, addresses, datas)
    }

    /// Device `sid` reads `length` bytes at `iova`: page by page, translated while TE is set.
    /// A fault raises `DmaFault` with `transferred`, the bytes read before it. Reads of the
    /// interrupt window 0xFEE00000-0xFEEFFFFF are unsupported requests (`MemoryAccessError`).
    fn dma_read<'py>(
        &self,
        py: Python<'py>,
        sid: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = u64_iova)] iova: U64,
        #[pyo3(from_py_with = u64_length)] length: U64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let sid = device(sid, "sid")?;
        let n = usize::try_from(length.0)
            .ok()
            .filter(|&n| n <= 1 << 30)
            .ok_or_else(|| Exc::InvalidArgument.msg("length: more than 1 GiB at once"))?;
        let mut buf = vec![0u8; n];
        let r = {
            let mut unit = self.unit();
            let mem = self.mem.read();
            unit.dma_read(&*mem, sid, iova.0, &mut buf)
        };
        match r {
            Ok(()) => {
                self.deliver(py)?;
                Ok(PyBytes::new(py, &buf))
            }
            Err(e) => Err(self.dma_err(py, e)),
        }
    }

    /// Device `sid` writes `data` (bytes-like) at `iova`: page by page, translated while TE is
    /// set. A fault raises `DmaFault` with `transferred`, the bytes written before it. A
    /// 4-byte aligned write of 4 bytes into the interrupt window 0xFEE00000-0xFEEFFFFF is an
    /// interrupt request, as `msi` (blocked: `InterruptFault`), never a memory write; any
    /// other write there is an unsupported request (`MemoryAccessError`), nothing written.
    fn dma_write(
        &self,
        py: Python<'_>,
        sid: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = u64_iova)] iova: U64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let sid = device(sid, "sid")?;
        let r = with_bytes(data, |bytes| {
            let mut unit = self.unit();
            let mut mem = self.mem.write();
            Ok(unit.dma_write(&mut *mem, sid, iova.0, bytes))
        })?;
        match r {
            Ok(()) => self.deliver(py),
            Err(e) => Err(self.dma_err(py, e)),
        }
    }

    /// RTADDR: the root table's address, or None when none (or address 0) is latched (every
    /// request then faults 0x08). Setting it is SRTP: every cache is flushed.
    #[getter]
    fn get_root_table(&self) -> Option<u64> {
        self.unit().root_table().filter(|&a| a != 0)
    }

    #[setter]
    fn set_root_table(
        &self,
        #[pyo3(from_py_with = opt_u64_root_table)] value: Option<U64>,
    ) -> PyResult<()> {
        let rt = value.map(|r| check_rtaddr(r.0)).transpose()?;
        self.unit().set_root_table(rt);
        Ok(())
    }

    /// CAP as the unit reports it (NFR = fault_records - 1).
    #[getter]
    fn cap(&self) -> u64 {
        self.unit().config().cap
    }

    /// ECAP as the unit reports it.
    #[getter]
    fn ecap(&self) -> u64 {
        self.unit().config().ecap
    }

    /// Page-table depths the unit walks (from CAP.SAGAW).
    #[getter]
    fn levels_supported(&self) -> Vec<u32> {
        self.unit().config().levels_supported()
    }

    /// The widest input address in bits (CAP.MGAW + 1).
    #[getter]
    fn mgaw(&self) -> u32 {
        self.unit().config().aw_bits
    }

    /// How many IOTLB entries the unit's model holds (0: none).
    #[getter]
    fn iotlb_entries(&self) -> usize {
        self.unit().iotlb().capacity()
    }

    /// Translate one DMA request (or, with `translation_request`, an ATS translation request).
    #[pyo3(
        signature = (sid, iova, write=Flag(false), translation_request=Flag(false)),
        text_signature = "(self, sid, iova, write=False, translation_request=False)"
    )]
    fn translate(
        &self,
        py: Python<'_>,
        sid: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = u64_iova)] iova: U64,
        #[pyo3(from_py_with = flag_write)] write: Flag,
        #[pyo3(from_py_with = flag_translation_request)] translation_request: Flag,
    ) -> PyResult<PyTranslation> {
        let req = Request {
            sid: device(sid, "sid")?,
            iova: iova.0,
            write: write.0,
            translation_request: translation_request.0,
        };
        let r = {
            let mut unit = self.unit();
            let mem = self.mem.read();
            unit.translate(&*mem, &req)
        };
        if self.interrupt.is_some() {
            self.deliver(py)?;
        }
        match r {
            Ok(t) => Ok(PyTranslation {
                hpa: t.hpa,
                page_size: t.page_size,
                read: t.read,
                write: t.write,
                domain_id: Some(t.domain_id),
                level: t.level,
            }),
            Err(f) => Err(fault_exc(py, &f, 0)),
        }
    }

    /// Translate many requests; the same results and side effects as one call each, in order.
    /// Returns (hpa, fault reason) arrays; hpa is 0 where the reason is not 0. With
    /// `out=(hpa, fault)` (C-contiguous, writeable uint64 and uint8 arrays of the requests'
    /// length) the results are written there and those arrays returned.
    ///
    /// The inputs are read once, with the GIL held, into the requests the unit translates
    /// (so a Python thread changing them during the call changes nothing); the outputs are
    /// written while it is released, as numpy's own functions write an `out=` array.
    #[pyo3(signature = (sids, iovas, writes=None, threads=None, out=None))]
    #[allow(clippy::type_complexity)]
    fn translate_batch<'py>(
        &self,
        py: Python<'py>,
        sids: &Bound<'py, PyAny>,
        iovas: &Bound<'py, PyAny>,
        writes: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = opt_u32_threads)] threads: Option<U32>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u8>>)> {
        let sids = batch_array::<u16>(sids, "sids")?;
        let iovas = batch_array::<u64>(iovas, "iovas")?;
        let writes = writes
            .map(|w| batch_array::<bool>(w, "writes"))
            .transpose()?;
        let (s, a) = (sids.as_slice()?, iovas.as_slice()?);
        let n = a.len();
        if s.len() != n {
            return Err(
                Exc::InvalidArgument.msg(format!("sids has {} entries, iovas {n}", s.len()))
            );
        }
        let w: Option<&[bool]> = match &writes {
            Some(w) if w.len() != n => {
                return Err(
                    Exc::InvalidArgument.msg(format!("writes has {} entries, iovas {n}", w.len()))
                )
            }
            Some(w) => Some(w.as_slice()?),
            None => None,
        };
        let threads = match threads {
            Some(U32(0)) => return Err(Exc::InvalidArgument.msg("threads: must be at least 1")),
            Some(U32(t)) => t as usize,
            None => std::thread::available_parallelism()
                .map_or(1, |p| p.get())
                .min(8),
        };
        let (hpa, fault) = match out {
            Some(o) => out_arrays(o, n)?,
            // Fresh arrays: no one else holds them while they are written.
            None => (
                PyArray1::<u64>::zeros(py, n, false),
                PyArray1::<u8>::zeros(py, n, false),
            ),
        };
        let reqs: Vec<Request> = s
            .iter()
            .zip(a.iter())
            .enumerate()
            .map(|(k, (&sid, &iova))| Request {
                sid,
                iova,
                write: w.and_then(|w| w.get(k)).copied().unwrap_or(false),
                translation_request: false,
            })
            .collect();
        {
            let mut h = hpa
                .try_readwrite()
                .map_err(|e| Exc::InvalidArgument.msg(format!("out: {e}")))?;
            let mut f = fault
                .try_readwrite()
                .map_err(|e| Exc::InvalidArgument.msg(format!("out: {e}")))?;
            let bad = |_| Exc::InvalidArgument.msg("out: arrays not contiguous");
            let hs = h.as_slice_mut().map_err(bad)?;
            let fs = f.as_slice_mut().map_err(bad)?;
            py.detach(|| {
                let mut unit = self.unit();
                let mem = self.mem.read();
                unit.translate_batch(&*mem, &reqs, threads, hs, fs);
            });
        }
        self.deliver(py)?;
        Ok((hpa, fault))
    }

    /// IOTLB invalidation: "global", "domain" (did) or "page" (did, addr, am: 2**am pages).
    #[pyo3(
        signature = (granularity, did=None, addr=None, am=U32(0)),
        text_signature = "(self, granularity, did=None, addr=None, am=0)"
    )]
    fn invalidate_iotlb(
        &self,
        granularity: Str,
        did: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = opt_u64_addr)] addr: Option<U64>,
        #[pyo3(from_py_with = u32_am)] am: U32,
    ) -> PyResult<()> {
        let did = did.map(did_arg).transpose()?;
        let granularity = granularity.0.as_str();
        match granularity {
            "global" => self.unit().invalidate_iotlb_global(),
            "domain" => self
                .unit()
                .invalidate_iotlb_domain(need("did", granularity, did)?),
            "page" => {
                let d = need("did", granularity, did)?;
                let a = need("addr", granularity, addr)?;
                self.unit().invalidate_iotlb_pages(d, a.0, am.0)?;
            }
            g => {
                return Err(Exc::InvalidArgument.msg(format!(
                    "granularity {g:?}: expected 'global', 'domain' or 'page'"
                )))
            }
        }
        Ok(())
    }

    /// Context-cache invalidation: "global", "domain" (did) or "device" (sid, fm 0..=3).
    #[pyo3(
        signature = (granularity, did=None, sid=None, fm=U32(0)),
        text_signature = "(self, granularity, did=None, sid=None, fm=0)"
    )]
    fn invalidate_context(
        &self,
        granularity: Str,
        did: Option<&Bound<'_, PyAny>>,
        sid: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = u32_fm)] fm: U32,
    ) -> PyResult<()> {
        // Checked whatever the granularity (a device-selective invalidation carries one too).
        let did = did.map(did_arg).transpose()?;
        let granularity = granularity.0.as_str();
        match granularity {
            "global" => self.unit().invalidate_context_global(),
            "domain" => {
                let d = need("did", granularity, did)?;
                self.unit().invalidate_context_domain(d);
            }
            "device" => {
                let s = device(need("sid", granularity, sid)?, "sid")?;
                self.unit().invalidate_context_device(s, fm.0)?;
            }
            g => {
                return Err(Exc::InvalidArgument.msg(format!(
                    "granularity {g:?}: expected 'global', 'domain' or 'device'"
                )))
            }
        }
        Ok(())
    }

    /// Drain the fault recording registers (oldest first); clears their F bits and PFO, as
    /// software writing 1 to each does (FECTL.IP clears with them).
    fn faults(&self) -> Vec<PyFaultRecord> {
        self.unit()
            .drain_faults()
            .into_iter()
            .map(PyFaultRecord::from)
            .collect()
    }

    /// Every fault reported so far by reason code, recorded or not (FPD, compression, overflow).
    fn fault_counts(&self) -> std::collections::BTreeMap<u8, u64> {
        self.unit().fault_recorder().counts().by_reason.clone()
    }

    /// Counters: hits, misses, evictions, walks, context_hits, context_misses, faults,
    /// faults_recorded, faults_suppressed_fpd, faults_compressed, faults_overflow,
    /// iotlb_size, context_cache_size.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let unit = self.unit();
        let s = unit.stats();
        let c = unit.fault_recorder().counts();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("evictions", unit.iotlb().evictions)?;
        d.set_item("walks", s.walks)?;
        d.set_item("context_hits", s.context_hits)?;
        d.set_item("context_misses", s.context_misses)?;
        d.set_item("faults", c.total)?;
        d.set_item("faults_recorded", c.recorded)?;
        d.set_item("faults_suppressed_fpd", c.suppressed_fpd)?;
        d.set_item("faults_compressed", c.compressed)?;
        d.set_item("faults_overflow", c.overflow)?;
        d.set_item("iotlb_size", unit.iotlb().len())?;
        d.set_item("context_cache_size", unit.context_cache().len())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let u = self.unit();
        let rt = u
            .root_table()
            .map_or("None".to_string(), |r| format!("{r:#x}"));
        format!(
            "Remapper(root_table={rt}, cap={:#x}, ecap={:#x}, iotlb_entries={})",
            u.config().cap,
            u.config().ecap,
            u.iotlb().capacity()
        )
    }
}

/// RTADDR as we accept it: 4 KiB aligned (SMT / TTM, bits 10-11, select scalable mode, which
/// this model does not have).
fn check_rtaddr(v: u64) -> PyResult<u64> {
    if v & 0xfff != 0 {
        return Err(Exc::InvalidArgument.msg(format!(
            "root_table: {v:#x} must be 4 KiB aligned (scalable mode, RTADDR.SMT, is not modelled)"
        )));
    }
    Ok(v)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRemapper>()?;
    m.add_class::<PyTranslation>()?;
    m.add_class::<PyFaultRecord>()?;
    m.add_class::<PyInterrupt>()?;
    Ok(())
}

/// The `out=` of a batch call: a pair of C-contiguous, writeable uint64 and uint8 arrays of
/// `n` entries each, not the same array (checked before anything is translated).
#[allow(clippy::type_complexity)]
fn out_arrays<'py>(
    o: &Bound<'py, PyAny>,
    n: usize,
) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u8>>)> {
    let bad = |what: &str| {
        Exc::InvalidArgument.msg(format!(
            "out: expected (hpa, fault) as C-contiguous writeable 1-D arrays of uint64 and \
             uint8 with {n} entries, {what}"
        ))
    };
    let Ok((h, f)) = o.extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>() else {
        return Err(bad("not a pair"));
    };
    let h = h
        .cast_into::<PyArray1<u64>>()
        .map_err(|_| bad("hpa is not a 1-D uint64 array"))?;
    let f = f
        .cast_into::<PyArray1<u8>>()
        .map_err(|_| bad("fault is not a 1-D uint8 array"))?;
    if !h.is_c_contiguous() || !f.is_c_contiguous() {
        return Err(bad("one is not contiguous"));
    }
    if h.len() != n || f.len() != n {
        return Err(bad(&format!("got {} and {}", h.len(), f.len())));
    }
    Ok((h, f))
}
