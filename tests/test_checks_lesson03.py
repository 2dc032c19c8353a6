"""Each of the lesson 03 graders (separable cost, parameters by kind, choosing a backbone, preprocessing range) passes the reference answer and fails, with its hint, on a typical mistake."""

from __future__ import annotations

import pytest

from tlcourse.checks import lesson03

keras = pytest.importorskip("keras")


def separable_cost(h, w, c_in, c_out, k, stride=1):
    positions = -(-h // stride) * -(-w // stride)
    per_position = k * k * c_in + c_in * c_out
    return k * k * c_in + c_in * c_out, positions * per_position


def test_separable_cost_passes_the_formula_and_fails_on_input_positions_with_stride():
    assert lesson03.check_separable_cost(separable_cost).passed
    wrong = lesson03.check_separable_cost(
        lambda h, w, c_in, c_out, k, stride=1: (
            k * k * c_in + c_in * c_out,
            h * w * (k * k * c_in + c_in * c_out),
        )
    )
    assert not wrong.passed and "OUTPUT positions" in wrong.message
    standard = lesson03.check_separable_cost(lambda h, w, c_in, c_out, k, stride=1: (k * k * c_in * c_out, 0))
    assert not standard.passed and "standard" in standard.message


def params_by_kind(model):
    totals = {}

    def walk(layer):
        for inner in layer.layers:
            if hasattr(inner, "layers") and inner.layers:
                walk(inner)
            elif inner.count_params():
                totals[type(inner).__name__] = totals.get(type(inner).__name__, 0) + inner.count_params()

    walk(model)
    return totals


def test_params_by_kind_passes_a_recursive_walk_and_fails_on_a_flat_one():
    assert lesson03.check_params_by_kind(params_by_kind).passed
    flat = lesson03.check_params_by_kind(
        lambda model: {
            type(layer).__name__: layer.count_params() for layer in model.layers if layer.count_params()
        }
    )
    assert not flat.passed and "nested" in flat.message


def choose_backbone(rows, budget_ms):
    fitting = [row for row in rows if row["ms"] <= budget_ms]
    if not fitting:
        return None
    return max(fitting, key=lambda row: (row["top1"], -row["ms"]))["name"]


def test_choose_backbone_passes_the_rule_and_fails_when_nothing_fits_but_the_fastest_is_returned():
    assert lesson03.check_choose_backbone(choose_backbone).passed

    def fastest_fallback(rows, budget_ms):
        return choose_backbone(rows, budget_ms) or min(rows, key=lambda row: row["ms"])["name"]

    result = lesson03.check_choose_backbone(fastest_fallback)
    assert not result.passed and "None" in result.message


def test_preprocessing_range_passes_minus_one_to_one_and_fails_on_zero_to_one():
    assert lesson03.check_preprocessing_range(lambda x: x / 127.5 - 1.0).passed
    result = lesson03.check_preprocessing_range(lambda x: x / 255.0)
    assert not result.passed and "0.00 to 1.00" in result.message and "-1 to 1" in result.message
    untouched = lesson03.check_preprocessing_range(lambda x: x)
    assert not untouched.passed and "not changed" in untouched.message
