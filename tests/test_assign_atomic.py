"""A failed assign, deassign or reassign leaves everything as it was; one that succeeds on a
nearly full arena ends where it ends with plenty of memory.

Each test sweeps the number of free pages from none upwards on a small two-node machine (the
X10DAi table and population), so the request fails at every point it can fail, then succeeds.
What "everything" means is :func:`state`: ownership, each domain's devices, DIDs, RMRR
references and mappings, each unit's DIDs and context entries read back from memory, and the
free pages (nothing allocated by a failed request stays allocated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import vtdwalk
from dmar_corpus import REAL
from vtdwalk import Domain, NumaNode, OutOfMemory, PhysMem, Platform

DATA = Path(vtdwalk.__file__).resolve().parent / "data"
X10DAI = REAL / "supermicro-x10dai.dat"
NODE_PAGES = 256
#: What bring-up takes per unit before any assignment: the invalidation queue (4 pages), its wait
#: status slot (1) and the interrupt remapping table (256); node 0 holds two units' worth.
BRING_UP_PAGES = 2 * (4 + 1 + 256)
GIB = 1 << 30


def small_x10dai() -> Platform:
    """The X10DAi with 1 MiB per node past what bring-up takes: the arena fills in a few
    calls."""
    numa = [
        NumaNode(1 << 32, (NODE_PAGES + BRING_UP_PAGES) << 12, (0,)),
        NumaNode(1 << 33, (NODE_PAGES + BRING_UP_PAGES) << 12, (1,)),
    ]
    return Platform.from_dmar(X10DAI, topology=DATA / "supermicro-x10dai.toml", numa=numa)


def free_pages(mem: PhysMem) -> int:
    return sum(s["free_pages"] for s in mem.stats())


def leave_free(mem: PhysMem, k: int) -> list[int]:
    """Allocate every free page, then give exactly ``k`` back; the pages kept."""
    taken: list[int] = []
    n = 2 * NODE_PAGES
    while n:
        try:
            taken.append(mem.alloc_pages(1))
        except OutOfMemory:
            n = 0
    assert free_pages(mem) == 0
    for maddr in taken[:k]:
        mem.free_pages(maddr)
    assert free_pages(mem) == k
    return taken[k:]


def state(p: Platform, with_free: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "owner": {str(b): d.id for b, d in sorted(p.assignments.owner.items())},
        "domains": {
            d.id: (
                sorted(map(str, d.devices)),
                d.dids,
                dict(d.rmrr_refs),
                None if d.page_table is None else d.page_table.mappings(),
            )
            for d in p.domains
        },
        "units": [(u.index, u.dids.in_use(), u.root_table.entries()) for u in p.iommus],
    }
    if with_free:
        out["free"] = free_pages(p.mem)
    else:
        # Another arena puts tables elsewhere: compare context entries without the pointer.
        out["units"] = [
            (i, dids, [(b, f, lo & 0xFFF, hi) for b, f, lo, hi in e]) for i, dids, e in out["units"]
        ]
    return out


def sweep(setup: Any, request: Any, limit: int = 24) -> int:
    """Run ``request`` on fresh platforms with 0, 1, ... free pages until it succeeds.
    A failure must raise OutOfMemory and change nothing; the success must end as the same
    request with plenty of memory. Returns how many runs failed first."""
    roomy = small_x10dai()
    setup(roomy)
    request(roomy)
    want = state(roomy, with_free=False)
    for k in range(limit):
        p = small_x10dai()
        setup(p)
        leave_free(p.mem, k)
        before = state(p)
        try:
            request(p)
        except OutOfMemory:
            assert state(p) == before, f"{k} free pages"
            continue
        assert state(p, with_free=False) == want, f"{k} free pages"
        return k
    raise AssertionError(f"still failing with {limit} free pages")


def rmrr_of(p: Platform) -> tuple[int, int]:
    (r,) = p.rmrrs
    return r.base, r.end


def test_failed_assign_of_an_rmrr_device_changes_nothing() -> None:
    def setup(p: Platform) -> None:
        p.create_domain()

    def request(p: Platform) -> None:
        p.assign_device(p.domains[0], "00:14.0", relaxed=True)

    failures = sweep(setup, request)
    assert failures > 0


def test_failed_deassign_keeps_the_rmrr_reference_and_its_mapping() -> None:
    # The RMRR range overlaid with a 1 GiB identity page: unmapping the range splits it.
    def setup(p: Platform) -> None:
        d = p.create_domain()
        base, _ = rmrr_of(p)
        p.assign_device(d, "00:14.0", relaxed=True)
        g = base & ~(GIB - 1)
        d.map(g, g, GIB)

    def request(p: Platform) -> None:
        p.deassign_device("00:14.0")

    failures = sweep(setup, request)
    assert failures > 0
    # After the failures, the retry with room unmaps the range as a deassign without failure.
    p = small_x10dai()
    setup(p)
    taken = leave_free(p.mem, 0)
    with pytest.raises(OutOfMemory):
        p.deassign_device("00:14.0")
    d = p.domains[0]
    base, end = rmrr_of(p)
    assert d.rmrr_refs == {(base, end): 1} and p.owner_of("00:14.0") is d
    for maddr in taken[:8]:
        p.mem.free_pages(maddr)
    assert p.deassign_device("00:14.0") is d
    assert d.lookup(base) is None and d.lookup(end) is None
    assert d.rmrr_refs == {}
    g = base & ~(GIB - 1)
    assert d.lookup(g) is not None and d.lookup(end + 1) is not None


def test_failed_reassign_leaves_the_device_in_its_domain_with_its_holes() -> None:
    # The device's RMRR identity map has a hole the user unmapped; a failed move must neither
    # leave the device unassigned nor fill the hole again, nor change a DID.
    def setup(p: Platform) -> None:
        a = p.create_domain()
        p.create_domain()
        base, _ = rmrr_of(p)
        p.assign_device(a, "00:14.0", relaxed=True)
        p.assign_device(a, "00:1a.0", relaxed=True)
        a.unmap(base + 0x3000, 0x1000)

    def request(p: Platform) -> None:
        _, b = p.domains
        p.reassign_device("00:14.0", b, relaxed=True)

    failures = sweep(setup, request)
    assert failures > 0
    p = small_x10dai()
    setup(p)
    leave_free(p.mem, 0)
    a, b = p.domains
    with pytest.raises(OutOfMemory):
        p.reassign_device("00:14.0", b, relaxed=True)
    base, _ = rmrr_of(p)
    assert p.owner_of("00:14.0") is a
    assert a.lookup(base + 0x3000) is None and a.lookup(base) is not None


def test_failed_reassign_between_units_keeps_both_dids() -> None:
    # Two devices of two sockets: the move needs the target's chain and a DID on the unit.
    def setup(p: Platform) -> None:
        a, b = p.create_domain(), p.create_domain()
        p.assign_device(a, "82:00.0")
        p.assign_device(b, "02:00.0")

    def request(p: Platform) -> None:
        _, b = p.domains
        p.reassign_device("82:00.0", b)

    failures = sweep(setup, request)
    assert failures > 0


def test_domain_of_a_failed_request_still_works() -> None:
    p = small_x10dai()
    d: Domain = p.create_domain()
    taken = leave_free(p.mem, 0)
    with pytest.raises(OutOfMemory):
        p.assign_device(d, "82:00.0")
    for maddr in taken[:16]:
        p.mem.free_pages(maddr)
    p.assign_device(d, "82:00.0")
    d.map(0x1000, 0x1_0000_5000, 0x1000)
    assert p.translate("82:00.0", 0x1000).hpa == 0x1_0000_5000
