"""The upload-and-predict widget and the folder uploader (lesson 08)."""

from __future__ import annotations

import base64
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.config import in_colab
from tlcourse.errors import TLCourseError
from tlcourse.paths import display_path
from tlcourse.predict import classify_arrays, model_image_size
from tlcourse.widgets.display import (
    _BAR_COLOUR,
    _BORDER_COLOUR,
    _ERROR_COLOUR,
    _MUTED_COLOUR,
    _TRACK_COLOUR,
    CSS_PREFIX,
    LIVE_REGION,
    _display_widget,
    _esc,
    _set_tooltip,
    _widget_bundle,
)
from tlcourse.widgets.uploads import (
    ACCEPT,
    COLAB_NOTE,
    MAX_SAVE_BYTES,
    MAX_UPLOAD_BYTES,
    THUMBNAIL_SIZE,
    UploadRejected,
    _decode_in,
    read_uploads,
    sanitize_filename,
    save_uploads,
)


def _thumbnail_uri(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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
            f'background:{_TRACK_COLOUR};border-radius:3px;overflow:hidden">'
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
        f'style="display:flex;gap:12px;align-items:center;margin:6px 0;padding:6px;border:1px solid {_BORDER_COLOUR};'
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
        f'<div class="{CSS_PREFIX}-results" data-status="{status}" data-count="0" {LIVE_REGION}>'
        f'<span class="{CSS_PREFIX}-message" style="color:{_MUTED_COLOUR}">{_esc(text)}</span></div>'
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
        f'data-classified="{good}" data-rejected="{len(results) - good}" {LIVE_REGION}>{"".join(blocks)}</div>'
    )


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
        self.upload = upload if upload is not None else widgets.FileUpload(accept=ACCEPT, multiple=True)
        if upload is None:
            self.upload.description = "Upload images"
            self.upload.layout.width = "auto"  # room for "Upload images (3)"
        self.button = widgets.Button(description="Classify", icon="search", button_style="primary")
        self.result = widgets.HTML(value=render_results([]))
        self.widget = widgets.VBox(
            [widgets.HBox([self.upload, self.button]), *_colab_note("predictor.predict(widgets.colab_upload())"),
             self.result]
        )  # fmt: skip
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
                f'<div class="{CSS_PREFIX}-results" data-status="error" data-count="0" {LIVE_REGION}>'
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
    end a cell with the returned predictor to display it. On Colab, whose upload widget loses photos of about
    1 MB or more, it says so and names the call that reads them with Colab's own picker (:func:`colab_upload`).
    """
    return UploadPredictor(model, class_names, top=top, max_bytes=max_bytes, auto=auto)


def _colab_note(call: str) -> list[Any]:
    """On Colab, one line under the upload button naming the call that reads large photos; elsewhere nothing."""
    if not in_colab():
        return []
    import ipywidgets as widgets

    text = _esc(COLAB_NOTE.format(call="CALL")).replace("CALL", f"<code>{_esc(call)}</code>")
    note = widgets.HTML(f'<span class="{CSS_PREFIX}-colab-note" style="color:{_MUTED_COLOUR}">{text}</span>')
    if hasattr(note, "add_class"):
        note.add_class(f"{CSS_PREFIX}-colab")
    return [note]


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
        self.upload = upload if upload is not None else widgets.FileUpload(accept=ACCEPT, multiple=True)
        if upload is None:
            self.upload.description = "Images"
        self.label = widgets.Text(description="Class", placeholder="e.g. ripe")
        self.button = widgets.Button(description="Save to folder", icon="save")
        self.note = widgets.HTML()
        colab = _colab_note('uploader.save(widgets.colab_upload(), label="<class>")')
        self.widget = widgets.VBox([self.upload, self.label, self.button, *colab, self.note])
        self.button.on_click(self._on_click)

    def _on_click(self, _button: Any = None) -> None:
        try:
            self.save()
        except Exception as error:  # a callback's traceback would go to the log nobody reads
            self.note.value = (
                f'<span class="{CSS_PREFIX}-error" data-status="error" style="color:{_ERROR_COLOUR}" {LIVE_REGION}>'
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
            f'<span class="{CSS_PREFIX}-message" data-status="saved" {LIVE_REGION}>saved {len(self.last_saved)} '
            f"file(s) into {_esc(display_path(target))}; the audit will skip any that are not images</span>"
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
