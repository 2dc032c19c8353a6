"""tlcourse.alexnet: the 2012 architecture, its LRN layer, and the per-layer counts lesson 02 prints."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import alexnet


def _conv_params(kernel: int, in_channels: int, filters: int, groups: int = 1) -> int:
    return kernel * kernel * (in_channels // groups) * filters + filters


def _dense_params(inputs: int, units: int) -> int:
    return inputs * units + units


def _paper_total(num_classes: int = 1000, grouped: bool = False) -> int:
    """AlexNet's parameters worked out from the paper's layer list (section 3.5), not from Keras."""
    g = 2 if grouped else 1
    convs = (
        _conv_params(11, 3, 96)
        + _conv_params(5, 96, 256, g)
        + _conv_params(3, 256, 384)
        + _conv_params(3, 384, 384, g)
        + _conv_params(3, 384, 256, g)
    )
    final_map = 6 * 6 * 256  # 227 -> 55 -> pool 27 -> pool 13 -> pool 6
    dense = _dense_params(final_map, 4096) + _dense_params(4096, 4096) + _dense_params(4096, num_classes)
    return convs + dense


@pytest.fixture(scope="module")
def imagenet_alexnet():
    return alexnet.build_alexnet()


def test_single_tower_alexnet_has_the_analytic_parameter_count_of_about_60_million(imagenet_alexnet):
    total = imagenet_alexnet.count_params()
    assert total == _paper_total()
    assert 60_000_000 <= total <= 62_500_000
    rows = alexnet.layer_table(imagenet_alexnet)
    assert sum(row.params for row in rows) == total


def test_two_tower_alexnet_saves_half_the_weights_of_conv2_conv4_conv5():
    grouped = alexnet.build_alexnet(two_towers=True)
    single_total = _paper_total()
    saved = (5 * 5 * 96 * 256 + 3 * 3 * 384 * 384 + 3 * 3 * 384 * 256) // 2
    assert grouped.count_params() == _paper_total(grouped=True) == single_total - saved
    grouped_convs = {row.layer: row.params for row in alexnet.layer_table(grouped)}
    assert grouped_convs["conv2"] == _conv_params(5, 96, 256, groups=2)
    assert grouped_convs["conv3"] == _conv_params(3, 256, 384)  # conv3 sees both towers in the paper


def test_layer_table_counts_conv1_multiply_adds_and_output_shapes(imagenet_alexnet):
    rows = {row.layer: row for row in alexnet.layer_table(imagenet_alexnet)}
    conv1 = rows["conv1"]
    assert conv1.output_shape[1:] == (55, 55, 96)
    assert conv1.macs == 55 * 55 * 96 * 11 * 11 * 3
    assert conv1.activations == 55 * 55 * 96
    assert rows["pool1"].output_shape[1:] == (27, 27, 96)
    assert rows["pool5"].output_shape[1:] == (6, 6, 256)
    assert rows["fc6"].macs == 6 * 6 * 256 * 4096
    assert rows["pool1"].macs == 0 and rows["lrn1"].params == 0


def test_grouped_convolution_halves_multiply_adds_in_the_layer_table():
    model = alexnet.build_alexnet((67, 67, 3), num_classes=10, two_towers=True, dropout=0.0)
    rows = {row.layer: row for row in alexnet.layer_table(model)}
    h, w, c = rows["conv4"].output_shape[1:]
    assert rows["conv4"].macs == h * w * c * 3 * 3 * 384 // 2
    assert "dropout6" not in rows


def test_layer_table_expands_nested_models():
    import keras

    inner = alexnet.build_small_alexnet(72, 3, 0.125, augment=False)
    outer = keras.Sequential([keras.Input((72, 72, 3)), inner])
    rows = alexnet.layer_table(outer)
    assert any(row.layer == f"{inner.name}/conv1" for row in rows)
    assert sum(row.params for row in rows) == outer.count_params()
    text = alexnet.format_layer_table(rows, only_weighted=True)
    assert f"{outer.count_params():,}" in text and "rescale" not in text


def _lrn_by_hand(x: np.ndarray, size: int, k: float, alpha: float, beta: float) -> np.ndarray:
    channels = x.shape[-1]
    out = np.empty_like(x)
    for i in range(channels):
        lo, hi = max(0, i - size // 2), min(channels - 1, i + size // 2)
        squares = np.sum(x[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = x[..., i] / (k + alpha * squares) ** beta
    return out


def test_lrn_layer_matches_the_paper_formula_computed_by_hand():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 30, size=(1, 2, 2, 7)).astype("float32")
    layer = alexnet.local_response_normalization()
    assert (layer.size, layer.k, layer.alpha, layer.beta) == (5, 2.0, 1e-4, 0.75)
    np.testing.assert_allclose(np.asarray(layer(x)), _lrn_by_hand(x, 5, 2.0, 1e-4, 0.75), rtol=1e-5)
    # a strong alpha makes the inhibition visible: a loud channel damps its neighbours, not far channels
    strong = alexnet.local_response_normalization(size=3, k=1.0, alpha=0.5, beta=1.0)
    spike = np.ones((1, 1, 1, 6), dtype="float32")
    spike[..., 0] = 10.0
    out = np.asarray(strong(spike))[0, 0, 0]
    np.testing.assert_allclose(out, _lrn_by_hand(spike, 3, 1.0, 0.5, 1.0)[0, 0, 0], rtol=1e-5)
    assert out[1] < out[3]


def test_lrn_layer_rejects_an_even_window():
    with pytest.raises(ValueError, match="odd"):
        alexnet.local_response_normalization(size=4)


def test_model_with_lrn_round_trips_through_keras_file_in_safe_mode(tmp_path):
    import keras

    model = alexnet.build_small_alexnet(72, 3, 0.125, augment=False)
    path = tmp_path / "small_alexnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("lrn1"), alexnet.LocalResponseNormalization)
    assert loaded.get_layer("lrn1").get_config()["beta"] == pytest.approx(0.75)
    batch = np.random.default_rng(1).uniform(0, 255, size=(2, 72, 72, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(batch)), np.asarray(model(batch)), rtol=1e-5, atol=1e-6)


def test_small_alexnet_scales_widths_and_crops_only_while_training():
    model = alexnet.build_small_alexnet(96, 4, 0.25)
    assert model.get_layer("conv1").filters == 24 and model.get_layer("fc6").units == 1024
    assert model.output_shape == (None, 4)
    assert model.get_layer("random_crop").output.shape[1] == 84
    batch = np.full((1, 96, 96, 3), 128.0, dtype="float32")
    a, b = np.asarray(model(batch, training=False)), np.asarray(model(batch, training=False))
    np.testing.assert_array_equal(a, b)  # no random crop, flip or dropout at inference
    with pytest.raises(ValueError, match="width_scale"):
        alexnet.build_small_alexnet(96, 4, 1.5)


def test_too_small_inputs_get_a_clear_error_naming_the_smallest_size():
    from tlcourse.errors import TLCourseError

    smallest = alexnet.smallest_input_size()
    alexnet.build_small_alexnet(smallest, 2, 0.125, augment=False)  # fits
    with pytest.raises(TLCourseError, match=f"at least {smallest} px"):
        alexnet.build_small_alexnet(smallest - 1, 2, 0.125, augment=False)
    with pytest.raises(TLCourseError, match="training crop"):
        alexnet.build_small_alexnet(smallest, 2, 0.125, augment=True)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "expected"),
    [(227, 11, 4, "valid", 55), (55, 3, 2, "valid", 27), (55, 2, 2, "valid", 27), (27, 5, 1, "same", 27)],
)
def test_conv_output_size_agrees_with_keras(size, kernel, stride, padding, expected):
    import keras

    pooled = keras.layers.MaxPooling2D(kernel, strides=stride, padding=padding).compute_output_shape(
        (None, size, size, 1)
    )
    assert alexnet.conv_output_size(size, kernel, stride, padding) == pooled[1] == expected


def test_model_with_lrn_loads_in_a_fresh_process_through_export_load_keras(tmp_path):
    import subprocess
    import sys

    import keras

    inputs = keras.Input((8, 8, 4))
    outputs = alexnet.local_response_normalization()(inputs)
    path = tmp_path / "lrn.keras"
    keras.Model(inputs, outputs).save(path)
    code = (
        "import sys; from tlcourse.export import load_keras; model = load_keras(sys.argv[1]); "
        "print(type(model.layers[-1]).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("LocalResponseNormalization")
