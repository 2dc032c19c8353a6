"""The fast path's caching engine: tensors computed once and reused, every key read from the model itself
(lessons 04 and 05, asides; :mod:`tlcourse.fastpath` trains on them).

- :func:`pooled_features` runs the frozen feature extractor over the training set (pass 0 plain, then
  augmented passes) and the validation set, through :func:`tlcourse.features.cached_features`: on-disk files
  keyed by the extractor's :func:`~tlcourse.backbones.identity` and the data fingerprint.
- :func:`plan_boundary` decides, once, where fine-tuning cuts a base and whether the tensors crossing the cut
  fit in memory (:class:`BoundaryPlan`); :func:`boundary_cache` keeps them for every pass (:func:`cache_boundary`,
  :func:`boundary_tensors`, :func:`split_backbone`) in a :class:`BoundaryCache` whose ``key`` is derived from the
  base's identity, the data, the boundary and the passes: a base whose weights changed never reuses another's
  tensors. :func:`top_trainer` is the model that trains the top of the base on them.
- :func:`pass_sampler` feeds ``fit`` from cached passes: each epoch takes every example once, each from a
  randomly chosen pass.

:func:`head_inputs` and :func:`fine_tune_inputs` gather, for each phase of :mod:`tlcourse.fastpath`, everything
it trains on, in one call each.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcourse import data, distribute, features, kerasprivate, models
from tlcourse.backbones import Identity, identity, spec_of
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import tf_module as _tf
from tlcourse.errors import TLCourseError

MAX_CACHE_BYTES = 1 << 30
"""Largest boundary cache the fast path keeps in memory (1 GiB) before it trains the standard way instead."""

AUGMENTATION_SEED_OFFSET = 1000
"""Cached augmented passes use ``data.default_augmentation(seed + 1000)``: not the plain path's own draws."""


@dataclass
class BoundaryCache:
    """Tensors crossing the unfreeze boundary, for every cached pass (lesson 05).

    ``train`` holds one array per boundary tensor, shaped ``[passes, N, ...]`` (pass 0 is un-augmented), and
    ``train_labels`` is ``[passes, N]`` (a shuffled training set may visit examples in another order each pass);
    ``validation`` one array per boundary tensor shaped ``[M, ...]``. ``key`` (:attr:`BoundaryPlan.key`) says which
    base, data, boundary and passes they belong to.
    """

    train: list[np.ndarray]
    train_labels: np.ndarray
    validation: list[np.ndarray]
    validation_labels: np.ndarray
    layer_index: int
    layer_name: str
    seconds: float
    key: str = ""

    @property
    def nbytes(self) -> int:
        """Memory held by the cached tensors, in bytes."""
        return int(sum(a.nbytes for a in self.train) + sum(a.nbytes for a in self.validation))


@dataclass(frozen=True)
class BoundaryPlan:
    """Where fine-tuning cuts a base, planned once (lesson 05): the first layer above the cut (``index``,
    ``name``), whether the tensors crossing it are kept in memory (``cached``; ``note`` says why not) and the
    ``key`` a :class:`BoundaryCache` of this base, data, cut and passes carries."""

    index: int
    name: str
    cached: bool
    key: str
    note: str | None = None


def boundary_index(base: Any, where: int | str | None) -> int:
    """The layer index fine-tuning unfreezes from: ``where`` (an index or a layer/block name), else the base's
    record default, :attr:`~tlcourse.backbones.BackboneSpec.default_unfreeze_from` (lesson 05)."""
    if where is None:
        spec = spec_of(base)
        if spec is None:
            raise TLCourseError(
                f"No default unfreeze point is known for {base.name!r}: pass from_layer= (a layer index or name)."
            )
        where = spec.default_unfreeze_from
    index = models.layer_index(base, where)
    if index >= len(base.layers):
        raise TLCourseError(f"Layer {where} is outside the base, which has {len(base.layers)} layers.")
    return index


def plan_boundary(
    base: Any, splits: Any, where: int | str | None, *, passes: int, seed: int, who: Identity | None = None
) -> BoundaryPlan:
    """The :class:`BoundaryPlan` for cutting ``base`` at ``where`` (:func:`boundary_index`) on ``splits`` with
    ``1 + passes`` training passes; ``who`` is the base's identity when it was read already."""
    index = boundary_index(base, where)
    cached, note = index > 0, None
    if not cached:
        note = "whole backbone trained: standard path (nothing below the boundary to cache)"
    elif (needed := boundary_need(base, splits, index, passes)) > MAX_CACHE_BYTES:
        cached, note = (
            False,
            (
                f"boundary cache would need {needed / 2**20:.0f} MiB (> {MAX_CACHE_BYTES / 2**20:.0f} MiB): not "
                "kept, the standard path recomputes the base every step"
            ),
        )
    payload = [
        (who or identity(base)).key,
        getattr(splits, "fingerprint", None),
        index,
        int(passes),
        int(seed),
    ]
    key = hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()[:32]
    return BoundaryPlan(index, base.layers[index].name, cached, key, note)


def boundary_cache(
    base: Any, splits: Any, plan: BoundaryPlan, *, passes: int, seed: int, kept: BoundaryCache | None = None
) -> tuple[BoundaryCache, str]:
    """The boundary cache ``plan`` asks for: ``kept`` when its key is the plan's (the same base, weights, data,
    cut and passes), else computed now by :func:`cache_boundary`; with a note saying which."""
    if kept is not None and kept.key == plan.key:
        return (
            kept,
            f"boundary cache at {kept.layer_name} ({kept.nbytes / 2**20:.1f} MiB, {passes + 1} pass(es), kept from the head phase)",
        )
    made = cache_boundary(base, splits, plan.index, key=plan.key, augmented_passes=passes, seed=seed)
    return (
        made,
        f"boundary cache at {made.layer_name} ({made.nbytes / 2**20:.1f} MiB, {passes + 1} pass(es), computed)",
    )


def forward_function(model: Any, augmentation: Any | None = None) -> Any:
    """One traced ``model(x, training=False)`` (after ``augmentation`` when given), reused across passes."""
    tf = _tf()

    @tf.function(reduce_retracing=True)
    def forward(x: Any) -> Any:
        if augmentation is not None:
            x = augmentation(x, training=True)
        out = model(x, training=False)
        return out if isinstance(out, (list, tuple)) else [out]

    return forward


def predict_arrays(
    model: Any, dataset: Any, *, forward: Any | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Run ``model`` (training=False) over a dataset of (images, labels); return outputs and labels as numpy."""
    forward = forward or forward_function(model)
    chunks: list[list[np.ndarray]] = []
    labels: list[np.ndarray] = []
    for images, y in dataset:
        outputs = forward(images)
        chunks.append([o.numpy() for o in outputs])
        labels.append(np.asarray(y))
    if not chunks:
        raise TLCourseError("The dataset is empty: there are no images to compute features from.")
    arrays = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
    return arrays, np.concatenate(labels).astype("int32")


def pass_sampler(arrays: list[np.ndarray], labels: np.ndarray, batch_size: int, seed: int) -> Any:
    """A ``keras.utils.PyDataset`` over cached passes ``[P, N, ...]`` with labels ``[P, N]``: each epoch takes
    every row once, each from a randomly chosen pass (lesson 04's augmented passes)."""
    keras = _keras()

    class PassSampler(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.passes, self.count = arrays[0].shape[0], arrays[0].shape[1]
            self.on_epoch_end()

        def __len__(self) -> int:
            return math.ceil(self.count / batch_size)

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(self.count)
            self.which = self.rng.integers(0, self.passes, size=self.count)

        def __getitem__(self, index: int) -> Any:
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            passes = self.which[index * batch_size : (index + 1) * batch_size]
            xs = [a[passes, rows] for a in arrays]
            return (xs[0] if len(xs) == 1 else tuple(xs)), labels[passes, rows]

    return PassSampler()


# -------------------------------------------------------------------------------------- pooled features


def pooled_features(
    extractor: Any, splits: Any, *, passes: int, seed: int, cache_dir: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """``(x_train [P, N, D], y_train [P, N], x_val [M, D], y_val [M], from_disk)``: pass 0 plain, then
    ``passes`` augmented ones, through the on-disk cache of :func:`tlcourse.features.cached_features`."""
    train = features.cached_features(
        extractor,
        splits.train,
        data_fingerprint=splits.fingerprint,
        part="train",
        cache_dir=cache_dir,
        progress=False,
        augmented_passes=passes,
        augmentation=data.default_augmentation(seed + AUGMENTATION_SEED_OFFSET) if passes else None,
    )
    val = features.cached_features(
        extractor,
        splits.validation,
        data_fingerprint=splits.fingerprint,
        part="validation",
        cache_dir=cache_dir,
        progress=False,
    )
    x_train = [np.asarray(train.features)[None]]
    y_train = [np.asarray(train.labels).astype("int32")[None]]
    if passes and train.augmented_features is not None:
        x_train.append(np.asarray(train.augmented_features))
        y_train.append(np.asarray(train.augmented_labels).astype("int32"))
    return (
        np.concatenate(x_train),
        np.concatenate(y_train),
        np.asarray(val.features),
        np.asarray(val.labels).astype("int32"),
        train.from_cache and val.from_cache,
    )


# -------------------------------------------------------------------------------------- the boundary


def boundary_tensors(backbone: Any, index: int) -> list[Any]:
    """The symbolic tensors computed below layer ``index`` and used at or above it (lesson 05).

    In a plain chain that is one tensor; inside a residual block it is two (the block's input, still needed by
    the ``add``, and the branch's current value).
    """
    layers = backbone.layers
    position = {id(layer): i for i, layer in enumerate(layers)}
    found: dict[int, Any] = {}
    for layer in layers[index:]:
        for tensor, producer in kerasprivate.call_inputs(layer):
            if position.get(id(producer), index) < index and id(tensor) not in found:
                found[id(tensor)] = tensor
    if not found:  # index 0 / the input layer: the boundary is the input itself
        return list(backbone.inputs)
    return list(found.values())


def boundary_bytes(backbone: Any, index: int, examples: int, passes: int = 1) -> int:
    """Bytes needed to keep the boundary tensors of ``examples`` images for ``passes`` passes (lesson 05)."""
    per_example = sum(int(np.prod(t.shape[1:])) for t in boundary_tensors(backbone, index)) * 4
    return int(per_example * examples * passes)


def split_backbone(backbone: Any, index: int) -> tuple[Any, Any]:
    """Split ``backbone`` at layer ``index`` into (bottom, top) models that share its layers (lesson 05).

    ``bottom`` maps the backbone's (preprocessed) input to the boundary tensors, ``top`` maps them to the
    backbone's output; ``top(bottom(x))`` equals ``backbone(x)``, and training ``top`` trains the backbone.
    """
    keras = _keras()
    tensors = boundary_tensors(backbone, index)
    single = len(tensors) == 1
    inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
    bottom = keras.Model(inputs, tensors[0] if single else tensors, name="bottom")
    top = keras.Model(tensors[0] if single else tensors, backbone.outputs[0], name="top")
    return bottom, top


def cache_boundary(
    backbone: Any,
    splits: Any,
    index: int,
    *,
    key: str = "",
    augmented_passes: int = 0,
    seed: int = 42,
    with_features: bool = False,
) -> Any:
    """Run the frozen bottom of the backbone once per pass and keep the boundary tensors (lesson 05).

    Pass 0 is the plain training set, passes 1..K are augmented copies; validation is computed once. ``key``
    (:attr:`BoundaryPlan.key`) is kept with the tensors. With ``with_features=True`` the same run also finishes
    the forward pass (top + global average pooling) and returns ``(cache, (train_features [P, N, D],
    validation_features [M, D]))``.
    """
    keras = _keras()
    bottom, top = split_backbone(backbone, index)
    extractor = models.assemble(bottom, pooling=None, spec=spec_of(backbone), name="bottom_extractor")
    if with_features:
        outputs = extractor.outputs
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(
            top(outputs[0] if len(outputs) == 1 else outputs, training=False)
        )
        extractor = keras.Model(extractor.inputs, [*outputs, pooled], name="bottom_and_features")
    start = time.perf_counter()
    plain = forward_function(extractor)
    augmentation = data.default_augmentation(seed + AUGMENTATION_SEED_OFFSET) if augmented_passes else None
    augmented = forward_function(extractor, augmentation) if augmented_passes else None
    val, y_val = predict_arrays(extractor, splits.validation, forward=plain)
    per_pass: list[list[np.ndarray]] = []
    label_sets: list[np.ndarray] = []
    for p in range(augmented_passes + 1):
        # one augmentation layer for every pass: its random state moves on, so each pass differs
        arrays, labels = predict_arrays(extractor, splits.train, forward=plain if p == 0 else augmented)
        per_pass.append(arrays)
        label_sets.append(labels)
    train = [np.stack([arrays[i] for arrays in per_pass]) for i in range(len(per_pass[0]))]
    pooled: tuple[np.ndarray, np.ndarray] | None = None
    if with_features:
        pooled = (train.pop(), val.pop())
    cache = BoundaryCache(
        train=train,
        train_labels=np.stack(label_sets),
        validation=val,
        validation_labels=y_val,
        layer_index=index,
        layer_name=backbone.layers[index].name,
        seconds=time.perf_counter() - start,
        key=key,
    )
    return (cache, pooled) if with_features else cache


def boundary_need(backbone: Any, splits: Any, index: int, passes: int) -> int:
    """Bytes a boundary cache at layer ``index`` would need for ``1 + passes`` training passes and validation."""
    train_count = int(getattr(splits, "train_count", 0) or 0)
    val_count = int(getattr(splits, "validation_count", 0) or 0)
    return boundary_bytes(backbone, index, train_count, passes + 1) + boundary_bytes(
        backbone, index, val_count
    )


def top_trainer(base: Any, index: int, head: Any) -> Any:
    """Boundary tensors at layer ``index`` -> the top of ``base`` (inference-mode BatchNorm) -> pooling -> the
    head model (the base's and the head's own layers, so training it trains them)."""
    keras = _keras()
    _, top = split_backbone(base, index)
    inputs = [keras.Input(t.shape[1:]) for t in top.inputs]
    x = top(inputs[0] if len(inputs) == 1 else inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, head(x), name="top_trainer")


# ------------------------------------------------------------------------------------ what each phase gets


@dataclass
class PhaseInputs:
    """What one fast-path phase trains on: ``train`` (pooled features ``[P, N, D]`` with labels ``[P, N]``, a
    sampler over cached passes, or an image dataset) and ``validation`` (``(x, y)`` arrays or ``(dataset,)``),
    with the notes saying where they came from."""

    train: Any
    validation: tuple[Any, ...]
    notes: list[str]
    seconds: float
    boundary_cache: BoundaryCache | None = None
    plan: BoundaryPlan | None = None
    trainer: Any = None
    """For a boundary-cached fine-tune: the model that trains the top of the base on the cached tensors."""


def head_inputs(
    base: Any,
    splits: Any,
    *,
    who: Identity,
    boundary: int | str | None,
    passes: int,
    seed: int,
    batch_size: int,
    cache_dir: Any,
    need_features: bool = True,
) -> PhaseInputs:
    """The head phase's pooled features, ``train`` a :func:`pass_sampler` over ``[P, N, D]``: from one run of the
    base that also keeps the tensors at ``boundary`` (when it is given and they fit), else from the on-disk cache
    (:func:`pooled_features`). With ``need_features=False`` (a saved head is reused) only the boundary cache is
    made."""
    start = time.perf_counter()
    notes: list[str] = []
    plan = (
        None if boundary is None else plan_boundary(base, splits, boundary, passes=passes, seed=seed, who=who)
    )
    notes += [plan.note] if plan is not None and plan.note else []
    bcache, train, validation = None, None, (None, None)
    if plan is not None and plan.cached:
        bcache, (x_train, x_val) = cache_boundary(
            base, splits, plan.index, key=plan.key, augmented_passes=passes, seed=seed, with_features=True
        )
        notes.append(f"features and boundary tensors at {bcache.layer_name} from one run of the backbone")
        train = pass_sampler([x_train], bcache.train_labels, batch_size, seed)
        validation = (x_val, bcache.validation_labels)
    elif need_features:
        with distribute.current_scope():
            extractor = features.feature_extractor(base, pooling="avg")
        x_train, y_train, x_val, y_val, from_disk = pooled_features(
            extractor, splits, passes=passes, seed=seed, cache_dir=cache_dir
        )
        notes += ["features read from the cache"] if from_disk else []
        train, validation = pass_sampler([x_train], y_train, batch_size, seed), (x_val, y_val)
    notes += [f"{passes} cached augmented pass(es)"] if passes and need_features else []
    return PhaseInputs(
        train, validation, notes, time.perf_counter() - start, boundary_cache=bcache, plan=plan
    )


def fine_tune_inputs(
    base: Any,
    head: Any,
    splits: Any,
    where: int | str | None,
    *,
    passes: int,
    seed: int,
    batch_size: int,
    kept: BoundaryCache | None = None,
) -> PhaseInputs:
    """What fine-tuning from ``where`` trains on, planned once (:func:`plan_boundary`): cached passes of the
    boundary tensors (``kept`` when its key matches the plan's) with the :func:`top_trainer` that trains the top
    of the base and the head on them, or, when they do not fit, the images (augmented afresh every epoch when
    ``passes`` asks for augmentation) for the end-to-end model."""
    start = time.perf_counter()
    plan = plan_boundary(base, splits, where, passes=passes, seed=seed)
    notes = [plan.note] if plan.note else []
    if not plan.cached:
        images = (
            data.augment_dataset(splits.train, data.default_augmentation(seed)) if passes else splits.train
        )
        return PhaseInputs(images, (splits.validation,), notes, 0.0, plan=plan)
    bcache, note = boundary_cache(base, splits, plan, passes=passes, seed=seed, kept=kept)
    val_x = bcache.validation[0] if len(bcache.validation) == 1 else tuple(bcache.validation)
    with distribute.current_scope():
        trainer = top_trainer(base, plan.index, head)
    return PhaseInputs(
        pass_sampler(bcache.train, bcache.train_labels, batch_size, seed),
        (val_x, bcache.validation_labels),
        [*notes, note],
        0.0 if bcache is kept else time.perf_counter() - start,
        boundary_cache=bcache,
        plan=plan,
        trainer=trainer,
    )
