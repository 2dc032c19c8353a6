"""The capstone pipeline without a notebook: ``tlcourse train`` and ``tlcourse predict`` (lesson 08).

``tlcourse train DIR --out OUT`` runs the same steps as lesson 08's notebook, printing each stage:

1. audit the folder (an unusable folder stops here with the audit's one-line reason, exit status 2);
2. load the images (train/validation splits, float32 [0, 255]);
3. feature extraction: a head trained on cached features of the frozen backbone
   (:func:`tlcourse.train.fit_head_fast`, the opt-in fast path);
4. fine-tuning of the backbone's top, on cached boundary activations
   (:func:`tlcourse.train.fine_tune_fast`, the opt-in fast path);
5. evaluation on the validation set with bootstrap intervals (:mod:`tlcourse.evaluate`);
6. export: ``.keras`` (reloaded in safe mode), SavedModel and TFLite, each checked by a round trip.

It writes ``OUT/model.keras``, ``OUT/class_names.json``, ``OUT/metrics.json`` and ``OUT/model_card.md``.
``tlcourse predict OUT/model.keras IMAGE...`` loads the model in safe mode, prepares each image exactly as
training did (:func:`tlcourse.imageio.load_image` at the model's input size) and prints the top classes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.config import get_profile, quiet_tensorflow
from tlcourse.errors import DataError, TLCourseError
from tlcourse.evaluate import to_probabilities

CLASS_NAMES_FILE = "class_names.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
CARD_FILE = "model_card.md"


def _say(message: str) -> None:
    print(message, flush=True)


def _jsonable(value: Any) -> Any:
    """Make numpy scalars/arrays, paths and NaN safe for json.dump."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _audit(directory: str) -> Any:
    from tlcourse import audit

    report = audit.audit_folder(directory)
    if not report.usable:
        raise DataError(report.reason)
    return report


def train_command(args: Any) -> int:
    """``tlcourse train DIR --out OUT``: audit, train, fine-tune, evaluate, export (lesson 08).

    Returns 0 on success. A folder that cannot be used prints the audit's reason on one line and returns 2;
    so does any other problem the user can fix (missing weights offline, ...). Never a traceback for those.
    """
    try:
        return _train(args)
    except TLCourseError as error:
        print(f"tlcourse train: {error}", file=sys.stderr, flush=True)
        return 2


def _train(args: Any) -> int:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    directory = str(args.directory)
    out = Path(args.out)
    if not Path(directory).is_dir():
        raise DataError(
            f"{directory} is not a folder. Give a folder with one sub-folder of images per class."
        )

    _say(f"[1/6] audit {directory}")
    t = time.perf_counter()
    report = _audit(directory)
    timings["audit"] = time.perf_counter() - t
    counts = ", ".join(f"{name} {count}" for name, count in report.classes.items())
    _say(f"      {len(report.records)} usable images in {len(report.classes)} classes ({counts})")
    if report.problems:
        _say(
            f"      {len(report.problems)} file(s) skipped (run `tlcourse check-data {directory}` for the list)"
        )
    for warning in report.warnings:
        _say(f"      warning: {warning}")

    quiet_tensorflow()
    from tlcourse import data, evaluate, export, train
    from tlcourse.config import seed_everything

    profile = get_profile(args.profile or "auto")
    alpha = float(args.alpha) if args.alpha else profile.alpha
    size = int(args.size) if args.size else profile.image_size
    overrides = dict(getattr(args, "profile_overrides", None) or {})  # for scripts/tests: e.g. head_epochs=5
    profile = profile.replace(alpha=alpha, image_size=size, **overrides)
    backbone_name = getattr(args, "backbone", None) or "mobilenet_v2"
    weights = getattr(args, "weights", None) or "imagenet"
    seed = int(getattr(args, "seed", 42))
    mirror = getattr(args, "mirror", None)
    fine_tune_from = getattr(args, "fine_tune_from", None) or train.default_fine_tune_from(backbone_name)
    seed_everything(seed)

    _say(f"[2/6] load images (profile {profile.name}, {size}px, batch {profile.batch_size})")
    t = time.perf_counter()
    splits = data.load_for_profile(
        profile, source=directory, image_size=size, seed=seed, mirror=mirror, report=report
    )
    timings["load"] = time.perf_counter() - t
    _say(
        f"      {splits.train_count} training / {splits.validation_count} validation images, "
        f"classes: {', '.join(splits.class_names)}"
    )

    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    _say(f"[3/6] feature extraction: frozen {backbone_name} (alpha {alpha}, weights {weights}) + new head")
    t = time.perf_counter()
    head = train.fit_head_fast(
        splits,
        backbone_name=backbone_name,
        alpha=alpha,
        image_size=size,
        weights=weights,
        mirror=mirror,
        profile=profile,
        seed=seed,
        run_dir=run_dir / "head",
        boundary=fine_tune_from,  # keep the boundary tensors from the same run: fine-tuning reuses them
    )
    timings["head"] = time.perf_counter() - t
    _say(
        f"      head val accuracy {head.val_accuracy:.3f} after {head.epochs_run} epoch(s), "
        f"{timings['head']:.1f}s" + (f" ({'; '.join(head.notes)})" if head.notes else "")
    )

    _say(f"[4/6] fine-tune from {fine_tune_from} at learning rate {profile.fine_tune_learning_rate:g}")
    t = time.perf_counter()
    tuned = train.fine_tune_fast(
        head,
        splits,
        from_layer=fine_tune_from,
        backbone_name=backbone_name,
        profile=profile,
        seed=seed,
        run_dir=run_dir / "fine_tune",
    )
    timings["fine_tune"] = time.perf_counter() - t
    _say(
        f"      fine-tuned val accuracy {tuned.val_accuracy:.3f} after {tuned.epochs_run} epoch(s), "
        f"{timings['fine_tune']:.1f}s" + (f" ({'; '.join(tuned.notes)})" if tuned.notes else "")
    )
    model = tuned.model

    _say("[5/6] evaluate on the validation set")
    t = time.perf_counter()
    summary = evaluate.evaluation_summary(model, splits.validation, splits.class_names)
    timings["evaluate"] = time.perf_counter() - t
    val_accuracy = float(summary["accuracy"])
    interval = summary.get("accuracy_interval")
    _say(
        f"      val accuracy {val_accuracy:.3f}"
        + (f" (95% interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
    )

    _say(f"[6/6] export to {out}")
    t = time.perf_counter()
    (out / CLASS_NAMES_FILE).write_text(json.dumps(list(splits.class_names), indent=1) + "\n")
    sample = next(iter(splits.validation))[0]
    exported = export.export_all(model, out, np.asarray(sample))
    timings["export"] = time.perf_counter() - t
    for line in _export_lines(exported):
        _say(f"      {line}")
    timings["total"] = time.perf_counter() - started

    history = train.merge_histories(head.history, tuned.history, names=["head", "fine_tune"])
    settings = {
        "profile": profile.name,
        "backbone": backbone_name,
        "alpha": alpha,
        "image_size": size,
        "weights": str(weights),
        "seed": seed,
        "batch_size": profile.batch_size,
        "head_epochs": profile.head_epochs,
        "fine_tune_epochs": profile.fine_tune_epochs,
        "learning_rate": profile.learning_rate,
        "fine_tune_learning_rate": profile.fine_tune_learning_rate,
        "augmented_passes": profile.augmented_passes,
        "fine_tune_from": str(fine_tune_from),
        "fine_tune_boundary": tuned.boundary,
        "max_images_per_class": profile.max_images_per_class,
    }
    metrics = {
        "head_val_accuracy": head.val_accuracy,
        "fine_tune_val_accuracy": tuned.val_accuracy,
        "val_accuracy": val_accuracy,
        "val_accuracy_interval": interval,
        "evaluation": summary,
        "class_names": list(splits.class_names),
        "data": {
            "directory": str(Path(directory).resolve()),
            "source": splits.source,
            "train_count": splits.train_count,
            "validation_count": splits.validation_count,
            "fingerprint": splits.fingerprint,
            "class_counts": dict(report.classes),
            "skipped_files": len(report.problems),
        },
        "settings": settings,
        "timings_seconds": timings,
        "epochs_run": {"head": head.epochs_run, "fine_tune": tuned.epochs_run},
        "history": history,
        "export": exported,
        "notes": [*head.notes, *tuned.notes],
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
    }
    (out / METRICS_FILE).write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
    card = export.model_card(
        model_name=f"{backbone_name} (alpha {alpha}, {size}px) fine-tuned on {Path(directory).name}",
        class_names=list(splits.class_names),
        metrics=metrics,
        data_source=splits.source,
        class_counts=dict(report.classes),
        settings=settings,
    )
    (out / CARD_FILE).write_text(card)
    _say(
        f"done in {timings['total']:.1f}s: {out / MODEL_FILE}, {out / METRICS_FILE}, {out / CARD_FILE} "
        f"(head {head.val_accuracy:.3f} -> fine-tuned {val_accuracy:.3f})"
    )
    return 0


def _export_lines(exported: Any) -> list[str]:
    lines = []
    if isinstance(exported, dict):
        for name, info in exported.items():
            if isinstance(info, dict) and "max_abs_diff" in info:
                lines.append(
                    f"{name}: {info.get('path', '')} (round-trip max |diff| {info['max_abs_diff']:.2g})"
                )
            elif isinstance(info, dict):
                lines.append(f"{name}: FAILED {info.get('error', info)}")
    return lines


# ---------------------------------------------------------------------------------------------- predict


def read_class_names(model_path: str | os.PathLike, num_classes: int) -> list[str]:
    """Class names saved next to a model by ``tlcourse train`` (lesson 08).

    Reads ``class_names.json`` beside the model, else ``metrics.json``'s ``class_names``; falls back to
    ``class_0``, ``class_1``, ... when neither is there or the count does not match the model's outputs.
    """
    folder = Path(model_path).resolve().parent
    for name, key in ((CLASS_NAMES_FILE, None), (METRICS_FILE, "class_names")):
        path = folder / name
        if path.is_file():
            try:
                value = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            names = value.get(key) if key and isinstance(value, dict) else value
            if isinstance(names, list) and len(names) == num_classes:
                return [str(n) for n in names]
    return [f"class_{i}" for i in range(num_classes)]


def model_image_size(model: Any) -> tuple[int, int]:
    """(height, width) a classifier takes: new images are read at this size, as in training (lesson 08)."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    try:
        return int(shape[1]), int(shape[2])
    except (TypeError, ValueError, IndexError):
        raise TLCourseError(
            f"The model's input shape {shape} has no fixed image size; build it with a fixed (height, width)."
        ) from None


def classify_arrays(
    model: Any, images: Sequence[np.ndarray] | np.ndarray, class_names: Sequence[str], top: int = 3
) -> list[dict[str, Any]]:
    """Classify already-decoded images of the model's input size (lesson 08).

    ``images`` are ``(height, width, 3)`` arrays of raw [0, 255] pixels (as :func:`tlcourse.imageio.load_image`
    gives them); the classifier rescales them itself and outputs logits. Returns one dict per image:
    ``{"top": [(class, probability), ...], "probabilities": [...]}``, best class first.
    """
    if len(images) == 0:
        return []
    batch = np.stack([np.asarray(image, dtype="float32") for image in images])
    logits = np.asarray(model.predict(batch, verbose=0))
    probabilities = to_probabilities(logits, from_logits=True)  # one logit (binary) -> two columns
    if len(class_names) != probabilities.shape[1]:
        raise TLCourseError(
            f"The model predicts {probabilities.shape[1]} classes but {len(class_names)} class names were "
            "given; pass the class names the model was trained with (in training order)."
        )
    k = max(1, min(int(top), probabilities.shape[1]))
    results = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        results.append(
            {
                "top": [(str(class_names[i]), float(row[i])) for i in order],
                "probabilities": [float(p) for p in row],
            }
        )
    return results


def predict_images(
    model: Any, paths: list[str], class_names: list[str], top: int = 3
) -> list[dict[str, Any]]:
    """Classify image files with a trained classifier (lesson 08).

    Each image is read with :func:`tlcourse.imageio.load_image` at the model's input size (EXIF applied, RGB,
    [0, 255] float32), exactly as training read it. Returns one dict per path: ``{"path", "top": [(class,
    probability), ...], "probabilities": [...]}`` or ``{"path", "error": reason}`` for a file that cannot be
    used as an image (the others are still classified).
    """
    from tlcourse import imageio

    height, width = model_image_size(model)
    results: list[dict[str, Any]] = []
    good: list[tuple[int, np.ndarray]] = []
    for path in paths:
        try:
            if not Path(path).is_file():
                raise DataError(f"{path}: no such file.")
            image = imageio.load_image(path, (height, width))
            good.append((len(results), image.astype("float32")))
            results.append({"path": str(path)})
        except DataError as error:
            results.append({"path": str(path), "error": str(error)})
    if good:
        classified = classify_arrays(model, [image for _, image in good], class_names, top)
        for (slot, _), result in zip(good, classified, strict=True):
            results[slot].update(result)
    return results


def predict_command(args: Any) -> int:
    """``tlcourse predict MODEL IMAGE... [--top K] [--json]`` (lesson 08).

    Exit status 0 when every image was classified, 1 when some file could not be used (each gets its own
    error line; the others still get predictions), 2 when the model itself cannot be loaded.
    """
    model_path = Path(args.model)
    if not model_path.is_file():
        print(
            f"tlcourse predict: {model_path} not found. Give the model.keras written by 'tlcourse train'.",
            file=sys.stderr,
        )
        return 2
    quiet_tensorflow()
    from tlcourse import export

    try:
        model = export.load_keras(model_path)
    except TLCourseError as error:
        print(f"tlcourse predict: {error}", file=sys.stderr)
        return 2
    class_names = read_class_names(model_path, int(model.output_shape[-1]))
    results = predict_images(model, list(args.images), class_names, top=int(getattr(args, "top", 3)))
    failed = [r for r in results if "error" in r]
    if getattr(args, "as_json", False):
        payload = [
            {"path": r["path"], "error": r["error"]}
            if "error" in r
            else {"path": r["path"], "top": [{"class": c, "probability": p} for c, p in r["top"]]}
            for r in results
        ]
        print(json.dumps(payload, indent=2))
    else:
        for r in results:
            if "error" in r:
                continue
            best = ", ".join(f"{c} {p:.3f}" for c, p in r["top"])
            print(f"{r['path']}: {best}")
    for r in failed:
        print(f"tlcourse predict: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
