"""A NUMA placement study: what the seed series changed, over every multi-socket table.

For each real DMAR table with RHSA structures (two or more proximity domains), build the
machine twice, under the driver's rules before the seed series (`pre-seed`: root tables
allocated while the DRHD is parsed, before any RHSA is known; page tables on the node of the
first device found) and after it (`seed`), assign one device behind every unit to one domain per
unit, map a few thousand pages, and count table pages that are not on the node of the devices
they serve.

Run: python examples/numa_study.py [DMAR-CORPUS-DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import vtdwalk
from vtdwalk.sim import SimConfig, build_platform, plan_scenario

# The corpus of real firmware tables shipped with the repository's tests.
DEFAULT = Path(__file__).resolve().parents[1] / "tests" / "data" / "dmar-corpus" / "real"


def study(path: Path) -> tuple[int, int, int] | None:
    table = vtdwalk.dmar.parse(path.read_bytes())
    if len({r.proximity_domain for r in table.rhsas}) < 2:
        return None
    out = []
    for policy in ("seed", "pre-seed"):
        cfg = SimConfig(dmar=path.read_bytes(), policy=policy, pages_per_device=512)
        p = build_platform(cfg)
        try:
            plan_scenario(p, cfg, np.random.default_rng(1))
        except vtdwalk.VtdError:
            return None
        rep = p.numa_report()
        total = sum(sum(u["pages"].values()) for u in rep["units"])
        total += sum(sum(d["pages"].values()) for d in rep["domains"])
        out.append((rep["misplaced"], total))
    (seed_bad, total), (pre_bad, _) = out
    return seed_bad, pre_bad, total


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    print(f"{'table':<52} {'pages':>7} {'seed off-node':>14} {'pre-seed off-node':>18}")
    for path in sorted(corpus.glob("*.dat")):
        r = study(path)
        if r is not None:
            seed_bad, pre_bad, total = r
            print(f"{path.stem:<52} {total:>7} {seed_bad:>14} {pre_bad:>18}")


if __name__ == "__main__":
    main()
