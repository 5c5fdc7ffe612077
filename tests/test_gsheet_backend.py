"""The Google Sheets backend through real gspread and google-auth, against the local emulator."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dcloop import table as tbl
from dcloop.backends import open_backend
from dcloop.backends.gsheet import SheetBackend, check_cell_limit, sheet_key
from dcloop.backends.sheet_http import RetryPolicy, credentials_path, load_credentials
from dcloop.errors import BackendError, ConfigError, SchemaError
from dcloop.table import RESULT_COLUMNS

from .conftest import ACCOUNT, CLASSES, make_table, sheet_config, write_key

FULL_SYNC_CALLS = 8
NO_CHANGE_SYNC_CALLS = 3
# A row without a tag yet (a person typed it in): the tab's sheetId, the tags, and the re-read that
# checks each tag sits on the row planned before anything is written through it.
TAGGING_CALLS = 3


def labels(emulator, key, rng="labels", render="FORMULA"):
    return emulator.values(key, rng, render)


def frame(emulator, key) -> pd.DataFrame:
    values = labels(emulator, key)
    return pd.DataFrame([r + [""] * (len(values[0]) - len(r)) for r in values[1:]], columns=values[0])


def predictions(ids) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "image": [f"images/{i}.png" for i in ids],
                         "prediction": [f"pred-{i}" for i in ids], "confidence": ["0.9"] * len(ids),
                         "label_prob": ["0.125"] * len(ids), "suspicion": ["0.875"] * len(ids),
                         "flags": [""] * len(ids)})


def simulate_sync(backend: SheetBackend) -> int:
    """The backend calls of one full ``dcloop sync``: read, ids for new rows, predictions, results, classes."""
    table = tbl.normalize(backend.read(), backend.describe())
    ids = tbl.assign_ids(table)
    if ids:
        table = tbl.with_ids(table, ids, "train")
        patch = pd.DataFrame({tbl.NEW_ROW_KEY: list(ids), "id": list(ids.values())})
        patch["split"] = patch["id"].map(table.set_index("id")["split"])
        backend.write(patch)
    written = backend.write(predictions(list(table["id"])))
    backend.append_result({"run_id": "r1", "val_accuracy": "0.8", "test_accuracy": "0.7"})
    backend.update_classes([{"class": c, "train": "3", "val": "1", "test": "1", "exclude": "0",
                             "val_accuracy": "0.5"} for c in CLASSES])
    return written


# --- init ---------------------------------------------------------------------------------------

def test_init_on_an_empty_sheet_lays_out_every_tab(open_sheet, blank_sheet, emulator):
    backend = open_sheet(blank_sheet)
    findings = backend.create(make_table(12))
    assert findings[0] == "renamed the empty tab 'Sheet1' to labels"
    assert "tab labels: created, 12 row(s) written" in findings
    book = emulator.books[blank_sheet]
    assert [s.title for s in book.sheets] == ["labels", "results", "classes"]
    grid = book.grid("labels")
    assert labels(emulator, blank_sheet, "labels!1:1") == [tbl.COLUMNS]
    assert grid.frozen_rows == 1 and grid.rows == 1 + 12 + 200 and grid.columns == len(tbl.COLUMNS)
    assert labels(emulator, blank_sheet, "labels!B2")[0][0] == '=IMAGE("https://img.example/0.png")'
    assert grid.sizes[("ROWS", 1, grid.rows)] == {"pixelSize": 80}
    dropdowns = {v["range"]["startColumnIndex"]: [c["userEnteredValue"] for c in v["rule"]["condition"]["values"]]
                 for v in grid.validations}
    assert dropdowns == {3: CLASSES, 4: tbl.SPLITS}
    protected = {p["range"]["startColumnIndex"] for p in grid.protected}
    assert protected == {tbl.COLUMNS.index(c) for c in tbl.MACHINE_COLUMNS}
    assert all(p["warningOnly"] for p in grid.protected)
    assert grid.conditional[0]["ranges"][0]["startColumnIndex"] == tbl.COLUMNS.index("suspicion")
    chart = book.grid("results").charts[0]["spec"]
    assert chart["basicChart"]["chartType"] == "LINE" and len(chart["basicChart"]["series"]) == 2
    assert labels(emulator, blank_sheet, "classes!1:1")[0][:2] == ["class", "train"]


def test_init_again_keeps_data_and_adds_only_what_is_missing(open_sheet, blank_sheet, emulator):
    backend = open_sheet(blank_sheet)
    backend.create(make_table(5))
    emulator.set_values(blank_sheet, "labels!D2", [["dog"]])  # a person relabels the first row
    backend.append_result({"run_id": "r1", "val_accuracy": "0.5"})
    findings = backend.create(make_table(7))
    assert findings == ["tab labels: found with 5 row(s), kept them; added 2 new row(s)",
                        "tab results: found with 1 row(s), kept them",
                        "tab classes: found, header only"]
    table = frame(emulator, blank_sheet)
    assert list(table["id"]) == [f"r{i:04d}" for i in range(7)]
    assert table.loc[0, "label"] == "dog"
    grid = emulator.books[blank_sheet].grid("labels")
    assert len(grid.protected) == len(tbl.MACHINE_COLUMNS)  # not added twice
    assert len(grid.conditional) == 1 and len(emulator.books[blank_sheet].grid("results").charts) == 1


def test_init_on_a_sheet_with_its_own_columns_adds_dcloops(open_sheet, emulator):
    key = emulator.create_spreadsheet(editors=[ACCOUNT], tabs=[("labels", 10, 3)])
    emulator.set_values(key, "labels!A1", [["url", "label", "my notes"], ["https://x.example/1.png", "cat", "007"]],
                        option="RAW")
    findings = open_sheet(key).create(make_table(0))
    assert findings[0] == ("tab labels: found with 1 row(s), kept them; added column(s) "
                           "id, image, split, note, prediction, confidence, label_prob, suspicion, flags")
    header = labels(emulator, key, "labels!1:1")[0]
    assert header[:3] == ["url", "label", "my notes"] and set(tbl.COLUMNS) <= set(header)
    assert labels(emulator, key, "labels!C2")[0][0] == "007"


def test_init_refuses_a_tab_that_is_not_a_label_table(open_sheet, emulator):
    key = emulator.create_spreadsheet(editors=[ACCOUNT], tabs=[("labels", 10, 3)])
    emulator.set_values(key, "labels!A1", [["name", "amount"], ["rent", "100"]])
    with pytest.raises(SchemaError, match="missing required column"):
        open_sheet(key).create(make_table(2))
    assert labels(emulator, key) == [["name", "amount"], ["rent", 100]]


def test_init_says_so_before_passing_the_cell_limit(open_sheet, emulator):
    key = emulator.create_spreadsheet(editors=[ACCOUNT], tabs=[("Sheet1", 1000, 26), ("data", 384_600, 26)])
    emulator.reset_counts()
    with pytest.raises(BackendError, match="at most 10,000,000"):
        open_sheet(key).create(make_table(3))
    assert emulator.api_calls("spreadsheets.batchUpdate") == 0


def test_check_cell_limit():
    check_cell_limit({"a": (1000, 26), "b": (100_000, 99)}, "sheet")
    with pytest.raises(BackendError, match="10,000,001 cells"):
        check_cell_limit({"a": (10_000_001, 1)}, "sheet")


# --- sync ---------------------------------------------------------------------------------------

def test_full_sync_through_the_emulator_within_the_call_budget(sheet, emulator, open_sheet):
    key = sheet.key
    emulator.set_values(key, "labels!C14", [["https://img.example/new.png", "bird"]])  # a person adds a row
    backend = open_sheet(key)  # a new process: nothing cached
    emulator.reset_counts()
    assert simulate_sync(backend) == 13
    assert emulator.api_calls() <= FULL_SYNC_CALLS + TAGGING_CALLS
    table = frame(emulator, key)
    new = table[table["url"] == "https://img.example/new.png"].iloc[0]
    assert new["id"] and new["split"] == "train" and new["prediction"] == f"pred-{new['id']}"
    assert new["image"] == '=IMAGE("https://img.example/new.png")'
    assert labels(emulator, key, "results!A2:A")[0] == ["r1"]
    assert labels(emulator, key, "classes!A2:A") == [[c] for c in CLASSES]

    again = open_sheet(key)
    emulator.reset_counts()
    table = tbl.normalize(again.read(), again.describe())
    assert again.write(predictions(list(table["id"]))) == 0
    assert emulator.api_calls() <= NO_CHANGE_SYNC_CALLS
    assert emulator.api_calls("values.batchUpdateByDataFilter") == 0


def test_person_edits_sorts_inserts_and_deletes_between_read_and_write(sheet, emulator):
    key = sheet.key
    table = tbl.normalize(sheet.read(), "sheet")
    # While the model trains, a person relabels a row, sorts by label, inserts two blank rows, deletes one.
    emulator.set_values(key, "labels!D3", [["bird"]])
    relabeled = table.loc[1, "id"]
    emulator.sort(key, "labels", "label")
    emulator.insert_rows(key, "labels", before_row=4, count=2)
    gone = labels(emulator, key, "labels!A8")[0][0]
    emulator.delete_rows(key, "labels", first_row=8)
    assert sheet.write(predictions(list(table["id"]))) == 11
    after = frame(emulator, key)
    after = after[after["id"] != ""]
    assert set(after["id"]) == set(table["id"]) - {gone}
    assert (after["prediction"] == "pred-" + after["id"]).all()
    assert (after["image"] == '=IMAGE("' + after["url"] + '")').all()
    assert after.set_index("id").loc[relabeled, "label"] == "bird"
    assert list(after["label"]) == sorted(after["label"])


def test_person_sorts_right_before_the_re_read(sheet, emulator):
    table = tbl.normalize(sheet.read(), "sheet")
    emulator.on("values.batchGetByDataFilter", lambda emu: emu.sort(sheet.key, "labels", "url", descending=True))
    sheet.write(predictions(list(table["id"])))
    after = frame(emulator, sheet.key)
    assert (after["prediction"] == "pred-" + after["id"]).all()


def test_formula_looking_values_are_written_as_plain_text(sheet, emulator):
    ids = list(tbl.normalize(sheet.read(), "sheet")["id"])
    patch = predictions(ids[:2])
    patch["prediction"] = ['=HYPERLINK("https://evil.example","click")', "+cmd|' /C calc'!A0"]
    patch["flags"] = ["@SUM(1)", "-2+3"]
    sheet.write(patch)
    grid = emulator.books[sheet.key].grid("labels")
    column = tbl.COLUMNS.index
    for row in (1, 2):
        for name in ("prediction", "flags"):
            assert grid.cells[(row, column(name))].kind == "string"
    assert grid.cells[(1, column("prediction"))].value == '=HYPERLINK("https://evil.example","click")'
    assert grid.cells[(1, column("image"))].kind == "formula"
    assert grid.cells[(1, column("confidence"))] == ("number", 0.9)


def test_image_formulas_only_for_http_urls_with_quotes_escaped(sheet, emulator):
    key = sheet.key
    emulator.set_values(key, "labels!C2:C4", [['https://img.example/a"b.png'], ["javascript:alert(1)"],
                                              ["/local/file.png"]], option="RAW")
    ids = list(tbl.normalize(sheet.read(), "sheet")["id"])
    sheet.write(predictions(ids))
    images = [r[0] if r else "" for r in labels(emulator, key, "labels!B2:B4")]
    images += [""] * (3 - len(images))
    assert images == ['=IMAGE("https://img.example/a""b.png")', "", ""]


def test_numbers_as_text_and_formulas_survive_a_read(sheet, emulator):
    emulator.set_values(sheet.key, "labels!F2", [["007"]], option="RAW")
    emulator.set_values(sheet.key, "labels!F3", [["0.50"]], option="USER_ENTERED")
    table = sheet.read()
    assert table.loc[0, "note"] == "007"
    assert table.loc[1, "note"] == "0.5"  # a person typed a number: Sheets keeps the number
    assert table.loc[0, "image"].startswith("=IMAGE(")


def test_adds_missing_machine_columns_and_grows_the_grid(open_sheet, emulator):
    key = emulator.create_spreadsheet(editors=[ACCOUNT], tabs=[("labels", 5, 2)])
    emulator.set_values(key, "labels!A1", [["url", "label"], ["https://x.example/1.png", "cat"]])
    backend = open_sheet(key)
    table = tbl.normalize(backend.read(), "sheet")
    ids = tbl.assign_ids(table)
    backend.write(pd.DataFrame({tbl.NEW_ROW_KEY: list(ids), "id": list(ids.values()), "split": ["val"]}))
    assert labels(emulator, key) == [["url", "label", "id", "split"],
                                     ["https://x.example/1.png", "cat", list(ids.values())[0], "val"]]


def test_results_on_a_sheet_from_an_older_dcloop_get_the_new_column_names(sheet, emulator, open_sheet):
    key, old = sheet.key, RESULT_COLUMNS[:5]
    emulator.set_values(key, "results!A1", [old + [""] * (len(RESULT_COLUMNS) - len(old))])
    backend = open_sheet(key)  # a new process, as cron starts one
    backend.read()
    emulator.reset_counts()
    backend.append_result({"run_id": "r1", "val_accuracy": "0.8", "seeds": "3"})
    assert emulator.api_calls() == 2  # the missing names, then the row
    backend.append_result({"run_id": "r2", "val_accuracy": "0.9", "seeds": "1"})
    assert emulator.api_calls() == 3
    results = backend.read_results()
    assert list(results.columns[:len(old)]) == old and set(RESULT_COLUMNS) <= set(results.columns)
    assert list(results["seeds"]) == ["3", "1"] and list(results["val_accuracy"]) == ["0.8", "0.9"]


def test_update_classes_blanks_classes_that_are_gone(sheet, emulator):
    sheet.read()
    sheet.update_classes([{"class": c, "train": "2"} for c in CLASSES])
    sheet.update_classes([{"class": "cat", "train": "5", "val_accuracy": "0.25"}])
    assert labels(emulator, sheet.key, "classes") == [
        ["class", "train", "val", "test", "exclude", "val_accuracy", "test_accuracy"],
        ["cat", 5, "", "", "", 0.25]]


# --- quota and failures ---------------------------------------------------------------------------

def test_a_burst_of_429s_is_survived_with_backoff(sheet, emulator):
    waits = []
    sheet.http.sleep = waits.append
    emulator.fail(429, times=4, retry_after="2")
    assert len(sheet.read()) == 12
    assert len(waits) == 4 and all(w >= 2 for w in waits)  # Retry-After honoured


def test_backoff_without_retry_after_grows_and_is_jittered(sheet, emulator):
    waits = []
    sheet.http.sleep = waits.append
    sheet.http.policy = RetryPolicy(attempts=5, base_s=1.0, cap_s=4.0, deadline_s=60)
    emulator.fail(503, times=4)
    sheet.read()
    assert [w <= cap for w, cap in zip(waits, [1, 2, 4, 4])] == [True] * 4


def test_a_persistent_500_ends_in_a_clear_error_and_the_sheet_is_unchanged(sheet, emulator):
    before = labels(emulator, sheet.key)
    ids = list(tbl.normalize(sheet.read(), "sheet")["id"])
    emulator.fail(500, times=None, kind="values.batchUpdateByDataFilter")
    with pytest.raises(BackendError, match=r"kept failing with 500 .* after 6 tries"):
        sheet.write(predictions(ids))
    assert labels(emulator, sheet.key) == before


def test_retries_stop_at_the_time_limit(sheet, emulator):
    clock = iter(range(0, 1000, 10))
    sheet.http.clock = lambda: next(clock)
    sheet.http.policy = RetryPolicy(attempts=100, base_s=1, cap_s=1, deadline_s=25)
    sheet.http.sleep = lambda s: None
    emulator.fail(429, times=None)
    with pytest.raises(BackendError, match="quota .* stayed exceeded after 3 tries"):
        sheet.read()


class Clock:
    """One clock for the emulator's quota windows and the client's waits: sleeping moves it."""

    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def on_clock(sheet: SheetBackend, emulator) -> Clock:
    clock = Clock()
    emulator.clock = sheet.http.clock = clock
    sheet.http.sleep, sheet.http.policy = clock.sleep, RetryPolicy()
    return clock


def test_a_spent_minute_quota_is_waited_out(sheet, emulator):
    clock = on_clock(sheet, emulator)
    emulator.quota(reads=1)
    sheet.read()
    assert len(sheet.read()) == 12  # refused with 429 until Google's minute has passed
    assert 60 <= clock.now <= 150 and len(clock.slept) <= 5


def test_a_quota_that_stays_spent_is_given_up_after_70_seconds_not_sooner(sheet, emulator):
    clock = on_clock(sheet, emulator)
    emulator.fail(429, times=None)
    with pytest.raises(BackendError, match=r"quota .* stayed exceeded after 6 tries over 70s"):
        sheet.read()
    assert 70 <= sum(clock.slept) <= RetryPolicy().deadline_s


def test_quota_waits_honour_a_longer_retry_after_within_the_deadline(sheet, emulator):
    clock = on_clock(sheet, emulator)
    emulator.fail(429, times=None, retry_after="100")
    with pytest.raises(BackendError, match="quota"):
        sheet.read()
    assert clock.slept == [100.0] and clock.now <= RetryPolicy().deadline_s


# --- answers lost after Google applied the request ---------------------------------------------------

def layout_of(emulator, key) -> dict:
    book = emulator.books[key]
    return {s.title: (s.rows, s.columns, len(s.charts), sorted(p["description"] for p in s.protected),
                      len(s.conditional), emulator.values(key, s.title)) for s in book.sheets}


@pytest.mark.parametrize("how", ["500", "drop"])
def test_init_after_lost_answers_adds_no_second_tab_chart_or_protection(open_sheet, emulator, how):
    clean, lossy = (emulator.create_spreadsheet("dcloop test", editors=[ACCOUNT]) for _ in range(2))
    open_sheet(clean).create(make_table(12))
    emulator.lose_answer("spreadsheets.batchUpdate", times=2, how=how)  # the tabs, then the formats
    open_sheet(lossy).create(make_table(12))
    assert emulator.losses[0].times == 0
    assert layout_of(emulator, lossy) == layout_of(emulator, clean)


@pytest.mark.parametrize("how", ["500", "drop"])
def test_a_results_row_whose_answer_was_lost_is_not_appended_twice(sheet, emulator, how):
    row = {"run_id": "r1", "time_utc": "2026-01-02T03:04:05Z", "kind": "train", "val_accuracy": "0.8"}
    sheet.read()
    emulator.lose_answer("values.append", how=how)
    sheet.append_result(row)
    emulator.fail(503, times=1, kind="values.append")  # refused before it was applied: sent again
    sheet.append_result(dict(row, kind="reeval", time_utc="2026-01-02T04:00:00Z"))
    results = sheet.read_results()
    assert list(results["run_id"]) == ["r1", "r1"] and list(results["kind"]) == ["train", "reeval"]


def test_new_rows_whose_append_was_lost_are_not_appended_twice(sheet, emulator):
    emulator.lose_answer("values.append", how="drop")
    assert sheet.append_rows(make_table(14).iloc[12:]) == 2
    assert list(frame(emulator, sheet.key)["id"][-3:]) == ["r0011", "r0012", "r0013"]
    assert len(frame(emulator, sheet.key)) == 14


def test_an_older_results_tab_as_wide_as_its_header_gets_its_chart(open_sheet, blank_sheet, emulator):
    backend = open_sheet(blank_sheet)
    backend.create(make_table(3))
    results = emulator.books[blank_sheet].grid("results")
    results.columns, results.charts = len(RESULT_COLUMNS), []  # as an older dcloop left it
    open_sheet(blank_sheet).create(make_table(3))
    results = emulator.books[blank_sheet].grid("results")
    anchor = results.charts[0]["position"]["overlayPosition"]["anchorCell"]
    assert anchor["columnIndex"] == len(RESULT_COLUMNS) + 1 < results.columns


# --- errors a person meets -------------------------------------------------------------------------

def test_sheet_not_found(open_sheet, emulator):
    with pytest.raises(BackendError, match="was not found. Check the sheet url"):
        open_sheet("x" * 44).read()


def test_sheet_not_shared_names_the_account(open_sheet, emulator):
    key = emulator.create_spreadsheet(editors=["someone@example.com"])
    with pytest.raises(BackendError, match=f"Share the sheet with {ACCOUNT} as Editor"):
        open_sheet(key).read()


def test_api_not_enabled(sheet, emulator):
    emulator.api_enabled = False
    with pytest.raises(BackendError, match="Sheets API is not enabled"):
        sheet.read()


def test_missing_tab_says_to_run_init(open_sheet, blank_sheet):
    with pytest.raises(BackendError, match="run 'dcloop init|Run 'dcloop init"):
        open_sheet(blank_sheet).read()


def test_a_key_google_does_not_know(blank_sheet, emulator, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    key = write_key(tmp_path / "other.json", stranger, ACCOUNT, emulator.token_uri)
    emulator.add_account(ACCOUNT, rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
    backend = SheetBackend.from_config(sheet_config(blank_sheet, key, emulator.base_url), tmp_path)
    with pytest.raises(BackendError, match="Google refused the service-account key"):
        backend.read()


def test_open_backend_dispatches_to_sheets(blank_sheet, key_file, emulator, tmp_path):
    backend = open_backend(sheet_config(blank_sheet, key_file, emulator.base_url), tmp_path)
    assert isinstance(backend, SheetBackend) and backend.account == ACCOUNT


def test_accepts_a_gspread_client(blank_sheet, key_file, emulator):
    import gspread
    from dcloop.backends.sheet_http import authorized_session
    credentials = load_credentials(key_file)
    client = gspread.Client(None, session=authorized_session(credentials, emulator.base_url))
    backend = SheetBackend(client, blank_sheet)
    assert backend.create(make_table(2))[1] == "tab labels: created, 2 row(s) written"
    assert backend.account == ACCOUNT


# --- configuration --------------------------------------------------------------------------------

def test_credentials_lookup_order(tmp_path):
    home, root = tmp_path / "home", tmp_path / "project"
    default = home / ".config/gspread/service_account.json"
    default.parent.mkdir(parents=True)
    root.mkdir()
    for f in (default, root / "key.json", tmp_path / "env.json"):
        f.write_text("{}")
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "env.json")}
    assert credentials_path("key.json", root, env, home) == root / "key.json"
    assert credentials_path("", root, env, home) == tmp_path / "env.json"
    assert credentials_path("", root, {}, home) == default
    with pytest.raises(ConfigError, match="names .*missing.json, which is not a file"):
        credentials_path("missing.json", root, env, home)
    default.unlink()
    with pytest.raises(ConfigError, match="no Google service-account key found"):
        credentials_path("", root, {}, home)


def test_a_key_that_is_not_a_service_account(tmp_path):
    path = tmp_path / "client_secret.json"
    path.write_text(json.dumps({"installed": {"client_id": "x"}}))
    with pytest.raises(ConfigError, match="is not a service-account key"):
        load_credentials(path)
    path.write_text("not json")
    with pytest.raises(ConfigError, match="not a readable JSON key file"):
        load_credentials(path)


@pytest.mark.parametrize("given, key", [
    ("https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit#gid=0",
     "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
])
def test_sheet_key(given, key):
    assert sheet_key(given) == key


@pytest.mark.parametrize("given", ["", "https://example.com/nothing", "my sheet"])
def test_sheet_key_refuses(given):
    with pytest.raises(ConfigError):
        sheet_key(given)


# --- people at work while a sync writes -----------------------------------------------------------

PERSON = {
    "sort": lambda emu, key: emu.sort(key, "labels", "url", descending=True),
    "insert": lambda emu, key: emu.insert_rows(key, "labels", before_row=3, count=2),
    "delete": lambda emu, key: emu.delete_rows(key, "labels", first_row=5),
    "move": lambda emu, key: emu.move_rows(key, "labels", first_row=2, count=3, before_row=11),
}


def with_a_typed_row(sheet, emulator) -> pd.DataFrame:
    """The sheet's rows by id after a person typed a new row (no id, no split) at its end."""
    emulator.set_values(sheet.key, "labels!C14", [["https://img.example/new.png", "bird"]])
    return frame(emulator, sheet.key)


def sync_patch(sheet) -> pd.DataFrame:
    """What a sync writes: the new row's id and split, and every row's predictions."""
    table = tbl.normalize(sheet.read(), "sheet")
    ids = tbl.assign_ids(table)
    table = tbl.with_ids(table, ids, "train")
    patch = predictions(list(table["id"]))
    keys = {row_id: key for key, row_id in ids.items()}
    patch[tbl.NEW_ROW_KEY] = patch["id"].map(keys).fillna("")
    patch["split"] = patch["id"].map(dict.fromkeys(keys, "train")).fillna("")
    return patch


def assert_every_value_on_its_row(emulator, key, before: pd.DataFrame, gone: set[str] = frozenset()):
    after = frame(emulator, key)
    after = after[after["url"] != ""]
    assert (after["prediction"] == "pred-" + after["id"]).all(), after[["id", "url", "prediction"]]
    assert (after["image"] == '=IMAGE("' + after["url"] + '")').all()
    human = ["url", "label", "split", "note"]
    old = before[before["id"] != ""].set_index("id")[human]
    kept = after[after["id"].isin(old.index)].set_index("id")[human]
    pd.testing.assert_frame_equal(kept.sort_index(), old.drop(index=list(gone)).sort_index())
    new = after[after["url"] == "https://img.example/new.png"].iloc[0]
    assert new["id"].startswith("x") and new["split"] == "train" and new["label"] == "bird"


@pytest.mark.parametrize("person", list(PERSON))
@pytest.mark.parametrize("refuse_unmatched", [False, True])
def test_a_person_right_before_the_write_moves_no_value_to_another_row(sheet, emulator, person, refuse_unmatched):
    emulator.refuse_unmatched = refuse_unmatched  # a deleted row's tag matches nothing: skipped or refused
    before = with_a_typed_row(sheet, emulator)
    patch = sync_patch(sheet)
    gone = set()
    if person == "delete":
        gone = {before["id"][3]}  # sheet row 5
    emulator.on("values.batchUpdateByDataFilter", lambda emu: PERSON[person](emu, sheet.key))
    sheet.write(patch)
    assert_every_value_on_its_row(emulator, sheet.key, before, gone)


@pytest.mark.parametrize("person", ["sort", "insert", "move"])
def test_a_person_right_before_rows_are_tagged_leaves_them_for_a_checked_tag(sheet, emulator, person):
    before = with_a_typed_row(sheet, emulator)
    patch = sync_patch(sheet)
    emulator.on("spreadsheets.batchUpdate", lambda emu: PERSON[person](emu, sheet.key))
    sheet.write(patch)
    assert_every_value_on_its_row(emulator, sheet.key, before)


@pytest.mark.parametrize("trouble", ["lose_answer", "fail"])
def test_a_sort_before_a_retry_moves_no_value_to_another_row(sheet, emulator, trouble):
    before = with_a_typed_row(sheet, emulator)
    patch = sync_patch(sheet)
    sheet.write(patch[patch[tbl.NEW_ROW_KEY] != ""])  # the new row's id and tag first: the retry below is the write
    if trouble == "lose_answer":
        emulator.lose_answer("values.batchUpdateByDataFilter")
    else:
        emulator.fail(500, kind="values.batchUpdateByDataFilter")
    sort = PERSON["sort"]
    # The first try goes (and is applied, or refused); a person sorts before the retry.
    emulator.on("values.batchUpdateByDataFilter",
                lambda emu: emu.on("values.batchUpdateByDataFilter", lambda e: sort(e, sheet.key)))
    sheet.write(patch)
    assert emulator.api_calls("values.batchUpdateByDataFilter") >= 3
    assert_every_value_on_its_row(emulator, sheet.key, before)


def test_a_tag_on_the_wrong_row_is_moved_before_anything_is_written(sheet, emulator):
    """Cells cut and pasted (not rows moved) leave a tag on a row with another id: it is put right."""
    before = frame(emulator, sheet.key)
    grid = emulator.books[sheet.key].grid("labels")
    (first, (row, meta)), (second, (row2, meta2)) = sorted(grid.row_metadata.items())[:2]
    grid.row_metadata[first], grid.row_metadata[second] = (row2, meta), (row, meta2)  # swapped
    sheet.write(predictions(list(before["id"])))
    after = frame(emulator, sheet.key)
    assert (after["prediction"] == "pred-" + after["id"]).all()


def test_writes_are_split_under_the_request_size_limit(sheet, emulator):
    emulator.max_request_bytes = 2000  # the re-read (12 lookups) fits; the whole write (12 rows) does not
    sheet.request_bytes = 500
    ids = list(frame(emulator, sheet.key)["id"])
    emulator.reset_counts()
    sheet.write(predictions(ids))
    assert emulator.api_calls("values.batchUpdateByDataFilter") > 2
    after = frame(emulator, sheet.key)
    assert (after["prediction"] == "pred-" + after["id"]).all()


def test_the_emulator_refuses_a_request_over_its_limit(sheet, emulator):
    emulator.max_request_bytes = 2000
    sheet.request_bytes = 10_000_000
    ids = list(frame(emulator, sheet.key)["id"])
    with pytest.raises(BackendError, match="Request payload size exceeds the limit: 2000 bytes"):
        sheet.write(predictions(ids))


def test_init_adds_the_suspects_first_filter_view_once(open_sheet, blank_sheet, emulator):
    backend = open_sheet(blank_sheet)
    backend.create(make_table(5))
    backend.create(make_table(7))
    views = emulator.books[blank_sheet].grid("labels").filter_views
    assert [v["title"] for v in views] == ["most suspicious first"]
    assert views[0]["sortSpecs"] == [{"dimensionIndex": tbl.COLUMNS.index("suspicion"), "sortOrder": "DESCENDING"}]
    assert views[0]["range"] == {"sheetId": emulator.books[blank_sheet].grid("labels").sheet_id, "startRowIndex": 0}


def test_init_tags_the_rows_it_writes_so_the_first_sync_tags_none(open_sheet, blank_sheet, emulator):
    backend = open_sheet(blank_sheet)
    backend.create(make_table(5))
    tags = sorted((row, meta["metadataValue"])
                  for row, meta in emulator.books[blank_sheet].grid("labels").row_metadata.values())
    assert tags == [(n + 1, f"r{n:04d}") for n in range(5)]
    emulator.reset_counts()
    open_sheet(blank_sheet).write(predictions([f"r{n:04d}" for n in range(5)]))
    assert emulator.api_calls("spreadsheets.batchUpdate") == 0 and emulator.api_calls("spreadsheets.get") == 0


def test_tags_applied_but_unanswered_then_a_sort_before_the_retry_are_checked(sheet, emulator):
    before = with_a_typed_row(sheet, emulator)
    patch = sync_patch(sheet)
    emulator.lose_answer("spreadsheets.batchUpdate")
    sort = PERSON["sort"]
    emulator.on("spreadsheets.batchUpdate",
                lambda emu: emu.on("spreadsheets.batchUpdate", lambda e: sort(e, sheet.key)))
    sheet.write(patch)
    assert_every_value_on_its_row(emulator, sheet.key, before)
