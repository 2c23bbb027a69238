"""Shared fixtures: the corpus of real DMAR tables shipped in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmar_corpus import REAL


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The directory of real DMAR tables (``tests/data/dmar-corpus/real``)."""
    return REAL


# Hypothesis profiles (tests/strategies.py): "fast" unless `--hypothesis-profile=long` is given.
def _load_hypothesis_profile() -> None:
    import os

    from hypothesis import settings

    import strategies  # noqa: F401  (registers the profiles)

    settings.load_profile(os.environ.get("VTDWALK_HYPOTHESIS_PROFILE", "fast"))


_load_hypothesis_profile()
