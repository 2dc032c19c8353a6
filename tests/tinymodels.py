"""Tiny models for the tests of tlcourse.models and tlcourse.diagnose: MobileNetV2 alpha 0.35 at 32 px with
random weights, and a few random images (no assets, no network)."""

from __future__ import annotations

import numpy as np

from tlcourse import models

SIZE = 32
CLASSES = 3


def images(n: int = 8, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def labels(n: int = 8) -> np.ndarray:
    return (np.arange(n) % CLASSES).astype("int32")


def tiny_backbone(seed: int = 1):
    return models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="random", seed=seed)


def head_classifier(seed: int = 1):
    """The correct set-up for the head phase: frozen base, build_classifier, compiled at 1e-3."""
    backbone = tiny_backbone(seed)
    models.freeze(backbone)
    model = models.build_classifier(backbone, CLASSES)
    models.compile_classifier(model, 1e-3, num_classes=CLASSES)
    return backbone, model


def codes(mistakes) -> list[str]:
    return [m.code for m in mistakes]


# ------------------------------------------------------------------------------------------ registry
