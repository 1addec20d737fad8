"""Immutable, content-addressed object files: one interface (:mod:`.base`), a local folder
(:mod:`.local`) and any pyarrow file system (:mod:`.remote`).

:func:`open_objects` chooses the implementation from the store's data root
(``data=`` or ``$NBOPS_DATA_URL``, recorded in ``data.json``): a path is a
folder, any other URI a pyarrow file system.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbops.core import markers
from nbops.core.objects.base import ObjectFiles as ObjectFiles
from nbops.core.objects.uris import DATA_ENV as DATA_ENV
from nbops.core.objects.uris import DATA_MARKER_FILE as DATA_MARKER_FILE
from nbops.core.objects.uris import configured_data, is_local, local_path, public_uri, same_root
from nbops.errors import StoreError


def read_data_marker(root: Path) -> str | None:
    """The data root recorded in ``data.json``, if the store has one."""
    return markers.read(root, DATA_MARKER_FILE, "data", "s3://bucket/prefix")


def _write_data_marker(root: Path, uri: str) -> None:
    """Record the data root of a store (racing openers agree or fail)."""
    markers.write(root, DATA_MARKER_FILE, "data", uri, same_root)


def open_objects(root: Path, data: str | os.PathLike[str] | None, committed: Callable[[str], bool]) -> ObjectFiles[Any]:
    """The object store of the store folder ``root``; records a new data root, refuses a different one.

    ``committed(digest)`` says whether the catalog has a row for an object
    (a remote publish uploads an existing orphan again, see the module doc).
    """
    asked = configured_data(data)
    source = "data=" if data is not None else f"${DATA_ENV}"
    recorded = read_data_marker(root)
    if recorded is not None:
        if asked is not None and not same_root(asked, recorded):
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
    if is_local(uri):
        objects = ObjectStore(local_path(uri))
    else:
        from nbops.core.objects.remote import RemoteObjectStore

        objects = RemoteObjectStore(uri, committed)
    if recorded is None:
        _write_data_marker(root, str(local_path(uri)) if is_local(uri) else public_uri(uri))
    return objects
