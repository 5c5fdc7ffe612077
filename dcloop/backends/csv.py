"""The label table as a local CSV file: the default backend, no account needed."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

from .. import table as tbl
from ..errors import BackendError, SchemaError
from ..fsutil import atomic_write_text, file_stamp
from ..history import RESULT_COLUMNS

MAX_WRITE_ATTEMPTS = 5


def read_csv(path: Path) -> pd.DataFrame:
    """Every cell of a CSV file as a string; a clear SchemaError when it is not a CSV."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                           skip_blank_lines=True, encoding="utf-8")
    except FileNotFoundError as e:
        raise BackendError(f"{path}: no such file. Run 'dcloop init' to create a project.") from e
    except pd.errors.EmptyDataError as e:
        raise SchemaError(f"{path}: the file is empty; a label table needs a header row with url,label.") from e
    except UnicodeDecodeError as e:
        raise SchemaError(not_utf8(path)) from e
    except pd.errors.ParserError as e:
        raise SchemaError(f"{path}: not a valid CSV file: {e}".rstrip()) from e


def not_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 is (pandas decodes in chunks, so its offset is not the file's)."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
        return f"{path}: not a text CSV file (it is not UTF-8)."
    except UnicodeDecodeError as e:
        if b"\0" in data:  # an image or a spreadsheet file, not text in another encoding
            return f"{path}: not a text CSV file (byte {e.start} is not UTF-8)."
        line = data.count(b"\n", 0, e.start) + 1
        return (f"{path}: line {line} is not UTF-8 (byte 0x{data[e.start]:02x} at position {e.start}); the file "
                f"was probably saved as Windows-1252 or Latin-1. Save it as CSV UTF-8 (Excel: Save As > "
                f"'CSV UTF-8 (Comma delimited)'; LibreOffice: character set 'Unicode (UTF-8)'), then sync again.")


def to_csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


class CsvBackend:
    def __init__(self, path: Path, results_path: Path):
        self.path = Path(path)
        self.results_path = Path(results_path)

    def read(self) -> pd.DataFrame:
        return read_csv(self.path)

    def write(self, patch: pd.DataFrame, order: list[str] | None = None) -> int:
        """Apply dcloop's columns by id; with ``order`` (ids), also move rows, their cells unchanged."""
        return self._rewrite(lambda current: tbl.apply_patch(current, patch), order)

    def restore(self, snapshot: pd.DataFrame) -> int:
        """Set labels and splits to a recorded version's; only `dcloop restore` writes human columns."""
        return self._rewrite(lambda current: tbl.apply_restore(current, snapshot))

    def append_rows(self, rows: pd.DataFrame) -> int:
        """Add whole rows at the end (ids the file has already are skipped); edits made meanwhile survive."""
        return self._rewrite(lambda current: tbl.append_rows(current, rows))

    def move_splits(self, moves: pd.DataFrame) -> int:
        """Set split by id where it still has the planned value (`dcloop split --rebalance --apply`)."""
        return self._rewrite(lambda current: tbl.apply_split_moves(current, moves))

    def _rewrite(self, change, order: list[str] | None = None) -> int:
        # Re-read right before writing, and only rename if nobody saved the file meanwhile:
        # a person's edits made during training are merged, never overwritten.
        for _ in range(MAX_WRITE_ATTEMPTS):
            stamp = file_stamp(self.path)
            current = tbl.normalize(self.read(), str(self.path))
            patched = change(current)
            changed = tbl.rows_changed(current, patched)
            if order is not None:  # rows move, their cells do not change
                patched = tbl.reorder(patched, order)
            if changed == 0 and (order is None or patched["id"].equals(current["id"])):
                return 0
            columns = list(current.columns)
            if atomic_write_text(self.path, to_csv_text(patched[columns]), unchanged_since=stamp):
                return changed
        raise BackendError(f"{self.path}: the file kept changing while dcloop tried to write "
                           f"{MAX_WRITE_ATTEMPTS} times; close the editor's autosave and sync again.")

    def create(self, table: pd.DataFrame) -> None:
        if self.path.exists():
            raise BackendError(f"{self.path} already exists; dcloop init will not overwrite a label table.")
        atomic_write_text(self.path, to_csv_text(table[tbl.COLUMNS]))
        if not self.results_path.exists():
            atomic_write_text(self.results_path, to_csv_text(pd.DataFrame(columns=RESULT_COLUMNS)))

    def read_results(self) -> pd.DataFrame:
        if not self.results_path.exists() or self.results_path.stat().st_size == 0:
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return read_csv(self.results_path)

    def append_result(self, row: dict[str, str]) -> None:
        results = pd.concat([self.read_results(), pd.DataFrame([row], dtype=str)], ignore_index=True)
        columns = list(dict.fromkeys(RESULT_COLUMNS + list(results.columns)))
        atomic_write_text(self.results_path, to_csv_text(results.reindex(columns=columns, fill_value="").fillna("")))

    def describe(self) -> str:
        return self.path.name

    def stamp(self) -> tuple[int, ...] | None:
        """Changes whenever the file may have: inode (a rename-save), mtime, ctime, size."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
