//! The one place where Rust errors become Python exceptions. The exception classes are declared
//! in Python (`vtdwalk/errors.py`, rooted at `VtdError`) so they can carry attributes and mix in
//! the matching builtin (`ValueError`, `MemoryError`); here they are looked up once and raised.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::Error;

/// The exception classes of `vtdwalk.errors` that native code raises.
#[derive(Clone, Copy)]
pub enum Exc {
    InvalidArgument,
    MemoryAccessError,
    OutOfMemory,
    BadFree,
    DmaFault,
    InterruptFault,
}

impl Exc {
    fn name(self) -> &'static str {
        match self {
            Exc::InvalidArgument => "InvalidArgument",
            Exc::MemoryAccessError => "MemoryAccessError",
            Exc::OutOfMemory => "OutOfMemory",
            Exc::BadFree => "BadFree",
            Exc::DmaFault => "DmaFault",
            Exc::InterruptFault => "InterruptFault",
        }
    }

    /// The class object, imported from `vtdwalk.errors` on first use.
    pub fn class<'py>(self, py: Python<'py>) -> PyResult<&'py Bound<'py, PyType>> {
        static CELLS: [PyOnceLock<Py<PyType>>; 6] = [
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
            PyOnceLock::new(),
        ];
        CELLS[self as usize].import(py, "vtdwalk.errors", self.name())
    }

    /// Build the exception with positional arguments.
    pub fn err<'py>(self, py: Python<'py>, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
        match self.class(py).and_then(|c| c.call1(args)) {
            Ok(obj) => PyErr::from_value(obj),
            Err(e) => e,
        }
    }

    /// Build the exception with a message.
    pub fn msg(self, msg: impl Into<String>) -> PyErr {
        let msg = msg.into();
        Python::attach(|py| self.err(py, (msg,)))
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::MemoryAccess { .. } => Exc::MemoryAccessError.msg(msg),
            Error::OutOfMemory { .. } | Error::HostMemory { .. } => Exc::OutOfMemory.msg(msg),
            Error::BadFree { .. } => Exc::BadFree.msg(msg),
            Error::InvalidArgument { .. } => Exc::InvalidArgument.msg(msg),
        }
    }
}
