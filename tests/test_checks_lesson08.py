"""Lesson 08's graders pass the reference answer and fail, with their hint, on a typical mistake."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tlcourse import data, diagnose
from tlcourse.checks import lesson08 as grade

keras = pytest.importorskip("keras")

CLASSES = ["cat", "dog", "fox"]


def good_brief(**changes):
    brief = {
        "problem": "Tell cats, dogs and foxes apart on trail-camera photos.",
        "classes": list(CLASSES),
        "users": "Rangers who count animals each week from the camera memory cards.",
        "mistake_cost": "Missing a fox costs most: foxes are the animals the rangers must report.",
        "metric": "recall:fox",
    }
    brief.update(changes)
    return brief


# ------------------------------------------------------------------------------------------------ brief


def test_a_complete_brief_whose_classes_match_the_folder_passes():
    assert grade.check_brief(good_brief(), CLASSES).passed


def test_a_placeholder_field_fails_and_asks_for_a_real_sentence():
    result = grade.check_brief(good_brief(users="..."), CLASSES)
    assert not result.passed and "'users'" in result.message and "placeholder" in result.message


def test_a_missing_field_fails_and_names_it():
    brief = good_brief()
    del brief["mistake_cost"]
    result = grade.check_brief(brief, CLASSES)
    assert not result.passed and "mistake_cost" in result.message


def test_brief_classes_that_are_not_the_folders_fail_with_the_folder_classes():
    result = grade.check_brief(good_brief(classes=["cats", "dogs", "foxes"]), CLASSES)
    assert not result.passed and "['cat', 'dog', 'fox']" in result.message
    missing_one = grade.check_brief(good_brief(classes=["cat", "dog"], metric="accuracy"), CLASSES)
    assert not missing_one.passed and "['fox']" in missing_one.message


def test_an_unknown_metric_or_a_per_class_metric_of_an_absent_class_fails():
    assert not grade.check_brief(good_brief(metric="auc"), CLASSES).passed
    result = grade.check_brief(good_brief(metric="recall:wolf"), CLASSES)
    assert not result.passed and "wolf" in result.message


def test_parse_metric_gives_the_class_index_of_a_per_class_metric():
    assert grade.parse_metric("recall:fox", CLASSES) == ("recall", 2)
    assert grade.parse_metric("macro_f1", CLASSES) == ("macro_f1", None)
    with pytest.raises(ValueError, match="unknown metric"):
        grade.parse_metric("precision", CLASSES)


def balanced_accuracy(y_true, y_pred):
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def fox_recall(y_true, y_pred):
    return float(np.mean(y_pred[y_true == 2] == 2))


def test_brief_metric_passes_hand_written_versions_of_the_chosen_metric():
    assert grade.check_brief_metric(balanced_accuracy, "balanced_accuracy", CLASSES).passed
    assert grade.check_brief_metric(fox_recall, "recall:fox", CLASSES).passed


def test_brief_metric_fails_precision_written_for_recall_with_a_per_class_hint():
    def fox_precision(y_true, y_pred):
        return float(np.mean(y_true[y_pred == 2] == 2))

    result = grade.check_brief_metric(fox_precision, "recall:fox", CLASSES)
    assert not result.passed and "truly are it, the share predicted as it" in result.message
    plain = grade.check_brief_metric(lambda t, p: float(np.mean(t == p)), "balanced_accuracy", CLASSES)
    assert not plain.passed and "scikit-learn gives" in plain.message


# ------------------------------------------------------------------------------------------- accuracy


def _probs_for(labels, predicted, classes):
    probs = np.full((len(labels), classes), 0.1)
    probs[np.arange(len(labels)), predicted] = 0.8
    return probs


def test_accuracy_well_above_chance_passes_and_chance_level_fails_with_a_hint():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    good = np.where(rng.random(60) < 0.9, y, (y + 1) % 3)
    assert grade.accuracy_verdict(y, _probs_for(y, good, 3), 3).passed
    one_in_three = np.where(np.arange(60) % 3 == 0, y, (y + 1) % 3)  # right as often as a guess
    result = grade.accuracy_verdict(y, _probs_for(y, one_in_three, 3), 3)
    assert not result.passed and "beat chance" in result.message


def test_accuracy_from_too_few_images_fails_because_the_interval_reaches_chance():
    y = np.array([0, 1, 0, 1, 0])
    predicted = np.array([0, 1, 0, 0, 1])  # 3 of 5 right, chance is 0.5
    result = grade.accuracy_verdict(y, _probs_for(y, predicted, 2), 2, margin=0.05)
    assert not result.passed and "luck" in result.message


# ----------------------------------------------------------------------------------------- head phase


@pytest.fixture(scope="module")
def tiny_splits():
    return data.synthetic_splits(num_classes=2, per_class=8, image_size=8, batch_size=8, seed=0)


def tiny_base():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.ReLU()(x), name="tiny_base")


def train_head(base, splits, *, freeze=True, classes=None):
    base.trainable = not freeze
    inputs = keras.Input((8, 8, 3))
    x = base(inputs, training=False) if freeze else base(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(classes or len(splits.class_names))(x))
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    if classes is None:
        model.fit(splits.train, epochs=2, verbose=0, shuffle=False)
    return model


def test_head_phase_passes_a_frozen_base_with_a_new_head(tiny_splits):

    base = tiny_base()
    before = diagnose.snapshot_weights(base)
    model = train_head(base, tiny_splits)
    result = grade.check_head_phase(model, base, before, tiny_splits, enforce_accuracy=False)
    assert result.passed, result.message


def test_head_phase_fails_when_the_base_was_left_trainable(tiny_splits):

    base = tiny_base()
    before = diagnose.snapshot_weights(base)
    model = train_head(base, tiny_splits, freeze=False)
    result = grade.check_head_phase(model, base, before, tiny_splits, enforce_accuracy=False)
    assert not result.passed and "changed during the head phase" in result.message


def test_head_phase_fails_when_the_head_has_the_wrong_number_of_classes(tiny_splits):

    base = tiny_base()
    before = diagnose.snapshot_weights(base)
    model = train_head(base, tiny_splits, classes=5)
    result = grade.check_head_phase(model, base, before, tiny_splits, enforce_accuracy=False)
    assert not result.passed and "Dense(2)" in result.message


# --------------------------------------------------------------------------------------------- export


def tiny_classifier(classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


@pytest.mark.filterwarnings("ignore")
def test_export_passes_fresh_exports_and_fails_on_a_stale_export_or_a_card_without_accuracy(tmp_path):
    from tlcourse import export, modelcard

    model = tiny_classifier()
    sample = np.random.default_rng(1).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    exported = export.export_all(model, tmp_path, sample)
    summary = {"accuracy": 0.8125, "class_names": CLASSES}
    card = modelcard.model_card(
        model_name="tiny", class_names=CLASSES, metrics={"evaluation": summary, "export": exported}
    )
    (tmp_path / "model_card.md").write_text(card)
    result = grade.check_export(tmp_path, model, sample, CLASSES, 0.8125)
    assert result.passed, result.message

    weights = model.get_weights()
    model.set_weights([w + 0.5 for w in weights])  # trained further after exporting
    stale = grade.check_export(tmp_path, model, sample, CLASSES, 0.8125)
    assert not stale.passed and "export the final, trained model" in stale.message
    model.set_weights(weights)

    (tmp_path / "model_card.md").write_text(card.replace("0.812", "n/a"))
    no_accuracy = grade.check_export(tmp_path, model, sample, CLASSES, 0.8125)
    assert not no_accuracy.passed and "measured validation accuracy" in no_accuracy.message


def test_export_fails_when_a_format_is_missing(tmp_path):
    result = grade.check_export(tmp_path, tiny_classifier(), np.zeros((1, 8, 8, 3)), CLASSES, 0.5)
    assert not result.passed and "model.keras" in result.message


# ---------------------------------------------------------------------------------------- predictions


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(2)
    paths = []
    for i, size in enumerate([(8, 8), (20, 12), (5, 9)]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_predict_passes_the_training_preprocessing(image_files):
    from tlcourse import evaluate, imageio

    model = tiny_classifier()

    def classify(paths):
        batch = np.stack([imageio.load_image(p, (8, 8)).astype("float32") for p in paths])
        return evaluate.to_probabilities(model.predict(batch, verbose=0), from_logits=True)

    result = grade.check_predict(classify, model, image_files)
    assert result.passed, result.message


def test_predict_fails_on_extra_scaling_and_on_logits(image_files):
    from tlcourse import evaluate, imageio

    model = tiny_classifier()

    def batch_of(paths):
        return np.stack([imageio.load_image(p, (8, 8)).astype("float32") for p in paths])

    def scaled_twice(paths):
        return evaluate.to_probabilities(model.predict(batch_of(paths) / 255.0, verbose=0), from_logits=True)

    scaled = grade.check_predict(scaled_twice, model, image_files)
    assert not scaled.passed and "raw [0, 255]" in scaled.message
    logits = grade.check_predict(lambda paths: model.predict(batch_of(paths), verbose=0), model, image_files)
    assert not logits.passed and "softmax" in logits.message


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(
            lambda keras, tf, p: keras.utils.img_to_array(keras.utils.load_img(p, target_size=(8, 8))),
            id="load_img",
        ),
        pytest.param(
            lambda keras, tf, p: keras.utils.img_to_array(
                keras.utils.load_img(p, target_size=(8, 8), interpolation="bilinear")
            ),
            id="load_img-bilinear",
        ),
        pytest.param(
            lambda keras, tf, p: tf.image.resize(
                tf.io.decode_image(tf.io.read_file(p), channels=3), (8, 8)
            ).numpy(),
            id="tf.image.resize",
        ),
    ],
)
def test_predict_accepts_any_correct_way_of_reading_the_files(image_files, read):
    import keras
    import tensorflow as tf

    from tlcourse import evaluate

    model = tiny_classifier()

    def classify(paths):
        batch = np.stack([np.asarray(read(keras, tf, p), dtype="float32") for p in paths])
        return evaluate.to_probabilities(model.predict(batch, verbose=0), from_logits=True)

    result = grade.check_predict(classify, model, image_files)
    assert result.passed, result.message
