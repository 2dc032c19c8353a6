"""Choosing the decision threshold of a binary classifier by precision and recall (lesson 06).

A binary head ends in one logit; a sigmoid makes it the probability of the positive class, and a **threshold**
turns that probability into a decision. 0.5 is only the default: raising the threshold trades recall (how many
positives are found) for precision (how many alarms are right), and the brief's cost of each mistake says which
side to favour. :func:`threshold_table` lists precision and recall at a few thresholds; :func:`threshold_for_recall`
picks the highest threshold that still finds a required share of the positives; :func:`format_table` is the
plain-text table a notebook prints, and what the threshold slider (:func:`tlcourse.widgets.threshold_explorer`)
shows where no widget can be drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tlcourse.errors import TLCourseError

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The thresholds :func:`threshold_table` lists when none are given."""


def as_binary(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and probabilities as flat arrays; a one-sentence error for what cannot be a binary task."""
    truth = np.asarray(y_true).astype(int).reshape(-1)
    probs = np.asarray(scores, dtype="float64").reshape(-1)
    if truth.shape != probs.shape:
        raise TLCourseError(
            f"{truth.size} labels but {probs.size} scores: pass one probability of the positive class per image."
        )
    if not set(np.unique(truth)) <= {0, 1}:
        raise TLCourseError("The labels must be 0 (negative) and 1 (positive), e.g. (y == positive_class).")
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise TLCourseError(
            "The scores must be probabilities in [0, 1]: pass the sigmoid of the head's logit "
            "(keras.ops.sigmoid), not the logit itself."
        )
    return truth, probs


def at_threshold(y_true: Any, scores: Any, threshold: float) -> dict[str, Any]:
    """Counts and rates when every score ``>= threshold`` is called positive (lesson 06).

    Returns ``threshold``, ``tp``, ``fp``, ``fn``, ``tn``, ``precision`` (1.0 when nothing is called positive:
    no alarm was wrong), ``recall`` (NaN with no positive image), ``f1`` and ``flagged`` (share called positive).
    """
    truth, probs = as_binary(y_true, scores)
    called = probs >= threshold
    tp = int(np.sum(called & (truth == 1)))
    fp = int(np.sum(called & (truth == 0)))
    fn = int(np.sum(~called & (truth == 1)))
    tn = int(np.sum(~called & (truth == 0)))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "flagged": float(called.mean()) if called.size else 0.0,
    }


def threshold_table(
    y_true: Any, scores: Any, thresholds: Iterable[float] = DEFAULT_THRESHOLDS
) -> list[dict[str, Any]]:
    """:func:`at_threshold` at each threshold, in the order given (lesson 06)."""
    return [at_threshold(y_true, scores, float(t)) for t in thresholds]


def threshold_for_recall(y_true: Any, scores: Any, target_recall: float) -> dict[str, Any]:
    """The highest threshold whose recall is at least ``target_recall``, with its figures (lesson 06).

    Of the thresholds that find enough positives, the highest raises the fewest false alarms, so it has the best
    precision among them. Only the observed scores are tried (between them nothing changes).
    """
    truth, probs = as_binary(y_true, scores)
    if not 0 < target_recall <= 1:
        raise TLCourseError(f"target_recall must be in (0, 1], got {target_recall}.")
    if not truth.any():
        raise TLCourseError("There is no positive image, so no threshold has a recall: check the labels.")
    for threshold in np.unique(probs)[::-1]:  # from the highest score down: recall only grows
        row = at_threshold(truth, probs, float(threshold))
        if row["recall"] >= target_recall - 1e-12:
            return row
    raise AssertionError("unreachable: the lowest score flags every image")  # pragma: no cover


def format_table(rows: Sequence[dict[str, Any]], *, chosen: float | None = None) -> str:
    """The rows of :func:`threshold_table` as a plain-text table; the row at ``chosen`` is marked (lesson 06)."""
    lines = [
        f"{'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>6} {'flagged':>8} {'TP':>4} {'FP':>4} {'FN':>4}"
    ]
    for row in rows:
        mark = "  <-" if chosen is not None and abs(row["threshold"] - chosen) < 1e-9 else ""
        lines.append(
            f"{row['threshold']:>9.3g} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
            f"{row['flagged']:>8.1%} {row['tp']:>4} {row['fp']:>4} {row['fn']:>4}{mark}"
        )
    return "\n".join(lines)
