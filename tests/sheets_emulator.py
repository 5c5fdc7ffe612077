"""A local emulator of the Google Sheets API v4 subset that gspread and dcloop use.

It is a real HTTP server on 127.0.0.1 (``SheetsEmulator().start()`` returns its base URL), so
tests drive real gspread and google-auth against it:

- ``POST /token``: the service-account token exchange (a signed JWT, checked against the public key
  of an account the test registered with ``add_account``);
- ``spreadsheets.create``, ``spreadsheets.get`` (with ``fields``) and ``spreadsheets.batchUpdate``
  (addSheet, deleteSheet, updateSheetProperties, updateDimensionProperties, repeatCell,
  setDataValidation, addProtectedRange, addConditionalFormatRule, addChart, sortRange,
  insertDimension, deleteDimension, appendDimension, moveDimension, addFilterView,
  createDeveloperMetadata, deleteDeveloperMetadata);
- ``values`` get, batchGet, update, batchUpdate, append, clear, batchClear, and
  batchGetByDataFilter, batchUpdateByDataFilter (data filters: ``a1Range`` and
  ``developerMetadataLookup``).

Developer metadata is kept on rows only (Google also allows columns, tabs and the spreadsheet: refused
here): it moves with its row when rows are inserted, deleted, sorted or moved, and goes with a deleted
row, as Google documents. A write whose data filter matches nothing is skipped, or refused with 400
when ``refuse_unmatched`` is set (Google does not document which). A request body over
``max_request_bytes`` (10 MB unless set) is refused with Google's 400.

Like Google it parses A1 ranges with quoted titles, open ends and reversed corners, takes RAW or
USER_ENTERED input, renders FORMATTED_VALUE, UNFORMATTED_VALUE or FORMULA, trims trailing empty
cells and rows, applies a spreadsheets.batchUpdate all or nothing, finds values.append's table at
the range's first cell, and refuses what Google refuses, in Google's JSON error shape: ranges,
writes and chart anchors outside the grid, ranges starting past it, unknown ``fields`` names,
values that are not lists of lists, cells over 50,000 characters, hiding the last visible tab,
404 NOT_FOUND, 403 PERMISSION_DENIED when the sheet is not shared, 403 SERVICE_DISABLED, and 429
RESOURCE_EXHAUSTED past a per-minute, per-user quota (``quota``, on the injectable ``clock``).
scripts/emulator_conformance.py replays recorded Google traffic against it.

What it leaves out: formulas are stored, never computed (they render as "" as values); dates typed
USER_ENTERED stay text; formats, validations, protections, charts and filter views are stored as given
and do not move when rows move; merges, named ranges, basic filters and copy/paste requests are refused.

Hooks for tests: ``fail`` injects error answers, ``stall`` leaves requests unanswered (a request
Google accepted and never answered), ``lose_answer`` applies a request and then answers 500 or drops
the connection, ``calls``/``api_calls`` count requests, ``on`` runs a function (a "person" editing
the sheet) right before a request of some kind is handled, and the person helpers (``set_values``,
``sort``, ``insert_rows``, ``delete_rows``, ``move_rows``) change a sheet directly, without a request.

Standalone: ``python -m tests.sheets_emulator --port PORT --key-out KEY.json [--sheet KEY]`` serves
until interrupted, prints its base url as the first line and writes a service-account key it accepts.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

MAX_CELLS = 10_000_000
MAX_CELL_CHARS = 50_000  # Google refuses a longer text in one cell
QUOTA_WINDOW_S = 60.0  # Google's Sheets quotas are per minute per user
READS = {"spreadsheets.get", "values.get", "values.batchGet", "values.batchGetByDataFilter"}
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # Google documents none for Sheets; its front end refuses bodies over 10 MB
REF = re.compile(r"^([A-Za-z]*)(\d*)(?::([A-Za-z]*)(\d*))?$")
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?%?$")
PLAIN_TITLE = re.compile(r"^[A-Za-z0-9_]+$")
LOOKS_LIKE_CELL = re.compile(r"^[A-Za-z]{1,3}\d+$|^R\d+C\d+$", re.IGNORECASE)
STALL_MAX_S = 30.0  # a stalled request is answered (too late) after this, or when the emulator stops


class Cell(NamedTuple):
    kind: str  # "string", "number", "bool" or "formula"
    value: Any


class Refusal(Exception):
    """An error answer in Google's shape."""

    WORDS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
             429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

    def __init__(self, status: int, message: str, word: str | None = None, details: list | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.word = word or self.WORDS.get(status, "UNKNOWN")
        self.details, self.headers = details, headers or {}

    def body(self) -> dict:
        error = {"code": self.status, "message": self.message, "status": self.word}
        if self.details:
            error["details"] = self.details
        return {"error": error}


# --- A1 notation ------------------------------------------------------------------------------

def column_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def column_letters(index: int) -> str:
    out, index = "", index + 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(65 + rest) + out
    return out


def title_a1(title: str) -> str:
    if PLAIN_TITLE.match(title) and not LOOKS_LIKE_CELL.match(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def range_a1(title: str, r0: int, c0: int, r1: int, c1: int) -> str:
    """A1 text of a 0-based, end-exclusive window; one cell prints as one cell."""
    start = f"{column_letters(c0)}{r0 + 1}"
    if (r1, c1) == (r0 + 1, c0 + 1):
        return f"{title_a1(title)}!{start}"
    return f"{title_a1(title)}!{start}:{column_letters(c1 - 1)}{r1}"


def split_title(text: str) -> tuple[str | None, str | None]:
    """('My tab', 'A1:B2') from "'My tab'!A1:B2"; (None, ref) when there is no title."""
    if text.startswith("'"):
        i, title = 1, ""
        while i < len(text):
            if text[i] == "'" and text[i + 1:i + 2] == "'":
                title, i = title + "'", i + 2
            elif text[i] == "'":
                rest = text[i + 1:]
                if rest and not rest.startswith("!"):
                    raise ValueError(text)
                return title, (rest[1:] or None)
            else:
                title, i = title + text[i], i + 1
        raise ValueError(text)
    if "!" in text:
        title, ref = text.rsplit("!", 1)
        return title, ref
    return None, text


def parse_ref(ref: str) -> tuple[int, int | None, int, int | None, bool]:
    """(first row, end row or None, first column, end column or None, single cell) of 'A2:C', 0-based."""
    m = REF.match(ref)
    if not m or not any(m.groups()):
        raise ValueError(ref)
    c0, r0, c1, r1 = m.groups()
    if ":" not in ref:
        if not (c0 and r0):
            raise ValueError(ref)
        row, col = int(r0) - 1, column_index(c0)
        return row, row + 1, col, col + 1, True
    if not (c0 or r0) or not (c1 or r1):
        raise ValueError(ref)
    if r0 and r1 and int(r1) < int(r0):  # Google reads D4:A1 as A1:D4
        r0, r1 = r1, r0
    if c0 and c1 and column_index(c1) < column_index(c0):
        c0, c1 = c1, c0
    first_row = int(r0) - 1 if r0 else 0
    end_row = int(r1) if r1 else None
    first_col = column_index(c0) if c0 else 0
    end_col = column_index(c1) + 1 if c1 else None
    if first_row < 0 or (end_row is not None and end_row <= first_row) or (
            end_col is not None and end_col <= first_col):
        raise ValueError(ref)
    return first_row, end_row, first_col, end_col, False


# --- cells ------------------------------------------------------------------------------------

def parse_input(value, option: str) -> Cell | None | bool:
    """The cell a written value makes; None clears the cell, False means 'skip' (a JSON null)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return Cell("bool", value)
    if isinstance(value, (int, float)):
        return Cell("number", value)
    text = str(value)
    if text == "":
        return None
    if option == "RAW":
        return Cell("string", text)
    if text.startswith("'"):
        return Cell("string", text[1:])
    if text.startswith("="):
        return Cell("formula", text)
    if text.strip().upper() in ("TRUE", "FALSE"):
        return Cell("bool", text.strip().upper() == "TRUE")
    if NUMBER.match(text.strip()):
        stripped = text.strip()
        number = float(stripped.rstrip("%")) / (100 if stripped.endswith("%") else 1)
        return Cell("number", int(number) if number.is_integer() and abs(number) < 2**53 else number)
    if text[0] in "+-":
        return Cell("formula", "=" + text)  # Sheets reads a leading + or - as the start of a formula
    return Cell("string", text)


def format_number(value, pattern: str | None) -> str:
    m = re.fullmatch(r"0(?:\.(0+))?", pattern or "")
    if m:
        return f"{value:.{len(m.group(1) or '')}f}"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def render(cell: Cell | None, option: str, pattern: str | None):
    if cell is None:
        return None
    if cell.kind == "formula":
        return cell.value if option == "FORMULA" else None  # formulas are not computed here
    if option != "FORMATTED_VALUE":
        return cell.value
    if cell.kind == "bool":
        return "TRUE" if cell.value else "FALSE"
    if cell.kind == "number":
        return format_number(cell.value, pattern)
    return cell.value


def trimmed(rows: list[list]) -> list[list]:
    """Google's trimming: trailing empty cells of each row and trailing empty rows go."""
    out = []
    for row in rows:
        while row and row[-1] in (None, ""):
            row.pop()
        out.append(["" if v is None else v for v in row])
    while out and not out[-1]:
        out.pop()
    return out


# --- field masks ------------------------------------------------------------------------------

ANY = None  # every path below this name is allowed
GRID_PROPERTIES = dict.fromkeys(["rowCount", "columnCount", "frozenRowCount", "frozenColumnCount",
                                 "hideGridlines", "rowGroupControlAfter", "columnGroupControlAfter"])
SHEET_PROPERTIES = {**dict.fromkeys(["sheetId", "title", "index", "sheetType", "hidden", "tabColor",
                                     "tabColorStyle", "rightToLeft", "dataSourceSheetProperties"]),
                    "gridProperties": GRID_PROPERTIES}
SHEET_FIELDS = {**dict.fromkeys(["data", "merges", "conditionalFormats", "filterViews", "protectedRanges",
                                 "basicFilter", "charts", "bandedRanges", "developerMetadata", "rowGroups",
                                 "columnGroups", "slicers", "tables"]),
                "properties": SHEET_PROPERTIES}
SPREADSHEET_FIELDS = {**dict.fromkeys(["spreadsheetId", "properties", "namedRanges", "spreadsheetUrl",
                                       "developerMetadata", "dataSources", "dataSourceSchedules"]),
                      "sheets": SHEET_FIELDS}
CELL_FORMAT = dict.fromkeys(["numberFormat", "backgroundColor", "backgroundColorStyle", "borders", "padding",
                             "horizontalAlignment", "verticalAlignment", "wrapStrategy", "textDirection",
                             "textFormat", "hyperlinkDisplayType", "textRotation"])
CELL_FIELDS = {**dict.fromkeys(["userEnteredValue", "note", "dataValidation", "textFormatRuns", "pivotTable",
                                "hyperlink", "dataSourceTable", "dataSourceFormula", "chipRuns"]),
               "userEnteredFormat": CELL_FORMAT}
DIMENSION_FIELDS = dict.fromkeys(["pixelSize", "hiddenByUser", "hiddenByFilter", "developerMetadata",
                                  "dataSourceColumnReference"])


def mask_paths(mask: str) -> list[tuple[str, ...]]:
    """The paths of a field mask: 'a.b(c,d),e' gives a.b.c, a.b.d and e; ValueError when unbalanced.

    Google's parser takes no spaces: ' sheets' is a name with a space in it, which matches nothing.
    """
    paths, prefixes, path, word = [], [()], [], ""

    def close():
        if word or path:
            paths.append(prefixes[-1] + tuple(path) + (word,))

    for ch in mask:
        if ch in "./":
            path, word = path + [word], ""
        elif ch == "(":
            prefixes.append(prefixes[-1] + tuple(path) + (word,))
            path, word = [], ""
        elif ch in ",)":
            close()
            path, word = [], ""
            if ch == ")":
                prefixes.pop()
                if not prefixes:
                    raise ValueError(mask)
        else:
            word += ch
    close()
    if len(prefixes) != 1:
        raise ValueError(mask)
    return paths


def unknown_paths(mask: str, tree: dict) -> list[str]:
    """The paths of ``mask`` that name no field of ``tree`` ('*' stands for every field)."""
    try:
        paths = mask_paths(mask)
    except ValueError:
        return [mask]
    bad = []
    for path in paths:
        node = tree
        for part in path:
            if node is ANY or part == "*":
                break
            if part not in node:
                bad.append(".".join(path))
                break
            node = node[part]
    return bad


def project(value, paths: list[tuple[str, ...]]):
    """Keep only the fields ``paths`` name (lists are projected item by item), as ``fields=`` does."""
    if not paths or any(not p or p[0] == "*" for p in paths):
        return value
    if isinstance(value, list):
        return [project(v, paths) for v in value]
    if not isinstance(value, dict):
        return value
    return {name: project(value[name], [p[1:] for p in paths if p[0] == name])
            for name in dict.fromkeys(p[0] for p in paths) if name in value}


# --- spreadsheets -----------------------------------------------------------------------------

@dataclass
class Grid:
    """One tab: its properties, its cells by (row, column), and what batchUpdate stored on it."""

    sheet_id: int
    title: str
    rows: int = 1000
    columns: int = 26
    frozen_rows: int = 0
    hidden: bool = False
    cells: dict = field(default_factory=dict)
    formats: list = field(default_factory=list)
    validations: list = field(default_factory=list)
    protected: list = field(default_factory=list)
    conditional: list = field(default_factory=list)
    charts: list = field(default_factory=list)
    sizes: dict = field(default_factory=dict)
    filter_views: list = field(default_factory=list)
    row_metadata: dict = field(default_factory=dict)  # metadataId -> (row index, DeveloperMetadata without location)

    def clone(self) -> Grid:
        twin = copy.copy(self)
        twin.cells = dict(self.cells)
        for name in ("formats", "validations", "protected", "conditional", "charts", "sizes", "filter_views",
                     "row_metadata"):
            setattr(twin, name, copy.deepcopy(getattr(self, name)))
        return twin

    def properties(self, index: int) -> dict:
        grid = {"rowCount": self.rows, "columnCount": self.columns}
        if self.frozen_rows:
            grid["frozenRowCount"] = self.frozen_rows
        props = {"sheetId": self.sheet_id, "title": self.title, "index": index, "sheetType": "GRID",
                 "gridProperties": grid}
        if self.hidden:
            props["hidden"] = True
        return props

    def number_pattern(self, row: int, column: int) -> str | None:
        for rng, fmt in reversed(self.formats):
            if "numberFormat" in fmt and inside(rng, row, column):
                return fmt["numberFormat"].get("pattern")
        return None

    def window(self, r0: int, r1: int, c0: int, c1: int, option: str) -> list[list]:
        has_patterns = option == "FORMATTED_VALUE" and any("numberFormat" in f for _, f in self.formats)
        return [[render(self.cells.get((r, c)), option, self.number_pattern(r, c) if has_patterns else None)
                 for c in range(c0, c1)] for r in range(r0, r1)]

    def move_rows(self, start: int, shift: int) -> None:
        """Move every cell and row's metadata at row >= start by ``shift`` rows; the rows moved over must
        be empty already."""
        self.cells = {((r + shift) if r >= start else r, c): v for (r, c), v in self.cells.items()}
        self.row_metadata = {i: ((r + shift) if r >= start else r, m) for i, (r, m) in self.row_metadata.items()}

    def permute_rows(self, where: dict[int, int]) -> None:
        """Move row r to row where[r] (a permutation of some rows), cells and metadata together."""
        self.cells = {(where.get(r, r), c): v for (r, c), v in self.cells.items()}
        self.row_metadata = {i: (where.get(r, r), m) for i, (r, m) in self.row_metadata.items()}

    def move_columns(self, start: int, shift: int) -> None:
        self.cells = {(r, (c + shift) if c >= start else c): v for (r, c), v in self.cells.items()}

    def crop(self) -> None:
        self.cells = {(r, c): v for (r, c), v in self.cells.items() if r < self.rows and c < self.columns}


def inside(rng: dict, row: int, column: int) -> bool:
    return (rng.get("startRowIndex", 0) <= row < rng.get("endRowIndex", 1 << 30)
            and rng.get("startColumnIndex", 0) <= column < rng.get("endColumnIndex", 1 << 30))


@dataclass
class Book:
    key: str
    title: str
    sheets: list[Grid]
    editors: set[str]
    next_id: int = 1000

    def grid(self, title: str) -> Grid:
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        raise KeyError(title)

    def by_id(self, sheet_id) -> Grid:
        for sheet in self.sheets:
            if sheet.sheet_id == sheet_id:
                return sheet
        raise Refusal(400, f"No grid with id: {sheet_id}")

    def cell_count(self) -> int:
        return sum(s.rows * s.columns for s in self.sheets)

    def clone(self) -> Book:
        return Book(self.key, self.title, [s.clone() for s in self.sheets], set(self.editors), self.next_id)


@dataclass
class Call:
    kind: str
    method: str
    path: str
    status: int = 200


@dataclass
class Fault:
    status: int
    times: int | None  # None: every time
    retry_after: str | None = None
    kind: str | None = None


@dataclass
class LostAnswer:
    """Apply the next ``times`` requests of ``kind``, then answer 500 or drop the connection ("drop")."""

    kind: str | None
    times: int
    how: str = "500"


DROP = "drop"  # a status that tells the Handler to close the connection without answering


class SheetsEmulator:
    """The state (spreadsheets, accounts, tokens) and the request handling, plus the HTTP server."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock  # the quota windows' clock: tests pass their own and never sleep
        self.books: dict[str, Book] = {}
        self.accounts: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.losses: list[LostAnswer] = []
        self.limits: dict[str, int] = {}  # requests per minute per user, by "read" and "write"
        self.used: dict[tuple[str, str], list[float]] = {}  # (user, "read"/"write") -> when each was counted
        self.stalls: list[Fault] = []
        self.stopping = threading.Event()
        self.hooks: list[tuple[str, Callable, bool]] = []
        self.api_enabled = True
        self.max_request_bytes = MAX_REQUEST_BYTES
        # Google does not document what a write whose data filter matches nothing does: skip it (False)
        # or refuse the request with 400 (True); tests try both.
        self.refuse_unmatched = False
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None

    # --- set-up, inspection and "a person" --------------------------------------------------

    def add_account(self, email: str, public_key) -> None:
        """Trust JWTs of ``email`` signed by the private half of ``public_key`` (a cryptography key)."""
        self.accounts[email] = public_key

    def create_spreadsheet(self, title: str = "Untitled spreadsheet", editors=(), tabs=(("Sheet1", 1000, 26),),
                           key: str | None = None) -> str:
        key = key or "emu" + secrets.token_hex(16)
        sheets = [Grid(n, t, r, c) for n, (t, r, c) in enumerate(tabs)]
        self.books[key] = Book(key, title, sheets, set(editors))
        return key

    def share(self, key: str, email: str) -> None:
        self.books[key].editors.add(email)

    def grid(self, key: str, title: str) -> Grid:
        return self.books[key].grid(title)

    def values(self, key: str, rng: str, render_option: str = "FORMULA") -> list[list]:
        with self.lock:
            return self.values_get(self.books[key], rng, {"valueRenderOption": [render_option]}).get("values", [])

    def set_values(self, key: str, rng: str, values: list[list], option: str = "USER_ENTERED") -> None:
        """Type into the sheet as a person would (USER_ENTERED)."""
        with self.lock:
            self.write_ranges(self.books[key], [{"range": rng, "values": values}], option)

    def column(self, key: str, title: str, name: str) -> int:
        header = self.values(key, f"{title_a1(title)}!1:1")
        return header[0].index(name)

    def sort(self, key: str, title: str, name: str, descending: bool = False) -> None:
        """Sort the data rows (all but the header) by the column called ``name``."""
        with self.lock:
            book = self.books[key]
            grid = book.grid(title)
            rng = {"sheetId": grid.sheet_id, "startRowIndex": 1}
            order = "DESCENDING" if descending else "ASCENDING"
            self.sort_range(book, {"range": rng, "sortSpecs": [
                {"dimensionIndex": self.column(key, title, name), "sortOrder": order}]})

    def insert_rows(self, key: str, title: str, before_row: int, count: int = 1) -> None:
        """Insert ``count`` blank rows above sheet row ``before_row`` (1-based)."""
        with self.lock:
            book = self.books[key]
            rng = {"sheetId": book.grid(title).sheet_id, "dimension": "ROWS",
                   "startIndex": before_row - 1, "endIndex": before_row - 1 + count}
            self.insert_dimension(book, {"range": rng})

    def delete_rows(self, key: str, title: str, first_row: int, count: int = 1) -> None:
        with self.lock:
            book = self.books[key]
            rng = {"sheetId": book.grid(title).sheet_id, "dimension": "ROWS",
                   "startIndex": first_row - 1, "endIndex": first_row - 1 + count}
            self.delete_dimension(book, {"range": rng})

    def move_rows(self, key: str, title: str, first_row: int, count: int, before_row: int) -> None:
        """Drag ``count`` rows from sheet row ``first_row`` to above ``before_row`` (1-based), as a person does."""
        with self.lock:
            book = self.books[key]
            source = {"sheetId": book.grid(title).sheet_id, "dimension": "ROWS",
                      "startIndex": first_row - 1, "endIndex": first_row - 1 + count}
            self.move_dimension(book, {"source": source, "destinationIndex": before_row - 1})

    # --- test hooks -------------------------------------------------------------------------

    def fail(self, status: int, times: int | None = 1, retry_after: str | None = None,
             kind: str | None = None) -> None:
        """Answer the next ``times`` API requests (of ``kind``, if given) with ``status``; None: always."""
        self.faults.append(Fault(status, times, retry_after, kind))

    def lose_answer(self, kind: str | None = None, times: int = 1, how: str = "500") -> None:
        """Apply the next ``times`` requests (of ``kind``), then lose the answer: 500, or ``how="drop"``
        to close the connection without a word, as when a proxy or the network fails on the way back."""
        self.losses.append(LostAnswer(kind, times, how))

    def quota(self, reads: int | None = 60, writes: int | None = 60) -> None:
        """Google's per-minute, per-user quotas: 429 once a user sent that many reads (or writes) in the
        last 60 s of ``clock``; None lifts a limit. Off until called."""
        self.limits = {k: v for k, v in (("read", reads), ("write", writes)) if v is not None}

    def stall(self, kind: str | None = None, times: int | None = 1) -> None:
        """Leave the next ``times`` requests (of ``kind``, e.g. 'values.get' or 'token'; None: always)
        unanswered until the emulator stops, as a server that accepted them and hangs."""
        self.stalls.append(Fault(0, times, kind=kind))

    def stalled(self, kind: str) -> bool:
        for stall in self.stalls:
            if stall.kind in (None, kind) and stall.times != 0:
                if stall.times is not None:
                    stall.times -= 1
                self.stopping.wait(STALL_MAX_S)
                return True
        return False

    def on(self, kind: str, action: Callable[[SheetsEmulator], None], once: bool = True) -> None:
        """Run ``action(self)`` just before handling the next request of ``kind`` (e.g. 'values.batchUpdate')."""
        self.hooks.append((kind, action, once))

    def api_calls(self, kind: str | None = None) -> int:
        """Sheets API requests seen (token exchanges not counted)."""
        return len([c for c in self.calls if c.kind != "token" and (kind is None or c.kind == kind)])

    def reset_counts(self) -> None:
        self.calls.clear()

    # --- HTTP server ------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.emulator = self
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def stop(self) -> None:
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # --- request handling -------------------------------------------------------------------

    def handle(self, method: str, url: str, headers, body: bytes) -> tuple[int, dict, dict]:
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.path == "/token":
            self.calls.append(Call("token", method, parts.path))
            if self.stalled("token"):
                return 503, Refusal(503, "stalled").body(), {}
            return self.token(body)
        try:
            kind, key, rng = route(method, parts.path)
        except Refusal as e:
            return e.status, e.body(), e.headers
        call = Call(kind, method, parts.path)
        self.calls.append(call)
        if self.stalled(kind):
            return 503, Refusal(503, "stalled").body(), {}
        self.run_hooks(kind)
        try:
            if len(body) > self.max_request_bytes:
                raise Refusal(400, f"Request payload size exceeds the limit: {self.max_request_bytes} bytes.")
            self.check_fault(kind)
            email = self.caller(headers)
            self.check_quota(email, kind)
            book = self.open(key, email) if kind != "spreadsheets.create" else None
            payload = json.loads(body or b"{}")
            with self.lock:
                answer = self.dispatch(kind, book, rng, query, payload, email)
            return self.lose(kind, call) or (200, answer, {})
        except Refusal as e:
            call.status = e.status
            return e.status, e.body(), e.headers

    def lose(self, kind: str, call: Call) -> tuple | None:
        """The answer that replaces a success when a ``lose_answer`` switch matches; None otherwise."""
        for loss in self.losses:
            if loss.kind in (None, kind) and loss.times > 0:
                loss.times -= 1
                call.status = 500 if loss.how == "500" else 0
                if loss.how == DROP:
                    return DROP, {}, {}
                return 500, Refusal(500, "Internal error encountered.").body(), {}
        return None

    def check_quota(self, email: str, kind: str) -> None:
        what = "read" if kind in READS else "write"
        limit = self.limits.get(what)
        if limit is None:
            return
        now = self.clock()
        recent = [t for t in self.used.get((email, what), []) if now - t < QUOTA_WINDOW_S]
        self.used[(email, what)] = recent
        if len(recent) >= limit:
            raise quota_refusal(what, limit)
        recent.append(now)

    def run_hooks(self, kind: str) -> None:
        for hook in list(self.hooks):
            if hook[0] == kind:
                if hook[2]:
                    self.hooks.remove(hook)
                with self.lock:
                    hook[1](self)

    def check_fault(self, kind: str) -> None:
        for fault in self.faults:
            if fault.kind in (None, kind) and fault.times != 0:
                if fault.times is not None:
                    fault.times -= 1
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                message = {429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
                                "minute per user' of service 'sheets.googleapis.com'.",
                           503: "The service is currently unavailable."}.get(fault.status,
                                                                             "Internal error encountered.")
                raise Refusal(fault.status, message, headers=headers)

    def caller(self, headers) -> str:
        """The account a request's bearer token belongs to; 401 or 403 (API disabled) like Google."""
        auth = headers.get("Authorization", "")
        email = self.tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        if email is None:
            raise Refusal(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                               "login cookie or other valid authentication credential.")
        if not self.api_enabled:
            raise Refusal(403, "Google Sheets API has not been used in project 123456 before or it is disabled. "
                               "Enable it by visiting https://console.developers.google.com/apis/api/"
                               "sheets.googleapis.com/overview?project=123456 then retry.",
                          details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                    "reason": "SERVICE_DISABLED", "domain": "googleapis.com"}])
        return email

    def open(self, key: str, email: str) -> Book:
        book = self.books.get(key)
        if book is None:
            raise Refusal(404, "Requested entity was not found.")
        if email not in book.editors:
            raise Refusal(403, "The caller does not have permission")
        return book

    def dispatch(self, kind: str, book: Book | None, rng: str | None, query: dict, payload: dict,
                 email: str = "") -> dict:
        if kind == "spreadsheets.create":
            return self.create(payload, email)
        if kind == "spreadsheets.get":
            return self.get_spreadsheet(book, query)
        if kind == "spreadsheets.batchUpdate":
            return self.batch_update(book, payload)
        if kind == "values.get":
            return self.values_get(book, rng, query)
        if kind == "values.batchGet":
            ranges = [self.values_get(book, r, query) for r in query.get("ranges", [])]
            return {"spreadsheetId": book.key, "valueRanges": ranges}
        if kind in ("values.update", "values.batchUpdate"):
            option = option_of(query, payload)
            data = [dict(payload, range=rng)] if kind == "values.update" else payload.get("data", [])
            responses = self.write_ranges(book, data, option, batch=kind == "values.batchUpdate")
            if kind == "values.update":
                return responses[0]
            return {"spreadsheetId": book.key, "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
                    "totalUpdatedColumns": sum(r["updatedColumns"] for r in responses),
                    "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
                    "totalUpdatedSheets": len({r["updatedRange"].rsplit("!", 1)[0] for r in responses}),
                    "responses": responses}
        if kind == "values.append":
            return self.append(book, rng, query, payload)
        if kind == "values.clear":
            return {"spreadsheetId": book.key, "clearedRange": self.clear(book, rng)}
        if kind == "values.batchClear":
            return {"spreadsheetId": book.key, "clearedRanges": [self.clear(book, r) for r in payload["ranges"]]}
        if kind == "values.batchGetByDataFilter":
            return self.get_by_filter(book, payload)
        if kind == "values.batchUpdateByDataFilter":
            return self.update_by_filter(book, payload)
        raise Refusal(404, f"Method not found: {kind}")

    # --- token exchange ---------------------------------------------------------------------

    def token(self, body: bytes) -> tuple[int, dict, dict]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        form = parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, {}
        try:
            head, claims, signature = form["assertion"][0].split(".")
            payload = json.loads(b64decode(claims))
            key = self.accounts[payload["iss"]]
            key.verify(b64decode(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except (KeyError, ValueError, InvalidSignature):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}
        if payload.get("exp", 0) < time.time():
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be a "
                         "short-lived token (60 minutes) and in a reasonable timeframe."}, {}
        token = "ya29.emulator-" + secrets.token_hex(16)
        self.tokens[token] = payload["iss"]
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}, {}

    # --- values -----------------------------------------------------------------------------

    def locate(self, book: Book, text: str) -> tuple[Grid, int, int | None, int, int | None, bool]:
        """The tab and window a range names; 400 'Unable to parse range' like Google."""
        try:
            title, ref = split_title(text)
            if title is None and ref is not None and ref in [s.title for s in book.sheets]:
                title, ref = ref, None
            grid = book.grid(title) if title is not None else book.sheets[0]
            if ref is None:
                return grid, 0, None, 0, None, False
            return (grid, *parse_ref(ref))
        except (ValueError, KeyError):
            raise Refusal(400, f"Unable to parse range: {text}")

    def values_get(self, book: Book, rng: str, query: dict) -> dict:
        grid, r0, r1, c0, c1, _ = self.locate(book, rng)
        if r0 >= grid.rows or c0 >= grid.columns:
            raise Refusal(400, f"Range ({rng}) exceeds grid limits. Max rows: {grid.rows}, "
                               f"max columns: {grid.columns}")
        r1 = min(grid.rows, r1 if r1 is not None else grid.rows)
        c1 = min(grid.columns, c1 if c1 is not None else grid.columns)
        option = query.get("valueRenderOption", ["FORMATTED_VALUE"])[0]
        major = query.get("majorDimension", ["ROWS"])[0]
        rows = grid.window(r0, max(r0, r1), c0, max(c0, c1), option)
        if major == "COLUMNS":
            rows = [list(col) for col in zip(*rows)] if rows else []
        out = {"range": range_a1(grid.title, r0, c0, max(r1, r0 + 1), max(c1, c0 + 1)), "majorDimension": major}
        values = trimmed(rows)
        if values:
            out["values"] = values
        return out

    def write_ranges(self, book: Book, data: list[dict], option: str, batch: bool = False) -> list[dict]:
        """Check every range first, then write them all: one bad range writes nothing."""
        planned = [self.plan_write(book, item, option, f"data[{n}].values" if batch else "data.values")
                   for n, item in enumerate(data)]
        return [dict(self.apply_write(*plan), spreadsheetId=book.key) for plan in planned]

    def plan_write(self, book: Book, item: dict, option: str, field: str = "data.values"):
        values = checked_values(item.get("values", []), field)  # Google checks the body before the range
        grid, r0, r1, c0, c1, single = self.locate(book, item["range"])
        if item.get("majorDimension") == "COLUMNS":
            width = max((len(v) for v in values), default=0)
            values = [[col[i] if i < len(col) else None for col in values] for i in range(width)]
        height, width = len(values), max((len(v) for v in values), default=0)
        if not single:
            if r1 is not None and r0 + height > r1:
                raise Refusal(400, f"Requested writing within range [{item['range']}], but tried writing to "
                                   f"row [{r0 + height}]")
            if c1 is not None and c0 + width > c1:
                raise Refusal(400, f"Requested writing within range [{item['range']}], but tried writing to "
                                   f"column [{column_letters(c0 + width - 1)}]")
        ends = [e for e in (r0 + height, r1 if not single else None) if e is not None]
        col_ends = [e for e in (c0 + width, c1 if not single else None) if e is not None]
        if max(ends) > grid.rows or max(col_ends) > grid.columns:
            raise Refusal(400, f"Range ({item['range']}) exceeds grid limits. Max rows: {grid.rows}, "
                               f"max columns: {grid.columns}")
        return grid, r0, c0, values, option

    def apply_write(self, grid: Grid, r0: int, c0: int, values: list[list], option: str) -> dict:
        """Write the cells; Google counts the rows, columns and cells written (a JSON null writes none)."""
        written = []
        for r, row in enumerate(values):
            for c, value in enumerate(row):
                cell = parse_input(value, option)
                if cell is False:
                    continue
                written.append((r, c))
                if cell is None:
                    grid.cells.pop((r0 + r, c0 + c), None)
                else:
                    grid.cells[(r0 + r, c0 + c)] = cell
        height, width = len(values), max((len(v) for v in values), default=0)
        return {"spreadsheetId": "", "updatedRange": range_a1(grid.title, r0, c0, r0 + max(height, 1),
                                                              c0 + max(width, 1)),
                "updatedRows": len({r for r, _ in written}), "updatedColumns": len({c for _, c in written}),
                "updatedCells": len(written)}

    def matches(self, book: Book, data_filter: dict, where: str, index: dict | None = None) -> list[str]:
        """The A1 ranges a DataFilter names: an a1Range as given, a row's metadata as that whole row."""
        if set(data_filter) - {"a1Range", "developerMetadataLookup"} or len(data_filter) != 1:
            raise Refusal(400, f"Invalid {where}: exactly one of a1Range or developerMetadataLookup "
                               f"(gridRange is not emulated)")
        if "a1Range" in data_filter:
            return [data_filter["a1Range"]]
        return [range_a1(grid.title, row, 0, row + 1, grid.columns)
                for grid, _, row in self.lookup(book, data_filter["developerMetadataLookup"], where, index)]

    def lookup(self, book: Book, query: dict, where: str, index: dict | None = None) -> list[tuple[Grid, int, int]]:
        """(tab, metadataId, row) of the row metadata a DeveloperMetadataLookup matches; ``index`` (from
        ``metadata_index``) answers a lookup by key and value without a scan."""
        unknown = set(query) - {"metadataKey", "metadataValue", "metadataId", "locationType", "visibility"}
        if unknown:
            raise Refusal(400, f"Invalid {where}: {sorted(unknown)[0]} is not emulated")
        if not query:
            raise Refusal(400, f"Invalid {where}: a developerMetadataLookup must name something to match")
        if query.get("locationType", "ROW") != "ROW":
            return []
        if index is not None and set(query) <= {"metadataKey", "metadataValue", "locationType"} and (
                "metadataKey" in query and "metadataValue" in query):
            return index.get((query["metadataKey"], query["metadataValue"]), [])
        found = []
        for grid in book.sheets:
            for metadata_id, (row, meta) in sorted(grid.row_metadata.items(), key=lambda item: item[1][0]):
                if all(meta.get(name) == query[name] for name in ("metadataKey", "metadataValue", "metadataId",
                                                                   "visibility") if name in query):
                    found.append((grid, metadata_id, row))
        return found

    @staticmethod
    def metadata_index(book: Book) -> dict:
        """(key, value) -> [(tab, metadataId, row)] in row order, for the lookups of one request."""
        index: dict = {}
        for grid in book.sheets:
            for metadata_id, (row, meta) in sorted(grid.row_metadata.items(), key=lambda item: item[1][0]):
                index.setdefault((meta.get("metadataKey"), meta.get("metadataValue")), []).append(
                    (grid, metadata_id, row))
        return index

    def get_by_filter(self, book: Book, payload: dict) -> dict:
        """values.batchGetByDataFilter: one MatchedValueRange per range each filter matches."""
        query = {name: [payload[name]] for name in ("valueRenderOption", "majorDimension", "dateTimeRenderOption")
                 if name in payload}
        out, index = [], self.metadata_index(book)
        for n, data_filter in enumerate(payload.get("dataFilters", [])):
            for rng in self.matches(book, data_filter, f"dataFilters[{n}]", index):
                out.append({"valueRange": self.values_get(book, rng, query), "dataFilters": [data_filter]})
        return {"spreadsheetId": book.key, "valueRanges": out}

    def update_by_filter(self, book: Book, payload: dict) -> dict:
        """values.batchUpdateByDataFilter: each item's values go to every range its filter matches,
        from that range's first cell (nulls skip a cell); every range is checked before any is written."""
        option = option_of({}, payload)
        items, index = [], self.metadata_index(book)
        for n, item in enumerate(payload.get("data", [])):
            found = self.matches(book, item.get("dataFilter", {}), f"data[{n}].dataFilter", index)
            if not found and self.refuse_unmatched:
                raise Refusal(400, f"Invalid data[{n}].dataFilter: no range matches it")
            for rng in found:
                items.append((dict(item, range=rng), item["dataFilter"], n))
        planned = [(self.plan_write(book, item, option, f"data[{n}].values"), data_filter)
                   for item, data_filter, n in items]
        responses = [dict(self.apply_write(*plan), spreadsheetId=book.key, dataFilter=data_filter)
                     for plan, data_filter in planned]
        return {"spreadsheetId": book.key, "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
                "totalUpdatedColumns": sum(r["updatedColumns"] for r in responses),
                "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
                "totalUpdatedSheets": len({r["updatedRange"].rsplit("!", 1)[0] for r in responses}),
                "responses": responses}

    def append(self, book: Book, rng: str, query: dict, payload: dict) -> dict:
        """values.append: find the table at the range's first cell, write below it from its first column."""
        grid, r0, r1, c0, c1, single = self.locate(book, rng)
        if r0 >= grid.rows or c0 >= grid.columns:
            raise Refusal(400, f"Range ({rng}) exceeds grid limits. Max rows: {grid.rows}, "
                               f"max columns: {grid.columns}")
        window = (r0, grid.rows if r1 is None or single else r1, c0, grid.columns if c1 is None or single else c1)
        table = find_table(set(grid.cells), *window)
        start, c0 = (table[1], table[2]) if table else (r0, c0)
        values = checked_values(payload.get("values", []), "data.values")
        if payload.get("majorDimension") == "COLUMNS":
            height = max((len(v) for v in values), default=0)
            values = [[col[i] if i < len(col) else None for col in values] for i in range(height)]
        option = option_of(query, payload)
        if query.get("insertDataOption", ["OVERWRITE"])[0] == "INSERT_ROWS":
            grid.move_rows(start, len(values))
            grid.rows += len(values)
        else:
            grid.rows = max(grid.rows, start + len(values))
        width = max((len(v) for v in values), default=0)
        grid.columns = max(grid.columns, c0 + width)
        self.check_cells(book)
        updates = self.apply_write(grid, start, c0, values, option)
        updates["spreadsheetId"] = book.key
        out = {"spreadsheetId": book.key}
        if table:
            out["tableRange"] = range_a1(grid.title, table[0], table[2], table[1], table[3])
        return {**out, "updates": updates}

    def clear(self, book: Book, rng: str) -> str:
        grid, r0, r1, c0, c1, _ = self.locate(book, rng)
        r1 = grid.rows if r1 is None else min(r1, grid.rows)
        c1 = grid.columns if c1 is None else min(c1, grid.columns)
        grid.cells = {(r, c): v for (r, c), v in grid.cells.items() if not (r0 <= r < r1 and c0 <= c < c1)}
        return range_a1(grid.title, r0, c0, r1, c1)

    # --- spreadsheets -----------------------------------------------------------------------

    def create(self, payload: dict, email: str) -> dict:
        """spreadsheets.create: the new spreadsheet belongs to (is editable by) the caller."""
        tabs = [(s["properties"].get("title") or f"Sheet{n + 1}",
                 s["properties"].get("gridProperties", {}).get("rowCount", 1000),
                 s["properties"].get("gridProperties", {}).get("columnCount", 26))
                for n, s in enumerate(payload.get("sheets", []))] or [("Sheet1", 1000, 26)]
        title = payload.get("properties", {}).get("title") or "Untitled spreadsheet"
        key = self.create_spreadsheet(title, editors=[email], tabs=tabs)
        return self.metadata(self.books[key])

    def get_spreadsheet(self, book: Book, query: dict) -> dict:
        """spreadsheets.get; ``fields`` picks what comes back, and a name Google does not know is a 400."""
        out = self.metadata(book)
        mask = query.get("fields", [""])[0]
        if not mask:
            return out
        for path in unknown_paths(mask, SPREADSHEET_FIELDS):
            text = f"Error expanding 'fields' parameter. Cannot find matching fields for path '{path}'."
            raise Refusal(400, "Request contains an invalid argument.", details=[
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "fields", "description": text}]}])
        return project(out, mask_paths(mask))

    def metadata(self, book: Book) -> dict:
        sheets = []
        for index, grid in enumerate(book.sheets):
            sheet = {"properties": grid.properties(index)}
            for name, items in (("protectedRanges", grid.protected), ("conditionalFormats", grid.conditional),
                                ("charts", grid.charts), ("filterViews", grid.filter_views)):
                if items:
                    sheet[name] = copy.deepcopy(items)
            sheets.append(sheet)
        return {"spreadsheetId": book.key,
                "properties": {"title": book.title, "locale": "en_US", "autoRecalc": "ON_CHANGE",
                               "timeZone": "Etc/GMT"},
                "sheets": sheets, "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.key}/edit"}

    def batch_update(self, book: Book, payload: dict) -> dict:
        """All requests or none, as Google does: work on a copy and keep it only if every one succeeds."""
        work = book.clone()
        replies = []
        for n, request in enumerate(payload.get("requests", [])):
            (name, body), = request.items()
            handler = getattr(self, snake(name), None)
            if handler is None or name not in REQUESTS:
                raise Refusal(400, f"Invalid requests[{n}]: unknown request {name!r}")
            try:
                replies.append(handler(work, body) or {})
            except Refusal as e:
                raise Refusal(400, f"Invalid requests[{n}].{name}: {e.message}")
            self.check_cells(work)
        self.books[book.key] = work
        return {"spreadsheetId": book.key, "replies": replies}

    def check_cells(self, book: Book) -> None:
        if book.cell_count() > MAX_CELLS:
            raise Refusal(400, f"This action would increase the number of cells in the workbook above the "
                               f"limit of {MAX_CELLS} cells.")

    def check_range(self, book: Book, rng: dict) -> Grid:
        grid = book.by_id(rng.get("sheetId", 0))
        if rng.get("endRowIndex", 0) > grid.rows or rng.get("endColumnIndex", 0) > grid.columns:
            raise Refusal(400, f"Range exceeds grid limits. Max rows: {grid.rows}, max columns: {grid.columns}")
        return grid

    def add_sheet(self, book: Book, body: dict) -> dict:
        props = body.get("properties", {})
        title = props.get("title") or f"Sheet{len(book.sheets) + 1}"
        if title in [s.title for s in book.sheets]:
            raise Refusal(400, f'A sheet with the name "{title}" already exists. Please enter another name.')
        sheet_id = props.get("sheetId", book.next_id)
        book.next_id = max(book.next_id, sheet_id) + 1
        grid_props = props.get("gridProperties", {})
        grid = Grid(sheet_id, title, grid_props.get("rowCount", 1000), grid_props.get("columnCount", 26),
                    grid_props.get("frozenRowCount", 0))
        book.sheets.insert(props.get("index", len(book.sheets)), grid)
        return {"addSheet": {"properties": grid.properties(book.sheets.index(grid))}}

    def delete_sheet(self, book: Book, body: dict) -> None:
        book.sheets.remove(book.by_id(body["sheetId"]))

    def update_sheet_properties(self, book: Book, body: dict) -> None:
        props, fields = body["properties"], field_mask(body, SHEET_PROPERTIES)
        grid = book.by_id(props.get("sheetId", 0))
        given = props.get("gridProperties", {})
        for name in fields:
            if name == "title":
                grid.title = props["title"]
            elif name == "hidden":
                grid.hidden = bool(props.get("hidden"))
            elif name in ("gridProperties.rowCount", "gridProperties"):
                grid.rows = given.get("rowCount", grid.rows)
            if name in ("gridProperties.columnCount", "gridProperties"):
                grid.columns = given.get("columnCount", grid.columns)
            if name in ("gridProperties.frozenRowCount", "gridProperties"):
                grid.frozen_rows = given.get("frozenRowCount", grid.frozen_rows)
        if grid.frozen_rows >= grid.rows:
            raise Refusal(400, "You can't freeze all visible rows on the sheet.")
        if all(s.hidden for s in book.sheets):
            raise Refusal(400, "You can't hide all the sheets in a document.")
        grid.crop()

    def update_dimension_properties(self, book: Book, body: dict) -> None:
        field_mask(body, DIMENSION_FIELDS)
        rng = body["range"]
        grid = book.by_id(rng.get("sheetId", 0))
        limit = grid.rows if rng["dimension"] == "ROWS" else grid.columns
        if rng.get("endIndex", 0) > limit:
            raise Refusal(400, f"Range exceeds grid limits. Max rows: {grid.rows}, max columns: {grid.columns}")
        grid.sizes[(rng["dimension"], rng.get("startIndex", 0), rng.get("endIndex"))] = body["properties"]

    def repeat_cell(self, book: Book, body: dict) -> None:
        field_mask(body, CELL_FIELDS)
        grid = self.check_range(book, body["range"])
        grid.formats.append((body["range"], body["cell"].get("userEnteredFormat", {})))

    def set_data_validation(self, book: Book, body: dict) -> None:
        self.check_range(book, body["range"]).validations.append(body)

    def add_protected_range(self, book: Book, body: dict) -> dict:
        given = {k: v for k, v in body["protectedRange"].items() if v is not None}  # null is unset
        protected = dict(given, protectedRangeId=book.next_id)
        book.next_id += 1
        self.check_range(book, protected["range"]).protected.append(protected)
        return {"addProtectedRange": {"protectedRange": protected}}

    def add_conditional_format_rule(self, book: Book, body: dict) -> None:
        rule = body["rule"]
        grid = self.check_range(book, rule["ranges"][0])
        grid.conditional.insert(body.get("index", 0), rule)

    def add_chart(self, book: Book, body: dict) -> dict:
        chart = dict(body["chart"], chartId=book.next_id)
        book.next_id += 1
        anchor = chart["position"]["overlayPosition"]["anchorCell"]
        check_anchor(book.by_id(anchor.get("sheetId", 0)), anchor)
        for series in chart["spec"]["basicChart"].get("series", []) + chart["spec"]["basicChart"].get("domains", []):
            part = series.get("series") or series.get("domain")
            for source in part["sourceRange"]["sources"]:
                self.check_range(book, source)
        book.by_id(anchor["sheetId"]).charts.append(chart)
        return {"addChart": {"chart": chart}}

    def sort_range(self, book: Book, body: dict) -> None:
        rng = body["range"]
        grid = self.check_range(book, rng)
        r0, r1 = rng.get("startRowIndex", 0), rng.get("endRowIndex", grid.rows)
        c0, c1 = rng.get("startColumnIndex", 0), rng.get("endColumnIndex", grid.columns)
        rows = [(r, {c: grid.cells.get((r, c)) for c in range(c0, c1)}) for r in range(r0, r1)]
        for spec in reversed(body["sortSpecs"]):
            column = spec["dimensionIndex"]
            filled = [row for row in rows if row[1].get(column) is not None]
            blanks = [row for row in rows if row[1].get(column) is None]
            filled.sort(key=lambda row: sort_key(row[1][column]), reverse=spec.get("sortOrder") == "DESCENDING")
            rows = filled + blanks  # blanks last in either order, like Sheets
        if c0 == 0 and c1 == grid.columns:  # whole rows move, and their metadata with them
            grid.permute_rows({r: r0 + offset for offset, (r, _) in enumerate(rows)})
            return
        for offset, (_, row) in enumerate(rows):
            for c, cell in row.items():
                if cell is None:
                    grid.cells.pop((r0 + offset, c), None)
                else:
                    grid.cells[(r0 + offset, c)] = cell

    def insert_dimension(self, book: Book, body: dict) -> None:
        rng = body["range"]
        grid = book.by_id(rng.get("sheetId", 0))
        count = rng["endIndex"] - rng["startIndex"]
        if rng["dimension"] == "ROWS":
            grid.move_rows(rng["startIndex"], count)
            grid.rows += count
        else:
            grid.move_columns(rng["startIndex"], count)
            grid.columns += count

    def delete_dimension(self, book: Book, body: dict) -> None:
        rng = body["range"]
        grid = book.by_id(rng.get("sheetId", 0))
        start, end = rng["startIndex"], rng["endIndex"]
        if rng["dimension"] == "ROWS":
            grid.cells = {k: v for k, v in grid.cells.items() if not start <= k[0] < end}
            grid.row_metadata = {i: (r, m) for i, (r, m) in grid.row_metadata.items() if not start <= r < end}
            grid.move_rows(end, start - end)
            grid.rows -= end - start
        else:
            grid.cells = {k: v for k, v in grid.cells.items() if not start <= k[1] < end}
            grid.move_columns(end, start - end)
            grid.columns -= end - start

    def move_dimension(self, book: Book, body: dict) -> None:
        """Rows (only: columns are not emulated) startIndex..endIndex go before destinationIndex."""
        source = body["source"]
        grid = book.by_id(source.get("sheetId", 0))
        if source["dimension"] != "ROWS":
            raise Refusal(400, "moveDimension of columns is not emulated")
        start, end, to = source["startIndex"], source["endIndex"], body["destinationIndex"]
        if end > grid.rows or to > grid.rows or start < to < end:
            raise Refusal(400, f"Invalid destinationIndex {to} for rows {start}..{end}")
        order = list(range(grid.rows))
        moved, rest = order[start:end], order[:start] + order[end:]
        at = to if to <= start else to - (end - start)
        order = rest[:at] + moved + rest[at:]
        grid.permute_rows({r: n for n, r in enumerate(order) if r != n})

    def add_filter_view(self, book: Book, body: dict) -> dict:
        view = dict(body["filter"], filterViewId=body["filter"].get("filterViewId", book.next_id))
        book.next_id = max(book.next_id, view["filterViewId"]) + 1
        grid = self.check_range(book, view["range"])
        for spec in view.get("sortSpecs", []):
            if spec.get("dimensionIndex", 0) >= grid.columns:
                raise Refusal(400, f"sortSpecs dimensionIndex {spec.get('dimensionIndex')} is after the last "
                                   f"column in grid ({grid.columns} columns).")
        grid.filter_views.append(view)
        return {"addFilterView": {"filter": view}}

    def create_developer_metadata(self, book: Book, body: dict) -> dict:
        """Row metadata; Google requires a key, a visibility and a location, and a positive, unused id."""
        meta = dict(body["developerMetadata"])
        if not meta.get("metadataKey"):
            raise Refusal(400, "Developer metadata must always have a key specified.")
        if meta.get("visibility") not in ("DOCUMENT", "PROJECT"):
            raise Refusal(400, "Developer metadata must always have a visibility specified.")
        rng = meta.pop("location", {}).get("dimensionRange")
        if not rng or rng.get("dimension") != "ROWS" or rng["endIndex"] - rng["startIndex"] != 1:
            raise Refusal(400, "only metadata on one row is emulated (location.dimensionRange of 1 row)")
        grid = book.by_id(rng.get("sheetId", 0))
        if rng["endIndex"] > grid.rows:
            raise Refusal(400, f"Range exceeds grid limits. Max rows: {grid.rows}")
        taken = {i for s in book.sheets for i in s.row_metadata}
        meta["metadataId"] = meta.get("metadataId") or max([book.next_id, *taken]) + 1
        if meta["metadataId"] in taken or meta["metadataId"] <= 0:
            raise Refusal(400, f"Metadata with id {meta['metadataId']} already exists.")
        grid.row_metadata[meta["metadataId"]] = (rng["startIndex"], meta)
        return {"createDeveloperMetadata": {"developerMetadata": row_metadata(grid, rng["startIndex"], meta)}}

    def delete_developer_metadata(self, book: Book, body: dict) -> dict:
        deleted = []
        for grid, metadata_id, row in self.lookup(book, body["dataFilter"].get("developerMetadataLookup", {}),
                                                  "dataFilter"):
            deleted.append(row_metadata(grid, row, grid.row_metadata.pop(metadata_id)[1]))
        return {"deleteDeveloperMetadata": {"deletedDeveloperMetadata": deleted}}

    def append_dimension(self, book: Book, body: dict) -> None:
        grid = book.by_id(body.get("sheetId", 0))
        if body["dimension"] == "ROWS":
            grid.rows += body["length"]
        else:
            grid.columns += body["length"]


REQUESTS = {"addSheet", "deleteSheet", "updateSheetProperties", "updateDimensionProperties", "repeatCell",
            "setDataValidation", "addProtectedRange", "addConditionalFormatRule", "addChart", "sortRange",
            "insertDimension", "deleteDimension", "appendDimension", "moveDimension", "addFilterView",
            "createDeveloperMetadata", "deleteDeveloperMetadata"}


def row_metadata(grid: Grid, row: int, meta: dict) -> dict:
    """A DeveloperMetadata resource for metadata on one row, with its location now."""
    return {**meta, "location": {"locationType": "ROW", "sheetId": grid.sheet_id, "dimensionRange": {
        "sheetId": grid.sheet_id, "dimension": "ROWS", "startIndex": row, "endIndex": row + 1}}}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def sort_key(cell: Cell):
    rank = {"number": 0, "string": 1, "bool": 2, "formula": 3}[cell.kind]
    return (rank, cell.value.lower() if cell.kind == "string" else cell.value)


def quota_refusal(what: str, limit: int) -> Refusal:
    """Google's 429 for a per-minute quota: the message names the metric and limit; no Retry-After."""
    metric = {"read": "Read", "write": "Write"}[what]
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {"service": "sheets.googleapis.com", "consumer": "projects/123456",
                         "quota_metric": f"sheets.googleapis.com/{what}_requests",
                         "quota_limit": f"{metric}RequestsPerMinutePerUser", "quota_limit_value": str(limit),
                         "quota_location": "global"}}
    help_ = {"@type": "type.googleapis.com/google.rpc.Help", "links": [
        {"description": "Request a higher quota limit.",
         "url": "https://cloud.google.com/docs/quotas/help/request_increase"}]}
    return Refusal(429, f"Quota exceeded for quota metric '{metric} requests' and limit '{metric} requests per "
                        f"minute per user' of service 'sheets.googleapis.com' for consumer "
                        f"'project_number:123456'.", details=[info, help_])


def bad_value(field: str, value) -> Refusal:
    """Google's 400 for a JSON value of the wrong type (a string where a list belongs)."""
    text = f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.ListValue), {json.dumps(value)}"
    return Refusal(400, text, details=[{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                        "fieldViolations": [{"field": field, "description": text}]}])


def field_mask(body: dict, tree: dict) -> list[str]:
    """The names of a request's ``fields``; Google's 400 for a missing mask or a name it does not know."""
    mask = body.get("fields")
    if not mask:
        raise Refusal(400, "At least one field must be specified in 'fields'.")
    bad = unknown_paths(mask, tree)
    if bad:
        raise Refusal(400, f"Invalid field mask path: {bad[0]!r} names no field.")
    return [".".join(p) for p in mask_paths(mask)]


def check_anchor(grid: Grid, anchor: dict) -> None:
    """A chart's anchor cell must lie inside its tab's grid, as Google checks it."""
    row, column = anchor.get("rowIndex", 0), anchor.get("columnIndex", 0)
    where = f"GridCoordinate{{sheetId={grid.sheet_id}, rowIndex={row}, columnIndex={column}}}"
    if column >= grid.columns:
        raise Refusal(400, f"{where} is after last column in grid ({grid.columns} columns).")
    if row >= grid.rows:
        raise Refusal(400, f"{where} is after last row in grid ({grid.rows} rows).")


def find_table(filled: set, r0: int, r1: int, c0: int, c1: int) -> tuple[int, int, int, int] | None:
    """(first row, end row, first column, end column) of the table values.append finds in a window.

    The table starts at the window's first cell (none when that cell is blank: the values go there)
    and grows down and right while the next row or column holds a filled cell next to it: a blank row
    or column ends it.
    """
    if (r0, c0) not in filled:
        return None
    rs, cs = r0, c0
    re_, ce = rs + 1, cs + 1
    grown = True
    while grown:
        grown = False
        if re_ < r1 and any((re_, c) in filled for c in range(cs, ce)):
            re_, grown = re_ + 1, True
        if ce < c1 and any((r, ce) in filled for r in range(rs, re_)):
            ce, grown = ce + 1, True
    return rs, re_, cs, ce


def checked_values(values, field: str) -> list[list]:
    """``values`` when it is a list of lists of at most 50,000 characters a cell; Google's 400 otherwise."""
    if not isinstance(values, list):
        raise bad_value(field, values)
    for n, row in enumerate(values):
        if not isinstance(row, list):
            raise bad_value(f"{field}[{n}]", row)
        if any(isinstance(v, str) and len(v) > MAX_CELL_CHARS for v in row):
            raise Refusal(400, f"Your input contains more than the maximum of {MAX_CELL_CHARS} characters in a "
                               f"single cell.")
    return values


def option_of(query: dict, payload: dict) -> str:
    option = query.get("valueInputOption", [payload.get("valueInputOption", "")])[0]
    if option not in ("RAW", "USER_ENTERED"):
        raise Refusal(400, "Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED")
    return option


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def route(method: str, path: str) -> tuple[str, str, str | None]:
    """(kind, spreadsheet key, range) of a Sheets API path; 404 for anything else."""
    prefix = "/v4/spreadsheets/"
    if path.rstrip("/") == prefix.rstrip("/"):
        return ("spreadsheets.create", "", None) if method == "POST" else bad(path)
    if not path.startswith(prefix):
        raise Refusal(404, f"The requested URL {path} was not found on this server.")
    rest = path[len(prefix):]
    m = re.match(r"([^/:]+)(?:([/:])(.*))?$", rest)
    if not m:
        return bad(path)
    key, sep, tail = m.group(1), m.group(2) or "", m.group(3) or ""
    if not sep:
        return ("spreadsheets.get", key, None) if method == "GET" else bad(path)
    if sep == ":":
        return ("spreadsheets.batchUpdate", key, None) if tail == "batchUpdate" and method == "POST" else bad(path)
    if tail.startswith("values:"):
        verb = tail[len("values:"):]
        kinds = {("GET", "batchGet"): "values.batchGet", ("POST", "batchUpdate"): "values.batchUpdate",
                 ("POST", "batchClear"): "values.batchClear",
                 ("POST", "batchGetByDataFilter"): "values.batchGetByDataFilter",
                 ("POST", "batchUpdateByDataFilter"): "values.batchUpdateByDataFilter"}
        return (kinds[(method, verb)], key, None) if (method, verb) in kinds else bad(path)
    if tail.startswith("values/"):
        rng = tail[len("values/"):]
        for suffix, kind in ((":append", "values.append"), (":clear", "values.clear")):
            if rng.endswith(suffix) and method == "POST":
                return kind, key, unquote(rng[: -len(suffix)])
        kinds = {"GET": "values.get", "PUT": "values.update"}
        return (kinds[method], key, unquote(rng)) if method in kinds else bad(path)
    return bad(path)


def bad(path: str):
    raise Refusal(404, f"The requested URL {path} was not found on this server.")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body leave in one send, flushed after each request

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, headers = self.server.emulator.handle(self.command, self.path, self.headers, body)
        if status == DROP:  # the request was applied; its answer never leaves
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = answer

    def log_message(self, *args) -> None:
        pass


# --- standalone -------------------------------------------------------------------------------------

STANDALONE_ACCOUNT = "dcloop-emulator@dcloop-emulator.iam.gserviceaccount.com"


def write_service_account_key(path: Path, email: str, token_uri: str):
    """A new RSA key written as the JSON key file Google's console downloads; returns the private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    Path(path).write_text(json.dumps({
        "type": "service_account", "project_id": "dcloop-emulator", "private_key_id": secrets.token_hex(8),
        "private_key": pem, "client_email": email, "client_id": "1", "token_uri": token_uri,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth"}), encoding="utf-8")
    return private


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator on 127.0.0.1 until interrupted; the base url is the first line on stdout."""
    parser = argparse.ArgumentParser(prog="python -m tests.sheets_emulator", description=(
        "A local emulator of the Google Sheets API. Point dcloop at it with [table] endpoint (or "
        "DCLOOP_TABLE_ENDPOINT) set to the url it prints and --credentials set to the key it writes."))
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--key-out", type=Path, required=True,
                        help="where to write a service-account key file the emulator accepts")
    parser.add_argument("--sheet", action="append", default=[], metavar="KEY",
                        help="create an empty spreadsheet with this key, shared with the key's account")
    parser.add_argument("--quota", type=int, metavar="N",
                        help="refuse with 429 past N reads (and N writes) per minute per user, as Google does")
    args = parser.parse_args(argv)
    emulator = SheetsEmulator()
    emulator.start(args.port)
    private = write_service_account_key(args.key_out, STANDALONE_ACCOUNT, emulator.token_uri)
    emulator.add_account(STANDALONE_ACCOUNT, private.public_key())
    for key in args.sheet:
        emulator.create_spreadsheet(key, editors=[STANDALONE_ACCOUNT], key=key)
    if args.quota:
        emulator.quota(reads=args.quota, writes=args.quota)
    print(emulator.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
