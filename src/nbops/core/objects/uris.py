"""Data roots: where a store's objects are (a folder or a pyarrow file system URI), and how to show one."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

#: The data root when ``nbops.open(data=...)`` is not given.
DATA_ENV = "NBOPS_DATA_URL"
#: Where a store records its data root (without credentials).
DATA_MARKER_FILE = "data.json"


def configured_data(data: str | os.PathLike[str] | None) -> str | None:
    """The data root asked for: the ``data=`` argument, else ``$NBOPS_DATA_URL``, else None."""
    if data is not None:
        return os.fspath(data)
    return os.environ.get(DATA_ENV) or None


def public_uri(uri: str) -> str:
    """``uri`` without the credentials it may carry (``s3://key:secret@bucket/...``, ``?secret_key=...``)."""
    from nbops.core.redact import without_credentials

    uri = without_credentials(uri)
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def location(uri: str) -> str:
    """What the data is (scheme, bucket, prefix), apart from how it is reached (query options)."""
    parts = urllib.parse.urlsplit(public_uri(uri))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def is_local(uri: str) -> bool:
    """Whether ``uri`` is a path on this machine (no scheme, ``file:``, or a Windows drive)."""
    scheme = urllib.parse.urlsplit(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # C:\... on Windows


def local_path(uri: str) -> Path:
    """The folder a local ``uri`` names, absolute."""
    if urllib.parse.urlsplit(uri).scheme == "file":
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path))
    return Path(uri).expanduser().resolve()


def same_root(a: str, b: str) -> bool:
    """Whether two data roots are the same place (the same folder, or the same scheme, bucket and prefix)."""
    if is_local(a) or is_local(b):
        return is_local(a) and is_local(b) and local_path(a) == local_path(b)
    return location(a) == location(b)
