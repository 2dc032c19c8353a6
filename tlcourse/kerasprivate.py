"""The one module that reads or writes private Keras state (no lesson teaches this).

Keras keeps a few facts the course needs only in private attributes; each read is here, with why and the Keras
version it was checked on (Keras 3.15), and each degrades to "unknown" (None or an empty list) rather than
failing when a later Keras renames it. ``tests/test_layout.py`` refuses any ``._name`` read or written on a
Keras object anywhere else in the library.

- the recorded call graph (``_functional``, ``_nodes_by_depth``, ``_inbound_nodes``, ``_keras_history``):
  where a nested base is called with ``training=False`` (:mod:`tlcourse.diagnose`), the node a layer is called
  at (Grad-CAM in :mod:`tlcourse.evaluate`) and the tensors that cross a cut through a backbone (the fast path);
- what a compile recorded: Keras' own ``_compiled_trainable_state``, the variables an optimizer built its slots
  for (``_trainable_variables``), and the course's mark of its own compile (:func:`mark_compiled`);
- a layer's own trainable-in-principle variables (``_trainable_variables``), which the public API hides while
  the layer is frozen (the unfreeze summary of lesson 05).
"""

from __future__ import annotations

from typing import Any

from tlcourse.backend import keras_module as _keras

COMPILED_MARK = "_tlcourse_compiled"
"""Attribute :func:`tlcourse.models.compile_classifier` leaves on a model: its optimizer and trainable state."""


def graph_calls(model: Any) -> list[tuple[Any, Any]] | None:
    """(layer, explicit ``training`` argument) for each call recorded in ``model``'s graph, inputs first, or
    None when the model has no inspectable graph (a subclassed model)."""
    keras = _keras()
    graph = model
    if isinstance(model, keras.Sequential):
        # Private (Keras 3.15): a built Sequential keeps its Functional graph here; no public equivalent.
        graph = getattr(model, "_functional", None)
        if graph is None:
            return [(layer, None) for layer in model.layers]
    # Private (Keras 3.15): the recorded calls with their arguments, the only place the explicit
    # ``training=False`` of ``base(x, training=False)`` is kept. Missing -> None ("no inspectable graph").
    nodes_by_depth = getattr(graph, "_nodes_by_depth", None)
    if not isinstance(nodes_by_depth, dict):
        return None
    calls = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            training = node.arguments.kwargs.get("training") if node.arguments is not None else None
            calls.append((op, training))
    return calls


def graph_node(model: Any, layer: Any) -> Any | None:
    """The node where ``model``'s graph calls ``layer`` (a layer can be called by several models), or None.

    Grad-CAM (lesson 06, :func:`tlcourse.evaluate.grad_cam`) reads the feature map a layer gives inside this model.
    """
    # Private (Keras 3.15): the graph's nodes and a layer's call sites; no public API lists them.
    nodes = {id(node) for depth in getattr(model, "_nodes_by_depth", {}).values() for node in depth}
    for node in getattr(layer, "_inbound_nodes", []):
        if id(node) in nodes:
            return node
    return None


def call_inputs(layer: Any) -> list[tuple[Any, Any]]:
    """(symbolic tensor, layer that produced it) for each input of ``layer``'s first call in a graph; an
    uncalled layer gives an empty list. The fast path finds the tensors crossing a cut through a backbone."""
    # Private (Keras 3.15): a layer's call sites and each symbolic tensor's producer; no public API has them.
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    return [(tensor, tensor._keras_history.operation) for tensor in nodes[0].input_tensors]


def call_arguments(layer: Any) -> list[Any]:
    """The first symbolic tensor passed to ``layer`` at each of its call sites (every graph it is called in)."""
    # Private (Keras 3.15): a layer's call sites, to probe what reaches a nested base inside a classifier.
    found = []
    for node in getattr(layer, "_inbound_nodes", []):
        tensors = node.arguments.keras_tensors if node.arguments is not None else []
        if tensors:
            found.append(tensors[0])
    return found


def mark_compiled(model: Any, trainable_state: str) -> None:
    """Leave on ``model`` which optimizer it was compiled with and its ``trainable_state`` at that moment."""
    setattr(model, COMPILED_MARK, f"{id(model.optimizer)}|{trainable_state}")


def compiled_mark(model: Any) -> str | None:
    """The trainable state :func:`mark_compiled` left for the model's current optimizer (None if none)."""
    record = getattr(model, COMPILED_MARK, None)
    optimizer = getattr(model, "optimizer", None)
    if isinstance(record, str) and record.split("|", 1)[0] == str(id(optimizer)):
        return record.split("|", 1)[1]
    return None


def compiled_trainable_state(model: Any) -> dict[Any, bool] | None:
    """Keras' own record of each layer's ``trainable`` flag at ``model.compile`` (None when missing)."""
    # Private (Keras 3.15): compile() records each layer's trainable flag here; missing -> no verdict.
    state = getattr(model, "_compiled_trainable_state", None)
    return state if isinstance(state, dict) else None


def optimizer_variables(optimizer: Any) -> list[Any]:
    """The model variables a built optimizer made its slots for (empty when unknown)."""
    # Private (Keras 3.15): the variables the optimizer built its slots for; missing -> no verdict.
    return list(getattr(optimizer, "_trainable_variables", []) or [])


def own_trainable_variables(layer: Any) -> list[Any] | None:
    """A layer's own trainable-in-principle variables, whatever its current flag (None when unknown).

    ``trainable_weights`` is empty for a frozen layer, so the public API cannot say what unfreezing adds.
    """
    # Private (Keras 3.15): the layer's list of variables that train when it is trainable.
    own = getattr(layer, "_trainable_variables", None)
    return None if own is None else list(own)
