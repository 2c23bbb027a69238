"""Checks of array arguments shared by the Python layers: bad input raises InvalidArgument
naming the argument, instead of numpy wrapping, truncating or reinterpreting it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from vtdwalk.errors import InvalidArgument

__all__ = ["bool_array", "did_arg", "plain_int", "u64_array"]


def plain_int(value: Any) -> Any:
    """A numpy integer scalar as the Python int it holds; anything else unchanged (the callee
    checks it). Arithmetic on a numpy scalar mixes badly with Python ints (``np.uint64(1) &
    ~0xFFF`` raises), so public calls take ints in this form before using them."""
    if isinstance(value, np.integer):
        return int(value)
    return value


def did_arg(value: Any, ndoms: int = 1 << 16) -> int:
    """A domain id checked as every entry point checks one: an integer (a numpy integer scalar
    too, never a bool) in ``0..ndoms``, where ``ndoms`` is the unit's CAP.ND domain count when
    a unit is known and 2**16 (the 16-bit DID field) otherwise. Else InvalidArgument naming
    ``did``, worded like the native layer's."""
    v = plain_int(value)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < ndoms:
        raise InvalidArgument(f"did: DID {value!r} is not in 0..={ndoms - 1}")
    return v


def _array(values: object, what: str) -> npt.NDArray[np.generic]:
    try:
        a = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{what}: not an array ({e})") from e
    if a.ndim != 1:
        raise InvalidArgument(f"{what}: expected a 1-D array, got {a.ndim} dimensions")
    return a


def u64_array(values: npt.ArrayLike | Sequence[int], what: str) -> npt.NDArray[np.uint64]:
    """``values`` as a contiguous uint64 array: integers only (no floats, strings, booleans),
    none negative, none above 2**64 - 1."""
    a = _array(values, what)
    if a.size and a.dtype.kind not in "ui":
        raise InvalidArgument(f"{what}: expected integers, got {a.dtype}")
    if a.size and a.dtype.kind == "i" and int(a.min()) < 0:
        raise InvalidArgument(f"{what}: negative address {int(a.min())}")
    return np.ascontiguousarray(a, dtype=np.uint64)


def bool_array(values: npt.ArrayLike | Sequence[bool], what: str) -> npt.NDArray[np.bool_]:
    """``values`` as a contiguous bool array: booleans, or integers that are all 0 or 1."""
    a = _array(values, what)
    if not a.size or a.dtype.kind == "b":
        return np.ascontiguousarray(a, dtype=np.bool_)
    if a.dtype.kind not in "ui":
        raise InvalidArgument(f"{what}: expected booleans (or 0/1 integers), got {a.dtype}")
    if int(a.min()) < 0 or int(a.max()) > 1:
        raise InvalidArgument(f"{what}: integer flags must be 0 or 1")
    return np.ascontiguousarray(a, dtype=np.bool_)
