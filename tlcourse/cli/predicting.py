"""``tlcourse predict``: a trained model's classes for some photos, or ImageNet's before any training (lessons 01, 08).

``tlcourse predict OUT/model.keras IMAGE...`` loads the model ``tlcourse train`` wrote in safe mode, prepares each
image exactly as training did (:func:`tlcourse.imageio.load_image` at the model's input size) and prints the top
classes; ``tlcourse predict --imagenet IMAGE...`` asks ImageNet's pretrained classifier instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tlcourse.audit import printable
from tlcourse.config import quiet_tensorflow
from tlcourse.errors import DataError, TLCourseError
from tlcourse.predict import model_class_names, predict_images


def _printable(text: Any) -> str:
    return printable(str(text))


def predict_command(args: Any) -> int:
    """``tlcourse predict MODEL IMAGE... [--top K] [--json]`` (lesson 08).

    Exit status 0 when every image was classified, 1 when some file could not be used (each gets its own
    error line; the others still get predictions), 2 when the model itself cannot be loaded.
    """
    if getattr(args, "imagenet", False):
        return imagenet_predict_command(args)
    if args.model is None or not args.images:
        print(
            "tlcourse predict: give a MODEL and at least one IMAGE (or --imagenet IMAGE...).", file=sys.stderr
        )
        return 2
    model_path = Path(args.model)
    try:
        found = model_path.is_file()
    except OSError as error:
        print(
            f"tlcourse predict: cannot read {_printable(model_path)} ({error.strerror or type(error).__name__}): "
            "check the permissions of the folders above it.",
            file=sys.stderr,
        )
        return 2
    if not found:
        print(
            f"tlcourse predict: {_printable(model_path)} not found. Give the model.keras written by 'tlcourse train'.",
            file=sys.stderr,
        )
        return 2
    quiet_tensorflow()
    from tlcourse import export

    try:
        model = export.load_keras(model_path)
        class_names = model_class_names(model_path, int(model.output_shape[-1]))
        results = predict_images(
            model, list(args.images), class_names, top=int(getattr(args, "top", None) or 3)
        )
    except TLCourseError as error:
        print(f"tlcourse predict: {_printable(error)}", file=sys.stderr)
        return 2
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
            best = ", ".join(f"{_printable(c)} {p:.3f}" for c, p in r["top"])
            print(f"{_printable(r['path'])}: {best}")
    for r in failed:
        print(f"tlcourse predict: {_printable(r['error'])}", file=sys.stderr)
    return 1 if failed else 0


def imagenet_predict_command(args: Any) -> int:
    """``tlcourse predict --imagenet IMAGE... [--top K] [--json] [--mirror DIR]`` (lesson 01).

    ImageNet's pretrained classifier (:func:`tlcourse.zeroshot.load_imagenet_classifier`: Keras when its
    weights are available, else the TFLite engine) prints each photo's top classes, before any training.
    Exit status 0, 1 when some file could not be used, 2 when no ImageNet classifier can be found.
    """
    from tlcourse import imageio, zeroshot

    paths = [p for p in [args.model, *args.images] if p is not None]
    if not paths:
        print("tlcourse predict --imagenet: give at least one IMAGE.", file=sys.stderr)
        return 2
    top = int(getattr(args, "top", None) or 5)
    as_json = bool(getattr(args, "as_json", False))
    try:
        classifier = zeroshot.load_imagenet_classifier(
            mirror=getattr(args, "mirror", None), verbose=not as_json
        )
    except TLCourseError as error:
        print(f"tlcourse predict: {error}", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            if not Path(path).is_file():
                raise DataError(f"{path}: no such file.")
            guesses = classifier.top(imageio.load_image(path), k=top)[0]
            results.append({"path": str(path), "top": [(label, p) for _, label, p in guesses]})
        except DataError as error:
            results.append({"path": str(path), "error": str(error)})
    if as_json:
        payload = [
            r
            if "error" in r
            else {
                "path": r["path"],
                "engine": classifier.engine,
                "top": [{"class": c, "probability": p} for c, p in r["top"]],
            }
            for r in results
        ]
        print(json.dumps(payload, indent=2))
    else:
        for r in results:
            if "error" not in r:
                print(
                    f"{_printable(r['path'])}: " + ", ".join(f"{_printable(c)} {p:.3f}" for c, p in r["top"])
                )
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"tlcourse predict: {_printable(r['error'])}", file=sys.stderr)
    return 1 if failed else 0
