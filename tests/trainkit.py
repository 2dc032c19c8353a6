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


def random_base(alpha: float = 0.35, size: int = SIZE, seed: int = 0):
    """MobileNetV2 with seeded random weights, as models.build_backbone builds it."""
    from tlcourse import models

    return models.build_backbone(
        "mobilenet_v2", alpha=alpha, image_size=size, weights="random", seed=seed, verbose=False
    )


def lively(net, seed: int = 5):
    """``net`` with every BatchNorm's statistics set from one batch of random inputs, in place.

    A freshly initialised network's activations shrink block after block (its features are ~1e-11); with
    statistics measured on real inputs its features are O(1), so two such bases give features that differ.
    """
    import keras
    import numpy as np

    from tlcourse.backend import walk_layers

    norms = [layer for layer in walk_layers(net) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    shape = tuple(net.input_shape[1:])
    net(np.random.default_rng(seed).uniform(-1, 1, (16, *shape)).astype("float32"), training=True)
    for layer in norms:
        layer.momentum = 0.99
    return net


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
