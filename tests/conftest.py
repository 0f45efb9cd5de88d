"""Shared test fixtures.

``../shared/data`` (or ``$VIDFAKE_DATA``) holds the development media; tests that need it take the
``shared_data`` fixture and are skipped, with the reason printed, where it is absent.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("VIDFAKE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"development data not found at {root} (set VIDFAKE_DATA to its folder)")
    return root


@pytest.fixture(scope="session")
def manifest_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return REPO / "samples"
