"""Immutable, content-addressed object files: one interface (:mod:`.base`), a local folder
(:mod:`.local`) and any pyarrow file system (:mod:`.remote`).

:func:`open_objects` chooses the implementation from the store's data root
(``data=`` or ``$NBOPS_DATA_URL``, recorded in ``data.json``): a path is a
folder, any other URI a pyarrow file system.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbops.core import markers
from nbops.core.objects.base import ObjectFiles as ObjectFiles
from nbops.errors import StoreError

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


def _location(uri: str) -> str:
    """What the data is (scheme, bucket, prefix), apart from how it is reached (query options)."""
    parts = urllib.parse.urlsplit(public_uri(uri))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _is_local(uri: str) -> bool:
    scheme = urllib.parse.urlsplit(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # C:\... on Windows


def _local_path(uri: str) -> Path:
    if urllib.parse.urlsplit(uri).scheme == "file":
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path))
    return Path(uri).expanduser().resolve()


def _same_root(a: str, b: str) -> bool:
    if _is_local(a) or _is_local(b):
        return _is_local(a) and _is_local(b) and _local_path(a) == _local_path(b)
    return _location(a) == _location(b)


def read_data_marker(root: Path) -> str | None:
    """The data root recorded in ``data.json``, if the store has one."""
    return markers.read(root, DATA_MARKER_FILE, "data", "s3://bucket/prefix")


def _write_data_marker(root: Path, uri: str) -> None:
    """Record the data root of a store (racing openers agree or fail)."""
    markers.write(root, DATA_MARKER_FILE, "data", uri, _same_root)


def open_objects(root: Path, data: str | os.PathLike[str] | None, committed: Callable[[str], bool]) -> ObjectFiles[Any]:
    """The object store of the store folder ``root``; records a new data root, refuses a different one.

    ``committed(digest)`` says whether the catalog has a row for an object
    (a remote publish uploads an existing orphan again, see the module doc).
    """
    asked = configured_data(data)
    source = "data=" if data is not None else f"${DATA_ENV}"
    recorded = read_data_marker(root)
    if recorded is not None:
        if asked is not None and not _same_root(asked, recorded):
            raise StoreError(
                f"the store {root} keeps its data in {recorded} ({DATA_MARKER_FILE}), but {source} asks for "
                f"{public_uri(asked)}; open it without {source}, or use another folder for a store on that data root"
            )
        # The recorded URI has no credentials: they come from the usual
        # places (AWS_ACCESS_KEY_ID, ~/.aws, ...) unless the caller's URI has them.
        uri = asked if asked is not None else recorded
    elif asked is None:
        from nbops.core.objects.local import ObjectStore

        return ObjectStore(root)
    else:
        if (root / "objects").exists():
            raise StoreError(
                f"the store {root} keeps its data in its folder ({root / 'objects'}), but {source} asks for "
                f"{public_uri(asked)}; open it without {source}, or use a new folder for a store on that data root"
            )
        uri = asked
    from nbops.core.objects.local import ObjectStore

    objects: ObjectFiles[Any]
    if _is_local(uri):
        objects = ObjectStore(_local_path(uri))
    else:
        from nbops.core.objects.remote import RemoteObjectStore

        objects = RemoteObjectStore(uri, committed)
    if recorded is None:
        _write_data_marker(root, str(_local_path(uri)) if _is_local(uri) else public_uri(uri))
    return objects
