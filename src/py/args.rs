//! Argument types that turn a wrong Python argument into `vtdwalk.InvalidArgument` (a
//! `VtdError` and a `ValueError`) rather than a bare `OverflowError` or `TypeError`.

use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

use super::errors::Exc;

/// An unsigned integer argument of a given width (an address, a size, a count, a node number,
/// a level); a negative, too large or non-integer value raises `InvalidArgument`.
macro_rules! uint_arg {
    ($(#[$m:meta])* $name:ident, $t:ty, $range:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name(pub $t);

        impl<'py> FromPyObject<'py> for $name {
            fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
                ob.extract::<$t>().map($name).map_err(|_| {
                    Exc::InvalidArgument
                        .msg(format!(concat!("expected an integer in ", $range, ", got {}"), shown(ob)))
                })
            }
        }
    };
}

uint_arg!(
    /// An unsigned 64-bit integer argument (an address, a size, a count).
    U64,
    u64,
    "[0, 2**64)"
);
uint_arg!(
    /// A non-negative integer that fits in u32 (a node number, a level).
    U32,
    u32,
    "[0, 2**32)"
);

/// A bool argument (a permission, a flag): anything but `True`/`False` (or a numpy bool) raises
/// `InvalidArgument` rather than a bare `TypeError`.
#[derive(Clone, Copy, Debug)]
pub struct Flag(pub bool);

impl<'py> FromPyObject<'py> for Flag {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        ob.extract::<bool>().map(Flag).map_err(|_| {
            Exc::InvalidArgument.msg(format!("expected True or False, got {}", shown(ob)))
        })
    }
}

/// A str argument (a granularity, a mode name).
#[derive(Clone, Debug)]
pub struct Str(pub String);

impl<'py> FromPyObject<'py> for Str {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        ob.extract::<String>()
            .map(Str)
            .map_err(|_| Exc::InvalidArgument.msg(format!("expected a str, got {}", shown(ob))))
    }
}

/// `repr(ob)`, shortened, for error messages.
fn shown(ob: &Bound<'_, PyAny>) -> String {
    let mut s = ob
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    if s.chars().count() > 60 {
        s = s.chars().take(57).collect::<String>() + "...";
    }
    s
}

/// Element types a batch call accepts, with the largest value each may hold.
pub trait BatchElement: Element + Copy {
    /// Largest accepted value (`true` counts as 1).
    const MAX: u128;
    /// What the argument is, for messages.
    const WHAT: &'static str;
    /// numpy dtype kinds converted (after the range check) when the dtype is not exactly `Self`.
    const KINDS: &'static [u8];
    /// One Python item (an int, a numpy integer, a bool for flags), when it is in range.
    fn from_item(ob: &Bound<'_, PyAny>) -> Option<Self>;
}

impl BatchElement for u64 {
    const MAX: u128 = u64::MAX as u128;
    const WHAT: &'static str = "a 1-D array of unsigned integers";
    const KINDS: &'static [u8] = b"iu";
    fn from_item(ob: &Bound<'_, PyAny>) -> Option<Self> {
        if ob.is_instance_of::<PyBool>() {
            return None;
        }
        ob.extract().ok()
    }
}

impl BatchElement for u16 {
    const MAX: u128 = u16::MAX as u128;
    const WHAT: &'static str = "a 1-D array of unsigned integers";
    const KINDS: &'static [u8] = b"iu";
    fn from_item(ob: &Bound<'_, PyAny>) -> Option<Self> {
        if ob.is_instance_of::<PyBool>() {
            return None;
        }
        ob.extract().ok()
    }
}

impl BatchElement for bool {
    const MAX: u128 = 1;
    const WHAT: &'static str = "a 1-D array of booleans";
    const KINDS: &'static [u8] = b"biu";
    fn from_item(ob: &Bound<'_, PyAny>) -> Option<Self> {
        ob.extract().ok()
    }
}

/// A batch argument as a contiguous 1-D numpy array of `T`: the caller's own array when it
/// already is one (no copy), else a converted copy. See [`batch_array`].
pub struct BatchArray<'py, T: BatchElement>(PyReadonlyArray1<'py, T>);

impl<T: BatchElement> BatchArray<'_, T> {
    /// The elements; a plain slice that the GIL-free part of a batch call can read.
    pub fn as_slice(&self) -> PyResult<&[T]> {
        self.0
            .as_slice()
            .map_err(|_| Exc::InvalidArgument.msg("internal: batch array not contiguous"))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// Every item of the sequence `ob` as a `T`, or None when one is not (or `ob` is no sequence).
fn items<T: BatchElement>(ob: &Bound<'_, PyAny>) -> PyResult<Option<Vec<T>>> {
    let Ok(it) = ob.try_iter() else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for x in it {
        match T::from_item(&x?) {
            Some(v) => out.push(v),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Convert the batch argument `name` to a contiguous 1-D array of `T`.
///
/// Fast path: `ob` already is a 1-D C-contiguous array of dtype `T`; it is borrowed as is.
/// Otherwise `numpy.asarray(ob)` (lists, other integer dtypes, strided views) must be 1-D, of an
/// accepted kind (`T::KINDS`), with every value in `[0, T::MAX]`; it is then copied into a
/// contiguous array of `T`. Anything else raises `InvalidArgument` naming `name`.
pub fn batch_array<'py, T: BatchElement>(
    ob: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<BatchArray<'py, T>> {
    batch_array_max(ob, name, usize::MAX)
}

/// [`batch_array`] with at most `max_len` entries, checked before anything is converted.
pub fn batch_array_max<'py, T: BatchElement>(
    ob: &Bound<'py, PyAny>,
    name: &str,
    max_len: usize,
) -> PyResult<BatchArray<'py, T>> {
    let too_long = |n: usize| {
        Exc::InvalidArgument.msg(format!("{name}: {n} entries, more than {max_len} at once"))
    };
    let bad =
        |got: String| Exc::InvalidArgument.msg(format!("{name}: expected {}, got {got}", T::WHAT));
    if let Ok(a) = ob.cast::<PyArray1<T>>() {
        if a.is_c_contiguous() {
            if a.len() > max_len {
                return Err(too_long(a.len()));
            }
            let r = a
                .try_readonly()
                .map_err(|e| Exc::InvalidArgument.msg(format!("{name}: {e}")))?;
            return Ok(BatchArray(r));
        }
    }
    let py = ob.py();
    let np = py.import("numpy")?;
    let arr = np
        .getattr("asarray")?
        .call1((ob,))
        .map_err(|_| bad(shown(ob)))?;
    let Ok(u) = arr.cast::<PyUntypedArray>() else {
        return Err(bad(shown(ob)));
    };
    let is_array = ob.is_instance_of::<PyUntypedArray>();
    if u.ndim() != 1 {
        return Err(bad(if is_array {
            format!("a {}-D array", u.ndim())
        } else {
            shown(ob)
        }));
    }
    if u.len() > max_len {
        return Err(too_long(u.len()));
    }
    let kind = u.dtype().kind();
    if u.len() > 0 {
        if !T::KINDS.contains(&kind) {
            if !is_array {
                // A list numpy did not make integers of: mixed ints on both sides of 2**63
                // become float64, larger ones objects. Take it item by item instead.
                if let Some(v) = items::<T>(ob)? {
                    let r = v
                        .into_pyarray(py)
                        .try_readonly()
                        .map_err(|e| Exc::InvalidArgument.msg(format!("{name}: {e}")))?;
                    return Ok(BatchArray(r));
                }
            }
            return Err(bad(if is_array {
                format!("an array of {}", u.dtype())
            } else {
                format!("{} (as an array of {})", shown(ob), u.dtype())
            }));
        }
        if kind != b'b' {
            let lo: i128 = arr.call_method0("min")?.extract()?;
            let hi: i128 = arr.call_method0("max")?.extract()?;
            if lo < 0 || hi as u128 > T::MAX {
                let v = if lo < 0 { lo } else { hi };
                return Err(Exc::InvalidArgument.msg(format!(
                    "{name}: expected {} with values in [0, {:#x}], got {v}",
                    T::WHAT,
                    T::MAX
                )));
            }
        }
    }
    let conv = np
        .getattr("ascontiguousarray")?
        .call1((arr, numpy::dtype::<T>(py)))?;
    let a = conv
        .cast_into::<PyArray1<T>>()
        .map_err(|_| bad(shown(ob)))?;
    let r = a
        .try_readonly()
        .map_err(|e| Exc::InvalidArgument.msg(format!("{name}: {e}")))?;
    Ok(BatchArray(r))
}

/// A device argument named `name`, in any of the forms the API accepts: a `Bdf` (any object
/// with an integer `sid`), a `"ssss:bb:dd.f"` / `"bb:dd.f"` string (hex; the segment is not part
/// of a source-id and is ignored here) or an int source-id `bus << 8 | devfn`. Anything else,
/// a malformed string or a value out of range raises `InvalidArgument` naming `name`.
pub fn device(ob: &Bound<'_, PyAny>, name: &str) -> PyResult<u16> {
    let bad = |why: String| Exc::InvalidArgument.msg(format!("{name}: {why}"));
    // The common forms first, each with one type check (a failed conversion builds an error).
    if let Ok(i) = ob.cast_exact::<PyInt>() {
        return i
            .extract::<u16>()
            .map_err(|_| bad(format!("source-id {} is not in 0..=0xffff", shown(ob))));
    }
    if let Ok(text) = ob.cast_exact::<PyString>() {
        let text = text.to_cow()?;
        return crate::addr::SourceId::parse(&text)
            .map(|(_, sid)| sid.0)
            .ok_or_else(|| {
                bad(format!(
                    "{} is not a PCI address of the form [ssss:]bb:dd.f",
                    shown(ob)
                ))
            });
    }
    if ob.is_instance_of::<PyBool>() {
        return Err(bad(format!(
            "expected a Bdf, a 'bb:dd.f' string or a source-id, got {}",
            shown(ob)
        )));
    }
    if let Ok(text) = ob.extract::<String>() {
        return crate::addr::SourceId::parse(&text)
            .map(|(_, sid)| sid.0)
            .ok_or_else(|| {
                bad(format!(
                    "{} is not a PCI address of the form [ssss:]bb:dd.f",
                    shown(ob)
                ))
            });
    }
    if ob.hasattr("__index__")? {
        return ob
            .extract::<u16>()
            .map_err(|_| bad(format!("source-id {} is not in 0..=0xffff", shown(ob))));
    }
    if let Ok(sid) = ob.getattr("sid") {
        if !sid.is_instance_of::<PyBool>() {
            if let Ok(v) = sid.extract::<u16>() {
                return Ok(v);
            }
        }
    }
    Err(bad(format!(
        "expected a Bdf, a 'bb:dd.f' string or a source-id, got {}",
        shown(ob)
    )))
}
