"""One line per epoch while a model trains (lessons 02 to 08).

``model.fit(..., verbose=0)`` shows nothing for minutes; ``verbose=1`` redraws a bar many times a second, which
a notebook saved to disk (or a log) keeps as dozens of lines; ``verbose=2`` prints a line per epoch but with every
metric at full precision. :func:`epoch_lines` gives the readable middle: a Keras callback that prints, as each
epoch ends, one short line with the epoch number, the rounded metrics and the epoch's time::

    model.fit(train, validation_data=val, epochs=5, verbose=0, callbacks=[progress.epoch_lines("head")])
    # head epoch 1/5: accuracy 0.62, loss 1.05, val_accuracy 0.71, val_loss 0.83 (4.1 s)

It works with Keras 3 on any backend, needs nothing but Keras, and never changes what the model learns.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from tlcourse.backend import keras_module


def format_epoch(
    label: str, epoch: int, epochs: int | None, logs: Mapping[str, Any], seconds: float, *, digits: int = 3
) -> str:
    """``head epoch 2/5: accuracy 0.62, loss 1.05, val_accuracy 0.71 (4.1 s)``: the figures in the order Keras
    logs them, rounded to ``digits`` significant digits (lessons 02 to 08)."""
    of = f"/{epochs}" if epochs else ""
    parts = []
    for name, value in logs.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        parts.append(f"{name} {number:.{digits}g}" if math.isfinite(number) else f"{name} {number}")
    prefix = f"{label} " if label else ""
    return f"{prefix}epoch {epoch}{of}: {', '.join(parts)} ({seconds:.1f} s)"


def epoch_lines(label: str = "", *, write: Callable[[str], None] | None = None, digits: int = 3) -> Any:
    """A Keras callback that prints one line as each epoch ends (lessons 02 to 08); pass it to
    ``model.fit(..., verbose=0, callbacks=[...])``.

    ``label`` starts each line (``"head"``, ``"fine-tune"``); ``write`` receives each line instead of it being
    printed (and flushed, so it shows at once in a notebook and in a log).
    """
    keras = keras_module()

    def show(line: str) -> None:
        print(line, file=sys.stdout, flush=True)

    class EpochLines(keras.callbacks.Callback):
        """Prints ``format_epoch`` once per epoch."""

        def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
            self.epochs = (self.params or {}).get("epochs")

        def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            seconds = time.perf_counter() - getattr(self, "started", time.perf_counter())
            line = format_epoch(
                label, epoch + 1, getattr(self, "epochs", None), logs or {}, seconds, digits=digits
            )
            (write or show)(line)

    return EpochLines()
