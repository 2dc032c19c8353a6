"""The lesson 05 graders pass the reference answers and fail, with their hints, on typical mistakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tlcourse import diagnose
from tlcourse.checks import lesson05 as grade

keras = pytest.importorskip("keras")
from tlcourse import models  # noqa: E402

# ----------------------------------------------------------------------------- exercise 1: unfreeze from a block


@pytest.fixture(scope="module")
def small_base():
    return grade.reference_backbone(image_size=32)


def unfreeze_from_block(backbone, block):
    backbone.trainable = True
    start = next(i for i, layer in enumerate(backbone.layers) if layer.name.startswith(block + "_"))
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)


def test_unfreeze_grader_passes_the_reference_answer(small_base):
    result = grade.check_unfreeze_from_block(unfreeze_from_block, backbone=small_base)
    assert result.passed, result.message


def test_unfreeze_grader_flags_trainable_batchnorm(small_base):
    def keeps_bn_trainable(backbone, block):
        models.unfreeze_from(backbone, block, freeze_batchnorm=False)

    result = grade.check_unfreeze_from_block(keeps_bn_trainable, backbone=small_base)
    assert not result.passed and "BatchNorm" in result.message


def test_unfreeze_grader_flags_layers_below_the_block_left_trainable(small_base):
    def only_unfreezes(backbone, block):
        backbone.trainable = True
        start = next(i for i, layer in enumerate(backbone.layers) if layer.name.startswith(block + "_"))
        for layer in backbone.layers[start:]:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)

    result = grade.check_unfreeze_from_block(only_unfreezes, backbone=small_base)
    assert not result.passed and "below the block" in result.message


def test_unfreeze_grader_explains_a_base_left_frozen(small_base):
    def forgets_the_base_flag(backbone, block):
        for layer in backbone.layers:
            layer.trainable = layer.name.startswith(block)
        backbone.trainable = False

    result = grade.check_unfreeze_from_block(forgets_the_base_flag, backbone=small_base)
    assert not result.passed and "backbone.trainable = True" in result.message


def test_unfreeze_grader_counts_an_off_by_one_boundary(small_base):
    def starts_one_layer_late(backbone, block):
        backbone.trainable = True
        start = next(i for i, layer in enumerate(backbone.layers) if layer.name.startswith(block + "_")) + 1
        for i, layer in enumerate(backbone.layers):
            layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)

    result = grade.check_unfreeze_from_block(starts_one_layer_late, backbone=small_base)
    assert not result.passed and "too few" in result.message


# ----------------------------------------------------------------------------- exercise 2: one fine-tuning step


def _tiny_base():
    """Two conv + BatchNorm blocks named like MobileNetV2's (its layers and its model name, from which the
    classifier reads its preprocessing): fit traces in a fraction of a second."""
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for block, filters in (("block_1", 4), ("block_16", 6)):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{block}_expand")(x)
        x = keras.layers.BatchNormalization(name=f"{block}_expand_BN")(x)
        x = keras.layers.ReLU(name=f"{block}_expand_relu")(x)
    return keras.Model(inputs, x, name="mobilenetv2_tiny")


def _classifier():
    base = _tiny_base()
    base.trainable = False
    model = models.build_classifier(base, 3, dropout=0.0)
    return base, model


def _data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 8).astype("int32")


def _fine_tune(rate=1e-5, freeze_batchnorm=True, recompile=True, unfreeze=True):
    base, model = _classifier()
    if not recompile:
        models.compile_classifier(model, rate, num_classes=3)
    if unfreeze:
        models.unfreeze_from(base, "block_16", freeze_batchnorm=freeze_batchnorm)
    if recompile:
        models.compile_classifier(model, rate, num_classes=3)
    before = diagnose.snapshot_weights(model)
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    return model, before


def test_fine_tuned_grader_passes_a_correct_step():
    model, before = _fine_tune()
    result = grade.check_fine_tuned(model, before)
    assert result.passed, result.message


def test_fine_tuned_grader_rejects_a_high_learning_rate():
    model, before = _fine_tune(rate=1e-3)
    result = grade.check_fine_tuned(model, before)
    assert not result.passed and "learning rate" in result.message


def test_fine_tuned_grader_rejects_trainable_batchnorm():
    model, before = _fine_tune(freeze_batchnorm=False)
    result = grade.check_fine_tuned(model, before)
    assert not result.passed and "BatchNorm" in result.message


def test_fine_tuned_grader_asks_to_compile_after_unfreezing():
    model, before = _fine_tune(recompile=False)
    result = grade.check_fine_tuned(model, before)
    assert not result.passed and "compile again" in result.message


def test_fine_tuned_grader_notices_that_only_the_head_was_trainable():
    model, before = _fine_tune(unfreeze=False)
    result = grade.check_fine_tuned(model, before)
    assert not result.passed and "unfreeze the top of the base" in result.message


# ----------------------------------------------------------------------------- exercise 3: choose a depth


def _table(acc15=0.86, acc13=0.88, sec15=40.0, sec13=60.0):
    return pd.DataFrame(
        [
            {"strategy": "head_only", "val_accuracy": 0.85, "train_seconds": 10.0, "trainable_params": 6405},
            {
                "strategy": "fine_tune_from:block_15",
                "val_accuracy": acc15,
                "train_seconds": sec15,
                "trainable_params": 300_000,
            },
            {
                "strategy": "fine_tune_from:block_13",
                "val_accuracy": acc13,
                "train_seconds": sec13,
                "trainable_params": 500_000,
            },
        ]
    )


def test_depth_choice_accepts_the_best_row_with_its_number():
    result = grade.check_depth_choice(
        _table(), "fine_tune_from:block_13", "0.88, the best", validation_count=200
    )
    assert result.passed, result.message


def test_depth_choice_accepts_a_cheaper_row_within_the_noise_quoted_in_percent():
    result = grade.check_depth_choice(
        _table(), "fine_tune_from:block_15", "86% vs 88%: within noise, and faster", validation_count=200
    )
    assert result.passed, result.message


def test_depth_choice_rejects_a_clearly_worse_row():
    result = grade.check_depth_choice(
        _table(acc15=0.70), "fine_tune_from:block_15", "0.70, cheapest", validation_count=200
    )
    assert not result.passed and "interval" in result.message


def test_depth_choice_rejects_a_worse_row_that_is_not_cheaper():
    table = _table(sec15=90.0, acc15=0.87)
    table.loc[1, "trainable_params"] = 900_000
    result = grade.check_depth_choice(table, "fine_tune_from:block_15", "0.87", validation_count=200)
    assert not result.passed and "not cheaper" in result.message


def test_depth_choice_rejects_a_reason_without_numbers_and_an_unknown_choice():
    no_numbers = grade.check_depth_choice(
        _table(), "fine_tune_from:block_13", "it is best", validation_count=200
    )
    assert not no_numbers.passed and "quote the numbers" in no_numbers.message
    unknown = grade.check_depth_choice(_table(), "fine_tune_from:block_11", "0.9", validation_count=200)
    assert not unknown.passed and "not one of the depths" in unknown.message


def test_depth_choice_needs_two_depths_that_ran():
    table = _table(acc15=float("nan"))
    result = grade.check_depth_choice(table, "fine_tune_from:block_13", "0.88", validation_count=200)
    assert not result.passed and "at least two" in result.message
