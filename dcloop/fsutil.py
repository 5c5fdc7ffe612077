"""Small file-system helpers: atomic writes and content hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


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
        found = folder.rglob(".*.tmp") if folder.is_dir() else []
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
