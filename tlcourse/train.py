"""Training: the plain recipe on the model you give it, callbacks, resume, and an opt-in fast path.

The plain recipe (lessons 04 and 05 write it out in Keras first): :func:`fit_head` fits a classifier whose base
is frozen, :func:`fine_tune` fits it again after you unfroze the top of the base and compiled it at a low rate.
Both call ``model.fit`` on **the model they are given, compiled as given**, with a fresh augmentation of the
training images every epoch and ``EarlyStopping(restore_best_weights=True)`` on validation.

The fast path is separate and says so in its names: :func:`fit_head_fast` trains a new head on cached features
(lesson 04's step beyond the tutorial) and :func:`fine_tune_fast` fine-tunes on cached boundary activations:
the layers below the unfreeze boundary are frozen and their BatchNorm layers run in inference mode, so they
compute a fixed function of the image; the frozen bottom runs once per cached pass and only the top and the
head are trained on the tensors that cross the boundary (same layer objects, so the end-to-end model carries
the trained weights). tests/test_train.py proves it reaches the plain path's weights on the same batches.
:func:`tlcourse.strategies.compare_strategies` (lesson 05's harness) and ``tlcourse train`` use the fast
path. :func:`zero_shot` and :func:`from_scratch` are two of the harness's strategies.

Every model is built inside ``tf.distribute.get_strategy().scope()``, so the same code runs under a
``MirroredStrategy`` or ``TPUStrategy`` scope without change.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.backend import count_params
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import tf_module as _tf
from tlcourse.config import Profile, get_profile
from tlcourse.errors import TLCourseError

DEFAULT_FINE_TUNE_FROM = "block_13"
"""Where :func:`fine_tune` (and ``tlcourse train``) unfreezes by default: the last three MobileNetV2 blocks."""

DEFAULT_MAX_CACHE_BYTES = 1 << 30
"""Largest boundary cache :func:`fine_tune` keeps in memory (1 GiB) before falling back to the standard path."""


# --------------------------------------------------------------------------------------------- results


@dataclass
class PhaseResult:
    """What one training phase produced (lesson 04/05).

    ``model`` is always the end-to-end classifier (raw [0, 255] pixels in, logits out) ready to evaluate or
    export; ``backbone`` is the backbone inside it and ``head`` the small model trained on cached features.
    """

    model: Any
    backbone: Any
    head: Any
    history: dict[str, list[float]]
    val_accuracy: float
    seconds: float
    epochs_run: int
    trainable_params: int
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    dropout: float = 0.2
    boundary: str | None = None
    trainer: Any = None
    """The model ``fit`` trained in this phase (for a boundary-cached fine-tune: boundary tensors -> logits)."""
    boundary_cache: BoundaryCache | None = None
    """Kept by :func:`fit_head` when asked (``boundary=``) so :func:`fine_tune` need not run the bottom again."""
    resume_key: str | None = None
    """The data-and-settings key this phase's resume state is saved under (:mod:`tlcourse.resume`)."""


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


# ------------------------------------------------------------------------------------------ histories


def merge_histories(*histories: Any, names: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """Join the histories of consecutive phases into one, numbering epochs continuously (lesson 05).

    Each argument is a ``keras.callbacks.History``, its ``.history`` dict, or a dict returned by this function.
    The result maps every metric to one list covering all phases (a phase that did not log a metric gets
    ``nan`` there), plus ``"epoch"`` (1, 2, ... across phases), ``"phase"`` (the phase name of each epoch) and
    ``"phase_starts"`` (the epoch number at which each phase starts, e.g. ``[1, 11]``), so a learning-curve plot
    can draw both phases on one axis and mark where fine-tuning began.
    """
    dicts: list[dict[str, list[Any]]] = []
    inner: list[tuple[list[Any], list[int]] | None] = []  # phases already inside a merged history
    for item in histories:
        if item is None:
            continue
        data = getattr(item, "history", item)
        if not isinstance(data, Mapping):
            raise TypeError(f"merge_histories expects History objects or dicts, got {type(item).__name__}.")
        dicts.append({k: list(v) for k, v in data.items() if k not in ("epoch", "phase", "phase_starts")})
        has_phases = isinstance(data.get("phase"), list) and isinstance(data.get("phase_starts"), list)
        inner.append((list(data["phase"]), list(data["phase_starts"])) if has_phases else None)
    if names is None:
        names = [f"phase {i + 1}" for i in range(len(dicts))]
    if len(names) != len(dicts):
        raise ValueError("merge_histories: give one name per history.")
    metrics: list[str] = []
    for data in dicts:
        metrics.extend(k for k in data if k not in metrics)
    merged: dict[str, list[Any]] = {k: [] for k in metrics}
    merged["epoch"], merged["phase"], merged["phase_starts"] = [], [], []
    for name, data, phases in zip(names, dicts, inner, strict=True):
        length = max((len(v) for v in data.values()), default=0)
        start = len(merged["epoch"])
        if phases is not None and len(phases[0]) == length:
            merged["phase_starts"].extend(start + s for s in phases[1])
            merged["phase"].extend(phases[0])
        else:
            merged["phase_starts"].append(start + 1)
            merged["phase"].extend([name] * length)
        for key in metrics:
            values = [float(v) for v in data.get(key, [])]
            merged[key].extend(values + [math.nan] * (length - len(values)))
        merged["epoch"].extend(range(start + 1, start + length + 1))
    return merged


# ------------------------------------------------------------------------------------------- callbacks


def resumable_backup(backup_dir: str | os.PathLike, key: str | None = None) -> Any:
    """A ``keras.callbacks.BackupAndRestore`` that also keeps the optimizer's state (lesson 05).

    Keras' own callback saves the weights and the epoch at the end of every epoch and, when ``fit`` is called
    again after an interruption, restores them and continues from that epoch. This one
    (:func:`tlcourse.resume.resumable_backup`) also saves the optimizer's variables (Adam's moments, the step
    counter), writes every file crash-safely, and restores only a backup made with the same ``key`` (data and
    settings): another run's or a damaged backup is discarded with one line, a resumed run says so.
    """
    from tlcourse import resume

    return resume.resumable_backup(backup_dir, key=key)


def training_callbacks(
    run_dir: str | os.PathLike | None,
    *,
    patience: int | None = 3,
    monitor: str = "val_accuracy",
    resume: bool = True,
    checkpoint: bool = True,
    resume_key: str | None = None,
) -> list[Any]:
    """The callbacks every phase uses (lesson 05).

    - early stopping on ``monitor`` that restores the best weights (``patience=None`` turns it off);
    - with a ``run_dir``: a checkpoint of the best weights (``run_dir/best.weights.h5``) and a backup of the
      training state after every epoch (``run_dir/backup/``), so calling ``fit`` again with the same run
      directory after a crash or an interrupt resumes from the last finished epoch instead of epoch 0.
      With ``resume_key`` (:func:`tlcourse.resume.resume_key`) only a backup of the same data and settings is
      restored; another run's or a damaged backup is discarded with one line.
    """
    keras = _keras()
    mode = "min" if "loss" in monitor else "max"
    callbacks: list[Any] = []
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            callbacks.append(resumable_backup(run_dir / "backup", key=resume_key))
        if checkpoint:
            callbacks.append(
                keras.callbacks.ModelCheckpoint(
                    str(run_dir / "best.weights.h5"),
                    monitor=monitor,
                    mode=mode,
                    save_best_only=True,
                    save_weights_only=True,
                    verbose=0,
                )
            )
    if patience is not None and patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode=mode, patience=patience, restore_best_weights=True
            )
        )
    return callbacks


# ------------------------------------------------------------------------------------------ utilities


def strategy_scope() -> Any:
    """The current ``tf.distribute`` strategy's scope; models built inside it are replicated (lesson 05)."""
    return _tf().distribute.get_strategy().scope()


def default_augmentation(seed: int = 42) -> Any:
    """The course's one default augmentation, :func:`tlcourse.data.default_augmentation` (lesson 04)."""
    from tlcourse import data

    return data.default_augmentation(seed)


def _augmented(dataset: Any, augmentation: Any) -> Any:
    tf = _tf()
    return dataset.map(lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)


def _compile(model: Any, learning_rate: float, num_classes: int, optimizer: Any = "adam") -> Any:
    """Compile with :func:`tlcourse.models.compile_classifier`: Adam, RMSprop when asked, or a fresh copy of
    a given optimizer (the same class and settings: how the fast path keeps a model's own compile)."""
    keras = _keras()
    from tlcourse.distribute import require_built_in_scope
    from tlcourse.models import compile_classifier

    require_built_in_scope(model, "compile")
    if not isinstance(optimizer, str):
        opt = type(optimizer).from_config(optimizer.get_config())
    elif optimizer == "rmsprop":
        opt = keras.optimizers.RMSprop(learning_rate)
    else:
        opt = keras.optimizers.Adam(learning_rate)
    return compile_classifier(model, learning_rate, num_classes=num_classes, optimizer=opt)


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
                self.rng = np.random.default_rng(seed)
                self.passes = arrays[0].shape[0]
                self.count = arrays[0].shape[1]
                self.on_epoch_end()

            def __len__(self) -> int:
                return math.ceil(self.count / self.batch_size)

            def on_epoch_end(self) -> None:
                self.order = self.rng.permutation(self.count)
                self.which = self.rng.integers(0, self.passes, size=self.count)

            def __getitem__(self, index: int) -> Any:
                rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
                passes = self.which[index * self.batch_size : (index + 1) * self.batch_size]
                xs = [a[passes, rows] for a in self.arrays]
                return (xs[0] if len(xs) == 1 else tuple(xs)), self.labels[passes, rows]

        return Sampler(*args, **kwargs)


# -------------------------------------------------------------------------------------- the boundary


def resolve_layer(backbone: Any, where: int | str) -> int:
    """Index in ``backbone.layers`` of the first layer to unfreeze (lesson 05).

    Resolved by :func:`tlcourse.models.layer_index` (index, numeric string, layer name or block prefix); here
    the boundary must be a layer of the backbone, so "unfreeze nothing" (``len(layers)``) is refused.
    """
    from tlcourse.models import layer_index

    index = layer_index(backbone, where)
    if index >= len(backbone.layers):
        raise TLCourseError(
            f"Layer {where} is outside the backbone, which has {len(backbone.layers)} layers."
        )
    return index


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


def set_trainable_from(backbone: Any, index: int) -> int:
    """Freeze ``backbone.layers[:index]`` and unfreeze the rest (lesson 05); returns the trainable params.

    Uses :func:`tlcourse.models.unfreeze_from` with its default: BatchNorm layers stay frozen on both sides of
    the boundary (``trainable=False`` keeps a Keras 3 BatchNorm in inference mode even inside ``fit``, see
    :func:`tlcourse.models.unfreeze_top`), so they keep their ImageNet statistics and scale/offset.
    """
    from tlcourse import models

    models.unfreeze_from(backbone, int(index))
    return count_params(backbone)


def default_fine_tune_from(backbone_name: str = "mobilenet_v2") -> int | str:
    """Where fine-tuning unfreezes by default for a backbone: the registry's ``default_unfreeze_from`` (lesson 05)."""
    try:
        from tlcourse import models

        return models.get_spec(backbone_name).default_unfreeze_from
    except Exception:  # unknown backbone: the MobileNetV2 default
        return DEFAULT_FINE_TUNE_FROM


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


def models_learning_rate(model: Any) -> float | None:
    """The learning rate a compiled model's optimizer starts with (None when it cannot be read) (lesson 05)."""
    from tlcourse import diagnose

    return diagnose.trainable_report(model).learning_rate


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
    backbone = _base_of(model)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if backbone is None or not pools:
        raise TLCourseError(
            "fine_tune_fast needs a classifier built as Input -> preprocessing -> base(training=False) -> "
            "GlobalAveragePooling2D -> head (lesson 04, step 3)."
        )
    head = keras.Model(pools[0].output, model.outputs[0], name="head")
    return PhaseResult(
        model=model,
        backbone=backbone,
        head=head,
        history={},
        val_accuracy=math.nan,
        seconds=0.0,
        epochs_run=0,
        trainable_params=count_params(head),
    )


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


# ------------------------------------------------------------------------------------ the plain recipe


def _require_compiled(model: Any, what: str) -> None:
    from tlcourse import diagnose
    from tlcourse.distribute import require_built_in_scope

    require_built_in_scope(model, what)
    report = diagnose.trainable_report(model)
    if not report.compiled:
        raise TLCourseError(f"{what} trains the model as you compiled it: call model.compile(...) first.")
    if report.needs_recompile:
        raise TLCourseError(
            f"{what}: `trainable` changed after the last model.compile, so fit would not train what you "
            "unfroze. Call model.compile(...) again (lesson 05, step 2)."
        )


def _plain_fit(
    model: Any,
    splits: Any,
    *,
    epochs: int,
    initial_epoch: int,
    augment: bool,
    patience: int | None,
    seed: int,
    run_dir: str | os.PathLike | None,
    keep_better: bool,
    verbose: int,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    from tlcourse.config import seed_everything

    seed_everything(seed)
    key = _plain_key(model, splits, epochs=epochs, initial_epoch=initial_epoch, augment=augment, seed=seed)
    train_data = _augmented(splits.train, default_augmentation(seed)) if augment else splits.train
    start = time.perf_counter()
    start_weights = model.get_weights() if keep_better else None
    start_accuracy = _accuracy(model, splits.validation) if keep_better else math.nan
    history = model.fit(
        train_data,
        validation_data=splits.validation,
        epochs=initial_epoch + epochs,
        initial_epoch=initial_epoch,
        callbacks=[*training_callbacks(run_dir, patience=patience, resume_key=key), *callbacks],
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=verbose,
    )
    val_accuracy = _accuracy(model, splits.validation)
    notes: list[str] = []
    if keep_better and start_weights is not None and val_accuracy < start_accuracy:
        model.set_weights(start_weights)
        notes.append(
            f"training did not beat the starting weights on validation ({val_accuracy:.3f} < "
            f"{start_accuracy:.3f}): kept the starting weights"
        )
        val_accuracy = start_accuracy
    return PhaseResult(
        model=model,
        backbone=_base_of(model),
        head=None,
        history={k: list(map(float, v)) for k, v in history.history.items()},
        val_accuracy=float(val_accuracy),
        seconds=time.perf_counter() - start,
        epochs_run=len(history.history.get("loss", [])),
        trainable_params=count_params(model),
        notes=notes,
        resume_key=key,
    )


def _architecture(model: Any) -> list[Any]:
    """What a backup's weights must fit: the shapes of its weights and how many of them train."""
    return [count_params(model), [tuple(w.shape) for w in model.weights]]


def _plain_key(model: Any, splits: Any, **settings: Any) -> str:
    """The resume key of a plain ``fit``: the data, the model's architecture and optimizer, the settings."""
    from tlcourse import resume

    optimizer = getattr(model, "optimizer", None)
    config = optimizer.get_config() if hasattr(optimizer, "get_config") else None
    return resume.resume_key(splits, phase="plain", model=_architecture(model), optimizer=config, **settings)


def _accuracy(model: Any, dataset: Any) -> float:
    """Accuracy of a logits model on a dataset of (images, labels), whatever metrics it was compiled with.

    The batches go through one traced predict function: an eager ``model(images)`` keeps every layer's output
    of the batch alive until it returns, which raised lesson 08's peak memory past Binder's 2 GB.
    """
    from tlcourse.features import _predict_batch

    predict = _predict_batch(model)
    hits, total = 0, 0
    for images, labels in dataset:
        logits = np.asarray(predict(images))
        y = np.asarray(labels).reshape(-1)
        predicted = (logits[:, 0] > 0).astype(int) if logits.shape[-1] == 1 else logits.argmax(axis=1)
        hits += int((predicted == y).sum())
        total += len(y)
    return hits / max(total, 1)


def _base_of(model: Any) -> Any:
    """The pretrained base inside a classifier: its nested model with the most weights (None if none)."""
    nested = [layer for layer in model.layers if hasattr(layer, "layers") and layer.weights]
    return max(nested, key=lambda layer: len(layer.weights)) if nested else None


def fit_head(
    model: Any,
    splits: Any,
    *,
    epochs: int | None = None,
    profile: Profile | str = "auto",
    augment: bool = True,
    patience: int | None = 5,
    seed: int = 42,
    run_dir: str | os.PathLike | None = None,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    """``model.fit`` of a classifier whose base you froze and which you compiled (lesson 04, step 4).

    Lesson 04 writes this out: ``base.trainable = False``, the functional model with ``base(x,
    training=False)``, ``model.compile``, then ``model.fit(train, validation_data=..., callbacks=[EarlyStopping
    (..., restore_best_weights=True)])``. This helper runs exactly that on **the model you give it, compiled as
    you compiled it**, with a fresh augmentation of the training images every epoch
    (:func:`tlcourse.data.default_augmentation`). It refuses a model that is not compiled, or whose base is
    not frozen. ``epochs`` defaults to the profile's ``head_epochs``. For the cached-features shortcut see
    :func:`fit_head_fast`.
    """
    from tlcourse import diagnose

    prof = get_profile(profile) if isinstance(profile, str) else profile
    _require_compiled(model, "fit_head")
    if any(m.code == "base_not_frozen" for m in diagnose.check_mistakes(model, phase="head")):
        raise TLCourseError(
            "fit_head trains a new head on a frozen base, but the base is trainable: set base.trainable = False "
            "and compile again (lesson 04, step 3)."
        )
    return _plain_fit(
        model,
        splits,
        epochs=prof.head_epochs if epochs is None else int(epochs),
        initial_epoch=0,
        augment=augment,
        patience=patience,
        seed=seed,
        run_dir=run_dir,
        keep_better=False,
        verbose=verbose,
        callbacks=callbacks,
    )


def fine_tune(
    model: Any,
    splits: Any,
    *,
    epochs: int | None = None,
    initial_epoch: int = 0,
    profile: Profile | str = "auto",
    augment: bool = True,
    patience: int | None = 3,
    seed: int = 42,
    run_dir: str | os.PathLike | None = None,
    keep_better: bool = False,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    """``model.fit`` of a classifier you unfroze and compiled again at a low rate (lesson 05, step 3).

    Lesson 05 writes this out: ``base.trainable = True``, ``for layer in base.layers[:fine_tune_at]:
    layer.trainable = False`` (BatchNorm layers kept frozen), ``model.compile(...)`` at a low rate, then
    ``model.fit(..., epochs=initial_epoch + epochs, initial_epoch=initial_epoch, callbacks=[EarlyStopping(...,
    restore_best_weights=True)])``. This helper runs exactly that on **the model you give it, compiled as you
    compiled it**; it refuses a model whose ``trainable`` flags changed since its last compile. With
    ``keep_better`` the starting weights come back (and a note says so) when training ended below them on
    validation. For the boundary-cached shortcut see :func:`fine_tune_fast`.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    _require_compiled(model, "fine_tune")
    return _plain_fit(
        model,
        splits,
        epochs=prof.fine_tune_epochs if epochs is None else int(epochs),
        initial_epoch=int(initial_epoch),
        augment=augment,
        patience=patience,
        seed=seed,
        run_dir=run_dir,
        keep_better=keep_better,
        verbose=verbose,
        callbacks=callbacks,
    )


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
    :func:`tlcourse.features.cached_features` keeping that predict on disk); :func:`fit_head` is the plain
    end-to-end ``model.fit`` of a model you built and compiled yourself. This function builds its own head and
    compiles it (Adam at the profile's rate); the strategy harness and ``tlcourse train`` use it.

    The frozen backbone runs once over the validation set and ``1 + augmented_passes`` times over the training
    set (pass 0 plain, the others augmented); the features are cached on disk (``tlcourse.features``), so a
    second call with the same data and backbone skips the backbone entirely. Each epoch trains the head on
    every training example once, each example taken from a random cached pass. The returned ``model`` is the
    end-to-end classifier (raw pixels in, logits out) with the trained head joined onto the backbone.
    Defaults (epochs, learning rate, passes) come from the profile.

    With ``boundary`` (the layer :func:`fine_tune` will unfreeze from) the same single run of the backbone
    also keeps the tensors at that boundary in memory (``result.boundary_cache``), so the fine-tuning that
    follows never runs the frozen bottom again; the pooled features then come from that run rather than
    from the disk cache. Falls back to the disk cache when the boundary tensors exceed ``max_cache_bytes``.
    """
    from tlcourse.config import seed_everything

    prof = get_profile(profile) if isinstance(profile, str) else profile
    epochs = prof.head_epochs if epochs is None else epochs
    learning_rate = prof.learning_rate if learning_rate is None else learning_rate
    passes = prof.augmented_passes if augmented_passes is None else augmented_passes
    num_classes = len(splits.class_names)
    notes: list[str] = []
    seed_everything(seed)
    start = time.perf_counter()
    with strategy_scope():
        if backbone is None:
            image_size = image_size or prof.image_size
            alpha = alpha or prof.alpha
            backbone, notes = _build_backbone(
                backbone_name or "mobilenet_v2", alpha, image_size, weights, mirror
            )
        from tlcourse import models

        backbone_name = _name_of(backbone, backbone_name)

        models.freeze(backbone)
        extractor = _feature_model(backbone, backbone_name)
    key_parts = {
        "backbone": backbone_name,
        "alpha": alpha,
        "size": int(backbone.input_shape[1]),
        "weights": _weights_key(weights),
        "pooling": "avg",
    }
    from tlcourse import resume

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
        saved = _saved_head_phase(
            run_dir, key, int(extractor.output_shape[-1]), num_classes, dropout, learning_rate
        )
        if saved is not None:
            return _reused_head_phase(
                saved,
                splits,
                backbone,
                backbone_name,
                boundary,
                passes,
                seed,
                max_cache_bytes,
                notes,
                start,
                key,
                dropout,
            )
    t0 = time.perf_counter()
    bcache: BoundaryCache | None = None
    if boundary is not None:
        index, needed = _boundary_need(backbone, splits, boundary, passes)
        if index > 0 and needed <= max_cache_bytes:
            bcache, pooled = cache_boundary(
                backbone,
                splits,
                index,
                backbone_name=backbone_name,
                augmented_passes=passes,
                seed=seed,
                with_features=True,
            )
            x_train, x_val = pooled
            y_train, y_val = bcache.train_labels, bcache.validation_labels
            from_cache = False
            notes.append(f"features and boundary tensors at {bcache.layer_name} from one run of the backbone")
        elif index > 0:
            notes.append(f"boundary cache would need {needed / 2**20:.0f} MiB: not kept")
    if bcache is None:
        x_train, y_train, x_val, y_val, from_cache = _feature_sets(
            extractor,
            splits,
            key_parts=key_parts,
            augmented_passes=passes,
            seed=seed,
            cache_dir=cache_dir,
            progress=progress,
        )
    extract_seconds = time.perf_counter() - t0
    if from_cache:
        notes.append("features read from the cache")
    if passes:
        notes.append(f"{passes} cached augmented pass(es)")

    seed_everything(seed)
    with strategy_scope():
        head = _head_model(x_train.shape[-1], num_classes, dropout)
        _compile(head, learning_rate, num_classes)
    sampler = _PassSampler([x_train], y_train, prof.batch_size, seed)
    t1 = time.perf_counter()
    history = head.fit(
        sampler,
        validation_data=(x_val, y_val),
        epochs=epochs,
        callbacks=[*training_callbacks(run_dir, patience=patience, resume_key=key), *callbacks],
        shuffle=False,  # datasets and samplers shuffle themselves
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - t1
    _, val_accuracy = head.evaluate(x_val, y_val, verbose=0, batch_size=256)
    history_dict = {k: list(map(float, v)) for k, v in history.history.items()}
    epochs_run = len(history.history.get("loss", []))
    # saved with its key: a rerun with the same data and settings (after a crash in fine-tuning) reuses it
    if run_dir is not None:
        info = {"history": history_dict, "val_accuracy": float(val_accuracy), "epochs_run": epochs_run}
        resume.save_phase(run_dir, key, head, info)
    with strategy_scope():
        classifier = _join(backbone, head, backbone_name)
    return PhaseResult(
        model=classifier,
        backbone=backbone,
        head=head,
        history=history_dict,
        val_accuracy=float(val_accuracy),
        seconds=time.perf_counter() - start,
        epochs_run=epochs_run,
        trainable_params=count_params(head),
        notes=notes,
        timings={"extract_seconds": extract_seconds, "head_train_seconds": train_seconds},
        dropout=dropout,
        boundary_cache=bcache,
        resume_key=key,
    )


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
    from tlcourse import resume

    if (
        not (Path(run_dir) / resume.PHASE_RECORD).exists()
        and not (Path(run_dir) / resume.PHASE_WEIGHTS).exists()
    ):
        return None
    with strategy_scope():
        head = _head_model(feature_dim, num_classes, dropout)
        _compile(head, learning_rate, num_classes)
        head.optimizer.build(head.trainable_variables)  # the saved weights hold its state too
    info = resume.load_phase(run_dir, key, head)
    return None if info is None else (head, info)


def _reused_head_phase(
    saved: tuple[Any, dict[str, Any]],
    splits: Any,
    backbone: Any,
    backbone_name: str,
    boundary: int | str | None,
    passes: int,
    seed: int,
    max_cache_bytes: int,
    notes: list[str],
    start: float,
    key: str,
    dropout: float,
) -> PhaseResult:
    """The head phase saved by an earlier run with the same key, joined onto ``backbone``; the boundary cache
    that fine-tuning needs is computed again (training the head is not)."""
    head, info = saved
    t0 = time.perf_counter()
    bcache: BoundaryCache | None = None
    if boundary is not None:
        index, needed = _boundary_need(backbone, splits, boundary, passes)
        if index > 0 and needed <= max_cache_bytes:
            bcache = cache_boundary(
                backbone, splits, index, backbone_name=backbone_name, augmented_passes=passes, seed=seed
            )
    notes.append("head phase reused from the earlier run with the same data and settings (not trained again)")
    with strategy_scope():
        classifier = _join(backbone, head, backbone_name)
    return PhaseResult(
        model=classifier,
        backbone=backbone,
        head=head,
        history={k: [float(x) for x in v] for k, v in dict(info.get("history") or {}).items()},
        val_accuracy=float(info.get("val_accuracy", math.nan)),
        seconds=time.perf_counter() - start,
        epochs_run=int(info.get("epochs_run", 0)),
        trainable_params=count_params(head),
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
    ``initial_epoch`` and ``EarlyStopping``), which :func:`fine_tune` runs on the model it is given. This
    function unfreezes from ``from_layer`` and compiles its own trainer; tests/test_train.py shows it reaches
    the same weights as the plain path on the same batches, and lesson 05 checks its accuracy against the
    plain run. The strategy harness and ``tlcourse train`` use it.

    Starts from the head trained by :func:`fit_head` (never fine-tune a random head: its large gradients
    would wreck the pretrained features). BatchNorm stays in inference mode. With ``cache=True`` the frozen
    bottom runs once per cached pass and only the top is trained (see the module docstring); when the
    boundary tensors would need more than ``max_cache_bytes`` the standard path is used and a note says so.
    ``from_layer=0`` trains the whole backbone (always the standard path: there is nothing to cache).
    The returned ``model`` is the end-to-end classifier; ``history`` is this phase's history only (join the
    phases with :func:`merge_histories`). Early stopping restores the best epoch; with ``keep_better`` the
    starting weights are put back (and a note says so) when no epoch beat them on validation. A boundary cache
    kept by ``fit_head(..., boundary=from_layer)`` is reused.
    """
    from tlcourse.config import seed_everything

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
    use_cache = cache and index > 0
    if use_cache:
        train_examples = int(getattr(splits, "train_count", 0) or 0)
        val_examples = int(getattr(splits, "validation_count", 0) or 0)
        needed = boundary_bytes(backbone, index, train_examples, passes + 1) + boundary_bytes(
            backbone, index, val_examples, 1
        )
        if needed > max_cache_bytes:
            use_cache = False
            notes.append(
                f"boundary cache would need {needed / 2**20:.0f} MiB (> {max_cache_bytes / 2**20:.0f} MiB): "
                "used the standard path (base recomputed every step)"
            )
    elif cache and index == 0:
        notes.append("whole backbone trained: standard path (nothing below the boundary to cache)")

    if use_cache:
        reuse = head.boundary_cache
        if reuse is not None and reuse.layer_index == index and reuse.train[0].shape[0] == passes + 1:
            bcache = reuse
            timings["boundary_cache_seconds"] = 0.0
            how = "kept from the head phase"
        else:
            bcache = cache_boundary(
                backbone, splits, index, backbone_name=backbone_name, augmented_passes=passes, seed=seed
            )
            timings["boundary_cache_seconds"] = bcache.seconds
            how = "computed"
        notes.append(
            f"boundary cache at {bcache.layer_name} ({bcache.nbytes / 2**20:.1f} MiB, {passes + 1} pass(es), {how})"
        )
        with strategy_scope():
            _, top = split_backbone(backbone, index)
            set_trainable_from(backbone, index)
            trainer = _top_trainer(top, head.head)
            _compile(trainer, learning_rate, num_classes, optimizer)
        train_data: Any = _PassSampler(bcache.train, bcache.train_labels, prof.batch_size, seed)
        val_x = bcache.validation[0] if len(bcache.validation) == 1 else tuple(bcache.validation)
        validation_data: Any = (val_x, bcache.validation_labels)
    else:
        with strategy_scope():
            trainer = given if given is not None else _join(backbone, head.head, backbone_name)
            set_trainable_from(backbone, index)
            _compile(trainer, learning_rate, num_classes, optimizer)
        train_data = _augmented(splits.train, default_augmentation(seed)) if passes else splits.train
        validation_data = splits.validation

    val_args = validation_data if use_cache else (validation_data,)
    from tlcourse import resume

    key = resume.resume_key(
        splits,
        phase="fine_tune",
        head=head.resume_key or _architecture(head.head),
        trainer=_architecture(trainer),
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
    start_weights = trainer.get_weights() if keep_better else None
    start_accuracy = float(trainer.evaluate(*val_args, verbose=0)[1]) if keep_better else math.nan
    history = trainer.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        callbacks=[*training_callbacks(run_dir, patience=patience, resume_key=key), *callbacks],
        shuffle=False,  # datasets and samplers shuffle themselves
        verbose=verbose,
    )
    timings["fine_tune_train_seconds"] = time.perf_counter() - t1
    _, val_accuracy = trainer.evaluate(*val_args, verbose=0)
    if keep_better and start_weights is not None and val_accuracy < start_accuracy:
        trainer.set_weights(start_weights)
        notes.append(
            f"fine-tuning did not beat the head on validation ({val_accuracy:.3f} < {start_accuracy:.3f}): "
            "kept the head's weights"
        )
        val_accuracy = start_accuracy
    if use_cache and given is not None:
        model = given  # the trainer shares its layers: the given classifier carries the trained weights
        with strategy_scope():
            set_trainable_from(backbone, index)
            _compile(model, learning_rate, num_classes, optimizer)
    elif use_cache:
        with strategy_scope():
            model = _join(backbone, head.head, backbone_name)  # same layer objects: the trained weights
            # compiled like the trainer, so model.evaluate / model.fit work on the end-to-end classifier too
            _compile(model, learning_rate, num_classes, optimizer)
    else:
        model = trainer
    return PhaseResult(
        model=model,
        backbone=backbone,
        head=head.head,
        trainer=trainer,
        history={k: list(map(float, v)) for k, v in history.history.items()},
        val_accuracy=float(val_accuracy),
        seconds=time.perf_counter() - start,
        epochs_run=len(history.history.get("loss", [])),
        trainable_params=count_params(trainer),
        notes=notes,
        timings=timings,
        dropout=head.dropout,
        boundary=backbone.layers[index].name,
        resume_key=key,
    )


# ------------------------------------------------------------------------------- other strategies


def zero_shot(
    splits: Any,
    *,
    task_classes: Mapping[str, list[str]] | None = None,
    alpha: float = 1.0,
    image_size: int = 224,
    mirror: Any = None,
    download: bool = True,
) -> tuple[float, str]:
    """Zero-shot accuracy: ImageNet's classifier, probabilities summed per task class (lesson 01/05).

    Uses :func:`tlcourse.zeroshot.load_imagenet_classifier` and :func:`tlcourse.zeroshot.evaluate_zero_shot`.
    ``task_classes`` maps each task class to WordNet synsets or names (default: the class name itself, e.g.
    ``"daisy"``). Returns ``(val_accuracy, note)``. Raises :class:`~tlcourse.errors.AssetMissingError` when
    the include-top ImageNet weights cannot be found or downloaded.
    """
    from tlcourse import imagenet, zeroshot

    classifier = zeroshot.load_imagenet_classifier(alpha, image_size, mirror=mirror, download=download)
    mapping = imagenet.zero_shot_mapping(
        dict(task_classes) if task_classes else {c: [c.replace("_", " ")] for c in splits.class_names},
        missing="error" if task_classes else "skip",  # a class ImageNet lacks is scored, never a crash
    )
    labels, probs = [], []
    for images, y in splits.validation:
        probs.append(np.asarray(classifier.predict(np.asarray(images))))
        labels.append(np.asarray(y))
    result = zeroshot.evaluate_zero_shot(
        np.concatenate(labels), np.concatenate(probs), mapping, splits.class_names
    )
    note = "no training; ImageNet classes summed per task class"
    if result.get("unmapped"):
        note += f"; no ImageNet class for {', '.join(result['unmapped'])}"
    return float(result["accuracy"]), note


def from_scratch(
    splits: Any,
    *,
    backbone_name: str = "mobilenet_v2",
    alpha: float = 0.35,
    image_size: int = 160,
    profile: Profile | str = "auto",
    epochs: int | None = None,
    learning_rate: float | None = None,
    dropout: float = 0.2,
    patience: int | None = 5,
    seed: int = 42,
    run_dir: str | os.PathLike | None = None,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    """The baseline transfer must beat: the same architecture, random weights, every layer trained (lesson 05).

    BatchNorm runs in training mode here (its statistics must be learned); augmentation is applied on the fly.
    """
    keras = _keras()
    from tlcourse import models
    from tlcourse.config import seed_everything

    prof = get_profile(profile) if isinstance(profile, str) else profile
    epochs = (prof.head_epochs + prof.fine_tune_epochs) if epochs is None else epochs
    learning_rate = prof.learning_rate if learning_rate is None else learning_rate
    num_classes = len(splits.class_names)
    seed_everything(seed)
    start = time.perf_counter()
    with strategy_scope():
        backbone = models.build_backbone(backbone_name, alpha=alpha, image_size=image_size, weights="random")
        backbone.trainable = True
        inputs = keras.Input((image_size, image_size, 3), name="image")
        x = models.preprocessing_layer(backbone_name)(inputs)
        x = backbone(x)  # BatchNorm in training mode while fitting
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
        model = keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="from_scratch")
        _compile(model, learning_rate, num_classes)
    history = model.fit(
        _augmented(splits.train, default_augmentation(seed)),
        validation_data=splits.validation,
        epochs=epochs,
        callbacks=[*training_callbacks(run_dir, patience=patience), *callbacks],
        shuffle=False,  # datasets and samplers shuffle themselves
        verbose=verbose,
    )
    _, val_accuracy = model.evaluate(splits.validation, verbose=0)
    return PhaseResult(
        model=model,
        backbone=backbone,
        head=model,
        history={k: list(map(float, v)) for k, v in history.history.items()},
        val_accuracy=float(val_accuracy),
        seconds=time.perf_counter() - start,
        epochs_run=len(history.history.get("loss", [])),
        trainable_params=count_params(model),
        dropout=dropout,
    )
