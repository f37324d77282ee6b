"""Shared fixtures: where the real rows live (../shared/data beside the clone), skipped clearly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The folder of real rows: $AMZKIT_SHARED_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("AMZKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(
            f"real-data test skipped: {folder} is absent (it holds ../shared/data's CSVs; "
            "set AMZKIT_SHARED_DATA to the folder that has amz23_dev.csv and amz25_sample_test.csv)"
        )
    return folder
