"""Resume state keyed to its run and written crash-safely (lesson 05: "resume after an interruption").

Lesson 05 shows the plain Keras version first: ``keras.callbacks.BackupAndRestore(backup_dir)`` in ``fit``'s
callbacks saves the weights and the epoch after every epoch, and calling ``fit`` again continues from there.
Keras restores whatever it finds in that folder, whatever the data; this module adds what a long capstone run
needs on top of it:

- a **key** (:func:`resume_key`): a hash of the data fingerprint, the class names and the settings
  (backbone, width, image size, learning rates, epochs, seed, ...), stored beside the backup;
- **crash-safe writes**: every file is written to a temporary name and swapped in with ``os.replace``, and the
  record written last holds the SHA-256 of the weights, so a kill at any instant leaves either the previous
  backup or one that is recognised as damaged;
- a backup that belongs to another run (another key) or is damaged (truncated, empty, unreadable) is
  **discarded with one line saying so** and training starts fresh; a resumed run says
  ``resumed from epoch N``;
- a finished phase (the head phase of ``tlcourse train``) is saved with its key (:func:`save_phase`) and
  reused by a rerun with the same key (:func:`load_phase`), so a crash during fine-tuning does not cost the
  head phase again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_FILE = "latest.weights.h5"
"""The backup's weights (Keras' own name, so ``BackupAndRestore`` and this module agree)."""
METADATA_FILE = "training_metadata.json"
"""Keras' record of the epoch; this module adds the key and the weights' SHA-256 to it, and writes it last."""
OPTIMIZER_FILE = "optimizer.npz"
PHASE_WEIGHTS = "phase.weights.h5"
PHASE_RECORD = "phase.json"

Say = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


def resume_key(splits: Any = None, **settings: Any) -> str:
    """A short hash of the data and the settings a backup belongs to (lesson 05).

    The data part is ``splits.fingerprint`` (a hash of the exact images chosen, their split and the image
    size, see :class:`tlcourse.data.Splits`) and ``splits.class_names``; ``settings`` are whatever changes the
    training (backbone, alpha, image size, learning rates, epochs, seed, ...). Equal keys mean the backup can
    continue this run; anything else is another run's state.
    """
    payload = {
        "data": getattr(splits, "fingerprint", None),
        "class_names": [str(name) for name in getattr(splits, "class_names", []) or []],
        "settings": settings,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _temporary(path: str | os.PathLike, suffix: str) -> str:
    """A temporary name beside ``path`` ending in ``suffix`` (Keras insists on ``.weights.h5``)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp{suffix}")


def write_json_atomic(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to a temporary file, flush it to disk, then swap it in (never half a file)."""
    tmp = _temporary(path, ".json")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_weights_atomic(model: Any, path: str | os.PathLike) -> str:
    """``model.save_weights`` to a temporary file, swapped in with ``os.replace``; returns its SHA-256."""
    tmp = _temporary(path, ".weights.h5")
    try:
        model.save_weights(tmp)
        digest = sha256_of(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
    return digest


def _read_record(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def check_saved(folder: str | os.PathLike, weights: str, record: str, key: str | None) -> str | None:
    """Why the saved state in ``folder`` cannot be used for ``key`` (None when it can, or when none is there).

    Checks, in order: a record that can be read, the same key (when ``key`` is given), weights whose SHA-256
    matches the record (catches truncated and empty files).
    """
    folder = Path(folder)
    weights_path, record_path = folder / weights, folder / record
    if not weights_path.exists() and not record_path.exists():
        return None
    if not record_path.exists():
        return "it has no record of its run (interrupted while writing)"
    try:
        saved = _read_record(record_path)
    except (OSError, ValueError) as error:
        return f"its record cannot be read ({type(error).__name__})"
    if key is not None and saved.get("key") != key:
        return "it belongs to another run (other data or settings)"
    if not weights_path.exists():
        return "its weights file is missing"
    try:
        size = weights_path.stat().st_size
        digest = sha256_of(weights_path)
    except OSError as error:
        return f"its weights cannot be read ({error.strerror or type(error).__name__})"
    if size == 0 or digest != saved.get("weights_sha256"):
        return f"its weights file is damaged ({size} bytes, not the file its record describes)"
    return None


def discard(folder: str | os.PathLike, why: str, say: Say = _print) -> None:
    """Remove a saved state that cannot be used, with one line saying where and why."""
    shutil.rmtree(folder, ignore_errors=True)
    say(f"discarded the saved state in {folder}: {why}; training starts fresh")


def _load_weights_or_restore(model: Any, path: Path) -> str | None:
    """Load weights; on failure put the model's own weights back and return why (None on success)."""
    before = model.get_weights()
    try:
        model.load_weights(str(path))
    except Exception as error:  # h5py OSError, Keras ValueError (shapes), KeyError (layers): all "unreadable"
        model.set_weights(before)
        return f"its weights cannot be loaded into this model ({type(error).__name__})"
    return None


def resumable_backup(backup_dir: str | os.PathLike, key: str | None = None, say: Say = _print) -> Any:
    """A ``keras.callbacks.BackupAndRestore`` keyed to its run, crash-safe, that keeps the optimizer (lesson 05).

    After every epoch it saves the weights, the optimizer's variables (Adam's moments, the step counter) and
    the epoch, each to a temporary file swapped in with ``os.replace``; the record (epoch, ``key``, the
    weights' SHA-256) is written last. When ``fit`` starts it restores a backup with the same ``key`` and says
    ``resumed from epoch N``; a backup with another key, or a damaged one, is discarded with one line and
    training starts fresh. ``key=None`` accepts any undamaged backup (Keras' own behaviour).
    """
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    import keras

    class ResumableBackup(keras.callbacks.BackupAndRestore):
        def __init__(self, directory: str) -> None:
            super().__init__(backup_dir=directory)
            self._optimizer_path = os.path.join(directory, OPTIMIZER_FILE)
            self.key = key
            self.resumed_from = 0

        def on_train_begin(self, logs: Any = None) -> None:
            self.resumed_from = 0
            why = check_saved(self.backup_dir, WEIGHTS_FILE, METADATA_FILE, self.key)
            if why is None and os.path.exists(self._weights_path):
                if not self.model.built:
                    super()._load_model()  # Keras' own message for an unbuilt model
                optimizer = self.model.optimizer
                if optimizer is not None and not optimizer.built:
                    optimizer.build(self.model.trainable_variables)
                why = _load_weights_or_restore(self.model, Path(self._weights_path))
            if why is not None:
                discard(self.backup_dir, why, say)
                return
            if not os.path.exists(self._training_metadata_path):
                return
            epoch = int(_read_record(self._training_metadata_path).get("epoch", 0))
            self.model._initial_epoch = epoch
            self._load_optimizer()
            self.resumed_from = epoch
            say(f"resumed from epoch {epoch} (backup in {self.backup_dir})")

        def _load_optimizer(self) -> None:
            optimizer = self.model.optimizer
            if optimizer is None or not os.path.exists(self._optimizer_path):
                return
            try:
                with np.load(self._optimizer_path) as saved:
                    if len(saved.files) != len(optimizer.variables):
                        return
                    for i, variable in enumerate(optimizer.variables):
                        value = saved[f"v{i}"]
                        if tuple(value.shape) == tuple(variable.shape):
                            variable.assign(value)
            except (OSError, ValueError, KeyError):
                say(f"the optimizer state in {self.backup_dir} could not be read: Adam restarts from zero")

        def _save_model(self) -> None:
            os.makedirs(self.backup_dir, exist_ok=True)
            digest = save_weights_atomic(self.model, self._weights_path)
            optimizer = self.model.optimizer
            if optimizer is not None and optimizer.built:
                arrays = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
                tmp = _temporary(self._optimizer_path, ".npz")
                np.savez(tmp, **arrays)
                os.replace(tmp, self._optimizer_path)
            write_json_atomic(
                self._training_metadata_path,
                {
                    "epoch": self._current_epoch,
                    "batch": self._last_batch_seen,
                    "key": self.key,
                    "weights_sha256": digest,
                },
            )

    return ResumableBackup(str(backup_dir))


def save_phase(folder: str | os.PathLike, key: str, model: Any, info: Mapping[str, Any]) -> None:
    """Save a finished phase's weights and ``info`` (history, accuracy, ...) with its ``key``, crash-safely."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = save_weights_atomic(model, folder / PHASE_WEIGHTS)
    write_json_atomic(folder / PHASE_RECORD, {**info, "key": key, "weights_sha256": digest})


def load_phase(folder: str | os.PathLike, key: str, model: Any, say: Say = _print) -> dict[str, Any] | None:
    """The ``info`` of a phase saved with ``key`` in ``folder``, its weights loaded into ``model``; else None.

    A saved phase of another run, or a damaged one, is discarded with one line (and None is returned).
    """
    folder = Path(folder)
    why = check_saved(folder, PHASE_WEIGHTS, PHASE_RECORD, key)
    if why is None and (folder / PHASE_RECORD).exists():
        why = _load_weights_or_restore(model, folder / PHASE_WEIGHTS)
        if why is None:
            return _read_record(folder / PHASE_RECORD)
    if why is not None:
        for name in (PHASE_WEIGHTS, PHASE_RECORD):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        say(f"discarded the saved phase in {folder}: {why}; it is trained again")
    return None
