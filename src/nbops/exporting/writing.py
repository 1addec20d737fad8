"""Writing an export's files inside ``OUT`` and nowhere else.

    >>> check_targets(Path("pipelines/fraud"), ["feature_pipeline.py"])    # doctest: +SKIP
    >>> write_files(Path("pipelines/fraud"), {"feature_pipeline.py": "..."})  # doctest: +SKIP
    ['feature_pipeline.py']

Export never writes through a symbolic link: ``OUT/<stem>``, every folder
below it and every file it writes must be a real folder or file (or not
exist yet), else the export is refused with an :class:`ExportError` naming
the path, before anything is written.  Each file goes to a temporary file
created exclusively beside it (``O_CREAT | O_EXCL | O_NOFOLLOW``, a random
name), flushed and synced, then renamed over the target, which replaces the
folder entry and never follows it.  Where the platform allows, folders are
held open and every step is relative to them, so a link planted while the
export runs is refused too rather than followed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from nbops.errors import ExportError

__all__ = ["check_targets", "folder_in", "write_files"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
#: Folder descriptors for every step where the platform has them (not on Windows).
_AT = {os.open, os.stat, os.mkdir, os.unlink, os.rename} <= os.supports_dir_fd and bool(_NOFOLLOW and _DIRECTORY)


def _link_error(path: Path) -> ExportError:
    return ExportError(
        f"{path} is a symbolic link; export writes only real files and folders inside the output folder: "
        "remove the link (or choose another --out) and export again"
    )


def _kind_error(path: Path, want: str) -> ExportError:
    return ExportError(
        f"{path} exists and is not a {want}; export writes a {want} there: move it away and export again"
    )


def _parts(name: str) -> list[str]:
    parts = list(PurePosixPath(name).parts)
    if not parts or PurePosixPath(name).is_absolute() or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise ExportError(f"{name!r} is not a path inside the export folder")
    return parts


def folder_in(root: Path, name: str) -> Path:
    """``root / name`` where ``name`` is one plain folder name (the pipeline's), else an ExportError."""
    if len(_parts(name)) != 1 or "\0" in name:
        raise ExportError(f"the pipeline name {name!r} is not a folder name")
    return root / name


def check_targets(out_dir: Path, names: Iterable[str]) -> None:
    """Refuse (writing nothing) when ``out_dir`` or any path the export writes in it is a link or of the wrong kind."""
    _check(out_dir.parent, "folder")
    _check(out_dir, "folder")
    for name in names:
        parts = _parts(name)
        folder = out_dir
        for part in parts[:-1]:
            folder = folder / part
            if not _check(folder, "folder"):
                break  # nothing below a missing folder exists yet
        else:
            _check(folder / parts[-1], "file")


def _check(path: Path, want: str) -> bool:
    """True when ``path`` exists as a ``want``; False when it does not exist; else an ExportError."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    except NotADirectoryError:  # a file where a folder above it should be
        raise _kind_error(path.parent, "folder") from None
    if stat.S_ISLNK(mode):
        raise _link_error(path)
    if not (stat.S_ISDIR(mode) if want == "folder" else stat.S_ISREG(mode)):
        raise _kind_error(path, want)
    return True


def write_files(out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files whose content differs, each atomically; return the names written.

    ``out_dir``'s parent is created if missing (it is the resolved ``OUT``);
    ``out_dir`` and the folders below it are created as real folders.
    """
    check_targets(out_dir, files)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if not _AT:
        return _write_by_path(out_dir, files)
    written = []
    root = _open_folder(None, out_dir.parent, out_dir.parent)
    try:
        top = _open_folder(root, out_dir.name, out_dir, create=True)
    finally:
        os.close(root)
    try:
        for name, content in files.items():
            parts = _parts(name)
            folder, path, opened = top, out_dir, []
            try:
                for part in parts[:-1]:
                    path = path / part
                    folder = _open_folder(folder, part, path, create=True)
                    opened.append(folder)
                if _write_one(folder, parts[-1], path / parts[-1], content.encode("utf-8")):
                    written.append(name)
            finally:
                for fd in opened:
                    os.close(fd)
    finally:
        os.close(top)
    return written


def _open_folder(parent: int | None, name: str | Path, shown: Path, create: bool = False) -> int:
    """A descriptor of the real folder ``name`` in ``parent`` (created if asked); a link is refused."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent)
    try:
        return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=parent)
    except OSError as exc:
        if _is_link(parent, name):
            raise _link_error(shown) from None
        if isinstance(exc, NotADirectoryError):
            raise _kind_error(shown, "folder") from None
        raise


def _is_link(folder: int | None, name: str | Path) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _write_one(folder: int, name: str, shown: Path, data: bytes) -> bool:
    """Write ``data`` to ``name`` in ``folder`` unless it already holds it; True when written."""
    try:
        mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if stat.S_ISLNK(mode):
            raise _link_error(shown)
        if not stat.S_ISREG(mode):
            raise _kind_error(shown, "file")
        if _read(folder, name, shown) == data:
            return False
    tmp, fd = _exclusive_temp(folder, name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # Generated files, not versions: replacing them is the point. rename() replaces
        # the folder entry itself, so a link planted meanwhile is replaced, not followed.
        os.rename(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder)
        raise
    os.fsync(folder)
    return True


def _read(folder: int, name: str, shown: Path) -> bytes:
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=folder)
    except OSError:
        if _is_link(folder, name):
            raise _link_error(shown) from None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _exclusive_temp(folder: int | None, name: str, directory: Path | None = None) -> tuple[str, int]:
    """A new temporary file beside ``name`` (never an existing file, never through a link): (its name, fd).

    Relative to the folder descriptor ``folder``, or, without one, inside ``directory``.
    """
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW | _CLOEXEC | _BINARY
    shown = name if len(name.encode("utf-8", "surrogateescape")) <= 200 else "export"  # within NAME_MAX
    for _ in range(100):
        tmp = f".{shown}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        if directory is not None:
            tmp = str(directory / tmp)
        try:
            return tmp, os.open(tmp, flags, 0o666, dir_fd=folder)
        except FileExistsError:
            continue
    raise ExportError(f"cannot create a temporary file beside {name}")


def _write_by_path(out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """:func:`write_files` where folders cannot be held open: the same checks, by path."""
    written = []
    for name, content in files.items():
        parts = _parts(name)
        folders = [out_dir.joinpath(*parts[:depth]) for depth in range(len(parts))]  # out_dir, then each below
        for folder in folders:
            if not _check(folder, "folder"):
                folder.mkdir()
        target = out_dir.joinpath(*parts)
        data = content.encode("utf-8")
        if _check(target, "file") and target.read_bytes() == data:
            continue
        tmp_name, fd = _exclusive_temp(None, parts[-1], folders[-1])
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(name)
    return written
