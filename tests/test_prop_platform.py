"""Platform assign / deassign / reassign sequences against a small model of who is where
(Hypothesis stateful testing, so a failing sequence shrinks).

The machine: two remapping units, one with an explicit scope (00:03.0, 00:04.0), one
include-all; endpoints on bus 0, one of them (00:05.0) with an RMRR. The model keeps the owner
of each device; after every step the platform must show exactly that: ``owner_of``, present
context entries read straight from memory (tests/reference/ctx.py) with the owner's DID on that
unit, a DID on a unit exactly while the domain owns a device behind it, DMA reaching the owner's
mapping (so every move flushed what the hardware cached) and a fault for an unowned device.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import strategies as sts
from reference import ctx as ref
from vtdwalk import Bdf, Device, DmaFault, Domain, Platform, PlatformError, Topology, dmar

UNIT_A, UNIT_B = 0xFED90000, 0xFED91000
SCOPED = ["00:03.0", "00:04.0"]  # behind unit A
OTHERS = ["00:02.0", "00:05.0", "00:06.0"]  # behind the include-all unit B
DEVICES = SCOPED + OTHERS
RMRR_DEV, RMRR_BASE, RMRR_LIMIT = "00:05.0", 0xE0000, 0xE1FFF
IOVA = 0x40_0000  # every domain maps this page to its own frame


def machine() -> Platform:
    table = dmar.DmarTable(
        host_address_width=38,
        flags=1,
        structures=[
            dmar.Drhd(
                flags=0,
                segment=0,
                address=UNIT_A,
                scopes=[dmar.DeviceScope.endpoint(0, 3, 0), dmar.DeviceScope.endpoint(0, 4, 0)],
            ),
            dmar.Drhd(flags=1, segment=0, address=UNIT_B),
            dmar.Rmrr(
                segment=0,
                base=RMRR_BASE,
                limit=RMRR_LIMIT,
                scopes=[dmar.DeviceScope.endpoint(0, 5, 0)],
            ),
        ],
    )
    topo = Topology([Device(Bdf.parse(b)) for b in DEVICES])
    return Platform(table, topology=topo)


def sid(bdf: str) -> int:
    b = Bdf.parse(bdf)
    return (b.bus << 8) | (b.dev << 3) | b.fn


class PlatformMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.p = machine()
        self.units = {u.address: u for u in self.p.iommus}
        self.domains: list[Domain] = []
        self.owner: dict[str, int] = {}  # device -> index into self.domains

    def frame(self, k: int) -> int:
        return 0x1_0000_0000 + k * 0x1000

    @initialize(n=st.integers(1, 3))
    def make_domains(self, n: int) -> None:
        for _ in range(n):
            self.add_domain()

    def add_domain(self) -> None:
        d = self.p.create_domain()
        d.map(IOVA, self.frame(len(self.domains)), 0x1000)
        self.domains.append(d)

    @rule()
    def create_domain(self) -> None:
        if len(self.domains) < 5:
            self.add_domain()

    @rule(k=st.integers(0, 4), dev=st.sampled_from(DEVICES))
    def assign(self, k: int, dev: str) -> None:
        k %= len(self.domains)
        if dev in self.owner:
            try:
                self.p.assign_device(self.domains[k], dev)
            except PlatformError:
                return
            raise AssertionError(f"{dev} assigned twice")
        self.p.assign_device(self.domains[k], dev)
        self.owner[dev] = k

    @rule(dev=st.sampled_from(DEVICES))
    def deassign(self, dev: str) -> None:
        if dev not in self.owner:
            try:
                self.p.deassign_device(dev)
            except PlatformError:
                return
            raise AssertionError(f"{dev} deassigned while unowned")
        left = self.p.deassign_device(dev)
        assert left is self.domains[self.owner.pop(dev)]

    @rule(k=st.integers(0, 4), dev=st.sampled_from(DEVICES))
    def reassign(self, k: int, dev: str) -> None:
        k %= len(self.domains)
        self.p.reassign_device(dev, self.domains[k])
        self.owner[dev] = k

    @invariant()
    def platform_matches_model(self) -> None:
        p = self.p
        entries = {a: ref.present_entries(p.mem, u.root_maddr) for a, u in self.units.items()}
        for dev in DEVICES:
            unit_addr = UNIT_A if dev in SCOPED else UNIT_B
            unit = self.units[unit_addr]
            k = self.owner.get(dev)
            e = entries[unit_addr].get(dev)
            if k is None:
                assert p.owner_of(dev) is None
                assert e is None
                try:
                    p.translate(dev, IOVA)
                except DmaFault:
                    pass
                else:
                    raise AssertionError(f"DMA from unowned {dev} translated")
                continue
            d = self.domains[k]
            assert p.owner_of(dev) is d
            assert e is not None and e.did == d.did(unit)
            assert p.translate(dev, IOVA).hpa == self.frame(k)
            if dev == RMRR_DEV:
                assert p.translate(dev, RMRR_BASE).hpa == RMRR_BASE
        for k, d in enumerate(self.domains):
            assert d.devices == {Bdf.parse(b) for b, o in self.owner.items() if o == k}
            for addr, unit in self.units.items():
                behind = SCOPED if addr == UNIT_A else OTHERS
                has = any(self.owner.get(b) == k for b in behind)
                assert (d.did(unit) is not None) == has
            # The RMRR stays identity-mapped only while its device is in the domain.
            rmrr_here = self.owner.get(RMRR_DEV) == k
            assert (d.lookup(RMRR_BASE) is not None) == rmrr_here
        # No unit gives the same DID to two domains.
        for unit in self.units.values():
            dids = [d.did(unit) for d in self.domains if d.did(unit) is not None]
            assert len(dids) == len(set(dids))

    def teardown(self) -> None:
        self.p.free()


TestPlatformSequences = PlatformMachine.TestCase
TestPlatformSequences.settings = sts.machine_settings()
