"""Resume state keyed to its run, written crash-safely, that continues the very run it left (lesson 05).

Lesson 05 shows the plain Keras version first: ``keras.callbacks.BackupAndRestore(backup_dir)`` in ``fit``'s
callbacks saves the weights and the epoch after every epoch, and calling ``fit`` again continues from there.
That is not yet the same run: early stopping starts counting its patience again (and forgets the best weights
it was keeping), Adam's moments start from zero, dropout draws other masks and the batches come in another
order. This module's backup (:func:`resumable_backup`) keeps all of it, so a run killed at any epoch and rerun
ends with the same weights as one that was never interrupted:

- after every finished epoch, atomically: the weights, the optimizer's variables, the model's random-number
  state (dropout's seed generators), early stopping's state (best value, patience count, best weights),
  the best-checkpoint's best value, NumPy's and Python's global random state, the epoch and the history so far;
- a **key** (:func:`resume_key`): a hash of the data fingerprint, the class names and the settings, stored
  with the backup; another run's backup (another key) or a damaged one (truncated, empty, unreadable) is
  **discarded with one line saying so** and training starts fresh; a resumed run says ``resumed from epoch N``
  and leaves a note in its run folder (:func:`read_resumed`) for the report;
- **crash-safe writes**: every file goes to a temporary name and is swapped in with ``os.replace``; the
  record written last holds the SHA-256 of the weights and of the state, so a kill at any instant leaves the
  previous backup or one recognised as damaged;
- a finished phase (the head phase of ``tlcourse train``) is saved with its key and its random-number state
  (:func:`save_phase`) and reused by a rerun with the same key (:func:`load_phase`), so a crash during
  fine-tuning does not cost the head phase again, and fine-tuning continues from exactly the same head.

The backup is a ``keras.callbacks.BackupAndRestore``: Keras' own callback reads the epoch to continue from, so
nothing here touches a private Keras attribute. What it cannot restore is the order of a ``tf.data`` pipeline
that reshuffles every epoch: data sources that want exact resumption draw their order from ``(seed, epoch)``
(the fast path's sampler does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_FILE = "latest.weights.h5"
"""The backup's weights (Keras' own name, so ``BackupAndRestore`` and this module agree)."""
METADATA_FILE = "training_metadata.json"
"""Keras' record of the epoch; this module adds the key and the weights' SHA-256 to it, and writes it last."""
STATE_FILE = "state.npz"
"""Everything else the backup keeps as arrays: optimizer variables, seed-generator states, the best weights,
NumPy's random state."""
PHASE_WEIGHTS = "phase.weights.h5"
PHASE_RECORD = "phase.json"
PHASE_STATE = "phase.state.npz"
RESUMED_FILE = "resumed.json"
"""Left in a phase's run folder by a run that resumed it (or reused it whole): what :func:`read_resumed` reads."""

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


def _write_swapped(path: str | os.PathLike, suffix: str, write: Callable[[str], Any]) -> str:
    """``write`` a temporary file beside ``path``, then swap it in with ``os.replace``; returns its SHA-256."""
    tmp = _temporary(path, suffix)
    try:
        write(tmp)
        digest = sha256_of(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
    return digest


def save_weights_atomic(model: Any, path: str | os.PathLike) -> str:
    """``model.save_weights`` to a temporary file, swapped in with ``os.replace``; returns its SHA-256."""
    return _write_swapped(path, ".weights.h5", model.save_weights)


def _read_record(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def check_saved(
    folder: str | os.PathLike, weights: str, record: str, key: str | None, state: str | None = None
) -> str | None:
    """Why the saved state in ``folder`` cannot be used for ``key`` (None when it can, or when none is there).

    Checks, in order: a record that can be read, the same key (when ``key`` is given), weights (and the
    ``state`` file, when named and recorded) whose SHA-256 matches the record (catches truncated and empty files).
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
    files = [(weights_path, "weights_sha256", "weights")]
    if state is not None and saved.get("state_sha256"):
        files.append((folder / state, "state_sha256", "state"))
    for path, field, what in files:
        if not path.exists():
            return f"its {what} file is missing"
        try:
            size, digest = path.stat().st_size, sha256_of(path)
        except OSError as error:
            return f"its {what} cannot be read ({error.strerror or type(error).__name__})"
        if size == 0 or digest != saved.get(field):
            return f"its {what} file is damaged ({size} bytes, not the file its record describes)"
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


# ------------------------------------------------------------------------------ state beyond the weights


def save_arrays_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> str:
    """``np.savez`` to a temporary file, flushed and swapped in; returns its SHA-256."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())

    return _write_swapped(path, ".npz", write)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def random_state(model: Any) -> list[np.ndarray]:
    """The model's variables that are not weights: its seed generators' states (dropout's masks, lesson 05).

    ``save_weights`` and ``get_weights`` leave them out, so without them a reloaded model draws other masks."""
    weights = {id(variable) for variable in model.weights}
    return [np.asarray(v.numpy()) for v in model.variables if id(v) not in weights]


def restore_random_state(model: Any, arrays: list[np.ndarray]) -> bool:
    """Put back what :func:`random_state` saved; False (nothing changed) when the model's state differs."""
    weights = {id(variable) for variable in model.weights}
    variables = [v for v in model.variables if id(v) not in weights]
    if len(variables) != len(arrays) or any(
        tuple(v.shape) != a.shape for v, a in zip(variables, arrays, strict=False)
    ):
        return False
    for variable, value in zip(variables, arrays, strict=True):
        variable.assign(value)
    return True


def _indexed(prefix: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}{i}": array for i, array in enumerate(arrays)}


def _unindexed(prefix: str, saved: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    count = sum(1 for name in saved if name.startswith(prefix) and name[len(prefix) :].isdigit())
    return [saved[f"{prefix}{i}"] for i in range(count)]


def _global_random() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """NumPy's and Python's global random state, as arrays and as JSON."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    arrays = {"numpy_keys": np.asarray(keys)}
    version, internal, python_gauss = random.getstate()
    record = {
        "numpy": [name, int(position), int(has_gauss), float(gauss)],
        "python": [version, list(internal), python_gauss],
    }
    return arrays, record


def _set_global_random(arrays: Mapping[str, np.ndarray], record: Mapping[str, Any]) -> None:
    if "numpy_keys" in arrays and record.get("numpy"):
        name, position, has_gauss, gauss = record["numpy"]
        np.random.set_state((name, arrays["numpy_keys"], position, has_gauss, gauss))
    if record.get("python"):
        version, internal, gauss = record["python"]
        random.setstate((version, tuple(internal), gauss))


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a monitored value (NumPy and TensorFlow scalars become floats)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------ the backup callback


def resumable_backup(
    backup_dir: str | os.PathLike,
    key: str | None = None,
    say: Say = _print,
    peers: Sequence[Any] = (),
) -> Any:
    """A ``keras.callbacks.BackupAndRestore`` keyed to its run that resumes the same run (lesson 05).

    After every finished epoch it saves, crash-safely, everything the module docstring lists; the state of
    the ``EarlyStopping`` and ``ModelCheckpoint`` callbacks among ``peers`` is saved and restored too, so it
    must come after them in ``fit``'s callbacks (as :func:`tlcourse.train.training_callbacks` puts it). A run
    that early stopping ended is resumed as ended: ``fit`` trains no further epoch. When ``fit`` starts it restores a backup with the same
    ``key`` and says ``resumed from epoch N``; a backup with another key, or a damaged one, is discarded with
    one line and training starts fresh. ``key=None`` accepts any undamaged backup (Keras' own behaviour).
    """
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    import keras

    class ResumableBackup(keras.callbacks.BackupAndRestore):
        def __init__(self, directory: str) -> None:
            super().__init__(backup_dir=directory)
            self.folder = Path(directory)
            self.key = key
            self.resumed_from = 0

        def _peer(self, kind: type) -> Any:
            return next((p for p in peers if isinstance(p, kind) and p is not self), None)

        # -- restoring (after the peers' own on_train_begin, which resets them: this callback comes last)
        def on_train_begin(self, logs: Any = None) -> None:
            self.resumed_from = 0
            marker = self.folder.parent / RESUMED_FILE
            why = check_saved(self.folder, WEIGHTS_FILE, METADATA_FILE, self.key, STATE_FILE)
            if why is not None:
                discard(self.folder, why, say)
            if why is not None or not (self.folder / METADATA_FILE).exists():
                marker.unlink(missing_ok=True)
                return
            try:
                record = _read_record(self.folder / METADATA_FILE)
                arrays = _load_arrays(self.folder / STATE_FILE) if record.get("state_sha256") else {}
                super().on_train_begin(logs)  # Keras' own restore: weights, and the epoch fit continues from
            except Exception as error:  # noqa: BLE001 - any unreadable backup is one that is not used
                discard(self.folder, f"it cannot be loaded into this model ({type(error).__name__})", say)
                marker.unlink(missing_ok=True)
                return
            optimizer = self.model.optimizer
            saved = _unindexed("optimizer", arrays)
            if optimizer is not None and len(saved) == len(optimizer.variables):
                for variable, value in zip(optimizer.variables, saved, strict=True):
                    if tuple(variable.shape) == value.shape:
                        variable.assign(value)
            restore_random_state(self.model, _unindexed("random", arrays))
            _set_global_random(arrays, record)
            self._restore_peers(record, _unindexed("best", arrays))
            self.resumed_from = int(record.get("completed", record.get("epoch", 0)))
            write_json_atomic(marker, {"epoch": self.resumed_from, "key": self.key})
            say(f"resumed from epoch {self.resumed_from} (backup in {self.backup_dir})")

        def _restore_peers(self, record: Mapping[str, Any], best: list[np.ndarray]) -> None:
            """Early stopping, the checkpoint's best value and the history so far."""
            stopping = self._peer(keras.callbacks.EarlyStopping)
            checkpoint = self._peer(keras.callbacks.ModelCheckpoint)
            state = record.get("early_stopping")
            if stopping is not None and state:
                stopping.wait, stopping.best = int(state["wait"]), state["best"]
                stopping.best_epoch, stopping.stopped_epoch = (
                    int(state["best_epoch"]),
                    int(state["stopped_epoch"]),
                )
                stopping.best_weights = list(best) if state.get("has_best_weights") else None
            if checkpoint is not None and record.get("checkpoint_best") is not None:
                checkpoint.best = record["checkpoint_best"]
            history = getattr(self.model, "history", None)
            if history is not None and record.get("history"):
                history.history = {name: list(values) for name, values in record["history"].items()}

        # -- saving, after every finished epoch, once the peers have taken it in
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.folder.mkdir(parents=True, exist_ok=True)
            digest = save_weights_atomic(self.model, self.folder / WEIGHTS_FILE)
            optimizer = self.model.optimizer
            arrays: dict[str, np.ndarray] = {}
            if optimizer is not None and optimizer.built:
                arrays.update(_indexed("optimizer", [np.asarray(v.numpy()) for v in optimizer.variables]))
            arrays.update(_indexed("random", random_state(self.model)))
            stopping = self._peer(keras.callbacks.EarlyStopping)
            checkpoint = self._peer(keras.callbacks.ModelCheckpoint)
            stopped = bool(self.model.stop_training)
            # Keras continues from "epoch": after an early stop, from the end (nothing more to train)
            resume_at = int(self.params.get("epochs") or epoch + 1) if stopped else epoch + 1
            record: dict[str, Any] = {
                "epoch": resume_at,
                "completed": epoch + 1,
                "stopped": stopped,
                "key": self.key,
            }
            if stopping is not None:
                best = getattr(stopping, "best_weights", None)
                arrays.update(_indexed("best", [np.asarray(w) for w in best or []]))
                record["early_stopping"] = {
                    "wait": int(stopping.wait), "best": _plain(stopping.best),
                    "best_epoch": int(getattr(stopping, "best_epoch", 0)),
                    "stopped_epoch": int(stopping.stopped_epoch), "has_best_weights": best is not None,
                }  # fmt: skip
            if checkpoint is not None:
                record["checkpoint_best"] = _plain(getattr(checkpoint, "best", None))
            history = getattr(getattr(self.model, "history", None), "history", None) or {}
            so_far = {name: [_plain(v) for v in values] for name, values in history.items()}
            for name, value in (logs or {}).items():  # this epoch: History records it after this callback
                so_far.setdefault(name, []).append(_plain(value))
            record["history"] = so_far
            numbers, state = _global_random()
            arrays.update(numbers)
            record.update(state)
            record["weights_sha256"] = digest
            record["state_sha256"] = save_arrays_atomic(self.folder / STATE_FILE, arrays)
            write_json_atomic(self.folder / METADATA_FILE, record)  # last: it vouches for the two files

    return ResumableBackup(str(backup_dir))


def epoch_clock() -> Any:
    """A Keras callback that tells a data source which epoch it is serving, in ``fit``'s numbering (lesson 05).

    A source that draws each epoch's order from ``(seed, clock.next_epoch())`` when it serves the epoch's first
    batch gives a resumed run the batches the interrupted one would have seen next. The count is anchored at
    the first epoch ``fit`` runs (the resumed one after a restart) and goes up by one per epoch served, so it
    stays right when Keras prefetches the next epoch's first batch before that epoch formally begins.
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.first: int | None = None
            self.served = 0

        def on_train_begin(self, logs: Any = None) -> None:
            self.first, self.served = (
                None,
                0,
            )  # batches fetched before fit began (Keras' shape probe) don't count

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if self.first is None:
                self.first = epoch

        def next_epoch(self) -> int:
            self.served += 1
            return (self.first or 0) + self.served - 1

    return EpochClock()


def read_resumed(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What a phase's run folder says about its last run: ``{"epoch": N}`` when it resumed from epoch N,
    ``{"reused": True, "epochs": N}`` when the whole phase was reused; None when it ran from the start."""
    try:
        return _read_record(Path(run_dir) / RESUMED_FILE)
    except (OSError, ValueError):
        return None


def save_phase(folder: str | os.PathLike, key: str, model: Any, info: Mapping[str, Any]) -> None:
    """Save a finished phase's weights, random-number state and ``info`` (history, accuracy, ...) with its
    ``key``, crash-safely."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = save_weights_atomic(model, folder / PHASE_WEIGHTS)
    state = save_arrays_atomic(folder / PHASE_STATE, _indexed("random", random_state(model)))
    write_json_atomic(
        folder / PHASE_RECORD, {**info, "key": key, "weights_sha256": digest, "state_sha256": state}
    )


def load_phase(folder: str | os.PathLike, key: str, model: Any, say: Say = _print) -> dict[str, Any] | None:
    """The ``info`` of a phase saved with ``key`` in ``folder``, its weights and random-number state loaded
    into ``model``; else None.

    A saved phase of another run, or a damaged one, is discarded with one line (and None is returned).
    """
    folder = Path(folder)
    why = check_saved(folder, PHASE_WEIGHTS, PHASE_RECORD, key, PHASE_STATE)
    if why is None and (folder / PHASE_RECORD).exists():
        why = _load_weights_or_restore(model, folder / PHASE_WEIGHTS)
        if why is None:
            info = _read_record(folder / PHASE_RECORD)
            if (folder / PHASE_STATE).exists():
                restore_random_state(model, _unindexed("random", _load_arrays(folder / PHASE_STATE)))
            write_json_atomic(folder / RESUMED_FILE, {"reused": True, "epochs": info.get("epochs_run")})
            return info
    if why is not None:
        for name in (PHASE_WEIGHTS, PHASE_RECORD, PHASE_STATE):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        say(f"discarded the saved phase in {folder}: {why}; it is trained again")
    return None
