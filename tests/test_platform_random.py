"""Random machines and DMAR tables against a direct rendering of Xen's look-up.

The reference walks the raw DRHD list (xen-driver.md §1.5 step 8 for the order, §2 for the
match) and reads bridge ranges straight from the declared devices, so it shares nothing with the
platform's scope resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from vtdwalk import Bdf, Device, DeviceKind, Platform, Topology, dmar

EP, BR = dmar.SCOPE_ENDPOINT, dmar.SCOPE_BRIDGE


@dataclass
class Machine:
    topo: Topology
    table: dmar.DmarTable


@st.composite
def machines(draw: st.DrawFn) -> Machine:
    devices: list[Device] = []
    for seg in draw(st.sampled_from([[0], [0, 1]])):
        nports = draw(st.integers(1, 5))
        for i in range(1, nports + 1):
            # Root port 00:0i.0 -> bus 2i; some hold a switch port 2i:00.0 -> bus 2i+1.
            sec = 2 * i
            switch = draw(st.booleans())
            sub = sec + 1 if switch else sec
            devices.append(
                Device(Bdf(seg, 0, i, 0), DeviceKind.PCIE_PORT, secondary=sec, subordinate=sub)
            )
            if switch:
                devices.append(
                    Device(
                        Bdf(seg, sec, 0, 0), DeviceKind.PCIE_PORT, secondary=sub, subordinate=sub
                    )
                )
                devices.append(Device(Bdf(seg, sub, 0, 0)))
            else:
                devices.append(Device(Bdf(seg, sec, 0, draw(st.integers(0, 7)))))
        for d in draw(st.sets(st.integers(0x10, 0x1F), max_size=5)):
            devices.append(Device(Bdf(seg, 0, d, draw(st.integers(0, 7)))))
    topo = Topology(devices)
    names = [d.bdf for d in devices]

    def scope() -> dmar.DeviceScope:
        b = draw(st.sampled_from(names)) if draw(st.integers(0, 9)) else Bdf(0, 0x30, 1, 0)
        kind = BR if topo.get(b) is not None and topo[b].is_bridge and draw(st.booleans()) else EP
        if draw(st.integers(0, 19)) == 0:
            kind = BR  # a bridge entry naming a non-bridge or nothing: Xen reads 0 or 0xff
        return dmar.DeviceScope(kind, start_bus=b.bus, path=[(b.dev, b.fn)])

    structures: list[dmar.Structure] = []
    for n in range(draw(st.integers(1, 6))):
        seg = draw(st.sampled_from(sorted(topo.segments)))
        inc = draw(st.integers(0, 3)) == 0
        scopes = [scope() for _ in range(draw(st.integers(0, 4)))]
        scopes = [s for s in scopes if not inc or s.type_code == EP]
        structures.append(dmar.Drhd(int(inc), seg, 0x1000 * (n + 1), scopes))
    return Machine(topo, dmar.DmarTable(host_address_width=47, flags=0, structures=structures))


def reference(m: Machine, seg: int, bus: int, dev: int, fn: int) -> dmar.Drhd | None:
    drhds = m.table.drhds
    order = [d for d in drhds if not d.include_all][::-1] + [d for d in drhds if d.include_all]
    fallback = None
    for d in order:
        if d.segment != seg:
            continue
        if any((s.start_bus, *s.path[0]) == (bus, dev, fn) for s in d.scopes):
            return d
        for s in d.scopes:
            if s.type_code != BR:
                continue
            target = m.topo.get(Bdf(seg, s.start_bus, *s.path[0]))
            if target is None:
                lo = hi = 0xFF  # config reads of an absent function
            elif target.is_bridge:
                lo, hi = target.secondary or 0, target.subordinate or 0
            else:
                lo = hi = 0  # a non-bridge reads 0 at 0x19/0x1a
            if lo <= bus <= hi:
                return d
        if d.include_all:
            fallback = d
    return fallback


@settings(max_examples=150, deadline=None)
@given(machines())
def test_drhd_for_device_matches_reference(m: Machine) -> None:
    p = Platform(m.table, topology=m.topo)
    probes = [d.bdf for d in m.topo] + [
        Bdf(s, b, 5, 3) for s in m.topo.segments for b in (0, 1, 2, 3, 4, 5, 9, 11, 0x30, 0xFF)
    ]
    for b in probes:
        want = reference(m, b.segment, b.bus, b.dev, b.fn)
        got = p.drhd_for_device(b)
        assert got is want, f"{b}: {got} != {want}"
    # The list order and the orphans the report names.
    orphans = [d.bdf for d in m.topo if reference(m, *_t(d.bdf)) is None]
    assert bool(p.findings("device-no-unit")) == bool(orphans)
    assert [u.drhd for u in p.iommus] == [d for d in m.table.drhds if not d.include_all][::-1] + [
        d for d in m.table.drhds if d.include_all
    ]


def _t(b: Bdf) -> tuple[int, int, int, int]:
    return (b.segment, b.bus, b.dev, b.fn)
