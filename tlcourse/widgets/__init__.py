"""Notebook widgets: classify uploaded photos, explore how deep to fine-tune, and choose a decision threshold
(lessons 05, 06 and 08).

Small interactive tools, all built from ``ipywidgets`` (imported inside the functions, so importing this
module costs nothing and works without Jupyter):

- :func:`upload_and_predict` (lesson 08) shows a file-upload button; every image chosen is decoded safely,
  classified by the student's model with exactly the preprocessing used in training, and shown as a
  thumbnail with its top classes and probability bars. Files that are not usable images (a web page saved
  as ``photo.jpg``, an empty or truncated file, a file over the size limit) get a one-line reason instead,
  and never stop the other files being classified.
- :func:`folder_uploader` (lesson 08) saves uploaded photos into ``folder/<class>/`` for training; any
  problem shows as one line under its button.
- :func:`colab_upload` (lesson 08, Colab only) reads photos through Colab's own file picker, which keeps the
  files of about 1 MB or more that Colab's upload widget loses; both widgets above say so on Colab.
- :func:`threshold_explorer` (lesson 06) is a slider over a binary classifier's decision threshold with its
  precision, recall and counts, live; a headless run shows its table instead.
- :func:`unfreeze_explorer` (lesson 05) is a slider over the layers of a backbone with a live report of what
  fine-tuning from that layer would train (:func:`tlcourse.diagnose.unfreeze_summary`), without touching the model.

They work with ipywidgets 8 (JupyterLab 4) and ipywidgets 7.7.1 (Google Colab), whose ``FileUpload.value``
differ: :func:`read_uploads` accepts either. An uploaded file's name is never used as a path as it is:
:func:`sanitize_filename` reduces it to a plain file name, and :func:`save_uploads` keeps every file inside
the folder it is given. Everything renders into an ``ipywidgets.HTML`` (not an ``Output``), so the widgets
can be driven and inspected headless in tests, and in Run-All/papermill nothing ever waits for an upload.

Layout: :mod:`tlcourse.widgets.uploads` (reading, naming, saving and decoding uploaded files),
:mod:`tlcourse.widgets.predictor` (the upload-and-predict widget and the folder uploader),
:mod:`tlcourse.widgets.unfreeze` (the unfreeze explorer), :mod:`tlcourse.widgets.threshold` (the threshold
explorer) and :mod:`tlcourse.widgets.display` (what they share:
CSS names, colours, escaping, showing a widget in ipywidgets 7 and 8). This package names the public API.
"""

from __future__ import annotations

from tlcourse.widgets.display import CSS_PREFIX
from tlcourse.widgets.predictor import (
    FolderUploader,
    UploadPredictor,
    folder_uploader,
    render_results,
    upload_and_predict,
)
from tlcourse.widgets.threshold import ThresholdExplorer, threshold_explorer
from tlcourse.widgets.unfreeze import UnfreezeExplorer, unfreeze_explorer
from tlcourse.widgets.uploads import (
    MAX_DECODE_PIXELS,
    MAX_NAME_BYTES,
    MAX_NAME_CHARS,
    MAX_SAVE_BYTES,
    MAX_UPLOAD_BYTES,
    THUMBNAIL_SIZE,
    Upload,
    UploadRejected,
    colab_upload,
    decode_upload,
    read_uploads,
    sanitize_filename,
    save_uploads,
)

__all__ = [
    "CSS_PREFIX",
    "FolderUploader",
    "MAX_DECODE_PIXELS",
    "MAX_NAME_BYTES",
    "MAX_NAME_CHARS",
    "MAX_SAVE_BYTES",
    "MAX_UPLOAD_BYTES",
    "THUMBNAIL_SIZE",
    "ThresholdExplorer",
    "UnfreezeExplorer",
    "Upload",
    "UploadPredictor",
    "UploadRejected",
    "colab_upload",
    "decode_upload",
    "folder_uploader",
    "read_uploads",
    "render_results",
    "sanitize_filename",
    "save_uploads",
    "threshold_explorer",
    "unfreeze_explorer",
    "upload_and_predict",
]
