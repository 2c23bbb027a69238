"""`vtdwalk simulate` and `vtdwalk dump`, run as a user runs them: subprocesses of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import vtdwalk
from vtdwalk import sim as simulate
from vtdwalk.topology import load_description

DATA = Path(vtdwalk.__file__).parent / "data"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "vtdwalk.cli", *args], capture_output=True, text=True, timeout=300
    )
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r


@pytest.fixture(scope="module")
def default_report() -> dict[str, Any]:
    out = cli("simulate", "--json", "--accesses", "60000", "--seed", "7").stdout
    rep: dict[str, Any] = json.loads(out)
    return rep


REPORT_KEYS = {"platform", "units", "devices", "refused", "domains", "workload", "faults"}
WORKLOAD_KEYS = {
    "translations",
    "seconds",
    "translations_per_second",
    "ns_per_translation",
    "iotlb_entries",
    "iotlb_hit_rate",
    "wrong_translations",
    "unexpected_faults",
    "stray_device_fault",
}


def test_default_report_shape(default_report: dict[str, Any]) -> None:
    r = default_report
    assert REPORT_KEYS | {"placement"} <= set(r)
    assert set(r["workload"]) >= WORKLOAD_KEYS
    assert set(r["placement"]) == {"seed", "pre-seed"}
    for u in r["units"]:
        assert {"address", "node", "iotlb_hits", "iotlb_misses", "iotlb_hit_rate"} <= set(u)
    assert r["platform"]["dmar"] == simulate.DEFAULT_DMAR


def test_default_run_translates_every_access_correctly(default_report: dict[str, Any]) -> None:
    wl = default_report["workload"]
    assert wl["translations"] >= 60000
    # Every access reached the host address the scenario mapped it to (computed when mapping,
    # not read back), and only the planted accesses faulted, with their architectural reasons.
    assert wl["wrong_translations"] == 0
    assert wl["unexpected_faults"] == 0
    assert default_report["faults"] == {"0x05 WRITE": 8, "0x06 READ": 8}
    # A device left out of every domain faults as context-not-present.
    assert "0x02 CONTEXT_ENTRY_P" in wl["stray_device_fault"]
    assert 0 < wl["iotlb_hit_rate"] < 1


def test_default_run_uses_both_sockets(default_report: dict[str, Any]) -> None:
    topo, numa = load_description(DATA / simulate.DEFAULT_TOPOLOGY)
    assert topo is not None and numa is not None
    nodes = {d["node"] for d in default_report["devices"]}
    assert {0, 1} <= nodes
    # The embedded description's devices are what got assigned.
    names = {str(d.bdf) for d in topo}
    assert {d["bdf"] for d in default_report["devices"]} <= names
    # Units follow their RHSA: 0xf3ffc000 is proximity domain 0, 0xfbffc000 domain 1.
    by_addr = {u["address"]: u["node"] for u in default_report["units"]}
    assert by_addr[0xF3FFC000] == 0
    assert by_addr[0xFBFFC000] == 1
    assert by_addr[0xF3FFD000] is None


def test_seed_places_every_table_page_on_its_node(default_report: dict[str, Any]) -> None:
    seed = default_report["placement"]["seed"]
    pre = default_report["placement"]["pre-seed"]
    assert seed["misplaced"] == 0
    assert pre["misplaced"] > 0
    # Under pre-seed the socket-1 unit's root table sits on node 0.
    unit1 = next(u for u in pre["units"] if u["address"] == 0xFBFFC000)
    assert unit1["misplaced"] >= 1


def test_same_seed_same_report() -> None:
    timing = {"seconds", "translations_per_second", "ns_per_translation"}
    timing |= {"map_seconds", "build_seconds"}

    def strip(r: dict[str, Any]) -> dict[str, Any]:
        wl = {k: v for k, v in r["workload"].items() if k not in timing}
        return {**r, "workload": wl}

    a = json.loads(cli("simulate", "--json", "--accesses", "20000", "--seed", "3").stdout)
    b = json.loads(cli("simulate", "--json", "--accesses", "20000", "--seed", "3").stdout)
    c = json.loads(cli("simulate", "--json", "--accesses", "20000", "--seed", "4").stdout)
    assert strip(a) == strip(b)
    assert strip(a)["units"] != strip(c)["units"]


def test_text_report_and_progress() -> None:
    r = cli("simulate", "--accesses", "20000", "--progress")
    for heading in ("remapping units:", "devices:", "workload:", "faults by reason:"):
        assert heading in r.stdout
    assert "seed" in r.stdout and "pre-seed" in r.stdout
    assert "translate" in r.stderr and "/s" in r.stderr  # each phase with its rate


def test_iotlb_size_matters() -> None:
    small = json.loads(
        cli("simulate", "--json", "--accesses", "30000", "--iotlb-entries", "16").stdout
    )
    big = json.loads(
        cli("simulate", "--json", "--accesses", "30000", "--iotlb-entries", "8192").stdout
    )
    assert small["workload"]["iotlb_hit_rate"] < big["workload"]["iotlb_hit_rate"]
    off = json.loads(
        cli("simulate", "--json", "--accesses", "30000", "--iotlb-entries", "0").stdout
    )
    assert off["workload"]["iotlb_hit_rate"] in (None, 0.0)
    assert off["workload"]["wrong_translations"] == 0


@pytest.mark.parametrize(
    "table",
    [
        "google-ecclesia-skx-2s-testdata",
        "dell-poweredge-r820",
        "hp-proliant-dl360-g7",
        "qemu-q35-intel-iommu-v2",
        "lenovo-thinkpad-t480-20l5000uus",
        "apple-macpro7-1-dmar1",
    ],
)
def test_simulate_corpus_tables(corpus_dir: Path, table: str) -> None:
    path = corpus_dir / f"{table}.dat"
    run = cli("simulate", "--dmar", str(path), "--json", "--accesses", "20000", check=False)
    r = json.loads(run.stdout)
    # Errors found in the input (apple-macpro7-1-dmar1: a second include-all unit on segment 0,
    # fatal to Xen) give exit 1; the rest is still simulated and the findings say why.
    bad = [f for f in r["platform"]["findings"] if f["severity"] in ("fatal", "error")]
    assert run.returncode == (1 if bad else 0)
    assert (table == "apple-macpro7-1-dmar1") == bool(bad)
    assert r["platform"]["dmar"] == path.name
    assert r["platform"]["topology"] == "synthesised"
    assert r["devices"], "some device was assigned"
    assert r["workload"]["wrong_translations"] == 0
    assert r["workload"]["unexpected_faults"] == 0
    assert r["placement"]["seed"]["misplaced"] == 0


def test_simulate_refuses_a_table_without_units(corpus_dir: Path) -> None:
    path = corpus_dir / "hack-vtd-fix-oc-modified.dat"
    r = cli("simulate", "--dmar", str(path), check=False)
    assert r.returncode == 1
    assert "no usable remapping unit" in r.stderr
    assert "Traceback" not in r.stderr


def test_simulate_bad_inputs(tmp_path: Path) -> None:
    r = cli("simulate", "--dmar", str(tmp_path / "missing.dat"), check=False)
    assert r.returncode == 1 and "cannot read" in r.stderr
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"DMAR" + bytes(60))
    r = cli("simulate", "--dmar", str(junk), check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = cli("simulate", "--policy", "nope", check=False)
    assert r.returncode == 2
    r = cli("simulate", "--iotlb-entries", "-5", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr  # a usage error
    last = r.stderr.splitlines()[-1]  # argparse's error line names the one option at fault
    assert "argument --iotlb-entries" in last and "--accesses" not in last


def test_dump_domain_json() -> None:
    out = json.loads(cli("dump", "--domain", "6", "--json").stdout)
    assert {"domain", "node", "levels", "devices", "contexts", "ranges"} <= set(out)
    assert out["domain"] == 6
    sizes = {r["page_size"] for r in out["ranges"]}
    assert sizes == {4096, 2 << 20, 1 << 30}
    # Ranges are disjoint, sorted, and each a whole number of its pages.
    prev = 0
    for r in out["ranges"]:
        assert r["iova"] >= prev and r["size"] % r["page_size"] == 0
        assert r["iova"] % r["page_size"] == 0 and r["maddr"] % r["page_size"] == 0
        prev = r["iova"] + r["size"]
    # The USB controllers share the X10DAi's RMRR: it is identity-mapped read/write.
    rmrr = [r for r in out["ranges"] if r["iova"] == 0x7B461000]
    assert rmrr and rmrr[0]["maddr"] == 0x7B461000 and rmrr[0]["size"] == 0x10000
    assert {c["bdf"] for c in out["contexts"]} == set(out["devices"])


def test_dump_device_behind_a_pcie_to_pci_bridge() -> None:
    out = json.loads(cli("dump", "--device", "04:01.0", "--json").stdout)
    bdfs = {c["bdf"] for c in out["contexts"]}
    # Xen's rules: the device, its PCIe-to-PCI bridge (03:00.0) and secbus:00.0 (04:00.0);
    # and the phantom functions (stride 2) of 05:00.0, its domain mate.
    assert {"0000:04:01.0", "0000:03:00.0", "0000:04:00.0"} <= bdfs
    assert {"0000:05:00.0", "0000:05:00.2", "0000:05:00.4", "0000:05:00.6"} <= bdfs
    assert len({c["did"] for c in out["contexts"]}) == 1


def test_dump_text_and_errors() -> None:
    r = cli("dump", "--domain", "3")
    assert "context entries:" in r.stdout and "1G x 1" in r.stdout
    assert "scattered single 4K pages" in r.stdout
    r = cli("dump", "--domain", "99", check=False)
    assert r.returncode == 1 and "no domain 99" in r.stderr
    r = cli("dump", "--device", "00:1f.2", check=False)
    assert r.returncode == 1 and "in no domain" in r.stderr
    r = cli("dump", check=False)
    assert r.returncode == 2


def test_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "sim.png"
    r = cli("simulate", "--accesses", "20000", "--plot", str(png))
    assert "plot written" in r.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


DOCUMENTED_KEYS = {
    "dmar": {
        "signature",
        "length",
        "revision",
        "checksum",
        "oem_id",
        "oem_table_id",
        "oem_revision",
        "creator_id",
        "creator_revision",
        "host_address_width",
        "flags",
        "structures",
        "problems",
    },
    "platform": {
        "policy",
        "synthesised_topology",
        "numa",
        "pci_functions",
        "units",
        "rmrrs",
        "atsrs",
        "findings",
    },
    "simulate": REPORT_KEYS | {"placement"},
    "dump": {"domain", "node", "levels", "passthrough", "devices", "contexts", "ranges"},
}


@pytest.mark.parametrize("command", sorted(DOCUMENTED_KEYS))
def test_every_subcommand_json_has_the_documented_keys(command: str) -> None:
    table = str(DATA / simulate.DEFAULT_DMAR)
    args = {
        "dmar": ["dmar", table],
        "platform": ["platform", table],
        "simulate": ["simulate", "--accesses", "5000"],
        "dump": ["dump", "--domain", "2"],
    }[command]
    out = json.loads(cli(*args, "--json").stdout)
    assert DOCUMENTED_KEYS[command] <= set(out)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for key in DOCUMENTED_KEYS[command]:
        assert key in readme, f"{command} --json key {key!r} is not documented in the README"


def test_default_run_flushes_through_the_queue(default_report: dict[str, Any]) -> None:
    for u in default_report["units"]:
        assert u["queued_invalidation"] and u["interrupt_remapping"]
        qd = u["queue_descriptors"]
        # Bring-up queues one global IEC, context and IOTLB invalidation on every unit.
        assert min(qd["iec"], qd["context_cache"], qd["iotlb"]) >= 1
        # Every operation is followed by its wait descriptor (queue_invalidate_wait).
        assert qd["wait"] == sum(v for k, v in qd.items() if k != "wait")
    # The units with domains flushed their mappings through the queue.
    busy = [u for u in default_report["units"] if u["domains"]]
    assert busy and all(u["queue_descriptors"]["iotlb"] > 1 for u in busy)
    # ATS devices (the NVMe drives, the NIC, the GPU) got device-TLB invalidations.
    assert sum(u["queue_descriptors"].get("device_tlb", 0) for u in busy) > 0


def test_default_run_remaps_interrupts_and_blocks_a_borrowed_handle(
    default_report: dict[str, Any],
) -> None:
    irq = default_report["interrupts"]
    n = len(default_report["devices"])
    # Four MSIs from every assigned device, each delivered with its vector, plus one device
    # sending another's message: the entry's source-id check refuses it (0x26).
    assert irq["sent"] == 4 * n + 1
    assert irq["delivered"] == 4 * n and irq["wrong_vector"] == 0
    assert irq["blocked"] == [{"reason": 0x26, "name": vtdwalk.fault_name(0x26), "count": 1}]
    sp = irq["spoof"]
    assert sp["reason"] == 0x26 and sp["sender"] != sp["owner"]


def test_queue_and_irt_placement_under_both_policies(default_report: dict[str, Any]) -> None:
    # Both policies allocate the queue (4 pages) and the table (256 pages) after parsing, on
    # the RHSA's node (pre-seed looked the RHSA up at the allocation); JSON keys are strings.
    for pol in ("seed", "pre-seed"):
        units = default_report["placement"][pol]["units"]
        with_node = [u for u in units if u["expected_node"] is not None]
        assert len(with_node) == 2
        for u in with_node:
            node = str(u["expected_node"])
            assert u["queue"] == {node: 4} and u["ir_table"] == {node: 256}


def test_text_report_shows_queue_and_interrupts() -> None:
    out = cli("simulate", "--accesses", "20000", "--no-progress").stdout
    assert "queued invalidation (descriptors by type):" in out
    assert "interrupts (MSIs through interrupt remapping):" in out
    assert "blocked 0x26" in out
    assert "invalidation queue" in out and "IR table" in out
