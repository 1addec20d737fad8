"""Immutable, content-addressed files under ``<store>/objects``.

Publishing follows one protocol (see docs/reliability.md):

1. write the data to a temporary file in ``<store>/tmp`` (same file system),
2. flush and ``fsync`` it,
3. publish it under its content address with ``os.link``, which never
   replaces an existing file (a second writer of the same content finds the
   name taken and drops its copy),
4. ``fsync`` the folder so the new name survives a power cut.

An object without a catalog row is an orphan: a writer died before its
catalog commit.  :meth:`ObjectStore.orphans` lists them and ``nbops gc``
removes them once they are older than a grace period, so that a writer that
is between publishing and committing is never robbed.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from nbops import _faults

OBJECT_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"


class ObjectStore:
    """Files named by their digest: ``objects/<first 2 hex>/<digest>.parquet``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"

    def path(self, digest: str) -> Path:
        if len(digest) != 32 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a digest: {digest!r}")
        return self.objects_dir / digest[:2] / f"{digest}{OBJECT_SUFFIX}"

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    # The accessors below are what columns, verify and gc use, so that a
    # store whose objects live elsewhere (nbops.objects_remote) plugs in.
    def location(self, digest: str) -> str:
        return str(self.path(digest))

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def source(self, digest: str) -> Path:
        """What ``pyarrow.parquet.read_table`` reads for this object."""
        return self.path(digest)

    def publish(self, digest: str, write: Callable[[Path], None]) -> int:
        """Write an object with ``write(tmp_path)`` and publish it atomically.

        Returns the bytes written, or 0 when the object already existed (then
        ``write`` is not called).
        """
        final = self.path(digest)
        if final.exists():
            _touch(final)  # tells a concurrent `gc` that this object is wanted again
            return 0
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{digest}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
        try:
            write(tmp)
            _faults.reached("after_temp_write")
            _fsync_file(tmp)
            _faults.reached("before_publish")
            size = tmp.stat().st_size
            final.parent.mkdir(parents=True, exist_ok=True)
            published = _link_no_replace(tmp, final)
            if published:
                _fsync_dir(final.parent)
            return size if published else 0
        finally:
            tmp.unlink(missing_ok=True)

    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        if not self.objects_dir.exists():
            return
        for sub in sorted(self.objects_dir.iterdir()):
            if not sub.is_dir():
                continue
            for path in sorted(sub.glob(f"*{OBJECT_SUFFIX}")):
                yield path.name[: -len(OBJECT_SUFFIX)], path

    def iter_tmp(self) -> Iterator[Path]:
        if self.tmp_dir.exists():
            yield from sorted(self.tmp_dir.iterdir())

    @staticmethod
    def older_than(path: Path, seconds: float) -> bool:
        try:
            return time.time() - path.stat().st_mtime >= seconds
        except FileNotFoundError:
            return False

    @staticmethod
    def size_of(path: Path) -> int:
        return path.stat().st_size

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)


def _link_no_replace(src: Path, dst: Path) -> bool:
    """Give ``src`` the extra name ``dst`` unless ``dst`` exists; True if we published."""
    try:
        os.link(src, dst)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
    # A file system without hard links: rename only if the name is free.  Two
    # writers racing here publish identical content, so the loser's rename is
    # harmless; this path is never taken on local POSIX disks.
    if dst.exists():
        return False
    os.rename(src, dst)
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows cannot open folders; NTFS journals names anyway
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass
