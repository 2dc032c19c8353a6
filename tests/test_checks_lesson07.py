"""Tests for the lesson 07 graders: each passes the reference answer and fails, with its hint, on a typical mistake."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import shift
from tlcourse.checks import CheckFailed
from tlcourse.checks import lesson07 as grade


def night(images, severity, seed):
    """Reference answer of exercise 1: the library's night shift."""
    return shift.apply_shift(images, "night", severity, seed=seed)


def test_corruption_passes_the_reference():
    result = grade.check_corruption(night)
    assert result.passed, result.message


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (
            lambda x, s, seed: np.clip(x * (1 - 0.5 * s) + np.random.normal(0, 5, x.shape), 0, 255).astype(
                np.float32
            ),
            "unchanged",
        ),
        (
            lambda x, s, seed: (
                x * (1 - 0.5 * s) + np.random.default_rng(seed).normal(0, 20 * s, x.shape)
            ).astype(np.float32),
            "clip",
        ),
        (lambda x, s, seed: np.clip(x * (1 - 0.3 * s), 0, 255).astype(np.uint8), "float32"),
        (lambda x, s, seed: np.clip(x * (1 + 0.3 * s), 0, 255).astype(np.float32), "fall"),
        (
            lambda x, s, seed: np.clip(x * np.exp(-s) + s * np.random.normal(0, 3, x.shape), 0, 255).astype(
                np.float32
            ),
            "same seed",
        ),
        (lambda x, s, seed: np.clip(x * np.exp(-s), 0, 255)[:, ::2].astype(np.float32), "shape"),
    ],
    ids=["noise-at-zero", "no-clip", "uint8", "brighter", "unseeded", "shape"],
)
def test_corruption_fails_typical_mistakes_with_a_hint(wrong, hint):
    result = grade.check_corruption(wrong)
    assert not result.passed
    assert hint in result.message


def test_corruption_fails_when_the_input_is_modified():
    def in_place(x, s, seed):
        x *= np.float32(np.exp(-s))
        return x

    result = grade.check_corruption(in_place)
    assert not result.passed and "in place" in result.message


def test_corruption_reports_a_stub():
    def stub(x, s, seed):
        raise NotImplementedError

    with pytest.raises(CheckFailed, match="NotImplementedError"):
        grade.check_corruption(stub).assert_passed()


def accuracy_drop(predict, source_images, target_images, labels):
    """Reference answer of exercise 2."""
    source_acc = float((np.argmax(predict(source_images), axis=1) == labels).mean())
    target_acc = float((np.argmax(predict(target_images), axis=1) == labels).mean())
    return source_acc, target_acc, source_acc - target_acc


def test_accuracy_drop_passes_the_reference():
    result = grade.check_accuracy_drop(accuracy_drop)
    assert result.passed, result.message


def test_accuracy_drop_catches_agreement_instead_of_accuracy():
    def agreement(predict, source_images, target_images, labels):
        s = np.argmax(predict(source_images), axis=1)
        t = np.argmax(predict(target_images), axis=1)
        source_acc = float((s == labels).mean())
        target_acc = float((t == s).mean())
        return source_acc, target_acc, source_acc - target_acc

    result = grade.check_accuracy_drop(agreement)
    assert not result.passed and "true labels" in result.message


def test_accuracy_drop_catches_the_wrong_sign_and_the_wrong_axis():
    def wrong_sign(predict, source_images, target_images, labels):
        a, b, _ = accuracy_drop(predict, source_images, target_images, labels)
        return a, b, b - a

    def wrong_axis(predict, source_images, target_images, labels):
        source_acc = float((np.argmax(predict(source_images)) == labels).mean())  # argmax over everything
        target_acc = float((np.argmax(predict(target_images)) == labels).mean())
        return source_acc, target_acc, source_acc - target_acc

    assert "sign" in grade.check_accuracy_drop(wrong_sign).message
    result = grade.check_accuracy_drop(wrong_axis)
    assert not result.passed and "argmax" in result.message


def _adaptation_data():
    rng = np.random.default_rng(0)
    few = rng.uniform(0, 255, (4, 6, 6, 3)).astype(np.float32)
    held = rng.uniform(0, 255, (10, 6, 6, 3)).astype(np.float32)
    labels = (held.mean(axis=(1, 2, 3)) > 127).astype(int)
    before = lambda x: np.zeros(len(x), int)  # noqa: E731 - always class 0
    after = lambda x: (np.asarray(x).mean(axis=(1, 2, 3)) > 127).astype(int)  # noqa: E731 - right
    return few, held, labels, before, after


def test_adaptation_passes_a_disjoint_held_out_set_with_a_gain():
    few, held, labels, before, after = _adaptation_data()
    result = grade.check_adaptation(few, held, labels, before, after)
    assert result.passed, result.message


def test_adaptation_fails_when_measured_on_the_adaptation_images():
    few, held, labels, before, after = _adaptation_data()
    leaky = np.concatenate([held, few[:2]])
    leaky_labels = np.concatenate([labels, [0, 1]])
    result = grade.check_adaptation(few, leaky, leaky_labels, before, after)
    assert not result.passed and "adapted on" in result.message


def test_adaptation_fails_without_a_gain_unless_the_gain_is_not_required():
    few, held, labels, before, _ = _adaptation_data()
    result = grade.check_adaptation(few, held, labels, before, before)
    assert not result.passed and "beat" in result.message
    assert grade.check_adaptation(few, held, labels, before, before, require_gain=False).passed


RESULTS = {1: (0.40, 0.30, 0.50), 5: (0.70, 0.60, 0.80), 20: (0.75, 0.66, 0.84), 50: (0.90, 0.85, 0.95)}


def test_k_choice_accepts_an_affordable_k_that_is_not_clearly_worse():
    assert grade.check_k_choice(RESULTS, 5, budget_per_class=20).passed
    result = grade.check_k_choice(RESULTS, 20, budget_per_class=20)
    assert result.passed and "k=5" in result.message  # cheaper and not clearly worse


def test_k_choice_rejects_over_budget_clearly_worse_and_unmeasured_choices():
    assert "budget" in grade.check_k_choice(RESULTS, 50, budget_per_class=20).message
    assert "clearly worse" in grade.check_k_choice(RESULTS, 1, budget_per_class=20).message
    assert "not measured" in grade.check_k_choice(RESULTS, 10, budget_per_class=20).message
    assert "at least two" in grade.check_k_choice({5: (0.7, 0.6, 0.8)}, 5, budget_per_class=20).message
    assert (
        "low <= accuracy"
        in grade.check_k_choice({1: (0.7, 0.8, 0.9), 5: RESULTS[5]}, 5, budget_per_class=20).message
    )
