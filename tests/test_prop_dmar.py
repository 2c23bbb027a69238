"""Property tests for the DMAR codec: built tables round-trip byte-exactly, and mutated tables
(drawn ones and real ones) raise nothing but DmarError from the parser and nothing but a
VtdError subclass from Platform.from_dmar."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import strategies as sts
from vtdwalk import DmarError, Platform, VtdError, dmar

CORPUS = sts.corpus_dir()
REAL = sorted(CORPUS.glob("*.dat"))[:40]


@given(sts.dmar_tables())
def test_built_table_round_trips(t: dmar.DmarTable) -> None:
    data = t.to_bytes()
    # ACPI: the length field is the table size and all bytes sum to zero.
    assert int.from_bytes(data[4:8], "little") == len(data)
    assert sum(data) & 0xFF == 0
    p = dmar.parse(data)
    assert p == t
    assert p.to_bytes() == data
    assert p.parse_problems == []
    # Each structure sits where the parser says, with the bytes structure_bytes gives.
    for s in p.structures:
        assert s.offset is not None
        raw = dmar.structure_bytes(s)
        assert data[s.offset : s.offset + len(raw)] == raw
        assert type(s) is not dmar.UnknownStructure
    json.dumps(p.to_dict())
    dmar.format_table(p, p.validate())


@given(sts.device_scopes())
def test_scope_length_and_bdf(s: dmar.DeviceScope) -> None:
    raw = s.to_bytes()
    assert raw[1] == len(raw) == 6 + 2 * len(s.path)
    assert raw[0] == s.type_code and raw[5] == s.start_bus
    assert s.bdf == ((s.start_bus, *s.path[0]) if len(s.path) == 1 else None)


def check_parse(data: bytes) -> None:
    """Strict: a table that re-encodes to the input, or DmarError. Lenient: DmarError only
    below the header size; otherwise every accessor works."""
    try:
        t = dmar.parse(data)
    except DmarError as e:
        strict_ok = False
        assert e.offset is None or 0 <= e.offset <= len(data)
    else:
        strict_ok = True
        assert t.to_bytes() == data
    try:
        lenient = dmar.parse(data, strict=False)
    except DmarError:
        assert len(data) < dmar.HEADER_LEN
        return
    problems = lenient.validate()
    if not strict_ok:
        assert any(p.severity in ("error", "fatal") for p in problems)
    json.dumps(lenient.to_dict())
    dmar.format_table(lenient, problems)
    dmar.parse(lenient.to_bytes(), strict=False)


@given(st.data())
def test_mutated_built_table_raises_only_dmar_error(data: st.DataObject) -> None:
    raw = data.draw(sts.dmar_tables()).to_bytes()
    check_parse(data.draw(sts.mutated(raw)))


@given(st.data())
def test_mutated_real_table_raises_only_dmar_error(data: st.DataObject) -> None:
    path: Path = data.draw(st.sampled_from(REAL))
    check_parse(data.draw(sts.mutated(path.read_bytes())))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_dmar_error(data: bytes) -> None:
    check_parse(data)
    check_parse(b"DMAR" + len(data).to_bytes(4, "little") + data)


@given(st.data())
def test_platform_from_mutated_table_raises_only_vtd_errors(data: st.DataObject) -> None:
    use_real = data.draw(st.booleans())
    if REAL and use_real:
        raw = data.draw(st.sampled_from(REAL)).read_bytes()
    else:
        raw = data.draw(sts.dmar_tables()).to_bytes()
    blob = data.draw(sts.mutated(raw))
    try:
        p = Platform.from_dmar(blob)
    except VtdError:
        return
    p.findings()
    p.free()
