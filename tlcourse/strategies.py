"""The strategy harness of lesson 05: ways to use a pretrained network, compared on the same images.

:data:`STRATEGIES` is a table from a strategy's name to the function that runs it; :func:`compare_strategies`
runs the ones you name on the same data, seed and splits and returns one row per strategy:

- ``zero_shot``: no training at all; ImageNet's 1000-class classifier, its outputs summed per task class
  through the WordNet hierarchy (:func:`tlcourse.imagenet.zero_shot_mapping`).
- ``head_only``: frozen backbone, a new head trained on cached features (:func:`tlcourse.fastpath.fit_head_fast`).
- ``fine_tune_from:<layer>``: that head, then the backbone from ``<layer>`` upwards trained too
  (:func:`tlcourse.fastpath.fine_tune_fast`); ``<layer>`` is a layer index (``100``) or a block name
  (``block_13``).
- ``full_fine_tune``: that head, then every backbone layer trained (BatchNorm still in inference mode).
- ``from_scratch``: the same architecture with random weights, every layer trained (the baseline that transfer
  has to beat).

:func:`zero_shot` and :func:`from_scratch` run the two rows that train no pretrained network's head, one call
each; the other rows use the fast path (:mod:`tlcourse.fastpath`), tested equal to :mod:`tlcourse.train`.

Epochs and early stopping choose on validation; the accuracies that compare strategies are measured on the
test split (``splits.test``; the validation images when there is none) and each row is compared with a named
baseline as a **paired** difference on the same images (:func:`tlcourse.evaluate.paired_bootstrap`), which
separates strategies that separate intervals cannot. :func:`verdict` never names a winner within noise.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcourse import data, distribute, evaluate, fastpath, imagenet, models, train, zeroshot
from tlcourse.backbones import identity
from tlcourse.backend import keras_module as _keras
from tlcourse.config import Profile, get_profile, seed_everything
from tlcourse.errors import AssetMissingError, TLCourseError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "DEFAULT_STRATEGIES",
    "RESULT_COLUMNS",
    "STRATEGIES",
    "TIED",
    "ZERO_SHOT_SKIPPED",
    "HarnessBudget",
    "Outcome",
    "compare_strategies",
    "harness_budget",
    "from_scratch",
    "runner_for",
    "verdict",
    "zero_shot",
]

DEFAULT_STRATEGIES: tuple[str, ...] = (
    "zero_shot",
    "head_only",
    "fine_tune_from:block_13",
    "fine_tune_from:100",
    "full_fine_tune",
    "from_scratch",
)
"""The strategies lesson 05 compares, from no training at all to training everything."""

ZERO_SHOT_SKIPPED = "skipped: ImageNet classifier weights not available offline"

TIED = "tied within noise"
"""What :func:`verdict` says when the best row cannot be told apart from the runner-up."""

RESULT_COLUMNS = [
    "strategy",
    "val_accuracy",
    "test_accuracy",
    "vs_baseline",
    "vs_baseline_low",
    "vs_baseline_high",
    "train_seconds",
    "trainable_params",
    "epochs_run",
    "notes",
]


@dataclass
class Outcome:
    """What one strategy produced: its accuracies, its predicted classes on the test images, its cost."""

    val_accuracy: float
    predictions: np.ndarray | None  # predicted class of every test image, in order; None when it did not run
    train_seconds: float = 0.0
    trainable_params: int = 0
    epochs_run: int = 0
    notes: str = ""


@dataclass
class Context:
    """Everything the runners share: the base, the data, the settings and the head trained once for all."""

    base: Any
    splits: Any
    profile: Profile
    seed: int
    task_classes: Mapping[str, list[str]] | None
    mirror: Any
    download: bool
    run_dir: Path
    cache_dir: Any
    test_images: np.ndarray
    test_labels: np.ndarray
    head: dict[str, Any] = field(default_factory=dict)

    def predict(self, model: Any) -> np.ndarray:
        """Predicted classes of ``model`` on the test images."""
        scores = model.predict(self.test_images, verbose=0, batch_size=self.profile.batch_size)
        return np.asarray(scores).argmax(axis=1)


# ------------------------------------------------------------------------------------------- runners


def _task_mapping(names: Sequence[str], task_classes: Mapping[str, list[str]] | None) -> Any:
    """Each task class -> its ImageNet classes (default: the class name itself, e.g. ``"daisy"``)."""
    return imagenet.zero_shot_mapping(
        dict(task_classes) if task_classes else {c: [c.replace("_", " ")] for c in names},
        missing="error" if task_classes else "skip",  # a class ImageNet lacks is scored, never a crash
    )


def _zero_shot(ctx: Context, name: str, index: int) -> Outcome:
    start = time.perf_counter()
    width = identity(ctx.base).width or 1.0  # ImageNet's classifier at the base's width when it has one
    try:
        classifier = zeroshot.load_imagenet_classifier(width, mirror=ctx.mirror, download=ctx.download)
    except AssetMissingError:
        return Outcome(math.nan, None, notes=ZERO_SHOT_SKIPPED)
    names = ctx.splits.class_names
    mapping = _task_mapping(names, ctx.task_classes)
    val_x, val_y = _arrays(ctx.splits.validation)
    on_val = zeroshot.evaluate_zero_shot(val_y, np.asarray(classifier.predict(val_x)), mapping, names)
    on_test = zeroshot.evaluate_zero_shot(
        ctx.test_labels, np.asarray(classifier.predict(ctx.test_images)), mapping, names
    )
    note = "no training; ImageNet classes summed per task class"
    if on_val.get("unmapped"):
        note += f"; no ImageNet class for {', '.join(on_val['unmapped'])}"
    return Outcome(on_val["accuracy"], np.asarray(on_test["y_pred"]), time.perf_counter() - start, notes=note)


def _trained_head(ctx: Context) -> train.PhaseResult:
    """The head on cached features of a copy of the base, trained once and shared by every fine-tuning row."""
    if "result" not in ctx.head:
        with distribute.current_scope():
            base = _copy(ctx.base, keep_weights=True)
        result = fastpath.fit_head_fast(
            base, ctx.splits, profile=ctx.profile, seed=ctx.seed, cache_dir=ctx.cache_dir
        )
        ctx.head.update(result=result, predictions=ctx.predict(result.model))
    return ctx.head["result"]


def _copy(model: Any, *, keep_weights: bool) -> Any:
    """The same architecture, with the same weights or (``keep_weights=False``) freshly initialised ones."""
    keras = _keras()
    twin = keras.models.clone_model(model)
    if keep_weights:
        twin.set_weights(model.get_weights())
    return twin


def _head_only(ctx: Context, name: str, index: int) -> Outcome:
    result = _trained_head(ctx)
    return Outcome(
        result.val_accuracy,
        ctx.head["predictions"],
        result.seconds,
        result.trainable_params,
        result.epochs_run,
        "; ".join(result.notes),
    )


def _fine_tune(ctx: Context, name: str, index: int) -> Outcome:
    where: int | str = 0 if name == "full_fine_tune" else name.split(":", 1)[1]
    head = _trained_head(ctx)
    with distribute.current_scope():  # fine-tuning changes the base: each row starts from a fresh copy
        start = _copy(head.model, keep_weights=True)
    result = fastpath.fine_tune_fast(
        start,
        ctx.splits,
        from_layer=where,
        profile=ctx.profile,
        seed=ctx.seed,
        run_dir=ctx.run_dir / f"{index:02d}_{name.replace(':', '_')}",
    )
    return Outcome(
        result.val_accuracy,
        ctx.predict(result.model),
        head.seconds + result.seconds,
        result.trainable_params,
        head.epochs_run + result.epochs_run,
        "; ".join([f"unfrozen from {result.boundary}", *result.notes]),
    )


def _from_scratch(ctx: Context, name: str, index: int) -> Outcome:
    result = from_scratch(
        ctx.base,
        ctx.splits,
        profile=ctx.profile,
        seed=ctx.seed,
        run_dir=ctx.run_dir / f"{index:02d}_from_scratch",
    )
    return Outcome(
        result.val_accuracy,
        ctx.predict(result.model),
        result.seconds,
        result.trainable_params,
        result.epochs_run,
        "random weights, BatchNorm in training mode",
    )


# ---------------------------------------------------------------------------- the two non-transfer rows


def zero_shot(
    splits: Any,
    *,
    task_classes: Mapping[str, list[str]] | None = None,
    alpha: float = 1.0,
    image_size: int = 224,
    mirror: Any = None,
    download: bool = True,
) -> tuple[float, str]:
    """Zero-shot accuracy on the validation images: ImageNet's classifier, probabilities summed per task class
    (lesson 01 shows the plain version; lesson 05's harness row).

    Uses :func:`tlcourse.zeroshot.load_imagenet_classifier` and :func:`tlcourse.zeroshot.evaluate_zero_shot`.
    ``task_classes`` maps each task class to WordNet synsets or names (default: the class name itself, e.g.
    ``"daisy"``). Returns ``(val_accuracy, note)``. Raises :class:`~tlcourse.errors.AssetMissingError` when
    the include-top ImageNet weights cannot be found or downloaded.
    """
    classifier = zeroshot.load_imagenet_classifier(alpha, image_size, mirror=mirror, download=download)
    mapping = _task_mapping(splits.class_names, task_classes)
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
    base: Any,
    splits: Any,
    *,
    profile: Profile | str = "auto",
    seed: int = 42,
    patience: int | None = 5,
    run_dir: str | os.PathLike | None = None,
    callbacks: Sequence[Any] = (),
) -> train.PhaseResult:
    """The baseline transfer must beat: ``base``'s architecture with fresh random weights, every layer trained
    (lesson 05). ``base`` itself is left untouched.

    BatchNorm runs in training mode here (its statistics must be learned); augmentation is applied on the fly.
    Trains ``profile.head_epochs + profile.fine_tune_epochs`` epochs at ``profile.learning_rate``. Lesson 05's
    harness row; lesson 04 writes out the same graph (:func:`tlcourse.models.assemble`) with a frozen,
    pretrained base.
    """
    keras = _keras()
    prof = get_profile(profile) if isinstance(profile, str) else profile
    num_classes = len(splits.class_names)
    seed_everything(seed)
    start = time.perf_counter()
    with distribute.current_scope():
        fresh = _copy(base, keep_weights=False)
        fresh.trainable = True
        head = [keras.layers.Dropout(fastpath.HEAD_DROPOUT), keras.layers.Dense(num_classes, name="logits")]
        model = models.assemble(fresh, head, training=None, name="from_scratch")  # BatchNorm learns
        models.compile_classifier(model, prof.learning_rate, num_classes=num_classes)
    history = model.fit(
        data.augment_dataset(splits.train, data.default_augmentation(seed)),
        validation_data=splits.validation,
        epochs=prof.head_epochs + prof.fine_tune_epochs,
        callbacks=[*train.training_callbacks(run_dir, patience=patience), *callbacks],
        shuffle=False,  # datasets and samplers shuffle themselves
        verbose=0,
    )
    _, val_accuracy = model.evaluate(splits.validation, verbose=0)
    return train.PhaseResult.build(
        model,
        backbone=fresh,
        head=model,
        history=history,
        val_accuracy=val_accuracy,
        started=start,
        dropout=fastpath.HEAD_DROPOUT,
    )


Runner = Callable[[Context, str, int], Outcome]

STRATEGIES: dict[str, Runner] = {
    "zero_shot": _zero_shot,
    "head_only": _head_only,
    "fine_tune_from": _fine_tune,  # named "fine_tune_from:<layer>"
    "full_fine_tune": _fine_tune,
    "from_scratch": _from_scratch,
}
"""Strategy name -> the function that runs it (``fine_tune_from`` takes its layer after a colon)."""


def runner_for(name: str) -> Runner:
    """The runner of a strategy name; an unknown name raises ``ValueError`` saying which names exist."""
    key, colon, layer = name.partition(":")
    if key not in STRATEGIES or (key == "fine_tune_from") != bool(colon and layer):
        raise ValueError(
            f"Unknown strategy {name!r}: use zero_shot, head_only, fine_tune_from:<layer>, "
            "full_fine_tune or from_scratch."
        )
    return STRATEGIES[key]


# --------------------------------------------------------------------------------------------- harness


def _arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(np.asarray(x), np.asarray(y)) for x, y in dataset]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs]).astype("int64")


def verdict(
    labels: Any,
    predictions: Mapping[str, Any],
    val_accuracy: Mapping[str, float],
    *,
    seed: int = 42,
    n: int = 2000,
) -> str:
    """One sentence on the best strategy that never names a winner within noise (lesson 05).

    The best row is chosen on **validation** (``val_accuracy``; the choice must not look at test); it is then
    compared with the runner-up on the same test images (``labels`` and each strategy's ``predictions``) by
    :func:`tlcourse.evaluate.paired_bootstrap`. When that 95% interval contains 0 the sentence says
    :data:`TIED`; only an interval above 0 names a winner.
    """
    ran = sorted(
        (name for name in predictions if predictions[name] is not None), key=lambda s: -val_accuracy[s]
    )
    if len(ran) < 2:
        return "fewer than two strategies ran: nothing to compare"
    best, runner_up = ran[0], ran[1]
    diff, low, high = evaluate.paired_bootstrap(
        labels, predictions[runner_up], predictions[best], n=n, seed=seed
    )
    detail = (
        f"{best} minus {runner_up} on {len(np.asarray(labels))} test images: {diff:+.3f} "
        f"(paired 95% interval {low:+.3f} to {high:+.3f})"
    )
    if low <= 0 <= high:
        return f"{best} and {runner_up} are {TIED}: {detail}; prefer the cheaper one"
    if low > 0:
        return f"{best} is best beyond noise: {detail}"
    return f"validation chose {best}, but it is behind {runner_up} on the test images: {detail}"


def compare_strategies(
    base: Any,
    splits: Any,
    strategies: Iterable[str] = DEFAULT_STRATEGIES,
    *,
    baseline: str = "head_only",
    profile: Profile | str = "auto",
    seed: int = 42,
    task_classes: Mapping[str, list[str]] | None = None,
    mirror: Any = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Run every strategy on ``base`` with the same data, seed and splits; one row per strategy (lesson 05).

    ``base`` is the pretrained backbone (from :func:`tlcourse.models.build_backbone` or ``keras.applications``);
    every row works on a copy of it, so ``base`` is left as it was. Epochs, learning rates and augmented passes
    come from ``profile`` (``profile.replace(fine_tune_epochs=2)`` changes one); ``from_scratch`` trains
    ``head_epochs + fine_tune_epochs`` epochs. The ``zero_shot`` row loads ImageNet's classifier at the base's
    width (``mirror``, ``download``) and maps its classes onto the task's (``task_classes``).

    Columns (:data:`RESULT_COLUMNS`): ``val_accuracy`` (what the epochs and early stopping chose on),
    ``test_accuracy`` on ``splits.test`` (the validation images when there is no test split),
    ``vs_baseline`` with ``vs_baseline_low``/``vs_baseline_high``: the row's test accuracy minus the
    ``baseline`` strategy's, as a paired 95% bootstrap interval on the same test images; ``train_seconds`` (the
    whole strategy, head phase included), ``trainable_params`` (last phase), ``epochs_run`` (all phases) and
    ``notes``. ``table.attrs`` holds ``evaluated_on``, ``n_test``, ``baseline`` and ``verdict``
    (:func:`verdict`). The head is trained once; every fine-tuning strategy starts from a fresh copy of it. A
    strategy that cannot run gets a row whose notes say why, with NaN accuracies. An unknown strategy name
    raises ``ValueError`` before any training.
    """
    import pandas as pd

    names = list(strategies)
    runners = [runner_for(name) for name in names]
    test = splits.test if getattr(splits, "test", None) is not None else splits.validation
    test_images, test_labels = _arrays(test)
    base_dir = Path(tempfile.mkdtemp(prefix="tlcourse-strategies-"))
    ctx = Context(
        base=base,
        splits=splits,
        profile=get_profile(profile) if isinstance(profile, str) else profile,
        seed=seed,
        task_classes=task_classes,
        mirror=mirror,
        download=download,
        run_dir=base_dir,
        cache_dir=cache_dir,
        test_images=test_images,
        test_labels=test_labels,
    )
    outcomes: dict[str, Outcome] = {}
    try:
        for index, (name, runner) in enumerate(zip(names, runners, strict=True)):
            try:
                outcomes[name] = runner(ctx, name, index)
            except TLCourseError as error:
                outcomes[name] = Outcome(math.nan, None, notes=f"failed: {error}")
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)

    reference = outcomes.get(baseline)
    rows = []
    for name in names:
        out = outcomes[name]
        row = {"strategy": name, "val_accuracy": out.val_accuracy, "test_accuracy": math.nan}
        row.update(vs_baseline=math.nan, vs_baseline_low=math.nan, vs_baseline_high=math.nan)
        if out.predictions is not None:
            row["test_accuracy"] = float(np.mean(out.predictions == test_labels))
            if reference is not None and reference.predictions is not None:
                diff, low, high = evaluate.paired_bootstrap(
                    test_labels, reference.predictions, out.predictions, seed=seed
                )
                row.update(vs_baseline=diff, vs_baseline_low=low, vs_baseline_high=high)
        row.update(
            train_seconds=out.train_seconds,
            trainable_params=out.trainable_params,
            epochs_run=out.epochs_run,
            notes=out.notes,
        )
        rows.append(row)
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table.attrs.update(
        evaluated_on="test" if getattr(splits, "test", None) is not None else "validation",
        n_test=len(test_labels),
        baseline=baseline,
        verdict=verdict(
            test_labels,
            {name: out.predictions for name, out in outcomes.items()},
            {name: out.val_accuracy for name, out in outcomes.items()},
            seed=seed,
        ),
    )
    return table


# ------------------------------------------------------------------------------------------- budget

_SCHEDULES: dict[str, dict[str, Any]] = {
    # on a CPU: the lesson's images, no augmented passes, two fine-tuning epochs and one depth, without the two
    # costly rows; on a GPU every row, three depths and the profile's own schedule
    "smoke": {"depths": ("block_15",), "fine_tune_epochs": 1, "passes": 0, "costly": False},
    "cpu": {"depths": ("block_15",), "fine_tune_epochs": 2, "passes": 0, "costly": False},
    "gpu": {
        "depths": ("block_15", "block_13", 100),
        "fine_tune_epochs": None,
        "passes": None,
        "costly": True,
    },
}


@dataclass(frozen=True)
class HarnessBudget:
    """What lesson 05's strategy harness may spend in one profile (:func:`harness_budget`)."""

    profile: Profile
    """The schedule the compared rows train with: the lesson's profile with the harness's passes, fine-tuning
    epochs and rate."""
    strategies: tuple[str, ...]
    """The rows compared on the same test images, zero-shot first; ``full_fine_tune`` only where affordable."""
    scratch_profile: Profile | None
    """The ``from_scratch`` row's own schedule (``head_epochs + fine_tune_epochs`` epochs), or None where the
    budget leaves the row out."""

    def describe(self) -> str:
        """One line a lesson prints: the rows, the passes and the epochs."""
        scratch = (
            f"from scratch {self.scratch_profile.head_epochs + self.scratch_profile.fine_tune_epochs} epochs"
            if self.scratch_profile is not None
            else "no full fine-tune or from-scratch row"
        )
        return (
            f"harness ({self.profile.name}): {', '.join(self.strategies)}; {self.profile.augmented_passes} "
            f"augmented pass(es), up to {self.profile.fine_tune_epochs} fine-tuning epoch(s) at "
            f"{self.profile.fine_tune_learning_rate:g}; {scratch}"
        )


def harness_budget(
    profile: Profile,
    *,
    depths: Sequence[int | str] | None = None,
    fine_tune_learning_rate: float | None = None,
) -> HarnessBudget:
    """The strategy harness's budget in ``profile`` (lesson 05): which rows run, and with what schedule.

    In the smoke and cpu profiles the harness uses the lesson's images with no augmented passes, a short
    fine-tuning schedule (1 and 2 epochs) and one depth (``block_15``), and leaves out ``full_fine_tune`` and
    ``from_scratch``, which cost minutes on a CPU; in the gpu profile it runs every row at three depths with the
    profile's passes and epochs. ``depths`` replaces the default depths; ``fine_tune_learning_rate`` the
    profile's rate (lesson 05 passes its own).
    """
    schedule = _SCHEDULES.get(profile.name)
    if schedule is None:
        raise TLCourseError(
            f"The strategy harness has no budget for a profile named {profile.name!r}: "
            f"use one of {', '.join(_SCHEDULES)} (config.get_profile)."
        )
    chosen = profile.replace(
        augmented_passes=profile.augmented_passes if schedule["passes"] is None else schedule["passes"],
        fine_tune_epochs=schedule["fine_tune_epochs"] or profile.fine_tune_epochs,
        fine_tune_learning_rate=fine_tune_learning_rate or profile.fine_tune_learning_rate,
    )
    rows = ["zero_shot", "head_only", *(f"fine_tune_from:{depth}" for depth in depths or schedule["depths"])]
    for row in rows:
        runner_for(row)  # an unknown depth spelling fails here, before any training
    scratch = None
    if schedule["costly"]:
        rows.append("full_fine_tune")
        scratch = chosen.replace(head_epochs=profile.head_epochs, fine_tune_epochs=profile.fine_tune_epochs)
    return HarnessBudget(profile=chosen, strategies=tuple(rows), scratch_profile=scratch)
