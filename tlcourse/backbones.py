"""What a backbone is: its one record, and the identity a built backbone carries (lessons 03 and 04).

- :class:`BackboneSpec` is the one record per architecture (lesson 03): its Keras constructor, preprocessing,
  default unfreeze point, widths, the ImageNet weight files Keras publishes for each width and input size with
  their checksums, and the published figures lesson 03 quotes. The records are data,
  ``tlcourse/resources/backbones.json``; :data:`BACKBONES` reads them. A new backbone is one record there.
- :func:`spec_of` recognises the record of a built model from the name Keras gives it, and :func:`base_of`
  finds the pretrained base inside a classifier.
- :func:`identity` is what a model *is*, read from the object itself: architecture, width, input size, a
  digest of its layer configuration and a digest of every weight array. Every cache and resume key of the fast
  path is derived from it (lesson 04's feature cache), so two bases of another width, or one base whose
  weights changed, never share cached features or a saved phase.

Nothing here imports Keras at import time; reading the records is a JSON parse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from tlcourse.backend import is_container, leaf_layers, output_rank
from tlcourse.backend import keras_module as _keras
from tlcourse.errors import TLCourseError

RECORDS_FILE = "backbones.json"
"""The backbone records, in ``tlcourse/resources/``."""


@dataclass(frozen=True)
class WeightFile:
    """One ImageNet weights file of a backbone, as Keras publishes it (lesson 03)."""

    file: str
    """Keras' cache name, e.g. ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5``."""
    alpha: float | None
    """Width multiplier it belongs to (None for fixed-width families)."""
    size: int | None
    """Input size it was trained at, where Keras publishes one file per size (None: one file for every size)."""
    top: bool
    """True for the file with the 1000-class classifier (``include_top=True``)."""
    url: str | None
    """Where Keras publishes it; None for a file only a mirror holds."""
    hash: str | None
    """Checksum as Keras passes it to ``get_file`` (32 hex digits md5, 64 sha256); None where none is published."""
    converted: str | None = None
    """For a converted checkpoint, where it was converted from (it stands in last, after every published file)."""


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the course knows about one ImageNet backbone (lesson 03)."""

    name: str
    """Registry key, e.g. ``"mobilenet_v2"``."""
    family: str
    """Readable family name, e.g. ``"MobileNetV2"``."""
    constructor: str
    """Attribute of ``keras.applications`` that builds it, e.g. ``"MobileNetV2"``."""
    module: str
    """Submodule of ``keras.applications`` holding its ``preprocess_input``."""
    native_size: int
    """Input size the ImageNet weights were trained at."""
    input_range: tuple[float, float]
    """Value range the network expects at its input after preprocessing (approximate for ``caffe``)."""
    preprocessing: str
    """``"tf"`` (x/127.5 - 1), ``"caffe"`` (RGB->BGR, minus the ImageNet mean) or ``"none"`` (built in)."""
    top1: float
    """Published ImageNet top-1 accuracy in percent (at ``alpha`` 1.0 for width-scalable families)."""
    top5: float | None
    params_millions: float
    """Parameters with the 1000-class top, as published."""
    year: int
    citation: str
    """Where ``top1``/``top5`` come from."""
    default_unfreeze_from: str | int
    """Where fine-tuning starts by default: a layer/block name prefix, or a layer index (lesson 05)."""
    min_size: int = 32
    alphas: tuple[float, ...] = ()
    """Published width multipliers (empty for fixed-width families)."""
    default_alpha: float | None = None
    top1_by_alpha: dict[float, float] = field(default_factory=dict)
    """Published top-1 at 224 px for each width multiplier, where one exists."""
    keras_names: tuple[str, ...] = ()
    """Prefixes of the model name Keras gives it; used to recognise a backbone inside a model."""
    size_mb: float | None = None
    """Keras Applications table, "Size (MB)" with the classifier (None where the table has no row)."""
    depth: int | None = None
    """Keras Applications table, "Depth" (topological depth as Keras counts it)."""
    cpu_ms: float | None = None
    """Keras Applications table, "Time (ms) per inference step (CPU)" on Keras' own machine."""
    width_probe: tuple[str, int] | None = None
    """A layer whose filter count scales with the width, and its filters at width 1.0 (reads a built model's
    width without trusting its name)."""
    weights: tuple[WeightFile, ...] = ()
    """Every ImageNet weights file Keras publishes for it (and converted stand-ins a mirror may hold)."""

    def keras_constructor(self) -> Any:
        """The ``keras.applications`` function that builds this backbone."""
        return getattr(_keras().applications, self.constructor)

    def preprocess_input(self) -> Any:
        """Keras' ``preprocess_input`` for this family (NumPy/tensor function; it may modify NumPy input)."""
        return getattr(_keras().applications, self.module).preprocess_input

    def weight_files(self, alpha: float | None, *, top: bool = False) -> list[WeightFile]:
        """The weight files of width ``alpha`` (ignored for fixed-width families), with or without the top."""
        return [f for f in self.weights if f.top == top and (not self.alphas or f.alpha == alpha)]


def _spec(name: str, record: dict[str, Any]) -> BackboneSpec:
    published = record["published"]
    widths = record.get("widths", {})
    probe = (widths["probe_layer"], int(widths["probe_filters_at_1"])) if widths else None
    return BackboneSpec(
        name=name,
        family=record["family"],
        constructor=record["constructor"],
        module=record["module"],
        native_size=int(record["native_size"]),
        input_range=(float(record["input_range"][0]), float(record["input_range"][1])),
        preprocessing=record["preprocessing"],
        top1=published["top1"],
        top5=published["top5"],
        params_millions=published["params_millions"],
        year=int(published["year"]),
        citation=published["citation"],
        default_unfreeze_from=record["default_unfreeze_from"],
        min_size=int(record["min_size"]),
        alphas=tuple(float(a) for a in widths.get("alphas", ())),
        default_alpha=widths.get("default"),
        top1_by_alpha={float(k): v for k, v in published.get("top1_by_alpha", {}).items()},
        keras_names=tuple(record["keras_names"]),
        size_mb=published.get("size_mb"),
        depth=published.get("depth"),
        cpu_ms=published.get("cpu_ms"),
        width_probe=probe,
        weights=tuple(WeightFile(**entry) for entry in record["weights"]),
    )


def _read_records() -> dict[str, BackboneSpec]:
    text = resources.files("tlcourse").joinpath("resources", RECORDS_FILE).read_text(encoding="utf-8")
    return {name: _spec(name, record) for name, record in json.loads(text)["backbones"].items()}


BACKBONES: dict[str, BackboneSpec] = _read_records()
"""The course's backbones by registry name (lesson 03), read from ``resources/backbones.json``."""


def _plain(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` for ``name`` (``"mobilenet_v2"``, ``"MobileNetV2"``, ...) (lesson 03)."""
    key = _plain(name)
    for spec in BACKBONES.values():
        if key in (_plain(spec.name), spec.family.lower()):
            return spec
    raise TLCourseError(f"Unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}.")


def spec_of(model: Any) -> BackboneSpec | None:
    """Which registered backbone ``model`` is, from the name Keras gives it (lesson 03); None if none."""
    name = _plain(getattr(model, "name", ""))
    for spec in BACKBONES.values():
        if any(name.startswith(_plain(prefix)) for prefix in spec.keras_names):
            return spec
    return None


def base_of(model: Any) -> Any:
    """The pretrained base inside a classifier: its nested model with a spatial (4-D) output and the most
    weights; None when the classifier is one flat graph (lessons 04 and 06)."""
    nested = [
        layer for layer in model.layers if is_container(layer) and output_rank(layer) == 4 and layer.weights
    ]
    return max(nested, key=lambda layer: len(layer.weights)) if nested else None


# ------------------------------------------------------------------------------------------ identity


@dataclass(frozen=True)
class Identity:
    """What a model is, read from the object (lesson 04): equal identities compute the same function.

    ``architecture`` is the registry name of its base (or the base's Keras name when it is not registered),
    ``width`` its width multiplier (None for fixed-width families), ``input_size`` its input side in pixels,
    ``layers`` a digest of every leaf layer's class and configuration (names and trainable flags left out) and
    ``weights`` a SHA-256 over every weight array, in order, with its dtype and shape.
    """

    architecture: str
    width: float | None
    input_size: int | None
    layers: str
    weights: str

    @property
    def key(self) -> str:
        """A 32-hex-digit digest of all five fields: what a cache or resume key is built from."""
        text = json.dumps([self.architecture, self.width, self.input_size, self.layers, self.weights])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def describe(self) -> str:
        """One short line, e.g. ``mobilenet_v2 alpha 0.35 at 96 px, weights 3fa2c1d0``."""
        width = f" alpha {self.width:g}" if self.width is not None else ""
        size = f" at {self.input_size} px" if self.input_size else ""
        return f"{self.architecture}{width}{size}, weights {self.weights[:8]}"


def weights_digest(model: Any) -> str:
    """SHA-256 over every weight array of ``model`` in order (dtype, shape, bytes): changes when any weight does.

    About 0.05 s for MobileNetV2 alpha 1.0 (2.3 M values) on a laptop CPU; nothing is copied beyond what
    reading a variable copies.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        values = np.ascontiguousarray(variable.numpy())
        digest.update(f"{values.dtype.str}{values.shape};".encode())
        digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()


def layers_digest(model: Any) -> str:
    """SHA-256 over the class and configuration of every leaf layer of ``model`` (names and trainable flags left
    out): a pooling, a preprocessing or an augmentation that differs gives another digest."""
    digest = hashlib.sha256()
    layers = leaf_layers(model) or [model]
    for layer in layers:
        try:
            config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
        except (NotImplementedError, TypeError, ValueError):  # a custom layer without a configuration
            config = {"weights": [list(w.shape) for w in layer.weights]}
        digest.update(type(layer).__name__.encode())
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _width(base: Any, spec: BackboneSpec | None) -> float | None:
    """The width multiplier of ``base``, read from the filters of the record's probe layer."""
    if spec is None or spec.width_probe is None:
        return None
    layer_name, filters_at_one = spec.width_probe
    try:
        filters = int(base.get_layer(layer_name).filters)
    except (ValueError, AttributeError):
        return None
    ratio = filters / filters_at_one
    return min(spec.alphas, key=lambda a: abs(a - ratio)) if spec.alphas else round(ratio, 2)


def identity(model: Any) -> Identity:
    """The :class:`Identity` of a backbone, or of a model built around one (a classifier, a feature extractor)
    (lesson 04). Reads the object only: a base built with ``keras.applications`` is known as well as one from
    :func:`tlcourse.models.build_backbone`.
    """
    base = model if spec_of(model) is not None else (base_of(model) or model)
    spec = spec_of(base)
    shape = tuple(base.input_shape) if hasattr(base, "input_shape") else ()
    size = shape[1] if len(shape) == 4 else None
    return Identity(
        architecture=spec.name if spec is not None else str(base.name),
        width=_width(base, spec),
        input_size=int(size) if size else None,
        layers=layers_digest(model),
        weights=weights_digest(model),
    )
