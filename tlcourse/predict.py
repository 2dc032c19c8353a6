"""Classify new photos with a trained classifier, exactly as training read them (lesson 08).

- :func:`model_image_size` is the (height, width) a classifier takes; new images are read at that size.
- :func:`classify_arrays` turns decoded images into the top classes with their probabilities.
- :func:`predict_images` reads image files (EXIF applied, RGB, [0, 255]) and classifies them; a file that is
  not a usable image gets its own error and the others are still classified.
- :func:`model_class_names` and :func:`read_class_names` find the class names a model was trained with.

Lesson 08 shows the plain version first (the model reloaded with ``keras.models.load_model``, then
``model.predict`` on test images and the logits turned into probabilities); ``tlcourse predict``, the upload
widget and lesson 08's last step use these functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.audit import printable
from tlcourse.errors import DataError, TLCourseError
from tlcourse.evaluate import to_probabilities
from tlcourse.export import CLASS_NAMES_FILE, METRICS_FILE


def read_class_names(model_path: str | os.PathLike, num_classes: int) -> list[str]:
    """Class names saved next to a model by ``tlcourse train`` (lesson 08).

    Reads ``class_names.json`` beside the model, else ``metrics.json``'s ``class_names``; falls back to
    ``class_0``, ``class_1``, ... when neither is there or the count does not match the model's outputs.
    """
    folder = Path(model_path).resolve().parent
    for name, key in ((CLASS_NAMES_FILE, None), (METRICS_FILE, "class_names")):
        path = folder / name
        if path.is_file():
            try:
                value = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            names = value.get(key) if key and isinstance(value, dict) else value
            if isinstance(names, list) and len(names) == num_classes:
                return [str(n) for n in names]
    return [f"class_{i}" for i in range(num_classes)]


def model_image_size(model: Any) -> tuple[int, int]:
    """(height, width) a classifier takes: new images are read at this size, as in training (lesson 08)."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    try:
        return int(shape[1]), int(shape[2])
    except (TypeError, ValueError, IndexError):
        raise TLCourseError(
            f"The model's input shape {shape} has no fixed image size; build it with a fixed (height, width)."
        ) from None


def classify_arrays(
    model: Any, images: Sequence[np.ndarray] | np.ndarray, class_names: Sequence[str], top: int = 3
) -> list[dict[str, Any]]:
    """Classify already-decoded images of the model's input size (lesson 08).

    ``images`` are ``(height, width, 3)`` arrays of raw [0, 255] pixels (as :func:`tlcourse.imageio.load_image`
    gives them); the classifier rescales them itself and outputs logits. Returns one dict per image:
    ``{"top": [(class, probability), ...], "probabilities": [...]}``, best class first.
    """
    if len(images) == 0:
        return []
    batch = np.stack([np.asarray(image, dtype="float32") for image in images])
    logits = np.asarray(model.predict(batch, verbose=0))
    probabilities = to_probabilities(logits, from_logits=True)  # one logit (binary) -> two columns
    if len(class_names) != probabilities.shape[1]:
        raise TLCourseError(
            f"The model predicts {probabilities.shape[1]} classes but {len(class_names)} class names were "
            "given; pass the class names the model was trained with (in training order)."
        )
    k = max(1, min(int(top), probabilities.shape[1]))
    results = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        results.append(
            {
                "top": [(str(class_names[i]), float(row[i])) for i in order],
                "probabilities": [float(p) for p in row],
            }
        )
    return results


def predict_images(
    model: Any, paths: list[str], class_names: list[str], top: int = 3
) -> list[dict[str, Any]]:
    """Classify image files with a trained classifier (lesson 08).

    Each image is read with :func:`tlcourse.imageio.load_image` at the model's input size (EXIF applied, RGB,
    [0, 255] float32), exactly as training read it. Returns one dict per path: ``{"path", "top": [(class,
    probability), ...], "probabilities": [...]}`` or ``{"path", "error": reason}`` for a file that cannot be
    used as an image (the others are still classified).
    """
    from tlcourse import imageio

    height, width = model_image_size(model)
    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    channels = shape[-1] if len(shape) == 4 else None
    if channels != 3:
        raise TLCourseError(
            f"The model takes images with {channels} channel(s) (input shape {tuple(shape)}); photos are read as "
            "RGB (3 channels), so give a classifier built on 3-channel inputs, as `tlcourse train` writes."
        )
    results: list[dict[str, Any]] = []
    good: list[tuple[int, np.ndarray]] = []
    for path in paths:
        try:
            try:
                found = Path(path).is_file()
            except OSError as error:
                raise DataError(
                    f"{path}: cannot be read ({error.strerror or type(error).__name__})."
                ) from None
            if not found:
                raise DataError(f"{path}: no such file.")
            image = imageio.load_image(path, (height, width))
            good.append((len(results), image.astype("float32")))
            results.append({"path": str(path)})
        except DataError as error:
            results.append({"path": str(path), "error": str(error)})
    if good:
        classified = classify_arrays(model, [image for _, image in good], class_names, top)
        for (slot, _), result in zip(good, classified, strict=True):
            results[slot].update(result)
    return results


def model_class_names(model_path: str | os.PathLike, num_classes: int) -> list[str]:
    """The class names of a model file: those stored inside it, checked against ``class_names.json`` (lesson 08).

    A model saved by :func:`tlcourse.export.save_keras` with ``class_names`` carries its names; when the
    ``class_names.json`` beside it names other classes (an interrupted or mixed-up export), the pair is
    refused with :class:`TLCourseError` rather than answering with the wrong names. Models without stored
    names fall back to :func:`read_class_names`.
    """
    from tlcourse import export

    stored = export.stored_class_names(model_path)
    if stored is None:
        return read_class_names(model_path, num_classes)
    path = Path(model_path)
    if len(stored) != num_classes:
        raise TLCourseError(
            f"{printable(path.name)} stores {len(stored)} class names but predicts {num_classes} classes: the file "
            "is inconsistent; export the model again."
        )
    beside = path.resolve().parent / CLASS_NAMES_FILE
    if beside.is_file():
        try:
            listed = json.loads(beside.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            listed = None
        if not isinstance(listed, list) or [str(n) for n in listed] != stored:
            raise TLCourseError(
                f"{printable(str(beside))} does not match the class names stored in {printable(path.name)} (an "
                "interrupted or mixed-up export?): run `tlcourse train` again, or delete class_names.json to "
                "use the model's own names."
            )
    return stored
