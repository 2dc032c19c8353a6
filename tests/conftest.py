"""Shared test set-up: a quiet TensorFlow, an isolated Keras cache, the offline mirror, and no network.

Environment variables are set here, at import, because TensorFlow and Keras read them when first imported.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MIRROR = REPO_ROOT.parent / "shared" / "assets"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Tests never read or write the user's ~/.keras: every run starts from an empty Keras cache of its own.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="tlcourse-test-keras-")
# ... nor the user's per-user course folder (its mirror is searched with no setting): an empty one of their own.
os.environ["TLCOURSE_HOME"] = tempfile.mkdtemp(prefix="tlcourse-test-home-")
os.environ.setdefault("MPLBACKEND", "Agg")
IPYWIDGETS7 = (
    Path(__file__).resolve().parents[1] / ".test-extras" / "ipywidgets7"
)  # tools/install_test_extras.sh
if "TLCOURSE_IPYWIDGETS7" not in os.environ and (IPYWIDGETS7 / "ipywidgets").is_dir():
    os.environ["TLCOURSE_IPYWIDGETS7"] = str(IPYWIDGETS7)
if "TLCOURSE_MIRROR" not in os.environ and SHARED_MIRROR.is_dir():
    os.environ["TLCOURSE_MIRROR"] = str(SHARED_MIRROR)


def mirror_path() -> Path | None:
    """The mirror the tests use, or None when there is none."""
    value = os.environ.get("TLCOURSE_MIRROR")
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture
def mirror() -> Path:
    """The offline asset mirror; tests that need real weights or photos skip without it."""
    path = mirror_path()
    if path is None:
        pytest.skip(
            "needs the offline asset mirror (../shared/assets or $TLCOURSE_MIRROR) for real weights/photos"
        )
    return path


class NetworkBlocked(OSError):
    """Raised by the ``no_network`` fixture when code tries to open a connection."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every outgoing connection and DNS lookup fail, as on a machine with no internet."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkBlocked(-2, "Name or service not known (network disabled by the test)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def fresh_notices(monkeypatch):
    """Each test starts as a fresh process for tlcourse.assets.announce (a stand-in notice prints once)."""
    from tlcourse import assets

    monkeypatch.setattr(assets, "_ANNOUNCED", set())
