"""Domain shift: make one, measure it, adapt to it (lesson 07).

A model trained on one *source* domain (satellite tiles, daylight photos) is often used on a *target* domain
that looks different (aerial photographs of the same land, the same flowers at night). Lesson 07 measures a
real shift (:func:`tlcourse.data.load_sat2aerial`) and a simulated one made here:

- :func:`apply_shift` corrupts a batch of images (float32, ``[0, 255]``) with one of :data:`SHIFTS` at a
  ``severity`` (0 is the identity, 1 is strong, larger is harsher still), deterministically for a ``seed``;
- :func:`shifted_splits` applies a shift to every image of a :class:`~tlcourse.data.DatasetSplits`;
- :func:`accuracy_drop` measures source minus target accuracy on two different sets of pictures, with an
  unpaired bootstrap interval;
- :func:`few_shot` picks ``per_class`` labelled target images for adaptation and keeps the rest apart;
- :func:`reestimate_batchnorm` adapts a frozen base without labels: its BatchNorm statistics are measured
  again on target pictures (AdaBN).

The corruptions are plain vectorised NumPy (SciPy for the blur, Pillow for JPEG re-encoding).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcourse.backbones import spec_of
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import tf_module as _tf
from tlcourse.errors import TLCourseError
from tlcourse.evaluate import predicted_classes
from tlcourse.models import preprocessing_layer

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tlcourse.data import DatasetSplits

SHIFTS: tuple[str, ...] = ("night", "blur", "noise", "jpeg", "fog", "contrast")
"""The corruptions :func:`apply_shift` knows, by name."""

CHUNK = 64
"""Images per noise draw: random numbers are drawn per chunk of this many images, seeded by ``seed`` and the
chunk's position, which bounds the memory the noise arrays take."""

_VERSION = "tlcourse-shift-1"


# ------------------------------------------------------------------------------------------ corruptions


def _check_severity(severity: float) -> float:
    value = float(severity)
    if not np.isfinite(value) or value < 0:
        raise TLCourseError(f"severity must be a number >= 0 (0 leaves images unchanged), got {severity!r}.")
    return value


def _night(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Darker (gain and gamma), bluer, and noisier the less light there is."""
    f = x / 255.0
    gain = np.exp(-0.8 * s)  # overall light level: 1 at s=0, 0.45 at s=1, 0.20 at s=2
    dark = gain * f ** (1.0 + 0.5 * s)  # gamma > 1 crushes the shadows first
    t = min(s, 1.0)
    cast = np.array([1.0 - 0.25 * t, 1.0 - 0.05 * t, 1.0 + 0.12 * t], np.float32)  # cool, bluish
    dark = dark * cast
    relative = 0.5 * (1.0 - gain)  # shot noise: relatively larger as the light falls
    read = 0.02 * t  # read noise of the sensor
    noisy = dark * (1.0 + relative * rng.standard_normal(x.shape, dtype=np.float32))
    noisy = noisy + read * rng.standard_normal(x.shape, dtype=np.float32)
    return noisy * 255.0


def _blur(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma = severity x (half a pixel + 2% of the image side): defocus."""
    from scipy import ndimage

    sigma = s * (0.5 + 0.02 * x.shape[1])
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect", truncate=3.0)


def _noise(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with a standard deviation of 40 x severity grey levels."""
    return x + 40.0 * s * rng.standard_normal(x.shape, dtype=np.float32)


def jpeg_quality(severity: float) -> int:
    """The JPEG quality used for a severity: 95 at 0 (unused: 0 is the identity), 10 at 1, down to 1 (lesson 07)."""
    s = _check_severity(severity)
    if s <= 1.0:
        return int(round(95 - 85 * s))
    return max(1, int(round(10 - 9 * (s - 1.0))))


def _jpeg(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Re-encode each image with Pillow at a low JPEG quality (blocking and colour bleeding)."""
    from PIL import Image

    quality = jpeg_quality(s)
    out = np.empty_like(x)
    for i, image in enumerate(np.clip(np.rint(x), 0, 255).astype(np.uint8)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    return out


def _fog(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Blend towards a light, slightly uneven grey haze."""
    from scipy import ndimage

    amount = 0.85 * (1.0 - np.exp(-1.5 * s))  # 0 at s=0, 0.66 at s=1, saturating below 0.85
    n, h, w, _ = x.shape
    coarse = rng.standard_normal((n, max(2, h // 16), max(2, w // 16), 1), dtype=np.float32)
    zoom = (1, h / coarse.shape[1], w / coarse.shape[2], 1)
    haze = 200.0 + 20.0 * ndimage.zoom(coarse, zoom, order=1)[:, :h, :w, :]
    return (1.0 - amount) * x + amount * haze


def _contrast(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Pull every pixel towards its image's mean colour (a washed-out, low-contrast picture)."""
    keep = np.exp(-1.5 * s)  # share of the contrast kept: 1 at s=0, 0.22 at s=1
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return mean + keep * (x - mean)


_FUNCTIONS = {
    "night": _night,
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
    "fog": _fog,
    "contrast": _contrast,
}


def apply_shift(images: Any, kind: str, severity: float = 1.0, *, seed: int = 0) -> np.ndarray:
    """Corrupt ``images`` (float32-like in ``[0, 255]``, ``[N, H, W, 3]`` or one ``[H, W, 3]``) (lesson 07).

    ``kind`` is one of :data:`SHIFTS`: ``"night"`` (darker with a gamma curve, a cool colour cast, and sensor
    noise that grows as the light falls), ``"blur"``, ``"noise"``, ``"jpeg"`` (Pillow re-encoding at a low
    quality), ``"fog"`` or ``"contrast"``. ``severity`` 0 returns the images unchanged; 1 is a strong shift;
    larger values are harsher. The result is float32 of the same shape, clipped to ``[0, 255]``, and the same
    ``seed`` always gives the same result (random numbers are drawn per chunk of :data:`CHUNK` images).
    """
    if kind not in _FUNCTIONS:
        raise TLCourseError(f"Unknown shift {kind!r}: choose one of {', '.join(SHIFTS)}.")
    s = _check_severity(severity)
    array = np.asarray(images, dtype=np.float32)
    single = array.ndim == 3
    if single:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise TLCourseError(
            f"apply_shift needs RGB images shaped [N, H, W, 3] or [H, W, 3], got shape {tuple(np.shape(images))}."
        )
    if s == 0.0:
        out = np.clip(array, 0.0, 255.0).astype(np.float32, copy=True)
    else:
        out = np.empty_like(array)
        for start, part in _shifted_chunks(array, kind, s, int(seed)):
            out[start : start + len(part)] = part
    return out[0] if single else out


def _shifted_chunks(array: np.ndarray, kind: str, s: float, seed: int) -> Any:
    """Yield ``(start, shifted chunk clipped to [0, 255])`` for every :data:`CHUNK` images of ``array``."""
    function = _FUNCTIONS[kind]
    for chunk, start in enumerate(range(0, len(array), CHUNK)):
        rng = np.random.default_rng([seed, chunk])
        part = np.asarray(array[start : start + CHUNK], dtype=np.float32)
        yield start, np.clip(function(part, s, rng), 0.0, 255.0).astype(np.float32)


def _shift_to_uint8(images: np.ndarray, kind: str, s: float, seed: int) -> np.ndarray:
    """:func:`apply_shift` for a large uint8 batch, rounded to uint8 chunk by chunk (bounded memory)."""
    if s == 0.0:
        return images.copy()
    out = np.empty(images.shape, np.uint8)
    for start, part in _shifted_chunks(images, kind, s, seed):
        out[start : start + len(part)] = np.rint(part).astype(np.uint8)
    return out


def mean_brightness(images: Any) -> float:
    """Mean pixel value of a batch on the 0..255 scale (lesson 07)."""
    return float(np.asarray(images, dtype=np.float64).mean())


# ---------------------------------------------------------------------------------------- datasets


def split_arrays(splits: DatasetSplits, part: str = "validation") -> tuple[np.ndarray, np.ndarray]:
    """All images and labels of one split as arrays: ``(uint8 [N, S, S, 3], int32 [N])`` (lesson 07).

    ``validation`` and ``test`` keep the pipeline's order. ``train`` pipelines reshuffle every epoch, so its images are put
    in a canonical order (by label, then by content) that is the same whichever epoch was read.
    Pixel values are rounded to whole grey levels, as in a saved photo.
    """
    if part not in ("train", "validation", "test"):
        raise ValueError(f"part must be 'train', 'validation' or 'test', got {part!r}")
    if getattr(splits, part) is None:
        raise TLCourseError(f"These splits have no {part} split.")
    images, labels = [], []
    for batch_images, batch_labels in getattr(splits, part):
        images.append(np.clip(np.rint(np.asarray(batch_images)), 0, 255).astype(np.uint8))
        labels.append(np.asarray(batch_labels).astype(np.int32))
    if not images:
        raise TLCourseError(f"The {part} split is empty: there are no images to shift.")
    x, y = np.concatenate(images), np.concatenate(labels)
    if part == "train":
        digests = [hashlib.sha1(image.tobytes()).hexdigest() for image in x]
        order = sorted(range(len(y)), key=lambda i: (int(y[i]), digests[i]))
        x, y = x[order], y[order]
    return x, y


def _pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool, seed: int) -> Any:
    tf = _tf()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if shuffle and len(labels) > 1:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(max(1, int(batch_size))).map(
        lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _counts(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def _fingerprint(payload: object) -> str:
    return hashlib.sha256(json.dumps([_VERSION, payload], sort_keys=True, default=str).encode()).hexdigest()


def splits_from_arrays(
    base: DatasetSplits,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    fingerprint: str,
    source: str,
    note: str,
    seed: int = 0,
) -> DatasetSplits:
    """A new :class:`~tlcourse.data.DatasetSplits` over in-memory arrays, keeping ``base``'s class names,
    image size and batch size (lesson 07)."""
    from tlcourse.data import DatasetSplits

    batch = base.batch_size or 32
    (tx, ty), (vx, vy) = train, validation

    def to_uint8(a: np.ndarray) -> np.ndarray:
        return a if a.dtype == np.uint8 else np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return DatasetSplits(
        train=_pipeline(to_uint8(tx), ty, batch, shuffle=True, seed=seed),
        validation=_pipeline(to_uint8(vx), vy, batch, shuffle=False, seed=seed),
        class_names=list(base.class_names),
        source=source,
        train_count=int(len(ty)),
        validation_count=int(len(vy)),
        fingerprint=fingerprint,
        audit=base.audit,
        image_size=int(base.image_size or tx.shape[1]),
        batch_size=int(batch),
        train_class_counts=_counts(ty, base.class_names),
        validation_class_counts=_counts(vy, base.class_names),
        validation_files=list(base.validation_files),
        cached=True,
        notes=[*base.notes, note],
        synthetic_fallback=base.synthetic_fallback,
    )


def shifted_splits(
    splits: DatasetSplits, kind: str, severity: float = 1.0, *, seed: int = 0
) -> DatasetSplits:
    """The same training and validation images with :func:`apply_shift` applied to every one (lesson 07).

    Class names and counts are kept; the validation order is kept, so a source and a target prediction
    can be compared image by image. The ``fingerprint`` is new and includes the shift, its severity and
    seed, so cached features of the shifted images never collide with the originals'. The validation images
    are shifted with ``seed`` (so ``apply_shift(split_arrays(splits)[0], kind, severity, seed=seed)`` gives the
    same pixels, before rounding) and the training images with ``seed + 1``.
    """
    s = _check_severity(severity)
    if kind not in _FUNCTIONS:
        raise TLCourseError(f"Unknown shift {kind!r}: choose one of {', '.join(SHIFTS)}.")
    tx, ty = split_arrays(splits, "train")
    vx, vy = split_arrays(splits, "validation")
    shifted_train = (_shift_to_uint8(tx, kind, s, seed + 1), ty)
    shifted_val = (_shift_to_uint8(vx, kind, s, seed), vy)
    fingerprint = _fingerprint({"data": splits.fingerprint, "shift": kind, "severity": s, "seed": int(seed)})
    return splits_from_arrays(
        splits,
        shifted_train,
        shifted_val,
        fingerprint=fingerprint,
        source=f"{splits.source} + {kind}@{s:g}",
        note=f"shifted: {kind} at severity {s:g} (seed {seed})",
        seed=seed,
    )


def few_shot_indices(labels: Any, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` examples of every class, a seeded stratified sample (lesson 07)."""
    y = np.asarray(labels).astype(np.int64)
    if per_class < 1:
        raise TLCourseError(f"per_class must be at least 1, got {per_class}.")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if len(members) < per_class:
            raise TLCourseError(
                f"Class {int(label)} has only {len(members)} training images, fewer than per_class={per_class}: "
                "ask for fewer labelled images per class."
            )
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def few_shot(splits: DatasetSplits, per_class: int, *, seed: int = 0) -> tuple[DatasetSplits, DatasetSplits]:
    """Split a (target) dataset for few-shot adaptation: ``(few, rest)`` (lesson 07).

    ``few.train`` holds ``per_class`` labelled training images of every class (a seeded, stratified sample);
    ``rest.train`` holds the other training images. Both keep ``splits.validation`` as their validation set:
    it was never sampled, so it is held out from the few labelled images and is where an adapted model is
    measured. Each part gets its own fingerprint.
    """
    tx, ty = split_arrays(splits, "train")
    vx, vy = split_arrays(splits, "validation")
    chosen = few_shot_indices(ty, per_class, seed=seed)
    others = np.setdiff1d(np.arange(len(ty)), chosen)
    parts = []
    for name, index in (("few", chosen), ("rest", others)):
        fingerprint = _fingerprint(
            {"data": splits.fingerprint, "part": name, "per_class": per_class, "seed": seed}
        )
        parts.append(
            splits_from_arrays(
                splits,
                (tx[index], ty[index]),
                (vx, vy),
                fingerprint=fingerprint,
                source=f"{splits.source} [{name}: {per_class}/class]",
                note=f"{name}: {len(index)} training images ({per_class} per class chosen, seed {seed})",
                seed=seed,
            )
        )
    return parts[0], parts[1]


def accuracy_drop(
    source_true: Any,
    source_pred: Any,
    target_true: Any,
    target_pred: Any,
    *,
    n: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Source accuracy minus target accuracy, on two DIFFERENT sets of pictures: ``(drop, low, high)`` (lesson 07).

    When the source and the target test sets hold different pictures (satellite tiles and aerial photographs of
    other places), nothing pairs them: each set is resampled on its own, ``n`` times, and the interval is the
    ``level`` percentile interval of the differences. An interval above 0 is a drop that resampling either set
    cannot explain. (For the same pictures before and after a shift, pair them:
    :func:`tlcourse.evaluate.paired_bootstrap`.) Predictions are class indices or score rows.
    """
    rights = []
    for truth, predicted in ((source_true, source_pred), (target_true, target_pred)):
        y, p = np.asarray(truth).astype(np.int64), predicted_classes(predicted)
        if len(y) != len(p) or len(y) == 0:
            raise TLCourseError(f"Each set needs one prediction per label, got {len(y)} labels and {len(p)}.")
        rights.append((y == p).astype(np.float64))
    rng = np.random.default_rng(seed)
    samples = [right[rng.integers(0, len(right), size=(int(n), len(right)))].mean(axis=1) for right in rights]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples[0] - samples[1], [tail, 100.0 - tail])
    return float(rights[0].mean() - rights[1].mean()), float(low), float(high)


def reestimate_batchnorm(backbone: Any, images: Any, *, preprocess: Any = None, batch_size: int = 128) -> int:
    """AdaBN: measure every BatchNorm layer's statistics again on ``images`` (lesson 07; Li et al. 2016).

    A BatchNorm layer normalises its inputs with a mean and variance measured on the source (ImageNet); on a
    target domain its inputs may have other statistics. This runs ``backbone`` over the target pictures (raw
    ``[0, 255]``, no labels needed) in training mode, ``batch_size`` at a time, and sets each layer's moving mean
    and variance to the statistics of all ``images`` (the batches' moments combined exactly); no weight is
    trained. The layers' ``trainable`` flags and momentum are restored afterwards, so a frozen base stays frozen
    and keeps the new statistics in inference mode. ``preprocess`` maps raw pixels to the backbone's input
    (default: the backbone's own, from its record). Returns the number of BatchNorm layers re-estimated.
    """
    keras, tf = _keras(), _tf()
    layers = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        raise TLCourseError(
            f"{backbone.name!r} has no BatchNorm layer: there are no statistics to re-estimate."
        )
    if preprocess is None:
        spec = spec_of(backbone)
        if spec is None:
            raise TLCourseError(
                f"Cannot tell how {backbone.name!r} preprocesses pixels: pass preprocess= (a function or layer "
                "from raw [0, 255] pixels to the backbone's input)."
            )
        preprocess = preprocessing_layer(spec.name)
    pixels = np.asarray(images, dtype=np.float32)
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    for layer in layers:
        layer.trainable, layer.momentum = True, 0.0  # Keras 3: a frozen BatchNorm ignores training=True
    # a graph frees each activation as it goes; one signature for any batch size traces it once, not per size
    signature = [tf.TensorSpec([None, *pixels.shape[1:]], tf.float32)]
    forward = tf.function(lambda x: backbone(preprocess(x), training=True), input_signature=signature)
    sums = [np.zeros((2, *layer.moving_mean.shape), np.float64) for layer in layers]
    try:
        for start in range(0, len(pixels), int(batch_size)):
            chunk = pixels[start : start + int(batch_size)]
            forward(tf.constant(chunk))  # momentum 0: each moving statistic becomes this batch's
            for total, layer in zip(sums, layers, strict=True):
                mean = np.asarray(layer.moving_mean, np.float64)
                total += len(chunk) * np.stack(
                    [mean, np.asarray(layer.moving_variance, np.float64) + mean**2]
                )
        for total, layer in zip(sums, layers, strict=True):
            mean = total[0] / len(pixels)
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(np.maximum(total[1] / len(pixels) - mean**2, 0.0).astype(np.float32))
    finally:
        for layer, (momentum, trainable) in zip(layers, saved, strict=True):
            layer.momentum, layer.trainable = momentum, trainable
    return len(layers)


def show_shifts(
    images: Any,
    kinds: Sequence[str] = SHIFTS,
    severities: Sequence[float] = (0.0, 0.5, 1.0),
    *,
    seed: int = 0,
) -> Any:
    """A grid of figures: one row per image and shift, one column per severity (lesson 07)."""
    import matplotlib.pyplot as plt

    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    rows = [(i, kind) for i in range(len(batch)) for kind in kinds]
    fig, axes = plt.subplots(
        len(rows), len(severities), figsize=(2.0 * len(severities), 2.0 * len(rows)), squeeze=False
    )
    for r, (i, kind) in enumerate(rows):
        for c, severity in enumerate(severities):
            shown = apply_shift(batch[i], kind, severity, seed=seed)
            ax = axes[r][c]
            ax.imshow(shown.astype(np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{kind} {severity:g}", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


__all__ = [
    "CHUNK",
    "SHIFTS",
    "accuracy_drop",
    "apply_shift",
    "few_shot",
    "few_shot_indices",
    "jpeg_quality",
    "mean_brightness",
    "reestimate_batchnorm",
    "shifted_splits",
    "show_shifts",
    "split_arrays",
    "splits_from_arrays",
]
