"""What a run of the course leaves behind names no folder of the machine it ran on (issue 31).

Executed notebooks are shared, reports are read elsewhere and model cards travel with their model: a path like
``/home/alice/...`` or ``/tmp/pytest-7/...`` in them means nothing to the reader and tells more than it should.
Checked on the `smoke_run` fixture (tests/conftest.py: the ``--out`` folder of ``tlcourse run lessons --profile
smoke``): every cell output of every executed notebook, the run's reports and manifest, and every text file the
notebooks wrote (lesson 08's model card among them).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".md", ".json", ".txt", ".csv", ".yaml", ".yml", ".html"}
"""Files a notebook or the runner writes that a person reads (the executed notebooks' own HTML is left out:
it is rendered from the .ipynb checked here)."""
WINDOWS_PATH = re.compile(r"(?<![A-Za-z])[A-Za-z]:\\(?:Users|Windows|Program Files|ProgramData)\\")


def machine_folders(run: Path) -> list[str]:
    """The absolute folders of this machine that a run could leak, longest first (a path under two counts once)."""
    candidates = {
        run.resolve(),
        REPO_ROOT,
        Path.home(),
        Path(tempfile.gettempdir()).resolve(),
        Path(sys.prefix).resolve(),
        Path(sys.base_prefix).resolve(),
    }
    for variable in ("TLCOURSE_MIRROR", "KERAS_HOME", "TLCOURSE_HOME"):
        if os.environ.get(variable):
            candidates.add(Path(os.environ[variable]).expanduser().resolve())
    # "/tmp/" but not "/tmp" alone: a folder name inside a word or a $TMPDIR/... display is not a leak
    return sorted(
        {str(folder).rstrip("/\\") + "/" for folder in candidates if len(folder.parts) > 1}, key=len
    )[::-1]


def _output_texts(output: dict) -> Iterator[str]:
    if "text" in output:
        yield "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
    for mime, value in (output.get("data") or {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            yield "".join(value) if isinstance(value, list) else json.dumps(value)
    if "traceback" in output:
        yield "\n".join(output["traceback"])


def readable_texts(run: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for every cell output of every executed notebook and every text file in the run."""
    for notebook in sorted(run.rglob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
        for number, cell in enumerate(cells):
            for output in cell.get("outputs", []):
                for text in _output_texts(output):
                    yield f"{notebook.relative_to(run)} cell {number}", text
    for path in sorted(run.rglob("*")):
        if (
            not path.is_file()
            or path.suffix not in TEXT_SUFFIXES
            and not path.name.startswith(".tlcourse-run")
        ):
            continue
        if path.suffix == ".html" and path.with_suffix(".ipynb").is_file():
            continue
        yield str(path.relative_to(run)), path.read_text(encoding="utf-8", errors="replace")


def leaks(text: str, folders: list[str]) -> list[str]:
    """The machine paths in ``text``: each occurrence of one of ``folders`` (with what follows it), and any
    Windows user or system path."""
    found = []
    for folder in folders:
        for match in re.finditer(re.escape(folder) + r"[^\s'\"<>)\]]*", text):
            found.append(match.group(0))
        text = text.replace(folder, "")
    return found + WINDOWS_PATH.findall(text)


def test_the_leak_check_finds_machine_paths_and_lets_display_paths_through(tmp_path):
    folders = machine_folders(tmp_path)
    home = str(Path.home())
    assert leaks(f"wrote {home}/runs/model_card.md", folders) == [f"{home}/runs/model_card.md"]
    assert leaks(f"cache: {Path(tempfile.gettempdir())}/tlcourse-features-x1", folders)
    assert leaks(r"saved to C:\Users\ada\model.keras", folders)
    assert not leaks("wrote capstone_output/model_card.md; cache $TMPDIR/tlcourse-features-x1", folders)
    assert not leaks("mirror: ~/.cache/tlcourse/mirror (the per-user mirror)", folders)


def test_no_output_report_or_artifact_of_a_smoke_run_names_a_folder_of_the_machine(smoke_run: Path):
    assert (smoke_run / "report.json").is_file(), "smoke_run is the --out folder of a finished run"
    folders = machine_folders(smoke_run)
    found = {}
    for where, text in readable_texts(smoke_run):
        for leak in leaks(text, folders):
            found.setdefault(where, []).append(leak)
    assert not found, "absolute machine paths:\n" + "\n".join(
        f"  {where}: {', '.join(sorted(set(paths))[:3])}" for where, paths in found.items()
    )


LIBRARY_WARNING = re.compile(r"[\\/]site-packages[\\/](?!tlcourse)[^\s:]+:\d+: \w*Warning: [^\n]*")
"""A Python warning raised inside another package (``.../site-packages/keras/...py:74: UserWarning: ...``): the
student can do nothing with it, and it carries a machine path. The course's own warnings are left to the lessons."""


def library_warnings(text: str) -> list[str]:
    return [match.group(0).split(": ", 1)[1] for match in LIBRARY_WARNING.finditer(text)]


def test_the_warning_check_finds_a_library_warning_and_leaves_the_courses_own():
    keras = "/opt/venv/lib/python3.12/site-packages/keras/src/trainers/epoch_iterator.py:74: UserWarning: `shuffle`"
    assert library_warnings(keras + "\n  self.data_adapter = ...") == ["UserWarning: `shuffle`"]
    course = (
        "/opt/venv/lib/python3.12/site-packages/tlcourse/data/real.py:80: UserWarning: generated pictures"
    )
    assert not library_warnings(course) and not library_warnings("accuracy 0.80: no Warning: here")


def test_no_lesson_shows_a_warning_raised_inside_another_library(smoke_run: Path):
    found = {}
    for where, text in readable_texts(smoke_run):
        warned = library_warnings(text)
        if warned and re.search(r"\.ipynb cell \d+$", where):  # cell outputs, not the run's log files
            found[where] = warned
    assert not found, "warnings from other libraries in the lessons' outputs:\n" + "\n".join(
        f"  {where}: {warned[0][:160]}" for where, warned in found.items()
    )


def test_lesson_08s_model_card_is_among_the_files_checked(smoke_run: Path):
    checked = {where for where, _ in readable_texts(smoke_run)}
    assert any(where.endswith("model_card.md") for where in checked), sorted(checked)[:20]
