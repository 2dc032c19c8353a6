"""The one home of the small utilities every module shares (no lesson teaches these).

- :func:`keras_module` and :func:`tf_module` import Keras / TensorFlow on first use, quietly, so that importing
  a ``tlcourse`` module stays cheap and prints nothing.
- :func:`named_layers` / :func:`walk_layers` list every layer of a model, nested models included, through public Keras API only
  (``Model.layers``); it is the one layer walk of the library.
- :func:`leaf_layers` is the same walk without the nested models themselves.
- :func:`count_params` counts trainable (or frozen) parameters.
- :func:`jsonable` makes numpy values, paths and NaN safe for ``json.dump``.

Nothing here builds or trains a model; this module imports no other ``tlcourse`` module except
:mod:`tlcourse.config`, so every other module may import it without cycles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.config import quiet_tensorflow


def keras_module() -> Any:
    """The ``keras`` package, imported on first use with TensorFlow's start-up chatter silenced."""
    quiet_tensorflow()
    import keras

    return keras


def tf_module() -> Any:
    """The ``tensorflow`` package, imported on first use with its start-up chatter silenced."""
    quiet_tensorflow()
    import tensorflow as tf

    return tf


def named_layers(model: Any, *, include_self: bool = False) -> list[tuple[str, Any]]:
    """``(path, layer)`` for every layer of ``model`` in order, depth first, nested models included.

    ``path`` is ``outer/inner`` for a layer inside a nested model. Uses only the public ``layers`` property of
    Keras models (Functional, Sequential and subclassed); a layer shared by two nested models is listed once.
    """
    seen: set[int] = set()
    out: list[tuple[str, Any]] = []

    def visit(layer: Any, prefix: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        path = prefix + str(layer.name)
        out.append((path, layer))
        for child in getattr(layer, "layers", None) or []:
            visit(child, path + "/")

    if include_self:
        visit(model, "")
    else:
        seen.add(id(model))
        for child in getattr(model, "layers", None) or []:
            visit(child, "")
    return out


def walk_layers(model: Any, *, include_self: bool = False) -> list[Any]:
    """Every layer of ``model`` in order, depth first, nested models and their layers included
    (:func:`named_layers` without the paths)."""
    return [layer for _, layer in named_layers(model, include_self=include_self)]


def leaf_layers(model: Any) -> list[Any]:
    """The layers of ``model`` that are not themselves models: :func:`walk_layers` without the containers."""
    return [layer for layer in walk_layers(model) if not is_container(layer)]


def is_container(layer: Any) -> bool:
    """Whether ``layer`` holds other layers (a nested model), as opposed to a leaf layer with weights."""
    return bool(getattr(layer, "layers", None))


def output_rank(layer: Any) -> int | None:
    """The rank of ``layer``'s (first) output, e.g. 4 for a feature map; None when it has no symbolic output."""
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def count_variables(variables: Iterable[Any]) -> int:
    """The number of scalar values in ``variables`` (weights or tensors with a ``shape``)."""
    return int(sum(int(np.prod(v.shape)) for v in variables))


def count_params(model: Any, trainable: bool = True) -> int:
    """Trainable (or, with ``trainable=False``, frozen) parameters of ``model`` (lesson 05 shows this)."""
    return count_variables(model.trainable_weights if trainable else model.non_trainable_weights)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths and NaN/inf made safe for ``json.dump`` (NaN becomes null)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
