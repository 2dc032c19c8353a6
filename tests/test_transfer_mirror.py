"""The foundation's end-to-end check on real photos: ImageNet features transfer, random ones do not.

On the mirror's flower_photos_small (800 training / 200 validation photos, 5 classes), a linear head on
frozen MobileNetV2 (alpha 0.35, 160 px) features must reach at least 0.75 validation accuracy with the
mirror's ImageNet weights, and stay below 0.5 with randomly initialised weights, so the test can fail when
weights, preprocessing or labels are wrong. Features are extracted once per backbone (into a temporary
cache), then the head trains in seconds.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tlcourse import data, features, models  # noqa: E402

SIZE = 160
ALPHA = 0.35


def _linear_probe_accuracy(splits, weights: str, mirror, cache_dir) -> tuple[float, float]:
    """Validation accuracy of a Dense head on frozen features, and the seconds it all took."""
    start = time.perf_counter()
    backbone = models.build_backbone(
        "mobilenet_v2", alpha=ALPHA, image_size=SIZE, weights=weights, mirror=mirror, seed=0
    )
    extractor = features.feature_extractor(backbone, pooling="avg")
    common = dict(data_fingerprint=splits.fingerprint, cache_dir=cache_dir, progress=False)
    train = features.cached_features(extractor, splits.train, part="train", **common)
    val = features.cached_features(extractor, splits.validation, part="validation", **common)
    assert train.count == splits.train_count and val.count == splits.validation_count
    head, _ = features.train_head_on_features(
        train, val_features=val, num_classes=len(splits.class_names), epochs=25, lr=1e-3, dropout=0.0, seed=0
    )
    logits = head.predict(val.features, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == val.labels))
    return accuracy, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.mirror
def test_imagenet_features_transfer_to_flowers_and_random_features_do_not(mirror, tmp_path, capsys):
    splits = data.load_dataset("flowers", image_size=SIZE, batch_size=32, mirror=mirror, shuffle_train=False)
    assert len(splits.class_names) == 5
    imagenet, imagenet_s = _linear_probe_accuracy(splits, "imagenet", mirror, tmp_path)
    random, random_s = _linear_probe_accuracy(splits, "random", mirror, tmp_path)
    with capsys.disabled():
        print(
            f"\nlinear probe on flower_photos_small, MobileNetV2 alpha {ALPHA} at {SIZE}px: "
            f"ImageNet weights {imagenet:.3f} ({imagenet_s:.1f} s), random weights {random:.3f} ({random_s:.1f} s)"
        )
    assert imagenet >= 0.75
    assert random < 0.5
