"""Pull: the label table from its backend, every row with an id, ids a spreadsheet program changed given back."""

from __future__ import annotations

import pandas as pd

from . import table as tbl
from .backends import Backend
from .config import Config
from .progress import Progress, quiet


ACCEPT_ROW_DROP = "If the rows were deleted on purpose, run: dcloop sync --accept-row-drop"


def current_table(backend: Backend, config: Config) -> pd.DataFrame:
    """The table as sync would record it, read without writing anything (status, history, splits)."""
    return tbl.with_assigned_ids(tbl.normalize(backend.read(), backend.describe()), config.table.default_split)


def pull(backend: Backend, config: Config, known: pd.DataFrame | None = None, accept_row_drop: bool = False,
         progress: Progress = quiet) -> pd.DataFrame:
    """The table with every row given an id; ids given or given back are written at once.

    ``known`` is the last recorded version. A table with far fewer rows is refused before anything
    is written (see table.RowDrop), unless ``accept_row_drop``; ids a spreadsheet program changed
    are given back (see table.repair_ids).
    """
    source = backend.describe()
    table = tbl.normalize(backend.read(), source, check_ids=False)
    known_rows = 0 if known is None else len(known)
    if not accept_row_drop:
        config.table.row_drop().check(known_rows, max(0, known_rows - len(table)), source, ACCEPT_ROW_DROP)
    repairs = tbl.repair_ids(table, known)
    if repairs:
        progress(f"{source}: gave {len(repairs)} row(s) back the id a spreadsheet program or an edit had changed: "
                 + ", ".join(f"line {tbl.row_number(p)} {tbl.shown(old) or '(blank)'} -> {new}"
                             for p, old, new in repairs[:10]) + (" ..." if len(repairs) > 10 else ""))
        table.loc[[p for p, _, _ in repairs], "id"] = [new for _, _, new in repairs]
    tbl.check_unique_ids(table, source)
    ids = tbl.assign_ids(table)
    patches = [tbl.id_repairs_patch(table, repairs)] if repairs else []
    if ids:
        table = tbl.with_ids(table, ids, config.table.default_split)
        new_rows = pd.DataFrame({tbl.NEW_ROW_KEY: list(ids), "id": list(ids.values())})
        new_rows["split"] = new_rows["id"].map(table.set_index("id")["split"])
        patches.append(new_rows)
    if patches:
        backend.write(pd.concat(patches, ignore_index=True).fillna(""))
    return table


