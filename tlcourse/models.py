"""Backbones, classifiers, freezing and a mistake checker (introduced in lessons 03–05).

- :data:`BACKBONES` describes the ImageNet backbones the course uses (lesson 03): their Keras constructor,
  native input size, the pixel range they expect, published ImageNet accuracy and where fine-tuning
  should start by default.
- :func:`build_backbone` builds one without its ImageNet classifier, with weights found by
  :mod:`tlcourse.assets` (mirror, Keras cache, download), random weights, or a file of yours.
- :func:`build_classifier` puts raw pixels in and logits out: ``[augmentation] -> preprocessing ->
  backbone(training=False) -> pooling -> dropout -> Dense`` (lesson 04).
- :func:`freeze`, :func:`unfreeze_top`, :func:`trainable_report` and :func:`check_mistakes` support
  fine-tuning (lesson 05): what is trainable, whether BatchNorm runs in inference mode, whether the model
  needs recompiling, and the classic errors explained in plain words.

Pixel convention: classifiers take float images in [0, 255]; the backbone's own preprocessing is a layer
inside the model (:func:`preprocessing_layer`), never part of the dataset. Keras is imported inside the
functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.config import quiet_tensorflow
from tlcourse.errors import AssetMissingError, TLCourseError

KERAS_TABLE = "Keras Applications table, https://keras.io/api/applications/ (single 224/299 px centre crop)"
SLIM_MOBILENET_TABLE = (
    "TF-slim MobileNet README, https://github.com/tensorflow/models/tree/master/research/slim/nets/mobilenet"
)
KERAS_MOBILENET_V3 = "Keras MobileNetV3 docs, https://keras.io/api/applications/mobilenet/ (checkpoint table)"

FINE_TUNE_MAX_LEARNING_RATE = 1e-4
"""Above this, fine-tuning pretrained layers tends to destroy their features (Adam's default 1e-3 is the classic)."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the course needs to know about one ImageNet backbone (lesson 03)."""

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

    def keras_constructor(self) -> Any:
        """The ``keras.applications`` function that builds this backbone."""
        quiet_tensorflow()
        import keras

        return getattr(keras.applications, self.constructor)

    def preprocess_input(self) -> Any:
        """Keras' ``preprocess_input`` for this family (NumPy/tensor function; it may modify NumPy input)."""
        quiet_tensorflow()
        import keras

        return getattr(keras.applications, self.module).preprocess_input


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        name="mobilenet_v2",
        family="MobileNetV2",
        constructor="MobileNetV2",
        module="mobilenet_v2",
        native_size=224,
        input_range=(-1.0, 1.0),
        preprocessing="tf",
        top1=71.3,
        top5=90.1,
        params_millions=3.5,
        year=2018,
        citation=f"{KERAS_TABLE}; per-alpha top-1 at 224 px: {SLIM_MOBILENET_TABLE}",
        # Blocks 13-16 and the last 1x1 conv: the lowest stride-32 stage. The TF transfer-learning tutorial
        # unfreezes from layer index 100 instead (inside block 11); unfreeze_from(backbone, 100) does that.
        default_unfreeze_from="block_13_expand",
        min_size=32,
        alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
        default_alpha=0.35,
        top1_by_alpha={0.35: 60.3, 0.5: 65.4, 0.75: 69.8, 1.0: 71.8, 1.3: 74.4, 1.4: 75.0},
        keras_names=("mobilenetv2",),
    ),
    "vgg16": BackboneSpec(
        name="vgg16",
        family="VGG16",
        constructor="VGG16",
        module="vgg16",
        native_size=224,
        input_range=(-123.68, 151.061),
        preprocessing="caffe",
        top1=71.3,
        top5=90.1,
        params_millions=138.4,
        year=2014,
        citation=KERAS_TABLE,
        default_unfreeze_from="block5",
        keras_names=("vgg16",),
    ),
    "resnet50": BackboneSpec(
        name="resnet50",
        family="ResNet50",
        constructor="ResNet50",
        module="resnet50",
        native_size=224,
        input_range=(-123.68, 151.061),
        preprocessing="caffe",
        top1=74.9,
        top5=92.1,
        params_millions=25.6,
        year=2015,
        citation=KERAS_TABLE,
        default_unfreeze_from="conv5",
        keras_names=("resnet50",),
    ),
    "inception_v3": BackboneSpec(
        name="inception_v3",
        family="InceptionV3",
        constructor="InceptionV3",
        module="inception_v3",
        native_size=299,
        input_range=(-1.0, 1.0),
        preprocessing="tf",
        top1=77.9,
        top5=93.7,
        params_millions=23.9,
        year=2015,
        citation=KERAS_TABLE,
        # The last two inception blocks (mixed9, mixed10) start after layer "mixed8" (index 248); their
        # layers have auto-generated names, so the boundary is an index.
        default_unfreeze_from=249,
        min_size=75,
        keras_names=("inception_v3",),
    ),
    "efficientnet_b0": BackboneSpec(
        name="efficientnet_b0",
        family="EfficientNetB0",
        constructor="EfficientNetB0",
        module="efficientnet",
        native_size=224,
        input_range=(0.0, 255.0),
        preprocessing="none",
        top1=77.1,
        top5=93.3,
        params_millions=5.3,
        year=2019,
        citation=KERAS_TABLE,
        default_unfreeze_from="block6a",
        keras_names=("efficientnetb0",),
    ),
    "mobilenet_v3_small": BackboneSpec(
        name="mobilenet_v3_small",
        family="MobileNetV3Small",
        constructor="MobileNetV3Small",
        module="mobilenet_v3",
        native_size=224,
        input_range=(0.0, 255.0),
        preprocessing="none",
        top1=68.1,
        top5=None,
        params_millions=2.9,
        year=2019,
        citation=KERAS_MOBILENET_V3,
        default_unfreeze_from="expanded_conv_8",
        alphas=(0.75, 1.0),
        default_alpha=1.0,
        top1_by_alpha={0.75: 65.4, 1.0: 68.1},
        keras_names=("mobilenetv3small",),
    ),
}


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` for ``name`` (``"mobilenet_v2"``, ``"MobileNetV2"``, ...) (lesson 03)."""
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    for spec in BACKBONES.values():
        if key in (spec.name.replace("_", ""), spec.family.lower()):
            return spec
    raise TLCourseError(f"Unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}.")


def spec_of(model: Any) -> BackboneSpec | None:
    """Recognise which registered backbone ``model`` is, from the name Keras gave it (lesson 03)."""
    explicit = getattr(model, "_tlcourse_backbone", None)
    if explicit in BACKBONES:
        return BACKBONES[explicit]
    name = "".join(ch for ch in str(getattr(model, "name", "")).lower() if ch.isalnum() or ch == ".")
    for spec in BACKBONES.values():
        if any(name.startswith(prefix) for prefix in spec.keras_names):
            return spec
    return None


def _keras() -> Any:
    quiet_tensorflow()
    import keras

    return keras


# ------------------------------------------------------------------------------------------ preprocessing


def _register(cls: type) -> type:
    return _keras().saving.register_keras_serializable(package="tlcourse")(cls)


def _caffe_layer_class() -> type:
    """Build (once per process, via the Keras registry) the serialisable caffe-preprocessing layer."""
    keras = _keras()
    registered = keras.saving.get_registered_object("tlcourse>CaffePreprocessing")
    if registered is not None:
        return registered

    class CaffePreprocessing(keras.layers.Layer):
        """RGB [0, 255] -> BGR minus the ImageNet channel means (VGG16 / ResNet50 preprocessing)."""

        BGR_MEAN = (103.939, 116.779, 123.68)

        def call(self, inputs: Any) -> Any:
            ops = keras.ops
            x = ops.cast(inputs, self.compute_dtype)
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(self.BGR_MEAN, dtype=self.compute_dtype)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    return _register(CaffePreprocessing)


def register_custom_objects() -> None:
    """Register the course's custom layers with Keras so saved models load in safe mode (lesson 08).

    Loading a ``.keras`` file that contains a VGG16/ResNet50 classifier needs this (or any
    :mod:`tlcourse.models` builder) to have run once in the process.
    """
    _caffe_layer_class()


def preprocessing_layer(name: str, *, layer_name: str | None = None) -> Any:
    """A Keras layer mapping raw [0, 255] pixels into backbone ``name``'s expected range (lesson 03).

    ``tf`` families (MobileNetV2, InceptionV3) get ``Rescaling(1/127.5, offset=-1)`` -> [-1, 1]; ``caffe``
    families (VGG16, ResNet50) get a small registered layer (RGB->BGR, minus the ImageNet mean); EfficientNet
    and MobileNetV3 rescale inside the network, so they get an ``Identity``. No ``Lambda`` layers: every
    choice serialises and loads back with ``keras.saving.load_model(..., safe_mode=True)``.
    """
    keras = _keras()
    spec = get_spec(name)
    layer_name = layer_name or f"preprocess_{spec.name}"
    if spec.preprocessing == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=layer_name)
    if spec.preprocessing == "caffe":
        return _caffe_layer_class()(name=layer_name)
    return keras.layers.Identity(name=layer_name)


# ------------------------------------------------------------------------------------------ backbones


def build_backbone(
    name: str = "mobilenet_v2",
    *,
    alpha: float | None = 0.35,
    image_size: int = 160,
    weights: str | os.PathLike[str] | None = "imagenet",
    mirror: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    verbose: bool = True,
) -> Any:
    """Build backbone ``name`` without its ImageNet classifier (``include_top=False``, no pooling) (lesson 03).

    The model expects **preprocessed** input (see :func:`preprocessing_layer`); :func:`build_classifier`
    adds that step. ``weights``:

    - ``"imagenet"``: the file found by :func:`tlcourse.assets.backbone_weights` (mirror, Keras cache, then
      download), loaded explicitly into a model built with ``weights=None``. When a different input size
      stands in (same weight shapes), its one-line notice is printed (once per process and size) and kept in
      ``model._tlcourse_notice``.
    - ``"random"`` (or ``None``): no pretrained weights. With ``seed`` the initialisation runs after
      ``keras.utils.set_random_seed(seed)`` (which seeds Python/NumPy/TF globally), so two builds with the
      same seed are identical; without it the draw follows the caller's seeding (``seed_everything``).
    - a path to a weights file (``.weights.h5`` or a Keras ``.h5``).

    ``alpha`` is the width multiplier of MobileNetV2 (0.35 ... 1.4) and MobileNetV3Small (0.75, 1.0); other
    families ignore it.
    """
    keras = _keras()
    spec = get_spec(name)
    size = int(image_size)
    if size < spec.min_size:
        raise TLCourseError(f"{spec.family} needs images of at least {spec.min_size} px; got {size}.")
    kwargs: dict[str, Any] = {"input_shape": (size, size, 3), "include_top": False, "weights": None}
    if spec.alphas:
        alpha = spec.default_alpha if alpha is None else float(alpha)
        kwargs["alpha"] = alpha
    else:
        alpha = None
    if spec.name == "mobilenet_v3_small":
        kwargs["include_preprocessing"] = True

    choice = "random" if weights is None else weights
    if isinstance(choice, str) and choice == "random" and seed is not None:
        keras.utils.set_random_seed(int(seed))
    model = spec.keras_constructor()(**kwargs)
    model._tlcourse_backbone = spec.name
    model._tlcourse_notice = None

    if isinstance(choice, str) and choice == "random":
        return model
    if isinstance(choice, str) and choice == "imagenet":
        from tlcourse import assets

        resolved = assets.backbone_weights(spec.name, alpha=alpha, image_size=size, mirror=mirror)
        if resolved.notice:
            model._tlcourse_notice = resolved.notice
            if verbose:
                assets.announce(resolved.notice)
        path = Path(resolved.path)
    else:
        path = Path(choice)
        if not path.is_file():
            raise TLCourseError(
                f"Weights file {path} does not exist. Pass weights='imagenet', 'random', or the path of a "
                "weights file saved with model.save_weights()."
            )
    try:
        model.load_weights(str(path))
    except Exception as error:  # Keras raises ValueError/KeyError/OSError for mismatched files
        raise TLCourseError(
            f"Could not load weights from {path.name} into {spec.family}"
            f"{f' alpha {alpha}' if alpha else ''}: {str(error).splitlines()[0][:200]}. Check that the file "
            "belongs to the same backbone and width (alpha)."
        ) from None
    return model


def imagenet_weights(
    backbone: str = "mobilenet_v2",
    *,
    alpha: float | None = None,
    image_size: int | None = None,
    mirror: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    download: bool = True,
) -> str | None:
    """The path of the ImageNet no-top weights for ``keras.applications.<Base>(..., weights=path)`` (lesson 04).

    Keras' ``weights="imagenet"`` looks only for its own file at the exact input size and downloads it when
    it is missing; offline (or at a size such as 160 px for which the mirror holds only the 224 px file, with the
    same weight shapes) pass this path instead. A stand-in file is announced with one short notice. When no
    file can be found and ``allow_random`` is true (the smoke profile), one clear notice says the weights are
    random and ``None`` is returned, so ``weights=None`` builds the base with random weights; otherwise
    :class:`~tlcourse.errors.AssetMissingError` says what is missing and how to get it.
    """
    from tlcourse import assets

    try:
        resolved = assets.backbone_weights(
            backbone, alpha=alpha, image_size=image_size, mirror=mirror, download=download
        )
    except AssetMissingError as error:
        if not allow_random:
            raise
        border = "!" * 78
        print(
            f"{border}\nWARNING: {error}\nUsing RANDOM weights: the accuracies below mean nothing.\n{border}"
        )
        return None
    assets.announce(resolved.notice)
    return str(resolved.path)


# ------------------------------------------------------------------------------------------ classifiers


def pooling_layer(pooling: str | None, name: str = "pool") -> Any:
    """The Keras layer for ``"avg"``, ``"max"`` or ``"flatten"`` pooling of a feature map; None for None (lesson 04)."""
    keras = _keras()
    if pooling in (None, "none"):
        return None
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=name)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=name)
    if pooling == "flatten":
        return keras.layers.Flatten(name=name)
    raise TLCourseError(f"Unknown pooling {pooling!r}: use 'avg', 'max' or 'flatten'.")


def _output_units(num_classes: int, binary: bool) -> int:
    if binary:
        if num_classes not in (1, 2):
            raise TLCourseError(f"binary=True needs 2 classes; got num_classes={num_classes}.")
        return 1
    if num_classes < 2:
        raise TLCourseError(f"A classifier needs at least 2 classes; got num_classes={num_classes}.")
    return int(num_classes)


def build_classifier(
    backbone: Any,
    num_classes: int,
    *,
    pooling: str = "avg",
    dropout: float = 0.2,
    augmentation: Any = None,
    binary: bool = False,
    backbone_name: str | None = None,
    name: str = "classifier",
) -> Any:
    """Raw pixels in, logits out: ``Input -> [augmentation] -> preprocessing -> backbone(training=False) ->
    pooling -> dropout -> Dense`` (lesson 04).

    The backbone is called with ``training=False`` (the Keras transfer-learning guide's recommendation), so
    direct calls such as ``model(x)`` run it in inference mode. In Keras 3, ``fit`` overrides that flag for
    nested models, so fine-tuning also keeps BatchNorm layers frozen (:func:`unfreeze_top`).
    ``pooling`` is ``"avg"``, ``"max"`` or ``"flatten"``. The Dense layer has ``num_classes`` logits, or one
    logit with ``binary=True`` (then compile with binary cross-entropy; :func:`compile_classifier` picks the
    loss from the output size). ``backbone_name`` picks the preprocessing when the backbone was not built by
    :func:`build_backbone` and its Keras name is not recognised.
    """
    keras = _keras()
    spec = get_spec(backbone_name) if backbone_name else spec_of(backbone)
    if spec is None:
        raise TLCourseError(
            f"Cannot tell which preprocessing backbone {getattr(backbone, 'name', backbone)!r} needs; pass "
            f"backbone_name= one of {', '.join(BACKBONES)}."
        )
    units = _output_units(num_classes, binary)
    inputs = keras.Input(tuple(backbone.input_shape[1:]), name="image")
    x = inputs
    if augmentation is not None:
        x = augmentation(x)
    x = preprocessing_layer(spec.name)(x)
    x = backbone(x, training=False)
    pool = pooling_layer(pooling)
    if pool is not None:
        x = pool(x)
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="dropout")(x)
    outputs = keras.layers.Dense(units, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def build_head(
    feature_shape: tuple[int, ...] | int,
    num_classes: int,
    *,
    dropout: float = 0.2,
    pooling: str | None = None,
    binary: bool = False,
    name: str = "head",
) -> Any:
    """A small model for cached features: ``Input(features) -> [pooling] -> dropout -> Dense`` (lesson 04).

    ``feature_shape`` is a pooled vector ``(D,)`` or the backbone's feature map ``(H, W, C)``; a feature map
    is pooled with ``pooling`` (default ``"avg"``). Outputs logits, like :func:`build_classifier`.
    """
    keras = _keras()
    shape = (int(feature_shape),) if isinstance(feature_shape, int) else tuple(int(d) for d in feature_shape)
    units = _output_units(num_classes, binary)
    inputs = keras.Input(shape, name="features")
    x = inputs
    if len(shape) == 3:
        x = pooling_layer(pooling or "avg")(x)
    elif pooling not in (None, "none"):
        raise TLCourseError(f"pooling={pooling!r} needs a feature map (H, W, C); got feature_shape={shape}.")
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="dropout")(x)
    outputs = keras.layers.Dense(units, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _trainable_signature(model: Any) -> str:
    state = "".join(f"{id(layer)}:{int(layer.trainable)};" for layer in model._flatten_layers())
    return hashlib.sha1(state.encode()).hexdigest()


def compile_classifier(
    model: Any,
    learning_rate: float = 1e-3,
    *,
    num_classes: int | None = None,
    optimizer: Any = None,
) -> Any:
    """Compile with Adam(``learning_rate``), cross-entropy on logits and accuracy (lesson 04).

    Sparse categorical cross-entropy for several logits, binary cross-entropy for one (``num_classes`` only
    checks the output size). The trainable state at this moment is recorded, so :func:`trainable_report`
    can tell whether ``trainable`` changed afterwards (then the model must be compiled again).
    Returns the model.
    """
    keras = _keras()
    units = int(model.output_shape[-1])
    if num_classes is not None and units not in (int(num_classes), 1):
        raise TLCourseError(f"The model outputs {units} logits but num_classes={num_classes}.")
    if units == 1:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"]
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(float(learning_rate)), loss=loss, metrics=metrics
    )
    model._tlcourse_compiled = f"{id(model.optimizer)}|{_trainable_signature(model)}"
    return model


# ------------------------------------------------------------------------------------------ freezing


def _is_batchnorm(layer: Any) -> bool:
    keras = _keras()
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze(model: Any) -> None:
    """Freeze every layer of ``model`` (``model.trainable = False``) (lesson 04).

    In Keras 3 a frozen BatchNormalization layer also runs in inference mode. Compile (again) afterwards.
    """
    model.trainable = False


def _content_layers(backbone: Any) -> list[Any]:
    keras = _keras()
    return [layer for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]


def layer_index(backbone: Any, where: int | str) -> int:
    """Index into ``backbone.layers`` of the first layer to unfreeze (lesson 05).

    ``where`` is an index (``100``; negative counts from the top; ``len(layers)`` unfreezes nothing), a
    numeric string (``"100"``), an exact layer name (``"block_13_expand"``) or a block prefix (``"block_13"``:
    the first layer whose name starts with ``block_13_``, else with ``block_13``). The one resolver that
    :func:`unfreeze_from`, :func:`tlcourse.train.resolve_layer` and the widgets use.
    """
    layers = backbone.layers
    if isinstance(where, bool) or not isinstance(where, int | str):
        raise TLCourseError(f"Unfreeze point must be a layer index or name; got {where!r}.")
    if isinstance(where, str) and where.strip().lstrip("-").isdigit():
        where = int(where.strip())
    if isinstance(where, int):
        index = where if where >= 0 else len(layers) + where
        if not 0 <= index <= len(layers):
            raise TLCourseError(f"Layer index {where} is outside 0..{len(layers)} for {backbone.name}.")
        return index
    names = [layer.name for layer in layers]
    for test in (
        lambda n: n == where,
        lambda n: n.startswith(where + "_") or n.startswith(where + "/"),
        lambda n: n.startswith(where),
    ):
        for i, layer_name in enumerate(names):
            if test(layer_name):
                return i
    raise TLCourseError(
        f"No layer named or starting with {where!r} in {backbone.name}; "
        f"e.g. {', '.join(names[len(names) // 2 : len(names) // 2 + 3])}."
    )


def unfreeze_from(backbone: Any, start: int | str, *, freeze_batchnorm: bool = True) -> int:
    """Make ``backbone.layers[start:]`` trainable and everything below frozen (lesson 05).

    ``start`` is a layer index (the TF tutorial's ``fine_tune_at = 100``) or a layer/block name prefix
    (``"block_13"``). Returns the number of layers made trainable. See :func:`unfreeze_top` for BatchNorm.
    """
    keras = _keras()
    index = layer_index(backbone, start)
    backbone.trainable = True
    count = 0
    for i, layer in enumerate(backbone.layers):
        on = i >= index and not (freeze_batchnorm and _is_batchnorm(layer))
        layer.trainable = on
        count += int(on and not isinstance(layer, keras.layers.InputLayer))
    return count


def unfreeze_top(backbone: Any, n: int | str, *, freeze_batchnorm: bool = True) -> int:
    """Unfreeze the top of a backbone for fine-tuning; everything below stays frozen (lesson 05).

    ``n`` is a number of layers counted from the top (``unfreeze_top(base, 30)``), or a layer/block name
    (prefix) to unfreeze from (``unfreeze_top(base, "block_13")``); ``"default"`` uses the registry's
    :attr:`BackboneSpec.default_unfreeze_from`. Returns the number of layers made trainable.

    BatchNorm: every BatchNorm layer must keep its ImageNet moving mean and variance while fine-tuning on a
    small dataset. The Keras transfer-learning guide does this by calling the base with ``training=False``
    (:func:`build_classifier` does, and it is what makes ``model(x)`` and tf.keras 2 behave). But in Keras 3
    a Functional model passes ``fit``'s ``training=True`` down through that recorded ``training=False``
    (keras-team/keras#20285; :func:`outer_training_overrides_nested` measures it), so a *trainable*
    BatchNorm layer would update its statistics anyway. Keras 3's other documented mechanism is reliable:
    a BatchNorm layer with ``trainable=False`` always runs in inference mode. So by default
    (``freeze_batchnorm=True``) BatchNorm layers above the boundary stay frozen, gamma and beta included.
    ``freeze_batchnorm=False`` makes them trainable like the TF tutorial does; :func:`trainable_report` and
    :func:`check_mistakes` then show that their statistics move. Either way, compile the model again.
    """
    if isinstance(n, str) and n == "default":
        spec = spec_of(backbone)
        if spec is None:
            raise TLCourseError(
                f"No default unfreeze point known for {backbone.name}; pass a layer count or name."
            )
        return unfreeze_from(backbone, spec.default_unfreeze_from, freeze_batchnorm=freeze_batchnorm)
    if isinstance(n, str):
        return unfreeze_from(backbone, n, freeze_batchnorm=freeze_batchnorm)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TLCourseError(f"unfreeze_top needs a layer count >= 0 or a layer name; got {n!r}.")
    content = _content_layers(backbone)
    n = min(n, len(content))
    index = len(backbone.layers) if n == 0 else backbone.layers.index(content[len(content) - n])
    return unfreeze_from(backbone, index, freeze_batchnorm=freeze_batchnorm)


# ------------------------------------------------------------------------------------------ graph walking


def _graph_calls(model: Any) -> list[tuple[Any, Any]] | None:
    """(layer, explicit ``training`` argument) for each call recorded in ``model``'s graph, or None.

    None means the model has no inspectable graph (a subclassed model).
    """
    keras = _keras()
    graph = model
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            return [(layer, None) for layer in model.layers]
    nodes_by_depth = getattr(graph, "_nodes_by_depth", None)
    if not isinstance(nodes_by_depth, dict):
        return None
    calls = []
    for depth in sorted(nodes_by_depth, reverse=True):  # inputs first
        for node in nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            training = node.arguments.kwargs.get("training") if node.arguments is not None else None
            calls.append((op, training))
    return calls


@dataclass
class _LayerMode:
    layer: Any
    path: str
    training: Any
    """Effective ``training`` value while ``fit`` runs: False, True, or None (unknown / left to the caller)."""
    explicit: Any = None
    """The ``training`` argument recorded where this layer is called in its parent's graph."""


@functools.lru_cache(maxsize=1)
def outer_training_overrides_nested() -> bool:
    """True when this Keras passes ``fit``'s ``training=True`` through a recorded ``base(x, training=False)``.

    Keras 3's Functional models inject the outer call's ``training`` value into every nested call, replacing
    the value recorded in the graph (keras-team/keras#20285); Keras 2 / tf.keras kept the recorded value.
    Measured once per process on a two-layer model, so the checks follow the installed Keras (lesson 05).
    """
    keras = _keras()
    inner_in = keras.Input((2,))
    norm = keras.layers.BatchNormalization(momentum=0.0)
    inner = keras.Model(inner_in, norm(inner_in))
    outer_in = keras.Input((2,))
    outer = keras.Model(outer_in, inner(outer_in, training=False))
    outer(np.full((4, 2), 5.0, dtype="float32"), training=True)
    return not np.allclose(np.asarray(norm.moving_mean), 0.0)


def _effective(explicit: Any, inherited: Any) -> Any:
    if explicit is None:
        return inherited
    if inherited is not None and outer_training_overrides_nested():
        return inherited
    return bool(explicit)


def _walk(model: Any, inherited: Any = True, prefix: str = "") -> Iterator[_LayerMode]:
    """Every layer of ``model`` (containers too) with the ``training`` value it gets while ``fit`` runs."""
    calls = _graph_calls(model)
    if calls is None:
        for layer in model._flatten_layers(include_self=False, recursive=True):
            yield _LayerMode(layer, prefix + layer.name, None if inherited is True else inherited)
        return
    seen: set[int] = set()
    for layer, explicit in calls:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        effective = _effective(explicit, inherited)
        yield _LayerMode(layer, prefix + layer.name, effective, explicit)
        if getattr(layer, "_layers", None):
            yield from _walk(layer, effective, prefix + layer.name + "/")


def _has_batchnorm(layer: Any) -> bool:
    return any(_is_batchnorm(sub) for sub in layer._flatten_layers(include_self=True, recursive=True))


def _has_conv(layer: Any) -> bool:
    keras = _keras()
    conv = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    return any(isinstance(sub, conv) for sub in layer._flatten_layers(include_self=False, recursive=True))


def _backbones_in(model: Any) -> list[_LayerMode]:
    """Nested convolutional sub-models (the pretrained bases) with the training value they are called with."""
    keras = _keras()
    found = [mode for mode in _walk(model) if isinstance(mode.layer, keras.Model) and _has_conv(mode.layer)]
    return [m for m in found if not any(m.path.startswith(o.path + "/") for o in found if o is not m)]


def _backbone_layers(model: Any) -> list[Any]:
    """The layers that belong to the pretrained base: nested conv sub-models, else the model's conv stack."""
    bases = _backbones_in(model)
    if bases:
        return [
            layer
            for base in bases
            for layer in base.layer._flatten_layers(include_self=False, recursive=True)
        ]
    if _has_conv(model):
        keras = _keras()
        head_types = (keras.layers.Dense, keras.layers.Dropout)
        return [
            layer
            for layer in model._flatten_layers(include_self=False, recursive=True)
            if not isinstance(layer, head_types)
        ]
    return []


# ------------------------------------------------------------------------------------------ report


@dataclass
class BatchNormStatus:
    """One BatchNormalization layer: is it trainable, and does it run in inference mode during ``fit``?"""

    name: str
    trainable: bool
    inference_mode: bool
    reason: str


@dataclass
class TrainableReport:
    """What ``fit`` will train (lesson 05): parameter counts, layers, BatchNorm modes, recompile state."""

    model_name: str
    total_params: int
    trainable_params: int
    frozen_params: int
    """Non-trainable parameters: frozen weights plus BatchNorm moving statistics."""
    layers_with_weights: int
    trainable_layers: int
    batchnorm: list[BatchNormStatus]
    compiled: bool
    needs_recompile: bool
    """True when ``trainable`` flags changed since the last compile: ``fit`` would still train the old set."""
    learning_rate: float | None = None

    @property
    def recompiled(self) -> bool:
        """Compiled, and compiled after the last change of trainable flags."""
        return self.compiled and not self.needs_recompile

    @property
    def batchnorm_in_inference(self) -> bool:
        """True when every BatchNorm layer keeps its moving statistics during ``fit``."""
        return all(bn.inference_mode for bn in self.batchnorm)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready)."""
        return {
            "model_name": self.model_name,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "layers_with_weights": self.layers_with_weights,
            "trainable_layers": self.trainable_layers,
            "batchnorm": [vars(bn).copy() for bn in self.batchnorm],
            "batchnorm_in_inference": self.batchnorm_in_inference,
            "compiled": self.compiled,
            "needs_recompile": self.needs_recompile,
            "learning_rate": self.learning_rate,
        }

    def __str__(self) -> str:
        bn_inference = sum(bn.inference_mode for bn in self.batchnorm)
        bn_trainable = sum(bn.trainable for bn in self.batchnorm)
        rows = [
            ("model", self.model_name),
            ("trainable parameters", f"{self.trainable_params:,}"),
            ("frozen parameters", f"{self.frozen_params:,}"),
            ("total parameters", f"{self.total_params:,}"),
            ("trainable layers", f"{self.trainable_layers} of {self.layers_with_weights} with weights"),
            (
                "BatchNorm layers",
                f"{len(self.batchnorm)} ({bn_trainable} trainable, {bn_inference} in inference mode)",
            ),
            (
                "compiled",
                "no"
                if not self.compiled
                else ("yes, but RECOMPILE NEEDED" if self.needs_recompile else "yes"),
            ),
        ]
        if self.learning_rate is not None:
            rows.append(("learning rate", f"{self.learning_rate:g}"))
        width = max(len(key) for key, _ in rows)
        lines = [f"{key:<{width}}  {value}" for key, value in rows]
        training_bn = [bn for bn in self.batchnorm if not bn.inference_mode]
        if training_bn:
            names = ", ".join(bn.name for bn in training_bn[:5]) + (" ..." if len(training_bn) > 5 else "")
            lines.append(f"{'':<{width}}  BatchNorm in TRAINING mode during fit: {names}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _size(variables: list[Any]) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))


def _learning_rate(model: Any) -> float | None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        value = optimizer.learning_rate
        if callable(value):
            value = value(0)
        return float(np.asarray(value))
    except Exception:  # an exotic optimizer or schedule: say nothing rather than guess
        return None


def _needs_recompile(model: Any) -> tuple[bool, bool]:
    """(compiled, needs_recompile)."""
    compiled = bool(getattr(model, "compiled", False)) and getattr(model, "optimizer", None) is not None
    if not compiled:
        return False, False
    optimizer = model.optimizer
    record = getattr(model, "_tlcourse_compiled", None)
    if isinstance(record, str) and record.split("|", 1)[0] == str(id(optimizer)):
        if record.split("|", 1)[1] != _trainable_signature(model):
            return True, True
    else:
        state = getattr(model, "_compiled_trainable_state", None)  # Keras records this in compile()
        if isinstance(state, dict):
            for layer in model._flatten_layers():
                if layer not in state or state[layer] != layer.trainable:
                    return True, True
    if getattr(optimizer, "built", False):
        # After a fit the optimizer holds slots for the variables it was built with: a different
        # trainable set means the next fit would not train the newly unfrozen layers.
        built_with = {id(v) for v in getattr(optimizer, "_trainable_variables", [])}
        if built_with and built_with != {id(v) for v in model.trainable_variables}:
            return True, True
    return True, False


def _batchnorm_status(model: Any) -> list[BatchNormStatus]:
    statuses = []
    for mode in _walk(model):
        if not _is_batchnorm(mode.layer):
            continue
        layer = mode.layer
        if not layer.trainable:
            inference, reason = True, "frozen (trainable=False): always uses its moving statistics"
        elif mode.training is False:
            inference, reason = True, "called with training=False"
        elif mode.training is None:
            inference, reason = False, "trainable; its caller decides the mode (use trainable=False)"
        elif _called_with_false(model, mode.path):
            inference, reason = False, "trainable: fit's training=True overrides training=False in Keras 3"
        else:
            inference, reason = False, "trainable and run in training mode: moving statistics update"
        statuses.append(BatchNormStatus(mode.path, bool(layer.trainable), inference, reason))
    return statuses


def _called_with_false(model: Any, path: str) -> bool:
    """Whether some container on ``path`` was called with an explicit ``training=False``."""
    prefixes = {path.rsplit("/", i)[0] for i in range(1, path.count("/") + 1)}
    return any(mode.explicit is False and mode.path in prefixes for mode in _walk(model))


def trainable_report(model: Any) -> TrainableReport:
    """Trainable vs frozen parameters, BatchNorm modes and whether to recompile (lesson 05).

    Run it on the whole classifier (not just the backbone): whether a BatchNorm layer runs in inference
    mode depends on how the classifier calls the backbone. ``print(report)`` shows a table;
    ``report.to_dict()`` gives plain values.
    """
    trainable_ids = {id(v) for v in model.trainable_weights}
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if layer.weights and not getattr(layer, "_layers", None)
    ]
    trainable_layers = sum(1 for layer in layers if any(id(v) in trainable_ids for v in layer.weights))
    compiled, stale = _needs_recompile(model)
    return TrainableReport(
        model_name=str(model.name),
        total_params=int(model.count_params()),
        trainable_params=_size(model.trainable_weights),
        frozen_params=_size(model.non_trainable_weights),
        layers_with_weights=len(layers),
        trainable_layers=trainable_layers,
        batchnorm=_batchnorm_status(model),
        compiled=compiled,
        needs_recompile=stale,
        learning_rate=_learning_rate(model),
    )


# ------------------------------------------------------------------------------------------ mistakes


@dataclass
class Mistake:
    """A classic transfer-learning error found by :func:`check_mistakes`, explained in plain words."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


@dataclass
class WeightSnapshot:
    """Copies of a model's weights and which were trainable when taken (see :func:`snapshot_weights`)."""

    model_name: str
    paths: list[str]
    trainable: list[bool]
    values: list[np.ndarray]


def snapshot_weights(model: Any) -> WeightSnapshot:
    """Copy every weight of ``model`` and remember which were trainable, e.g. just before ``fit`` (lesson 05).

    Pass it to :func:`check_mistakes` as ``before_weights`` after training to prove frozen weights stayed put.
    """
    trainable_ids = {id(v) for v in model.trainable_weights}
    weights = list(model.weights)
    return WeightSnapshot(
        model_name=str(model.name),
        paths=[str(getattr(v, "path", v.name)) for v in weights],
        trainable=[id(v) in trainable_ids for v in weights],
        values=[np.array(v.numpy(), copy=True) for v in weights],
    )


def _changed_frozen(before: WeightSnapshot, after: WeightSnapshot | Any) -> list[str] | None:
    if not isinstance(after, WeightSnapshot):
        after = snapshot_weights(after)
    if len(before.values) != len(after.values):
        return None
    changed = []
    for path, was_trainable, old, new in zip(
        before.paths, before.trainable, before.values, after.values, strict=True
    ):
        if was_trainable or old.shape != new.shape:
            continue
        if not np.array_equal(old, new):
            changed.append(path)
    return changed


def _sample_array(sample_images: Any) -> np.ndarray:
    if hasattr(sample_images, "take") and hasattr(sample_images, "element_spec"):  # a tf.data.Dataset
        batch = next(iter(sample_images.take(1)))
        sample_images = batch[0] if isinstance(batch, tuple | list) else batch
    return np.asarray(sample_images, dtype="float32")


def _range_problem(observed: tuple[float, float], expected: tuple[float, float]) -> str | None:
    """Why ``observed`` values do not look like inputs in ``expected``, or None when they do."""
    lo, hi = expected
    mn, mx = observed
    span = hi - lo
    if mx > hi + 0.1 * span or mn < lo - 0.1 * span:
        return "outside"
    if mx - mn < 0.1 * span:
        return "squeezed"
    if mn >= lo + 0.49 * span or mx <= hi - 0.49 * span:
        return "half"
    return None


def _backbone_input_range(model: Any, base: Any, sample: np.ndarray) -> tuple[float, float] | None:
    """Min and max of the values that reach ``base`` inside ``model`` for ``sample``."""
    keras = _keras()
    if base is model:
        return float(sample.min()), float(sample.max())
    for node in base._inbound_nodes:
        tensors = node.arguments.keras_tensors if node.arguments is not None else []
        if not tensors:
            continue
        try:
            probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, tensors[0])
            values = np.asarray(probe(sample, training=False))
        except Exception:  # the node belongs to another model that shares this backbone
            continue
        return float(values.min()), float(values.max())
    return None


def _check_base_training(model: Any, sample: np.ndarray | None) -> list[Mistake]:
    if _graph_calls(model) is None:
        return [] if sample is None else _check_batchnorm_at_runtime(model, sample)
    bases = _backbones_in(model)
    if bases:
        for mode in bases:
            if mode.explicit is not False and _has_batchnorm(mode.layer):
                return [
                    Mistake(
                        "base_training_mode",
                        f"The pretrained base '{mode.layer.name}' is called without training=False, so its "
                        "BatchNorm layers run in training mode as soon as they are trainable: they re-estimate "
                        "their statistics from your small batches and wreck the ImageNet features. Build the "
                        "model with `x = base(x, training=False)` (tlcourse.models.build_classifier does) and "
                        "keep BatchNorm layers frozen when unfreezing (tlcourse.models.unfreeze_top does).",
                    )
                ]
        prefixes = tuple(mode.path + "/" for mode in bases)
        moving = [
            bn for bn in _batchnorm_status(model) if not bn.inference_mode and bn.name.startswith(prefixes)
        ]
    else:
        moving = [bn for bn in _batchnorm_status(model) if not bn.inference_mode] if _has_conv(model) else []
    if not moving:
        return []
    return [
        Mistake(
            "batchnorm_training_mode",
            f"{len(moving)} BatchNorm layers of the pretrained base (e.g. '{moving[0].name}') are trainable, so "
            "during fit they update their moving statistics from your batches. In Keras 3, fit's training=True "
            "reaches them even through `base(x, training=False)`. Keep them frozen: set each BatchNorm "
            "layer's trainable to False after unfreezing (tlcourse.models.unfreeze_top does), then recompile.",
        )
    ]


def _check_batchnorm_at_runtime(model: Any, sample: np.ndarray) -> list[Mistake]:
    """Run one training-mode forward pass and see whether BatchNorm moving statistics move (then undo it)."""
    bns = [
        layer for layer in model._flatten_layers(include_self=False, recursive=True) if _is_batchnorm(layer)
    ]
    if not bns:
        return []
    saved = [(v, np.array(v.numpy(), copy=True)) for bn in bns for v in (bn.moving_mean, bn.moving_variance)]
    try:
        model(sample, training=True)
        moved = [v for v, old in saved if not np.array_equal(old, v.numpy())]
    finally:
        for v, old in saved:
            v.assign(old)
    if not moved:
        return []
    return [
        Mistake(
            "base_training_mode",
            f"During training the model updates the BatchNorm statistics of its pretrained layers "
            f"({len(moved)} variables moved in one batch). Call the base with training=False (or freeze its "
            "BatchNorm layers) so they keep the ImageNet statistics.",
        )
    ]


def _check_preprocessing(model: Any, sample: np.ndarray) -> list[Mistake]:
    bases = _backbones_in(model)
    candidates = [(mode.layer, spec_of(mode.layer)) for mode in bases]
    if not candidates and spec_of(model) is not None:
        candidates = [(model, spec_of(model))]
    raw = (float(sample.min()), float(sample.max()))
    for base, spec in candidates:
        if spec is None:
            continue
        observed = _backbone_input_range(model, base, sample)
        if observed is None:
            continue
        problem = _range_problem(observed, spec.input_range)
        if problem is None:
            continue
        lo, hi = spec.input_range
        seen = f"[{observed[0]:.3g}, {observed[1]:.3g}]"
        if base is model:
            cause = (
                "Feed pixels through tlcourse.models.preprocessing_layer first, or use build_classifier, "
                "which takes raw [0, 255] pixels."
            )
        elif raw[1] <= 1.0 + 1e-6:
            cause = (
                f"Your images are in [{raw[0]:.3g}, {raw[1]:.3g}]: they were already scaled (or preprocessed) "
                "before reaching a model that expects raw [0, 255] pixels. Remove the extra scaling from the "
                "data pipeline."
            )
        else:
            cause = (
                "The preprocessing inside the model does not match this backbone: use "
                f"tlcourse.models.preprocessing_layer('{spec.name}') and feed raw [0, 255] pixels."
            )
        return [
            Mistake(
                "preprocessing_mismatch",
                f"{spec.family} expects inputs in about [{lo:.4g}, {hi:.4g}] but receives {seen}. {cause}",
            )
        ]
    return []


def _fine_tuning(model: Any) -> tuple[bool, int]:
    base_layers = _backbone_layers(model)
    trainable = [
        layer for layer in base_layers if layer.trainable_weights and not getattr(layer, "_layers", None)
    ]
    return bool(trainable), len(trainable)


def check_mistakes(
    model: Any,
    *,
    sample_images: Any = None,
    before_weights: WeightSnapshot | None = None,
    after_weights: WeightSnapshot | Any = None,
    learning_rate: float | None = None,
    phase: str | None = None,
) -> list[Mistake]:
    """Look for the classic transfer-learning mistakes; an empty list means none was found (lesson 05).

    Each rule stays quiet on a correct set-up:

    - ``base_training_mode``: the pretrained base is not called with ``training=False`` (found in the model's
      graph; for subclassed models by one training-mode pass over ``sample_images``, undone afterwards).
    - ``frozen_weights_changed``: with ``before_weights=snapshot_weights(model)`` taken before ``fit``,
      weights that were frozen then are different now (or in ``after_weights``).
    - ``preprocessing_mismatch``: with ``sample_images`` (a batch as the model will get it, or a dataset),
      the values reaching the backbone are not in its expected range, e.g. [0, 1] images fed to a model
      that scales [0, 255] pixels itself, or a [-1, 1] backbone given [0, 1] inputs. Pass several real images.
    - ``not_recompiled``: ``trainable`` changed since the last compile.
    - ``learning_rate_too_high``: backbone layers are trainable and the rate (``learning_rate`` or the
      compiled optimizer's) is above 1e-4 (Adam's default 1e-3 is the classic case).
    - ``base_not_frozen``: ``phase="head"`` but backbone layers are trainable.

    ``phase`` is ``"head"`` or ``"fine_tune"``; by default it is inferred from whether any backbone layer
    is trainable.
    """
    if phase not in (None, "head", "fine_tune"):
        raise TLCourseError(f"phase must be 'head' or 'fine_tune'; got {phase!r}.")
    mistakes: list[Mistake] = []
    sample = None if sample_images is None else _sample_array(sample_images)

    mistakes += _check_base_training(model, sample)

    if before_weights is not None:
        changed = _changed_frozen(before_weights, model if after_weights is None else after_weights)
        if changed is None:
            mistakes.append(
                Mistake(
                    "frozen_weights_changed",
                    "The weight snapshot does not match this model (different number of weights); take it "
                    "with snapshot_weights(model) on the same model just before fit.",
                )
            )
        elif changed:
            stats = [p for p in changed if "moving_" in p]
            why = (
                " Some are BatchNorm moving statistics: the base ran in training mode (call it with "
                "training=False)."
                if stats
                else " Trainable flags were probably changed without recompiling before fit."
            )
            mistakes.append(
                Mistake(
                    "frozen_weights_changed",
                    f"{len(changed)} weights that were frozen changed during training (e.g. '{changed[0]}')."
                    + why,
                )
            )

    if sample is not None:
        mistakes += _check_preprocessing(model, sample)

    report_compiled, stale = _needs_recompile(model)
    if report_compiled and stale:
        mistakes.append(
            Mistake(
                "not_recompiled",
                "Layers were frozen or unfrozen after the model was compiled, so fit would still train the old "
                "set of weights. Call compile_classifier(model, ...) (or model.compile) again before fit.",
            )
        )

    base_trainable, count = _fine_tuning(model)
    if phase == "head" and base_trainable:
        mistakes.append(
            Mistake(
                "base_not_frozen",
                f"This is the head-training phase but {count} backbone layers are trainable: the large "
                "gradients of a new random head would wreck them. Call freeze(backbone) and recompile first.",
            )
        )
    rate = float(learning_rate) if learning_rate is not None else _learning_rate(model)
    fine_tune = phase == "fine_tune" or (phase is None and base_trainable)
    if fine_tune and base_trainable and rate is not None and rate > FINE_TUNE_MAX_LEARNING_RATE * (1 + 1e-6):
        mistakes.append(
            Mistake(
                "learning_rate_too_high",
                f"The learning rate {rate:g} is too high for fine-tuning {count} pretrained layers: large "
                "steps erase what they learned on ImageNet. Use 1e-5 to 1e-4 (a hundredth to a tenth of the "
                "head's 1e-3; at most 1e-4) and recompile.",
            )
        )
    return mistakes
