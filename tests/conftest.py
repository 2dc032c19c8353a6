"""Shared test set-up: a quiet TensorFlow, an isolated Keras cache, the offline mirror, and no network.

Environment variables are set here, at import, because TensorFlow and Keras read them when first imported.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import envkit
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


# ------------------------------------------------------------------------------------------------------------
# The course executed once per test session, and the test groups that share it


@pytest.fixture(scope="session")
def laptop(tmp_path_factory) -> envkit.Laptop:
    """The README's first command, run literally once per session on a fresh, externally managed Python 3.12.

    A clean copy of the checkout, a ``python3`` that refuses ``pip install`` outside a virtual environment
    (PEP 668, as on Debian 12+, Ubuntu 23.04+ and Homebrew), ``TLCOURSE_PROFILE=smoke`` (what ``--profile auto``
    reads first) and the offline mirror when there is one. The command makes ``.venv``, installs the course and
    executes every lesson into ``runs/latest``: that run is the session's one execution of the lessons
    (:func:`smoke_run`), read by the per-lesson tests, the output comparisons, Binder's test and the site test.
    """
    if os.environ.get("TLCOURSE_SMOKE_RUN"):
        pytest.skip("TLCOURSE_SMOKE_RUN names a recorded run, so the fresh-laptop rebuild is not repeated")
    root = tmp_path_factory.mktemp("laptop")
    repo = envkit.clean_copy(root / "repo")
    python = envkit.externally_managed_python("3.12", root / "system-python")
    env = envkit.environment(python.parent, HOME=str(root / "home"), TLCOURSE_PROFILE="smoke")
    if mirror_path() is not None:
        env["TLCOURSE_MIRROR"] = str(
            mirror_path()
        )  # a classroom mirror; without it smoke uses generated data
    for name in ("python3", "python"):  # Homebrew has both; Debian's python-is-python3 adds `python`
        (python.parent / name).unlink(missing_ok=True)
        os.symlink(python, python.parent / name)
    refused = envkit.run("python3 -m pip install -r requirements.txt", cwd=repo, env=env, check=False)
    start = time.perf_counter()
    ran = envkit.run(envkit.readme_command(0), cwd=repo, env=env, check=False)
    seconds = time.perf_counter() - start
    return envkit.Laptop(repo, env, refused, ran, seconds, envkit.git_status(repo))


@pytest.fixture(scope="session")
def smoke_run(request) -> Path:
    """The ``--out`` folder of the session's one ``tlcourse run lessons --profile smoke``: report.json + notebooks.

    It is the fresh laptop's ``runs/latest`` (:func:`laptop`). ``TLCOURSE_SMOKE_RUN=DIR`` reuses a run recorded
    earlier instead (for working on the tests that read it; CI never sets it).
    """
    recorded = os.environ.get("TLCOURSE_SMOKE_RUN")
    if recorded:
        run_dir = Path(recorded)
    else:
        machine = request.getfixturevalue("laptop")
        run_dir = machine.run_dir
        if not (run_dir / "report.json").is_file():
            pytest.fail(
                "the README's first command wrote no report.json:\n"
                + machine.ran.stdout[-3000:]
                + machine.ran.stderr[-3000:]
            )
    if not (run_dir / "report.json").is_file():
        pytest.fail(f"{run_dir} holds no report.json: it is not the --out folder of a tlcourse run")
    return run_dir


#: Fixtures whose work is done once per session: every test that uses one runs on the same pytest-xdist worker
#: (``--dist loadgroup``), so the work is never repeated on the other worker.
SHARED_WORK = {"laptop": "laptop", "smoke_run": "laptop", "solutions_run": "solutions"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Group tests for pytest-xdist: by the session-wide work they share, else by module (module fixtures)."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        group = next((SHARED_WORK[name] for name in SHARED_WORK if name in item.fixturenames), None)
        item.add_marker(pytest.mark.xdist_group(group or item.nodeid.split("::", 1)[0]))
