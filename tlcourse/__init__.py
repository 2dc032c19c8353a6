"""tlcourse: the helper library behind the transfer-learning course.

Importing the package is cheap and has no side effects: TensorFlow is only imported by the submodules that
need it (``tlcourse.data``, ``tlcourse.models``, ...). Import those explicitly, e.g.
``from tlcourse import config, data, models``.

Conventions every module keeps:

- Datasets yield ``float32`` images in ``[0, 255]`` of shape ``[B, S, S, 3]`` and ``int32`` class indices;
  class names are sorted alphabetically. A backbone's preprocessing is a layer inside the model
  (:func:`tlcourse.models.preprocessing_layer`), never part of the dataset.
- A model's identity travels with it: :func:`tlcourse.backbones.identity` reads its architecture, width, input
  size and a digest of its weights from the object itself, so no helper takes a description of the backbone,
  and every cache and resume key is derived from the identity and the data's fingerprint.
- Errors a user can fix are :class:`TLCourseError` (or :class:`AssetMissingError`, :class:`DataError`) with a
  one- or two-sentence message: what went wrong and what to do.
- Each public helper's docstring names the lesson that shows its plain Keras version first.
- Layout: student-facing modules (``models``, ``data``, ``features``, ``train``, ``diagnose``, ``evaluate``,
  ``predict``, ``plots``, ``export``, ``shift``, ``widgets``, ``checks``) sit on shared low-level ones
  (``backend``, ``config``, ``errors``, ``assets``, ``imageio``); the instructor and admin side (``cli``,
  ``pipeline``, ``runner``, ``grade``, ``record``) is only imported by the ``tlcourse`` command.
"""

from tlcourse.errors import AssetMissingError, DataError, TLCourseError

__version__ = "0.1.0"

__all__ = ["AssetMissingError", "DataError", "TLCourseError", "__version__"]
