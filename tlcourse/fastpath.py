"""The opt-in fast path: a head on cached features, then boundary-cached fine-tuning (lessons 04 and 05, asides).

Lessons 04 and 05 show the plain version first, the Keras calls that :func:`tlcourse.train.fit_head` and
:func:`tlcourse.train.fine_tune` run on the model they are given. This module does the same training faster and
says so in its names; tests/test_fastpath.py proves it reaches the plain path's weights on the same batches:

- :func:`fit_head_fast` trains a new head on the pooled features of the base it is given, computed once (plus
  cached augmented passes) and kept on disk (lesson 04, step 6).
- :func:`fine_tune_fast` fine-tunes on cached boundary activations (lesson 05's aside): the layers below the
  unfreeze boundary are frozen and their BatchNorm layers run in inference mode, so they compute a fixed
  function of the image; the frozen bottom runs once per cached pass and only the top and the head are trained
  on the tensors that cross the boundary (same layer objects, so the end-to-end model carries the trained
  weights). It runs straight through: plan the boundary, unfreeze once, compile once, fit.

Both take the model itself, never a description of it: every cache and resume key is derived from the base's
:func:`~tlcourse.backbones.identity` (architecture, width, input size, a digest of every weight) and the data's
fingerprint, so another width, or the same base after its weights changed, never reuses cached features, a
boundary cache or a saved head phase. The engine that computes and keeps the tensors is
:mod:`tlcourse.fastcache`. Epochs, learning rates and augmented passes come from the profile
(``profile.replace(head_epochs=5)`` changes one). :func:`tlcourse.strategies.compare_strategies` (lesson 05's
harness) and ``tlcourse train`` use this path.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tlcourse import diagnose, distribute, fastcache, features, models, resume
from tlcourse.backbones import base_of, identity
from tlcourse.backend import keras_module as _keras
from tlcourse.config import Profile, get_profile, seed_everything
from tlcourse.errors import TLCourseError
from tlcourse.train import PhaseResult, training_callbacks

HEAD_DROPOUT = 0.2
"""Dropout before the fast path's new Dense head (lesson 04's default)."""

__all__ = ["HEAD_DROPOUT", "fine_tune_fast", "fit_head_fast"]


def _profile(profile: Profile | str) -> Profile:
    return get_profile(profile) if isinstance(profile, str) else profile


def _compile(trained: Sequence[Any], learning_rate: float, num_classes: int, optimizer: Any = None) -> None:
    """Compile every model in ``trained`` with one optimizer: a fresh Adam at ``learning_rate``, or a fresh
    copy of ``optimizer`` (the same class and settings: how the fast path keeps a model's own compile). The
    models share their trainable variables, so the optimizer's state serves each of them."""
    keras = _keras()
    fresh = (
        keras.optimizers.Adam(learning_rate)
        if optimizer is None
        else type(optimizer).from_config(optimizer.get_config())
    )
    for model in trained:
        models.compile_classifier(model, learning_rate, num_classes=num_classes, optimizer=fresh)


# ------------------------------------------------------------------------------------------ head phase


def fit_head_fast(
    base: Any,
    splits: Any,
    *,
    profile: Profile | str = "auto",
    seed: int = 42,
    patience: int | None = 5,
    dropout: float = HEAD_DROPOUT,
    boundary: int | str | None = None,
    run_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    """FAST PATH (opt-in): a new head trained on ``base``'s cached features (lesson 04, step 6).

    Lesson 04 shows the plain version first (``extractor.predict`` once, a head fitted on the arrays, then
    :func:`tlcourse.features.cached_features` keeping that predict on disk); :func:`tlcourse.train.fit_head` is
    the plain end-to-end ``model.fit`` of a model you built and compiled yourself. ``base`` is a backbone from
    :func:`tlcourse.models.build_backbone` or ``keras.applications`` (``include_top=False``), built inside the
    active distribution scope; it is frozen here. This function builds its own head (``dropout``, then Dense)
    and compiles it with Adam at ``profile.learning_rate``.

    The frozen base runs once over the validation set and ``1 + profile.augmented_passes`` times over the
    training set (pass 0 plain, the others augmented); the features are cached on disk under a key read from
    ``base`` itself and the data, so a second call with the same base and data skips the base entirely, while
    another width or changed weights compute anew. Each epoch trains the head on every training example once,
    each taken from a random cached pass. The returned ``model`` is the end-to-end classifier (raw pixels in,
    logits out). Epochs: ``profile.head_epochs``; ``patience=None`` turns early stopping off.

    With ``boundary`` (the layer :func:`fine_tune_fast` will unfreeze from) the same single run of the base
    also keeps the tensors at that boundary in memory (``result.boundary_cache``), so the fine-tuning that
    follows never runs the frozen bottom again. With ``run_dir`` the trained head is saved with its key and a
    rerun with the same base, data and settings reuses it (after a crash in fine-tuning, say).
    """
    prof = _profile(profile)
    passes = prof.augmented_passes
    num_classes = len(splits.class_names)
    start = time.perf_counter()
    models.freeze(base)
    # read once: the feature files, the boundary cache and the saved phase all derive from it
    who = identity(base)
    key = resume.resume_key(
        splits,
        phase="head",
        base=who.key,
        pooling="avg",
        epochs=prof.head_epochs,
        learning_rate=prof.learning_rate,
        augmented_passes=passes,
        dropout=dropout,
        seed=seed,
        batch_size=prof.batch_size,
        patience=patience,
        boundary=boundary,
    )
    seed_everything(seed)  # the head's initial weights, and dropout's draws, follow the seed
    with distribute.current_scope():
        head = models.build_head((int(base.output_shape[-1]),), num_classes, dropout=dropout)
        _compile([head], prof.learning_rate, num_classes)
    saved = None if run_dir is None else _load_saved_head(run_dir, key, head)
    inputs = fastcache.head_inputs(
        base,
        splits,
        who=who,
        boundary=boundary,
        passes=passes,
        seed=seed,
        batch_size=prof.batch_size,
        cache_dir=cache_dir,
        need_features=saved is None,
    )
    notes = list(inputs.notes)
    timings = {"extract_seconds": inputs.seconds, "head_train_seconds": 0.0}
    if saved is not None:
        notes.append(
            "head phase reused from the earlier run with the same data and settings (not trained again)"
        )
        history, val_accuracy = saved.get("history"), saved.get("val_accuracy", math.nan)
        epochs_run = int(saved.get("epochs_run", 0))
    else:
        t1 = time.perf_counter()
        fit_callbacks = [*training_callbacks(run_dir, patience=patience, resume_key=key), *callbacks]
        history = head.fit(
            inputs.train,
            validation_data=inputs.validation,
            epochs=prof.head_epochs,
            callbacks=fit_callbacks,
            shuffle=False,  # the sampler shuffles itself
            verbose=0,
        )
        timings["head_train_seconds"] = time.perf_counter() - t1
        val_accuracy = head.evaluate(*inputs.validation, verbose=0, batch_size=256)[1]
        epochs_run = None
    with distribute.current_scope():
        classifier = features.join_head(base, head, pooling="avg")
    result = PhaseResult.build(
        classifier,
        backbone=base,
        head=head,
        counted=head,
        history=history,
        val_accuracy=val_accuracy,
        started=start,
        epochs_run=epochs_run,
        notes=notes,
        timings=timings,
        dropout=dropout,
        boundary_cache=inputs.boundary_cache,
        resume_key=key,
    )
    if run_dir is not None and saved is None:  # a rerun with the same key (after a crash) reuses it
        info = {
            "history": result.history,
            "val_accuracy": result.val_accuracy,
            "epochs_run": result.epochs_run,
        }
        resume.save_phase(run_dir, key, head, info)
    return result


def _load_saved_head(run_dir: str | os.PathLike, key: str, head: Any) -> dict[str, Any] | None:
    """The record of a head phase saved in ``run_dir`` under ``key``, its weights loaded into ``head``."""
    if not any((Path(run_dir) / name).exists() for name in (resume.PHASE_RECORD, resume.PHASE_WEIGHTS)):
        return None
    head.optimizer.build(head.trainable_variables)  # the saved weights hold its state too
    return resume.load_phase(run_dir, key, head)


# ---------------------------------------------------------------------------------------- fine-tuning


def _starting_point(start: PhaseResult | Any) -> tuple[Any, Any, Any | None]:
    """``(base, head, given classifier or None)`` of a head phase or of a classifier built as ``Input ->
    preprocessing -> base(training=False) -> GlobalAveragePooling2D -> head`` (its own layers, no copies)."""
    if isinstance(start, PhaseResult):
        return start.backbone, start.head, None
    keras = _keras()
    base = base_of(start)
    pools = [layer for layer in start.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if base is None or not pools:
        raise TLCourseError(
            "fine_tune_fast needs a classifier built as Input -> preprocessing -> base(training=False) -> "
            "GlobalAveragePooling2D -> head (lesson 04, step 3)."
        )
    return base, keras.Model(pools[0].output, start.outputs[0], name="head"), start


def fine_tune_fast(
    start: PhaseResult | Any,
    splits: Any,
    *,
    from_layer: int | str | None = None,
    profile: Profile | str = "auto",
    seed: int = 42,
    patience: int | None = 3,
    keep_better: bool = True,
    run_dir: str | os.PathLike | None = None,
    callbacks: Sequence[Any] = (),
) -> PhaseResult:
    """FAST PATH (opt-in): boundary-cached fine-tuning of a head phase or a classifier (lesson 05, aside).

    Lesson 05 shows the plain recipe first (unfreeze, ``model.compile`` at a low rate, ``model.fit`` with
    ``initial_epoch`` and ``EarlyStopping``), which :func:`tlcourse.train.fine_tune` runs on the model it is
    given. ``start`` is what :func:`fit_head_fast` returned, or a classifier you built and trained (it is
    trained in place and returned, with a fresh copy of the optimizer you compiled it with and its learning
    rate). Never start from a random head: its large gradients would wreck the pretrained features.

    It runs straight through: the boundary is planned once (``from_layer``, a layer index or name; by default
    the base's record, :attr:`~tlcourse.backbones.BackboneSpec.default_unfreeze_from`), the base is unfrozen
    once from there (BatchNorm stays frozen, in inference mode), one optimizer is compiled once, and ``fit``
    runs. When the boundary tensors fit in :data:`tlcourse.fastcache.MAX_CACHE_BYTES`, the frozen bottom runs
    once per cached pass (or not at all: a boundary cache of the same base and data kept by
    ``fit_head_fast(..., boundary=...)`` is reused) and only the top and the head train; otherwise, or with
    ``from_layer=0``, the standard path trains end to end and a note says so. Epochs, learning rate and passes
    come from the profile (``fine_tune_epochs``, ``fine_tune_learning_rate``, ``augmented_passes``). The
    returned ``model`` is the end-to-end classifier, compiled; ``history`` is this phase's only (join phases
    with :func:`tlcourse.train.merge_histories`). Early stopping restores the best epoch; with ``keep_better``
    the starting weights come back (a note says so) when no epoch beat them on validation.
    """
    prof = _profile(profile)
    passes = prof.augmented_passes
    num_classes = len(splits.class_names)
    base, head, given = _starting_point(start)
    optimizer = getattr(given, "optimizer", None)
    learning_rate = prof.fine_tune_learning_rate
    if optimizer is not None:  # compiled as given: a fresh copy of its optimizer, at its own rate
        learning_rate = diagnose.trainable_report(given).learning_rate or learning_rate
    seed_everything(seed)
    started = time.perf_counter()
    with distribute.current_scope():
        model = given if given is not None else features.join_head(base, head, pooling="avg")
    kept = start.boundary_cache if isinstance(start, PhaseResult) else None
    inputs = fastcache.fine_tune_inputs(
        base, head, splits, from_layer, passes=passes, seed=seed, batch_size=prof.batch_size, kept=kept
    )
    key = resume.resume_key(
        splits,
        phase="fine_tune",
        start=identity(model).key,  # the base and the head as they start: another start, another run
        from_layer=inputs.plan.index,
        epochs=prof.fine_tune_epochs,
        learning_rate=learning_rate,
        optimizer="adam" if optimizer is None else type(optimizer).__name__,
        augmented_passes=passes,
        batch_size=prof.batch_size,
        patience=patience,
        keep_better=keep_better,
        seed=seed,
    )
    models.unfreeze_from(base, inputs.plan.index)  # once
    trainer = inputs.trainer or model
    with distribute.current_scope():  # once, one optimizer: the trainer shares its variables with the model
        _compile([trainer, model] if trainer is not model else [model], learning_rate, num_classes, optimizer)
    notes, timings = list(inputs.notes), {"boundary_cache_seconds": inputs.seconds}
    t1 = time.perf_counter()
    fit_callbacks = [*training_callbacks(run_dir, patience=patience, resume_key=key), *callbacks]
    history, val_accuracy = _fit_keeping_better(
        trainer, inputs.train, inputs.validation, prof.fine_tune_epochs, fit_callbacks, keep_better, notes
    )
    timings["fine_tune_train_seconds"] = time.perf_counter() - t1
    return PhaseResult.build(
        model,
        backbone=base,
        head=head,
        trainer=trainer,
        counted=trainer,
        history=history,
        val_accuracy=val_accuracy,
        started=started,
        notes=notes,
        timings=timings,
        dropout=start.dropout if isinstance(start, PhaseResult) else HEAD_DROPOUT,
        boundary=inputs.plan.name,
        resume_key=key,
    )


def _fit_keeping_better(
    trainer: Any,
    train_data: Any,
    validation: tuple[Any, ...],
    epochs: int,
    callbacks: list[Any],
    keep_better: bool,
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
        verbose=0,
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
