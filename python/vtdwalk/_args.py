"""Checks of arguments shared by the Python layers: bad input raises InvalidArgument naming the
argument, instead of numpy wrapping, truncating or reinterpreting it. Files a caller names (a
DMAR table, a machine description) are read as regular files only and never past a cap, so a
path to ``/dev/zero``, a FIFO or a huge file cannot make a call read without end or wait for a
writer."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vtdwalk.errors import InvalidArgument

__all__ = [
    "DESCRIPTION_CAP",
    "DMAR_CAP",
    "bool_array",
    "did_arg",
    "int_arg",
    "plain_int",
    "read_regular_file",
    "shown",
    "u64_array",
]

#: How much of an argument's repr an error message quotes.
SHOWN_MAX = 60


def shown(value: object) -> str:
    """``repr(value)``, at most :data:`SHOWN_MAX` characters (a huge argument is not copied
    into the message)."""
    if isinstance(value, bytes | bytearray | memoryview) and len(value) > SHOWN_MAX:
        return f"<{type(value).__name__} of {len(value)} bytes>"
    if isinstance(value, str) and len(value) > SHOWN_MAX:
        return repr(value[: SHOWN_MAX - 5]) + "..."
    try:
        r = repr(value)
    except Exception:  # a repr that fails still names the type
        r = f"<{type(value).__name__}>"
    return r if len(r) <= SHOWN_MAX else r[: SHOWN_MAX - 3] + "..."


def int_arg(value: object, what: str) -> int:
    """An integer argument (a numpy integer scalar taken as the int it holds); a bool or
    anything else raises TypeError naming ``what``."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: expected an integer, not {type(value).__name__}")
    return value


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
    if isinstance(values, np.ma.MaskedArray):
        raise InvalidArgument(
            f"{what}: a masked array (its mask would be ignored); pass .filled() or .compressed()"
        )
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
    if a.size and a.dtype.kind == "b" and int(a.view(np.uint8).max()) > 1:
        # A view of other bytes as bool: numpy keeps the byte, which is no bool.
        raise InvalidArgument(f"{what}: a boolean array holding byte values other than 0 and 1")
    if not a.size or a.dtype.kind == "b":
        return np.ascontiguousarray(a, dtype=np.bool_)
    if a.dtype.kind not in "ui":
        raise InvalidArgument(f"{what}: expected booleans (or 0/1 integers), got {a.dtype}")
    if int(a.min()) < 0 or int(a.max()) > 1:
        raise InvalidArgument(f"{what}: integer flags must be 0 or 1")
    return np.ascontiguousarray(a, dtype=np.bool_)


#: A DMAR table is at most a few KiB on real machines; this is far above any.
DMAR_CAP = 16 << 20
#: A machine description (TOML/JSON) with every PCI function of a large machine fits easily.
DESCRIPTION_CAP = 64 << 20


def read_regular_file(path: str | Path, what: str, cap: int) -> bytes:
    """The bytes of the regular file ``path`` (the argument ``what``), at most ``cap`` of them.

    A path with a NUL byte, a file that is not a regular one (a directory, a device, a FIFO,
    a socket) or one larger than ``cap`` raises :class:`InvalidArgument` naming ``what``;
    ``OSError`` (missing file, no permission) is the caller's to report."""
    p = Path(path)
    if "\0" in str(p):
        raise InvalidArgument(f"{what}: a path with a NUL byte")
    # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just after).
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise InvalidArgument(f"{what}: {str(p)[:200]!r} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise InvalidArgument(f"{what}: {str(p)[:200]!r} is larger than {cap} bytes")
    return data
