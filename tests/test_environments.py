"""Rebuild each platform's environment from scratch, the way that platform installs the course, and run lessons in it.

A test that reads a config file cannot fail on the real problem, so each test here makes a fresh virtual
environment from a clean copy of the checkout and installs it exactly as its users do:

- Binder: Python 3.12 (binder/runtime.txt), `pip install -r binder/requirements.txt` as repo2docker runs it, then
  binder/postBuild, then a lesson through binder/start. The offline mirror stands in for Binder's downloads.
- Colab: Python 3.13 with Colab's own versions (tests/data/colab/), then a notebook's setup cell pointed at the
  checkout; nothing of Colab's may change, and a lesson runs with Colab's ipywidgets 7.7.1 and ipykernel 6.17.1.
- A fresh laptop: an "externally managed" Python 3.12 (as on Debian 12+, Ubuntu 23.04+ and Homebrew), on which
  pip refuses to install without a virtual environment, and the README's first command run literally.

They need the pyenv Pythons 3.12 and 3.13 (on every machine of this project) and PyPI; under CI a missing Python
fails instead of skipping. Each takes minutes: they are marked ``slow`` and ``environment``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO_ROOT, mirror_path

pytestmark = [pytest.mark.slow, pytest.mark.environment]
COLAB_DATA = REPO_ROOT / "tests" / "data" / "colab"
INSTALL_TIMEOUT = 1500


def _python(version: str) -> Path:
    """A CPython ``version`` ("3.12") interpreter: pyenv's, else one on PATH."""
    candidates = sorted((Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"))
    found = candidates[-1] if candidates else shutil.which(f"python{version}")
    if not found:
        message = f"needs Python {version} (pyenv install {version}) to rebuild this platform's environment"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def _clean_copy(target: Path) -> Path:
    """What a fresh `git clone` of this checkout holds (tracked and new, not ignored, files), committed."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clean clone"]):
        subprocess.run(git + command, cwd=target, check=True, capture_output=True)
    return target


def _environment(extra_path: Path | None = None, **values: str) -> dict[str, str]:
    """The variables of a user's shell: nothing of this test run's Python, mirror or profile leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "TLCOURSE_"))
    }
    env.pop("KERAS_HOME", None)
    env.pop("CI", None)  # CI=1 would make the browser and widget tests strict; none runs here
    if extra_path is not None:
        env["PATH"] = f"{extra_path}{os.pathsep}{env['PATH']}"
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_PROGRESS_BAR="off", **values)
    return env


def _run(
    command: list[str] | str,
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float = INSTALL_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(command, str),
        executable="/bin/bash" if isinstance(command, str) else None,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{command!r} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def _freeze(python: Path, env: dict[str, str]) -> dict[str, str]:
    out = _run([str(python), "-m", "pip", "list", "--format=json"], cwd=python.parent, env=env).stdout
    return {re.sub(r"[-_.]+", "-", item["name"]).lower(): item["version"] for item in json.loads(out)}


def _report(out_dir: Path) -> list[dict]:
    report = json.loads((out_dir / "report.json").read_text())
    return report["notebooks"] if isinstance(report, dict) else report


def _statuses(out_dir: Path) -> dict[str, str]:
    return {Path(row["path"]).name: row["status"] for row in _report(out_dir)}


def _prefilled_mirror(target: Path) -> Path:
    """A writable copy of the offline mirror (88 MB): what postBuild would have downloaded on Binder.

    A copy, not links: the folder audit rightly refuses images whose links lead outside the folder.
    """
    source = mirror_path()
    if source is None:
        pytest.skip("needs the offline asset mirror to stand in for Binder's downloads")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("SHA256SUMS"))
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_binder_image_holds_every_dependency_and_runs_lessons(tmp_path):
    repo = _clean_copy(tmp_path / "repo")
    runtime = (repo / "binder" / "runtime.txt").read_text().strip()
    python = _python(runtime.removeprefix("python-"))
    home = tmp_path / "home"
    _prefilled_mirror(home / ".tlcourse-mirror")
    venv = tmp_path / "srv-conda"
    env = _environment(venv / "bin", HOME=str(home))
    _run([str(python), "-m", "venv", str(venv)], cwd=repo, env=env)
    # repo2docker: `pip install -r binder/requirements.txt` from the repository root, then binder/postBuild
    _run(["python", "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], cwd=repo, env=env)
    built = _run(["bash", "binder/postBuild"], cwd=repo, env=env)
    assert "Mirror ready" in built.stdout, built.stdout
    assert (home / ".jupyter" / "jupyter_server_config.json").is_file()

    status = _run(["bash", "binder/start", "python", "-m", "tlcourse", "assets", "status"], cwd=repo, env=env)
    assert "mirror:      ~/.tlcourse-mirror" in status.stdout  # shown under ~, never as the machine path
    out = tmp_path / "run"
    ran = _run(
        [
            "bash",
            "binder/start",
            "python",
            "-m",
            "tlcourse",
            "run",
            "lessons/01_imagenet.ipynb",
            "lessons/08_creative_brief.ipynb",
            "--profile",
            "smoke",
            "--out",
            str(out),
        ],
        cwd=repo,
        env=env,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert _statuses(out) == {"01_imagenet.ipynb": "ok", "08_creative_brief.ipynb": "ok"}


def _colab_constraints(target: Path) -> Path:
    lines = [
        line
        for line in (COLAB_DATA / "pip-freeze.gpu.txt").read_text().splitlines()
        if line and not line.startswith("#") and " @ " not in line
    ]
    target.write_text("\n".join(lines) + "\n")
    return target


def _colab_versions() -> dict[str, str]:
    pins = {}
    for line in (COLAB_DATA / "pip-freeze.gpu.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


SETUP_CELL_AS_ON_COLAB = textwrap.dedent(
    """
    import sys, types
    sys.modules["google.colab"] = types.ModuleType("google.colab")  # what the setup cell checks for
    exec(compile(sys.stdin.read(), "setup-cell", "exec"))
    import tlcourse
    print("installed tlcourse", tlcourse.__version__, "at", tlcourse.__file__)
    """
)


def test_colab_setup_cell_installs_the_course_without_changing_colab_and_a_lesson_runs(tmp_path):
    repo = _clean_copy(tmp_path / "repo")
    python = _python("3.13")
    venv = tmp_path / "colab"
    env = _environment(venv / "bin", HOME=str(tmp_path / "home"))
    _run([str(python), "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    constraints = _colab_constraints(tmp_path / "colab-constraints.txt")
    _run(
        [
            "python",
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(constraints),
            "-r",
            str(COLAB_DATA / "runtime-subset.txt"),
        ],
        cwd=tmp_path,
        env=env,
    )
    before = _freeze(venv / "bin" / "python", env)
    colab = _colab_versions()
    assert before["ipykernel"] == colab["ipykernel"] == "6.17.1" and before["ipywidgets"] == "7.7.1"

    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        import sync_notebook_links as links
    finally:
        sys.path.remove(str(REPO_ROOT / "tools"))
    setup = re.sub(
        r'COURSE = ".*"',
        f'COURSE = "file://{repo}"',
        links.setup_cell(*links.settings(repo / "pyproject.toml")),
    )
    installed = subprocess.run(
        ["python", "-c", SETUP_CELL_AS_ON_COLAB],
        input=setup,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert installed.returncode == 0 and "installed tlcourse" in installed.stdout, (
        installed.stdout + installed.stderr
    )
    assert str(venv) in installed.stdout  # the package went into the runtime's own site-packages

    _run(["python", "-m", "pip", "check"], cwd=tmp_path, env=env)
    after = _freeze(venv / "bin" / "python", env)
    changed = {
        name: (version, after.get(name))
        for name, version in before.items()
        if name in colab and after.get(name) != version
    }
    assert not changed, f"installing the course changed Colab's packages: {changed}"

    # a lesson in the smoke profile, executed by the runtime's own kernel (ipykernel 6.17.1, ipywidgets 7.7.1)
    lesson = repo / "lessons" / "08_creative_brief.ipynb"
    execute = textwrap.dedent(
        f"""
        import nbformat, nbclient, ipywidgets
        assert ipywidgets.__version__ == "7.7.1", ipywidgets.__version__
        notebook = nbformat.read({str(lesson)!r}, as_version=4)
        nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                resources={{"metadata": {{"path": {str(lesson.parent)!r}}}}}).execute()
        widgets = [output for cell in notebook.cells for output in cell.get("outputs", [])
                   if "application/vnd.jupyter.widget-view+json" in output.get("data", {{}})]
        print("executed", len(notebook.cells), "cells;", len(widgets), "widget views")
        """
    )
    lesson_env = dict(env, TLCOURSE_PROFILE="smoke", MPLBACKEND="Agg")
    if mirror_path() is not None:
        lesson_env["TLCOURSE_MIRROR"] = str(mirror_path())
    ran = _run(["python", "-c", execute], cwd=tmp_path, env=lesson_env, check=False)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-5000:]
    assert re.search(r"executed \d+ cells; [1-9]\d* widget views", ran.stdout), ran.stdout


def _externally_managed_python(version: str, target: Path) -> Path:
    """A copy of CPython ``version`` marked externally managed (PEP 668), as Debian and Homebrew ship theirs."""
    source = _python(version).parents[1]
    shutil.copytree(
        source,
        target,
        symlinks=True,
        ignore=shutil.ignore_patterns("site-packages", "__pycache__", "test", "idlelib", "tkinter"),
    )
    python = target / "bin" / f"python{version}"
    stdlib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(stdlib).is_relative_to(target), stdlib
    (Path(stdlib) / "site-packages").mkdir(exist_ok=True)
    subprocess.run([str(python), "-m", "ensurepip"], capture_output=True, check=True)
    (Path(stdlib) / "EXTERNALLY-MANAGED").write_text(
        "[externally-managed]\nError=This Python is managed by the system: use a virtual environment.\n"
    )
    return python


def _readme_command(which: int) -> str:
    """The README's `which`-th command (0: set up and run the course; 1: set up and run the tests), verbatim."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)
    assert len(commands) == 2, commands
    return commands[which]


def test_readme_first_command_works_on_a_fresh_externally_managed_laptop_and_leaves_the_clone_clean(tmp_path):
    repo = _clean_copy(tmp_path / "repo")
    python = _externally_managed_python("3.12", tmp_path / "system-python")
    env = _environment(python.parent, HOME=str(tmp_path / "home"), TLCOURSE_PROFILE="smoke")
    if mirror_path() is not None:
        env["TLCOURSE_MIRROR"] = str(
            mirror_path()
        )  # a classroom mirror; without it smoke uses generated data
    for name in ("python3", "python"):  # Homebrew has both; Debian's python-is-python3 adds `python`
        (python.parent / name).unlink(missing_ok=True)
        os.symlink(python, python.parent / name)

    # the platform's problem: without a virtual environment pip refuses to install anything here
    refused = _run("python3 -m pip install -r requirements.txt", cwd=repo, env=env, check=False)
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, refused.stderr[
        -2000:
    ]

    command = _readme_command(0)
    assert "--profile auto" in command  # TLCOURSE_PROFILE=smoke is what `auto` reads first
    ran = _run(command, cwd=repo, env=env, check=False)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-3000:]
    statuses = _statuses(repo / "runs" / "latest")
    lessons = sorted(path.name for path in (repo / "lessons").glob("*.ipynb"))
    assert statuses == dict.fromkeys(lessons, "ok")
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # the virtual environment, the run's own output folder and the editable install's metadata are expected
    expected = re.compile(r"^!! (\.venv/|runs/|tlcourse\.egg-info/|(.*/)?__pycache__/)")
    written = [line for line in status if not expected.match(line)]
    assert not written, "running the course wrote into the checkout (ignored files included):\n" + "\n".join(
        written
    )


def test_supported_python_range_is_enforced_by_pip_and_stated_in_the_readme(tmp_path):
    from packaging.specifiers import SpecifierSet

    metadata = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tomllib,sys; print(tomllib.load(open('pyproject.toml','rb'))['project']['requires-python'])",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    supported = SpecifierSet(metadata)
    assert all(f"3.{minor}" in supported for minor in (11, 12, 13)), metadata
    assert "3.14" not in supported and "3.10" not in supported, (
        metadata
    )  # TensorFlow 2.21 has no wheels there
    assert "Python 3.11, 3.12 or 3.13" in (REPO_ROOT / "README.md").read_text()
    # pip itself refuses the course's wheel on a Python outside the range, and takes it on one inside
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    wheel = next(wheels.glob("tlcourse-*.whl"))

    def dry_run(python: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--no-deps",
                "--target",
                str(tmp_path / "t"),
                str(wheel),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert dry_run(Path(sys.executable)).returncode == 0
    refused = dry_run(_python("3.10"))  # a real interpreter just below the range (none above it is installed)
    assert refused.returncode != 0 and "requires a different Python" in refused.stderr, refused.stderr
