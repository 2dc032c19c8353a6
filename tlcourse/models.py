"""Building backbones and classifiers, compiling and freezing them (introduced in lessons 03-05).

- :func:`build_backbone` builds a registered backbone (:mod:`tlcourse.backbones`: its record says how) without
  its ImageNet classifier, with weights found by :mod:`tlcourse.assets` (mirror, Keras cache, download), random
  weights, or a file of yours.
- :func:`assemble` is the one graph builder: ``Input -> [augmentation] -> preprocessing -> base(training=False)
  -> [pooling] -> [head]``. :func:`build_classifier` (lesson 04), :func:`tlcourse.features.feature_extractor`,
  :func:`tlcourse.features.join_head`, the fast path, the from-scratch baseline and the ImageNet classifier all
  build their graph with it.
- :func:`compile_classifier`, :func:`freeze`, :func:`unfreeze_from`, :func:`unfreeze_top` and
  :func:`layer_index` support fine-tuning (lesson 05).

Pixel convention: classifiers take float images in [0, 255]; the backbone's own preprocessing is a layer
inside the model (:func:`preprocessing_layer`), never part of the dataset. The registry names
(:data:`BACKBONES`, :func:`get_spec`, :func:`spec_of`) are :mod:`tlcourse.backbones`' own. Keras is imported
inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse import assets, distribute, kerasprivate
from tlcourse.backbones import BACKBONES, BackboneSpec, get_spec, spec_of
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import walk_layers
from tlcourse.errors import AssetMissingError, TLCourseError

__all__ = [
    "BACKBONES",
    "FINE_TUNE_MAX_LEARNING_RATE",
    "assemble",
    "build_backbone",
    "build_classifier",
    "build_head",
    "compile_classifier",
    "freeze",
    "get_spec",
    "imagenet_weights",
    "is_batchnorm",
    "layer_index",
    "pooling_layer",
    "preprocessing_layer",
    "register_custom_objects",
    "spec_of",
    "trainable_signature",
    "unfreeze_from",
    "unfreeze_top",
]

FINE_TUNE_MAX_LEARNING_RATE = 1e-4
"""Above this, fine-tuning pretrained layers tends to destroy their features (Adam's default 1e-3 is the classic)."""


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
    return _preprocessing(get_spec(name), layer_name)


def _preprocessing(spec: BackboneSpec, layer_name: str | None = None) -> Any:
    keras = _keras()
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
      stands in (same weight shapes), its one-line notice is printed once per process and size (``verbose``).
    - ``"random"`` (or ``None``): no pretrained weights. With ``seed`` the initialisation runs after
      ``keras.utils.set_random_seed(seed)`` (which seeds Python/NumPy/TF globally), so two builds with the
      same seed are identical; without it the draw follows the caller's seeding (``seed_everything``).
    - a path to a weights file (``.weights.h5`` or a Keras ``.h5``).

    ``alpha`` is the width multiplier of the families that have one (the record's ``alphas``); other families
    ignore it. The model carries nothing but what Keras gives it: :func:`tlcourse.backbones.identity` reads
    its architecture, width, size and weights from the object itself.
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
    if isinstance(choice, str) and choice == "random":
        return model
    if isinstance(choice, str) and choice == "imagenet":
        resolved = assets.backbone_weights(spec.name, alpha=alpha, image_size=size, mirror=mirror)
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


def assemble(
    base: Any,
    head: Any | Sequence[Any] = (),
    *,
    pooling: str | None = "avg",
    augmentation: Any = None,
    training: bool | None = False,
    spec: BackboneSpec | None = None,
    name: str = "classifier",
) -> Any:
    """The one graph of the course: ``Input(raw [0, 255] pixels) -> [augmentation] -> preprocessing ->
    base(training=False) -> [pooling] -> [head]`` (lesson 04 writes it out in Keras).

    ``head`` is one layer or model (called as a whole, its layers reused) or a sequence of layers applied in
    order; empty for a feature extractor. ``pooling=None`` keeps the feature map. ``training=False`` records the
    base's call in inference mode (the transfer-learning recipe); ``training=None`` leaves the mode to ``fit``
    (the from-scratch baseline, whose BatchNorm must learn). The preprocessing is the record's for ``base``
    (:func:`tlcourse.backbones.spec_of`); ``spec`` names it for a part of a backbone (the fast path's bottom).
    """
    keras = _keras()
    spec = spec or spec_of(base)
    if spec is None:
        raise TLCourseError(
            f"Cannot tell which preprocessing the base {getattr(base, 'name', base)!r} needs: build it with "
            f"tlcourse.models.build_backbone or keras.applications (one of {', '.join(BACKBONES)}), keeping "
            "the name Keras gives it."
        )
    inputs = keras.Input(tuple(base.input_shape[1:]), name="image")
    x = inputs if augmentation is None else augmentation(inputs)
    x = _preprocessing(spec)(x)
    x = base(x) if training is None else base(x, training=training)
    pool = pooling_layer(pooling)
    if pool is not None:
        x = pool(x)
    for layer in [head] if callable(head) else head:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def build_classifier(
    backbone: Any,
    num_classes: int,
    *,
    pooling: str = "avg",
    dropout: float = 0.2,
    augmentation: Any = None,
    binary: bool = False,
    name: str = "classifier",
) -> Any:
    """Raw pixels in, logits out: ``Input -> [augmentation] -> preprocessing -> backbone(training=False) ->
    pooling -> dropout -> Dense`` (lesson 04), built by :func:`assemble`.

    The backbone is called with ``training=False`` (the Keras transfer-learning guide's recommendation), so
    direct calls such as ``model(x)`` run it in inference mode. In Keras 3, ``fit`` overrides that flag for
    nested models, so fine-tuning also keeps BatchNorm layers frozen (:func:`unfreeze_top`).
    ``pooling`` is ``"avg"``, ``"max"`` or ``"flatten"``. The Dense layer has ``num_classes`` logits, or one
    logit with ``binary=True`` (then compile with binary cross-entropy; :func:`compile_classifier` picks the
    loss from the output size). The preprocessing follows the backbone's record, recognised from the object.
    """
    keras = _keras()
    units = _output_units(num_classes, binary)
    head = [keras.layers.Dropout(float(dropout), name="dropout")] if dropout else []
    head.append(keras.layers.Dense(units, name="logits"))
    return assemble(backbone, head, pooling=pooling, augmentation=augmentation, name=name)


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


def trainable_signature(model: Any) -> str:
    """A digest of every layer's ``trainable`` flag, recorded at compile time so that
    :func:`tlcourse.diagnose.trainable_report` can tell whether ``trainable`` changed since (lesson 05)."""
    state = "".join(f"{id(layer)}:{int(layer.trainable)};" for layer in walk_layers(model, include_self=True))
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
    checks the output size). The trainable state at this moment is recorded, so
    :func:`tlcourse.diagnose.trainable_report` can tell whether ``trainable`` changed afterwards (then the model
    must be compiled again). Refuses, in one line, a model built outside the active distribution strategy's
    scope. Returns the model.
    """
    keras = _keras()
    distribute.require_built_in_scope(model, "compile")
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
    kerasprivate.mark_compiled(model, trainable_signature(model))
    return model


# ------------------------------------------------------------------------------------------ freezing


def is_batchnorm(layer: Any) -> bool:
    """Whether ``layer`` is a Keras BatchNormalization layer (lesson 05 keeps these frozen)."""
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

    ``where`` is an index (``100``, a NumPy integer too; negative counts from the top; ``len(layers)``
    unfreezes nothing), a numeric string (``"100"``), an exact layer name (``"block_13_expand"``) or a block
    prefix (``"block_13"``: the first layer whose name starts with ``block_13_``, else with ``block_13``). The one
    resolver that :func:`unfreeze_from`, the fast path and the widgets use.
    """
    layers = backbone.layers
    if isinstance(where, np.integer):
        where = int(where)
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
        on = i >= index and not (freeze_batchnorm and is_batchnorm(layer))
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
