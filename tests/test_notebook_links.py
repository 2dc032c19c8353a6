"""Every notebook's badges and Colab install come from one setting in pyproject.toml (tools/sync_notebook_links.py)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


links = _tool("sync_notebook_links")


def _notebooks(root: Path) -> list[Path]:
    return [path for folder in links.NOTEBOOK_FOLDERS for path in sorted((root / folder).glob("*.ipynb"))]


def _first_cells(path: Path) -> tuple[str, str]:
    notebook = nbformat.read(path, as_version=4)
    markdown = next(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    code = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    return markdown, code


def test_every_notebook_and_the_readme_agree_with_the_one_link_setting():
    disagree = links.sync(REPO_ROOT, write=False)
    assert not disagree, f"run python tools/sync_notebook_links.py: {disagree}"
    slug, ref = links.settings()
    for path in _notebooks(REPO_ROOT):
        markdown, setup = _first_cells(path)
        relpath = path.relative_to(REPO_ROOT).as_posix()
        assert f"colab.research.google.com/github/{slug}/blob/{ref}/{relpath})" in markdown
        assert f"mybinder.org/v2/gh/{slug}/{ref}?urlpath=lab/tree/{relpath})" in markdown
        assert f'COURSE = "https://github.com/{slug}/archive/{ref}.zip"' in setup  # the same ref as the badge


def test_changing_the_setting_and_running_the_tool_rewrites_every_badge_and_install_line(tmp_path):
    for folder in links.NOTEBOOK_FOLDERS:
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    old_slug, old_ref = links.settings()
    pyproject = re.sub(
        r'(?m)^Repository = ".*"$', 'Repository = "https://github.com/school-x/course-fork"', pyproject
    )
    pyproject = re.sub(r'(?m)^notebook_ref = ".*"$', 'notebook_ref = "v9.8.7"', pyproject)
    (tmp_path / "pyproject.toml").write_text(pyproject)

    assert links.main(["--root", str(tmp_path), "--check"]) == 1
    assert links.main(["--root", str(tmp_path)]) == 0
    assert links.main(["--root", str(tmp_path), "--check"]) == 0

    notebooks = _notebooks(tmp_path)
    assert len(notebooks) == len(_notebooks(REPO_ROOT)) > 0
    for path in notebooks:
        relpath = path.relative_to(tmp_path).as_posix()
        text = path.read_text()
        assert old_slug not in text, f"{relpath} still names {old_slug}"
        markdown, setup = _first_cells(path)
        assert f"github/school-x/course-fork/blob/v9.8.7/{relpath})" in markdown
        assert f"gh/school-x/course-fork/v9.8.7?urlpath=lab/tree/{relpath})" in markdown
        assert 'COURSE = "https://github.com/school-x/course-fork/archive/v9.8.7.zip"' in setup
    readme = (tmp_path / "README.md").read_text()
    assert "school-x/course-fork/blob/v9.8.7/lessons/00_welcome.ipynb" in readme and old_slug not in readme
    # the generated exercises still agree with their solutions after the rewrite
    make_exercises = _tool("make_exercises")
    assert make_exercises.stale_files(tmp_path / "solutions", tmp_path / "exercises") == []


def test_colab_setup_cell_never_installs_tensorflow_and_needs_no_git():
    setup = links.setup_cell(*links.settings())
    code = "\n".join(line for line in setup.splitlines() if not line.lstrip().startswith("#"))
    assert "tensorflow" not in code.lower()
    assert "git+" not in setup and ".zip" in setup


def test_a_failed_colab_install_prints_one_sentence_and_stops_cleanly(tmp_path):
    setup = links.setup_cell(*links.settings())
    setup = re.sub(r'COURSE = ".*"', f'COURSE = "file://{tmp_path}/no-such-archive.zip"', setup)
    script = textwrap.dedent(
        """
        import sys, types
        sys.modules["google.colab"] = types.ModuleType("google.colab")  # what the setup cell checks for
        try:
            exec(compile(sys.stdin.read(), "setup-cell", "exec"))
        except SystemExit as stop:
            print("STOPPED:", stop)
        else:
            print("NOT STOPPED")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], input=setup, capture_output=True, text=True, timeout=120
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "STOPPED: Installing the course library from file://" in out and "Restart session" in out
    assert "Traceback" not in out + result.stderr and "CalledProcessError" not in out + result.stderr
