"""The emulator answers the way Google does, checked through real gspread (its own exceptions included)."""

from __future__ import annotations

import gspread
import pytest
from gspread.exceptions import APIError, SpreadsheetNotFound

from dcloop.backends.sheet_http import authorized_session, load_credentials

from .conftest import ACCOUNT
from .sheets_emulator import parse_ref, split_title


@pytest.fixture
def gc(key_file, emulator) -> gspread.Client:
    """Plain gspread (no dcloop retry) on a session whose Google hosts point at the emulator."""
    return gspread.Client(None, session=authorized_session(load_credentials(key_file), emulator.base_url))


@pytest.fixture
def book(gc, emulator):
    key = emulator.create_spreadsheet("emu", editors=[ACCOUNT], tabs=[("Sheet1", 10, 5), ("My tab's", 20, 4)])
    return gc.open_by_key(key)


@pytest.mark.parametrize("text, title, ref", [
    ("Sheet1!A1:B2", "Sheet1", "A1:B2"), ("'My tab''s'!C:C", "My tab's", "C:C"), ("'a!b'", "a!b", None),
    ("A1", None, "A1")])
def test_split_title(text, title, ref):
    assert split_title(text) == (title, ref)


@pytest.mark.parametrize("ref, window", [
    ("B3", (2, 3, 1, 2, True)), ("A1:C4", (0, 4, 0, 3, False)), ("C:C", (0, None, 2, 3, False)),
    ("2:2", (1, 2, 0, None, False)), ("A2:D", (1, None, 0, 4, False)), ("AA10:AB11", (9, 11, 26, 28, False)),
    ("B2:A1", (0, 2, 0, 2, False)), ("D4:A1", (0, 4, 0, 4, False))])
def test_parse_ref(ref, window):
    assert parse_ref(ref) == window


@pytest.mark.parametrize("ref", ["A", "5", "A1:", "1A"])
def test_parse_ref_refuses(ref):
    with pytest.raises(ValueError):
        parse_ref(ref)


def test_metadata_shape(book):
    meta = book.fetch_sheet_metadata()
    assert meta["properties"]["title"] == "emu"
    first = meta["sheets"][0]["properties"]
    assert first == {"sheetId": 0, "title": "Sheet1", "index": 0, "sheetType": "GRID",
                     "gridProperties": {"rowCount": 10, "columnCount": 5}}
    assert [w.title for w in book.worksheets()] == ["Sheet1", "My tab's"]


def test_raw_and_user_entered_and_render_options(book):
    book.values_update("Sheet1!A1", {"valueInputOption": "RAW"}, {"values": [["007", "=1+2", "TRUE", 1.5]]})
    book.values_update("Sheet1!A2", {"valueInputOption": "USER_ENTERED"},
                       {"values": [["007", "=1+2", "TRUE", "'=x", "50%"]]})
    get = lambda option: book.values_get("Sheet1!A1:E2", {"valueRenderOption": option})["values"]
    assert get("FORMULA") == [["007", "=1+2", "TRUE", 1.5], [7, "=1+2", True, "=x", 0.5]]
    assert get("UNFORMATTED_VALUE") == [["007", "=1+2", "TRUE", 1.5], [7, "", True, "=x", 0.5]]
    assert get("FORMATTED_VALUE") == [["007", "=1+2", "TRUE", "1.5"], ["7", "", "TRUE", "=x", "0.5"]]


def test_ranges_are_trimmed_and_quoted_like_google(book):
    book.values_update("'My tab''s'!B2", {"valueInputOption": "RAW"}, {"values": [["x", ""], ["", ""]]})
    answer = book.values_get("'My tab''s'")
    assert answer == {"range": "'My tab''s'!A1:D20", "majorDimension": "ROWS", "values": [[], ["", "x"]]}
    assert "values" not in book.values_get("Sheet1!A1:B2")
    columns = book.values_get("'My tab''s'!A1:B2", {"majorDimension": "COLUMNS"})
    assert columns["values"] == [[], ["", "x"]]


def test_batch_get_and_batch_update(book):
    book.values_batch_update({"valueInputOption": "RAW", "data": [
        {"range": "Sheet1!A1:A2", "values": [["a"], ["b"]]}, {"range": "'My tab''s'!B1", "values": [["c"]]}]})
    answer = book.values_batch_get(["Sheet1!A:A", "'My tab''s'!1:1"])
    assert [r.get("values") for r in answer["valueRanges"]] == [[["a"], ["b"]], [["", "c"]]]


def test_writes_outside_the_grid_are_refused_and_write_nothing(book):
    with pytest.raises(APIError) as e:
        book.values_batch_update({"valueInputOption": "RAW", "data": [
            {"range": "Sheet1!A1", "values": [["fine"]]}, {"range": "Sheet1!A11", "values": [["no"]]}]})
    assert e.value.response.status_code == 400
    assert "exceeds grid limits. Max rows: 10, max columns: 5" in e.value.error["message"]
    assert e.value.error["status"] == "INVALID_ARGUMENT"
    assert "values" not in book.values_get("Sheet1!A1")


def test_unknown_tab_is_unable_to_parse(book):
    with pytest.raises(APIError, match="Unable to parse range: nope!A1"):
        book.values_get("nope!A1")


def test_append_and_clear(book):
    params = {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"}
    first = book.values_append("Sheet1!A1", params, {"values": [["h1", "h2"]]})
    assert "tableRange" not in first and first["updates"]["updatedRange"] == "Sheet1!A1:B1"
    second = book.values_append("Sheet1!A1", params, {"values": [["a", "b"], ["c", "d"]]})
    assert second["tableRange"] == "Sheet1!A1:B1" and second["updates"]["updatedRange"] == "Sheet1!A2:B3"
    grid = book.fetch_sheet_metadata()["sheets"][0]["properties"]["gridProperties"]
    assert grid["rowCount"] == 13  # INSERT_ROWS inserts rows for what it appends
    book.values_clear("Sheet1!A2:B2")
    assert book.values_get("Sheet1!A1:B3")["values"] == [["h1", "h2"], [], ["c", "d"]]


def test_spreadsheet_batch_update_is_all_or_nothing(book):
    with pytest.raises(APIError, match=r"requests\[1\].addSheet: A sheet with the name"):
        book.batch_update({"requests": [{"addSheet": {"properties": {"title": "new"}}},
                                        {"addSheet": {"properties": {"title": "Sheet1"}}}]})
    assert [w.title for w in book.worksheets()] == ["Sheet1", "My tab's"]
    reply = book.batch_update({"requests": [{"addSheet": {"properties": {"title": "new"}}}]})
    assert reply["replies"][0]["addSheet"]["properties"]["gridProperties"] == {"rowCount": 1000, "columnCount": 26}


def test_sort_insert_and_delete_rows(book, emulator):
    book.values_update("Sheet1!A1", {"valueInputOption": "RAW"},
                       {"values": [["k"], ["b"], ["c"], ["a"]]})
    book.batch_update({"requests": [
        {"sortRange": {"range": {"sheetId": 0, "startRowIndex": 1}, "sortSpecs": [{"dimensionIndex": 0}]}},
        {"insertDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 2, "endIndex": 3}}},
        {"deleteDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 1, "endIndex": 2}}}]})
    assert book.values_get("Sheet1!A:A")["values"] == [["k"], [], ["b"], ["c"]]
    assert emulator.grid(book.id, "Sheet1").rows == 10


def test_gspread_sees_google_errors(gc, emulator):
    with pytest.raises(SpreadsheetNotFound):
        gc.open_by_key("missing")
    private = emulator.create_spreadsheet(editors=["owner@example.com"])
    with pytest.raises(PermissionError):
        gc.open_by_key(private)
    emulator.share(private, ACCOUNT)
    assert gc.open_by_key(private).title == "Untitled spreadsheet"


def test_faults_and_counting(book, emulator):
    emulator.reset_counts()
    emulator.fail(429, times=1, retry_after="3")
    with pytest.raises(APIError) as e:
        book.values_get("Sheet1!A1")
    assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "3"
    assert e.value.error["status"] == "RESOURCE_EXHAUSTED"
    book.values_get("Sheet1!A1")
    assert emulator.api_calls() == 2 and emulator.api_calls("values.get") == 2


def test_token_exchange_checks_the_signature(key_file, emulator, rsa_key):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth.exceptions import RefreshError
    emulator.add_account(ACCOUNT, rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
    session = authorized_session(load_credentials(key_file), emulator.base_url)
    with pytest.raises(RefreshError, match="invalid_grant"):
        session.get("https://sheets.googleapis.com/v4/spreadsheets/x")
    assert emulator.api_calls() == 0


def test_requests_without_a_token_are_unauthenticated(emulator):
    import requests
    answer = requests.get(f"{emulator.base_url}/v4/spreadsheets/x")
    assert answer.status_code == 401 and answer.json()["error"]["status"] == "UNAUTHENTICATED"


def test_standalone_emulator_serves_dcloop_init(tmp_path, monkeypatch):
    """python -m tests.sheets_emulator as a process: its url on the first line, its key accepted by dcloop."""
    import subprocess
    import sys
    from pathlib import Path

    from click.testing import CliRunner

    from dcloop.cli import cli

    repo, key = Path(__file__).resolve().parent.parent, "emulated" + "x" * 24
    command = [sys.executable, "-m", "tests.sheets_emulator", "--port", "0", "--key-out", str(tmp_path / "key.json"),
               "--sheet", key]
    server = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, text=True,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)})
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        (tmp_path / "list.csv").write_text("url,label\nhttps://img.example/1.png,cat\nhttps://img.example/2.png,dog\n")
        monkeypatch.setenv("DCLOOP_TABLE_ENDPOINT", url)
        result = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), "--from-csv", str(tmp_path / "list.csv"),
                                          "--sheet", key, "--credentials", str(tmp_path / "key.json")])
        assert result.exit_code == 0, result.output
        assert "tab labels: created, 2 row(s) written" in result.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- developer metadata and data filters ------------------------------------------------------------

def tag(row: int, value: str) -> dict:
    return {"createDeveloperMetadata": {"developerMetadata": {
        "metadataKey": "k", "metadataValue": value, "visibility": "DOCUMENT",
        "location": {"dimensionRange": {"sheetId": 0, "dimension": "ROWS", "startIndex": row, "endIndex": row + 1}}}}}


def lookup(value: str) -> dict:
    return {"developerMetadataLookup": {"metadataKey": "k", "metadataValue": value}}


def rows_of(gc, key, *values) -> list[str]:
    url = f"https://sheets.googleapis.com/v4/spreadsheets/{key}/values:batchGetByDataFilter"
    answer = gc.http_client.request("post", url, json={"dataFilters": [lookup(v) for v in values]}).json()
    return [m["valueRange"]["range"] for m in answer.get("valueRanges", [])]


def test_row_metadata_moves_with_its_row_and_goes_with_a_deleted_one(book, gc, emulator):
    emulator.set_values(book.id, "Sheet1!A1", [["name"], ["b"], ["c"], ["a"]])
    book.batch_update({"requests": [tag(1, "b"), tag(2, "c"), tag(3, "a")]})
    assert rows_of(gc, book.id, "a") == ["Sheet1!A4:E4"]
    emulator.sort(book.id, "Sheet1", "name")
    assert rows_of(gc, book.id, "a", "b", "c") == ["Sheet1!A2:E2", "Sheet1!A3:E3", "Sheet1!A4:E4"]
    emulator.insert_rows(book.id, "Sheet1", before_row=2)
    emulator.move_rows(book.id, "Sheet1", first_row=5, count=1, before_row=3)  # c above a
    assert rows_of(gc, book.id, "a", "b", "c") == ["Sheet1!A4:E4", "Sheet1!A5:E5", "Sheet1!A3:E3"]
    emulator.delete_rows(book.id, "Sheet1", first_row=3)
    assert rows_of(gc, book.id, "c") == [] and rows_of(gc, book.id, "b") == ["Sheet1!A4:E4"]
    assert emulator.values(book.id, "Sheet1!A4")[0][0] == "b"


def test_a_write_by_data_filter_lands_on_the_tagged_row_and_nulls_skip_cells(book, gc, emulator):
    emulator.set_values(book.id, "Sheet1!A1", [["name", "x", "y"], ["a", "keep", "old"]])
    book.batch_update({"requests": [tag(1, "a")]})
    emulator.insert_rows(book.id, "Sheet1", before_row=2, count=2)
    url = f"https://sheets.googleapis.com/v4/spreadsheets/{book.id}/values:batchUpdateByDataFilter"
    answer = gc.http_client.request("post", url, json={"valueInputOption": "RAW", "data": [
        {"dataFilter": lookup("a"), "values": [[None, None, "new"]]},
        {"dataFilter": lookup("nobody"), "values": [["lost"]]}]}).json()
    assert answer["totalUpdatedCells"] == 1 and answer["responses"][0]["updatedRange"] == "Sheet1!A4:C4"
    assert emulator.values(book.id, "Sheet1") == [["name", "x", "y"], [], [], ["a", "keep", "new"]]


def test_metadata_needs_a_key_and_a_visibility(book, emulator):
    bad = tag(1, "a")
    del bad["createDeveloperMetadata"]["developerMetadata"]["visibility"]
    with pytest.raises(APIError, match="must always have a visibility"):
        book.batch_update({"requests": [bad]})


def test_a_request_over_the_size_limit_is_refused(book, emulator):
    emulator.max_request_bytes = 100
    with pytest.raises(APIError, match="Request payload size exceeds the limit: 100 bytes"):
        book.values_update("Sheet1!A1", params={"valueInputOption": "RAW"}, body={"values": [["x" * 200]]})


def test_add_filter_view_checks_its_sort_column(book, emulator):
    view = {"title": "v", "range": {"sheetId": 0, "startRowIndex": 0},
            "sortSpecs": [{"dimensionIndex": 9, "sortOrder": "DESCENDING"}]}
    with pytest.raises(APIError, match="after the last column"):
        book.batch_update({"requests": [{"addFilterView": {"filter": view}}]})
    view["sortSpecs"][0]["dimensionIndex"] = 2
    book.batch_update({"requests": [{"addFilterView": {"filter": view}}]})
    assert book.fetch_sheet_metadata()["sheets"][0]["filterViews"][0]["title"] == "v"
