"""The report of a run: units, devices, workload figures, faults by reason, placement."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import numpy as np

from vtdwalk._core import fault_name, fault_names
from vtdwalk.errors import DmaFault, VtdError
from vtdwalk.platform import Platform
from vtdwalk.sim.scenario import Scenario, SimConfig, _assignable, build_platform, plan_scenario
from vtdwalk.sim.workload import drive, make_workload

#: Fault reason code -> name, the native spec layer's table (vtd-hardware.md §1.13); kept for
#: callers of the report module. The report itself names a reason with ``fault_name``.
FAULT_NAMES: dict[int, str] = fault_names()


def _unit_stats(p: Platform) -> list[dict[str, Any]]:
    out = []
    for u in p.iommus:
        s = u.remapper.stats()
        look = s["hits"] + s["misses"]
        out.append(
            {
                "address": u.address,
                "node": u.node,
                "include_all": u.include_all,
                "levels": u.levels,
                "domains": len(u.dids.in_use()),
                "iotlb_hits": s["hits"],
                "iotlb_misses": s["misses"],
                "iotlb_evictions": s["evictions"],
                "walks": s["walks"],
                "iotlb_hit_rate": (s["hits"] / look) if look else None,
            }
        )
    return out


def _placement(p: Platform) -> dict[str, Any]:
    rep = p.numa_report()
    return rep if isinstance(rep, dict) else {"report": rep}


def run(cfg: SimConfig, progress: bool = False, out: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the whole simulation and return the report (JSON-ready)."""
    rng = np.random.default_rng(cfg.seed)
    t_build = time.perf_counter()
    p = build_platform(cfg)
    sc = plan_scenario(p, cfg, rng)
    build_s = time.perf_counter() - t_build
    w = make_workload(sc, rng)
    hpa, fault, seconds = drive(p, w, cfg.batch, progress, out)

    ok = fault == 0
    wrong = int(np.count_nonzero(ok & (hpa != w.expect)))
    unexpected = int(np.count_nonzero(fault != w.expect_fault))
    reasons, counts = np.unique(fault[~ok], return_counts=True)
    faults = {
        f"{int(r):#04x} {fault_name(int(r)) or 'UNKNOWN'}": int(c)
        for r, c in zip(reasons, counts, strict=True)
    }
    # One fault the platform raises in a single call: a device of no domain (0x2).
    stray = _stray_device(p, sc)
    units = _unit_stats(p)
    hits = sum(u["iotlb_hits"] for u in units)
    looks = hits + sum(u["iotlb_misses"] for u in units)

    report: dict[str, Any] = {
        "platform": {
            "dmar": cfg.dmar_name,
            "topology": str(cfg.topology)
            if cfg.topology
            else "embedded"
            if cfg.dmar is None
            else "synthesised",
            "policy": cfg.policy,
            "nodes": [{"base": b, "size": s} for b, s in p.mem.nodes],
            "findings": [str(f) for f in p.report],
        },
        "units": units,
        "devices": [{"bdf": b, "domain": d, "node": n} for b, d, n in sc.devices],
        "refused": [{"bdf": b, "reason": r} for b, r in sc.refused],
        "domains": [
            {"id": d.id, "node": d.node, "devices": [str(x) for x in d.devices]} for d in sc.domains
        ],
        "workload": {
            "translations": len(w.iovas),
            "seconds": seconds,
            "translations_per_second": len(w.iovas) / seconds if seconds else None,
            "ns_per_translation": 1e9 * seconds / len(w.iovas) if len(w.iovas) else None,
            "mapped_pages_4k_equivalent": sc.mapped_pages,
            "map_seconds": sc.map_seconds,
            "build_seconds": build_s,
            "iotlb_entries": cfg.iotlb_entries,
            "iotlb_hit_rate": hits / looks if looks else None,
            "wrong_translations": wrong,
            "unexpected_faults": unexpected,
            "stray_device_fault": stray,
        },
        "faults": faults,
        "placement": {cfg.policy: _placement(p)},
    }
    if cfg.compare_policies:
        other = "pre-seed" if cfg.policy == "seed" else "seed"
        p2 = build_platform(cfg, policy=other)
        plan_scenario(p2, cfg, np.random.default_rng(cfg.seed))
        report["placement"][other] = _placement(p2)
    return report


def _stray_device(p: Platform, sc: Scenario) -> str | None:
    assigned = {b for b, _, _ in sc.devices}
    for d in _assignable(p):
        if str(d.bdf) not in assigned:
            try:
                p.translate(d.bdf, 0x1000)
            except DmaFault as f:
                return f"{d.bdf}: {f.reason:#04x} {f.name}"
            except VtdError as e:
                return f"{d.bdf}: {e}"
            return f"{d.bdf}: translated without a domain"
    return None


def render_text(r: dict[str, Any]) -> str:
    """The report for people."""
    lines: list[str] = []
    pf = r["platform"]
    lines.append(
        f"vtdwalk simulate: {pf['dmar']} (topology {pf['topology']}, policy {pf['policy']})"
    )
    lines.append(
        "memory: "
        + ", ".join(
            f"node {i} [{n['base']:#x}, +{n['size'] >> 30} GiB)" for i, n in enumerate(pf["nodes"])
        )
    )
    for f in pf["findings"]:
        lines.append(f"  firmware: {f}")
    lines.append("")
    lines.append("remapping units:")
    for u in r["units"]:
        rate = "-" if u["iotlb_hit_rate"] is None else f"{100 * u['iotlb_hit_rate']:.1f}%"
        node = "none" if u["node"] is None else u["node"]
        kind = " include-all" if u["include_all"] else ""
        lines.append(
            f"  {u['address']:#010x}{kind:<12} node {node!s:<4} {u['levels']}-level  "
            f"domains {u['domains']:<3} IOTLB hits {u['iotlb_hits']:>9,} misses "
            f"{u['iotlb_misses']:>9,} evictions {u['iotlb_evictions']:>9,} hit rate {rate}"
        )
    lines.append("")
    lines.append("devices:")
    for d in r["devices"]:
        lines.append(
            f"  {d['bdf']}  domain {d['domain']}  node {d['node'] if d['node'] >= 0 else 'none'}"
        )
    for d in r["refused"]:
        lines.append(f"  {d['bdf']}  refused: {d['reason']}")
    wl = r["workload"]
    lines.append("")
    lines.append("workload:")
    tps = wl["translations_per_second"]
    lines.append(
        f"  {wl['translations']:,} translations in {wl['seconds']:.3f} s"
        + (f" = {tps / 1e6:.2f} M/s ({wl['ns_per_translation']:.1f} ns each)" if tps else "")
    )
    hr = wl["iotlb_hit_rate"]
    lines.append(
        f"  IOTLB ({wl['iotlb_entries']} entries per unit) hit rate "
        + ("-" if hr is None else f"{100 * hr:.1f}%")
    )
    lines.append(
        f"  wrong translations {wl['wrong_translations']}, unexpected faults "
        f"{wl['unexpected_faults']}"
    )
    if wl["stray_device_fault"]:
        lines.append(f"  a device in no domain: {wl['stray_device_fault']}")
    lines.append("faults by reason:")
    for k, v in r["faults"].items():
        lines.append(f"  {k:<24} {v}")
    lines.append("")
    lines.extend(render_placement(r["placement"]))
    return "\n".join(lines)


def _pages_str(pages: dict[Any, int]) -> str:
    return " ".join(f"n{k}:{v}" for k, v in sorted(pages.items(), key=lambda kv: int(kv[0]))) or "-"


def render_placement(placement: dict[str, dict[str, Any]]) -> list[str]:
    """Table pages per node, one column per policy, misplaced pages in brackets."""
    policies = list(placement)
    rows: list[tuple[str, list[str]]] = []
    first = placement[policies[0]]
    for i, u in enumerate(first.get("units", [])):
        label = f"unit {u['address']:#x} (node {u['node'] if u['node'] is not None else '-'})"
        cells = []
        for pol in policies:
            uu = placement[pol]["units"][i]
            bad = f" [{uu['misplaced']} off-node]" if uu["misplaced"] else ""
            cells.append(_pages_str(uu["pages"]) + bad)
        rows.append((label, cells))
    for i, d in enumerate(first.get("domains", [])):
        devs = ", ".join(x.split(":", 1)[1] for x in d["devices"])
        label = f"domain {d['id']} ({devs})"
        cells = []
        for pol in policies:
            dd = placement[pol]["domains"][i]
            bad = f" [{dd['misplaced']} off-node]" if dd["misplaced"] else ""
            cells.append(_pages_str(dd["pages"]) + bad)
        rows.append((label, cells))
    rows.append(
        ("pages off their devices' node", [str(placement[p]["misplaced"]) for p in policies])
    )
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(pol), *(len(r[1][j]) for r in rows)) for j, pol in enumerate(policies)]
    out = ["table pages per node (n<node>:<pages>):"]
    out.append(
        "  "
        + " " * w0
        + "  "
        + "  ".join(p.ljust(w) for p, w in zip(policies, widths, strict=True))
    )
    for label, cells in rows:
        out.append(
            "  "
            + label.ljust(w0)
            + "  "
            + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        )
    return out
