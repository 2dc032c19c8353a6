"""Shared set-up of tests/test_train.py and tests/test_fastpath.py: tiny synthetic splits, a small profile and
the classifier lessons 04/05 write out (MobileNetV2 alpha 0.35 at 32 px; no network)."""

from __future__ import annotations

from tlcourse.config import get_profile

SIZE = 32


def last_dense(model):
    """The last Dense layer of ``model``, nested models included (where a head's weights are)."""
    import keras

    from tlcourse.backend import walk_layers

    return [layer for layer in walk_layers(model) if isinstance(layer, keras.layers.Dense)][-1]


def synthetic_splits():
    from tlcourse import data

    return data.synthetic_splits(num_classes=3, per_class=8, image_size=SIZE, seed=0)


def small_profile():
    return get_profile(
        "smoke", image_size=SIZE, batch_size=8, head_epochs=2, fine_tune_epochs=2, augmented_passes=1
    )


def mobilenet(size: int = SIZE):
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=None
    )


def classifier(splits, *, dropout=0.2, seed=0, weights="random"):
    """What lessons 04/05 write out: a MobileNetV2 base, frozen, in a functional model."""
    from tlcourse import models

    base = models.build_backbone(
        "mobilenet_v2", alpha=0.35, image_size=SIZE, weights=weights, seed=seed, verbose=False
    )
    base.trainable = False
    return base, models.build_classifier(base, splits.num_classes, dropout=dropout)


def compile_with(model, rate, sgd=False):
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(rate) if sgd else keras.optimizers.Adam(rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
