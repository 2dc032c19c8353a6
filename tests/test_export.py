"""tlcourse.export: .keras in safe mode, SavedModel and TFLite round trips, export_all and the model card."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tlcourse import export, modelcard
from tlcourse.errors import TLCourseError

SIZE = 32


def _scale_layer_class():
    """A custom preprocessing layer, registered the way the course's own layers are."""
    import keras

    name = "tlcourse_test>ScaleShift"
    if name in keras.saving.get_custom_objects():
        return keras.saving.get_custom_objects()[name]

    @keras.saving.register_keras_serializable(package="tlcourse_test")
    class ScaleShift(keras.layers.Layer):
        def __init__(self, scale: float = 1 / 127.5, offset: float = -1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale
            self.offset = offset

        def call(self, inputs):
            return inputs * self.scale + self.offset

        def get_config(self):
            return {**super().get_config(), "scale": self.scale, "offset": self.offset}

    return ScaleShift


def _tiny_backbone():
    """A few MobileNetV2-style layers (conv, BatchNorm, ReLU6, depthwise, residual) as a nested Functional."""
    import keras

    layers = keras.layers
    inp = keras.Input((SIZE, SIZE, 3))
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2, padding="same")(inp)))
    y = layers.ReLU(6.0)(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x)))
    y = layers.BatchNormalization()(layers.Conv2D(8, 1)(y))
    x = layers.Add()([x, y])
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(16, 1)(x)))
    return keras.Model(inp, x, name="tiny_backbone")


def _classifier(custom: bool = False, num_classes: int = 3):
    """Tiny version of models.build_classifier: raw pixels -> preprocessing -> nested backbone -> head."""
    import keras

    keras.utils.set_random_seed(1)
    backbone = _tiny_backbone()
    raw = keras.Input((SIZE, SIZE, 3))
    prep = _scale_layer_class()(name="preprocess") if custom else keras.layers.Rescaling(1 / 127.5, offset=-1)
    x = backbone(prep(raw), training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(raw, keras.layers.Dense(num_classes)(x), name="tiny_classifier")
    # move BatchNorm statistics away from their defaults so a lost weight would show in the outputs
    rng = np.random.default_rng(0)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [gamma, beta, rng.normal(0, 0.5, mean.shape), var + rng.uniform(0, 0.5, var.shape)]
            )
    return model


def _batch(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """export_all once, on a tiny classifier with a registered custom preprocessing layer."""
    model = _classifier(custom=True)
    out = tmp_path_factory.mktemp("export")
    return model, out, export.export_all(model, out, _batch())


# ---------------------------------------------------------------------------------------------- round trips


def test_every_format_round_trips_within_tolerance_over_the_whole_batch(exported):
    _, out, result = exported
    assert set(result) == {"keras", "saved_model", "tflite"}
    assert (out / "model.keras").is_file() and (out / "saved_model" / "saved_model.pb").is_file()
    assert (out / "model.tflite").is_file()
    for kind, info in result.items():
        assert "error" not in info, info
        assert info["ok"] is True, (kind, info)
        assert 0.0 <= info["max_abs_diff"] <= export.TOLERANCES[kind]
        assert info["bytes"] > 1_000
    json.dumps(result)  # plain values, ready for metrics.json


def test_round_trip_compares_every_example_of_the_batch(exported, tmp_path):
    model, out, _ = exported
    batch = _batch(5)
    reloaded = export.predict_tflite(out / "model.tflite", batch)
    assert reloaded.shape == (5, 3)
    np.testing.assert_allclose(reloaded, model.predict(batch, verbose=0), atol=1e-3)
    # a model with other weights is caught
    import keras

    other = keras.models.clone_model(model)
    other.set_weights(model.get_weights())
    other.layers[-1].set_weights([w + 0.5 for w in other.layers[-1].get_weights()])
    path = export.save_keras(model, tmp_path / "copy.keras")
    assert export.round_trip(model, batch, path) <= 1e-5
    assert export.round_trip(other, batch, path) > 0.1


def test_round_trip_looks_at_every_example_not_just_the_first(exported, monkeypatch):
    model, out, _ = exported
    batch = _batch(5)
    expected = model.predict(batch, verbose=0)
    wrong_last = expected.copy()
    wrong_last[-1] += 0.25
    monkeypatch.setattr(export, "predict_tflite", lambda path, images: wrong_last)
    assert export.round_trip(model, batch, out / "model.tflite") == pytest.approx(0.25, abs=1e-5)


def test_saved_model_loads_back_as_a_keras_layer(exported):
    import keras

    model, out, _ = exported
    layer = keras.layers.TFSMLayer(str(out / "saved_model"), call_endpoint="serve")
    batch = _batch(3)
    np.testing.assert_allclose(np.asarray(layer(batch)), model.predict(batch, verbose=0), atol=1e-5)


def test_export_all_reports_a_broken_format_and_still_runs_the_others(tmp_path):
    model = _classifier()
    result = export.export_all(
        model, tmp_path, _batch(2), formats=("keras", "tflite"), tolerances={"keras": -1.0}
    )
    assert result["keras"]["ok"] is False and result["keras"]["max_abs_diff"] >= 0.0  # tolerance impossible
    assert result["tflite"]["ok"] is True
    with pytest.raises(ValueError, match="Unknown export format"):
        export.export_all(model, tmp_path, _batch(2), formats=("onnx",))


# ------------------------------------------------------------------------------------------- .keras safely


def test_custom_registered_preprocessing_layer_loads_in_safe_mode(exported):
    model, out, _ = exported
    loaded = export.load_keras(out / "model.keras")
    assert type(loaded.get_layer("preprocess")).__name__ == "ScaleShift"
    batch = _batch(4)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_load_keras_refuses_a_lambda_layer_with_a_clear_message(tmp_path):
    import keras

    raw = keras.Input((4,))
    model = keras.Model(raw, keras.layers.Lambda(lambda t: t * 2.0)(raw))
    path = export.save_keras(model, tmp_path / "lambda")
    assert path.name == "lambda.keras"
    with pytest.raises(TLCourseError, match="Lambda layer.*safe mode") as caught:
        export.load_keras(path)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_load_keras_explains_missing_damaged_and_wrong_files(tmp_path):
    with pytest.raises(TLCourseError, match="No model file"):
        export.load_keras(tmp_path / "nothing.keras")
    fake = tmp_path / "fake.keras"
    fake.write_text("<html>not a model</html>")
    with pytest.raises(TLCourseError, match="not a .keras model file"):
        export.load_keras(fake)
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(TLCourseError, match="no config.json"):
        export.load_keras(other_zip)
    saved = tmp_path / "sm"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    with pytest.raises(TLCourseError, match="SavedModel folder"):
        export.load_keras(saved)


def test_load_keras_names_an_unregistered_custom_layer(tmp_path, monkeypatch):
    import keras

    model = _classifier(custom=True)
    path = export.save_keras(model, tmp_path / "custom.keras")
    registry = keras.saving.get_custom_objects()
    monkeypatch.delitem(registry, "tlcourse_test>ScaleShift")
    with pytest.raises(TLCourseError, match="not registered"):
        export.load_keras(path)


def test_save_keras_refuses_other_suffixes(tmp_path):
    with pytest.raises(TLCourseError, match=".keras"):
        export.save_keras(object(), tmp_path / "model.h5")


# -------------------------------------------------------------------------------------------- model card


def test_model_card_contains_class_counts_metrics_intervals_and_exports():
    from tlcourse import evaluate

    y = np.array([0] * 12 + [1] * 8 + [2] * 5)
    pred = y.copy()
    pred[[0, 13, 21]] = [1, 2, 0]
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    summary = evaluate.evaluation_summary(
        None, None, ["daisy", "rose", "tulip"], y_true=y, probs=probs, n_boot=200
    )
    exports = {
        "keras": {
            "path": "/x/model.keras",
            "bytes": 2_500_000,
            "max_abs_diff": 0.0,
            "tolerance": 1e-5,
            "ok": True,
        },
        "tflite": {
            "path": "/x/model.tflite",
            "bytes": 1_600_000,
            "max_abs_diff": 3.1e-6,
            "tolerance": 1e-3,
            "ok": True,
        },
    }
    card = modelcard.model_card(
        "MobileNetV2 on my flowers",
        class_names=["daisy", "rose", "tulip"],
        class_counts={"daisy": 61, "rose": 40, "tulip": 27},
        metrics=summary,
        data_provenance="photos from my garden, 2026",
        intended_use="Sorting my own garden photos.",
        limitations=["Only photographed in daylight."],
        settings={"backbone": "mobilenet_v2", "alpha": 0.35, "image_size": 160},
        export_info=exports,
    )
    for section in (
        "# Model card: MobileNetV2 on my flowers",
        "## Model",
        "## Intended use",
        "## Data",
        "## Metrics",
        "## Per-class results",
        "## Limitations",
        "## How to use",
        "## Exports",
    ):
        assert section in card, section
    assert "| daisy | 61 |" in card and "| rose | 40 |" in card and "| tulip | 27 |" in card
    assert "| **total** | 128 |" in card
    assert f"| accuracy | {summary['accuracy']:.3f} |" in card
    low, high = summary["accuracy_interval"]
    assert f"{low:.3f}–{high:.3f}" in card
    rose = summary["per_class"]["rose"]
    assert f"| rose | {rose['precision']:.3f} | {rose['recall']:.3f} | {rose['f1']:.3f} | 8 |" in card
    assert "photos from my garden, 2026" in card and "Sorting my own garden photos." in card
    assert "Only photographed in daylight." in card
    assert "tlcourse predict model.keras" in card
    assert "3.1e-06" in card and "model.tflite" in card
    assert "Only 25 validation images" in card


def test_model_card_reads_the_pipeline_metrics_layout():
    metrics = {
        "head_val_accuracy": 0.81,
        "val_accuracy": 0.9,
        "evaluation": {
            "accuracy": 0.9,
            "accuracy_interval": [0.85, 0.95],
            "n": 300,
            "per_class": {"a": {"precision": 1.0, "recall": 0.8, "f1": 0.889, "support": 150}},
        },
        "data": {"source": "mirror:flower_photos_small", "train_count": 800, "validation_count": 300},
        "export": {"keras": {"path": "out/model.keras", "bytes": 10, "max_abs_diff": 0.0, "ok": True}},
    }
    card = modelcard.model_card(
        model_name="net",
        class_names=["a", "b"],
        metrics=metrics,
        data_source="mirror:x",
        class_counts={"a": 5, "b": 30},
        settings={"alpha": 0.35},
    )
    assert "# Model card: net" in card and "mirror:x" in card
    assert "| accuracy | 0.900 | 0.850–0.950 |" in card
    assert "| accuracy after head training only | 0.810 |" in card
    assert "| keras | model.keras |" in card and "Training images:** 800" in card
    assert "imbalanced (30 vs 5" in card


def test_a_compiled_but_untrained_model_reloads_without_an_optimizer_mismatch_warning(tmp_path):
    import warnings

    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5)(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = export.load_keras(export.save_keras(model, tmp_path / "fresh.keras"))
    assert not [w for w in caught if "Skipping variable loading for optimizer" in str(w.message)]
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_model_card_states_the_runs_time_and_the_measured_time_per_1000_photos():
    metrics = {
        "val_accuracy": 0.9,
        "evaluation": {"accuracy": 0.9, "n": 200},
        "data": {"train_count": 600, "validation_count": 200},
        "timings_seconds": {"total": 123.4},
    }
    card = modelcard.model_card(
        model_name="net",
        class_names=["a", "b"],
        metrics=metrics,
        settings={"alpha": 1.0, "measured_seconds_per_1000_images": 150.0},
    )
    assert "**Training time:** this run took 123 s for 800 photos" in card
    assert "about 150 s per 1,000 photos (measured on 2 shared CPU cores)" in card
    assert "Training time" not in modelcard.model_card(model_name="net", class_names=["a"], metrics={})


# ------------------------------------------------------------------------ a swap that never loses a model

TEXT_ARTEFACTS = (export.CLASS_NAMES_FILE, export.METRICS_FILE, export.CARD_FILE, "model.keras")
KILLED_COMMIT = """
import os, sys
from tlcourse.export import ExportStage
out, nth = sys.argv[1], int(sys.argv[2])
real, calls = os.replace, [0]

def replace_then_die(*args, **kwargs):
    calls[0] += 1
    if calls[0] == nth:
        os._exit(9)  # a kill between two renames: nothing after this line runs, no except, no finally
    return real(*args, **kwargs)

with ExportStage(out, replace=True, keep_previous=True) as stage:
    for name in {names!r}:
        stage.write_text(name, "B")
    os.replace = replace_then_die
    stage.commit()
"""


def _export_text(out, tag: str) -> None:
    with export.ExportStage(out, replace=True, keep_previous=True) as stage:
        for name in TEXT_ARTEFACTS:
            stage.write_text(name, tag)
        stage.commit()


def _tags(folder) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in TEXT_ARTEFACTS if (folder / name).is_file()}


@pytest.mark.parametrize("nth", range(1, 12))
def test_a_kill_at_any_rename_of_the_swap_never_loses_the_earlier_model(tmp_path, nth):
    import subprocess
    import sys

    out = tmp_path / "out"
    _export_text(out, "A")
    script = KILLED_COMMIT.format(names=TEXT_ARTEFACTS)
    subprocess.run([sys.executable, "-c", script, str(out), str(nth)], check=False, timeout=120)
    _export_text(out, "C")  # the next run (tlcourse train --force) finds what the kill left
    assert set(_tags(out).values()) == {"C"}
    previous = _tags(out / export.PREVIOUS_DIR)
    assert len(previous) == len(TEXT_ARTEFACTS) and len(set(previous.values())) == 1, previous
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [], hidden


def test_exported_files_get_the_users_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        _export_text(tmp_path / "out", "A")
        _export_text(tmp_path / "out", "B")
        export.write_atomic(tmp_path / "single.json", "{}")
    finally:
        os.umask(mask)
    files = [tmp_path / "single.json", *(tmp_path / "out").rglob("*")]
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {"0o644", "0o755"}, modes
