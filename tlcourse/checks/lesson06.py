"""Graders for the lesson 06 exercises: metrics by hand, bootstrap, calibration, confusions (lesson 06).

Used in ``solutions/06_evaluation.ipynb`` as ``from tlcourse.checks import lesson06 as grade``. Every grader
runs the student's function on generated data and compares with scikit-learn or :mod:`tlcourse.evaluate`;
tolerances for random procedures (the bootstrap) are wide enough for any seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tlcourse.checks import CheckResult, _call, _fail, _ok, plain_float

__all__ = [
    "check_bootstrap_interval",
    "check_expected_calibration_error",
    "check_most_confused",
    "check_per_class_metrics",
    "check_temperature_scaling",
    "overconfident_logits",
]


# ------------------------------------------------------------------------- per-class metrics by hand


def _random_labels(rng: np.random.Generator, n: int, k: int, hit_rate: float = 0.6) -> tuple[np.ndarray, ...]:
    y_true = rng.integers(0, k, n)
    y_true[:k] = np.arange(k)
    y_pred = np.where(rng.random(n) < hit_rate, y_true, rng.integers(0, k, n))
    return y_true, y_pred


def check_per_class_metrics(fn: Callable[[np.ndarray], Any], *, cases: int = 5, seed: int = 0) -> CheckResult:
    """``fn(cm) -> (precision, recall, f1)``, one value per class, from a confusion matrix (lesson 06).

    ``cm`` has true classes in rows and predicted classes in columns (scikit-learn's convention). A class that
    is never predicted has precision 0 (scikit-learn's ``zero_division=0``). Compared with
    ``precision_recall_fscore_support`` on random label sets, including one where a class is never predicted.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    for case in range(cases + 1):
        k = int(rng.integers(3, 6))
        y_true, y_pred = _random_labels(rng, int(rng.integers(20, 60)), k)
        if case == cases:  # last case: the last class is never predicted
            y_pred = np.where(y_pred == k - 1, 0, y_pred)
        cm = confusion_matrix(y_true, y_pred, labels=range(k))
        got, error = _call(fn, cm.copy())
        if error is not None:
            return error
        want = precision_recall_fscore_support(y_true, y_pred, labels=range(k), zero_division=0)[:3]
        try:
            p, r, f = (np.asarray(v, dtype="float64").reshape(-1) for v in got)
        except (TypeError, ValueError):
            return _fail(f"return three arrays (precision, recall, f1), one value per class; got {got!r}.")
        if any(v.shape != (k,) for v in (p, r, f)):
            return _fail(f"for a {k}x{k} matrix return {k} values each for precision, recall and F1.")
        if np.any(np.isnan(np.concatenate([p, r, f]))):
            return _fail(
                "some values are NaN: a class that is never predicted has 0 true + false positives; "
                "return 0 there instead of dividing 0 by 0."
            )
        if np.allclose(p, want[1]) and np.allclose(r, want[0]) and not np.allclose(p, r):
            return _fail(
                "precision and recall are swapped: rows are TRUE classes, columns PREDICTED ones, so precision "
                "divides the diagonal by the column sums and recall by the row sums."
            )
        for name, mine, ref in (("precision", p, want[0]), ("recall", r, want[1]), ("F1", f, want[2])):
            if not np.allclose(mine, ref, atol=1e-9):
                return _fail(
                    f"{name} differs from scikit-learn on a random {k}-class case: got {np.round(mine, 3).tolist()}, "
                    f"expected {np.round(ref, 3).tolist()}. Precision = TP / column sum, recall = TP / row sum, "
                    "F1 = 2PR / (P + R), and 0 where a denominator is 0."
                )
    return _ok(f"precision, recall and F1 match scikit-learn on {cases + 1} confusion matrices.")


# ----------------------------------------------------------------------------------------- bootstrap


def _interval(
    fn: Callable[..., Any], y: np.ndarray, p: np.ndarray, **kwargs: Any
) -> tuple[Any, CheckResult | None]:
    got, error = _call(fn, y.copy(), p.copy(), **kwargs)
    if error is not None:
        return None, error
    try:
        point, low, high = (float(v) for v in got)
    except (TypeError, ValueError):
        return None, _fail(f"return a tuple (point, low, high) of three numbers; got {got!r}.")
    return (point, low, high), None


def _correctness_data(rng: np.random.Generator, n: int, accuracy: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of ``n`` examples, exactly ``round(accuracy * n)`` of them right."""
    y_true = rng.integers(0, 4, n)
    y_pred = (y_true + 1) % 4
    right = rng.permutation(n)[: int(round(accuracy * n))]
    y_pred[right] = y_true[right]
    return y_true, y_pred


def check_bootstrap_interval(
    fn: Callable[..., Any], *, n_resamples: int = 2000, coverage_sets: int = 60, seed: int = 0
) -> CheckResult:
    """``fn(y_true, y_pred, n=..., level=..., seed=...) -> (accuracy, low, high)``: a percentile bootstrap (lesson 06).

    Judged statistically against :func:`tlcourse.evaluate.bootstrap_interval`, with tolerances that hold
    for any seed: the point estimate is the accuracy, the interval contains it, its width matches the
    reference within about 12 % at two levels and two sizes, and on many simulated validation sets of a model with a
    known accuracy the 95 % intervals contain that accuracy about 95 % of the time.
    """
    from tlcourse import evaluate

    rng = np.random.default_rng(seed)
    widths = {}
    for size in (100, 400):
        y, p = _correctness_data(rng, size, 0.8)
        for level in (0.95, 0.8):
            got, error = _interval(fn, y, p, n=n_resamples, level=level, seed=int(rng.integers(1000)))
            if error is not None:
                return error
            point, low, high = got
            accuracy = float(np.mean(y == p))
            if not math.isclose(point, accuracy, abs_tol=1e-9):
                return _fail(
                    f"the first value should be the accuracy on all the data ({accuracy:.3f}), got {point:.3f}."
                )
            if not low <= point <= high:
                return _fail(
                    f"the interval [{low:.3f}, {high:.3f}] should contain the accuracy {point:.3f} (low <= point <= high)."
                )
            width = high - low
            if width <= 1e-12:
                return _fail(
                    "the interval has width 0: every resample gave the same accuracy. Draw the resamples WITH "
                    "replacement (rng.integers(0, n, size=n)), each as large as the data."
                )
            _, ref_low, ref_high = evaluate.bootstrap_interval(y, p, n=20000, level=level, seed=1)
            ref = ref_high - ref_low
            if not 0.88 * ref <= width <= 1.15 * ref:
                if 0.55 * ref < width < 0.88 * ref:
                    hint = (
                        f"too narrow for {level:.0%}: take the (1 - level) / 2 and (1 + level) / 2 percentiles "
                        "(2.5 and 97.5 for level 0.95, not 5 and 95)"
                    )
                elif width > ref:
                    hint = "too wide: is every resample as large as the data set, and is the level used?"
                else:
                    hint = "too narrow: resample with replacement, as many examples as the data has"
                return _fail(
                    f"{size} examples at level {level}: width {width:.3f}, expected about {ref:.3f}; {hint}."
                )
            widths[(size, level)] = width
    ratio = widths[(400, 0.95)] / widths[(100, 0.95)]
    if not 0.35 <= ratio <= 0.7:
        return _fail(
            f"with 4x the data the interval should be about half as wide, but the ratio is {ratio:.2f}: "
            "resample as many examples as the data has."
        )
    covered = 0
    for _ in range(coverage_sets):
        y = rng.integers(0, 4, 80)
        p = np.where(rng.random(80) < 0.7, y, (y + 1) % 4)
        got, error = _interval(fn, y, p, n=500, level=0.95, seed=int(rng.integers(1000)))
        if error is not None:
            return error
        covered += got[1] <= 0.7 <= got[2]
    share = covered / coverage_sets
    if share < 0.8:
        return _fail(
            f"on {coverage_sets} simulated validation sets of a model that is right 70 % of the time, only "
            f"{share:.0%} of your 95 % intervals contain 0.7: the intervals are too narrow."
        )
    return _ok(
        f"point, widths (n=100: {widths[(100, 0.95)]:.3f}, n=400: {widths[(400, 0.95)]:.3f}) and coverage "
        f"({share:.0%} of {coverage_sets} simulated sets) match a percentile bootstrap."
    )


# --------------------------------------------------------------------------------------- calibration


def overconfident_logits(
    n: int = 2000, k: int = 5, *, sharpen: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic ``(logits, labels)`` of an over-confident model: calibrated logits times ``sharpen`` (lesson 06).

    Labels are drawn from the softmax of the calibrated logits, so dividing the returned logits by
    ``sharpen`` (temperature scaling with T = ``sharpen``) makes the model calibrated again.
    """
    rng = np.random.default_rng(seed)
    calibrated = rng.normal(0.0, 1.5, size=(n, k))
    p = np.exp(calibrated - calibrated.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return (calibrated * sharpen).astype("float32"), labels


def check_expected_calibration_error(fn: Callable[..., float], *, seed: int = 0) -> CheckResult:
    """``fn(y_true, probs, bins=10) -> ece`` agrees with :func:`tlcourse.evaluate.calibration` (lesson 06)."""
    from tlcourse import evaluate

    rng = np.random.default_rng(seed)
    for case, bins in enumerate((10, 5, 15)):
        logits, y = overconfident_logits(
            int(rng.integers(50, 300)), 4, sharpen=float(rng.uniform(0.5, 3)), seed=seed + case
        )
        probs = evaluate.to_probabilities(logits, from_logits=True)
        got, error = _call(fn, y.copy(), probs.copy(), bins=bins)
        if error is not None:
            return error
        result = evaluate.calibration(y, probs, bins=bins)
        want = result["ece"]
        value = plain_float(got)
        if value is None:
            return _fail(f"return one number, the ECE; got {got!r}.")
        if math.isclose(value, want, abs_tol=1e-6):
            continue
        filled = [row for row in result["bins"] if row["count"]]
        unweighted = float(np.mean([abs(row["accuracy"] - row["confidence"]) for row in filled]))
        if math.isclose(value, unweighted, abs_tol=1e-6):
            hint = "you averaged the bins equally: weight each bin's |accuracy - confidence| by its share of the examples"
        elif math.isclose(value, result["mce"], abs_tol=1e-6):
            hint = "that is the largest gap (MCE): ECE is the count-weighted mean gap"
        else:
            hint = (
                "group by confidence = the top probability, in equal-width bins over [0, 1]; per bin compare the "
                "mean confidence with the accuracy, and weight by the bin's share of the examples"
            )
        return _fail(f"{bins} bins, {len(y)} examples: got {value:.4f}, expected {want:.4f}; {hint}.")
    return _ok("your ECE matches tlcourse.evaluate.calibration on 3 data sets and bin counts.")


def check_temperature_scaling(
    fit: Callable[[np.ndarray, np.ndarray], float], *, seed: int = 0
) -> CheckResult:
    """``fit(logits, y_true) -> T``: a temperature that calibrates over-confident logits (lesson 06).

    On held-out synthetic logits 3x sharper than calibrated, dividing by ``T`` must lower the ECE clearly
    (to under half) and leave every prediction unchanged; ``T`` must be above 1 (the model is over-confident).
    """
    from tlcourse import evaluate

    logits, y = overconfident_logits(3000, 5, sharpen=3.0, seed=seed)
    fit_logits, fit_y = logits[:1500], y[:1500]
    test_logits, test_y = logits[1500:], y[1500:]
    got, error = _call(fit, fit_logits.copy(), fit_y.copy())
    if error is not None:
        return error
    t = plain_float(got)
    if t is None:
        return _fail(f"return the temperature, one positive number; got {got!r}.")
    if not math.isfinite(t) or t <= 0:
        return _fail(f"the temperature must be a positive number, got {t}.")
    before = evaluate.calibration(test_y, test_logits, from_logits=True)["ece"]
    after = evaluate.calibration(test_y, test_logits / t, from_logits=True)["ece"]
    if t <= 1.0:
        return _fail(
            f"T = {t:.3f}: these logits are over-confident, so T must be above 1 (divide the logits by T to "
            "soften them); did you multiply, or minimise the wrong loss?"
        )
    if after > 0.5 * before:
        return _fail(
            f"T = {t:.3f} lowers the held-out ECE only from {before:.3f} to {after:.3f}: choose T by minimising "
            "the cross-entropy (negative log-likelihood) of softmax(logits / T) on the data given."
        )
    return _ok(
        f"T = {t:.2f} lowers the held-out ECE from {before:.3f} to {after:.3f}; predictions are unchanged."
    )


# ------------------------------------------------------------------------------------- confusions


def check_most_confused(pair: Any, confusion: Any, class_names: Sequence[str]) -> CheckResult:
    """``pair == (true_class, predicted_class)``: the largest off-diagonal cell of the confusion matrix (lesson 06).

    Ties: any of the largest cells is accepted. With no mistakes at all, the answer is ``None``.
    """
    cm = np.asarray(confusion)
    names = [str(c) for c in class_names]
    if cm.ndim != 2 or cm.shape != (len(names), len(names)):
        return _fail(f"the confusion matrix should be {len(names)}x{len(names)}, got shape {cm.shape}.")
    off = cm - np.diag(np.diag(cm))
    if off.max() <= 0:
        if pair is None:
            return _ok("there are no mistakes, so no pair is confused.")
        return _fail("the model made no mistakes on this set: the answer is None.")
    best = {(names[r], names[c]) for r, c in zip(*np.nonzero(off == off.max()), strict=True)}
    try:
        got = (str.__str__(str(pair[0])), str.__str__(str(pair[1])))  # plain strings, whatever pair holds
    except (TypeError, IndexError):
        return _fail(f"give the pair as (true class name, predicted class name); got {pair!r}.")
    if got in best:
        return _ok(
            f"{got[0]!r} predicted as {got[1]!r} is the largest confusion ({int(off.max())} image(s))."
        )
    if (got[1], got[0]) in best:
        return _fail(
            "right classes, wrong order: rows are the TRUE class, columns the PREDICTED one; give (true, predicted)."
        )
    if got[0] == got[1]:
        return _fail("that is a diagonal cell (correct predictions): leave the diagonal out.")
    return _fail(
        f"the largest off-diagonal cell holds {int(off.max())} images; yours holds "
        f"{int(off[names.index(got[0]), names.index(got[1])]) if set(got) <= set(names) else 'no'} images."
    )
