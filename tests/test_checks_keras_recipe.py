"""Graders of the "Keras only" exercise pass the reference recipe and fail, with hints, on typical mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import diagnose
from tlcourse.checks import keras_recipe as grade

SIZE = 32


def _data(n=24, classes=3, seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.uniform(0, 60, (n, SIZE, SIZE, 3)).astype("float32")
    x[..., 0] += 60 * y[:, None, None]  # learnable: the red channel tells the class
    return tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).batch(8), x


def _model(classes=3):
    import keras

    base = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(8, 3, name="conv_a"),
            keras.layers.BatchNormalization(name="bn_a"),
            keras.layers.ReLU(),
            keras.layers.Conv2D(8, 3, name="conv_b"),
            keras.layers.BatchNormalization(name="bn_b"),
            keras.layers.ReLU(),
        ],
        name="base",
    )
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return base, keras.Model(inputs, keras.layers.Dense(classes)(x))


def _compile(model, rate):
    import keras

    model.compile(
        keras.optimizers.Adam(rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _head_phase(freeze=True):
    data, x = _data()
    base, model = _model()
    base.trainable = not freeze
    _compile(model, 1e-2)
    before = diagnose.snapshot_weights(model)
    model.fit(data, epochs=2, verbose=0)
    return model, base, before, data, x


def test_head_phase_passes_with_a_frozen_base():
    model, _, before, _, _ = _head_phase()
    assert grade.check_head_phase(model, before).passed


def test_head_phase_fails_when_the_base_was_not_frozen():
    model, _, before, _, _ = _head_phase(freeze=False)
    result = grade.check_head_phase(model, before)
    assert not result.passed and "base.trainable = False" in result.message


def _fine_tune(*, recompile=True, freeze_batchnorm=True, rate=1e-4):
    import keras

    model, base, _, data, _ = _head_phase()
    base.trainable = True
    base.layers[0].trainable = False  # the tutorial's "freeze below fine_tune_at"
    if freeze_batchnorm:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    if recompile:
        _compile(model, rate)
    before = diagnose.snapshot_weights(model)
    if recompile:
        model.fit(data, epochs=2, initial_epoch=0, verbose=0)
    return model, before


def test_fine_tune_phase_passes_the_reference_recipe():
    model, before = _fine_tune()
    result = grade.check_fine_tune_phase(model, before)
    assert result.passed, result.message


@pytest.mark.parametrize(
    ("mistake", "hint"),
    [
        ({"recompile": False}, "compile again"),
        ({"freeze_batchnorm": False}, "BatchNorm"),
        ({"rate": 1e-3}, "learning rate"),
    ],
)
def test_fine_tune_phase_fails_with_a_hint_on_each_classic_mistake(mistake, hint):
    model, before = _fine_tune(**mistake)
    result = grade.check_fine_tune_phase(model, before)
    assert not result.passed and hint in result.message, result.message


def test_accuracy_check_needs_well_above_chance_with_real_weights():
    _, _, _, data, _ = _head_phase()
    _, constant = _model()
    constant.layers[-1].set_weights([np.zeros((8, 3)), np.array([5.0, 0.0, 0.0])])  # always class 0
    failed = grade.check_accuracy(constant, data, num_classes=3)
    assert not failed.passed and "chance" in failed.message
    assert grade.check_accuracy(constant, data, num_classes=3, real_weights=False).passed
    wrong_shape = grade.check_accuracy(constant, data, num_classes=5)
    assert not wrong_shape.passed and "Dense(5)" in wrong_shape.message


def test_reloaded_check_passes_a_real_round_trip_and_fails_a_different_model(tmp_path):
    import keras

    model, _, _, _, x = _head_phase()
    path = tmp_path / "m.keras"
    model.save(path)
    assert grade.check_reloaded(model, keras.models.load_model(path), x[:4]).passed
    assert not grade.check_reloaded(model, model, x[:4]).passed
    _, other = _model()
    result = grade.check_reloaded(model, other, x[:4])
    assert not result.passed and "model.save" in result.message
