"""tlcourse.imageio: every odd-but-usable image loads as upright RGB uint8; unusable files give a clear reason."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from badimages import (
    BLUE,
    GREEN,
    HTML_PAGE,
    RED,
    ROTATED_STORED_SIZE,
    image_bytes,
    picture,
    write_16bit_png,
    write_animated_gif,
    write_bytes,
    write_cmyk_jpeg,
    write_decompression_bomb_png,
    write_exif_rotated_jpeg,
    write_heic,
    write_huge_jpeg,
    write_jpeg,
    write_palette_png_with_transparency,
    write_png,
    write_rgba_png,
    write_truncated,
)
from PIL import Image, JpegImagePlugin

from tlcourse.errors import DataError, TLCourseError
from tlcourse.imageio import IMAGE_EXTENSIONS, ImageDecodeError, inspect_image, load_image, open_rgb


def _close(pixel: np.ndarray, color: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(color)) <= tolerance))


ODD_WRITERS = {
    "cmyk.jpg": write_cmyk_jpeg,
    "grayscale.jpg": lambda path: write_jpeg(path, (64, 48), (128, 128, 128), mode="L"),
    "palette.png": write_palette_png_with_transparency,
    "sixteen.png": write_16bit_png,
    "rgba.png": write_rgba_png,
    "png_named.jpg": lambda path: write_bytes(path, image_bytes(picture((50, 40), GREEN), "PNG")),
    "photo.webp": lambda path: write_bytes(path, image_bytes(picture((50, 40), RED), "WEBP")),
    "photo.bmp": lambda path: write_bytes(path, image_bytes(picture((50, 40), RED), "BMP")),
    "photo.tiff": lambda path: write_bytes(path, image_bytes(picture((50, 40), RED), "TIFF")),
    "animated.gif": write_animated_gif,
    "rotated.jpg": write_exif_rotated_jpeg,
    "tiny.png": lambda path: write_png(path, (1, 1), RED),
    "la.png": lambda path: write_bytes(path, image_bytes(Image.new("LA", (20, 10), (90, 128)), "PNG")),
    "one_bit.png": lambda path: write_bytes(path, image_bytes(Image.new("1", (20, 10), 1), "PNG")),
}


@pytest.mark.parametrize("name", sorted(ODD_WRITERS))
@pytest.mark.parametrize("size", [None, 32, (24, 40)])
def test_every_odd_but_usable_image_loads_as_rgb_uint8_of_the_requested_size(tmp_path, name, size):
    path = ODD_WRITERS[name](tmp_path / name)
    array = load_image(path, size)
    assert array.dtype == np.uint8
    assert array.ndim == 3 and array.shape[2] == 3
    if size == 32:
        assert array.shape == (32, 32, 3)
    elif size == (24, 40):
        assert array.shape == (24, 40, 3)  # (height, width), like Keras image sizes
    else:
        assert min(array.shape[:2]) >= 1
    image = open_rgb(path)
    assert image.mode == "RGB"
    assert inspect_image(path).width >= 1


def test_exif_orientation_6_is_applied_shape_swaps_and_the_corner_moves(tmp_path):
    path = write_exif_rotated_jpeg(tmp_path / "phone.jpg", orientation=6)
    stored_w, stored_h = ROTATED_STORED_SIZE
    with Image.open(path) as raw:
        assert raw.size == (stored_w, stored_h)  # the pixels really are stored sideways
    array = load_image(path)
    assert array.shape == (stored_w, stored_h, 3)  # displayed: tall, not wide
    assert _close(array[5, -5], RED), "stored top-left red square should be displayed top-right"
    assert _close(array[5, 5], BLUE)
    assert _close(array[-5, -5], BLUE)
    info = inspect_image(path)
    assert (info.width, info.height, info.orientation) == (stored_h, stored_w, 6)
    # Resizing keeps the orientation: red stays in the top-right quarter of a square output.
    square = load_image(path, 40)
    assert _close(square[3, -3], RED) and _close(square[3, 3], BLUE)


def test_rgba_is_composited_on_white_instead_of_dropping_alpha(tmp_path):
    array = load_image(write_rgba_png(tmp_path / "rgba.png", (60, 40)))
    transparent_red, half_black, opaque_green = array[20, 5], array[20, 30], array[20, 55]
    assert _close(transparent_red, (255, 255, 255), 2), "fully transparent pixels must become white, not red"
    assert _close(half_black, (127, 127, 127), 3), "50% black over white is mid-grey"
    assert _close(opaque_green, GREEN, 2)


def test_palette_transparency_becomes_white(tmp_path):
    array = load_image(write_palette_png_with_transparency(tmp_path / "pal.png", (60, 40)))
    assert _close(array[20, 5], (255, 255, 255), 0)
    assert _close(array[20, 55], BLUE, 0)


def test_sixteen_bit_values_are_scaled_not_clipped(tmp_path):
    mid = load_image(write_16bit_png(tmp_path / "mid.png", value=128 * 257))
    assert np.all(mid == 128), "mid-grey 16-bit must stay mid-grey (clipping gives 255)"
    ramp = np.linspace(0, 65535, 60).astype(np.uint16)[None, :].repeat(4, axis=0)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    row = load_image(path)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 50


def test_cmyk_jpeg_comes_out_red_in_rgb(tmp_path):
    array = load_image(write_cmyk_jpeg(tmp_path / "cmyk.jpg"))
    red, green, blue = array.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_animated_gif_gives_its_first_frame(tmp_path):
    array = load_image(write_animated_gif(tmp_path / "anim.gif"))
    assert _close(array[10, 10], RED, 10)
    assert inspect_image(tmp_path / "anim.gif").frames == 2


def test_grayscale_is_replicated_into_three_equal_channels(tmp_path):
    array = load_image(write_jpeg(tmp_path / "g.jpg", (64, 48), (90, 90, 90), mode="L"))
    assert np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory) -> Path:
    return write_huge_jpeg(tmp_path_factory.mktemp("huge") / "huge.jpg")


def test_huge_jpeg_is_bounded_by_max_side_and_keeps_its_content(huge_jpeg):
    image = open_rgb(huge_jpeg)  # 9000x7000 stored
    assert max(image.size) == 2048 and abs(image.size[0] / image.size[1] - 9000 / 7000) < 0.01
    array = np.asarray(image)
    assert _close(array[10, 10], RED, 10) and _close(array[-10, 10], GREEN, 10)
    assert max(open_rgb(huge_jpeg, max_side=500).size) == 500
    info = inspect_image(huge_jpeg)
    assert (info.width, info.height) == (9000, 7000)


def test_huge_jpeg_is_decoded_at_reduced_dct_scale(huge_jpeg, monkeypatch):
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    assert load_image(huge_jpeg, 160).shape == (160, 160, 3)
    (requested, decoded_size), *_ = calls
    assert decoded_size == (9000 // 8 + (9000 % 8 > 0), 7000 // 8 + (7000 % 8 > 0))  # 1/8 scale
    assert min(decoded_size) >= 160


def test_huge_jpeg_decodes_with_bounded_memory(huge_jpeg):
    # Peak resident memory in a fresh interpreter: a full 9000x7000 RGB decode alone would add ~190 MB.
    script = textwrap.dedent(
        f"""
        import resource
        from tlcourse.imageio import load_image, open_rgb
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        array = load_image({str(huge_jpeg)!r}, 160)
        image = open_rgb({str(huge_jpeg)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024, array.shape, image.size)
        """
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    grown_mb = int(output.split()[0])
    assert grown_mb < 80, f"decoding grew peak memory by {grown_mb} MB: {output}"


UNUSABLE = {
    "empty.jpg": (lambda path: write_bytes(path, b""), "empty file"),
    "page.jpg": (lambda path: write_bytes(path, HTML_PAGE), "looks like HTML"),
    "note.png": (lambda path: write_bytes(path, b"just some words\n"), "looks like text"),
    "cut.jpg": (lambda path: write_truncated(path, "JPEG"), "truncated"),
    "cut.png": (lambda path: write_truncated(path, "PNG"), "truncated"),
    "noise.jpg": (lambda path: write_bytes(path, bytes(range(1, 200)) * 10), "not an image"),
    "bomb.png": (write_decompression_bomb_png, "decompression bomb"),
    "fake.heic": (
        lambda path: write_bytes(path, b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40),
        "corrupt image",
    ),
    "drawing.svg": (lambda path: write_bytes(path, b'<?xml version="1.0"?><svg xmlns="x"></svg>'), "SVG"),
}


@pytest.mark.parametrize("name", sorted(UNUSABLE))
def test_unusable_files_raise_image_decode_error_with_a_short_reason(tmp_path, name):
    writer, words = UNUSABLE[name]
    path = writer(tmp_path / name)
    for call in (lambda: load_image(path, 32), lambda: open_rgb(path), lambda: inspect_image(path)):
        with pytest.raises(ImageDecodeError) as caught:
            call()
        error = caught.value
        assert isinstance(error, DataError) and isinstance(error, TLCourseError)
        assert words in error.reason
        assert len(error.reason) < 100 and "\n" not in str(error)
        assert name in str(error)
        assert error.__cause__ is None  # no deep library traceback chained on


def test_missing_file_is_a_decode_error_not_a_crash(tmp_path):
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_reading_never_changes_the_file(tmp_path):
    paths = [write_exif_rotated_jpeg(tmp_path / "r.jpg"), write_rgba_png(tmp_path / "a.png")]
    before = {
        path: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) for path in paths
    }
    for path in paths:
        load_image(path, 32)
        open_rgb(path)
        inspect_image(path)
    after = {path: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) for path in paths}
    assert before == after


def test_max_side_none_keeps_full_size_and_small_images_are_not_enlarged(tmp_path):
    path = write_jpeg(tmp_path / "p.jpg", (300, 200))
    assert open_rgb(path, max_side=None).size == (300, 200)
    assert open_rgb(path).size == (300, 200)
    assert open_rgb(path, max_side=150).size == (150, 100)


def test_image_extensions_cover_the_contract_and_are_lower_case():
    assert {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


def test_load_image_matches_a_plain_pillow_resize_for_an_ordinary_photo(tmp_path):
    path = write_jpeg(tmp_path / "p.jpg", (200, 150), GREEN, seed=5)
    with Image.open(path) as raw:
        reference = np.asarray(raw.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)).astype(int)
    ours = load_image(path, 64).astype(int)
    assert np.abs(ours - reference).mean() < 2.0


def test_an_iphone_heic_photo_loads_like_any_other_photo(tmp_path):
    """HEIC is what an iPhone saves by default: the loaders, the audit and the upload widget all read it."""
    path = write_heic(tmp_path / "IMG_0001.HEIC", (80, 60), BLUE)
    pixels = load_image(path, 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert _close(pixels[16, 16], BLUE)
    info = inspect_image(path)
    assert (info.width, info.height) == (80, 60)


def test_without_pillow_heif_a_heic_photo_is_refused_with_the_install_command(tmp_path):
    from tlcourse import imageio

    path = write_heic(tmp_path / "IMG_0002.heic")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pillow_heif"] = None  # as where the wheel is missing
        from tlcourse.imageio import ImageDecodeError, load_image
        try:
            load_image({str(path)!r}, 32)
        except ImageDecodeError as error:
            print(error.reason)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "pip install pillow-heif" in done.stdout and "convert it to JPEG" in done.stdout
    assert imageio.heif_support()  # here, where it is installed
