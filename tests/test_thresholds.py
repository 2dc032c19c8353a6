"""Choosing a binary classifier's threshold by precision and recall (tlcourse.thresholds, lesson 06)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlcourse import thresholds
from tlcourse.errors import TLCourseError

TRUTH = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
SCORES = np.array([0.95, 0.8, 0.45, 0.2, 0.7, 0.3, 0.25, 0.1, 0.05, 0.02])


def test_precision_and_recall_at_a_threshold_count_what_is_called_positive():
    row = thresholds.at_threshold(TRUTH, SCORES, 0.5)
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 1, 2, 5)
    assert row["precision"] == pytest.approx(2 / 3) and row["recall"] == 0.5 and row["flagged"] == 0.3
    nothing = thresholds.at_threshold(TRUTH, SCORES, 0.99)
    assert nothing["precision"] == 1.0 and nothing["recall"] == 0.0  # no alarm raised, none wrong
    assert math.isnan(thresholds.at_threshold(np.zeros(3), [0.1, 0.2, 0.3], 0.5)["recall"])


def test_a_lower_threshold_never_loses_recall_and_the_table_keeps_the_order_given():
    table = thresholds.threshold_table(TRUTH, SCORES, (0.9, 0.5, 0.1))
    assert [row["threshold"] for row in table] == [0.9, 0.5, 0.1]
    assert [row["recall"] for row in table] == [0.25, 0.5, 1.0]


def test_threshold_for_recall_is_the_highest_threshold_that_finds_enough_positives():
    chosen = thresholds.threshold_for_recall(TRUTH, SCORES, 0.75)
    assert chosen["threshold"] == 0.45 and chosen["recall"] == 0.75 and chosen["precision"] == 0.75
    assert thresholds.threshold_for_recall(TRUTH, SCORES, 1.0)["threshold"] == 0.2


@pytest.mark.parametrize(
    ("truth", "scores", "words"),
    [([0, 1], [0.5], "2 labels but 1 scores"), ([0, 2], [0.1, 0.2], "must be 0"),
     ([0, 1], [-2.0, 3.0], "sigmoid")],
)  # fmt: skip
def test_what_cannot_be_a_binary_task_is_refused_in_one_sentence(truth, scores, words):
    with pytest.raises(TLCourseError, match=words):
        thresholds.at_threshold(truth, scores, 0.5)


def test_the_printed_table_marks_the_chosen_threshold():
    text = thresholds.format_table(thresholds.threshold_table(TRUTH, SCORES, (0.3, 0.5)), chosen=0.5)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[2].endswith("<-") and not lines[1].endswith("<-")
