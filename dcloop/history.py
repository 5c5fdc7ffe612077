"""Label versions: their snapshots, changes and index under .dcloop/versions/, and the run records beside them.

A version is a content address of (id, url, label, split) for every row. Each version keeps a
snapshot of those columns and the rows that changed since its parent, under .dcloop/versions/.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from . import table as tbl
from .config import STATE_DIR
from .errors import DcloopError, StateError
from .fsutil import atomic_write_text

INDEX_COLUMNS = ["version", "parent", "time_utc", "rows", "changed"]


@dataclass(frozen=True)
class Recorded:
    version: str
    parent: str
    new: bool
    changes: pd.DataFrame


class History:
    """The versions under ``state/versions``, oldest first in ``index.csv``."""

    def __init__(self, state: Path):
        self.root = Path(state) / "versions"

    def folder(self, version: str) -> Path:
        return self.root / version

    def index(self) -> pd.DataFrame:
        path = self.root / "index.csv"
        if not path.exists():
            return pd.DataFrame(columns=INDEX_COLUMNS)
        return read_state_csv(path, INDEX_COLUMNS)

    def head(self) -> str:
        index = self.index()
        return index["version"].iloc[-1] if len(index) else ""

    def resolve(self, ref: str) -> str:
        """The recorded version that ``ref`` names in full or by a unique prefix."""
        known = list(dict.fromkeys(self.index()["version"]))
        ref = ref.strip()
        matches = [v for v in known if v.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            listed = ", ".join(known[-5:]) or "none yet; run dcloop sync first"
            raise DcloopError(f"{self.root}: no label version {ref!r}; recent versions: {listed} (see dcloop log).")
        raise DcloopError(f"label version prefix {ref!r} is ambiguous: it matches {', '.join(matches)}; "
                          f"give more characters.")

    def snapshot(self, version: str) -> pd.DataFrame:
        return read_state_csv(self.folder(version) / "labels.csv", tbl.VERSIONED_COLUMNS)

    def has_snapshot(self, version: str) -> bool:
        return bool(version) and (self.folder(version) / "labels.csv").is_file()

    def changes(self, version: str) -> pd.DataFrame:
        return read_state_csv(self.folder(version) / "changes.csv", ["id", "change"])

    def record(self, table: pd.DataFrame, now: str, progress: Callable[[str], None] = lambda m: None) -> Recorded:
        """Record the table's labels and splits as a version unless it equals the current head.

        A head whose snapshot is gone is written again when the table is that version (a version is
        a content address, so the table holds exactly its rows); when the table differs, the new
        version is recorded without a parent, every row counted as changed.
        """
        version, parent = tbl.label_version(table), self.head()
        if version == parent:
            if not self.has_snapshot(version):
                self.write_snapshot(version, table, self.grandparent_rows(table))
                progress(f"{self.folder(version)}: the snapshot of label version {version} was missing; "
                         f"recorded it again from the table, which holds exactly that version")
            return Recorded(version, parent, False, tbl.no_changes())
        if parent and not self.has_snapshot(parent):
            progress(f"{self.folder(parent)}: the snapshot of label version {parent} is missing; recording "
                     f"version {version} without a parent, every row counted as changed")
            parent = ""
        before = self.snapshot(parent) if parent else table.iloc[0:0]
        changes = self.write_snapshot(version, table, before)
        row = {"version": version, "parent": parent, "time_utc": now,
               "rows": str(len(table)), "changed": str(len(changes))}
        # The index is written last: a crash before this line leaves no half-recorded version.
        self.write_index(pd.concat([self.index(), pd.DataFrame([row])], ignore_index=True))
        return Recorded(version, parent, True, changes)

    def write_index(self, index: pd.DataFrame) -> None:
        atomic_write_text(self.root / "index.csv", index.to_csv(index=False))

    def write_snapshot(self, version: str, table: pd.DataFrame, before: pd.DataFrame) -> pd.DataFrame:
        changes = tbl.diff(before, table)
        folder = self.folder(version)
        atomic_write_text(folder / "labels.csv", tbl.versioned_rows(table).to_csv(index=False))
        atomic_write_text(folder / "changes.csv", changes.to_csv(index=False))
        return changes

    def grandparent_rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The snapshot of the head's parent, or no rows when it has none or it is gone too."""
        index = self.index()
        parent = index["parent"].iloc[-1] if len(index) else ""
        return self.snapshot(parent) if self.has_snapshot(parent) else table.iloc[0:0]


def project_of(path: Path) -> Path:
    """The project folder a file under .dcloop belongs to (for messages)."""
    path = Path(path)
    return next((p.parent for p in path.parents if p.name == STATE_DIR), path.parent)


def state_error(path: Path, reason: str) -> StateError:
    return StateError(f"{path}: cannot be read ({reason}). It is project state, not a cache, so dcloop does "
                      f"not rebuild it on its own: run 'dcloop doctor {project_of(path)} --repair', which "
                      f"fixes what it safely can and says what it changed.", reason)


def read_state_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV file of dcloop's state, every cell a string; a StateError naming it when unreadable."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as e:
        raise state_error(path, "the file is missing") from e
    except pd.errors.EmptyDataError as e:
        raise state_error(path, "the file is empty") from e
    except (ValueError, OSError) as e:
        raise state_error(path, f"not a CSV file: {type(e).__name__}: {str(e)[:120]}") from e
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise state_error(path, f"no column {', '.join(missing)}")
    return frame


def parse_json(path: Path, default):
    """The JSON in ``path``, ``default`` when absent; ValueError or OSError when unreadable or of another type."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return default
    if not data.strip():
        raise ValueError("the file is empty")
    value = json.loads(data)
    if default is not None and not isinstance(value, type(default)):
        raise ValueError(f"JSON {type(value).__name__} where a {type(default).__name__} belongs")
    return value


def read_json(path: Path, default=None):
    """A JSON file of dcloop's state: ``default`` when absent, a StateError naming it when unreadable."""
    try:
        return parse_json(path, default)
    except (ValueError, OSError) as e:
        raise state_error(path, str(e)[:160]) from e


def read_cache_json(path: Path, default, progress: Callable[[str], None] | None = None):
    """A JSON cache: ``default`` when absent or unreadable (with a note); its writer rebuilds it."""
    try:
        return parse_json(path, default)
    except (ValueError, OSError) as e:
        (progress or logging.getLogger("dcloop").warning)(
            f"{path}: unreadable cache ({str(e)[:120]}); rebuilding it")
        return default


def utc_now() -> str:
    """The time a version, run or results row is stamped with."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def scores_by_entry(index: pd.DataFrame, results: pd.DataFrame) -> dict[int, dict]:
    """For each index position, the last results row trained under that entry (pure).

    A results row belongs to the latest entry of its label version recorded at or before it:
    a version can appear twice in the index (edits undone, or dcloop restore).
    """
    out: dict[int, dict] = {}
    for row in results.to_dict("records"):
        entry = entry_of(index, row)
        if entry is not None:
            out[entry] = row
    return out


def entry_of(index: pd.DataFrame, row: dict) -> int | None:
    """The index position a results row belongs to (see scores_by_entry), None if its version is unknown."""
    entries = index.index[index["version"] == row.get("label_version", "")]
    earlier = [n for n in entries if index.at[n, "time_utc"] <= row.get("time_utc", "")]
    return max(earlier) if earlier else (entries[-1] if len(entries) else None)


def is_reeval(results: pd.DataFrame) -> pd.Series:
    """Rows of kind "reeval": a stored model scored again on a later split, not a training."""
    return results["kind"] == "reeval" if "kind" in results.columns else pd.Series(False, index=results.index)
