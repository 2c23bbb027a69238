"""Assign devices of both sockets of the embedded two-socket machine to two domains, map some
memory, run DMA through the remapping hardware, and compare where the tables landed under the
seed's node rules and before them.

Run: python examples/assign_two_sockets.py
"""

from __future__ import annotations

from vtdwalk import DmaFault, Platform


def run(policy: str) -> None:
    p = Platform.default(policy=policy)  # type: ignore[arg-type]
    d0, d1 = p.create_domain(), p.create_domain()
    p.assign_device(d0, "01:00.0")  # NVMe on socket 0
    p.assign_device(d1, "82:00.0")  # NVMe on socket 1
    d0.map(0x10_0000, 0x4000_0000, 0x10_0000)
    d1.map(0x10_0000, 0x10_0000_0000, 0x10_0000)
    print(f"[{policy}] 01:00.0 @0x100040 ->", hex(p.translate("01:00.0", 0x10_0040).hpa))
    print(f"[{policy}] 82:00.0 @0x100040 ->", hex(p.translate("82:00.0", 0x10_0040).hpa))
    rep = p.numa_report()
    for u in rep["units"]:
        print(
            f"[{policy}] unit {u['address']:#x} node {u['node']}: pages {u['pages']}, "
            f"misplaced {u['misplaced']}"
        )
    for d in rep["domains"]:
        print(
            f"[{policy}] domain {d['id']} node {d['node']}: pages {d['pages']}, "
            f"misplaced {d['misplaced']}"
        )
    print(f"[{policy}] misplaced table pages in all: {rep['misplaced']}")
    p.deassign_device("82:00.0")
    try:
        p.translate("82:00.0", 0x10_0040)
    except DmaFault as e:
        print(f"[{policy}] after deassign: {e}")


if __name__ == "__main__":
    run("seed")
    run("pre-seed")
