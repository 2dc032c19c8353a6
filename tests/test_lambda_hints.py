"""A model that wraps ``preprocess_input`` in a ``Lambda`` layer saves, but safe mode cannot load it back; the
course says so, and what to do, where it loads models and in the Keras-only exercise (issue 27)."""

from __future__ import annotations

import numpy as np
import pytest

from tlcourse import diagnose, export
from tlcourse.checks import keras_recipe
from tlcourse.errors import TLCourseError


def _lambda_model():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(keras.applications.mobilenet_v2.preprocess_input)(inputs)
    base = keras.Sequential([keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization()], name="base")
    base.trainable = False
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_loading_a_lambda_preprocess_input_model_says_what_to_do(tmp_path):
    path = tmp_path / "model.keras"
    _lambda_model().save(path)
    with pytest.raises(TLCourseError) as info:
        export.load_keras(path)
    message = str(info.value)
    assert "Lambda" in message and "preprocess_input" in message, message
    assert "preprocessing_layer" in message and "custom_objects" in message, message
    assert (
        "register_keras_serializable" not in message
    )  # the old hint sent students to decorate a Keras function


def test_the_keras_only_exercise_flags_a_lambda_layer_before_the_model_is_saved():
    model = _lambda_model()
    before = diagnose.snapshot_weights(model)
    model.fit(np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 3)), np.arange(8) % 3, epochs=1, verbose=0)
    result = keras_recipe.check_head_phase(model, before)
    assert not result.passed and "Lambda" in result.message and "load_model" in result.message, result.message
