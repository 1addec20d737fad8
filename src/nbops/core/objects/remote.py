"""Content-addressed objects on any pyarrow filesystem (S3 and S3-compatible servers, GCS, HDFS, ...).

A store whose data root is a URI keeps its catalog, ``mlflow.db`` and
``live_runs/`` in the store folder and its objects at
``<root>/objects/<first 2 hex>/<digest>.parquet`` on that filesystem::

    store = nbops.open(".nbops", data="s3://bucket/team?endpoint_override=127.0.0.1:9000&scheme=http")

Object storage has no rename and no hard link, so :class:`RemoteObjectStore`
publishes differently from :class:`nbops.core.objects.local.ObjectStore` but keeps its
promises:

1. the column is serialised to Parquet in memory;
2. if its content address already exists, nothing is uploaded (an object
   under a digest can only ever hold that digest's bytes);
3. otherwise the bytes go straight to the final key. An S3 ``PUT`` (or a
   multipart upload) becomes visible only when complete, so a writer killed
   mid-upload leaves no object or a whole one, never a torn one; a retried
   upload of the same content writes the same bytes again.

The catalog commit stays the commit point: an object without a catalog row is
an orphan that ``nbops gc`` removes once older than the grace period. An
orphan that a new version reuses is uploaded again before that version
commits, so that its time tells a concurrent ``gc`` it is wanted (the local
store touches the file for the same reason).

The data root a store was created with is recorded in ``data.json`` in the
store folder (without credentials); the next open uses it, and an open that
asks for another one is refused. Nothing here imports ``pyarrow.fs`` until a
store with a data root is opened.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbops.core import _faults
from nbops.core.objects.local import OBJECT_SUFFIX
from nbops.core.objects.uris import DATA_ENV as DATA_ENV  # where they lived before
from nbops.core.objects.uris import DATA_MARKER_FILE as DATA_MARKER_FILE
from nbops.core.objects.uris import location, public_uri
from nbops.errors import StoreError

if TYPE_CHECKING:
    import pyarrow as pa


_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class RemoteObject:
    """One listed object: its key on the filesystem, size and modification time (epoch seconds)."""

    uri: str
    key: str
    size: int
    mtime: float

    def __str__(self) -> str:
        return self.uri


class RemoteObjectStore:
    """Objects named by their digest under a pyarrow filesystem URI; same interface as ``ObjectStore``."""

    def __init__(self, uri: str, committed: Callable[[str], bool] | None = None) -> None:
        from pyarrow import fs as pafs

        self.uri = public_uri(uri)
        self._committed = committed or (lambda digest: True)
        try:
            self.fs, base = pafs.FileSystem.from_uri(uri)
        except (ValueError, OSError) as exc:
            raise StoreError(f"cannot use the data root {self.uri}: {exc}") from None
        self.base = base.rstrip("/")
        if not self.base:
            raise StoreError(f"the data root {self.uri} names no bucket or folder; use e.g. s3://bucket/prefix")
        self._uri_base = location(uri)
        self._check_reachable()

    def __repr__(self) -> str:
        return f"<nbops.RemoteObjectStore {self.uri}>"

    def _check_reachable(self) -> None:
        """Fail at open, naming the endpoint, rather than at the first write."""
        from pyarrow import fs as pafs

        bucket = self.base.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except OSError as exc:
            raise StoreError(f"cannot reach the data root {self.uri} ({self.endpoint}): {exc}") from None
        if info.type == pafs.FileType.NotFound:
            raise StoreError(
                f"the data root {self.uri} ({self.endpoint}) does not exist: there is no bucket {bucket!r}; "
                "create it first"
            )

    @property
    def endpoint(self) -> str:
        """The server the data root is reached at, for messages: ``endpoint HOST:PORT`` or the scheme's default."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.uri).query)
        endpoint = query.get("endpoint_override", [""])[0]
        return f"endpoint {endpoint}" if endpoint else f"{urllib.parse.urlsplit(self.uri).scheme} default endpoint"

    # -- naming ------------------------------------------------------------
    def key(self, digest: str) -> str:
        """The object's key on the filesystem; a string that is not a digest raises ``ValueError``."""
        if len(digest) != 32 or not set(digest) <= _HEX:
            raise ValueError(f"not a digest: {digest!r}")
        return f"{self.base}/objects/{digest[:2]}/{digest}{OBJECT_SUFFIX}"

    def location(self, digest: str) -> str:
        """The object's URI, for messages."""
        return f"{self._uri_base}/objects/{digest[:2]}/{digest}{OBJECT_SUFFIX}"

    def _info(self, digest: str) -> Any:
        return self.fs.get_file_info(self.key(digest))

    def exists(self, digest: str) -> bool:
        """Whether object ``digest`` is stored (one request to the server)."""
        from pyarrow import fs as pafs

        return bool(self._info(digest).type == pafs.FileType.File)

    def size(self, digest: str) -> int:
        """The object's size in bytes; ``FileNotFoundError`` naming its URI when it is missing."""
        from pyarrow import fs as pafs

        info = self._info(digest)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(self.location(digest))
        return int(info.size)

    # -- writing -----------------------------------------------------------
    def publish(self, digest: str, write: Callable[[Any], None], sound: Callable[[], bool] | None = None) -> int:
        """Write an object with ``write(sink)`` and upload it to its content address.

        Returns the bytes uploaded, or 0 when a sound copy already existed. An
        existing object without a catalog row (an orphan) is uploaded again,
        which refreshes its time so that a concurrent ``gc`` keeps it; one
        that ``sound()`` finds corrupt or truncated is uploaded again whole.
        """
        key = self.key(digest)
        if self.exists(digest):
            if sound is not None and not sound():
                data = _serialise(write)
                self._upload(key, data)
                return int(data.size)
            if self._committed(digest):
                return 0
            self._upload(key, _serialise(write))
            return 0
        data = _serialise(write)
        _faults.reached("before_publish")
        self._upload(key, data)
        return int(data.size)

    def _upload(self, key: str, data: pa.Buffer) -> None:
        # Straight to the final key: object storage makes an upload visible
        # only once it is complete, and two writers of one digest write the
        # same bytes, so there is nothing for a rename to protect.
        try:
            with self.fs.open_output_stream(key) as out:
                out.write(data)
        except OSError as exc:
            where = f"{self._uri_base}/{key[len(self.base) + 1 :]}"
            raise StoreError(f"cannot upload {where} ({self.endpoint}): {exc}") from None

    # -- reading -----------------------------------------------------------
    def source(self, digest: str) -> pa.BufferReader:
        """The object's bytes, in a form ``pyarrow.parquet.read_table`` reads."""
        import pyarrow as pa

        # One column is read whole anyway; reading it in one request avoids a
        # round trip per Parquet page.
        with self.fs.open_input_stream(self.key(digest)) as stream:
            return pa.BufferReader(stream.read())

    def random_access(self, digest: str) -> Any:
        """A file read by ranged requests: only the footer and the row groups asked for travel."""
        return self.fs.open_input_file(self.key(digest))

    # -- listing and removal (gc, verify) ------------------------------------
    def iter_objects(self) -> Iterator[tuple[str, RemoteObject]]:
        """Every object under ``objects/``, as (digest, :class:`RemoteObject`), in digest order; other keys skipped."""
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(f"{self.base}/objects", recursive=True, allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            name = info.base_name
            if info.type != pafs.FileType.File or not name.endswith(OBJECT_SUFFIX):
                continue
            digest = name[: -len(OBJECT_SUFFIX)]
            if len(digest) != 32 or not set(digest) <= _HEX or info.path != self.key(digest):
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            found.append((digest, RemoteObject(self.location(digest), info.path, int(info.size), mtime)))
        yield from sorted(found, key=lambda item: item[0])

    def iter_tmp(self) -> Iterator[RemoteObject]:
        """Nothing: uploads go straight to their final key (an unfinished one is invisible)."""
        return iter(())

    def older_than(self, obj: RemoteObject, seconds: float) -> bool:
        """Asks the server again: a writer may have uploaded the object anew since it was listed."""
        from pyarrow import fs as pafs

        info = self.fs.get_file_info(obj.key)
        if info.type != pafs.FileType.File or info.mtime is None:
            return False
        return bool(time.time() - info.mtime.timestamp() >= seconds)

    @staticmethod
    def size_of(obj: RemoteObject) -> int:
        """The object's size in bytes, as listed."""
        return obj.size

    def remove(self, obj: RemoteObject) -> None:
        """Delete the object; one already gone is no error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(obj.key)


def _serialise(write: Callable[[Any], None]) -> pa.Buffer:
    """The object's Parquet bytes, written by ``write`` into memory."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    write(sink)
    buffer: pa.Buffer = sink.getvalue()
    _faults.reached("after_temp_write")
    return buffer
