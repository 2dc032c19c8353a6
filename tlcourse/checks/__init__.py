"""Graders for the exercise notebooks (introduced in lesson 02).

Each ``check_*`` function tests what a student's answer *does* (output shapes, which weights train, whether
frozen weights moved, BatchNorm mode, preprocessing range, recompilation, numbers against Keras or
scikit-learn), never layer names, printed summaries or version-specific strings. Each returns a
:class:`CheckResult`; an exercise notebook's check cell calls ``.assert_passed()``, which prints one line
("✔ passed: ..." or "✘ not yet: <hint>") and raises :class:`CheckFailed` when the answer is not right yet.
That line is also the grader's recorded outcome (:func:`tlcourse.record.record_check`): the executed notebook
keeps the check's name, pass/fail and hint, which ``tlcourse grade`` reads back.

Graders cannot be talked round by the answer they grade: a :class:`CheckResult` records the name of the grader
that made it only when that grader's code really is this package's (its code object comes from a file of this
package and is the function of that name in its module); a result made anywhere else (a student's function bound
over ``grade.check_x``) records no grader name, and ``tlcourse grade`` scores it 0. Values a student returns are
turned into plain Python numbers (:func:`plain_int`, :func:`plain_float`) before they are compared, so an
``int`` subclass whose ``__eq__`` always says True is compared by its value, not by its own ``__eq__``.

This package's core (here) holds the result type and the graders several lessons share (honest claims,
metrics, heads, frozen weights, BatchNorm mode, recompiling); each lesson's own graders live in
``tlcourse.checks.lessonNN`` (``lesson02`` ... ``lesson08``, ``keras_recipe``), imported in its notebook as
``from tlcourse.checks import lessonNN as grade``. TensorFlow/Keras are imported inside the functions that
need them.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlcourse import diagnose
from tlcourse.backend import count_params
from tlcourse.errors import TLCourseError
from tlcourse.record import record_check

PASS_MARK = "✔ passed"
FAIL_MARK = "✘ not yet"


class CheckFailed(TLCourseError, AssertionError):
    """Raised by :meth:`CheckResult.assert_passed` when an exercise answer is not right yet (lesson 02)."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one grader: ``passed`` and a message (what was verified, or a hint) (lesson 02)."""

    passed: bool
    message: str
    check: str = field(default="", init=False)
    """The grader of this package that produced it (e.g. ``check_separable_cost``), found on the call stack;
    "" when no genuine grader made it (see the module docstring)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", _calling_grader())

    def __str__(self) -> str:
        return f"{PASS_MARK if self.passed else FAIL_MARK}: {self.message}"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return self.passed

    def assert_passed(self) -> None:
        """Show and record the one-line result; raise :class:`CheckFailed` (with the hint) if it did not pass.

        Inside a notebook the line is a display output that carries the outcome for ``tlcourse grade``
        (:func:`tlcourse.record.record_check`); elsewhere it is printed.
        """
        record_check(self.check, self.passed, self.message, str(self))
        if not self.passed:
            raise CheckFailed(str(self))


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _is_genuine_grader(code: Any, module_name: str) -> bool:
    """Whether ``code`` is the code of the grader ``code.co_name`` as this package defines it: a ``check_*``
    function of a ``tlcourse.checks`` module, compiled from a file of this package, and still the very function
    of that name in its module (not a look-alike compiled elsewhere or bound over it)."""
    if not code.co_name.startswith("check_"):
        return False
    if module_name != __name__ and not module_name.startswith(__name__ + "."):
        return False
    if os.path.dirname(os.path.abspath(code.co_filename)) != _PACKAGE_DIR:
        return False
    function = getattr(sys.modules.get(module_name), code.co_name, None)
    return getattr(function, "__code__", None) is code


def _calling_grader() -> str:
    """The outermost genuine grader on the call stack (:func:`_is_genuine_grader`): the grader a check cell
    called, even when it delegates to another grader ("" when a result is made outside every grader)."""
    frame, found = sys._getframe(1), ""
    while frame is not None:
        if _is_genuine_grader(frame.f_code, str(frame.f_globals.get("__name__", ""))):
            found = frame.f_code.co_name
        frame = frame.f_back
    return found


def plain_int(value: Any) -> int | None:
    """``value`` as a plain ``int`` when it is a whole number (int, NumPy integer, or an integral float);
    None for anything else (bools, strings, tensors, ...). An ``int`` subclass gives its stored value, read by
    ``int``'s own methods, so its own ``__eq__`` or ``__index__`` never decide a comparison (lesson 02)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int):
        return int(int.__repr__(value))
    if isinstance(value, np.integer):
        return int(str(np.asarray(value).astype(np.int64)))
    number = plain_float(value)
    if number is not None and number.is_integer():
        return int(number)
    return None


def _whole(value: Any) -> int | str:
    """A student's count as a plain int (:func:`plain_int`), else its repr (which never equals a count, and
    reads well in a hint)."""
    number = plain_int(value)
    return repr(value) if number is None else number


def plain_str(value: Any) -> str | None:
    """``value`` as a plain ``str`` (its stored characters, read by ``str``'s own method) when it is a string;
    None otherwise (lesson 03)."""
    return str.__str__(value) if isinstance(value, str) else None


def plain_float(value: Any) -> float | None:
    """``value`` as a plain, finite-or-not ``float`` when it is a real number (int, float, NumPy scalar or
    one-element array); None for anything else. Subclasses are read by the builtin type's own methods (lesson 06)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int):
        return float(int(int.__repr__(value)))
    if isinstance(value, float):
        return float(float.__repr__(value))
    if isinstance(value, np.generic | np.ndarray):
        array = np.asarray(value)
        if array.size == 1 and array.dtype.kind in "iuf":
            return float(array.astype(np.float64).reshape(()).tolist())
    return None


def _ok(message: str) -> CheckResult:
    return CheckResult(True, message)


def _fail(message: str) -> CheckResult:
    return CheckResult(False, message)


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, CheckResult | None]:
    """Run the student's function; turn an exception into a failed result that says what happened."""
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError:
        return None, _fail("the function still raises NotImplementedError: replace the stub with your code.")
    except Exception as error:  # noqa: BLE001 - any student error becomes a hint, not a traceback
        return None, _fail(f"calling it with {args} {kwargs or ''} raised {type(error).__name__}: {error}")


# ------------------------------------------------------------------------------ honest comparisons


def paired_runs_interval(
    baseline_scores: Sequence[float], variant_scores: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``variant - baseline`` over runs paired by seed, with its t interval: ``(mean, low, high)``
    (lessons 02 and 04).

    Run ``i`` of both settings used the same seed, so what the seed did to both cancels in their difference.
    With a handful of runs a bootstrap over them is no interval at all, so the interval is Student's t with
    ``runs - 1`` degrees of freedom: wide with two runs, as it should be.
    """
    from scipy import stats

    diffs = np.asarray(variant_scores, dtype=float) - np.asarray(baseline_scores, dtype=float)
    half = float(stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs)))
    mean = float(diffs.mean())
    return mean, mean - half, mean + half


def check_claim(baseline_scores: Sequence[float], variant_scores: Sequence[float], claim: str) -> CheckResult:
    """Is the claim ``"better"``, ``"worse"`` or ``"no clear difference"`` justified by repeated runs? (lesson 02)

    ``baseline_scores[i]`` and ``variant_scores[i]`` come from runs with the same seed. The claim follows the
    95% interval of their paired differences (:func:`paired_runs_interval`): above 0 "better", below 0
    "worse", otherwise "no clear difference".
    """
    claims = ("better", "worse", "no clear difference")
    given, claim = claim, plain_str(claim)
    if claim not in claims:
        return _fail(f"claim must be one of {claims}, got {given!r}.")
    try:
        baseline = [plain_float(score) for score in baseline_scores]
        variant = [plain_float(score) for score in variant_scores]
    except TypeError:
        baseline = variant = [None]
    if None in baseline or None in variant:
        return _fail("give the scores as lists of numbers (one per run).")
    if len(baseline) < 2 or len(variant) < 2:
        return _fail(
            "run each setting at least twice (different seeds): one run cannot show run-to-run variation."
        )
    if len(baseline) != len(variant):
        return _fail(
            f"{len(baseline)} baseline runs but {len(variant)} variant runs: run both settings with the same seeds, "
            "in the same order, so each pair of runs differs only in the setting."
        )
    mean, low, high = paired_runs_interval(baseline, variant)
    justified = "better" if low > 0 else "worse" if high < 0 else "no clear difference"
    spread = (
        f"variant minus baseline, seed by seed, averages {mean:+.3f}, 95% interval {low:+.3f} to {high:+.3f} over "
        f"{len(baseline)} paired runs"
    )
    if claim != justified:
        return _fail(
            f"the paired differences ({spread}) support {justified!r}, not {claim!r}: a difference counts only "
            "when the interval of the paired differences leaves out 0."
        )
    return _ok(f"{claim!r} is what the runs support ({spread}).")


def check_metric(
    fn: Callable[[np.ndarray, np.ndarray], float],
    reference: str | Callable[..., float] = "accuracy",
    *,
    cases: int = 6,
    num_classes: int = 3,
    seed: int = 0,
) -> CheckResult:
    """A student metric ``fn(y_true, y_pred)`` agrees with scikit-learn on random label sets (lesson 07).

    ``reference``: ``"accuracy"``, ``"macro_precision"``, ``"macro_recall"``, ``"macro_f1"``,
    ``"balanced_accuracy"``, or any callable ``(y_true, y_pred) -> float``.
    """
    from sklearn import metrics

    named = {
        "accuracy": metrics.accuracy_score,
        "macro_precision": lambda t, p: metrics.precision_score(t, p, average="macro", zero_division=0),
        "macro_recall": lambda t, p: metrics.recall_score(t, p, average="macro", zero_division=0),
        "macro_f1": lambda t, p: metrics.f1_score(t, p, average="macro", zero_division=0),
        "balanced_accuracy": metrics.balanced_accuracy_score,
    }
    ref = named[reference] if isinstance(reference, str) else reference
    rng = np.random.default_rng(seed)
    for case in range(cases):
        n = int(rng.integers(8, 40))
        y_true = rng.integers(0, num_classes, n)
        y_true[:num_classes] = np.arange(num_classes)  # every class present
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, num_classes, n))
        got, error = _call(fn, y_true.copy(), y_pred.copy())
        if error is not None:
            return error
        want, value = float(ref(y_true, y_pred)), plain_float(got)
        if value is None or not math.isclose(value, want, rel_tol=1e-6, abs_tol=1e-9):
            return _fail(
                f"random case {case + 1} ({n} labels, {num_classes} classes): got {got}, scikit-learn gives "
                f"{want:.6f}; check which count goes in the numerator and denominator, and how classes are averaged."
            )
    return _ok(
        f"matches scikit-learn's {reference if isinstance(reference, str) else 'reference'} on {cases} random cases."
    )


# ------------------------------------------------------------------------------ models (lessons 02, 04, 05)


def _forward(model: Any, batch: np.ndarray, training: bool = False) -> np.ndarray:
    return np.asarray(model(batch, training=training))


def _looks_like_probabilities(out: np.ndarray) -> bool:
    return bool(
        out.size and np.all(out >= 0) and np.all(out <= 1) and np.allclose(out.sum(axis=-1), 1, atol=1e-4)
    )


def check_head(
    model: Any, num_classes: int, feature_shape: Sequence[int], *, expected_params: int | None = None
) -> CheckResult:
    """A classification head on cached features: output shape, logits, and its trainable size (lesson 04).

    ``expected_params`` defaults to one Dense layer on the pooled features: ``channels * classes + classes``.
    """
    batch = np.random.default_rng(0).normal(size=(3, *feature_shape)).astype("float32")
    try:
        out = _forward(model, batch)
    except Exception as error:  # noqa: BLE001
        return _fail(
            f"the head cannot take features of shape {tuple(feature_shape)}: {type(error).__name__}: {error}"
        )
    if out.shape != (3, num_classes):
        return _fail(
            f"output shape {out.shape} for a batch of 3, expected (3, {num_classes}): one logit per class."
        )
    if _looks_like_probabilities(out):
        return _fail(
            "the head outputs probabilities: drop the softmax and return logits (compile with from_logits=True)."
        )
    expected = (
        expected_params if expected_params is not None else feature_shape[-1] * num_classes + num_classes
    )
    trainable = count_params(model)
    if trainable != expected:
        hint = (
            "pool the feature map (GlobalAveragePooling2D) instead of flattening it"
            if len(feature_shape) == 3 and trainable > expected * feature_shape[0] * feature_shape[1] // 2
            else "is the head frozen, or did you add layers?"
        )
        return _fail(f"{trainable:,} trainable parameters, expected {expected:,}; {hint}.")
    return _ok(f"head outputs {num_classes} logits and trains {trainable:,} parameters.")


def check_trainable_split(model: Any, expected_trainable_params: int) -> CheckResult:
    """Exactly ``expected_trainable_params`` parameters will be trained (lesson 05)."""
    trainable, total = count_params(model), int(model.count_params())
    if trainable == expected_trainable_params:
        return _ok(f"{trainable:,} of {total:,} parameters are trainable, as intended.")
    if trainable == 0:
        hint = "nothing is trainable: you froze the head too"
    elif trainable > expected_trainable_params:
        hint = "too many: freeze the backbone (backbone.trainable = False) or unfreeze fewer layers"
    else:
        hint = "too few: unfreeze the layers you meant to fine-tune (and keep the head trainable)"
    return _fail(f"{trainable:,} trainable parameters, expected {expected_trainable_params:,}; {hint}.")


def check_frozen_unchanged(before: Any, model: Any, *, require_training: bool = True) -> CheckResult:
    """Weights frozen when ``before`` was taken (:func:`tlcourse.diagnose.snapshot_weights`) did not move (lesson 05)."""
    after = diagnose.snapshot_weights(model)
    if len(before.values) != len(after.values):
        return _fail(
            "the snapshot and the model have different weights: take the snapshot of this same model just before fit."
        )
    moved_frozen, moved_trainable = [], 0
    for path, was_trainable, old, new in zip(
        before.paths, before.trainable, before.values, after.values, strict=True
    ):
        changed = old.shape != new.shape or not np.array_equal(old, new)
        if changed and was_trainable:
            moved_trainable += 1
        elif changed:
            moved_frozen.append(path)
    if moved_frozen:
        stats = any("moving" in path for path in moved_frozen)
        hint = (
            "BatchNorm statistics moved: set trainable = False on every BatchNorm layer, then compile again "
            "(in Keras 3, calling the backbone with training=False does not stop fit from updating them)"
            if stats
            else "set trainable = False BEFORE compile (and recompile after any change)"
        )
        return _fail(
            f"{len(moved_frozen)} frozen weight(s) changed during training, e.g. {moved_frozen[0]}; {hint}."
        )
    if require_training and moved_trainable == 0:
        return _fail("no trainable weight changed: did fit run (and is anything trainable)?")
    return _ok(f"frozen weights unchanged; {moved_trainable} trainable weight(s) learned.")


def check_batchnorm_inference(model: Any) -> CheckResult:
    """Every BatchNormalization layer keeps its moving statistics during ``fit`` (lesson 05)."""
    report = diagnose.trainable_report(model)
    if not report.batchnorm:
        return _ok("the model has no BatchNorm layers.")
    training = [bn for bn in report.batchnorm if not bn.inference_mode]
    if training:
        return _fail(
            f"{len(training)} of {len(report.batchnorm)} BatchNorm layers would update their statistics "
            f"during fit ({training[0].reason}); keep BatchNorm layers frozen (trainable=False, which is what puts "
            "them in inference mode in Keras 3) and call the backbone with training=False."
        )
    return _ok(f"all {len(report.batchnorm)} BatchNorm layers run in inference mode.")


def check_recompiled(model: Any) -> CheckResult:
    """The model was compiled after its last change of ``trainable`` flags (lesson 05)."""
    report = diagnose.trainable_report(model)
    if not report.compiled:
        return _fail("the model is not compiled: call compile before fit.")
    if report.needs_recompile:
        return _fail(
            "trainable flags changed after compile, so fit would still train the old set: compile again."
        )
    return _ok(f"compiled after the last change; {report.trainable_params:,} parameters will train.")
