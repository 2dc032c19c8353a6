"""Headless tests of the upload-and-predict widget and the unfreeze explorer (tlcourse.widgets).

No kernel is needed: widgets are created, their values set and their buttons clicked directly, and the
result HTML is inspected. Both ``FileUpload.value`` formats are covered: ipywidgets 8 values go through the
installed ``FileUpload`` trait; ipywidgets 7.7.1 values (Colab) go through ``predict(value=...)`` and through
an injected widget whose ``value`` trait is a dict, like the real 7.7.1 ``FileUpload``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcourse import diagnose, imageio, predict, widgets
from tlcourse.errors import TLCourseError
from tlcourse.widgets import display, uploads

ipywidgets = pytest.importorskip("ipywidgets")
traitlets = pytest.importorskip("traitlets")

SIZE = 32
CLASSES = ["red", "green", "blue"]
RED, GREEN, BLUE = (210, 30, 20), (25, 190, 40), (30, 40, 220)


# --------------------------------------------------------------------------------------------- helpers


def image_bytes(colour: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A picture that is mostly ``colour`` with a stripe of another colour (so resizing matters)."""
    pixels = np.empty((size[1], size[0], 3), np.uint8)
    pixels[:] = colour
    pixels[:, : size[0] // 5] = (240, 240, 240)
    pixels[::7, :, :] //= 2
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def v8_value(files: list[tuple[str, bytes]]) -> tuple[dict, ...]:
    """``FileUpload.value`` as ipywidgets 8 sets it."""
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    return tuple(
        {
            "name": name,
            "type": "image/png",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": when,
        }
        for name, data in files
    )


def v7_value(files: list[tuple[str, bytes]]) -> dict[str, dict]:
    """``FileUpload.value`` as ipywidgets 7.7.1 (Colab) sets it."""
    return {
        name: {
            "metadata": {"name": name, "type": "image/png", "size": len(data), "lastModified": 1700000000000},
            "content": data,
        }
        for name, data in files
    }


class V7LikeUpload(ipywidgets.DOMWidget):
    """Stands in for ipywidgets 7.7.1's FileUpload: ``value`` is a dict ``{name: {metadata, content}}``."""

    value = traitlets.Dict()
    description = traitlets.Unicode("Upload")


@pytest.fixture(scope="module")
def model():
    """Input(32, 32, 3) -> Rescaling -> GlobalAveragePooling -> Dense(3): logits = 8 x mean colour."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(3)
    outputs = dense(x)
    net = keras.Model(inputs, outputs)
    dense.set_weights([np.eye(3, dtype="float32") * 8.0, np.zeros(3, "float32")])
    return net


def reference_probabilities(model, data: bytes, folder: Path, name: str = "ref.png") -> np.ndarray:
    """What training's preprocessing gives: load_image at the model size, model.predict, softmax."""
    path = folder / name
    path.write_bytes(data)
    pixels = imageio.load_image(path, (SIZE, SIZE)).astype("float32")
    logits = model.predict(pixels[None], verbose=0)[0]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


# --------------------------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x.jpg", "x.jpg"),
        ("..\\..\\evil.png", "evil.png"),
        ("/etc/passwd", "passwd"),
        ("C:\\Users\\me\\Pictures\\cat.jpg", "cat.jpg"),
        ("a/b/c.jpg", "c.jpg"),
        ("\x00bad.jpg", "bad.jpg"),
        ("line\nbreak.png", "linebreak.png"),
        ("invisible\u202egpj.exe", "invisiblegpj.exe"),
        (".hidden.png", "hidden.png"),
        ("photo.jpg. . ", "photo.jpg"),
        ("what?.jpg", "what_.jpg"),
        ("CON.jpg", "_CON.jpg"),
        ("Blüten 日本.JPG", "Blüten 日本.JPG"),
    ],
)
def test_sanitize_filename_keeps_only_a_plain_safe_name(name: str, expected: str) -> None:
    assert widgets.sanitize_filename(name) == expected


@pytest.mark.parametrize("name", ["", ".", "..", "../..", "/", "\\", " . ", "\x00\x01"])
def test_sanitize_filename_is_never_empty_nor_a_dot_name(name: str) -> None:
    result = widgets.sanitize_filename(name)
    assert result and not result.startswith(".")
    assert "/" not in result and "\\" not in result


def test_sanitize_filename_shortens_long_names_but_keeps_the_extension() -> None:
    for name in ["x" * 400 + ".jpeg", "日" * 300 + ".png"]:
        result = widgets.sanitize_filename(name)
        assert result.endswith(name[-5:]) or result.endswith(name[-4:])
        assert len(result) <= widgets.MAX_NAME_CHARS
        assert len(result.encode("utf-8")) <= widgets.MAX_NAME_BYTES
        assert len(result) > 50  # shortened, not thrown away


# --------------------------------------------------------------------------------------------- values


def test_read_uploads_gives_the_same_files_for_ipywidgets_7_and_8_values() -> None:
    files = [("../../x.jpg", image_bytes(RED, "JPEG")), ("b.png", image_bytes(BLUE))]
    from_v8 = widgets.read_uploads(v8_value(files))
    from_v7 = widgets.read_uploads(v7_value(files))
    assert from_v8 == from_v7
    assert [u.name for u in from_v8] == ["x.jpg", "b.png"]
    assert [u.original_name for u in from_v8] == ["../../x.jpg", "b.png"]
    assert all(isinstance(u.content, bytes) for u in from_v8)
    assert [u.content for u in from_v8] == [data for _, data in files]
    assert [u.size for u in from_v8] == [len(data) for _, data in files]


@pytest.mark.parametrize("value", [None, (), [], {}])
def test_read_uploads_of_an_empty_value_is_an_empty_list(value) -> None:
    assert widgets.read_uploads(value) == []


@pytest.mark.parametrize("value", ["photo.jpg", 42, ("not a dict",)])
def test_read_uploads_refuses_values_that_are_not_upload_values(value) -> None:
    with pytest.raises(TLCourseError, match="FileUpload value"):
        widgets.read_uploads(value)


def test_installed_file_upload_accepts_the_v8_value_and_read_uploads_reads_it_back() -> None:
    upload = ipywidgets.FileUpload()
    data = image_bytes(GREEN)
    upload.value = v8_value([("g.png", data)])
    assert [(u.name, u.content) for u in widgets.read_uploads(upload.value)] == [("g.png", data)]


# --------------------------------------------------------------------------------------------- saving


def test_save_uploads_never_writes_outside_the_target_folder(tmp_path: Path) -> None:
    target = tmp_path / "inbox" / "target"
    outside = tmp_path / "outside.jpg"
    names = ["../../x.jpg", "..\\..\\evil.png", str(outside), "../target/../../y.png", "/etc/passwd", ".."]
    data = image_bytes(RED)
    paths = widgets.save_uploads(widgets.read_uploads(v8_value([(n, data) for n in names])), target)
    resolved = target.resolve()
    assert all(path.resolve().parent == resolved for path in paths)
    assert {p.resolve() for p in files_under(tmp_path)} == {p.resolve() for p in paths}
    assert not outside.exists()
    assert paths[0].name == "x.jpg"
    assert sorted(p.name for p in paths) == sorted({p.name for p in paths})  # all distinct


def test_save_uploads_gives_unique_names_and_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"keep me")
    uploads = widgets.read_uploads(v7_value([("a.jpg", b"one")])) + widgets.read_uploads(
        v8_value([("dir/a.jpg", b"two"), ("A.JPG", b"three")])
    )
    paths = widgets.save_uploads(uploads, tmp_path)
    assert (tmp_path / "a.jpg").read_bytes() == b"keep me"
    assert [p.read_bytes() for p in paths] == [b"one", b"two", b"three"]
    assert len({p.name.lower() for p in paths} | {"a.jpg"}) == 4


# --------------------------------------------------------------------------------------------- decoding


def test_decode_upload_reads_an_iphone_heic_photo_and_the_picker_offers_heic(tmp_path: Path) -> None:
    from badimages import write_heic

    data = write_heic(tmp_path / "IMG_0003.HEIC", (64, 48)).read_bytes()
    upload = widgets.read_uploads(v8_value([("IMG_0003.HEIC", data)]))[0]
    image = widgets.decode_upload(upload)
    assert image.mode == "RGB" and image.size == (64, 48)
    assert ".heic" in uploads.ACCEPT.split(",") and "image/*" in uploads.ACCEPT.split(",")


def test_decode_upload_returns_an_rgb_image_for_grayscale_png() -> None:
    buffer = io.BytesIO()
    Image.new("L", (20, 10), 128).save(buffer, "PNG")
    upload = widgets.read_uploads(v8_value([("gray.png", buffer.getvalue())]))[0]
    image = widgets.decode_upload(upload)
    assert image.mode == "RGB" and image.size == (20, 10)


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("photo.jpg", b"<html><body>Not a photo</body></html>", "not an image"),
        ("notes.jpg", b"just some text, honestly", "not an image"),
        ("empty.jpg", b"", "empty"),
        ("cut.jpg", image_bytes(RED, "JPEG")[:300], "truncated"),
    ],
)
def test_decode_upload_rejects_unusable_files_with_a_reason(name: str, data: bytes, words: str) -> None:
    upload = widgets.read_uploads(v8_value([(name, data)]))[0]
    with pytest.raises(widgets.UploadRejected, match=words) as caught:
        widgets.decode_upload(upload)
    assert name in str(caught.value)


def test_oversize_upload_is_rejected_before_any_decoding(monkeypatch: pytest.MonkeyPatch, model) -> None:
    calls: list[str] = []
    for function in ("load_image", "open_rgb"):
        original = getattr(imageio, function)

        def spy(*args, _original=original, _name=function, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(imageio, function, spy)
    big = image_bytes(RED, size=(300, 300))
    upload = widgets.read_uploads(v8_value([("big.png", big)]))[0]
    with pytest.raises(widgets.UploadRejected, match="too big"):
        widgets.decode_upload(upload, max_bytes=len(big) - 1)
    assert calls == []
    predictor = widgets.upload_and_predict(model, CLASSES, max_bytes=len(big) - 1, auto=False)
    results = predictor.predict(v8_value([("big.png", big), ("small.png", image_bytes(GREEN, size=(8, 8)))]))
    assert "too big" in results[0]["error"]
    assert results[1]["top"][0][0] == "green"
    assert calls.count("load_image") == 1  # only the small file was decoded


def test_images_with_too_many_pixels_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "MAX_DECODE_PIXELS", 50 * 50)  # where decode_upload reads it
    upload = widgets.read_uploads(v8_value([("wide.png", image_bytes(BLUE, size=(100, 60)))]))[0]
    with pytest.raises(widgets.UploadRejected, match="too large"):
        widgets.decode_upload(upload)


# --------------------------------------------------------------------------------------------- predicting


@pytest.mark.parametrize(("fmt", "colour", "label"), [("PNG", RED, "red"), ("JPEG", BLUE, "blue")])
def test_v8_upload_predicts_as_model_predict_on_the_training_preprocessing(
    fmt: str, colour, label: str, model, tmp_path: Path
) -> None:
    data = image_bytes(colour, fmt)
    predictor = widgets.upload_and_predict(model, CLASSES, top=2)
    predictor.upload.value = v8_value([(f"photo.{fmt.lower()}", data)])  # auto=True: the observer predicts
    [result] = predictor.last_results
    expected = reference_probabilities(model, data, tmp_path, f"ref.{fmt.lower()}")
    assert result["top"][0][0] == CLASSES[int(np.argmax(expected))] == label
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert len(result["top"]) == 2
    assert f'data-top-class="{label}"' in predictor.result.value


def test_v7_value_is_classified_through_predict_and_through_the_observer(model, tmp_path: Path) -> None:
    files = [("../../x.jpg", image_bytes(GREEN, "JPEG")), ("b.png", image_bytes(BLUE))]
    expected = [
        CLASSES[int(np.argmax(reference_probabilities(model, d, tmp_path, f"r{i}")))]
        for i, (_, d) in enumerate(files)
    ]

    direct = widgets.upload_and_predict(model, CLASSES, auto=False).predict(v7_value(files))
    assert [r["top"][0][0] for r in direct] == expected == ["green", "blue"]

    fake = V7LikeUpload()
    predictor = widgets.UploadPredictor(model, CLASSES, upload=fake)
    fake.value = v7_value(files)  # fires the same observer the real 7.7.1 widget would
    assert [r["top"][0][0] for r in predictor.last_results] == expected
    assert [r["name"] for r in predictor.last_results] == ["x.jpg", "b.png"]
    page = predictor.result.value
    assert 'data-name="x.jpg"' in page and "<code>x.jpg</code>" in page
    assert "../" not in page.replace('title="../../x.jpg"', "")  # the original name only as a tooltip


def test_tooltips_use_description_tooltip_where_there_is_no_tooltip_trait() -> None:
    class Version7Button(traitlets.HasTraits):  # ipywidgets 7 description widgets have only this one
        description_tooltip = traitlets.Unicode(None, allow_none=True)

    button = Version7Button()
    display._set_tooltip(button, "Classify the photos")
    assert button.description_tooltip == "Classify the photos"


def test_widget_results_equal_pipeline_predict_images_on_the_same_files(model, tmp_path: Path) -> None:
    files = [("a.jpg", image_bytes(RED, "JPEG", (90, 70))), ("b.png", image_bytes(GREEN, "PNG", (20, 33)))]
    paths = []
    for name, data in files:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    from_files = predict.predict_images(model, paths, CLASSES, top=3)
    from_widget = widgets.upload_and_predict(model, CLASSES, auto=False).predict(v8_value(files))
    for a, b in zip(from_files, from_widget, strict=True):
        assert [c for c, _ in a["top"]] == [c for c, _ in b["top"]]
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-6)


def test_bad_files_are_rejected_with_a_message_and_the_others_still_classified(model) -> None:
    files = [
        ("photo.jpg", b"<!DOCTYPE html><html><body>a web page</body></html>"),
        ("empty.jpg", b""),
        ("red.png", image_bytes(RED)),
        ("cut.jpg", image_bytes(BLUE, "JPEG")[:250]),
        ("green.jpg", image_bytes(GREEN, "JPEG")),
    ]
    predictor = widgets.upload_and_predict(model, CLASSES)
    predictor.upload.value = v8_value(files)
    results = predictor.last_results
    assert [r["name"] for r in results] == [name for name, _ in files]
    assert "not an image" in results[0]["error"]
    assert "empty" in results[1]["error"]
    assert "truncated" in results[3]["error"]
    assert results[2]["top"][0][0] == "red" and results[4]["top"][0][0] == "green"
    page = predictor.result.value
    assert page.count('class="tlcourse-rejected"') == 3
    assert page.count('class="tlcourse-prediction"') == 2
    assert "not an image" in page and "empty" in page


def test_button_click_runs_predict_on_the_current_upload_value(model) -> None:
    predictor = widgets.upload_and_predict(model, CLASSES, auto=False)
    predictor.upload.value = v8_value([("b.png", image_bytes(BLUE))])
    assert predictor.last_results == []  # auto=False: nothing happens on upload
    predictor.button.click()
    assert [r["top"][0][0] for r in predictor.last_results] == ["blue"]
    assert 'data-top-class="blue"' in predictor.result.value
    assert not predictor.button.disabled


def test_names_and_class_names_are_html_escaped(model) -> None:
    classes = ["<b>red</b>", "green & co", 'blue"']
    name = "Tom & Jerry's <script>alert(1)</script>.png"
    predictor = widgets.upload_and_predict(model, classes, auto=False)
    results = predictor.predict(v8_value([(name, image_bytes(RED)), ("<img src=x onerror=alert(1)>", b"x")]))
    page = predictor.result.value
    assert "<script" not in page and "<b>" not in page and "<img src=x" not in page
    assert "&amp;" in page and "&lt;b&gt;red&lt;/b&gt;" in page
    assert html.escape(results[0]["name"]) in page
    assert 'data-top-class="&lt;b&gt;red&lt;/b&gt;"' in page
    assert "blue&quot;" in page


def test_result_html_has_a_small_png_thumbnail_and_stable_hooks(model) -> None:
    predictor = widgets.upload_and_predict(model, CLASSES, top=3)
    predictor.upload.value = v8_value([("g.jpg", image_bytes(GREEN, "JPEG", (400, 300)))])
    page = predictor.result.value
    match = re.search(r'<img class="tlcourse-thumbnail" src="data:image/png;base64,([^"]+)"', page)
    assert match is not None
    thumb = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    assert thumb.format == "PNG" and max(thumb.size) == widgets.THUMBNAIL_SIZE
    assert page.count('class="tlcourse-class"') == 3
    assert 'data-status="done"' in page
    shown = [float(p) for p in re.findall(r'data-probability="([0-9.]+)"', page)]
    np.testing.assert_allclose(shown, [p for _, p in predictor.last_results[0]["top"]], atol=1e-6)
    for widget, css in [
        (predictor.upload, "tlcourse-upload"),
        (predictor.button, "tlcourse-predict-button"),
        (predictor.result, "tlcourse-result"),
        (predictor.widget, "tlcourse-upload-predictor"),
    ]:
        assert css in widget._dom_classes
    assert predictor.upload.tooltip and predictor.button.tooltip and predictor.button.description


def test_empty_upload_value_shows_a_prompt_and_no_results(model) -> None:
    predictor = widgets.upload_and_predict(model, CLASSES, auto=False)
    assert predictor.predict(()) == [] and predictor.predict({}) == [] and predictor.predict() == []
    assert 'data-status="empty"' in predictor.result.value


def test_a_failing_model_shows_an_error_in_the_result_instead_of_raising_in_the_callback(model) -> None:
    predictor = widgets.upload_and_predict(model, ["only", "two"])  # wrong number of class names
    predictor.upload.value = v8_value([("r.png", image_bytes(RED))])
    assert 'data-status="error"' in predictor.result.value
    assert "3 classes" in predictor.result.value
    with pytest.raises(TLCourseError, match="class names"):
        predictor.predict()


def _error_line(note: str) -> str:
    assert 'data-status="error"' in note, note
    text = html.unescape(re.sub(r"<[^>]+>", "", note))
    assert "\n" not in text and "Traceback" not in text
    return text


def test_folder_uploader_saves_into_the_class_folder_and_says_so(tmp_path: Path) -> None:
    uploader = widgets.folder_uploader(tmp_path / "mine")
    uploader.upload.value = v8_value([("../a.png", image_bytes(RED)), ("b.png", image_bytes(BLUE))])
    uploader.label.value = " ripe "
    uploader.button.click()
    assert sorted(p.name for p in (tmp_path / "mine" / "ripe").iterdir()) == ["a.png", "b.png"]
    assert (
        uploader.last_saved
        and 'data-status="saved"' in uploader.note.value
        and "saved 2 file(s)" in (uploader.note.value)
    )


@pytest.mark.parametrize("problem", ["no class", "no photos", "too big", "folder is a file"])
def test_folder_uploader_shows_each_error_as_one_line_instead_of_swallowing_it(
    tmp_path: Path, problem
) -> None:
    folder = tmp_path / "mine"
    uploader = widgets.FolderUploader(folder, max_bytes=100 if problem == "too big" else 10**7)
    if problem != "no photos":
        uploader.upload.value = v8_value([("a.png", image_bytes(RED))])
    uploader.label.value = "" if problem == "no class" else "ripe"
    if problem == "folder is a file":
        folder.write_text("not a folder")
    uploader.button.click()  # a callback: it must not raise, and must not stay silent
    line = _error_line(uploader.note.value)
    expected = {
        "no class": "type the class",
        "no photos": "no photos chosen",
        "too big": "too big",
        "folder is a file": "Error",
    }[problem]
    assert expected in line
    assert not (folder / "ripe").is_dir() or not list((folder / "ripe").iterdir())
    assert uploader.last_saved == []


def test_predictor_displays_as_its_widget(model) -> None:
    predictor = widgets.upload_and_predict(model, CLASSES)
    bundle = predictor._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == predictor.widget.model_id
    assert bundle["text/plain"] == repr(predictor) and "UploadPredictor" in repr(predictor)


IPYWIDGETS7 = os.environ.get("TLCOURSE_IPYWIDGETS7")


def test_real_ipywidgets_7_file_upload_triggers_prediction() -> None:
    if not IPYWIDGETS7:
        message = (
            "needs ipywidgets 7.7.1 (Colab's version) in a side folder: run tools/install_test_extras.sh "
            "or set TLCOURSE_IPYWIDGETS7"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    script = """
import io, keras, numpy as np, ipywidgets
from PIL import Image
from tlcourse import widgets
assert ipywidgets.__version__.startswith("7"), ipywidgets.__version__
inputs = keras.Input((8, 8, 3))
net = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
net.layers[-1].set_weights([np.eye(3, dtype="float32"), np.zeros(3, "float32")])
buffer = io.BytesIO(); Image.new("RGB", (20, 20), (10, 10, 200)).save(buffer, "PNG")
p = widgets.upload_and_predict(net, ["r", "g", "b"])
p.upload.metadata = [{"name": "../../b.png", "type": "image/png", "size": 1, "lastModified": 0}]
p.upload.data = [buffer.getvalue()]
p.upload._counter += 1
assert [(r["name"], r["top"][0][0]) for r in p.last_results] == [("b.png", "b")], p.last_results
print("OK")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([IPYWIDGETS7, str(Path(widgets.__file__).parents[2])]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-2000:]


# --------------------------------------------------------------------------------------------- unfreezing


@pytest.fixture(scope="module")
def backbone():
    """A real MobileNetV2 (alpha 0.35, 96 px) with random weights: same layer structure as the course's."""
    from tlcourse import models

    return models.build_backbone(
        "mobilenet_v2", alpha=0.35, image_size=96, weights="random", seed=1, verbose=False
    )


def _flags(net) -> list[bool]:
    return [net.trainable] + [layer.trainable for layer in net.layers]


def test_unfreeze_summary_agrees_with_unfreeze_from_and_changes_nothing(backbone) -> None:
    import keras

    from tlcourse import models
    from tlcourse.backend import count_params

    layers = backbone.layers
    for where in [0, 1, "block_13", "block_16_project", len(layers) - 5, len(layers)]:
        backbone.trainable = False  # the summary must not depend on the current state
        before = _flags(backbone)
        summary = diagnose.unfreeze_summary(backbone, where)
        assert _flags(backbone) == before
        index = summary["fine_tune_from"]
        models.unfreeze_from(backbone, index)
        trainable = count_params(backbone)
        assert summary["trainable_params"] == trainable
        assert summary["frozen_params"] == count_params(backbone, trainable=False)
        assert summary["total_params"] == backbone.count_params()
        unfrozen = [
            layer for layer in layers if layer.trainable and not isinstance(layer, keras.layers.InputLayer)
        ]
        assert summary["layers_unfrozen"] == len(unfrozen)
        assert summary["first_unfrozen"] == (unfrozen[0].name if unfrozen else None)
        kept = [layer for layer in layers[index:] if isinstance(layer, keras.layers.BatchNormalization)]
        assert summary["batchnorm_kept_frozen"] == len(kept) and not any(layer.trainable for layer in kept)
        assert summary["trainable_share"] == pytest.approx(trainable / backbone.count_params())
        # the summary taken now, with the backbone unfrozen, is the same
        assert diagnose.unfreeze_summary(backbone, index) == summary
    assert diagnose.unfreeze_summary(backbone, "block_13")["first_unfrozen"].startswith("block_13")
    assert diagnose.unfreeze_summary(backbone, len(layers))["trainable_params"] == 0


def test_unfreeze_summary_refuses_unknown_layers(backbone) -> None:
    with pytest.raises(TLCourseError):
        diagnose.unfreeze_summary(backbone, "no_such_block")
    with pytest.raises(TLCourseError):
        diagnose.unfreeze_summary(backbone, len(backbone.layers) + 1)


def test_unfreeze_explorer_report_follows_the_slider(backbone) -> None:
    from tlcourse import models

    explorer = widgets.unfreeze_explorer(backbone, start="block_13")
    assert explorer.slider.value == models.layer_index(backbone, "block_13")
    assert explorer.slider.min == 0 and explorer.slider.max == len(backbone.layers)
    first_report = explorer.report.value
    assert f'data-fine-tune-from="{explorer.slider.value}"' in first_report
    explorer.slider.value = 10
    assert explorer.report.value != first_report
    assert 'data-fine-tune-from="10"' in explorer.report.value
    summary = explorer.summary()
    assert summary == diagnose.unfreeze_summary(backbone, 10)
    assert f'data-trainable-params="{summary["trainable_params"]}"' in explorer.report.value
    assert "tlcourse-unfreeze-slider" in explorer.slider._dom_classes
    assert explorer._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]


def test_unfreeze_explorer_starts_at_the_registered_default_for_mobilenet(backbone) -> None:
    from tlcourse import models

    explorer = widgets.unfreeze_explorer(backbone)
    expected = models.layer_index(backbone, models.get_spec("mobilenet_v2").default_unfreeze_from)
    assert explorer.slider.value == expected


# --------------------------------------------------------------------------------------------- accessibility


def test_widget_colours_are_jupyterlab_theme_variables_never_fixed_colours() -> None:
    """A fixed colour cannot follow JupyterLab's dark theme (#b00020 on #111 is 2.6:1): every colour a widget
    uses is a theme variable, with a fallback for front ends that have none."""
    from widget_samples import widget_html

    for name, markup in widget_html().items():
        styles = re.findall(r'style="([^"]*)"', markup)
        assert styles, name
        for style in styles:
            outside_variables = re.sub(r"var\(--jp-[\w-]+(?:,[^()]*)?\)", "", style)
            fixed = re.findall(r"#[0-9a-fA-F]{3,8}\b|rgba?\(|hsla?\(", outside_variables)
            assert not fixed, f"{name}: fixed colour in style {style!r}"


def test_widget_status_and_results_are_announced_to_screen_readers() -> None:
    from widget_samples import widget_html

    for name in ("predictions", "empty"):
        results = re.search(r'<div class="tlcourse-results"[^>]*>', widget_html()[name]).group(0)
        assert 'role="status"' in results and 'aria-live="polite"' in results, name


# --------------------------------------------------------------------------------------------- Colab


@pytest.fixture
def on_colab(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A stand-in for Colab's ``google.colab.files``: ``upload()`` returns the files put in the returned dict."""
    import types

    picked: dict[str, bytes] = {}
    files = types.ModuleType("google.colab.files")
    files.upload = lambda: dict(picked)
    colab = types.ModuleType("google.colab")
    colab.files = files
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.files", files)
    return picked


def _colab_notes(owner) -> list[str]:
    return [
        child.value for child in owner.widget.children if "tlcourse-colab-note" in getattr(child, "value", "")
    ]


def test_on_colab_the_widgets_say_large_photos_need_colabs_picker_which_then_classifies_them(
    model, on_colab: dict[str, bytes], tmp_path: Path
) -> None:
    """Colab's ipywidgets 7.7.1 FileUpload loses files of about 1 MB or more without a word."""
    on_colab["IMG_0001.jpg"] = image_bytes(GREEN, "JPEG", size=(900, 700))
    predictor = widgets.upload_and_predict(model, CLASSES, auto=False)
    (note,) = _colab_notes(predictor)
    assert "1 MB" in note and "predictor.predict(widgets.colab_upload())" in note
    results = predictor.predict(widgets.colab_upload())
    assert [r["name"] for r in results] == ["IMG_0001.jpg"] and results[0]["top"][0][0] == "green"
    uploader = widgets.folder_uploader(tmp_path)
    assert "colab_upload()" in _colab_notes(uploader)[0]
    (saved,) = uploader.save(widgets.colab_upload(), label="green")
    assert saved == tmp_path / "green" / "IMG_0001.jpg"


def test_off_colab_there_is_no_colab_note_and_colab_upload_explains_itself(model) -> None:
    assert not _colab_notes(widgets.upload_and_predict(model, CLASSES, auto=False))
    with pytest.raises(TLCourseError, match="only on Colab"):
        widgets.colab_upload()


def test_threshold_explorer_report_follows_the_slider_and_a_headless_run_shows_its_table() -> None:
    truth = [0, 0, 1, 1, 1, 0]
    scores = [0.1, 0.6, 0.55, 0.8, 0.3, 0.2]
    explorer = widgets.threshold_explorer(truth, scores, start=0.5)
    assert 'data-threshold="0.50"' in explorer.report.value and 'aria-live="polite"' in explorer.report.value
    assert explorer.row()["recall"] == pytest.approx(2 / 3) and explorer.row()["precision"] == pytest.approx(
        2 / 3
    )
    explorer.slider.value = 0.25
    assert explorer.row()["recall"] == 1.0 and 'data-threshold="0.25"' in explorer.report.value
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"]
    table = bundle["text/plain"].splitlines()
    assert table[0].split()[:3] == ["threshold", "precision", "recall"]
    assert next(line for line in table if line.endswith("<-")).split()[0] == "0.5"
