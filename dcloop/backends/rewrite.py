"""The table operations written once for backends that rewrite a file: each is a pure change from
dcloop.table applied by the backend's own ``_rewrite(change)`` (re-read, change, write atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .. import table as tbl
from ..errors import DiskError, TableBusy
from ..fsutil import atomic_write_bytes


class RewritingTable:
    """restore, append_rows, move_splits and decide over ``self._rewrite(change) -> rows changed``, the
    atomic replace of ``self.path`` that each rewrite ends with, and the file's name and stamp."""

    path: Path

    def _rewrite(self, change) -> int:  # pragma: no cover - each file backend has its own
        raise NotImplementedError

    def _replace(self, data: bytes, stamp) -> bool:
        return replace_table_file(self.path, data, stamp)

    def describe(self) -> str:
        return self.path.name

    def stamp(self) -> tuple[int, ...] | None:
        """Changes whenever the file may have: inode (a rename-save), mtime, ctime, size."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def restore(self, snapshot: pd.DataFrame) -> int:
        """Set labels and splits to a recorded version's; only `dcloop restore` writes human columns."""
        return self._rewrite(lambda current: tbl.apply_restore(current, snapshot))

    def append_rows(self, rows: pd.DataFrame) -> int:
        """Add whole rows at the end (ids the table has already are skipped); edits made meanwhile survive."""
        return self._rewrite(lambda current: tbl.append_rows(current, rows))

    def move_splits(self, moves: pd.DataFrame) -> int:
        """Set split by id where it still has the planned value (`dcloop split --rebalance --apply`)."""
        return self._rewrite(lambda current: tbl.apply_split_moves(current, moves))

    def decide(self, decisions: pd.DataFrame) -> dict:
        """Set label, split and reviewed by id as a reviewer decided (`dcloop review`); {index: why} refused."""
        return decide_by(self._rewrite, decisions)


def decide_by(rewrite, decisions: pd.DataFrame) -> dict:
    """``table.apply_decisions`` through ``rewrite(change)``, which may call the change more than once
    (a re-read after someone saved): the refusals of the last call are the ones written."""
    refused: dict = {}

    def change(current: pd.DataFrame) -> pd.DataFrame:
        out, found = tbl.apply_decisions(current, decisions)
        refused.clear()
        refused.update(found)
        return out

    rewrite(change)
    return refused


def replace_table_file(path: Path, data: bytes, stamp) -> bool:
    """Replace a table file's content atomically unless it changed since ``stamp`` (then False).

    A symbolic link stays a link and the file it points to is written; a file another program
    holds is a TableBusy.
    """
    try:
        return atomic_write_bytes(Path(path).resolve(), data, unchanged_since=stamp)
    except DiskError as e:
        raise busy(path, e) or e


def busy(path: Path, error: DiskError) -> TableBusy | None:
    """A TableBusy when a file could not be replaced for want of permission: Excel, for one, locks
    the files it has open. None for other disk errors (a full disk), which say what they are."""
    cause = error.__cause__
    if not isinstance(cause, PermissionError):
        return None
    return TableBusy(f"{path.name} is open in another program or cannot be replaced ({cause.strerror}): close it "
                     f"and run dcloop sync again. Nothing in it was changed.")
