"""tlcourse.zeroshot (lesson 01): photo cropping, sample photos, zero-shot scoring, the ImageNet classifier."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import assets, imagenet, zeroshot
from tlcourse.errors import AssetMissingError, TLCourseError


@pytest.fixture(scope="module")
def hierarchy() -> imagenet.Hierarchy:
    return imagenet.Hierarchy.load()


def _probs(rows: list[dict[int, float]]) -> np.ndarray:
    out = np.zeros((len(rows), imagenet.NUM_CLASSES), np.float32)
    for r, row in enumerate(rows):
        rest = 1.0 - sum(row.values())
        out[r] = rest / imagenet.NUM_CLASSES
        for index, value in row.items():
            out[r, index] += value
    return out


# ----------------------------------------------------------------------------------------------- fit_square


def test_fit_square_keeps_the_centre_and_cuts_the_borders() -> None:
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, 20:40] = 255  # a white centre square between black borders
    out = zeroshot.fit_square(image, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert out.min() == 255


def test_fit_square_turns_grayscale_rgba_and_unit_floats_into_rgb_uint8() -> None:
    gray = np.full((8, 8), 100, np.uint8)
    assert zeroshot.fit_square(gray, 8).shape == (8, 8, 3)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    assert zeroshot.fit_square(rgba, 4)[..., 0].min() == 200
    unit = np.full((6, 6, 3), 0.5, np.float32)
    assert zeroshot.fit_square(unit, 6)[0, 0, 0] == 128


def test_fit_square_rejects_something_that_is_not_one_image() -> None:
    with pytest.raises(TLCourseError, match="one image"):
        zeroshot.fit_square(np.zeros((2, 8, 8, 3)), 8)


# ------------------------------------------------------------------------------------------ zero-shot scores


def test_evaluate_zero_shot_scores_each_photo_by_its_mapped_imagenet_classes(hierarchy) -> None:
    tabby = hierarchy.class_position(hierarchy.find("tabby")[0])
    golden = hierarchy.class_position(hierarchy.find("golden retriever")[0])
    mapping = imagenet.zero_shot_mapping({"cat": ["n02121808"], "dog": ["n02084071"]}, hierarchy)
    probs = _probs([{tabby: 0.9}, {golden: 0.8}, {golden: 0.7}, {tabby: 0.6}])
    y_true = [0, 1, 0, 0]  # the third photo is a cat that looks like a dog to ImageNet
    result = zeroshot.evaluate_zero_shot(y_true, probs, mapping, ["cat", "dog"])
    assert result["accuracy"] == pytest.approx(3 / 4)
    assert result["per_class"] == pytest.approx({"cat": 2 / 3, "dog": 1.0})
    assert result["reachable"] == 1.0 and result["unmapped"] == []
    assert result["y_pred"].tolist() == [0, 1, 1, 0]
    assert np.allclose(result["task_probs"].sum(axis=1), 1.0)


def test_evaluate_zero_shot_cannot_predict_an_unmapped_class_and_reports_the_bound(hierarchy) -> None:
    daisy = hierarchy.class_position(hierarchy.find("daisy")[0])
    mapping = imagenet.zero_shot_mapping({"daisy": ["daisy"], "tulips": ["tulip"]}, hierarchy, missing="skip")
    probs = _probs([{daisy: 0.9}, {daisy: 0.01}, {daisy: 0.2}])
    result = zeroshot.evaluate_zero_shot([0, 1, 1], probs, mapping, ["daisy", "tulips"])
    assert result["unmapped"] == ["tulips"]
    assert result["reachable"] == pytest.approx(1 / 3)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert set(result["y_pred"].tolist()) == {0}


def test_evaluate_zero_shot_orders_columns_by_class_names_not_by_mapping(hierarchy) -> None:
    golden = hierarchy.class_position(hierarchy.find("golden retriever")[0])
    mapping = {"dog": [golden], "cat": [hierarchy.class_position(hierarchy.find("tabby")[0])]}
    result = zeroshot.evaluate_zero_shot([1], _probs([{golden: 0.9}]), mapping, ["cat", "dog"])
    assert result["y_pred"].tolist() == [1] and result["accuracy"] == 1.0


def test_evaluate_zero_shot_rejects_mismatched_inputs() -> None:
    with pytest.raises(TLCourseError, match="one row"):
        zeroshot.evaluate_zero_shot([0, 1], _probs([{}]), {"a": [1]}, ["a", "b"])
    with pytest.raises(TLCourseError, match="not task classes"):
        zeroshot.evaluate_zero_shot([0], _probs([{}]), {"zebra": [1]}, ["a", "b"])


def test_imagenet_names_by_class_counts_the_top1_labels_of_each_class(hierarchy) -> None:
    daisy = hierarchy.class_position(hierarchy.find("daisy")[0])
    rapeseed = hierarchy.class_position(hierarchy.find("rapeseed")[0])
    probs = _probs([{daisy: 0.9}, {rapeseed: 0.5}, {rapeseed: 0.6}, {daisy: 0.4}])
    named = zeroshot.imagenet_names_by_class([0, 1, 1, 1], probs, ["daisy", "dandelion", "roses"], k=3)
    short = imagenet.labels(simple=True)
    assert named["daisy"] == [(short[daisy], 1)]
    assert named["dandelion"] == [(short[rapeseed], 2), (short[daisy], 1)]
    assert named["roses"] == []


# ------------------------------------------------------------------------------------------- sample photos


def test_sample_photos_take_one_validation_photo_per_flower_class(mirror) -> None:
    photos = zeroshot.sample_photos(mirror=mirror, sample_names=(), skimage_names=())
    classes = sorted(p.name.split("/")[0] for p in photos)
    folder = mirror / "datasets" / "flower_photos_small" / "validation"
    assert classes == sorted(d.name for d in folder.iterdir() if d.is_dir())
    for photo in photos:
        assert photo.image.ndim == 3 and photo.image.shape[2] == 3 and photo.image.dtype == np.uint8
        assert (folder / photo.name).is_file()


def test_sample_photos_without_mirror_network_or_skimage_is_empty(monkeypatch, tmp_path, no_network) -> None:
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert zeroshot.sample_photos(skimage_names=()) == []


def test_sample_photos_include_scikit_image_samples_when_installed(monkeypatch) -> None:
    pytest.importorskip("skimage.data")
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    photos = zeroshot.sample_photos(sample_names=(), skimage_names=("chelsea", "no_such_sample"))
    assert [p.name for p in photos] == ["chelsea"]
    assert photos[0].source == "scikit-image" and photos[0].image.shape[2] == 3


# --------------------------------------------------------------------------------------------- classifier


def test_classifier_offline_without_weights_raises_a_clear_asset_error(
    tmp_path, monkeypatch, no_network
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    with pytest.raises(AssetMissingError) as caught:
        zeroshot.load_imagenet_classifier(0.35, 96)
    message = str(caught.value)
    assert assets.mobilenet_v2_file_name(0.35, 96, include_top=True) in message
    assert "TLCOURSE_MIRROR" in message


def test_classifier_loads_cached_weights_and_rescales_raw_pixels(tmp_path, monkeypatch) -> None:
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    keras.utils.set_random_seed(7)
    reference = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=True, weights=None
    )
    (tmp_path / "models").mkdir()
    reference.save(tmp_path / "models" / assets.mobilenet_v2_file_name(0.35, 96, include_top=True))

    classifier = zeroshot.load_imagenet_classifier(
        0.35, 96, seed=1
    )  # another seed: weights must come from the file
    assert classifier.source == "cache" and classifier.pretrained
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (120, 96, 3), dtype=np.uint8) for _ in range(3)]
    probs = classifier.predict(photos)
    cropped = np.stack([zeroshot.fit_square(p, 96) for p in photos]).astype(np.float32)
    expected = np.asarray(reference.predict_on_batch(cropped / 127.5 - 1.0))
    assert probs.shape == (3, imagenet.NUM_CLASSES)
    np.testing.assert_allclose(probs, expected, atol=1e-5)

    top = classifier.top(photos[0], k=5)[0]
    assert len(top) == 5 and [p for _, _, p in top] == sorted((p for _, _, p in top), reverse=True)

    random = zeroshot.load_imagenet_classifier(0.35, 96, weights="random")
    assert not random.pretrained and "RANDOM" in random.describe()


# ------------------------------------------------------------------------------------------------ lesson 01


def test_lesson01_shows_the_keras_classifier_calls_in_cells_the_student_reads() -> None:
    """Issue 12's rule for lesson 01: the plain Keras calls appear in code cells, before any helper."""
    import json
    from pathlib import Path

    notebook = Path(__file__).resolve().parents[1] / "lessons" / "01_imagenet.ipynb"
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    for call in (
        "keras.applications.MobileNetV2(",
        "include_top=True",
        "keras.applications.mobilenet_v2.preprocess_input(",
        "model.predict(",
        "keras.applications.mobilenet_v2.decode_predictions(",
    ):
        assert call in code, call
    assert code.index("keras.applications.MobileNetV2(") < code.index("zeroshot.load_imagenet_classifier(")
    assert "skipped" not in code.lower()  # nothing in lesson 01 is skipped any more
