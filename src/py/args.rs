//! Argument types that turn a wrong Python argument into `vtdwalk.InvalidArgument` (a
//! `VtdError` and a `ValueError`) rather than a bare `OverflowError` or `TypeError`.

use pyo3::prelude::*;

use super::errors::Exc;

/// An unsigned 64-bit integer argument (an address, a size, a count).
#[derive(Clone, Copy, Debug)]
pub struct U64(pub u64);

impl<'py> FromPyObject<'py> for U64 {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        ob.extract::<u64>().map(U64).map_err(|_| {
            let shown = ob
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into());
            Exc::InvalidArgument.msg(format!("expected an integer in [0, 2**64), got {shown}"))
        })
    }
}

/// A non-negative integer that fits in u32 (a node number, a level).
#[derive(Clone, Copy, Debug)]
pub struct U32(pub u32);

impl<'py> FromPyObject<'py> for U32 {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        ob.extract::<u32>().map(U32).map_err(|_| {
            let shown = ob
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into());
            Exc::InvalidArgument.msg(format!("expected an integer in [0, 2**32), got {shown}"))
        })
    }
}
