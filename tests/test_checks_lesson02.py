"""Each of the lesson 02 graders (convolution arithmetic, AlexNet's parameters and head) passes the reference answer and fails, with its hint, on a typical mistake."""

from __future__ import annotations

import pytest

from tlcourse.checks import lesson02

keras = pytest.importorskip("keras")


def test_a_stub_that_still_raises_not_implemented_gets_a_replace_the_stub_hint():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    result = lesson02.check_conv_output_size(stub)
    assert not result.passed and "NotImplementedError" in result.message


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


def alexnet_head(feature_shape, num_classes, hidden=4096):
    return keras.Sequential(
        [
            keras.Input(feature_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dropout(0.5),
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
    assert "after each of the first two dense layers" in result.message  # where the lesson and alexnet put it


def test_the_solutions_alexnet_head_drops_out_where_the_lesson_and_the_library_do():
    """Issue 27's slip: exercise 2 put dropout before fc6 and fc7, lesson 02 and alexnet.py after them."""
    import ast
    from pathlib import Path

    import nbformat

    from tlcourse import alexnet

    solution = nbformat.read(Path(__file__).parents[1] / "solutions" / "02_alexnet.ipynb", as_version=4)
    source = next(
        c.source for c in solution.cells if c.cell_type == "code" and "def alexnet_head" in c.source
    )
    definition = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))
    namespace = {"keras": keras}
    exec(compile(ast.Module([definition], []), "solution", "exec"), namespace)
    head = namespace["alexnet_head"]((6, 6, 8), 5, hidden=16)
    library = alexnet.build_small_alexnet(96, 5, 0.05)
    top = library.layers[[layer.name for layer in library.layers].index("flatten") :]

    def kinds(layers):
        return [type(layer).__name__ for layer in layers if type(layer).__name__ in ("Dense", "Dropout")]

    assert kinds(head.layers) == kinds(top) == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
