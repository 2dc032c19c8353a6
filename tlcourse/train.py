"""Training: the plain recipe on the model you give it, its callbacks and resume glue (lessons 04 and 05).

The plain recipe (lessons 04 and 05 write it out in Keras first): :func:`fit_head` fits a classifier whose base
is frozen, :func:`fine_tune` fits it again after you unfroze the top of the base and compiled it at a low rate.
Both call ``model.fit`` on **the model they are given, compiled as given**, with a fresh augmentation of the
training images every epoch and ``EarlyStopping(restore_best_weights=True)`` on validation; each returns a
:class:`PhaseResult` (built by :meth:`PhaseResult.build`, the one constructor every phase uses).
:func:`training_callbacks` gives the callbacks every phase uses (early stopping, a best-weights checkpoint and
:func:`tlcourse.resume.resumable_backup`); :func:`merge_histories` joins two phases' histories.

Unfreezing and compiling are the student's own calls (:func:`tlcourse.models.unfreeze_from`,
:func:`tlcourse.models.compile_classifier`, or plain Keras). The opt-in shortcuts (cached features,
boundary-cached fine-tuning) live in :mod:`tlcourse.fastpath`, tested equal to this module's plain path; the
strategy harness (zero-shot, from scratch) in :mod:`tlcourse.strategies`.
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

from tlcourse import data, diagnose, distribute
from tlcourse.backbones import base_of
from tlcourse.backend import count_params
from tlcourse.backend import keras_module as _keras
from tlcourse.config import Profile, get_profile, seed_everything
from tlcourse.errors import TLCourseError
from tlcourse.features import batch_predictor
from tlcourse.resume import resumable_backup, resume_key

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
    boundary_cache: Any = None
    """A :class:`tlcourse.fastcache.BoundaryCache` kept by :func:`tlcourse.fastpath.fit_head_fast` when asked
    (``boundary=``) so :func:`tlcourse.fastpath.fine_tune_fast` need not run the bottom again."""
    resume_key: str | None = None
    """The data-and-settings key this phase's resume state is saved under (:mod:`tlcourse.resume`)."""

    @classmethod
    def build(
        cls,
        model: Any,
        *,
        history: Any = None,
        val_accuracy: float = math.nan,
        started: float | None = None,
        seconds: float | None = None,
        epochs_run: int | None = None,
        counted: Any = None,
        **fields: Any,
    ) -> PhaseResult:
        """The one way every phase makes its result.

        ``history`` is a ``keras.callbacks.History`` or its dict (values become floats); ``epochs_run``
        defaults to the length of its ``loss``; ``seconds`` to the time since ``started``
        (``time.perf_counter()``); ``trainable_params`` is counted on ``counted`` (default: ``model``). Any
        other field (``backbone``, ``head``, ``notes``, ...) is passed by name.
        """
        data = getattr(history, "history", history) or {}
        history_dict = {k: [float(x) for x in v] for k, v in dict(data).items()}
        if seconds is None:
            seconds = 0.0 if started is None else time.perf_counter() - started
        return cls(
            model=model,
            backbone=fields.pop("backbone", None),
            head=fields.pop("head", None),
            history=history_dict,
            val_accuracy=float(val_accuracy),
            seconds=float(seconds),
            epochs_run=len(history_dict.get("loss", [])) if epochs_run is None else int(epochs_run),
            trainable_params=count_params(model if counted is None else counted),
            **fields,
        )


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


# ------------------------------------------------------------------------------------ the plain recipe


def _require_compiled(model: Any, what: str) -> None:
    distribute.require_built_in_scope(model, what)
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
    seed_everything(seed)
    key = _plain_key(model, splits, epochs=epochs, initial_epoch=initial_epoch, augment=augment, seed=seed)
    train_data = (
        data.augment_dataset(splits.train, data.default_augmentation(seed)) if augment else splits.train
    )
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
    return PhaseResult.build(
        model,
        backbone=base_of(model),
        history=history,
        val_accuracy=val_accuracy,
        started=start,
        notes=notes,
        resume_key=key,
    )


def _plain_key(model: Any, splits: Any, **settings: Any) -> str:
    """The resume key of a plain ``fit``: the data, what the backup's weights must fit (how many weights train,
    and every weight's shape), the optimizer and the settings. Not the weights' values: the same call after an
    interruption, whose weights have moved, must find its backup."""
    optimizer = getattr(model, "optimizer", None)
    config = optimizer.get_config() if hasattr(optimizer, "get_config") else None
    shapes = [count_params(model), [tuple(w.shape) for w in model.weights]]
    return resume_key(splits, phase="plain", model=shapes, optimizer=config, **settings)


def _accuracy(model: Any, dataset: Any) -> float:
    """Accuracy of a logits model on a dataset of (images, labels), whatever metrics it was compiled with.

    The batches go through one traced predict function: an eager ``model(images)`` keeps every layer's output
    of the batch alive until it returns, which raised lesson 08's peak memory past Binder's 2 GB.
    """
    predict = batch_predictor(model)
    hits, total = 0, 0
    for images, labels in dataset:
        logits = np.asarray(predict(images))
        y = np.asarray(labels).reshape(-1)
        predicted = (logits[:, 0] > 0).astype(int) if logits.shape[-1] == 1 else logits.argmax(axis=1)
        hits += int((predicted == y).sum())
        total += len(y)
    return hits / max(total, 1)


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
    :func:`tlcourse.fastpath.fit_head_fast`.
    """
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
    validation. For the boundary-cached shortcut see :func:`tlcourse.fastpath.fine_tune_fast`.
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
