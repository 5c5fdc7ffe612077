"""One dcloop process at a time per project: an advisory lock on ``.dcloop/lock``.

The kernel holds the lock (``flock``) and drops it when the process ends, however it ends, so a
lock left by a killed process is simply taken over. The file's text (pid, start time, command)
only serves the message a second process prints; it is rewritten by each new holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .config import STATE_DIR, Config
from .errors import LockedError
from .fsutil import remove_temp_files

LOCK_FILE = "lock"


class ProjectLock:
    """``with ProjectLock(state_dir, "dcloop sync"):`` runs the block holding the project's lock."""

    def __init__(self, state: Path, command: str):
        self.path = Path(state) / LOCK_FILE
        self.command = command
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockedError naming the holder; never waits."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            os.close(fd)
            raise LockedError(locked_message(self.path, holder)) from None
        # Rewritten in place, not renamed: a rename would put the text on an inode nobody locks.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info(self.command)).encode() + b"\n", 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "ProjectLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def project_lock(root: Path, config: Config, command: str):
    """Hold the project's lock for the block, after clearing what a killed holder left half-written."""
    root = Path(root)
    with ProjectLock(root / STATE_DIR, command) as lock:
        remove_temp_files(root / STATE_DIR)
        if config.table.backend in ("csv", "xlsx"):
            for name in (config.table.path, config.table.results):
                remove_temp_files((root / name).parent, [Path(name).name])
        yield lock


def holder_info(command: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def read_holder(fd: int) -> dict:
    """What the holder wrote about itself; {} while it is still writing or if the text is not JSON."""
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def locked_message(path: Path, holder: dict) -> str:
    who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', 'dcloop')}), "
           f"started {holder.get('started_utc', '?')}") if holder else "a process that is just starting"
    return (f"{path.parent.parent}: another dcloop process holds the project's lock: {who}. "
            f"Wait for it to finish (a running 'dcloop sync --watch' holds it until stopped), then try again.")
