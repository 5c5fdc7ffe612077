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
from typing import TYPE_CHECKING

from .errors import LockedError, LockOverrun, StateError
from .fsutil import disk_error, remove_temp_files
from .names import STATE_DIR, UNCHANGED

if TYPE_CHECKING:  # the lock is taken before anything heavy is imported (dcloop.unchanged)
    from .config import Config

LOCK_FILE = "lock"


class ProjectLock:
    """``with ProjectLock(state_dir, "dcloop sync"):`` runs the block holding the project's lock."""

    def __init__(self, state: Path, command: str, max_minutes: float | None = None):
        self.path = Path(state) / LOCK_FILE
        self.command = command
        self.max_minutes = max_minutes
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockedError naming the holder (LockOverrun past max_minutes); never waits."""
        fd = self.open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            os.close(fd)
            overrun = holder_overrun(holder, self.max_minutes, datetime.now(timezone.utc))
            error = LockOverrun if overrun else LockedError
            raise error(locked_message(self.path, holder, self.max_minutes)) from None
        # Rewritten in place, not renamed: a rename would put the text on an inode nobody locks.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info(self.command)).encode() + b"\n", 0)
        self.fd = fd

    def open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError as e:
            root = self.path.parent.parent
            raise StateError(f"{self.path} is a folder, not dcloop's lock file, so no dcloop command can run on "
                             f"{root}. Run 'dcloop doctor {root} --repair' (it removes the folder if it is "
                             f"empty), or move the folder away.") from e
        except OSError as e:
            translated = disk_error(e, self.path)
            if translated is None:
                raise
            raise translated from e

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
    """Hold the project's lock for the block, after clearing what a killed holder left half-written
    and the no-change stamp (STATE_DIR/UNCHANGED)."""
    root = Path(root)
    with ProjectLock(root / STATE_DIR, command, config.sync.max_minutes) as lock:
        remove_temp_files(root / STATE_DIR)
        forget_unchanged(root / STATE_DIR)
        if config.table.backend in ("csv", "xlsx"):
            for name in (config.table.path, config.table.results):
                remove_temp_files((root / name).parent, [Path(name).name])
        yield lock


def forget_unchanged(state: Path) -> None:
    """Remove the no-change stamp (dcloop.unchanged) before a command that may write.

    Belt and braces: the stamp holds the digest of everything the sync read, so any write makes it
    stale anyway. A stamp that cannot be removed (a folder in its place) is left to that digest:
    it never replays unless it reads as a stamp whose digest matches.
    """
    try:
        (Path(state) / UNCHANGED).unlink(missing_ok=True)
    except OSError:
        pass


def holder_info(command: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def read_holder(fd: int) -> dict:
    """What the holder wrote about itself; {} while it is still writing or if the text is not JSON."""
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def holder_age_minutes(holder: dict, now: datetime) -> float | None:
    """Minutes since the holder started, from its started_utc; None when unknown."""
    try:
        started = datetime.strptime(holder.get("started_utc", ""), "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None
    return (now - started.replace(tzinfo=timezone.utc)).total_seconds() / 60


def holder_overrun(holder: dict, max_minutes: float | None, now: datetime) -> bool:
    """Whether the holder has run past max_minutes; a watch holds the lock for good and never overruns."""
    age = holder_age_minutes(holder, now)
    return (max_minutes is not None and age is not None and age > max_minutes
            and "--watch" not in str(holder.get("command", "")))


def describe_holder(holder: dict, max_minutes: float | None, now: datetime) -> str:
    """'pid 4121 on lab-2 (dcloop sync), started ..., 212 minutes ago' (pure)."""
    if not holder:
        return "a process that is just starting"
    age = holder_age_minutes(holder, now)
    ago = f", {age:.0f} minutes ago" if age is not None else ""
    over = (f", longer than [sync] max_minutes = {max_minutes:g}: it may be hung"
            if holder_overrun(holder, max_minutes, now) else "")
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', 'dcloop')}), "
            f"started {holder.get('started_utc', '?')}{ago}{over}")


def locked_message(path: Path, holder: dict, max_minutes: float | None = None, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    who = describe_holder(holder, max_minutes, now)
    if holder_overrun(holder, max_minutes, now):
        return (f"{path.parent.parent}: another dcloop process holds the project's lock: {who}. "
                f"Check it (ps -p {holder.get('pid', '?')}) and stop it if it is stuck (kill "
                f"{holder.get('pid', '?')}; nothing is lost), then try again.")
    return (f"{path.parent.parent}: another dcloop process holds the project's lock: {who}. "
            f"Wait for it to finish (a running 'dcloop sync --watch' holds it until stopped), then try again.")


def current_holder(state: Path) -> dict | None:
    """Who holds the project's lock now, or None when nobody does.

    Probes with a shared lock held for an instant: a command that starts in that instant finds the
    lock held and exits 3, as it would against any other holder.
    """
    try:
        fd = os.open(Path(state) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None  # no lock file (never locked), or not a file: doctor reports that
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return read_holder(fd)
    finally:
        os.close(fd)
