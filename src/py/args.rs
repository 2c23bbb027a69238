//! Argument types that turn a wrong Python argument into `vtdwalk.InvalidArgument` (a
//! `VtdError` and a `ValueError`) rather than a bare `OverflowError` or `TypeError`.

use numpy::{
    Element, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use std::marker::PhantomData;

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
                // The common form first: an exact int (never a bool) takes one type check.
                if let Ok(i) = ob.cast_exact::<PyInt>() {
                    if let Ok(v) = i.extract::<$t>() {
                        return Ok($name(v));
                    }
                }
                // True and False are ints to Python, never an address, a size or a count.
                let ok = if ob.is_instance_of::<PyBool>() {
                    None
                } else {
                    ob.extract::<$t>().ok()
                };
                ok.map($name).ok_or_else(|| {
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

/// Extractors for `#[pyo3(from_py_with = ...)]` that put the argument's name in front of the
/// message (`iova: expected an integer ...`); PyO3 names only a plain `TypeError` itself. Each
/// is `<type>_<argument name>`; the `opt_` ones take None as None.
macro_rules! named_arg {
    ($($fn:ident: $ty:ident = $name:literal;)*) => {
        $(
            pub fn $fn(ob: &Bound<'_, PyAny>) -> PyResult<$ty> {
                $ty::extract_bound(ob).map_err(|e| named($name, ob, e))
            }
        )*
    };
}

macro_rules! named_opt_arg {
    ($($fn:ident: $ty:ident = $name:literal;)*) => {
        $(
            pub fn $fn(ob: &Bound<'_, PyAny>) -> PyResult<Option<$ty>> {
                if ob.is_none() {
                    return Ok(None);
                }
                $ty::extract_bound(ob).map(Some).map_err(|e| named($name, ob, e))
            }
        )*
    };
}

/// `e` (a refused argument) as `InvalidArgument` with `name: ` in front of its message.
fn named(name: &str, ob: &Bound<'_, PyAny>, e: PyErr) -> PyErr {
    Exc::InvalidArgument.msg(format!("{name}: {}", e.value(ob.py())))
}

named_arg! {
    u64_addr: U64 = "addr";
    u64_am: U64 = "am";
    u64_cap: U64 = "cap";
    u64_code: U64 = "code";
    u64_count: U64 = "count";
    u64_did: U64 = "did";
    u64_ecap: U64 = "ecap";
    u64_fm: U64 = "fm";
    u64_granularity: U64 = "granularity";
    u64_gsts: U64 = "gsts";
    u64_hi: U64 = "hi";
    u64_iotlb_entries: U64 = "iotlb_entries";
    u64_iova: U64 = "iova";
    u64_length: U64 = "length";
    u64_lo: U64 = "lo";
    u64_maddr: U64 = "maddr";
    u64_n: U64 = "n";
    u64_npages: U64 = "npages";
    u64_offset: U64 = "offset";
    u64_sid: U64 = "sid";
    u64_size: U64 = "size";
    u64_slptptr: U64 = "slptptr";
    u64_value: U64 = "value";
    u32_am: U32 = "am";
    u32_aw: U32 = "aw";
    u32_bus: U32 = "bus";
    u32_devfn: U32 = "devfn";
    u32_fm: U32 = "fm";
    u32_haw: U32 = "haw";
    u32_level: U32 = "level";
    u32_levels: U32 = "levels";
    u32_size: U32 = "size";
    u32_tt: U32 = "tt";
    flag_alloc: Flag = "alloc";
    flag_context_cache: Flag = "context_cache";
    flag_fpd: Flag = "fpd";
    flag_huge_pages: Flag = "huge_pages";
    flag_ih: Flag = "ih";
    flag_read: Flag = "read";
    flag_snoop: Flag = "snoop";
    flag_translation_request: Flag = "translation_request";
    flag_write: Flag = "write";
}

named_opt_arg! {
    opt_u32_devfn: U32 = "devfn";
    opt_u32_node: U32 = "node";
    opt_u32_threads: U32 = "threads";
    opt_u64_addr: U64 = "addr";
    opt_u64_backing_limit: U64 = "backing_limit";
    opt_u64_fault_records: U64 = "fault_records";
    opt_u64_root_table: U64 = "root_table";
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
    /// Whether `Self` is `bool`: a bool array is then checked byte by byte (a byte other than
    /// 0 or 1 is no valid `bool` in Rust), never borrowed as it is.
    const IS_BOOL: bool = false;
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

impl BatchElement for u32 {
    const MAX: u128 = u32::MAX as u128;
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
    const IS_BOOL: bool = true;
    fn from_item(ob: &Bound<'_, PyAny>) -> Option<Self> {
        ob.extract().ok()
    }
}

/// A batch argument, checked and copied: the GIL-free part of a batch call reads this copy,
/// so another thread writing into the caller's array meanwhile cannot change what was checked
/// (the Rust core validates and uses the same values). See [`batch_array`].
pub struct BatchArray<'py, T: BatchElement>(Vec<T>, PhantomData<&'py ()>);

impl<'py, T: BatchElement> BatchArray<'py, T> {
    fn copy_of(a: &Bound<'py, PyArray1<T>>, name: &str) -> PyResult<Self> {
        let r = a
            .try_readonly()
            .map_err(|e| Exc::InvalidArgument.msg(format!("{name}: {e}")))?;
        let v = r
            .as_slice()
            .map_err(|_| Exc::InvalidArgument.msg(format!("{name}: not contiguous")))?
            .to_vec();
        Ok(BatchArray(v, PhantomData))
    }

    /// The elements; a plain slice that the GIL-free part of a batch call can read.
    pub fn as_slice(&self) -> PyResult<&[T]> {
        Ok(&self.0)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
/// Masked arrays are refused (their mask would be ignored). Fast path: `ob` already is a 1-D
/// C-contiguous array of dtype `T` (not `bool`); it is copied as is. Otherwise `numpy.asarray(ob)` (lists, other integer dtypes, strided views) must be 1-D, of an
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
    let py = ob.py();
    if ob.is_instance_of::<PyUntypedArray>() {
        let masked = py.import("numpy.ma")?.getattr("MaskedArray")?;
        if ob.is_instance(&masked)? {
            return Err(Exc::InvalidArgument.msg(format!(
                "{name}: a masked array (its mask would be ignored); pass .filled() or \
                 .compressed()"
            )));
        }
    }
    if !T::IS_BOOL {
        if let Ok(a) = ob.cast::<PyArray1<T>>() {
            if a.is_c_contiguous() {
                if a.len() > max_len {
                    return Err(too_long(a.len()));
                }
                return BatchArray::copy_of(a, name);
            }
        }
    }
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
                    return Ok(BatchArray(v, PhantomData));
                }
            }
            return Err(bad(if is_array {
                format!("an array of {}", u.dtype())
            } else {
                format!("{} (as an array of {})", shown(ob), u.dtype())
            }));
        }
        if kind == b'b' {
            // numpy stores a bool as a byte; a view of other bytes as bool can hold 2..=255.
            let hi: u8 = arr
                .call_method1("view", ("u1",))?
                .call_method0("max")?
                .extract()?;
            if hi > 1 {
                return Err(Exc::InvalidArgument.msg(format!(
                    "{name}: a boolean array holding byte value {hi} (a bool is 0 or 1)"
                )));
            }
        } else {
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
    BatchArray::copy_of(&a, name)
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
