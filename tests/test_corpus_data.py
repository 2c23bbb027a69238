"""The corpus of real DMAR tables shipped in tests/data is complete and unaltered.

``MANIFEST.tsv`` lists name, size and sha256 of every data file; ``real/INDEX.tsv`` (written
when the tables were collected) gives each table's sha256 too, so the two are checked against
the files and against each other.
"""

from __future__ import annotations

import csv
import hashlib

from dmar_corpus import CORPUS, REAL, corpus_tables

NOT_LISTED = {"MANIFEST.tsv", "README.md"}


def _rows(name: str) -> list[dict[str, str]]:
    with (CORPUS / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_shipped_file_matches_the_manifest() -> None:
    manifest = {r["name"]: (int(r["size"]), r["sha256"]) for r in _rows("MANIFEST.tsv")}
    on_disk = {
        p.relative_to(CORPUS).as_posix()
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in NOT_LISTED
    }
    assert on_disk == set(manifest)
    for name, (size, digest) in manifest.items():
        data = (CORPUS / name).read_bytes()
        assert (len(data), _sha256(data)) == (size, digest), name


def test_index_describes_every_table_with_its_digest() -> None:
    index = {r["file"]: r["sha256"] for r in _rows("real/INDEX.tsv")}
    tables = corpus_tables()
    assert len(tables) == 150
    assert set(index) == {p.name for p in tables}
    for p in tables:
        data = p.read_bytes()
        assert data[:4] == b"DMAR", p.name
        assert int.from_bytes(data[4:8], "little") == len(data), p.name  # header length field
        assert sum(data) % 256 == 0, p.name  # ACPI checksum: all bytes sum to 0
        assert _sha256(data) == index[p.name], p.name


def test_every_table_has_its_iasl_decoding() -> None:
    iasl = {p.stem for p in (CORPUS / "iasl").glob("*.dsl")}
    assert iasl == {p.stem for p in REAL.glob("*.dat")}
