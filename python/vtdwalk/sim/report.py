"""The report of a run: units, devices, workload figures, faults by reason, placement; as a
JSON-ready dict (:func:`run`) and as text tables for people (:func:`render_text`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from vtdwalk._core import fault_names
from vtdwalk.errors import DmaFault, VtdError
from vtdwalk.platform import Finding, Platform
from vtdwalk.sim.progress import Phases
from vtdwalk.sim.scenario import (
    Scenario,
    SimConfig,
    _assignable,
    build_platform,
    device_count,
    plan_scenario,
)
from vtdwalk.sim.workload import InterruptResult, chunks, drive, interrupts

__all__ = ["FAULT_NAMES", "TOPOLOGY_CODES", "finding_dict", "render_table", "render_text", "run"]

#: Fault reason code -> name, the native spec layer's table (vtd-hardware.md §1.13); kept for
#: callers of the report module. The report itself names a reason with ``fault_name``.
FAULT_NAMES: dict[int, str] = fault_names()

#: Finding codes about the PCI population: with a user's ``--topology`` file they are the
#: file's problems (source "topology"), otherwise the firmware's.
TOPOLOGY_CODES = frozenset(
    {"scope-device-missing", "rmrr-devices-missing", "device-no-unit", "ioapic-no-unit"}
    | {"hpet-no-unit"}
)

#: How text output spells "no node".
NO_NODE = "-"


def finding_dict(f: Finding, user_topology: bool = False) -> dict[str, Any]:
    """A finding as JSON: ``severity, code, message, offset`` (as ``platform --json``) and
    ``source`` ("firmware", or "topology" for a user's topology file's problems)."""
    src = "topology" if user_topology and f.code in TOPOLOGY_CODES else "firmware"
    return {
        "severity": f.severity,
        "code": f.code,
        "message": f.message,
        "offset": f.offset,
        "source": src,
    }


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
                "queued_invalidation": u.queue is not None,
                "interrupt_remapping": u.irt is not None,
                "queue_descriptors": dict(sorted(u.port.descriptors.items())),
            }
        )
    return out


def _hit_rate(p: Platform) -> float | None:
    units = _unit_stats(p)
    hits = sum(u["iotlb_hits"] for u in units)
    looks = hits + sum(u["iotlb_misses"] for u in units)
    return hits / looks if looks else None


def _placement(p: Platform) -> dict[str, Any]:
    rep = p.numa_report()
    return rep if isinstance(rep, dict) else {"report": rep}


def run(cfg: SimConfig, phases: Phases | None = None) -> dict[str, Any]:
    """Run the whole simulation and return the report (JSON-ready); ``phases`` shows
    progress."""
    import time

    ph = phases or Phases(False)
    rng = np.random.default_rng(cfg.seed)
    t_build = time.perf_counter()
    with ph.phase("build platform", 1) as adv:
        p = build_platform(cfg)
        adv(1)
    with ph.phase("map device buffers", max(1, device_count(p))) as adv:
        sc = plan_scenario(p, cfg, rng, adv)
    build_s = time.perf_counter() - t_build
    with ph.phase("translate", cfg.accesses) as adv:
        res = drive(p, chunks(sc, rng, cfg.accesses, cfg.batch), adv)
    with ph.phase("interrupts", max(1, len(sc.msis))) as adv:
        irq = interrupts(p, sc)
        adv(max(1, len(sc.msis)))
    stray = _stray_device(p, sc)
    units = _unit_stats(p)
    hr = _hit_rate(p)
    n = res.translations
    user_topo = cfg.topology is not None
    reasons = [
        {"reason": r, "name": FAULT_NAMES.get(r, "UNKNOWN"), "count": c}
        for r, c in sorted(res.fault_counts.items())
    ]
    report: dict[str, Any] = {
        "platform": {
            "dmar": cfg.dmar_name,
            "topology": str(cfg.topology)
            if cfg.topology
            else "embedded"
            if cfg.dmar is None
            else "synthesised",
            "policy": cfg.policy,
            "random_seed": cfg.seed,
            "nodes": [{"base": b, "size": s} for b, s in p.mem.nodes],
            "findings": [finding_dict(f, user_topo) for f in p.report],
            # Until the next release: the findings as the strings they used to be.
            "findings_text": [str(f) for f in p.report],
        },
        "units": units,
        "devices": [{"bdf": b, "domain": d, "node": _nn(nd)} for b, d, nd in sc.devices],
        "refused": [{"bdf": b, "reason": r} for b, r in sc.refused],
        "domains": [
            {"id": d.id, "node": d.node, "devices": [str(x) for x in d.devices]} for d in sc.domains
        ],
        "workload": {
            "translations": n,
            "seconds": res.seconds,
            "translations_per_second": n / res.seconds if res.seconds else None,
            "ns_per_translation": 1e9 * res.seconds / n if n else None,
            "mapped_pages_4k_equivalent": sc.mapped_pages,
            "map_seconds": sc.map_seconds,
            "build_seconds": build_s,
            "iotlb_entries": cfg.iotlb_entries,
            "iotlb_hit_rate": hr,
            "wrong_translations": res.wrong,
            "unexpected_faults": res.unexpected,
            "stray_device": stray,
            # Until the next release: the same as one string.
            "stray_device_fault": None
            if stray is None
            else f"{stray['bdf']}: {stray['reason']:#04x} {stray['name']}"
            if stray["reason"] is not None
            else f"{stray['bdf']}: {stray['message']}",
        },
        "interrupts": _interrupts(irq),
        "fault_reasons": reasons,
        # Until the next release: {"0xNN NAME": count}.
        "faults": {f"{r['reason']:#04x} {r['name']}": r["count"] for r in reasons},
        "placement": {cfg.policy: _placement(p)},
    }
    if cfg.compare_policies:
        other = "pre-seed" if cfg.policy == "seed" else "seed"
        p2 = build_platform(cfg, policy=other)
        with ph.phase(f"placement under {other}", max(1, device_count(p2))) as adv:
            plan_scenario(p2, cfg, np.random.default_rng(cfg.seed), adv)
        report["placement"][other] = _placement(p2)
        p2.free()
    p.free()
    return report


def _interrupts(r: InterruptResult) -> dict[str, Any]:
    return {
        "sent": r.sent,
        "delivered": r.delivered,
        "wrong_vector": r.wrong_vector,
        "blocked": [
            {"reason": k, "name": r.blocked_names[k], "count": v}
            for k, v in sorted(r.blocked.items())
        ],
        "spoof": r.spoof,
    }


def _nn(node: int) -> int | None:
    return None if node < 0 else node


def _stray_device(p: Platform, sc: Scenario) -> dict[str, Any] | None:
    """A device of no domain doing DMA: ``{bdf, reason, name, message}``."""
    assigned = {b for b, _, _ in sc.devices}
    for d in _assignable(p):
        if str(d.bdf) not in assigned:
            try:
                p.translate(d.bdf, 0x1000)
            except DmaFault as f:
                return {"bdf": str(d.bdf), "reason": f.reason, "name": f.name, "message": str(f)}
            except VtdError as e:
                return {"bdf": str(d.bdf), "reason": None, "name": None, "message": str(e)}
            return {
                "bdf": str(d.bdf),
                "reason": None,
                "name": None,
                "message": "translated without a domain",
            }
    return None


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    right: Sequence[int] = (),
    width: int = 100,
) -> list[str]:
    """Rows as aligned text within ``width`` columns (long cells wrap), no trailing spaces."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    for i, h in enumerate(headers):
        t.add_column(h, justify="right" if i in right else "left", overflow="fold")
    for r in rows:
        t.add_row(*(str(c) for c in r))
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, highlight=False, emoji=False).print(t)
    return ["  " + line.rstrip() if line.strip() else "" for line in buf.getvalue().splitlines()]


def _node(n: int | None) -> str:
    return NO_NODE if n is None else str(n)


def render_text(r: dict[str, Any], width: int = 100) -> str:
    """The report for people: tables within ``width`` columns."""
    lines: list[str] = []
    pf = r["platform"]
    wl = r["workload"]
    lines.append(
        f"vtdwalk simulate: {pf['dmar']} (topology {pf['topology']}, policy {pf['policy']})"
    )
    lines.append(
        f"workload: {wl['translations']:,} DMA requests, random seed {pf.get('random_seed', '-')},"
        f" IOTLB {wl['iotlb_entries']} entries per unit"
    )
    lines.append(
        "memory: "
        + ", ".join(
            f"node {i} [{n['base']:#x}, +{n['size'] >> 30} GiB)" for i, n in enumerate(pf["nodes"])
        )
    )
    if pf["findings"]:
        lines.append("")
        lines.append("findings (firmware, or topology: the --topology file):")
        lines.extend(
            render_table(
                ["source", "severity", "code", "message"],
                [[f["source"], f["severity"], f["code"], f["message"]] for f in pf["findings"]],
                width=width - 2,
            )
        )
    lines.append("")
    lines.append("remapping units:")
    rows = []
    for u in r["units"]:
        rate = "-" if u["iotlb_hit_rate"] is None else f"{100 * u['iotlb_hit_rate']:.1f}%"
        rows.append(
            [
                f"{u['address']:#x}",
                "include-all" if u["include_all"] else "",
                _node(u["node"]),
                u["levels"],
                u["domains"],
                f"{u['iotlb_hits']:,}",
                f"{u['iotlb_misses']:,}",
                f"{u['iotlb_evictions']:,}",
                rate,
            ]
        )
    lines.extend(
        render_table(
            [
                *("unit", "scope", "node", "levels", "domains", "IOTLB hits", "misses"),
                "evictions",
                "hit rate",
            ],
            rows,
            right=(3, 4, 5, 6, 7, 8),
            width=width - 2,
        )
    )
    lines.append("")
    lines.append("queued invalidation (descriptors by type):")
    kinds = sorted({k for u in r["units"] for k in u.get("queue_descriptors", {})})
    qrows = []
    for u in r["units"]:
        qd = u.get("queue_descriptors", {})
        if not u.get("queued_invalidation"):
            qrows.append([f"{u['address']:#x}", "register-based", *("" for _ in kinds)])
        else:
            qrows.append([f"{u['address']:#x}", "queue", *(f"{qd.get(k, 0):,}" for k in kinds)])
    lines.extend(
        render_table(
            ["unit", "flushes", *kinds],
            qrows,
            right=tuple(range(2, 2 + len(kinds))),
            width=width - 2,
        )
    )
    lines.append("")
    lines.append("devices:")
    rows = [[d["bdf"], d["domain"], _node(d["node"]), ""] for d in r["devices"]]
    rows += [[d["bdf"], "-", "-", f"refused: {d['reason']}"] for d in r["refused"]]
    lines.extend(render_table(["device", "domain", "node", ""], rows, width=width - 2))
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
    stray = wl.get("stray_device")
    if stray:
        what = (
            f"fault {stray['reason']:#04x} {stray['name']}"
            if stray["reason"] is not None
            else stray["message"]
        )
        lines.append(f"  a device in no domain ({stray['bdf']}): {what}")
    irq = r.get("interrupts")
    if irq is not None:
        lines.append("")
        lines.append("interrupts (MSIs through interrupt remapping):")
        lines.append(
            f"  {irq['sent']:,} sent, {irq['delivered']:,} delivered"
            f" ({irq['wrong_vector']} with a wrong vector), "
            + (
                ", ".join(
                    f"{b['count']} blocked {b['reason']:#04x} {b['name']}" for b in irq["blocked"]
                )
                or "none blocked"
            )
        )
        sp = irq.get("spoof")
        if sp:
            what = (
                f"blocked {sp['reason']:#04x} {sp['name']}"
                if sp.get("reason") is not None
                else "delivered (not blocked!)"
            )
            lines.append(
                f"  {sp['sender']} sending {sp['owner']}'s handle (entry {sp['index']}): {what}"
            )
    lines.append("")
    lines.append("faults by reason:")
    lines.extend(
        render_table(
            ["reason", "name", "count"],
            [[f"{x['reason']:#04x}", x["name"], f"{x['count']:,}"] for x in r["fault_reasons"]],
            right=(2,),
            width=width - 2,
        )
    )
    lines.append("")
    lines.extend(render_placement(r["placement"], width))
    return "\n".join(lines)


def _pages_str(pages: dict[Any, int]) -> str:
    return " ".join(f"n{k}:{v}" for k, v in sorted(pages.items(), key=lambda kv: int(kv[0]))) or "-"


def render_placement(placement: dict[str, dict[str, Any]], width: int = 100) -> list[str]:
    """Table pages per node, one column per policy, misplaced pages in brackets."""
    policies = list(placement)
    rows: list[list[str]] = []
    first = placement[policies[0]]
    for i, u in enumerate(first.get("units", [])):
        label = f"unit {u['address']:#x} (node {_node(u['node'])})"
        cells = []
        for pol in policies:
            uu = placement[pol]["units"][i]
            bad = f" [{uu['misplaced']} off-node]" if uu["misplaced"] else ""
            cells.append(_pages_str(uu["pages"]) + bad)
        rows.append([label, *cells])
        for key, what in (("queue", "invalidation queue"), ("ir_table", "IR table")):
            if any(placement[pol]["units"][i].get(key) for pol in policies):
                rows.append(
                    [
                        f"  {what}",
                        *(_pages_str(placement[pol]["units"][i].get(key, {})) for pol in policies),
                    ]
                )
    for i, d in enumerate(first.get("domains", [])):
        devs = ", ".join(x.split(":", 1)[1] for x in d["devices"])
        label = f"domain {d['id']} ({devs})"
        cells = []
        for pol in policies:
            dd = placement[pol]["domains"][i]
            bad = f" [{dd['misplaced']} off-node]" if dd["misplaced"] else ""
            cells.append(_pages_str(dd["pages"]) + bad)
        rows.append([label, *cells])
    rows.append(
        ["pages off their devices' node", *(str(placement[p]["misplaced"]) for p in policies)]
    )
    out = ["table pages per node (n<node>:<pages>):"]
    out.extend(render_table(["", *policies], rows, width=width - 2))
    return out
