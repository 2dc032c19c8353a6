"""AlexNet in Keras, its local response normalisation, and per-layer parameter / multiply-add counts (lesson 02).

The network follows Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012: five convolutional layers (96, 256, 384, 384 and 256 filters, the first 11x11 with
stride 4), overlapping 3x3 max pooling with stride 2, local response normalisation (LRN) after the first two
convolutions, and three dense layers (4096, 4096, classes) with dropout 0.5 after the first two. The paper
split the network over two GPUs; ``two_towers=True`` reproduces that with grouped convolutions.

TensorFlow and Keras are imported only when a function needs them. The LRN layer class is created on first use
and registered with Keras (``tlcourse>LocalResponseNormalization``) so models that contain it load in safe
mode; ``tlcourse.alexnet.LocalResponseNormalization`` gives the class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tlcourse.backend import is_container, named_layers
from tlcourse.backend import keras_module as _keras
from tlcourse.errors import TLCourseError

# The paper's LRN constants (section 3.3): k, n, alpha, beta.
LRN_K = 2.0
LRN_SIZE = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75

# (name, filters, kernel, stride, padding, groups in the two-tower version, LRN+pool after it)
_CONV_SPEC = (
    ("conv1", 96, 11, 4, "valid", 1, "lrn_pool"),
    ("conv2", 256, 5, 1, "same", 2, "lrn_pool"),
    ("conv3", 384, 3, 1, "same", 1, None),
    ("conv4", 384, 3, 1, "same", 2, None),
    ("conv5", 256, 3, 1, "same", 2, "pool"),
)
_REGISTERED_NAME = "tlcourse>LocalResponseNormalization"


def _lrn_class() -> type:
    """Create (once per process, via the Keras registry) the serialisable LRN layer class."""
    keras = _keras()
    registered = keras.saving.get_registered_object(_REGISTERED_NAME)
    if registered is not None:
        return registered

    class LocalResponseNormalization(keras.layers.Layer):
        """Local response normalisation across channels, as in AlexNet (lesson 02).

        Each activation ``a`` in channel ``i`` is divided by
        ``(k + alpha * sum of a_j**2 over the size channels centred on i) ** beta``, so a channel that fires
        strongly damps its neighbours ("lateral inhibition"). Defaults are the paper's k=2, n=5,
        alpha=1e-4, beta=0.75. Works on channels-last tensors with the TensorFlow backend.
        """

        def __init__(
            self,
            size: int = LRN_SIZE,
            k: float = LRN_K,
            alpha: float = LRN_ALPHA,
            beta: float = LRN_BETA,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            if int(size) < 1 or int(size) % 2 == 0:
                raise ValueError(f"LRN size must be a positive odd number of channels, got {size}.")
            self.size = int(size)
            self.k = float(k)
            self.alpha = float(alpha)
            self.beta = float(beta)

        def call(self, inputs: Any) -> Any:
            import tensorflow as tf

            x = tf.cast(inputs, self.compute_dtype)
            return tf.nn.local_response_normalization(
                x, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha, beta=self.beta
            )

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            config.update({"size": self.size, "k": self.k, "alpha": self.alpha, "beta": self.beta})
            return config

    LocalResponseNormalization.__module__ = __name__
    return keras.saving.register_keras_serializable(package="tlcourse")(LocalResponseNormalization)


def __getattr__(name: str) -> Any:
    """``tlcourse.alexnet.LocalResponseNormalization`` builds (and registers) the layer class on first access."""
    if name == "LocalResponseNormalization":
        return _lrn_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_custom_objects() -> None:
    """Register this module's layers with Keras so saved AlexNets load in safe mode (lesson 02)."""
    _lrn_class()


def local_response_normalization(**kwargs: Any) -> Any:
    """A new LRN layer with the paper's constants unless overridden (``size``, ``k``, ``alpha``, ``beta``) (lesson 02)."""
    return _lrn_class()(**kwargs)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: str = "valid") -> int:
    """Spatial output size of a convolution or pooling window (lesson 02).

    ``valid``: ``floor((size - kernel) / stride) + 1``; ``same``: ``ceil(size / stride)``.
    """
    if padding == "same":
        return -(-size // stride)
    if padding != "valid":
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    if size < kernel:
        raise ValueError(f"A {kernel}-wide window does not fit in {size} pixels.")
    return (size - kernel) // stride + 1


def smallest_input_size() -> int:
    """The smallest square input AlexNet's layout accepts: 67 px, which leaves a 1x1 map after pool5 (lesson 02)."""
    size = 11
    while True:
        side = conv_output_size(size, 11, 4)
        ok = True
        for _ in range(3):  # pool1, pool2 (convolutions 2-5 keep the size: 'same' padding), pool5
            if side < 3:
                ok = False
                break
            side = conv_output_size(side, 3, 2)
        if ok:
            return size
        size += 1


def _check_input_size(size: int, what: str) -> None:
    smallest = smallest_input_size()
    if size < smallest:
        raise TLCourseError(
            f"{what} is {size} px, too small for AlexNet's 11x11/4 convolution and three 3x3/2 poolings: "
            f"use at least {smallest} px."
        )


def _alexnet_layers(
    x: Any, num_classes: int, *, width: Callable[[int], int], lrn: bool, grouped: bool, dropout: float
) -> Any:
    """AlexNet's five convolutions, LRN, overlapping pooling and three dense layers on ``x``; returns logits.

    ``width`` maps the paper's channel counts to the ones built (identity for the real network); ``grouped``
    uses the paper's two-GPU grouping in conv2, conv4 and conv5. Layer names are the paper's (conv1 ... fc8).
    """
    layers = _keras().layers
    for conv_name, filters, kernel, stride, padding, groups, after in _CONV_SPEC:
        x = layers.Conv2D(
            width(filters),
            kernel,
            strides=stride,
            padding=padding,
            groups=groups if grouped else 1,
            activation="relu",
            name=conv_name,
        )(x)
        suffix = conv_name[-1]
        if after == "lrn_pool" and lrn:
            x = local_response_normalization(name=f"lrn{suffix}")(x)
        if after in ("lrn_pool", "pool"):
            x = layers.MaxPooling2D(pool_size=3, strides=2, name=f"pool{suffix}")(x)
    x = layers.Flatten(name="flatten")(x)
    for index in (6, 7):
        x = layers.Dense(width(4096), activation="relu", name=f"fc{index}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    return layers.Dense(num_classes, name="fc8")(x)


def build_alexnet(
    input_shape: tuple[int, int, int] = (227, 227, 3),
    num_classes: int = 1000,
    *,
    lrn: bool = True,
    two_towers: bool = False,
    dropout: float = 0.5,
    name: str | None = None,
) -> Any:
    """The ImageNet AlexNet of Krizhevsky et al. (2012) as a Keras model, random weights (lesson 02).

    ``input_shape`` defaults to 227x227x3: the paper says 224, but only 227 gives its 55x55 first feature map.
    ``lrn`` keeps the local response normalisation after conv1 and conv2; ``two_towers`` mimics the two-GPU
    split with grouped convolutions (``groups=2``) in conv2, conv4 and conv5, the layers whose kernels only
    saw the half of the previous layer on their own GPU. The model ends in logits (no softmax).
    """
    _check_input_size(min(input_shape[0], input_shape[1]), "The input")
    keras = _keras()
    inputs = keras.Input(input_shape, name="image")
    outputs = _alexnet_layers(inputs, num_classes, width=int, lrn=lrn, grouped=two_towers, dropout=dropout)
    default_name = "alexnet_two_towers" if two_towers else "alexnet"
    return keras.Model(inputs, outputs, name=name or default_name)


def build_small_alexnet(
    input_size: int = 128,
    num_classes: int = 5,
    width_scale: float = 0.25,
    *,
    lrn: bool = True,
    dropout: float = 0.5,
    augment: bool = True,
    crop_fraction: float = 0.875,
    seed: int = 42,
    name: str = "small_alexnet",
) -> Any:
    """A narrow AlexNet for training from scratch on a few hundred photos (lesson 02).

    Same layout as :func:`build_alexnet` (11x11/4 first convolution, overlapping 3x3/2 pooling, LRN, two
    dropout dense layers) with every layer's width multiplied by ``width_scale``. The model takes raw
    [0, 255] pixels of ``input_size`` and rescales them itself. With ``augment`` it applies the paper's
    augmentation inside the model while training: a random ``crop_fraction`` crop and a horizontal flip
    (at inference the crop is the centre one).
    """
    keras = _keras()
    layers = keras.layers
    if not 0 < width_scale <= 1:
        raise ValueError(f"width_scale must be in (0, 1], got {width_scale}.")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}.")

    crop = max(1, round(input_size * crop_fraction)) if augment else input_size
    _check_input_size(crop, "The training crop" if augment else "The input")

    def width(channels: int) -> int:
        return max(8, round(channels * width_scale))

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if augment:
        x = layers.RandomCrop(crop, crop, seed=seed, name="random_crop")(x)
        x = layers.RandomFlip("horizontal", seed=seed + 1, name="random_flip")(x)
    outputs = _alexnet_layers(x, num_classes, width=width, lrn=lrn, grouped=False, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)


@dataclass(frozen=True)
class LayerRow:
    """One line of :func:`layer_table` (lesson 02)."""

    layer: str
    kind: str
    output_shape: tuple[int | None, ...]
    params: int
    macs: int
    """Multiply-adds for one image (convolutions and dense layers; 0 for the rest)."""
    activations: int
    """Values the layer outputs for one image."""


def _prod(values: Any) -> int:
    total = 1
    for value in values:
        total *= int(value)
    return total


def _output_shape(layer: Any) -> tuple[int | None, ...]:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        shape = layer.compute_output_shape(layer.input.shape)
    return tuple(None if dim is None else int(dim) for dim in shape)


def _macs(layer: Any, output_shape: tuple[int | None, ...]) -> int:
    """Multiply-adds of a Conv2D or Dense layer for one image, from its kernel shape and output shape."""
    keras = _keras()
    per_position = 0
    if (
        isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        and getattr(layer, "kernel", None) is not None
    ):
        kernel = tuple(int(d) for d in layer.kernel.shape)
        # Conv2D kernel (kh, kw, in/groups, out): each output value needs kh*kw*in/groups products.
        # Dense kernel (in, out): each output value needs `in` products.
        per_position = _prod(kernel[:-1])
    if not per_position:
        return 0
    return per_position * _prod(d for d in output_shape[1:] if d is not None)


def layer_table(model: Any) -> list[LayerRow]:
    """Per-layer output shape, parameters, multiply-adds and activations of a built model (lesson 02).

    Multiply-adds (MACs) are counted analytically for Conv2D (``out_h * out_w * out_c * kh * kw * in_c /
    groups``) and Dense (``in * out``) layers; pooling, normalisation and activations count as 0. Nested
    models are expanded with ``outer/inner`` names. The input layer is left out.
    """
    keras = _keras()
    rows: list[LayerRow] = []
    for path, layer in named_layers(model):
        if isinstance(layer, keras.layers.InputLayer) or is_container(layer):
            continue
        shape = _output_shape(layer)
        rows.append(
            LayerRow(
                layer=path,
                kind=type(layer).__name__,
                output_shape=shape,
                params=int(layer.count_params()),
                macs=_macs(layer, shape),
                activations=_prod(d for d in shape[1:] if d is not None),
            )
        )
    return rows


def _millions(value: int) -> str:
    return f"{value / 1e6:,.2f} M"


def format_layer_table(rows: list[LayerRow], *, only_weighted: bool = False) -> str:
    """A fixed-width text table of :func:`layer_table` rows with a total line (lesson 02).

    ``only_weighted`` keeps just the layers that have parameters.
    """
    shown = [row for row in rows if row.params or not only_weighted]
    name_width = max([len("layer"), *(len(row.layer) for row in shown)])
    header = f"{'layer':<{name_width}}  {'output shape':<16} {'parameters':>12} {'mult-adds':>12} {'activations':>12}"
    lines = [header, "-" * len(header)]
    for row in shown:
        shape = "x".join(str(d) for d in row.output_shape[1:])
        lines.append(
            f"{row.layer:<{name_width}}  {shape:<16} {row.params:>12,} {_millions(row.macs):>12} {row.activations:>12,}"
        )
    lines.append("-" * len(header))
    total_params = sum(row.params for row in rows)
    total_macs = sum(row.macs for row in rows)
    total_activations = sum(row.activations for row in rows if row.params)
    lines.append(
        f"{'total':<{name_width}}  {'':<16} {total_params:>12,} {_millions(total_macs):>12} {total_activations:>12,}"
    )
    lines.append("(activations total: outputs of the layers with parameters, i.e. the network's neurons)")
    return "\n".join(lines)


__all__ = [
    "LRN_ALPHA",
    "LRN_BETA",
    "LRN_K",
    "LRN_SIZE",
    "LayerRow",
    "build_alexnet",
    "build_small_alexnet",
    "smallest_input_size",
    "conv_output_size",
    "format_layer_table",
    "layer_table",
    "local_response_normalization",
    "register_custom_objects",
]
