"""Graders for the lesson 02 exercises: convolution arithmetic, AlexNet's parameters and its classifier head.

Used in ``solutions/02_alexnet.ipynb`` as ``from tlcourse.checks import lesson02 as grade``; answers are
compared with what Keras itself computes for the same layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tlcourse.backend import keras_module as _keras
from tlcourse.checks import (
    CheckResult,
    _call,
    _fail,
    _forward,
    _looks_like_probabilities,
    _ok,
    _whole,
    check_claim,
)

__all__ = [
    "check_conv_output_size",
    "check_conv_params",
    "alexnet_param_split",
    "check_alexnet_params",
    "check_alexnet_head",
    "check_claim",
]


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
        expected, got = _keras_conv_output(size, kernel, stride, padding), _whole(got)
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
        expected, got = int(layer.count_params()), _whole(got)
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
        got, want = _whole(counts[kind]), expected[kind]
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
            shown = f"{got:,}" if isinstance(got, int) else repr(counts[kind])
            return _fail(f"{kind} layers: got {shown}, the network has {want:,}; {hint}.")
    share = expected["dense"] / (expected["conv"] + expected["dense"])
    return _ok(
        f"conv {expected['conv']:,} and dense {expected['dense']:,} parameters: {share:.1%} sit in the dense layers."
    )


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
            "training and inference give the same outputs: add a Dropout layer (AlexNet uses 0.5) after each of the "
            "first two dense layers."
        )
    return _ok(
        f"shape, parameter count ({expected:,} at the test size), logits and dropout behaviour are right."
    )
