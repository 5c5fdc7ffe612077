"""Where the label table lives. Each backend implements the same few primitives.

A backend only moves cells: ``read`` returns every cell as a string, ``write`` puts dcloop's own
columns back by id (re-reading first, so edits made meanwhile survive), ``append_result`` adds a
row to the results table. Validation and patching live in ``dcloop.table``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from ..errors import ConfigError


@runtime_checkable
class Backend(Protocol):
    def read(self) -> pd.DataFrame:
        """The whole label table, every cell a string, columns as the user has them."""

    def write(self, patch: pd.DataFrame) -> int:
        """Apply a patch of dcloop's columns by id to the current table; return the rows changed.

        Optional: a backend that can also move rows accepts ``write(patch, order=[ids])`` and
        writes the rows in that order (rows not named keep their order, after them); see
        ``accepts_order``. Cells never change by moving.
        """

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
    import inspect
    return "order" in inspect.signature(backend.write).parameters


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
