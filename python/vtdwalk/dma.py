"""The device side of the machine: DMA by devices, routed to the unit whose scope holds the
device and carried out by that unit's hardware, and register accesses routed by address to the
unit whose register page holds it. The driver only programs tables and registers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from vtdwalk._args import bool_array, plain_int, u64_array
from vtdwalk.errors import InvalidArgument, PlatformError
from vtdwalk.topology import Bdf, BdfLike

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from vtdwalk._core import Remapper, Translation
    from vtdwalk.driver.iommu import Iommu

__all__ = [
    "dma_read",
    "dma_write",
    "hardware_of",
    "mmio_read",
    "mmio_write",
    "translate",
    "translate_batch",
]

_UnitFor = Callable[[Bdf], "Iommu | None"]


def _hardware(unit: Iommu) -> Remapper:
    """The unit's hardware, once the unit has a root table."""
    if not unit.root_maddr:
        raise PlatformError(f"unit {unit.index} ({unit.address:#x}) has no root table")
    return unit.remapper


def hardware_of(unit_for: _UnitFor, bdf: BdfLike) -> tuple[Remapper, int]:
    """The hardware of the device's unit and the device's source-id."""
    b = Bdf.coerce(bdf)
    unit = unit_for(b)
    if unit is None:
        raise PlatformError(f"{b} is in no remapping unit's scope")
    return _hardware(unit), b.sid


def translate(unit_for: _UnitFor, bdf: BdfLike, iova: int, write: bool = False) -> Translation:
    hw, sid = hardware_of(unit_for, bdf)
    return hw.translate(sid, plain_int(iova), write=write)


def _unit_for_device(unit_for: _UnitFor, bdf: BdfLike) -> tuple[Iommu, Bdf]:
    b = Bdf.coerce(bdf)
    unit = unit_for(b)
    if unit is None:
        raise PlatformError(f"{b} is in no remapping unit's scope")
    return unit, b


def dma_read(unit_for: _UnitFor, bdf: BdfLike, iova: int, length: int) -> bytes:
    """A device's DMA read through its unit (translated once the unit's TE is set)."""
    unit, b = _unit_for_device(unit_for, bdf)
    return unit.remapper.dma_read(b.sid, plain_int(iova), plain_int(length))


def dma_write(unit_for: _UnitFor, bdf: BdfLike, iova: int, data: Buffer) -> None:
    """A device's DMA write through its unit."""
    unit, b = _unit_for_device(unit_for, bdf)
    unit.remapper.dma_write(b.sid, plain_int(iova), data)


def _register_page(units: Iterable[Iommu], address: object) -> tuple[Iommu, int]:
    """The unit whose register set (one 4 KiB page, or more when its fault recording
    registers need them: ``mmio_size``) holds ``address`` (the first in list order when
    firmware gives two units one base) and the offset in it."""
    a = plain_int(address)
    if not isinstance(a, int) or isinstance(a, bool):
        raise InvalidArgument(f"address: expected an integer, not {type(address).__name__}")
    for u in units:
        if 0 <= a - u.address < u.remapper.mmio_size:
            return u, a - u.address
    raise InvalidArgument(f"address: {a:#x} is in no remapping unit's register page")


def mmio_read(units: Iterable[Iommu], address: int, size: int) -> int:
    """A ``size``-byte read of the register at host ``address``."""
    unit, off = _register_page(units, address)
    return unit.remapper.mmio_read(off, plain_int(size))


def mmio_write(units: Iterable[Iommu], address: int, size: int, value: int) -> None:
    """A ``size``-byte write of ``value`` to the register at host ``address``."""
    unit, off = _register_page(units, address)
    unit.remapper.mmio_write(off, plain_int(size), plain_int(value))


def translate_batch(
    unit_for: _UnitFor,
    bdfs_or_sids: Sequence[object] | npt.ArrayLike,
    iovas: npt.ArrayLike,
    writes: npt.ArrayLike | None = None,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    given = bdfs_or_sids
    if isinstance(given, np.ndarray) and given.ndim == 1 and given.dtype == np.uint16:
        # Source-ids of segment 0 as they are: no keys to build unless devices differ.
        sids16: npt.NDArray[np.uint16] | None = np.ascontiguousarray(given)
        n_dev = len(given)
    else:
        sids16 = None
        keys = _device_keys(given)
        n_dev = len(keys)
    iv = u64_array(iovas, "iovas")
    if len(iv) != n_dev:
        raise InvalidArgument(f"iovas has {len(iv)} entries, devices {n_dev}")
    wr: npt.NDArray[np.bool_] | None = None
    if writes is not None:
        wr = bool_array(writes, "writes")
        if wr.shape != iv.shape:
            raise InvalidArgument(f"writes has {len(wr)} entries, iovas {len(iv)}")
    n = n_dev
    if n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint8)
    if sids16 is not None:
        sids = sids16
        lo, hi = int(sids.min()), int(sids.max())
        if lo != hi:
            keys = sids.astype(np.int64)
    else:
        sids = (keys & 0xFFFF).astype(np.uint16)
        lo, hi = int(keys.min()), int(keys.max())
    if lo == hi:
        # One device (the common case): its unit walks the arrays as they are.
        return _hardware(_unit_of_key(unit_for, lo)).translate_batch(sids, iv, wr, threads=threads)
    uniq, inverse = np.unique(keys, return_inverse=True)
    units: list[Iommu] = []
    group = np.empty(len(uniq), dtype=np.int64)
    for i, k in enumerate(uniq):
        u = _unit_of_key(unit_for, int(k))
        gi = next((j for j, x in enumerate(units) if x is u), None)
        if gi is None:
            gi = len(units)
            units.append(u)
        group[i] = gi
    if len(units) == 1:
        return _hardware(units[0]).translate_batch(sids, iv, wr, threads=threads)
    hpa = np.zeros(n, dtype=np.uint64)
    fault = np.zeros(n, dtype=np.uint8)
    per = group[inverse]
    for gi, u in enumerate(units):
        idx = np.nonzero(per == gi)[0]
        h, f = _hardware(u).translate_batch(
            np.ascontiguousarray(sids[idx]),
            np.ascontiguousarray(iv[idx]),
            None if wr is None else np.ascontiguousarray(wr[idx]),
            threads=threads,
        )
        hpa[idx] = h
        fault[idx] = f
    return hpa, fault


def _unit_of_key(unit_for: _UnitFor, key: int) -> Iommu:
    b = Bdf.coerce(key)
    u = unit_for(b)
    if u is None:
        raise PlatformError(f"{b} is in no remapping unit's scope")
    return u


def _device_keys(values: Sequence[object] | npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``segment << 16 | sid`` for each device named by a string, Bdf or integer (see
    :meth:`Bdf.coerce`). Each distinct name is read once; a list of integers or of strings is
    converted without a per-element Python loop."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InvalidArgument(f"devices: expected a 1-D array, got {values.ndim} dimensions")
        if values.dtype.kind in "ui":
            a = values.astype(np.int64)
            if len(a) and (int(a.min()) < 0 or int(a.max()) > 0xFFFF_FFFF):
                raise InvalidArgument("devices: a device key is outside 0..0xffffffff")
            return a
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidArgument(f"devices: expected a sequence of PCI addresses, not {values!r}")
    seq = values if isinstance(values, list | tuple) else list(values)
    if seq and isinstance(seq[0], str) and seq.count(seq[0]) == len(seq):
        # One device named by one string (the common case): read it once.
        return np.full(len(seq), _key(seq[0]), dtype=np.int64)
    types = set(map(type, seq))
    if types == {int}:
        ints = np.asarray(seq)
        if ints.dtype.kind not in "ui":
            raise InvalidArgument("devices: a device key is outside 0..0xffffffff")
        return _device_keys(ints)
    if types == {str}:
        # Distinct strings only (usually one): map each once, then look them all up in C.
        table = {v: _key(v) for v in set(seq)}
        if len(table) == 1:
            return np.full(len(seq), next(iter(table.values())), dtype=np.int64)
        return np.fromiter(map(table.__getitem__, seq), dtype=np.int64, count=len(seq))
    cache: dict[tuple[type, object], int] = {}
    out = np.empty(len(seq), dtype=np.int64)
    for i, v in enumerate(seq):
        try:
            ck: tuple[type, object] = (type(v), v)
            k = cache.get(ck)
        except TypeError:  # unhashable
            ck, k = (type(v), id(v)), None
        if k is None:
            k = cache[ck] = _key(v)
        out[i] = k
    return out


def _key(v: object) -> int:
    b = Bdf.coerce(v, "devices")  # type: ignore[arg-type]
    return b.segment << 16 | b.sid
