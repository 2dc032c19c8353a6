"""The opt-in fast path: cached features and boundary-cached fine-tuning (lessons 04 and 05, asides).

Lessons 04 and 05 show the plain version first, the Keras calls that :func:`tlcourse.train.fit_head` and
:func:`tlcourse.train.fine_tune` run on the model they are given. This module does the same training faster and
says so in its names; tests/test_fastpath.py proves it reaches the plain path's weights on the same batches:

- :func:`fit_head_fast` trains a new head on the frozen backbone's pooled features, computed once (plus cached
  augmented passes) and kept on disk by :func:`tlcourse.features.cached_features` (lesson 04, step 6).
- :func:`fine_tune_fast` fine-tunes on cached boundary activations (lesson 05's aside): the layers below the
  unfreeze boundary are frozen and their BatchNorm layers run in inference mode, so they compute a fixed
  function of the image; the frozen bottom runs once per cached pass (:func:`cache_boundary`, a
  :class:`BoundaryCache`) and only the top and the head are trained on the tensors that cross the boundary
  (:func:`boundary_tensors`, :func:`split_backbone`; same layer objects, so the end-to-end model carries the
  trained weights).

:func:`tlcourse.strategies.compare_strategies` (lesson 05's harness) and ``tlcourse train`` use this path.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse import resume
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import tf_module as _tf
from tlcourse.config import Profile, get_profile, seed_everything
from tlcourse.errors import TLCourseError
from tlcourse.train import (
    DEFAULT_FINE_TUNE_FROM,
    PhaseResult,
    architecture_key,
    augment_dataset,
    base_of,
    compile_model,
    default_augmentation,
    models_learning_rate,
    resolve_layer,
    set_trainable_from,
    strategy_scope,
    training_callbacks,
)

DEFAULT_MAX_CACHE_BYTES = 1 << 30
"""Largest boundary cache :func:`fine_tune_fast` keeps in memory (1 GiB) before falling back to the standard path."""


@dataclass
class BoundaryCache:
    """Tensors crossing the unfreeze boundary, for every cached pass (lesson 05).

    ``train`` holds one array per boundary tensor, shaped ``[passes, N, ...]`` (pass 0 is un-augmented), and
    ``train_labels`` is ``[passes, N]`` (a shuffled training set may visit examples in another order each pass);
    ``validation`` one array per boundary tensor shaped ``[M, ...]``.
    """

    train: list[np.ndarray]
    train_labels: np.ndarray
    validation: list[np.ndarray]
    validation_labels: np.ndarray
    layer_index: int
    layer_name: str
    seconds: float

    @property
    def nbytes(self) -> int:
        """Memory held by the cached tensors, in bytes."""
        return int(sum(a.nbytes for a in self.train) + sum(a.nbytes for a in self.validation))


def _forward_function(model: Any, augmentation: Any | None = None) -> Any:
    """One traced ``model(x, training=False)`` (after ``augmentation`` when given), reused across passes."""
    tf = _tf()

    @tf.function(reduce_retracing=True)
    def forward(x: Any) -> Any:
        if augmentation is not None:
            x = augmentation(x, training=True)
        out = model(x, training=False)
        return out if isinstance(out, (list, tuple)) else [out]

    return forward


def _predict_arrays(
    model: Any, dataset: Any, augmentation: Any | None = None, *, forward: Any | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Run ``model`` (training=False) over a dataset of (images, labels); return outputs and labels as numpy."""
    forward = forward or _forward_function(model, augmentation)
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


class _PassSampler:
    """Batches drawn from cached passes ``[P, N, ...]`` with labels ``[P, N]``: each epoch takes every row once,
    each from a randomly chosen pass."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # build a keras PyDataset subclass lazily
        keras = _keras()

        class Sampler(keras.utils.PyDataset):
            def __init__(
                self, arrays: list[np.ndarray], labels: np.ndarray, batch_size: int, seed: int
            ) -> None:
                super().__init__()
                self.arrays = arrays
                self.labels = labels
                self.batch_size = batch_size
                self.seed, self.clock = seed, resume.epoch_clock()  # pass clock to fit: resumed runs match
                self.passes = arrays[0].shape[0]
                self.count = arrays[0].shape[1]

            def __len__(self) -> int:
                return math.ceil(self.count / self.batch_size)

            def __getitem__(self, index: int) -> Any:
                if index == 0:  # an epoch's first batch: its order is drawn from (seed, epoch) alone
                    rng = np.random.default_rng([self.seed, self.clock.next_epoch()])
                    self.order = rng.permutation(self.count)
                    self.which = rng.integers(0, self.passes, size=self.count)
                rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
                passes = self.which[index * self.batch_size : (index + 1) * self.batch_size]
                xs = [a[passes, rows] for a in self.arrays]
                return (xs[0] if len(xs) == 1 else tuple(xs)), self.labels[passes, rows]

        return Sampler(*args, **kwargs)


# -------------------------------------------------------------------------------------- the boundary


def boundary_tensors(backbone: Any, index: int) -> list[Any]:
    """The symbolic tensors computed below layer ``index`` and used at or above it (lesson 05).

    In a plain chain that is one tensor; inside a residual block it is two (the block's input, still needed by
    the ``add``, and the branch's current value).
    """
    from tlcourse.diagnose import call_inputs

    layers = backbone.layers
    position = {id(layer): i for i, layer in enumerate(layers)}
    found: dict[int, Any] = {}
    for layer in layers[index:]:
        for tensor, producer in call_inputs(layer):
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


# ------------------------------------------------------------------------------------------ building


def _build_backbone(
    name: str, alpha: float, image_size: int, weights: str, mirror: Any
) -> tuple[Any, list[str]]:
    from tlcourse import models

    notes: list[str] = []
    backbone = models.build_backbone(name, alpha=alpha, image_size=image_size, weights=weights, mirror=mirror)
    notice = getattr(backbone, "_tlcourse_notice", None)
    if notice:
        notes.append(str(notice))
    return backbone, notes


def _name_of(backbone: Any, backbone_name: str | None = None) -> str:
    """The registry name of ``backbone``: from its tag (or Keras name), else ``backbone_name``."""
    from tlcourse import models

    spec = models.spec_of(backbone)
    if spec is not None:
        return spec.name
    if backbone_name:
        return models.get_spec(backbone_name).name
    raise TLCourseError(
        f"Cannot tell which backbone {getattr(backbone, 'name', backbone)!r} is; pass backbone_name=."
    )


def _phase_from_model(model: Any) -> PhaseResult:
    """A classifier ``Input -> preprocessing -> base -> pool -> ... -> logits`` as a :class:`PhaseResult`
    whose ``head`` maps pooled features to logits with the classifier's own head layers (no copies)."""
    keras = _keras()
    backbone = base_of(model)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if backbone is None or not pools:
        raise TLCourseError(
            "fine_tune_fast needs a classifier built as Input -> preprocessing -> base(training=False) -> "
            "GlobalAveragePooling2D -> head (lesson 04, step 3)."
        )
    head = keras.Model(pools[0].output, model.outputs[0], name="head")
    return PhaseResult.build(model, backbone=backbone, head=head, counted=head)


def _join(backbone: Any, head: Any, backbone_name: str | None = None) -> Any:
    """The end-to-end classifier: :func:`tlcourse.features.join_head` (the head's layers are reused)."""
    from tlcourse import features

    return features.join_head(backbone, head, pooling="avg", backbone_name=_name_of(backbone, backbone_name))


def _clone_head(head: Any) -> Any:
    keras = _keras()
    copy = keras.models.clone_model(head)
    copy.set_weights(head.get_weights())
    return copy


def _feature_model(backbone: Any, backbone_name: str) -> Any:
    """Raw pixels -> preprocessing -> frozen backbone -> global average pooling."""
    keras = _keras()
    from tlcourse import models

    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = models.preprocessing_layer(backbone_name)(inputs)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="feature_extractor")


def _bottom_model(backbone: Any, backbone_name: str, bottom: Any) -> Any:
    """Raw pixels -> preprocessing -> the frozen bottom of the backbone (boundary tensors out)."""
    keras = _keras()
    from tlcourse import models

    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = models.preprocessing_layer(backbone_name)(inputs)
    return keras.Model(inputs, bottom(x, training=False), name="bottom_extractor")


def _head_model(feature_dim: int, num_classes: int, dropout: float) -> Any:
    from tlcourse import models

    return models.build_head((feature_dim,), num_classes, dropout=dropout)


# ------------------------------------------------------------------------------------------ head phase


def _feature_sets(
    extractor: Any,
    splits: Any,
    *,
    key_parts: dict[str, Any],
    augmented_passes: int,
    seed: int,
    cache_dir: Any,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Pooled features: train as [passes, N, D] (pass 0 clean), validation [M, D]; uses the on-disk cache."""
    from tlcourse import features

    train = features.cached_features(
        extractor,
        splits.train,
        key_parts={**key_parts, "part": "train", "augmentation_seed": seed},
        data_fingerprint=splits.fingerprint,
        cache_dir=cache_dir,
        progress=progress,
        augmented_passes=augmented_passes,
        augmentation=default_augmentation(seed + 1000) if augmented_passes else None,
    )
    val = features.cached_features(
        extractor,
        splits.validation,
        key_parts={**key_parts, "part": "validation"},
        data_fingerprint=splits.fingerprint,
        cache_dir=cache_dir,
        progress=progress,
    )
    x_train = [np.asarray(train.features)[None]]
    y_train = [np.asarray(train.labels).astype("int32")[None]]
    if augmented_passes and train.augmented_features is not None:
        x_train.append(np.asarray(train.augmented_features))
        y_train.append(np.asarray(train.augmented_labels).astype("int32"))
    return (
        np.concatenate(x_train),
        np.concatenate(y_train),
        np.asarray(val.features),
        np.asarray(val.labels).astype("int32"),
        train.from_cache and val.from_cache,
    )


def fit_head_fast(
    splits: Any,
    backbone: Any | None = None,
    *,
    backbone_name: str | None = None,
    alpha: float | None = None,
    image_size: int | None = None,
    weights: str = "imagenet",
    mirror: Any = None,
    profile: Profile | str = "auto",
    epochs: int | None = None,
    learning_rate: float | None = None,
    augmented_passes: int | None = None,
    dropout: float = 0.2,
    patience: int | None = 5,
    seed: int = 42,
    run_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    boundary: int | str | None = None,
    max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
    progress: bool = False,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    """FAST PATH (opt-in): a new head trained on a frozen backbone's cached features (lesson 04, step 6).

    Lesson 04 shows the plain version first (``extractor.predict`` once, a head fitted on the arrays, then
    :func:`tlcourse.features.cached_features` keeping that predict on disk); :func:`tlcourse.train.fit_head` is the plain
    end-to-end ``model.fit`` of a model you built and compiled yourself. This function builds its own head and
    compiles it (Adam at the profile's rate); the strategy harness and ``tlcourse train`` use it.

    The frozen backbone runs once over the validation set and ``1 + augmented_passes`` times over the training
    set (pass 0 plain, the others augmented); the features are cached on disk (``tlcourse.features``), so a
    second call with the same data and backbone skips the backbone entirely. Each epoch trains the head on
    every training example once, each example taken from a random cached pass. The returned ``model`` is the
    end-to-end classifier (raw pixels in, logits out) with the trained head joined onto the backbone.
    Defaults (epochs, learning rate, passes) come from the profile.

    With ``boundary`` (the layer :func:`fine_tune_fast` will unfreeze from) the same single run of the backbone
    also keeps the tensors at that boundary in memory (``result.boundary_cache``), so the fine-tuning that
    follows never runs the frozen bottom again; the pooled features then come from that run rather than
    from the disk cache. Falls back to the disk cache when the boundary tensors exceed ``max_cache_bytes``.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    epochs = prof.head_epochs if epochs is None else epochs
    learning_rate = prof.learning_rate if learning_rate is None else learning_rate
    passes = prof.augmented_passes if augmented_passes is None else augmented_passes
    num_classes = len(splits.class_names)
    seed_everything(seed)
    start = time.perf_counter()
    if backbone is None:  # built from the registry at the profile's width and size (both in the cache key)
        alpha, image_size = alpha or prof.alpha, image_size or prof.image_size
    backbone, backbone_name, extractor, notes = _frozen_extractor(
        backbone, backbone_name, alpha, image_size, weights, mirror
    )
    key_parts = {
        "backbone": backbone_name,
        "alpha": alpha,
        "size": int(backbone.input_shape[1]),
        "weights": _weights_key(weights),
        "pooling": "avg",
    }
    key = resume.resume_key(
        splits,
        phase="head",
        **key_parts,
        epochs=epochs,
        learning_rate=learning_rate,
        augmented_passes=passes,
        dropout=dropout,
        seed=seed,
        batch_size=prof.batch_size,
        patience=patience,
        boundary=boundary,
    )
    if run_dir is not None:
        feature_dim = int(extractor.output_shape[-1])
        saved = _saved_head_phase(run_dir, key, feature_dim, num_classes, dropout, learning_rate)
        if saved is not None:
            cut = (boundary, passes, seed, max_cache_bytes)
            return _reused_head_phase(saved, splits, backbone, backbone_name, cut, notes, start, key, dropout)
    t0 = time.perf_counter()
    bcache, (x_train, y_train, x_val, y_val) = _head_features(
        extractor,
        backbone,
        backbone_name,
        splits,
        boundary=boundary,
        passes=passes,
        seed=seed,
        max_cache_bytes=max_cache_bytes,
        key_parts=key_parts,
        cache_dir=cache_dir,
        progress=progress,
        notes=notes,
    )
    extract_seconds = time.perf_counter() - t0
    seed_everything(seed)
    with strategy_scope():
        head = _head_model(x_train.shape[-1], num_classes, dropout)
        compile_model(head, learning_rate, num_classes)
    t1 = time.perf_counter()
    sampler = _PassSampler([x_train], y_train, prof.batch_size, seed)
    history = head.fit(
        sampler,
        validation_data=(x_val, y_val),
        epochs=epochs,
        callbacks=[
            *training_callbacks(run_dir, patience=patience, resume_key=key),
            sampler.clock,
            *callbacks,
        ],
        shuffle=False,  # datasets and samplers shuffle themselves
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - t1
    _, val_accuracy = head.evaluate(x_val, y_val, verbose=0, batch_size=256)
    with strategy_scope():
        classifier = _join(backbone, head, backbone_name)
    result = PhaseResult.build(
        classifier,
        backbone=backbone,
        head=head,
        counted=head,
        history=history,
        val_accuracy=val_accuracy,
        started=start,
        notes=notes,
        timings={"extract_seconds": extract_seconds, "head_train_seconds": train_seconds},
        dropout=dropout,
        boundary_cache=bcache,
        resume_key=key,
    )
    # saved with its key: a rerun with the same data and settings (after a crash in fine-tuning) reuses it
    if run_dir is not None:
        info = {
            "history": result.history,
            "val_accuracy": result.val_accuracy,
            "epochs_run": result.epochs_run,
        }
        resume.save_phase(run_dir, key, head, info)
    return result


def _frozen_extractor(
    backbone: Any, backbone_name: str | None, alpha: Any, image_size: Any, weights: str, mirror: Any
) -> tuple[Any, str, Any, list[str]]:
    """The backbone (built from the registry when None), its registry name, frozen, and its feature model."""
    from tlcourse import models

    notes: list[str] = []
    with strategy_scope():
        if backbone is None:
            backbone, notes = _build_backbone(
                backbone_name or "mobilenet_v2", alpha, image_size, weights, mirror
            )
        backbone_name = _name_of(backbone, backbone_name)
        models.freeze(backbone)
        extractor = _feature_model(backbone, backbone_name)
    return backbone, backbone_name, extractor, notes


def _cache_if_it_fits(
    backbone: Any,
    backbone_name: str,
    splits: Any,
    cut: tuple[int | str | None, int, int, int],
    notes: list[str],
    *,
    with_features: bool = False,
) -> Any:
    """:func:`cache_boundary` at ``cut = (boundary, passes, seed, max_cache_bytes)`` when its tensors fit in
    ``max_cache_bytes`` (None otherwise, with a note saying why)."""
    boundary, passes, seed, max_cache_bytes = cut
    if boundary is None:
        return None
    index, needed = _boundary_need(backbone, splits, boundary, passes)
    if index > 0 and needed <= max_cache_bytes:
        return cache_boundary(
            backbone,
            splits,
            index,
            backbone_name=backbone_name,
            augmented_passes=passes,
            seed=seed,
            with_features=with_features,
        )
    if index > 0:
        notes.append(f"boundary cache would need {needed / 2**20:.0f} MiB: not kept")
    return None


def _head_features(
    extractor: Any,
    backbone: Any,
    backbone_name: str,
    splits: Any,
    *,
    boundary: int | str | None,
    passes: int,
    seed: int,
    max_cache_bytes: int,
    key_parts: dict[str, Any],
    cache_dir: Any,
    progress: bool,
    notes: list[str],
) -> tuple[BoundaryCache | None, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The boundary cache (when asked and it fits) and the pooled features ``(x_train [P, N, D], y_train [P, N],
    x_val, y_val)``: from the same run of the backbone as the boundary cache, else from the on-disk cache."""
    cut = (boundary, passes, seed, max_cache_bytes)
    cached = _cache_if_it_fits(backbone, backbone_name, splits, cut, notes, with_features=True)
    if cached is not None:
        bcache, (x_train, x_val) = cached
        notes.append(f"features and boundary tensors at {bcache.layer_name} from one run of the backbone")
        arrays = (x_train, bcache.train_labels, x_val, bcache.validation_labels)
    else:
        bcache = None
        *arrays, from_cache = _feature_sets(
            extractor,
            splits,
            key_parts=key_parts,
            augmented_passes=passes,
            seed=seed,
            cache_dir=cache_dir,
            progress=progress,
        )
        if from_cache:
            notes.append("features read from the cache")
    if passes:
        notes.append(f"{passes} cached augmented pass(es)")
    return bcache, tuple(arrays)


def _boundary_need(backbone: Any, splits: Any, boundary: int | str, passes: int) -> tuple[int, int]:
    """The layer index of ``boundary`` and the bytes its cache would need (``1 + passes`` training passes)."""
    index = resolve_layer(backbone, boundary)
    train_count = int(getattr(splits, "train_count", 0) or 0)
    val_count = int(getattr(splits, "validation_count", 0) or 0)
    needed = boundary_bytes(backbone, index, train_count, passes + 1) + boundary_bytes(
        backbone, index, val_count
    )
    return index, needed


def _saved_head_phase(
    run_dir: str | os.PathLike,
    key: str,
    feature_dim: int,
    num_classes: int,
    dropout: float,
    learning_rate: float,
) -> tuple[Any, dict[str, Any]] | None:
    """The head and record of a head phase saved in ``run_dir`` with ``key`` (None when there is none)."""
    if (
        not (Path(run_dir) / resume.PHASE_RECORD).exists()
        and not (Path(run_dir) / resume.PHASE_WEIGHTS).exists()
    ):
        return None
    with strategy_scope():
        head = _head_model(feature_dim, num_classes, dropout)
        compile_model(head, learning_rate, num_classes)
        head.optimizer.build(head.trainable_variables)  # the saved weights hold its state too
    info = resume.load_phase(run_dir, key, head)
    return None if info is None else (head, info)


def _reused_head_phase(
    saved: tuple[Any, dict[str, Any]],
    splits: Any,
    backbone: Any,
    backbone_name: str,
    cut: tuple[int | str | None, int, int, int],
    notes: list[str],
    start: float,
    key: str,
    dropout: float,
) -> PhaseResult:
    """The head phase saved by an earlier run with the same key, joined onto ``backbone``; the boundary cache
    that fine-tuning needs is computed again (training the head is not)."""
    head, info = saved
    t0 = time.perf_counter()
    bcache = _cache_if_it_fits(backbone, backbone_name, splits, cut, notes)
    notes.append("head phase reused from the earlier run with the same data and settings (not trained again)")
    with strategy_scope():
        classifier = _join(backbone, head, backbone_name)
    return PhaseResult.build(
        classifier,
        backbone=backbone,
        head=head,
        counted=head,
        history=info.get("history"),
        val_accuracy=info.get("val_accuracy", math.nan),
        started=start,
        epochs_run=int(info.get("epochs_run", 0)),
        notes=notes,
        timings={"extract_seconds": time.perf_counter() - t0, "head_train_seconds": 0.0},
        dropout=dropout,
        boundary_cache=bcache,
        resume_key=key,
    )


def _weights_key(weights: Any) -> str:
    if isinstance(weights, (str, os.PathLike)) and os.path.exists(str(weights)):
        stat = os.stat(str(weights))
        return f"{Path(weights).name}:{stat.st_size}:{int(stat.st_mtime)}"
    return str(weights)


# ---------------------------------------------------------------------------------------- fine-tuning


def cache_boundary(
    backbone: Any,
    splits: Any,
    index: int,
    *,
    backbone_name: str = "mobilenet_v2",
    augmented_passes: int = 0,
    seed: int = 42,
    with_features: bool = False,
) -> Any:
    """Run the frozen bottom of the backbone once per pass and keep the boundary tensors (lesson 05).

    Pass 0 is the plain training set, passes 1..K are augmented copies; validation is computed once.
    With ``with_features=True`` the same run also finishes the forward pass (top + global average pooling)
    and returns ``(cache, (train_features [P, N, D], validation_features [M, D]))``.
    """
    keras = _keras()
    bottom, top = split_backbone(backbone, index)
    extractor = _bottom_model(backbone, backbone_name, bottom)
    if with_features:
        outputs = extractor.outputs
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(
            top(outputs[0] if len(outputs) == 1 else outputs, training=False)
        )
        extractor = keras.Model(extractor.inputs, [*outputs, pooled], name="bottom_and_features")
    start = time.perf_counter()
    plain = _forward_function(extractor)
    augmented = _forward_function(extractor, default_augmentation(seed + 1000)) if augmented_passes else None
    val, y_val = _predict_arrays(extractor, splits.validation, forward=plain)
    per_pass: list[list[np.ndarray]] = []
    label_sets: list[np.ndarray] = []
    for p in range(augmented_passes + 1):
        # one augmentation layer for every pass: its random state moves on, so each pass differs
        arrays, labels = _predict_arrays(extractor, splits.train, forward=plain if p == 0 else augmented)
        per_pass.append(arrays)
        label_sets.append(labels)
    train = [np.stack([arrays[i] for arrays in per_pass]) for i in range(len(per_pass[0]))]
    features: tuple[np.ndarray, np.ndarray] | None = None
    if with_features:
        features = (train.pop(), val.pop())
    cache = BoundaryCache(
        train=train,
        train_labels=np.stack(label_sets),
        validation=val,
        validation_labels=y_val,
        layer_index=index,
        layer_name=backbone.layers[index].name,
        seconds=time.perf_counter() - start,
    )
    return (cache, features) if with_features else cache


def _top_trainer(top: Any, head: Any) -> Any:
    """Boundary tensors -> top (inference-mode BatchNorm) -> pooling -> the head model (its layers reused)."""
    keras = _keras()
    inputs = [keras.Input(t.shape[1:]) for t in top.inputs]
    x = top(inputs[0] if len(inputs) == 1 else inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, head(x), name="top_trainer")


def fine_tune_fast(
    head: PhaseResult | Any,
    splits: Any,
    *,
    from_layer: int | str = DEFAULT_FINE_TUNE_FROM,
    backbone_name: str | None = None,
    profile: Profile | str = "auto",
    epochs: int | None = None,
    learning_rate: float | None = None,
    augmented_passes: int | None = None,
    patience: int | None = 3,
    seed: int = 42,
    run_dir: str | os.PathLike | None = None,
    cache: bool = True,
    max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
    optimizer: Any = "adam",
    keep_better: bool = True,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    """FAST PATH (opt-in): boundary-cached fine-tuning of a head from :func:`fit_head_fast` (lesson 05, aside).

    Lesson 05 shows the plain recipe first (unfreeze, ``model.compile`` at a low rate, ``model.fit`` with
    ``initial_epoch`` and ``EarlyStopping``), which :func:`tlcourse.train.fine_tune` runs on the model it is given. This
    function unfreezes from ``from_layer`` and compiles its own trainer; tests/test_fastpath.py shows it reaches
    the same weights as the plain path on the same batches, and lesson 05 checks its accuracy against the
    plain run. The strategy harness and ``tlcourse train`` use it.

    Starts from the head trained by :func:`fit_head_fast` (never fine-tune a random head: its large gradients
    would wreck the pretrained features). BatchNorm stays in inference mode. With ``cache=True`` the frozen
    bottom runs once per cached pass and only the top is trained (see the module docstring); when the
    boundary tensors would need more than ``max_cache_bytes`` the standard path is used and a note says so.
    ``from_layer=0`` trains the whole backbone (always the standard path: there is nothing to cache).
    The returned ``model`` is the end-to-end classifier; ``history`` is this phase's history only (join the
    phases with :func:`tlcourse.train.merge_histories`). Early stopping restores the best epoch; with ``keep_better`` the
    starting weights are put back (and a note says so) when no epoch beat them on validation. A boundary cache
    kept by ``fit_head_fast(..., boundary=from_layer)`` is reused.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    epochs = prof.fine_tune_epochs if epochs is None else epochs
    passes = prof.augmented_passes if augmented_passes is None else augmented_passes
    given = None if isinstance(head, PhaseResult) else head
    if given is not None:  # a classifier: train its own layers and hand the same model back
        head = _phase_from_model(given)
        if learning_rate is None and getattr(given, "optimizer", None) is not None:
            optimizer = given.optimizer  # compiled as given: a fresh copy of its optimizer and settings
            learning_rate = models_learning_rate(given) or prof.fine_tune_learning_rate
    learning_rate = prof.fine_tune_learning_rate if learning_rate is None else learning_rate
    backbone = head.backbone
    backbone_name = _name_of(backbone, backbone_name)
    num_classes = len(splits.class_names)
    index = resolve_layer(backbone, from_layer)
    notes: list[str] = []
    seed_everything(seed)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    use_cache = _boundary_cache_fits(backbone, splits, index, passes, cache, max_cache_bytes, notes)
    if use_cache:
        bcache = _boundary_cache_for(head, splits, index, backbone_name, passes, seed, notes, timings)
        with strategy_scope():
            _, top = split_backbone(backbone, index)
            set_trainable_from(backbone, index)
            trainer = _top_trainer(top, head.head)
            compile_model(trainer, learning_rate, num_classes, optimizer)
        train_data: Any = _PassSampler(bcache.train, bcache.train_labels, prof.batch_size, seed)
        val_x = bcache.validation[0] if len(bcache.validation) == 1 else tuple(bcache.validation)
        validation: tuple[Any, ...] = (val_x, bcache.validation_labels)
    else:
        with strategy_scope():
            trainer = given if given is not None else _join(backbone, head.head, backbone_name)
            set_trainable_from(backbone, index)
            compile_model(trainer, learning_rate, num_classes, optimizer)
        train_data = augment_dataset(splits.train, default_augmentation(seed)) if passes else splits.train
        validation = (splits.validation,)
    key = resume.resume_key(
        splits,
        phase="fine_tune",
        head=head.resume_key or architecture_key(head.head),
        trainer=architecture_key(trainer),
        backbone=backbone_name,
        from_layer=index,
        epochs=epochs,
        learning_rate=learning_rate,
        optimizer=optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
        augmented_passes=passes,
        boundary_cache=use_cache,
        batch_size=prof.batch_size,
        patience=patience,
        keep_better=keep_better,
        seed=seed,
    )
    t1 = time.perf_counter()
    fit_callbacks = [*training_callbacks(run_dir, patience=patience, resume_key=key), *callbacks]
    fit_callbacks += (
        [train_data.clock] if use_cache else []
    )  # the sampler's epochs follow fit's, resumed or not
    history, val_accuracy = _fit_keeping_better(
        trainer, train_data, validation, epochs, fit_callbacks, keep_better, verbose, notes
    )
    timings["fine_tune_train_seconds"] = time.perf_counter() - t1
    model = trainer
    if use_cache:  # the trainer shares its layers: the end-to-end classifier carries the trained weights
        with strategy_scope():
            model = given if given is not None else _join(backbone, head.head, backbone_name)
            set_trainable_from(backbone, index)
            # compiled like the trainer, so model.evaluate / model.fit work on the end-to-end classifier too
            compile_model(model, learning_rate, num_classes, optimizer)
    return PhaseResult.build(
        model,
        backbone=backbone,
        head=head.head,
        trainer=trainer,
        counted=trainer,
        history=history,
        val_accuracy=val_accuracy,
        started=start,
        notes=notes,
        timings=timings,
        dropout=head.dropout,
        boundary=backbone.layers[index].name,
        resume_key=key,
    )


def _boundary_cache_fits(
    backbone: Any, splits: Any, index: int, passes: int, cache: bool, max_cache_bytes: int, notes: list[str]
) -> bool:
    """Whether fine-tuning from ``index`` trains on a boundary cache; a note says why not when it does not."""
    if cache and index == 0:
        notes.append("whole backbone trained: standard path (nothing below the boundary to cache)")
    if not cache or index == 0:
        return False
    _, needed = _boundary_need(backbone, splits, index, passes)
    if needed > max_cache_bytes:
        notes.append(
            f"boundary cache would need {needed / 2**20:.0f} MiB (> {max_cache_bytes / 2**20:.0f} MiB): "
            "used the standard path (base recomputed every step)"
        )
        return False
    return True


def _boundary_cache_for(
    head: PhaseResult,
    splits: Any,
    index: int,
    backbone_name: str,
    passes: int,
    seed: int,
    notes: list[str],
    timings: dict[str, float],
) -> BoundaryCache:
    """The head phase's boundary cache when it was kept at ``index`` with as many passes, else a new one."""
    reuse = head.boundary_cache
    if reuse is not None and reuse.layer_index == index and reuse.train[0].shape[0] == passes + 1:
        bcache, how = reuse, "kept from the head phase"
        timings["boundary_cache_seconds"] = 0.0
    else:
        bcache = cache_boundary(
            head.backbone, splits, index, backbone_name=backbone_name, augmented_passes=passes, seed=seed
        )
        how = "computed"
        timings["boundary_cache_seconds"] = bcache.seconds
    size = f"{bcache.nbytes / 2**20:.1f} MiB, {passes + 1} pass(es), {how}"
    notes.append(f"boundary cache at {bcache.layer_name} ({size})")
    return bcache


def _fit_keeping_better(
    trainer: Any,
    train_data: Any,
    validation: tuple[Any, ...],
    epochs: int,
    callbacks: list[Any],
    keep_better: bool,
    verbose: int,
    notes: list[str],
) -> tuple[Any, float]:
    """``trainer.fit``; with ``keep_better`` the starting weights come back when no epoch beat them on
    ``validation`` (``(x, y)`` arrays or ``(dataset,)``). Returns the history and the validation accuracy."""
    validation_data = validation if len(validation) == 2 else validation[0]
    start_weights = trainer.get_weights() if keep_better else None
    start_accuracy = float(trainer.evaluate(*validation, verbose=0)[1]) if keep_better else math.nan
    history = trainer.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # datasets and samplers shuffle themselves
        verbose=verbose,
    )
    _, val_accuracy = trainer.evaluate(*validation, verbose=0)
    if keep_better and start_weights is not None and val_accuracy < start_accuracy:
        trainer.set_weights(start_weights)
        notes.append(
            f"fine-tuning did not beat the head on validation ({val_accuracy:.3f} < {start_accuracy:.3f}): "
            "kept the head's weights"
        )
        val_accuracy = start_accuracy
    return history, float(val_accuracy)
