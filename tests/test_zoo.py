"""tlcourse.zoo: exact convolution arithmetic, weightless counting, latency measurement (lesson 03)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlcourse import bottleneck, models, zoo
from tlcourse.errors import TLCourseError

keras = pytest.importorskip("keras")


def _built(layer, shape):
    layer.build((None, *shape))
    return layer.count_params()


@pytest.mark.parametrize(("c_in", "c_out", "k", "stride"), [(3, 8, 3, 1), (16, 24, 5, 2), (32, 64, 3, 1)])
def test_separable_conv_params_match_keras_layers(c_in, c_out, k, stride):
    shape = (20, 20, c_in)
    cost = zoo.separable_conv_cost(20, 20, c_in, c_out, k, stride=stride)
    assert cost.standard.params == _built(keras.layers.Conv2D(c_out, k, use_bias=False), shape)
    assert cost.params == _built(keras.layers.SeparableConv2D(c_out, k, use_bias=False), shape)
    with_bias = zoo.separable_conv_cost(20, 20, c_in, c_out, k, stride=stride, use_bias=True)
    depthwise = _built(keras.layers.DepthwiseConv2D(k, use_bias=True), shape)
    pointwise = _built(keras.layers.Conv2D(c_out, 1, use_bias=True), shape)
    assert with_bias.params == depthwise + pointwise
    assert with_bias.standard.params == _built(keras.layers.Conv2D(c_out, k, use_bias=True), shape)


def test_separable_ratio_is_one_over_c_out_plus_one_over_k_squared():
    cost = zoo.separable_conv_cost(56, 56, 144, 32, 3)
    assert cost.mac_ratio == pytest.approx(1 / 32 + 1 / 9, rel=1e-12)
    assert cost.param_ratio == pytest.approx(1 / 32 + 1 / 9, rel=1e-12)


def test_conv_macs_match_a_hand_count_on_a_tiny_input():
    # 5x5x2 input, 3x3 kernel, 'valid': a 3x3 output. Each output value of each of the 3 filters needs
    # 3*3*2 = 18 multiply-adds, so 9 positions * 3 filters * 18 = 486.
    assert zoo.conv_cost(5, 5, 2, 3, 3, padding="valid").macs == 486
    # 'same' with stride 2 on 5x5: outputs at rows/cols 0, 2, 4 -> 3x3 again, still 486.
    assert zoo.conv_cost(5, 5, 2, 3, 3, stride=2).output_shape == (3, 3, 3)
    # depthwise: 9 positions * 2 channels * 9 taps = 162; pointwise 2 -> 3 on 3x3: 9 * 2 * 3 = 54.
    cost = zoo.separable_conv_cost(5, 5, 2, 3, 3, padding="valid")
    assert (cost.depthwise.macs, cost.pointwise.macs) == (162, 54)


def test_count_macs_walks_conv_depthwise_and_dense_layers():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 positions * 3*3*3*4
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*4 * 3*3*4
    x = keras.layers.SeparableConv2D(6, 3, padding="same")(x)  # 4*4 * (3*3*4 + 4*6)
    x = keras.layers.Conv2D(5, 1)(x)  # 4*4 * 6*5
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2)(x)  # 5*2
    model = keras.Model(inputs, outputs)
    expected = 64 * 108 + 16 * 36 + 16 * (36 + 24) + 16 * 30 + 10
    assert zoo.count_macs(model) == expected
    assert zoo.weight_layer_count(model) == 5


def test_weightless_architecture_counts_vgg16_like_the_published_table():
    model = zoo.architecture("vgg16")
    spec = models.BACKBONES["vgg16"]
    assert model.count_params() == pytest.approx(spec.params_millions * 1e6, rel=1e-3)
    assert zoo.weight_layer_count(model) == 16  # the "16" in the name: 13 convolutions + 3 dense layers
    assert not any(v._value is not None for v in model.weights[:1])  # shapes only, no values
    keras.backend.clear_session()


def test_mobilenet_v2_macs_match_the_paper():
    # Sandler et al. 2018, Table 4: MobileNetV2 (1.0, 224) needs 300M multiply-adds.
    assert zoo.count_macs(zoo.architecture("mobilenet_v2", alpha=1.0)) == pytest.approx(300e6, rel=0.01)
    keras.backend.clear_session()


def test_architecture_with_top_rejects_other_sizes():
    with pytest.raises(TLCourseError, match="224"):
        zoo.architecture("vgg16", include_top=True, image_size=160)


@pytest.mark.parametrize(
    ("prefix", "c_in", "c_out", "stride", "side"), [("block_1_", 16, 24, 2, 112), ("block_2_", 24, 24, 1, 56)]
)
def test_inverted_residual_cost_matches_real_mobilenet_v2_blocks(prefix, c_in, c_out, stride, side):
    model = zoo.architecture("mobilenet_v2", include_top=False, alpha=1.0)
    rows = zoo.block_layers(model, prefix)
    cost = zoo.inverted_residual_cost(side, side, c_in, c_out, expansion=6, stride=stride)
    assert cost.params == sum(row["params"] for row in rows)
    assert rows[-1]["output"] == cost.output_shape
    assert cost.residual == any(row["type"] == "Add" for row in rows)
    convs = [row for row in rows if row["type"] in ("Conv2D", "DepthwiseConv2D")]
    assert [row["output"] for row in convs] == [stage.output_shape for stage in cost.stages]
    keras.backend.clear_session()


def test_block_layers_names_a_missing_prefix():
    model = zoo.architecture("mobilenet_v3_small", include_top=False, image_size=64)
    with pytest.raises(TLCourseError, match="block_99"):
        zoo.block_layers(model, "block_99")
    keras.backend.clear_session()


def test_bad_padding_is_refused():
    with pytest.raises(ValueError, match="padding"):
        zoo.conv_cost(8, 8, 3, 4, 3, padding="full")


def test_measure_latency_returns_positive_finite_times():
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()])
    latency = zoo.measure_latency(model, 4, repeats=3, warmup=1)
    assert len(latency.times_ms) == 3
    assert all(math.isfinite(t) and t > 0 for t in latency.times_ms)
    assert latency.per_image_ms == pytest.approx(latency.median_ms / 4)
    assert latency.images_per_second == pytest.approx(4000 / latency.median_ms)
    with pytest.raises(ValueError):
        zoo.measure_latency(model, 0)


def test_model_summary_row_is_complete_with_and_without_timing():
    row = zoo.model_summary_row("mobilenet_v3_small", image_size=64, batch_sizes=(1, 2), repeats=(2, 1))
    assert row["params"] > row["backbone_params"] > 0
    assert row["keras_size_mb"] is None  # not in the Keras Applications table
    assert row["float32_mib"] == pytest.approx(row["params"] * 4 / 2**20)
    assert row["top1"] == models.BACKBONES["mobilenet_v3_small"].top1
    for key in ("ms_batch_1", "ms_batch_2", "ms_per_image_batch_2"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert row["timed_size"] == 64
    counted = zoo.model_summary_row("mobilenet_v2", measure=False)
    assert counted["keras_size_mb"] == models.get_spec("mobilenet_v2").size_mb
    assert counted["params"] == pytest.approx(3.5e6, rel=0.02)
    assert not any(key.startswith("ms_") for key in counted)
    with pytest.raises(ValueError, match="repeats"):
        zoo.backbone_latency("mobilenet_v3_small", image_size=64, batch_sizes=(1, 2), repeats=(1, 2, 3))


def test_width_resolution_grid_rows_are_complete():
    measured = zoo.mobilenet_width_resolution_grid((0.35,), (32, 48), repeats=1)
    assert [(row["alpha"], row["size"]) for row in measured] == [(0.35, 32), (0.35, 48)]
    for row in measured:
        assert set(row) == {"alpha", "size", "params", "mmacs", "published_top1", "ms"}
        assert math.isfinite(row["ms"]) and row["ms"] > 0 and row["published_top1"] is None
    rows = zoo.mobilenet_width_resolution_grid((0.35, 0.5), (48, 224), measure=False)
    assert [(row["alpha"], row["size"]) for row in rows] == [(0.35, 48), (0.35, 224), (0.5, 48), (0.5, 224)]
    assert all("ms" not in row for row in rows)
    by = {(row["alpha"], row["size"]): row for row in rows}
    assert by[0.35, 48]["params"] == by[0.35, 224]["params"] == measured[1]["params"] < by[0.5, 48]["params"]
    assert by[0.35, 48]["mmacs"] == measured[1]["mmacs"] < by[0.5, 48]["mmacs"] < by[0.5, 224]["mmacs"]
    assert by[0.35, 224]["published_top1"] == models.BACKBONES["mobilenet_v2"].top1_by_alpha[0.35]
    assert by[0.35, 48]["published_top1"] is None


def test_relu_loses_information_in_few_dimensions_only():
    rows = bottleneck.relu_information_loss((2, 5, 30), trials=3)
    errors = [row["relu_error"] for row in rows]
    assert errors[0] > 0.1 and errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01
    assert all(row["linear_error"] < 1e-12 for row in rows)


def test_relu_round_trip_without_relu_is_exact():
    points = bottleneck.spiral(50, seed=1)
    assert np.allclose(bottleneck.relu_round_trip(points, 3, relu=False), points)
    assert not np.allclose(bottleneck.relu_round_trip(points, 2, relu=True), points, atol=1e-3)
