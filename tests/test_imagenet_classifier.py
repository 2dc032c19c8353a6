"""The ImageNet classifier's two engines (lesson 01): real predictions offline, Keras class order, zero-shot.

With the mirror and no network, the Keras include_top weights are absent, so ``engine="auto"`` runs the
mirror's TFLite MobileNetV2; the Keras engine is checked with random weights (its class order does not depend
on the weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tlcourse import assets, imageio, imagenet, zeroshot
from tlcourse.errors import AssetMissingError, TLCourseError

pytestmark = pytest.mark.mirror


@pytest.fixture
def empty_keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


@pytest.fixture(scope="module")
def tflite(mirror_dir: Path) -> zeroshot.ImageNetClassifier:
    return zeroshot.load_imagenet_classifier(engine="tflite", mirror=mirror_dir, verbose=False)


@pytest.fixture(scope="module")
def mirror_dir() -> Path:
    from conftest import mirror_path

    path = mirror_path()
    if path is None:
        pytest.skip("needs the offline asset mirror (../shared/assets or $TLCOURSE_MIRROR)")
    return path


@pytest.fixture(scope="module")
def samples(mirror_dir: Path) -> dict[str, np.ndarray]:
    return {
        Path(name).stem: imageio.load_image(assets.sample_photo(name, mirror=mirror_dir, download=False).path)
        for name in assets.SAMPLE_PHOTOS
    }


def _keras_labels() -> list[str]:
    return imagenet.labels(simple=False)


# ------------------------------------------------------------------------------------------ which engine


def test_auto_engine_offline_without_keras_weights_is_the_tflite_classifier_and_says_so(
    mirror: Path, empty_keras_home: Path, no_network: None, capsys: pytest.CaptureFixture[str]
) -> None:
    classifier = zeroshot.load_imagenet_classifier(0.35, 224, mirror=mirror)
    assert classifier.engine == "tflite" and classifier.source == "mirror" and classifier.pretrained
    assert (classifier.alpha, classifier.image_size) == (1.0, 224)
    assert "0.35" in classifier.notice and "TFLite" in classifier.notice
    assert (
        capsys.readouterr().out.strip() == classifier.describe() and "TFLite engine" in classifier.describe()
    )


def test_auto_engine_prefers_cached_keras_weights(
    mirror: Path, empty_keras_home: Path, no_network: None
) -> None:
    import keras

    net = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=True, weights=None)
    (empty_keras_home / "models").mkdir(parents=True)
    net.save(empty_keras_home / "models" / assets.mobilenet_v2_file_name(0.35, 96, include_top=True))
    classifier = zeroshot.load_imagenet_classifier(0.35, 96, mirror=mirror, verbose=False)
    assert classifier.engine == "keras" and classifier.source == "cache"


def test_offline_with_neither_engine_is_one_error_naming_both_files_and_both_fixes(
    empty_keras_home: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    with pytest.raises(AssetMissingError) as caught:
        zeroshot.load_imagenet_classifier(verbose=False)
    message = str(caught.value)
    assert "\n" not in message
    assert assets.IMAGENET_TFLITE in message and assets.mobilenet_v2_file_name(1.0, 224, True) in message
    assert "internet" in message and assets.MIRROR_ENV in message
    with pytest.raises(TLCourseError, match="engine must be"):
        zeroshot.load_imagenet_classifier(engine="onnx")


# ------------------------------------------------------------------------------------- real predictions


def test_tflite_engine_recognises_the_sample_photos(tflite, samples, no_network: None) -> None:
    hierarchy = imagenet.Hierarchy.load()
    cats = set(hierarchy.class_indices_under("n02121808"))  # domestic cat
    probs = tflite.predict([samples[name] for name in ("cat_720p", "parrot", "grace_hopper", "hot_dog")])
    top5 = np.argsort(-probs, axis=1)[:, :5]
    labels = _keras_labels()
    assert cats & set(top5[0].tolist()), [labels[i] for i in top5[0]]
    assert [labels[i] for i in top5[1:, 0]] == ["macaw", "military_uniform", "hotdog"]


def test_the_owl_is_mistaken_for_a_ruffed_grouse(tflite, samples) -> None:
    (wnid, label, probability), *_ = tflite.top(samples["owl"], k=5, simple=False)[0]
    assert label == "ruffed_grouse" and probability < 0.6  # an unsure mistake, the lesson's example


def test_each_engine_gives_one_probability_per_keras_class_summing_to_one(tflite, samples) -> None:
    photos = list(samples.values())
    keras_random = zeroshot.load_imagenet_classifier(0.35, 96, weights="random", verbose=False)
    for classifier in (tflite, keras_random):
        probs = classifier.predict(photos)
        assert probs.shape == (len(photos), imagenet.NUM_CLASSES) and probs.dtype == np.float32
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_known_labels_map_to_their_keras_positions_both_ways(tflite, samples) -> None:
    labels = _keras_labels()
    classes = imagenet.class_index()
    for name, label, position in (
        ("parrot", "macaw", 88),
        ("hot_dog", "hotdog", 934),
        ("bird", "chickadee", 19),
    ):
        probs = tflite.predict(samples[name])[0]
        assert int(probs.argmax()) == position == labels.index(label)  # label -> position
        assert classes[position][1] == label  # position -> label
        assert tflite.top(samples[name], k=1, simple=False)[0][0][:2] == classes[position]


def test_tflite_and_keras_engines_agree_on_class_order(tflite, samples, mirror_dir: Path, no_network) -> None:
    """Line i+1 of the TFLite labels is Keras class i for all 1000, and Keras' own decode_predictions (with
    the mirror's imagenet_class_index.json put in the Keras cache) reads the TFLite engine's output right."""
    import keras

    index_file = assets.keras_class_index(mirror=mirror_dir, download=False)
    assert index_file.name == assets.CLASS_INDEX_FILE and index_file.is_file()
    keras_index = json.loads(index_file.read_text())
    tflite_labels = Path(assets.imagenet_tflite_labels(mirror=mirror_dir, download=False).path).read_text()
    lines = tflite_labels.splitlines()
    assert len(lines) == 1001 and lines[0] == "background"
    for i in range(imagenet.NUM_CLASSES):
        assert keras_index[str(i)][1].replace("_", " ").lower() == lines[i + 1].split(",")[0].strip().lower()
    probs = tflite.predict([samples["parrot"], samples["dragonfly"]])
    decoded = keras.applications.mobilenet_v2.decode_predictions(probs, top=1)
    assert [row[0][1] for row in decoded] == ["macaw", "dragonfly"]
    unsure = tflite.predict([samples[name] for name in ("owl", "cat_720p", "grace_hopper")])
    keras_top3 = keras.applications.mobilenet_v2.decode_predictions(unsure, top=3)  # no ties in their top 3
    ours = imagenet.decode_predictions(unsure, top=3)
    assert [[(w, lab) for w, lab, _ in row] for row in keras_top3] == [
        [(w, lab) for w, lab, _ in r] for r in ours
    ]


def test_tflite_model_takes_preprocess_input_like_the_keras_classifier(tflite, samples) -> None:
    import keras

    photos = np.stack([zeroshot.fit_square(samples[n], 224) for n in ("owl", "cat_720p")]).astype(np.float32)
    plain = zeroshot.TFLiteImageNet(tflite.path)  # pixels=False: what preprocess_input returns
    via_keras = plain.predict(keras.applications.mobilenet_v2.preprocess_input(photos.copy()))
    np.testing.assert_allclose(via_keras, tflite.predict(photos), atol=1e-6)
    with pytest.raises(TLCourseError, match="224x224x3"):
        plain.predict(np.zeros((1, 96, 96, 3), np.float32))


# ------------------------------------------------------------------------------------------- zero-shot


def test_zero_shot_daisy_vs_other_flowers_beats_chance(tflite, mirror_dir: Path) -> None:
    """A real zero-shot task from the mirror: the 40 validation daisies against 40 other flowers (10 each of
    dandelion, roses, sunflowers, tulips). WordNet's "daisy" synset gives the daisy column, every other
    ImageNet class the other. Chance on this balanced task is 0.5; with 80 photos its standard error is
    sqrt(0.25 / 80) = 0.056, so 0.62 (chance + 2 standard errors, one-sided p < 0.025) cannot be reached by a
    classifier that knows nothing. The TFLite engine measured 0.74 here (0.70 of the daisies, 0.78 of the others:
    sunflowers, which it often calls daisy, are most of the errors)."""
    root = mirror_dir / "datasets" / "flower_photos_small" / "validation"
    daisies = sorted((root / "daisy").iterdir())
    others = [
        p
        for name in ("dandelion", "roses", "sunflowers", "tulips")
        for p in sorted((root / name).iterdir())[:10]
    ]
    photos = [imageio.load_image(p) for p in daisies + others]
    y_true = np.array([0] * len(daisies) + [1] * len(others))
    daisy = imagenet.zero_shot_mapping({"daisy": ["daisy"]})["daisy"]
    mapping = {"daisy": daisy, "other flower": sorted(set(range(imagenet.NUM_CLASSES)) - set(daisy))}
    result = zeroshot.evaluate_zero_shot(y_true, tflite.predict(photos), mapping, ["daisy", "other flower"])
    assert result["reachable"] == 1.0
    assert result["accuracy"] >= 0.62, result["per_class"]


# --------------------------------------------------------------------------------------------- command line


def test_predict_imagenet_prints_the_top5_of_each_photo_and_reports_a_missing_file(
    mirror: Path, empty_keras_home: Path, no_network: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from tlcourse.cli import main

    owl = str(mirror / "samples" / "owl.jpg")
    parrot = str(mirror / "samples" / "parrot.jpg")
    assert main(["predict", "--imagenet", owl, parrot, "missing.jpg"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("TFLite engine")
    assert lines[1].startswith(f"{owl}: ruffed grouse") and lines[1].count(",") == 4
    assert lines[2].startswith(f"{parrot}: macaw 1.000")
    assert "missing.jpg" in captured.err and "Traceback" not in captured.err
    assert main(["predict", "--imagenet", parrot, "--json", "--top", "2"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["engine"] == "tflite" and [t["class"] for t in entry["top"]][0] == "macaw"
    assert len(entry["top"]) == 2


# ------------------------------------------------------------------------------------------- the harness


def test_harness_zero_shot_row_is_measured_offline_by_the_tflite_engine(
    samples, mirror: Path, empty_keras_home: Path, no_network: None
) -> None:
    """strategies.zero_shot (the strategy harness's row) runs on the TFLite engine when no Keras weights exist."""
    from types import SimpleNamespace

    from tlcourse import strategies

    photos = np.stack([zeroshot.fit_square(samples[n], 160) for n in ("parrot", "owl", "bird", "cat_720p")])
    splits = SimpleNamespace(
        class_names=["bird", "cat"], validation=[(photos.astype(np.float32), np.array([0, 0, 0, 1]))]
    )
    accuracy, note = strategies.zero_shot(
        splits,
        task_classes={"bird": ["bird"], "cat": ["domestic cat"]},
        alpha=0.35,
        mirror=mirror,
        download=False,
    )
    assert accuracy == 1.0  # the owl's "ruffed grouse" is still a bird
    assert note.startswith("no training")


def test_without_ai_edge_litert_tf_lite_runs_the_model_and_its_deprecation_warning_stays_silent(
    mirror_dir: Path, samples, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import warnings

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if the package were not installed
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classifier = zeroshot.load_imagenet_classifier(engine="tflite", mirror=mirror_dir, verbose=False)
        probs = classifier.predict(samples["parrot"])
    assert type(classifier.model.interpreter).__module__.startswith("tensorflow")
    assert imagenet.labels(simple=False)[int(probs.argmax())] == "macaw"


def test_keras_classifier_weights_offline_with_no_file_is_none_not_an_error(
    empty_keras_home: Path, tmp_path: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lesson 01's first step on a machine with no mirror and no network: the TFLite engine must stand in.
    (After the downloads module took over online(), this raised AttributeError: no assets.online.)"""
    monkeypatch.delenv("TLCOURSE_MIRROR", raising=False)
    monkeypatch.setenv("TLCOURSE_HOME", str(tmp_path / "no-user-mirror"))
    assert zeroshot.keras_classifier_weights(1.0, 224, download=True) is None
