"""Hostile arguments to the Python layers: paths that are no regular file or too big, wrongly
typed arguments, huge ones in messages, and a table with very many RMRRs. Each refusal is the
error class the README's conventions name, with the argument's name in its message."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from vtdwalk import (
    Bdf,
    Cap,
    ContextEntry,
    Device,
    Ecap,
    InvalidArgument,
    PageTable,
    PhysMem,
    Platform,
    PlatformError,
    Remapper,
    RootTable,
    Topology,
    _core,
    dmar,
)
from vtdwalk._args import DESCRIPTION_CAP, DMAR_CAP, shown
from vtdwalk.driver.iommu import QEMU_CAP, QEMU_ECAP
from vtdwalk.topology import load_description

DATA = Path(__file__).resolve().parent.parent / "python" / "vtdwalk" / "data"
EP = dmar.SCOPE_ENDPOINT


def small_table() -> dmar.DmarTable:
    scope = dmar.DeviceScope(EP, start_bus=0, path=[(2, 0)])
    return dmar.DmarTable(
        host_address_width=47, flags=1, structures=[dmar.Drhd(0, 0, 0xA000, [scope])]
    )


def non_regular(tmp_path: Path) -> list[Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: reading it would wait for ever
    return [Path("/dev/zero"), fifo, tmp_path]


# ---- item: unbounded reads


def test_from_dmar_refuses_what_is_no_regular_file(tmp_path: Path) -> None:
    for path in non_regular(tmp_path):
        with pytest.raises(InvalidArgument, match=r"^table: .* is not a regular file"):
            Platform.from_dmar(path)
        with pytest.raises(dmar.DmarError, match=r"^cannot read .*: path: .* not a regular file"):
            dmar.read_host(path)


def test_topology_and_numa_paths_refuse_what_is_no_regular_file(tmp_path: Path) -> None:
    t = small_table()
    for path in non_regular(tmp_path):
        with pytest.raises(InvalidArgument, match=r"^topology: .* is not a regular file"):
            Platform(t, topology=path)
        with pytest.raises(InvalidArgument, match=r"^numa: .* is not a regular file"):
            Platform(t, numa=path)
        with pytest.raises(InvalidArgument, match=r"^path: .* is not a regular file"):
            load_description(path)


def test_reads_stop_at_the_cap(tmp_path: Path) -> None:
    # Sparse files: nothing is written, only one byte more than the cap is read.
    big = tmp_path / "big.dat"
    with open(big, "wb") as f:
        f.truncate(DMAR_CAP + 1)
    with pytest.raises(InvalidArgument, match=rf"^table: .* is larger than {DMAR_CAP} bytes"):
        Platform.from_dmar(big)
    desc = tmp_path / "big.toml"
    with open(desc, "wb") as f:
        f.truncate(DESCRIPTION_CAP + 1)
    with pytest.raises(InvalidArgument, match=rf"^topology: .* larger than {DESCRIPTION_CAP}"):
        Platform(small_table(), topology=desc)
    # At the cap exactly, the file is read (and then found to be no DMAR table).
    exact = tmp_path / "exact.dat"
    with open(exact, "wb") as f:
        f.truncate(DMAR_CAP)
    with pytest.raises(dmar.DmarError):
        Platform.from_dmar(exact)


def test_a_path_with_a_nul_byte_is_a_bad_argument() -> None:
    with pytest.raises(InvalidArgument, match=r"^table: a path with a NUL byte"):
        Platform.from_dmar("/tmp/a\0b.dat")
    with pytest.raises(InvalidArgument, match=r"^topology: a path with a NUL byte"):
        Platform(small_table(), topology="/tmp/a\0b.toml")
    with pytest.raises(InvalidArgument, match=r"^numa: a path with a NUL byte"):
        Platform(small_table(), numa=Path("/tmp/a\0b.toml"))


def test_missing_files_still_say_they_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="cannot read DMAR table"):
        Platform.from_dmar(tmp_path / "none.dat")
    with pytest.raises(PlatformError, match="cannot read"):
        Platform(small_table(), topology=tmp_path / "none.toml")


# ---- item: wrongly typed arguments name the argument


def test_mem_of_the_wrong_type_is_a_type_error() -> None:
    for bad in (5, "mem", np.zeros(3)):
        with pytest.raises(TypeError, match=r"^mem: expected a PhysMem"):
            Platform.from_dmar(small_table(), mem=bad)  # type: ignore[arg-type]


def test_arrays_where_scalars_or_mappings_are_expected() -> None:
    t = small_table()
    arr = np.array([1, 2])
    with pytest.raises(TypeError, match=r"^unit_caps: "):
        Platform(t, unit_caps=arr)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^policy: "):
        Platform(t, policy=np.array(["seed", "seed"]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^strict: "):
        Platform(t, strict=arr)  # type: ignore[arg-type]
    for bad_caps in ({0xA000: arr}, {0xA000: (1, 2, 3)}, {0xA000: (True, 1)}, {"a": (1, 2)}):
        with pytest.raises(InvalidArgument, match=r"^unit_caps: "):
            Platform(t, unit_caps=bad_caps)  # type: ignore[arg-type]
    p = Platform(t, unit_caps={np.uint64(0xA000): (np.uint64(QEMU_CAP), np.uint64(QEMU_ECAP))})
    assert p.iommus[0].address == 0xA000
    with pytest.raises(TypeError, match=r"^code: "):
        p.findings(arr)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^severity: "):
        p.findings(None, arr)  # type: ignore[arg-type]
    for f in (p.ioapic_to_iommu, p.ioapic_to_drhd, p.apicid_to_bdf):
        with pytest.raises(TypeError, match=r"^apic_id: "):
            f(arr)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^apic_id: "):
            f(True)
        assert f(np.int64(7)) is None
    for g in (p.hpet_to_iommu, p.hpet_to_drhd):
        with pytest.raises(TypeError, match=r"^hpet_id: "):
            g(arr)  # type: ignore[arg-type]


def test_messages_quote_a_short_prefix_of_a_huge_argument() -> None:
    huge = bytearray(64 << 20)
    assert len(shown(huge)) <= 60
    assert len(shown("x" * (1 << 20))) <= 60
    assert len(shown(list(range(1 << 16)))) <= 60
    with pytest.raises(InvalidArgument) as ei:
        Platform(small_table(), unit_caps={0xA000: huge})  # type: ignore[dict-item]
    assert len(str(ei.value)) < 300


# ---- item: the RMRR overlap check


def reference_overlaps(rmrrs: list[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """Xen's ``register_one_rmrr`` pass, quadratic: each RMRR against the registered ones in
    registration order; (registered indices, (index, index of the first one it overlaps))."""
    registered: list[int] = []
    overlaps: list[tuple[int, int]] = []
    for i, (b, lim) in enumerate(rmrrs):
        hit = next((j for j in registered if b <= rmrrs[j][1] and rmrrs[j][0] <= lim), None)
        if hit is not None:
            overlaps.append((i, hit))
        elif b <= lim:
            registered.append(i)
    return registered, overlaps


@pytest.mark.parametrize("seed", range(6))
def test_rmrr_overlaps_found_as_the_quadratic_pass_finds_them(seed: int) -> None:
    rng = random.Random(seed)
    n = 400
    rmrrs = []
    for _ in range(n):
        base = rng.randrange(1, 1 << 20) << 12
        size = rng.choice([0x1000, 0x3000, 0x10000, 0x100000, 0x4000000])
        rmrrs.append((base, base + size - 1 if rng.random() > 0.02 else base - 0x1000))
    scope = dmar.DeviceScope(EP, start_bus=0, path=[(2, 0)])
    t = dmar.DmarTable(
        host_address_width=47,
        flags=1,
        structures=[
            dmar.Drhd(1, 0, 0xA000, []),
            *(dmar.Rmrr(0, b, lim, [scope]) for b, lim in rmrrs),
        ],
    )
    p = Platform(t, topology=Topology([Device(Bdf(0, 0, 2, 0))]))
    registered, overlaps = reference_overlaps(rmrrs)
    # Platform.rmrrs is Xen's list: registration order reversed (head insertion).
    assert [(r.base, r.end) for r in p.rmrrs] == [rmrrs[i] for i in reversed(registered)]
    found = [f.message for f in p.findings("rmrr-overlap")]
    want = [
        f"RMRR [{rmrrs[i][0]:#x}, {rmrrs[i][1]:#x}] overlaps RMRR "
        f"[{rmrrs[j][0]:#x}, {rmrrs[j][1]:#x}] (Xen: -EEXIST, VT-d disabled); not registered"
        for i, j in overlaps
    ]
    assert found == want
    assert len(overlaps) > 10 and len(registered) > 10


def test_many_rmrrs_build() -> None:
    # 20,000 disjoint RMRRs: the check is a binary search per RMRR (the speed is in benches/).
    scope = dmar.DeviceScope(EP, start_bus=0, path=[(2, 0)])
    t = dmar.DmarTable(
        host_address_width=47,
        flags=1,
        structures=[
            dmar.Drhd(1, 0, 0xA000, []),
            *(dmar.Rmrr(0, (k + 1) << 13, ((k + 1) << 13) + 0xFFF, [scope]) for k in range(20_000)),
        ],
    )
    p = Platform(t, topology=Topology([Device(Bdf(0, 0, 2, 0))]), mem=PhysMem([(0, 1 << 30)]))
    assert len(p.rmrrs) == 20_000 and not p.findings("rmrr-overlap")


def test_description_errors_quote_a_short_prefix_of_a_huge_value() -> None:
    from vtdwalk import Numa

    big = bytearray(64 << 20)
    for call in (
        lambda: Numa.from_dict({"nodes": [{"base": big, "size": 1}]}),
        lambda: Topology.from_dict({"devices": [{"bdf": big}]}),
        lambda: Platform(small_table(), numa={"nodes": [{"base": 0, "size": big}]}),
    ):
        with pytest.raises(PlatformError) as ei:
            call()
        assert len(str(ei.value)) < 200


# ---- item: scalar argument errors name the argument, on every native entry point


class Objs(NamedTuple):
    mem: PhysMem
    pt: PageTable
    rt: RootTable
    hw: Remapper


def native_objects() -> Objs:
    mem = PhysMem([(0, 1 << 24)])
    return Objs(mem, PageTable(mem, 4), RootTable(mem), Remapper(mem))


#: Plainly wrong or out-of-range values for an integer argument (a bool is no integer here).
BAD_INTS: list[object] = [-1, 1 << 64, "x", 1.5, True, np.float64(2.0), b"\x01"]
#: Wrong values for a flag.
BAD_FLAGS: list[object] = ["x", 2, None, np.int64(1)]

Call = Callable[[Objs, Any], object]
NATIVE_SCALARS: list[tuple[str, str, Call, list[object]]] = []


def add(entry: str, arg: str, call: Call, bads: list[object] = BAD_INTS) -> None:
    NATIVE_SCALARS.append((entry, arg, call, bads))


add("PhysMem", "backing_limit", lambda o, b: PhysMem([(0, 1 << 20)], backing_limit=b))
add("PhysMem", "huge_pages", lambda o, b: PhysMem([(0, 1 << 20)], huge_pages=b), BAD_FLAGS)
add("PhysMem.alloc_pages", "npages", lambda o, b: o.mem.alloc_pages(b))
add("PhysMem.alloc_pages", "node", lambda o, b: o.mem.alloc_pages(1, b))
add("PhysMem.free_pages", "maddr", lambda o, b: o.mem.free_pages(b))
add("PhysMem.free_pages", "npages", lambda o, b: o.mem.free_pages(0, b))
add("PhysMem.is_allocated", "maddr", lambda o, b: o.mem.is_allocated(b))
add("PhysMem.node_of", "maddr", lambda o, b: o.mem.node_of(b))
add("PhysMem.read", "maddr", lambda o, b: o.mem.read(b, 8))
add("PhysMem.read", "n", lambda o, b: o.mem.read(0, b))
add("PhysMem.write", "maddr", lambda o, b: o.mem.write(b, b"12"))
add("PhysMem.read_u64", "maddr", lambda o, b: o.mem.read_u64(b))
add("PhysMem.write_u64", "maddr", lambda o, b: o.mem.write_u64(b, 1))
add("PhysMem.write_u64", "value", lambda o, b: o.mem.write_u64(0, b))
add("PhysMem.read_u64s", "maddr", lambda o, b: o.mem.read_u64s(b, 1))
add("PhysMem.read_u64s", "count", lambda o, b: o.mem.read_u64s(0, b))
add("PhysMem.write_u64s", "maddr", lambda o, b: o.mem.write_u64s(b, [1]))
add("Remapper", "root_table", lambda o, b: Remapper(o.mem, root_table=b))
add("Remapper", "cap", lambda o, b: Remapper(o.mem, cap=b))
add("Remapper", "ecap", lambda o, b: Remapper(o.mem, ecap=b))
add("Remapper", "iotlb_entries", lambda o, b: Remapper(o.mem, iotlb_entries=b))
add("Remapper", "fault_records", lambda o, b: Remapper(o.mem, fault_records=b))
add("Remapper", "context_cache", lambda o, b: Remapper(o.mem, context_cache=b), BAD_FLAGS)
add("Remapper.mmio_read", "offset", lambda o, b: o.hw.mmio_read(b, 4))
add("Remapper.mmio_read", "size", lambda o, b: o.hw.mmio_read(0, b))
add("Remapper.mmio_write", "offset", lambda o, b: o.hw.mmio_write(b, 4, 0))
add("Remapper.mmio_write", "size", lambda o, b: o.hw.mmio_write(0x18, b, 0))
add("Remapper.mmio_write", "value", lambda o, b: o.hw.mmio_write(0x18, 4, b))
add("Remapper.dma_read", "sid", lambda o, b: o.hw.dma_read(b, 0, 4))
add("Remapper.dma_read", "iova", lambda o, b: o.hw.dma_read(8, b, 4))
add("Remapper.dma_read", "length", lambda o, b: o.hw.dma_read(8, 0, b))
add("Remapper.dma_write", "sid", lambda o, b: o.hw.dma_write(b, 0, b"1"))
add("Remapper.dma_write", "iova", lambda o, b: o.hw.dma_write(8, b, b"1"))
add("Remapper.root_table=", "root_table", lambda o, b: setattr(o.hw, "root_table", b))
add("Remapper.translate", "sid", lambda o, b: o.hw.translate(b, 0))
add("Remapper.translate", "iova", lambda o, b: o.hw.translate(8, b))
add("Remapper.translate", "write", lambda o, b: o.hw.translate(8, 0, b), BAD_FLAGS)
add(
    "Remapper.translate",
    "translation_request",
    lambda o, b: o.hw.translate(8, 0, False, b),
    BAD_FLAGS,
)
add("Remapper.translate_batch", "threads", lambda o, b: o.hw.translate_batch([8], [0], threads=b))
add("Remapper.invalidate_iotlb", "did", lambda o, b: o.hw.invalidate_iotlb("domain", did=b))
add("Remapper.invalidate_iotlb", "addr", lambda o, b: o.hw.invalidate_iotlb("page", did=1, addr=b))
add(
    "Remapper.invalidate_iotlb",
    "am",
    lambda o, b: o.hw.invalidate_iotlb("page", did=1, addr=0, am=b),
)
add("Remapper.invalidate_context", "did", lambda o, b: o.hw.invalidate_context("domain", did=b))
add(
    "Remapper.invalidate_context",
    "sid",
    lambda o, b: o.hw.invalidate_context("device", did=1, sid=b),
)
add(
    "Remapper.invalidate_context",
    "fm",
    lambda o, b: o.hw.invalidate_context("device", did=1, sid=8, fm=b),
)
add("PageTable", "levels", lambda o, b: PageTable(o.mem, b))
add("PageTable", "node", lambda o, b: PageTable(o.mem, 4, b))
add("PageTable.node=", "node", lambda o, b: setattr(o.pt, "node", b))
add("PageTable.leaf_table", "iova", lambda o, b: o.pt.leaf_table(b, True))
add("PageTable.leaf_table", "alloc", lambda o, b: o.pt.leaf_table(0, b), BAD_FLAGS)
add("PageTable.leaf_table", "level", lambda o, b: o.pt.leaf_table(0, True, b))
add("PageTable.map", "iova", lambda o, b: o.pt.map(b, 0, 4096))
add("PageTable.map", "maddr", lambda o, b: o.pt.map(0, b, 4096))
add("PageTable.map", "size", lambda o, b: o.pt.map(0, 0, b))
add("PageTable.map", "read", lambda o, b: o.pt.map(0, 0, 4096, b), BAD_FLAGS)
add("PageTable.unmap", "iova", lambda o, b: o.pt.unmap(b, 4096))
add("PageTable.unmap", "size", lambda o, b: o.pt.unmap(0, b))
add("PageTable.lookup", "iova", lambda o, b: o.pt.lookup(b))
add("RootTable", "node", lambda o, b: RootTable(o.mem, b))
add("RootTable.node=", "node", lambda o, b: setattr(o.rt, "node", b))
add("RootTable.context_table", "bus", lambda o, b: o.rt.context_table(b))
add("RootTable.context_table", "alloc", lambda o, b: o.rt.context_table(0, b), BAD_FLAGS)
for i, a in enumerate(["bus", "devfn", "slptptr", "aw", "did", "tt"]):

    def _set_context(o: Objs, b: object, i: int = i) -> None:
        args: list[Any] = [0, 8, 0x1000, 2, 1, 0]
        args[i] = b
        o.rt.set_context(*args)

    add("RootTable.set_context", a, _set_context)
add(
    "RootTable.set_context",
    "fpd",
    lambda o, b: o.rt.set_context(0, 8, 0x1000, 2, 1, 0, b),
    BAD_FLAGS,
)
add("RootTable.clear_context", "devfn", lambda o, b: o.rt.clear_context(0, b))
add("RootTable.context", "devfn", lambda o, b: o.rt.context(0, b))
add("RootTable.raw_root", "bus", lambda o, b: o.rt.raw_root(b))
add("RootTable.raw_context", "devfn", lambda o, b: o.rt.raw_context(0, b))
add("Cap", "value", lambda o, b: Cap(b))
add("Cap", "nd", lambda o, b: Cap(nd=b))
add("Cap.replace", "sagaw", lambda o, b: Cap.default().replace(sagaw=b))
add("Cap", "rwbf", lambda o, b: Cap(rwbf=b), ["x", 2, None, 1.5])  # a 1-bit field: 0, 1 or a bool
add("Ecap", "value", lambda o, b: Ecap(b))
add("Ecap", "iro", lambda o, b: Ecap(iro=b))
add("RootEntry", "lo", lambda o, b: _core.RootEntry(b))
add("RootEntry", "hi", lambda o, b: _core.RootEntry(0, b))
add("RootEntry.reserved", "haw", lambda o, b: _core.RootEntry(0, 0).reserved(b))
add("ContextEntry", "lo", lambda o, b: ContextEntry(b))
add("ContextEntry", "hi", lambda o, b: ContextEntry(0, b))
add("ContextEntry.reserved", "haw", lambda o, b: ContextEntry(0, 0).reserved(b))
add("fault_name", "code", lambda o, b: _core.fault_name(b))
add("levels_to_width", "levels", lambda o, b: _core.levels_to_width(b))
add("levels_to_aw", "levels", lambda o, b: _core.levels_to_aw(b))
add("aw_to_levels", "aw", lambda o, b: _core.aw_to_levels(b))
add("Regs.gcmd_from_gsts", "gsts", lambda o, b: _core.Regs.gcmd_from_gsts(b))
add("Regs.ccmd", "granularity", lambda o, b: _core.Regs.ccmd(b))
add("Regs.ccmd", "did", lambda o, b: _core.Regs.ccmd(1, b))
add("Regs.ccmd", "sid", lambda o, b: _core.Regs.ccmd(3, 1, b))
add("Regs.ccmd", "fm", lambda o, b: _core.Regs.ccmd(3, 1, 8, b))
add("Regs.ccmd_done", "value", lambda o, b: _core.Regs.ccmd_done(b))
add("Regs.iotlb", "granularity", lambda o, b: _core.Regs.iotlb(b))
add("Regs.iotlb", "did", lambda o, b: _core.Regs.iotlb(2, b))
add("Regs.iotlb_done", "value", lambda o, b: _core.Regs.iotlb_done(b))
add("Regs.iva", "addr", lambda o, b: _core.Regs.iva(b))
add("Regs.iva", "am", lambda o, b: _core.Regs.iva(0, b))
add("Regs.iva", "ih", lambda o, b: _core.Regs.iva(0, 0, b), BAD_FLAGS)


def state(o: Objs) -> object:
    return (o.mem.stats(), o.pt.mappings(), o.rt.entries(), o.hw.stats(), o.hw.root_table)


@pytest.mark.parametrize(
    ("entry", "arg", "call", "bads"),
    NATIVE_SCALARS,
    ids=[f"{e}-{a}" for e, a, _, _ in NATIVE_SCALARS],
)
def test_a_bad_scalar_argument_names_the_argument(
    entry: str, arg: str, call: Call, bads: list[object]
) -> None:
    for bad in bads:
        o = native_objects()
        before = state(o)
        with pytest.raises((InvalidArgument, TypeError)) as ei:
            call(o, bad)
        assert type(ei.value) in (InvalidArgument, TypeError), (entry, bad, ei.value)
        assert str(ei.value).startswith(f"{arg}: "), (entry, bad, str(ei.value))
        assert state(o) == before  # a failed call changes nothing


#: Values of the right type the architecture or the model refuses, and the argument named.
OUT_OF_RANGE: list[tuple[str, str, Call]] = [
    ("PhysMem.alloc_pages", "npages", lambda o, b: o.mem.alloc_pages(0)),
    ("PhysMem.alloc_pages", "node", lambda o, b: o.mem.alloc_pages(1, 7)),
    ("PhysMem.read", "n", lambda o, b: o.mem.read(0, 1 << 40)),
    ("PhysMem.read_u64s", "count", lambda o, b: o.mem.read_u64s(0, 1 << 40)),
    ("Remapper", "cap", lambda o, b: Remapper(o.mem, cap=0)),
    ("Remapper", "root_table", lambda o, b: Remapper(o.mem, root_table=0x123)),
    ("Remapper", "iotlb_entries", lambda o, b: Remapper(o.mem, iotlb_entries=1 << 40)),
    ("Remapper", "fault_records", lambda o, b: Remapper(o.mem, fault_records=0)),
    ("Remapper.mmio_read", "size", lambda o, b: o.hw.mmio_read(0, 3)),
    ("Remapper.mmio_read", "offset", lambda o, b: o.hw.mmio_read(1 << 20, 4)),
    ("Remapper.mmio_write", "size", lambda o, b: o.hw.mmio_write(0x18, 3, 0)),
    ("Remapper.mmio_write", "offset", lambda o, b: o.hw.mmio_write(0x3, 4, 0)),
    ("Remapper.mmio_write", "value", lambda o, b: o.hw.mmio_write(0x18, 4, 1 << 40)),
    ("Remapper.dma_read", "length", lambda o, b: o.hw.dma_read(8, 0, 1 << 40)),
    ("Remapper.root_table=", "root_table", lambda o, b: setattr(o.hw, "root_table", 0x123)),
    ("Remapper.translate_batch", "threads", lambda o, b: o.hw.translate_batch([8], [0], threads=0)),
    (
        "Remapper.invalidate_iotlb",
        "am",
        lambda o, b: o.hw.invalidate_iotlb("page", did=1, addr=0, am=99),
    ),
    (
        "Remapper.invalidate_context",
        "fm",
        lambda o, b: o.hw.invalidate_context("device", did=1, sid=8, fm=9),
    ),
    ("PageTable", "levels", lambda o, b: PageTable(o.mem, 6)),
    ("PageTable", "node", lambda o, b: PageTable(o.mem, 4, 9)),
    ("PageTable.node=", "node", lambda o, b: setattr(o.pt, "node", 9)),
    ("PageTable.leaf_table", "level", lambda o, b: o.pt.leaf_table(0, True, 9)),
    ("PageTable.map", "size", lambda o, b: o.pt.map(0, 0, 0x123)),
    ("PageTable.map", "iova", lambda o, b: o.pt.map(1 << 60, 0, 4096)),
    ("PageTable.map", "maddr", lambda o, b: o.pt.map(0, 0x123, 4096)),
    ("PageTable.map", "read/write", lambda o, b: o.pt.map(0, 0, 4096, False, False)),
    ("PageTable.unmap", "size", lambda o, b: o.pt.unmap(0, 0x123)),
    ("RootTable", "node", lambda o, b: RootTable(o.mem, 9)),
    ("RootTable.node=", "node", lambda o, b: setattr(o.rt, "node", 9)),
    ("RootTable.context_table", "bus", lambda o, b: o.rt.context_table(256)),
    ("RootTable.set_context", "bus", lambda o, b: o.rt.set_context(256, 8, 0x1000, 2, 1)),
    ("RootTable.set_context", "devfn", lambda o, b: o.rt.set_context(0, 256, 0x1000, 2, 1)),
    ("RootTable.set_context", "slptptr", lambda o, b: o.rt.set_context(0, 8, 0x1234, 2, 1)),
    ("RootTable.set_context", "aw", lambda o, b: o.rt.set_context(0, 8, 0x1000, 9, 1)),
    ("RootTable.set_context", "did", lambda o, b: o.rt.set_context(0, 8, 0x1000, 2, 1 << 16)),
    ("RootTable.set_context", "tt", lambda o, b: o.rt.set_context(0, 8, 0x1000, 2, 1, 9)),
    ("RootTable.clear_context", "devfn", lambda o, b: o.rt.clear_context(0, 256)),
    ("RootTable.context", "devfn", lambda o, b: o.rt.context(0, 256)),
    ("RootTable.raw_root", "bus", lambda o, b: o.rt.raw_root(256)),
    ("RootTable.raw_context", "devfn", lambda o, b: o.rt.raw_context(0, 256)),
    ("Cap", "nd", lambda o, b: Cap(nd=8)),
    ("Cap", "nd", lambda o, b: Cap(nd=True)),
    ("Cap.replace", "sagaw", lambda o, b: Cap.default().replace(sagaw=True)),
    ("Ecap", "iro", lambda o, b: Ecap(iro=False)),
    ("levels_to_width", "levels", lambda o, b: _core.levels_to_width(9)),
    ("levels_to_aw", "levels", lambda o, b: _core.levels_to_aw(9)),
    ("aw_to_levels", "aw", lambda o, b: _core.aw_to_levels(9)),
    ("Regs.ccmd", "granularity", lambda o, b: _core.Regs.ccmd(9)),
    ("Regs.ccmd", "did", lambda o, b: _core.Regs.ccmd(2, 1 << 16)),
    ("Regs.ccmd", "sid", lambda o, b: _core.Regs.ccmd(3, 1, 1 << 16)),
    ("Regs.ccmd", "fm", lambda o, b: _core.Regs.ccmd(3, 1, 8, 4)),
    ("Regs.iotlb", "granularity", lambda o, b: _core.Regs.iotlb(9)),
    ("Regs.iotlb", "did", lambda o, b: _core.Regs.iotlb(2, 1 << 16)),
    ("Regs.iva", "addr", lambda o, b: _core.Regs.iva(0x123)),
    ("Regs.iva", "am", lambda o, b: _core.Regs.iva(0, 99)),
    ("Regs.gcmd_from_gsts", "gsts", lambda o, b: _core.Regs.gcmd_from_gsts(1 << 40)),
]


@pytest.mark.parametrize(
    ("entry", "arg", "call"), OUT_OF_RANGE, ids=[f"{e}-{a}" for e, a, _ in OUT_OF_RANGE]
)
def test_an_out_of_range_scalar_names_the_argument(entry: str, arg: str, call: Call) -> None:
    o = native_objects()
    before = state(o)
    with pytest.raises(InvalidArgument) as ei:
        call(o, None)
    assert type(ei.value) is InvalidArgument
    assert str(ei.value).startswith(f"{arg}: "), (entry, str(ei.value))
    assert state(o) == before


def test_every_native_entry_point_taking_integers_is_in_the_table() -> None:
    """The table above covers each native class and function that takes an integer."""
    covered = {e.split(".")[0].rstrip("=") for e, _, _, _ in NATIVE_SCALARS}
    assert covered >= {
        "PhysMem",
        "Remapper",
        "PageTable",
        "RootTable",
        "Cap",
        "Ecap",
        "RootEntry",
        "ContextEntry",
        "Regs",
        "fault_name",
        "levels_to_width",
        "levels_to_aw",
        "aw_to_levels",
    }
    methods = {e for e, _, _, _ in NATIVE_SCALARS}
    for m in ("mmio_read", "mmio_write", "dma_read", "dma_write", "translate"):
        assert f"Remapper.{m}" in methods
