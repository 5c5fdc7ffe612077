"""A Google Sheet's cells as dcloop sees them: A1 names, typed values, the table and its write-back.

Everything here is pure: lists of API values and DataFrames in, DataFrames and request bodies out.
Row numbers are the sheet's own (1 is the header). A write-back is addressed by each row's tag
(developer metadata that moves with its row), never by row number: people sort, insert, delete
and move rows between dcloop's read and its write.
"""

from __future__ import annotations

import json
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


ROW_TAG = "dcloop.row"  # the key of the developer metadata on each row; its value is the row's id


def tag_filter(row_id: str) -> dict:
    """The DataFilter of the row tagged with ``row_id``, wherever people have moved it."""
    return {"developerMetadataLookup": {"metadataKey": ROW_TAG, "metadataValue": row_id, "locationType": "ROW"}}


def first_row(rng: str) -> int:
    """The first row number of an A1 range as Google answers it: "'labels'!A5:K5" -> 5."""
    match = re.search(r"!\$?[A-Za-z]*\$?(\d+)", rng)
    if not match:
        raise ValueError(f"no row in range {rng!r}")
    return int(match.group(1))


@dataclass
class RowPlan:
    """A write-back addressed by row tags: each changed row's cells go to the row its tag is on.

    ``to_tag`` are the rows (sheet row -> id) whose tag is missing or elsewhere (``stale``): they are
    tagged, read again to check the tag sits on the row planned, and only then written.
    """

    raw: list[dict] = field(default_factory=list)  # DataFilterValueRange bodies, RAW
    formulas: list[dict] = field(default_factory=list)  # the same, USER_ENTERED (=IMAGE cells)
    header: list[dict] = field(default_factory=list)  # names of added columns, by A1 on row 1
    new_columns: list[str] = field(default_factory=list)
    to_tag: dict[int, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    rows_changed: int = 0

    def columns_needed(self, header: list[str]) -> int:
        return len(header) + len(self.new_columns)


def plan_rows(values: list[list], current: pd.DataFrame, patched: pd.DataFrame, columns: list[str], title: str,
              numeric: set[str], tagged: dict[str, list[int]]) -> RowPlan:
    """The cells of ``columns`` that differ between ``current`` and ``patched``, one body per row, addressed
    by the row's tag (``tagged``: id -> the rows its tags were on in the same read as ``values``).

    A cell is a JSON null where nothing is written, so no other cell of the row is touched. A row is
    written only when its id's tag is on that row and no other: a row whose tag is missing, or on
    another row (cells cut and pasted rather than rows moved), goes to ``to_tag``. Rows that share an
    id are never written (which one is meant cannot be told).
    """
    header = header_of(values)
    plan = RowPlan()
    changed = pd.DataFrame({c: changed_cells(current[c], patched[c], c in numeric) for c in columns},
                           index=current.index)
    plan.new_columns = [c for c in columns if changed[c].any() and c not in header]
    position = {c: header.index(c) if c in header else len(header) + plan.new_columns.index(c)
                for c in columns if c in header or c in plan.new_columns}
    ids = patched["id"].str.strip()
    shared = ids.duplicated(keep=False)
    for line in changed.index[changed.any(axis=1)]:
        row_id = ids[line]
        if not row_id or shared[line]:
            continue
        if set(tagged.get(row_id, [])) != {line}:  # a tag made twice on its row (a retried request) is fine
            plan.to_tag[int(line)] = row_id
            if tagged.get(row_id):
                plan.stale.append(row_id)
            continue
        raw, formulas = [], []
        for column in (c for c in columns if changed.at[line, c]):
            value = patched.at[line, column]
            cells = formulas if column == "image" and value != "" else raw
            cells += [None] * (position[column] + 1 - len(cells))
            cells[position[column]] = typed(value, column in numeric)
        for cells, target in ((raw, plan.raw), (formulas, plan.formulas)):
            if cells:
                target.append({"dataFilter": tag_filter(row_id), "majorDimension": "ROWS", "values": [cells]})
        plan.rows_changed += 1
    for n, column in enumerate(plan.new_columns):
        plan.header.append({"range": a1(title, 1, len(header) + n), "values": [[column]]})
    return plan


def batches(items: list[dict], limit: int) -> list[list[dict]]:
    """``items`` in consecutive groups whose JSON stays under ``limit`` bytes (one item alone may pass it)."""
    out: list[list[dict]] = []
    size = limit
    for item in items:
        length = len(json.dumps(item)) + 1
        if size + length > limit:
            out.append([])
            size = 0
        out[-1].append(item)
        size += length
    return out


def plan_write(values: list[list], patch: pd.DataFrame, title: str, numeric: set[str], source: str,
               tagged: dict[str, list[int]]) -> RowPlan:
    """The cells of tab ``title`` to write so that it equals ``apply_patch(current, patch)``.

    ``values`` is a fresh read of the tab. Only dcloop's columns change, plus ``split`` where it
    was blank and ``id`` on new rows: ``apply_patch`` never touches another human cell.
    """
    current = table_of(values, source, check_ids=False)  # pull checks them, after giving changed ids back
    return plan_rows(values, current, patched_table(current, patch), tbl.MACHINE_COLUMNS + ["split"], title,
                     numeric, tagged)


def plan_split_moves(values: list[list], moves: pd.DataFrame, title: str, numeric: set[str], source: str,
                     tagged: dict[str, list[int]]) -> RowPlan:
    """The ``split`` cells to write for ``table.apply_split_moves``, and no other cell."""
    current = table_of(values, source)
    return plan_rows(values, current, tbl.apply_split_moves(current, moves), ["split"], title, numeric, tagged)


def plan_decisions(values: list[list], decisions: pd.DataFrame, title: str, numeric: set[str], source: str,
                   tagged: dict[str, list[int]]) -> tuple[RowPlan, dict]:
    """The ``label``, ``split`` and ``reviewed`` cells ``table.apply_decisions`` sets, and what it refused."""
    current = table_of(values, source)
    decided, refused = tbl.apply_decisions(current, decisions)
    current = current.reindex(columns=decided.columns, fill_value="")  # a reviewed column may be new
    columns = [c for c in tbl.DECIDED_COLUMNS if c in decided.columns]
    return plan_rows(values, current, decided, columns, title, numeric, tagged), refused


def plan_restore(values: list[list], snapshot: pd.DataFrame, title: str, numeric: set[str], source: str,
                 tagged: dict[str, list[int]]) -> tuple[RowPlan, pd.DataFrame]:
    """The ``label`` and ``split`` cells ``table.apply_restore`` sets, and the lost rows to add back."""
    current = table_of(values, source)
    restored = tbl.apply_restore(current, snapshot)
    kept = restored.iloc[:len(current)].set_axis(current.index)
    plan = plan_rows(values, current, kept, ["label", "split"], title, numeric, tagged)
    return plan, restored.iloc[len(current):]
