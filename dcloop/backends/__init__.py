"""Where the label table lives. Each backend implements the same few primitives.

A backend only moves cells: ``read`` returns every cell as a string, ``write`` puts dcloop's own
columns back by id (re-reading first, so edits made meanwhile survive), ``append_result`` adds a
row to the results table. Validation and patching live in ``dcloop.table``. What only some
backends can do is declared in ``capabilities``, never guessed from a method or signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from ..errors import ConfigError

ORDER = "order"  # write(patch, order=[ids]) puts the rows in that order (a file dcloop rewrites whole)


@runtime_checkable
class Backend(Protocol):
    capabilities: frozenset[str]  # e.g. {ORDER}

    def read(self) -> pd.DataFrame:
        """The whole label table, every cell a string, columns as the user has them."""

    def write(self, patch: pd.DataFrame) -> int:
        """Apply a patch of dcloop's columns by id to the current table; return the rows changed.

        A backend with ORDER in its capabilities accepts ``write(patch, order=[ids])`` and writes
        the rows in that order (rows not named keep their order, after them). Cells never change
        by moving.
        """

    def restore(self, snapshot: pd.DataFrame) -> int:
        """Set label and split by id to a recorded version's (``table.apply_restore``); add its lost rows."""

    def move_splits(self, moves: pd.DataFrame) -> int:
        """Set split by id to ``moves.to`` where it still says ``moves.from``; return the rows changed."""

    def decide(self, decisions: pd.DataFrame) -> dict:
        """Apply a reviewer's decisions (``table.apply_decisions``): label, split and reviewed by id,
        in one write, nothing else touched; return {decision index: why} for each one refused because
        its row was edited since the reviewer saw it, or is gone."""

    def update_classes(self, rows: list[dict[str, str]]) -> None:
        """Rewrite the per-class summary where the backend shows one (a tab); a no-op elsewhere."""

    def create(self, table: pd.DataFrame) -> None:
        """Lay out a new, empty backend and fill it with ``table``; never overwrite data."""

    def read_results(self) -> pd.DataFrame:
        """The results table, every cell a string (empty with the right columns if none yet)."""

    def append_result(self, row: dict[str, str]) -> None:
        """Add one row to the results table."""

    def append_rows(self, rows: pd.DataFrame) -> int:
        """Add whole rows (with their ids) at the end of the table; ids it holds already are skipped.

        Existing rows and cells are never changed; rows a person added meanwhile are kept.
        """

    def describe(self) -> str:
        """A short human name for messages, e.g. 'labels.csv' or 'sheet My labels'."""


def accepts_order(backend) -> bool:
    """Whether ``backend.write`` takes the optional ``order`` keyword."""
    return ORDER in backend.capabilities


def open_backend(config, root: Path) -> Backend:
    """The backend that ``config.table`` names, rooted at the project folder."""
    kind = config.table.backend
    if kind == "csv":
        from .csv import CsvBackend
        return CsvBackend(root / config.table.path, root / config.table.results, config.table.row_drop())
    if kind == "xlsx":
        from .xlsx import XlsxBackend
        return XlsxBackend(root / config.table.path, root, config.project.classes, config.table.row_drop())
    if kind == "gsheet":
        try:
            from .gsheet import SheetBackend
        except ImportError as e:  # pragma: no cover - only without the optional packages
            raise ConfigError(f"the Google Sheets backend needs gspread and google-auth: "
                              f"pip install gspread google-auth ({e})") from e
        return SheetBackend.from_config(config, root)
    raise ConfigError(f"dcloop.toml: [table] backend = {kind!r} is not one of csv, xlsx, gsheet.")
