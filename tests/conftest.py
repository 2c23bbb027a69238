"""Shared fixtures: the corpus of real DMAR tables beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (spec and DMAR corpus) is not beside this checkout")
    return SHARED


# Hypothesis profiles (tests/strategies.py): "fast" unless `--hypothesis-profile=long` is given.
def _load_hypothesis_profile() -> None:
    import os

    from hypothesis import settings

    import strategies  # noqa: F401  (registers the profiles)

    settings.load_profile(os.environ.get("VTDWALK_HYPOTHESIS_PROFILE", "fast"))


_load_hypothesis_profile()
