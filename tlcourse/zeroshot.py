"""ImageNet's own 1000-class classifier: top-5 on photos and zero-shot task accuracy (lesson 01).

:mod:`tlcourse.imagenet` maps task classes onto ImageNet outputs through the WordNet hierarchy with NumPy
only. This module adds the network that produces those outputs and the few steps around it:

- :func:`load_imagenet_classifier` builds MobileNetV2 *with* its 1000-class top, taking raw ``[0, 255]``
  pixels, and loads its ImageNet weights from the mirror, the Keras cache or a download
  (:func:`tlcourse.assets.mobilenet_v2_weights` with ``include_top=True``). Offline with nothing cached it
  raises :class:`~tlcourse.errors.AssetMissingError`; ``weights="random"`` builds the same network untrained
  so a smoke run can still exercise every step.
- :func:`fit_square` crops and resizes any photo the way ImageNet models are evaluated.
- :func:`sample_photos` gathers a few real photos: the mirror's flowers and scikit-image's samples when
  those are installed.
- :func:`evaluate_zero_shot` scores a task from ImageNet probabilities and a mapping, and
  :func:`imagenet_names_by_class` shows what ImageNet calls each task class's photos.

TensorFlow is imported only inside :func:`load_imagenet_classifier` and :meth:`ImageNetClassifier.predict`.
"""

from __future__ import annotations

import importlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.errors import TLCourseError

SKIMAGE_SAMPLES: dict[str, str] = {
    "chelsea": "a tabby cat (scikit-image sample)",
    "coffee": "a cup of coffee (scikit-image sample)",
    "astronaut": "astronaut Eileen Collins (scikit-image sample)",
    "rocket": "a rocket on its launch pad (scikit-image sample)",
}
"""scikit-image sample photos used by lesson 01, with a short caption each."""

_FLOWERS = "flower_photos_small"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SamplePhoto:
    """One photo to classify (lesson 01): a short name, the ``uint8`` pixels, and where it came from."""

    name: str
    image: np.ndarray
    source: str
    caption: str = ""


@dataclass
class ImageNetClassifier:
    """MobileNetV2 with its ImageNet top: raw ``[0, 255]`` pixels in, 1000 probabilities out (lesson 01)."""

    model: Any
    alpha: float
    image_size: int
    source: str
    """``"mirror"``, ``"cache"`` or ``"download"`` (real ImageNet weights), ``"file"`` or ``"random"``."""
    path: Path | None = None
    notice: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def pretrained(self) -> bool:
        """False when the weights are random (predictions then mean nothing) (lesson 01)."""
        return self.source != "random"

    def describe(self) -> str:
        """One line naming the network and where its weights came from (lesson 01)."""
        what = f"MobileNetV2 alpha {self.alpha} at {self.image_size}px with its 1000-class ImageNet top"
        if not self.pretrained:
            return f"{what}: RANDOM weights (stand-in; its predictions are meaningless)"
        where = f" ({self.path})" if self.path else ""
        return f"{what}: ImageNet weights from the {self.source}{where}"

    def predict(self, images: Any, *, batch_size: int = 32) -> np.ndarray:
        """ImageNet probabilities ``[N, 1000]`` for photos of any size (lesson 01).

        ``images``: one ``[H, W, 3]`` photo, a list of photos (sizes may differ), or an array ``[N, H, W, 3]``.
        Each is centre-cropped and resized to the classifier's input with :func:`fit_square`.
        """
        batch = _as_batch(images, self.image_size)
        if len(batch) == 0:
            return np.zeros((0, 1000), np.float32)
        outputs = [
            np.asarray(self.model.predict_on_batch(batch[start : start + batch_size]))
            for start in range(0, len(batch), batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32)

    def top(self, images: Any, k: int = 5, *, simple: bool = True) -> list[list[tuple[str, str, float]]]:
        """The ``k`` most likely ImageNet classes of each photo as ``(wnid, label, probability)`` (lesson 01)."""
        from tlcourse import imagenet

        return imagenet.decode_predictions(self.predict(images), top=k, simple=simple)


def fit_square(image: Any, size: int) -> np.ndarray:
    """Centre-crop the largest square from a photo and resize it to ``size x size`` (lesson 01).

    This is how ImageNet classifiers are usually evaluated: the aspect ratio is kept and the borders are cut,
    rather than squashing the photo. Grayscale and RGBA inputs become RGB. Returns ``uint8 [size, size, 3]``.
    """
    from PIL import Image

    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise TLCourseError(
            f"fit_square needs one image of shape [height, width, 3], got shape {array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if values.size and values.max() <= 1.0:
            values = values * 255.0  # float images in [0, 1], as scikit-image often returns them
        array = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(np.ascontiguousarray(array[top : top + side, left : left + side]))
    if side != size:
        square = square.resize((int(size), int(size)), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(square, dtype=np.uint8)


def _as_batch(images: Any, size: int) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    elif hasattr(images, "numpy") and callable(images.numpy):  # a TensorFlow tensor
        images = images.numpy()
        if images.ndim == 3:
            images = [images]
    items = list(images)
    if not items:
        return np.zeros((0, size, size, 3), np.float32)
    return np.stack([fit_square(item, size) for item in items]).astype(np.float32)


def _keras() -> Any:
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    import keras

    return keras


def load_imagenet_classifier(
    alpha: float = 1.0,
    image_size: int = 224,
    *,
    weights: str | os.PathLike[str] = "imagenet",
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
    seed: int = 42,
) -> ImageNetClassifier:
    """MobileNetV2 with its 1000-class ImageNet classifier, ready for raw ``[0, 255]`` pixels (lesson 01).

    ``weights``:

    - ``"imagenet"``: the ``include_top`` weights found by :func:`tlcourse.assets.mobilenet_v2_weights`
      (mirror, Keras cache, then a download). Raises :class:`~tlcourse.errors.AssetMissingError` when offline
      with nothing cached; the message names the file and the two fixes.
    - ``"random"``: the same network, untrained (seeded). Only for exercising the code offline.
    - a path to a weights file for this network (a Keras ``.h5`` or ``.weights.h5``).

    The model rescales pixels to [-1, 1] itself, so feed it photos as they are.
    """
    from tlcourse import assets, models

    alpha = float(alpha)
    size = int(image_size)
    if size < 32:
        raise TLCourseError(f"MobileNetV2 needs images of at least 32 px; got image_size={image_size}.")
    resolved = None
    choice = os.fspath(weights)
    if choice == "imagenet":
        # Resolve first, so a missing file raises before any network is built.
        resolved = assets.mobilenet_v2_weights(
            alpha, size, include_top=True, mirror=mirror, download=download
        )
        path: Path | None = Path(resolved.path)
        source = resolved.origin
    elif choice == "random":
        path, source = None, "random"
    else:
        path, source = Path(choice), "file"
        if not path.is_file():
            raise TLCourseError(
                f"Weights file {path} does not exist. Pass weights='imagenet', 'random', or the path of a "
                "MobileNetV2 include_top weights file."
            )
    keras = _keras()
    keras.utils.set_random_seed(int(seed))
    net = keras.applications.MobileNetV2(
        input_shape=(size, size, 3),
        alpha=alpha,
        include_top=True,
        weights=None,
        classifier_activation="softmax",
    )
    if path is not None:
        try:
            net.load_weights(str(path))
        except Exception as error:  # Keras raises ValueError/KeyError/OSError for mismatched files
            raise TLCourseError(
                f"Could not load {path.name} into MobileNetV2 alpha {alpha} with its ImageNet top: "
                f"{str(error).splitlines()[0][:200]}. Check that the file is an include_top file of the same alpha."
            ) from None
    inputs = keras.Input((size, size, 3), name="pixels")
    x = models.preprocessing_layer("mobilenet_v2")(inputs)
    outputs = net(x, training=False)
    model = keras.Model(inputs, outputs, name=f"mobilenet_v2_{alpha}_{size}_imagenet")
    return ImageNetClassifier(
        model=model,
        alpha=alpha,
        image_size=size,
        source=source,
        path=path,
        notice=resolved.notice if resolved is not None else None,
    )


def sample_photos(
    *,
    mirror: str | os.PathLike[str] | None = None,
    per_class: int = 1,
    skimage_names: Iterable[str] = tuple(SKIMAGE_SAMPLES),
) -> list[SamplePhoto]:
    """A few real photos to classify (lesson 01).

    First ``per_class`` validation photos of each flower class from the mirror's ``flower_photos_small`` (when
    a mirror is configured), then scikit-image's sample photos (when scikit-image is installed; it is a
    development extra, not a student requirement). Either source may be missing; the list can be empty.
    """
    from tlcourse import assets, imageio

    photos: list[SamplePhoto] = []
    folder = assets.dataset_dir(_FLOWERS, mirror=mirror)
    if folder is not None and per_class > 0:
        root = folder / "validation" if (folder / "validation").is_dir() else folder
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            for path in files[:per_class]:
                try:
                    image = imageio.load_image(path)
                except imageio.ImageDecodeError:
                    continue
                photos.append(
                    SamplePhoto(
                        name=f"{class_dir.name}/{path.name}",
                        image=image,
                        source=f"mirror:{_FLOWERS}",
                        caption=f"a photo from the '{class_dir.name}' folder",
                    )
                )
    names = list(skimage_names)
    if names:
        try:
            data = importlib.import_module("skimage.data")
        except ImportError:
            data = None
        for name in names if data is not None else []:
            loader = getattr(data, name, None)
            if loader is None:
                continue
            try:
                image = np.asarray(loader())
            except Exception:  # noqa: BLE001 - a sample that needs a download offline: leave it out
                continue
            photos.append(
                SamplePhoto(
                    name=name,
                    image=np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3],
                    source="scikit-image",
                    caption=SKIMAGE_SAMPLES.get(name, "scikit-image sample"),
                )
            )
    return photos


def _ordered_mapping(
    mapping: Mapping[str, Sequence[int]], class_names: Sequence[str]
) -> dict[str, list[int]]:
    unknown = [name for name in mapping if name not in class_names]
    if unknown:
        raise TLCourseError(
            f"The mapping names {unknown}, which are not task classes ({', '.join(class_names)}). "
            "Key the mapping by the dataset's class names."
        )
    return {name: [int(i) for i in mapping.get(name, [])] for name in class_names}


def evaluate_zero_shot(
    y_true: Any, imagenet_probs: Any, mapping: Mapping[str, Sequence[int]], class_names: Sequence[str]
) -> dict[str, Any]:
    """Score a task with no training: ImageNet probabilities summed per task class (lesson 01).

    ``mapping`` comes from :func:`tlcourse.imagenet.zero_shot_mapping` (task class -> ImageNet indices); a
    task class missing from it, or mapped to nothing, can never be predicted. Returns ``accuracy``,
    ``per_class`` accuracy, ``unmapped`` classes, ``reachable`` (the share of photos whose class has at least
    one ImageNet class: the best accuracy this mapping allows), ``y_pred`` and ``task_probs`` ``[N, K]``.
    """
    from tlcourse import imagenet

    labels = np.asarray(y_true).reshape(-1).astype(int)
    probs = np.asarray(imagenet_probs)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise TLCourseError(
            f"evaluate_zero_shot needs one row of ImageNet probabilities per label: got {len(labels)} labels "
            f"and probabilities of shape {probs.shape}."
        )
    if len(labels) == 0:
        raise TLCourseError("evaluate_zero_shot got no photos to score.")
    names = list(class_names)
    ordered = _ordered_mapping(mapping, names)
    task_probs = imagenet.zero_shot_predict(probs, ordered)
    y_pred = task_probs.argmax(axis=1)
    correct = y_pred == labels
    unmapped = [name for name, indices in ordered.items() if not indices]
    mapped_rows = np.isin(labels, [i for i, name in enumerate(names) if name not in unmapped])
    per_class = {
        name: float(correct[labels == i].mean()) if np.any(labels == i) else float("nan")
        for i, name in enumerate(names)
    }
    return {
        "accuracy": float(correct.mean()),
        "per_class": per_class,
        "unmapped": unmapped,
        "reachable": float(mapped_rows.mean()),
        "y_pred": y_pred,
        "task_probs": task_probs,
    }


def imagenet_names_by_class(
    y_true: Any, imagenet_probs: Any, class_names: Sequence[str], *, k: int = 3, simple: bool = True
) -> dict[str, list[tuple[str, int]]]:
    """For each task class, the ``k`` ImageNet labels most often ranked first on its photos (lesson 01).

    Shows what ImageNet "calls" a class it does not have (dandelions, tulips...), with how many photos got
    each label. Classes without photos get an empty list.
    """
    from tlcourse import imagenet

    labels = np.asarray(y_true).reshape(-1).astype(int)
    probs = np.asarray(imagenet_probs)
    if probs.ndim != 2 or probs.shape[1] != imagenet.NUM_CLASSES or len(probs) != len(labels):
        raise TLCourseError(
            f"imagenet_names_by_class needs ImageNet probabilities [N, 1000] for N labels; got {probs.shape} "
            f"for {len(labels)} labels."
        )
    names = imagenet.labels(simple=simple)
    top1 = probs.argmax(axis=1)
    result: dict[str, list[tuple[str, int]]] = {}
    for i, name in enumerate(class_names):
        counts = Counter(int(j) for j in top1[labels == i])
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]
        result[name] = [(names[j], n) for j, n in ranked]
    return result


__all__ = [
    "SKIMAGE_SAMPLES",
    "ImageNetClassifier",
    "SamplePhoto",
    "evaluate_zero_shot",
    "fit_square",
    "imagenet_names_by_class",
    "load_imagenet_classifier",
    "sample_photos",
]
