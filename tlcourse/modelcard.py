"""The model card: a Markdown page that says what a trained classifier is for, how it was measured and where
it falls short (lesson 08; ``tlcourse train`` writes it as :data:`tlcourse.export.CARD_FILE`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tlcourse.export import FILE_NAMES


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _tolerance(value: Any) -> str:
    return f"{float(value):g}" if isinstance(value, (int, float)) else "n/a"


def _interval(values: Any) -> str:
    if isinstance(values, (list, tuple)) and len(values) == 2 and all(v is not None for v in values):
        return f"{float(values[0]):.3f}–{float(values[1]):.3f}"
    return "n/a"


def _bytes(count: Any) -> str:
    if not isinstance(count, (int, float)) or count <= 0:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


DEFAULT_INTENDED_USE = (
    "Learning and demonstration: classifying photos into the classes listed below, as part of a transfer-learning "
    "course. Not evaluated for, and not to be used for, decisions about people, health, safety or money."
)


def model_card(
    name: str | None = None,
    class_names: Sequence[str] = (),
    class_counts: Mapping[str, int] | None = None,
    metrics: Mapping[str, Any] | None = None,
    data_provenance: str | None = None,
    intended_use: str | None = None,
    limitations: str | Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    export_info: Mapping[str, Any] | None = None,
    *,
    model_name: str | None = None,
    data_source: str | None = None,
    model_file: str = FILE_NAMES["keras"],
    figures: Mapping[str, str] | None = None,
) -> str:
    """A Markdown model card: what the model is, what it was trained on, how good it is, where it fails.

    ``metrics`` is :func:`tlcourse.evaluate.evaluation_summary`'s dict, or the ``metrics.json`` dict of
    ``tlcourse train`` (its ``"evaluation"``, ``"data"`` and ``"export"`` entries are used; ``"evaluated_on":
    "test"`` says the evaluation is on a test split that no training choice looked at). ``class_counts``
    maps each class to its number of images; ``export_info`` is :func:`export_all`'s result (taken from
    ``metrics["export"]`` when not given). ``model_name`` and ``data_source`` are accepted as other names for
    ``name`` and ``data_provenance``. Sections: Model, Intended use, Data, Metrics (with bootstrap
    intervals), Per-class results, Limitations and ethical considerations, How to use, Exports, Settings
    (lesson 08). ``figures`` maps a caption to an image file beside the card (``tlcourse train`` saves
    ``learning_curves.png`` and ``confusion_matrix.png``); they are shown under Figures.
    """
    title = name or model_name or "image classifier"
    provenance = data_provenance or data_source
    top = dict(metrics or {})
    evaluation = dict(top.get("evaluation") or top)
    exports = dict(export_info or top.get("export") or {})
    names = [str(c) for c in (class_names or evaluation.get("class_names") or [])]
    counts = {str(k): int(v) for k, v in (class_counts or {}).items()}
    data = dict(top.get("data") or {})
    opts = dict(settings or top.get("settings") or {})
    level = float((evaluation.get("bootstrap") or {}).get("level", 0.95))
    pct = f"{level:.0%}"
    lines: list[str] = [f"# Model card: {title}", ""]

    lines += ["## Model", ""]
    size = opts.get("image_size")
    arch = ", ".join(f"{k} {opts[k]}" for k in ("backbone", "alpha") if k in opts)
    weights = str(opts.get("weights", "imagenet"))
    base = "an ImageNet-pretrained backbone" if weights == "imagenet" else f"a backbone (weights: {weights})"
    lines.append(f"- **Architecture:** {arch or 'see Settings'}: {base} with a new classification head.")
    lines.append(
        "- **Input:** RGB images"
        + (f" resized to {size}x{size}" if size else "")
        + ", raw pixel values in [0, 255] (preprocessing is inside the model)."
    )
    lines.append(f"- **Output:** {len(names)} logits, one per class (apply a softmax for probabilities).")
    lines.append(f"- **Classes:** {', '.join(names) if names else 'n/a'}")
    seconds = (top.get("timings_seconds") or {}).get("total")
    expected = opts.get("measured_seconds_per_1000_images")
    if isinstance(seconds, (int, float)) or expected:
        photos = sum(int(data.get(k) or 0) for k in ("train_count", "validation_count"))
        parts = (
            [f"this run took {seconds:.0f} s for {photos} photos"]
            if isinstance(seconds, (int, float))
            else []
        )
        if expected:
            parts.append(
                f"with these settings `tlcourse train` takes about {float(expected):.0f} s per 1,000 photos "
                "(measured on 2 shared CPU cores)"
            )
        lines.append(f"- **Training time:** {'; '.join(parts)}.")
    lines.append("")

    lines += ["## Intended use", "", intended_use or DEFAULT_INTENDED_USE, ""]

    lines += ["## Data", ""]
    lines.append(f"- **Source:** {provenance or data.get('source') or 'not recorded'}")
    for key, label in (
        ("train_count", "Training images"),
        ("validation_count", "Validation images"),
        ("test_count", "Test images"),
        ("skipped_files", "Files skipped as unusable"),
        ("fingerprint", "Data fingerprint"),
    ):
        if key in data:
            lines.append(f"- **{label}:** {data[key]}")
    duplicates = data.get("duplicates") or {}
    if duplicates.get("summary"):  # tlcourse.data.DuplicateReport.to_dict()
        lines.append(f"- **Duplicates:** {duplicates['summary']}")
    if counts:
        total = sum(counts.values())
        lines += ["", "| class | images | share |", "|---|---:|---:|"]
        for cls in names or list(counts):
            count = counts.get(cls, 0)
            lines.append(
                f"| {cls} | {count} | {count / total:.0%} |" if total else f"| {cls} | {count} | n/a |"
            )
        lines.append(f"| **total** | {total} | |")
    lines.append("")

    lines += ["## Metrics", ""]
    split = str(top.get("evaluated_on") or "validation")  # "test": a split that no choice looked at
    n = evaluation.get("n") or data.get(f"{split}_count")
    chosen_on = " (epochs and early stopping chose on the validation images; these took no part)"
    lines.append(
        f"Measured on {n if n is not None else 'the'} held-out {split} images"
        f"{chosen_on if split == 'test' else ''}. Intervals are {pct} "
        f"percentile-bootstrap intervals ({(evaluation.get('bootstrap') or {}).get('n', 'n/a')} resamples): "
        f"with few {split} images they are wide, and the true accuracy can be anywhere inside them."
    )
    lines += ["", f"| metric | value | {pct} interval |", "|---|---:|---|"]
    accuracy = evaluation.get("accuracy", top.get("val_accuracy"))
    acc_interval = evaluation.get("accuracy_interval", top.get("val_accuracy_interval"))
    lines.append(f"| accuracy | {_fmt(accuracy)} | {_interval(acc_interval)} |")
    macro_f1 = evaluation.get("macro_f1", (evaluation.get("macro") or {}).get("f1"))
    if macro_f1 is not None:
        lines.append(f"| macro F1 | {_fmt(macro_f1)} | {_interval(evaluation.get('macro_f1_interval'))} |")
    calib = evaluation.get("calibration") or {}
    if "ece" in calib:
        lines.append(f"| expected calibration error | {_fmt(calib['ece'])} | |")
    head_only = top.get("head_test_accuracy") if split == "test" else top.get("head_val_accuracy")
    if head_only is not None:  # the same images as the rows above
        lines.append(f"| accuracy after head training only | {_fmt(head_only)} | |")
    lines.append("")

    per_class = evaluation.get("per_class") or {}
    lines += ["## Per-class results", ""]
    if per_class:
        lines += ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for cls, row in per_class.items():
            lines.append(
                f"| {cls} | {_fmt(row.get('precision'))} | {_fmt(row.get('recall'))} | {_fmt(row.get('f1'))} | "
                f"{row.get('support', 'n/a')} |"
            )
        matrix = evaluation.get("confusion_matrix")
        if matrix:
            lines += ["", "Confusion matrix (rows: true class, columns: predicted class):", ""]
            lines += ["| | " + " | ".join(per_class) + " |", "|---|" + "---:|" * len(per_class)]
            for cls, row in zip(per_class, matrix, strict=False):
                lines.append(f"| **{cls}** | " + " | ".join(str(v) for v in row) + " |")
    else:
        lines.append("Not computed.")
    lines.append("")

    if figures:
        lines += ["## Figures", ""]
        lines += [f"**{caption}**\n\n![{caption}]({file})\n" for caption, file in figures.items()]

    lines += ["## Limitations and ethical considerations", ""]
    notes: list[str] = [limitations] if isinstance(limitations, str) else list(limitations or [])
    notes += _automatic_limitations(
        counts, evaluation, n, pretrained=str(opts.get("weights", "imagenet")) == "imagenet", split=split
    )
    if duplicates.get("across_splits") and not duplicates.get("applied"):
        notes.append(
            f"{duplicates['across_splits']} duplicate pair(s) straddle the splits and were kept: the held-out "
            "accuracy above is optimistic by however much those pictures were remembered rather than recognised."
        )
    lines += [f"- {note}" for note in notes]
    lines.append("")

    lines += _training_section(top)
    lines += [
        "## How to use",
        "",
        "```bash",
        f"tlcourse predict {model_file} photo1.jpg photo2.jpg --top 3",
        "```",
        "",
    ]
    lines += [
        "```python",
        "from tlcourse import export",
        f"model = export.load_keras({model_file!r})   # safe mode: no code runs while loading",
        "logits = model.predict(images)   # float32 [N, H, W, 3], raw pixels in [0, 255]",
        "```",
        "",
    ]

    lines += ["## Exports", ""]
    if exports:
        lines += [
            "| format | file | size | round-trip max abs diff | tolerance | ok |",
            "|---|---|---:|---:|---:|---|",
        ]
        for kind, info in exports.items():
            if not isinstance(info, Mapping):
                continue
            diff = info.get("max_abs_diff")
            diff_text = f"{diff:.2g}" if isinstance(diff, (int, float)) else "n/a"
            ok = "yes" if info.get("ok") else f"no ({info.get('error', 'difference above tolerance')})"
            lines.append(
                f"| {kind} | {Path(str(info.get('path', ''))).name} | {_bytes(info.get('bytes'))} | {diff_text} | "
                f"{_tolerance(info.get('tolerance'))} | {ok} |"
            )
        lines += [
            "",
            "Each export was reloaded and run on a whole validation batch; the difference is to the original model.",
        ]
    else:
        lines.append("No exports recorded.")
    lines.append("")

    if opts:
        lines += ["## Settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in opts.items()]
        lines.append("")
    return "\n".join(lines)


def _training_section(metrics: Mapping[str, Any]) -> list[str]:
    """``## Training``: where an interrupted run picked up (``resumed_from``) and every epoch of every phase
    (``history`` of ``tlcourse train``'s metrics.json); nothing when the metrics hold no history (lesson 08)."""
    history = metrics.get("history")
    if not isinstance(history, Mapping) or not history.get("epoch"):
        return []
    lines = ["## Training", ""]
    resumed = metrics.get("resumed_from")
    if isinstance(resumed, Mapping):
        lines += [
            f"This run was interrupted and resumed: it picked up in the {resumed.get('phase')} phase at epoch "
            f"{resumed.get('epoch')}, from the state saved after every epoch, and continued the same run.",
            "",
        ]
    names = [k for k in history if k not in ("epoch", "phase", "phase_starts")]
    lines += ["| epoch | phase | " + " | ".join(names) + " |", "|---:|---|" + "---:|" * len(names)]
    for i, epoch in enumerate(history["epoch"]):
        phase = history.get("phase", [""] * len(history["epoch"]))[i]
        values = [history[name][i] if i < len(history[name]) else None for name in names]
        shown = [f"{v:.4f}" if isinstance(v, int | float) and math.isfinite(v) else "" for v in values]
        lines.append(f"| {epoch} | {phase} | " + " | ".join(shown) + " |")
    return [*lines, ""]


def _automatic_limitations(
    counts: Mapping[str, int],
    evaluation: Mapping[str, Any],
    n: Any,
    *,
    pretrained: bool = True,
    split: str = "validation",
) -> list[str]:
    """Notes a reader should see, derived from the numbers themselves."""
    notes: list[str] = []
    if isinstance(n, int) and n < 200:
        notes.append(
            f"Only {n} {split} images: the metrics above are rough estimates (see the interval widths)."
        )
    if counts:
        smallest, largest = min(counts.values()), max(counts.values())
        if smallest and largest / smallest >= 3:
            notes.append(
                f"Classes are imbalanced ({largest} vs {smallest} images): the model may favour the larger classes."
            )
    absent = evaluation.get("absent_classes") or []
    if absent:
        notes.append(f"No {split} images for: {', '.join(absent)}; their performance is unmeasured.")
    notes.append(
        "Trained on a small, specific set of photos: expect worse results on images that look different "
        "(other cameras, lighting, backgrounds, image quality) - a domain shift (lesson 07)."
    )
    notes.append(
        "The model always answers with one of its classes, even for images that show none of them; "
        "a high probability is not proof, and probabilities may be over-confident (see calibration)."
    )
    if pretrained:
        notes.append(
            "The pretrained backbone learned from ImageNet, which has known gaps and biases in what and whom it "
            "shows; those carry over."
        )
    return notes
