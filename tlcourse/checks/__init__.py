"""Graders for the exercise notebooks (introduced in lesson 02).

Each ``check_*`` function tests what a student's answer *does* (output shapes, which weights train, whether
frozen weights moved, BatchNorm mode, preprocessing range, recompilation, numbers against Keras or
scikit-learn), never layer names, printed summaries or version-specific strings. Each returns a
:class:`CheckResult`; an exercise notebook's check cell calls ``.assert_passed()``, which prints one line
("✔ passed: ..." or "✘ not yet: <hint>") and raises :class:`CheckFailed` when the answer is not right yet.
That line is also the grader's recorded outcome (:func:`tlcourse.record.record_check`): the executed notebook
keeps the check's name, pass/fail and hint, which ``tlcourse grade`` reads back.

TensorFlow/Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcourse import diagnose
from tlcourse.config import quiet_tensorflow
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
    check: str = ""
    """The grader that produced it (e.g. ``check_separable_cost``); found automatically when left empty."""

    def __post_init__(self) -> None:
        if not self.check:
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


def _calling_grader() -> str:
    """The outermost ``check_*`` function of ``tlcourse.checks`` on the call stack: the grader a check cell
    called, even when it delegates to another grader ("" when a result is made outside any grader)."""
    frame, found = sys._getframe(1), ""
    while frame is not None:
        name = frame.f_code.co_name
        if name.startswith("check_") and str(frame.f_globals.get("__name__", "")).startswith(__name__):
            found = name
        frame = frame.f_back
    return found


def _ok(message: str) -> CheckResult:
    return CheckResult(True, message)


def _fail(message: str) -> CheckResult:
    return CheckResult(False, message)


def _keras() -> Any:
    quiet_tensorflow()
    import keras

    return keras


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, CheckResult | None]:
    """Run the student's function; turn an exception into a failed result that says what happened."""
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError:
        return None, _fail("the function still raises NotImplementedError: replace the stub with your code.")
    except Exception as error:  # noqa: BLE001 - any student error becomes a hint, not a traceback
        return None, _fail(f"calling it with {args} {kwargs or ''} raised {type(error).__name__}: {error}")


# ------------------------------------------------------------------------------ arithmetic (lessons 02-03)


def _keras_conv_output(size: int, kernel: int, stride: int, padding: str) -> int:
    keras = _keras()
    layer = keras.layers.Conv2D(1, kernel, strides=stride, padding=padding)
    return int(layer.compute_output_shape((None, size, size, 1))[1])


CONV_OUTPUT_CASES = (
    (227, 11, 4, "valid"),
    (55, 3, 2, "valid"),
    (27, 5, 1, "same"),
    (13, 3, 1, "same"),
    (32, 3, 2, "same"),
    (31, 3, 2, "same"),
    (100, 7, 3, "valid"),
    (9, 2, 2, "valid"),
)


def check_conv_output_size(fn: Callable[[int, int, int, str], int]) -> CheckResult:
    """``fn(size, kernel, stride, padding)`` gives a convolution's output side, as Keras computes it (lesson 02)."""
    for size, kernel, stride, padding in CONV_OUTPUT_CASES:
        got, error = _call(fn, size, kernel, stride, padding)
        if error is not None:
            return error
        expected = _keras_conv_output(size, kernel, stride, padding)
        if got != expected:
            if padding == "same":
                hint = "with 'same' padding the output is ceil(size / stride), whatever the kernel size"
            else:
                hint = "with 'valid' padding the window must fit: floor((size - kernel) / stride) + 1"
            return _fail(
                f"size {size}, kernel {kernel}, stride {stride}, padding {padding!r}: got {got}, "
                f"Keras gives {expected}; {hint}."
            )
    return _ok(f"your output sizes match Keras on {len(CONV_OUTPUT_CASES)} shapes, 'valid' and 'same'.")


CONV_PARAM_CASES = (
    (11, 3, 96, 1, True),
    (5, 96, 256, 2, True),
    (3, 256, 384, 1, True),
    (3, 384, 256, 2, True),
    (1, 32, 16, 1, False),
    (3, 8, 8, 4, False),
)


def check_conv_params(fn: Callable[..., int]) -> CheckResult:
    """``fn(kernel, c_in, c_out, groups=1, use_bias=True)`` equals Keras' ``Conv2D.count_params()`` (lesson 02)."""
    keras = _keras()
    for kernel, c_in, c_out, groups, use_bias in CONV_PARAM_CASES:
        got, error = _call(fn, kernel, c_in, c_out, groups=groups, use_bias=use_bias)
        if error is not None:
            return error
        layer = keras.layers.Conv2D(c_out, kernel, groups=groups, use_bias=use_bias)
        layer.build((None, 32, 32, c_in))
        expected = int(layer.count_params())
        if got != expected:
            case = f"kernel {kernel}, {c_in} -> {c_out} channels, groups {groups}, use_bias {use_bias}"
            if use_bias and got == expected - c_out:
                hint = "you left out the biases (one per filter)"
            elif got == expected + c_out and not use_bias:
                hint = "use_bias=False means no biases"
            elif groups > 1 and got == kernel * kernel * c_in * c_out + (c_out if use_bias else 0):
                hint = "with groups, each filter sees only c_in / groups input channels"
            else:
                hint = "each filter has kernel x kernel x (c_in / groups) weights, plus one bias if use_bias"
            return _fail(f"{case}: got {got}, Keras counts {expected}; {hint}.")
    return _ok(
        f"your parameter counts match Keras Conv2D on {len(CONV_PARAM_CASES)} layers, grouped ones included."
    )


def alexnet_param_split() -> dict[str, int]:
    """Parameters of the single-tower AlexNet by layer kind: ``{"conv": ..., "dense": ...}`` (lesson 02).

    Counted on a weightless model (:func:`tlcourse.zoo.weightless`): no memory is spent on weight values.
    """
    from tlcourse import alexnet, zoo

    keras = _keras()
    with zoo.weightless():
        model = alexnet.build_alexnet()
    rows = alexnet.layer_table(model)
    split = {
        "conv": sum(row.params for row in rows if row.kind == "Conv2D"),
        "dense": sum(row.params for row in rows if row.kind == "Dense"),
    }
    del model
    keras.backend.clear_session()
    return split


def check_alexnet_params(counts: Mapping[str, int]) -> CheckResult:
    """``counts`` = ``{"conv": ..., "dense": ...}``: AlexNet's parameters in its conv and dense layers (lesson 02)."""
    if not isinstance(counts, Mapping) or not {"conv", "dense"} <= set(counts):
        return _fail('give a dict with the keys "conv" and "dense" (parameter counts, biases included).')
    expected = alexnet_param_split()
    for kind in ("conv", "dense"):
        got, want = counts[kind], expected[kind]
        if got != want:
            hint = (
                "remember the biases"
                if isinstance(got, int) and 0 < want - got < 20000
                else (
                    "fc6 sees the flattened 6x6x256 map of pool5"
                    if kind == "dense"
                    else "conv1 sees 3 channels, the others the previous layer's filters (single tower: groups=1)"
                )
            )
            return _fail(f"{kind} layers: got {got:,}, the network has {want:,}; {hint}.")
    share = expected["dense"] / (expected["conv"] + expected["dense"])
    return _ok(
        f"conv {expected['conv']:,} and dense {expected['dense']:,} parameters: {share:.1%} sit in the dense layers."
    )


def _separable_reference(h: int, w: int, c_in: int, c_out: int, k: int, stride: int) -> tuple[int, int]:
    from tlcourse import zoo

    keras = _keras()
    inputs = keras.Input((h, w, c_in))
    model = keras.Model(
        inputs, keras.layers.SeparableConv2D(c_out, k, strides=stride, padding="same", use_bias=False)(inputs)
    )
    return int(model.count_params()), int(zoo.count_macs(model))


SEPARABLE_CASES = (
    (112, 112, 32, 64, 3, 1),
    (56, 56, 64, 128, 3, 2),
    (14, 14, 96, 96, 5, 1),
    (7, 7, 160, 320, 3, 1),
    (15, 15, 8, 16, 3, 2),
)


def check_separable_cost(fn: Callable[..., tuple[int, int]]) -> CheckResult:
    """``fn(h, w, c_in, c_out, k, stride=1)`` -> ``(params, macs)`` of a bias-free ``SeparableConv2D``, 'same' padding (lesson 03)."""
    for h, w, c_in, c_out, k, stride in SEPARABLE_CASES:
        got, error = _call(fn, h, w, c_in, c_out, k, stride=stride)
        if error is not None:
            return error
        if not isinstance(got, Sequence) or len(got) != 2:
            return _fail("return a pair (params, macs).")
        params, macs = _separable_reference(h, w, c_in, c_out, k, stride)
        case = f"{h}x{w}x{c_in} -> {c_out}, {k}x{k}, stride {stride}"
        if got[0] != params:
            hint = (
                "that is a standard convolution's count"
                if got[0] == k * k * c_in * c_out
                else "depthwise k*k*c_in plus pointwise c_in*c_out"
            )
            return _fail(f"{case}: params {got[0]}, Keras counts {params}; {hint}.")
        if got[1] != macs:
            out = -(-h // stride) * -(-w // stride)
            hint = (
                "count the work at the OUTPUT positions (ceil(h / stride) x ceil(w / stride))"
                if got[1] == h * w * (k * k * c_in + c_in * c_out) and out != h * w
                else "every output position costs k*k*c_in (depthwise) + c_in*c_out (pointwise) multiply-adds"
            )
            return _fail(f"{case}: MACs {got[1]:,}, expected {macs:,}; {hint}.")
    return _ok(
        f"params and multiply-adds match Keras' SeparableConv2D on {len(SEPARABLE_CASES)} shapes, strided ones included."
    )


def _flat_layers(model: Any) -> Iterable[Any]:
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _flat_layers(layer)
        else:
            yield layer


def reference_params_by_kind(model: Any) -> dict[str, int]:
    """Parameters of ``model`` grouped by layer class name, nested models walked into (lesson 03)."""
    totals: dict[str, int] = {}
    for layer in _flat_layers(model):
        count = int(layer.count_params()) if layer.weights else 0
        if count:
            kind = type(layer).__name__
            totals[kind] = totals.get(kind, 0) + count
    return totals


def _probe_model() -> Any:
    keras = _keras()
    inner_in = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 1, use_bias=False)(inner_in)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    inner = keras.Model(inner_in, keras.layers.ReLU()(x), name="inner")
    inputs = keras.Input((8, 8, 4))
    y = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(y), name="probe")


def check_params_by_kind(fn: Callable[[Any], Mapping[str, int]]) -> CheckResult:
    """``fn(model)`` -> ``{layer class name: parameters}``, walking into nested models (lesson 03)."""
    model = _probe_model()
    got, error = _call(fn, model)
    if error is not None:
        return error
    expected = reference_params_by_kind(model)
    got = {kind: int(value) for kind, value in dict(got).items() if value}
    if got == expected:
        return _ok(
            f"grouped {model.count_params():,} parameters by layer kind, nested model included: {expected}."
        )
    if not got or set(got) & {"Functional", "Model", "Sequential"}:
        return _fail(
            "walk into nested models: a backbone inside a classifier is one 'layer' holding many layers."
        )
    if sum(got.values()) != model.count_params():
        return _fail(
            f"your counts add up to {sum(got.values()):,}, but the model has {model.count_params():,} "
            "parameters; count every layer with weights (BatchNorm's moving statistics included)."
        )
    return _fail(f"got {got}, expected {expected}; group by the layer's class (type(layer).__name__).")


def check_choose_backbone(fn: Callable[[Sequence[Mapping[str, Any]], float], str | None]) -> CheckResult:
    """``fn(rows, budget_ms)``: the most accurate backbone whose measured ``ms`` fits the budget (lesson 03).

    ``rows`` are dicts with ``name``, ``ms`` and ``top1``. Ties in accuracy go to the faster model; a model
    exactly on the budget fits; when none fits the answer is ``None``.
    """
    rows = [
        {"name": "big", "ms": 120.0, "top1": 76.0},
        {"name": "mid", "ms": 40.0, "top1": 74.0},
        {"name": "mid_slow", "ms": 45.0, "top1": 74.0},
        {"name": "small", "ms": 8.0, "top1": 65.0},
    ]
    cases = [
        (200.0, "big", "the most accurate model fits"),
        (50.0, "mid", "equal accuracy: prefer the faster one"),
        (40.0, "mid", "a model exactly on the budget fits"),
        (10.0, "small", "only the smallest fits"),
        (5.0, None, "nothing fits: return None, not the fastest"),
    ]
    for budget, expected, reason in cases:
        got, error = _call(fn, [dict(row) for row in rows], budget)
        if error is not None:
            return error
        if got != expected:
            return _fail(f"budget {budget:g} ms: got {got!r}, expected {expected!r} ({reason}).")
    return _ok(f"your choice is right on {len(cases)} budgets, ties and 'nothing fits' included.")


# ------------------------------------------------------------------------------ honest comparisons


def check_claim(baseline_scores: Sequence[float], variant_scores: Sequence[float], claim: str) -> CheckResult:
    """Is the claim ``"better"``, ``"worse"`` or ``"no clear difference"`` justified by repeated runs? (lesson 02)

    A difference counts only when the two sets of scores (at least two runs each, e.g. different seeds) do not
    overlap; otherwise the honest claim is "no clear difference".
    """
    claims = ("better", "worse", "no clear difference")
    if claim not in claims:
        return _fail(f"claim must be one of {claims}, got {claim!r}.")
    baseline, variant = list(map(float, baseline_scores)), list(map(float, variant_scores))
    if len(baseline) < 2 or len(variant) < 2:
        return _fail(
            "run each setting at least twice (different seeds): one run cannot show run-to-run variation."
        )
    if min(variant) > max(baseline):
        justified = "better"
    elif max(variant) < min(baseline):
        justified = "worse"
    else:
        justified = "no clear difference"
    spread = (
        f"baseline {min(baseline):.3f}-{max(baseline):.3f}, variant {min(variant):.3f}-{max(variant):.3f}"
    )
    if claim != justified:
        return _fail(
            f"the scores ({spread}) support {justified!r}, not {claim!r}: a difference counts only when "
            "the runs of the two settings do not overlap."
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
        want = float(ref(y_true, y_pred))
        if got is None or not math.isclose(float(got), want, rel_tol=1e-6, abs_tol=1e-9):
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


def _trainable_count(model: Any) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))


def check_alexnet_head(build: Callable[..., Any]) -> CheckResult:
    """``build(feature_shape, num_classes, hidden=...)``: AlexNet's dropout + dense classifier, returning logits (lesson 02).

    Tried at a tiny size: the parameters must be those of Flatten -> Dense(hidden) -> Dense(hidden) ->
    Dense(num_classes); dropout must act in training and switch off at inference.
    """
    feature_shape, classes, hidden = (3, 3, 8), 5, 16
    model, error = _call(build, feature_shape, classes, hidden=hidden)
    if error is not None:
        return error
    batch = np.random.default_rng(0).normal(size=(4, *feature_shape)).astype("float32") * 3
    out = _forward(model, batch)
    if out.shape != (4, classes):
        return _fail(
            f"for feature maps {feature_shape} and {classes} classes the output has shape {out.shape}, "
            f"expected (4, {classes}); flatten the map and end with Dense(num_classes)."
        )
    if _looks_like_probabilities(out):
        return _fail(
            "the outputs are probabilities: end with a plain Dense layer (logits); the loss uses from_logits=True."
        )
    flat = int(np.prod(feature_shape))
    expected = flat * hidden + hidden + hidden * hidden + hidden + hidden * classes + classes
    if model.count_params() != expected:
        return _fail(
            f"{model.count_params():,} parameters at this tiny size, expected {expected:,}: "
            "Flatten -> Dense(hidden, relu) -> Dense(hidden, relu) -> Dense(num_classes)."
        )
    if not np.allclose(out, _forward(model, batch), atol=1e-6):
        return _fail("two inference passes give different outputs: dropout must be off when training=False.")
    if np.allclose(out, _forward(model, batch, training=True), atol=1e-6):
        return _fail(
            "training and inference give the same outputs: add Dropout layers (AlexNet uses 0.5) before the dense layers."
        )
    return _ok(
        f"shape, parameter count ({expected:,} at the test size), logits and dropout behaviour are right."
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
    trainable = _trainable_count(model)
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
    trainable, total = _trainable_count(model), int(model.count_params())
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
            "BatchNorm statistics moved: call the backbone with training=False"
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


def check_preprocessing_range(
    fn_or_layer: Callable[[Any], Any], backbone: str = "mobilenet_v2"
) -> CheckResult:
    """Raw pixels 0 and 255 are mapped where ``backbone`` expects them (lesson 03)."""
    from tlcourse import models

    pixels = np.zeros((1, 2, 2, 3), dtype="float32")
    pixels[0, 1] = 255.0
    out, error = _call(fn_or_layer, pixels.copy())
    if error is not None:
        return error
    expected = np.asarray(models.preprocessing_layer(backbone)(pixels.copy()))
    out = np.asarray(out, dtype="float32")
    if out.shape == expected.shape and np.allclose(out, expected, atol=1e-3):
        return _ok(
            f"0 -> {expected[0, 0, 0].round(2).tolist()} and 255 -> {expected[0, 1, 0].round(2).tolist()}, "
            f"as {backbone} expects."
        )
    low, high = float(out.min()), float(out.max())
    hint = (
        "the pixels were not changed: apply the backbone's preprocessing"
        if np.allclose(out, pixels)
        else (f"your output spans {low:.2f} to {high:.2f}")
    )
    spec = models.get_spec(backbone)
    return _fail(
        f"{hint}; {backbone} expects {spec.input_range[0]:g} to {spec.input_range[1]:g} "
        f"(0 -> {expected.min():.2f}, 255 -> {expected.max():.2f})."
    )
