"""The command line as a new user meets it: run as a subprocess, checking what they see (exit
status, the stderr line, no traceback, the JSON shape)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vtdwalk
from vtdwalk import sim
from vtdwalk.acpi import dmar
from vtdwalk.acpi.severity import SEVERITY, severity_of
from vtdwalk.cli import build_parser, integer
from vtdwalk.platform import Platform

DATA = Path(vtdwalk.__file__).parent / "data"
TABLE = DATA / sim.DEFAULT_DMAR
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vtdwalk.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def one_line_error(r: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The run's stderr is exactly one line starting with ``prefix``; returns it."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), r.stderr
    return lines[0]


def usage_error(r: subprocess.CompletedProcess[str], option: str) -> str:
    """argparse's usage error: exit 2, its last line naming the one option at fault."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.splitlines()[-1]
    assert f"argument {option}" in last, last
    return last


# ---- errors a user should never see as tracebacks


@pytest.mark.parametrize("command", ["simulate", "dump"])
def test_negative_random_seed_is_a_usage_error(command: str) -> None:
    extra = ["--domain", "1"] if command == "dump" else []
    for opt in ("--seed", "--random-seed"):
        last = usage_error(cli(command, *extra, opt, "-1"), "--random-seed/--seed")
        assert "-1 is below 0" in last


def test_bad_counts_name_the_one_option() -> None:
    last = usage_error(cli("simulate", "--accesses", "-5"), "--accesses")
    assert "--iotlb-entries" not in last
    last = usage_error(cli("simulate", "--accesses", "lots"), "--accesses")
    assert "not an integer" in last
    usage_error(cli("simulate", "--accesses", "1.5e0"), "--accesses")
    usage_error(cli("simulate", "--iotlb-entries", "1e-3"), "--iotlb-entries")


def test_counts_accept_scientific_and_underscores() -> None:
    parse = integer(1)
    assert parse("1e6") == parse("1_000_000") == parse("1000000") == 10**6
    assert parse("2.5e3") == 2500 and parse("1E2") == 100
    for bad in ("0", "-5", "1.5", "1e-3", "2.5e0", "x", "", "1e"):
        with pytest.raises(Exception, match=r"below|not an integer"):
            parse(bad)
    # And through the command: 2e4 is 20,000 requests.
    r = cli("simulate", "--json", "--accesses", "2e4", "--random-seed", "5")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workload"]["translations"] == 20_000


def test_plot_path_is_checked_before_any_work(tmp_path: Path) -> None:
    # A billion requests would take minutes: the refusal comes first, with no progress shown.
    r = cli("simulate", "--accesses", "1e9", "--progress", "--plot", "/nonexistent/dir/fig.png")
    assert r.returncode == 2 and r.stdout == ""
    line = one_line_error(r, "vtdwalk simulate: error: --plot: ")
    assert "/nonexistent/dir does not exist" in line
    r = cli("simulate", "--accesses", "1e9", "--plot", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in one_line_error(r, "vtdwalk simulate")
    r = cli("simulate", "--accesses", "1e9", "--plot", str(tmp_path / "fig.xyz"))
    line = one_line_error(r, "vtdwalk simulate")
    assert r.returncode == 2 and "cannot write .xyz" in line and "png" in line and "svg" in line


def test_missing_matplotlib_is_reported_before_any_work(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path])}
    r = cli("simulate", "--accesses", "1e9", "--progress", "--plot", "x.png", env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert "needs matplotlib" in one_line_error(r, "vtdwalk simulate: ")


def test_ctrl_c_exits_quietly_with_130() -> None:
    # A run far too long to finish, and far too large to hold in memory (62 GiB of requests
    # built whole): the workload streams, so it is still running when interrupted.
    p = subprocess.Popen(
        [sys.executable, "-m", "vtdwalk.cli", "simulate", "--accesses", "100000000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A run started in the background inherits SIGINT ignored, and Python then installs no
        # handler for it: give the child the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(6)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert err.splitlines() == ["vtdwalk: interrupted"]
    assert "MemoryError" not in err and "allocate" not in err and out == ""


def test_workload_streams_in_bounded_chunks() -> None:
    cfg = sim.SimConfig(accesses=10**11)
    p = sim.build_platform(cfg)
    rng = np.random.default_rng(1)
    sc = sim.plan_scenario(p, cfg, rng)
    it = sim.chunks(sc, rng, cfg.accesses, size=1 << 12)
    seen = [next(it) for _ in range(3)]
    assert all(len(c.iovas) == 1 << 12 for c in seen)
    res = sim.drive(p, iter(seen))
    assert res.translations == 3 << 12 and res.wrong == 0
    p.free()


# ---- exit codes and consistency


def _bad_checksum(tmp_path: Path) -> Path:
    data = bytearray(TABLE.read_bytes())
    data[9] ^= 0x55
    path = tmp_path / "badsum.dat"
    path.write_bytes(bytes(data))
    return path


def test_errors_found_in_the_input_exit_1_in_every_subcommand(tmp_path: Path) -> None:
    bad = _bad_checksum(tmp_path)
    r = cli("dmar", str(bad))
    assert r.returncode == 1 and "bad-checksum" in r.stdout
    r = cli("platform", str(bad), "--json")
    assert r.returncode == 1
    r = cli("simulate", "--dmar", str(bad), "--accesses", "5000", "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert any(f["code"] == "bad-checksum" for f in report["platform"]["findings"])
    assert "error: bad-checksum" in one_line_error(r, "vtdwalk simulate: ")
    text = tmp_path / "notes.txt"
    text.write_text("Notes: a DMAR table is binary; this file is not one.\n" * 3)
    r = cli("dmar", "--lenient", str(text))
    assert r.returncode == 1 and "bad-signature" in r.stdout
    # A clean table: 0 everywhere.
    assert cli("dmar", str(TABLE)).returncode == 0
    assert cli("platform", str(TABLE)).returncode == 0
    assert cli("platform").returncode == 0


def test_fatal_finding_exits_1_everywhere(corpus_dir: Path) -> None:
    path = corpus_dir / "apple-macpro7-1-dmar1.dat"
    d = cli("dmar", str(path), "--json")
    pl = cli("platform", str(path), "--json")
    si = cli("simulate", "--dmar", str(path), "--json", "--accesses", "5000")
    assert d.returncode == pl.returncode == si.returncode == 1
    fatal = {"duplicate-include-all"}
    for findings in (
        json.loads(d.stdout)["problems"],
        json.loads(pl.stdout)["findings"],
        json.loads(si.stdout)["platform"]["findings"],
    ):
        assert {f["code"] for f in findings if f["severity"] == "fatal"} == fatal
    assert "fatal: duplicate-include-all" in one_line_error(si, "vtdwalk simulate: ")


def test_one_severity_per_code(corpus_dir: Path) -> None:
    """Every code dmar and the platform report over the whole corpus has the one table's
    severity, and the same in both."""
    for path in sorted(corpus_dir.glob("*.dat")):
        t = dmar.parse(path.read_bytes())
        p = Platform(t)
        sev: dict[tuple[str, int | None], str] = {}
        for f in t.validate():
            assert f.code in SEVERITY, f.code
            sev[(f.code, f.offset)] = f.severity
        for g in p.report:
            assert g.code in SEVERITY, g.code
            if (g.code, g.offset) in sev:
                assert sev[(g.code, g.offset)] == g.severity, (path.name, g.code)
            if g.code not in ("duplicate-include-all", "duplicate-all-ports"):
                assert g.severity == SEVERITY[g.code]
        p.free()
    # Xen refuses a second include-all unit on segment 0 only.
    assert severity_of("duplicate-include-all", 0) == "fatal"
    assert severity_of("duplicate-include-all", 1) == "warning"
    # The severities the README lists for codes are the table's.
    assert "vtdwalk.acpi.severity" in README


def test_host_means_this_machines_table_everywhere() -> None:
    host = Path(dmar.HOST_TABLE_PATH)
    runs = [
        cli("dmar", "host"),
        cli("dmar"),
        cli("platform", "host"),
        cli("simulate", "--dmar", "host", "--accesses", "2000"),
    ]
    if host.exists():  # pragma: no cover - only on a VT-d machine with a readable table
        assert all(r.returncode in (0, 1) and r.stdout for r in runs)
        return
    for r in runs:
        assert r.returncode == 1
        line = one_line_error(r, "vtdwalk ")
        assert f"this machine's DMAR table {host}" in line and "cannot read host" not in line


@pytest.mark.parametrize("stem", ["hack-vtd-fix-oc-modified", "lenovo-ideapadflex-15-20309"])
def test_drhd_at_address_0_alone(corpus_dir: Path, stem: str) -> None:
    """Both tables have a single DRHD, at register base 0, which Xen refuses (-ENODEV): there
    is no unit left to simulate, and the user is told so in one line."""
    path = corpus_dir / f"{stem}.dat"
    t = dmar.parse(path.read_bytes())
    assert [d.address for d in t.drhds] == [0]
    r = cli("simulate", "--dmar", str(path))
    assert r.returncode == 1 and r.stdout == ""
    line = one_line_error(r, "vtdwalk simulate: ")
    assert "no usable remapping unit" in line and "drhd-address-invalid" in line
    r = cli("platform", str(path))
    assert r.returncode == 1 and "drhd-address-invalid" in r.stdout


def test_drhd_at_address_0_beside_others_is_skipped(tmp_path: Path) -> None:
    """A DRHD at 0 next to usable units: reported, skipped, the rest simulated."""
    t = dmar.parse(TABLE.read_bytes())
    zero = dmar.Drhd(flags=0, segment=0, address=0, scopes=[])
    t.structures.insert(0, zero)
    path = tmp_path / "zero.dat"
    path.write_bytes(t.to_bytes())
    r = cli("simulate", "--dmar", str(path), "--json", "--accesses", "5000")
    assert r.returncode == 1
    rep = json.loads(r.stdout)
    assert 0 not in {u["address"] for u in rep["units"]} and len(rep["units"]) == 3
    assert rep["workload"]["wrong_translations"] == 0 and rep["devices"]
    assert any(f["code"] == "drhd-address-invalid" for f in rep["platform"]["findings"])


# ---- spelling and what the text shows


def _socket_of(bdf: str) -> int | None:
    """The X10DAi's sockets from its description (data/supermicro-x10dai.toml): the audio
    function 00:1b.0 has its own unit without an RHSA (no node); buses 0x80-0xef are socket
    1's root complex; everything else is socket 0's."""
    seg_bus, _ = bdf.rsplit(":", 1)
    bus = int(seg_bus.split(":")[-1], 16)
    if bdf.endswith("00:1b.0"):
        return None
    return 1 if 0x80 <= bus < 0xF0 else 0


def test_dmar_text_within_100_columns(corpus_dir: Path) -> None:
    path = corpus_dir / "apple-macpro7-1-dmar1.dat"
    r = cli("dmar", str(path))
    assert r.returncode == 1 and "fatal [duplicate-include-all]" in r.stdout
    for line in r.stdout.splitlines():
        assert len(line) <= 100 and line == line.rstrip(), line


def test_text_spelling_and_widths() -> None:
    r = cli("simulate", "--accesses", "20000", "--json")
    rep = json.loads(r.stdout)
    for d in rep["devices"]:
        assert d["node"] == _socket_of(d["bdf"]), d
    for args in (
        ["simulate", "--accesses", "20000"],
        ["platform"],
        ["platform", str(TABLE)],
        ["dump", "--domain", "2"],
    ):
        out = cli(*args).stdout
        assert "None" not in out and "node none" not in out and "Platform(" not in out
        for line in out.splitlines():
            assert len(line) <= 100, (args, line)
            assert line == line.rstrip(), (args, line)
    plat = cli("platform").stdout
    # ATSR buses in hex, like the BDFs: the X10DAi's ports 80:01.0 and 80:02.0 lead to buses
    # 0x81 and 0x82 (decimal 129, 130).
    atsr = plat.split("ATSRs:")[1].split("findings")[0]
    assert "81" in atsr and "129" not in atsr


def test_dump_device_errors() -> None:
    r = cli("dump", "--device", "0001:81:00.0")
    assert r.returncode == 1
    assert "no PCI segment 0001" in one_line_error(r, "vtdwalk dump: ")
    last = usage_error(cli("dump", "--device", "81:20.0"), "--device")
    assert "device number 20 (hex) is above 1f" in last
    for opt in ("--accesses", "--iotlb-entries"):
        r = cli("dump", "--domain", "1", opt, "5")
        assert r.returncode == 2 and f"unrecognized arguments: {opt}" in r.stderr


def test_random_seed_and_its_alias_agree() -> None:
    timing = {"seconds", "translations_per_second", "ns_per_translation"}
    timing |= {"map_seconds", "build_seconds"}

    def run(*a: str) -> dict[str, Any]:
        r: dict[str, Any] = json.loads(cli("simulate", "--json", "--accesses", "10000", *a).stdout)
        r["workload"] = {k: v for k, v in r["workload"].items() if k not in timing}
        return r

    assert run("--random-seed", "9") == run("--seed", "9")
    assert run("--random-seed", "9")["platform"]["random_seed"] == 9


def test_every_option_has_help_and_the_readme_lists_them() -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    choices: dict[str, argparse.ArgumentParser] = subs.choices
    for name, sp in choices.items():
        for a in sp._actions:
            if a.option_strings and a.dest != "help":
                assert a.help, f"{name} {a.option_strings} has no help"
                assert a.option_strings[0] in README, f"{a.option_strings[0]} not in README"
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in README


# ---- structured JSON


def test_simulate_json_is_structured() -> None:
    rep = json.loads(cli("simulate", "--json", "--accesses", "20000").stdout)
    plat = json.loads(cli("platform", "--json").stdout)
    f0 = rep["platform"]["findings"][0]
    assert set(plat["findings"][0]) <= set(f0) and f0["source"] == "firmware"
    assert rep["fault_reasons"] == [
        {"reason": 5, "name": "WRITE", "count": 8},
        {"reason": 6, "name": "READ", "count": 8},
    ]
    stray = rep["workload"]["stray_device"]
    assert stray["reason"] == 2 and stray["name"] == "CONTEXT_ENTRY_P"
    # The old shapes, kept one release.
    assert rep["faults"] == {"0x05 WRITE": 8, "0x06 READ": 8}
    assert "0x02 CONTEXT_ENTRY_P" in rep["workload"]["stray_device_fault"]
    assert all(isinstance(s, str) for s in rep["platform"]["findings_text"])
    for key in ("fault_reasons", "stray_device", "findings_text", "random_seed", "source"):
        assert key in README


def _not_regular_files(tmp_path: Path) -> list[Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: a read would wait for ever
    return [Path("/dev/zero"), fifo, tmp_path]


#: Every file argument of the command line, as (label in the error, arguments before the path).
CLI_FILES: list[tuple[str, list[str]]] = [
    ("--dmar", ["simulate", "--accesses", "2000", "--dmar"]),
    ("--dmar", ["dump", "--domain", "1", "--dmar"]),
    ("FILE", ["dmar"]),
    ("FILE", ["platform"]),
    ("topology", ["simulate", "--accesses", "2000", "--topology"]),
    ("topology", ["dump", "--domain", "1", "--topology"]),
    ("topology", ["platform", "--topology"]),
]


@pytest.mark.parametrize(("label", "argv"), CLI_FILES, ids=[" ".join(a) for _, a in CLI_FILES])
def test_every_file_the_cli_reads_must_be_a_regular_file(
    tmp_path: Path, label: str, argv: list[str]
) -> None:
    """/dev/zero, a FIFO and a directory are refused before any read: one error line naming
    the argument, exit 1 (without the check, /dev/zero is read until memory runs out)."""
    for path in _not_regular_files(tmp_path):
        r = cli(*argv, str(path), timeout=120)
        assert r.returncode == 1, r.stderr
        line = one_line_error(r, f"vtdwalk {argv[0]}: {label}: ")
        assert "is not a regular file" in line and str(path)[:40] in line
        if path.is_fifo():
            path.unlink()


@pytest.mark.parametrize(
    ("label", "argv"), CLI_FILES[:4], ids=[" ".join(a) for _, a in CLI_FILES[:4]]
)
def test_a_dmar_file_larger_than_the_cap_is_refused(
    tmp_path: Path, label: str, argv: list[str]
) -> None:
    from vtdwalk._args import DMAR_CAP

    big = tmp_path / "big.dat"
    with open(big, "wb") as f:
        f.truncate(DMAR_CAP + 1)  # sparse: nothing is written
    r = cli(*argv, str(big), timeout=120)
    assert r.returncode == 1, r.stderr
    line = one_line_error(r, f"vtdwalk {argv[0]}: {label}: ")
    assert f"is larger than {DMAR_CAP} bytes" in line


def test_a_missing_dmar_file_still_says_it_cannot_be_read(tmp_path: Path) -> None:
    for argv in (["simulate", "--dmar"], ["dmar"], ["platform"]):
        r = cli(*argv, str(tmp_path / "none.dat"))
        assert r.returncode == 1
        line = one_line_error(r, f"vtdwalk {argv[0]}: cannot read ")
        assert "No such file" in line


def test_topology_file_problems_are_labelled(tmp_path: Path) -> None:
    """A --topology file that lacks a device the table names: the finding is the file's."""
    text = (DATA / sim.DEFAULT_TOPOLOGY).read_text()
    # Drop the HD audio function 00:1b.0, which the table's second DRHD names.
    blocks = text.split("[[devices]]")
    kept = [b for b in blocks if 'bdf = "0000:00:1b.0"' not in b]
    assert len(kept) == len(blocks) - 1
    topo = tmp_path / "topo.toml"
    topo.write_text("[[devices]]".join(kept))
    r = cli("simulate", "--topology", str(topo), "--accesses", "5000", "--json")
    rep = json.loads(r.stdout)
    missing = [f for f in rep["platform"]["findings"] if f["code"] == "scope-device-missing"]
    assert missing and all(f["source"] == "topology" for f in missing)
    text_out = cli("simulate", "--topology", str(topo), "--accesses", "5000").stdout
    assert "topology   warning    scope-device-missing" in text_out


# ---- progress and the figure


def test_progress_shows_every_phase_with_rate_and_eta() -> None:
    r = cli("simulate", "--accesses", "20000", "--progress")
    assert r.returncode == 0
    err = r.stderr
    for phase in ("build platform", "map device buffers", "translate", "placement under"):
        assert phase in err
    assert "20000/20000" in err and "/s" in err and "eta" in err
    # Off when stderr is not a terminal, unless asked.
    assert cli("simulate", "--accesses", "2000").stderr == ""


def test_plot_paths_and_formats(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    r = cli("simulate", "--accesses", "5000", "--progress", "--plot", str(tmp_path / "foo"))
    assert r.returncode == 0
    assert f"plot written to {tmp_path / 'foo.png'}" in r.stdout
    assert (tmp_path / "foo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "foo").exists()
    assert "IOTLB sweep (6 sizes)" in r.stderr
    r = cli("simulate", "--accesses", "5000", "--json", "--plot", str(tmp_path / "f.svg"))
    rep = json.loads(r.stdout)
    assert rep["plot"] == str(tmp_path / "f.svg")
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    assert [s["iotlb_entries"] for s in rep["iotlb_sweep"]] == [16, 64, 256, 1024, 4096, 16384]
    assert all(s["ns_per_translation"] > 0 for s in rep["iotlb_sweep"])


# ---- docstrings


def _public_members() -> list[tuple[str, object]]:
    """Every public name of ``vtdwalk`` (through ``__all__``, submodules included) and every
    public method and property of its classes; dataclass slot fields are documented in their
    class's docstring and left out."""
    import enum
    import inspect
    import types

    out: list[tuple[str, object]] = []
    seen: set[int] = set()

    def walk(mod: types.ModuleType, prefix: str) -> None:
        names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
        for n in names:
            v = getattr(mod, n)
            q = f"{prefix}.{n}"
            if isinstance(v, types.ModuleType):
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append((q, v))
                    walk(v, q)
                continue
            if not (inspect.isclass(v) or inspect.isroutine(v)):
                continue
            out.append((q, v))
            if inspect.isclass(v) and id(v) not in seen and not issubclass(v, enum.Enum):
                seen.add(id(v))
                for a, m in vars(v).items():
                    if a.startswith("_") or isinstance(m, types.MemberDescriptorType):
                        continue
                    if isinstance(m, staticmethod | classmethod):
                        m = m.__func__
                    if (
                        inspect.isroutine(m)
                        or isinstance(m, property)
                        or inspect.isdatadescriptor(m)
                    ):
                        out.append((f"{q}.{a}", m))

    walk(vtdwalk, "vtdwalk")
    return out


def test_every_public_member_has_a_docstring() -> None:
    members = _public_members()
    assert len(members) > 150  # the enumeration reaches the classes' members
    missing = [q for q, m in members if not (getattr(m, "__doc__", None) or "").strip()]
    assert missing == []
    # The package's own help is an overview, not a pointer to __all__.
    doc = vtdwalk.__doc__ or ""
    assert "see ``__all__``" not in doc and "Platform" in doc and "PhysMem" in doc
    # Register defaults read as registers.
    import inspect

    sig = inspect.signature(Platform.from_dmar)  # what help() shows
    assert repr(sig.parameters["cap"].default).startswith("0x80d2008c")
    assert repr(sig.parameters["ecap"].default).startswith("0x")
    # The platform module cites only what ships (the README), not the design notes.
    import vtdwalk.platform as platform_module

    assert ".md" not in (platform_module.__doc__ or "").replace("README", "")


def test_synthesised_memory_fits_the_table(corpus_dir: Path) -> None:
    """Without a topology file, memory starts above the 4 GiB MMIO hole (not at 64 GiB) and
    ends below the table's host address width."""
    for path in sorted(corpus_dir.glob("*.dat")):
        t = dmar.parse(path.read_bytes())
        if t.host_address_width == 0:
            continue
        nodes = Platform(t).numa.ranges
        assert nodes[0][0] == 4 << 30, path.name
        assert nodes[-1][0] + nodes[-1][1] <= 1 << t.haw_bits, path.name
        assert all(a + s == b for (a, s), (b, _) in itertools.pairwise(nodes))
    q35 = corpus_dir / "qemu-q35-intel-iommu-v2.dat"
    r = cli("simulate", "--dmar", str(q35), "--accesses", "5000", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["platform"]["nodes"][0]["base"] == 4 << 30
