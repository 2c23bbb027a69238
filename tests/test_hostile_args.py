"""Hostile arguments to the Python layers: paths that are no regular file or too big, wrongly
typed arguments, huge ones in messages, and a table with very many RMRRs. Each refusal is the
error class the README's conventions name, with the argument's name in its message."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from vtdwalk import (
    Bdf,
    Device,
    InvalidArgument,
    PhysMem,
    Platform,
    PlatformError,
    Topology,
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
