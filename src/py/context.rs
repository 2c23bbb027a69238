//! `vtdwalk.RootTable`: the Python face of [`crate::driver::context::RootTable`].

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;

use super::args::*;
use super::errors::Exc;
use super::mem::{PyPhysMem, SharedMem};
use super::spec::did_arg;
use crate::driver::context::{ContextFields, RootTable};
use crate::spec::TranslationType;

/// A remapping unit's root table and context tables (legacy mode), built in a `PhysMem`.
#[pyclass(name = "RootTable", module = "vtdwalk._core", frozen)]
pub struct PyRootTable {
    mem: SharedMem,
    rt: Mutex<RootTable>,
}

impl PyRootTable {
    fn lock(&self) -> MutexGuard<'_, RootTable> {
        self.rt.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The (bus, devfn) a call names: the old `(bus, devfn)` pair of ints, or, with `devfn`
/// omitted, one device in any form [`device`] takes (a `Bdf`, a string, a source-id).
fn bus_devfn(bus: &Bound<'_, PyAny>, devfn: Option<U32>) -> PyResult<(u8, u8)> {
    match devfn {
        Some(d) => {
            let b: U32 = bus.extract()?;
            Ok((byte("bus", b)?, byte("devfn", d)?))
        }
        None => {
            let sid = device(bus, "device")?;
            Ok(((sid >> 8) as u8, sid as u8))
        }
    }
}

fn byte(what: &str, v: U32) -> PyResult<u8> {
    u8::try_from(v.0)
        .map_err(|_| Exc::InvalidArgument.msg(format!("{what}: {} is not in 0..=255", v.0)))
}

#[pymethods]
impl PyRootTable {
    #[new]
    #[pyo3(signature = (mem, node=None))]
    fn new(
        mem: &Bound<'_, PyPhysMem>,
        #[pyo3(from_py_with = opt_u32_node)] node: Option<U32>,
    ) -> PyResult<Self> {
        let mem = mem.get().mem.clone();
        let node = node.map(|n| n.0);
        mem.read().check_node(node)?;
        Ok(PyRootTable {
            mem,
            rt: Mutex::new(RootTable::new(node)),
        })
    }

    /// Machine address of the root table; None until allocated (no table).
    #[getter]
    fn maddr(&self) -> Option<u64> {
        Some(self.lock().maddr()).filter(|&m| m != 0)
    }
    /// NUMA node the tables are allocated against (None: no preference).
    #[getter]
    fn get_node(&self) -> Option<u32> {
        self.lock().node()
    }
    #[setter]
    fn set_node(&self, #[pyo3(from_py_with = opt_u32_node)] node: Option<U32>) -> PyResult<()> {
        let node = node.map(|n| n.0);
        self.mem.read().check_node(node)?;
        self.lock().set_node(node);
        Ok(())
    }

    /// Allocate the root table now, on the node (idempotent); returns its address.
    fn alloc(&self) -> PyResult<u64> {
        let mut rt = self.lock();
        let mut mem = self.mem.write();
        Ok(rt.alloc(&mut mem)?)
    }

    /// Xen's bus_to_context_maddr: the bus's context table (0 when missing and not alloc).
    #[pyo3(signature = (bus, alloc=Flag(false)), text_signature = "(self, bus, alloc=False)")]
    fn context_table(
        &self,
        #[pyo3(from_py_with = u32_bus)] bus: U32,
        #[pyo3(from_py_with = flag_alloc)] alloc: Flag,
    ) -> PyResult<u64> {
        let bus = byte("bus", bus)?;
        let mut rt = self.lock();
        let mut mem = self.mem.write();
        Ok(rt.context_table(&mut mem, bus, alloc.0)?)
    }

    /// Write a present legacy context entry, allocating the root/context tables as needed.
    #[pyo3(signature = (bus, devfn, slptptr, aw, did, tt=U32(0), fpd=Flag(false)), text_signature = "(self, bus, devfn, slptptr, aw, did, tt=0, fpd=False)")]
    #[allow(clippy::too_many_arguments)]
    fn set_context(
        &self,
        #[pyo3(from_py_with = u32_bus)] bus: U32,
        #[pyo3(from_py_with = u32_devfn)] devfn: U32,
        #[pyo3(from_py_with = u64_slptptr)] slptptr: U64,
        #[pyo3(from_py_with = u32_aw)] aw: U32,
        did: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = u32_tt)] tt: U32,
        #[pyo3(from_py_with = flag_fpd)] fpd: Flag,
    ) -> PyResult<()> {
        let (bus, devfn) = (byte("bus", bus)?, byte("devfn", devfn)?);
        let did = did_arg(did)?;
        if tt.0 > 2 {
            return Err(Exc::InvalidArgument.msg(format!(
                "tt: {} (0 multi-level, 1 multi-level + device-TLB, 2 pass-through)",
                tt.0
            )));
        }
        let f = ContextFields {
            slptptr: slptptr.0,
            aw: aw.0,
            did,
            tt: TranslationType::from_bits(u64::from(tt.0)),
            fpd: fpd.0,
        };
        let mut rt = self.lock();
        let mut mem = self.mem.write();
        Ok(rt.set_context(&mut mem, bus, devfn, f)?)
    }

    /// Clear the entry of bus:devfn (or of one device: `clear_context(device)`); True when it
    /// was present.
    #[pyo3(signature = (bus, devfn=None))]
    fn clear_context(
        &self,
        bus: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = opt_u32_devfn)] devfn: Option<U32>,
    ) -> PyResult<bool> {
        let (bus, devfn) = bus_devfn(bus, devfn)?;
        let mut rt = self.lock();
        let mut mem = self.mem.write();
        Ok(rt.clear_context(&mut mem, bus, devfn)?)
    }

    /// (lo, hi) of the present entry of bus:devfn, or None.
    #[pyo3(signature = (bus, devfn=None))]
    fn context(
        &self,
        bus: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = opt_u32_devfn)] devfn: Option<U32>,
    ) -> PyResult<Option<(u64, u64)>> {
        let (bus, devfn) = bus_devfn(bus, devfn)?;
        let rt = self.lock();
        let mem = self.mem.read();
        Ok(rt.context(&mem, bus, devfn)?.map(|e| (e.lo, e.hi)))
    }

    /// (lo, hi) of the root entry of `bus` as stored, present or not; (0, 0) before the root
    /// table is allocated.
    fn raw_root(&self, #[pyo3(from_py_with = u32_bus)] bus: U32) -> PyResult<(u64, u64)> {
        let bus = byte("bus", bus)?;
        let rt = self.lock();
        let mem = self.mem.read();
        let e = rt.raw_root(&mem, bus)?;
        Ok((e.lo, e.hi))
    }

    /// (lo, hi) of the context entry of bus:devfn as stored, present or not; (0, 0) when the
    /// bus has no context table (root entry not present). Found through the root entry's CTP.
    #[pyo3(signature = (bus, devfn=None))]
    fn raw_context(
        &self,
        bus: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = opt_u32_devfn)] devfn: Option<U32>,
    ) -> PyResult<(u64, u64)> {
        let (bus, devfn) = bus_devfn(bus, devfn)?;
        let rt = self.lock();
        let mem = self.mem.read();
        let e = rt.raw_context(&mem, bus, devfn)?;
        Ok((e.lo, e.hi))
    }

    /// (bus, devfn, lo, hi) of every present entry.
    fn entries(&self) -> PyResult<Vec<(u8, u8, u64, u64)>> {
        let rt = self.lock();
        let mem = self.mem.read();
        Ok(rt
            .entries(&mem)?
            .into_iter()
            .map(|(b, d, e)| (b, d, e.lo, e.hi))
            .collect())
    }

    /// Pages per NUMA node (root and context tables).
    fn table_pages(&self) -> BTreeMap<u32, u64> {
        self.lock().table_pages()
    }

    /// Free the root table and every context table.
    fn free(&self) -> PyResult<()> {
        let mut rt = self.lock();
        let mut mem = self.mem.write();
        Ok(rt.free(&mut mem)?)
    }

    fn __repr__(&self) -> String {
        let rt = self.lock();
        format!("RootTable(maddr={:#x}, node={:?})", rt.maddr(), rt.node())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRootTable>()?;
    Ok(())
}
