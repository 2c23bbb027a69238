"""The IOTLB-size sweep and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vtdwalk.errors import PlatformError
from vtdwalk.sim.report import _unit_stats
from vtdwalk.sim.scenario import SimConfig, build_platform, plan_scenario
from vtdwalk.sim.workload import drive, make_workload


def hit_rate_sweep(
    cfg: SimConfig, sizes: tuple[int, ...] | None = None
) -> list[dict[str, float | int | None]]:
    """The same scenario and workload at each IOTLB size: hit rate and ns per translation."""
    out: list[dict[str, float | int | None]] = []
    for n in sizes or cfg.plot_sizes:
        c = SimConfig(**{**cfg.__dict__, "iotlb_entries": n, "compare_policies": False})
        rng = np.random.default_rng(c.seed)
        p = build_platform(c)
        sc = plan_scenario(p, c, rng)
        w = make_workload(sc, rng)
        _, _, seconds = drive(p, w, c.batch)
        units = _unit_stats(p)
        hits = sum(u["iotlb_hits"] for u in units)
        looks = hits + sum(u["iotlb_misses"] for u in units)
        out.append(
            {
                "iotlb_entries": n,
                "hit_rate": hits / looks if looks else None,
                "ns_per_translation": 1e9 * seconds / len(w.iovas),
            }
        )
        p.free()
    return out


def plot(report: dict[str, Any], path: str | Path) -> None:
    """Draw the IOTLB hit rate against IOTLB size and the table pages per node, per policy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlatformError(
            "--plot needs matplotlib: pip install 'vtdwalk[plot]' (or matplotlib)"
        ) from e
    sweep = report.get("iotlb_sweep") or []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [s["iotlb_entries"] for s in sweep]
    ys = [100 * (s["hit_rate"] or 0.0) for s in sweep]
    ax1.plot(xs, ys, marker="o")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("IOTLB entries per unit")
    ax1.set_ylabel("IOTLB hit rate (%)")
    ax1.set_ylim(0, 100)
    ax1.set_title("IOTLB hit rate against size")
    ax1.grid(True, alpha=0.3)
    placement = report["placement"]
    policies = list(placement)
    nodes = sorted(
        {
            int(k)
            for pol in policies
            for item in placement[pol]["units"] + placement[pol]["domains"]
            for k in item["pages"]
        }
    )
    width = 0.8 / max(1, len(nodes))
    for j, node in enumerate(nodes):
        vals = [
            sum(
                int(item["pages"].get(node, item["pages"].get(str(node), 0)))
                for item in placement[pol]["units"] + placement[pol]["domains"]
            )
            for pol in policies
        ]
        ax2.bar([i + j * width for i in range(len(policies))], vals, width, label=f"node {node}")
    ax2.set_xticks([i + width * (len(nodes) - 1) / 2 for i in range(len(policies))])
    ax2.set_xticklabels([f"{pol}\n({placement[pol]['misplaced']} off-node)" for pol in policies])
    ax2.set_ylabel("table pages")
    ax2.set_title("Table pages per node")
    ax2.legend()
    fig.suptitle(f"vtdwalk simulate: {report['platform']['dmar']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
