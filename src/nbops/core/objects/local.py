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

import contextlib
import errno
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from nbops.core import _faults
from nbops.core.objects.base import Handle as Handle  # the interface, for the modules that name it here
from nbops.core.objects.base import ObjectFiles as ObjectFiles

OBJECT_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"


class ObjectStore:
    """Files named by their digest: ``objects/<first 2 hex>/<digest>.parquet``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"

    def path(self, digest: str) -> Path:
        """The file of object ``digest``; a string that is not a digest raises ``ValueError``."""
        if len(digest) != 32 or not set(digest) <= _HEX:
            raise ValueError(f"not a digest: {digest!r}")
        return self.objects_dir / digest[:2] / f"{digest}{OBJECT_SUFFIX}"

    def exists(self, digest: str) -> bool:
        """Whether object ``digest`` is stored."""
        return self.path(digest).exists()

    # The accessors below are what columns, verify and gc use, so that a
    # store whose objects live elsewhere (nbops.core.objects.remote) plugs in.
    def location(self, digest: str) -> str:
        """The object's path as text, for messages."""
        return str(self.path(digest))

    def size(self, digest: str) -> int:
        """The object's size in bytes."""
        return self.path(digest).stat().st_size

    def source(self, digest: str) -> Path:
        """What ``pyarrow.parquet.read_table`` reads for this object."""
        return self.path(digest)

    def random_access(self, digest: str) -> Path:
        """What ``pyarrow.parquet.ParquetFile`` reads parts of (the file itself)."""
        return self.path(digest)

    def publish(self, digest: str, write: Callable[[Path], None], sound: Callable[[], bool] | None = None) -> int:
        """Write an object with ``write(tmp_path)`` and publish it atomically.

        Returns the bytes written, or 0 when a sound copy already existed
        (then ``write`` is not called).  An existing copy is trusted only if
        ``sound()`` says its content still matches its digest; a corrupt or
        truncated one is replaced by the good bytes (an atomic rename over a
        file that is wrong anyway: readers see the bad copy or the good one).
        """
        final = self.path(digest)
        replace = False
        if final.exists():
            if sound is None or sound():
                _touch(final)  # tells a concurrent `gc` that this object is wanted again
                return 0
            replace = True
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{digest}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
        try:
            write(tmp)
            _faults.reached("after_temp_write")
            _fsync_file(tmp)
            _faults.reached("before_publish")
            size = tmp.stat().st_size
            final.parent.mkdir(parents=True, exist_ok=True)
            if replace:
                os.replace(tmp, final)
                published = True
            else:
                published = _link_no_replace(tmp, final)
            if published:
                _fsync_dir(final.parent)
            return size if published else 0
        finally:
            tmp.unlink(missing_ok=True)

    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        """Every object file, as (digest, path): regular files only, no symlink followed."""
        for sub in _entries(self.objects_dir):
            if not sub.is_dir(follow_symlinks=False) or len(sub.name) != 2:
                continue
            for entry in _entries(Path(sub.path)):
                name = entry.name
                if not name.endswith(OBJECT_SUFFIX) or not entry.is_file(follow_symlinks=False):
                    continue
                digest = name[: -len(OBJECT_SUFFIX)]
                if len(digest) == 32 and digest[:2] == sub.name and set(digest) <= _HEX:
                    yield digest, Path(entry.path)

    def iter_tmp(self) -> Iterator[Path]:
        """Temporary files being written (or left by a killed writer): regular files in ``tmp/`` only."""
        for entry in _entries(self.tmp_dir):
            if entry.is_file(follow_symlinks=False):
                yield Path(entry.path)

    @staticmethod
    def older_than(path: Path, seconds: float) -> bool:
        """Whether ``path`` was last modified at least ``seconds`` ago (False once it is gone)."""
        try:
            return time.time() - path.lstat().st_mtime >= seconds
        except FileNotFoundError:
            return False

    @staticmethod
    def size_of(path: Path) -> int:
        """The size of ``path`` in bytes (a symlink's own, never its target's)."""
        return path.lstat().st_size

    def remove(self, path: Path) -> None:
        """Delete one object or temporary file of this store; anything else is refused, never deleted."""
        inside = path.parent.parent == self.objects_dir or path.parent == self.tmp_dir
        if not inside or path.is_symlink() or (path.exists() and not path.is_file()):
            raise ValueError(f"not a file of this store's objects or tmp folders: {path}")
        path.unlink(missing_ok=True)


_HEX = frozenset("0123456789abcdef")


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of a real (not symlinked) folder, sorted by name; none if it does not exist."""
    if folder.is_symlink():
        return []
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


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
    with contextlib.suppress(OSError):
        os.utime(path)
