"""A Google Sheet's cells as dcloop sees them: A1 names, typed values, the table and its write-back.

Everything here is pure: lists of API values and DataFrames in, DataFrames and request bodies out.
Row numbers are the sheet's own (1 is the header), so a write lands on the row it was planned for.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pandas as pd

from .. import table as tbl

MAX_CELLS = 10_000_000  # Google's limit for all tabs of one spreadsheet together
FIRST_DATA_ROW = tbl.HEADER_ROWS + 1
SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# Read formulas as their text (so =IMAGE(...) survives) and dates as the text people see;
# strings stay strings, so an id like 007 written as text comes back as 007.
READ_PARAMS = {"valueRenderOption": "FORMULA", "dateTimeRenderOption": "FORMATTED_STRING",
               "majorDimension": "ROWS"}


def column_letter(index: int) -> str:
    """'A' for column 0, 'Z' for 25, 'AA' for 26."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def quote_title(title: str) -> str:
    """A tab title as A1 notation needs it: always quoted, quotes doubled."""
    return "'" + title.replace("'", "''") + "'"


def a1(title: str, row: int, column: int, last_row: int | None = None, last_column: int | None = None) -> str:
    """'labels'!C2:C9 from 1-based rows and 0-based columns; the last ones default to the first."""
    last_row = row if last_row is None else last_row
    last_column = column if last_column is None else last_column
    return (f"{quote_title(title)}!{column_letter(column)}{row}"
            f":{column_letter(last_column)}{last_row}")


def cell_text(value) -> str:
    """A value from the API as the string dcloop works with: 7 -> '7', 0.5 -> '0.5', True -> 'TRUE'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def typed(text: str, numeric: bool):
    """The JSON value to write: a number in a numeric column when the text is one, else the text itself."""
    if not numeric:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number) or "_" in text:
        return text
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def image_formula(url: str) -> str:
    """=IMAGE("url") for a well-formed http(s) url, quotes doubled; blank for anything else."""
    url = url.strip()
    if SPACE_OR_CONTROL.search(url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return '=IMAGE("' + url.replace('"', '""') + '")'


def header_of(values: list[list]) -> list[str]:
    """The header row as names; blank or missing names become 'Unnamed: N', as pandas names them."""
    width = max((len(row) for row in values), default=0)
    first = [cell_text(v).strip() for v in values[0]] if values else []
    first += [""] * (width - len(first))
    return [name or f"Unnamed: {n}" for n, name in enumerate(first)]


def grid_frame(values: list[list]) -> pd.DataFrame:
    """The data rows of a values response as strings, indexed by sheet row number; blank rows dropped."""
    header = header_of(values)
    rows = [[cell_text(v) for v in row] + [""] * (len(header) - len(row)) for row in values[1:]]
    frame = pd.DataFrame(rows, columns=header, index=range(FIRST_DATA_ROW, FIRST_DATA_ROW + len(rows)),
                         dtype=str)
    if frame.empty:
        return frame
    return frame[frame.apply(lambda column: column.str.strip() != "").any(axis=1)]


def table_of(values: list[list], source: str, check_ids: bool = True) -> pd.DataFrame:
    """The normalized table of a values response, still indexed by sheet row number."""
    frame = grid_frame(values)
    table = tbl.normalize(frame, source, check_ids)
    table.index = frame.index
    return table


@dataclass
class WritePlan:
    """The cells a write-back changes: RAW values, =IMAGE formulas, header names of added columns."""

    raw: list[dict] = field(default_factory=list)
    formulas: list[dict] = field(default_factory=list)
    new_columns: list[str] = field(default_factory=list)
    rows_changed: int = 0

    def columns_needed(self, header: list[str]) -> int:
        return len(header) + len(self.new_columns)


def patched_table(current: pd.DataFrame, patch: pd.DataFrame) -> pd.DataFrame:
    """``table.apply_patch``, with the patch's image paths turned into =IMAGE formulas of each row's url."""
    patched = tbl.apply_patch(current, patch)
    if "image" not in patch.columns:
        return patched
    latest = patch.drop_duplicates("id", keep="last").set_index("id")["image"]
    wanted = (latest.fillna("").astype(str).str.strip() != "").to_dict()
    rows = patched["id"].isin(latest.index)
    patched.loc[rows, "image"] = [image_formula(url) if wanted[row_id] else ""
                                  for row_id, url in zip(patched.loc[rows, "id"], patched.loc[rows, "url"])]
    return patched


def changed_cells(before: pd.Series, after: pd.Series, numeric: bool) -> pd.Series:
    """True where a cell's written value would differ; numbers compare as numbers (0.50 == 0.5)."""
    if not numeric:
        return before != after
    return pd.Series([typed(a, True) != typed(b, True) for a, b in zip(before, after)], index=before.index)


def plan_write(values: list[list], patch: pd.DataFrame, title: str, numeric: set[str],
               source: str) -> WritePlan:
    """The cells of tab ``title`` to write so that it equals ``apply_patch(current, patch)``.

    ``values`` is a fresh read of the tab. Only dcloop's columns change, plus ``split`` where it
    was blank and ``id`` on new rows: ``apply_patch`` never touches another human cell.
    """
    current = table_of(values, source, check_ids=False)  # pull checks them, after giving changed ids back
    return plan_cells(values, current, patched_table(current, patch), tbl.MACHINE_COLUMNS + ["split"], title,
                      numeric)


def plan_split_moves(values: list[list], moves: pd.DataFrame, title: str, numeric: set[str],
                     source: str) -> WritePlan:
    """The ``split`` cells to write for ``table.apply_split_moves``, and no other cell."""
    current = table_of(values, source)
    return plan_cells(values, current, tbl.apply_split_moves(current, moves), ["split"], title, numeric)


def plan_cells(values: list[list], current: pd.DataFrame, patched: pd.DataFrame, columns: list[str], title: str,
               numeric: set[str]) -> WritePlan:
    """The cells of ``columns`` that differ between ``current`` and ``patched`` (both indexed by sheet row)."""
    header = header_of(values)
    plan = WritePlan()
    changed_rows = pd.Series(False, index=current.index)
    for column in columns:
        changed = changed_cells(current[column], patched[column], column in numeric)
        if not changed.any():
            continue
        changed_rows |= changed
        if column not in header:
            plan.new_columns.append(column)
        position = header.index(column) if column in header else len(header) + plan.new_columns.index(column)
        is_formula = (patched[column] != "") if column == "image" else pd.Series(False, index=patched.index)
        for run in runs(list(changed.index[changed]), is_formula):
            cells = patched.loc[run, column].tolist()
            target = plan.formulas if is_formula[run[0]] else plan.raw
            target.append({"range": a1(title, run[0], position, run[-1]),
                           "values": [[typed(v, column in numeric)] for v in cells]})
    for n, column in enumerate(plan.new_columns):
        plan.raw.append({"range": a1(title, 1, len(header) + n), "values": [[column]]})
    plan.rows_changed = int(changed_rows.sum())
    return plan


def runs(rows: list[int], kind: pd.Series) -> list[list[int]]:
    """Consecutive row numbers of one kind grouped: [2, 3, 4, 7] -> [[2, 3, 4], [7]]."""
    out: list[list[int]] = []
    for row in rows:
        if out and row == out[-1][-1] + 1 and kind[row] == kind[out[-1][-1]]:
            out[-1].append(row)
        else:
            out.append([row])
    return out
