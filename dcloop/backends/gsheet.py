"""The label table as a Google Sheet, through gspread and a service account.

Requests to the Sheets API per operation, constant in the number of rows:

- ``read``: 1 values.batchGet (the labels tab, and the classes tab's first column to know its size);
- ``write``, ``move_splits``, ``restore``: 1 values.batchGetByDataFilter (the labels tab and where each
  row's tag is, in one answer), then, when a cell differs, 1 values.batchUpdateByDataFilter RAW, plus
  1 USER_ENTERED for changed ``=IMAGE`` formulas (the only cells written as formulas); rows without a
  tag yet add 3: the tab's sheetId (once a process), the tags, and a re-read that checks them. Writes
  are split into requests of about 2 MB;
- ``append_result``: 1 values.append (after an answer lost on the way, 1 values.get to see whether it
  was applied before sending it again); ``append_rows``: 1 values.get and 1 values.append;
  ``update_classes``: 1 values.update;
- ``create``: about 6 (metadata, current values, tabs and grid, values, formulas, formats).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import requests
from google.auth import exceptions as auth_errors
from gspread.exceptions import APIError, NoValidUrlKeyFound
from gspread.utils import extract_id_from_url

from ..errors import BackendError, ConfigError
from ..table import RESULT_COLUMNS
from . import sheet_layout as layout
from .sheet_grid import (MAX_CELLS, READ_PARAMS, ROW_TAG, a1, batches, first_row, grid_frame, header_of,
                         image_formula, plan_decisions, plan_restore, plan_split_moves, plan_write, quote_title,
                         table_of, tag_filter, typed)
from .sheet_http import (GaveUp, RetryingHTTPClient, RetryPolicy, authorized_session, credentials_path,
                         load_credentials, translate)

KEY = re.compile(r"[A-Za-z0-9_-]{20,}")
VALUES_URL = "https://sheets.googleapis.com/v4/spreadsheets/{key}/values:{verb}"
# Google recommends at most 2 MB per request "for speed"; dcloop's writes are split at that size.
REQUEST_BYTES = 2_000_000
TAG_ROUNDS = 3  # reads of rows being tagged before a write gives up on the ones people keep moving
RESULT_KEY = ("run_id", "kind", "label_version", "time_utc")  # what tells one results row from another


def sheet_key(sheet: str) -> str:
    """The spreadsheet key from a browser url or a bare key."""
    sheet = sheet.strip()
    if not sheet:
        raise ConfigError("no Google Sheet given: pass --sheet URL or set [table] sheet in dcloop.toml.")
    if "/" in sheet:
        try:
            return extract_id_from_url(sheet)
        except NoValidUrlKeyFound as e:
            raise ConfigError(f"{sheet!r} is not a Google Sheets url; copy the address of the sheet "
                              f"(https://docs.google.com/spreadsheets/d/KEY/edit).") from e
    if not KEY.fullmatch(sheet):
        raise ConfigError(f"{sheet!r} is neither a Google Sheets url nor a sheet key.")
    return sheet


def retrying(client, policy: RetryPolicy) -> RetryingHTTPClient:
    """Our retrying HTTP client over the session of a gspread Client, Spreadsheet or HTTPClient."""
    if isinstance(client, RetryingHTTPClient):
        return client
    http = getattr(client, "http_client", None) or getattr(client, "client", None) or client
    return RetryingHTTPClient(getattr(http, "auth", None), http.session, policy)


class SheetBackend:
    """A Google Sheet with tabs labels, results and classes, laid out from ``sheets_templates/``."""

    capabilities = frozenset()  # rows are never moved under people's cursors: the filter view sorts

    def __init__(self, client, key: str | None = None, *, classes=(), tabs: dict | None = None,
                 account: str | None = None, retry: RetryPolicy = RetryPolicy()):
        self.http = retrying(client, retry)
        self.key = key or getattr(client, "id", "")
        if not self.key:
            raise ConfigError("SheetBackend needs the key of a spreadsheet.")
        self.classes = list(classes)
        self.tabs = tabs or layout.load_tabs()
        credentials = getattr(self.http.session, "credentials", None)
        self.account = account if account is not None else getattr(credentials, "service_account_email", "")
        self.class_rows: int | None = None  # rows in the classes tab when last seen
        self.results_header: list[str] | None = None  # the results tab's first row when last seen
        self.sheet_id: int | None = None  # the labels tab's sheetId, asked once when rows need tags
        self.request_bytes = REQUEST_BYTES

    @classmethod
    def from_config(cls, config, root: Path) -> SheetBackend:
        """The sheet ``[table] sheet`` names, opened with the key that credentials_path finds."""
        key = sheet_key(config.table.sheet)
        path = credentials_path(config.table.credentials, root, os.environ, Path.home())
        credentials = load_credentials(path)
        session = authorized_session(credentials, config.table.endpoint,
                                     (config.table.connect_timeout_s, config.table.read_timeout_s))
        return cls(RetryingHTTPClient(credentials, session), key, classes=config.project.classes,
                   account=credentials.service_account_email)

    @property
    def labels(self) -> layout.Tab:
        return self.tabs["labels"]

    def describe(self) -> str:
        return f"Google Sheet {self.key}"

    @contextmanager
    def errors(self):
        """Turn gspread, google-auth and requests errors into dcloop's, with what to do."""
        try:
            yield
        except (GaveUp, APIError, auth_errors.GoogleAuthError, requests.RequestException) as e:
            raise translate(e, self.describe(), self.account) from e

    # --- the Backend protocol -------------------------------------------------------------

    def read(self) -> pd.DataFrame:
        with self.errors():
            values = self.read_labels()
        return grid_frame(values).reset_index(drop=True)

    def write(self, patch: pd.DataFrame) -> int:
        if patch.empty:
            return 0
        with self.errors():
            return self.write_rows(lambda values, tagged: plan_write(
                values, patch, self.labels.title, self.labels.numeric, self.describe(), tagged), patch["id"])

    def move_splits(self, moves: pd.DataFrame) -> int:
        """Set split by id where it still has the planned value (`dcloop split --rebalance --apply`)."""
        if moves.empty:
            return 0
        with self.errors():
            return self.write_rows(lambda values, tagged: plan_split_moves(
                values, moves, self.labels.title, self.labels.numeric, self.describe(), tagged), moves["id"])

    def decide(self, decisions: pd.DataFrame) -> dict:
        """Set label, split and reviewed by id as a reviewer decided (`dcloop review`), in one write."""
        if decisions.empty:
            return {}
        last: list = []

        def plan(values, tagged):
            last[:] = plan_decisions(values, decisions, self.labels.title, self.labels.numeric,
                                     self.describe(), tagged)
            return last[0]
        with self.errors():
            self.write_rows(plan, decisions["id"])
        rows_plan, refused = last
        moving = set(rows_plan.to_tag.values())  # rows people kept moving while the tags were put on
        return {**{k: "the row moved while it was written: decide again" for k, i in decisions["id"].items()
                   if i in moving}, **refused}

    def restore(self, snapshot: pd.DataFrame) -> int:
        """Set label and split by id to a recorded version's (`dcloop restore`); its lost rows are added back."""
        lost: list[pd.DataFrame] = []

        def plan(values, tagged):
            rows_plan, rows_lost = plan_restore(values, snapshot, self.labels.title, self.labels.numeric,
                                                self.describe(), tagged)
            lost[:] = [rows_lost]
            return rows_plan
        with self.errors():
            changed = self.write_rows(plan, snapshot["id"])
        return changed + (self.append_rows(lost[0]) if lost and len(lost[0]) else 0)

    def write_rows(self, plan_for, ids) -> int:
        """Write the cells ``plan_for(values, tagged)`` plans, each row addressed by its tag.

        The re-read and the tags' places come in one request, so they agree. Rows without a tag (new
        rows, rows of an older sheet) are tagged by row number, read again, and written only where the
        tag turned out on the row planned: a sort in between leaves them for the next round. Once a
        tag is on its row, sorting, inserting, deleting or moving rows takes it along, so the write,
        and any retry of it, lands on that row whatever people do meanwhile.
        """
        ids = sorted(set(pd.Series(ids, dtype=str).str.strip()) - {""})
        try:
            return self.write_tagged(plan_for, ids)
        except APIError as e:
            # A row deleted between the re-read and the write leaves a lookup that matches nothing;
            # Google's documentation does not say whether it skips or refuses such a filter. Writes
            # by tag are idempotent, so one fresh read and plan, without that row, is safe.
            if e.response.status_code != 400:
                raise
            return self.write_tagged(plan_for, ids)

    def write_tagged(self, plan_for, ids: list[str]) -> int:
        for round_ in range(TAG_ROUNDS):
            values, tagged = self.read_tagged(ids)
            plan = plan_for(values, tagged)
            if not plan.to_tag or round_ == TAG_ROUNDS - 1:
                break
            self.tag_rows(plan.to_tag, plan.stale)
        if plan.new_columns:
            self.ensure_grid(self.labels.title, columns=plan.columns_needed(header_of(values)))
            self.send_values(plan.header, "RAW")
        self.send_by_filter(plan.raw, "RAW")
        self.send_by_filter(plan.formulas, "USER_ENTERED")
        return plan.rows_changed

    def create(self, table: pd.DataFrame) -> list[str]:
        """Lay out the tabs from the templates and fill ``labels``; on an existing sheet add only what is missing.

        A failed layout is retried from the start, never request by request: Layout adds only what
        the sheet lacks, so a batch that Google applied but whose answer was lost adds no second
        tab, chart or protection when it is tried again.
        """
        with self.errors():
            return self.http.as_one(lambda: Layout(self, table).run())

    def read_results(self) -> pd.DataFrame:
        with self.errors():
            values = self.values(quote_title(self.tabs["results"].title))
        if not values:
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return grid_frame(values).reset_index(drop=True)

    def append_result(self, row: dict[str, str]) -> None:
        """One results row laid out by the tab's own header; names a newer dcloop added go at its end.

        A sheet made by an older dcloop lacks the newer result columns: their values would land
        under unnamed cells, so the missing names are written first (once, in one call).
        """
        tab = self.tabs["results"]
        with self.errors():
            if self.results_header is None:
                self.results_header = (self.values(f"{quote_title(tab.title)}!1:1") or [[]])[0]
            header = [str(c) for c in self.results_header]
            missing = list(dict.fromkeys(c for c in [*tab.header, *row] if c not in header))
            if missing:
                self.update_growing(tab.title, a1(tab.title, 1, len(header), 1, len(header) + len(missing) - 1),
                                    [missing], rows=1, columns=len(header) + len(missing))
                header = self.results_header = header + missing
            values = [[typed(str(row.get(c, "")), c in tab.numeric) for c in header]]
            self.http.as_one(lambda: self.http.values_append(
                self.key, f"{quote_title(tab.title)}!A1",
                {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"}, {"values": values}),
                applied=lambda: self.has_result(row))

    def has_result(self, row: dict[str, str]) -> bool:
        """Whether the results tab holds ``row`` already (same run, kind, label version and time):
        asked only after an append whose answer was lost, so that a retry adds no second row."""
        values = self.values(quote_title(self.tabs["results"].title))
        if len(values) < 2:
            return False
        held = grid_frame(values).fillna("").astype(str)
        same = pd.Series(True, index=held.index)
        for column in (c for c in RESULT_KEY if c in row):
            same &= held.get(column, pd.Series("", index=held.index)).str.strip() == str(row[column]).strip()
        return bool(same.any())

    def append_rows(self, rows: pd.DataFrame) -> int:
        """Add whole rows below the labels tab's last row (ids it has are skipped), in the tab's column order.

        values.append inserts after whatever the last row is when Google applies it: rows a person
        added meanwhile are kept. The image cell is left blank; the next sync fills it. A retry
        starts again from the read, so rows whose append was applied but not answered are skipped.
        """
        planned: list[int] = []  # rows to add as the first complete read found them
        with self.errors():
            self.http.as_one(lambda: self.append_new_rows(rows, planned))
        return planned[0] if planned else 0

    def append_new_rows(self, rows: pd.DataFrame, planned: list[int]) -> None:
        values = self.values(quote_title(self.labels.title))
        held = grid_frame(values) if values else pd.DataFrame(columns=["id"])
        fresh = rows[~rows["id"].isin(set(held.get("id", pd.Series(dtype=str)).str.strip()))]
        header = header_of(values) if values else self.labels.header
        body = [[typed(str(row.get(c, "")) if c != "image" else "", c in self.labels.numeric) for c in header]
                for row in fresh.to_dict("records")]
        planned.append(len(body))
        if body:
            self.http.values_append(self.key, f"{quote_title(self.labels.title)}!A1",
                                    {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
                                    {"values": body})

    def update_classes(self, rows: list[dict[str, str]]) -> None:
        """Rewrite the classes tab: per class, rows per split and the last per-class accuracy."""
        tab = self.tabs["classes"]
        columns = tab.header + [c for row in rows for c in row if c not in tab.header]
        columns = list(dict.fromkeys(columns))
        body = [columns] + [[typed(str(row.get(c, "")), c in tab.numeric) for c in columns] for row in rows]
        with self.errors():
            if self.class_rows is None:
                self.class_rows = len(self.values(f"{quote_title(tab.title)}!A:A"))
            # Blank the rows of classes that are gone, in the same call.
            body += [[""] * len(columns)] * max(0, self.class_rows - len(body))
            rng = a1(tab.title, 1, 0, len(body), len(columns) - 1)
            self.update_growing(tab.title, rng, body, rows=len(body), columns=len(columns))
        self.class_rows = len(rows) + 1

    # --- requests ---------------------------------------------------------------------------

    def read_labels(self) -> list[list]:
        """The labels tab in one call; the classes tab's first column (to learn its size) and the
        results tab's header (to lay out the next results row) ride along."""
        ranges = [quote_title(self.labels.title), f"{quote_title(self.tabs['classes'].title)}!A:A",
                  f"{quote_title(self.tabs['results'].title)}!1:1"]
        try:
            answer = self.http.values_batch_get(self.key, ranges, dict(READ_PARAMS))
        except APIError as e:
            if e.response.status_code != 400:
                raise
            return self.values(ranges[0])  # no classes tab: fine for reading
        labels, classes, results = (r.get("values", []) for r in answer["valueRanges"])
        self.class_rows = len(classes)
        self.results_header = results[0] if results else []
        return labels

    def update_growing(self, title: str, rng: str, body: list[list], rows: int, columns: int) -> None:
        """Write ``body`` to ``rng`` in tab ``title``; grow the grid only when Google says it is too small."""
        try:
            self.http.values_update(self.key, rng, {"valueInputOption": "RAW"}, {"values": body})
        except APIError as e:
            if "exceeds grid limits" not in str(e):
                raise
            self.ensure_grid(title, rows=rows, columns=columns)
            self.http.values_update(self.key, rng, {"valueInputOption": "RAW"}, {"values": body})

    def values(self, rng: str) -> list[list]:
        return self.http.values_get(self.key, rng, dict(READ_PARAMS)).get("values", [])

    def read_tagged(self, ids: list[str]) -> tuple[list[list], dict[str, list[int]]]:
        """The labels tab and, in the same request, the rows the tags of ``ids`` are on: (values, id -> rows)."""
        filters = [{"a1Range": quote_title(self.labels.title)}] + [tag_filter(i) for i in ids]
        answer = self.by_filter("batchGetByDataFilter", {"dataFilters": filters, **READ_PARAMS})
        values, tagged = [], {}
        for matched in answer.get("valueRanges", []):
            lookup = matched["dataFilters"][0].get("developerMetadataLookup")
            if lookup is None:
                values = matched["valueRange"].get("values", [])
            else:
                tagged.setdefault(lookup["metadataValue"], []).append(first_row(matched["valueRange"]["range"]))
        return values, tagged

    def tag_rows(self, rows: dict[int, str], stale: list[str]) -> None:
        """Tag sheet rows with their ids (row -> id), after removing the tags of ``stale`` ids found elsewhere."""
        requests_ = [{"deleteDeveloperMetadata": {"dataFilter": tag_filter(i)}} for i in stale]
        requests_ += tag_requests(self.labels_sheet_id(), rows)
        for part in batches(requests_, self.request_bytes):
            self.http.batch_update(self.key, {"requests": part})

    def labels_sheet_id(self) -> int:
        if self.sheet_id is None:
            sheets = {s["properties"]["title"]: s["properties"] for s in self.metadata()["sheets"]}
            self.sheet_id = sheets[self.labels.title]["sheetId"]
        return self.sheet_id

    def by_filter(self, verb: str, body: dict) -> dict:
        return self.http.request("post", VALUES_URL.format(key=self.key, verb=verb), json=body).json()

    def send_by_filter(self, data: list[dict], option: str) -> None:
        """Write DataFilterValueRanges, in requests of at most about REQUEST_BYTES."""
        for part in batches(data, self.request_bytes):
            self.by_filter("batchUpdateByDataFilter", {"valueInputOption": option, "data": part})

    def send_values(self, data: list[dict], option: str) -> None:
        for part in batches(data, self.request_bytes):
            self.http.values_batch_update(self.key, {"valueInputOption": option, "data": part})

    def metadata(self) -> dict:
        return self.http.fetch_sheet_metadata(self.key)

    def ensure_grid(self, title: str, rows: int = 0, columns: int = 0) -> None:
        """Grow tab ``title`` to at least rows x columns; says so before passing Google's cell limit."""
        sheets = {s["properties"]["title"]: s["properties"] for s in self.metadata()["sheets"]}
        grid = sheets[title]["gridProperties"]
        want = max(rows, grid["rowCount"]), max(columns, grid["columnCount"])
        if want == (grid["rowCount"], grid["columnCount"]):
            return
        sizes = {t: (p["gridProperties"]["rowCount"], p["gridProperties"]["columnCount"]) for t, p in sheets.items()}
        check_cell_limit({**sizes, title: want}, self.describe())
        self.http.batch_update(self.key, {"requests": [layout.resize_sheet(sheets[title]["sheetId"], *want)]})


def tag_requests(sheet_id: int, rows: dict[int, str]) -> list[dict]:
    """createDeveloperMetadata requests that tag each sheet row (row -> id) with its id, visible to any
    service account that may open the sheet (DOCUMENT)."""
    return [{"createDeveloperMetadata": {"developerMetadata": {
        "metadataKey": ROW_TAG, "metadataValue": row_id, "visibility": "DOCUMENT",
        "location": {"dimensionRange": {"sheetId": sheet_id, "dimension": "ROWS",
                                        "startIndex": row - 1, "endIndex": row}}}}}
        for row, row_id in rows.items() if row_id]


def check_cell_limit(sizes: dict[str, tuple[int, int]], where: str) -> None:
    """Raise before a layout would pass Google's 10 million cells per spreadsheet."""
    total = sum(rows * columns for rows, columns in sizes.values())
    if total > MAX_CELLS:
        detail = ", ".join(f"{t} {r}x{c}" for t, (r, c) in sizes.items())
        raise BackendError(f"{where}: the sheet would need {total:,} cells ({detail}); Google Sheets holds "
                           f"at most {MAX_CELLS:,} per spreadsheet. Delete unused tabs, rows or columns, "
                           f"or keep this table in a CSV file (backend = \"csv\").")


class Layout:
    """One run of ``create``: look at the sheet, then add tabs, grid, rows and formats that are missing."""

    def __init__(self, backend: SheetBackend, table: pd.DataFrame):
        self.backend, self.table = backend, table.fillna("").astype(str)
        self.tabs = backend.tabs
        self.findings: list[str] = []

    def run(self) -> list[str]:
        b = self.backend
        sheets = {s["properties"]["title"]: s for s in b.metadata()["sheets"]}
        found = {t.title: [] for t in self.tabs.values() if t.title in sheets}
        blank = self.reusable_blank_tab(sheets)
        if found or blank:
            names = list(found) + ([blank] if blank else [])
            answer = b.http.values_batch_get(b.key, [quote_title(n) for n in names], dict(READ_PARAMS))
            contents = [r.get("values", []) for r in answer["valueRanges"]]
            found.update(zip(names, contents))
            if blank and found.pop(blank):
                blank = None  # it has data after all
        plans = {name: self.plan_tab(tab, found.get(tab.title)) for name, tab in self.tabs.items()}
        ids = self.structure(sheets, plans, blank)
        b.send_values([r for p in plans.values() for r in p["raw"]], "RAW")
        b.send_values([r for p in plans.values() for r in p["formulas"]], "USER_ENTERED")
        requests_ = [r for name, p in plans.items()
                     for r in layout.format_requests(self.tabs[name], ids[name], p["header"], p["rows"],
                                                     self.classes(), p["found"], p["images"])]
        # The rows written are tagged as they were placed; the first write checks each tag's row.
        requests_ += tag_requests(ids["labels"], plans["labels"]["tags"])
        requests_ += layout.filter_view_requests(self.tabs["labels"], ids["labels"], plans["labels"]["header"],
                                                 plans["labels"]["found"])
        b.sheet_id = ids["labels"]
        for part in batches(requests_, b.request_bytes):
            b.http.batch_update(b.key, {"requests": part})
        return self.findings

    def classes(self) -> list[str]:
        if self.backend.classes:
            return self.backend.classes
        return sorted(set(self.table["label"].str.strip()) - {""}) if "label" in self.table else []

    def reusable_blank_tab(self, sheets: dict) -> str | None:
        """A new spreadsheet's only tab ('Sheet1'), which becomes labels if it holds nothing."""
        titles = {t.title for t in self.tabs.values()}
        if len(sheets) != 1 or titles & set(sheets):
            return None
        return next(iter(sheets))

    def plan_tab(self, tab: layout.Tab, values: list[list] | None) -> dict:
        """Header, new cells and grid size for one tab, from what it holds now (None: no such tab)."""
        held = header_of(values) if values else []
        if values and tab.title == self.tabs["labels"].title:
            table_of(values, f"{self.backend.describe()} tab {tab.title}")  # a clear error for a foreign table
        missing = [c for c in tab.header if c not in held]
        header = held + missing if held else tab.header
        rows = self.new_rows(values) if tab.title == self.tabs["labels"].title else self.table.iloc[0:0]
        first_free = max(len(values or []), 1) + 1
        raw, formulas = self.cells(tab, header, rows, first_free)
        if missing:
            raw.append({"range": a1(tab.title, 1, len(held), 1, len(header) - 1), "values": [missing]})
        self.note(tab, values, rows, missing if held else [])
        images = bool(formulas) or any(str(v).startswith("=IMAGE(") for row in values or [] for v in row)
        needed = first_free - 1 + len(rows) + tab.spare_rows
        if tab.title == self.tabs["classes"].title:
            needed = max(needed, 1 + len(self.classes()) + tab.spare_rows)
        tags = dict(zip(range(first_free, first_free + len(rows)), rows["id"].str.strip())) if "id" in rows else {}
        return {"header": header, "raw": raw, "formulas": formulas, "images": images, "tags": tags,
                "rows": max(needed, tab.frozen_rows + 1), "columns": tab.columns_needed(header)}

    def new_rows(self, values: list[list] | None) -> pd.DataFrame:
        """Rows of the table that the labels tab does not hold yet (by id, then by url)."""
        if not values:
            return self.table
        held = grid_frame(values)
        known_ids = set(held.get("id", pd.Series(dtype=str)).str.strip()) - {""}
        known_urls = set(held.get("url", pd.Series(dtype=str)).str.strip()) - {""}
        fresh = ~self.table["id"].str.strip().isin(known_ids) & ~self.table["url"].str.strip().isin(known_urls)
        return self.table[fresh]

    def cells(self, tab: layout.Tab, header: list[str], rows: pd.DataFrame, first_row: int):
        """Value ranges for new rows, one per column: RAW data, and =IMAGE formulas built from the url."""
        raw, formulas = [], []
        if rows.empty:
            return raw, formulas
        last = first_row + len(rows) - 1
        for position, column in enumerate(header):
            if column == "image":
                cells = [[image_formula(u)] for u in rows["url"]]
                formulas.append({"range": a1(tab.title, first_row, position, last), "values": cells})
            elif column in rows:
                cells = [[typed(v, column in tab.numeric)] for v in rows[column]]
                raw.append({"range": a1(tab.title, first_row, position, last), "values": cells})
        return raw, formulas

    def note(self, tab: layout.Tab, values: list[list] | None, rows: pd.DataFrame, missing: list[str]) -> None:
        if values is None:
            self.findings.append(f"tab {tab.title}: created" + (f", {len(rows)} row(s) written" if len(rows) else ""))
            return
        kept = len(values) - 1 if values else 0
        what = f"tab {tab.title}: found" + (f" with {kept} row(s), kept them" if kept else (
            ", header only" if values else ", empty"))
        if len(rows):
            what += f"; added {len(rows)} new row(s)"
        if missing:
            what += f"; added column(s) {', '.join(missing)}"
        self.findings.append(what)

    def structure(self, sheets: dict, plans: dict, blank: str | None) -> dict[str, int]:
        """Add or rename tabs and grow grids in one batchUpdate; return each tab's sheetId."""
        requests_, ids, sizes = [], {}, {}
        for title, sheet in sheets.items():
            grid = sheet["properties"]["gridProperties"]
            sizes[title] = (grid["rowCount"], grid["columnCount"])
        adds = []
        for name, plan in plans.items():
            tab = self.tabs[name]
            if tab.title in sheets:
                props = sheets[tab.title]["properties"]
                ids[name] = props["sheetId"]
                grow = (max(plan["rows"], sizes[tab.title][0]), max(plan["columns"], sizes[tab.title][1]))
                if grow != sizes[tab.title]:
                    requests_.append(layout.resize_sheet(props["sheetId"], *grow))
                    sizes[tab.title] = grow
            elif name == "labels" and blank:
                ids[name] = sheets[blank]["properties"]["sheetId"]
                requests_ += [layout.rename_sheet(ids[name], tab.title),
                              layout.resize_sheet(ids[name], plan["rows"], plan["columns"])]
                sizes.pop(blank)
                sizes[tab.title] = (plan["rows"], plan["columns"])
                self.findings.insert(0, f"renamed the empty tab {blank!r} to {tab.title}")
            else:
                adds.append(name)
                requests_.append(layout.add_sheet(tab.title, plan["rows"], plan["columns"], tab.frozen_rows))
                sizes[tab.title] = (plan["rows"], plan["columns"])
        check_cell_limit(sizes, self.backend.describe())
        for plan, name in ((plans[n], n) for n in plans):
            plan["rows"] = sizes[self.tabs[name].title][0]
            plan["found"] = layout.decorations(sheets.get(self.tabs[name].title, {}))
        if requests_:
            answer = self.backend.http.batch_update(self.backend.key, {"requests": requests_})
            added = [r["addSheet"]["properties"]["sheetId"] for r in answer.get("replies", []) if "addSheet" in r]
            ids.update(zip(adds, added))
        return ids
