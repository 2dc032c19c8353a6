"""The capstone pipeline without a notebook: ``tlcourse train`` (lesson 08; ``tlcourse predict`` is
:mod:`tlcourse.cli.predicting`).

``tlcourse train DIR --out OUT`` runs the same steps as lesson 08's notebook, printing each stage. Its width and
input size are the profile's capstone setting (:meth:`tlcourse.config.Profile.for_capstone`; in ``cpu`` wider and
larger than the lessons', chosen by ``benchmarks/accuracy_vs_time.py``), unless ``--alpha``/``--size`` say otherwise:

1. audit the folder (an unusable folder stops here with the audit's one-line reason, exit status 2);
2. load the images (train/validation/test splits, float32 [0, 255]; without a ``test/`` folder
   ``TEST_FRACTION`` of each class's training images become the test split);
3. feature extraction: a head trained on cached features of the frozen backbone
   (:func:`tlcourse.fastpath.fit_head_fast`, the opt-in fast path);
4. fine-tuning of the backbone's top, on cached boundary activations
   (:func:`tlcourse.fastpath.fine_tune_fast`, the opt-in fast path);
5. evaluation on the **test** split with bootstrap intervals (:mod:`tlcourse.evaluate`): epochs, early
   stopping and keep_better chose on validation, so only test is untouched by selection;
6. export: ``.keras`` (reloaded in safe mode), SavedModel and TFLite (``--formats`` chooses), each checked by a round trip.

Each training phase prints one line per epoch (loss, accuracy, validation accuracy, seconds). It writes
``OUT/model.keras``, ``OUT/class_names.json``, ``OUT/metrics.json``, ``OUT/model_card.md`` and, beside them,
``OUT/learning_curves.png`` and ``OUT/confusion_matrix.png``, which the card shows.

One ``tlcourse train`` at a time may write to an ``OUT`` (:mod:`tlcourse.cli.outlock`; a second one stops with one
line). Killed at any moment and run again with the same arguments, it continues where it stopped and ends with
the model an uninterrupted run would have made: a head phase killed mid-way resumes at its last finished epoch,
a finished head is reused, fine-tuning resumes likewise (:mod:`tlcourse.resume`), and an export killed while its
files moved in is undone or completed first (:func:`tlcourse.export.recover_export`). ``metrics.json`` and the
model card record where the run picked up (``resumed_from``) and the full history of both phases.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from tlcourse.audit import printable
from tlcourse.backbones import get_spec
from tlcourse.backend import jsonable
from tlcourse.config import (
    CAPSTONE_SECONDS_PER_1000_IMAGES,
    get_profile,
    onednn_enabled,
    quiet_tensorflow,
)
from tlcourse.errors import DataError, TLCourseError
from tlcourse.export import CARD_FILE, CLASS_NAMES_FILE, CONFUSION_FILE, CURVES_FILE, METRICS_FILE

MODEL_FILE = "model.keras"
TEST_FRACTION = 0.2  # share of each class's training images held out as test (when there is no test/ folder)


def _say(message: str) -> None:
    print(message, flush=True)


def epoch_lines(phase: str, say: Any = _say) -> Any:
    """A Keras callback that prints one line per epoch, e.g. ``head epoch 2/5: loss 0.41, accuracy 0.88,
    val_loss 0.45, val_accuracy 0.86 (3.1 s)`` (lesson 08: ``tlcourse train``).

    One line per epoch rather than Keras' per-batch progress bar, so logs (CI, ``nohup``) stay short.
    """
    import keras

    class EpochLines(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.epochs = int(self.params.get("epochs") or 0)

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            values = ", ".join(f"{name} {float(value):.3g}" for name, value in (logs or {}).items())
            seconds = time.perf_counter() - getattr(self, "started", time.perf_counter())
            say(f"      {phase} epoch {epoch + 1}/{self.epochs}: {values} ({seconds:.1f} s)")

    return EpochLines()


def _progress_kwargs(function: Any, phase: str) -> dict[str, Any]:
    """Per-epoch lines for a training function: through its ``callbacks`` argument when it has one, else
    Keras' own one-line-per-epoch mode (``verbose=2``)."""
    import inspect

    if "callbacks" in inspect.signature(function).parameters:
        return {"callbacks": [epoch_lines(phase)]}
    return {"verbose": 2}


def _save_figures(out: Path, history: Any, summary: Any, class_names: Sequence[str]) -> dict[str, str]:
    """Learning curves and confusion matrix as PNG beside the model; returns {title: file name} for the card."""
    from tlcourse import plots

    saved: dict[str, str] = {}
    try:
        plots.save_figure(plots.learning_curves(history), out / CURVES_FILE)
        saved["Learning curves"] = CURVES_FILE
    except (ValueError, OSError) as error:
        _say(f"      could not draw the learning curves: {error}")
    matrix = (summary or {}).get("confusion_matrix")
    if matrix:
        try:
            plots.save_figure(plots.confusion_matrix(matrix, list(class_names)), out / CONFUSION_FILE)
            saved["Confusion matrix (validation set)"] = CONFUSION_FILE
        except (ValueError, OSError) as error:
            _say(f"      could not draw the confusion matrix: {error}")
    return saved


def _audit(directory: str) -> Any:
    from tlcourse import audit

    report = audit.audit_folder(directory)
    if not report.usable:
        raise DataError(report.reason)
    return report


MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024
"""Input sizes ``tlcourse train --size`` accepts: MobileNetV2 needs 32 px; above 1024 px the cached images
alone outgrow a laptop's memory (the course trains at 96 to 224 px)."""


def _printable(text: Any) -> str:
    return printable(str(text))


@contextlib.contextmanager
def quiet_decoding() -> Iterator[None]:
    """Silence Pillow's ``DecompressionBombWarning`` while images load (lesson 08).

    :data:`tlcourse.imageio.MAX_DECODE_PIXELS` already refuses images too big to decode, and big JPEGs are
    decoded reduced, so Pillow's warning about their stored size is noise; the loaders' threads share it.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def validate_train_args(args: Any) -> None:
    """Refuse out-of-range ``tlcourse train`` settings before any work, each with one line (lesson 08)."""
    alpha = getattr(args, "alpha", None)
    spec = get_spec(getattr(args, "backbone", None) or "mobilenet_v2")  # its record says which widths exist
    widest = max(spec.alphas, default=math.inf)
    if alpha is not None and not (math.isfinite(float(alpha)) and 0 < float(alpha) <= widest):
        raise TLCourseError(
            f"--alpha {alpha} is not a width multiplier: give a number above 0 and at most {widest} "
            f"({spec.family}'s published widths are {', '.join(f'{a:g}' for a in spec.alphas)})."
        )
    size = getattr(args, "size", None)
    if size is not None and not MIN_IMAGE_SIZE <= int(size) <= MAX_IMAGE_SIZE:
        raise TLCourseError(
            f"--size {size} is out of range: give an image size from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels "
            "(the course trains at 96 to 224)."
        )
    seed = getattr(args, "seed", 42)
    if seed is not None and not 0 <= int(seed) < 2**32:
        raise TLCourseError(f"--seed {seed} is out of range: give a whole number from 0 to {2**32 - 1}.")
    export_formats(args)
    if not str(getattr(args, "directory", "")).strip():
        raise DataError(
            "The image folder is an empty string: give the folder that holds one sub-folder per class."
        )


def export_formats(args: Any) -> tuple[str, ...]:
    """The formats ``--formats`` asks for, in :data:`tlcourse.export.FORMATS`'s order (all when not given)."""
    from tlcourse.export import FORMATS

    given = getattr(args, "formats", None)
    wanted = (
        [part.strip() for part in str(given).split(",") if part.strip()] if given is not None else FORMATS
    )
    unknown = [name for name in wanted if name not in FORMATS]
    if unknown:
        raise TLCourseError(
            f"--formats: {', '.join(unknown)} is not an export format; choose from {', '.join(FORMATS)}, "
            "separated by commas."
        )
    if "keras" not in wanted:
        raise TLCourseError(
            "--formats must include keras: model.keras is the file `tlcourse predict` and the report read "
            "(add saved_model or tflite to it, e.g. --formats keras,tflite)."
        )
    return tuple(name for name in FORMATS if name in wanted)


def check_out_dir(out: str | os.PathLike, option: str = "--out") -> Path:
    """Make sure ``out`` is (or can become) a folder this process can write to, before any work (lesson 08).

    Folders it had to create for the check are removed again. Raises :class:`TLCourseError` with one line.
    """
    target = Path(out)
    if not str(out).strip():
        raise TLCourseError(f"{option} is an empty string: give the folder for the results.")
    shown = _printable(target)
    created: list[Path] = []
    try:
        if target.exists() and not target.is_dir():
            raise TLCourseError(f"{option} {shown} is a file, not a folder: choose a folder for the results.")
        for parent in target.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise TLCourseError(
                        f"{option} {shown} lies under {_printable(parent)}, which is a file: choose another folder."
                    )
                break
        missing = [p for p in (target, *target.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        probe = tempfile.NamedTemporaryFile(dir=target, prefix=".tlcourse-write-test-")
        probe.close()
    except TLCourseError:
        raise
    except OSError as error:
        raise TLCourseError(
            f"Cannot write to {option} {shown} ({error.strerror or type(error).__name__}): "
            "choose a folder you can write to."
        ) from None
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return target


def _readable_folder(directory: str) -> None:
    """Refuse a data folder that is missing, a file, or under a folder this user cannot read (one line)."""
    try:
        is_dir = Path(directory).is_dir()
    except OSError as error:
        raise DataError(
            f"Cannot read {_printable(directory)} ({error.strerror or type(error).__name__}): "
            "check the permissions of the folders above it."
        ) from None
    if not is_dir:
        raise DataError(
            f"{_printable(directory)} is not a folder. Give a folder with one sub-folder of images per class."
        )


def train_command(args: Any) -> int:
    """``tlcourse train DIR --out OUT``: audit, train, fine-tune, evaluate, export (lesson 08).

    Returns 0 on success. A folder that cannot be used prints the audit's reason on one line and returns 2;
    so does any other problem the user can fix (missing weights offline, ...). Never a traceback for those.
    """
    try:
        with contextlib.ExitStack() as scope:  # the --distribute strategy's scope, entered by _train
            return _train(args, scope)
    except TLCourseError as error:
        print(f"tlcourse train: {error}", file=sys.stderr, flush=True)
        return 2


def _train(args: Any, scope: contextlib.ExitStack | None = None) -> int:
    started = time.perf_counter()
    directory = str(args.directory)
    validate_train_args(args)
    _readable_folder(directory)
    out = check_out_dir(args.out)
    from tlcourse.cli.outlock import holding

    with holding(out, "tlcourse train"):  # a second train into this --out stops here with one line
        return _train_locked(args, out, directory, started, scope)


def _train_locked(
    args: Any, out: Path, directory: str, started: float, scope: contextlib.ExitStack | None
) -> int:
    from tlcourse import export

    repaired = export.recover_export(out)  # an export killed while its files moved: undone or completed
    if repaired:
        _say(f"      {_printable(repaired)}")
    force = bool(getattr(args, "force", False))
    earlier = export.ExportStage(out).existing()
    if earlier and not force:
        raise TLCourseError(
            f"{_printable(out)} already holds a model from an earlier run ({', '.join(earlier)}); it is never "
            "replaced silently: pass --force to replace it (the earlier files are then kept in "
            f"{_printable(out / 'previous')}), or choose another --out."
        )
    timings: dict[str, float] = {}
    report = _audit_stage(directory, timings)
    run = _settings(args, directory, scope)
    splits = _load_stage(run, report, timings)
    head, tuned, head_held_out = _training_stages(run, splits, out / "run", timings)
    return _evaluate_and_export(run, out, report, splits, head, tuned, head_held_out, timings, started, force)


def _audit_stage(directory: str, timings: dict[str, float]) -> Any:
    _say(f"[1/6] audit {_printable(directory)}")
    t = time.perf_counter()
    report = _audit(directory)
    timings["audit"] = time.perf_counter() - t
    counts = ", ".join(f"{_printable(name)} {count}" for name, count in report.classes.items())
    _say(f"      {len(report.records)} usable images in {len(report.classes)} classes ({counts})")
    if report.problems:
        _say(
            f"      {len(report.problems)} file(s) skipped (run `tlcourse check-data {_printable(directory)}` for the list)"
        )
    for warning in report.warnings:
        _say(f"      warning: {_printable(warning)}")
    return report


def _settings(args: Any, directory: str, scope: contextlib.ExitStack | None) -> SimpleNamespace:
    """Everything the run decides before touching data: profile, width, size, seed, distribution."""
    quiet_tensorflow(onednn=True)  # as `tlcourse train` does (cli.build_parser), for callers in Python too
    from tlcourse import distribute
    from tlcourse.config import seed_everything

    formats = export_formats(args)  # checked by validate_train_args already
    profile = get_profile(args.profile or "auto").for_capstone()  # the capstone's width and size (config.py)
    alpha = float(args.alpha) if args.alpha else profile.alpha
    size = int(args.size) if args.size else profile.image_size
    overrides = dict(getattr(args, "profile_overrides", None) or {})  # for scripts/tests: e.g. head_epochs=5
    profile = profile.replace(alpha=alpha, image_size=size, **overrides)
    backbone_name = getattr(args, "backbone", None) or "mobilenet_v2"
    seed = int(getattr(args, "seed", 42))
    seed_everything(seed)
    chosen = distribute.choose(getattr(args, "distribute", None) or "none", batch_size=profile.batch_size)
    profile = profile.replace(batch_size=chosen.global_batch_size)  # fit splits each batch across replicas
    if scope is not None:
        scope.enter_context(chosen.scope())
    _say(f"      {chosen.describe()}")
    return SimpleNamespace(
        directory=directory, formats=formats, profile=profile, alpha=alpha, size=size, overrides=overrides,
        backbone_name=backbone_name, weights=getattr(args, "weights", None) or "imagenet", seed=seed,
        mirror=getattr(args, "mirror", None), chosen=chosen,
        fine_tune_from=getattr(args, "fine_tune_from", None) or get_spec(backbone_name).default_unfreeze_from,
    )  # fmt: skip


def _load_stage(run: SimpleNamespace, report: Any, timings: dict[str, float]) -> Any:
    from tlcourse import data

    _say(f"[2/6] load images (profile {run.profile.name}, {run.size}px, batch {run.profile.batch_size})")
    t = time.perf_counter()
    with quiet_decoding():
        splits = data.load_for_profile(
            run.profile, source=run.directory, image_size=run.size, seed=run.seed, mirror=run.mirror,
            report=report, test_fraction=TEST_FRACTION,
        )  # fmt: skip
    timings["load"] = time.perf_counter() - t
    _say(
        f"      {splits.train_count} training / {splits.validation_count} validation / {splits.test_count} test "
        "images, "
        f"classes: {', '.join(_printable(name) for name in splits.class_names)}"
    )
    return splits


def _training_stages(
    run: SimpleNamespace, splits: Any, run_dir: Path, timings: dict[str, float]
) -> tuple[Any, Any, float | None]:
    """The head on cached features, then fine-tuning; each resumes from ``run_dir`` after a crash."""
    from tlcourse import evaluate, fastpath, models, train

    run_dir.mkdir(parents=True, exist_ok=True)
    _say(
        f"[3/6] feature extraction: frozen {run.backbone_name} (alpha {run.alpha}, weights {run.weights}) + new head"
    )
    t = time.perf_counter()
    head = fastpath.fit_head_fast(
        models.build_backbone(
            run.backbone_name, alpha=run.alpha, image_size=run.size, weights=run.weights, mirror=run.mirror,
            seed=run.seed,
        ),
        splits, profile=run.profile, seed=run.seed, run_dir=run_dir / "head",
        boundary=run.fine_tune_from,  # keep the boundary tensors from the same run: fine-tuning reuses them
        **_progress_kwargs(train.fit_head, "head"),
    )  # fmt: skip
    timings["head"] = time.perf_counter() - t
    _say(
        f"      head val accuracy {head.val_accuracy:.3f} after {head.epochs_run} epoch(s), "
        f"{timings['head']:.1f}s" + (f" ({'; '.join(head.notes)})" if head.notes else "")
    )
    held_out = splits.test if splits.test is not None else splits.validation  # never used to choose
    y_held, head_probs = evaluate.predict_dataset(head.model, held_out)  # before fine-tuning changes the base
    head_held_out = float(np.mean(head_probs.argmax(axis=1) == y_held)) if len(y_held) else None

    _say(
        f"[4/6] fine-tune from {run.fine_tune_from} at learning rate {run.profile.fine_tune_learning_rate:g}"
    )
    t = time.perf_counter()
    tuned = fastpath.fine_tune_fast(
        head, splits, from_layer=run.fine_tune_from, profile=run.profile,
        seed=run.seed, run_dir=run_dir / "fine_tune", **_progress_kwargs(train.fine_tune, "fine-tune"),
    )  # fmt: skip
    timings["fine_tune"] = time.perf_counter() - t
    _say(
        f"      fine-tuned val accuracy {tuned.val_accuracy:.3f} after {tuned.epochs_run} epoch(s), "
        f"{timings['fine_tune']:.1f}s" + (f" ({'; '.join(tuned.notes)})" if tuned.notes else "")
    )
    return head, tuned, head_held_out


def resumed_from(run_dir: Path) -> dict[str, Any] | None:
    """Where this run picked up an interrupted one (lesson 08): ``{"phase": "head", "epoch": N}`` when the head
    phase resumed at epoch N, ``{"phase": "fine_tune", "epoch": N}`` when the head was reused whole and
    fine-tuning started at epoch N (0: from its start); None for a run from scratch."""
    from tlcourse.resume import read_resumed

    head, tuned = read_resumed(run_dir / "head"), read_resumed(run_dir / "fine_tune")
    if head and not head.get("reused"):
        return {"phase": "head", "epoch": int(head.get("epoch", 0))}
    if head:
        return {"phase": "fine_tune", "epoch": int((tuned or {}).get("epoch", 0))}
    return None


def _evaluate_and_export(
    run: SimpleNamespace, out: Path, report: Any, splits: Any, head: Any, tuned: Any,
    head_held_out: float | None, timings: dict[str, float], started: float, force: bool,
) -> int:  # fmt: skip
    from tlcourse import data, evaluate, export, modelcard, train

    model = tuned.model
    held_out = splits.test if splits.test is not None else splits.validation
    # epochs, early stopping and keep_better chose on validation; the headline figures come from test
    split = "test" if splits.test is not None else "validation"
    _say(f"[5/6] evaluate on the {split} set")
    t = time.perf_counter()
    summary = evaluate.evaluation_summary(model, held_out, splits.class_names)
    timings["evaluate"] = time.perf_counter() - t
    test_accuracy = float(summary["accuracy"])
    interval = summary.get("accuracy_interval")
    _say(
        f"      {split} accuracy {test_accuracy:.3f}"
        + (f" (95% interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
    )

    _say(f"[6/6] export to {_printable(out)}")
    t = time.perf_counter()
    class_names = [str(name) for name in splits.class_names]
    with export.ExportStage(out, replace=force, keep_previous=True) as stage:
        stage.write_text(CLASS_NAMES_FILE, json.dumps(class_names, indent=1) + "\n")
        sample = next(iter(splits.validation))[0]
        exported = export.export_formats(
            model,
            stage.path,
            np.asarray(sample),
            formats=run.formats,
            class_names=class_names,
            report_dir=out,
        )
        timings["export"] = time.perf_counter() - t
        for line in _export_lines(exported):
            _say(f"      {line}")
        timings["total"] = time.perf_counter() - started
        history = train.merge_histories(head.history, tuned.history, names=["head", "fine_tune"])
        settings = _recorded_settings(run, tuned)
        picked_up = resumed_from(out / "run")
        metrics = {
            "head_val_accuracy": head.val_accuracy,
            "fine_tune_val_accuracy": tuned.val_accuracy,
            "evaluated_on": split,
            f"head_{split}_accuracy": head_held_out,
            f"{split}_accuracy": test_accuracy,
            f"{split}_accuracy_interval": interval,
            "evaluation": summary,
            "class_names": list(splits.class_names),
            "data": {
                "directory": str(Path(run.directory).resolve()),
                "source": splits.source,
                "train_count": splits.train_count,
                "validation_count": splits.validation_count,
                "test_count": splits.test_count,
                "fingerprint": splits.fingerprint,
                "class_counts": dict(report.classes),
                "skipped_files": len(report.problems),
                "duplicates": (splits.duplicates or data.find_duplicates(report)).to_dict(),
            },
            "settings": settings,
            "timings_seconds": timings,
            "phase_timings": {"head": head.timings, "fine_tune": tuned.timings},  # extraction vs training
            "epochs_run": {"head": head.epochs_run, "fine_tune": tuned.epochs_run},
            "resumed_from": picked_up,
            "history": history,
            "export": exported,
            "notes": [*head.notes, *tuned.notes],
            "environment": {"python": platform.python_version(), "platform": platform.platform()},
        }
        figures = _save_figures(stage.path, history, summary, splits.class_names)
        metrics["figures"] = figures
        stage.write_text(METRICS_FILE, json.dumps(jsonable(metrics), indent=2) + "\n")
        card = modelcard.model_card(
            model_name=f"{run.backbone_name} (alpha {run.alpha}, {run.size}px) fine-tuned on {Path(run.directory).name}",
            class_names=list(splits.class_names),
            metrics=metrics,
            data_source=splits.source,
            class_counts=dict(report.classes),
            settings=settings,
            figures=figures,
        )
        stage.write_text(CARD_FILE, card)
        replaced = stage.commit()
    if replaced:
        _say(
            f"      replaced the earlier run's {', '.join(replaced)} in {_printable(out)}; "
            f"the earlier files are kept in {_printable(out / export.PREVIOUS_DIR)}"
        )
    keras_info = exported.get("keras") or {}
    if keras_info.get("error"):
        print(
            f"tlcourse train: the model could not be saved ({keras_info['error']}); metrics.json and "
            "model_card.md record the run.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    _say(
        f"done in {timings['total']:.1f}s: {out / MODEL_FILE}, {out / METRICS_FILE}, {out / CARD_FILE} "
        f"({split} accuracy {test_accuracy:.3f})"
    )
    return 0


def _recorded_settings(run: SimpleNamespace, tuned: Any) -> dict[str, Any]:
    profile = run.profile
    settings = {
        "profile": profile.name,
        "backbone": run.backbone_name,
        "alpha": run.alpha,
        "image_size": run.size,
        "weights": str(run.weights),
        "seed": run.seed,
        "batch_size": profile.batch_size,
        "distribute": run.chosen.kind,
        "replicas": run.chosen.replicas,
        "head_epochs": profile.head_epochs,
        "fine_tune_epochs": profile.fine_tune_epochs,
        "learning_rate": profile.learning_rate,
        "fine_tune_learning_rate": profile.fine_tune_learning_rate,
        "augmented_passes": profile.augmented_passes,
        "fine_tune_from": str(run.fine_tune_from),
        "fine_tune_boundary": tuned.boundary,
        "max_images_per_class": profile.max_images_per_class,
        "onednn": onednn_enabled(),
        "formats": list(run.formats),
    }
    measured = CAPSTONE_SECONDS_PER_1000_IMAGES.get(profile.name)
    capstone = get_profile(profile.name).for_capstone()
    if measured and (run.alpha, run.size) == (capstone.alpha, capstone.image_size) and not run.overrides:
        settings["measured_seconds_per_1000_images"] = measured  # benchmarks/accuracy_vs_time.py
    return settings


def _export_lines(exported: Any) -> list[str]:
    """One line per format: its file and round-trip difference, or FAILED and why (never crashes on a failure)."""
    lines = []
    if isinstance(exported, dict):
        for name, info in exported.items():
            if not isinstance(info, dict):
                continue
            diff = info.get("max_abs_diff")
            if info.get("error") or not isinstance(diff, (int, float)):
                lines.append(f"{name}: FAILED {_printable(info.get('error', 'no round-trip result'))}")
            else:
                flag = "" if info.get("ok", True) else f" ABOVE the tolerance {info.get('tolerance')}"
                lines.append(
                    f"{name}: {_printable(info.get('path', ''))} (round-trip max |diff| {diff:.2g}{flag})"
                )
    return lines
