"""tlcourse.predict: class names beside or inside a model, and classifying image files as training read them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tlcourse import predict


def test_read_class_names_falls_back_when_the_file_is_missing_or_wrong(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")
    assert predict.read_class_names(tmp_path / "model.keras", 2) == ["class_0", "class_1"]
    (tmp_path / "class_names.json").write_text('["a", "b", "c"]')
    assert predict.read_class_names(tmp_path / "model.keras", 2) == ["class_0", "class_1"]
    assert predict.read_class_names(tmp_path / "model.keras", 3) == ["a", "b", "c"]


def test_predict_images_turns_a_single_binary_logit_into_two_class_probabilities(tmp_path):
    import keras

    inputs = keras.Input((4, 4, 3))
    logit = keras.layers.Dense(
        1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(2.0)
    )(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, logit)
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(path)
    (result,) = predict.predict_images(model, [str(path)], ["cat", "dog"], top=2)
    p_dog = 1 / (1 + np.exp(-2.0))
    assert [name for name, _ in result["top"]] == ["dog", "cat"]
    np.testing.assert_allclose(result["probabilities"], [1 - p_dog, p_dog], rtol=1e-6)
