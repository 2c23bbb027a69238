//! The native module `vtdwalk._core`: thin PyO3 wrappers over the pure Rust core.
//! Each submodule adds its classes in `register`.

use pyo3::prelude::*;

pub mod args;
pub mod context;
pub mod errors;
pub mod ir;
pub mod mem;
pub mod pagetable;
pub mod qi;
pub mod regs;
pub mod remapper;
pub mod spec;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    mem::register(m)?;
    pagetable::register(m)?;
    context::register(m)?;
    remapper::register(m)?;
    spec::register(m)?;
    regs::register(m)?;
    qi::register(m)?;
    ir::register(m)?;
    Ok(())
}
