"""``vtdwalk dump``: one domain's context entries and mappings."""

from __future__ import annotations

from typing import Any

from vtdwalk.platform import Platform
from vtdwalk.sim.scenario import GIB, MIB2, PAGE
from vtdwalk.topology import Bdf


def leaf_ranges(domain: Any) -> list[dict[str, Any]]:
    """A domain's mappings as ranges of equal page size, permissions and contiguity."""
    pt = domain.page_table
    if pt is None:
        return []
    out: list[dict[str, Any]] = []
    for iova, _maddr, size, _read, _write in pt.mappings():
        at, end = iova, iova + size
        while at < end:
            hit = pt.lookup(at)
            if hit is None:  # cannot happen for a merged mapping; stop rather than loop
                break
            host, psize, r, w = hit.hpa, hit.page_size, hit.read, hit.write
            host -= at & (psize - 1)
            step = psize - (at & (psize - 1))
            last = out[-1] if out else None
            if (
                last is not None
                and last["page_size"] == psize
                and last["read"] == r
                and last["write"] == w
                and last["iova"] + last["size"] == at
                and last["maddr"] + last["size"] == host + (at & (psize - 1))
            ):
                last["size"] += step
            else:
                out.append(
                    {
                        "iova": at,
                        "maddr": host + (at & (psize - 1)),
                        "size": step,
                        "page_size": psize,
                        "read": r,
                        "write": w,
                    }
                )
            at += step
    return out


def domain_contexts(p: Platform, domain: Any) -> list[dict[str, Any]]:
    """The context entries, on every unit, that carry this domain's DID."""
    out = []
    for unit in domain.units:
        did = domain.did(unit)
        for bus, devfn, ce in p.assignments.tables(unit).entries():
            if ce.did == did:
                out.append(
                    {
                        "unit": unit.address,
                        "bdf": str(Bdf.from_devfn(unit.segment, bus, devfn)),
                        "did": ce.did,
                        "aw": ce.aw,
                        "tt": ce.tt,
                        "slptptr": ce.slptptr,
                    }
                )
    return out


def dump(p: Platform, domain: Any) -> dict[str, Any]:
    """One domain as JSON: its node, levels, devices, context entries and mapped ranges."""
    return {
        "domain": domain.id,
        "node": domain.node,
        "levels": domain.levels,
        "passthrough": domain.passthrough,
        "devices": [str(b) for b in sorted(domain.devices)],
        "contexts": domain_contexts(p, domain),
        "ranges": leaf_ranges(domain),
    }


def render_dump(d: dict[str, Any], limit: int | None = 40) -> str:
    """:func:`dump`'s output for people; at most ``limit`` mapping lines (None: all)."""
    node = "-" if d["node"] is None else d["node"]
    lines = [
        f"domain {d['domain']}: node {node}, {d['levels']}-level"
        + (", pass-through" if d["passthrough"] else ""),
        "devices: " + (", ".join(d["devices"]) or "none"),
        "context entries:",
    ]
    tt = {0: "multi-level", 1: "multi-level+dev-IOTLB", 2: "pass-through"}
    for c in d["contexts"]:
        lines.append(
            f"  unit {c['unit']:#x}  {c['bdf']}  DID {c['did']}  AW {c['aw']}  "
            f"{tt.get(c['tt'], c['tt'])}  table {c['slptptr']:#x}"
        )
    lines.append("mappings (IOVA range -> host, page size, permissions):")
    sizes = {4096: "4K", MIB2: "2M", GIB: "1G"}
    rows: list[str] = []
    scattered: list[dict[str, Any]] = []

    def perm(r: dict[str, Any]) -> str:
        return ("r" if r["read"] else "-") + ("w" if r["write"] else "-")

    def flush() -> None:
        if len(scattered) == 1:
            rows.append(one(scattered[0]))
        elif scattered:
            lo, hi = scattered[0], scattered[-1]
            rows.append(
                f"  [{lo['iova']:#014x}, {hi['iova'] + hi['size']:#014x})    "
                f"{len(scattered)} scattered single 4K pages  {perm(lo)}"
            )
        scattered.clear()

    def one(r: dict[str, Any]) -> str:
        return (
            f"  [{r['iova']:#014x}, {r['iova'] + r['size']:#014x}) -> {r['maddr']:#014x}  "
            f"{sizes.get(r['page_size'], str(r['page_size'])):>2} x "
            f"{r['size'] // r['page_size']:<7} {perm(r)}"
        )

    for r in d["ranges"]:
        single = r["page_size"] == PAGE and r["size"] == PAGE
        if single and limit is not None and (not scattered or perm(scattered[0]) == perm(r)):
            scattered.append(r)
            continue
        flush()
        if single and limit is not None:
            scattered.append(r)
        else:
            rows.append(one(r))
    flush()
    lines.extend(rows if limit is None else rows[:limit])
    if limit is not None and len(rows) > limit:
        lines.append(f"  ... {len(rows) - limit} more lines (--all lists every range)")
    return "\n".join(lines)
