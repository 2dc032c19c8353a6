"""ImageNet's own 1000-class classifier: top-5 on photos and zero-shot task accuracy (lesson 01).

:mod:`tlcourse.imagenet` maps task classes onto ImageNet outputs through the WordNet hierarchy with NumPy
only. This module adds the network that produces those outputs and the few steps around it:

- :func:`load_imagenet_classifier` gives one ImageNet classifier (raw ``[0, 255]`` photos in, 1000
  probabilities in Keras class order out) with two engines: the **Keras** MobileNetV2 *with* its 1000-class
  top when its ImageNet weights are in the mirror or the Keras cache or can be downloaded, else the **TFLite**
  uint8-quantized MobileNetV2 1.0 @224 (:func:`tlcourse.assets.imagenet_tflite`: the mirror's
  ``imagenet_classifier/``, the cache, or a download). ``classifier.engine`` says which ran. Offline with
  neither, it raises :class:`~tlcourse.errors.AssetMissingError`; ``weights="random"`` builds the Keras network
  untrained.
- :class:`~tlcourse.tfliteimagenet.TFLiteImageNet` runs the TFLite file behind a Keras-like ``predict``, so
  lesson 01's Keras cells serve both engines.
- :func:`fit_square` crops and resizes any photo the way ImageNet models are evaluated.
- :func:`sample_photos` gathers real photos: the mirror's everyday samples (a cat, a parrot, an owl...) and
  flowers, and scikit-image's samples when that is installed.
- :func:`evaluate_zero_shot` scores a task from ImageNet probabilities and a mapping, and
  :func:`imagenet_names_by_class` shows what ImageNet calls each task class's photos.

TensorFlow is imported only when a classifier is built or run.
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

from tlcourse import assets, downloads, imageio, imagenet, models
from tlcourse.backend import keras_module as _keras
from tlcourse.errors import AssetMissingError, TLCourseError
from tlcourse.paths import display_path
from tlcourse.tfliteimagenet import NUM_CLASSES, TFLITE_IMAGE_SIZE, TFLiteImageNet

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


ENGINES = ("auto", "keras", "tflite")
"""``engine=`` choices of :func:`load_imagenet_classifier`: ``"auto"`` takes Keras when its weights are there."""


@dataclass
class ImageNetClassifier:
    """An ImageNet classifier: raw ``[0, 255]`` photos in, 1000 probabilities in Keras order out (lesson 01).

    ``engine`` is ``"keras"`` (``keras.applications.MobileNetV2`` with its ImageNet top) or ``"tflite"``
    (:class:`TFLiteImageNet`, Google's uint8-quantized MobileNetV2 1.0 @224).
    """

    model: Any
    alpha: float
    image_size: int
    source: str
    """``"mirror"``, ``"cache"`` or ``"download"`` (real ImageNet weights), ``"file"`` or ``"random"``."""
    path: Path | None = None
    notice: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    engine: str = "keras"

    @property
    def pretrained(self) -> bool:
        """False when the weights are random (predictions then mean nothing) (lesson 01)."""
        return self.source != "random"

    def describe(self) -> str:
        """One line naming the engine, the network and where its weights came from (lesson 01)."""
        if self.engine == "tflite":
            what = (
                "TFLite engine: MobileNetV2 1.0 at 224px, uint8-quantized, with its 1000-class ImageNet top"
            )
        else:
            what = (
                f"Keras engine: MobileNetV2 alpha {self.alpha} at {self.image_size}px with its 1000-class "
                "ImageNet top"
            )
        if not self.pretrained:
            return f"{what}: RANDOM weights (stand-in; its predictions are meaningless)"
        where = f" ({display_path(self.path)})" if self.path else ""
        return f"{what}: ImageNet weights from the {self.source}{where}"

    def predict(self, images: Any, *, batch_size: int = 32) -> np.ndarray:
        """ImageNet probabilities ``[N, 1000]`` for photos of any size (lesson 01).

        ``images``: one ``[H, W, 3]`` photo, a list of photos (sizes may differ), or an array ``[N, H, W, 3]``.
        Each is centre-cropped and resized to the classifier's input with :func:`fit_square`.
        """
        batch = _as_batch(images, self.image_size)
        if len(batch) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        outputs = [
            np.asarray(self.model.predict_on_batch(batch[start : start + batch_size]))
            for start in range(0, len(batch), batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32)

    def top(self, images: Any, k: int = 5, *, simple: bool = True) -> list[list[tuple[str, str, float]]]:
        """The ``k`` most likely ImageNet classes of each photo as ``(wnid, label, probability)`` (lesson 01)."""
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


def load_tflite_classifier(
    *, mirror: str | os.PathLike[str] | None = None, download: bool = True, pixels: bool = True
) -> TFLiteImageNet:
    """The TFLite ImageNet classifier as a :class:`TFLiteImageNet` (lesson 01).

    Found by :func:`tlcourse.assets.imagenet_tflite` (mirror, Keras cache, then a download). ``pixels=True``
    takes raw ``[0, 255]`` pixels; ``pixels=False`` takes ``mobilenet_v2.preprocess_input``'s output, as the
    Keras classifier does.
    """
    resolved = assets.imagenet_tflite(mirror=mirror, download=download)
    return TFLiteImageNet(resolved.path, pixels=pixels)


def keras_classifier_weights(
    alpha: float = 1.0,
    image_size: int = 224,
    *,
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Any:
    """The Keras MobileNetV2 include_top ImageNet weights, or None when they are not available (lesson 01).

    A :class:`~tlcourse.assets.ResolvedFile` from the mirror or the Keras cache; else, when ``download`` is on
    and the machine is online, Keras' own download. None otherwise: offline, the TFLite engine stands in.
    """
    try:
        return assets.mobilenet_v2_weights(alpha, image_size, include_top=True, mirror=mirror, download=False)
    except AssetMissingError:
        pass
    if download and downloads.online():
        try:
            return assets.mobilenet_v2_weights(alpha, image_size, include_top=True, mirror=mirror)
        except AssetMissingError:
            return None
    return None


def load_imagenet_classifier(
    alpha: float = 1.0,
    image_size: int = 224,
    *,
    weights: str | os.PathLike[str] = "imagenet",
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
    seed: int = 42,
    engine: str = "auto",
    verbose: bool = True,
) -> ImageNetClassifier:
    """An ImageNet classifier for raw ``[0, 255]`` photos, 1000 probabilities in Keras order (lesson 01).

    Lesson 01 step 6 builds the same thing in plain Keras (``keras.applications.MobileNetV2(include_top=True,
    weights=...)``, ``preprocess_input``, ``predict``, ``decode_predictions``). ``engine``:

    - ``"auto"`` (default): the Keras engine when the include_top weights for (``alpha``, ``image_size``) are in
      the mirror or the Keras cache, or can be downloaded (online, ``download=True``); otherwise the **TFLite**
      engine (MobileNetV2 1.0 @224, whatever ``alpha`` and ``image_size`` say; ``notice`` says so).
    - ``"keras"``: only the Keras engine. ``"tflite"``: only the TFLite engine.

    ``weights`` (Keras engine): ``"imagenet"``; ``"random"``: the same network untrained (seeded), only for
    exercising code; or a path to an include_top weights file. Raises :class:`~tlcourse.errors.AssetMissingError`
    when no engine's file can be found or downloaded; the message names the files and the two fixes. With
    ``verbose`` (default) prints one line saying which engine runs and where its weights came from.
    """
    if engine not in ENGINES:
        raise TLCourseError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}.")
    choice = os.fspath(weights)
    if engine == "tflite" or (engine == "auto" and choice == "imagenet"):
        resolved = (
            None
            if engine == "tflite"
            else keras_classifier_weights(alpha, image_size, mirror=mirror, download=download)
        )
        if resolved is None:
            classifier = _load_tflite(
                alpha, image_size, mirror=mirror, download=download, tflite_only=engine == "tflite"
            )
        else:
            classifier = _load_keras(alpha, image_size, resolved.path, resolved.origin, resolved.notice, seed)
    else:
        classifier = _load_keras_choice(
            alpha, image_size, choice, mirror=mirror, download=download, seed=seed
        )
    if verbose:
        print(classifier.describe())
    return classifier


def _load_tflite(
    alpha: float, image_size: int, *, mirror: Any, download: bool, tflite_only: bool
) -> ImageNetClassifier:
    try:
        resolved = assets.imagenet_tflite(mirror=mirror, download=download)
    except AssetMissingError as error:
        if tflite_only:
            raise
        keras_file = assets.mobilenet_v2_file_name(float(alpha), int(image_size), include_top=True)
        how = (
            "downloading was turned off" if not download else "this machine is offline or the download failed"
        )
        raise AssetMissingError(
            f"No ImageNet classifier here: neither the Keras weights {keras_file} nor the TFLite classifier "
            f"{assets.IMAGENET_TFLITE} is in the mirror or the Keras cache, and {how}. {assets._fix_hint()}"
        ) from error
    notice = None
    if not tflite_only and (float(alpha), int(image_size)) != (1.0, TFLITE_IMAGE_SIZE):
        notice = (
            f"Note: no Keras MobileNetV2 alpha {float(alpha)} {int(image_size)}px classifier here; the TFLite "
            f"MobileNetV2 1.0 {TFLITE_IMAGE_SIZE}px classifier stands in."
        )
    return ImageNetClassifier(
        model=TFLiteImageNet(resolved.path, pixels=True),
        alpha=1.0,
        image_size=TFLITE_IMAGE_SIZE,
        source=resolved.origin,
        path=Path(resolved.path),
        notice=notice,
        engine="tflite",
    )


def _load_keras_choice(
    alpha: float, image_size: int, choice: str, *, mirror: Any, download: bool, seed: int
) -> ImageNetClassifier:
    if choice == "imagenet":
        # Resolve first, so a missing file raises before any network is built.
        resolved = assets.mobilenet_v2_weights(
            alpha, image_size, include_top=True, mirror=mirror, download=download
        )
        return _load_keras(alpha, image_size, resolved.path, resolved.origin, resolved.notice, seed)
    if choice == "random":
        return _load_keras(alpha, image_size, None, "random", None, seed)
    path = Path(choice)
    if not path.is_file():
        raise TLCourseError(
            f"Weights file {path} does not exist. Pass weights='imagenet', 'random', or the path of a "
            "MobileNetV2 include_top weights file."
        )
    return _load_keras(alpha, image_size, path, "file", None, seed)


def _load_keras(
    alpha: float, image_size: int, path: Any, source: str, notice: str | None, seed: int
) -> ImageNetClassifier:
    alpha = float(alpha)
    size = int(image_size)
    if size < 32:
        raise TLCourseError(f"MobileNetV2 needs images of at least 32 px; got image_size={image_size}.")
    path = Path(path) if path is not None else None
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
    model = models.assemble(net, pooling=None, name=f"mobilenet_v2_{alpha}_{size}_imagenet")
    return ImageNetClassifier(
        model=model, alpha=alpha, image_size=size, source=source, path=path, notice=notice, engine="keras"
    )


def sample_photos(
    *,
    mirror: str | os.PathLike[str] | None = None,
    per_class: int = 1,
    sample_names: Iterable[str] | None = None,
    skimage_names: Iterable[str] = tuple(SKIMAGE_SAMPLES),
    download: bool = True,
) -> list[SamplePhoto]:
    """A few real photos to classify (lesson 01).

    First the everyday photos of :data:`tlcourse.assets.SAMPLE_PHOTOS` (``sample_names``, default all: a cat,
    a parrot, an owl, a hot dog, Grace Hopper, a chickadee, a dragonfly) from the mirror's ``samples/``, the
    Keras cache or a download; then ``per_class`` validation photos of each flower class from the mirror's
    ``flower_photos_small``; then scikit-image's sample photos (when scikit-image is installed; it is a
    development extra, not a student requirement). A photo that cannot be found is left out: the list can be
    empty.
    """
    photos: list[SamplePhoto] = []
    for name in assets.SAMPLE_PHOTOS if sample_names is None else sample_names:
        try:
            resolved = assets.sample_photo(name, mirror=mirror, download=download)
            image = imageio.load_image(resolved.path)
        except (AssetMissingError, imageio.ImageDecodeError):
            continue
        photos.append(
            SamplePhoto(
                name=Path(name).stem,
                image=image,
                source=f"{resolved.origin}:samples",
                caption=assets.SAMPLE_PHOTOS[name],
            )
        )
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
