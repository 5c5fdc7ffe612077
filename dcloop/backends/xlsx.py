"""The label table as an Excel workbook, ``labels.xlsx``, with a thumbnail of each row's image.

Read and written with openpyxl. Sheets ``labels``, ``results`` and ``classes`` are laid out from
``sheets_templates/`` as the Google Sheet is. Writes change only the cells dcloop owns (and the
pictures on ``labels``): a person's cells, columns, sheets and formats are saved back as openpyxl
loaded them. Rows are never moved: people sort with the header's filter.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import re
import time
from copy import copy
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import table as tbl
from ..errors import BackendError, SchemaError
from ..fsutil import atomic_write_bytes, inside, is_safe_name
from ..table import RESULT_COLUMNS
from . import sheet_layout as layout
from .csv import column_names
from .rewrite import RewritingTable

MAX_WRITE_ATTEMPTS = 5
SETTLE_S = 0.25        # a file modified this recently is read again once it has held still
UNSETTLED_S = 3.0      # a workbook that does not open and is younger than this may be mid-save: wait
READ_ATTEMPTS = 20
TEXT = "@"             # Excel's and LibreOffice's "Text" number format: typed ids stay text
THUMBNAIL_PX = 64
LAST_ROW = 1_048_576   # Excel's last row: validations and formats cover whole columns
BLOBS = (".dcloop", "cache", "blobs")  # where image cells may point (sync.image_cell)
THUMBS = (".dcloop", "cache", "thumbs")
READ_CACHE = (".dcloop", "cache", "xlsx")

# Excel's sheet protection would also block sorting and filtering, which is how people use this
# sheet, so dcloop's columns are "protected with a warning" the way the Google Sheet's are: a data
# validation no typed value passes (text length below 0), shown as a warning the person may
# override. dcloop's own writes are not checked by it.
WARNING_RULE = {"type": "textLength", "operator": "lessThan", "formula1": "0"}


def rgb(color: dict) -> str:
    """A template colour ({"red": 0.9, ...}, 0 to 1) as openpyxl's 'RRGGBB'."""
    return "".join(f"{round(255 * color.get(c, 0.0)):02X}" for c in ("red", "green", "blue"))


def px_to_width(px: int) -> float:
    """Pixels as Excel's column width (characters of the default font, about 7 px each)."""
    return round(px / 7, 2)


def cell_text(value) -> str:
    """A cell's value as dcloop reads every cell: ints without '.0', floats in their shortest form,
    dates in ISO form, booleans as TRUE/FALSE, empty as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


_INT = re.compile(r"[+-]?\d{1,15}")


def number_value(text: str):
    """The number a numeric column's text is written as (int, float), or the text where it is none."""
    text = str(text).strip()
    if _INT.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def canonical_number(text: str) -> str:
    """How a numeric column's text reads back once written: '0.5000' -> '0.5', '3.0' -> '3'."""
    value = number_value(text)
    return value if isinstance(value, str) else cell_text(value)


@dataclass
class Grid:
    """A sheet's table: its cells as strings, and where each row and column sits in the sheet."""

    frame: pd.DataFrame
    rows: list[int]      # the sheet row (1-based) of each frame row
    columns: list[int]   # the sheet column (1-based) of each frame column
    formulas: bool = False  # some cell holds a formula (its text is not what a reader sees)


def grid_of(values, source: str) -> Grid:
    """The table in rows of cell values (the header first); wholly blank rows and unnamed blank columns dropped."""
    rows = iter(values)
    header_values = next(rows, None)
    if header_values is None:
        raise SchemaError(f"{source}: the sheet is empty; a label table needs a header row with url,label.")
    body, numbers, formulas = [], [], False
    for number, row in enumerate(rows, 2):
        cells = [cell_text(v) for v in row]
        if any(c.strip() for c in cells):
            body.append(cells)
            numbers.append(number)
            formulas = formulas or any(c.startswith("=") for c in cells)
    header = [cell_text(v) for v in header_values]
    width = max([len(header)] + [len(r) for r in body])
    header += [""] * (width - len(header))
    body = [r + [""] * (width - len(r)) for r in body]
    keep = [n for n in range(width) if header[n].strip() or any(r[n].strip() for r in body)]
    names = column_names([header[n] for n in keep])
    frame = pd.DataFrame([[r[n] for n in keep] for r in body], columns=names, dtype=str)
    return Grid(frame, numbers, [n + 1 for n in keep], formulas)


def load_settled(path: Path, read_only: bool, sleep=time.sleep):
    """The workbook at ``path`` and the file_stamp it was read at, read once the file holds still.

    A program that saves in place can be caught half-way: a zip that does not open is read again
    while the file is young or still changing, then refused with a clear message.
    """
    from openpyxl import load_workbook

    for _ in range(READ_ATTEMPTS):
        try:
            before = os.stat(path)
            data = Path(path).read_bytes()
        except FileNotFoundError as e:
            raise BackendError(f"{path}: no such file. Run 'dcloop init' to create a project.") from e
        age = time.time() - before.st_mtime
        after = os.stat(path)
        if (after.st_mtime_ns, after.st_size) != (before.st_mtime_ns, before.st_size) or len(data) != after.st_size:
            sleep(SETTLE_S)
            continue
        try:
            # read_only and data_only for reading: the values a person sees, streamed. A write loads
            # everything (formulas, styles, pictures) so that all of it is saved back.
            return load_workbook(io.BytesIO(data), read_only=read_only, data_only=read_only), \
                (after.st_mtime_ns, after.st_size)
        except Exception as e:  # a damaged or half-written zip surfaces as many error types
            if age < UNSETTLED_S:
                sleep(max(SETTLE_S, UNSETTLED_S - age))
                continue
            raise BackendError(f"{path}: not a workbook dcloop can open ({type(e).__name__}: {e}). If a program "
                               f"is saving it, wait and sync again; else restore it from a backup.") from e
    raise BackendError(f"{path}: the file kept changing while dcloop read it; wait until the program "
                       f"writing it has finished saving, then sync again.")


def all_rows(sheet):
    """Every row's values of a sheet opened read-only, whatever size the file claims it has."""
    # openpyxl's streamed reading stops at, or pads up to, the size written in the file, which some
    # programs get wrong (openpyxl's docs, "Read-only mode": "Worksheet dimensions").
    sheet.reset_dimensions()
    return sheet.iter_rows(values_only=True)


def labels_sheet(workbook):
    """The labels sheet: by name, else the first sheet (a person may have renamed it)."""
    return workbook["labels"] if "labels" in workbook.sheetnames else workbook.worksheets[0]


class XlsxBackend(RewritingTable):
    """labels.xlsx: sheets labels, results and classes, laid out from the templates."""

    capabilities = frozenset()  # rows keep the order people gave them (pictures are anchored to rows)

    def __init__(self, path: Path, root: Path, classes=(), row_drop: tbl.RowDrop = tbl.RowDrop(),
                 tabs: dict | None = None):
        self.path = Path(path)
        self.root = Path(root)
        self.classes = list(classes)
        self.row_drop = row_drop
        self.tabs = tabs or layout.load_tabs()
        self.cache_path = self.root.joinpath(*READ_CACHE, f"{self.path.name}.json")
        self._saved = None  # (stamp, workbook) of the file this backend saved last

    @property
    def labels(self) -> layout.Tab:
        return self.tabs["labels"]

    # --- reading ----------------------------------------------------------------------------

    def read(self) -> pd.DataFrame:
        """The labels sheet, every cell a string; an unchanged file comes from the read cache."""
        stamp = self.stamp()
        cached = self._cached(stamp)
        if cached is not None:
            return cached
        workbook, _ = load_settled(self.path, read_only=True)
        try:
            grid = grid_of(all_rows(labels_sheet(workbook)), str(self.path))
        finally:
            workbook.close()
        self._remember(stamp, grid.frame)
        return grid.frame

    def _cached(self, stamp) -> pd.DataFrame | None:
        # A cache: anything unreadable or stale is ignored and rebuilt by the next parse.
        try:
            saved = json.loads(self.cache_path.read_text(encoding="utf-8"))
            if stamp is None or saved["stamp"] != list(stamp):
                return None
            return pd.DataFrame(saved["rows"], columns=saved["columns"], dtype=str)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remember(self, stamp, frame: pd.DataFrame) -> None:
        if stamp is None:
            return
        body = {"stamp": list(stamp), "columns": list(frame.columns), "rows": frame.to_numpy().tolist()}
        try:
            atomic_write_bytes(self.cache_path, json.dumps(body).encode("utf-8"))
        except OSError:
            pass  # only a cache

    def read_results(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=RESULT_COLUMNS)
        workbook, _ = load_settled(self.path, read_only=True)
        try:
            if "results" not in workbook.sheetnames:
                return pd.DataFrame(columns=RESULT_COLUMNS)
            values = list(all_rows(workbook["results"]))
        finally:
            workbook.close()
        if not values or not any(cell_text(v) for v in values[0]):
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return grid_of(values, f"{self.path} (sheet results)").frame

    # --- writing ----------------------------------------------------------------------------

    def write(self, patch: pd.DataFrame) -> int:
        """Apply dcloop's columns by id; rows stay where the person put them (no ``order``).

        Refused, with nothing written, when the workbook now lacks more of the patch's rows than
        ``row_drop`` allows.
        """
        patch = patch.copy()
        for column in self.labels.numeric & set(patch.columns):
            patch[column] = patch[column].map(canonical_number)  # compared as they read back

        def change(current: pd.DataFrame) -> pd.DataFrame:
            known = set(patch["id"])
            self.row_drop.check(len(known), len(known - set(current["id"].str.strip())),
                                f"{self.path} (re-read before writing)")
            return tbl.apply_patch(current, patch)

        return self._rewrite(change)

    def _rewrite(self, change) -> int:
        """Re-read the labels sheet, apply ``change`` (a dcloop.table function), write the cells it changed."""
        seen = tbl.normalize(self.read(), str(self.path), check_ids=False)
        if not tbl.rows_changed(seen, change(seen)):  # the cached read says nothing would change: skip the load
            return 0

        def edit(workbook) -> tuple[int, Grid | None]:
            sheet = labels_sheet(workbook)
            grid = grid_of(sheet.iter_rows(values_only=True), str(self.path))
            current = tbl.normalize(grid.frame, str(self.path), check_ids=False)  # pull checks them
            patched = change(current)
            changed = tbl.rows_changed(current, patched)
            if changed:
                LabelsWriter(self, sheet, grid).put(current, patched)
                grid = grid_of(sheet.iter_rows(values_only=True), str(self.path))
            return changed, grid

        return self._edit(edit)

    def _edit(self, edit) -> int:
        """Load the whole workbook, let ``edit`` change it, save it in one atomic rename unless the
        file was saved meanwhile (then again, up to MAX_WRITE_ATTEMPTS).

        ``edit(workbook)`` returns (cells changed, the labels sheet's Grid after the change, or None
        when it left that sheet alone). Either way the read cache is kept for the saved file, and the
        workbook itself for the next edit while the file is the one saved (a sync's predictions,
        results row and classes are three edits in a row).
        """
        for _ in range(MAX_WRITE_ATTEMPTS):
            seen = self.stamp()
            labels = self._cached(seen)
            kept, self._saved = self._saved, None  # an edit that fails half-way leaves no workbook to reuse
            if kept is not None and kept[0] == seen:
                workbook, stamp = kept[1], (seen[1], seen[3])
            else:
                workbook, stamp = load_settled(self.path, read_only=False)
            changed, grid = edit(workbook)
            if not changed:
                return 0
            keep_pictures(workbook)
            buffer = io.BytesIO()
            workbook.save(buffer)
            if self._replace(buffer.getvalue(), stamp):
                if grid is not None:
                    labels = None if grid.formulas else grid.frame
                elif seen is None or (seen[1], seen[3]) != stamp:  # the cached read is of another version
                    labels = None
                saved = self.stamp()
                # Only for the file dcloop just wrote: a save by someone else since is (almost surely) another size.
                if saved is not None and saved[3] == len(buffer.getvalue()):
                    self._saved = (saved, workbook)
                    if labels is not None:
                        self._remember(saved, labels)
                return changed
        raise BackendError(f"{self.path}: the file kept changing while dcloop tried to write "
                           f"{MAX_WRITE_ATTEMPTS} times; close the program's autosave and sync again.")

    def create(self, table: pd.DataFrame) -> None:
        from openpyxl import Workbook

        if self.path.exists():
            raise BackendError(f"{self.path} already exists; dcloop init will not overwrite a label table.")
        workbook = Workbook()
        sheet = workbook.active
        sheet.title = self.labels.title
        sheet.append(self.labels.header)
        writer = LabelsWriter(self, sheet, grid_of(sheet.iter_rows(values_only=True), str(self.path)))
        writer.lay_out()
        writer.put(pd.DataFrame(columns=self.labels.header), table[tbl.COLUMNS].fillna("").astype(str))
        results = workbook.create_sheet(self.tabs["results"].title)
        lay_out_tab(results, self.tabs["results"], self.tabs["results"].header)
        classes = workbook.create_sheet(self.tabs["classes"].title)
        lay_out_tab(classes, self.tabs["classes"], self.tabs["classes"].header)
        fill_classes(classes, self.tabs["classes"], [{"class": c} for c in self.classes])
        set_label_dropdown(sheet, self, len(self.classes))
        buffer = io.BytesIO()
        workbook.save(buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def append_result(self, row: dict[str, str]) -> None:
        """One row on the results sheet, laid out by its own header; new names go at its end."""
        tab = self.tabs["results"]

        def edit(workbook) -> tuple[int, None]:
            sheet = workbook[tab.title] if tab.title in workbook.sheetnames else workbook.create_sheet(tab.title)
            header = [cell_text(c.value) for c in sheet[1]] if sheet.max_row >= 1 else []
            if not any(header):
                header = []
            missing = list(dict.fromkeys(c for c in [*tab.header, *row] if c not in header))
            if missing:
                header += missing
                lay_out_tab(sheet, tab, header)
            last = max([r for r in range(1, sheet.max_row + 1)
                        if any(cell_text(sheet.cell(r, c).value) for c in range(1, len(header) + 1))] or [1])
            formats = number_formats(tab)
            for n, name in enumerate(header, 1):
                put_value(sheet.cell(last + 1, n), str(row.get(name, "")), formats.get(name))
            add_results_chart(sheet, tab, header, last + 1)
            return 1, None

        self._edit(edit)

    def update_classes(self, rows: list[dict[str, str]]) -> None:
        """Rewrite the classes sheet (rows per split, last per-class accuracy) and the label dropdown."""
        tab = self.tabs["classes"]

        def edit(workbook) -> tuple[int, None]:
            sheet = workbook[tab.title] if tab.title in workbook.sheetnames else workbook.create_sheet(tab.title)
            header = list(dict.fromkeys(tab.header + [c for row in rows for c in row]))
            lay_out_tab(sheet, tab, header)
            fill_classes(sheet, tab, rows, header)
            set_label_dropdown(labels_sheet(workbook), self, len(rows))
            return 1, None

        self._edit(edit)


# --- layout ----------------------------------------------------------------------------------


def header_style(cell, tab: layout.Tab) -> None:
    from openpyxl.styles import Font, PatternFill

    fmt = tab.header_format
    cell.font = Font(bold=fmt.get("textFormat", {}).get("bold", True))
    if "backgroundColor" in fmt:
        cell.fill = PatternFill("solid", fgColor=rgb(fmt["backgroundColor"]))


def lay_out_tab(sheet, tab: layout.Tab, header: list[str]) -> None:
    """Header row (bold, coloured), frozen rows, widths and number formats of a results or classes sheet."""
    from openpyxl.utils import get_column_letter

    formats = {c.name: c for c in tab.columns}
    for n, name in enumerate(header, 1):
        cell = sheet.cell(1, n)
        if cell_text(cell.value) != name:
            cell.value = name
        header_style(cell, tab)
        column = formats.get(name)
        if column and column.width:
            sheet.column_dimensions[get_column_letter(n)].width = px_to_width(column.width)
    sheet.freeze_panes = sheet.cell(tab.frozen_rows + 1, 1).coordinate


def fill_classes(sheet, tab: layout.Tab, rows: list[dict[str, str]], header: list[str] | None = None) -> None:
    """The classes sheet's rows, blanking rows of classes that are gone."""
    header, formats = header or tab.header, number_formats(tab)
    for r in range(2, max(sheet.max_row, len(rows) + 1) + 1):
        row = rows[r - 2] if r - 2 < len(rows) else {}
        for n, name in enumerate(header, 1):
            put_value(sheet.cell(r, n), str(row.get(name, "")), formats.get(name))


def set_label_dropdown(sheet, backend: XlsxBackend, classes: int) -> None:
    """The label column's dropdown lists the classes sheet's first column (one class per row)."""
    header = [cell_text(c.value).strip() for c in sheet[1]]
    if "label" not in header:
        return
    from openpyxl.utils import get_column_letter
    letter = get_column_letter(header.index("label") + 1)
    source = f"{backend.tabs['classes'].title}!$A$2:$A${max(2, classes + 1)}"
    for validation in sheet.data_validations.dataValidation:
        if validation.type == "list" and str(validation.sqref).startswith(f"{letter}2:"):
            validation.formula1 = source
            return
    add_validation(sheet, f"{letter}2:{letter}{LAST_ROW}", type="list", formula1=source, errorStyle="warning",
                   error="Not one of the classes in dcloop.toml: the next sync flags the row unknown-label.")


def add_validation(sheet, sqref: str, **rule) -> None:
    from openpyxl.worksheet.datavalidation import DataValidation

    validation = DataValidation(allow_blank=True, showErrorMessage=True, **rule)
    validation.add(sqref)
    sheet.add_data_validation(validation)


def add_results_chart(sheet, tab: layout.Tab, header: list[str], last_row: int) -> None:
    """The results sheet's line chart of the template's series by run; the sheet is dcloop's: it replaces any chart."""
    from openpyxl.chart import LineChart, Reference

    spec = tab.chart
    if spec is None or spec.domain not in header or not all(s in header for s in spec.series):
        return
    chart = LineChart()
    chart.title = spec.title
    chart.x_axis.title = spec.axis_titles.get("BOTTOM_AXIS", "")
    chart.y_axis.title = spec.axis_titles.get("LEFT_AXIS", "")
    for name in spec.series:
        n = header.index(name) + 1
        chart.add_data(Reference(sheet, min_col=n, max_col=n, min_row=1, max_row=last_row), titles_from_data=True)
    domain = header.index(spec.domain) + 1
    chart.set_categories(Reference(sheet, min_col=domain, max_col=domain, min_row=2, max_row=last_row))
    sheet._charts = []  # openpyxl has no public way to remove a chart
    sheet.add_chart(chart, "B" + str(last_row + 3))


def number_formats(tab: layout.Tab) -> dict[str, str]:
    """The template's number format of each numeric column."""
    return {c.name: c.number_format for c in tab.columns if c.number_format}


def put_value(cell, text: str, number_format: str | None = None) -> None:
    """Write ``text``: a number where the column has a number format, else a text cell in format '@'
    (never a formula)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    value = number_value(text) if number_format else text
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("?", value)
        cell.value = value or None
        if value:
            cell.data_type = "s"  # openpyxl would store '=...' as a formula
        if cell.number_format == "General":
            cell.number_format = TEXT
    else:
        cell.value = value
        if cell.number_format in ("General", TEXT):
            cell.number_format = number_format


class LabelsWriter:
    """Puts a patched table into the labels sheet: changed cells, new columns and rows, pictures."""

    def __init__(self, backend: XlsxBackend, sheet, grid: Grid):
        self.backend, self.sheet, self.grid = backend, sheet, grid
        self.tab = backend.labels
        self.formats = number_formats(self.tab)
        self.styles: dict[str, object] = {}

    def put(self, current: pd.DataFrame, patched: pd.DataFrame) -> None:
        patched = patched.reindex(columns=list(dict.fromkeys([*current.columns, *patched.columns])), fill_value="")
        column_of = self.columns(list(patched.columns))
        values, before = patched.to_numpy(), current.reindex(columns=patched.columns, fill_value="").to_numpy()
        for i, row in enumerate(values[:len(before)]):
            for n in (before[i] != row).nonzero()[0]:
                self.put_cell(self.grid.rows[i], column_of[n], patched.columns[n], row[n])
        next_row = (self.grid.rows[-1] if self.grid.rows else 1) + 1
        for k, row in enumerate(values[len(before):]):  # every cell, so blank ones get their format too
            for n, text in enumerate(row):
                self.put_cell(next_row + k, column_of[n], patched.columns[n], text)
        self.pictures()
        self.keep_layout()
        if self.sheet.auto_filter.ref:
            self.sheet.auto_filter.ref = f"A1:{self.sheet.cell(1, max(column_of)).column_letter}" \
                                         f"{max(self.sheet.max_row, 2)}"

    def columns(self, names: list[str]) -> list[int]:
        """The sheet column of each name; dcloop's columns the sheet lacks are added after its last."""
        known = dict(zip(self.grid.frame.columns, self.grid.columns))
        stripped = {str(k).strip(): v for k, v in known.items()}
        out, last = [], max(self.grid.columns or [0])
        for name in names:
            column = known.get(name) or stripped.get(name)
            if column is None:
                last += 1
                column = last
                self.sheet.cell(1, column).value = name
                header_style(self.sheet.cell(1, column), self.tab)
            out.append(column)
        return out

    def put_cell(self, row: int, column: int, name: str, text: str) -> None:
        cell = self.sheet.cell(row, column)
        if name in tbl.MACHINE_COLUMNS:
            cell._style = copy(self.style(name))  # one style per column, copied: fast for 10k rows
        put_value(cell, text, self.formats.get(name))

    def style(self, name: str):
        """The grey, italic look and number format of one of dcloop's columns, made once."""
        if name not in self.styles:
            from openpyxl.cell.cell import Cell
            from openpyxl.styles import Font, PatternFill

            spec = {c.name: c for c in self.tab.columns}.get(name)
            fmt = self.tab.machine_format
            proto = Cell(self.sheet)
            proto.fill = PatternFill("solid", fgColor=rgb(fmt.get("backgroundColor", {"red": .94, "green": .94,
                                                                                       "blue": .94})))
            text = fmt.get("textFormat", {})
            proto.font = Font(italic=text.get("italic", False), color=rgb(text.get("foregroundColor", {})))
            proto.number_format = (spec.number_format if spec and spec.number_format else TEXT)
            self.styles[name] = proto._style
        return self.styles[name]

    def lay_out(self) -> None:
        """A new labels sheet: header style, frozen header, widths, filter, dropdowns, warnings, colour scale."""
        from openpyxl.formatting.rule import ColorScaleRule
        from openpyxl.utils import get_column_letter

        sheet, tab = self.sheet, self.tab
        sheet.freeze_panes = sheet.cell(tab.frozen_rows + 1, 1).coordinate
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(tab.columns))}2"
        warning = tab.protection.description if tab.protection else "dcloop: rewritten on every sync"
        for n, column in enumerate(tab.columns, 1):
            letter, cells = get_column_letter(n), f"{get_column_letter(n)}2:{get_column_letter(n)}{LAST_ROW}"
            header_style(sheet.cell(1, n), tab)
            if column.width:
                sheet.column_dimensions[letter].width = px_to_width(column.width)
            if column.dropdown == "splits":
                add_validation(sheet, cells, type="list", formula1='"' + ",".join(tbl.SPLITS) + '"',
                               errorStyle="warning", error="split is one of " + ", ".join(tbl.SPLITS) + ".")
            if column.owner == "machine":
                add_validation(sheet, cells, errorStyle="warning", errorTitle="dcloop", error=warning,
                               promptTitle="dcloop", prompt=warning, showInputMessage=True, **WARNING_RULE)
            if column.color_scale:
                low, high = column.color_scale["min"], column.color_scale["max"]
                sheet.conditional_formatting.add(cells, ColorScaleRule(
                    start_type="num", start_value=float(low["value"]), start_color=rgb(low["color"]),
                    end_type="num", end_value=float(high["value"]), end_color=rgb(high["color"])))

    def keep_layout(self) -> None:
        """Put back what Calc drops or trims when it saves: a hidden Calc (no window) keeps no frozen
        header, and it ends the dropdowns and warnings of whole columns near row 1,000."""
        from openpyxl.worksheet.cell_range import MultiCellRange

        sheet = self.sheet
        if sheet.freeze_panes is None:
            sheet.freeze_panes = sheet.cell(self.tab.frozen_rows + 1, 1).coordinate
        header = [cell_text(c.value).strip() for c in sheet[1]]
        ours = {sheet.cell(1, header.index(c.name) + 1).column_letter for c in self.tab.columns
                if c.name in header and (c.owner == "machine" or c.dropdown)}
        for validation in sheet.data_validations.dataValidation:
            found = re.fullmatch(r"([A-Z]+)2:([A-Z]+)(\d+)", str(validation.sqref))
            if found and found[1] == found[2] and found[1] in ours:
                validation.sqref = MultiCellRange(f"{found[1]}2:{found[1]}{LAST_ROW}")

    def pictures(self) -> None:
        """One thumbnail per row whose image cell names a cached image; the sheet's pictures are dcloop's.

        openpyxl may or may not keep the pictures it loads, and Calc re-anchors them when it saves:
        all are dropped and made again from the image cells, so the result never depends on either.
        """
        from openpyxl.drawing.image import Image

        header = [cell_text(c.value).strip() for c in self.sheet[1]]
        self.sheet._images = []  # openpyxl has no public way to remove a picture
        if "image" not in header:
            return
        column = header.index("image") + 1
        thumbs = Thumbnails(self.backend.root)
        height = (self.tab.image_row_height or 80) * 0.75  # pixels to points
        for row in range(2, self.sheet.max_row + 1):
            cell = self.sheet.cell(row, column)
            png = thumbs.get(cell_text(cell.value))
            if png is None:
                continue
            self.sheet.add_image(Image(KeptBytes(png)), cell.coordinate)
            dimension = self.sheet.row_dimensions[row]
            if (dimension.height or 0) < height:
                dimension.height = height


class KeptBytes(io.BytesIO):
    """A picture's bytes that survive a save: openpyxl closes the file it reads a picture from."""

    def close(self) -> None:
        pass


def keep_pictures(workbook) -> None:
    """Make every picture of ``workbook`` readable again after a save, so the workbook can be saved twice."""
    for sheet in workbook.worksheets:
        for image in sheet._images:
            if not isinstance(image.ref, KeptBytes):
                image.ref = KeptBytes(image._data())


class Thumbnails:
    """Small PNGs of cached images, made once per image and kept under .dcloop/cache/thumbs."""

    def __init__(self, root: Path, size: int = THUMBNAIL_PX):
        self.root, self.size = Path(root), size
        self.made: dict[str, bytes | None] = {}

    def get(self, cell: str) -> bytes | None:
        """The thumbnail of the blob an image cell names, or None (blank, unsafe, missing or unreadable)."""
        if cell not in self.made:
            self.made[cell] = self.make(cell)
        return self.made[cell]

    def make(self, cell: str) -> bytes | None:
        parts = [p for p in re.split(r"[\\/]", cell.strip()) if p]
        # The cell is table data: it names a blob only as .dcloop/cache/blobs/<xx>/<hash>.
        if len(parts) != len(BLOBS) + 2 or tuple(parts[:len(BLOBS)]) != BLOBS \
                or not all(is_safe_name(p) for p in parts[len(BLOBS):]):
            return None
        saved = self.root.joinpath(*THUMBS, f"{parts[-1]}-{self.size}.png")
        try:
            return saved.read_bytes()
        except OSError:
            pass
        try:
            png = thumbnail(inside(self.root, *parts).read_bytes(), self.size)
        except Exception:  # an unreadable image gets no picture; the sync flags it already
            return None
        try:
            atomic_write_bytes(saved, png)
        except OSError:
            pass  # only a cache
        return png


def thumbnail(data: bytes, size: int) -> bytes:
    """A PNG of at most size x size pixels, aspect kept."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((size, size))
        picture = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()
