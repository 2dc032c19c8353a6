"""Each grader in tlcourse.checks passes the reference answer and fails, with its hint, on a typical mistake."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import checks, diagnose

keras = pytest.importorskip("keras")


# ----------------------------------------------------------------------------- CheckResult


def test_result_prints_one_plain_line_and_assert_passed_raises_with_the_hint(capsys):
    good, bad = checks.CheckResult(True, "fine"), checks.CheckResult(False, "add the biases")
    assert str(good) == "✔ passed: fine" and repr(bad) == "✘ not yet: add the biases"
    assert bool(good) and not bool(bad)
    good.assert_passed()
    with pytest.raises(checks.CheckFailed, match="add the biases"):
        bad.assert_passed()
    assert capsys.readouterr().out.splitlines() == ["✔ passed: fine", "✘ not yet: add the biases"]


def test_a_stub_that_still_raises_not_implemented_gets_a_replace_the_stub_hint():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    result = lesson02.check_conv_output_size(stub)
    assert not result.passed and "NotImplementedError" in result.message


# ----------------------------------------------------------------------------- arithmetic


def conv_output_size(size, kernel, stride, padding):
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


def test_conv_output_size_passes_the_formula_and_fails_when_same_padding_is_ignored():
    assert lesson02.check_conv_output_size(conv_output_size).passed
    result = lesson02.check_conv_output_size(
        lambda size, kernel, stride, padding: (size - kernel) // stride + 1
    )
    assert not result.passed and "ceil(size / stride)" in result.message


def conv_params(kernel, c_in, c_out, groups=1, use_bias=True):
    return kernel * kernel * (c_in // groups) * c_out + (c_out if use_bias else 0)


def test_conv_params_passes_the_formula_and_fails_without_biases_or_groups():
    assert lesson02.check_conv_params(conv_params).passed
    no_bias = lesson02.check_conv_params(
        lambda k, c_in, c_out, groups=1, use_bias=True: k * k * (c_in // groups) * c_out
    )
    assert not no_bias.passed and "biases" in no_bias.message
    no_groups = lesson02.check_conv_params(
        lambda k, c_in, c_out, groups=1, use_bias=True: k * k * c_in * c_out + (c_out if use_bias else 0)
    )
    assert not no_groups.passed and "groups" in no_groups.message


def test_alexnet_params_passes_the_real_split_and_fails_without_biases():
    expected = lesson02.alexnet_param_split()
    assert expected["dense"] > expected["conv"] > 0
    assert lesson02.check_alexnet_params(dict(expected)).passed
    wrong = dict(expected, dense=expected["dense"] - (4096 + 4096 + 1000))
    result = lesson02.check_alexnet_params(wrong)
    assert not result.passed and "biases" in result.message
    assert not lesson02.check_alexnet_params({"conv": 1}).passed


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


def test_claim_is_judged_by_whether_repeated_runs_overlap():
    assert checks.check_claim([0.40, 0.42], [0.50, 0.55], "better").passed
    assert checks.check_claim([0.40, 0.52], [0.50, 0.55], "no clear difference").passed
    overclaim = checks.check_claim([0.40, 0.52], [0.50, 0.55], "better")
    assert not overclaim.passed and "overlap" in overclaim.message
    single = checks.check_claim([0.4], [0.5], "better")
    assert not single.passed and "twice" in single.message


def test_metric_passes_a_correct_macro_recall_and_fails_on_micro_averaging():
    def macro_recall(y_true, y_pred):
        classes = np.unique(y_true)
        return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))

    assert checks.check_metric(macro_recall, "macro_recall").passed
    result = checks.check_metric(lambda t, p: float(np.mean(t == p)), "macro_recall")
    assert not result.passed and "averaged" in result.message


# ----------------------------------------------------------------------------- models


def alexnet_head(feature_shape, num_classes, hidden=4096):
    return keras.Sequential(
        [
            keras.Input(feature_shape),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )


def test_alexnet_head_passes_the_reference_and_fails_with_softmax_or_without_dropout():
    assert lesson02.check_alexnet_head(alexnet_head).passed

    def with_softmax(feature_shape, num_classes, hidden=4096):
        model = alexnet_head(feature_shape, num_classes, hidden)
        return keras.Sequential([model, keras.layers.Softmax()])

    softmax = lesson02.check_alexnet_head(with_softmax)
    assert not softmax.passed and "logits" in softmax.message

    def no_dropout(feature_shape, num_classes, hidden=4096):
        layers = [
            layer
            for layer in alexnet_head(feature_shape, num_classes, hidden).layers
            if not isinstance(layer, keras.layers.Dropout)
        ]
        return keras.Sequential([keras.Input(feature_shape), *layers])

    result = lesson02.check_alexnet_head(no_dropout)
    assert not result.passed and "Dropout" in result.message


def tiny_backbone():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.ReLU()(x), name="tiny_backbone")


def classifier(backbone, *, training_flag=False):
    inputs = keras.Input((8, 8, 3))
    x = backbone(inputs, training=False) if not training_flag else backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_head_passes_a_pooled_dense_head_and_fails_when_the_map_is_flattened():
    pooled = keras.Sequential(
        [keras.Input((4, 4, 8)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    )
    assert checks.check_head(pooled, 3, (4, 4, 8)).passed
    flat = keras.Sequential([keras.Input((4, 4, 8)), keras.layers.Flatten(), keras.layers.Dense(3)])
    result = checks.check_head(flat, 3, (4, 4, 8))
    assert not result.passed and "pool" in result.message


def test_trainable_split_passes_a_frozen_backbone_and_fails_when_it_was_left_trainable():
    backbone = tiny_backbone()
    model = classifier(backbone)
    head_params = 4 * 2 + 2
    result = checks.check_trainable_split(model, head_params)
    assert not result.passed and "freeze the backbone" in result.message
    backbone.trainable = False
    assert checks.check_trainable_split(model, head_params).passed


def _fit_once(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 3)).astype("float32")
    model.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)


def test_frozen_unchanged_passes_after_freezing_before_compile_and_fails_when_frozen_after():

    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    model = classifier(backbone)
    backbone.trainable = False
    before = diagnose.snapshot_weights(model)
    _fit_once(model)
    assert checks.check_frozen_unchanged(before, model).passed

    backbone2 = tiny_backbone()
    model2 = classifier(backbone2, training_flag=True)
    backbone2.trainable = False
    before2 = diagnose.snapshot_weights(model2)
    backbone2.trainable = True  # the mistake: weights meant frozen are trained
    _fit_once(model2)
    result = checks.check_frozen_unchanged(before2, model2)
    assert not result.passed and "frozen weight" in result.message
    untouched = checks.check_frozen_unchanged(diagnose.snapshot_weights(model), model)
    assert not untouched.passed and "did fit run" in untouched.message


def test_batchnorm_inference_passes_with_training_false_and_fails_without_it():
    backbone = tiny_backbone()
    backbone.trainable = False
    assert checks.check_batchnorm_inference(classifier(backbone)).passed
    result = checks.check_batchnorm_inference(classifier(tiny_backbone(), training_flag=True))
    assert not result.passed and "trainable=False" in result.message


def test_recompiled_passes_after_compile_and_fails_after_changing_trainable():
    backbone = tiny_backbone()
    model = classifier(backbone)
    assert "not compiled" in checks.check_recompiled(model).message
    model.compile(optimizer="adam", loss="mse")
    assert checks.check_recompiled(model).passed
    backbone.trainable = False
    result = checks.check_recompiled(model)
    assert not result.passed and "compile again" in result.message


def test_preprocessing_range_passes_minus_one_to_one_and_fails_on_zero_to_one():
    assert lesson03.check_preprocessing_range(lambda x: x / 127.5 - 1.0).passed
    result = lesson03.check_preprocessing_range(lambda x: x / 255.0)
    assert not result.passed and "0.00 to 1.00" in result.message and "-1 to 1" in result.message
    untouched = lesson03.check_preprocessing_range(lambda x: x)
    assert not untouched.passed and "not changed" in untouched.message
