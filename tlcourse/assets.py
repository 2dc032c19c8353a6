"""Offline-first assets: weights, ImageNet metadata and datasets (introduced in lesson 00).

Every external file the course uses is found by one resolver, in this order:

1. an **offline mirror** folder (the ``mirror=`` argument, else ``$TLCOURSE_MIRROR``, else the **per-user
   mirror** :func:`user_mirror_dir`) laid out like a classroom mirror: ``keras/models/<Keras cache file name>``,
   ``weights/``, ``imagenet/``, ``imagenet_classifier/`` (the TFLite ImageNet classifier), ``samples/``
   (photos for ImageNet predictions) and ``datasets/<name>/``; the per-user mirror is searched after a named one;
2. the **Keras cache** (``$KERAS_HOME/models``, else ``~/.keras/models``, read at call time);
3. the **normal download**: Keras' own files with Keras' own URL and checksum (``keras.utils.get_file``) into
   the Keras cache; the course's own files (the TFLite classifier and sample photos from google-coral/test_data,
   the ImageNet/WordNet lists, the flower photos) with pooch (checksum registry, retries) into the per-user
   mirror, where every later lesson and command finds them.

Offline with nothing found, :class:`~tlcourse.errors.AssetMissingError` names the file, every place that was
searched, and the fixes: go online, fill the per-user mirror before going offline
(``tlcourse assets prepare --profile cpu``), or point ``TLCOURSE_MIRROR`` (or ``mirror=``) at a mirror.

The command ``tlcourse assets status|prepare|verify [--mirror DIR] [--json]`` shows where each file comes from,
builds a mirror while online (the per-user one unless told otherwise), and checks a mirror against its
``SHA256SUMS`` and datasets' ``MANIFEST.sha256``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tlcourse.backbones import BACKBONES, BackboneSpec, WeightFile, get_spec
from tlcourse.downloads import DownloadFailed as _DownloadFailed
from tlcourse.downloads import download_course_file, download_keras_file, user_mirror_dir
from tlcourse.errors import AssetMissingError, TLCourseError
from tlcourse.paths import display_path

MIRROR_ENV = "TLCOURSE_MIRROR"
KERAS_FILES_SUBDIR = "keras/models"
"""Files in this mirror folder are Keras' own: downloaded with Keras' mechanism, into the Keras cache."""
SUMS_FILE = "SHA256SUMS"
MANIFEST_FILE = "MANIFEST.sha256"
DEFAULT_DATASET = "flower_photos_small"
MIRROR_SUBDIRS = ("keras/models", "weights", "imagenet", "imagenet_classifier", "samples")
"""Where a mirror may hold a single file, searched in this order (datasets live under ``datasets/``)."""

_MOBILENET_V2 = get_spec("mobilenet_v2")
MOBILENET_V2_ALPHAS = _MOBILENET_V2.alphas
MOBILENET_V2_SIZES = tuple(sorted({f.size for f in _MOBILENET_V2.weights if f.size and not f.converted}))
MOBILENET_V2_DERIVED = next(f.file for f in _MOBILENET_V2.weights if f.converted)
"""The names lesson 01 and the mirror tools use, read from MobileNetV2's record (:mod:`tlcourse.backbones`)."""
FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
CLASS_INDEX_FILE = "imagenet_class_index.json"
CORAL_TEST_DATA = "https://github.com/google-coral/test_data/raw/master/"
ASSETS_FILE = "assets.json"
"""Every other file the course uses, with its URL and checksum, in ``tlcourse/resources/`` (data, not code)."""
IMAGENET_TFLITE = "mobilenet_v2_1.0_224_quant.tflite"
"""Google's uint8-quantized MobileNetV2 1.0 @224 ImageNet classifier (TFLite), the offline engine of lesson 01."""
IMAGENET_TFLITE_LABELS = "imagenet_labels.txt"
"""Its 1001 labels: line 0 "background", line i+1 = Keras class i."""


def _read_other_files() -> list[dict[str, str | None]]:
    text = resources.files("tlcourse").joinpath("resources", ASSETS_FILE).read_text(encoding="utf-8")
    return json.loads(text)["files"]


_OTHER_FILES = _read_other_files()
SAMPLE_PHOTOS: dict[str, str] = {
    str(row["file"]): str(row["description"]) for row in _OTHER_FILES if row["mirror_subdir"] == "samples"
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


def _weight_description(spec: BackboneSpec, entry: WeightFile) -> str:
    width = f" alpha {entry.alpha}" if entry.alpha is not None else ""
    size = f" {entry.size}px" if entry.size is not None else ""
    what = "1000-class ImageNet classifier" if entry.top else "ImageNet weights (no top)"
    if entry.converted:
        return f"{spec.family}{width} ImageNet weights converted from {entry.converted} (Keras 3 .weights.h5, mirror only)"
    return f"{spec.family}{width}{size} {what}"


def _known_assets() -> dict[str, AssetSpec]:
    specs = [
        AssetSpec(
            entry.file,
            entry.url,
            entry.hash,
            "weights" if entry.converted else "keras/models",
            _weight_description(spec, entry),
        )
        for spec in BACKBONES.values()
        for entry in spec.weights
    ]
    specs += [
        AssetSpec(
            row["file"],
            row["url"],
            row["hash"],
            row["mirror_subdir"],
            f"sample photo: {row['description']}"
            if row["mirror_subdir"] == "samples"
            else row["description"],
        )
        for row in _OTHER_FILES
    ]
    return {spec.name: spec for spec in specs}


def known_assets() -> dict[str, AssetSpec]:
    """Every file the resolver knows how to find or download, by Keras cache name (lesson 00)."""
    return _known_assets()


# ----------------------------------------------------------------------------------------------- locations


def mirror_dir(mirror: str | os.PathLike[str] | None = None, *, must_exist: bool = True) -> Path | None:
    """The offline mirror folder: ``mirror`` if given, else ``$TLCOURSE_MIRROR``, else the per-user mirror
    (:func:`user_mirror_dir`) when it exists, else None (lesson 00).

    A mirror that is named but is not a folder raises :class:`AssetMissingError` (unless ``must_exist=False``,
    which also returns the per-user mirror before it exists: the folder ``tlcourse assets prepare`` fills).
    """
    source = "mirror="
    if mirror is None or str(mirror) == "":
        value = os.environ.get(MIRROR_ENV, "").strip()
        if not value:
            user = user_mirror_dir()
            return user if (user.is_dir() or not must_exist) else None
        mirror, source = value, f"${MIRROR_ENV}"
    path = Path(mirror).expanduser()
    if must_exist and not path.is_dir():
        raise AssetMissingError(
            f"The offline mirror {path} (from {source}) is not a folder. "
            f"Fix the path, or unset {MIRROR_ENV} to use the per-user mirror, the Keras cache and downloads."
        )
    return path


def _search_mirrors(root: Path | None) -> list[Path]:
    """The mirrors to search, in order: ``root``, then the per-user mirror when it is another existing folder."""
    mirrors = [root] if root is not None else []
    user = user_mirror_dir()
    if user.is_dir() and all(user.resolve() != m.resolve() for m in mirrors):
        mirrors.append(user)
    return mirrors


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
    time, so a file changed on disk is checked again. Files the list does not name (or a mirror without a
    list) pass: ``tlcourse assets verify`` reports those. Raises :class:`AssetMissingError` in one line.
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
    """ "" when ``path`` matches its SHA256SUMS line (or has none), else the one-line problem (cached)."""
    del size, mtime_ns, sums_size, sums_mtime_ns  # part of the cache key only
    root = Path(mirror)
    try:
        entries = dict((rel, digest) for digest, rel in _read_sums(root / SUMS_FILE))
    except (OSError, TLCourseError):
        return ""  # an unreadable or damaged list: `assets verify` says so; the file itself may be fine
    rel = Path(path).relative_to(root).as_posix()
    expected = entries.get(rel)
    if expected is None or file_sha256(Path(path)) == expected:
        return ""
    return (
        f"{rel} in the mirror {display_path(root)} is damaged (its sha256 differs from {SUMS_FILE}): copy it "
        f"again from a good mirror, or run `tlcourse assets verify --mirror {display_path(root)}` to see every "
        "damaged file."
    )


# ----------------------------------------------------------------------------------------------- resolving


def _fix_hint() -> str:
    return (
        "Fix: connect to the internet and run again (the file is then downloaded and kept), or, while online, "
        "run `tlcourse assets prepare --profile cpu` to fill the per-user mirror that lessons find offline, "
        f"or point {MIRROR_ENV} (or mirror=...) at an offline mirror that has it."
    )


def _looked_text(looked: list[str]) -> str:
    return "; ".join(looked) if looked else "nowhere"


def _find_local(names: Iterable[str], mirror: Path | None, looked: list[str]) -> tuple[str, Path, str] | None:
    """First of ``names`` present locally, as (name, path, origin); each name is tried in the mirrors (``mirror``,
    then the per-user one), then in the Keras cache, before the next name. ``looked`` receives the places
    searched, for error messages."""
    cache = keras_cache_dir()
    specs = _known_assets()
    mirrors = _search_mirrors(mirror)
    bad_cache: list[str] = []
    for name in names:
        for root in mirrors:
            for sub in MIRROR_SUBDIRS:
                candidate = root / sub / name
                if candidate.is_file():
                    check_mirror_file(root, candidate)
                    return name, candidate, "mirror"
        candidate = cache / name
        if candidate.is_file():
            spec = specs.get(name)
            if spec is not None and spec.file_hash and not _matches_hash(candidate, spec.file_hash):
                bad_cache.append(f"{candidate} is there but fails its checksum")
                continue
            return name, candidate, "cache"
    for root in mirrors:
        looked.append(f"mirror {root} ({', '.join(s + '/' for s in MIRROR_SUBDIRS)})")
    if not mirrors:
        looked.append(
            f"no mirror (${MIRROR_ENV} is not set and the per-user mirror {user_mirror_dir()} does not exist)"
        )
    looked.append(f"Keras cache {cache}" + (f" ({'; '.join(bad_cache)})" if bad_cache else ""))
    return None


def download_asset(spec: AssetSpec, *, cache_dir: Path | None = None, subdir: str | None = None) -> Path:
    """Download ``spec`` into ``cache_dir/subdir`` and return its path (lesson 00).

    Keras' own files (those a mirror keeps in ``keras/models/``) go through ``keras.utils.get_file`` with Keras'
    URL and checksum, by default into ``$KERAS_HOME/models``. The course's own files go through pooch (sha256
    from the registry, retried on a dropped connection), by default into the per-user mirror's folder for them.
    Network or checksum failures become :class:`AssetMissingError`; nothing from inside Keras, pooch or urllib
    reaches the user as a traceback.
    """
    if spec.url is None:
        raise AssetMissingError(
            f"'{spec.name}' has no download address; it only comes from a mirror. {_fix_hint()}"
        )
    if spec.mirror_subdir == KERAS_FILES_SUBDIR:
        root = Path(cache_dir) if cache_dir is not None else keras_home()
        return download_keras_file(spec.name, spec.url, spec.file_hash, root / (subdir or "models"))
    base = Path(cache_dir) if cache_dir is not None else user_mirror_dir()
    return download_course_file(spec.name, spec.url, spec.file_hash, base / (subdir or spec.mirror_subdir))


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


def published_width(spec: BackboneSpec, alpha: float | None) -> float | None:
    """The record's width equal to ``alpha`` (its default for None); None for a fixed-width family."""
    if not spec.alphas:
        return None
    if alpha is None:
        return 1.0 if 1.0 in spec.alphas else spec.default_alpha
    for published in spec.alphas:
        if abs(float(alpha) - published) < 1e-6:
            return published
    raise TLCourseError(
        f"Keras publishes {spec.family} ImageNet weights only for alpha in {', '.join(map(str, spec.alphas))}; "
        f"got alpha={alpha}. Pick one of those, or use weights='random'."
    )


def _published_alpha(alpha: float) -> float:
    """MobileNetV2's published width equal to ``alpha`` (the mirror tools' check)."""
    return float(published_width(_MOBILENET_V2, alpha))  # type: ignore[arg-type]


def mobilenet_v2_weights(
    alpha: float,
    image_size: int,
    *,
    include_top: bool = False,
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ResolvedFile:
    """ImageNet weights for MobileNetV2 at width ``alpha`` and input ``image_size`` (lessons 01 and 03):
    :func:`backbone_weights` for ``"mobilenet_v2"``, with or without the 1000-class classifier."""
    return backbone_weights(
        "mobilenet_v2",
        alpha=alpha,
        image_size=image_size,
        include_top=include_top,
        mirror=mirror,
        download=download,
    )


def backbone_weights(
    backbone: str,
    *,
    alpha: float | None = None,
    image_size: int | None = None,
    include_top: bool = False,
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ResolvedFile:
    """ImageNet weights for one of the course's backbones, from its record's files (lesson 03).

    ``backbone`` is a registry name (``mobilenet_v2``, ``vgg16``, ``resnet50``, ``inception_v3``,
    ``efficientnet_b0``, ``mobilenet_v3_small``) or a Keras-style name such as ``"MobileNetV2"``; ``alpha``
    picks the width of the families that have one (default 1.0), ``image_size`` the input size (default 224).
    No-top (feature extractor) weights by default; ``include_top=True`` gives the 1000-class classifier
    (lesson 01). Where Keras publishes one file per input size, the exact size comes first (mirror, then Keras
    cache), then the same width at another size (224 px first, then the nearest: the weights have the same
    shapes at every input size), then a converted checkpoint the record lists (mirror only); only then a
    download, of the exact file when Keras publishes that size, else the 224 px one. A stand-in comes with a
    one-line ``notice``: build the model with ``weights=None`` and call ``model.load_weights(resolved.path)``.
    """
    spec = get_spec(backbone)
    width = published_width(spec, alpha)
    size = 224 if image_size is None else int(image_size)
    files = spec.weight_files(width, top=include_top)
    if not files:
        raise TLCourseError(f"Keras publishes no {spec.family} ImageNet classifier file the course knows of.")
    published = [f for f in files if not f.converted]
    if all(f.size is None for f in published):  # one file for every input size
        return resolve_file(published[0].file, mirror=mirror, download=download)
    exact = next((f for f in published if f.size == size), None)
    others = sorted(
        (f for f in published if f.size != size), key=lambda f: (f.size != 224, abs(f.size - size))
    )
    kind = "classifier" if include_top else "ImageNet weights"
    missing = "here" if exact else f"published (Keras has {', '.join(str(f.size) for f in published)})"
    notices = {
        f.file: f"Note: no {spec.family} alpha {width} {kind} for {size}px {missing}; using the {f.size}px file "
        "(same weight shapes), loaded with model.load_weights."
        for f in others
    }
    converted = [f for f in files if f.converted]
    for f in converted:
        notices[f.file] = (
            f"Note: using the mirror's {spec.family} alpha {width} weights converted from {f.converted} ({f.file})"
            + (f" at {size}px" if size != f.size else "")
            + ", loaded with model.load_weights."
        )
    download_file = exact or next(f for f in published if f.size == 224)
    what = f"{spec.family} alpha {width} {size}px {'1000-class ImageNet classifier' if include_top else 'ImageNet weights (no top)'}"
    what += ", nor the same alpha at another size"
    candidates = [f.file for f in ([exact] if exact else []) + others + converted]
    return _resolve(
        candidates, download_file.file, mirror=mirror, download=download, what=what, notices=notices
    )


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
