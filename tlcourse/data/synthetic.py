"""Generated pictures (a colour and a pattern per class) that a model can learn, for offline smoke runs
(every lesson in the smoke profile).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from tlcourse.data.splits import DatasetSplits, _counts, _fingerprint, _from_arrays

if TYPE_CHECKING:  # pragma: no cover - typing only
    pass

SYNTHETIC_PATTERNS = ("stripes", "bars", "disc", "checks", "ring", "diagonal")
SYNTHETIC_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple")
_COLOUR_RGB = {
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 210),
    "yellow": (225, 205, 40),
    "magenta": (200, 50, 190),
    "cyan": (40, 190, 200),
    "orange": (235, 130, 30),
    "purple": (120, 50, 170),
}

# --------------------------------------------------------------------------------------------- synthetic


def synthetic_class_names(num_classes: int) -> list[str]:
    """Names of the generated classes, e.g. ``"blue_disc"``, in label (alphabetical) order (lesson 00)."""
    colours, patterns = len(SYNTHETIC_COLOURS), len(SYNTHETIC_PATTERNS)
    if not 2 <= num_classes <= 2 * colours:
        raise ValueError(f"num_classes must be between 2 and {2 * colours}, got {num_classes}")
    # past the eighth class each colour comes back with a pattern three steps on: every name stays unique
    return sorted(
        f"{SYNTHETIC_COLOURS[i % colours]}_{SYNTHETIC_PATTERNS[(i + 3 * (i // colours)) % patterns]}"
        for i in range(num_classes)
    )


def synthetic_image(name: str, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One generated picture of class ``name`` (``colour_pattern``), uint8 [S, S, 3] (lesson 00).

    The colour and the pattern identify the class; position, scale, phase, brightness and noise vary, so a
    classifier has something to learn but nothing trivial to memorise.
    """
    colour, pattern = name.split("_", 1)
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    period = rng.uniform(0.15, 0.3)
    phase = rng.uniform(0, 1)
    cx, cy = rng.uniform(0.3, 0.7, 2)
    radius = rng.uniform(0.18, 0.32)
    distance = np.hypot(xx - cx, yy - cy)
    if pattern == "stripes":
        mask = ((yy / period + phase) % 1.0) < 0.5
    elif pattern == "bars":
        mask = ((xx / period + phase) % 1.0) < 0.5
    elif pattern == "disc":
        mask = distance < radius
    elif pattern == "checks":
        mask = (((xx / period + phase) // 1 + (yy / period + phase) // 1) % 2) < 1
    elif pattern == "ring":
        mask = np.abs(distance - radius) < 0.06
    else:  # diagonal
        mask = (((xx + yy) / period + phase) % 1.0) < 0.5
    foreground = np.asarray(_COLOUR_RGB[colour], np.float32) * rng.uniform(0.8, 1.1)
    background = np.full(3, rng.uniform(70, 200), np.float32)
    image = np.where(mask[..., None], foreground, background)
    image += rng.normal(0.0, 12.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_splits(
    num_classes: int = 3,
    per_class: int = 8,
    image_size: int = 96,
    *,
    validation_per_class: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    shuffle_train: bool = True,
    augment: bool = False,
    class_names: Sequence[str] | None = None,
) -> DatasetSplits:
    """Generated, learnable data (a colour and a pattern per class), deterministic by seed (lesson 00).

    ``per_class`` training and ``validation_per_class`` (default ``max(2, per_class // 4)``) validation images
    per class. Used by the smoke profile when no real data is available offline, and by fast tests.
    ``class_names`` relabels the generated classes (e.g. to stand in for the flowers); the pictures stay
    the synthetic patterns.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 for synthetic images, got {image_size}")
    patterns = synthetic_class_names(num_classes)
    names = sorted(class_names) if class_names is not None else patterns
    if len(names) != num_classes:
        raise ValueError(f"class_names must hold {num_classes} names, got {len(names)}")
    n_val = validation_per_class if validation_per_class is not None else max(2, per_class // 4)
    rng = np.random.default_rng(seed)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        images = np.zeros((num_classes * count, image_size, image_size, 3), np.uint8)
        labels = np.repeat(np.arange(num_classes, dtype=np.int32), count)
        for i, label in enumerate(labels):
            images[i] = synthetic_image(patterns[label], image_size, rng)
        return images, labels

    train_x, train_y = make(per_class)
    val_x, val_y = make(n_val)
    fingerprint = _fingerprint(
        {
            "source": "synthetic",
            "classes": names,
            "per_class": per_class,
            "validation_per_class": n_val,
            "image_size": image_size,
            "seed": seed,
            "augment": bool(augment),
        }
    )
    return DatasetSplits(
        train=_from_arrays(
            train_x, train_y, batch_size=batch_size, shuffle=shuffle_train, seed=seed, augment=augment
        ),
        validation=_from_arrays(val_x, val_y, batch_size=batch_size, shuffle=False, seed=seed, augment=False),
        class_names=list(names),
        source="synthetic",
        train_count=len(train_y),
        validation_count=len(val_y),
        fingerprint=fingerprint,
        audit=None,
        image_size=int(image_size),
        batch_size=int(batch_size),
        train_class_counts=_counts(train_y, names),
        validation_class_counts=_counts(val_y, names),
        validation_files=[f"synthetic[{i}]" for i in range(len(val_y))],
        cached=True,
        notes=["generated images (a colour and a pattern per class), not photos"],
    )


def write_synthetic_folder(
    folder: str | Path,
    *,
    num_classes: int = 5,
    per_split: Mapping[str, int] | None = None,
    image_size: int = 96,
    seed: int = 0,
) -> Path:
    """Write generated pictures as an image folder, ``folder/<split>/<class>/<n>.png`` (lessons 04 and 08).

    ``per_split`` maps each split folder to its images per class (default 8 in ``train/``, 2 in
    ``validation/``); the same seed writes the same files. Returns ``folder``.
    """
    root = Path(folder)
    rng = np.random.default_rng(seed)
    for split, count in (per_split or {"train": 8, "validation": 2}).items():
        for name in synthetic_class_names(num_classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image = Image.fromarray(synthetic_image(name, image_size, rng))
                image.save(root / split / name / f"{index:02d}.png")
    return root


def announce_stand_in(splits: DatasetSplits, key: str, missing: str) -> DatasetSplits:
    """Mark ``splits`` as generated pictures standing in for ``key`` and print a warning no one can miss
    (the smoke profile without the real data; lessons 04 to 08)."""
    message = (
        f"WARNING: '{key}' is not available ({missing}) -> using GENERATED SYNTHETIC IMAGES instead. "
        "Results below are NOT about real photos."
    )
    border = "!" * 78
    print(f"{border}\n{message}\n{border}", flush=True)
    splits.notes.insert(0, message)
    splits.source = f"synthetic (stand-in for {key})"
    splits.synthetic_fallback = True
    return splits
