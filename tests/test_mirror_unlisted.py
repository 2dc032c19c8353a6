"""A mirror file its checksum list does not name is refused, not used unchecked (tlcourse.assets)."""

from __future__ import annotations

import json

import pytest

from tlcourse import assets
from tlcourse.errors import TLCourseError


@pytest.fixture()
def mirror(tmp_path, monkeypatch):
    root = tmp_path / "mirror"
    (root / "imagenet").mkdir(parents=True)
    listed = root / "imagenet" / "imagenet_class_index.json"
    listed.write_text(json.dumps({"0": ["n01440764", "tench"]}))
    (root / assets.SUMS_FILE).write_text(
        f"{assets.file_sha256(listed)}  ./imagenet/imagenet_class_index.json\n"
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return root


def test_a_file_missing_from_the_checksum_list_is_refused_in_one_line(mirror):
    unlisted = mirror / "samples" / "grace_hopper.jpg"
    unlisted.parent.mkdir()
    unlisted.write_bytes(b"\xff\xd8 not what anyone published")
    with pytest.raises(TLCourseError, match="not in its SHA256SUMS") as caught:
        assets.resolve_file(unlisted.name, mirror=mirror, download=False)
    assert "\n" not in str(caught.value) and "tlcourse assets prepare" in str(caught.value)


def test_a_listed_file_and_a_mirror_without_a_list_still_resolve(mirror):
    listed = mirror / "imagenet" / "imagenet_class_index.json"
    assert assets.resolve_file(listed.name, mirror=mirror, download=False).path == listed
    (mirror / assets.SUMS_FILE).unlink()
    extra = mirror / "samples" / "photo.jpg"
    extra.parent.mkdir()
    extra.write_bytes(b"\xff\xd8")
    assert assets.resolve_file(extra.name, mirror=mirror, download=False).path == extra
