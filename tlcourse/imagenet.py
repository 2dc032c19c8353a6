"""ImageNet's 1000 classes, their WordNet hierarchy, and zero-shot mapping onto a new task (lesson 01).

Everything here works with no network: the class index and a compact hierarchy (the 1000 ILSVRC classes and
all their WordNet ancestors up to ``n00001740`` "entity") ship inside the package in ``tlcourse/resources/``
(built by ``tools/build_imagenet_resources.py``). NumPy only; TensorFlow is never imported.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import numpy as np

from tlcourse.errors import TLCourseError

NUM_CLASSES = 1000
ROOT_WNID = "n00001740"
_CLASS_INDEX_FILE = "imagenet_class_index.json"
_HIERARCHY_FILE = "imagenet_hierarchy.json"


@cache
def _read_resource(name: str) -> str:
    return resources.files("tlcourse").joinpath("resources", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _class_index() -> tuple[tuple[str, str], ...]:
    raw = json.loads(_read_resource(_CLASS_INDEX_FILE))
    return tuple((raw[str(i)][0], raw[str(i)][1]) for i in range(len(raw)))


def class_index() -> list[tuple[str, str]]:
    """The 1000 ImageNet classes as ``(wnid, keras_label)`` in model output order (lesson 01).

    Identical to the ``imagenet_class_index.json`` Keras' ``decode_predictions`` downloads, but read from the
    package, so it needs no network.
    """
    return list(_class_index())


def labels(simple: bool = True) -> list[str]:
    """1000 readable labels in model output order (lesson 01).

    ``simple=True`` gives short everyday labels ("golden retriever", "tabby cat"); ``False`` gives Keras'
    labels ("golden_retriever", "tabby").
    """
    if simple:
        return list(_hierarchy_document()["simple_labels"])
    return [label for _, label in _class_index()]


def _as_probability_rows(probs: Any, what: str) -> tuple[np.ndarray, bool]:
    array = np.asarray(probs, dtype=np.float64)
    single = array.ndim == 1
    if single:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != NUM_CLASSES:
        raise TLCourseError(
            f"{what} expects ImageNet scores of shape [N, {NUM_CLASSES}] (one column per ImageNet class), "
            f"got shape {tuple(np.shape(probs))}. Use a classifier built with include_top=True."
        )
    return array, single


def decode_predictions(
    probs: Any, top: int = 5, *, simple: bool = False
) -> list[list[tuple[str, str, float]]]:
    """The ``top`` classes of each row of ImageNet scores, like Keras' version but offline (lesson 01).

    ``probs``: array-like of shape ``[N, 1000]`` (a single row of 1000 is treated as ``N = 1``). Returns, per
    row, ``(wnid, label, score)`` from the highest score down; ties keep the lower class index first. Labels are
    Keras' by default, the short simple ones with ``simple=True``.
    """
    array, _ = _as_probability_rows(probs, "decode_predictions")
    top = max(1, min(int(top), NUM_CLASSES))
    names = labels(simple=simple)
    wnids = [wnid for wnid, _ in _class_index()]
    results = []
    for row in array:
        order = np.argsort(-row, kind="stable")[:top]
        results.append([(wnids[i], names[i], float(row[i])) for i in order])
    return results


@lru_cache(maxsize=1)
def _hierarchy_document() -> dict[str, Any]:
    return json.loads(_read_resource(_HIERARCHY_FILE))


class Hierarchy:
    """WordNet IS-A graph of the 1000 ImageNet classes and their ancestors (lesson 01).

    A synset may have several parents (WordNet is a directed acyclic graph, not a tree). Every method takes
    WordNet ids (``"n02084071"``); use :meth:`find` to look one up by text.
    """

    def __init__(
        self, nodes: Mapping[str, Mapping[str, Any]], classes: Sequence[str], simple_labels: Sequence[str]
    ):
        self._names = {
            wnid: [s.strip() for s in node["name"].split(",") if s.strip()] for wnid, node in nodes.items()
        }
        self._parents = {wnid: list(node["parents"]) for wnid, node in nodes.items()}
        children: dict[str, list[str]] = {wnid: [] for wnid in nodes}
        for wnid, parents in self._parents.items():
            for parent in parents:
                children[parent].append(wnid)
        self._children = {wnid: sorted(kids) for wnid, kids in children.items()}
        self.classes: list[str] = list(classes)
        """The 1000 ILSVRC class wnids in model output order."""
        self._class_position = {wnid: i for i, wnid in enumerate(self.classes)}
        self._simple = dict(zip(self.classes, simple_labels, strict=True))
        self._keras = (
            {wnid: label for wnid, label in _class_index()} if len(self.classes) == NUM_CLASSES else {}
        )
        self.root = ROOT_WNID if ROOT_WNID in nodes else next(w for w, p in self._parents.items() if not p)

    @classmethod
    def load(cls) -> Hierarchy:
        """The hierarchy shipped with the package (no network) (lesson 01)."""
        document = _hierarchy_document()
        return cls(document["nodes"], document["classes"], document["simple_labels"])

    def __len__(self) -> int:
        return len(self._parents)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._parents

    def _check(self, wnid: str) -> str:
        if wnid not in self._parents:
            raise TLCourseError(
                f"{wnid!r} is not a synset in the ImageNet hierarchy; look one up with Hierarchy.find('text')."
            )
        return wnid

    def name(self, wnid: str) -> str:
        """The synset's first WordNet name, e.g. ``"dog"`` for n02084071 (lesson 01)."""
        return self._names[self._check(wnid)][0]

    def synonyms(self, wnid: str) -> list[str]:
        """All WordNet names of the synset, e.g. ``["dog", "domestic dog", "Canis familiaris"]`` (lesson 01)."""
        return list(self._names[self._check(wnid)])

    def label(self, wnid: str) -> str:
        """The short readable label for an ImageNet class, else the synset's name (lesson 01)."""
        return self._simple.get(self._check(wnid)) or self.name(wnid)

    def is_class(self, wnid: str) -> bool:
        """True for the 1000 ILSVRC classes (the model's outputs) (lesson 01)."""
        return wnid in self._class_position

    def class_position(self, wnid: str) -> int:
        """The model output index of an ILSVRC class (lesson 01)."""
        if wnid not in self._class_position:
            raise TLCourseError(f"{wnid!r} is not one of the 1000 ImageNet classes.")
        return self._class_position[wnid]

    def find(self, text: str) -> list[str]:
        """Synsets whose names (or class labels) match ``text``, ignoring case (lesson 01).

        Whole-name matches come first, then names with a word starting with ``text`` ("cat" finds "tabby cat"
        but not "location"); each group in wnid order. A wnid in
        the hierarchy finds itself.
        """
        query = text.strip().lower()
        if query in self._parents:
            return [query]
        word = re.compile(r"\b" + re.escape(query))
        exact, partial = [], []
        for wnid in sorted(self._names):
            names = [n.lower() for n in self._names[wnid]]
            if wnid in self._simple:
                names += [self._simple[wnid].lower(), self._keras.get(wnid, "").lower().replace("_", " ")]
            if query in names:
                exact.append(wnid)
            elif any(word.search(n) for n in names):
                partial.append(wnid)
        return exact + partial

    def parents(self, wnid: str) -> list[str]:
        """Direct hypernyms (more general synsets), sorted (lesson 01)."""
        return list(self._parents[self._check(wnid)])

    def children(self, wnid: str) -> list[str]:
        """Direct hyponyms kept in this hierarchy (those leading to an ImageNet class), sorted (lesson 01)."""
        return list(self._children[self._check(wnid)])

    def ancestors(self, wnid: str) -> list[str]:
        """Every more general synset up to the root, nearest first (breadth-first), without ``wnid`` (lesson 01)."""
        seen: dict[str, None] = {}
        queue = deque(self._parents[self._check(wnid)])
        while queue:
            current = queue.popleft()
            if current not in seen:
                seen[current] = None
                queue.extend(self._parents[current])
        return list(seen)

    def descendants(self, wnid: str) -> list[str]:
        """Every synset below ``wnid`` in this hierarchy, sorted (lesson 01)."""
        seen: set[str] = set()
        stack = list(self._children[self._check(wnid)])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._children[current])
        return sorted(seen)

    def leaf_classes_under(self, wnid: str) -> list[str]:
        """The ILSVRC classes that are ``wnid`` or lie below it, in model output order (lesson 01)."""
        below = set(self.descendants(wnid)) | {wnid}
        return [c for c in self.classes if c in below]

    def class_indices_under(self, wnid: str) -> list[int]:
        """Model output indices of :meth:`leaf_classes_under` (lesson 01)."""
        return [self._class_position[c] for c in self.leaf_classes_under(wnid)]

    def is_a(self, wnid: str, ancestor: str) -> bool:
        """True when ``wnid`` is ``ancestor`` or lies below it (lesson 01)."""
        self._check(ancestor)
        return wnid == ancestor or ancestor in self.ancestors(wnid)

    def path_to_root(self, wnid: str) -> list[str]:
        """One chain from ``wnid`` up to the root, following the first parent at each step (lesson 01)."""
        chain = [self._check(wnid)]
        while self._parents[chain[-1]]:
            chain.append(self._parents[chain[-1]][0])
        return chain

    def tree(self, wnid: str, max_depth: int = 2, max_children: int = 12) -> str:
        """An indented text view of the subtree under ``wnid`` with class counts, for browsing (lesson 01)."""
        lines: list[str] = []

        def walk(node: str, depth: int) -> None:
            count = len(self.leaf_classes_under(node))
            marker = " *" if self.is_class(node) else ""
            lines.append(f"{'  ' * depth}{self.name(node)} ({node}, {count} classes){marker}")
            if depth >= max_depth:
                return
            kids = self.children(node)
            for kid in kids[:max_children]:
                walk(kid, depth + 1)
            if len(kids) > max_children:
                lines.append(f"{'  ' * (depth + 1)}... {len(kids) - max_children} more")

        walk(self._check(wnid), 0)
        return "\n".join(lines)


def _resolve_synset(hierarchy: Hierarchy, entry: str, task_class: str) -> str:
    if entry in hierarchy:
        return entry
    text = entry.strip().lower()
    matches = hierarchy.find(entry)
    exact = [w for w in matches if text in [n.lower() for n in hierarchy.synonyms(w)]]
    exact = exact or [w for w in matches if hierarchy.is_class(w) and hierarchy.label(w).lower() == text]
    if len(exact) > 1:  # "cat": prefer the synset whose main name it is (cat) over "big cat, cat"
        main = [w for w in exact if hierarchy.name(w).lower() == text]
        exact = main if len(main) == 1 else exact
    if len(exact) == 1:
        return exact[0]
    shown = ", ".join(f"{w} ({hierarchy.name(w)})" for w in (exact or matches)[:6])
    if exact:
        raise TLCourseError(
            f"{entry!r} (for task class {task_class!r}) names several synsets: {shown}. Use the wnid you mean."
        )
    hint = f" Close matches: {shown}." if matches else " Try Hierarchy.find() with a shorter word."
    raise TLCourseError(f"No ImageNet synset is called {entry!r} (for task class {task_class!r}).{hint}")


def zero_shot_mapping(
    task_classes: Mapping[str, Iterable[str]],
    hierarchy: Hierarchy | None = None,
    *,
    allow_overlap: bool = False,
    missing: str = "error",
) -> dict[str, list[int]]:
    """Map each task class to the ImageNet output indices under the given synsets (lesson 01).

    ``task_classes``: task class -> synset wnids or names, e.g. ``{"dog": ["n02084071"], "cat": ["cat"]}``.
    A name must match a synset's name exactly; when several do, the synset whose main name it is wins, else
    the error lists the candidates. Each task class gets the sorted indices of every ILSVRC class at or below
    its synsets. Raises when two task classes share an ImageNet class (unless ``allow_overlap``), and when a
    name matches nothing or a task class gets no ImageNet class, unless ``missing="skip"``: then such a task
    class gets an empty list (for automatic harnesses that try every class name).
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', not {missing!r}")
    hierarchy = hierarchy or Hierarchy.load()
    mapping: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for task_class, entries in task_classes.items():
        if isinstance(entries, str):
            entries = [entries]
        indices: set[int] = set()
        for entry in entries:
            try:
                wnid = _resolve_synset(hierarchy, entry, task_class)
            except TLCourseError:
                if missing == "skip":
                    continue
                raise
            indices.update(hierarchy.class_indices_under(wnid))
        if not indices and missing == "error":
            raise TLCourseError(
                f"Task class {task_class!r} maps to no ImageNet class; pick a broader synset."
            )
        for index in indices:
            if index in owner and not allow_overlap:
                raise TLCourseError(
                    f"ImageNet class {hierarchy.classes[index]} ({labels()[index]}) falls under both "
                    f"{owner[index]!r} and {task_class!r}; use narrower synsets, or pass allow_overlap=True."
                )
            owner.setdefault(index, task_class)
        mapping[task_class] = sorted(indices)
    return mapping


def zero_shot_predict(imagenet_probs: Any, mapping: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Task-class probabilities from ImageNet probabilities, with no training (lesson 01).

    Sums each task class's mapped ImageNet probabilities (see :func:`zero_shot_mapping`) and renormalises each
    row to 1; a row with no mass on any mapped class becomes uniform. Columns follow ``list(mapping)``.
    Input ``[N, 1000]`` gives ``[N, K]``; a single row of 1000 gives ``[K]``.
    """
    array, single = _as_probability_rows(imagenet_probs, "zero_shot_predict")
    if not mapping:
        raise TLCourseError("zero_shot_predict needs at least one task class in the mapping.")
    columns = [array[:, list(indices)].sum(axis=1) for indices in mapping.values()]
    scores = np.stack(columns, axis=1)
    totals = scores.sum(axis=1, keepdims=True)
    uniform = np.full_like(scores, 1.0 / scores.shape[1])
    result = np.where(totals > 0, scores / np.where(totals > 0, totals, 1.0), uniform).astype(np.float32)
    return result[0] if single else result
