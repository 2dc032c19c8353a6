"""Uploaded files made safe: names sanitised, values read from ipywidgets 7 or 8, saved inside a folder,
decoded under a size and pixel budget (lesson 08).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse import imageio as imageio_budget
from tlcourse.errors import DataError, TLCourseError

MAX_UPLOAD_BYTES: int = 8 * 1024 * 1024


THUMBNAIL_SIZE: int = 128


MAX_DECODE_PIXELS: int = imageio_budget.MAX_DECODE_PIXELS
ACCEPT = "image/*,.heic,.heif"
"""What the upload buttons' file pickers offer: every image type, and iPhone photos by name (some systems do
not list .heic files under image/*)."""


MAX_SAVE_BYTES: int = 50 * 1024 * 1024


MAX_NAME_CHARS: int = 120


MAX_NAME_BYTES: int = 200


_FALLBACK_NAME = "upload"


_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*]')


_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)


class UploadRejected(DataError):
    """An uploaded file cannot be classified; the message says why and what to do (lesson 08)."""

    def __init__(self, name: str, reason: str, advice: str | None = None) -> None:
        self.name = name
        self.reason = reason
        advice = advice or "Upload a JPEG or PNG photo instead."
        self.advice = advice
        super().__init__(f"{name} was not classified: {reason}. {advice}")


@dataclass(frozen=True)
class Upload:
    """One uploaded file (lesson 08): ``name`` is sanitised and safe to join to a folder."""

    name: str
    original_name: str
    content: bytes
    size: int

    def __repr__(self) -> str:  # keep the bytes out of notebook output
        return f"Upload(name={self.name!r}, original_name={self.original_name!r}, size={self.size})"


def sanitize_filename(name: str) -> str:
    """A plain, safe file name for an uploaded file's name (lesson 08).

    Folders are dropped (``"../../x.jpg"`` and ``"..\\\\..\\\\x.jpg"`` give ``"x.jpg"``, ``"/etc/passwd"`` gives
    ``"passwd"``), control and invisible formatting characters are removed, characters that Windows forbids
    become ``_``, leading dots (hidden files, ``..``) and trailing dots/spaces are stripped, Windows device
    names (``CON``, ``NUL`` ...) get a ``_`` prefix, and long names are shortened to
    :data:`MAX_NAME_CHARS` keeping the extension. The result is never empty (``"upload"`` as a last resort).
    """
    if isinstance(name, bytes | bytearray | memoryview):
        text = bytes(name).decode("utf-8", errors="replace")
    else:
        text = str(name) if name is not None else ""
    text = unicodedata.normalize("NFC", text)
    # Remove control/format/unassigned characters (NUL, newlines, right-to-left overrides ...).
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    parts = [part.strip() for part in re.split(r"[/\\]", text)]
    parts = [part for part in parts if part.strip(". ")]
    text = parts[-1] if parts else ""
    text = _UNSAFE_CHARS.sub("_", text)
    text = text.lstrip(". ").rstrip(". ")
    if not text:
        return _FALLBACK_NAME
    if text.split(".")[0].strip().lower() in _WINDOWS_RESERVED:
        text = "_" + text
    if _too_long(text):
        stem, dot, extension = text.rpartition(".")
        tail = "." + extension if dot and 0 < len(extension) <= 10 and stem else ""
        stem = text[: len(text) - len(tail)]
        while stem and _too_long(stem + tail):
            stem = stem[:-1]
        text = stem.rstrip(". ") + tail if stem.rstrip(". ") else _FALLBACK_NAME + tail
    return text or _FALLBACK_NAME


def _too_long(name: str) -> bool:
    return len(name) > MAX_NAME_CHARS or len(name.encode("utf-8")) > MAX_NAME_BYTES


def _unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem_1.ext``, ``stem_2.ext`` ... when already in ``taken`` (compared case-insensitively)."""
    if name.lower() not in taken:
        return name
    path = Path(name)
    stem, suffix = (path.stem, path.suffix) if path.stem else (name, "")
    counter = 1
    while f"{stem}_{counter}{suffix}".lower() in taken:
        counter += 1
    return f"{stem}_{counter}{suffix}"


def _as_bytes(content: Any) -> bytes:
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    if isinstance(content, bytearray | memoryview):
        return bytes(content)
    if hasattr(content, "tobytes"):  # numpy arrays and the like
        return bytes(content.tobytes())
    raise TLCourseError(
        f"Uploaded file content has an unexpected type ({type(content).__name__}); "
        "pass FileUpload.value from ipywidgets 7 or 8."
    )


def _entry(original: Any, content: Any) -> Upload:
    data = _as_bytes(content)
    original_name = str(original) if original is not None else ""
    return Upload(
        name=sanitize_filename(original_name), original_name=original_name, content=data, size=len(data)
    )


def read_uploads(value: Any) -> list[Upload]:
    """The files in a ``FileUpload.value``, for ipywidgets 8 and 7.7.1 alike (lesson 08).

    ipywidgets 8 gives a tuple of dicts ``{"name", "type", "size", "content": memoryview, "last_modified"}``;
    ipywidgets 7.7.1 (Colab) gives a dict ``{file name: {"metadata": {"name", "type", "size",
    "lastModified"}, "content": bytes}}``. ``None`` or an empty value gives ``[]``. Each :class:`Upload`
    holds the content as ``bytes``, its real size, the original name and a sanitised name.
    """
    if value is None:
        return []
    if isinstance(value, Mapping):
        if "content" in value and not isinstance(value.get("content"), Mapping):
            return [_entry(value.get("name"), value.get("content"))]  # one ipywidgets 8 entry on its own
        uploads = []
        for key, item in value.items():  # ipywidgets 7: {name: {"metadata": {...}, "content": bytes}}
            if not isinstance(item, Mapping):
                raise TLCourseError(
                    "This does not look like a FileUpload value: expected {name: {'metadata', 'content'}}."
                )
            metadata = item.get("metadata")
            name = metadata.get("name", key) if isinstance(metadata, Mapping) else key
            uploads.append(_entry(name, item.get("content")))
        return uploads
    if isinstance(value, str | bytes):
        raise TLCourseError("This does not look like a FileUpload value; pass `upload.value`.")
    if isinstance(value, Iterable):
        uploads = []
        for item in value:  # ipywidgets 8: ({"name", "type", "size", "content", "last_modified"}, ...)
            if isinstance(item, Upload):  # already read, e.g. from colab_upload()
                uploads.append(item)
            elif isinstance(item, Mapping):
                uploads.append(_entry(item.get("name"), item.get("content")))
            elif hasattr(item, "content"):  # attribute-style entries
                uploads.append(_entry(getattr(item, "name", None), item.content))
            else:
                raise TLCourseError("This does not look like a FileUpload value; pass `upload.value`.")
        return uploads
    raise TLCourseError(
        f"A FileUpload value was expected, got {type(value).__name__}; pass `upload.value` (ipywidgets 7 or 8)."
    )


COLAB_NOTE = (
    "On Colab, this upload button loses photos of about 1 MB or more (most phone photos). For those, run "
    "{call} in a new cell: it opens Colab's own file picker, which has no such limit."
)
"""What the widgets say on Colab, where ipywidgets 7.7.1's FileUpload drops large files without a word."""


def colab_upload() -> list[Upload]:
    """Photos chosen with Colab's own file picker (``google.colab.files.upload``), as :class:`Upload` entries
    for :meth:`UploadPredictor.predict` or :meth:`FolderUploader.save` (lesson 08). Unlike Colab's upload
    widget it keeps files of any size. Only on Colab: elsewhere it raises :class:`TLCourseError`."""
    try:
        from google.colab import files
    except ImportError:
        raise TLCourseError(
            "colab_upload() opens Colab's own file picker and works only on Colab; here use the upload button."
        ) from None
    chosen = files.upload() or {}
    return [_entry(name, content) for name, content in chosen.items()]


def save_uploads(
    uploads: Iterable[Upload] | Any, folder: str | os.PathLike[str], *, max_bytes: int = MAX_SAVE_BYTES
) -> list[Path]:
    """Write uploaded files into ``folder`` under unique sanitised names; returns their paths (lesson 08).

    ``uploads`` is a list of :class:`Upload` or a raw ``FileUpload.value``. Names are sanitised again here
    and every path is checked to lie inside ``folder``; existing files are never overwritten (``x_1.jpg``).
    A file over ``max_bytes`` (default :data:`MAX_SAVE_BYTES`) is refused with
    :class:`~tlcourse.errors.DataError` before anything is written.
    """
    if isinstance(uploads, list | tuple) and all(isinstance(item, Upload) for item in uploads):
        items: list[Upload] = list(uploads)
    else:
        items = read_uploads(uploads)
    for upload in items:
        if upload.size > max_bytes or len(upload.content) > max_bytes:
            raise DataError(
                f"{upload.name} was not saved: the file is too big ({upload.size / 1e6:.1f} MB; the limit is "
                f"{max_bytes / 1e6:.0f} MB). Upload a smaller copy (for example exported at 2000 px); nothing "
                "was written."
            )
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    taken = {child.name.lower() for child in root.iterdir()}
    paths: list[Path] = []
    for upload in items:
        name = _unique_name(sanitize_filename(upload.name), taken)
        path = root / name
        if path.resolve().parent != root:  # belt and braces: sanitize_filename already drops folders
            raise TLCourseError(f"Refusing to write {upload.original_name!r} outside {root}.")
        with open(path, "xb") as handle:  # "x": never replace a file that appeared meanwhile
            handle.write(upload.content)
        taken.add(name.lower())
        paths.append(path)
    return paths


def _check_size(upload: Upload, max_bytes: int) -> None:
    if upload.size == 0 or not upload.content:
        raise UploadRejected(upload.name, "the file is empty", "Choose the photo again, or another one.")
    if upload.size > max_bytes:
        raise UploadRejected(
            upload.name,
            f"the file is too big ({upload.size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB)",
            "Upload a smaller copy of the photo (for example exported at 2000 px).",
        )


def _check_pixels(upload: Upload) -> None:
    """Reject non-JPEG images whose header promises too many pixels, before decoding them."""
    from PIL import Image

    imageio_budget.heif_support()  # HEIC headers are read too

    try:
        with Image.open(io.BytesIO(upload.content)) as image:
            width, height = image.size
            fmt = image.format
    except Exception:  # not an image at all: imageio gives the precise reason
        return
    if fmt not in ("JPEG", "MPO") and width * height > MAX_DECODE_PIXELS:
        raise UploadRejected(
            upload.name,
            f"the image is too large to decode safely ({width}x{height} pixels)",
            "Upload a smaller copy of the picture.",
        )


def _temp_path(folder: Path, upload: Upload, index: int) -> Path:
    """A private file name for decoding: never the uploaded name, only its (plain) extension."""
    suffix = Path(upload.name).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        suffix = ""
    return folder / f"upload_{index}{suffix}"


def _rejected_from(upload: Upload, error: Exception) -> UploadRejected:
    reason = getattr(error, "reason", None) or str(error)
    advice = None
    if reason.startswith("truncated"):
        advice = (
            "The upload may have been cut off or the file is damaged: choose it again or use another photo."
        )
    elif reason.startswith("unsupported format"):
        advice = "Convert it to JPEG or PNG and upload it again."
    return UploadRejected(upload.name, reason, advice)


def _decode_in(
    folder: Path,
    upload: Upload,
    index: int,
    *,
    max_bytes: int,
    size: tuple[int, int] | None,
    thumbnail: int | None,
) -> tuple[np.ndarray | None, Any]:
    """Check and decode one upload inside ``folder``: (model-size uint8 array or None, thumbnail or None)."""
    from tlcourse import imageio

    _check_size(upload, max_bytes)
    _check_pixels(upload)
    path = _temp_path(folder, upload, index)
    path.write_bytes(upload.content)
    try:
        pixels = imageio.load_image(path, size) if size is not None else None
        thumb = imageio.open_rgb(path, max_side=thumbnail) if thumbnail else None
    except imageio.ImageDecodeError as error:
        raise _rejected_from(upload, error) from None
    finally:
        path.unlink(missing_ok=True)
    return pixels, thumb


def decode_upload(upload: Upload, *, max_bytes: int = MAX_UPLOAD_BYTES) -> Any:
    """Decode one upload as an upright RGB ``PIL.Image.Image`` (lesson 08); raises :class:`UploadRejected`.

    Empty files and files over ``max_bytes`` are rejected before any decoding; the rest goes through
    :func:`tlcourse.imageio.open_rgb` (EXIF orientation, CMYK/16-bit/alpha handled, huge images reduced
    while decoding, decompression bombs refused), from a file in a private temporary folder.
    """
    from tlcourse import imageio

    _check_size(upload, max_bytes)
    _check_pixels(upload)
    with tempfile.TemporaryDirectory(prefix="tlcourse-upload-") as tmp:
        path = _temp_path(Path(tmp), upload, 0)
        path.write_bytes(upload.content)
        try:
            return imageio.open_rgb(path)
        except imageio.ImageDecodeError as error:
            raise _rejected_from(upload, error) from None
