"""How dcloop lays out a Google Sheet: the tab templates and the batchUpdate requests built from them.

The templates are JSON files in ``sheets_templates/`` (installed as ``dcloop.sheets_templates``) (one per tab: its columns, who owns
each, formats, dropdowns, protection, colour scale, chart). The builders here are pure: they take a
template and what the sheet looks like now, and return request bodies; nothing is sent from here.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import table as tbl
from ..errors import ConfigError



def template_folder() -> Path:
    """sheets_templates/ of a source checkout (editable installs), else the copy a wheel installs."""
    source = Path(__file__).resolve().parents[2] / "sheets_templates"
    return source if source.is_dir() else Path(str(resources.files("dcloop.sheets_templates")))


TEMPLATES = template_folder()
TAB_NAMES = ("labels", "results", "classes")
NEW_TAB_ROWS, NEW_TAB_COLUMNS = 1000, 26  # what Google gives a tab created without a size
CHART_GAP = 1  # blank columns between a tab's last column and its chart's anchor
SUSPECTS_VIEW = "most suspicious first"  # the filter view init adds to the labels tab


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Column(Template):
    name: str
    owner: str = "machine"
    width: int | None = None
    number_format: str | None = None
    dropdown: str | None = None
    color_scale: dict | None = None


class Protection(Template):
    warning_only: bool = True
    description: str


class Chart(Template):
    title: str
    type: str = "LINE"
    domain: str
    series: list[str]
    axis_titles: dict[str, str] = {}


class Tab(Template):
    title: str
    about: str = ""
    columns: list[Column]
    frozen_rows: int = 1
    spare_rows: int = 0
    image_row_height: int | None = None
    header_format: dict = {}
    machine_format: dict = {}
    protection: Protection | None = None
    chart: Chart | None = None

    @property
    def header(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> set[str]:
        return {c.name for c in self.columns if c.number_format}

    def columns_needed(self, header: list[str]) -> int:
        """Grid columns for ``header``, plus the gap and the anchor column of the chart, if any.

        Google refuses a chart anchored past the grid's last column, and refuses with it every
        other request of the same batchUpdate.
        """
        return len(header) + (CHART_GAP + 1 if self.chart else 0)


def load_tabs(folder: Path = TEMPLATES) -> dict[str, Tab]:
    """The labels, results and classes templates, by name."""
    return {name: load_tab(Path(folder) / f"{name}.json") for name in TAB_NAMES}


def load_tab(path: Path) -> Tab:
    try:
        return Tab.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: sheet template missing; reinstall dcloop.") from e
    except (json.JSONDecodeError, ValidationError) as e:
        raise ConfigError(f"{path}: not a valid sheet template: {e}") from e


def grid_range(sheet_id: int, first_row: int | None = None, last_row: int | None = None,
               first_column: int | None = None, last_column: int | None = None) -> dict:
    """A GridRange: 0-based, end-exclusive; a missing end means 'to the edge of the sheet'."""
    bounds = {"startRowIndex": first_row, "endRowIndex": last_row,
              "startColumnIndex": first_column, "endColumnIndex": last_column}
    return {"sheetId": sheet_id, **{k: v for k, v in bounds.items() if v is not None}}


def column_range(sheet_id: int, column: int, first_row: int = 1) -> dict:
    return grid_range(sheet_id, first_row, None, column, column + 1)


def add_sheet(title: str, rows: int, columns: int, frozen_rows: int) -> dict:
    grid = {"rowCount": rows, "columnCount": columns, "frozenRowCount": frozen_rows}
    return {"addSheet": {"properties": {"title": title, "gridProperties": grid}}}


def rename_sheet(sheet_id: int, title: str) -> dict:
    return {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "title": title}, "fields": "title"}}


def resize_sheet(sheet_id: int, rows: int, columns: int) -> dict:
    grid = {"rowCount": rows, "columnCount": columns}
    return {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "gridProperties": grid},
                                      "fields": "gridProperties.rowCount,gridProperties.columnCount"}}


def freeze_rows(sheet_id: int, rows: int) -> dict:
    return {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "gridProperties": {"frozenRowCount": rows}},
                                      "fields": "gridProperties.frozenRowCount"}}


def dimension_size(sheet_id: int, dimension: str, first: int, last: int, pixels: int) -> dict:
    return {"updateDimensionProperties": {
        "range": {"sheetId": sheet_id, "dimension": dimension, "startIndex": first, "endIndex": last},
        "properties": {"pixelSize": pixels}, "fields": "pixelSize"}}


def repeat_format(rng: dict, cell_format: dict) -> dict:
    fields = ",".join(sorted(cell_format))
    return {"repeatCell": {"range": rng, "cell": {"userEnteredFormat": cell_format},
                           "fields": f"userEnteredFormat({fields})"}}


def dropdown(rng: dict, choices: list[str]) -> dict:
    rule = {"condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": c} for c in choices]},
            "strict": True, "showCustomUi": True}
    return {"setDataValidation": {"range": rng, "rule": rule}}


def protect(rng: dict, protection: Protection) -> dict:
    return {"addProtectedRange": {"protectedRange": {
        "range": rng, "description": protection.description, "warningOnly": protection.warning_only}}}


def color_scale(rng: dict, scale: dict) -> dict:
    def point(p: dict) -> dict:
        return {"color": p["color"], "type": "NUMBER", "value": p["value"]}
    rule = {"ranges": [rng], "gradientRule": {"minpoint": point(scale["min"]), "maxpoint": point(scale["max"])}}
    return {"addConditionalFormatRule": {"rule": rule, "index": 0}}


def line_chart(sheet_id: int, header: list[str], chart: Chart) -> dict:
    """A native chart of ``chart.series`` against ``chart.domain``, over whole columns so new runs show."""
    def source(name: str) -> dict:
        column = header.index(name)
        return {"sourceRange": {"sources": [grid_range(sheet_id, 0, None, column, column + 1)]}}
    axes = [{"position": position, "title": title} for position, title in chart.axis_titles.items()]
    spec = {"title": chart.title, "basicChart": {
        "chartType": chart.type, "legendPosition": "BOTTOM_LEGEND", "axis": axes, "headerCount": 1,
        "domains": [{"domain": source(chart.domain)}],
        "series": [{"series": source(name), "targetAxis": "LEFT_AXIS"} for name in chart.series]}}
    anchor = {"sheetId": sheet_id, "rowIndex": 1, "columnIndex": len(header) + CHART_GAP}
    return {"addChart": {"chart": {"spec": spec, "position": {"overlayPosition": {"anchorCell": anchor}}}}}


def choices_for(column: Column, classes: list[str]) -> list[str]:
    return {"classes": classes, "splits": tbl.SPLITS}.get(column.dropdown, [])


def decorations(sheet: dict) -> dict:
    """What dcloop already added to a tab (from spreadsheets.get), so re-running init adds no duplicates."""
    return {"protected": {p.get("description", "") for p in sheet.get("protectedRanges", [])},
            "gradients": len([r for r in sheet.get("conditionalFormats", []) if "gradientRule" in r]),
            "charts": {c.get("spec", {}).get("title", "") for c in sheet.get("charts", [])},
            "filter_views": {v.get("title", "") for v in sheet.get("filterViews", [])}}


def filter_view_requests(tab: Tab, sheet_id: int, header: list[str], found: dict) -> list[dict]:
    """The filter view "most suspicious first" on the labels tab, once: suspects first for whoever opens
    it, while the rows stay where they are for everyone else (a sort would move them under people's
    cursors)."""
    if "suspicion" not in header or SUSPECTS_VIEW in found.get("filter_views", set()):
        return []
    return [{"addFilterView": {"filter": {
        "title": SUSPECTS_VIEW, "range": grid_range(sheet_id, 0),
        "sortSpecs": [{"dimensionIndex": header.index("suspicion"), "sortOrder": "DESCENDING"}]}}}]


def format_requests(tab: Tab, sheet_id: int, header: list[str], rows: int, classes: list[str],
                    found: dict, images: bool) -> list[dict]:
    """Freeze, formats, widths, dropdowns, protections, colour scale and chart for one tab.

    ``header`` is the tab's header as it is (columns may have moved); ``rows`` its grid row count;
    ``found`` what ``decorations`` saw, so protections, colour scales and charts are added once.
    """
    requests = [freeze_rows(sheet_id, tab.frozen_rows)]
    if tab.header_format:
        requests.append(repeat_format(grid_range(sheet_id, 0, 1, 0, len(header)), tab.header_format))
    if images and tab.image_row_height and rows > 1:
        requests.append(dimension_size(sheet_id, "ROWS", 1, rows, tab.image_row_height))
    for column in tab.columns:
        if column.name in header:
            requests += column_requests(tab, column, sheet_id, header.index(column.name), rows, classes, found)
    chart_columns = [tab.chart.domain, *tab.chart.series] if tab.chart else []
    if tab.chart and tab.chart.title not in found["charts"] and set(chart_columns) <= set(header):
        requests.append(line_chart(sheet_id, header, tab.chart))
    return requests


def column_requests(tab: Tab, column: Column, sheet_id: int, position: int, rows: int,
                    classes: list[str], found: dict) -> list[dict]:
    rng = column_range(sheet_id, position)
    out = []
    if column.width:
        out.append(dimension_size(sheet_id, "COLUMNS", position, position + 1, column.width))
    style = dict(tab.machine_format) if column.owner == "machine" else {}
    if column.number_format:
        style["numberFormat"] = {"type": "NUMBER", "pattern": column.number_format}
    if style:
        out.append(repeat_format(rng, style))
    choices = choices_for(column, classes)
    if choices:
        out.append(dropdown(grid_range(sheet_id, 1, rows, position, position + 1), choices))
    if column.owner == "machine" and tab.protection:
        mine = tab.protection.model_copy(update={"description": f"{tab.protection.description} [{column.name}]"})
        if mine.description not in found["protected"]:
            out.append(protect(rng, mine))
    if column.color_scale and not found["gradients"]:
        out.append(color_scale(rng, column.color_scale))
    return out
