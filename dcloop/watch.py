"""Watch mode: poll the label table cheaply, sync when its labels or splits changed and settled.

A poll reads as little as the backend allows: a backend with ``stamp()`` (the CSV file's inode,
mtime and size) is read and hashed only when the stamp moved, so a save that changed nothing,
or dcloop's own write-back, never starts a cycle. A failed cycle is reported and retried with
a growing pause; a new edit retries sooner. ``stop`` ends the loop between cycles, and ends a
running training after its current epoch (nothing of that cycle is written back). A cycle that
runs past [sync] max_minutes ends the same way and counts as a failed cycle; the loop goes on.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import table as tbl
from .backends import Backend, open_backend
from .config import Config
from .errors import DcloopError, Stopped, TimedOut
from .history import utc_now
from .progress import quiet
from .sync import SyncReport, sync

MAX_BACKOFF_S = 300.0


@dataclass
class Cycle:
    """What one sync cycle of the watch loop gave: a report, or the error that ended it."""

    number: int
    time_utc: str
    report: SyncReport | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.report is not None

    def to_json(self) -> dict:
        head = {"cycle": self.number, "time_utc": self.time_utc, "ok": self.ok}
        return {**head, **self.report.to_json()} if self.report else {**head, "error": self.error}

    def summary(self) -> str:
        return f"cycle {self.number}: " + (self.report.message if self.report else f"failed: {self.error}")


class TableProbe:
    """The label version of the table as it is now, read only when the backend's stamp moved."""

    def __init__(self, backend: Backend, default_split: str):
        self.backend, self.default_split = backend, default_split
        self.stamp, self.version = None, None

    def __call__(self) -> str:
        stamp_of = getattr(self.backend, "stamp", None)
        stamp = stamp_of() if stamp_of else None
        if stamp is not None and stamp == self.stamp:
            return self.version
        table = tbl.normalize(self.backend.read(), self.backend.describe(), check_ids=False)  # sync repairs ids
        # The ids sync would assign, so an unchanged table probes to the version sync recorded.
        self.version = tbl.label_version(tbl.with_assigned_ids(table, self.default_split))
        self.stamp = stamp
        return self.version


def watch(root: Path, config: Config, stop: threading.Event, on_cycle: Callable[[Cycle], None],
          interval: float = 5.0, settle: float = 10.0, force: bool = False, progress=quiet,
          backend: Backend | None = None, clock: Callable[[], float] = time.monotonic,
          quick: bool = False, refetch: bool = False, fast: bool = False) -> int:
    """Sync now, then whenever the table's labels or splits changed and then stayed put for
    ``settle`` seconds, until ``stop`` is set. Returns the number of cycles run.

    ``force`` and ``refetch`` apply to the first cycle only."""
    backend = backend or open_backend(config, Path(root))
    probe = TableProbe(backend, config.table.default_split)
    synced, seen, seen_since = None, None, clock()
    retry_at, failures, cycles = None, 0, 0
    while not stop.is_set():
        now = clock()
        current = read_version(probe, progress)
        if current != seen:
            seen, seen_since = current, now
            if failures:
                retry_at = now + settle  # a new edit may be the fix: retry once it has settled
        if retry_at is not None:
            due = now >= retry_at
        else:
            due = cycles == 0 or (current != synced and now - seen_since >= settle)
        if due:
            cycles += 1
            cycle = run_cycle(root, config, backend, cycles, force and cycles == 1, progress, stop, quick,
                              refetch and cycles == 1, fast)
            if cycle is None:
                break
            if cycle.ok:
                synced, retry_at, failures = cycle.report.version, None, 0
            else:
                failures += 1
                pause = min(MAX_BACKOFF_S, max(interval, 1.0) * 2 ** (failures - 1))
                retry_at = clock() + pause
                progress(f"retrying in {pause:.0f}s (or {settle:g}s after the next edit)")
            on_cycle(cycle)
        stop.wait(interval)
    return cycles


def read_version(probe: TableProbe, progress) -> str | None:
    """The table's label version, or None when it cannot be read now (the cycle will say why)."""
    try:
        return probe()
    except DcloopError as e:
        progress(f"cannot read the table: {e}")
        return None


def run_cycle(root, config, backend, number, force, progress, stop, quick=False, refetch=False,
              fast=False) -> Cycle | None:
    """One sync; a failure becomes a failed Cycle; None when it was stopped at a safe point."""
    started = utc_now()
    try:
        report = sync(root, config, force=force, progress=progress, backend=backend, should_stop=stop.is_set,
                      quick=quick, refetch=refetch, fast=fast)
        return Cycle(number, started, report)
    except TimedOut as e:  # past [sync] max_minutes: this cycle failed, the watch goes on
        return Cycle(number, started, error=str(e))
    except Stopped as e:
        progress(str(e))
        return None
    except DcloopError as e:
        return Cycle(number, started, error=str(e))
    except Exception as e:  # an unattended loop outlives a bug in one cycle; the traceback goes to the log
        for line in traceback.format_exc().rstrip().splitlines():
            progress(line)
        return Cycle(number, started, error=f"{type(e).__name__}: {e}")
