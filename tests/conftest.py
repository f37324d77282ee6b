"""Shared fixtures: where the real rows live (../shared/data beside the clone), skipped clearly when absent."""

from __future__ import annotations

import os
import socket
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


@pytest.fixture()
def no_dns(monkeypatch):
    """A resolver that knows no *.invalid host (as with Internet off), answering at once, with no network."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="module")
def dead_url():
    """http://127.0.0.1:<port> of a socket bound (so no one else takes the port) but never listening: refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
