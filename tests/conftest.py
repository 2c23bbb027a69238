"""Shared fixtures: the corpus of real DMAR tables shipped in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmar_corpus import REAL


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The directory of real DMAR tables (``tests/data/dmar-corpus/real``)."""
    return REAL
