"""Small file-system helpers: atomic writes, content hashes, paths that stay inside their folder, and
what a failed write means."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from pathlib import Path

from .errors import DiskError, UnsafePath

NOTHING_LOST = ("Nothing was lost: dcloop replaces the label table, the results and its own files only "
                "whole, so each is as it was before or complete")
# errno -> (what happened, what to do)
WRITE_FAILURES = {
    errno.ENOSPC: ("cannot write: no space left on the device", "free some space"),
    errno.EDQUOT: ("cannot write: the disk quota is used up", "free some space"),
    errno.EROFS: ("cannot write: the file system is read-only", "make the project folder writable"),
    errno.EACCES: ("permission denied", "give the user running dcloop write access to the project folder"),
    errno.EPERM: ("operation not permitted", "give the user running dcloop write access to the project folder"),
}


def disk_error(error: OSError, path=None) -> DiskError | None:
    """A DiskError naming the path when a file operation failed for space or permission; None for other errors."""
    if error.errno not in WRITE_FAILURES:
        return None
    what, fix = WRITE_FAILURES[error.errno]
    return DiskError(f"{path or error.filename or 'a file'}: {what}. {NOTHING_LOST}. "
                     f"{fix[0].upper()}{fix[1:]}, then run the command again.")


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


def atomic_write_bytes(path: Path, data: bytes, unchanged_since=False, mode: int | None = None) -> bool:
    """Write via a temp file and rename, so a reader or a crash never sees half a file.

    With ``unchanged_since`` (a file_stamp), the rename happens only if the file still has that
    stamp; returns False otherwise, and the caller re-reads and tries again. ``mode`` sets the
    file's permissions (0o600 for private files); by default it keeps the old file's, or a plain open()'s.
    """
    path = Path(path)
    try:
        return replace_atomically(path, data, unchanged_since, mode)
    except OSError as e:
        translated = disk_error(e, path)
        if translated is None:
            raise
        raise translated from e


def replace_atomically(path: Path, data: bytes, unchanged_since, mode: int | None = None) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); keep the mode a plain open() would give, or the old one.
        os.chmod(tmp, existing_mode(path) if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if unchanged_since is not False and file_stamp(path) != unchanged_since:
            os.unlink(tmp)
            return False
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def private_folder(path: Path) -> Path:
    """Create ``path`` (and its parents) readable by the owner only; tighten it if it exists."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.stat(path).st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)
    return path


def existing_mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: Path, text: str, unchanged_since=False) -> bool:
    return atomic_write_bytes(path, text.encode("utf-8"), unchanged_since)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remove_temp_files(folder: Path, names: list[str] | None = None) -> int:
    """Delete the temp files that atomic writes of a killed process left in ``folder``.

    Only call this while holding the project's lock: then no live writer owns them. With
    ``names``, only the temp files of those file names, and not below ``folder``; else all, recursively.
    """
    folder = Path(folder)
    if names is None:
        found = temp_files_below(str(folder)) if folder.is_dir() else []
    else:
        found = [p for name in names for p in folder.glob(f".{name}.*.tmp")]
    removed = 0
    for path in found:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def temp_files_below(folder: str):
    """Every file named like ``.*.tmp`` below ``folder``, symlinked folders not followed: Path.rglob's
    matches, found with one scandir per folder (a project's state holds thousands of files)."""
    folders = [folder]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.name.startswith(".") and entry.name.endswith(".tmp") and len(entry.name) >= 5:
                    yield Path(entry.path)


# Ids, run ids and other names that become one path component. Table cells are untrusted: a
# name outside this pattern is never joined to a path.
SAFE_NAME_CHARS = "letters, digits, '-' and '_', at most 64 characters"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_safe_name(name: str) -> bool:
    """Whether ``name`` may be a file or folder name dcloop makes: see SAFE_NAME_CHARS."""
    return isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None


def inside(folder: Path, *parts: str) -> Path:
    """``folder/part/...``, refused unless each part is one plain path component and the result,
    symbolic links resolved, stays under ``folder``.

    The last line of defence for every path built from table data (ids, class names, versions):
    they are validated where they enter, and checked again here before anything is written.
    """
    folder = Path(folder)
    for part in parts:
        if (not isinstance(part, str) or part in ("", ".", "..") or "/" in part or "\\" in part
                or "\x00" in part):
            raise UnsafePath(f"{folder}: refused to build a path from {part!r}: not a plain file or folder name.")
    path = folder.joinpath(*parts)
    base = folder.resolve()
    if not path.resolve().is_relative_to(base):
        raise UnsafePath(f"{path}: refused: it leads outside {base} (a symbolic link?).")
    return path
