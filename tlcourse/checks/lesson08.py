"""Graders for lesson 08's capstone exercises: the brief, the classifier, the exports, new predictions.

Used in ``solutions/08_creative_brief.ipynb`` as ``from tlcourse.checks import lesson08 as grade``. Like every
grader in :mod:`tlcourse.checks` they test what an answer *does*: a metric against scikit-learn, weights before
and after training, BatchNorm mode, accuracy against chance with a bootstrap interval, exported files reloaded
and run, predictions against the model run on :func:`tlcourse.imageio.load_image` pixels (lesson 08).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse import diagnose
from tlcourse.checks import (
    CheckResult,
    _call,
    _fail,
    _ok,
    check_batchnorm_inference,
    check_metric,
)
from tlcourse.export import CARD_FILE

BRIEF_FIELDS: tuple[str, ...] = ("problem", "classes", "users", "mistake_cost", "metric")
"""What a capstone brief states: the problem, its classes, who uses the model, what a mistake costs, the metric."""

OVERALL_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "macro_recall",
    "macro_precision",
)
PER_CLASS_METRICS: tuple[str, ...] = ("recall", "precision", "f1")
"""Written ``"recall:<class>"`` etc.: the metric of one class that matters most (e.g. the costly one to miss)."""

_PLACEHOLDER = re.compile(
    r"^\s*(\.\.\.|…|todo|tbd|xxx|\?+|your .*|<.*>|fill .*|none|n/?a|-)\s*$", re.IGNORECASE
)


def _is_placeholder(text: str) -> bool:
    return not text.strip() or bool(_PLACEHOLDER.match(text))


# ------------------------------------------------------------------------------------------------ brief


def parse_metric(metric: str, class_names: Sequence[str]) -> tuple[str, int | None]:
    """Split a brief's metric into ``(name, class index or None)``; raise ValueError if unknown (lesson 08).

    ``"macro_f1"`` -> ``("macro_f1", None)``; ``"recall:roses"`` -> ``("recall", index of roses)``.
    """
    text = str(metric).strip()
    if text in OVERALL_METRICS:
        return text, None
    name, sep, cls = text.partition(":")
    if sep and name in PER_CLASS_METRICS:
        if cls not in class_names:
            raise ValueError(f"'{cls}' is not one of the classes {list(class_names)}.")
        return name, list(class_names).index(cls)
    raise ValueError(
        f"unknown metric {metric!r}: use one of {list(OVERALL_METRICS)} or "
        f"'recall:<class>', 'precision:<class>', 'f1:<class>'."
    )


def reference_metric(metric: str, class_names: Sequence[str]) -> Callable[[Any, Any], float]:
    """The scikit-learn computation of a brief's metric, as ``f(y_true, y_pred) -> float`` (lesson 08)."""
    from sklearn import metrics as skm

    name, index = parse_metric(metric, class_names)
    labels = list(range(len(class_names)))
    if index is not None:
        per_class = {"recall": skm.recall_score, "precision": skm.precision_score, "f1": skm.f1_score}[name]
        return lambda t, p: float(per_class(t, p, labels=[index], average="macro", zero_division=0))
    if name == "accuracy":
        return lambda t, p: float(skm.accuracy_score(t, p))
    if name == "balanced_accuracy":
        return lambda t, p: float(skm.balanced_accuracy_score(t, p))
    scorer = {
        "macro_f1": skm.f1_score,
        "macro_recall": skm.recall_score,
        "macro_precision": skm.precision_score,
    }[name]
    return lambda t, p: float(scorer(t, p, labels=labels, average="macro", zero_division=0))


def check_brief(brief: Mapping[str, Any], class_names: Sequence[str] | None = None) -> CheckResult:
    """Every field of the brief is filled with real text, and its classes and metric fit the folder (lesson 08).

    ``class_names``: the classes the audit found; the brief's classes must be among them (the folder may hold
    more only if the brief says so by listing them), and a per-class metric must name one of them.
    """
    if not isinstance(brief, Mapping):
        return _fail(f"BRIEF must be a dict with the keys {list(BRIEF_FIELDS)}, got {type(brief).__name__}.")
    missing = [key for key in BRIEF_FIELDS if key not in brief]
    if missing:
        return _fail(f"the brief has no {', '.join(missing)}: add {'it' if len(missing) == 1 else 'them'}.")
    for key in ("problem", "users", "mistake_cost"):
        value = brief[key]
        if not isinstance(value, str) or _is_placeholder(value):
            return _fail(
                f"'{key}' is still empty or a placeholder ({value!r}): write a sentence of your own."
            )
        if len(value.split()) < 3:
            return _fail(f"'{key}' is only {value!r}: say it in a full sentence (who, what, why).")
    classes = brief["classes"]
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) < 2:
        return _fail("'classes' must be a list of at least two class names, e.g. ['ripe', 'unripe'].")
    if any(not isinstance(c, str) or _is_placeholder(c) for c in classes):
        return _fail(f"'classes' holds an empty or placeholder name: {list(classes)}.")
    if class_names is not None:
        unknown = [c for c in classes if c not in class_names]
        if unknown:
            return _fail(
                f"the brief names {unknown}, but the image folder's classes are {list(class_names)}: "
                "name the classes as the folder does (one sub-folder per class), or fix the folder."
            )
        if len(classes) != len(class_names):
            extra = [c for c in class_names if c not in classes]
            return _fail(f"the folder also holds {extra}: list every class the model will predict.")
    try:
        parse_metric(str(brief["metric"]), list(class_names if class_names is not None else classes))
    except ValueError as error:
        return _fail(f"'metric': {error}")
    return _ok(
        f"the brief states the problem, {len(classes)} classes, the users, the cost and '{brief['metric']}'."
    )


def check_brief_metric(
    fn: Callable[[np.ndarray, np.ndarray], float], metric: str, class_names: Sequence[str], *, cases: int = 6
) -> CheckResult:
    """``fn(y_true, y_pred)`` computes the brief's metric as scikit-learn does, on random label sets (lesson 08)."""
    try:
        reference = reference_metric(metric, class_names)
    except ValueError as error:
        return _fail(f"the brief's metric cannot be checked: {error}")
    result = check_metric(fn, reference, cases=cases, num_classes=len(class_names))
    if result.passed:
        return _ok(f"your {metric} matches scikit-learn on {cases} random cases.")
    name, index = parse_metric(metric, class_names)
    hint = (
        f" For '{metric}' count only class {index} ('{class_names[index]}'): "
        + {
            "recall": "of the images that truly are it, the share predicted as it",
            "precision": "of the images predicted as it, the share that truly are it",
            "f1": "the harmonic mean of its precision and recall",
        }[name]
        + "."
        if index is not None
        else ""
    )
    return _fail(result.message + hint)


# ------------------------------------------------------------------------------------------- classifier


def accuracy_verdict(
    y_true: Any,
    probs: Any,
    num_classes: int,
    *,
    margin: float = 0.1,
    level: float = 0.95,
    seed: int = 0,
) -> CheckResult:
    """Validation accuracy beats chance (``1 / num_classes``) by ``margin``, with a bootstrap lower bound above
    chance (lesson 08)."""
    from tlcourse import evaluate

    y = np.asarray(y_true).astype(int).ravel()
    predicted = np.asarray(probs).argmax(axis=-1).ravel()
    chance = 1.0 / num_classes
    point, low, high = evaluate.bootstrap_interval(y, predicted, "accuracy", level=level, seed=seed)
    where = f"accuracy {point:.3f} ({level:.0%} interval {low:.3f}-{high:.3f}) on {len(y)} validation images"
    if point < chance + margin:
        return _fail(
            f"{where}, chance is {chance:.3f}: it must beat chance by {margin:.2f}. Train the head longer or "
            "check the labels and the preprocessing (raw [0, 255] pixels go in; the model preprocesses)."
        )
    if low <= chance:
        return _fail(
            f"{where}: the interval still reaches chance ({chance:.3f}), so the gain may be luck. "
            "Use more validation images or train better."
        )
    return _ok(f"{where}, clearly above chance ({chance:.3f}).")


def check_head_phase(
    model: Any,
    base: Any,
    before: Any,
    splits: Any,
    *,
    enforce_accuracy: bool = True,
    margin: float = 0.1,
) -> CheckResult:
    """The classifier after the head phase: one logit per folder class, the base untouched by training
    (weights and BatchNorm statistics equal to ``before``, a :func:`tlcourse.diagnose.snapshot_weights` of
    ``base`` taken before training), BatchNorm in inference mode, and (with ``enforce_accuracy``) validation
    accuracy above chance (lesson 08)."""
    from tlcourse import evaluate

    num_classes = len(splits.class_names)
    images, _ = next(iter(splits.validation))
    try:
        out = np.asarray(model(np.asarray(images), training=False))
    except Exception as error:  # noqa: BLE001 - a student error becomes a hint
        return _fail(
            f"the model cannot take a validation batch of raw images: {type(error).__name__}: {error}"
        )
    if out.shape != (len(images), num_classes):
        return _fail(
            f"output shape {out.shape} for a batch of {len(images)}, expected ({len(images)}, {num_classes}): "
            f"the audited folder has {num_classes} classes, so end with Dense({num_classes})."
        )
    after = diagnose.snapshot_weights(base)
    if len(before.values) != len(after.values):
        return _fail(
            "the snapshot does not match the base: take diagnose.snapshot_weights(base) just before training."
        )
    moved = [
        path
        for path, old, new in zip(before.paths, before.values, after.values, strict=False)
        if old.shape != new.shape or not np.array_equal(old, new)
    ]
    if moved:
        stats = any("moving" in path for path in moved)
        return _fail(
            f"{len(moved)} weight(s) of the base changed during the head phase, e.g. {moved[0]}; "
            + (
                "its BatchNorm statistics moved, so the base was trainable: set base.trainable = False (which "
                "freezes its BatchNorm layers too) before compile; in Keras 3, calling it with training=False "
                "does not stop fit from updating trainable BatchNorm layers."
                if stats
                else "freeze it (base.trainable = False) BEFORE compile and fit."
            )
        )
    if not model.trainable_weights:
        return _fail("nothing in the model is trainable: the new head must be.")
    batchnorm = check_batchnorm_inference(model)
    if not batchnorm.passed:
        return batchnorm
    shape_note = f"{num_classes} logits, base frozen, BatchNorm in inference mode"
    if not enforce_accuracy:
        return _ok(
            f"{shape_note} (accuracy not graded in this profile: too few images or no pretrained weights)."
        )
    y_true, probs = evaluate.predict_dataset(model, splits.validation)
    verdict = accuracy_verdict(y_true, probs, num_classes, margin=margin)
    if not verdict.passed:
        return verdict
    return _ok(f"{shape_note}; {verdict.message}")


# ----------------------------------------------------------------------------------------------- export


def check_export(
    out_dir: str | Path,
    model: Any,
    sample: Any,
    class_names: Sequence[str],
    accuracy: float,
    *,
    card_name: str = CARD_FILE,
) -> CheckResult:
    """The files in ``out_dir`` compute what ``model`` computes, and the model card reports the measured accuracy
    and the class names (lesson 08).

    Reloads ``model.keras`` (safe mode), ``saved_model/`` and ``model.tflite`` and runs each on ``sample``;
    each max |difference| must be within :data:`tlcourse.export.TOLERANCES`.
    """
    from tlcourse import export

    out = Path(out_dir)
    images = np.asarray(sample, dtype="float32")
    expected = np.asarray(model.predict(images, verbose=0), dtype="float64")
    loaders: dict[str, Callable[[Path], Any]] = {
        "keras": lambda p: export.load_keras(p, compile=False).predict(images, verbose=0),
        "saved_model": lambda p: export.load_saved_model(p)(images),
        "tflite": lambda p: export.predict_tflite(p, images),
    }
    diffs: dict[str, float] = {}
    for kind, load in loaders.items():
        path = out / export.FILE_NAMES[kind]
        if not path.exists():
            return _fail(f"no {path.name} in {out}: export every format (export.export_all does all three).")
        try:
            got = load(path)
            if isinstance(got, Mapping):
                got = next(iter(got.values()))
            got = np.asarray(got, dtype="float64")
        except Exception as error:  # noqa: BLE001
            return _fail(f"{path.name} cannot be reloaded and run: {type(error).__name__}: {error}")
        if got.shape != expected.shape:
            return _fail(f"{path.name} returns shape {got.shape}, the model {expected.shape}.")
        diffs[kind] = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        if not diffs[kind] <= export.TOLERANCES[kind]:
            return _fail(
                f"{path.name} differs from the model by up to {diffs[kind]:.3g} (tolerance "
                f"{export.TOLERANCES[kind]:g}): export the final, trained model, after the last fit."
            )
    card_path = out / card_name
    if not card_path.is_file():
        return _fail(f"no {card_name} in {out}: write the model card there.")
    card = card_path.read_text(encoding="utf-8")
    shown = {f"{accuracy:.3f}", f"{accuracy:.2f}", f"{accuracy:.1%}", f"{accuracy * 100:.1f}"}
    if not any(text in card for text in shown):
        return _fail(
            f"{card_name} does not report the measured validation accuracy ({accuracy:.3f}): pass the evaluation "
            "summary of this model to modelcard.model_card."
        )
    missing = [c for c in class_names if c not in card]
    if missing:
        return _fail(
            f"{card_name} does not name the class(es) {missing}: pass class_names to modelcard.model_card."
        )
    worst = ", ".join(f"{k} {v:.2g}" for k, v in diffs.items())
    return _ok(
        f"all three exports reproduce the model (max |diff|: {worst}); the card reports accuracy and classes."
    )


# ------------------------------------------------------------------------------------------ predictions


def reference_probabilities(model: Any, paths: Sequence[str | Path]) -> np.ndarray:
    """Class probabilities for image files, prepared exactly as training did (lesson 08).

    :func:`tlcourse.imageio.load_image` at the model's input size (EXIF applied, RGB, [0, 255]), the model's
    logits, then a softmax.
    """
    from tlcourse import evaluate, imageio
    from tlcourse.predict import model_image_size

    size = model_image_size(model)
    batch = np.stack([imageio.load_image(p, size).astype("float32") for p in paths])
    logits = np.asarray(model.predict(batch, verbose=0))
    return evaluate.to_probabilities(logits, from_logits=True)


KERAS_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")
"""The resampling filters ``keras.utils.load_img`` offers: any of them is a correct way to read a photo."""
TF_RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")


def correct_readings(paths: Sequence[str | Path], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The ways of reading image files that prepare them as training did, each as a float32 batch (lesson 08).

    RGB, resized to the model's input ``size`` (height, width), raw [0, 255] pixels: the course's
    :func:`tlcourse.imageio.load_image`, Keras' own ``keras.utils.load_img`` with each of its resampling filters,
    and ``tf.io.decode_image`` + ``tf.image.resize`` (what ``image_dataset_from_directory`` does) with each
    method, with and without antialiasing. They differ by a few grey levels, so their probabilities differ a
    little; none of them rescales the pixels.
    """
    import keras
    import tensorflow as tf

    from tlcourse import imageio

    height, width = size
    readings = {"imageio.load_image": [imageio.load_image(p, (height, width)) for p in paths]}
    for method in KERAS_INTERPOLATIONS:
        readings[f"keras.utils.load_img({method})"] = [
            keras.utils.img_to_array(keras.utils.load_img(p, target_size=size, interpolation=method))
            for p in paths
        ]
    decoded = [
        tf.io.decode_image(tf.io.read_file(str(p)), channels=3, expand_animations=False) for p in paths
    ]
    for method in TF_RESIZE_METHODS:
        for antialias in (False, True):
            readings[f"tf.image.resize({method}, antialias={antialias})"] = [
                tf.image.resize(image, size, method=method, antialias=antialias).numpy() for image in decoded
            ]
    return {name: np.stack(batch).astype("float32") for name, batch in readings.items()}


def check_predict(
    fn: Callable[[Sequence[str]], Any], model: Any, paths: Sequence[str | Path], *, atol: float = 1e-4
) -> CheckResult:
    """``fn(paths)`` returns ``[N, classes]`` probabilities equal to the model's on images read as training read
    them (lesson 08).

    Any correct reading passes (:func:`correct_readings`: the course's ``imageio.load_image``, Keras'
    ``load_img``, TensorFlow's decode and resize), image by image within ``atol``; extra scaling, logits
    instead of probabilities or another input size fail with a hint.
    """
    from tlcourse import evaluate
    from tlcourse.predict import model_image_size

    paths = [str(p) for p in paths]
    got, error = _call(fn, list(paths))
    if error is not None:
        return error
    expected = reference_probabilities(model, paths)
    got = np.asarray(got, dtype="float64")
    if got.shape != expected.shape:
        return _fail(
            f"got shape {got.shape} for {len(paths)} images, expected {expected.shape}: one row of class "
            "probabilities per image, in the order given."
        )
    if not np.allclose(got.sum(axis=-1), 1.0, atol=1e-3):
        return _fail(
            "the rows do not sum to 1: the model outputs logits; apply a softmax to get probabilities."
        )
    diff = float(np.max(np.abs(got - expected)))
    if diff > atol:
        readings = correct_readings(paths, model_image_size(model))
        closest = np.full(len(paths), np.inf)
        for batch in readings.values():
            probs = evaluate.to_probabilities(np.asarray(model.predict(batch, verbose=0)), from_logits=True)
            closest = np.minimum(closest, np.max(np.abs(got - probs), axis=-1))
        if np.all(closest <= atol):
            return _ok(
                f"{len(paths)} images classified as the model sees them after training (read another correct "
                "way than imageio.load_image: resampling filters differ by a few grey levels)."
            )
        hint = (
            "the same classes win, but the probabilities differ: read the images at the model's input size "
            "(imageio.load_image or keras.utils.load_img), keep the raw [0, 255] pixels (the model "
            "preprocesses them itself)"
            if np.array_equal(got.argmax(-1), expected.argmax(-1))
            else "different classes win: prepare images exactly as training did (RGB at the model's input size, "
            "raw [0, 255] float32 pixels, no extra scaling)"
        )
        return _fail(f"probabilities differ from the reference by up to {diff:.3g}; {hint}.")
    return _ok(
        f"{len(paths)} images classified exactly as the model sees them after training (max |diff| {diff:.1g})."
    )


__all__ = [
    "BRIEF_FIELDS",
    "OVERALL_METRICS",
    "PER_CLASS_METRICS",
    "accuracy_verdict",
    "check_brief",
    "check_brief_metric",
    "check_export",
    "check_head_phase",
    "check_predict",
    "correct_readings",
    "parse_metric",
    "reference_metric",
    "reference_probabilities",
]
