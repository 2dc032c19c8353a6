"""Each grader in tlcourse.checks passes the reference answer and fails, with its hint, on a typical mistake."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import checks, diagnose

keras = pytest.importorskip("keras")


# ----------------------------------------------------------------------------- CheckResult


def test_result_prints_one_plain_line_and_assert_passed_raises_with_the_hint(capsys):
    good, bad = checks.CheckResult(True, "fine"), checks.CheckResult(False, "add the biases")
    assert str(good) == "✔ passed: fine" and repr(bad) == "✘ not yet: add the biases"
    assert bool(good) and not bool(bad)
    good.assert_passed()
    with pytest.raises(checks.CheckFailed, match="add the biases"):
        bad.assert_passed()
    assert capsys.readouterr().out.splitlines() == ["✔ passed: fine", "✘ not yet: add the biases"]


# ----------------------------------------------------------------------------- arithmetic


def test_claim_is_judged_by_the_paired_difference_of_runs_with_the_same_seed():
    # the ranges miss each other, but the seed-by-seed gains are small and unsteady: no claim either way
    tiny = checks.check_claim([0.40, 0.41], [0.42, 0.415], "no clear difference")
    assert tiny.passed, tiny.message
    overclaim = checks.check_claim([0.40, 0.41], [0.42, 0.415], "better")
    assert not overclaim.passed and "paired" in overclaim.message and "seed" in overclaim.message
    # the ranges overlap, but every seed gains about the same: better
    steady = checks.check_claim([0.40, 0.50, 0.60], [0.44, 0.55, 0.63], "better")
    assert steady.passed and "+0.040" in steady.message, steady.message
    assert checks.check_claim([0.44, 0.55, 0.63], [0.40, 0.50, 0.60], "worse").passed
    single = checks.check_claim([0.4], [0.5], "better")
    assert not single.passed and "twice" in single.message
    unpaired = checks.check_claim([0.4, 0.5, 0.6], [0.5, 0.6], "better")
    assert not unpaired.passed and "same seeds" in unpaired.message


def test_metric_passes_a_correct_macro_recall_and_fails_on_micro_averaging():
    def macro_recall(y_true, y_pred):
        classes = np.unique(y_true)
        return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))

    assert checks.check_metric(macro_recall, "macro_recall").passed
    result = checks.check_metric(lambda t, p: float(np.mean(t == p)), "macro_recall")
    assert not result.passed and "averaged" in result.message


# ----------------------------------------------------------------------------- models


def tiny_backbone():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.ReLU()(x), name="tiny_backbone")


def classifier(backbone, *, training_flag=False):
    inputs = keras.Input((8, 8, 3))
    x = backbone(inputs, training=False) if not training_flag else backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_head_passes_a_pooled_dense_head_and_fails_when_the_map_is_flattened():
    pooled = keras.Sequential(
        [keras.Input((4, 4, 8)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    )
    assert checks.check_head(pooled, 3, (4, 4, 8)).passed
    flat = keras.Sequential([keras.Input((4, 4, 8)), keras.layers.Flatten(), keras.layers.Dense(3)])
    result = checks.check_head(flat, 3, (4, 4, 8))
    assert not result.passed and "pool" in result.message


def test_trainable_split_passes_a_frozen_backbone_and_fails_when_it_was_left_trainable():
    backbone = tiny_backbone()
    model = classifier(backbone)
    head_params = 4 * 2 + 2
    result = checks.check_trainable_split(model, head_params)
    assert not result.passed and "freeze the backbone" in result.message
    backbone.trainable = False
    assert checks.check_trainable_split(model, head_params).passed


def _fit_once(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 3)).astype("float32")
    model.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)


def test_frozen_unchanged_passes_after_freezing_before_compile_and_fails_when_frozen_after():

    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    model = classifier(backbone)
    backbone.trainable = False
    before = diagnose.snapshot_weights(model)
    _fit_once(model)
    assert checks.check_frozen_unchanged(before, model).passed

    backbone2 = tiny_backbone()
    model2 = classifier(backbone2, training_flag=True)
    backbone2.trainable = False
    before2 = diagnose.snapshot_weights(model2)
    backbone2.trainable = True  # the mistake: weights meant frozen are trained
    _fit_once(model2)
    result = checks.check_frozen_unchanged(before2, model2)
    assert not result.passed and "frozen weight" in result.message
    untouched = checks.check_frozen_unchanged(diagnose.snapshot_weights(model), model)
    assert not untouched.passed and "did fit run" in untouched.message


def test_batchnorm_inference_passes_with_training_false_and_fails_without_it():
    backbone = tiny_backbone()
    backbone.trainable = False
    assert checks.check_batchnorm_inference(classifier(backbone)).passed
    result = checks.check_batchnorm_inference(classifier(tiny_backbone(), training_flag=True))
    assert not result.passed and "trainable=False" in result.message


def test_recompiled_passes_after_compile_and_fails_after_changing_trainable():
    backbone = tiny_backbone()
    model = classifier(backbone)
    assert "not compiled" in checks.check_recompiled(model).message
    model.compile(optimizer="adam", loss="mse")
    assert checks.check_recompiled(model).passed
    backbone.trainable = False
    result = checks.check_recompiled(model)
    assert not result.passed and "compile again" in result.message
