"""PCI topology, NUMA description, and their TOML/JSON loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtdwalk import (
    Bdf,
    Device,
    DeviceKind,
    InvalidArgument,
    Numa,
    NumaNode,
    PlatformError,
    Topology,
    VtdError,
    dmar,
)
from vtdwalk.topology import MAX_NUMNODES, load_description, sriov_vf_bdfs

K = DeviceKind


def q35_like() -> Topology:
    """QEMU q35 style: root port 00:1c.0 -> PCIe-to-PCI bridge 01:00.0 -> conventional 02:01.0."""
    return Topology(
        [
            Device(Bdf(0, 0, 0, 0), K.HOST_BRIDGE),
            Device(Bdf(0, 0, 0x1C, 0), K.PCIE_PORT, secondary=1, subordinate=2),
            Device(Bdf(0, 1, 0, 0), K.PCIE_TO_PCI_BRIDGE, secondary=2, subordinate=2),
            Device(Bdf(0, 2, 1, 0), K.PCI),
            Device(Bdf(0, 0, 2, 0), K.PCIE_ENDPOINT),
        ]
    )


# ---- Bdf


def test_bdf_parse_format_and_ids() -> None:
    b = Bdf.parse("0001:03:1f.7")
    assert (b.segment, b.bus, b.dev, b.fn) == (1, 3, 0x1F, 7)
    assert b.devfn == 0xFF and b.sid == 0x3FF
    assert str(b) == "0001:03:1f.7"
    assert Bdf.parse("03:01.0") == Bdf(0, 3, 1, 0)
    assert Bdf.parse("03:01.0", segment=2).segment == 2
    assert Bdf.from_devfn(0, 3, 0x09) == Bdf(0, 3, 1, 1)
    assert Bdf.from_sid(5, 0x0208) == Bdf(5, 2, 1, 0)
    assert Bdf.coerce((0, 1, 2, 3)) == Bdf(0, 1, 2, 3)
    assert Bdf(0, 1, 0, 0) < Bdf(0, 1, 0, 1) < Bdf(0, 2, 0, 0)


@pytest.mark.parametrize(
    "text", ["", "00:20.0", "100:00.0", "00:00.8", "x:00.0", "00000:00:00.0", "00-00.0"]
)
def test_bdf_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^text: .*PCI") as ei:
        Bdf.parse(text)
    assert type(ei.value) is InvalidArgument


def test_bdf_field_ranges() -> None:
    for args, field in (
        ((0x10000, 0, 0, 0), "segment"),
        ((0, 256, 0, 0), "bus"),
        ((0, 0, 32, 0), "device"),
        ((0, 0, 0, 8), "function"),
        ((0, -1, 0, 0), "bus"),
    ):
        with pytest.raises(InvalidArgument, match=f"^PCI {field} "):
            Bdf(*args)
    with pytest.raises(InvalidArgument, match=r"^devfn: 256 is not an integer in 0\.\.255"):
        Bdf.from_devfn(0, 0, 256)


# ---- Device


def test_device_kinds_and_flags() -> None:
    assert K.PCIE_PORT.is_bridge and K.LEGACY_PCI_BRIDGE.is_bridge
    assert K.PCIE_TO_PCI_BRIDGE.is_bridge and K.PCI_TO_PCIE_BRIDGE.is_bridge
    assert not K.PCIE_ENDPOINT.is_bridge and not K.HOST_BRIDGE.is_bridge and not K.PCI.is_bridge
    d = Device(Bdf(0, 5, 1, 0), "pcie-endpoint", ari=True)  # type: ignore[arg-type]
    assert d.kind is K.PCIE_ENDPOINT and d.is_extfn  # devfn 8 on an ARI link
    assert not Device(Bdf(0, 5, 0, 7), ari=True).is_extfn


@pytest.mark.parametrize(
    ("fn", "stride", "expect"),
    [
        (0, 4, [4]),
        (0, 2, [2, 4, 6]),
        (1, 2, [3, 5, 7]),
        (0, 1, [1, 2, 3, 4, 5, 6, 7]),
        (2, 2, []),  # fn >= stride: Xen clears the stride
        (4, 4, []),
        (0, 0, []),
    ],
)
def test_phantom_functions(fn: int, stride: int, expect: list[int]) -> None:
    d = Device(Bdf(0, 3, 2, fn), phantom_stride=stride)
    assert d.phantom_devfns() == [(2 << 3) + x for x in expect]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": K.PCIE_PORT}, "needs secondary"),
        ({"kind": K.PCIE_PORT, "secondary": 3, "subordinate": 2}, "above subordinate"),
        ({"kind": K.PCIE_PORT, "secondary": 0, "subordinate": 2}, "own bus"),
        ({"kind": K.PCIE_ENDPOINT, "secondary": 1, "subordinate": 1}, "no secondary"),
        ({"phantom_stride": 3}, "phantom stride"),
        ({"kind": K.PCI, "phantom_stride": 2}, "only a PCIe endpoint"),
        ({"ats_queue_depth": 32}, "queue depth"),
        ({"kind": "gpu"}, "unknown device kind"),
        ({"kind": K.PCI, "physfn": Bdf(0, 0, 0, 0)}, "virtual function must be"),
        ({"physfn": Bdf(1, 0, 0, 0)}, "another segment"),
        ({"physfn": Bdf(0, 0, 1, 0)}, "its own physical function"),
    ],
)
def test_device_rejects(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(PlatformError, match=match):
        Device(Bdf(0, 0, 1, 0), **kwargs)  # type: ignore[arg-type]


# ---- Topology queries


def test_topology_queries() -> None:
    t = q35_like()
    assert len(t) == 5 and Bdf(0, 2, 1, 0) in t and "0000:02:01.0" in t and "zz" not in t
    assert t.segments == [0]
    assert t.buses(0) == [0, 1, 2]
    assert t.root_buses(0) == [0]
    assert t.parent(Bdf(0, 2, 1, 0)) is t[Bdf(0, 1, 0, 0)]
    assert t.parent(Bdf(0, 1, 0, 0)) is t[Bdf(0, 0, 0x1C, 0)]
    assert t.parent(Bdf(0, 0, 2, 0)) is None
    assert t.config_read8(0, 0, 0x1C, 0, 0x19) == 1
    assert t.config_read8(0, 0, 0x1C, 0, 0x1A) == 2
    assert t.config_read8(0, 0, 2, 0, 0x19) == 0  # not a bridge
    assert t.config_read8(0, 0, 3, 0, 0x19) == 0xFF  # absent: master abort
    with pytest.raises(PlatformError, match="no PCI function"):
        t[Bdf(0, 9, 0, 0)]


def test_resolve_path_through_bridges() -> None:
    t = q35_like()
    assert t.resolve_path(0, 0, [(0x1C, 0), (0, 0), (1, 0)]) == Bdf(0, 2, 1, 0)
    assert t.resolve_path(0, 0, [(2, 0)]) == Bdf(0, 0, 2, 0)
    # Xen reads 0xFF as the secondary bus of an absent bridge.
    assert t.resolve_path(0, 0, [(7, 0), (0, 0)]) == Bdf(0, 0xFF, 0, 0)
    with pytest.raises(PlatformError, match="empty"):
        t.resolve_path(0, 0, [])


def test_find_upstream_bridge_is_top_most_aliasing_bridge() -> None:
    t = q35_like()
    # Below the PCIe-to-PCI bridge: the bridge itself and the bus right below it.
    assert t.find_upstream_bridge(Bdf(0, 2, 1, 0)) == (Bdf(0, 1, 0, 0), 2)
    # The root port is not an aliasing bridge; bus 0 has none.
    assert t.find_upstream_bridge(Bdf(0, 1, 0, 0)) is None
    assert t.find_upstream_bridge(Bdf(0, 0, 2, 0)) is None
    # Nested legacy bridges: the top-most one wins, secbus is the bus right under it.
    nested = Topology(
        [
            Device(Bdf(0, 0, 1, 0), K.PCIE_PORT, secondary=1, subordinate=4),
            Device(Bdf(0, 1, 0, 0), K.PCIE_TO_PCI_BRIDGE, secondary=2, subordinate=4),
            Device(Bdf(0, 2, 3, 0), K.LEGACY_PCI_BRIDGE, secondary=3, subordinate=4),
            Device(Bdf(0, 3, 4, 0), K.LEGACY_PCI_BRIDGE, secondary=4, subordinate=4),
            Device(Bdf(0, 4, 5, 0), K.PCI),
        ]
    )
    assert nested.find_upstream_bridge(Bdf(0, 4, 5, 0)) == (Bdf(0, 1, 0, 0), 2)
    assert nested.find_upstream_bridge(Bdf(0, 2, 3, 0)) == (Bdf(0, 1, 0, 0), 2)


def test_sriov_vfs_spill_onto_next_bus() -> None:
    pf = Bdf(0, 3, 0, 0)
    vfs = sriov_vf_bdfs(pf, 4, offset=0xFE, stride=1)
    assert vfs == [Bdf(0, 3, 31, 6), Bdf(0, 3, 31, 7), Bdf(0, 4, 0, 0), Bdf(0, 4, 0, 1)]
    with pytest.raises(PlatformError, match="runs past"):
        sriov_vf_bdfs(Bdf(0, 0xFF, 31, 0), 16, offset=8)
    t = Topology(
        [
            Device(Bdf(0, 0, 1, 0), K.PCIE_PORT, secondary=3, subordinate=4),
            Device(pf, ats=True),
        ]
    )
    made = t.add_vfs(pf, 4, offset=0xFE)
    assert [d.bdf for d in made] == vfs
    assert all(d.physfn == pf and d.ats and d.is_virtfn for d in made)
    assert t.vfs(pf) == made
    with pytest.raises(PlatformError, match="declared twice"):
        t.add_vfs(pf, 1, offset=0xFE)
    assert len(t) == 6  # the failed add changed nothing


@pytest.mark.parametrize(
    ("devices", "match"),
    [
        ([Device(Bdf(0, 0, 1, 0)), Device(Bdf(0, 0, 1, 0))], "declared twice"),
        (
            [
                Device(Bdf(0, 0, 1, 0), K.PCIE_PORT, secondary=1, subordinate=3),
                Device(Bdf(0, 0, 2, 0), K.PCIE_PORT, secondary=3, subordinate=5),
            ],
            "overlap without nesting",
        ),
        (
            [
                Device(Bdf(0, 0, 1, 0), K.PCIE_PORT, secondary=1, subordinate=1),
                Device(Bdf(0, 0, 2, 0), K.PCIE_PORT, secondary=1, subordinate=1),
            ],
            "both have secondary bus",
        ),
        (
            [
                Device(Bdf(0, 0, 1, 0), K.PCIE_PORT, secondary=1, subordinate=3),
                Device(Bdf(0, 2, 0, 0)),
            ],
            "not its secondary bus",
        ),
        ([Device(Bdf(0, 0, 1, 1), physfn=Bdf(0, 0, 1, 0))], "does not exist"),
    ],
)
def test_topology_rejects_inconsistent_buses(devices: list[Device], match: str) -> None:
    with pytest.raises(PlatformError, match=match):
        Topology(devices)


def test_platform_error_is_a_vtd_error() -> None:
    assert issubclass(PlatformError, VtdError)


# ---- synthesis from a DMAR table


def test_synthesis_gives_bridges_fresh_nested_buses() -> None:
    sc = dmar.DeviceScope
    table = dmar.DmarTable(
        host_address_width=38,
        flags=1,
        structures=[
            dmar.Drhd(
                0,
                0,
                0xFED90000,
                [
                    sc(dmar.SCOPE_BRIDGE, start_bus=0, path=[(1, 0)]),
                    sc(dmar.SCOPE_ENDPOINT, start_bus=0, path=[(1, 0), (0, 0), (2, 0)]),
                    sc(dmar.SCOPE_ENDPOINT, start_bus=1, path=[(0, 0)]),
                    sc(dmar.SCOPE_IOAPIC, enumeration_id=8, start_bus=0xF0, path=[(0x1F, 0)]),
                ],
            ),
            dmar.Rmrr(0, 0x1000, 0x1FFF, [sc(dmar.SCOPE_ENDPOINT, start_bus=0, path=[(0x14, 0)])]),
        ],
    )
    t = Topology.from_dmar(table)
    port = t[Bdf(0, 0, 1, 0)]
    mid = t.get(Bdf(0, port.secondary or 0, 0, 0))
    assert port.kind is K.PCIE_PORT and mid is not None and mid.is_bridge
    # Buses 0, 1 and 0xF0 start scopes; the bridge range avoids them and nests.
    assert port.secondary not in (0, 1, 0xF0) and mid.secondary not in (0, 1, 0xF0)
    assert port.secondary is not None and port.subordinate is not None
    assert port.secondary < (mid.secondary or 0) <= port.subordinate
    leaf = t.resolve_path(0, 0, [(1, 0), (0, 0), (2, 0)])
    assert leaf.bus == mid.secondary and t[leaf].kind is K.PCIE_ENDPOINT
    assert Bdf(0, 1, 0, 0) in t and Bdf(0, 0, 0x14, 0) in t
    assert t.ioapics == {8: Bdf(0, 0xF0, 0x1F, 0)}


# ---- NUMA


def test_numa_default_nodes() -> None:
    n = Numa.default([7, 3, 3])
    assert len(n) == 2 and n.pxm_to_node(3) == 0 and n.pxm_to_node(7) == 1
    assert n.pxm_to_node(0) is None
    assert n.ranges == [(64 << 30, 64 << 30), (128 << 30, 64 << 30)]
    one = Numa.default()
    assert len(one) == 1 and one.pxm_to_node(0) is None
    mem = n.make_mem()
    assert mem.nodes == n.ranges


def test_pxm_to_node_slots_like_xen() -> None:
    # pxm 64 takes slot 0 (64 % 64 is not used: first free slot); pxm 0 then lands elsewhere.
    nodes = [NumaNode(i << 30, 1 << 30, (p,)) for i, p in enumerate([64, 0, 1000, 5])]
    n = Numa(nodes)
    assert [n.pxm_to_node(p) for p in (64, 0, 1000, 5, 6, 2**32 - 1)] == [0, 1, 2, 3, None, None]
    assert n.pxm_map == {64: 0, 0: 1, 1000: 2, 5: 3}
    many = Numa([NumaNode(0, 1 << 30, tuple(range(100, 100 + MAX_NUMNODES)))])
    assert many.pxm_to_node(100 + MAX_NUMNODES - 1) == 0
    with pytest.raises(PlatformError, match="more than 64"):
        Numa([NumaNode(0, 1 << 30, tuple(range(MAX_NUMNODES + 1)))])


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([], "at least one"),
        ([NumaNode(0, 2 << 30), NumaNode(1 << 30, 1 << 30)], "overlap"),
        ([NumaNode(0, 1 << 30, (1,)), NumaNode(1 << 30, 1 << 30, (1,))], "given to nodes"),
        ([NumaNode(1 << 52, 1 << 30)], "below 2"),
    ],
)
def test_numa_rejects(nodes: list[NumaNode], match: str) -> None:
    with pytest.raises(PlatformError, match=match):
        Numa(nodes)
    with pytest.raises(PlatformError):
        NumaNode(0, 100)


# ---- description files

TOML_TEXT = """
[[devices]]
bdf = "0000:00:00.0"
kind = "host-bridge"

[[devices]]
bdf = "00:1c.0"
kind = "pcie-port"
secondary = 1
subordinate = 2

[[devices]]
bdf = "01:00.0"
kind = "pcie-to-pci-bridge"
secondary = 2
subordinate = 2

[[devices]]
bdf = "02:01.0"
kind = "pci"

[[devices]]
bdf = "00:02.0"
phantom_stride = 2
ats = true
ari = false
name = "nic"
sriov = { num_vfs = 2, offset = 0x80, stride = 2 }

[[ioapics]]
id = 8
bdf = "f0:1f.0"

[numa]
[[numa.nodes]]
base = "64G"
size = "0x1000000000"
pxms = [0]

[[numa.nodes]]
base = 137438953472
size = "64GiB"
pxms = [1, 2]
"""


def _check_loaded(topo: Topology | None, numa: Numa | None) -> None:
    assert topo is not None and numa is not None
    assert topo[Bdf(0, 0, 0, 0)].kind is K.HOST_BRIDGE
    assert topo.find_upstream_bridge("02:01.0") == (Bdf(0, 1, 0, 0), 2)
    nic = topo["00:02.0"]
    assert nic.phantom_stride == 2 and nic.ats and nic.name == "nic"
    assert [d.bdf for d in topo.vfs(nic)] == [Bdf(0, 0, 0x12, 0), Bdf(0, 0, 0x12, 2)]
    assert topo.ioapics == {8: Bdf(0, 0xF0, 0x1F, 0)}
    assert numa.ranges == [(64 << 30, 64 << 30), (128 << 30, 64 << 30)]
    assert [numa.pxm_to_node(p) for p in (0, 1, 2, 3)] == [0, 1, 1, None]


def test_load_toml(tmp_path: Path) -> None:
    f = tmp_path / "machine.toml"
    f.write_text(TOML_TEXT)
    _check_loaded(*load_description(f))
    _check_loaded(Topology.load(f), Numa.load(f))


def test_load_json_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "machine.toml"
    f.write_text(TOML_TEXT)
    topo, numa = load_description(f)
    assert topo is not None and numa is not None
    j = tmp_path / "machine.json"
    j.write_text(json.dumps({**topo.to_dict(), "numa": numa.to_dict()}))
    t2, n2 = load_description(j)
    _check_loaded(t2, n2)
    assert t2 is not None and t2.to_dict() == topo.to_dict()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[[devices]]\nkind = 'pci'\n", "no 'bdf'"),
        ("[[devices]]\nbdf = '00:01.0'\ncolour = 'red'\n", "unknown device keys"),
        ("[[devices]]\nbdf = 1\n", "must be a string"),
        ("[[devices]]\nbdf = '00:01.0'\nats = 1\n", "true or false"),
        ("[[devices]]\nbdf = '00:01.0'\nphantom_stride = 'x'\n", "expected an integer"),
        ("[[devices]]\nbdf = '00:01.0'\nsriov = { num_vfs = 2 }\n", "needs num_vfs and offset"),
        ("devices = 3\n", "must be a list"),
        ("[numa]\nnodes = [{ base = 0 }]\n", "needs base and size"),
        ("[[ioapics]]\nid = 300\nbdf = '00:01.0'\n", "not in 0..255"),
        ("machine = 1\n", "unknown"),
        ("[[devices]\n", "not valid TOML"),
    ],
)
def test_bad_descriptions(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(PlatformError, match=match):
        load_description(f)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="cannot read"):
        load_description(tmp_path / "missing.toml")
    j = tmp_path / "bad.json"
    j.write_text("{")
    with pytest.raises(PlatformError, match="not valid JSON"):
        load_description(j)
    j.write_text("[1]")
    with pytest.raises(PlatformError, match="at the top"):
        load_description(j)
    t = tmp_path / "nonuma.toml"
    t.write_text("[[devices]]\nbdf = '00:01.0'\n")
    with pytest.raises(PlatformError, match="no 'numa'"):
        Numa.load(t)
