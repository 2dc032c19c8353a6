"""When BatchNorm statistics move, every hint says what works in Keras 3 (issue 27): freeze the BatchNorm
layers. Calling the base with ``training=False`` does not stop ``fit`` from updating a trainable BatchNorm layer,
so no hint may offer it as the fix, and following the hint must keep the statistics still."""

from __future__ import annotations

import re

import numpy as np
import tinymodels as tm

from tlcourse import checks, data, diagnose, models
from tlcourse.checks import lesson08

TRAINING_FALSE_AS_FIX = re.compile(r"call (?:it|the base|the backbone) with training=False", re.IGNORECASE)


def _moving_statistics_drifted():
    """Mistake 4b of lesson 05: BatchNorm left trainable, then one training-mode forward pass."""
    backbone, model = tm.head_classifier()
    models.unfreeze_from(backbone, "block_13", freeze_batchnorm=False)
    models.compile_classifier(model, 1e-4, num_classes=tm.CLASSES)
    before = diagnose.snapshot_weights(model)
    model(tm.images(), training=True)  # what fit does on each batch
    return backbone, model, before


def _follow_the_hint(backbone, model) -> bool:
    """Freeze every BatchNorm layer as the hints say; True when a training-mode pass then moves nothing."""
    for layer in backbone.layers:
        if models.is_batchnorm(layer):
            layer.trainable = False
    models.compile_classifier(model, 1e-4, num_classes=tm.CLASSES)
    before = diagnose.snapshot_weights(model)
    model(tm.images(seed=1), training=True)
    return checks.check_frozen_unchanged(before, model, require_training=False).passed


def _says_freeze_batchnorm(message: str) -> bool:
    return (
        "BatchNorm" in message
        and "trainable = False" in message
        and not TRAINING_FALSE_AS_FIX.search(message)
    )


def test_the_mistake_checker_tells_lesson_05s_mistake_4b_to_freeze_batchnorm():
    backbone, model, before = _moving_statistics_drifted()
    found = {m.code: m.message for m in diagnose.check_mistakes(model, before_weights=before)}
    assert "moving_" in found["frozen_weights_changed"]
    assert _says_freeze_batchnorm(found["frozen_weights_changed"]), found["frozen_weights_changed"]
    assert _follow_the_hint(backbone, model)


def test_check_frozen_unchanged_tells_moved_statistics_to_freeze_batchnorm():
    backbone, model, before = _moving_statistics_drifted()
    result = checks.check_frozen_unchanged(before, model)
    assert not result.passed and "moving_" in result.message
    assert _says_freeze_batchnorm(result.message), result.message
    assert _follow_the_hint(backbone, model)


def test_lesson_08s_head_phase_grader_tells_a_base_left_trainable_to_freeze_it():
    backbone = tm.tiny_backbone()
    model = models.build_classifier(backbone, tm.CLASSES)  # the base is called with training=False ...
    models.compile_classifier(model, 1e-3, num_classes=tm.CLASSES)
    before = diagnose.snapshot_weights(backbone)
    model(tm.images(), training=True)  # ... and still its trainable BatchNorm layers move inside fit
    splits = data.synthetic_splits(num_classes=tm.CLASSES, per_class=2, image_size=tm.SIZE)
    result = lesson08.check_head_phase(model, backbone, before, splits, enforce_accuracy=False)
    assert not result.passed and "moving_" in result.message
    assert "base.trainable = False" in result.message and not TRAINING_FALSE_AS_FIX.search(result.message)
    models.freeze(backbone)
    again = diagnose.snapshot_weights(backbone)
    model(tm.images(seed=2), training=True)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(again.values, diagnose.snapshot_weights(backbone).values, strict=True)
    )
