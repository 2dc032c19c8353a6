"""Graders for the lesson 05 exercises: unfreezing, a correct fine-tuning step, choosing a depth (lesson 05).

Each ``check_*`` returns a :class:`tlcourse.checks.CheckResult`; the exercise notebook calls
``.assert_passed()`` on it. The graders look at what the student's code *does*: which weights are trainable,
whether frozen weights and BatchNorm statistics moved during ``fit``, the compiled learning rate, and whether
a chosen fine-tuning depth is supported by the harness's numbers. Layer names are only used to find where a
block starts, the same way :func:`tlcourse.models.unfreeze_from` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from tlcourse import diagnose
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import walk_layers
from tlcourse.checks import (
    CheckResult,
    _call,
    _fail,
    _ok,
    check_batchnorm_inference,
    check_frozen_unchanged,
    check_recompiled,
    plain_str,
)
from tlcourse.evaluate import accuracy_interval
from tlcourse.models import is_batchnorm

__all__ = [
    "UNFREEZE_CASES",
    "check_depth_choice",
    "check_fine_tuned",
    "check_unfreeze_from_block",
    "reference_backbone",
]

UNFREEZE_CASES: tuple[tuple[str, str], ...] = (
    ("block_13", "frozen"),
    ("block_16", "trainable"),
    ("block_5", "frozen"),
)
"""(block, starting state) pairs :func:`check_unfreeze_from_block` tries: it starts from a fully frozen base
(as after training the head) and from a fully trainable one (so "freeze everything below" is really tested)."""


def reference_backbone(image_size: int = 96, alpha: float = 0.35) -> Any:
    """A MobileNetV2 base with random weights, small enough to grade unfreezing quickly (lesson 05)."""
    from tlcourse import models

    return models.build_backbone("mobilenet_v2", alpha=alpha, image_size=image_size, weights="random")


def _effective_trainable(backbone: Any) -> tuple[int, list[tuple[int, Any, bool]]]:
    """Trainable parameter count and, per layer with weights, whether any of its weights would train."""
    trainable_ids = {id(v) for v in backbone.trainable_weights}
    rows = [
        (i, layer, any(id(v) in trainable_ids for v in layer.weights))
        for i, layer in enumerate(backbone.layers)
        if layer.weights
    ]
    count = int(sum(int(np.prod(v.shape)) for v in backbone.trainable_weights))
    return count, rows


def _set_state(backbone: Any, state: str) -> None:
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = state == "trainable"
    backbone.trainable = state == "trainable"


def check_unfreeze_from_block(
    fn: Callable[[Any, str], Any],
    *,
    backbone: Any = None,
    cases: Iterable[tuple[str, str]] = UNFREEZE_CASES,
) -> CheckResult:
    """``fn(backbone, block)`` makes the layers from ``block`` upwards trainable, BatchNorm excepted (lesson 05).

    For each (block, starting state) case the grader resets ``backbone`` (default: a random-weight
    MobileNetV2, :func:`reference_backbone`), calls ``fn`` and checks that some weights are trainable, no
    BatchNorm layer is, no layer before the block's first layer is, and the number of trainable parameters
    equals :func:`tlcourse.models.unfreeze_from`'s on the same base.
    """
    from tlcourse import models

    base = backbone if backbone is not None else reference_backbone()
    checked = []
    for block, state in cases:
        _set_state(base, state)
        _, error = _call(fn, base, block)
        if error is not None:
            return error
        got, rows = _effective_trainable(base)
        start = models.layer_index(base, block)
        first = base.layers[start].name
        models.unfreeze_from(base, block)
        want, _ = _effective_trainable(base)
        where = f"unfreezing from {block!r} (its first layer is {first!r}), starting from a {state} base"
        if got == 0:
            return _fail(
                f"{where}: nothing is trainable. In Keras a frozen model hides its layers' weights, so set "
                "backbone.trainable = True first, then freeze the layers below the block one by one."
            )
        early = [layer.name for i, layer, on in rows if on and i < start]
        if early:
            return _fail(
                f"{where}: {len(early)} layer(s) below the block are trainable (e.g. {early[0]!r}); freeze "
                "every layer before the block's first layer, whatever the base's state was."
            )
        bn = [layer.name for _, layer, on in rows if on and is_batchnorm(layer)]
        if bn:
            return _fail(
                f"{where}: {len(bn)} BatchNorm layer(s) are trainable (e.g. {bn[0]!r}); keep every BatchNorm "
                "layer frozen (layer.trainable = False) so it keeps its ImageNet statistics during fit."
            )
        if got != want:
            hint = (
                "too few: every layer from the block's first layer upwards (BatchNorm excepted) must train"
                if got < want
                else "too many"
            )
            return _fail(f"{where}: {got:,} trainable parameters, expected {want:,}; {hint}.")
        checked.append(f"{block}: {want:,}")
    return _ok(
        "trainable parameters match unfreeze_from, BatchNorm stays frozen and nothing below the block "
        f"trains ({'; '.join(checked)})."
    )


def _last_dense_params(model: Any) -> int:
    keras = _keras()
    dense = [layer for layer in walk_layers(model) if isinstance(layer, keras.layers.Dense)]
    return int(dense[-1].count_params()) if dense else 0


def check_fine_tuned(model: Any, before: Any, *, max_learning_rate: float | None = None) -> CheckResult:
    """One correct fine-tuning step: recompiled, BatchNorm in inference mode, a low rate, only unfrozen
    weights moved, and more than the head trained (lesson 05).

    ``before`` is :func:`tlcourse.diagnose.snapshot_weights` of ``model`` taken after unfreezing and compiling,
    just before ``fit``. Uses the generic graders :func:`tlcourse.checks.check_recompiled`,
    :func:`tlcourse.checks.check_batchnorm_inference` and :func:`tlcourse.checks.check_frozen_unchanged`.
    """
    from tlcourse import models

    limit = models.FINE_TUNE_MAX_LEARNING_RATE if max_learning_rate is None else float(max_learning_rate)
    for result in (check_recompiled(model), check_batchnorm_inference(model)):
        if not result.passed:
            return result
    report = diagnose.trainable_report(model)
    rate = report.learning_rate
    if rate is None:
        return _fail("cannot read the learning rate: compile with keras.optimizers.Adam(learning_rate=...).")
    if rate > limit * (1 + 1e-6):
        return _fail(
            f"the learning rate is {rate:g}: for fine-tuning pretrained layers use at most {limit:g} "
            "(1e-5 to 1e-4: a hundredth to a tenth of the head's 1e-3), then compile again."
        )
    head_params = _last_dense_params(model)
    trained_before = int(
        sum(int(np.prod(v.shape)) for v, on in zip(before.values, before.trainable, strict=True) if on)
    )
    if trained_before <= head_params:
        return _fail(
            f"when the snapshot was taken only {trained_before:,} parameters were trainable (the head has "
            f"{head_params:,}): unfreeze the top of the base, compile, then take the snapshot and fit."
        )
    frozen = check_frozen_unchanged(before, model)
    if not frozen.passed:
        return frozen
    after = diagnose.snapshot_weights(model)
    moved = sum(
        1
        for old, new, on in zip(before.values, after.values, before.trainable, strict=True)
        if on and (old.shape != new.shape or not np.array_equal(old, new))
    )
    if moved <= 2:
        return _fail(
            "only the head's weights changed during fit: the unfrozen layers of the base did not learn. "
            "Was the model compiled after unfreezing?"
        )
    return _ok(
        f"recompiled at {rate:g}, BatchNorm in inference mode, {report.trainable_params:,} parameters trained "
        f"({moved} weight tensors moved) and every frozen weight stayed put."
    )


def _mentions(reason: str, value: float) -> bool:
    """Whether ``reason`` quotes ``value`` as a fraction (0.91) or a percentage (91%, 91.0 %)."""
    for match in re.finditer(r"(\d+(?:\.\d+)?)\s*(%?)", reason):
        number = float(match.group(1))
        if match.group(2):
            number /= 100.0
        if math.isclose(number, value, abs_tol=0.0051):
            return True
    return False


def _rows(results: Any) -> list[Mapping[str, Any]]:
    if hasattr(results, "to_dict"):
        return list(results.to_dict("records"))
    return [dict(row) for row in results]


def check_depth_choice(
    results: Any,
    choice: str,
    reason: str,
    *,
    validation_count: int,
    level: float = 0.95,
    depth_prefix: str = "fine_tune_from:",
) -> CheckResult:
    """Is ``choice`` a fine-tuning depth the harness's table supports, and does ``reason`` cite it? (lesson 05)

    ``results`` is :func:`tlcourse.strategies.compare_strategies`'s table with at least two ``fine_tune_from:``
    rows that ran. The choice must be one of those rows and either the most accurate, or inside the
    ``level`` bootstrap interval of the most accurate (:func:`accuracy_interval` on ``validation_count``
    images) *and* cheaper than it (fewer seconds or fewer trainable parameters). ``reason`` must quote the
    chosen row's validation accuracy (as 0.91 or 91%).
    """
    try:
        rows = _rows(results)
    except Exception:  # noqa: BLE001 - anything that is not a table
        return _fail("results must be the table returned by strategies.compare_strategies (a DataFrame).")
    depths = [
        row
        for row in rows
        if str(row.get("strategy", "")).startswith(depth_prefix)
        and row.get("val_accuracy") is not None
        and not math.isnan(float(row["val_accuracy"]))
    ]
    if len(depths) < 2:
        return _fail(
            f"the table has {len(depths)} fine-tuning depth(s) that ran: compare at least two "
            f"('{depth_prefix}block_15', '{depth_prefix}block_13', ...) to have a choice to justify."
        )
    names = [str(row["strategy"]) for row in depths]
    choice = plain_str(choice)  # compared by its characters, never by a str subclass's own __eq__
    chosen = next((row for row in depths if row["strategy"] == choice), None)
    if chosen is None:
        return _fail(f"{choice!r} is not one of the depths you compared: choose one of {names}.")
    best = max(depths, key=lambda row: float(row["val_accuracy"]))
    acc, best_acc = float(chosen["val_accuracy"]), float(best["val_accuracy"])
    low, high = accuracy_interval(best_acc, validation_count, level=level)
    if best is not chosen and acc < best_acc:
        if acc < low:
            return _fail(
                f"{choice} reached {acc:.3f}, below the {level:.0%} interval of the best depth "
                f"{best['strategy']} ({best_acc:.3f}, interval {low:.3f}-{high:.3f} on {validation_count} "
                "images): the table does not support it."
            )
        cheaper = float(chosen.get("train_seconds", math.inf)) < float(
            best.get("train_seconds", -math.inf)
        ) or int(chosen.get("trainable_params", 0)) < int(best.get("trainable_params", 0))
        if not cheaper:
            return _fail(
                f"{choice} ({acc:.3f}) is within the noise of {best['strategy']} ({best_acc:.3f}) but not "
                "cheaper (neither faster nor fewer trainable parameters): choose the best one, or a cheaper one."
            )
    if not isinstance(reason, str) or not _mentions(reason, acc):
        return _fail(
            f"your reason must quote the numbers it rests on: at least {choice}'s validation accuracy "
            f"({acc:.3f}) from the table."
        )
    return _ok(
        f"{choice} ({acc:.3f}) is supported: the best depth reached {best_acc:.3f} (95% interval "
        f"{low:.3f}-{high:.3f} on {validation_count} images), and your reason cites the numbers."
        if level == 0.95
        else f"{choice} ({acc:.3f}) is supported by the table and your reason cites the numbers."
    )
