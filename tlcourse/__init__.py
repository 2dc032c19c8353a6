"""tlcourse: the helper library behind the transfer-learning course.

Importing the package is cheap and has no side effects: TensorFlow is only imported by the submodules that
need it (``tlcourse.data``, ``tlcourse.models``, ...). Import those explicitly, e.g.
``from tlcourse import config, data, models``.
"""

from tlcourse.errors import AssetMissingError, DataError, TLCourseError

__version__ = "0.1.0"

__all__ = ["AssetMissingError", "DataError", "TLCourseError", "__version__"]
