"""The lesson 06 graders pass the reference answers and fail, with their hint, on typical wrong answers."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import evaluate
from tlcourse.checks import CheckFailed
from tlcourse.checks import lesson06 as grade

# ----------------------------------------------------------------------------- reference answers


def per_class(cm):
    cm = np.asarray(cm, dtype="float64")
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return precision, recall, f1


def bootstrap(y_true, y_pred, n=1000, level=0.95, seed=0):
    correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(float)
    rng = np.random.default_rng(seed)
    samples = correct[rng.integers(0, len(correct), size=(n, len(correct)))].mean(axis=1)
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return correct.mean(), low, high


def ece(y_true, probs, bins=10):
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return total


def fit_temperature(logits, y_true):
    candidates = np.linspace(0.5, 6.0, 111)
    nll = [evaluate.per_example_loss(y_true, logits / t, from_logits=True).mean() for t in candidates]
    return float(candidates[int(np.argmin(nll))])


# ------------------------------------------------------------------------------------------- tests


def test_per_class_metrics_accepts_reference_and_prints_pass(capsys):
    grade.check_per_class_metrics(per_class).assert_passed()
    assert "passed" in capsys.readouterr().out


def test_per_class_metrics_names_swapped_rows_and_columns():
    def swapped(cm):
        p, r, f = per_class(cm)
        return r, p, f

    result = grade.check_per_class_metrics(swapped)
    assert not result.passed and "swapped" in result.message
    with pytest.raises(CheckFailed):
        result.assert_passed()


def test_per_class_metrics_catches_nan_for_a_never_predicted_class():
    def naive(cm):
        cm = np.asarray(cm, dtype="float64")
        with np.errstate(invalid="ignore", divide="ignore"):
            p, r = np.diag(cm) / cm.sum(axis=0), np.diag(cm) / cm.sum(axis=1)
            return p, r, 2 * p * r / (p + r)

    result = grade.check_per_class_metrics(naive)
    assert not result.passed and "never predicted" in result.message


def test_per_class_metrics_reports_a_stub():
    def stub(cm):
        raise NotImplementedError()

    result = grade.check_per_class_metrics(stub)
    assert not result.passed and "NotImplementedError" in result.message


def test_bootstrap_accepts_reference_for_several_seeds():
    for seed in (0, 1):
        assert grade.check_bootstrap_interval(bootstrap, seed=seed).passed


def test_bootstrap_accepts_the_library_function():
    assert grade.check_bootstrap_interval(evaluate.bootstrap_interval).passed


def test_bootstrap_rejects_resampling_without_replacement():
    def without_replacement(y_true, y_pred, n=1000, level=0.95, seed=0):
        correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(float)
        rng = np.random.default_rng(seed)
        samples = [correct[rng.permutation(len(correct))].mean() for _ in range(n)]
        low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
        return correct.mean(), low, high

    result = grade.check_bootstrap_interval(without_replacement)
    assert not result.passed and "WITH replacement" in result.message


def test_bootstrap_rejects_wrong_percentiles():
    def five_and_ninety_five(y_true, y_pred, n=1000, level=0.95, seed=0):
        point, _, _ = bootstrap(y_true, y_pred, n, level, seed)
        correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(float)
        rng = np.random.default_rng(seed)
        samples = correct[rng.integers(0, len(correct), size=(n, len(correct)))].mean(axis=1)
        low, high = np.percentile(samples, [100 * (1 - level), 100 * level])
        return point, low, high

    result = grade.check_bootstrap_interval(five_and_ninety_five)
    assert not result.passed and "percentiles" in result.message


def test_bootstrap_rejects_small_resamples():
    def small_resamples(y_true, y_pred, n=1000, level=0.95, seed=0):
        correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(float)
        rng = np.random.default_rng(seed)
        samples = correct[rng.integers(0, len(correct), size=(n, 30))].mean(axis=1)
        low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
        return correct.mean(), low, high

    result = grade.check_bootstrap_interval(small_resamples)
    assert not result.passed and "too wide" in result.message


def test_overconfident_logits_are_fixed_by_their_own_temperature():
    logits, y = grade.overconfident_logits(3000, 5, sharpen=3.0)
    before = evaluate.calibration(y, logits, from_logits=True)["ece"]
    after = evaluate.calibration(y, logits / 3.0, from_logits=True)["ece"]
    assert after < 0.5 * before


def test_ece_accepts_reference():
    assert grade.check_expected_calibration_error(ece).passed


def test_ece_names_equal_bin_weights():
    def unweighted(y_true, probs, bins=10):
        result = evaluate.calibration(y_true, probs, bins=bins)
        return np.mean([abs(r["accuracy"] - r["confidence"]) for r in result["bins"] if r["count"]])

    result = grade.check_expected_calibration_error(unweighted)
    assert not result.passed and "weight each bin" in result.message


def test_temperature_accepts_reference():
    assert grade.check_temperature_scaling(fit_temperature).passed


def test_temperature_rejects_sharpening():
    result = grade.check_temperature_scaling(lambda logits, y: 1.0 / fit_temperature(logits, y))
    assert not result.passed and "above 1" in result.message


def test_temperature_rejects_a_poor_fit():
    result = grade.check_temperature_scaling(lambda logits, y: 1.1)
    assert not result.passed and "cross-entropy" in result.message


CM = np.array([[5, 0, 1], [3, 4, 0], [0, 1, 6]])
NAMES = ["a", "b", "c"]


def test_most_confused_accepts_the_largest_off_diagonal_cell():
    assert grade.check_most_confused(("b", "a"), CM, NAMES).passed


def test_most_confused_names_the_swapped_order():
    result = grade.check_most_confused(("a", "b"), CM, NAMES)
    assert not result.passed and "order" in result.message


def test_most_confused_rejects_the_diagonal_and_handles_no_mistakes():
    result = grade.check_most_confused(("c", "c"), CM, NAMES)
    assert not result.passed and "diagonal" in result.message
    perfect = np.diag([3, 4, 5])
    assert grade.check_most_confused(None, perfect, NAMES).passed
    assert not grade.check_most_confused(("a", "b"), perfect, NAMES).passed
