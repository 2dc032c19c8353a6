"""Offline-first assets: weights, ImageNet metadata and datasets (introduced in lesson 00).

Every external file the course uses is found by one resolver, in this order:

1. an **offline mirror** folder (the ``mirror=`` argument, else ``$TLCOURSE_MIRROR``) laid out like a classroom
   mirror: ``keras/models/<Keras cache file name>``, ``weights/``, ``imagenet/``, ``imagenet_classifier/`` (the
   TFLite ImageNet classifier), ``samples/`` (photos for ImageNet predictions) and ``datasets/<name>/``;
2. the **Keras cache** (``$KERAS_HOME/models``, else ``~/.keras/models``, read at call time);
3. the **normal download** with Keras' own URL and checksum (``keras.utils.get_file``), into the Keras cache
   (the TFLite classifier and the sample photos come from google-coral/test_data, checked by sha256).

Offline with nothing found, :class:`~tlcourse.errors.AssetMissingError` names the file, every place that was
searched, and the two fixes: go online, or point ``TLCOURSE_MIRROR`` (or ``mirror=``) at a mirror.

The command ``tlcourse assets status|prepare|verify [--mirror DIR] [--json]`` shows where each file comes from,
builds a mirror while online, and checks a mirror against its ``SHA256SUMS`` and datasets' ``MANIFEST.sha256``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tlcourse.errors import AssetMissingError, TLCourseError

MIRROR_ENV = "TLCOURSE_MIRROR"
SUMS_FILE = "SHA256SUMS"
MANIFEST_FILE = "MANIFEST.sha256"
DEFAULT_DATASET = "flower_photos_small"
MIRROR_SUBDIRS = ("keras/models", "weights", "imagenet", "imagenet_classifier", "samples")
"""Where a mirror may hold a single file, searched in this order (datasets live under ``datasets/``)."""

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)
MOBILENET_V2_DERIVED = "mobilenet_v2_1.0_224_no_top.derived.weights.h5"
FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
CLASS_INDEX_FILE = "imagenet_class_index.json"
CORAL_TEST_DATA = "https://github.com/google-coral/test_data/raw/master/"
IMAGENET_TFLITE = "mobilenet_v2_1.0_224_quant.tflite"
"""Google's uint8-quantized MobileNetV2 1.0 @224 ImageNet classifier (TFLite), the offline engine of lesson 01."""
IMAGENET_TFLITE_LABELS = "imagenet_labels.txt"
"""Its 1001 labels: line 0 "background", line i+1 = Keras class i."""
_CORAL_SHA256 = {
    IMAGENET_TFLITE: "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
    IMAGENET_TFLITE_LABELS: "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
    "cat_720p.jpg": "cfb1dbdf64b30de79104a47555ff8e9f12737a12c2128ecd0e7f38531a8c13ce",
    "parrot.jpg": "a8fba9e7e29439fa414c13129aad661f2289ff891231920a7c33641b076f1833",
    "owl.jpg": "ea9a0e3943bbd0acaeb472a6e66e777d13cf76646f9e42e84cafa931cc8a5bf7",
    "hot_dog.jpg": "ed6952e022eb71c0d0b1ff068dcee3abed056dfa1852f041c35f138c4ff15b2e",
    "grace_hopper.bmp": "c43444bf3b1b1e3080551ca194bd231da4b67f20fc91454502915a6b806b614f",
    "bird.bmp": "3fd22d6ed352b8e721d9982e38ed655f8429e168bb53ad205c6f3cdfa848e994",
    "dragonfly.bmp": "bb42efbdd3ef1a06cc17cc4db862373be91d74eec2fcdeeb6665247a3ae6ce52",
}
"""sha256 of the google-coral/test_data files, as the shared mirror's SHA256SUMS lists them."""
SAMPLE_PHOTOS: dict[str, str] = {
    "cat_720p.jpg": "a cat",
    "parrot.jpg": "a parrot",
    "owl.jpg": "an owl",
    "hot_dog.jpg": "a hot dog",
    "grace_hopper.bmp": "Grace Hopper in uniform",
    "bird.bmp": "a chickadee",
    "dragonfly.bmp": "a dragonfly",
}
"""The everyday photos lesson 01 classifies (mirror ``samples/``, else google-coral/test_data), with captions."""


@dataclass(frozen=True)
class AssetSpec:
    """One external file: its Keras cache name, where it is published, and its checksum (if Keras knows one)."""

    name: str
    url: str | None
    file_hash: str | None
    """As Keras passes it to ``get_file``: 32 hex digits = md5, 64 = sha256; None when Keras checks nothing."""
    mirror_subdir: str
    """Folder inside a mirror that normally holds it: ``keras/models``, ``weights`` or ``imagenet``."""
    description: str


@dataclass(frozen=True)
class ResolvedFile:
    """Where an asset was found (lesson 00): ``origin`` is ``"mirror"``, ``"cache"`` or ``"download"``."""

    path: Path
    origin: str
    notice: str | None = None
    """One line to show the user when the file is a stand-in (e.g. another input size), else None."""


_ANNOUNCED: set[str] = set()
"""Stand-in notices already printed by this process (the one piece of module state: what was said)."""


def announce(notice: str | None) -> bool:
    """Print a stand-in notice the first time this process meets it; True when it printed (lesson 03).

    The notice names the backbone, width and input size, so each (alpha, size) is announced once per process
    however many times a lesson or ``tlcourse train`` builds that backbone.
    """
    if not notice or notice in _ANNOUNCED:
        return False
    _ANNOUNCED.add(notice)
    print(notice, flush=True)
    return True


def mobilenet_v2_file_name(alpha: float, image_size: int, include_top: bool = False) -> str:
    """Keras' cache name for MobileNetV2 ImageNet weights at ``alpha`` and ``image_size`` (lesson 03).

    No-top (feature extractor) weights by default; ``include_top=True`` names the 1000-class classifier's file.
    """
    suffix = "" if include_top else "_no_top"
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{int(image_size)}{suffix}.h5"


def _known_assets() -> dict[str, AssetSpec]:
    specs: list[AssetSpec] = []
    for include_top in (False, True):
        what = "1000-class ImageNet classifier" if include_top else "ImageNet weights (no top)"
        for alpha in MOBILENET_V2_ALPHAS:
            for size in MOBILENET_V2_SIZES:
                name = mobilenet_v2_file_name(alpha, size, include_top)
                specs.append(
                    AssetSpec(
                        name,
                        _KERAS_APPS + "mobilenet_v2/" + name,
                        None,  # Keras publishes no checksum for MobileNetV2 files
                        "keras/models",
                        f"MobileNetV2 alpha {float(alpha)} {size}px {what}",
                    )
                )
    specs += [
        AssetSpec(
            MOBILENET_V2_DERIVED,
            None,
            None,
            "weights",
            "MobileNetV2 alpha 1.0 ImageNet weights converted from TF-slim (Keras 3 .weights.h5, mirror only)",
        ),
        AssetSpec(
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_APPS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "6d6bbae143d832006294945121d1f1fc",
            "keras/models",
            "VGG16 ImageNet weights (no top)",
        ),
        AssetSpec(
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_APPS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "4d473c1dd8becc155b73f8504c6f6626",
            "keras/models",
            "ResNet50 ImageNet weights (no top)",
        ),
        AssetSpec(
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_APPS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "bcbd6486424b2319ff4ef7d526e38f63",
            "keras/models",
            "InceptionV3 ImageNet weights (no top)",
        ),
        AssetSpec(
            "efficientnetb0_notop.h5",
            "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
            "50bc09e76180e00e4465e1a485ddc09d",
            "keras/models",
            "EfficientNetB0 ImageNet weights (no top)",
        ),
        AssetSpec(
            "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
            _KERAS_APPS + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
            "d3e8ec802a04aa4fc771ee12a9a9b836",
            "keras/models",
            "MobileNetV3Small alpha 1.0 ImageNet weights (no top)",
        ),
        AssetSpec(
            "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5",
            _KERAS_APPS + "mobilenet_v3/weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5",
            "ebdb5cc8e0b497cd13a7c275d475c819",
            "keras/models",
            "MobileNetV3Small alpha 0.75 ImageNet weights (no top)",
        ),
        AssetSpec(
            CLASS_INDEX_FILE,
            "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
            "c2c37ea517e94d9795004a39431a14cb",
            "keras/models",
            "ImageNet class index used by keras decode_predictions",
        ),
        AssetSpec(
            IMAGENET_TFLITE,
            CORAL_TEST_DATA + IMAGENET_TFLITE,
            _CORAL_SHA256[IMAGENET_TFLITE],
            "imagenet_classifier",
            "MobileNetV2 1.0 224px ImageNet classifier, uint8-quantized TFLite (offline engine)",
        ),
        AssetSpec(
            IMAGENET_TFLITE_LABELS,
            CORAL_TEST_DATA + IMAGENET_TFLITE_LABELS,
            _CORAL_SHA256[IMAGENET_TFLITE_LABELS],
            "imagenet_classifier",
            "the TFLite classifier's 1001 labels (background + the 1000 Keras classes)",
        ),
        *(
            AssetSpec(
                name, CORAL_TEST_DATA + name, _CORAL_SHA256[name], "samples", f"sample photo: {caption}"
            )
            for name, caption in SAMPLE_PHOTOS.items()
        ),
        # The raw ImageNet/WordNet files behind tlcourse/resources (tools/build_imagenet_resources.py).
        # Their publishers give no checksum, so none is enforced on download.
        AssetSpec(
            "wordnet.is_a.txt",
            "https://www.image-net.org/archive/wordnet.is_a.txt",
            None,
            "imagenet",
            "ImageNet WordNet IS-A edges",
        ),
        AssetSpec(
            "words.txt",
            "https://www.image-net.org/archive/words.txt",
            None,
            "imagenet",
            "WordNet synset names",
        ),
        AssetSpec(
            "imagenet-simple-labels.json",
            "https://raw.githubusercontent.com/anishathalye/imagenet-simple-labels/master/imagenet-simple-labels.json",
            None,
            "imagenet",
            "short readable labels for the 1000 ImageNet classes",
        ),
    ]
    return {spec.name: spec for spec in specs}


def known_assets() -> dict[str, AssetSpec]:
    """Every file the resolver knows how to find or download, by Keras cache name (lesson 00)."""
    return _known_assets()


BACKBONE_ALIASES = {
    "mobilenetv2": "mobilenet_v2",
    "vgg16": "vgg16",
    "resnet50": "resnet50",
    "inceptionv3": "inception_v3",
    "efficientnetb0": "efficientnet_b0",
    "mobilenetv3small": "mobilenet_v3_small",
}
_BACKBONE_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnet_b0": "efficientnetb0_notop.h5",
}


# ----------------------------------------------------------------------------------------------- locations


def mirror_dir(mirror: str | os.PathLike[str] | None = None, *, must_exist: bool = True) -> Path | None:
    """The offline mirror folder: ``mirror`` if given, else ``$TLCOURSE_MIRROR``, else None (lesson 00).

    A mirror that is named but is not a folder raises :class:`AssetMissingError` (unless ``must_exist=False``).
    """
    source = "mirror="
    if mirror is None or str(mirror) == "":
        value = os.environ.get(MIRROR_ENV, "").strip()
        if not value:
            return None
        mirror, source = value, f"${MIRROR_ENV}"
    path = Path(mirror).expanduser()
    if must_exist and not path.is_dir():
        raise AssetMissingError(
            f"The offline mirror {path} (from {source}) is not a folder. "
            f"Fix the path, or unset {MIRROR_ENV} to use the Keras cache and downloads only."
        )
    return path


def keras_home() -> Path:
    """``$KERAS_HOME`` if set, else ``~/.keras``, read now rather than when Keras was imported (lesson 00)."""
    value = os.environ.get("KERAS_HOME", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".keras"


def keras_cache_dir() -> Path:
    """The folder where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models`` (lesson 00)."""
    return keras_home() / "models"


def dataset_dir(name: str = DEFAULT_DATASET, *, mirror: str | os.PathLike[str] | None = None) -> Path | None:
    """The mirror's copy of dataset ``name`` (``<mirror>/datasets/<name>``), or None without one (lesson 00)."""
    root = mirror_dir(mirror)
    if root is None:
        return None
    path = root / "datasets" / name
    return path if path.is_dir() else None


# ----------------------------------------------------------------------------------------------- hashing


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _matches_hash(path: Path, file_hash: str) -> bool:
    algorithm = "sha256" if len(file_hash) == 64 else "md5"
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest() == file_hash.lower()


def check_mirror_file(mirror: Path, path: Path) -> None:
    """Refuse a mirror file whose sha256 differs from the mirror's ``SHA256SUMS`` (lesson 00).

    Checked when a file is first resolved in a process; the result is cached by path, size and modification
    time, so a file changed on disk is checked again. A file the list does not name is refused, unless it
    matches the checksum Keras publishes for it; a mirror without a list passes (``tlcourse assets verify``
    reports it). Raises :class:`AssetMissingError` in one line.
    """
    try:
        info = path.stat()
        sums = mirror / SUMS_FILE
        sums_info = sums.stat()
    except OSError:
        return
    problem = _mirror_file_problem(
        str(mirror), str(path), info.st_size, info.st_mtime_ns, sums_info.st_size, sums_info.st_mtime_ns
    )
    if problem:
        raise AssetMissingError(problem)


@functools.lru_cache(maxsize=256)
def _mirror_file_problem(
    mirror: str, path: str, size: int, mtime_ns: int, sums_size: int, sums_mtime_ns: int
) -> str:
    """ "" when ``path`` matches its SHA256SUMS line (or, unlisted, Keras' checksum), else the one-line problem
    (cached)."""
    del size, mtime_ns, sums_size, sums_mtime_ns  # part of the cache key only
    root = Path(mirror)
    try:
        entries = dict((rel, digest) for digest, rel in _read_sums(root / SUMS_FILE))
    except (OSError, TLCourseError):
        return ""  # an unreadable or damaged list: `assets verify` says so; the file itself may be fine
    rel = Path(path).relative_to(root).as_posix()
    expected = entries.get(rel)
    if expected is None:
        spec = _known_assets().get(Path(path).name)
        if spec is not None and spec.file_hash and _matches_hash(Path(path), spec.file_hash):
            return ""  # not listed, but it is the file Keras publishes (its own checksum)
        return (
            f"{rel} is in the mirror {root} but not in its {SUMS_FILE}, so nothing vouches for it: add its line "
            f"(`sha256sum ./{rel} >> {SUMS_FILE}` in the mirror), or rebuild the mirror with "
            f"`tlcourse assets prepare --mirror {root}`."
        )
    if file_sha256(Path(path)) == expected:
        return ""
    return (
        f"{rel} in the mirror {root} is damaged (its sha256 differs from {SUMS_FILE}): copy it again from a good "
        f"mirror, or run `tlcourse assets verify --mirror {root}` to see every damaged file."
    )


# ----------------------------------------------------------------------------------------------- resolving


def _fix_hint() -> str:
    return (
        "Fix: connect to the internet and run again (the file is then downloaded and cached), or point "
        f"{MIRROR_ENV} (or mirror=...) at an offline mirror that has it "
        "(`tlcourse assets prepare --mirror DIR` builds one on a connected machine)."
    )


def _looked_text(looked: list[str]) -> str:
    return "; ".join(looked) if looked else "nowhere"


def _find_local(names: Iterable[str], mirror: Path | None, looked: list[str]) -> tuple[str, Path, str] | None:
    """First of ``names`` present locally, as (name, path, origin); each name is tried in the mirror, then in
    the Keras cache, before the next name. ``looked`` receives the places searched, for error messages."""
    cache = keras_cache_dir()
    specs = _known_assets()
    bad_cache: list[str] = []
    for name in names:
        if mirror is not None:
            for sub in MIRROR_SUBDIRS:
                candidate = mirror / sub / name
                if candidate.is_file():
                    check_mirror_file(mirror, candidate)
                    return name, candidate, "mirror"
        candidate = cache / name
        if candidate.is_file():
            spec = specs.get(name)
            if spec is not None and spec.file_hash and not _matches_hash(candidate, spec.file_hash):
                bad_cache.append(f"{candidate} is there but fails its checksum")
                continue
            return name, candidate, "cache"
    if mirror is not None:
        looked.append(f"mirror {mirror} ({', '.join(s + '/' for s in MIRROR_SUBDIRS)})")
    else:
        looked.append(f"no mirror (${MIRROR_ENV} is not set)")
    looked.append(f"Keras cache {cache}" + (f" ({'; '.join(bad_cache)})" if bad_cache else ""))
    return None


def download_asset(spec: AssetSpec, *, cache_dir: Path | None = None, subdir: str = "models") -> Path:
    """Download ``spec`` with ``keras.utils.get_file`` (Keras' URL and checksum) into ``cache_dir/subdir``.

    ``cache_dir`` defaults to ``$KERAS_HOME`` (read now). Network or checksum failures become
    :class:`AssetMissingError`; nothing from inside Keras or urllib reaches the user as a traceback.
    """
    if spec.url is None:
        raise AssetMissingError(
            f"'{spec.name}' has no download address; it only comes from a mirror. {_fix_hint()}"
        )
    root = Path(cache_dir) if cache_dir is not None else keras_home()
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    import keras

    try:
        path = keras.utils.get_file(
            spec.name, spec.url, file_hash=spec.file_hash, cache_subdir=subdir, cache_dir=str(root)
        )
    except KeyboardInterrupt:
        raise
    except Exception as error:  # keras wraps urllib errors in a bare Exception("URL fetch failure ...")
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if reason.startswith("URL fetch failure") and " -- " in reason:
            reason = reason.split(" -- ", 1)[1]  # keep the cause; the URL is already in our message
        raise _DownloadFailed(reason) from None
    return Path(path)


class _DownloadFailed(AssetMissingError):
    """Internal: a download failed; the resolver turns it into the full message."""


def resolve_file(
    name: str, *, mirror: str | os.PathLike[str] | None = None, download: bool = True
) -> ResolvedFile:
    """Find one external file by its Keras cache name: mirror, then Keras cache, then download (lesson 00).

    ``name`` is e.g. ``"imagenet_class_index.json"`` or a weights file name (see :func:`known_assets`).
    Raises :class:`AssetMissingError` naming the file, where it looked and how to fix it.
    """
    return _resolve([name], name, mirror=mirror, download=download, what=None)


def _resolve(
    candidates: list[str],
    download_name: str,
    *,
    mirror: str | os.PathLike[str] | None,
    download: bool,
    what: str | None,
    notices: dict[str, str] | None = None,
) -> ResolvedFile:
    root = mirror_dir(mirror)
    looked: list[str] = []
    found = _find_local(candidates, root, looked)
    notices = notices or {}
    if found is not None:
        name, path, origin = found
        return ResolvedFile(path=path, origin=origin, notice=notices.get(name))
    spec = _known_assets().get(download_name)
    label = what or (spec.description if spec else "file")
    wanted = f"'{download_name}' ({label})"
    if not download:
        raise AssetMissingError(
            f"Cannot find {wanted}. Looked in: {_looked_text(looked)}; downloading was turned off. {_fix_hint()}"
        )
    if spec is None or spec.url is None:
        raise AssetMissingError(
            f"Cannot find {wanted}. Looked in: {_looked_text(looked)}; it cannot be downloaded, only copied "
            f"from a mirror. Point {MIRROR_ENV} (or mirror=...) at a mirror that has it."
        )
    try:
        path = download_asset(spec)
    except _DownloadFailed as error:
        raise AssetMissingError(
            f"Cannot find {wanted}. Looked in: {_looked_text(looked)}; downloading {spec.url} failed ({error}). "
            f"{_fix_hint()}"
        ) from None
    return ResolvedFile(path=path, origin="download", notice=notices.get(download_name))


def _published_alpha(alpha: float) -> float:
    for published in MOBILENET_V2_ALPHAS:
        if abs(float(alpha) - published) < 1e-6:
            return published
    raise TLCourseError(
        f"Keras publishes MobileNetV2 ImageNet weights only for alpha in {', '.join(map(str, MOBILENET_V2_ALPHAS))}; "
        f"got alpha={alpha}. Pick one of those, or use weights='random'."
    )


def mobilenet_v2_weights(
    alpha: float,
    image_size: int,
    *,
    include_top: bool = False,
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ResolvedFile:
    """ImageNet weights for MobileNetV2 at width ``alpha`` and input ``image_size`` (lesson 03).

    No-top (feature extractor) weights by default; ``include_top=True`` gives the 1000-class classifier
    (lesson 01). Prefers Keras' exact file for (alpha, size); otherwise the same alpha at another resolution
    (the weights have the same shapes at every input size), and for no-top alpha 1.0 also the mirror's
    ``weights/mobilenet_v2_1.0_224_no_top.derived.weights.h5``. A stand-in comes with a one-line ``notice``:
    build the model with ``weights=None`` and call ``model.load_weights(resolved.path)``.
    Search order: the exact file (mirror, then Keras cache), then each other size of the same alpha (224 px
    first, then the nearest sizes), then the converted file; only then a download, which fetches the exact
    file when Keras publishes that size, else the 224 px one.
    """
    alpha = _published_alpha(alpha)
    size = int(image_size)
    exact = mobilenet_v2_file_name(alpha, size, include_top) if size in MOBILENET_V2_SIZES else None
    others = sorted((s for s in MOBILENET_V2_SIZES if s != size), key=lambda s: (s != 224, abs(s - size)))
    candidates = ([exact] if exact else []) + [mobilenet_v2_file_name(alpha, s, include_top) for s in others]
    kind = "classifier" if include_top else "ImageNet weights"
    missing = "here" if exact else "published (Keras has 96, 128, 160, 192, 224)"
    notices = {
        mobilenet_v2_file_name(alpha, s, include_top): (
            f"Note: no MobileNetV2 alpha {alpha} {kind} for {size}px {missing}; using the {s}px file "
            "(same weight shapes), loaded with model.load_weights."
        )
        for s in others
    }
    if alpha == 1.0 and not include_top:
        candidates.append(MOBILENET_V2_DERIVED)
        notices[MOBILENET_V2_DERIVED] = (
            f"Note: using the mirror's MobileNetV2 alpha 1.0 weights converted from TF-slim ({MOBILENET_V2_DERIVED})"
            + (f" at {size}px" if size != 224 else "")
            + ", loaded with model.load_weights."
        )
    download_name = exact or mobilenet_v2_file_name(alpha, 224, include_top)
    what = (
        f"MobileNetV2 alpha {alpha} {size}px {_known_assets()[download_name].description.split('px ', 1)[1]}"
    )
    what += ", nor the same alpha at another size"
    return _resolve(candidates, download_name, mirror=mirror, download=download, what=what, notices=notices)


def backbone_weights(
    backbone: str,
    *,
    alpha: float | None = None,
    image_size: int | None = None,
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ResolvedFile:
    """No-top ImageNet weights for one of the course's backbones (lesson 03).

    ``backbone``: ``mobilenet_v2`` (uses ``alpha`` and ``image_size``, defaults 1.0 and 224), ``vgg16``,
    ``resnet50``, ``inception_v3``, ``efficientnet_b0`` or ``mobilenet_v3_small`` (``alpha`` 1.0 or 0.75).
    Keras-style names such as ``"MobileNetV2"`` work too.
    """
    key = BACKBONE_ALIASES.get("".join(ch for ch in backbone.lower() if ch.isalnum()))
    if key is None:
        raise TLCourseError(
            f"Unknown backbone {backbone!r}: choose one of {', '.join(sorted(set(BACKBONE_ALIASES.values())))}."
        )
    if key == "mobilenet_v2":
        return mobilenet_v2_weights(
            1.0 if alpha is None else alpha,
            224 if image_size is None else image_size,
            mirror=mirror,
            download=download,
        )
    if key == "mobilenet_v3_small":
        width = 1.0 if alpha is None else float(alpha)
        if width not in (0.75, 1.0):
            raise TLCourseError(
                f"Keras publishes MobileNetV3Small ImageNet weights for alpha 0.75 and 1.0, not {alpha}."
            )
        return resolve_file(
            f"weights_mobilenet_v3_small_224_{width}_float_no_top_v2.h5", mirror=mirror, download=download
        )
    return resolve_file(_BACKBONE_FILES[key], mirror=mirror, download=download)


def imagenet_tflite(*, mirror: str | os.PathLike[str] | None = None, download: bool = True) -> ResolvedFile:
    """The TFLite ImageNet classifier (lesson 01): the mirror's ``imagenet_classifier/``, the Keras cache, then
    google-coral/test_data (checked against its sha256). Raises :class:`AssetMissingError` when none has it."""
    return resolve_file(IMAGENET_TFLITE, mirror=mirror, download=download)


def imagenet_tflite_labels(
    *, mirror: str | os.PathLike[str] | None = None, download: bool = True
) -> ResolvedFile:
    """The TFLite classifier's 1001 labels (line 0 "background", line i+1 = Keras class i) (lesson 01)."""
    return resolve_file(IMAGENET_TFLITE_LABELS, mirror=mirror, download=download)


def sample_photo(
    name: str, *, mirror: str | os.PathLike[str] | None = None, download: bool = True
) -> ResolvedFile:
    """One of :data:`SAMPLE_PHOTOS` (``"owl.jpg"``...): mirror ``samples/``, Keras cache, then a download (lesson 01)."""
    if name not in SAMPLE_PHOTOS:
        raise TLCourseError(f"Unknown sample photo {name!r}: choose one of {', '.join(SAMPLE_PHOTOS)}.")
    return resolve_file(name, mirror=mirror, download=download)


def keras_class_index(*, mirror: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """Put ``imagenet_class_index.json`` into the Keras cache, so that Keras' own ``decode_predictions``
    finds it instead of downloading it (lesson 01). Returns the path in the Keras cache.

    Keras reads ``$KERAS_HOME`` once, when it is first imported; if that folder differs from today's
    :func:`keras_cache_dir`, the file goes to both.
    """
    resolved = resolve_file(CLASS_INDEX_FILE, mirror=mirror, download=download)
    spec = _known_assets()[CLASS_INDEX_FILE]
    targets = [keras_cache_dir() / CLASS_INDEX_FILE]
    keras_config = sys.modules.get("keras.src.backend.config")
    home = getattr(keras_config, "keras_home", None)
    if callable(home):
        targets.insert(0, Path(home()) / "models" / CLASS_INDEX_FILE)
    for target in dict.fromkeys(targets):
        if Path(resolved.path) == target or (
            target.is_file() and spec.file_hash and _matches_hash(target, spec.file_hash)
        ):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resolved.path, target)
    return targets[0]


# ----------------------------------------------------------------------------------------------- status


COURSE_WEIGHTS: tuple[tuple[str, float | None, int | None], ...] = (
    ("mobilenet_v2", 0.35, 96),
    ("mobilenet_v2", 0.35, 160),
    ("mobilenet_v2", 0.35, 224),
    ("mobilenet_v2", 0.5, 224),
    ("mobilenet_v2", 1.0, 224),
    ("vgg16", None, None),
    ("resnet50", None, None),
    ("inception_v3", None, None),
    ("efficientnet_b0", None, None),
    ("mobilenet_v3_small", None, None),
)
"""The weights the lessons and profiles use (smoke 96px / cpu 160px at alpha 0.35, gpu alpha 1.0, lesson 03)."""
COURSE_CLASSIFIERS: tuple[tuple[float, int], ...] = ((0.35, 224), (1.0, 224))
"""MobileNetV2 1000-class classifiers (include_top) for ImageNet predictions and zero-shot (lesson 01)."""
COURSE_FILES = (CLASS_INDEX_FILE, "wordnet.is_a.txt", "words.txt", "imagenet-simple-labels.json")
CLASSIFIER_FILES = (IMAGENET_TFLITE, IMAGENET_TFLITE_LABELS, *SAMPLE_PHOTOS)
"""The TFLite ImageNet classifier, its labels and the sample photos (lesson 01); ``prepare`` fetches them when it
can and lists the ones it could not, rather than failing."""
COURSE_DATASETS = (DEFAULT_DATASET,)


def _course_weight_file(backbone: str, alpha: float | None, size: int | None) -> str:
    if backbone == "mobilenet_v2":
        return mobilenet_v2_file_name(alpha or 1.0, size or 224)
    if backbone == "mobilenet_v3_small":
        return "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    return _BACKBONE_FILES[backbone]


def status_report(mirror: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Where each course asset resolves from right now, without touching the network (lesson 00).

    Returns ``{"mirror", "keras_cache", "assets": [{"asset", "file", "in_mirror", "in_cache", "resolves_from",
    "path", "notice"}], "missing": [asset...]}``; ``resolves_from`` is ``"mirror"``, ``"cache"`` or None.
    """
    root = mirror_dir(mirror)
    cache = keras_cache_dir()
    rows: list[dict[str, object]] = []

    def where(file_name: str) -> tuple[str | None, str | None]:
        in_mirror = next(
            (
                str(root / sub / file_name)
                for sub in MIRROR_SUBDIRS
                if root and (root / sub / file_name).is_file()
            ),
            None,
        )
        in_cache = str(cache / file_name) if (cache / file_name).is_file() else None
        return in_mirror, in_cache

    def add(asset: str, file_name: str, resolve) -> None:  # noqa: ANN001 - a zero-argument callable
        in_mirror, in_cache = where(file_name)
        try:
            resolved = resolve()
            origin, path, notice = resolved.origin, str(resolved.path), resolved.notice
        except AssetMissingError:
            origin = path = notice = None
        rows.append(
            {
                "asset": asset,
                "file": file_name,
                "in_mirror": in_mirror,
                "in_cache": in_cache,
                "resolves_from": origin,
                "path": path,
                "notice": notice,
            }
        )

    for name in COURSE_FILES + CLASSIFIER_FILES:
        add(name, name, lambda name=name: resolve_file(name, mirror=root, download=False))
    for backbone, alpha, size in COURSE_WEIGHTS:
        label = backbone + (f" alpha {alpha} {size}px" if backbone == "mobilenet_v2" else "")
        add(
            label,
            _course_weight_file(backbone, alpha, size),
            lambda b=backbone, a=alpha, s=size: backbone_weights(
                b, alpha=a, image_size=s, mirror=root, download=False
            ),
        )
    for alpha, size in COURSE_CLASSIFIERS:
        add(
            f"mobilenet_v2 classifier alpha {alpha} {size}px",
            mobilenet_v2_file_name(alpha, size, include_top=True),
            lambda a=alpha, s=size: mobilenet_v2_weights(a, s, include_top=True, mirror=root, download=False),
        )
    for name in COURSE_DATASETS:
        folder = root / "datasets" / name if root else None
        present = folder is not None and folder.is_dir()
        rows.append(
            {
                "asset": f"dataset {name}",
                "file": f"datasets/{name}/",
                "in_mirror": str(folder) if present else None,
                "in_cache": None,
                "resolves_from": "mirror" if present else None,
                "path": str(folder) if present else None,
                "notice": None,
            }
        )
    return {
        "mirror": str(root) if root else None,
        "keras_cache": str(cache),
        "assets": rows,
        "missing": [row["asset"] for row in rows if row["resolves_from"] is None],
    }


def format_status(report: dict[str, object]) -> str:
    """A plain-text table of :func:`status_report` (lesson 00)."""
    rows = report["assets"]
    assert isinstance(rows, list)
    lines = [
        f"mirror:      {report['mirror'] or f'(none: set ${MIRROR_ENV} or pass --mirror)'}",
        f"Keras cache: {report['keras_cache']}",
        "",
    ]
    width = max(len(str(row["asset"])) for row in rows) + 2
    lines.append(f"{'ASSET':<{width}}{'RESOLVES FROM':<15}{'MIRROR':<8}{'CACHE':<7}")
    for row in rows:
        origin = row["resolves_from"] or "MISSING"
        if row["notice"]:
            origin += "*"
        lines.append(
            f"{row['asset']!s:<{width}}{origin:<15}{'yes' if row['in_mirror'] else '-':<8}"
            f"{'yes' if row['in_cache'] else '-':<7}"
        )
    if any(row["notice"] for row in rows):
        lines.append("* a stand-in file (another input size or a converted checkpoint) is used.")
    missing = report["missing"]
    if missing:
        lines.append(
            f"{len(missing)} missing: they are downloaded on first use when online; offline, "  # type: ignore[arg-type]
            f"set ${MIRROR_ENV} to a mirror that has them."
        )
    return "\n".join(lines)


def online(host: str = "storage.googleapis.com", timeout: float = 5.0) -> bool:
    """True when a TCP connection to ``host`` port 443 opens within ``timeout`` seconds (lesson 00)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _read_sums(path: Path) -> list[tuple[str, str]]:
    """(sha256, relative path) per line of a ``sha256sum`` list; :class:`TLCourseError` for a file that is not one."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise TLCourseError(f"{path.name} is not a text checksum list (binary or damaged data).") from None
    if "\x00" in text:
        raise TLCourseError(f"{path.name} is not a text checksum list (binary or damaged data).")
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, rel = line.strip().partition(" ")
        rel = rel.strip().lstrip("*")
        if len(digest) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in digest) or not rel:
            raise TLCourseError(
                f"{path.name} line {number} is not '<sha256>  ./<path>' (a damaged or foreign checksum list)."
            )
        entries.append((digest.lower(), rel[2:] if rel.startswith("./") else rel))
    return entries
