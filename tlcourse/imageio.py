"""Reading any image a student might have, as plain RGB pixels (introduced in lesson 08, used from lesson 04).

Photos collected by hand come in every shape: CMYK or grayscale JPEGs, palette and 16-bit PNGs, pictures with
an alpha channel, animated GIFs, phone photos whose pixels are stored sideways with an EXIF "orientation" tag,
and 40-megapixel originals. TensorFlow's own decoders ignore the EXIF tag, drop alpha without blending and
decode huge files at full size, so the course reads images with Pillow instead:

- :func:`open_rgb` gives an RGB :class:`PIL.Image.Image` with the EXIF orientation applied, transparency
  composited on white, 16-bit data scaled (not clipped) to 8 bits, the first frame of an animation, and huge
  images reduced *while decoding* (JPEG DCT scaling via :meth:`PIL.Image.Image.draft`).
- :func:`load_image` gives the same as a ``uint8`` array, optionally resized for a model.
- :func:`inspect_image` decodes a file cheaply to prove it is readable and describes it (used by
  :mod:`tlcourse.audit`).

iPhone photos (HEIC, the iPhone's default) and other HEIF files are read through pillow-heif, registered with
Pillow the first time this module opens a file (:func:`heif_support`); without pillow-heif they are reported
as unsupported, with the fix.

Files that cannot be used raise :class:`ImageDecodeError` with a short reason such as ``"empty file"`` or
``"truncated image"``. Nothing here ever writes to the file that is read.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from tlcourse.errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
)
"""File extensions (lower case) the course treats as images (lesson 08)."""

HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif", ".hif"})
"""iPhone photos and other HEIF files: images whenever pillow-heif is installed (:func:`heif_support`)."""

OTHER_IMAGE_EXTENSIONS: dict[str, str] = {
    ".heic": "HEIC",
    ".heif": "HEIF",
    ".hif": "HEIF",
    ".avif": "AVIF",
    ".svg": "SVG",
    ".psd": "Photoshop",
    ".ico": "icon",
    ".jp2": "JPEG 2000",
    ".dng": "camera raw",
    ".cr2": "camera raw",
    ".nef": "camera raw",
    ".arw": "camera raw",
    ".raw": "camera raw",
}
"""Extensions of picture formats a student may have that are not always readable. The audit tries them and
reports ``unsupported format (...)`` when this Pillow cannot decode them (HEIC and HEIF decode through
pillow-heif, lesson 08)."""

TINY_SIDE = 32
"""Images whose shorter side is below this many pixels are usable but flagged as tiny (lesson 08)."""

DEFAULT_MAX_SIDE = 2048

MAX_DECODE_PIXELS: int = 60_000_000
"""The pixel budget of one decode, shared by the audit, training's loading and the upload widget (lesson 08).

JPEGs are checked at the reduced size they decode at (DCT scaling, down to 1/8 per side), other formats at
their full stored size, from the header and before any pixel is decoded: a bigger image is refused with
``"image too large to decode safely (...)"``. 60 megapixels is a 9000x6700 picture, about 240 MB while
decoding as RGBA; a 13000x13000 PNG of half a megabyte (169 megapixels, 700 MB) is refused."""

LARGE_DECODE_PIXELS: int = 4_000_000
"""Decodes bigger than this (after DCT scaling) take the ``gate`` of :func:`inspect_image` first, so a
threaded audit decodes at most one big picture at a time."""

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes Image.reduce() accepts; others are converted before any shrinking.
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "I", "F", "YCbCr"})
_WHITE = (255, 255, 255)


class ImageDecodeError(DataError):
    """A file cannot be used as an image; ``reason`` is a short phrase such as ``"truncated image"``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"Cannot use {self.path.name!r} as an image: {reason}. "
            "Remove or replace the file (`tlcourse check-data FOLDER` lists every such file)."
        )


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_image` found out about one readable image (lesson 08)."""

    format: str
    """Pillow's name for the format actually found in the bytes, e.g. ``"JPEG"`` or ``"PNG"``."""
    mode: str
    """Pillow mode as stored, e.g. ``"RGB"``, ``"CMYK"``, ``"P"``, ``"I;16"``."""
    width: int
    """Width as displayed (after the EXIF orientation is applied)."""
    height: int
    frames: int
    orientation: int
    """EXIF orientation tag (1 = upright)."""
    notes: tuple[str, ...] = field(default=())
    """Short remarks about odd-but-usable properties, e.g. ``"CMYK converted to RGB"``."""
    fingerprint: str = ""
    """What ``inspect_image(fingerprint=...)`` computed from the decoded picture (e.g. a perceptual hash)."""


# --------------------------------------------------------------------------------------------- sniffing


def _sniff_reason(head: bytes, suffix: str) -> str:
    """Why bytes that Pillow did not recognise are not an image: a short phrase for the report."""
    if not head:
        return "empty file"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in stripped[:1024]:
        return "not an image (looks like HTML, e.g. a saved web page)"
    if stripped.startswith(b"<svg") or (stripped.startswith(b"<?xml") and b"<svg" in stripped[:2048]):
        return "unsupported format (SVG): convert it to PNG or JPEG"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypheif", b"ftyphevc", b"ftypmsf1"):
        if heif_support():
            return "corrupt image (the HEIC/HEIF data is damaged)"
        return "unsupported format (HEIC/HEIF): install pillow-heif (pip install pillow-heif), or convert it to JPEG"
    if head[4:12] in (b"ftypavif", b"ftypavis"):
        return "unsupported format (AVIF): convert it to JPEG or PNG"
    if head.startswith(b"%PDF"):
        return "not an image (PDF document)"
    if head.startswith(b"PK\x03\x04"):
        return "not an image (ZIP archive)"
    if head.startswith(b"\x00\x05\x16\x07"):
        return "not an image (macOS resource-fork file)"
    if head.startswith(b"\xff\xd8"):
        return "corrupt image (JPEG header is damaged)"
    if head.startswith(b"\x89PNG"):
        return "corrupt image (PNG header is damaged)"
    if suffix in OTHER_IMAGE_EXTENSIONS:
        return f"unsupported format ({OTHER_IMAGE_EXTENSIONS[suffix]}): convert it to JPEG or PNG"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "not an image (looks like text)"
    return "not an image (unknown or corrupt format)"


def _decode_failure_reason(error: BaseException) -> str:
    text = str(error).lower()
    if "truncated" in text or "premature end" in text or "unexpected end" in text:
        return "truncated image (the file ends early)"
    if isinstance(error, Image.DecompressionBombError):
        return "image too large to decode safely (possible decompression bomb)"
    detail = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
    return f"corrupt image data ({detail})"


# --------------------------------------------------------------------------------------------- decoding


@functools.cache
def heif_support() -> bool:
    """Let Pillow read HEIC/HEIF photos (iPhones save HEIC by default) through pillow-heif; False when pillow-heif
    is not installed. Registers the opener once per process, when the course first reads an image (lesson 08)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def _open(source: str | os.PathLike[str] | bytes, path: Path) -> Image.Image:
    """Open (lazily) with Pillow, turning every failure into :class:`ImageDecodeError`."""
    heif_support()
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return Image.open(fp)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(path, _bomb_reason(error)) from None
    except UnidentifiedImageError:
        head = source[:4096] if isinstance(source, bytes) else _read_head(path)
        raise ImageDecodeError(path, _sniff_reason(head, path.suffix.lower())) from None
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a folder, not a file") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied (the file cannot be read)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError) as error:
        raise ImageDecodeError(path, _decode_failure_reason(error)) from None


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(4096)
    except OSError:
        return b""


def _bomb_reason(error: BaseException) -> str:
    pixels = "".join(ch for ch in str(error).split("pixels")[0] if ch.isdigit())
    size = f" ({int(pixels) / 1e6:.0f} megapixels)" if pixels else ""
    return f"image too large to decode safely{size}, possible decompression bomb"


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # broken EXIF blocks must not make a good photo unusable
        return 1
    return value if 1 <= value <= 8 else 1


def _draft_target(
    width: int, height: int, size: tuple[int, int] | None, max_side: int | None, swap: bool
) -> tuple[int, int] | None:
    """The smallest stored-pixel size the decoder must still deliver (for JPEG DCT scaling)."""
    if size is not None:
        out_w, out_h = size
        return (out_h, out_w) if swap else (out_w, out_h)
    if max_side is not None and max(width, height) > max_side:
        longest = max(width, height)
        return (max(1, -(-width * max_side // longest)), max(1, -(-height * max_side // longest)))
    return None


def _scale_to_uint8(array: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """Map integer or float pixel data onto 0..255 by scaling (never by clipping large values)."""
    if sixteen_bit:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        top = float(finite.max()) if finite.size else 0.0
        scaled = array * 255.0 if top <= 1.0 else array * (255.0 / top)
        return np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)
    low, top = int(array.min(initial=0)), int(array.max(initial=0))
    if low >= 0 and top <= 255:
        return array.astype(np.uint8)
    if low >= 0 and top <= 65535:
        return _scale_to_uint8(array, sixteen_bit=True)
    span = max(top - low, 1)
    return ((array.astype(np.float64) - low) * (255.0 / span)).round().astype(np.uint8)


def _to_rgb(image: Image.Image, notes: list[str] | None = None) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    note = notes.append if notes is not None else (lambda _text: None)
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        note(("16-bit" if mode in _SIXTEEN_BIT_MODES else f"{mode}-mode") + " pixels scaled to 8-bit")
        gray = _scale_to_uint8(np.asarray(image), sixteen_bit=mode in _SIXTEEN_BIT_MODES)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255:
            note("transparency composited on white")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba.convert("RGB"), mask=alpha)
        return background
    if mode == "CMYK":
        note("CMYK converted to RGB")
    elif mode in ("L", "1"):
        note("grayscale converted to RGB")
    return image.convert("RGB")


def _shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    """Bring the longest side of an RGB image down to ``max_side`` (antialiased bicubic)."""
    if max_side is None or max(image.size) <= max_side:
        return image
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    return image


def _check_budget(image: Image.Image, path: Path, stored_size: tuple[int, int], max_pixels: int) -> int:
    """The pixels the decoder will allocate; refuses (closing the file) an image over ``max_pixels``."""
    pixels = image.width * image.height
    if pixels > max_pixels:
        image.close()
        width, height = stored_size
        raise ImageDecodeError(
            path,
            f"image too large to decode safely ({width}x{height} pixels, {width * height / 1e6:.0f} "
            f"megapixels; the limit is {max_pixels / 1e6:.0f}): save a smaller copy, e.g. 4000 px wide",
        )
    return pixels


@dataclass
class _Decoded:
    opened: Image.Image
    """The file as Pillow opened it (format, stored mode, frame count)."""
    image: Image.Image
    """The upright RGB result."""
    stored_size: tuple[int, int]
    """(width, height) as stored in the file, before any reduction or rotation."""
    orientation: int


def _decode(
    source: str | os.PathLike[str] | bytes,
    path: Path,
    *,
    size: tuple[int, int] | None,
    max_side: int | None,
    notes: list[str] | None = None,
    max_pixels: int = MAX_DECODE_PIXELS,
    gate: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
) -> _Decoded:
    """Open, draft, fully decode, reduce, orient and convert one image.

    ``size`` is the (width, height) the caller will resize to: decoding may stop at any scale that is still
    at least that big. Without it, the longest side is brought down to ``max_side``. An image that would
    decode to more than ``max_pixels`` is refused from its header; a decode bigger than
    :data:`LARGE_DECODE_PIXELS` runs inside ``gate()`` (e.g. a semaphore shared by an audit's threads).
    """
    image = _open(source, path)
    stored_size = image.size
    jpeg = isinstance(image, JpegImagePlugin.JpegImageFile)
    try:
        if not jpeg:
            # Budget first, then decode: reading a PNG's EXIF block already decodes every pixel.
            pixels = _check_budget(image, path, stored_size, max_pixels)
            with gate() if gate is not None and pixels > LARGE_DECODE_PIXELS else contextlib.nullcontext():
                image.load()
        orientation = _orientation(image)
        swap = orientation in (5, 6, 7, 8)
        target = _draft_target(image.width, image.height, size, max_side, swap)
        if jpeg:
            if target is not None:
                image.draft("RGB", target)  # DCT scaling: decode at 1/2, 1/4 or 1/8 of the size, much faster
            pixels = _check_budget(image, path, stored_size, max_pixels)  # after the DCT scaling
            with gate() if gate is not None and pixels > LARGE_DECODE_PIXELS else contextlib.nullcontext():
                image.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(path, _bomb_reason(error)) from None
    except MemoryError:
        raise ImageDecodeError(path, "image too large to decode with the memory available") from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        IndexError,
        TypeError,
        KeyError,
        ZeroDivisionError,
    ) as error:
        raise ImageDecodeError(path, _decode_failure_reason(error)) from None
    if image.width < 1 or image.height < 1:
        raise ImageDecodeError(path, "image has no pixels (zero width or height)")
    try:
        result: Image.Image = image
        if target is not None and image.mode in _REDUCIBLE_MODES and "transparency" not in image.info:
            # Box-reduce by a whole factor while the image is still at least the target size: cheaper
            # conversion and rotation below, and an antialiased first step for the final resize.
            factor = min(result.width // target[0], result.height // target[1])
            if factor >= 2:
                result = result.reduce(factor)
        if orientation != 1:
            try:
                result = ImageOps.exif_transpose(result)
            except Exception:  # an odd EXIF/XMP block: keep the pixels as stored rather than fail
                if notes is not None:
                    notes.append(f"EXIF orientation {orientation} could not be applied")
            else:
                if notes is not None:
                    notes.append(f"EXIF orientation {orientation} applied")
        result = _to_rgb(result, notes)
        if size is None:
            result = _shrink(result, max_side)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ImageDecodeError(path, f"unsupported image layout ({image.mode}): {error}") from None
    return _Decoded(opened=image, image=result, stored_size=stored_size, orientation=orientation)


def _normalise_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``size`` as ``(width, height)``; an int means a square. Tuples are (height, width) like Keras."""
    if size is None:
        return None
    if isinstance(size, int | np.integer):
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        return int(size), int(size)
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    return width, height


def open_rgb(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_pixels: int = MAX_DECODE_PIXELS,
) -> Image.Image:
    """Open any image file as an upright 8-bit RGB Pillow image (lesson 08).

    EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`), CMYK/grayscale/palette/16-bit images
    are converted (16-bit data scaled, not clipped), RGBA/LA/transparent palettes are composited on white,
    animations give their first frame, and images whose longest side exceeds ``max_side`` are reduced while
    decoding (JPEG DCT scaling) and then resized so the longest side is at most ``max_side``
    (``None``: keep full size). Images that would decode to more than ``max_pixels`` (default
    :data:`MAX_DECODE_PIXELS`) are refused before decoding. Raises :class:`ImageDecodeError` with a short
    reason for unusable files. The file is only read, never written.
    """
    file_path = Path(path)
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive or None, got {max_side}")
    decoded = _decode(file_path, file_path, size=None, max_side=max_side, max_pixels=max_pixels)
    result = decoded.image.copy() if decoded.image is decoded.opened else decoded.image
    decoded.opened.close()
    return result


def load_image(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    *,
    max_side: int | None = DEFAULT_MAX_SIDE,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
    max_pixels: int = MAX_DECODE_PIXELS,
) -> np.ndarray:
    """Read an image file as a ``uint8`` array of shape (height, width, 3) (lesson 04).

    With ``size`` the picture is resized to ``size x size`` for an int, or to ``(height, width)`` for a pair,
    ignoring the aspect ratio like ``keras.utils.image_dataset_from_directory``. The default ``resample``
    is Pillow's bilinear filter, which (unlike ``tf.image.resize``) is antialiased when shrinking; pass
    ``Image.Resampling.BICUBIC`` or ``LANCZOS`` for slightly sharper, slower results.
    JPEGs are decoded directly at the smallest DCT scale that is still at least that size, which makes
    loading large photos for a 160-pixel model several times faster. Without ``size`` the result is
    :func:`open_rgb`'s, limited to ``max_side``. Images over the ``max_pixels`` budget are refused before
    decoding. Raises :class:`ImageDecodeError` for unusable files.
    """
    file_path = Path(path)
    target = _normalise_size(size)
    decoded = _decode(file_path, file_path, size=target, max_side=max_side, max_pixels=max_pixels)
    try:
        result = decoded.image
        if target is not None and result.size != target:
            result = result.resize(target, resample, reducing_gap=3.0)
        array = np.asarray(result, dtype=np.uint8)
    finally:
        decoded.opened.close()
    return np.ascontiguousarray(array)


def inspect_image(
    path: str | os.PathLike[str],
    *,
    data: bytes | None = None,
    check_size: int = 64,
    max_pixels: int = MAX_DECODE_PIXELS,
    gate: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    fingerprint: Callable[[Image.Image], str] | None = None,
) -> ImageInfo:
    """Decode a file cheaply to prove it is usable, and describe it (lesson 08).

    The whole file is decoded (so truncated or corrupt data is caught), JPEGs at a reduced DCT scale (about
    ``check_size`` pixels), which is several times faster than a full decode; the result goes through the
    same conversion as :func:`load_image`, so a file that passes here also loads there. Pass ``data`` when
    the bytes are already in memory. Images over the ``max_pixels`` budget are refused from their header;
    ``gate`` (a context-manager factory) is entered around each decode bigger than
    :data:`LARGE_DECODE_PIXELS`. ``fingerprint`` is called on the decoded upright RGB picture (about
    ``check_size`` pixels or more) and its result kept in :attr:`ImageInfo.fingerprint`.
    Raises :class:`ImageDecodeError` with a short reason for unusable files.
    """
    file_path = Path(path)
    notes: list[str] = []
    source: str | os.PathLike[str] | bytes = data if data is not None else file_path
    decoded = _decode(
        source,
        file_path,
        size=(check_size, check_size),
        max_side=None,
        notes=notes,
        max_pixels=max_pixels,
        gate=gate,
    )
    opened = decoded.opened
    try:
        fmt = opened.format or "unknown"
        suffix = file_path.suffix.lower()
        if fmt == "PNG" and suffix in (".jpg", ".jpeg", ".jpe", ".jfif"):
            notes.append("PNG data in a .jpg file")
        elif fmt == "JPEG" and suffix == ".png":
            notes.append("JPEG data in a .png file")
        if opened.mode == "P":
            notes.append("palette image converted to RGB")
        try:
            frames = int(getattr(opened, "n_frames", 1) or 1)
        except (OSError, ValueError, EOFError):
            frames = 1  # later frames are damaged; only the first one is used anyway
        if frames > 1 and opened.format != "MPO":  # MPO: a phone JPEG with a preview picture attached
            notes.append(f"animated ({frames} frames): the first frame is used")
        width, height = decoded.stored_size
        if decoded.orientation in (5, 6, 7, 8):
            width, height = height, width
        if min(width, height) < TINY_SIDE:
            notes.append(f"tiny image ({width}x{height} px)")
        if max(width, height) > DEFAULT_MAX_SIDE:
            notes.append(f"large image ({width}x{height} px): downscaled while decoding")
        return ImageInfo(
            fingerprint=fingerprint(decoded.image) if fingerprint is not None else "",
            format=fmt,
            mode=opened.mode,
            width=width,
            height=height,
            frames=frames,
            orientation=decoded.orientation,
            notes=tuple(dict.fromkeys(notes)),
        )
    finally:
        opened.close()
