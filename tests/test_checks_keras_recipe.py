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


# ------------------------------------------------------------------ the specification's other typical wrong answers


def _split(n=12, classes=3, seed=1):
    """Raw-pixel (train, validation) datasets of different pictures, 4 per batch."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (2 * n, SIZE, SIZE, 3)).astype("float32")
    y = (np.arange(2 * n) % classes).astype("int32")
    make = lambda a, b: tf.data.Dataset.from_tensor_slices((a, b)).batch(4)  # noqa: E731
    return make(x[:n], y[:n]), make(x[n:], y[n:])


NAMES = ["a", "b", "c"]


def test_datasets_pass_raw_pixels_integer_labels_and_separate_images():
    train, val = _split()
    result = grade.check_datasets(train, val, NAMES, image_size=SIZE)
    assert result.passed, result.message


def test_datasets_fail_when_the_images_are_already_scaled_to_0_1():
    train, val = _split()
    result = grade.check_datasets(train.map(lambda x, y: (x / 255.0, y)), val, NAMES, image_size=SIZE)
    assert not result.passed and "raw pixels in [0, 255]" in result.message


def test_datasets_fail_with_one_hot_labels():
    import tensorflow as tf

    train, val = _split()
    result = grade.check_datasets(train.map(lambda x, y: (x, tf.one_hot(y, 3))), val, NAMES, image_size=SIZE)
    assert not result.passed and "integer class index" in result.message


def test_datasets_fail_when_the_validation_images_are_augmented():
    import tensorflow as tf

    train, val = _split()
    noisy = val.map(lambda x, y: (tf.clip_by_value(x + tf.random.uniform(tf.shape(x), 0, 5), 0, 255), y))
    result = grade.check_datasets(train, noisy, NAMES, image_size=SIZE)
    assert not result.passed and "never in the validation dataset" in result.message


def test_datasets_fail_when_validation_images_are_also_training_images():
    train, val = _split()
    result = grade.check_datasets(train.concatenate(val), val, NAMES, image_size=SIZE)
    assert not result.passed and "also training images" in result.message


def _compiled(model, *, from_logits=True, loss=None):
    import keras

    model.compile(
        keras.optimizers.Adam(1e-3),
        loss or keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    return model


def _always_jitter_class():
    import keras

    class AlwaysJitter(keras.layers.Layer):
        """A hand-written augmentation that forgets to look at ``training``."""

        def call(self, x):
            return keras.ops.clip(x + keras.random.uniform(keras.ops.shape(x), 0, 20), 0, 255)

    return AlwaysJitter


def _AlwaysJitter():  # noqa: N802 - reads like the layer it builds
    return _always_jitter_class()()


def _variant(*, scale=(1 / 127.5, -1.0), softmax=False, augment_at_inference=False, freeze=True):
    """The reference model of _model(), with one thing changed."""
    import keras

    base, _ = _model()
    base.trainable = not freeze
    inputs = keras.Input((SIZE, SIZE, 3))
    x = _AlwaysJitter()(inputs) if augment_at_inference else inputs
    x = keras.layers.Rescaling(*scale)(x) if scale else x
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    outputs = keras.layers.Dense(3, activation="softmax" if softmax else None)(x)
    return base, keras.Model(inputs, outputs)


def _images():
    return np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")


def test_model_passes_the_reference_recipe():
    base, model = _variant()
    result = grade.check_model(_compiled(model), base, _images(), num_classes=3)
    assert result.passed, result.message


@pytest.mark.parametrize(
    ("change", "compile_with", "hint"),
    [
        ({"freeze": False}, {}, "base.trainable = False"),
        ({"scale": (1 / 255.0, 0.0)}, {}, "expects [-1, 1]"),  # pixels squeezed into [0, 1]
        ({"scale": None}, {}, "expects [-1, 1]"),  # raw pixels reach the base
        ({"softmax": True}, {}, "drop the softmax"),
        ({}, {"from_logits": False}, "from_logits=True"),
        ({"augment_at_inference": True}, {}, "only while training"),
    ],
    ids=["base-not-frozen", "scaled-to-0-1", "no-preprocessing", "softmax-on-logits-loss", "logits-on-probs-loss",
         "augmentation-at-inference"],
)  # fmt: skip
def test_model_fails_with_a_hint_on_each_typical_mistake(change, compile_with, hint):
    base, model = _variant(**change)
    result = grade.check_model(_compiled(model, **compile_with), base, _images(), num_classes=3)
    assert not result.passed and hint in result.message, result.message


def test_model_fails_before_compile_and_with_the_wrong_number_of_outputs():
    base, model = _variant()
    assert "not compiled" in grade.check_model(model, base, _images(), num_classes=3).message
    assert "(5,)" in grade.check_model(_compiled(model), base, _images(), num_classes=5).message


def test_head_phase_fails_when_fit_had_no_validation_data():
    data, _ = _data()
    base, model = _model()
    base.trainable = False
    _compile(model, 1e-2)
    before = diagnose.snapshot_weights(model)
    history = model.fit(data, epochs=1, verbose=0)
    result = grade.check_head_phase(model, before, history=history, train_ds=data)
    assert not result.passed and "validation_data=val_ds" in result.message


def test_head_phase_fails_when_the_head_trained_on_the_validation_set():
    train, val = _data(24), _data(8, seed=1)[0]
    base, model = _model()
    base.trainable = False
    _compile(model, 1e-2)
    before = diagnose.snapshot_weights(model)
    history = model.fit(val, validation_data=train[0], epochs=1, verbose=0)  # the two swapped
    result = grade.check_head_phase(model, before, history=history, train_ds=train[0])
    assert not result.passed and "train on train_ds only" in result.message
    before = diagnose.snapshot_weights(model)
    history = model.fit(train[0], validation_data=val, epochs=1, verbose=0)
    assert grade.check_head_phase(model, before, history=history, train_ds=train[0]).passed


def test_fine_tune_phase_fails_when_the_epoch_count_starts_again():
    import keras

    model, base, _, data, _ = _head_phase()
    head_history = model.history if hasattr(model, "history") else None
    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    _compile(model, 1e-4)
    before = diagnose.snapshot_weights(model)
    restarted = model.fit(data, epochs=1, verbose=0)  # epochs 1.. again instead of 3..
    result = grade.check_fine_tune_phase(model, before, history=restarted, head_history=head_history)
    assert not result.passed and "initial_epoch" in result.message, result.message
    before = diagnose.snapshot_weights(model)
    continued = model.fit(data, epochs=3, initial_epoch=2, verbose=0)
    assert grade.check_fine_tune_phase(model, before, history=continued, head_history=head_history).passed
