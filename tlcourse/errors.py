"""The course's own exception type (lesson 00).

Errors a student can cause (a missing file, an unusable folder, offline with nothing cached) are raised as
:class:`TLCourseError` with a one- or two-sentence message that says what went wrong and what to do. The
command line prints that message without a traceback; notebooks show it as the last line of the error.
"""

from __future__ import annotations


class TLCourseError(Exception):
    """A problem the user can fix; its message says how."""


class AssetMissingError(TLCourseError):
    """A weights, metadata or dataset file is not in the mirror or cache, and cannot be downloaded."""


class DataError(TLCourseError):
    """An image folder or dataset cannot be used for training as it is."""
