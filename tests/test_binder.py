"""The Binder (repo2docker) files follow its conventions and agree with the project's own requirements."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BINDER = REPO_ROOT / "binder"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"([A-Za-z0-9_.-]+)\s*(==|>=)\s*([^;\s]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2) + match.group(3)
    return pins


def test_runtime_pins_a_python_new_enough_for_keras_3_13():
    text = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-3\.(\d+)", text)
    assert match and 11 <= int(match.group(1)) <= 12, text


def test_binder_requirements_agree_with_the_student_requirements():
    binder, student = _pins(BINDER / "requirements.txt"), _pins(REPO_ROOT / "requirements.txt")
    assert "tensorflow-cpu" in binder and "tensorflow" not in binder, "Binder has no GPU: use the CPU wheel"
    for name in ("tensorflow-cpu", "keras", "tensorflow-datasets", "importlib-resources"):
        assert binder[name] == student[name], f"{name}: binder {binder[name]} vs requirements.txt {student[name]}"


def test_post_build_is_strict_and_prepares_the_mirror_the_start_script_exports():
    post_build = (BINDER / "postBuild").read_text()
    start = (BINDER / "start").read_text()
    assert post_build.startswith("#!/usr/bin/env bash") and re.search(r"^set -e", post_build, re.M)
    assert "pip install" in post_build and "tlcourse assets prepare --mirror" in post_build
    mirror = re.search(r'tlcourse assets prepare --mirror "([^"]+)"', post_build).group(1)
    assert f'TLCOURSE_MIRROR="{mirror}"' in start
    assert start.rstrip().splitlines()[-1] == 'exec "$@"'
    for script in ("postBuild", "start"):
        assert (BINDER / script).stat().st_mode & 0o111, f"binder/{script} must be executable"
