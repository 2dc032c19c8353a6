"""Graders for the "Keras only" exercise: the whole transfer-learning recipe without tlcourse (after lesson 05).

The exercise is a specification: it says what the pipeline must do, not which calls make it. The student writes
it with TensorFlow/Keras alone (load, augment, base, head, compile, fit, unfreeze, recompile, fit, evaluate,
save, reload, predict), and these graders only *look* at what the student's objects do: the batches the
datasets yield, what the model outputs and what reaches its base, the compiled loss, weight snapshots taken
before each ``fit`` (:func:`tlcourse.diagnose.snapshot_weights`), the training histories, the accuracy on
held-out images and the reloaded model's predictions. They never read layer names or printed summaries, so any
correct way of writing the recipe passes, and each typical wrong answer fails with the hint that fixes it
(tests/test_checks_keras_recipe.py holds one test per wrong answer).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import numpy as np

from tlcourse import diagnose
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import walk_layers
from tlcourse.checks import (
    CheckResult,
    _fail,
    _looks_like_probabilities,
    _ok,
    check_batchnorm_inference,
    check_frozen_unchanged,
    check_recompiled,
)
from tlcourse.checks.lesson05 import check_fine_tuned

__all__ = [
    "check_accuracy",
    "check_datasets",
    "check_fine_tune_phase",
    "check_head_phase",
    "check_model",
    "check_reloaded",
]

BASE_INPUT_RANGE = (-1.0, 1.0)
"""What MobileNetV2 expects: ``preprocess_input`` maps [0, 255] pixels to [-1, 1]."""

CHANCE_MARGIN = 0.3
"""With real ImageNet weights, accuracy must beat chance (1 / classes) by at least this much."""


def _batches(dataset: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(images), np.asarray(labels)) for images, labels in dataset]


def _fingerprints(batches: list[tuple[np.ndarray, np.ndarray]]) -> Counter:
    return Counter(
        hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        for images, _ in batches
        for image in images
    )


def check_datasets(train_ds: Any, val_ds: Any, class_names: Any, *, image_size: int) -> CheckResult:
    """The two datasets the rest of the pipeline reads: (images, labels) batches of raw pixels, integer labels,
    a validation set that is the same at every pass, and no image in both (the Keras-only exercise, step 1)."""
    names = [str(name) for name in class_names] if class_names is not None else []
    if len(names) < 2 or names != sorted(names):
        return _fail(
            f"class_names {names!r}: one name per class folder, in alphabetical order (the datasets' own)."
        )
    try:
        train, val, again = _batches(train_ds), _batches(val_ds), _batches(val_ds)
    except (TypeError, ValueError) as error:
        return _fail(f"the datasets must yield (images, labels) batches: {type(error).__name__}: {error}")
    if not train or not val:
        return _fail("a dataset is empty: point it at the folder's train/ (or validation/) images.")
    images, labels = train[0]
    if images.ndim != 4 or tuple(images.shape[1:]) != (image_size, image_size, 3):
        return _fail(
            f"image batches have shape {images.shape}, expected (batch, {image_size}, {image_size}, 3)."
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        return _fail(
            f"labels have shape {labels.shape} and type {labels.dtype}: the loss needs one integer class index per "
            "image (label_mode='int'), not one-hot vectors."
        )
    every = np.concatenate([lab for _, lab in train + val])
    if every.min() < 0 or every.max() >= len(names):
        return _fail(f"labels run from {every.min()} to {every.max()}, but there are {len(names)} classes.")
    low, high = min(float(b.min()) for b, _ in train), max(float(b.max()) for b, _ in train)
    if low < 0 or high > 255.5 or high <= 2.0:
        return _fail(
            f"the training images hold values from {low:.3g} to {high:.3g}: keep raw pixels in [0, 255] in the "
            "datasets; the model scales them itself, so a saved model takes photos as they are."
        )
    seen = _fingerprints(val)
    if seen != _fingerprints(again):
        return _fail(
            "the validation images change from one pass to the next: augment inside the model (where it acts only "
            "in training), never in the validation dataset."
        )
    shared = sum((seen & _fingerprints(train)).values())
    if shared:
        return _fail(
            f"{shared} validation image(s) are also training images: read training and validation from separate "
            "folders (or one folder split with validation_split, subset and the same seed)."
        )
    return _ok(
        f"{sum(len(b) for b, _ in train)} training and {sum(seen.values())} validation images, raw pixels, "
        f"integer labels for {len(names)} classes, none shared."
    )


def _loss_from_logits(model: Any) -> bool | None:
    """Whether the compiled loss takes logits (None: no loss, or not one the grader can read)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        return False  # "sparse_categorical_crossentropy" and friends take probabilities
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    return bool(config["from_logits"]) if "from_logits" in config else None


def check_model(model: Any, base: Any, images: Any, *, num_classes: int) -> CheckResult:
    """The compiled model before training: raw pixels in, one score per class out, a frozen base that receives
    MobileNetV2's [-1, 1] range, a loss that matches the outputs, nothing random at inference (step 2)."""
    report = diagnose.trainable_report(model)
    if not report.compiled:
        return _fail("the model is not compiled: compile it (optimizer, loss, metrics) before fit.")
    batch = np.asarray(images, dtype="float32")
    out = np.asarray(model(batch, training=False))
    if out.shape != (len(batch), num_classes):
        return _fail(
            f"the model outputs shape {out.shape[1:]}, not ({num_classes},): end with one unit per class."
        )
    if base.trainable_weights:
        return _fail(
            f"the base has {len(base.trainable_weights)} trainable weight tensors: set base.trainable = False "
            "before compiling, so only the new head learns at first."
        )
    from_logits, probabilities = _loss_from_logits(model), _looks_like_probabilities(out)
    if from_logits and probabilities:
        return _fail(
            "the model ends in a softmax but its loss expects logits (from_logits=True): drop the softmax, so "
            "the last layer outputs logits, or compile with from_logits=False."
        )
    if from_logits is False and not probabilities:
        return _fail(
            "the model outputs logits but its loss treats them as probabilities (from_logits=False): compile "
            "with SparseCategoricalCrossentropy(from_logits=True)."
        )
    reached = diagnose.backbone_input_range(model, base, batch)
    lo, hi = BASE_INPUT_RANGE
    if reached is None or reached[0] < lo - 0.05 or reached[1] > hi + 0.05 or reached[1] - reached[0] < 1.0:
        seen = "unknown" if reached is None else f"[{reached[0]:.3g}, {reached[1]:.3g}]"
        return _fail(
            f"the base receives values in {seen}, but MobileNetV2 expects [-1, 1]: scale raw [0, 255] pixels with "
            "Rescaling(1/127.5, offset=-1) or mobilenet_v2.preprocess_input inside the model, once."
        )
    if not np.allclose(out, np.asarray(model(batch, training=False)), atol=1e-5):
        return _fail(
            "two inference passes give different outputs: augmentation must act only while training (Keras' "
            "Random* layers do that by themselves; never call them with training=True)."
        )
    return _ok(f"{num_classes} outputs, a frozen base fed [-1, 1], a loss that matches the outputs.")


def _steps(dataset: Any) -> int:
    known = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
    return known if known >= 0 else sum(1 for _ in dataset)


def check_head_phase(model: Any, before: Any, history: Any = None, train_ds: Any = None) -> CheckResult:
    """Head training left the whole base untouched, BatchNorm statistics included, and trained the head.

    ``before`` is :func:`tlcourse.diagnose.snapshot_weights` of ``model`` taken after compiling and just before
    the head's ``fit``; ``model`` is the same object after that ``fit``. With ``history`` (what ``fit`` returned)
    and ``train_ds``, also: every epoch was checked on validation data, and ``fit`` trained on ``train_ds``.
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
    logs = getattr(history, "history", history) if history is not None else None
    if logs is not None and not any(str(key).startswith("val_") for key in logs):
        return _fail(
            "fit reported no validation figures: pass validation_data=val_ds, so every epoch is measured on "
            "photos it does not train on."
        )
    steps = (getattr(history, "params", None) or {}).get("steps")
    if train_ds is not None and steps is not None and steps != _steps(train_ds):
        return _fail(
            f"fit ran {steps} steps per epoch but train_ds has {_steps(train_ds)} batches: train on train_ds only "
            "(the validation images are for measuring, never for training)."
        )
    return _ok(f"the base and its BatchNorm statistics did not move; {frozen.message}")


def check_fine_tune_phase(
    model: Any, before: Any, history: Any = None, head_history: Any = None
) -> CheckResult:
    """Fine-tuning after unfreezing: recompiled, BatchNorm frozen, a low rate, only unfrozen weights moved, and
    (with both histories) the epoch count continued from the head's.

    ``before`` is the snapshot taken after unfreezing and compiling again, just before the second ``fit``.
    Uses :func:`tlcourse.checks.lesson05.check_fine_tuned` (the rate limit is
    :data:`tlcourse.models.FINE_TUNE_MAX_LEARNING_RATE`, 1e-4).
    """
    recompiled = check_recompiled(model)
    if not recompiled.passed:
        return _fail(f"{recompiled.message} (after changing trainable, call model.compile again)")
    tuned = check_fine_tuned(model, before)
    if not tuned.passed or history is None or head_history is None:
        return tuned
    first, head_epochs = (
        (list(getattr(history, "epoch", [])) or [0])[0],
        len(getattr(head_history, "epoch", [])),
    )
    if first != head_epochs:
        return _fail(
            f"fine-tuning counted its epochs from {first + 1}, but the head already ran {head_epochs}: continue "
            "the count (initial_epoch=the head's epochs, epochs=that plus the fine-tuning epochs)."
        )
    return tuned


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
