"""Malformed DMAR tables made by mutating the corpus: only DmarError, never a hang.

Each input is parsed strictly and leniently. Properties checked:
* strict parse either succeeds, and then serialises back to exactly the input, or raises
  DmarError (nothing else);
* lenient parse raises DmarError only for input shorter than the header; otherwise it returns a
  table whose validate(), to_dict(), format_table() and to_bytes() all work, with at least one
  error whenever the strict parse failed.

VTDWALK_DMAR_MUTATIONS sets the number of random cases (default 3000); the ``slow`` test, which
runs 50 times that (about a minute), runs only when VTDWALK_SLOW is set.
"""

from __future__ import annotations

import json
import os
import random
import struct

import pytest

from dmar_corpus import CORPUS, corpus_tables
from vtdwalk import dmar
from vtdwalk.errors import DmarError

TABLES = corpus_tables()
N_CASES = int(os.environ.get("VTDWALK_DMAR_MUTATIONS", "3000"))


@pytest.fixture(scope="module")
def tables() -> list[bytes]:
    assert TABLES, f"no tables in {CORPUS}"
    return [p.read_bytes() for p in TABLES]


def check(data: bytes) -> bool:
    """Run both parse modes over one input; True when the strict parse accepted it."""
    try:
        t = dmar.parse(data)
    except DmarError as e:
        strict_ok = False
        assert e.offset is None or 0 <= e.offset <= len(data)
    else:
        strict_ok = True
        assert t.to_bytes() == data
        t.validate()
    try:
        lenient = dmar.parse(data, strict=False)
    except DmarError:
        assert len(data) < dmar.HEADER_LEN
        assert not strict_ok
        return strict_ok
    problems = lenient.validate()
    if not strict_ok:
        assert any(p.severity in ("error", "fatal") for p in problems)
    json.dumps(lenient.to_dict())
    dmar.format_table(lenient, problems)
    out = lenient.to_bytes()
    # What the lenient parse kept serialises to a table that parses leniently again.
    dmar.parse(out, strict=False)
    return strict_ok


def _length_fields(data: bytes) -> list[tuple[int, str]]:
    """(offset, struct format) of every length field in an intact table."""
    t = dmar.parse(data)
    out = [(4, "<I")]
    for s in t.structures:
        assert s.offset is not None
        out.append((s.offset + 2, "<H"))
        for sc in getattr(s, "scopes", []):
            out.append((sc.offset + 1, "<B"))
    return out


def mutate(rng: random.Random, data: bytes, fields: list[tuple[int, str]]) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # flip random bits
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # random bytes
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    else:  # a length field set to something random or near its value
        off, fmt = rng.choice(fields)
        size = struct.calcsize(fmt)
        old = int.from_bytes(b[off : off + size], "little")
        if kind == 2:
            new = rng.randrange(1 << (8 * size)) if rng.random() < 0.5 else rng.randrange(16)
        else:
            new = max(0, min((1 << (8 * size)) - 1, old + rng.randint(-9, 9)))
        struct.pack_into(fmt, b, off, new)
        if rng.random() < 0.5:  # sometimes keep the checksum right, to get past nothing
            b[9] = (b[9] - sum(b)) & 0xFF
    return bytes(b)


def test_truncation_at_every_length(tables: list[bytes]) -> None:
    n = 0
    for data in tables:
        assert check(data)
        for cut in range(len(data)):
            assert not check(data[:cut])
            n += 1
    assert n == sum(len(d) for d in tables)


def test_extension_is_a_trailer(tables: list[bytes]) -> None:
    for data in tables[:20]:
        longer = data + b"\xff" * 7
        assert check(longer)
        assert dmar.parse(longer).trailer == b"\xff" * 7


def _random_cases(count: int, seed: int, tables: list[bytes]) -> tuple[int, int]:
    rng = random.Random(seed)
    fields = [_length_fields(d) for d in tables]
    accepted = 0
    for _ in range(count):
        i = rng.randrange(len(tables))
        accepted += check(mutate(rng, tables[i], fields[i]))
    return accepted, count - accepted


def test_random_mutations(tables: list[bytes]) -> None:
    accepted, rejected = _random_cases(N_CASES, 20261124, tables)
    # Both outcomes occur: the mutations reach the checks and the decoded fields.
    assert accepted > N_CASES // 10 and rejected > N_CASES // 10


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("VTDWALK_SLOW"), reason="set VTDWALK_SLOW=1 for long runs")
def test_random_mutations_long(tables: list[bytes]) -> None:
    _random_cases(50 * N_CASES, 7, tables)


def test_random_bytes_after_a_valid_header() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        length = dmar.HEADER_LEN + len(body)
        head = b"DMAR" + struct.pack("<I", length) + bytes(40)
        check(head + body)
