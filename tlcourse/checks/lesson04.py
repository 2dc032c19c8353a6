"""Graders for the lesson 04 exercises: extractor, head, a classic classifier, augmentation (lesson 04).

Used in ``solutions/04_feature_extraction.ipynb`` as ``from tlcourse.checks import lesson04 as grade``. The
graders build a tiny MobileNetV2 with random weights (nothing is downloaded) or generate features, run the
student's code on them, and compare with :mod:`tlcourse.features` or scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tlcourse.backend import count_params
from tlcourse.backend import keras_module as _keras
from tlcourse.checks import CheckResult, _call, _fail, _ok, check_claim, check_head, plain_float

__all__ = [
    "check_claim",
    "check_feature_extractor",
    "check_head_builder",
    "check_logistic_regression",
    "feature_probe",
]

_PROBE_SIZE = 64


def _probe_backbone(seed: int = 0) -> Any:
    from tlcourse import models

    return models.build_backbone(
        "mobilenet_v2", alpha=0.35, image_size=_PROBE_SIZE, weights="random", seed=seed, verbose=False
    )


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal up to float noise, relative to the reference's scale (a random backbone's features are tiny)."""
    got, want = np.asarray(got, dtype="float64"), np.asarray(want, dtype="float64")
    if got.shape != want.shape:
        return False
    scale = max(float(np.abs(want).max()), 1e-30)
    return bool(np.allclose(got / scale, want / scale, rtol=1e-3, atol=1e-3))


def check_feature_extractor(build: Callable[[Any], Any], *, seed: int = 0) -> CheckResult:
    """``build(backbone) -> model``: raw pixels -> preprocessing -> frozen backbone -> average pooling (lesson 04).

    Tried on a small MobileNetV2 with random weights: the model must take raw [0, 255] images of the
    backbone's size, return one ``[channels]`` vector per image, have no trainable weights, give the same
    output in training and inference mode, and agree with :func:`tlcourse.features.feature_extractor`
    (which is where a wrong preprocessing range shows up).
    """
    from tlcourse import features, models

    keras = _keras()
    backbone = _probe_backbone(seed)
    channels = int(backbone.output_shape[-1])
    extractor, error = _call(build, backbone)
    if error is not None:
        return error
    if not isinstance(extractor, keras.Model):
        return _fail(f"return a keras.Model (raw pixels in, features out); got {type(extractor).__name__}.")
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, size=(3, _PROBE_SIZE, _PROBE_SIZE, 3)).astype("float32")
    try:
        out = np.asarray(extractor(pixels.copy(), training=False))
    except Exception as error:  # noqa: BLE001
        return _fail(
            f"the model cannot take raw images of shape {pixels.shape}: {type(error).__name__}: {error}"
        )
    if out.shape != (3, channels):
        hint = (
            "pool the feature map into one vector (GlobalAveragePooling2D)"
            if out.ndim == 4 or (out.ndim == 2 and out.shape[1] > channels)
            else "return the backbone's pooled features, no new Dense layer"
        )
        return _fail(f"output shape {out.shape} for 3 images, expected (3, {channels}); {hint}.")
    if count_params(extractor) or backbone.trainable_weights:
        return _fail(
            f"{count_params(extractor):,} trainable parameters: freeze the backbone (backbone.trainable = False) "
            "so its features never change."
        )
    if not _same(np.asarray(extractor(pixels.copy(), training=True)), out):
        return _fail(
            "the features differ in training mode: call the backbone with training=False so BatchNorm keeps "
            "its ImageNet statistics."
        )
    expected = np.asarray(features.feature_extractor(backbone, pooling="avg")(pixels.copy()))
    if _same(out, expected):
        return _ok(
            f"raw pixels in, {channels} pooled features out, nothing trainable, preprocessing as the backbone expects."
        )
    pool = keras.layers.GlobalAveragePooling2D()
    candidates = {
        "the raw 0..255 pixels reach the backbone: add the backbone's preprocessing "
        "(models.preprocessing_layer, or Rescaling(1/127.5, offset=-1) for MobileNetV2)": pixels,
        "the backbone gets pixels in 0..1, but MobileNetV2 expects -1..1 (x / 127.5 - 1)": pixels / 255.0,
    }
    for hint, variant in candidates.items():
        if _same(out, np.asarray(pool(backbone(variant, training=False)))):
            return _fail(f"{hint}.")
    preprocessed = np.asarray(models.preprocessing_layer("mobilenet_v2")(pixels.copy()))
    maxed = np.asarray(keras.layers.GlobalMaxPooling2D()(backbone(preprocessed, training=False)))
    if _same(out, maxed):
        return _fail("that is max pooling: use global AVERAGE pooling, as the lesson does.")
    return _fail(
        "the features differ from preprocessing -> frozen backbone (training=False) -> global average pooling; "
        "check each step against lesson 04."
    )


def check_head_builder(build: Callable[..., Any]) -> CheckResult:
    """``build(num_features, num_classes, dropout=0.2)``: a head on pooled features returning logits (lesson 04).

    Tried at two sizes with :func:`tlcourse.checks.check_head` (output shape, logits, one Dense layer's
    parameters), and dropout must act in training only.
    """
    for num_features, num_classes in ((8, 3), (24, 5)):
        head, error = _call(build, num_features, num_classes, dropout=0.5)
        if error is not None:
            return error
        result = check_head(head, num_classes, (num_features,))
        if not result.passed:
            return _fail(f"with {num_features} features and {num_classes} classes: {result.message}")
    batch = np.random.default_rng(0).normal(size=(64, 24)).astype("float32")
    inference = np.asarray(head(batch, training=False))
    if not np.allclose(inference, np.asarray(head(batch, training=False)), atol=1e-6):
        return _fail("two inference passes differ: dropout must switch off when training=False.")
    if np.allclose(inference, np.asarray(head(batch, training=True)), atol=1e-6):
        return _fail(
            "training and inference give the same output: put a Dropout(dropout) layer before the Dense layer."
        )
    return _ok("the head maps pooled features to one logit per class, with dropout in training only.")


def feature_probe(
    n_train: int = 60, n_val: int = 150, dim: int = 40, k: int = 3, *, noise: float = 2.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic ``(x_train, y_train, x_val, y_val)`` features where a linear model overfits (lesson 04).

    Few training rows in many dimensions: training accuracy is near 1, validation accuracy clearly lower.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(k, dim)) * 0.8
    y_train = np.arange(n_train) % k
    y_val = rng.integers(0, k, n_val)
    x_train = centres[y_train] + rng.normal(0.0, noise, size=(n_train, dim)) + 5.0
    x_val = centres[y_val] + rng.normal(0.0, noise, size=(n_val, dim)) + 5.0
    return x_train.astype("float32"), y_train, x_val.astype("float32"), y_val


def check_logistic_regression(fn: Callable[..., Any], *, seed: int = 0) -> CheckResult:
    """``fn(x_train, y_train, x_val, y_val) -> (fitted_model, val_accuracy)`` (lesson 04).

    On synthetic features where training and validation accuracy differ: the model must be fitted on the
    training rows (scikit-learn's ``predict``), the accuracy must be that model's accuracy on the validation
    rows (``accuracy_score``), and it must be in the range a logistic regression reaches there.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, x_val, y_val = feature_probe(seed=seed)
    got, error = _call(fn, x_train.copy(), y_train.copy(), x_val.copy(), y_val.copy())
    if error is not None:
        return error
    try:
        model, accuracy = got
    except (TypeError, ValueError):
        accuracy = None
    accuracy = plain_float(accuracy)
    if accuracy is None:
        return _fail(f"return a pair (fitted model, validation accuracy); got {got!r}.")
    if not hasattr(model, "predict"):
        return _fail("the first value should be the fitted scikit-learn model (it needs a predict method).")
    try:
        val_pred = np.asarray(model.predict(x_val))
        train_pred = np.asarray(model.predict(x_train))
    except Exception as error:  # noqa: BLE001
        return _fail(f"model.predict failed ({type(error).__name__}: {error}): did you fit it?")
    val_accuracy = float(accuracy_score(y_val, val_pred))
    train_accuracy = float(accuracy_score(y_train, train_pred))
    if not math.isclose(accuracy, val_accuracy, abs_tol=1e-9):
        if math.isclose(accuracy, train_accuracy, abs_tol=1e-9):
            hint = "that is the accuracy on the TRAINING features: score on the validation features"
        else:
            hint = "compute it as the share of validation rows where model.predict(x_val) equals y_val"
        return _fail(
            f"you report {accuracy:.3f}, but your model's validation accuracy is {val_accuracy:.3f}; {hint}."
        )
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    ref_accuracy = float(reference.score(x_val, y_val))
    if val_accuracy > ref_accuracy + 0.15 and train_accuracy < 0.9:
        return _fail(
            "the model does better on validation than on its own training rows: fit it on x_train, y_train only."
        )
    if val_accuracy < ref_accuracy - 0.15:
        return _fail(
            f"validation accuracy {val_accuracy:.3f}, while a standardised logistic regression reaches "
            f"{ref_accuracy:.3f} here: fit on x_train, y_train (and standardise the features)."
        )
    return _ok(
        f"fitted on the training rows (train accuracy {train_accuracy:.3f}), validation accuracy "
        f"{val_accuracy:.3f} computed correctly (a standard logistic regression: {ref_accuracy:.3f})."
    )
