"""Build the ImageNet data that ships inside the package (tlcourse/resources/), used from lesson 01.

Reads the raw ImageNet/WordNet files (through ``tlcourse.assets``, so from the mirror, the Keras cache or a
download) and writes two deterministic JSON files:

- ``imagenet_class_index.json``: an exact copy of the file Keras' ``decode_predictions`` uses
  (``{"0": [wnid, keras_label], ...}``, model output order).
- ``imagenet_hierarchy.json``: the WordNet IS-A graph restricted to the 1000 ILSVRC classes and all their
  ancestors up to ``n00001740`` (entity)::

      {"format": 1, "root": "n00001740",
       "classes": [wnid x 1000, output order], "simple_labels": [label x 1000],
       "nodes": {wnid: {"name": "synonym, synonym", "parents": [wnid, ...]}}}

Usage: ``python tools/build_imagenet_resources.py [--mirror DIR] [--out tlcourse/resources]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from pathlib import Path

ROOT_WNID = "n00001740"
HIERARCHY_FILE = "imagenet_hierarchy.json"
CLASS_INDEX_FILE = "imagenet_class_index.json"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tlcourse" / "resources"


def read_parents(is_a_path: Path) -> dict[str, set[str]]:
    """child wnid -> set of parent wnids, from lines ``parent child``."""
    parents: dict[str, set[str]] = {}
    for line in is_a_path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) == 2:
            parent, child = fields
            parents.setdefault(child, set()).add(parent)
    return parents


def read_words(words_path: Path) -> dict[str, str]:
    """wnid -> comma-separated synonyms."""
    words = {}
    for line in words_path.read_text(encoding="utf-8").splitlines():
        wnid, _, text = line.partition("\t")
        if wnid:
            words[wnid] = text.strip()
    return words


def build_hierarchy(
    class_index: dict[str, list[str]], parents: dict[str, set[str]], words: dict[str, str], simple: list[str]
) -> dict[str, object]:
    """The compact hierarchy document described in the module docstring."""
    classes = [class_index[str(i)][0] for i in range(len(class_index))]
    if len(simple) != len(classes):
        raise ValueError(f"{len(simple)} simple labels for {len(classes)} classes")
    keep: set[str] = set()
    queue = deque(classes)
    while queue:
        wnid = queue.popleft()
        if wnid in keep:
            continue
        keep.add(wnid)
        queue.extend(parents.get(wnid, ()))
    nodes = {}
    for wnid in sorted(keep):
        if wnid not in words:
            raise ValueError(f"{wnid} has no name in words.txt")
        node_parents = sorted(parents.get(wnid, ()))
        if not node_parents and wnid != ROOT_WNID:
            raise ValueError(f"{wnid} ({words[wnid]}) does not reach {ROOT_WNID}")
        nodes[wnid] = {"name": words[wnid], "parents": node_parents}
    return {"format": 1, "root": ROOT_WNID, "classes": classes, "simple_labels": simple, "nodes": nodes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default=None, help="offline mirror (default: $TLCOURSE_MIRROR)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: tlcourse/resources)"
    )
    args = parser.parse_args(argv)

    from tlcourse.assets import resolve_file
    from tlcourse.errors import TLCourseError

    try:
        paths = {
            name: resolve_file(name, mirror=args.mirror).path
            for name in (
                "imagenet_class_index.json",
                "wordnet.is_a.txt",
                "words.txt",
                "imagenet-simple-labels.json",
            )
        }
    except TLCourseError as error:
        print(f"build_imagenet_resources: {error}", file=sys.stderr)
        return 2
    index_bytes = paths["imagenet_class_index.json"].read_bytes()
    hierarchy = build_hierarchy(
        json.loads(index_bytes),
        read_parents(paths["wordnet.is_a.txt"]),
        read_words(paths["words.txt"]),
        json.loads(paths["imagenet-simple-labels.json"].read_text(encoding="utf-8")),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / CLASS_INDEX_FILE).write_bytes(index_bytes)
    text = json.dumps(hierarchy, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    (args.out / HIERARCHY_FILE).write_text(text, encoding="utf-8")
    nodes = hierarchy["nodes"]
    assert isinstance(nodes, dict)
    print(
        f"wrote {args.out / CLASS_INDEX_FILE} ({len(index_bytes):,} bytes) and {args.out / HIERARCHY_FILE} "
        f"({len(text.encode()):,} bytes, {len(nodes)} synsets)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
