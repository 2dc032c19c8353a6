"""Which mode each layer of a model runs in while ``fit`` runs, and which layers are the pretrained base
(lesson 05; :mod:`tlcourse.diagnose` builds its report and its mistake checks on these).

A layer's mode follows the ``training`` argument its parent graph records for it (``base(x, training=False)``),
the mode its parent runs in, and :func:`outer_training_overrides_nested`: in Keras 3, ``fit``'s
``training=True`` reaches a nested base even through a recorded ``training=False``. The recorded arguments are
read by :func:`tlcourse.kerasprivate.graph_calls`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcourse import kerasprivate
from tlcourse.backend import is_container, walk_layers
from tlcourse.backend import keras_module as _keras
from tlcourse.models import is_batchnorm


@dataclass
class LayerMode:
    """One layer of a model and the ``training`` value it gets while ``fit`` runs."""

    layer: Any
    path: str
    training: Any
    """Effective ``training`` value while ``fit`` runs: False, True, or None (unknown / left to the caller)."""
    explicit: Any = None
    """The ``training`` argument recorded where this layer is called in its parent's graph."""


@functools.lru_cache(maxsize=1)
def outer_training_overrides_nested() -> bool:
    """True when this Keras passes ``fit``'s ``training=True`` through a recorded ``base(x, training=False)``.

    Keras 3's Functional models inject the outer call's ``training`` value into every nested call, replacing
    the value recorded in the graph (keras-team/keras#20285); Keras 2 / tf.keras kept the recorded value.
    Measured once per process on a two-layer model, so the checks follow the installed Keras (lesson 05).
    """
    keras = _keras()
    inner_in = keras.Input((2,))
    norm = keras.layers.BatchNormalization(momentum=0.0)
    inner = keras.Model(inner_in, norm(inner_in))
    outer_in = keras.Input((2,))
    outer = keras.Model(outer_in, inner(outer_in, training=False))
    outer(np.full((4, 2), 5.0, dtype="float32"), training=True)
    return not np.allclose(np.asarray(norm.moving_mean), 0.0)


def _effective(explicit: Any, inherited: Any) -> Any:
    if explicit is None:
        return inherited
    if inherited is not None and outer_training_overrides_nested():
        return inherited
    return bool(explicit)


def layer_modes(model: Any, inherited: Any = True, prefix: str = "") -> Iterator[LayerMode]:
    """Every layer of ``model`` (containers too) with the ``training`` value it gets while ``fit`` runs."""
    calls = kerasprivate.graph_calls(model)
    if calls is None:
        for layer in walk_layers(model):
            yield LayerMode(layer, prefix + layer.name, None if inherited is True else inherited)
        return
    seen: set[int] = set()
    for layer, explicit in calls:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        effective = _effective(explicit, inherited)
        yield LayerMode(layer, prefix + layer.name, effective, explicit)
        if is_container(layer):
            yield from layer_modes(layer, effective, prefix + layer.name + "/")


def has_batchnorm(layer: Any) -> bool:
    return any(is_batchnorm(sub) for sub in walk_layers(layer, include_self=True))


def has_conv(layer: Any) -> bool:
    keras = _keras()
    conv = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    return any(isinstance(sub, conv) for sub in walk_layers(layer))


def bases_in(model: Any) -> list[LayerMode]:
    """Nested convolutional sub-models (the pretrained bases) with the training value they are called with."""
    keras = _keras()
    found = [
        mode for mode in layer_modes(model) if isinstance(mode.layer, keras.Model) and has_conv(mode.layer)
    ]
    return [m for m in found if not any(m.path.startswith(o.path + "/") for o in found if o is not m)]


def base_layers(model: Any) -> list[Any]:
    """The layers that belong to the pretrained base: nested conv sub-models, else the model's conv stack."""
    bases = bases_in(model)
    if bases:
        return [layer for base in bases for layer in walk_layers(base.layer)]
    if has_conv(model):
        keras = _keras()
        head_types = (keras.layers.Dense, keras.layers.Dropout)
        return [layer for layer in walk_layers(model) if not isinstance(layer, head_types)]
    return []
