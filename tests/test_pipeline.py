"""`tlcourse train` and `tlcourse predict` end to end on tiny generated folders (tlcourse.cli.pipeline)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcourse import cli
from tlcourse.cli import pipeline

SIZE = 32
COLOURS = {"apples": (200, 30, 30), "grass": (30, 180, 40), "sky": (40, 60, 210)}


def _make_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-40, 40, size=(40, 48, 3))
            pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{name}_{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run `tlcourse train` once on a tiny folder (smoke profile, random weights, 32 px)."""
    base = tmp_path_factory.mktemp("pipeline")
    folder = _make_folder(base / "photos")
    out = base / "out"
    start = time.perf_counter()
    code = cli.main(
        [
            "train",
            str(folder),
            "--out",
            str(out),
            "--profile",
            "smoke",
            "--size",
            str(SIZE),
            "--weights",
            "random",
        ]
    )
    return {"code": code, "folder": folder, "out": out, "seconds": time.perf_counter() - start}


def test_train_writes_model_metrics_card_and_class_names(trained):
    assert trained["code"] == 0
    out = trained["out"]
    for name in ("model.keras", "metrics.json", "model_card.md", "class_names.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "head_val_accuracy",
        "head_test_accuracy",
        "test_accuracy",
        "test_accuracy_interval",
        "evaluation",
        "timings_seconds",
        "settings",
        "class_names",
        "data",
        "export",
        "history",
    ):
        assert key in metrics, key
    assert metrics["class_names"] == sorted(COLOURS)
    assert json.loads((out / "class_names.json").read_text()) == sorted(COLOURS)
    assert metrics["settings"]["image_size"] == SIZE and metrics["settings"]["profile"] == "smoke"
    counts = metrics["data"]
    assert counts["train_count"] + counts["validation_count"] + counts["test_count"] == 3 * 6
    assert metrics["evaluated_on"] == "test" and counts["test_count"] >= 3  # one test image a class at least
    for stage in ("audit", "load", "head", "fine_tune", "evaluate", "export", "total"):
        assert metrics["timings_seconds"][stage] >= 0
    assert metrics["timings_seconds"]["total"] <= trained["seconds"]
    assert metrics["history"]["phase_starts"][0] == 1 and len(metrics["history"]["phase_starts"]) == 2
    assert 0.0 <= metrics["head_val_accuracy"] <= 1.0
    card = (out / "model_card.md").read_text()
    assert "apples" in card
    assert f"Measured on {counts['test_count']} held-out test images" in card
    assert "validation images. Intervals" not in card


def test_model_card_of_a_validation_only_evaluation_says_validation():
    from tlcourse import modelcard

    card = modelcard.model_card(metrics={"evaluation": {"accuracy": 0.5, "n": 10}}, class_names=["a", "b"])
    assert "Measured on 10 held-out validation images" in card and "test images" not in card


def test_reported_test_accuracy_is_what_the_saved_model_scores_on_the_test_split(trained):
    from tlcourse import data, export
    from tlcourse.cli import pipeline
    from tlcourse.config import get_profile

    metrics = json.loads((trained["out"] / "metrics.json").read_text())
    model = export.load_keras(trained["out"] / "model.keras")
    profile = get_profile("smoke", image_size=SIZE)
    splits = data.load_for_profile(
        profile, source=str(trained["folder"]), image_size=SIZE, seed=42, test_fraction=pipeline.TEST_FRACTION
    )
    labels = np.concatenate([np.asarray(y) for _, y in splits.test])
    logits = model.predict(splits.test.map(lambda x, y: x), verbose=0)
    assert len(labels) == metrics["data"]["test_count"] == metrics["evaluation"]["n"]
    assert metrics["test_accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == labels)), abs=1e-6)
    per_class = metrics["evaluation"]
    assert any(name in json.dumps(per_class) for name in COLOURS)


def test_predict_prints_the_same_probabilities_as_the_model(trained, capsys):
    from tlcourse import export, imageio

    image = next((trained["folder"] / "sky").glob("*.png"))
    capsys.readouterr()
    code = cli.main(["predict", str(trained["out"] / "model.keras"), str(image), "--json", "--top", "3"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["path"] == str(image) and len(printed[0]["top"]) == 3
    model = export.load_keras(trained["out"] / "model.keras")
    pixels = imageio.load_image(image, SIZE).astype("float32")[None]
    logits = model.predict(pixels, verbose=0)[0]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    names = json.loads((trained["out"] / "class_names.json").read_text())
    for entry in printed[0]["top"]:
        assert entry["probability"] == pytest.approx(float(probs[names.index(entry["class"])]), abs=1e-5)
    assert printed[0]["top"][0]["class"] == names[int(np.argmax(probs))]


def test_predict_reports_a_non_image_file_and_still_classifies_the_others(trained, tmp_path, capsys):
    fake = tmp_path / "notes.jpg"
    fake.write_text("<html>not an image</html>")
    image = next((trained["folder"] / "grass").glob("*.png"))
    capsys.readouterr()
    code = cli.main(["predict", str(trained["out"] / "model.keras"), str(fake), str(image)])
    captured = capsys.readouterr()
    assert code == 1
    assert str(image) in captured.out and "notes.jpg" not in captured.out
    assert "notes.jpg" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("kind", ["empty", "one_class", "missing"])
def test_train_on_a_bad_folder_prints_one_clear_line_and_fails(kind, tmp_path, capsys):
    folder = tmp_path / "bad"
    if kind == "empty":
        folder.mkdir()
    elif kind == "one_class":
        _make_folder(tmp_path / "src", per_class=3)
        folder.mkdir()
        (tmp_path / "src" / "sky").rename(folder / "sky")
    code = cli.main(
        ["train", str(folder), "--out", str(tmp_path / "out"), "--profile", "smoke", "--weights", "random"]
    )
    captured = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in captured.err + captured.out
    message = [line for line in captured.err.splitlines() if line.startswith("tlcourse train:")]
    assert len(message) == 1 and len(message[0]) > len("tlcourse train: ") + 10
    assert not (tmp_path / "out" / "model.keras").exists()


@pytest.mark.slow
def test_train_on_the_mirror_flowers_beats_chance_by_far(mirror, tmp_path):
    """Real transfer: ImageNet weights on real photos (96 px, 16 images per class, a few epochs)."""
    import argparse

    out = tmp_path / "out"
    folder = mirror / "datasets" / "flower_photos_small"
    args = cli.build_parser().parse_args(
        [
            "train",
            str(folder),
            "--out",
            str(out),
            "--profile",
            "smoke",
            "--size",
            "96",
            "--mirror",
            str(mirror),
        ]
    )
    assert isinstance(args, argparse.Namespace)
    args.profile_overrides = {"max_images_per_class": 16, "head_epochs": 6, "fine_tune_epochs": 1}
    assert pipeline.train_command(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert metrics["head_val_accuracy"] > 0.4  # chance is 0.2; random weights stay near it


def test_retraining_with_force_keeps_the_earlier_model_and_a_failed_export_still_records_the_run(
    trained, tmp_path, monkeypatch, capsys
):
    import shutil

    from tlcourse import export

    out = tmp_path / "out"
    shutil.copytree(trained["out"], out)
    earlier = (out / "model.keras").read_bytes()

    def broken_save(*_args, **_kwargs):
        raise OSError("No space left on device (injected)")

    monkeypatch.setattr(export, "save_keras", broken_save)
    argv = ["train", str(trained["folder"]), "--out", str(out), "--profile", "smoke", "--size", str(SIZE)]
    code = cli.main([*argv, "--weights", "random", "--force"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "keras: FAILED OSError: No space left on device (injected)" in captured.out
    assert "kept in" in captured.out and "previous" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert "No space left" in metrics["export"]["keras"]["error"]
    assert "no (OSError" in (out / "model_card.md").read_text()
    assert (out / "previous" / "model.keras").read_bytes() == earlier
    assert not (out / "model.keras").exists()  # no model beside metrics that describe another one
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_rerun_after_a_crash_in_fine_tuning_reuses_the_head_phase_and_resumes(
    trained, tmp_path, monkeypatch, capsys
):
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("simulated crash in fine-tuning")

    real = pipeline._progress_kwargs

    def crashing(function, phase):
        kwargs = real(function, phase)
        if phase == "fine-tune":
            kwargs["callbacks"].append(Crash())
        return kwargs

    out = tmp_path / "out"
    argv = ["train", str(trained["folder"]), "--out", str(out), "--profile", "smoke", "--size", str(SIZE)]
    args = cli.build_parser().parse_args([*argv, "--weights", "random"])
    args.profile_overrides = {"fine_tune_epochs": 4}
    monkeypatch.setattr(pipeline, "_progress_kwargs", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train_command(args)
    assert not (out / "model.keras").exists()
    monkeypatch.setattr(pipeline, "_progress_kwargs", real)
    capsys.readouterr()
    assert pipeline.train_command(args) == 0
    text = capsys.readouterr().out
    assert "head phase reused" in text and "resumed from epoch 2" in text and "discarded" not in text
    assert "fine-tune epoch 1/" not in text and "fine-tune epoch 3/4" in text


def _settings_train_starts_with(tmp_path, monkeypatch, *extra: str) -> dict:
    """Run `tlcourse train` up to its first training call and return the width, size and augmented passes it
    passed on (the smoke profile's own passes are 0; its capstone setting here caches 1)."""
    from tlcourse import config, errors, fastpath
    from tlcourse.backbones import identity

    smoke = config.PROFILES["smoke"]
    assert smoke.augmented_passes == 0
    capstone = smoke.replace(capstone_alpha=0.5, capstone_image_size=48, capstone_augmented_passes=1)
    monkeypatch.setitem(config.PROFILES, "smoke", capstone)
    seen: dict = {}

    def stop(base, splits, **kwargs):
        built = identity(base)  # what the base is, read from the object fit_head_fast is given
        seen.update(alpha=built.width, image_size=built.input_size, loaded=splits.image_size)
        seen.update(passes=kwargs["profile"].augmented_passes)
        raise errors.TLCourseError("stopped by the test")

    monkeypatch.setattr(fastpath, "fit_head_fast", stop)
    folder = _make_folder(tmp_path / "photos", per_class=3)
    argv = ["train", str(folder), "--out", str(tmp_path / "out"), "--profile", "smoke", "--weights", "random"]
    assert cli.main([*argv, *extra]) == 2
    return seen


def test_train_uses_the_profiles_capstone_width_size_and_passes(tmp_path, monkeypatch):
    assert _settings_train_starts_with(tmp_path, monkeypatch) == {
        "alpha": 0.5,
        "image_size": 48,
        "loaded": 48,
        "passes": 1,
    }


def test_train_alpha_and_size_options_replace_the_capstone_setting(tmp_path, monkeypatch):
    seen = _settings_train_starts_with(tmp_path, monkeypatch, "--alpha", "0.35", "--size", "32")
    assert seen == {"alpha": 0.35, "image_size": 32, "loaded": 32, "passes": 1}


def test_formats_keras_writes_only_the_keras_model_and_records_the_choice(tmp_path):
    folder = _make_folder(tmp_path / "photos")
    out = tmp_path / "out"
    args = ["train", str(folder), "--out", str(out), "--profile", "smoke", "--size", str(SIZE)]
    assert cli.main([*args, "--weights", "random", "--formats", "keras"]) == 0
    assert (out / "model.keras").is_file()
    assert not (out / "saved_model").exists() and not (out / "model.tflite").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["formats"] == ["keras"] and list(metrics["export"]) == ["keras"]


@pytest.mark.parametrize(
    ("formats", "says"),
    [("keras,onnx", "onnx is not an export format"), ("tflite", "--formats must include keras")],
)
def test_a_bad_formats_list_is_refused_in_one_line_before_any_work(formats, says, tmp_path, capsys):
    folder = _make_folder(tmp_path / "photos", per_class=2)
    status = cli.main(["train", str(folder), "--out", str(tmp_path / "out"), "--formats", formats])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and says in lines[0], lines
    assert not (tmp_path / "out").exists()
