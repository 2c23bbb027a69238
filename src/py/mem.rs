//! `vtdwalk.PhysMem`: the Python face of [`crate::mem::PhysMem`].
//!
//! The arena is shared (`Arc<RwLock<..>>`) with every page table and remapping unit built on it,
//! so batch calls can read it with the GIL released. No lock is ever held while the GIL is
//! being acquired.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use numpy::{IntoPyArray, PyArray1};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView};

use super::args::*;
use super::errors::Exc;
use crate::addr::Maddr;
use crate::mem::{External, NodeSpec, PhysMem, MAX_NODES};

/// A `PhysMem` shared between Python objects.
#[derive(Clone)]
pub struct SharedMem(Arc<RwLock<PhysMem>>);

impl SharedMem {
    pub fn new(m: PhysMem) -> Self {
        SharedMem(Arc::new(RwLock::new(m)))
    }
    /// Read access. A poisoned lock (a panic elsewhere, which the code never does on purpose)
    /// still yields the data: every mutation completes or changes nothing before it returns.
    pub fn read(&self) -> RwLockReadGuard<'_, PhysMem> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn write(&self) -> RwLockWriteGuard<'_, PhysMem> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
    /// True when both handles are the same arena.
    pub fn same(&self, other: &SharedMem) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Simulated host physical memory: NUMA nodes, sparse 4 KiB frames, a page allocator per node.
#[pyclass(name = "PhysMem", module = "vtdwalk._core", frozen)]
pub struct PyPhysMem {
    pub mem: SharedMem,
}

#[pymethods]
impl PyPhysMem {
    /// `nodes`: `(base, size)` for a node on the host's sparse memory, or `(base, buffer)` for
    /// a node that is the given buffer-protocol object's memory, used in place (kept alive and
    /// unresizable while this memory lives; read-only buffers refuse writes).
    /// `huge_pages`: ask for transparent huge pages on the sparse nodes' reservations.
    /// `backing_limit`: most bytes of host memory the sparse nodes may back at once (default:
    /// the host's physical memory); writes and table building past it raise `OutOfMemory`.
    #[new]
    #[pyo3(
        signature = (nodes, *, huge_pages=Flag(false), backing_limit=None),
        text_signature = "(nodes, *, huge_pages=False, backing_limit=None)"
    )]
    fn new(
        nodes: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = flag_huge_pages)] huge_pages: Flag,
        #[pyo3(from_py_with = opt_u64_backing_limit)] backing_limit: Option<U64>,
    ) -> PyResult<Self> {
        let specs = node_specs(nodes)?;
        let mut m = PhysMem::with_nodes(specs, huge_pages.0)?;
        if let Some(b) = backing_limit {
            m.set_backing_limit(b.0 >> 12);
        }
        Ok(PyPhysMem {
            mem: SharedMem::new(m),
        })
    }

    /// True when the sparse nodes ask for transparent huge pages.
    #[getter]
    fn huge_pages(&self) -> bool {
        self.mem.read().huge_pages()
    }

    /// Most bytes of host memory the sparse nodes may back at once.
    #[getter]
    fn backing_limit(&self) -> u64 {
        self.mem.read().backing_limit().saturating_mul(4096)
    }

    /// `(base, size)` of each node.
    #[getter]
    fn nodes(&self) -> Vec<(u64, u64)> {
        self.mem.read().node_ranges()
    }

    /// How many NUMA nodes the memory has.
    #[getter]
    fn num_nodes(&self) -> usize {
        self.mem.read().num_nodes()
    }

    /// Allocate `npages` contiguous zeroed 4 KiB pages on `node` when it has room, else on
    /// another node (None: the first node with room); returns the address of the first.
    /// Raises OutOfMemory.
    #[pyo3(signature = (npages=U64(1), node=None), text_signature = "(self, npages=1, node=None)")]
    fn alloc_pages(
        &self,
        #[pyo3(from_py_with = u64_npages)] npages: U64,
        #[pyo3(from_py_with = opt_u32_node)] node: Option<U32>,
    ) -> PyResult<u64> {
        Ok(self
            .mem
            .write()
            .alloc_pages(npages.0, node.map(|n| n.0))?
            .get())
    }

    /// Free `npages` pages from `maddr`, as allocated. Raises BadFree for pages not allocated.
    #[pyo3(signature = (maddr, npages=U64(1)), text_signature = "(self, maddr, npages=1)")]
    fn free_pages(
        &self,
        #[pyo3(from_py_with = u64_maddr)] maddr: U64,
        #[pyo3(from_py_with = u64_npages)] npages: U64,
    ) -> PyResult<()> {
        Ok(self.mem.write().free_pages(Maddr(maddr.0), npages.0)?)
    }

    /// Whether the page holding `maddr` is allocated.
    fn is_allocated(&self, #[pyo3(from_py_with = u64_maddr)] maddr: U64) -> bool {
        self.mem.read().is_allocated(Maddr(maddr.0))
    }

    /// The NUMA node holding `maddr`. Raises MemoryAccessError outside every node.
    fn node_of(&self, #[pyo3(from_py_with = u64_maddr)] maddr: U64) -> PyResult<u32> {
        self.mem.read().node_of(Maddr(maddr.0)).ok_or_else(|| {
            Exc::MemoryAccessError.msg(format!("address {:#x} is outside every NUMA node", maddr.0))
        })
    }

    /// `n` bytes from `maddr` (at most 1 GiB, inside one node); pages never written read as
    /// zeros.
    fn read<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = u64_maddr)] maddr: U64,
        #[pyo3(from_py_with = u64_n)] n: U64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let n = usize::try_from(n.0)
            .ok()
            .filter(|&n| n <= 1 << 30)
            .ok_or_else(|| Exc::InvalidArgument.msg("n: a read of more than 1 GiB at once"))?;
        let mut buf = vec![0u8; n];
        self.mem.read().read(Maddr(maddr.0), &mut buf)?;
        Ok(PyBytes::new(py, &buf))
    }

    /// Write any bytes-like object of unsigned bytes (format `B` or `c`): bytes, bytearray,
    /// memoryview, a numpy `uint8` array; a non-contiguous one is written in C (row) order.
    fn write(
        &self,
        #[pyo3(from_py_with = u64_maddr)] maddr: U64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        with_bytes(data, |bytes| {
            Ok(self.mem.write().write(Maddr(maddr.0), bytes)?)
        })
    }

    /// The little-endian u64 at the 8-byte aligned `maddr`.
    fn read_u64(&self, #[pyo3(from_py_with = u64_maddr)] maddr: U64) -> PyResult<u64> {
        Ok(self.mem.read().read_u64(Maddr(maddr.0))?)
    }

    /// Store `value` as a little-endian u64 at the 8-byte aligned `maddr`.
    fn write_u64(
        &self,
        #[pyo3(from_py_with = u64_maddr)] maddr: U64,
        #[pyo3(from_py_with = u64_value)] value: U64,
    ) -> PyResult<()> {
        Ok(self.mem.write().write_u64(Maddr(maddr.0), value.0)?)
    }

    /// `count` consecutive u64 words from an 8-byte aligned address, as a numpy array.
    fn read_u64s<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = u64_maddr)] maddr: U64,
        #[pyo3(from_py_with = u64_count)] count: U64,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let n = usize::try_from(count.0)
            .ok()
            .filter(|&n| n <= 1 << 27)
            .ok_or_else(|| {
                Exc::InvalidArgument.msg("count: a read of more than 2**27 words at once")
            })?;
        if maddr.0 & 7 != 0 {
            return Err(Exc::MemoryAccessError
                .msg(format!("u64 access at {:#x} not 8-byte aligned", maddr.0)));
        }
        let mut bytes = vec![0u8; n * 8];
        self.mem.read().read(Maddr(maddr.0), &mut bytes)?;
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(words.into_pyarray(py))
    }

    /// Write `values` (a 1-D array or sequence of unsigned integers, at most 2**27 as for
    /// `read_u64s`) as consecutive words from an 8-byte aligned address. The words are
    /// converted once (not at all when they already are a contiguous uint64 array) and written
    /// with the GIL released.
    fn write_u64s(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = u64_maddr)] maddr: U64,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let values = batch_array_max::<u64>(values, "values", 1 << 27)?;
        let words = values.as_slice()?;
        let r = py.detach(|| self.mem.write().write_u64s(Maddr(maddr.0), words));
        Ok(r?)
    }

    /// Per node: base, size, total/reserved/allocated/free/backed pages, fallbacks.
    /// `total_pages == reserved_pages + allocated_pages + free_pages`; `reserved_pages` is 1
    /// (frame 0, address 0 meaning "no table") on a node that starts at 0, else 0.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (i, s) in self.mem.read().stats().iter().enumerate() {
            let d = PyDict::new(py);
            d.set_item("node", i)?;
            d.set_item("base", s.base)?;
            d.set_item("size", s.size)?;
            d.set_item("total_pages", s.total_pages)?;
            d.set_item("reserved_pages", s.reserved_pages)?;
            d.set_item("allocated_pages", s.allocated_pages)?;
            d.set_item("free_pages", s.free_pages)?;
            d.set_item("backed_pages", s.backed_pages)?;
            d.set_item("fallbacks", s.fallbacks)?;
            list.append(d)?;
        }
        Ok(list)
    }

    fn __repr__(&self) -> String {
        let nodes: Vec<String> = self
            .mem
            .read()
            .node_ranges()
            .iter()
            .map(|(b, s)| format!("({b:#x}, {s:#x})"))
            .collect();
        format!("PhysMem(nodes=[{}])", nodes.join(", "))
    }
}

/// Calls `f` with the bytes of a bytes-like object in C order: `bytes` as they are, other
/// objects copied once. Only the stable ABI is used (the buffer protocol entered it in Python
/// 3.11), so an exporter other than `bytes`/`bytearray` is read through a `memoryview`, whose
/// item format must be an unsigned byte (`B` or `c`).
pub(crate) fn with_bytes<R>(
    data: &Bound<'_, PyAny>,
    f: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return f(b.as_bytes());
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return f(&b.to_vec());
    }
    let refuse = || Exc::InvalidArgument.msg("data must be a bytes-like object of unsigned bytes");
    let py = data.py();
    let view = PyMemoryView::from(data).map_err(|_| refuse())?;
    let format: String = view.getattr(intern!(py, "format"))?.extract()?;
    let item = format
        .strip_prefix(['@', '=', '<', '>', '!'])
        .unwrap_or(&format);
    if !matches!(item, "B" | "c") {
        return Err(refuse());
    }
    let copy = view.call_method0(intern!(py, "tobytes"))?;
    view.call_method0(intern!(py, "release"))?;
    f(copy.cast::<PyBytes>()?.as_bytes())
}

/// `repr(ob)` cut to a short prefix, for messages.
fn short_repr(ob: &Bound<'_, PyAny>) -> String {
    let r = ob
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    if r.chars().count() > 60 {
        r.chars().take(57).collect::<String>() + "..."
    } else {
        r
    }
}

/// The node descriptions: `(base, size)` or `(base, buffer)` pairs. The count is checked
/// before anything is built (a sequence claiming 2**36 items is `OutOfMemory`, not an abort).
fn node_specs(nodes: &Bound<'_, PyAny>) -> PyResult<Vec<NodeSpec>> {
    let expected = || {
        Exc::InvalidArgument.msg(format!(
            "nodes: expected a list of (base, size) or (base, buffer) pairs, got {}",
            short_repr(nodes)
        ))
    };
    if nodes.is_instance_of::<pyo3::types::PyString>()
        || nodes.is_instance_of::<PyBytes>()
        || nodes.is_instance_of::<PyByteArray>()
    {
        return Err(expected());
    }
    let n = nodes.len().map_err(|_| expected())?;
    if n > MAX_NODES {
        return Err(crate::error::Error::HostMemory {
            bytes: n as u64,
            why: "nodes: too many nodes (at most 2**24)",
        }
        .into());
    }
    let mut specs = Vec::new();
    specs.try_reserve_exact(n).map_err(|_| {
        PyErr::from(crate::error::Error::HostMemory {
            bytes: n as u64,
            why: "nodes: no host memory for the node list",
        })
    })?;
    for item in nodes.try_iter().map_err(|_| expected())? {
        if specs.len() >= n {
            return Err(expected());
        }
        let item = item?;
        let (base, second) = item
            .extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()
            .map_err(|_| expected())?;
        let base: U64 = base.extract().map_err(|_| expected())?;
        if let Ok(size) = second.extract::<U64>() {
            specs.push(NodeSpec::Sparse {
                base: base.0,
                size: size.0,
            });
        } else if second.is_instance_of::<pyo3::types::PyInt>() {
            return Err(expected());
        } else {
            let (memory, _) = External::from_buffer(&second, "nodes")?;
            specs.push(NodeSpec::Buffer {
                base: base.0,
                memory,
            });
        }
    }
    Ok(specs)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPhysMem>()?;
    Ok(())
}
