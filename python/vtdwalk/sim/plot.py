"""The IOTLB-size sweep and the figure of ``vtdwalk simulate --plot``.

The figure has three panels: the IOTLB hit rate and the time per translation against the
IOTLB size (the same scenario and workload at each size), and the table pages off their
devices' node, per unit and domain, under the seed series and before it (what the seed
changes). The workload (requests, random seed, table) is stated under the panels.

The output format follows the file name's suffix: any format matplotlib's Agg canvas writes
(:func:`supported_formats`: png, pdf, svg, eps, ps, jpg, tif, webp, ...); a name without a
suffix gets ``.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vtdwalk.errors import InvalidArgument, PlatformError
from vtdwalk.sim.progress import Phases
from vtdwalk.sim.report import _hit_rate
from vtdwalk.sim.scenario import SimConfig, build_platform, plan_scenario
from vtdwalk.sim.workload import chunks, drive

__all__ = ["check_plot_path", "hit_rate_sweep", "plot", "supported_formats"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlatformError(
            "--plot needs matplotlib: pip install 'vtdwalk[plot]' (or matplotlib)"
        ) from e
    return plt


def supported_formats() -> dict[str, str]:
    """The file suffixes the figure can be written as (without the dot), with their names."""
    plt = _pyplot()
    fig = plt.figure()
    try:
        return dict(fig.canvas.get_supported_filetypes())
    finally:
        plt.close(fig)


def check_plot_path(path: str | Path) -> Path:
    """The path the figure will be written to, checked before any work: matplotlib present,
    not a directory, its directory exists and is writable, a format matplotlib writes (no
    suffix: ``.png`` is added). Raises :class:`InvalidArgument` (or :class:`PlatformError`
    without matplotlib)."""
    import os

    formats = supported_formats()
    p = Path(path)
    if p.is_dir() or str(path).endswith(os.sep):
        raise InvalidArgument(f"{path} is a directory: give a file name, e.g. {p / 'vtdwalk.png'}")
    if not p.suffix:
        p = p.with_name(p.name + ".png")
    fmt = p.suffix[1:].lower()
    if fmt not in formats:
        raise InvalidArgument(
            f"{p}: matplotlib cannot write .{fmt} files (it writes: {', '.join(sorted(formats))})"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidArgument(f"{p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InvalidArgument(f"{p}: directory {parent} is not writable")
    return p


def hit_rate_sweep(
    cfg: SimConfig, sizes: tuple[int, ...] | None = None, phases: Phases | None = None
) -> list[dict[str, float | int | None]]:
    """The same scenario and workload at each IOTLB size: hit rate and ns per translation."""
    ph = phases or Phases(False)
    sizes = sizes or cfg.plot_sizes
    out: list[dict[str, float | int | None]] = []
    with ph.phase(f"IOTLB sweep ({len(sizes)} sizes)", cfg.accesses * len(sizes)) as adv:
        for n in sizes:
            c = SimConfig(**{**cfg.__dict__, "iotlb_entries": n, "compare_policies": False})
            rng = np.random.default_rng(c.seed)
            p = build_platform(c)
            sc = plan_scenario(p, c, rng)
            res = drive(p, chunks(sc, rng, c.accesses, c.batch), adv)
            out.append(
                {
                    "iotlb_entries": n,
                    "hit_rate": _hit_rate(p),
                    "ns_per_translation": 1e9 * res.seconds / res.translations,
                }
            )
            p.free()
    return out


def _misplaced_rows(placement: dict[str, Any]) -> tuple[list[str], dict[str, list[int]]]:
    """Labels of the units and domains with pages off their devices' node under any policy,
    and the counts per policy."""
    policies = list(placement)
    first = placement[policies[0]]
    labels: list[str] = []
    counts: dict[str, list[int]] = {pol: [] for pol in policies}
    for kind in ("units", "domains"):
        for i, item in enumerate(first[kind]):
            vals = [int(placement[pol][kind][i]["misplaced"]) for pol in policies]
            if not any(vals):
                continue
            if kind == "units":
                labels.append(f"unit {item['address']:#x}")
            else:
                devs = ", ".join(x.split(":", 1)[1] for x in item["devices"][:2])
                more = "..." if len(item["devices"]) > 2 else ""
                labels.append(f"domain {item['id']} ({devs}{more})")
            for pol, v in zip(policies, vals, strict=True):
                counts[pol].append(v)
    return labels, counts


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Draw the figure (see the module docstring); returns the path written."""
    plt = _pyplot()
    out = check_plot_path(path)
    sweep = report.get("iotlb_sweep") or []
    pf, wl = report["platform"], report["workload"]
    fig, (ax1, ax2, ax3) = plt.subplots(
        1, 3, figsize=(13.5, 4.0), gridspec_kw={"width_ratios": [1, 1, 1.45]}
    )
    xs = [s["iotlb_entries"] for s in sweep]
    ax1.plot(xs, [100 * (s["hit_rate"] or 0.0) for s in sweep], marker="o", color="C0")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(xs, [str(x) for x in xs], fontsize=8)
    ax1.minorticks_off()
    ax1.set_xlabel("IOTLB entries per unit")
    ax1.set_ylabel("IOTLB hit rate (%)")
    ax1.set_ylim(0, 100)
    ax1.set_title("(a) IOTLB hit rate")
    ax1.grid(True, alpha=0.3)

    ax2.plot(xs, [s["ns_per_translation"] for s in sweep], marker="s", color="C3")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(xs, [str(x) for x in xs], fontsize=8)
    ax2.minorticks_off()
    ax2.set_xlabel("IOTLB entries per unit")
    ax2.set_ylabel("ns per translation (batch)")
    ax2.set_ylim(0, 1.2 * max([1.0, *(s["ns_per_translation"] or 0.0 for s in sweep)]))
    ax2.set_title("(b) translation time")
    ax2.grid(True, alpha=0.3)

    placement = report["placement"]
    policies = [p for p in ("seed", "pre-seed") if p in placement] or list(placement)
    placement = {p: placement[p] for p in policies}
    labels, counts = _misplaced_rows(placement)
    labels.append("all table pages")
    for pol in policies:
        counts[pol].append(int(placement[pol]["misplaced"]))
    ys = np.arange(len(labels))
    h = 0.8 / len(policies)
    colors = {"seed": "C2", "pre-seed": "C1"}
    for j, pol in enumerate(policies):
        bars = ax3.barh(
            ys + (j - (len(policies) - 1) / 2) * h,
            counts[pol],
            h,
            label=pol,
            color=colors.get(pol, f"C{j}"),
        )
        ax3.bar_label(bars, padding=2, fontsize=8)
    ax3.set_yticks(ys, labels, fontsize=8)
    ax3.invert_yaxis()
    ax3.set_xlabel("table pages off their devices' node")
    top = max([1, *(v for pol in policies for v in counts[pol])])
    ax3.set_xlim(0, top * 1.25)
    ax3.xaxis.get_major_locator().set_params(integer=True)
    ax3.set_title("(c) misplaced table pages")
    ax3.legend(title="policy", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax3.grid(True, axis="x", alpha=0.3)

    topo = pf["topology"]
    fig.suptitle(f"vtdwalk simulate: {pf['dmar']}", fontweight="bold")
    fig.text(
        0.01,
        0.01,
        f"workload: {wl['translations']:,} DMA requests per run, random seed "
        f"{pf.get('random_seed', '-')}; table {pf['dmar']}, topology {topo}; "
        f"(a), (b): one run per IOTLB size; (c): IOTLB {wl['iotlb_entries']} entries.",
        fontsize=8,
        color="0.3",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
