"""Google's uint8-quantized TFLite ImageNet classifier behind a Keras-like ``predict`` (lesson 01).

:class:`TFLiteImageNet` is the offline engine of :func:`tlcourse.zeroshot.load_imagenet_classifier`: it takes
what ``keras.applications.mobilenet_v2.preprocess_input`` returns (or raw pixels), handles the model's uint8
quantization, drops its extra "background" output and renormalises, so lesson 01's Keras cells serve both
engines. The interpreter is the maintained ``ai_edge_litert`` package when installed, else TensorFlow's.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.config import quiet_tensorflow
from tlcourse.errors import TLCourseError

TFLITE_IMAGE_SIZE = 224
NUM_CLASSES = 1000
NUM_OUTPUTS_WITH_BACKGROUND = 1001
"""The TFLite classifier's outputs: "background" first, then the 1000 ImageNet classes in Keras order."""


def _tflite_interpreter(path: Path, num_threads: int | None) -> Any:
    """A TFLite interpreter for ``path``: the maintained ``ai_edge_litert`` package when installed, else
    TensorFlow's ``tf.lite.Interpreter``, whose deprecation warning (the one thing it says) is silenced here."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        quiet_tensorflow()
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*tf\.lite\.Interpreter is deprecated", category=UserWarning
            )
            return tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
    return Interpreter(model_path=str(path), num_threads=num_threads)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send the process's file descriptor 2 to /dev/null for a moment (C++ log lines bypass Python)."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2 (some embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class TFLiteImageNet:
    """The TFLite ImageNet classifier behind a Keras-like ``predict`` (lesson 01).

    ``predict(x)`` takes ``[N, 224, 224, 3]`` floats as ``keras.applications.mobilenet_v2.preprocess_input``
    returns them (``[-1, 1]``), or raw ``[0, 255]`` pixels when built with ``pixels=True``, and returns
    ``[N, 1000]`` probabilities in Keras class order, like ``keras.applications.MobileNetV2(include_top=True)``.
    Inside: the inputs are quantized with the model's own uint8 parameters (scale 1/128, zero point 128), its
    1001 uint8 scores (scale 1/256) are dequantized, output 0 ("background", not an ImageNet class) is dropped
    and each row is renormalised to sum to 1.
    """

    image_size = TFLITE_IMAGE_SIZE

    def __init__(self, path: str | os.PathLike[str], *, pixels: bool = False, num_threads: int | None = None):
        self.path = Path(path)
        self.pixels = bool(pixels)
        self.interpreter = _tflite_interpreter(self.path, num_threads)
        with _stderr_silenced():  # TFLite's C++ "INFO: Created TensorFlow Lite XNNPACK delegate" line
            self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        shape = tuple(int(d) for d in self._input["shape"])
        outputs = int(self._output["shape"][-1])
        if shape[1:] != (self.image_size, self.image_size, 3) or outputs != NUM_OUTPUTS_WITH_BACKGROUND:
            raise TLCourseError(
                f"{self.path.name} is not the expected ImageNet classifier: input {shape}, {outputs} outputs "
                f"(expected [1, {self.image_size}, {self.image_size}, 3] and {NUM_OUTPUTS_WITH_BACKGROUND})."
            )

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        values = batch / 127.5 - 1.0 if self.pixels else batch
        scale, zero_point = self._input["quantization"]
        if self._input["dtype"] != np.uint8 or not scale:
            return values.astype(self._input["dtype"])
        return np.clip(np.rint(values / scale + zero_point), 0, 255).astype(np.uint8)

    def _scores(self, raw: np.ndarray) -> np.ndarray:
        scale, zero_point = self._output["quantization"]
        scores = (raw.astype(np.float64) - zero_point) * scale if scale else raw.astype(np.float64)
        scores = np.clip(scores[..., 1:], 0.0, None)  # drop "background", which no Keras class matches
        totals = scores.sum(axis=-1, keepdims=True)
        uniform = np.full_like(scores, 1.0 / scores.shape[-1])
        return np.where(totals > 0, scores / np.where(totals > 0, totals, 1.0), uniform).astype(np.float32)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        """``[N, 1000]`` probabilities for one batch (see the class docstring for the inputs)."""
        batch = np.asarray(x, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (self.image_size, self.image_size, 3):
            raise TLCourseError(
                f"The TFLite ImageNet classifier takes images of {self.image_size}x{self.image_size}x3, "
                f"got an array of shape {batch.shape}. Resize them first (zeroshot.fit_square)."
            )
        rows = []
        for image in self._quantize(batch):  # the model's input holds one image
            self.interpreter.set_tensor(self._input["index"], image[None])
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self._output["index"])[0])
        if not rows:
            return np.zeros((0, NUM_CLASSES), np.float32)
        return self._scores(np.stack(rows))

    def predict(self, x: Any, batch_size: int = 32, verbose: Any = 0) -> np.ndarray:
        """Like ``keras.Model.predict``: ``[N, 1000]`` probabilities (``batch_size``, ``verbose`` ignored)."""
        return self.predict_on_batch(x)
