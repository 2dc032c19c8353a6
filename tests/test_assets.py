"""tlcourse.assets: mirror -> Keras cache -> download, MobileNetV2 stand-ins, offline errors, status/verify/prepare."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tlcourse import assets, assetstatus
from tlcourse.cli import main
from tlcourse.cli import mirror as cli_mirror
from tlcourse.errors import AssetMissingError, TLCourseError

MNV2_035_224 = assets.mobilenet_v2_file_name(0.35, 224)
MNV2_035_160 = assets.mobilenet_v2_file_name(0.35, 160)


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty fake mirror (the default via $TLCOURSE_MIRROR) and an empty fake Keras cache ($KERAS_HOME)."""
    mirror = tmp_path / "mirror"
    (mirror / "keras" / "models").mkdir(parents=True)
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("TLCOURSE_MIRROR", str(mirror))
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("TLCOURSE_HOME", str(tmp_path / "course_home"))  # no per-user mirror yet
    return mirror, home / "models"


@pytest.fixture
def fake_get_file(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace keras.utils.get_file with one that records its arguments and writes a small file."""
    import keras

    calls: list[dict] = []

    def get_file(fname, origin, file_hash=None, cache_subdir="datasets", cache_dir=None, **kwargs):
        calls.append({"fname": fname, "origin": origin, "file_hash": file_hash, "cache_dir": cache_dir})
        target = Path(cache_dir) / cache_subdir / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f"downloaded {fname}".encode())
        return str(target)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return calls


@pytest.fixture
def fake_pooch(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace the course-file download (pooch) with one that records its arguments and writes a small file."""
    calls: list[dict] = []

    def download(name, url, file_hash, folder):
        calls.append({"fname": name, "origin": url, "file_hash": file_hash, "folder": folder})
        if name == "flower_photos.tgz":
            target = Path(folder) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _fake_flowers_archive(target)
            return target
        target = Path(folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f"downloaded {name}".encode())
        return target

    monkeypatch.setattr(assets, "download_course_file", download)
    return calls


def test_keras_cache_dir_follows_keras_home_at_call_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "a"))
    first = assets.keras_cache_dir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "b"))
    assert first == tmp_path / "a" / "models"
    assert assets.keras_cache_dir() == tmp_path / "b" / "models"
    monkeypatch.delenv("KERAS_HOME")
    assert assets.keras_cache_dir() == Path.home() / ".keras" / "models"


def test_mirror_argument_beats_environment_and_bad_mirror_is_reported(
    places: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_mirror, _ = places
    other = tmp_path / "other"
    other.mkdir()
    assert assets.mirror_dir() == env_mirror
    assert assets.mirror_dir(other) == other
    monkeypatch.setenv("TLCOURSE_MIRROR", str(tmp_path / "nope"))
    with pytest.raises(AssetMissingError, match="nope"):
        assets.mirror_dir()
    monkeypatch.delenv("TLCOURSE_MIRROR")
    assert assets.mirror_dir() is None


def test_resolution_order_is_mirror_then_cache_then_download(
    places: tuple[Path, Path], fake_get_file: list[dict]
) -> None:
    mirror, cache = places
    (mirror / "keras" / "models" / MNV2_035_224).write_bytes(b"mirror copy")
    (cache / MNV2_035_224).write_bytes(b"cache copy")

    first = assets.resolve_file(MNV2_035_224)
    assert (first.origin, first.path.read_bytes()) == ("mirror", b"mirror copy")

    (mirror / "keras" / "models" / MNV2_035_224).unlink()
    second = assets.resolve_file(MNV2_035_224)
    assert (second.origin, second.path.read_bytes()) == ("cache", b"cache copy")
    assert fake_get_file == []

    (cache / MNV2_035_224).unlink()
    third = assets.resolve_file(MNV2_035_224)
    assert third.origin == "download"
    assert third.path == cache / MNV2_035_224
    [call] = fake_get_file
    assert call["origin"] == assets.known_assets()[MNV2_035_224].url
    assert call["origin"].startswith("https://storage.googleapis.com/") and call["origin"].endswith(
        MNV2_035_224
    )
    assert Path(call["cache_dir"]) == cache.parent


def test_cached_file_failing_its_keras_checksum_is_downloaded_again(
    places: tuple[Path, Path], fake_get_file: list[dict]
) -> None:
    _, cache = places
    (cache / "imagenet_class_index.json").write_text("{}")  # not the md5 Keras expects
    resolved = assets.resolve_file("imagenet_class_index.json", mirror=None)
    assert resolved.origin == "download"
    assert fake_get_file[0]["file_hash"] == assets.known_assets()["imagenet_class_index.json"].file_hash


def test_mobilenet_v2_uses_another_size_of_the_same_alpha_with_a_notice(places: tuple[Path, Path]) -> None:
    mirror, _ = places
    (mirror / "keras" / "models" / MNV2_035_224).write_bytes(b"224")
    (mirror / "keras" / "models" / assets.mobilenet_v2_file_name(0.5, 160)).write_bytes(b"other alpha")

    resolved = assets.mobilenet_v2_weights(0.35, 160, download=False)
    assert resolved.path.name == MNV2_035_224
    assert resolved.notice is not None and "160px" in resolved.notice and "224px" in resolved.notice
    assert "\n" not in resolved.notice

    exact = assets.mobilenet_v2_weights(0.35, 224, download=False)
    assert exact.path.name == MNV2_035_224 and exact.notice is None


def test_mobilenet_v2_exact_size_in_cache_beats_other_size_in_mirror(places: tuple[Path, Path]) -> None:
    mirror, cache = places
    (mirror / "keras" / "models" / MNV2_035_224).write_bytes(b"224")
    (cache / MNV2_035_160).write_bytes(b"160")
    resolved = assets.mobilenet_v2_weights(0.35, 160, download=False)
    assert (resolved.origin, resolved.path.name, resolved.notice) == ("cache", MNV2_035_160, None)


def test_mobilenet_v2_alpha_one_can_come_from_the_derived_weights(places: tuple[Path, Path]) -> None:
    mirror, _ = places
    (mirror / "weights").mkdir()
    (mirror / "weights" / assets.MOBILENET_V2_DERIVED).write_bytes(b"derived")
    resolved = assets.mobilenet_v2_weights(1.0, 224, download=False)
    assert resolved.path == mirror / "weights" / assets.MOBILENET_V2_DERIVED
    assert resolved.notice and "converted" in resolved.notice
    with pytest.raises(AssetMissingError):
        assets.mobilenet_v2_weights(0.35, 224, download=False)


def test_mobilenet_v2_classifier_weights_are_separate_from_no_top(
    places: tuple[Path, Path], fake_get_file: list[dict]
) -> None:
    mirror, _ = places
    (mirror / "keras" / "models" / MNV2_035_224).write_bytes(b"no top")
    resolved = assets.mobilenet_v2_weights(0.35, 160, include_top=True)
    assert resolved.origin == "download"
    assert fake_get_file[0]["fname"] == assets.mobilenet_v2_file_name(0.35, 160, include_top=True)
    assert not fake_get_file[0]["fname"].endswith("_no_top.h5")


def test_unpublished_alpha_and_unknown_backbone_are_clear_errors(places: tuple[Path, Path]) -> None:
    with pytest.raises(TLCourseError, match="0.35"):
        assets.mobilenet_v2_weights(0.6, 224)
    with pytest.raises(TLCourseError, match="vgg16"):
        assets.backbone_weights("alexnet")


def test_backbone_weights_ask_for_the_keras_file_names(
    places: tuple[Path, Path], fake_get_file: list[dict]
) -> None:
    for backbone in ("VGG16", "resnet50", "InceptionV3", "efficientnet_b0", "MobileNetV3Small"):
        assert assets.backbone_weights(backbone).origin == "download"
    names = [call["fname"] for call in fake_get_file]
    assert names == [
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "efficientnetb0_notop.h5",
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    ]
    assert all(call["file_hash"] and call["origin"].endswith(call["fname"]) for call in fake_get_file)


def test_offline_with_nothing_found_names_file_places_and_both_fixes(
    places: tuple[Path, Path], no_network: None
) -> None:
    mirror, cache = places
    wanted = assets.mobilenet_v2_file_name(0.75, 160)
    with pytest.raises(AssetMissingError) as caught:
        assets.mobilenet_v2_weights(0.75, 160)  # the real download path: keras.utils.get_file -> urllib
    message = str(caught.value)
    assert wanted in message
    assert str(mirror) in message and str(cache) in message
    assert "internet" in message and "TLCOURSE_MIRROR" in message
    assert "Name or service not known" in message  # the network failure, in one line
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not (cache / wanted).exists()


def test_offline_error_reaches_the_command_line_as_one_line(
    places: tuple[Path, Path], no_network: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assets", "prepare", "--mirror", str(places[0].parent / "new")]) == 2
    err = capsys.readouterr().err
    assert "offline" in err and "TLCOURSE_MIRROR" in err and "Traceback" not in err


def test_status_json_shows_where_each_asset_resolves(
    places: tuple[Path, Path], no_network: None, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror, cache = places
    (mirror / "keras" / "models" / MNV2_035_224).write_bytes(b"m")
    (cache / "words.txt").write_text("n00001740\tentity\n")
    assert main(["assets", "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mirror"] == str(mirror) and report["keras_cache"] == str(cache)
    rows = {row["asset"]: row for row in report["assets"]}
    assert set(rows["words.txt"]) == {
        "asset",
        "file",
        "in_mirror",
        "in_cache",
        "resolves_from",
        "path",
        "notice",
    }
    assert rows["words.txt"]["resolves_from"] == "cache"
    assert rows["mobilenet_v2 alpha 0.35 224px"]["resolves_from"] == "mirror"
    stand_in = rows["mobilenet_v2 alpha 0.35 160px"]
    assert stand_in["resolves_from"] == "mirror" and stand_in["in_mirror"] is None and stand_in["notice"]
    assert rows["vgg16"]["resolves_from"] is None and "vgg16" in report["missing"]
    assert "words.txt" not in report["missing"]


def test_status_table_marks_missing_assets_and_names_no_folder_of_the_machine(
    places: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Lesson 00 prints this table: it says where the mirror and cache are without the machine's paths."""
    assert main(["assets", "status"]) == 0
    out = capsys.readouterr().out
    assert "MISSING" in out and str(tmp_path) not in out
    assert "mirror:      $TMPDIR/" in out and out.splitlines()[0].endswith("/mirror")
    assert "Keras cache: $TMPDIR/" in out


def test_dataset_dir_finds_the_mirror_copy(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror, _ = places
    (mirror / "datasets" / "tiny").mkdir(parents=True)
    assert assets.dataset_dir("tiny") == mirror / "datasets" / "tiny"
    assert assets.dataset_dir("absent") is None
    monkeypatch.delenv("TLCOURSE_MIRROR")
    assert assets.dataset_dir("tiny") is None
    assert assets.dataset_dir("tiny", mirror=mirror) == mirror / "datasets" / "tiny"


# ------------------------------------------------------------------------------------------------ verify


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tiny_mirror(root: Path) -> Path:
    files = {"keras/models/a.h5": b"weights", "imagenet/words.txt": b"n00001740\tentity\n"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "SHA256SUMS").write_text("".join(f"{_sha(d)}  ./{rel}\n" for rel, d in files.items()))
    images = {"train/a/1.jpg": b"one", "validation/a/2.jpg": b"two"}
    data_root = root / "datasets" / "tiny"
    for rel, data in images.items():
        (data_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_root / rel).write_bytes(data)
    (data_root / "MANIFEST.sha256").write_text("".join(f"{_sha(d)}  ./{rel}\n" for rel, d in images.items()))
    return root


def test_verify_passes_on_the_shared_mirror(mirror: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "verify", "--mirror", str(mirror), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    listed = sum(1 for line in (mirror / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert report["ok"] and report["problems"] == [] and report["checked"] > listed


def test_verify_names_a_corrupt_file_in_a_copy_of_the_shared_mirror(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    # Everything SHA256SUMS covers (about 18 MB); the 1,000-photo dataset stays behind: verify documents that
    # a mirror without datasets/ is valid.
    shutil.copytree(mirror, copy, ignore=lambda d, names: ["datasets"] if Path(d) == mirror else [])
    assert main(["assets", "verify", "--mirror", str(copy)]) == 0
    capsys.readouterr()
    words = copy / "imagenet" / "words.txt"
    words.chmod(0o644)
    data = bytearray(words.read_bytes())
    data[1000] ^= 0x01
    words.write_bytes(bytes(data))
    assert main(["assets", "verify", "--mirror", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "imagenet/words.txt: corrupt" in out and "FAILED" in out
    assert "imagenet_class_index.json" not in out


def test_verify_reports_missing_and_corrupt_dataset_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _tiny_mirror(tmp_path / "m")
    assert main(["assets", "verify", "--mirror", str(root)]) == 0
    capsys.readouterr()
    (root / "datasets" / "tiny" / "train" / "a" / "1.jpg").write_bytes(b"changed")
    (root / "keras" / "models" / "a.h5").unlink()
    (root / "datasets" / "other").mkdir()
    assert main(["assets", "verify", "--mirror", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = {p["path"]: p["problem"] for p in report["problems"]}
    assert problems["keras/models/a.h5"] == "missing"
    assert problems["datasets/tiny/train/a/1.jpg"].startswith("corrupt")
    assert problems["datasets/other/MANIFEST.sha256"] == "missing"
    assert not report["ok"] and len(problems) == 3


# ------------------------------------------------------------------------------------------------ prepare


def _fake_flowers_archive(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        credits = ["All images are CC-BY."]
        for flower in ("daisy", "roses"):
            for i in range(10):
                add(f"flower_photos/{flower}/{i}.jpg", f"{flower}{i}".encode())
                credits.append(f"{flower}/{i}.jpg CC-BY by someone")
        add("flower_photos/LICENSE.txt", "\n".join(credits).encode())


def test_prepare_builds_a_mirror_that_verifies_and_resolves(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_get_file: list[dict],
    fake_pooch: list[dict],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli_mirror, "online", lambda *a, **k: True)  # prepare checks it first
    target = tmp_path / "new_mirror"
    assert main(["assets", "prepare", "--mirror", str(target)]) == 0
    assert "Mirror ready" in capsys.readouterr().out
    assert (target / "keras" / "models" / MNV2_035_160).is_file()
    assert (target / "imagenet" / "words.txt").is_file()
    flowers = target / "datasets" / "flower_photos_small"
    assert sorted(p.name for p in (flowers / "train").iterdir()) == ["daisy", "roses"]
    assert len(list((flowers / "train" / "daisy").iterdir())) == 8
    assert len(list((flowers / "validation" / "roses").iterdir())) == 2
    assert len((flowers / "LICENSE_ATTRIBUTION.txt").read_text().splitlines()) == 21
    assert (target / "imagenet_classifier" / assets.IMAGENET_TFLITE).is_file()
    assert sorted(p.name for p in (target / "samples").iterdir()) == sorted(assets.SAMPLE_PHOTOS)
    assert cli_mirror.verify_mirror(target).ok
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_home"))
    assert assets.mobilenet_v2_weights(0.35, 160, mirror=target, download=False).origin == "mirror"


def test_prepare_fetches_what_it_can_and_lists_the_classifier_files_it_could_not(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_get_file: list[dict],
    fake_pooch: list[dict],
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer = assets.download_course_file

    def download(name, url, file_hash, folder):
        if name in (assets.IMAGENET_TFLITE, "owl.jpg"):
            raise assets._DownloadFailed("HTTP 404 Not Found")
        return writer(name, url, file_hash, folder)

    monkeypatch.setattr(assets, "download_course_file", download)
    monkeypatch.setattr(cli_mirror, "online", lambda *a, **k: True)  # prepare checks it first
    target = cli_mirror.prepare_mirror(tmp_path / "partial", include_datasets=False)
    out = capsys.readouterr().out
    assert "Could not fetch 2 file(s)" in out
    assert f"imagenet_classifier/{assets.IMAGENET_TFLITE}" in out and "samples/owl.jpg" in out
    assert (target / "samples" / "parrot.jpg").is_file() and not (target / "samples" / "owl.jpg").exists()
    assert (target / "imagenet_classifier" / assets.IMAGENET_TFLITE_LABELS).is_file()


# ------------------------------------------------------------------------------------------ ImageNet classifier


def test_tflite_classifier_and_samples_come_from_the_mirror_else_a_checked_download(
    places: tuple[Path, Path], fake_get_file: list[dict], fake_pooch: list[dict]
) -> None:
    """The course's own files download with pooch into the per-user mirror (Keras' get_file is for its own)."""
    mirror, cache = places
    downloaded = assets.imagenet_tflite()
    user_copy = assets.user_mirror_dir() / "imagenet_classifier" / assets.IMAGENET_TFLITE
    assert downloaded.origin == "download" and downloaded.path == user_copy
    [call] = fake_pooch
    assert call["origin"] == assets.CORAL_TEST_DATA + assets.IMAGENET_TFLITE and len(call["file_hash"]) == 64
    assert not fake_get_file
    assert assets.imagenet_tflite().origin == "mirror", "found in the per-user mirror from now on"
    user_copy.unlink()
    (mirror / "imagenet_classifier").mkdir()
    (mirror / "imagenet_classifier" / assets.IMAGENET_TFLITE).write_bytes(b"model")
    (mirror / "samples").mkdir()
    (mirror / "samples" / "owl.jpg").write_bytes(b"owl")
    assert assets.imagenet_tflite().origin == "mirror"
    assert assets.sample_photo("owl.jpg").path == mirror / "samples" / "owl.jpg"
    with pytest.raises(TLCourseError, match="Unknown sample photo"):
        assets.sample_photo("eagle.jpg")


def test_tflite_classifier_offline_and_missing_is_the_one_line_error_with_both_fixes(
    places: tuple[Path, Path], no_network: None
) -> None:
    with pytest.raises(AssetMissingError) as caught:
        assets.imagenet_tflite()
    message = str(caught.value)
    assert assets.IMAGENET_TFLITE in message and "\n" not in message
    assert "internet" in message and "TLCOURSE_MIRROR" in message and "assets prepare" in message
    assert "cannot reach github.com" in message
    assert not assets.user_mirror_dir().exists(), "a failed download leaves no empty per-user mirror behind"


def test_keras_class_index_is_copied_from_the_mirror_into_the_keras_cache(places: tuple[Path, Path]) -> None:
    mirror, cache = places
    (mirror / "keras" / "models" / assets.CLASS_INDEX_FILE).write_text('{"0": ["n01440764", "tench"]}')
    path = assets.keras_class_index(download=False)
    assert (cache / assets.CLASS_INDEX_FILE).read_text() == '{"0": ["n01440764", "tench"]}'
    assert path.name == assets.CLASS_INDEX_FILE and path.is_file()


def test_status_lists_the_classifier_and_samples_of_the_shared_mirror(mirror: Path, no_network: None) -> None:
    rows = {row["asset"]: row for row in assetstatus.status_report(mirror)["assets"]}
    for name in (assets.IMAGENET_TFLITE, assets.IMAGENET_TFLITE_LABELS, *assets.SAMPLE_PHOTOS):
        assert rows[name]["resolves_from"] == "mirror", name


# ------------------------------------------------------------------------------------------------ real weights


@pytest.mark.mirror
@pytest.mark.parametrize("alpha", [0.35, 0.5, 1.0])
def test_mirror_weights_load_into_mobilenet_v2_at_160px(mirror: Path, alpha: float) -> None:
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    import h5py
    import keras

    resolved = assets.mobilenet_v2_weights(alpha, 160, mirror=mirror, download=False)
    assert resolved.origin == "mirror" and resolved.notice
    model = keras.applications.MobileNetV2(
        input_shape=(160, 160, 3), alpha=alpha, include_top=False, weights=None
    )
    before = [w.copy() for w in model.get_weights()]
    model.load_weights(str(resolved.path))
    after = model.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    key = "layers/conv2d/vars/0" if resolved.path.name.endswith(".weights.h5") else "Conv1/Conv1/kernel:0"
    with h5py.File(resolved.path, "r") as handle:
        np.testing.assert_array_equal(model.get_layer("Conv1").kernel.numpy(), handle[key][()])
    assert model.output_shape == (None, 5, 5, 1280)


# ------------------------------------------------------------------------------------------ before you travel


@pytest.fixture
def mirror_as_internet(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The shared mirror served over HTTP on loopback, with every asset's address pointing at it: the internet
    as `tlcourse assets prepare` sees it (and a small flower_photos.tgz in place of TensorFlow's)."""
    import dataclasses
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    archive = tmp_path / "internet" / "flower_photos.tgz"
    archive.parent.mkdir()
    _fake_flowers_archive(archive)

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            return str(archive) if path.endswith("/flower_photos.tgz") else super().translate_path(path)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    published = assets._known_assets

    def on_loopback() -> dict[str, assets.AssetSpec]:
        return {
            name: dataclasses.replace(spec, url=f"{base}/{spec.mirror_subdir}/{name}")
            for name, spec in published().items()
        }

    monkeypatch.setattr(assets, "_known_assets", on_loopback)
    monkeypatch.setattr(cli_mirror, "_known_assets", on_loopback)
    monkeypatch.setattr(cli_mirror, "FLOWERS_URL", f"{base}/datasets/flower_photos.tgz")
    monkeypatch.setattr(cli_mirror, "online", lambda *a, **k: True)
    yield base
    server.shutdown()
    server.server_close()


def test_one_command_before_travelling_fills_the_per_user_mirror_that_offline_work_finds_unaided(
    mirror_as_internet: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("TLCOURSE_MIRROR")  # no setting at all: the student just runs the command
    monkeypatch.setenv("TLCOURSE_HOME", str(tmp_path / "home"))  # stands for ~/.cache/tlcourse
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    # --keep-going: this stand-in internet lacks two files the real one has (0.35 at 160 px, the 1.0 classifier)
    assert main(["assets", "prepare", "--profile", "cpu", "--keep-going"]) == 0
    assert "Per-user mirror ready" in capsys.readouterr().out

    request.getfixturevalue("no_network")  # on the plane
    user = assets.user_mirror_dir()
    assert assets.mirror_dir() == user
    lessons = assets.mobilenet_v2_weights(0.35, 160, download=False)  # lessons 04-08, cpu profile
    capstone = assets.mobilenet_v2_weights(0.5, 224, download=False)  # tlcourse train, cpu profile
    assert lessons.origin == capstone.origin == "mirror" and lessons.path.is_relative_to(user)
    assert capstone.path.is_relative_to(user)
    assert assets.dataset_dir() == user / "datasets" / assets.DEFAULT_DATASET
    assert assets.imagenet_tflite(download=False).path.is_relative_to(user)
    assert main(["assets", "status"]) == 0
    table = capsys.readouterr().out
    assert "(the per-user mirror)" in table.splitlines()[0] and str(tmp_path) not in table
    row = next(line for line in table.splitlines() if line.startswith("mobilenet_v2 alpha 0.5 224px"))
    assert "mirror" in row and "MISSING" not in row
