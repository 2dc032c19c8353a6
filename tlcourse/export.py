"""Shipping a trained classifier: .keras, SavedModel, TFLite and round-trip checks (lesson 08).

Three formats, three audiences:

- ``.keras`` (:func:`save_keras` / :func:`load_keras`): the whole Keras model in one zip file, for further
  training or for ``tlcourse predict``. It is always loaded in **safe mode**: a file cannot run Python code
  hidden in a ``Lambda`` layer while loading;
- SavedModel (:func:`export_saved_model`): TensorFlow's inference graph (``model.export``), for TF Serving
  and TensorFlow.js; load it back with :func:`load_saved_model` or ``keras.layers.TFSMLayer``;
- TFLite (:func:`export_tflite`): a flat buffer for phones and small boards.

A conversion can silently change the numbers, so :func:`round_trip` reloads each file and reports the
largest absolute difference between its outputs and the original model's on a whole batch;
:func:`export_all` does the three formats and their checks at once. The Markdown model card that should
travel with the model is :func:`tlcourse.modelcard.model_card`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.config import quiet_tensorflow
from tlcourse.errors import TLCourseError
from tlcourse.runfolder import (  # noqa: F401 - the run folder's names, re-exported for lesson 08 and the CLI
    ARTEFACTS,
    CARD_FILE,
    CLASS_NAMES_FILE,
    CONFUSION_FILE,
    CURVES_FILE,
    FILE_NAMES,
    FORMATS,
    METRICS_FILE,
    MODEL_ARTEFACTS,
    PREVIOUS_DIR,
    ExportStage,
    fsync_path,
    recover_export,
    temporary_beside,
    write_atomic,
)

__all__ = [
    "FORMATS",
    "TOLERANCES",
    "directory_bytes",
    "ARTEFACTS",
    "ExportStage",
    "export_all",
    "export_formats",
    "export_saved_model",
    "export_tflite",
    "load_keras",
    "load_saved_model",
    "predict_tflite",
    "round_trip",
    "save_keras",
    "stored_class_names",
    "write_atomic",
]


TOLERANCES: dict[str, float] = {"keras": 1e-5, "saved_model": 1e-5, "tflite": 1e-3}
"""Largest acceptable max |difference| of outputs after a round trip, per format."""


def save_keras(model: Any, path: str | os.PathLike, *, class_names: Sequence[str] | None = None) -> Path:
    """Save the whole model (architecture, weights, optimizer state) as one ``.keras`` file (lesson 08).

    ``path`` may be a folder (``model.keras`` is written inside it) or a file name; a name without a suffix
    gets ``.keras``. Any other suffix is refused, because Keras 3 only writes ``.keras`` archives.
    The file is written under a temporary name beside the target and renamed over it only once complete,
    so an interrupted save leaves the previous file as it was. ``class_names`` are stored inside the
    archive (``tlcourse.json``; read them back with :func:`stored_class_names`), so a model never travels
    without the names of its outputs. Returns the path written.
    """
    target = Path(path)
    if target.is_dir():
        target = target / FILE_NAMES["keras"]
    elif target.suffix == "":
        target = target.with_suffix(".keras")
    if target.suffix != ".keras":
        raise TLCourseError(
            f"Cannot save a model as {target.name}: use a file name ending in .keras (for SavedModel or "
            "TFLite use export_saved_model / export_tflite)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not getattr(optimizer, "built", True):
        # compiled but never trained: build its (zero) slots now, or the reloaded model, which builds them for
        # every trainable weight, warns that the saved optimizer has fewer variables and skips loading them
        optimizer.build(model.trainable_variables)
    with temporary_beside(target, suffix=".keras") as tmp:
        model.save(tmp)
        if class_names is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(
                    CLASS_NAMES_MEMBER, json.dumps({"class_names": [str(c) for c in class_names]})
                )
        fsync_path(tmp)
        os.replace(tmp, target)
    return target


CLASS_NAMES_MEMBER = "tlcourse.json"
"""The member of a ``.keras`` archive where :func:`save_keras` stores the class names."""


def stored_class_names(path: str | os.PathLike) -> list[str] | None:
    """The class names :func:`save_keras` stored inside a ``.keras`` file, or None when it has none (lesson 08)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if CLASS_NAMES_MEMBER not in archive.namelist():
                return None
            value = json.loads(archive.read(CLASS_NAMES_MEMBER))
    except (OSError, ValueError, zipfile.BadZipFile, KeyError):
        return None
    names = value.get("class_names") if isinstance(value, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def _register_course_layers() -> None:
    """Register the course's own custom layers (tlcourse.models, tlcourse.alexnet) so files using them load in safe mode."""
    from tlcourse import alexnet, models

    models.register_custom_objects()
    alexnet.register_custom_objects()


def load_keras(
    path: str | os.PathLike,
    *,
    compile: bool = True,
    custom_objects: Mapping[str, Any] | None = None,
) -> Any:
    """Load a ``.keras`` model file in safe mode (lesson 08).

    Safe mode stays on: Keras refuses to rebuild a ``Lambda`` layer from a file, because its Python code
    would run on load (a shared model file could then do anything on your machine). Custom layers written as
    classes and registered with ``keras.saving.register_keras_serializable`` load fine, as long as the
    module that defines them has been imported (the course's own layers are imported here).
    Raises :class:`TLCourseError` with what to do when the file is missing, is not a ``.keras`` archive,
    contains a ``Lambda`` layer, or needs a custom layer that is not registered.
    """
    source = Path(path)
    if source.is_dir():
        if (source / "saved_model.pb").is_file():
            raise TLCourseError(
                f"{source} is a SavedModel folder, not a .keras file. Load it with "
                "tlcourse.export.load_saved_model(...) or keras.layers.TFSMLayer(...), or pass the model.keras file."
            )
        candidate = source / FILE_NAMES["keras"]
        if not candidate.is_file():
            raise TLCourseError(
                f"{source} is a folder with no model.keras inside. Pass the path of a .keras file."
            )
        source = candidate
    if not source.is_file():
        raise TLCourseError(
            f"No model file at {source}. Check the path, or train one first (e.g. `tlcourse train DIR --out OUT` "
            "writes OUT/model.keras)."
        )
    if not zipfile.is_zipfile(source):
        raise TLCourseError(
            f"{source} is not a .keras model file (those are zip archives; this one is not, so it is damaged, "
            "truncated or another format). Save the model again with tlcourse.export.save_keras."
        )
    with zipfile.ZipFile(source) as archive:
        if "config.json" not in archive.namelist():
            raise TLCourseError(f"{source} is a zip file but not a Keras model (no config.json inside it).")
    quiet_tensorflow()
    import keras

    _register_course_layers()
    try:
        return keras.saving.load_model(source, custom_objects=custom_objects, compile=compile, safe_mode=True)
    except (ValueError, TypeError) as error:
        text = str(error)
        refusal = _safe_mode_refusal(text)
        if refusal:
            raise TLCourseError(f"{source.name} {refusal}") from None
        if "Lambda" in text and "Could not locate function" in text:
            raise TLCourseError(f"{source.name} {LAMBDA_FUNCTION_HINT}") from None
        if "Could not locate" in text or "could not be deserialized" in text:
            missing = (
                text.split("Could not locate", 1)[-1].split(".", 1)[0].strip()
                if "Could not locate" in text
                else ""
            )
            raise TLCourseError(
                f"{source.name} uses a custom layer or function ({missing or 'unknown'}) that is not registered in "
                "this Python session. Import the module that defines it (its class must be decorated with "
                "@keras.saving.register_keras_serializable) before loading."
            ) from None
        raise TLCourseError(
            f"Could not load {source.name}: {text.splitlines()[0] if text else type(error).__name__}"
        ) from None
    except (zipfile.BadZipFile, OSError, KeyError) as error:
        raise TLCourseError(
            f"{source.name} is damaged and cannot be loaded ({error}). Save the model again."
        ) from None


LAMBDA_FUNCTION_HINT = (
    "wraps a function such as preprocess_input in a Lambda layer, and a .keras file keeps only the function's "
    "name, so it cannot be loaded back (safe_mode=False does not help). Rebuild the model with the course's "
    "preprocessing layer, tlcourse.models.preprocessing_layer('mobilenet_v2') (a Rescaling layer), or call "
    "preprocess_input on the tensor without a Lambda, and save again; to load a file you made yourself, pass "
    "custom_objects={'preprocess_input': keras.applications.mobilenet_v2.preprocess_input}."
)
"""What to do when a saved model's Lambda layer names a function Keras cannot find (lesson 08, Keras-only exercise)."""

_REBUILD = (
    "Rebuild the model with a registered layer class (keras.saving.register_keras_serializable) and save it "
    "again, or load it with keras.saving.load_model(..., safe_mode=False) only if you trust who made it."
)


def _safe_mode_refusal(text: str) -> str:
    """What Keras' safe mode refused, in one or two sentences ("" when ``text`` is no safe-mode refusal)."""
    if "`Lambda` layer" in text:
        return f"contains a Lambda layer, whose Python code would run while loading, so safe mode refuses it. {_REBUILD}"
    if "Python lambda" in text:
        return (
            "contains a serialized Python function (a lambda), whose code would run while loading, so safe mode "
            f"refuses it. {_REBUILD}"
        )
    if "Non-modeling APIs" in text:
        named = re.search(r"Cannot deserialize `([\w.]+)`", text)
        api = named.group(1) if named else "a Keras utility"
        return (
            f"asks for {api}, a Keras function that is not part of any model (a file, download or system "
            "utility), so safe mode refuses it: the file was crafted or damaged. Do not use it; train the model "
            "again or get it from its author."
        )
    if "vocabulary file outside" in text:
        return (
            "makes a text layer read a vocabulary file from outside the archive (it could read any file on this "
            f"machine), so safe mode refuses it. {_REBUILD}"
        )
    if "TFSMLayer" in text:
        return (
            "wraps an external SavedModel (a TFSMLayer), whose graph safe mode cannot check, so it refuses it. "
            "Load that SavedModel with tlcourse.export.load_saved_model instead."
        )
    if "safe_mode" in text or "unsafe_deserialization" in text:
        first = text.strip().split(". ")[0][:160]
        return f"holds something Keras' safe mode refuses to load ({first}). {_REBUILD}"
    return ""


# ------------------------------------------------------------------------------------------ SavedModel


def export_saved_model(model: Any, directory: str | os.PathLike) -> Path:
    """Export the model's inference function as a TensorFlow SavedModel folder (lesson 08).

    Uses ``model.export`` (Keras 3's way; ``model.save`` no longer writes SavedModels). The result has a
    ``serve`` endpoint taking a float32 batch of raw pixels; it is what TF Serving, TensorFlow.js and the
    TFLite converter read. An existing SavedModel in ``directory`` is replaced; a non-empty folder that is not
    a SavedModel is refused rather than overwritten.
    """
    target = Path(directory)
    if target.exists():
        if not (target / "saved_model.pb").is_file() and (not target.is_dir() or any(target.iterdir())):
            raise TLCourseError(
                f"{target} exists and is not an earlier SavedModel export; choose an empty folder."
            )
    quiet_tensorflow()
    target.parent.mkdir(parents=True, exist_ok=True)
    with temporary_beside(target, folder=True) as tmp:
        with _quiet_stdio():
            model.export(str(tmp), format="tf_saved_model", verbose=False)
        _swap_folder(tmp, target)
    return target


def _swap_folder(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` at ``target``; an old ``target`` is moved aside first, then removed."""
    if not target.exists():
        os.replace(new, target)
        return
    with temporary_beside(target, folder=True) as old:
        os.replace(target, old)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old, target)
            raise


def load_saved_model(directory: str | os.PathLike) -> Any:
    """Load a SavedModel written by :func:`export_saved_model`; returns its ``serve`` function (lesson 08).

    Call the result on a float32 batch: ``load_saved_model(d)(images)``. In a Keras model use
    ``keras.layers.TFSMLayer(d, call_endpoint="serve")`` instead.
    """
    source = Path(directory)
    if not (source / "saved_model.pb").is_file():
        raise TLCourseError(
            f"{source} is not a SavedModel folder (no saved_model.pb). Export one with export_saved_model."
        )
    quiet_tensorflow()
    import tensorflow as tf

    loaded = tf.saved_model.load(str(source))
    endpoint = getattr(loaded, "serve", None) or loaded.signatures["serving_default"]

    def serve(images: Any) -> Any:
        # the closure keeps `loaded` alive: its variables are deleted with it
        return endpoint(tf.convert_to_tensor(np.asarray(images, dtype="float32")))

    serve.loaded = loaded  # type: ignore[attr-defined]
    return serve


# ---------------------------------------------------------------------------------------------- TFLite


def export_tflite(source: Any, path: str | os.PathLike, *, optimize: bool = False) -> Path:
    """Convert a model (or a SavedModel folder) to a ``.tflite`` file (lesson 08).

    ``source`` is a Keras model (exported to a temporary SavedModel first) or the folder written by
    :func:`export_saved_model`; the conversion goes through ``tf.lite.TFLiteConverter.from_saved_model``.
    ``optimize=True`` applies dynamic-range quantisation (weights stored as 8-bit: about 4x smaller, the
    outputs move by more than the default round-trip tolerance). Returns the path written.
    """
    quiet_tensorflow()
    import tensorflow as tf

    target = Path(path)
    if target.suffix != ".tflite":
        target = target.with_suffix(".tflite") if target.suffix == "" else target
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            saved = Path(source)
            if not (saved / "saved_model.pb").is_file():
                raise TLCourseError(
                    f"{saved} is not a SavedModel folder; pass a Keras model or export_saved_model's folder."
                )
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tlcourse-tflite-")))
            saved = export_saved_model(source, tmp / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        with _quiet_stdio():
            flat = converter.convert()
    return write_atomic(target, flat)


@contextlib.contextmanager
def _quiet_stdio() -> Iterator[None]:
    """Silence C++ chatter on file descriptors 1 and 2 (converter and delegate logs) for a moment.

    Notebook kernels forward those descriptors into cell outputs, where the messages would look like errors.
    """
    with contextlib.ExitStack() as stack:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved: list[tuple[int, int]] = []
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            devnull = -1
        if devnull >= 0:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(devnull, fd)
                except OSError:
                    continue
        stack.callback(_restore_fds, saved, devnull)
        yield


def _restore_fds(saved: list[tuple[int, int]], devnull: int) -> None:
    for fd, copy in saved:
        with contextlib.suppress(OSError):
            os.dup2(copy, fd)
            os.close(copy)
    if devnull >= 0:
        with contextlib.suppress(OSError):
            os.close(devnull)


def _interpreter(path: Path) -> Any:
    """A TFLite interpreter: ai_edge_litert's when installed, else TensorFlow's (deprecated but present)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]
    except ImportError:
        quiet_tensorflow()
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    with warnings.catch_warnings(), _quiet_stdio():
        warnings.simplefilter("ignore")
        return Interpreter(model_path=str(path))


def predict_tflite(path: str | os.PathLike, batch: Any) -> np.ndarray:
    """Run a ``.tflite`` model on a whole batch and return its outputs (lesson 08).

    The input is resized to the batch size so every example goes through in one call; a model whose batch
    size cannot change is run one example at a time instead.
    """
    source = Path(path)
    if not source.is_file():
        raise TLCourseError(f"No TFLite file at {source}. Convert one with export_tflite.")
    images = np.asarray(batch, dtype="float32")
    interpreter = _interpreter(source)
    index = interpreter.get_input_details()[0]["index"]
    output = interpreter.get_output_details()[0]["index"]
    try:
        interpreter.resize_tensor_input(index, list(images.shape))
        with _quiet_stdio():
            interpreter.allocate_tensors()
        interpreter.set_tensor(index, images)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(output))
    except (ValueError, RuntimeError):
        results = []
        interpreter = _interpreter(source)
        interpreter.allocate_tensors()
        for example in images:
            interpreter.set_tensor(index, example[None])
            interpreter.invoke()
            results.append(np.array(interpreter.get_tensor(output))[0])
        return np.stack(results)


# ------------------------------------------------------------------------------------------ round trips


def _format_of(path: Path) -> str:
    if path.is_dir():
        return "saved_model"
    if path.suffix == ".keras":
        return "keras"
    if path.suffix == ".tflite":
        return "tflite"
    raise TLCourseError(
        f"Cannot tell the format of {path}: expected a .keras file, a .tflite file or a SavedModel folder."
    )


def round_trip(model: Any, batch: Any, path: str | os.PathLike, fmt: str | None = None) -> float:
    """Largest absolute difference between ``model``'s outputs and the exported file's, over a whole batch.

    ``path`` is a ``.keras`` file (reloaded in safe mode), a SavedModel folder or a ``.tflite`` file (the
    format is read from the path unless ``fmt`` says). ``batch`` is a float32 batch of raw images as the
    model takes them. A result near 0 (see :data:`TOLERANCES`) means the file computes what the model
    computes (lesson 08).
    """
    source = Path(path)
    kind = fmt or _format_of(source)
    images = np.asarray(batch, dtype="float32")
    expected = np.asarray(model.predict(images, verbose=0), dtype="float64")
    if kind == "keras":
        got = load_keras(source, compile=False).predict(images, verbose=0)
    elif kind == "saved_model":
        got = load_saved_model(source)(images)
        if isinstance(got, Mapping):
            got = next(iter(got.values()))
    elif kind == "tflite":
        got = predict_tflite(source, images)
    else:
        raise ValueError(f"Unknown format {kind!r}; use one of {FORMATS}.")
    got = np.asarray(got, dtype="float64")
    if got.shape != expected.shape:
        raise TLCourseError(
            f"The {kind} export returns shape {got.shape}, the model {expected.shape}: the export is broken."
        )
    return float(np.max(np.abs(got - expected))) if expected.size else 0.0


def directory_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or of every file under a folder, in bytes (lesson 08)."""
    source = Path(path)
    if source.is_file():
        return source.stat().st_size
    return sum(p.stat().st_size for p in source.rglob("*") if p.is_file())


def export_formats(
    model: Any,
    folder: str | os.PathLike,
    sample_batch: Any,
    formats: Sequence[str] = FORMATS,
    *,
    tolerances: Mapping[str, float] | None = None,
    class_names: Sequence[str] | None = None,
    report_dir: str | os.PathLike | None = None,
) -> dict[str, dict[str, Any]]:
    """Write each format into ``folder`` and check it by a round trip (the work of :func:`export_all`).

    Not atomic as a whole: :func:`export_all` calls it on a staging folder and swaps the result in.
    ``report_dir`` is the folder the recorded paths name (the final one, not the staging one). A format
    whose export or check raised is removed again (unless a file of that name was there before).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown export format(s) {unknown}; choose from {FORMATS}.")
    limits = {**TOLERANCES, **dict(tolerances or {})}
    out = Path(folder)
    shown = Path(report_dir) if report_dir is not None else out
    out.mkdir(parents=True, exist_ok=True)
    images = np.asarray(sample_batch, dtype="float32")
    results: dict[str, dict[str, Any]] = {}
    for kind in formats:
        start = time.perf_counter()
        target = out / FILE_NAMES[kind]
        entry: dict[str, Any] = {"path": str(shown / FILE_NAMES[kind]), "tolerance": float(limits[kind])}
        existed = target.exists()
        try:
            if kind == "keras":
                written = save_keras(model, target, class_names=class_names)
            elif kind == "saved_model":
                written = export_saved_model(model, target)
            else:
                saved = out / FILE_NAMES["saved_model"]
                use_saved = "saved_model" in results and results["saved_model"].get("error") is None
                written = export_tflite(saved if use_saved else model, target)
            diff = round_trip(model, images, written, kind)
            entry.update(
                bytes=int(directory_bytes(written)),
                max_abs_diff=diff,
                ok=bool(math.isfinite(diff) and diff <= limits[kind]),
            )
        except Exception as error:  # one broken format must not hide the others
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            entry.update(bytes=0, max_abs_diff=None, ok=False, error=f"{type(error).__name__}: {message}")
            if not existed:  # written but broken (its check failed): never installed as if it worked
                with contextlib.suppress(OSError):
                    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        entry["seconds"] = round(time.perf_counter() - start, 3)
        results[kind] = entry
    return results


def export_all(
    model: Any,
    out_dir: str | os.PathLike,
    sample_batch: Any,
    formats: Sequence[str] = FORMATS,
    *,
    tolerances: Mapping[str, float] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Export to every format and check each by a round trip over ``sample_batch`` (lesson 08).

    Writes ``out_dir/model.keras``, ``out_dir/saved_model/`` and ``out_dir/model.tflite`` (those asked for in
    ``formats``). Returns ``{format: {"path", "bytes", "max_abs_diff", "tolerance", "ok", "seconds"}}`` with
    plain Python values; ``ok`` is True when the difference is within the tolerance (default
    :data:`TOLERANCES`: 1e-5 for .keras and SavedModel, 1e-3 for TFLite). A format that fails to export gets
    ``ok`` False and an ``error`` message, and the others still run. The TFLite file is converted from the
    SavedModel just written when there is one. Everything is written into a hidden staging folder inside
    ``out_dir`` first and moved in only when complete, so an interrupted export leaves the earlier files
    as they were (see :class:`ExportStage`). ``class_names`` are stored inside ``model.keras`` and written
    to ``class_names.json`` beside it.
    """
    with ExportStage(out_dir, replace=True) as stage:
        results = export_formats(
            model,
            stage.path,
            sample_batch,
            formats,
            tolerances=tolerances,
            class_names=class_names,
            report_dir=stage.out,
        )
        if class_names is not None:
            stage.write_text(CLASS_NAMES_FILE, json.dumps([str(c) for c in class_names], indent=1) + "\n")
        stage.commit()
    return results
