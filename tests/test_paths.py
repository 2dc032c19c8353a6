"""tlcourse.paths.display_path: what lessons, reports and model cards show of a file's location, and the lines
of the library that use it (issue 31: lesson outputs carried the machine's absolute paths)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tlcourse import zeroshot
from tlcourse.paths import WORK_DIR_VARIABLE, display_path


@pytest.fixture
def anchored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home, a mirror and a current folder under ``tmp_path``, and no run's work folder."""
    for name in ("home", "mirror", "course/lessons"):
        (tmp_path / name).mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLCOURSE_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.delenv(WORK_DIR_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path / "course" / "lessons")
    return tmp_path


def test_a_path_is_shown_relative_to_the_folder_it_belongs_to_or_under_a_name_everyone_knows(anchored: Path):
    assert display_path(anchored / "course" / "lessons" / "out" / "model.keras") == "out/model.keras"
    assert display_path(anchored / "home" / ".keras" / "models" / "w.h5") == "~/.keras/models/w.h5"
    assert display_path(anchored / "mirror" / "samples" / "owl.jpg") == "$TLCOURSE_MIRROR/samples/owl.jpg"
    assert (
        display_path(anchored / "course" / "runs" / "a.ipynb", base=anchored / "course" / "runs") == "a.ipynb"
    )
    assert display_path("relative/stays.txt") == "relative/stays.txt"
    assert display_path("~/photos") == "~/photos"


def test_the_mirror_itself_is_named_by_where_it_is_and_a_stranger_path_by_its_last_parts(anchored: Path):
    assert display_path(anchored / "mirror") != "$TLCOURSE_MIRROR"
    assert str(anchored) not in display_path(anchored / "mirror")
    assert display_path("/opt/elsewhere/data/photos") == ".../data/photos"


def test_a_run_s_work_folder_makes_its_paths_read_as_they_do_when_the_notebook_runs_alone(
    anchored: Path, monkeypatch: pytest.MonkeyPatch
):
    work = anchored / "runs" / "lessons" / "08_creative_brief_files"
    monkeypatch.setenv(WORK_DIR_VARIABLE, str(work))
    assert display_path(work / "capstone_output" / "model_card.md") == "capstone_output/model_card.md"


def test_a_temporary_folder_is_shown_under_tmpdir():
    folder = Path(tempfile.mkdtemp(prefix="tlcourse-features-"))
    try:
        assert display_path(folder) == f"$TMPDIR/{folder.name}"
    finally:
        folder.rmdir()


def test_lesson_01s_classifier_line_names_its_file_without_the_machines_path(
    mirror: Path, no_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "KERAS_HOME", str(tmp_path / "keras_home")
    )  # no Keras weights: the mirror's TFLite file
    classifier = zeroshot.load_imagenet_classifier(0.35, 224, mirror=mirror)
    line = classifier.describe()
    assert "mobilenet_v2_1.0_224_quant.tflite" in line and str(mirror) not in line


def test_a_folder_datasets_source_line_names_the_folder_without_the_machines_path(tmp_path: Path) -> None:
    """Lesson 08 prints it and its model card records it."""
    from badimages import write_jpeg

    from tlcourse.data import load_dataset

    for label, colour in (("a", (200, 20, 20)), ("b", (20, 20, 200))):
        for index in range(3):
            write_jpeg(tmp_path / "photos" / label / f"{index}.jpg", (32, 32), colour, seed=index)
    splits = load_dataset(str(tmp_path / "photos"), image_size=32, batch_size=2)
    assert splits.source.startswith("folder:") and str(tmp_path) not in splits.source
    assert splits.source.endswith("/photos")
