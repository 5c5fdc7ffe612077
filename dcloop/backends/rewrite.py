"""The table operations written once for backends that rewrite a file: each is a pure change from
dcloop.table applied by the backend's own ``_rewrite(change)`` (re-read, change, write atomically)."""

from __future__ import annotations

import pandas as pd

from .. import table as tbl


class RewritingTable:
    """restore, append_rows and move_splits over ``self._rewrite(change) -> rows changed``."""

    def _rewrite(self, change) -> int:  # pragma: no cover - each file backend has its own
        raise NotImplementedError

    def restore(self, snapshot: pd.DataFrame) -> int:
        """Set labels and splits to a recorded version's; only `dcloop restore` writes human columns."""
        return self._rewrite(lambda current: tbl.apply_restore(current, snapshot))

    def append_rows(self, rows: pd.DataFrame) -> int:
        """Add whole rows at the end (ids the table has already are skipped); edits made meanwhile survive."""
        return self._rewrite(lambda current: tbl.append_rows(current, rows))

    def move_splits(self, moves: pd.DataFrame) -> int:
        """Set split by id where it still has the planned value (`dcloop split --rebalance --apply`)."""
        return self._rewrite(lambda current: tbl.apply_split_moves(current, moves))
