"""Rebuilding a user's environment: clean copies of the checkout, fresh interpreters and virtual environments.

Shared by ``tests/conftest.py`` (the session's one execution of the course: the README's first command on a
fresh laptop) and ``tests/test_environments.py`` (Binder and Colab on top). A test that reads a config file
cannot fail on the real problem, so every environment here is installed the way its users install it.

Installs are made cheaper without changing what they prove: pip skips compiling bytecode (``PIP_NO_COMPILE``),
and every rebuilt environment shares this machine's pip cache instead of an empty one under its fresh ``HOME``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 1500


def python(version: str) -> Path:
    """A CPython ``version`` ("3.12") interpreter: pyenv's, else one on PATH; skip (fail under CI) without it."""
    candidates = sorted((Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"))
    found = candidates[-1] if candidates else shutil.which(f"python{version}")
    if not found:
        message = f"needs Python {version} (pyenv install {version}) to rebuild this platform's environment"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def clean_copy(target: Path) -> Path:
    """What a fresh `git clone` of this checkout holds (tracked and new, not ignored, files), committed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clean clone"]):
        subprocess.run(git + command, cwd=target, check=True, capture_output=True)
    return target


def _cache(tool: str) -> str:
    """This machine's ``tool`` cache folder (the CI user's), shared by every rebuilt environment."""
    return os.environ.get(f"{tool.upper()}_CACHE_DIR") or str(Path.home() / ".cache" / tool)


def environment(extra_path: Path | None = None, **values: str) -> dict[str, str]:
    """The variables of a user's shell: nothing of this test run's Python, mirror or profile leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "TLCOURSE_", "PYTEST_", "COV_"))
    }
    env.pop("KERAS_HOME", None)
    env.pop("CI", None)  # CI=1 would make the browser and widget tests strict; none runs here
    if extra_path is not None:
        env["PATH"] = f"{extra_path}{os.pathsep}{env['PATH']}"
    env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_PROGRESS_BAR="off",
        PIP_NO_COMPILE="1",
        PIP_CACHE_DIR=_cache("pip"),
        UV_CACHE_DIR=_cache("uv"),
        **values,
    )
    return env


def run(
    command: list[str] | str,
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float = INSTALL_TIMEOUT,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``command`` (a list, or a bash line); fail the test with its output's tail when it fails."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        shell=isinstance(command, str),
        executable="/bin/bash" if isinstance(command, str) else None,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{command!r} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def freeze(python: Path, env: dict[str, str]) -> dict[str, str]:
    """``{normalised name: version}`` of what ``python``'s environment has installed."""
    out = run([str(python), "-m", "pip", "list", "--format=json"], cwd=python.parent, env=env).stdout
    return {normalise(item["name"]): item["version"] for item in json.loads(out)}


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def report_rows(out_dir: Path) -> list[dict]:
    """The per-notebook rows of a ``tlcourse run`` report."""
    report = json.loads((out_dir / "report.json").read_text())
    return report["notebooks"] if isinstance(report, dict) else report


def statuses(out_dir: Path) -> dict[str, str]:
    """``{notebook file name: status}`` of a ``tlcourse run`` output folder."""
    return {Path(row["path"]).name: row["status"] for row in report_rows(out_dir)}


def externally_managed_python(version: str, target: Path) -> Path:
    """A copy of CPython ``version`` marked externally managed (PEP 668), as Debian and Homebrew ship theirs."""
    source = python(version).parents[1]
    shutil.copytree(
        source,
        target,
        symlinks=True,
        ignore=shutil.ignore_patterns("site-packages", "__pycache__", "test", "idlelib", "tkinter"),
    )
    interpreter = target / "bin" / f"python{version}"
    stdlib = subprocess.run(
        [str(interpreter), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(stdlib).is_relative_to(target), stdlib
    (Path(stdlib) / "site-packages").mkdir(exist_ok=True)
    subprocess.run([str(interpreter), "-m", "ensurepip"], capture_output=True, check=True)
    (Path(stdlib) / "EXTERNALLY-MANAGED").write_text(
        "[externally-managed]\nError=This Python is managed by the system: use a virtual environment.\n"
    )
    return interpreter


def readme_command(which: int, readme: Path = REPO_ROOT / "README.md") -> str:
    """The README's `which`-th command (0: set up and run the course; 1: set up and run the tests), verbatim."""
    section = readme.read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)
    assert len(commands) == 2, commands
    return commands[which]


def git_status(repo: Path) -> list[str]:
    """``git status --porcelain --ignored`` of ``repo``, one line per entry."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()


@dataclass
class Laptop:
    """The README's first command, run once on a fresh externally managed Python: what it left behind."""

    repo: Path
    """The clean copy of the checkout the command ran in."""
    env: dict[str, str]
    """The shell's variables (the externally managed Python first on PATH)."""
    refused: subprocess.CompletedProcess
    """``pip install -r requirements.txt`` without a virtual environment (PEP 668 must refuse it)."""
    ran: subprocess.CompletedProcess
    """The README's first command itself."""
    seconds: float
    status_after: list[str] = field(default_factory=list)
    """``git status --porcelain --ignored`` of the copy right after the command."""

    @property
    def venv_python(self) -> Path:
        return self.repo / ".venv" / "bin" / "python"

    @property
    def run_dir(self) -> Path:
        return self.repo / "runs" / "latest"
