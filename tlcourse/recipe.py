"""Lesson 04's plain-Keras feature and head code, saved for the later lessons (d2l's ``#@save`` idea).

Lesson 04 writes these functions out in cells that start with ``#@save``: run the frozen base's extractor once
over a dataset (:func:`features_of`), then compile and fit a small head on the feature arrays (:func:`fit_head_on_arrays`).
Lessons 05, 07 and 08 call them from here instead of writing them again. Each function is the lesson's cell,
word for word (the type hints aside): ``tests/test_notebook_style.py`` compares them, so a change to one
fails until the other follows.

The library's own helpers do the same work with more around it (an on-disk cache, progress bars, several
replicas): :func:`tlcourse.features.cached_features` and :func:`tlcourse.features.train_head_on_features`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tlcourse import progress


def features_of(extractor: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """One pass of the extractor over a dataset: the feature arrays and the labels of the same batches."""
    # predict_on_batch runs one traced graph per batch; calling the model eagerly would keep every activation
    pairs = [(extractor.predict_on_batch(x), y.numpy()) for x, y in dataset]
    return np.concatenate([f for f, _ in pairs]), np.concatenate([y for _, y in pairs])


def fit_head_on_arrays(
    head: Any,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    patience: int = 5,
) -> Any:
    """Compile the head and fit it on (features, labels), keeping its best epoch on validation accuracy."""
    head.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=patience, restore_best_weights=True)
    return head.fit(
        *train,
        validation_data=validation,
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=[stop, progress.epoch_lines("head")],
    )
