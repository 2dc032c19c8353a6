"""The code, tests and notebooks pass ruff (style, imports, likely bugs) as configured in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_repository_passes_ruff_check():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_python_files_are_formatted_with_ruff_format():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, "run `ruff format .`:\n" + done.stdout + done.stderr
