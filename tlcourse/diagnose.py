"""Diagnostics for fine-tuning: what trains, which mode BatchNorm runs in, and the classic mistakes (lesson 05).

- :func:`trainable_report` counts trainable and frozen parameters, says whether each BatchNorm layer runs in
  inference mode while ``fit`` runs, and whether the model must be compiled again.
- :func:`snapshot_weights` copies the weights before ``fit``; :func:`check_mistakes` then proves that frozen
  weights stayed put and explains, in plain words, the classic transfer-learning errors (base not called with
  ``training=False``, BatchNorm statistics moving, preprocessing twice, not recompiled, a fine-tuning rate
  that is too high, a base left trainable in the head phase).
- :func:`unfreeze_summary` says what fine-tuning from a layer would train, without changing the model (the
  unfreeze widget of lesson 05 shows it at a slider's position).

Lesson 05 shows each of these by hand first (``base.trainable``, ``len(model.trainable_weights)``, the
``layer.moving_mean`` of a BatchNorm layer before and after ``fit``); these functions are the same checks
gathered in one call.

Which mode each layer runs in comes from :mod:`tlcourse.layermodes`; the private Keras state the checks need
(the recorded call graph, what a compile recorded) is read in :mod:`tlcourse.kerasprivate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcourse import kerasprivate, layermodes
from tlcourse.backbones import spec_of
from tlcourse.backend import count_variables, is_container, walk_layers
from tlcourse.backend import keras_module as _keras
from tlcourse.errors import TLCourseError
from tlcourse.models import FINE_TUNE_MAX_LEARNING_RATE, is_batchnorm, layer_index, trainable_signature

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
        """Plain values (JSON-ready): every field, and ``batchnorm_in_inference``."""
        return {**dataclasses.asdict(self), "batchnorm_in_inference": self.batchnorm_in_inference}

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
    recorded = kerasprivate.compiled_mark(model)
    if recorded is not None:
        if recorded != trainable_signature(model):
            return True, True
    else:  # compiled with plain model.compile: Keras' own record (missing -> not stale)
        state = kerasprivate.compiled_trainable_state(model)
        if state is not None:
            for layer in walk_layers(model, include_self=True):
                if layer not in state or state[layer] != layer.trainable:
                    return True, True
    if getattr(optimizer, "built", False):
        # After a fit the optimizer holds slots for the variables it was built with: a different
        # trainable set means the next fit would not train the newly unfrozen layers.
        built_with = {id(v) for v in kerasprivate.optimizer_variables(optimizer)}
        if built_with and built_with != {id(v) for v in model.trainable_variables}:
            return True, True
    return True, False


def _batchnorm_status(model: Any) -> list[BatchNormStatus]:
    statuses = []
    for mode in layermodes.layer_modes(model):
        if not is_batchnorm(mode.layer):
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
    return any(mode.explicit is False and mode.path in prefixes for mode in layermodes.layer_modes(model))


def trainable_report(model: Any) -> TrainableReport:
    """Trainable vs frozen parameters, BatchNorm modes and whether to recompile (lesson 05).

    Run it on the whole classifier (not just the backbone): whether a BatchNorm layer runs in inference
    mode depends on how the classifier calls the backbone. ``print(report)`` shows a table;
    ``report.to_dict()`` gives plain values.
    """
    trainable_ids = {id(v) for v in model.trainable_weights}
    layers = [layer for layer in walk_layers(model) if layer.weights and not is_container(layer)]
    trainable_layers = sum(1 for layer in layers if any(id(v) in trainable_ids for v in layer.weights))
    compiled, stale = _needs_recompile(model)
    return TrainableReport(
        model_name=str(model.name),
        total_params=int(model.count_params()),
        trainable_params=count_variables(model.trainable_weights),
        frozen_params=count_variables(model.non_trainable_weights),
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


def backbone_input_range(model: Any, base: Any, sample: np.ndarray) -> tuple[float, float] | None:
    """Min and max of the values that reach ``base`` inside ``model`` for ``sample`` (lesson 05; the graders)."""
    keras = _keras()
    if base is model:
        return float(sample.min()), float(sample.max())
    for tensor in kerasprivate.call_arguments(base):
        try:
            probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, tensor)
            values = np.asarray(probe(sample, training=False))
        except Exception:  # the call belongs to another model that shares this backbone
            continue
        return float(values.min()), float(values.max())
    return None


def _check_base_training(model: Any, sample: np.ndarray | None) -> list[Mistake]:
    if kerasprivate.graph_calls(model) is None:
        return [] if sample is None else _check_batchnorm_at_runtime(model, sample)
    bases = layermodes.bases_in(model)
    if bases:
        for mode in bases:
            if mode.explicit is not False and layermodes.has_batchnorm(mode.layer):
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
        moving = (
            [bn for bn in _batchnorm_status(model) if not bn.inference_mode]
            if layermodes.has_conv(model)
            else []
        )
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
    bns = [layer for layer in walk_layers(model) if is_batchnorm(layer)]
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
            f"({len(moved)} variables moved in one batch). Set trainable = False on every BatchNorm layer, then "
            "compile again, so they keep the ImageNet statistics: in Keras 3 that is what puts them in inference "
            "mode inside fit.",
        )
    ]


def _check_preprocessing(model: Any, sample: np.ndarray) -> list[Mistake]:
    bases = layermodes.bases_in(model)
    candidates = [(mode.layer, spec_of(mode.layer)) for mode in bases]
    if not candidates and spec_of(model) is not None:
        candidates = [(model, spec_of(model))]
    raw = (float(sample.min()), float(sample.max()))
    for base, spec in candidates:
        if spec is None:
            continue
        observed = backbone_input_range(model, base, sample)
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
    base_layers = layermodes.base_layers(model)
    trainable = [layer for layer in base_layers if layer.trainable_weights and not is_container(layer)]
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
                " Some are BatchNorm moving statistics: trainable BatchNorm layers ran in training mode. Set "
                "trainable = False on every BatchNorm layer (tlcourse.models.unfreeze_from does), then compile "
                "again; in Keras 3, base(x, training=False) does not stop fit from updating them."
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


# ------------------------------------------------------------------------------------------ unfreezing


@dataclass(frozen=True)
class UnfreezeLayer:
    """One layer of a backbone as the unfreeze summary sees it."""

    name: str
    kind: str
    is_input: bool
    is_batchnorm: bool
    trainable_ids: tuple[int, ...]


def _intrinsic_trainable(layer: Any) -> list[Any]:
    """Variables of ``layer`` (and its sublayers) that train when the layer is trainable."""
    found: list[Any] = []
    for sub in walk_layers(layer, include_self=True):
        own = kerasprivate.own_trainable_variables(sub)
        if own is None:  # not a Keras 3 layer: fall back to the public flag
            return [weight for weight in layer.weights if getattr(weight, "trainable", True)]
        found.extend(own)
    return found


def unfreeze_table(backbone: Any) -> tuple[list[UnfreezeLayer], dict[int, int], int]:
    """Per-layer facts, sizes of every trainable-in-principle variable, and the model's total params."""
    keras = _keras()

    sizes: dict[int, int] = {}
    table = []
    for layer in backbone.layers:
        ids = []
        for variable in _intrinsic_trainable(layer):
            sizes[id(variable)] = int(np.prod(variable.shape))
            ids.append(id(variable))
        table.append(
            UnfreezeLayer(
                name=str(layer.name),
                kind=type(layer).__name__,
                is_input=isinstance(layer, keras.layers.InputLayer),
                is_batchnorm=isinstance(layer, keras.layers.BatchNormalization),
                trainable_ids=tuple(dict.fromkeys(ids)),
            )
        )
    total = int(sum(int(np.prod(v.shape)) for v in backbone.weights))
    return table, sizes, total


def resolve_unfreeze_index(backbone: Any, where: int | str) -> int:
    """:func:`tlcourse.models.layer_index` for the unfreeze widget (a slider's NumPy integer value included;
    ``len(layers)``, the slider's top position, unfreezes nothing)."""
    return layer_index(backbone, where)


def summarise_unfreeze(
    table: Sequence[UnfreezeLayer], sizes: Mapping[int, int], total: int, index: int
) -> dict[str, Any]:
    unfrozen = [info for info in table[index:] if not info.is_input and not info.is_batchnorm]
    kept_bn = [info for info in table[index:] if info.is_batchnorm]
    trainable_ids = {vid for info in unfrozen for vid in info.trainable_ids}
    trainable = int(sum(sizes[vid] for vid in trainable_ids))
    bn_ids = {vid for info in kept_bn for vid in info.trainable_ids} - trainable_ids
    content = [info for info in table if not info.is_input]
    return {
        "fine_tune_from": index,
        "boundary_layer": table[index].name if index < len(table) else None,
        "first_unfrozen": unfrozen[0].name if unfrozen else None,
        "layers_total": len(content),
        "layers_unfrozen": len(unfrozen),
        "layers_frozen": len(content) - len(unfrozen),
        "layers_with_weights_unfrozen": sum(1 for info in unfrozen if info.trainable_ids),
        "batchnorm_kept_frozen": len(kept_bn),
        "batchnorm_params_kept_frozen": int(sum(sizes[vid] for vid in bn_ids)),
        "trainable_params": trainable,
        "frozen_params": total - trainable,
        "total_params": total,
        "trainable_share": trainable / total if total else 0.0,
    }


def unfreeze_summary(backbone: Any, fine_tune_from: int | str) -> dict[str, Any]:
    """What fine-tuning from ``fine_tune_from`` would train, without changing ``backbone`` (lesson 05).

    ``fine_tune_from`` is a layer index (``0`` ... ``len(backbone.layers)``, the last meaning nothing is
    unfrozen) or a layer/block name as :func:`tlcourse.models.layer_index` accepts. The counts follow
    :func:`tlcourse.models.unfreeze_from`: layers from that index up become trainable except BatchNorm
    layers, which stay frozen (inference mode, ImageNet statistics). Returns ``fine_tune_from`` (the index),
    ``boundary_layer``, ``first_unfrozen`` (first layer that would train), ``layers_total``,
    ``layers_unfrozen``, ``layers_frozen``, ``layers_with_weights_unfrozen``, ``batchnorm_kept_frozen``,
    ``batchnorm_params_kept_frozen``, ``trainable_params``, ``frozen_params``, ``total_params`` and
    ``trainable_share`` (trainable / total).
    """
    index = resolve_unfreeze_index(backbone, fine_tune_from)
    table, sizes, total = unfreeze_table(backbone)
    return summarise_unfreeze(table, sizes, total, index)
