"""Notebook widgets: classify uploaded photos, and explore how deep to fine-tune (lessons 05 and 08).

Two small interactive tools, both built from ``ipywidgets`` (imported inside the functions, so importing this
module costs nothing and works without Jupyter):

- :func:`upload_and_predict` (lesson 08) shows a file-upload button; every image chosen is decoded safely,
  classified by the student's model with exactly the preprocessing used in training, and shown as a
  thumbnail with its top classes and probability bars. Files that are not usable images (a web page saved
  as ``photo.jpg``, an empty or truncated file, a file over the size limit) get a one-line reason instead,
  and never stop the other files being classified.
- :func:`folder_uploader` (lesson 08) saves uploaded photos into ``folder/<class>/`` for training; any
  problem shows as one line under its button.
- :func:`unfreeze_explorer` (lesson 05) is a slider over the layers of a backbone with a live report of what
  fine-tuning from that layer would train (:func:`tlcourse.diagnose.unfreeze_summary`), without touching the model.

Both work with ipywidgets 8 (JupyterLab 4) and ipywidgets 7.7.1 (Google Colab), whose ``FileUpload.value``
differ: :func:`read_uploads` accepts either. An uploaded file's name is never used as a path as it is:
:func:`sanitize_filename` reduces it to a plain file name, and :func:`save_uploads` keeps every file inside
the folder it is given. Everything renders into an ``ipywidgets.HTML`` (not an ``Output``), so the widgets
can be driven and inspected headless in tests, and in Run-All/papermill nothing ever waits for an upload.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse import diagnose
from tlcourse import imageio as imageio_budget
from tlcourse.errors import DataError, TLCourseError
from tlcourse.predict import classify_arrays, model_image_size

MAX_UPLOAD_BYTES: int = 8 * 1024 * 1024
"""Largest upload classified (lesson 08); bigger files are rejected before any decoding."""

THUMBNAIL_SIZE: int = 128
"""Longest side, in pixels, of the thumbnails shown next to each prediction."""

MAX_DECODE_PIXELS: int = imageio_budget.MAX_DECODE_PIXELS
"""Non-JPEG uploads with more pixels than this are rejected before decoding (JPEGs decode reduced): the
same budget as the audit and training (:data:`tlcourse.imageio.MAX_DECODE_PIXELS`)."""

MAX_SAVE_BYTES: int = 50 * 1024 * 1024
"""Largest upload :func:`save_uploads` writes to disk; bigger ones are refused before anything is written."""

MAX_NAME_CHARS: int = 120
"""Longest sanitised file name kept (characters, extension included)."""

MAX_NAME_BYTES: int = 200
"""Longest sanitised file name kept in UTF-8 bytes (most file systems allow 255)."""

CSS_PREFIX = "tlcourse"

_FALLBACK_NAME = "upload"
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*]')
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)
_BAR_COLOUR = "#4c8bf5"
_ERROR_COLOUR = "#b00020"


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


# ------------------------------------------------------------------------------------------ file names


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


# ------------------------------------------------------------------------------------------ reading values


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
            if isinstance(item, Mapping):
                uploads.append(_entry(item.get("name"), item.get("content")))
            elif hasattr(item, "content"):  # attribute-style entries
                uploads.append(_entry(getattr(item, "name", None), item.content))
            else:
                raise TLCourseError("This does not look like a FileUpload value; pass `upload.value`.")
        return uploads
    raise TLCourseError(
        f"A FileUpload value was expected, got {type(value).__name__}; pass `upload.value` (ipywidgets 7 or 8)."
    )


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


# ------------------------------------------------------------------------------------------ decoding


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


# ------------------------------------------------------------------------------------------ prediction


def _thumbnail_uri(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _render_prediction(result: dict[str, Any], thumbnail: str | None, size: int) -> str:
    name = result["name"]
    top = result["top"]
    best, best_p = top[0]
    rows = []
    for rank, (label, p) in enumerate(top):
        weight = "font-weight:bold;" if rank == 0 else ""
        rows.append(
            f'<div class="{CSS_PREFIX}-class" data-class="{_esc(label)}" data-probability="{p:.6f}" '
            f'style="display:flex;align-items:center;gap:6px;margin:2px 0;{weight}">'
            f'<span class="{CSS_PREFIX}-class-name" style="min-width:8em">{_esc(label)}</span>'
            f'<span class="{CSS_PREFIX}-bar" style="display:inline-block;width:140px;height:10px;'
            f'background:#e6e6e6;border-radius:3px;overflow:hidden">'
            f'<span style="display:block;height:100%;width:{100 * p:.1f}%;background:{_BAR_COLOUR}"></span>'
            f"</span>"
            f'<span class="{CSS_PREFIX}-percent">{100 * p:.1f}%</span></div>'
        )
    image = (
        f'<img class="{CSS_PREFIX}-thumbnail" src="{thumbnail}" alt="{_esc(name)}" '
        f'style="max-width:{size}px;max-height:{size}px;border-radius:4px">'
        if thumbnail
        else ""
    )
    return (
        f'<div class="{CSS_PREFIX}-prediction" data-name="{_esc(name)}" data-top-class="{_esc(best)}" '
        f'data-top-probability="{best_p:.6f}" '
        f'style="display:flex;gap:12px;align-items:center;margin:6px 0;padding:6px;border:1px solid #ddd;'
        f'border-radius:6px">'
        f'<div style="width:{size}px;text-align:center">{image}</div>'
        f'<div><div class="{CSS_PREFIX}-name" title="{_esc(result.get("original_name", name))}" '
        f'style="margin-bottom:4px"><code>{_esc(name)}</code></div>{"".join(rows)}</div></div>'
    )


def _render_rejection(result: dict[str, Any]) -> str:
    return (
        f'<div class="{CSS_PREFIX}-rejected" data-name="{_esc(result["name"])}" '
        f'data-reason="{_esc(result.get("reason", result["error"]))}" '
        f'style="margin:6px 0;padding:6px;border:1px solid {_ERROR_COLOUR};border-radius:6px">'
        f'<code class="{CSS_PREFIX}-name">{_esc(result["name"])}</code> '
        f'<span class="{CSS_PREFIX}-error" style="color:{_ERROR_COLOUR}">{_esc(_rejection_text(result))}</span>'
        "</div>"
    )


def _rejection_text(result: Mapping[str, Any]) -> str:
    if "reason" in result:
        return f"not classified: {result['reason']}. {result.get('advice') or ''}".strip()
    return str(result["error"])


def _render_message(text: str, status: str) -> str:
    return (
        f'<div class="{CSS_PREFIX}-results" data-status="{status}" data-count="0">'
        f'<span class="{CSS_PREFIX}-message" style="color:#555">{_esc(text)}</span></div>'
    )


def render_results(
    results: Sequence[dict[str, Any]],
    thumbnails: Mapping[int, str] | None = None,
    *,
    size: int = THUMBNAIL_SIZE,
) -> str:
    """The result HTML for :class:`UploadPredictor` (lesson 08): one block per file, in upload order.

    Classified files are ``<div class="tlcourse-prediction" data-top-class=...>`` with a thumbnail (PNG data
    URI, ``thumbnails[i]``), the sanitised name and one probability bar per top class; rejected files are
    ``<div class="tlcourse-rejected">`` with the reason. Every name and class is HTML-escaped.
    """
    if not results:
        return _render_message("No images chosen yet: click Upload and pick one or more photos.", "empty")
    thumbnails = thumbnails or {}
    blocks = [
        _render_rejection(result)
        if "error" in result
        else _render_prediction(result, thumbnails.get(i), size)
        for i, result in enumerate(results)
    ]
    good = sum(1 for result in results if "error" not in result)
    return (
        f'<div class="{CSS_PREFIX}-results" data-status="done" data-count="{len(results)}" '
        f'data-classified="{good}" data-rejected="{len(results) - good}">{"".join(blocks)}</div>'
    )


def _widget_bundle(owner: Any, **kwargs: Any) -> dict[str, Any] | None:
    """The widget's display bundle (ipywidgets 8) with ``repr(owner)`` as its short plain-text form."""
    make = getattr(owner.widget, "_repr_mimebundle_", None)
    bundle = make(**kwargs) if make is not None else None
    if bundle:
        bundle = {**bundle, "text/plain": repr(owner)}
    return bundle


def _display_widget(owner: Any) -> None:
    """Show ``owner.widget``: from its bundle in ipywidgets 8, by ``display(widget)`` in ipywidgets 7."""
    from IPython.display import display

    bundle = _widget_bundle(owner)
    if bundle and "application/vnd.jupyter.widget-view+json" in bundle:
        display(bundle, raw=True)
    else:
        display(owner.widget)


def _set_tooltip(widget: Any, text: str) -> None:
    """``tooltip`` in ipywidgets 8, ``description_tooltip`` in 7."""
    for trait in ("tooltip", "description_tooltip"):
        if widget.has_trait(trait):
            setattr(widget, trait, text)
            return


class UploadPredictor:
    """Upload-and-predict widget (lesson 08): what :func:`upload_and_predict` returns.

    Attributes: ``widget`` (the ``VBox`` to display; a notebook cell ending in the predictor shows it),
    ``upload`` (``FileUpload``), ``button`` (``Button``), ``result`` (``HTML`` with the predictions) and
    ``last_results`` (one dict per file: ``{"name", "original_name", "top": [(class, p), ...],
    "probabilities"}`` or ``{"name", "original_name", "error", "reason"}``). ``upload`` can be replaced by any
    widget with a ``value`` trait holding a ``FileUpload`` value (tests use this for ipywidgets 7 values).
    """

    def __init__(
        self,
        model: Any,
        class_names: Sequence[str],
        *,
        top: int = 3,
        max_bytes: int = MAX_UPLOAD_BYTES,
        auto: bool = True,
        thumbnail_size: int = THUMBNAIL_SIZE,
        upload: Any = None,
    ) -> None:
        import ipywidgets as widgets

        self.model = model
        self.class_names = [str(name) for name in class_names]
        self.top = int(top)
        self.max_bytes = int(max_bytes)
        self.auto = bool(auto)
        self.thumbnail_size = int(thumbnail_size)
        self.last_results: list[dict[str, Any]] = []
        self.upload = upload if upload is not None else widgets.FileUpload(accept="image/*", multiple=True)
        if upload is None:
            self.upload.description = "Upload images"
            self.upload.layout.width = "auto"  # room for "Upload images (3)"
        self.button = widgets.Button(description="Classify", icon="search", button_style="primary")
        self.result = widgets.HTML(value=render_results([]))
        self.widget = widgets.VBox([widgets.HBox([self.upload, self.button]), self.result])
        limit = f"{self.max_bytes / 1e6:.0f} MB"
        _set_tooltip(self.upload, f"Choose one or more JPEG or PNG photos (up to {limit} each)")
        _set_tooltip(self.button, "Classify the chosen photos again")
        for widget, css in (
            (self.upload, "upload"),
            (self.button, "predict-button"),
            (self.result, "result"),
            (self.widget, "upload-predictor"),
        ):
            if hasattr(widget, "add_class"):
                widget.add_class(f"{CSS_PREFIX}-{css}")
        self.button.on_click(self._on_click)
        if self.auto:
            self.upload.observe(self._on_value_change, names="value")

    # -- callbacks: never raise into the widget machinery, show the problem instead
    def _on_click(self, _button: Any = None) -> None:
        self._predict_safely(None)

    def _on_value_change(self, change: Mapping[str, Any]) -> None:
        self._predict_safely(change.get("new"))

    def _predict_safely(self, value: Any) -> None:
        try:
            self.predict(value)
        except Exception as error:  # a callback's traceback would go to the log nobody reads
            message = str(error) if isinstance(error, TLCourseError) else f"{type(error).__name__}: {error}"
            self.result.value = (
                f'<div class="{CSS_PREFIX}-results" data-status="error" data-count="0">'
                f'<span class="{CSS_PREFIX}-error" style="color:{_ERROR_COLOUR}">'
                f"Could not classify the uploads: {_esc(message)}</span></div>"
            )
        finally:
            self.button.disabled = False

    def predict(self, value: Any = None) -> list[dict[str, Any]]:
        """Classify the files in ``value`` (default: ``upload.value`` now) and render them into ``result``.

        Returns :attr:`last_results`. Files that are not usable images are reported, not raised.
        """
        uploads = read_uploads(self.upload.value if value is None else value)
        if not uploads:
            self.last_results = []
            self.result.value = render_results([])
            return []
        self.button.disabled = True
        plural = "s" if len(uploads) > 1 else ""
        self.result.value = _render_message(f"Classifying {len(uploads)} file{plural}...", "busy")
        size = model_image_size(self.model)
        results: list[dict[str, Any]] = []
        thumbnails: dict[int, str] = {}
        pixels: list[np.ndarray] = []
        slots: list[int] = []
        try:
            with tempfile.TemporaryDirectory(prefix="tlcourse-upload-") as tmp:
                for index, upload in enumerate(uploads):
                    entry: dict[str, Any] = {"name": upload.name, "original_name": upload.original_name}
                    try:
                        array, thumb = _decode_in(
                            Path(tmp),
                            upload,
                            index,
                            max_bytes=self.max_bytes,
                            size=size,
                            thumbnail=self.thumbnail_size,
                        )
                    except UploadRejected as error:
                        entry.update(error=str(error), reason=error.reason, advice=error.advice)
                    else:
                        slots.append(index)
                        pixels.append(array)
                        thumbnails[index] = _thumbnail_uri(thumb)
                    results.append(entry)
            for index, outcome in zip(
                slots, classify_arrays(self.model, pixels, self.class_names, self.top), strict=True
            ):
                results[index].update(outcome)
        finally:
            self.button.disabled = False
        self.last_results = results
        self.result.value = render_results(results, thumbnails, size=self.thumbnail_size)
        return results

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _widget_bundle(self, **kwargs)

    def _ipython_display_(self) -> None:
        _display_widget(self)

    def __repr__(self) -> str:
        return f"UploadPredictor({len(self.class_names)} classes, top={self.top}, {len(self.last_results)} results)"


def upload_and_predict(
    model: Any,
    class_names: Sequence[str],
    *,
    top: int = 3,
    max_bytes: int = MAX_UPLOAD_BYTES,
    auto: bool = True,
) -> UploadPredictor:
    """An upload button that classifies photos with ``model`` and shows the results (lesson 08).

    With ``auto=True`` the photos are classified as soon as they are chosen; the *Classify* button does the
    same at any time. Each file shows a thumbnail, its sanitised name and the ``top`` classes with their
    probabilities as bars, or why it was rejected (not an image, empty, truncated, over ``max_bytes``).
    Images get exactly the preprocessing of training (:func:`tlcourse.imageio.load_image` at the model's input
    size, raw [0, 255] pixels); the model's outputs are taken as logits. Nothing blocks when run headless:
    end a cell with the returned predictor to display it. (On Colab keep uploads under about 1 MB.)
    """
    return UploadPredictor(model, class_names, top=top, max_bytes=max_bytes, auto=auto)


def _one_line(error: BaseException) -> str:
    """An exception as one short line: the course's own message, else its type and first line."""
    text = str(error) if isinstance(error, TLCourseError) else f"{type(error).__name__}: {error}"
    return (text.strip().splitlines() or [type(error).__name__])[0][:300]


class FolderUploader:
    """Save uploaded photos into ``folder/<class>/`` (lesson 08): what :func:`folder_uploader` returns.

    Attributes: ``widget`` (the ``VBox`` to display), ``upload`` (``FileUpload``), ``label`` (``Text``: the
    class the photos show), ``button`` (``Button``), ``note`` (``HTML``: what was saved, or why nothing was)
    and ``last_saved`` (the paths written by the last save). A problem (no class typed, no photo chosen, a
    file over the size limit, a folder that cannot be written) is shown in ``note`` as one line, never lost
    in a callback's log. ``upload`` can be any widget with a ``FileUpload`` value (tests).
    """

    def __init__(
        self, folder: str | os.PathLike[str], *, max_bytes: int = MAX_SAVE_BYTES, upload: Any = None
    ):
        import ipywidgets as widgets

        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self.last_saved: list[Path] = []
        self.upload = upload if upload is not None else widgets.FileUpload(accept="image/*", multiple=True)
        if upload is None:
            self.upload.description = "Images"
        self.label = widgets.Text(description="Class", placeholder="e.g. ripe")
        self.button = widgets.Button(description="Save to folder", icon="save")
        self.note = widgets.HTML()
        self.widget = widgets.VBox([self.upload, self.label, self.button, self.note])
        self.button.on_click(self._on_click)

    def _on_click(self, _button: Any = None) -> None:
        try:
            self.save()
        except Exception as error:  # a callback's traceback would go to the log nobody reads
            self.note.value = (
                f'<span class="{CSS_PREFIX}-error" data-status="error" style="color:{_ERROR_COLOUR}">'
                f"Nothing more was saved: {_esc(_one_line(error))}</span>"
            )

    def save(self, value: Any = None, label: str | None = None) -> list[Path]:
        """Save the files in ``value`` (default: ``upload.value``) under ``folder/<label>/``; returns their paths.

        Raises :class:`~tlcourse.errors.TLCourseError` (one line) for a missing class name or no files; the
        button shows that line in ``note`` instead.
        """
        name = (self.label.value if label is None else label).strip()
        if not name:
            raise TLCourseError("type the class these photos show in the Class box first, then save again.")
        uploads = read_uploads(self.upload.value if value is None else value)
        if not uploads:
            raise TLCourseError("no photos chosen yet: click Images and pick one or more, then save.")
        target = self.folder / sanitize_filename(name)
        self.last_saved = save_uploads(uploads, target, max_bytes=self.max_bytes)
        self.note.value = (
            f'<span class="{CSS_PREFIX}-message" data-status="saved">saved {len(self.last_saved)} file(s) into '
            f"{_esc(target)}; the audit will skip any that are not images</span>"
        )
        return self.last_saved

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _widget_bundle(self, **kwargs)

    def _ipython_display_(self) -> None:
        _display_widget(self)

    def __repr__(self) -> str:
        return f"FolderUploader({str(self.folder)!r}, {len(self.last_saved)} saved)"


def folder_uploader(folder: str | os.PathLike[str], *, max_bytes: int = MAX_SAVE_BYTES) -> FolderUploader:
    """A widget that saves uploaded photos into ``folder/<class>/`` for training (lesson 08).

    Type the class, choose the photos, click *Save to folder*; names are sanitised and never overwrite
    (:func:`save_uploads`), and any problem shows as one line under the button. End a cell with it to show it.
    """
    return FolderUploader(folder, max_bytes=max_bytes)


# ------------------------------------------------------------------------------------------ unfreezing


def _render_unfreeze(summary: Mapping[str, Any], table: Sequence[diagnose.UnfreezeLayer]) -> str:
    index = summary["fine_tune_from"]
    share = summary["trainable_share"]
    first = summary["first_unfrozen"]
    if first is None:
        headline = "Nothing is unfrozen: only the new head would train (feature extraction)."
    else:
        headline = (
            f"Fine-tuning from layer {index} ({_esc(summary['boundary_layer'])}): "
            f"{summary['layers_unfrozen']} layers train, the first is <code>{_esc(first)}</code>."
        )
    rows = [
        (
            "Layers unfrozen",
            f"{summary['layers_unfrozen']} of {summary['layers_total']} "
            f"({summary['layers_with_weights_unfrozen']} of them with weights)",
        ),
        ("Trainable parameters", f"{summary['trainable_params']:,} ({100 * share:.1f}% of the backbone)"),
        ("Frozen parameters", f"{summary['frozen_params']:,}"),
        (
            "BatchNorm layers kept frozen",
            f"{summary['batchnorm_kept_frozen']} ({summary['batchnorm_params_kept_frozen']:,} parameters)",
        ),
    ]
    table_html = "".join(
        f'<tr><td style="padding:2px 10px 2px 0">{label}</td><td><b>{value}</b></td></tr>'
        for label, value in rows
    )
    context = []
    for i in range(max(0, index - 3), min(len(table), index + 3)):
        info = table[i]
        state = (
            "frozen"
            if i < index or info.is_input
            else ("frozen (BatchNorm)" if info.is_batchnorm else "trainable")
        )
        colour = _BAR_COLOUR if state == "trainable" else "#777"
        context.append(
            f'<tr style="color:{colour}"><td style="padding:0 8px 0 0">{i}</td>'
            f"<td><code>{_esc(info.name)}</code></td><td style='padding:0 8px'>{_esc(info.kind)}</td>"
            f"<td>{state}</td></tr>"
        )
    return (
        f'<div class="{CSS_PREFIX}-unfreeze-report" data-fine-tune-from="{index}" '
        f'data-first-unfrozen="{_esc(first or "")}" data-trainable-params="{summary["trainable_params"]}">'
        f"<div>{headline}</div>"
        f'<div style="width:300px;height:10px;background:#e6e6e6;border-radius:3px;margin:6px 0">'
        f'<div style="height:100%;width:{100 * share:.1f}%;background:{_BAR_COLOUR};border-radius:3px"></div></div>'
        f"<table>{table_html}</table>"
        f'<div style="margin-top:6px">Around the boundary:</div><table style="font-size:90%">{"".join(context)}</table>'
        "</div>"
    )


class UnfreezeExplorer:
    """Slider over a backbone's layers with a live report of what would train (lesson 05).

    Attributes: ``widget`` (the ``VBox`` to display), ``slider`` (``IntSlider``, 0 ... number of layers),
    ``report`` (``HTML``). :meth:`summary` gives :func:`tlcourse.diagnose.unfreeze_summary` at the slider's position. The
    backbone is never modified.
    """

    def __init__(self, backbone: Any, *, start: int | str | None = None) -> None:
        import ipywidgets as widgets

        self.backbone = backbone
        self._table, self._sizes, self._total = diagnose.unfreeze_table(backbone)
        count = len(self._table)
        index = (
            diagnose.resolve_unfreeze_index(backbone, start)
            if start is not None
            else _default_start(backbone, count)
        )
        self.slider = widgets.IntSlider(
            value=index, min=0, max=count, step=1, description="Unfreeze from", continuous_update=True
        )
        self.report = widgets.HTML()
        self.widget = widgets.VBox([self.slider, self.report])
        _set_tooltip(self.slider, "First layer to unfreeze (layers below it stay frozen)")
        for widget, css in (
            (self.slider, "unfreeze-slider"),
            (self.report, "unfreeze-report"),
            (self.widget, "unfreeze-explorer"),
        ):
            widget.add_class(f"{CSS_PREFIX}-{css}")
        self.slider.observe(self._on_change, names="value")
        self._refresh()

    def summary(self) -> dict[str, Any]:
        """:func:`tlcourse.diagnose.unfreeze_summary` for the slider's current position."""
        return diagnose.summarise_unfreeze(self._table, self._sizes, self._total, int(self.slider.value))

    def _on_change(self, _change: Any = None) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self.report.value = _render_unfreeze(self.summary(), self._table)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _widget_bundle(self, **kwargs)

    def _ipython_display_(self) -> None:
        _display_widget(self)

    def __repr__(self) -> str:
        return f"UnfreezeExplorer({self.backbone.name!r}, fine_tune_from={self.slider.value})"


def _default_start(backbone: Any, count: int) -> int:
    """The registry's default unfreeze point for a known backbone, else three quarters of the way up."""
    try:
        from tlcourse import models

        spec = models.spec_of(backbone)
        if spec is not None:
            return diagnose.resolve_unfreeze_index(backbone, spec.default_unfreeze_from)
    except TLCourseError:
        pass
    return (3 * count) // 4


def unfreeze_explorer(backbone: Any, *, start: int | str | None = None) -> UnfreezeExplorer:
    """A slider over the unfreeze point of ``backbone`` with a live trainable-parameter report (lesson 05).

    ``start`` (index or layer/block name) sets the slider's first position; by default the backbone's
    registered unfreeze point (``block_13_expand`` for MobileNetV2). End a cell with the explorer to show it.
    """
    return UnfreezeExplorer(backbone, start=start)
