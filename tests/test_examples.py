"""The examples run and say what they should: they are documentation that must not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_memory_image() -> None:
    out = run("memory_image.py")
    assert "-> host 0x23456123" in out
    assert "fault 0x6 READ" in out
    assert "fault 0xc PAGING_ENTRY_RSVD" in out
    assert "the read-only dump refuses writes" in out


def test_device_model() -> None:
    out = run("device_model.py")
    assert "packet 3 landed in host memory: a3a3a3a3" in out
    # The unmapped buffer: the write is refused with reason 0x5, recorded in a fault recording
    # register and signalled by a fault event the guest driver handles.
    assert "after unmap: DMA WRITE at 0x200000 aborted after 0 bytes" in out
    assert "fault event: vector 0x41 to APIC 0" in out
    assert "  record 0: reason 0x5 sid 0x0200 write at 0x200000" in out
    assert out.index("fault event") < out.index("after unmap")


def test_assign_two_sockets() -> None:
    out = run("assign_two_sockets.py")
    assert "[seed]" in out and "[pre-seed]" in out


def test_numa_study() -> None:
    out = run("numa_study.py")
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[1:]}
    # The X10DAi has two proximity domains: the seed puts every page on its node,
    # the pre-seed rules do not.
    pages, seed_bad, pre_bad = map(int, rows["supermicro-x10dai"])
    assert pages > 0 and seed_bad == 0 and pre_bad > 0
