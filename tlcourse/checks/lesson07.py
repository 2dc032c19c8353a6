"""Graders for the lesson 07 exercises: domain shift (introduced in lesson 07).

Used as ``from tlcourse.checks import lesson07 as grade`` in ``exercises/07_domain_shift.ipynb``. Each grader
runs the student's code on small generated arrays (or on the arrays the student produced) and compares with a
reference computed here with NumPy and scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from tlcourse.checks import CheckResult, _fail, _ok, plain_float

SEVERITY_STEPS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5)
"""Severities at which :func:`check_corruption` checks that images get darker."""


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, CheckResult | None]:
    """Run the student's function; an exception becomes a short failed result (no array dumps)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, _fail("the function still raises NotImplementedError: replace the stub with your code.")
    except Exception as error:  # noqa: BLE001 - any student error becomes a hint, not a traceback
        name = getattr(fn, "__name__", "your function")
        return None, _fail(f"{name} raised {type(error).__name__}: {error}")


def _probe_images(seed: int = 0, count: int = 6, size: int = 20) -> np.ndarray:
    """Varied test images in [0, 255]: smooth gradients plus texture, some bright, some dark."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for i in range(count):
        level = 40 + 180 * i / max(1, count - 1)
        colour = rng.uniform(0.6, 1.2, 3).astype(np.float32)
        base = level * (0.6 + 0.4 * xx[..., None] * yy[..., None]) * colour
        images.append(base + rng.normal(0, 10, (size, size, 3)))
    return np.clip(np.stack(images), 0, 255).astype(np.float32)


def check_corruption(fn: Callable[..., Any], *, severities: Sequence[float] = SEVERITY_STEPS) -> CheckResult:
    """A darkening corruption ``fn(images, severity, seed)`` meets the spec of exercise 1 (lesson 07).

    Severity 0 leaves the images unchanged; the mean brightness falls strictly as the severity grows; the result
    has the input's shape, is float32 and stays in ``[0, 255]``; the same seed gives the same result; the input
    array is not modified.
    """
    images = _probe_images()
    original = images.copy()
    outputs = []
    for severity in severities:
        out, error = _call(fn, images, float(severity), 0)
        if error is not None:
            return error
        if not np.array_equal(images, original):
            return _fail(
                "your function changed the input array in place: work on a copy (e.g. images / 255.0)."
            )
        out = np.asarray(out) if not isinstance(out, np.ndarray) else out
        if out.shape != images.shape:
            return _fail(f"the output has shape {out.shape}, the input {images.shape}: keep the shape.")
        if out.dtype != np.float32:
            return _fail(f"the output is {out.dtype}: return float32 (e.g. .astype(np.float32)).")
        if not np.isfinite(out).all() or out.min() < 0 or out.max() > 255:
            return _fail(
                f"at severity {severity} values run from {np.nanmin(out):.1f} to {np.nanmax(out):.1f}: clip to "
                "[0, 255] after adding noise (np.clip)."
            )
        outputs.append(out)
    if not np.allclose(outputs[0], images, atol=1e-3):
        return _fail(
            "severity 0 must return the images unchanged (largest change "
            f"{np.abs(outputs[0] - images).max():.2f}): scale every effect, noise included, by the severity."
        )
    means = [float(o.mean()) for o in outputs]
    for (s0, m0), (s1, m1) in pairwise(zip(severities, means, strict=True)):
        if not m1 < m0:
            return _fail(
                f"the mean brightness went from {m0:.1f} at severity {s0:g} to {m1:.1f} at severity {s1:g}: it "
                "must fall as the severity grows (noise clipped at 0 can lift dark images; keep it small there)."
            )
    first, error = _call(fn, images, 1.0, 0)
    if error is not None:
        return error
    again, error = _call(fn, images, 1.0, 0)
    if error is not None:
        return error
    if not np.array_equal(np.asarray(first), np.asarray(again)):
        return _fail(
            "two calls with the same seed gave different images: draw the noise from "
            "np.random.default_rng(seed), not from np.random.normal."
        )
    single, error = _call(fn, images[:1], 1.0, 0)
    if error is not None:
        return error
    if np.asarray(single).shape != images[:1].shape:
        return _fail("a batch of one image came back with another shape: handle any batch size.")
    trail = ", ".join(f"{m:.0f}" for m in means)
    return _ok(
        f"identity at 0, darker at every step (mean {trail}), float32 in [0, 255], shape kept, seeded."
    )


def _predicted_labels(scores: Any) -> np.ndarray:
    array = np.asarray(scores)
    return array.argmax(axis=-1) if array.ndim == 2 else array.astype(np.int64)


def _drop_cases(
    seed: int,
) -> list[tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, np.ndarray, np.ndarray]]:
    """Toy classifiers (class = brightness band) with images whose shifted copies are darker."""
    rng = np.random.default_rng(seed)
    cases = []
    for num_classes, n in ((3, 30), (4, 23), (2, 17)):
        labels = rng.integers(0, num_classes, n)
        labels[:num_classes] = np.arange(num_classes)
        bands = np.where(rng.random(n) < 0.25, rng.integers(0, num_classes, n), labels)  # some source errors
        levels = (bands + rng.uniform(0.05, 0.95, n)) * 255.0 / num_classes
        source = np.broadcast_to(levels[:, None, None, None], (n, 4, 4, 3)).astype(np.float32).copy()
        target = source * rng.uniform(0.45, 1.0, (n, 1, 1, 1)).astype(np.float32)

        def predict(x: np.ndarray, k: int = num_classes) -> np.ndarray:
            band = np.clip((np.asarray(x).mean(axis=(1, 2, 3)) / 255.0 * k).astype(int), 0, k - 1)
            return np.eye(k, dtype=np.float32)[band] * 0.8 + 0.2 / k  # probabilities, not labels

        cases.append((predict, source, target, labels))
    return cases


def check_accuracy_drop(fn: Callable[..., Any], *, seed: int = 0) -> CheckResult:
    """``fn(predict, source_images, target_images, labels) -> (source_acc, target_acc, drop)`` (lesson 07).

    ``predict`` returns class scores; both accuracies are measured against the true ``labels`` and
    ``drop = source_acc - target_acc`` (positive when the shift hurts). Compared with scikit-learn.
    """
    from sklearn.metrics import accuracy_score

    for number, (predict, source, target, labels) in enumerate(_drop_cases(seed), start=1):
        got, error = _call(fn, predict, source.copy(), target.copy(), labels.copy())
        if error is not None:
            return error
        try:
            source_acc, target_acc, drop = (plain_float(v) for v in got)
        except (TypeError, ValueError):
            source_acc = None
        if source_acc is None or target_acc is None or drop is None:
            return _fail(f"return three numbers (source accuracy, target accuracy, drop); got {got!r}.")
        want_source = accuracy_score(labels, _predicted_labels(predict(source)))
        want_target = accuracy_score(labels, _predicted_labels(predict(target)))
        agreement = accuracy_score(_predicted_labels(predict(source)), _predicted_labels(predict(target)))
        if math.isclose(target_acc, agreement, abs_tol=1e-9) and not math.isclose(agreement, want_target):
            return _fail(
                "the target accuracy equals the agreement between source and target predictions: score the "
                "target predictions against the true labels, not against the source predictions."
            )
        if not (
            math.isclose(source_acc, want_source, abs_tol=1e-9)
            and math.isclose(target_acc, want_target, abs_tol=1e-9)
        ):
            return _fail(
                f"case {number}: got accuracies {source_acc:.4f} / {target_acc:.4f}, scikit-learn gives "
                f"{want_source:.4f} / {want_target:.4f}; take the argmax of the scores over classes and compare "
                "with the labels."
            )
        if math.isclose(drop, want_target - want_source, abs_tol=1e-9) and want_target != want_source:
            return _fail("the drop has the wrong sign: drop = source accuracy - target accuracy.")
        if not math.isclose(drop, want_source - want_target, abs_tol=1e-9):
            return _fail(f"case {number}: drop {drop:.4f}, expected {want_source - want_target:.4f}.")
    return _ok("source and target accuracies match scikit-learn, and the drop is source minus target.")


def _digests(images: Any) -> list[bytes]:
    array = np.ascontiguousarray(np.asarray(images))
    if array.ndim == 3:
        array = array[None]
    return [np.rint(image).astype(np.int16).tobytes() for image in array]


def check_adaptation(
    few_images: Any,
    held_out_images: Any,
    held_out_labels: Any,
    predict_before: Callable[[np.ndarray], Any],
    predict_after: Callable[[np.ndarray], Any],
    *,
    require_gain: bool = True,
) -> CheckResult:
    """The adapted model is measured on held-out target images and beats the unadapted one (lesson 07).

    ``few_images`` are the labelled target images used for adaptation, ``held_out_images``/``held_out_labels``
    the target images used to measure. They must not overlap. Both predictors (images -> scores or labels)
    are scored here on the held-out images; with ``require_gain`` the adapted accuracy must be higher.
    """
    held = np.asarray(held_out_images)
    labels = np.asarray(held_out_labels).astype(np.int64)
    if len(held) == 0:
        return _fail("the held-out set is empty: keep target images apart to measure on.")
    if len(held) != len(labels):
        return _fail(f"{len(held)} held-out images but {len(labels)} labels.")
    few = set(_digests(few_images))
    if not few:
        return _fail("no labelled target images: adapt with k > 0 images per class.")
    overlap = sum(digest in few for digest in _digests(held))
    if overlap:
        return _fail(
            f"{overlap} of the {len(held)} held-out images are among the images you adapted on: measure on "
            "target images the adaptation never saw (e.g. the target validation split), or the gain is inflated."
        )
    accuracies = []
    for name, predict in (("before", predict_before), ("after", predict_after)):
        scores, error = _call(predict, held)
        if error is not None:
            return error
        predicted = _predicted_labels(scores)
        if predicted.shape != labels.shape:
            return _fail(f"predict_{name} gave {predicted.shape[0]} predictions for {len(labels)} images.")
        accuracies.append(float((predicted == labels).mean()))
    before, after = accuracies
    summary = f"held-out target accuracy {before:.3f} before, {after:.3f} after, on {len(labels)} images"
    if require_gain and not after > before:
        return _fail(
            f"{summary}: the adapted model must beat the unadapted one. Try more images per class, "
            "or mix the target features with the source features."
        )
    return _ok(f"{summary}; no overlap with the {len(few)} adaptation images.")


def check_k_choice(
    results: Mapping[int, Sequence[float]], chosen_k: int, *, budget_per_class: int
) -> CheckResult:
    """A number of labelled images per class chosen from measured ``{k: (accuracy, low, high)}`` (lesson 07).

    The choice must be affordable (``k <= budget_per_class``) and measured, and it must not be clearly worse
    than the best affordable ``k``: its interval has to reach the best point estimate. Spending labels that buy
    no measurable accuracy is allowed but noted.
    """
    if len(results) < 2:
        return _fail("measure at least two values of k: one point cannot show how accuracy grows with k.")
    for k, row in results.items():
        if len(row) != 3 or not row[1] <= row[0] <= row[2]:
            return _fail(
                f"results[{k}] must be (accuracy, low, high) with low <= accuracy <= high, got {row!r}."
            )
    if chosen_k not in results:
        return _fail(f"k={chosen_k} was not measured: choose one of {sorted(results)}.")
    if chosen_k > budget_per_class:
        return _fail(f"k={chosen_k} per class costs more than the budget of {budget_per_class} per class.")
    affordable = {k: row for k, row in results.items() if k <= budget_per_class}
    best_k = max(affordable, key=lambda k: (affordable[k][0], -k))
    best = affordable[best_k][0]
    if results[chosen_k][2] < best:
        return _fail(
            f"k={chosen_k} (accuracy {results[chosen_k][0]:.3f}, interval up to {results[chosen_k][2]:.3f}) is "
            f"clearly worse than k={best_k} ({best:.3f}), which the budget also allows."
        )
    cheapest = min(k for k, row in affordable.items() if row[2] >= best)
    note = "" if chosen_k == cheapest else f" (k={cheapest} is not clearly worse and costs fewer labels)"
    return _ok(f"k={chosen_k} is affordable and not clearly worse than the best affordable k={best_k}{note}.")


__all__ = ["check_accuracy_drop", "check_adaptation", "check_corruption", "check_k_choice"]
