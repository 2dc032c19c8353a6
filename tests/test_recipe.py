"""Lesson 04's saved code (tlcourse.recipe): features once, then a head fitted on the arrays."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from tlcourse import recipe  # noqa: E402


def _dataset(n=12, classes=3):
    rng = np.random.default_rng(0)
    y = (np.arange(n) % classes).astype("int32")
    x = rng.normal(size=(n, 4)).astype("float32") + 3 * y[:, None]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(5), x, y


def test_features_of_runs_the_extractor_once_over_every_batch_and_keeps_labels_in_order():
    dataset, x, y = _dataset()
    extractor = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, use_bias=False)])
    features, labels = recipe.features_of(extractor, dataset)
    assert features.shape == (12, 2) and np.array_equal(labels, y)
    np.testing.assert_allclose(features, x @ extractor.get_weights()[0], rtol=1e-5, atol=1e-5)


def test_fit_head_on_arrays_prints_one_line_per_epoch_and_keeps_the_best_validation_epoch(capsys):
    _, x, y = _dataset(30)
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.layers.Dropout(0.2), keras.layers.Dense(3)])
    history = recipe.fit_head_on_arrays(
        head, (x, y), (x, y), epochs=4, learning_rate=0.05, batch_size=8, patience=2
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("head epoch")]
    assert len(lines) == len(history.history["loss"]) and "val_accuracy" in lines[0]
    best = max(history.history["val_accuracy"])
    assert head.evaluate(x, y, verbose=0)[1] == pytest.approx(best)
