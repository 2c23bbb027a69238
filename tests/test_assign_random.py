"""Random assignments, deassignments and mappings on a q35-like machine, checked after every step
against a model written from the rules of xen-driver.md §5.3 (which entries each device needs,
when an assignment must be refused) and against the context entries read back from PhysMem."""

from __future__ import annotations

import os
import random

import pytest

from reference import ctx as ref
from reference import present_table
from test_assign import q35
from vtdwalk import DmaFault, Platform, PlatformError
from vtdwalk.driver.domain import Domain
from vtdwalk.driver.iommu import Iommu

# The entries each device needs, by the rules (not by the code under test).
NEEDS: dict[str, list[str]] = {
    "01:00.0": ["01:00.0", "01:00.2", "01:00.4", "01:00.6"],  # phantom stride 2
    "03:01.0": ["03:01.0", "02:00.0", "03:00.0"],  # behind a PCIe-to-PCI bridge
    "03:02.0": ["03:02.0", "02:00.0", "03:00.0"],
    "04:03.0": ["04:03.0", "00:1e.0"],  # behind a legacy PCI bridge: no secbus entry
    "02:00.0": [],  # bridges: none
    "00:1c.1": [],
}
PAGES = [0x1000 * i for i in range(8)]


def sid(bdf: str) -> int:
    bus, rest = bdf.split(":")
    dev, fn = rest.split(".")
    return int(bus, 16) << 8 | int(dev, 16) << 3 | int(fn)


def run(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    p = q35()
    (u,) = p.iommus
    doms = [p.create_domain() for _ in range(3)]
    owner: dict[str, Domain] = {}
    maps: dict[int, dict[int, int]] = {d.id: {} for d in doms}
    done = {"assigned": 0, "refused": 0, "translated": 0}
    for _ in range(steps):
        op = rng.random()
        dev = rng.choice(sorted(NEEDS))
        d = rng.choice(doms)
        if op < 0.35:
            needed = {e: owner[x] for x in owner for e in NEEDS[x]}
            refuse = dev in owner or any(e in needed and needed[e] is not d for e in NEEDS[dev])
            if refuse:
                with pytest.raises(PlatformError):
                    p.assign_device(d, dev)
                done["refused"] += 1
            else:
                p.assign_device(d, dev)
                owner[dev] = d
                done["assigned"] += 1
        elif op < 0.6:
            if dev in owner:
                assert p.deassign_device(dev) is owner.pop(dev)
            else:
                with pytest.raises(PlatformError):
                    p.deassign_device(dev)
        elif op < 0.85:
            page = rng.choice(PAGES)
            target = (1 << 32) + (rng.randrange(1 << 20) << 12)  # clear of 0xfeex_xxxx
            d.map(page, target, 0x1000)
            maps[d.id][page] = target
        else:
            page = rng.choice(PAGES)
            d.unmap(page, 0x1000)
            maps[d.id].pop(page, None)
        done["translated"] += check(p, u, owner, maps, rng)
    assert min(done.values()) > 0, done


def check(
    p: Platform,
    u: Iommu,
    owner: dict[str, Domain],
    maps: dict[int, dict[int, int]],
    rng: random.Random,
) -> int:
    want = {e: owner[x] for x in owner for e in NEEDS[x]}
    got = ref.present_entries(p.mem, present_table(u.root_maddr))
    assert sorted(got) == sorted(want)
    for e, dom in want.items():
        assert dom.page_table is not None
        assert got[e].did == dom.did(u)
        assert got[e].slptptr == dom.page_table.root
    # One DID per domain on the unit, distinct across domains.
    on_unit = {d.id: d for d in want.values()}
    assert len({d.did(u) for d in on_unit.values()}) == len(on_unit)
    assert all(d.did(u) is None for d in p.domains if d.id not in on_unit)
    ok = 0
    for e in sorted(NEEDS["01:00.0"] + ["03:01.0", "03:00.0", "04:03.0", "03:02.0"]):
        page = rng.choice(PAGES)
        try:
            hpa = p.translate(e, page + 8).hpa
            assert e in want and maps[want[e].id].get(page) == hpa - 8
            ok += 1
        except DmaFault as f:
            if e not in want:
                assert f.reason in (0x1, 0x2)
            else:
                assert f.reason == 0x6 and page not in maps[want[e].id]
    return ok


@pytest.mark.parametrize("seed", range(6))
def test_random_assignment_sequences(seed: int) -> None:
    run(seed, 150)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("VTDWALK_SLOW"), reason="set VTDWALK_SLOW=1 for long runs")
def test_random_assignment_sequences_long() -> None:
    for seed in range(100, 140):
        run(seed, 1000)
