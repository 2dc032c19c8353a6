"""tlcourse.audit and `tlcourse check-data`: every bad-input rule, the JSON shape, exit codes, read-only, speed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from badimages import (
    BLUE,
    DUPLICATE_ACROSS_SPLITS,
    DUPLICATE_VIA_SYMLINK,
    DUPLICATE_WITHIN_SPLIT,
    RED,
    make_bad_folder,
    snapshot,
    write_bytes,
    write_jpeg,
)

from tlcourse.audit import AuditReport, audit_folder
from tlcourse.cli import main
from tlcourse.cli.checkdata import format_report
from tlcourse.errors import DataError
from tlcourse.imageio import load_image


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("student") / "my photos"
    return root, make_bad_folder(root)


@pytest.fixture(scope="module")
def bad_report(bad_folder) -> AuditReport:
    return audit_folder(bad_folder[0])


def _outcome(report: AuditReport, relpath: str) -> str:
    """What the audit decided for one file or folder, in the vocabulary of tests/badimages.py."""
    if relpath in {record.relpath for record in report.records}:
        return "usable"
    for item in report.problems:
        if item.path == relpath:
            return f"problem: {item.problem}"
    if relpath in report.ignored or any(
        entry.endswith("/") and relpath.startswith(entry) for entry in report.ignored
    ):
        return "ignored"
    return "excluded or missing"


def test_every_file_in_the_bad_folder_gets_its_expected_outcome(bad_folder, bad_report):
    _root, expected = bad_folder
    wrong = {}
    for relpath, outcome in expected.items():
        got = _outcome(bad_report, relpath)
        if outcome.startswith("problem: "):
            ok = got.startswith("problem: ") and outcome.removeprefix("problem: ") in got
        elif outcome == "excluded":
            ok = got == "excluded or missing" and relpath.split("/")[1] in bad_report.excluded
        else:
            ok = got == outcome
        if not ok:
            wrong[relpath] = (outcome, got)
    assert not wrong, wrong
    # Nothing the audit reports is unaccounted for, and no file is reported twice.
    reported = [record.relpath for record in bad_report.records] + [item.path for item in bad_report.problems]
    assert len(reported) == len(set(reported))
    assert set(reported) <= set(expected)


def test_usable_counts_classes_and_verdict(bad_folder, bad_report):
    _root, expected = bad_folder
    assert bad_report.usable and bad_report.reason == ""
    assert list(bad_report.classes) == ["cats", "dogs"]  # sorted; empty_class and solo left out
    for label in ("cats", "dogs"):
        usable = [
            path for path, outcome in expected.items() if outcome == "usable" and path.split("/")[1] == label
        ]
        assert bad_report.classes[label] == len(usable)
    assert bad_report.splits == ["train", "validation"]
    assert bad_report.split_counts["validation"] == {"cats": 3, "dogs": 2}
    assert sum(bad_report.split_counts["train"].values()) + 5 == sum(bad_report.classes.values())
    assert bad_report.excluded == {"empty_class": 0, "solo": 1}
    assert {record.split for record in bad_report.records} == {"train", "validation"}


def test_empty_and_one_image_classes_are_flagged_and_min_per_class_decides(bad_folder, bad_report):
    text = " ".join(bad_report.warnings)
    assert "empty_class" in text and "solo" in text
    relaxed = audit_folder(bad_folder[0], min_per_class=1)
    assert "solo" in relaxed.classes and "empty_class" not in relaxed.classes
    strict = audit_folder(bad_folder[0], min_per_class=10)
    assert list(strict.classes) == ["cats"] and not strict.usable
    assert "only one class" in strict.reason and "\n" not in strict.reason


def test_duplicates_within_and_across_splits_are_reported_as_pairs(bad_report):
    assert DUPLICATE_WITHIN_SPLIT in bad_report.duplicates
    assert DUPLICATE_ACROSS_SPLITS in bad_report.duplicates
    if os.path.islink(bad_report.root / DUPLICATE_VIA_SYMLINK[1]):
        assert DUPLICATE_VIA_SYMLINK in bad_report.duplicates
    assert any("inflate validation accuracy" in warning for warning in bad_report.warnings)
    assert not audit_folder(bad_report.root, check_duplicates=False).duplicates


def test_tiny_images_are_usable_but_warned_about(bad_report):
    assert "train/cats/tiny_1x1.png" in {record.relpath for record in bad_report.records}
    assert any("tiny" in warning and "32 px" in warning for warning in bad_report.warnings)


def test_every_usable_record_loads_as_rgb_of_the_training_size(bad_report):
    for record in bad_report.records:
        array = load_image(record.path, 48)
        assert array.shape == (48, 48, 3) and array.dtype == np.uint8, record.relpath


def test_audit_and_check_data_leave_the_folder_byte_for_byte_unchanged(bad_folder, capsys):
    root, _expected = bad_folder
    outside = root.parent / f"{root.name}_outside"
    before = snapshot(root), snapshot(outside)
    audit_folder(root)
    assert main(["check-data", str(root), "--json"]) == 0
    assert main(["check-data", str(root)]) == 0
    capsys.readouterr()
    assert (snapshot(root), snapshot(outside)) == before


def test_check_data_json_has_the_documented_shape(bad_folder, capsys):
    root, _expected = bad_folder
    assert main(["check-data", str(root), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert {"classes", "problems", "ignored", "duplicates", "usable"} <= set(data)
    assert set(data) <= {"classes", "problems", "ignored", "duplicates", "usable", "warnings", "splits"} | {
        "split_counts",
        "reason",
        "near_duplicates",
    }
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in data["near_duplicates"])
    assert data["usable"] is True
    assert data["classes"] == {"cats": data["classes"]["cats"], "dogs": data["classes"]["dogs"]}
    assert all(isinstance(count, int) and count > 0 for count in data["classes"].values())
    assert all(set(item) == {"path", "problem"} for item in data["problems"])
    assert "train/cats/empty.jpg" in {item["path"] for item in data["problems"]}
    assert all(isinstance(path, str) for path in data["ignored"])
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in data["duplicates"])
    assert list(DUPLICATE_ACROSS_SPLITS) in data["duplicates"]
    assert data["splits"] == ["train", "validation"] and data["reason"] == ""


def test_check_data_text_report_names_problems_and_the_verdict(bad_report):
    text = format_report(bad_report)
    assert "train/cats/truncated.jpg" in text and "truncated" in text
    assert "Result: usable" in text
    assert "validation/cats/same_as_train.jpg" in text


def test_unusable_folder_exits_1_with_a_one_line_reason_on_stderr(tmp_path, capsys):
    for index in range(3):
        write_jpeg(tmp_path / "only_class" / f"{index}.jpg", seed=index)
    assert main(["check-data", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["usable"] is False
    reason_lines = captured.err.strip().splitlines()
    assert len(reason_lines) == 1 and "two classes" in reason_lines[0]
    assert main(["check-data", str(tmp_path)]) == 1
    assert "NOT usable" in capsys.readouterr().out


def test_missing_or_non_folder_path_is_a_clear_error_and_exit_2(tmp_path, capsys):
    with pytest.raises(DataError, match="No folder"):
        audit_folder(tmp_path / "nowhere")
    assert main(["check-data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "No folder" in err and "Traceback" not in err
    file_path = write_jpeg(tmp_path / "a.jpg")
    assert main(["check-data", str(file_path), "--json"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_split_folder_aliases_val_valid_and_test_are_recognised(tmp_path):
    for split in ("train", "val", "test"):
        for label, color in (("b", BLUE), ("a", RED)):
            for index in range(2):
                write_jpeg(
                    tmp_path / split / label / f"{index}.jpg",
                    color=color,
                    seed=hash((split, label, index)) % 999,
                )
    report = audit_folder(tmp_path)
    assert report.splits == ["train", "validation", "test"]
    assert list(report.classes) == ["a", "b"] and report.classes == {"a": 6, "b": 6}
    assert {record.split for record in report.records} == {"train", "validation", "test"}
    assert all(record.relpath.startswith(("train/", "val/", "test/")) for record in report.records)
    (tmp_path / "val").rename(tmp_path / "valid")
    assert audit_folder(tmp_path).split_counts["validation"] == {"a": 2, "b": 2}


def test_flat_layout_counts_nested_folders_for_their_class_and_sorts_classes(tmp_path):
    write_jpeg(tmp_path / "zebra" / "z1.jpg", seed=1)
    write_jpeg(tmp_path / "zebra" / "2019" / "summer" / "z2.jpg", seed=2)
    write_jpeg(tmp_path / "Apple" / "a1.jpg", seed=3)
    write_jpeg(tmp_path / "Apple" / "a2.jpg", seed=4)
    write_jpeg(tmp_path / "mango" / "m1.jpg", seed=5)
    write_jpeg(tmp_path / "mango" / "m2.jpg", seed=6)
    report = audit_folder(tmp_path, progress=True)
    assert report.splits == [] and report.usable
    assert list(report.classes) == sorted(["zebra", "Apple", "mango"])
    assert report.classes["zebra"] == 2
    assert {record.split for record in report.records} == {None}


def test_class_missing_from_train_is_left_out(tmp_path):
    for label in ("cats", "dogs"):
        for index in range(2):
            write_jpeg(tmp_path / "train" / label / f"{index}.jpg", seed=hash((label, index)) % 999)
            write_jpeg(tmp_path / "validation" / label / f"{index}.jpg", seed=500 + hash((label, index)) % 99)
    for index in range(3):
        write_jpeg(tmp_path / "validation" / "birds" / f"{index}.jpg", seed=900 + index)
    report = audit_folder(tmp_path)
    assert "birds" not in report.classes and report.usable
    assert any("birds" in warning and "train" in warning for warning in report.warnings)


def test_no_train_folder_or_loose_images_give_a_one_line_reason(tmp_path):
    write_jpeg(tmp_path / "loose" / "a.jpg", seed=1)
    write_jpeg(tmp_path / "loose" / "b.jpg", seed=2)
    loose = audit_folder(tmp_path / "loose")
    assert not loose.usable and "directly in" in loose.reason
    for label in ("a", "b"):
        for index in range(2):
            write_jpeg(
                tmp_path / "val_only" / "validation" / label / f"{index}.jpg", seed=10 * index + ord(label)
            )
    val_only = audit_folder(tmp_path / "val_only")
    assert not val_only.usable and "no train/" in val_only.reason
    (tmp_path / "nothing").mkdir()
    nothing = audit_folder(tmp_path / "nothing")
    assert not nothing.usable and "no class folders" in nothing.reason


def test_symlinked_class_folder_inside_is_followed_and_one_outside_is_not(tmp_path):
    root = tmp_path / "data"
    for label in ("cats", "dogs"):
        for index in range(2):
            write_jpeg(root / label / f"{index}.jpg", seed=hash((label, index)) % 999)
    write_jpeg(tmp_path / "elsewhere" / "x.jpg", seed=7)
    write_jpeg(tmp_path / "elsewhere" / "y.jpg", seed=8)
    try:
        os.symlink(root / "cats", root / "kittens")
        os.symlink(tmp_path / "elsewhere", root / "secrets")
        os.symlink(root, root / "dogs" / "up")  # a loop back to the root
    except OSError:
        pytest.skip("symlinks are not available here")
    report = audit_folder(root)
    assert report.classes == {"cats": 2, "dogs": 2, "kittens": 2}
    assert ("cats/0.jpg", "kittens/0.jpg") in report.duplicates
    assert [item.problem for item in report.problems if item.path == "secrets"] == [
        "symlink leads outside the folder (not followed)"
    ]
    assert not any("elsewhere" in os.path.realpath(record.path) for record in report.records)
    assert "dogs/up/" in report.ignored


def test_hidden_and_system_files_never_count_as_images(tmp_path):
    for label in ("a", "b"):
        write_jpeg(tmp_path / label / "1.jpg", seed=ord(label))
        write_jpeg(tmp_path / label / "2.jpg", seed=ord(label) + 50)
        write_jpeg(tmp_path / label / ".hidden.jpg", seed=ord(label) + 99)
        write_bytes(tmp_path / label / "._1.jpg", b"\x00\x05\x16\x07")
    report = audit_folder(tmp_path)
    assert report.classes == {"a": 2, "b": 2} and not report.problems
    assert "a/._1.jpg" in report.ignored and "b/.hidden.jpg" in report.ignored


@pytest.mark.mirror
def test_a_thousand_real_photos_audit_well_under_30_seconds(mirror):
    folder = mirror / "datasets" / "flower_photos_small"
    if not folder.is_dir():
        pytest.skip("the mirror has no datasets/flower_photos_small")
    start = time.perf_counter()
    report = audit_folder(folder)
    seconds = time.perf_counter() - start
    print(f"audited {sum(report.classes.values())} photos in {seconds:.2f} s")
    assert sum(report.classes.values()) == 1000 and report.usable and not report.problems
    assert seconds < 15


def test_without_imagehash_the_audit_still_works_and_says_near_duplicates_were_not_checked(
    tmp_path, monkeypatch
):
    import builtins

    from tlcourse import audit

    for label in ("a", "b"):
        write_jpeg(tmp_path / label / "1.jpg", seed=ord(label))
        write_jpeg(tmp_path / label / "2.jpg", seed=ord(label) + 50)
    real_import = builtins.__import__

    def no_imagehash(name, *args, **kwargs):
        if name == "imagehash":
            raise ImportError("No module named 'imagehash'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_imagehash)
    report = audit.audit_folder(tmp_path)
    assert report.classes == {"a": 2, "b": 2} and not report.problems
    assert any("install the imagehash package" in warning for warning in report.warnings)
