//! `vtdwalk.PageTable`: the Python face of [`crate::driver::pagetable::PageTable`].
//!
//! The table state sits behind a mutex and its memory is the shared `PhysMem`; every call takes
//! the table lock, then the memory lock. Batch calls borrow their numpy inputs read-only when
//! they already are contiguous arrays of the right type (else convert a copy), then run with
//! the GIL released.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use super::args::*;
use super::mem::{PyPhysMem, SharedMem};
use super::remapper::PyTranslation;
use crate::addr::{Iova, Maddr};
use crate::driver::pagetable::{PageTable, Perms, Superpages};

/// `lookup_batch`'s answer: the translations and the mapped flags.
type LookupBatch<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<bool>>);

/// A domain's second-level page table of 3, 4 or 5 levels, built in a `PhysMem`.
#[pyclass(name = "PageTable", module = "vtdwalk._core", frozen)]
pub struct PyPageTable {
    mem: SharedMem,
    pt: Mutex<PageTable>,
}

fn perms(read: Flag, write: Flag, snoop: Flag) -> Perms {
    Perms {
        read: read.0,
        write: write.0,
        snoop: snoop.0,
    }
}

/// (iova, maddr, size, read, write).
type MappingTuple = (u64, u64, u64, bool, bool);

impl PyPageTable {
    fn lock(&self) -> MutexGuard<'_, PageTable> {
        self.pt.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PyPageTable {
    /// The walk of every IOVA with the GIL released: the translations (u64 max where not
    /// mapped, the driver layer's in-band marker) and the mapped flags.
    fn lookup_raw(
        &self,
        py: Python<'_>,
        iovas: &Bound<'_, PyAny>,
    ) -> PyResult<(Vec<u64>, Vec<bool>)> {
        let iovas = batch_array::<u64>(iovas, "iovas")?;
        let iv = iovas.as_slice()?;
        let r = py.detach(|| {
            let mut pt = self.lock();
            let mem = self.mem.read();
            let mut out = vec![0u64; iv.len()];
            pt.lookup_many(&mem, iv, &mut out).map(|()| out)
        });
        let out = r?;
        let mapped = out.iter().map(|&h| h != u64::MAX).collect();
        Ok((out, mapped))
    }
}

#[pymethods]
impl PyPageTable {
    #[new]
    #[pyo3(
        signature = (mem, levels=U32(4), node=None, superpages=Str("1G".into())),
        text_signature = "(mem, levels=4, node=None, superpages='1G')"
    )]
    fn new(
        mem: &Bound<'_, PyPhysMem>,
        #[pyo3(from_py_with = u32_levels)] levels: U32,
        #[pyo3(from_py_with = opt_u32_node)] node: Option<U32>,
        superpages: Str,
    ) -> PyResult<Self> {
        let mem = mem.get().mem.clone();
        let node = node.map(|n| n.0);
        mem.read().check_node(node)?;
        let pt = PageTable::new(levels.0, node, Superpages::parse(&superpages.0)?)?;
        Ok(PyPageTable {
            mem,
            pt: Mutex::new(pt),
        })
    }

    /// Machine address of the top table; None until the first allocation (no table).
    #[getter]
    fn root(&self) -> Option<u64> {
        Some(self.lock().root()).filter(|&r| r != 0)
    }
    /// Page-table depth: 3, 4 or 5 levels.
    #[getter]
    fn levels(&self) -> u32 {
        self.lock().levels()
    }
    /// Input address width in bits (39, 48 or 57).
    #[getter]
    fn width(&self) -> u32 {
        self.lock().width()
    }
    /// NUMA node table pages are allocated against (None: no preference).
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
    /// Largest leaf map uses: "none", "2M" or "1G".
    #[getter]
    fn superpages(&self) -> &'static str {
        self.lock().superpages().as_str()
    }

    /// Xen's addr_to_dma_page_maddr: the table at `level` covering `iova` (0 when missing).
    #[pyo3(
        signature = (iova, alloc, level=U32(1)),
        text_signature = "(self, iova, alloc, level=1)"
    )]
    fn leaf_table(
        &self,
        #[pyo3(from_py_with = u64_iova)] iova: U64,
        #[pyo3(from_py_with = flag_alloc)] alloc: Flag,
        #[pyo3(from_py_with = u32_level)] level: U32,
    ) -> PyResult<u64> {
        let mut pt = self.lock();
        let mut mem = self.mem.write();
        Ok(pt.leaf_table(&mut mem, Iova(iova.0), alloc.0, level.0)?)
    }

    /// Map [iova, iova + size) onto [maddr, maddr + size); True when an old entry was present.
    #[pyo3(
        signature = (iova, maddr, size, read=Flag(true), write=Flag(true), snoop=Flag(false)),
        text_signature = "(self, iova, maddr, size, read=True, write=True, snoop=False)"
    )]
    fn map(
        &self,
        #[pyo3(from_py_with = u64_iova)] iova: U64,
        #[pyo3(from_py_with = u64_maddr)] maddr: U64,
        #[pyo3(from_py_with = u64_size)] size: U64,
        #[pyo3(from_py_with = flag_read)] read: Flag,
        #[pyo3(from_py_with = flag_write)] write: Flag,
        #[pyo3(from_py_with = flag_snoop)] snoop: Flag,
    ) -> PyResult<bool> {
        let mut pt = self.lock();
        let mut mem = self.mem.write();
        let perms = perms(read, write, snoop);
        Ok(pt.map(&mut mem, Iova(iova.0), Maddr(maddr.0), size.0, perms)?)
    }

    /// Clear [iova, iova + size); True when something was present.
    fn unmap(
        &self,
        #[pyo3(from_py_with = u64_iova)] iova: U64,
        #[pyo3(from_py_with = u64_size)] size: U64,
    ) -> PyResult<bool> {
        let mut pt = self.lock();
        let mut mem = self.mem.write();
        Ok(pt.unmap(&mut mem, Iova(iova.0), size.0)?)
    }

    /// The `Translation` of `iova` (`domain_id` None), or None when unmapped.
    fn lookup(
        &self,
        #[pyo3(from_py_with = u64_iova)] iova: U64,
    ) -> PyResult<Option<PyTranslation>> {
        let pt = self.lock();
        let mem = self.mem.read();
        Ok(pt
            .lookup(&mem, Iova(iova.0))?
            .map(|t| PyTranslation::of_page_table(&t)))
    }

    /// Merged runs (iova, maddr, size, read, write) in IOVA order.
    fn mappings(&self) -> PyResult<Vec<MappingTuple>> {
        let pt = self.lock();
        let mem = self.mem.read();
        Ok(pt
            .mappings(&mem)?
            .iter()
            .map(|m| (m.iova, m.maddr, m.size, m.read, m.write))
            .collect())
    }

    /// Table pages per NUMA node.
    fn table_pages(&self) -> BTreeMap<u32, u64> {
        self.lock().table_pages()
    }

    /// Free every table page.
    fn free(&self) -> PyResult<()> {
        let mut pt = self.lock();
        let mut mem = self.mem.write();
        Ok(pt.free(&mut mem)?)
    }

    /// Map 4 KiB pages iovas[i] -> maddrs[i] (1-D arrays or sequences of unsigned integers);
    /// True when an old entry was present.
    #[pyo3(
        signature = (iovas, maddrs, read=Flag(true), write=Flag(true), snoop=Flag(false)),
        text_signature = "(self, iovas, maddrs, read=True, write=True, snoop=False)"
    )]
    fn map_pages(
        &self,
        py: Python<'_>,
        iovas: &Bound<'_, PyAny>,
        maddrs: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = flag_read)] read: Flag,
        #[pyo3(from_py_with = flag_write)] write: Flag,
        #[pyo3(from_py_with = flag_snoop)] snoop: Flag,
    ) -> PyResult<bool> {
        let (iovas, maddrs) = (
            batch_array::<u64>(iovas, "iovas")?,
            batch_array::<u64>(maddrs, "maddrs")?,
        );
        let (iv, mv) = (iovas.as_slice()?, maddrs.as_slice()?);
        let perms = perms(read, write, snoop);
        let r = py.detach(|| {
            let mut pt = self.lock();
            let mut mem = self.mem.write();
            pt.map_pages(&mut mem, iv, mv, perms)
        });
        Ok(r?)
    }

    /// Unmap 4 KiB pages (a 1-D array or sequence of IOVAs); True when something was present.
    fn unmap_pages(&self, py: Python<'_>, iovas: &Bound<'_, PyAny>) -> PyResult<bool> {
        let iovas = batch_array::<u64>(iovas, "iovas")?;
        let iv = iovas.as_slice()?;
        let r = py.detach(|| {
            let mut pt = self.lock();
            let mut mem = self.mem.write();
            pt.unmap_pages(&mut mem, iv)
        });
        Ok(r?)
    }

    /// Translate each IOVA (a 1-D array or sequence): `(hpa, mapped)`, two arrays as long as
    /// `iovas`; `mapped[i]` is False where `iovas[i]` is not mapped, and `hpa[i]` is then 0.
    fn lookup_batch<'py>(
        &self,
        py: Python<'py>,
        iovas: &Bound<'py, PyAny>,
    ) -> PyResult<LookupBatch<'py>> {
        let (mut hpa, mapped) = self.lookup_raw(py, iovas)?;
        for h in hpa.iter_mut() {
            if *h == u64::MAX {
                *h = 0;
            }
        }
        Ok((hpa.into_pyarray(py), mapped.into_pyarray(py)))
    }

    /// Deprecated (use `lookup_batch`): u64 max (2**64 - 1) where unmapped.
    fn lookup_many<'py>(
        &self,
        py: Python<'py>,
        iovas: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let warnings = py.import("warnings")?;
        let category = py.get_type::<pyo3::exceptions::PyDeprecationWarning>();
        warnings.call_method1(
            "warn",
            (
                "PageTable.lookup_many is deprecated: use lookup_batch, which returns \
                 (hpa, mapped) arrays",
                category,
                2,
            ),
        )?;
        Ok(self.lookup_raw(py, iovas)?.0.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        let pt = self.lock();
        format!(
            "PageTable(levels={}, root={:#x}, node={:?}, superpages={:?}, table_pages={})",
            pt.levels(),
            pt.root(),
            pt.node(),
            pt.superpages().as_str(),
            pt.table_count()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPageTable>()?;
    Ok(())
}
