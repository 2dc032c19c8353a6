"""Graders for the lesson 03 exercises: separable-convolution cost, parameters by layer kind, choosing a
backbone under a budget, and a backbone's preprocessing range.

Used in ``solutions/03_pretrained_models.ipynb`` as ``from tlcourse.checks import lesson03 as grade``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tlcourse.backend import keras_module as _keras
from tlcourse.backend import leaf_layers
from tlcourse.checks import (
    CheckResult,
    _call,
    _fail,
    _ok,
    _whole,
    plain_str,
)

__all__ = [
    "check_separable_cost",
    "reference_params_by_kind",
    "check_params_by_kind",
    "check_choose_backbone",
    "check_preprocessing_range",
]


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
        got = (_whole(got[0]), _whole(got[1]))
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
            return _fail(f"{case}: MACs {got[1]}, expected {macs:,}; {hint}.")
    return _ok(
        f"params and multiply-adds match Keras' SeparableConv2D on {len(SEPARABLE_CASES)} shapes, strided ones included."
    )


def reference_params_by_kind(model: Any) -> dict[str, int]:
    """Parameters of ``model`` grouped by layer class name, nested models walked into (lesson 03)."""
    totals: dict[str, int] = {}
    for layer in leaf_layers(model):
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
    try:
        got = {plain_str(kind): _whole(value) for kind, value in dict(got).items() if value}
    except (TypeError, ValueError):
        return _fail(f"return a dict {{layer class name: parameters}}; got {type(got).__name__}.")
    if got == expected:
        return _ok(
            f"grouped {model.count_params():,} parameters by layer kind, nested model included: {expected}."
        )
    if not got or set(got) & {"Functional", "Model", "Sequential"}:
        return _fail(
            "walk into nested models: a backbone inside a classifier is one 'layer' holding many layers."
        )
    if not all(isinstance(value, int) for value in got.values()):
        return _fail(f"give each layer kind a whole number of parameters; got {got}.")
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
        chosen = plain_str(got)
        if chosen != expected or (got is not None and chosen is None):
            return _fail(f"budget {budget:g} ms: got {got!r}, expected {expected!r} ({reason}).")
    return _ok(f"your choice is right on {len(cases)} budgets, ties and 'nothing fits' included.")


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
