"""Compare ImageNet backbones and check MobileNetV2's arithmetic (introduced in lesson 03).

- :func:`model_summary_row` puts one backbone's size figures next to its published ImageNet accuracy:
  parameters (with and without the classifier), layers with weights, multiply-adds, the float32 size of its
  weights and, optionally, forward-pass latency measured on this machine.
- :func:`architecture` builds a *weightless* copy of a Keras model (shapes only, no memory for values), so
  even VGG16's 138 million parameters can be counted in a fraction of a second and a few megabytes.
- :func:`measure_latency` and :func:`backbone_latency` time forward passes (warm-up first, then the median).
- :func:`separable_conv_cost`, :func:`inverted_residual_cost` and :func:`count_macs` give exact parameter and
  multiply-add counts; :func:`mobilenet_width_resolution_grid` applies them to MobileNetV2's width multiplier
  and input size.
- :func:`relu_information_loss` is the small experiment behind MobileNetV2's *linear* bottlenecks.

The published figures (accuracy, Keras' file size, "depth" column and CPU timing) are each backbone's record,
:data:`tlcourse.backbones.BACKBONES`. Keras and TensorFlow are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tlcourse.backbones import get_spec
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import leaf_layers
from tlcourse.config import quiet_tensorflow
from tlcourse.errors import TLCourseError

# ----------------------------------------------------------------------------------- weightless models


@contextlib.contextmanager
def weightless() -> Iterator[None]:
    """Build Keras models inside this block with shapes but no weight values (lesson 03).

    Uses ``keras.StatelessScope(initialize_variables=False)``: layers create their variables' shapes, so
    ``count_params()``, layer output shapes and :func:`count_macs` work, but no memory is spent on values and
    nothing is initialised. Such a model is for counting only: never call it or train it. Call
    ``keras.backend.clear_session()`` afterwards to drop Keras' list of the uninitialised variables.
    """
    keras = _keras()
    with keras.StatelessScope(initialize_variables=False):
        yield


def _constructor_kwargs(
    spec: Any, *, include_top: bool, image_size: int | None, alpha: float | None
) -> dict[str, Any]:
    size = int(image_size or spec.native_size)
    if include_top and size != spec.native_size:
        raise TLCourseError(
            f"{spec.family} with its ImageNet classifier takes {spec.native_size} px images only; "
            f"got {size}. Use include_top=False for other sizes."
        )
    kwargs: dict[str, Any] = {"weights": None, "include_top": include_top, "input_shape": (size, size, 3)}
    if spec.alphas:
        kwargs["alpha"] = 1.0 if alpha is None else float(alpha)
    return kwargs


def architecture(
    name: str,
    *,
    include_top: bool = True,
    image_size: int | None = None,
    alpha: float | None = None,
) -> Any:
    """A weightless Keras model of backbone ``name`` from :data:`tlcourse.backbones.BACKBONES` (lesson 03).

    ``include_top=True`` keeps the 1000-class ImageNet classifier (the published parameter counts include
    it) and needs the native input size; ``image_size`` defaults to the native size. ``alpha`` is the width
    multiplier for MobileNetV2/MobileNetV3Small (default 1.0, the width of the published figures). See :func:`weightless`: count with
    it, never call it.
    """
    spec = get_spec(name)
    kwargs = _constructor_kwargs(spec, include_top=include_top, image_size=image_size, alpha=alpha)
    with weightless():
        model = spec.keras_constructor()(**kwargs)
    return model


def _release(keras: Any) -> None:
    """Forget Keras' global state and collect garbage, then give freed heap pages back to the system."""
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    with contextlib.suppress(Exception):  # glibc only; elsewhere the allocator keeps its own policy
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


# ----------------------------------------------------------------------------------------------- counting


def _kernels(layer: Any) -> list[Any]:
    """The multiply-accumulate weight tensors of a layer: a conv/dense kernel, or a separable conv's two."""
    kernels = [getattr(layer, attr, None) for attr in ("depthwise_kernel", "pointwise_kernel")]
    kernels = [k for k in kernels if k is not None]
    if not kernels and getattr(layer, "kernel", None) is not None:
        kernels = [layer.kernel]
    return kernels


def weight_layer_count(model: Any) -> int:
    """How many layers multiply by learned weights: convolutions (incl. depthwise) and dense layers (lesson 03).

    This is the sense of the "16" in VGG16 (13 convolutions + 3 dense layers). BatchNorm, activations,
    pooling and additions are not counted.
    """
    return sum(1 for layer in leaf_layers(model) if _kernels(layer))


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one forward pass of one image, from a walk over the layers (lesson 03).

    For every convolution, depthwise convolution and dense layer: (output positions) x (kernel size), where
    the kernel size ``kh*kw*c_in*c_out`` (``kh*kw*c_in*multiplier`` for a depthwise one) is exactly the
    multiply-adds each output position needs. Separable convolutions count both kernels. Bias additions,
    BatchNorm, activations, pooling and element-wise layers are not counted (they are small in comparison).
    Works on a :func:`weightless` model.
    """
    total = 0
    for layer in leaf_layers(model):
        kernels = _kernels(layer)
        if not kernels:
            continue
        shape = tuple(layer.output.shape)
        positions = math.prod(int(d) for d in shape[1:-1]) if len(shape) > 2 else 1
        total += sum(positions * math.prod(int(d) for d in k.shape) for k in kernels)
    return int(total)


# ------------------------------------------------------------------------------------------------ latency


@dataclass(frozen=True)
class Latency:
    """Timed forward passes of one batch size (lesson 03)."""

    batch_size: int
    image_size: int
    times_ms: tuple[float, ...]
    """Every timed pass, in milliseconds (warm-up passes excluded)."""

    @property
    def median_ms(self) -> float:
        """Median time of one forward pass of the whole batch."""
        return float(statistics.median(self.times_ms))

    @property
    def per_image_ms(self) -> float:
        """Median time divided by the batch size."""
        return self.median_ms / self.batch_size

    @property
    def images_per_second(self) -> float:
        """Throughput implied by the median."""
        return 1000.0 * self.batch_size / self.median_ms


def forward_function(model: Any) -> Any:
    """A ``tf.function`` running ``model(x, training=False)`` for any batch size, traced once (lesson 03)."""
    quiet_tensorflow()
    import tensorflow as tf

    shape = [None, *(int(d) for d in model.input_shape[1:])]
    return tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)])


def measure_latency(
    model: Any,
    batch_size: int = 1,
    *,
    repeats: int = 5,
    warmup: int = 1,
    forward: Any | None = None,
    seed: int = 0,
) -> Latency:
    """Time ``repeats`` forward passes of a random batch through ``model`` after ``warmup`` passes (lesson 03).

    The first pass of a new function includes tracing and memory set-up, so it is run as warm-up and not
    timed. Pass ``forward`` (from :func:`forward_function`) to reuse one traced function for several batch
    sizes; then one warm-up in total is enough. Each timed pass waits for the result (``.numpy()``).
    """
    quiet_tensorflow()
    import tensorflow as tf

    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("batch_size and repeats must be at least 1, warmup at least 0.")
    forward = forward or forward_function(model)
    shape = [int(batch_size), *(int(d) for d in model.input_shape[1:])]
    batch = tf.random.stateless_uniform(shape, seed=[seed, 0], minval=-1.0, maxval=1.0)
    for _ in range(warmup):
        forward(batch).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(batch).numpy()
        times.append((time.perf_counter() - start) * 1000.0)
    return Latency(batch_size=int(batch_size), image_size=int(shape[1]), times_ms=tuple(times))


def _per_batch(value: int | Sequence[int], batch_sizes: Sequence[int], what: str) -> list[int]:
    values = [int(value)] * len(batch_sizes) if isinstance(value, int) else [int(v) for v in value]
    if len(values) != len(batch_sizes):
        raise ValueError(f"{what} needs one value, or one per batch size ({len(batch_sizes)}).")
    return values


def backbone_latency(
    name: str,
    *,
    image_size: int | None = None,
    alpha: float | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int | Sequence[int] = 5,
    warmup: int = 1,
) -> dict[int, Latency]:
    """Latency of backbone ``name`` (no classifier, random weights) for each batch size (lesson 03).

    The model is built with ``weights=None`` (nothing to download; timing does not depend on the values),
    traced once, warmed up with ``warmup`` passes of the first batch size, timed, then deleted and Keras'
    session cleared, so only one model is in memory at a time. ``repeats`` is one number or one per batch
    size (large batches of large models are slow: time them fewer times).
    """
    keras = _keras()
    spec = get_spec(name)
    counts = _per_batch(repeats, batch_sizes, "repeats")
    kwargs = _constructor_kwargs(spec, include_top=False, image_size=image_size, alpha=alpha)
    keras.utils.set_random_seed(0)
    model = spec.keras_constructor()(**kwargs)
    try:
        forward = forward_function(model)
        results = {}
        for index, (batch, count) in enumerate(zip(batch_sizes, counts, strict=True)):
            results[int(batch)] = measure_latency(
                model, batch, repeats=count, warmup=warmup if index == 0 else 0, forward=forward
            )
        return results
    finally:
        del model
        _release(keras)


# ------------------------------------------------------------------------------------------ summary rows


def model_summary_row(
    name: str,
    *,
    measure: bool = True,
    image_size: int | None = None,
    alpha: float | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int | Sequence[int] = 5,
    warmup: int = 1,
) -> dict[str, Any]:
    """One row of the backbone comparison table for ``name`` (lesson 03).

    Counted on weightless models (:func:`architecture`), so they cost no memory: ``params`` (with the
    1000-class classifier, as published), ``backbone_params`` (``include_top=False``, the part transfer
    learning reuses), ``weight_layers`` (:func:`weight_layer_count`), ``layers`` (every Keras layer),
    ``gmacs`` (:func:`count_macs` at the native size, with the classifier) and ``float32_mib`` (4 bytes per
    parameter). Published: ``top1``/``top5`` and ``citation`` from :data:`tlcourse.backbones.BACKBONES`;
    ``keras_size_mb``, ``keras_depth`` and ``keras_cpu_ms`` from the same record (None when the Keras table
    has no row). With ``measure=True`` it adds ``ms_batch_<b>`` (median ms per forward pass) and
    ``ms_per_image_batch_<b>`` from :func:`backbone_latency` at ``image_size`` (default native) for each
    batch size. Keras' session is cleared afterwards.
    """
    keras = _keras()
    spec = get_spec(name)
    try:
        with_top = architecture(spec.name, include_top=True, alpha=alpha)
        params = int(with_top.count_params())
        weight_layers = weight_layer_count(with_top)
        layers = len(leaf_layers(with_top))
        macs = count_macs(with_top)
        del with_top
        backbone_params = int(architecture(spec.name, include_top=False, alpha=alpha).count_params())
    finally:
        _release(keras)
    row: dict[str, Any] = {
        "name": spec.name,
        "family": spec.family,
        "year": spec.year,
        "native_size": spec.native_size,
        "params": params,
        "backbone_params": backbone_params,
        "weight_layers": weight_layers,
        "layers": layers,
        "keras_depth": spec.depth,
        "gmacs": macs / 1e9,
        "float32_mib": params * 4 / 2**20,
        "keras_size_mb": spec.size_mb,
        "top1": spec.top1,
        "top5": spec.top5,
        "keras_cpu_ms": spec.cpu_ms,
        "citation": spec.citation,
    }
    if measure:
        timed = backbone_latency(
            spec.name,
            image_size=image_size,
            alpha=alpha,
            batch_sizes=batch_sizes,
            repeats=repeats,
            warmup=warmup,
        )
        for batch, latency in timed.items():
            row[f"ms_batch_{batch}"] = latency.median_ms
            row[f"ms_per_image_batch_{batch}"] = latency.per_image_ms
        row["timed_size"] = next(iter(timed.values())).image_size
    return row


# --------------------------------------------------------------------------------- convolution arithmetic


def _output_side(side: int, kernel_size: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-side // stride)
    if padding == "valid":
        return (side - kernel_size) // stride + 1
    raise ValueError(f"padding must be 'same' or 'valid', not {padding!r}.")


@dataclass(frozen=True)
class ConvCost:
    """Parameters and multiply-accumulates of one layer for one image (lesson 03)."""

    name: str
    params: int
    macs: int
    output_shape: tuple[int, int, int]
    """(height, width, channels) of the layer's output."""


def conv_cost(
    h: int,
    w: int,
    c_in: int,
    c_out: int,
    k: int,
    *,
    stride: int = 1,
    padding: str = "same",
    use_bias: bool = False,
    name: str = "conv",
) -> ConvCost:
    """A standard ``k x k`` convolution on an ``h x w x c_in`` input (lesson 03).

    params = k*k*c_in*c_out (+ c_out biases); MACs = h_out*w_out*k*k*c_in*c_out.
    """
    ho, wo = _output_side(h, k, stride, padding), _output_side(w, k, stride, padding)
    params = k * k * c_in * c_out + (c_out if use_bias else 0)
    return ConvCost(name, params, ho * wo * k * k * c_in * c_out, (ho, wo, c_out))


def depthwise_cost(
    h: int,
    w: int,
    c_in: int,
    k: int,
    *,
    stride: int = 1,
    padding: str = "same",
    depth_multiplier: int = 1,
    use_bias: bool = False,
    name: str = "depthwise",
) -> ConvCost:
    """A depthwise ``k x k`` convolution: one filter per input channel, no mixing (lesson 03).

    params = k*k*c_in*m (+ c_in*m biases); MACs = h_out*w_out*k*k*c_in*m, with m the depth multiplier.
    """
    ho, wo = _output_side(h, k, stride, padding), _output_side(w, k, stride, padding)
    channels = c_in * depth_multiplier
    params = k * k * channels + (channels if use_bias else 0)
    return ConvCost(name, params, ho * wo * k * k * channels, (ho, wo, channels))


def pointwise_cost(
    h: int, w: int, c_in: int, c_out: int, *, use_bias: bool = False, name: str = "pointwise"
) -> ConvCost:
    """A ``1 x 1`` convolution that mixes channels at each position (lesson 03): c_in*c_out params, h*w*c_in*c_out MACs."""
    return conv_cost(h, w, c_in, c_out, 1, use_bias=use_bias, name=name)


@dataclass(frozen=True)
class SeparableCost:
    """A standard convolution next to the depthwise-separable one that replaces it (lesson 03)."""

    standard: ConvCost
    depthwise: ConvCost
    pointwise: ConvCost

    @property
    def params(self) -> int:
        """Parameters of depthwise + pointwise."""
        return self.depthwise.params + self.pointwise.params

    @property
    def macs(self) -> int:
        """Multiply-accumulates of depthwise + pointwise."""
        return self.depthwise.macs + self.pointwise.macs

    @property
    def param_ratio(self) -> float:
        """Separable params / standard params."""
        return self.params / self.standard.params

    @property
    def mac_ratio(self) -> float:
        """Separable MACs / standard MACs; without biases equal to ``1/c_out + 1/k**2``."""
        return self.macs / self.standard.macs

    def rows(self) -> list[dict[str, Any]]:
        """The three layers and the separable total as table rows."""
        parts = [self.standard, self.depthwise, self.pointwise]
        rows = [
            {"layer": p.name, "params": p.params, "macs": p.macs, "output": p.output_shape} for p in parts
        ]
        rows.append(
            {
                "layer": "separable total",
                "params": self.params,
                "macs": self.macs,
                "output": self.pointwise.output_shape,
            }
        )
        return rows


def separable_conv_cost(
    h: int,
    w: int,
    c_in: int,
    c_out: int,
    k: int,
    *,
    stride: int = 1,
    padding: str = "same",
    use_bias: bool = False,
) -> SeparableCost:
    """Compare a standard ``k x k`` convolution with a depthwise-separable one (lesson 03).

    Standard: k*k*c_in*c_out params, h'*w'*k*k*c_in*c_out MACs. Separable = depthwise ``k x k`` (stride on
    it) + pointwise ``1 x 1``: k*k*c_in + c_in*c_out params and h'*w'*(k*k*c_in + c_in*c_out) MACs, where
    h', w' are the output sides. Without biases both ratios are exactly 1/c_out + 1/k**2. ``use_bias`` adds
    biases to every layer, as separate Keras ``DepthwiseConv2D`` + ``Conv2D`` layers would; a Keras
    ``SeparableConv2D`` has only the pointwise biases.
    """
    standard = conv_cost(
        h, w, c_in, c_out, k, stride=stride, padding=padding, use_bias=use_bias, name=f"standard {k}x{k}"
    )
    depthwise = depthwise_cost(
        h, w, c_in, k, stride=stride, padding=padding, use_bias=use_bias, name=f"depthwise {k}x{k}"
    )
    ho, wo, _ = depthwise.output_shape
    pointwise = pointwise_cost(ho, wo, c_in, c_out, use_bias=use_bias, name="pointwise 1x1")
    return SeparableCost(standard, depthwise, pointwise)


@dataclass(frozen=True)
class BlockCost:
    """An inverted residual block's layers and totals (lesson 03)."""

    stages: tuple[ConvCost, ...]
    """expand 1x1 (absent when expansion is 1), depthwise kxk, project 1x1 (linear)."""
    batchnorm_params: int
    residual: bool
    """True when the block adds its input to its output (stride 1 and c_in == c_out)."""

    @property
    def params(self) -> int:
        """Convolution parameters plus BatchNorm's four per channel (gamma, beta, moving mean and variance)."""
        return sum(stage.params for stage in self.stages) + self.batchnorm_params

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the convolutions (BatchNorm, ReLU6 and the addition not counted)."""
        return sum(stage.macs for stage in self.stages)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the block's output."""
        return self.stages[-1].output_shape


def inverted_residual_cost(
    h: int,
    w: int,
    c_in: int,
    c_out: int,
    *,
    expansion: int = 6,
    stride: int = 1,
    k: int = 3,
    batchnorm: bool = True,
) -> BlockCost:
    """Cost of one MobileNetV2 inverted residual block on an ``h x w x c_in`` input (lesson 03).

    expand: 1x1 conv c_in -> t*c_in (+ BN, ReLU6), skipped when ``expansion`` t is 1; depthwise k x k with
    ``stride`` (+ BN, ReLU6); project: 1x1 conv t*c_in -> c_out (+ BN, **no activation**: the linear
    bottleneck). Convolutions have no biases (BatchNorm follows each), as in Keras' MobileNetV2. With
    ``batchnorm`` each BN adds 4 parameters per channel, as Keras' ``count_params`` counts them.
    """
    wide = c_in * expansion
    stages: list[ConvCost] = []
    if expansion != 1:
        stages.append(pointwise_cost(h, w, c_in, wide, name="expand 1x1"))
    stages.append(depthwise_cost(h, w, wide, k, stride=stride, name=f"depthwise {k}x{k}"))
    ho, wo, _ = stages[-1].output_shape
    stages.append(pointwise_cost(ho, wo, wide, c_out, name="project 1x1 (linear)"))
    bn = 4 * sum(stage.output_shape[-1] for stage in stages) if batchnorm else 0
    return BlockCost(tuple(stages), bn, residual=stride == 1 and c_in == c_out)


def block_layers(model: Any, prefix: str) -> list[dict[str, Any]]:
    """The layers of ``model`` whose names start with ``prefix`` (e.g. ``"block_1_"``), as table rows (lesson 03).

    Each row: layer name, Keras class, output shape (without the batch axis) and parameter count.
    """
    rows = []
    for layer in leaf_layers(model):
        if layer.name.startswith(prefix):
            shape = tuple(layer.output.shape)[1:]
            rows.append(
                {
                    "layer": layer.name,
                    "type": type(layer).__name__,
                    "output": shape,
                    "params": layer.count_params(),
                }
            )
    if not rows:
        raise TLCourseError(f"No layer of {model.name!r} starts with {prefix!r}.")
    return rows


# ---------------------------------------------------------------------------- width and resolution grid


def mobilenet_width_resolution_grid(
    alphas: Sequence[float],
    sizes: Sequence[int],
    *,
    measure: bool = True,
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
) -> list[dict[str, Any]]:
    """MobileNetV2 feature extractors (``include_top=False``) for every width ``alpha`` x input ``size`` (lesson 03).

    Each row: ``alpha``, ``size``, ``params``, ``mmacs`` (millions of multiply-accumulates per image, from
    :func:`count_macs` on a weightless model), ``published_top1`` (ImageNet top-1 of the full classifier at
    224 px for that width, from :data:`tlcourse.backbones.BACKBONES`; None at other sizes) and, with ``measure``,
    ``ms`` (median latency of a batch of ``batch_size``, random weights, one model in memory at a time).
    """
    keras = _keras()
    spec = get_spec("mobilenet_v2")
    cells = [(float(alpha), int(size)) for alpha in alphas for size in sizes]
    rows = []
    try:  # count every cell on weightless models first, then free them all at once
        for alpha, size in cells:
            skeleton = architecture("mobilenet_v2", include_top=False, image_size=size, alpha=alpha)
            rows.append(
                {
                    "alpha": alpha,
                    "size": size,
                    "params": int(skeleton.count_params()),
                    "mmacs": count_macs(skeleton) / 1e6,
                    "published_top1": spec.top1_by_alpha.get(alpha) if size == 224 else None,
                }
            )
            del skeleton
    finally:
        _release(keras)
    if measure:
        for row in rows:
            timed = backbone_latency(
                "mobilenet_v2",
                image_size=row["size"],
                alpha=row["alpha"],
                batch_sizes=(batch_size,),
                repeats=repeats,
                warmup=warmup,
            )
            row["ms"] = timed[int(batch_size)].median_ms
    return rows
