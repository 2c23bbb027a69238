"""Helpers for the DMAR tests: where the corpus lives and a reader for iasl's ``.dsl`` output.

The corpus of real firmware tables ships with the repository in ``tests/data/dmar-corpus``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "data" / "dmar-corpus"
REAL = CORPUS / "real"


def corpus_tables() -> list[Path]:
    """Every ``real/*.dat`` table, sorted."""
    return sorted(REAL.glob("*.dat"))


# [HexOffset DecimalOffset ByteLength]  Field Name : value
_LINE = re.compile(
    r"^\[(?P<hex>[0-9A-Fa-f]+)h (?P<dec>\d+) +(?P<len>[0-9A-Fa-f]+)h?\]"
    r"\s+(?P<name>.+?)\s*:\s?(?P<value>.*)$"
)


@dataclass(frozen=True)
class IaslField:
    offset: int
    length: int
    name: str
    value: object  # int, str, bytes or (device, function)


def _value(name: str, text: str) -> object:
    text = text.strip()
    if text.startswith('"'):
        return text[1 : text.rindex('"')]
    if name == "PCI Path":
        dev, fn = text.split(",")
        return (int(dev, 16), int(fn, 16))
    words = text.split("[")[0].split()
    if len(words) > 1:  # a byte list, e.g. the header's 10 reserved bytes
        return bytes(int(w, 16) for w in words)
    return int(words[0], 16)


def read_dsl(path: Path) -> list[IaslField]:
    """The bracketed field lines of an ``iasl -d`` listing, in order."""
    out: list[IaslField] = []
    for line in path.read_text(encoding="latin-1").splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        off = int(m["hex"], 16)
        assert off == int(m["dec"]), line
        name = m["name"]
        out.append(IaslField(off, int(m["len"], 16), name, _value(name, m["value"])))
    return out


def iasl_string(text: str) -> str:
    """A string as iasl prints it: cut at the first NUL, non-printing characters as spaces."""
    text = text.split("\0")[0]
    return "".join(c if 0x20 <= ord(c) <= 0x7E else " " for c in text)
