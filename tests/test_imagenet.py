"""tlcourse.imagenet: packaged class index and WordNet hierarchy, decoding, zero-shot mapping (no network)."""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tlcourse import imagenet
from tlcourse.errors import TLCourseError

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "tlcourse" / "resources"
DOG = "n02084071"
DOMESTIC_CAT = "n02121808"


@pytest.fixture(scope="module")
def hierarchy() -> imagenet.Hierarchy:
    return imagenet.Hierarchy.load()


def _raw_children(mirror: Path) -> dict[str, set[str]]:
    children: dict[str, set[str]] = defaultdict(set)
    for line in (mirror / "imagenet" / "wordnet.is_a.txt").read_text().splitlines():
        parent, child = line.split()
        children[parent].add(child)
    return children


def _raw_class_wnids(mirror: Path) -> list[str]:
    raw = json.loads((mirror / "keras" / "models" / "imagenet_class_index.json").read_text())
    return [raw[str(i)][0] for i in range(len(raw))]


def test_class_index_has_1000_distinct_classes_and_matches_keras_labels() -> None:
    index = imagenet.class_index()
    assert len(index) == imagenet.NUM_CLASSES == len({wnid for wnid, _ in index})
    assert [label for _, label in index] == imagenet.labels(simple=False)
    assert len(imagenet.labels()) == 1000 and imagenet.labels() != imagenet.labels(simple=False)


def test_packaged_data_matches_the_mirror_files(mirror: Path) -> None:
    raw = json.loads((mirror / "keras" / "models" / "imagenet_class_index.json").read_text())
    assert imagenet.class_index() == [tuple(raw[str(i)]) for i in range(1000)]
    assert imagenet.labels() == json.loads((mirror / "imagenet" / "imagenet-simple-labels.json").read_text())


def test_build_script_regenerates_the_packaged_resources_exactly(mirror: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "build_imagenet_resources", REPO / "tools" / "build_imagenet_resources.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--mirror", str(mirror), "--out", str(tmp_path)]) == 0
    for name in ("imagenet_class_index.json", "imagenet_hierarchy.json"):
        assert (tmp_path / name).read_bytes() == (RESOURCES / name).read_bytes(), (
            f"{name} is stale: rerun the tool"
        )
    assert sum(p.stat().st_size for p in RESOURCES.glob("*.json")) < 1_000_000


def test_dog_subtree_count_matches_an_independent_count_from_raw_files(
    hierarchy: imagenet.Hierarchy, mirror: Path
) -> None:
    children = _raw_children(mirror)
    below, stack = set(), [DOG]
    while stack:
        node = stack.pop()
        if node not in below:
            below.add(node)
            stack.extend(children[node])
    expected = [wnid for wnid in _raw_class_wnids(mirror) if wnid in below]
    assert hierarchy.leaf_classes_under(DOG) == expected
    assert len(expected) > 0
    assert hierarchy.class_indices_under(DOG) == [hierarchy.class_position(w) for w in expected]


def test_ancestors_match_the_raw_graph_for_sampled_classes(
    hierarchy: imagenet.Hierarchy, mirror: Path
) -> None:
    parents: dict[str, set[str]] = defaultdict(set)
    for parent, kids in _raw_children(mirror).items():
        for kid in kids:
            parents[kid].add(parent)
    rng = np.random.default_rng(0)
    for wnid in rng.choice(hierarchy.classes, size=40, replace=False):
        seen, stack = set(), list(parents[wnid])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(parents[node])
        assert set(hierarchy.ancestors(wnid)) == seen


def test_every_class_reaches_entity(hierarchy: imagenet.Hierarchy) -> None:
    for wnid in hierarchy.classes:
        assert hierarchy.ancestors(wnid)[-1:] and imagenet.ROOT_WNID in hierarchy.ancestors(wnid)
        assert hierarchy.path_to_root(wnid)[-1] == imagenet.ROOT_WNID
        assert hierarchy.is_a(wnid, imagenet.ROOT_WNID)
    assert hierarchy.parents(imagenet.ROOT_WNID) == []
    assert len(hierarchy.leaf_classes_under(imagenet.ROOT_WNID)) == 1000


def test_parents_and_children_agree(hierarchy: imagenet.Hierarchy) -> None:
    document = json.loads((RESOURCES / "imagenet_hierarchy.json").read_text())
    for wnid in document["nodes"]:
        for parent in hierarchy.parents(wnid):
            assert wnid in hierarchy.children(parent)
        for child in hierarchy.children(wnid):
            assert wnid in hierarchy.parents(child)
    assert len(hierarchy) == len(document["nodes"])


def test_is_a_follows_the_subtree(hierarchy: imagenet.Hierarchy) -> None:
    dogs = set(hierarchy.leaf_classes_under(DOG))
    for wnid in hierarchy.classes:
        assert hierarchy.is_a(wnid, DOG) == (wnid in dogs)
    some_dog = sorted(dogs)[0]
    assert not hierarchy.is_a(DOG, some_dog)
    with pytest.raises(TLCourseError, match="find"):
        hierarchy.parents("n99999999")


def test_find_locates_classes_by_their_labels(hierarchy: imagenet.Hierarchy) -> None:
    simple = imagenet.labels()
    for position, (wnid, keras_label) in enumerate(imagenet.class_index()[::97]):
        assert wnid in hierarchy.find(keras_label.replace("_", " ").upper())
        assert wnid in hierarchy.find(simple[position * 97])
    for wnid in hierarchy.find("dog")[:3]:
        assert any("dog" in name.lower() for name in hierarchy.synonyms(wnid))
    assert hierarchy.find(DOG) == [DOG] and hierarchy.name(DOG) == hierarchy.synonyms(DOG)[0]


def test_decode_predictions_puts_a_one_hot_class_first() -> None:
    picks = [0, 207, 999]
    probs = np.eye(1000, dtype=np.float32)[picks]
    decoded = imagenet.decode_predictions(probs, top=3)
    index = imagenet.class_index()
    for row, pick in zip(decoded, picks, strict=True):
        assert row[0] == (index[pick][0], index[pick][1], 1.0)
        assert len(row) == 3 and [score for *_, score in row] == [1.0, 0.0, 0.0]
    assert imagenet.decode_predictions(probs[1], top=1, simple=True)[0][0][1] == imagenet.labels()[207]


def test_decode_predictions_orders_random_scores_like_argsort() -> None:
    probs = np.random.default_rng(1).dirichlet(np.ones(1000), size=4)
    for row, decoded in zip(probs, imagenet.decode_predictions(probs, top=5), strict=True):
        expected = np.argsort(row)[::-1][:5]
        assert [wnid for wnid, _, _ in decoded] == [imagenet.class_index()[i][0] for i in expected]
        assert [score for *_, score in decoded] == pytest.approx(row[expected])


def test_decode_predictions_agrees_with_keras(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    from keras.src.applications import imagenet_utils

    raw = json.loads((mirror / "keras" / "models" / "imagenet_class_index.json").read_text())
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", raw)  # Keras would otherwise download it
    probs = np.random.default_rng(2).dirichlet(np.ones(1000), size=3).astype(np.float32)
    theirs = imagenet_utils.decode_predictions(probs, top=5)
    ours = imagenet.decode_predictions(probs, top=5)
    assert [[(w, n) for w, n, _ in row] for row in ours] == [[(w, n) for w, n, _ in row] for row in theirs]


def test_decode_predictions_rejects_the_wrong_shape() -> None:
    with pytest.raises(TLCourseError, match=r"\[N, 1000\]"):
        imagenet.decode_predictions(np.zeros((2, 5)))


def test_zero_shot_mapping_uses_every_class_under_each_synset(hierarchy: imagenet.Hierarchy) -> None:
    mapping = imagenet.zero_shot_mapping({"dog": [DOG], "cat": ["domestic cat"]})
    assert list(mapping) == ["dog", "cat"]
    assert mapping["dog"] == hierarchy.class_indices_under(DOG)
    assert mapping["cat"] == hierarchy.class_indices_under(DOMESTIC_CAT)
    assert not set(mapping["dog"]) & set(mapping["cat"])


def test_zero_shot_mapping_prefers_the_synset_whose_main_name_matches(hierarchy: imagenet.Hierarchy) -> None:
    named_cat = [w for w in hierarchy.find("cat") if "cat" in [n.lower() for n in hierarchy.synonyms(w)]]
    assert len(named_cat) > 1  # "cat" is also a synonym of "big cat"
    [main] = [w for w in named_cat if hierarchy.name(w) == "cat"]
    assert imagenet.zero_shot_mapping({"cat": ["cat"]})["cat"] == hierarchy.class_indices_under(main)


def test_zero_shot_mapping_explains_ambiguous_unknown_and_overlapping_names(
    hierarchy: imagenet.Hierarchy,
) -> None:
    by_main_name: dict[str, list[str]] = defaultdict(list)
    for wnid in sorted(hierarchy.descendants(imagenet.ROOT_WNID)):
        by_main_name[hierarchy.name(wnid).lower()].append(wnid)
    name, wnids = next((n, w) for n, w in sorted(by_main_name.items()) if len(w) > 1)
    with pytest.raises(TLCourseError, match="several synsets") as caught:
        imagenet.zero_shot_mapping({"x": [name]})
    assert all(w in str(caught.value) for w in wnids)
    with pytest.raises(TLCourseError, match="No ImageNet synset"):
        imagenet.zero_shot_mapping({"x": ["flibbertigibbet"]})
    skipped = imagenet.zero_shot_mapping({"x": ["flibbertigibbet"], "dog": [DOG]}, missing="skip")
    assert skipped == {"x": [], "dog": hierarchy.class_indices_under(DOG)}
    hunting_dog = next(w for w in hierarchy.children(DOG) if hierarchy.name(w) == "hunting dog")
    with pytest.raises(TLCourseError, match="allow_overlap"):
        imagenet.zero_shot_mapping({"dog": [DOG], "hound": [hunting_dog]})
    both = imagenet.zero_shot_mapping({"dog": [DOG], "hound": [hunting_dog]}, allow_overlap=True)
    assert set(both["hound"]) < set(both["dog"])


def test_zero_shot_predict_sums_mapped_probabilities_and_renormalises() -> None:
    mapping = imagenet.zero_shot_mapping({"dog": [DOG], "cat": [DOMESTIC_CAT]})
    probs = np.random.default_rng(3).dirichlet(np.ones(1000), size=5)
    task = imagenet.zero_shot_predict(probs, mapping)
    dog, cat = probs[:, mapping["dog"]].sum(1), probs[:, mapping["cat"]].sum(1)
    assert task.shape == (5, 2)
    np.testing.assert_allclose(task[:, 0], dog / (dog + cat), rtol=1e-5)
    np.testing.assert_allclose(task.sum(axis=1), 1.0, rtol=1e-6)

    one_hot_cat = np.zeros(1000)
    one_hot_cat[mapping["cat"][0]] = 1.0
    np.testing.assert_allclose(imagenet.zero_shot_predict(one_hot_cat, mapping), [0.0, 1.0])
    elsewhere = np.zeros(1000)
    elsewhere[0] = 1.0  # a fish: no mass on either task class
    np.testing.assert_allclose(imagenet.zero_shot_predict(elsewhere, mapping), [0.5, 0.5])


def test_tree_lists_children_with_class_counts(hierarchy: imagenet.Hierarchy) -> None:
    text = hierarchy.tree(DOG, max_depth=1, max_children=100)
    lines = text.splitlines()
    assert lines[0].startswith(f"dog ({DOG}, {len(hierarchy.leaf_classes_under(DOG))} classes)")
    assert len(lines) == 1 + len(hierarchy.children(DOG))
