"""Why MobileNetV2's bottlenecks are linear: a small experiment on ReLU and information (lesson 03).

A 2-D :func:`spiral` is lifted into ``dims`` dimensions by a random matrix, passed through ReLU, and read back
linearly (:func:`relu_round_trip`); :func:`relu_information_loss` measures how much is lost at each width. In a
few dimensions ReLU destroys much of the input, in many it loses little: the reason MobileNetV2 keeps its narrow
bottleneck layers linear and applies ReLU only in the wide expanded ones. NumPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def spiral(n: int = 500, turns: float = 2.0, seed: int | None = None) -> np.ndarray:
    """``n`` points on a 2-D spiral centred on the origin, shape ``(n, 2)`` (lesson 03).

    With ``seed`` a little Gaussian noise is added.
    """
    angle = np.linspace(0.0, 2.0 * np.pi * turns, n)
    radius = np.linspace(0.1, 1.0, n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    if seed is not None:
        points = points + np.random.default_rng(seed).normal(0.0, 0.01, points.shape)
    return points


def relu_round_trip(points: np.ndarray, dims: int, *, relu: bool = True, seed: int = 0) -> np.ndarray:
    """Embed 2-D ``points`` into ``dims`` dimensions, apply ReLU, and read them back linearly (lesson 03).

    A random Gaussian matrix ``T`` (``dims x 2``) lifts the points: ``y = ReLU(T x)`` (or ``T x`` with
    ``relu=False``). The best affine read-out back to 2-D (least squares on the same points) then shows how
    much of the input survived: what ReLU zeroed out can no longer be recovered. Returns the ``(n, 2)``
    reconstruction.
    """
    points = np.asarray(points, dtype=np.float64)
    lift = np.random.default_rng(seed).normal(size=(int(dims), points.shape[1]))
    lifted = points @ lift.T
    if relu:
        lifted = np.maximum(lifted, 0.0)
    design = np.hstack([lifted, np.ones((len(points), 1))])
    readout, *_ = np.linalg.lstsq(design, points, rcond=None)
    return design @ readout


def relu_information_loss(
    dims: Sequence[int],
    *,
    points: np.ndarray | None = None,
    trials: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Relative reconstruction error of :func:`relu_round_trip` for each embedding width (lesson 03).

    error = ||X - X_hat||^2 / ||X - mean(X)||^2, averaged over ``trials`` random lifts; 0 means nothing was
    lost, 1 means nothing useful survived. Each row: ``dims``, ``relu_error``, ``linear_error`` (same lift
    without ReLU, which loses nothing once ``dims >= 2``). ``points`` default to :func:`spiral`.
    """
    points = spiral(seed=seed) if points is None else np.asarray(points, dtype=np.float64)
    spread = float(np.sum((points - points.mean(axis=0)) ** 2))
    rows = []
    for width in dims:
        errors = {True: [], False: []}
        for trial in range(trials):
            for relu in (True, False):
                rebuilt = relu_round_trip(points, width, relu=relu, seed=seed * 1000 + trial)
                errors[relu].append(float(np.sum((points - rebuilt) ** 2)) / spread)
        rows.append(
            {
                "dims": int(width),
                "relu_error": float(np.mean(errors[True])),
                "linear_error": float(np.mean(errors[False])),
            }
        )
    return rows
