"""Where the course keeps what it downloads, and the two ways it downloads (lesson 00).

Keras' own files (ImageNet weights, the class index) are fetched with Keras' mechanism,
``keras.utils.get_file``, into the Keras cache, exactly where Keras itself would look. The course's own files
(the TFLite ImageNet classifier, sample photos, the ImageNet/WordNet lists, the flower photos) are fetched with
pooch: checked against their registry hash, retried when a connection drops, and kept in the per-user mirror
(:func:`user_mirror_dir`), which every lesson and command searches with no setting at all.
:mod:`tlcourse.assets` decides what to fetch; this module only fetches.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from tlcourse.errors import AssetMissingError

HOME_ENV = "TLCOURSE_HOME"
"""Moves the per-user folder of the course (the per-user mirror is then ``$TLCOURSE_HOME/mirror``)."""
RETRIES = 2
"""How many times pooch tries a course file again after a failed download."""


class DownloadFailed(AssetMissingError):
    """A download failed; its message is the reason only (the caller names the file and the fixes)."""


def course_home() -> Path:
    """The per-user folder of the course: ``$TLCOURSE_HOME``, else the system's per-user cache folder (pooch's
    ``os_cache``: ``~/.cache/tlcourse`` on Linux, ``~/Library/Caches/tlcourse`` on macOS,
    ``%LOCALAPPDATA%\\tlcourse\\tlcourse\\Cache`` on Windows) (lesson 00)."""
    value = os.environ.get(HOME_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    import pooch

    return Path(pooch.os_cache("tlcourse"))


def user_mirror_dir() -> Path:
    """The per-user mirror: filled by ``tlcourse assets prepare`` (no ``--mirror``) and by downloads of the
    course's own files, and found by every lesson and command without any setting (lesson 00)."""
    return course_home() / "mirror"


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _short_reason(error: BaseException) -> str:
    """A download failure in a few words: the HTTP status, the host that could not be reached, or the checksum."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}".strip()
    if isinstance(error, requests.ConnectionError):
        host = getattr(getattr(error, "request", None), "url", None) or ""
        host = host.split("/")[2] if host.count("/") >= 2 else "the server"
        return f"cannot reach {host} (offline, or the name does not resolve)"
    if isinstance(error, ValueError) and "hash" in str(error).lower():
        return "the downloaded file's checksum differs from the expected one"
    return _first_line(error)


def download_keras_file(name: str, url: str, file_hash: str | None, folder: Path) -> Path:
    """One of Keras' files with ``keras.utils.get_file`` (its URL, its md5/sha256) into ``folder``."""
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    import keras

    # get_file falls back to /tmp/.keras when cache_dir does not exist yet (it checks os.access): make it first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = keras.utils.get_file(
            name, url, file_hash=file_hash, cache_subdir=folder.name, cache_dir=str(folder.parent)
        )
    except KeyboardInterrupt:
        raise
    except Exception as error:  # keras wraps urllib errors in a bare Exception("URL fetch failure ...")
        reason = _first_line(error)
        if reason.startswith("URL fetch failure") and " -- " in reason:
            reason = reason.split(" -- ", 1)[1]  # keep the cause; the caller names the URL
        raise DownloadFailed(reason) from None
    return Path(path)


def download_course_file(name: str, url: str, file_hash: str | None, folder: Path) -> Path:
    """One of the course's own files with pooch into ``folder``: checked against ``file_hash`` (64 hex digits:
    sha256, 32: md5) when there is one, retried :data:`RETRIES` times."""
    import pooch

    created = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    known_hash = None
    if file_hash:
        known_hash = f"{'sha256' if len(file_hash) == 64 else 'md5'}:{file_hash.lower()}"
    fetcher = pooch.create(
        path=folder, base_url="", registry={name: known_hash}, urls={name: url}, retry_if_failed=RETRIES
    )
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch announces each download with the machine's absolute path
    try:
        return Path(fetcher.fetch(name, progressbar=False))
    except KeyboardInterrupt:
        raise
    except Exception as error:  # requests' connection and HTTP errors, pooch's hash mismatch (ValueError)
        for empty in created:  # leave no empty per-user mirror behind: it would pass for a real one
            with contextlib.suppress(OSError):
                empty.rmdir()
        raise DownloadFailed(_short_reason(error)) from None
    finally:
        logger.setLevel(level)
