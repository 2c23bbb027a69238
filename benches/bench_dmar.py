"""Speed of the DMAR table code on a large corpus table (the 528-byte Mac Pro table).

Run: python -m pytest benches/bench_dmar.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vtdwalk import dmar

TABLE = (
    Path(__file__).resolve().parent.parent / "tests/data/dmar-corpus/real/apple-macpro7-1-dmar1.dat"
)


@pytest.fixture(scope="module")
def data() -> bytes:
    return TABLE.read_bytes()


@pytest.mark.benchmark(group="dmar")
def test_bench_parse(benchmark: Any, data: bytes) -> None:
    t = benchmark(dmar.parse, data)
    assert len(t.structures) == 14


@pytest.mark.benchmark(group="dmar")
def test_bench_to_bytes_unchanged(benchmark: Any, data: bytes) -> None:
    t = dmar.parse(data)
    assert benchmark(t.to_bytes) == data


@pytest.mark.benchmark(group="dmar")
def test_bench_validate(benchmark: Any, data: bytes) -> None:
    t = dmar.parse(data)
    assert benchmark(t.validate)
