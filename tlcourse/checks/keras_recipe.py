"""Graders for the "Keras only" exercise: the whole transfer-learning recipe without tlcourse (after lesson 05).

The student writes the TensorFlow tutorial's pipeline with TensorFlow/Keras alone: load, augment, base, head,
compile, fit, unfreeze, recompile, fit, evaluate, save, reload, predict. These graders only *look* at what the
student's objects do: weight snapshots taken before each ``fit`` (:func:`tlcourse.diagnose.snapshot_weights`),
the compiled state, the accuracy on held-out images and the reloaded model's predictions. They never read
layer names or printed summaries, so any correct way of writing the recipe passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlcourse import diagnose
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import walk_layers
from tlcourse.checks import (
    CheckResult,
    _fail,
    _ok,
    check_batchnorm_inference,
    check_frozen_unchanged,
    check_recompiled,
)
from tlcourse.checks.lesson05 import check_fine_tuned

__all__ = ["check_accuracy", "check_fine_tune_phase", "check_head_phase", "check_reloaded"]

CHANCE_MARGIN = 0.3
"""With real ImageNet weights, accuracy must beat chance (1 / classes) by at least this much."""


def _moved(before: Any, after: Any, trainable: bool) -> int:
    return sum(
        1
        for old, new, on in zip(before.values, after.values, before.trainable, strict=True)
        if on == trainable and (old.shape != new.shape or not np.array_equal(old, new))
    )


def check_head_phase(model: Any, before: Any) -> CheckResult:
    """Head training left the whole base untouched, BatchNorm statistics included, and trained the head.

    ``before`` is :func:`tlcourse.diagnose.snapshot_weights` of ``model`` taken after compiling and just before
    the head's ``fit``; ``model`` is the same object after that ``fit``.
    """

    report = diagnose.trainable_report(model)
    if not report.compiled:
        return _fail("the model is not compiled: call model.compile(...) before model.fit(...).")
    head_sized = sum(
        int(np.prod(v.shape)) for v, on in zip(before.values, before.trainable, strict=True) if on
    )
    if head_sized > 0.5 * report.total_params:
        return _fail(
            f"{head_sized:,} of {report.total_params:,} parameters were trainable during the head phase: set "
            "base.trainable = False before compiling, so only the new head learns."
        )
    frozen = check_frozen_unchanged(before, model)
    if not frozen.passed:
        return frozen
    wrapped = [layer.name for layer in walk_layers(model) if isinstance(layer, _keras().layers.Lambda)]
    if wrapped:
        return _fail(
            f"the model has a Lambda layer ('{wrapped[0]}'): model.save keeps only its function's name, and "
            "keras.models.load_model cannot load it back in step 6. Use keras.layers.Rescaling(1/127.5, offset=-1) "
            "for MobileNetV2's preprocessing, or call preprocess_input on the tensor directly (x = "
            "preprocess_input(x)), then build and train again."
        )
    bn = check_batchnorm_inference(model)
    if not bn.passed:
        return bn
    return _ok(f"the base and its BatchNorm statistics did not move; {frozen.message}")


def check_fine_tune_phase(model: Any, before: Any) -> CheckResult:
    """Fine-tuning after unfreezing: recompiled, BatchNorm frozen, a low rate, only unfrozen weights moved.

    ``before`` is the snapshot taken after unfreezing and compiling again, just before the second ``fit``.
    Uses :func:`tlcourse.checks.lesson05.check_fine_tuned` (the rate limit is
    :data:`tlcourse.models.FINE_TUNE_MAX_LEARNING_RATE`, 1e-4).
    """
    recompiled = check_recompiled(model)
    if not recompiled.passed:
        return _fail(f"{recompiled.message} (after changing trainable, call model.compile again)")
    return check_fine_tuned(model, before)


def check_accuracy(model: Any, dataset: Any, *, num_classes: int, real_weights: bool = True) -> CheckResult:
    """Accuracy on held-out images (a ``tf.data`` dataset of (images, labels)) well above chance.

    With random weights (``real_weights=False``, the smoke profile offline) only the shape of the answer is
    checked: every image gets one prediction among ``num_classes``.
    """
    hits, total = 0, 0
    for images, labels in dataset:
        logits = np.asarray(model(images, training=False))
        if logits.ndim != 2 or logits.shape[-1] != num_classes:
            return _fail(
                f"the model outputs shape {logits.shape[1:]}, not ({num_classes},): end with "
                f"keras.layers.Dense({num_classes})."
            )
        hits += int((logits.argmax(axis=1) == np.asarray(labels)).sum())
        total += len(logits)
    if total == 0:
        return _fail("the dataset is empty: pass the held-out test (or validation) images.")
    accuracy = hits / total
    chance = 1.0 / num_classes
    if not real_weights:
        return _ok(f"accuracy {accuracy:.3f} on {total} images (random weights: not compared with chance).")
    if accuracy < chance + CHANCE_MARGIN:
        return _fail(
            f"accuracy {accuracy:.3f} on {total} images is close to chance ({chance:.2f}): check the "
            "preprocessing (pixels 0..255 into preprocess_input or Rescaling(1/127.5, offset=-1)), that the "
            "base has its ImageNet weights, and that the head was trained."
        )
    return _ok(f"accuracy {accuracy:.3f} on {total} held-out images (chance {chance:.2f}).")


def check_reloaded(model: Any, reloaded: Any, images: Any, *, atol: float = 1e-5) -> CheckResult:
    """``reloaded`` (from ``keras.models.load_model``) is a separate model that predicts what ``model`` does."""
    if reloaded is model:
        return _fail("reloaded is the same object as model: load it back with keras.models.load_model(path).")
    batch = np.asarray(images, dtype="float32")
    expected = np.asarray(model(batch, training=False))
    got = np.asarray(reloaded(batch, training=False))
    if expected.shape != got.shape or not np.allclose(expected, got, atol=atol):
        return _fail(
            "the reloaded model predicts differently: save the trained model itself with model.save('x.keras') "
            "after the last fit, then keras.models.load_model('x.keras')."
        )
    return _ok(f"the reloaded model gives the same outputs on {len(batch)} images.")
