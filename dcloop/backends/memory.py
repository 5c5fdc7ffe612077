"""A label table held in memory: a real backend for tests and for library use."""

from __future__ import annotations

import pandas as pd

from .. import table as tbl
from ..table import RESULT_COLUMNS
from . import ORDER


class MemoryBackend:
    capabilities = frozenset({ORDER})

    def __init__(self, table: pd.DataFrame | None = None, name: str = "memory"):
        self.table = table.copy() if table is not None else pd.DataFrame(columns=tbl.COLUMNS)
        self.results = pd.DataFrame(columns=RESULT_COLUMNS)
        self.name = name

    def read(self) -> pd.DataFrame:
        return self.table.copy()

    def write(self, patch: pd.DataFrame, order: list[str] | None = None) -> int:
        before = self.table
        self.table = tbl.apply_patch(before, patch)
        changed = tbl.rows_changed(before, self.table)
        if order is not None:
            self.table = tbl.reorder(self.table, order)
        return changed

    def restore(self, snapshot: pd.DataFrame) -> int:
        before = self.table
        self.table = tbl.apply_restore(before, snapshot)
        return tbl.rows_changed(before, self.table)

    def append_rows(self, rows: pd.DataFrame) -> int:
        before = self.table
        self.table = tbl.append_rows(before, rows)
        return len(self.table) - len(before)

    def move_splits(self, moves: pd.DataFrame) -> int:
        before = self.table
        self.table = tbl.apply_split_moves(before, moves)
        return tbl.rows_changed(before, self.table)

    def decide(self, decisions: pd.DataFrame) -> dict:
        self.table, refused = tbl.apply_decisions(self.table, decisions)
        return refused

    def create(self, table: pd.DataFrame) -> None:
        self.table = table.copy()

    def update_classes(self, rows: list[dict[str, str]]) -> None:
        """No per-class summary in memory."""

    def read_results(self) -> pd.DataFrame:
        return self.results.copy()

    def append_result(self, row: dict[str, str]) -> None:
        self.results = pd.concat([self.results, pd.DataFrame([row])], ignore_index=True).fillna("")

    def describe(self) -> str:
        return self.name
