"""The emulator answers as Google's Sheets API answered in recorded traffic, through real gspread.

Each test names a kind of request and what Google did with it. The answers were learnt from
recordings of the real API (gspread's test cassettes, read with scripts/emulator_conformance.py,
which replays them all); the quota, lost-answer and anchor cases follow Google's documented limits
and error shapes, which the recordings do not hold.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gspread
import pytest
import requests
from gspread.exceptions import APIError

from dcloop.backends.sheet_http import authorized_session, load_credentials

from .conftest import ACCOUNT, write_key

SHEETS = "https://sheets.googleapis.com/v4/spreadsheets"


class Clock:
    """An emulator clock that tests move by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gc(key_file, emulator) -> gspread.Client:
    return gspread.Client(None, session=authorized_session(load_credentials(key_file), emulator.base_url))


@pytest.fixture
def book(gc, emulator):
    """A spreadsheet as a new one is: one tab 'Sheet1' of 1000 x 26 with sheetId 0."""
    return gc.open_by_key(emulator.create_spreadsheet("conformance", editors=[ACCOUNT]))


def refusal(call) -> APIError:
    with pytest.raises(APIError) as e:
        call()
    return e.value


RAW = {"valueInputOption": "RAW"}


# --- values.append: the table Google finds --------------------------------------------------------

def test_append_to_an_empty_tab_writes_at_a1_and_names_no_table(book):
    answer = book.values_append("'Sheet1'", RAW, {"values": [[f"c{n}" for n in range(10)]]})
    assert "tableRange" not in answer
    assert answer["updates"] == {"spreadsheetId": book.id, "updatedRange": "Sheet1!A1:J1", "updatedRows": 1,
                                 "updatedColumns": 10, "updatedCells": 10}


def test_append_below_a_table_of_full_rows_reports_the_table_and_the_next_row(book):
    for n in range(4):
        book.values_append("'Sheet1'", RAW, {"values": [[f"r{n}c{c}" for c in range(10)]]})
    answer = book.values_append("'Sheet1'", RAW, {"values": [["x"] * 10]})
    assert answer["tableRange"] == "Sheet1!A1:J4" and answer["updates"]["updatedRange"] == "Sheet1!A5:J5"


def test_append_at_a_cell_finds_the_table_that_starts_there_and_a_blank_column_ends_it(book):
    book.values_append("'Sheet1'", RAW, {"values": [["a", "", "c"]]})  # "" counts as written, stays blank
    answer = book.values_append("'Sheet1'!A1", RAW, {"values": [["d", "", "f"]]})
    assert answer["tableRange"] == "Sheet1!A1"
    assert answer["updates"]["updatedRange"] == "Sheet1!A2:C2" and answer["updates"]["updatedCells"] == 3


def test_append_at_a_blank_row_inside_data_writes_there(book):
    book.values_update("'Sheet1'!A1:D3", RAW, {"values": [["h"] * 4, [""] * 4, ["t"] * 4]})
    answer = book.values_append("'Sheet1'!A2", RAW, {"majorDimension": "ROWS", "values": [["n"] * 8]})
    assert "tableRange" not in answer and answer["updates"]["updatedRange"] == "Sheet1!A2:H2"


def test_append_by_columns_counts_rows_and_columns_of_the_sheet(book):
    answer = book.values_append("'Sheet1'!B1", RAW, {"majorDimension": "COLUMNS",
                                                      "values": [["1", "2", "3", "4"], ["5", "6", "7", "8"]]})
    assert answer["updates"]["updatedRange"] == "Sheet1!B1:C4"
    assert (answer["updates"]["updatedRows"], answer["updates"]["updatedColumns"]) == (4, 2)


# --- values.get, values.clear --------------------------------------------------------------------

def test_get_of_an_empty_window_has_range_and_no_values(book):
    assert book.values_get("'Sheet1'!A1:D6") == {"range": "Sheet1!A1:D6", "majorDimension": "ROWS"}


def test_get_of_an_open_row_reports_the_row_to_the_last_column(book):
    book.values_update("'Sheet1'!A2", RAW, {"values": [["a", "", "b"]]})
    assert book.values_get("'Sheet1'!A2:2") == {"range": "Sheet1!A2:Z2", "majorDimension": "ROWS",
                                                "values": [["a", "", "b"]]}


def test_get_of_an_open_range_starting_past_the_grid_is_refused(book):
    for rng in ("'Sheet1'!AA:AB", "'Sheet1'!A1001:B", "'Sheet1'!1001:1001"):
        error = refusal(lambda: book.values_get(rng))
        assert error.response.status_code == 400 and "exceeds grid limits" in error.error["message"]


def test_clear_of_a_whole_tab_reports_its_grid(book):
    assert book.values_clear("'Sheet1'") == {"spreadsheetId": book.id, "clearedRange": "Sheet1!A1:Z1000"}


# --- values.update: what Google refuses ------------------------------------------------------------

def test_update_with_values_that_are_not_a_list_is_invalid_argument(book):
    error = refusal(lambda: book.values_update("'Sheet1'!A1", RAW, {"values": "X"}))
    message = "Invalid value at 'data.values' (type.googleapis.com/google.protobuf.ListValue), \"X\""
    assert error.response.status_code == 400 and error.error["message"] == message
    assert error.error["details"][0]["fieldViolations"] == [{"field": "data.values", "description": message}]


def test_update_with_a_row_that_is_not_a_list_is_invalid_argument(book):
    error = refusal(lambda: book.values_update("'Sheet1'!A1", RAW, {"values": ["a", "b"]}))
    assert "Invalid value at 'data.values[0]'" in error.error["message"]


def test_a_cell_holds_at_most_50000_characters(book):
    book.values_update("'Sheet1'!A1", RAW, {"values": [["x" * 50_000]]})
    error = refusal(lambda: book.values_update("'Sheet1'!A2", RAW, {"values": [["x" * 50_001]]}))
    assert error.response.status_code == 400 and "maximum of 50000 characters" in error.error["message"]
    assert "values" not in book.values_get("'Sheet1'!A2")


def test_update_reports_the_range_written(book):
    answer = book.values_update("'Sheet1'!B2", {"valueInputOption": "USER_ENTERED"}, {"values": [["=1+1"]]})
    assert answer == {"spreadsheetId": book.id, "updatedRange": "Sheet1!B2", "updatedRows": 1,
                      "updatedColumns": 1, "updatedCells": 1}


# --- spreadsheets.get --------------------------------------------------------------------------------

def test_get_of_a_missing_or_private_spreadsheet(gc, emulator):
    missing = refusal(lambda: gc.http_client.fetch_sheet_metadata("test"))
    assert missing.response.status_code == 404
    assert missing.error == {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    private = emulator.create_spreadsheet(editors=["owner@example.com"])
    denied = refusal(lambda: gc.http_client.fetch_sheet_metadata(private))
    assert denied.error == {"code": 403, "message": "The caller does not have permission",
                            "status": "PERMISSION_DENIED"}


def test_get_with_fields_returns_only_those_fields(book):
    assert book.fetch_sheet_metadata({"fields": "sheets.properties.tabColorStyle"}) == {"sheets": [{"properties": {}}]}
    assert book.fetch_sheet_metadata({"fields": "sheets(properties(title,sheetId))"}) == {
        "sheets": [{"properties": {"sheetId": 0, "title": "Sheet1"}}]}


def test_get_with_a_misspelt_or_spaced_field_is_refused(book):
    for mask in ("sheets.propertiez", "properties, sheets.properties", "sheets(properties"):
        error = refusal(lambda: book.fetch_sheet_metadata({"fields": mask}))
        assert error.response.status_code == 400 and error.error["status"] == "INVALID_ARGUMENT"
    spaced = refusal(lambda: book.fetch_sheet_metadata({"fields": "properties, sheets.properties"}))
    assert spaced.error["details"][0]["fieldViolations"][0]["description"] == (
        "Error expanding 'fields' parameter. Cannot find matching fields for path ' sheets.properties'.")


# --- spreadsheets.batchUpdate --------------------------------------------------------------------------

def test_hiding_the_only_visible_tab_is_refused(book):
    hide = {"updateSheetProperties": {"properties": {"sheetId": 0, "hidden": True}, "fields": "hidden"}}
    error = refusal(lambda: book.batch_update({"requests": [hide]}))
    assert error.error["message"] == ("Invalid requests[0].updateSheetProperties: You can't hide all the sheets "
                                      "in a document.")
    book.batch_update({"requests": [{"addSheet": {"properties": {"title": "two"}}}, hide]})
    assert book.fetch_sheet_metadata()["sheets"][0]["properties"]["hidden"] is True


def test_a_misspelt_field_mask_in_a_request_is_refused(book):
    resize = {"updateSheetProperties": {"properties": {"sheetId": 0, "gridProperties": {"rowCount": 5}},
                                        "fields": "gridProperties.rowCont"}}
    error = refusal(lambda: book.batch_update({"requests": [resize]}))
    assert error.response.status_code == 400 and "rowCont" in error.error["message"]
    fmt = {"repeatCell": {"range": {"sheetId": 0, "endRowIndex": 1}, "cell": {"userEnteredFormat": {}},
                          "fields": "userEnteredFormat(textFormat,backgroundColour)"}}
    assert "backgroundColour" in refusal(lambda: book.batch_update({"requests": [fmt]})).error["message"]


def chart(column: int, row: int = 1) -> dict:
    source = {"sourceRange": {"sources": [{"sheetId": 0, "startColumnIndex": 0, "endColumnIndex": 1}]}}
    spec = {"title": "t", "basicChart": {"chartType": "LINE", "domains": [{"domain": source}],
                                         "series": [{"series": source}]}}
    anchor = {"sheetId": 0, "rowIndex": row, "columnIndex": column}
    return {"addChart": {"chart": {"spec": spec, "position": {"overlayPosition": {"anchorCell": anchor}}}}}


def test_a_chart_anchored_past_the_last_column_is_refused_with_its_whole_batch(book):
    error = refusal(lambda: book.batch_update({"requests": [{"addSheet": {"properties": {"title": "new"}}},
                                                            chart(column=26)]}))
    assert error.response.status_code == 400
    assert "Invalid requests[1].addChart: GridCoordinate" in error.error["message"]
    assert "is after last column in grid" in error.error["message"]
    assert [w.title for w in book.worksheets()] == ["Sheet1"]  # the addSheet before it is undone too
    assert "is after last row in grid" in refusal(lambda: book.batch_update(
        {"requests": [chart(column=0, row=1000)]})).error["message"]
    reply = book.batch_update({"requests": [chart(column=25)]})
    assert "chartId" in reply["replies"][0]["addChart"]["chart"]


def test_add_sheet_replies_with_its_properties(book):
    reply = book.batch_update({"requests": [{"addSheet": {"properties": {"title": "results", "gridProperties": {
        "rowCount": 2, "columnCount": 3, "frozenRowCount": 1}}}}]})
    props = reply["replies"][0]["addSheet"]["properties"]
    assert props["title"] == "results" and isinstance(props["sheetId"], int) and props["index"] == 1
    assert props["gridProperties"] == {"rowCount": 2, "columnCount": 3, "frozenRowCount": 1}


# --- spreadsheets.create -----------------------------------------------------------------------------

def test_create_makes_a_spreadsheet_the_caller_can_edit(gc):
    answer = gc.http_client.request("post", SHEETS, json={"properties": {"title": "made"}}).json()
    assert answer["properties"]["title"] == "made" and answer["spreadsheetUrl"].endswith("/edit")
    assert [s["properties"]["title"] for s in answer["sheets"]] == ["Sheet1"]
    made = gc.open_by_key(answer["spreadsheetId"])
    made.values_update("'Sheet1'!A1", RAW, {"values": [["mine"]]})
    assert made.values_get("'Sheet1'!A1")["values"] == [["mine"]]


# --- quotas: per minute, per user, reads and writes apart --------------------------------------------

def other_user(emulator, tmp_path) -> tuple[gspread.Client, str]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    email = "other@dcloop-test.iam.gserviceaccount.com"
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    emulator.add_account(email, key.public_key())
    path = write_key(tmp_path / "other.json", key, email, emulator.token_uri)
    return gspread.Client(None, session=authorized_session(load_credentials(path), emulator.base_url)), email


def test_quota_is_per_minute_per_user_and_refills_after_60_seconds(book, emulator, tmp_path):
    emulator.clock = clock = Clock()
    emulator.quota(reads=2, writes=1)
    book.values_get("'Sheet1'!A1")
    book.values_get("'Sheet1'!A1")
    error = refusal(lambda: book.values_get("'Sheet1'!A1"))
    assert error.response.status_code == 429 and error.error["status"] == "RESOURCE_EXHAUSTED"
    assert "Read requests per minute per user" in error.error["message"]
    assert error.error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert "Retry-After" not in error.response.headers
    book.values_update("'Sheet1'!A1", RAW, {"values": [["w"]]})  # writes have their own quota
    other, email = other_user(emulator, tmp_path)
    emulator.share(book.id, email)
    assert other.open_by_key(book.id).values_get("'Sheet1'!A1")["values"] == [["w"]]  # and each user
    clock.now += 59.9
    assert refusal(lambda: book.values_get("'Sheet1'!A1")).response.status_code == 429
    clock.now += 0.2
    book.values_get("'Sheet1'!A1")


# --- answers lost after the request was applied ----------------------------------------------------------

def test_a_500_after_the_write_was_applied(book, emulator):
    emulator.lose_answer("values.update")
    error = refusal(lambda: book.values_update("'Sheet1'!A1", RAW, {"values": [["kept"]]}))
    assert error.response.status_code == 500 and error.error["status"] == "INTERNAL"
    assert book.values_get("'Sheet1'!A1")["values"] == [["kept"]]


def test_a_dropped_connection_after_the_append_was_applied(book, emulator):
    emulator.lose_answer("values.append", how="drop")
    with pytest.raises(requests.ConnectionError):
        book.values_append("'Sheet1'!A1", RAW, {"values": [["once"]]})
    assert book.values_get("'Sheet1'")["values"] == [["once"]]
    book.values_append("'Sheet1'!A1", RAW, {"values": [["twice"]]})  # the next one is answered
    assert book.values_get("'Sheet1'")["values"] == [["once"], ["twice"]]


# --- the recordings themselves ------------------------------------------------------------------------

def test_recorded_google_traffic_of_dcloops_request_kinds_replays_alike():
    """scripts/emulator_conformance.py over gspread's cassettes, when a mirror of gspread is here."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "emulator_conformance.py"
    spec = importlib.util.spec_from_file_location("emulator_conformance", script)
    conformance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conformance)
    if not conformance.MIRROR.exists():
        pytest.skip(f"no mirror of gspread at {conformance.MIRROR}")
    tally, _ = conformance.replay_all(conformance.cassettes(conformance.MIRROR))
    total = sum(n for (_, what), n in tally.items() if what == "all")
    matched = sum(n for (_, what), n in tally.items() if what == "match")
    assert total > 1000 and matched / total >= 0.95
