"""Rebuild each platform's environment the way that platform installs the course, and run lessons in it.

A test that reads a config file cannot fail on the real problem, so each environment is installed exactly as its
users install it (the helpers are in tests/envkit.py):

- A fresh laptop: an "externally managed" Python 3.12 (as on Debian 12+, Ubuntu 23.04+ and Homebrew), on which
  pip refuses to install without a virtual environment, and the README's first command run literally. It runs
  once per session (the ``laptop`` fixture in conftest.py) and its ``runs/latest`` is the session's one execution
  of the lessons, which tests/test_notebooks.py and tests/test_nbval_outputs.py read.
- Binder: Python 3.12 (binder/runtime.txt), the same Python as the laptop. pip's own resolver proves that
  ``binder/requirements.txt`` (what repo2docker installs) and the root ``requirements.txt`` resolve to the same
  packages, so Binder's image is the laptop's environment: binder/postBuild, binder/start and a lesson then run
  on it instead of installing everything again. The offline mirror stands in for Binder's downloads.
- Colab: Python 3.13 with Colab's own versions (tests/data/colab/), built fast with uv (that runtime is the
  precondition, not what is tested), then a notebook's setup cell, which installs with pip as on Colab; nothing of
  Colab's may change, and a lesson runs with Colab's ipywidgets 7.7.1 and ipykernel 6.17.1.

They need the pyenv Pythons 3.12 and 3.13 (on every machine of this project) and PyPI; under CI a missing Python
fails instead of skipping. Every rebuild shares this machine's pip cache and skips compiling bytecode.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import envkit
import pytest
from conftest import REPO_ROOT, mirror_path

pytestmark = [pytest.mark.slow, pytest.mark.environment]
COLAB_DATA = REPO_ROOT / "tests" / "data" / "colab"
INSTALL_TIMEOUT = envkit.INSTALL_TIMEOUT


def test_readme_first_command_works_on_a_fresh_externally_managed_laptop(laptop):
    # the platform's problem: without a virtual environment pip refuses to install anything here
    assert laptop.refused.returncode != 0, laptop.refused.stdout[-2000:]
    assert "externally-managed-environment" in laptop.refused.stderr, laptop.refused.stderr[-2000:]
    assert "--profile auto" in envkit.readme_command(0)  # TLCOURSE_PROFILE=smoke is what `auto` reads first
    assert laptop.ran.returncode == 0, laptop.ran.stdout[-4000:] + laptop.ran.stderr[-3000:]
    lessons = sorted(path.name for path in (laptop.repo / "lessons").glob("*.ipynb"))
    assert envkit.statuses(laptop.run_dir) == dict.fromkeys(lessons, "ok")


def test_running_the_course_leaves_the_clone_clean(laptop):
    """Byte for byte, ignored files included: what the lessons write goes under the run's --out folder."""
    # the virtual environment, the run's own output folder and the editable install's metadata are expected
    expected = re.compile(r"^!! (\.venv/|runs/|tlcourse\.egg-info/|(.*/)?__pycache__/)")
    written = [line for line in laptop.status_after if not expected.match(line)]
    assert not written, "running the course wrote into the checkout (ignored files included):\n" + "\n".join(
        written
    )


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


def resolved(
    python: Path, requirements: str, repo: Path, env: dict[str, str], report: Path
) -> dict[str, str]:
    """What pip's resolver would install from ``requirements`` into an empty environment: {name: version}."""
    envkit.run(
        [str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
         str(report), "-r", requirements],
        cwd=repo, env=env,
    )  # fmt: skip
    install = json.loads(report.read_text())["install"]
    return {envkit.normalise(item["metadata"]["name"]): item["metadata"]["version"] for item in install}


def test_binder_resolves_to_the_laptops_packages_and_its_postbuild_start_and_a_lesson_run_on_them(
    laptop, tmp_path
):
    repo = laptop.repo
    runtime = (repo / "binder" / "runtime.txt").read_text().strip()
    assert runtime == "python-3.12", "Binder's Python is the laptop's (3.12): the two share one environment"
    python = laptop.venv_python
    env = envkit.environment(python.parent, HOME=str(tmp_path / "home"))
    # repo2docker runs `pip install -r binder/requirements.txt` from the repository root
    with ThreadPoolExecutor(2) as pool:
        binder, root = pool.map(
            lambda name: resolved(
                python, name, repo, env, tmp_path / f"{Path(name).parent.name or 'root'}.json"
            ),
            ["binder/requirements.txt", "requirements.txt"],
        )
    assert binder == root, {name: (binder.get(name), root.get(name)) for name in set(binder) ^ set(root)}
    installed = envkit.freeze(python, env)
    missing = {name: version for name, version in root.items() if installed.get(name) != version}
    assert not missing, f"the laptop's environment is not what requirements.txt resolves to: {missing}"

    home = tmp_path / "home"
    _prefilled_mirror(home / ".tlcourse-mirror")
    built = envkit.run(["bash", "binder/postBuild"], cwd=repo, env=env)
    assert "Mirror ready" in built.stdout, built.stdout
    assert (home / ".jupyter" / "jupyter_server_config.json").is_file()
    status = envkit.run(
        ["bash", "binder/start", "python", "-m", "tlcourse", "assets", "status"], cwd=repo, env=env
    )
    assert "mirror:      ~/.tlcourse-mirror" in status.stdout  # shown under ~, never as the machine path
    out = tmp_path / "run"
    ran = envkit.run(
        ["bash", "binder/start", "python", "-m", "tlcourse", "run", "lessons/00_welcome.ipynb", "--profile",
         "smoke", "--out", str(out)],
        cwd=repo, env=env, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert envkit.statuses(out) == {"00_welcome.ipynb": "ok"}
    welcome = (out / "lessons" / "00_welcome.ipynb").read_text()
    assert "tlcourse-mirror" in welcome, "lesson 00 reads its weights from the mirror binder/start exports"


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
    repo = envkit.clean_copy(tmp_path / "repo")
    python = envkit.python("3.13")
    venv = tmp_path / "colab"
    env = envkit.environment(venv / "bin", HOME=str(tmp_path / "home"))
    constraints = _colab_constraints(tmp_path / "colab-constraints.txt")
    # Colab's preinstalled runtime is the precondition, not what is tested: uv builds it fastest (with pip in it,
    # as Colab has); the setup cell below installs the course with pip, as on Colab.
    uv = [sys.executable, "-m", "uv"]
    envkit.run([*uv, "venv", "--quiet", "--seed", "--python", str(python), str(venv)], cwd=tmp_path, env=env)
    envkit.run(
        [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-c", str(constraints),
         "-r", str(COLAB_DATA / "runtime-subset.txt")],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    before = envkit.freeze(venv / "bin" / "python", env)
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

    envkit.run(["python", "-m", "pip", "check"], cwd=tmp_path, env=env)
    after = envkit.freeze(venv / "bin" / "python", env)
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
    ran = envkit.run(["python", "-c", execute], cwd=tmp_path, env=lesson_env, check=False)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-5000:]
    assert re.search(r"executed \d+ cells; [1-9]\d* widget views", ran.stdout), ran.stdout


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
    refused = dry_run(
        envkit.python("3.10")
    )  # a real interpreter just below the range (none above it is installed)
    assert refused.returncode != 0 and "requires a different Python" in refused.stderr, refused.stderr
