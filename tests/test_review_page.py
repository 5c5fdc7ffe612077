"""`dcloop review`: the server and its checks, decisions reaching every backend, Ctrl-C, a sync from
the page, and the page itself driven by keyboard and mouse in a real headless Chromium."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcloop import review_page as rp
from dcloop import table as tbl
from dcloop.backends.csv import read_csv
from dcloop.backends.memory import MemoryBackend
from dcloop.config import load_config
from dcloop.project import init_project
from dcloop.sync import sync
from tests.conftest import replace_setting, split_rows, write_digits

CLASSES = ["0", "1", "7"]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """A project of 60 digits trained once (2 epochs, one thread); copied by ``project`` for each test."""
    root = tmp_path_factory.mktemp("review") / "proj"
    rows = split_rows(write_digits(root / "images", per_class=20), val_every=3)
    init_project(root, rows)
    text = (root / "dcloop.toml").read_text()
    for key, value in {"epochs": 2, "batch_size": 16, "threads": 1}.items():
        text = replace_setting(text, "model", key, value)
    (root / "dcloop.toml").write_text(replace_setting(text, "report", "map", "pca"))
    sync(root, load_config(root, environ={}))
    return root


@pytest.fixture
def project(synced, tmp_path) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(synced, root, symlinks=True)
    return root


def labels(root: Path) -> pd.DataFrame:
    return read_csv(root / "labels.csv").set_index("id")


@contextmanager
def serving(root: Path, backend=None, window: float = 0.05):
    server = rp.start(root, load_config(root, environ={}), backend=backend, window=window)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.close()


def request(server, method: str, path: str, body=None, headers=None, token=True):
    """(status, headers, body bytes) of one request; ``path`` is under the token unless token=False."""
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, (f"/{server.token}/" if token else "/") + path, data, {**sent, **(headers or {})})
    answer = connection.getresponse()
    out = (answer.status, dict(answer.getheaders()), answer.read())
    connection.close()
    return out


def api(server, path: str, body=None):
    status, _, data = request(server, "GET" if body is None else "POST", path, body)
    assert status == 200, data
    return json.loads(data)


def decision(row_id: str, row: pd.Series, **changes) -> dict:
    cells = {"label": row["label"], "split": row["split"], "reviewed": row.get("reviewed", "")}
    return {"id": row_id, **cells, **changes}


# ---- pure parts -------------------------------------------------------------------------------

def test_the_queue_is_the_suspects_in_the_order_the_table_is_sorted_in():
    table = tbl.normalize(pd.DataFrame({
        "id": list("abcde"), "url": ["u"] * 5, "label": ["1", "7", "1", "", "7"],
        "split": ["train"] * 5, "suspicion": ["0.3", "0.9", "", "0", "0.8"],
        "flags": ["outlier", "label? model says 1 (0.88)", "unreadable: http 404", "", "dup-of:a (train)"]}), "t")
    rows = rp.rows_json(table, CLASSES)
    assert [rows["id"][n] for n in rows["queue"]] == tbl.ranked(table, 5)["id"].tolist() == ["c", "b", "e", "a"]
    assert rows["kinds"] == ["dup-of", "label?", "outlier", "unreadable"]


def test_a_decision_writes_a_class_a_split_ok_or_the_cell_it_had():
    assert rp.allowed_cell("label", "7", "1", CLASSES) == "7"
    assert rp.allowed_cell("label", "\u200b7 ", "1", CLASSES) == "7"  # canonical
    assert rp.allowed_cell("label", "=HYPERLINK(\"http://x\")", "1", CLASSES) is None
    assert rp.allowed_cell("label", "cat", "cat", CLASSES) == "cat"  # an undo puts the person's cell back
    assert rp.allowed_cell("split", "Exclude", "train", CLASSES) == "exclude"
    assert rp.allowed_cell("split", "holdout", "train", CLASSES) is None
    assert rp.allowed_cell("reviewed", "ok", "", CLASSES) == "ok"
    assert rp.allowed_cell("reviewed", "@SUM(A1)", "", CLASSES) is None


def test_nearest_neighbours_and_duplicates():
    unit = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    assert [n for n, _ in rp.nearest(unit, 0, 2)] == [1, 2]
    files = {"a": Path("x.png"), "b": Path("x.png"), "c": Path("y.png")}
    assert rp.by_file(files) == {Path("x.png"): ["a", "b"]}
    assert rp.duplicates_of("a", "dup-of:c (val) +1; dup-of:../etc", ["a", "b"], {"a", "b", "c"}) == ["b", "c"]


# ---- the server -------------------------------------------------------------------------------

@pytest.mark.training  # the module's project is trained once
def test_the_page_state_walks_the_suspects_and_serves_images_by_id(project):
    with serving(project) as server:
        state = api(server, "api/state")
        table = tbl.normalize(read_csv(project / "labels.csv"), "labels.csv")
        assert [state["id"][n] for n in state["queue"]] == tbl.ranked(table, len(table))["id"].tolist()
        assert state["queue"] and state["classes"] == CLASSES and state["has_run"]
        first = state["id"][state["queue"][0]]
        status, headers, png = request(server, "GET", f"img/{first}/large")
        assert status == 200 and png.startswith(b"\x89PNG") and headers["Content-Type"] == "image/png"
        assert request(server, "GET", "img/nosuchrow/large")[0] == 404
        assert request(server, "GET", f"img/{first}/huge")[0] == 404
        assert request(server, "GET", "img/..%2Flabels.csv/large")[0] == 404
        item = api(server, f"api/item/{first}")
        assert len(item["neighbours"]) == rp.NEIGHBOURS_SHOWN
        assert {n["id"] for n in item["neighbours"]} <= set(state["id"]) - {first}
        mapped = api(server, "api/map")
        assert len(mapped["x"]) == len(mapped["id"]) == 60 and mapped["axes"]["method"] == "PCA"
        status, headers, page = request(server, "GET", "")
        assert status == 200 and b'src="review.js"' in page
        assert "default-src 'none'" in headers["Content-Security-Policy"]


@pytest.mark.training  # the module's project is trained once
def test_decisions_reach_the_table_and_touch_nothing_else(project):
    before = labels(project)
    with serving(project) as server:
        state = api(server, "api/state")
        a, b, c = (state["id"][n] for n in state["queue"][:3])
        other = next(k for k in CLASSES if k != before.loc[a, "label"])
        started = time.perf_counter()
        done = api(server, "api/decide", {"decisions": [
            decision(a, before.loc[a], label=other), decision(b, before.loc[b], reviewed="ok"),
            decision(c, before.loc[c], split="exclude")]})
        assert time.perf_counter() - started < 1.0
        assert [r["ok"] for r in done["results"]] == [True, True, True] and done["changed"] == 3
    after = labels(project)
    assert after.loc[a, "label"] == other and after.loc[b, "reviewed"] == "ok" and after.loc[c, "split"] == "exclude"
    expected = before.assign(reviewed="")
    expected.loc[a, "label"], expected.loc[b, "reviewed"], expected.loc[c, "split"] = other, "ok", "exclude"
    pd.testing.assert_frame_equal(after.reindex(expected.index)[expected.columns], expected)


@pytest.mark.training  # the module's project is trained once
def test_a_row_edited_in_the_table_since_the_page_loaded_it_is_refused_with_a_message(project):
    with serving(project) as server:
        state = api(server, "api/state")
        first = state["id"][state["queue"][0]]
        seen = labels(project).loc[first]
        table = read_csv(project / "labels.csv")
        edited = next(k for k in CLASSES if k != seen["label"])
        table.loc[table["id"] == first, "label"] = edited  # someone else edits the row meanwhile
        table.to_csv(project / "labels.csv", index=False)
        mine = next(k for k in CLASSES if k not in (edited, seen["label"]))
        done = api(server, "api/decide", {"decisions": [decision(first, seen, label=mine)]})
        result = done["results"][0]
        assert not result["ok"]
        assert f"label '{seen['label']}' is now '{edited}'" in result["message"] and "Reload" in result["message"]
        assert labels(project).loc[first, "label"] == edited
        api(server, "api/state")  # a reload takes the table as it is now
        assert api(server, "api/decide", {"decisions": [decision(first, labels(project).loc[first],
                                                                  label=mine)]})["results"][0]["ok"]
    assert labels(project).loc[first, "label"] == mine


@pytest.mark.training  # the module's project is trained once
def test_values_that_are_not_classes_splits_or_known_rows_are_refused(project):
    before = (project / "labels.csv").read_bytes()
    with serving(project) as server:
        state = api(server, "api/state")
        first = state["id"][state["queue"][0]]
        row = labels(project).loc[first]
        done = api(server, "api/decide", {"decisions": [
            decision(first, row, label='=HYPERLINK("http://evil.example","x")'),
            decision(first, row, split="../../etc"), decision("../labels", row), decision("nosuchrow", row),
            "not a decision"]})
        assert [r["ok"] for r in done["results"]] == [False] * 4
        assert "label" in done["results"][0]["message"] and "is not allowed" in done["results"][0]["message"]
    assert (project / "labels.csv").read_bytes() == before


@pytest.mark.training  # the module's project is trained once
def test_the_token_the_host_and_the_origin_are_checked(project):
    with serving(project) as server:
        port = server.server_address[1]
        assert request(server, "GET", "api/state", token=False)[0] == 404
        assert request(server, "GET", "x" + server.token + "/api/state", token=False)[0] == 404
        assert request(server, "GET", "api/state", headers={"Host": f"evil.example:{port}"})[0] == 403
        assert request(server, "GET", "api/state", headers={"Host": "127.0.0.1:1"})[0] == 403
        body = {"decisions": []}
        assert request(server, "POST", "api/decide", body, {"Origin": "http://evil.example"})[0] == 403
        assert request(server, "POST", "api/decide", body, {"Origin": "null"})[0] == 403
        assert request(server, "POST", "api/decide", body, {"Sec-Fetch-Site": "cross-site"})[0] == 403
        assert request(server, "POST", "api/decide", body, {"Content-Type": "text/plain"})[0] == 415
        assert request(server, "OPTIONS", "api/decide")[0] == 405
        assert request(server, "POST", "api/decide", body, {"Origin": f"http://127.0.0.1:{port}"})[0] == 200
        assert request(server, "GET", "api/state", headers={"Host": f"localhost:{port}"})[0] == 200
        assert request(server, "GET", "", token=False)[0] == 404
        assert server.url == f"http://127.0.0.1:{port}/{server.token}/" and len(server.token) >= 32


class CountingBackend(MemoryBackend):
    """The memory backend, counting its decide calls (how many writes a Sheet would get)."""

    calls = 0

    def decide(self, decisions):
        self.calls += 1
        return super().decide(decisions)


@pytest.mark.training  # the module's project is trained once
def test_decisions_made_within_the_window_go_in_one_write(project):
    backend = CountingBackend(read_csv(project / "labels.csv"))
    with serving(project, backend, window=0.5) as server:
        state = api(server, "api/state")
        ids = [state["id"][n] for n in state["queue"][:6]]
        table = backend.read().set_index("id")
        with ThreadPoolExecutor(6) as pool:
            done = list(pool.map(lambda i: api(server, "api/decide", {"decisions": [
                decision(i, table.loc[i], reviewed="ok")]}), ids))
    assert all(d["results"][0]["ok"] for d in done)
    assert backend.calls == 1
    assert (backend.read().set_index("id").loc[ids, "reviewed"] == "ok").all()


@pytest.mark.training  # the module's project is trained once
def test_decisions_within_the_window_are_one_write_to_a_google_sheet(project, emulator, open_sheet, blank_sheet):
    backend = open_sheet(blank_sheet, CLASSES)
    backend.create(read_csv(project / "labels.csv"))
    with serving(project, backend, window=0.5) as server:
        state = api(server, "api/state")
        ids = [state["id"][n] for n in state["queue"][:6]]
        table = tbl.normalize(backend.read(), "t").set_index("id")
        emulator.reset_counts()
        with ThreadPoolExecutor(6) as pool:
            done = list(pool.map(lambda i: api(server, "api/decide", {"decisions": [
                decision(i, table.loc[i], split="exclude")]}), ids))
    assert all(d["results"][0]["ok"] for d in done)
    assert emulator.api_calls("values.batchUpdateByDataFilter") == 1
    assert (tbl.normalize(backend.read(), "t").set_index("id").loc[ids, "split"] == "exclude").all()


@pytest.mark.training  # the module's project is trained once
@pytest.mark.parametrize("kind", ["xlsx", "gsheet"])
def test_the_same_decisions_and_refusals_on_xlsx_and_a_google_sheet(project, kind, request):
    from dcloop.backends.xlsx import XlsxBackend

    table = read_csv(project / "labels.csv")
    if kind == "xlsx":
        backend = XlsxBackend(project / "labels.xlsx", project, CLASSES)
        backend.create(table)

        def edit(row_id, column, value):
            from openpyxl import load_workbook
            book = load_workbook(project / "labels.xlsx")
            sheet = book["labels"]
            header = [c.value for c in sheet[1]]
            for row in sheet.iter_rows(min_row=2):
                if row[header.index("id")].value == row_id:
                    row[header.index(column)].value = value
            book.save(project / "labels.xlsx")
    else:
        emulator = request.getfixturevalue("emulator")
        backend = request.getfixturevalue("open_sheet")(request.getfixturevalue("blank_sheet"), CLASSES)
        backend.create(table)

        def edit(row_id, column, value):
            from dcloop.backends.sheet_grid import column_letter
            values = emulator.values(backend.key, "labels")
            row = [r[values[0].index("id")] for r in values].index(row_id) + 1
            emulator.set_values(backend.key, f"labels!{column_letter(values[0].index(column))}{row}", [[value]])

    with serving(project, backend) as server:
        state = api(server, "api/state")
        a, b, c, d = (state["id"][n] for n in state["queue"][:4])
        seen = tbl.normalize(backend.read(), "t").set_index("id")
        edit(d, "split", "test")  # someone else's edit after the page loaded the row
        done = api(server, "api/decide", {"decisions": [
            decision(a, seen.loc[a], label=next(k for k in CLASSES if k != seen.loc[a, "label"])),
            decision(b, seen.loc[b], reviewed="ok"), decision(c, seen.loc[c], split="exclude"),
            decision(d, seen.loc[d], split="exclude")]})
    assert [r["ok"] for r in done["results"]] == [True, True, True, False]
    assert "split" in done["results"][3]["message"]
    after = tbl.normalize(backend.read(), "t").set_index("id")
    assert after.loc[a, "label"] != seen.loc[a, "label"] and after.loc[b, "reviewed"] == "ok"
    assert after.loc[c, "split"] == "exclude" and after.loc[d, "split"] == "test"
    for column in ("prediction", "suspicion", "flags", "url", "note"):
        assert after[column].equals(seen[column].reindex(after.index)), column


def cli_process(*args, before: str = "") -> subprocess.Popen:
    code = before + "from dcloop.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


# A test run started as a background job (pytest ... &) starts every child with SIGINT ignored.
STOPS = {"ctrl-c": (signal.SIGINT, ""), "sigterm": (signal.SIGTERM, ""),
         "ctrl-c-started-ignored": (signal.SIGINT, "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); ")}


@pytest.mark.training  # the module's project is trained once
@pytest.mark.parametrize("stop", list(STOPS))
def test_ctrl_c_writes_the_pending_decisions_and_exits_0(project, stop):
    number, before = STOPS[stop]
    process = cli_process("review", project, before=before)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        port, token = url.split(":")[2].split("/")[0], url.rstrip("/").rsplit("/", 1)[1]
        row = labels(project).iloc[0]
        connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
        connection.request("GET", f"/{token}/api/state")
        connection.getresponse().read()
        body = json.dumps({"decisions": [decision(row.name, row, reviewed="ok")]})
        connection.request("POST", f"/{token}/api/decide", body, {"Content-Type": "application/json"})
        time.sleep(0.1)  # the decision waits for its batch (0.4 s) when Ctrl-C comes
        process.send_signal(number)
        assert process.wait(60) == 0, process.stderr.read()
    finally:
        process.kill()
    assert "writing the decisions still pending" in process.stderr.read()
    assert labels(project).loc[row.name, "reviewed"] == "ok"
    assert not list(project.glob(".*.tmp*")) and not list(project.glob("*.tmp"))


@pytest.mark.training  # the module's project is trained once
def test_a_sync_started_from_the_page_runs_as_dcloop_sync_and_reports_the_score(project):
    with serving(project) as server:
        state = api(server, "api/state")
        first = state["id"][state["queue"][0]]
        row = labels(project).loc[first]
        api(server, "api/decide", {"decisions": [decision(first, row, split="exclude")]})
        assert api(server, "api/sync", {})["started"]
        assert not api(server, "api/sync", {})["started"]  # one at a time
        deadline = time.monotonic() + 300
        while (found := api(server, "api/sync"))["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
    assert found["state"] == "done", found["lines"]
    assert found["trained"] and "val" in found["scores"] and found["rc"] == 0
    results = read_csv(project / "results.csv")
    assert len(results) == 2 and labels(project).loc[first, "split"] == "exclude"
    assert not (project / ".dcloop" / "lock").read_text().strip()  # the lock was taken and given back


@pytest.mark.training  # the module's project is trained once
def test_a_sync_from_the_page_while_another_command_holds_the_lock_fails_and_says_so(project):
    from dcloop.lock import project_lock

    config = load_config(project, environ={})
    with serving(project) as server, project_lock(project, config, "dcloop restore"):
        assert api(server, "api/sync", {})["started"]
        deadline = time.monotonic() + 120
        while (found := api(server, "api/sync"))["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
    assert found["state"] == "failed" and found["rc"] == 3
    assert any("dcloop restore" in line for line in found["lines"])


@pytest.mark.training  # the module's project is trained once
def test_the_command_prints_the_url_opens_the_browser_and_stops_on_ctrl_c(project, monkeypatch):
    from click.testing import CliRunner

    from dcloop.cli import cli

    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    monkeypatch.setattr(rp.ReviewServer, "serve_forever", lambda self, poll_interval: (_ for _ in ()).throw(
        KeyboardInterrupt()))  # Ctrl-C as soon as it serves
    result = CliRunner().invoke(cli, ["review", str(project), "--open"])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert opened == [url] and url.startswith("http://127.0.0.1:")
    assert "row(s) changed in labels.csv" in result.stderr


@pytest.mark.training  # the module's project is trained once
def test_a_ctrl_c_right_after_the_url_is_printed_still_stops_the_writer_and_the_socket(project, monkeypatch):
    servers, messages = [], []
    start = rp.start
    monkeypatch.setattr(rp, "start", lambda *args, **options: servers.append(start(*args, **options)) or servers[0])

    def show_url(url):
        raise KeyboardInterrupt  # Ctrl-C before serve_forever: the writer thread runs already

    try:
        rp.serve(project, load_config(project, environ={}), progress=messages.append, show_url=show_url)
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C before serving started was not handled")
    assert not servers[0].writer.thread.is_alive() and servers[0].socket.fileno() == -1
    assert any("stopping" in m for m in messages)


class StalledReview:
    """A Review whose write hangs (a stalled network) until ``go`` is set, at most 5 s."""

    def __init__(self):
        self.go = threading.Event()
        self.backend = MemoryBackend(pd.DataFrame(columns=tbl.COLUMNS))

    def decide(self, targets):
        self.go.wait(5)
        return [rp.Decided(t["id"], True) for t in targets]


def test_closing_the_writer_gives_up_on_a_stalled_write_after_its_wait():
    review = StalledReview()
    writer = rp.Writer(review, window=0)
    writer.submit([{"id": "a"}])
    began = time.monotonic()
    try:
        assert not writer.close(0.3)
        assert time.monotonic() - began < 2
    finally:
        review.go.set()
    assert writer.close(5)


def test_the_writer_goes_on_writing_when_its_progress_cannot_be_printed():
    review = StalledReview()
    review.go.set()

    def stderr_gone(message):
        raise BrokenPipeError(32, "Broken pipe")

    writer = rp.Writer(review, window=0, progress=stderr_gone)
    for row_id in ("a", "b"):  # the second decision is written too: the first write's failed print did not end the thread
        assert writer.submit([{"id": row_id}])[0].result(timeout=5).ok
    assert writer.close(5)


def test_a_second_ctrl_c_handed_to_another_thread_ends_the_wait_for_a_stalled_write():
    review = StalledReview()
    writer = rp.Writer(review, window=0)
    writer.submit([{"id": "a"}])
    # The OS may deliver SIGINT to any thread; Python then raises it in the main thread, but only once
    # that thread runs again: a join without a timeout holds it until the write ends.
    other = threading.Timer(0.2, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGINT))
    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            other.start()
            writer.close(30)
        assert time.monotonic() - began < 2
    finally:
        review.go.set()
        other.join()
    assert writer.close(5)


# ---- the page in a real browser ---------------------------------------------------------------

def browser(profile: Path):
    """Headless Chromium through the system's chromedriver; Selenium never downloads a driver."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("the browser tests need chromium and chromedriver: apt-get install -y chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run",
                     "--disable-extensions", "--window-size=1400,1300", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def settle(driver, timeout: float = 20):
    """Wait until the page has no decision in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.find_element("tag name", "body").get_attribute("data-pending") == "0":
            return
        time.sleep(0.05)
    raise AssertionError("decisions still in flight")


def current_row(driver) -> str:
    return driver.find_element("tag name", "body").get_attribute("data-current")


def press(driver, *keys):
    from selenium.webdriver.common.action_chains import ActionChains
    for key in keys:
        ActionChains(driver).send_keys(key).perform()
    time.sleep(0.05)
    settle(driver)


@pytest.fixture
def page(project, tmp_path):
    with serving(project, window=0.2) as server:
        driver = browser(tmp_path / "profile")
        try:
            driver.get(server.url)
            deadline = time.monotonic() + 30
            while driver.find_element("tag name", "body").get_attribute("data-ready") != "1":
                assert time.monotonic() < deadline, "the page did not load"
                time.sleep(0.05)
            yield driver, server
        finally:
            driver.quit()


@pytest.mark.training  # the module's project is trained once
def test_the_page_by_keyboard_label_accept_keep_exclude_undo_and_arrows(page, project):
    from selenium.webdriver.common.keys import Keys

    driver, _ = page
    before = labels(project)
    first = current_row(driver)
    assert first == api(page[1], "api/state")["id"][api(page[1], "api/state")["queue"][0]]
    assert driver.find_element("id", "row-label").text == before.loc[first, "label"]
    assert driver.find_element("id", "row-model").text.startswith(before.loc[first, "prediction"])
    assert before.loc[first, "flags"].split(";")[0].strip() in driver.find_element("id", "row-flags").text
    legend = driver.find_element("id", "keys").text.splitlines()
    assert legend[:6] == ["0", "label 0", "1", "label 1", "7", "label 7"]
    new = next(k for k in CLASSES if k != before.loc[first, "label"])
    press(driver, new)                                   # a digit: the label
    second = current_row(driver)
    press(driver, Keys.ENTER)                            # accept the model's class
    third = current_row(driver)
    press(driver, "k")                                   # keep
    fourth = current_row(driver)
    press(driver, "x")                                   # exclude
    fifth = current_row(driver)
    after = labels(project)
    assert after.loc[first, "label"] == new
    assert after.loc[second, "label"] == before.loc[second, "prediction"]
    assert after.loc[third, "reviewed"] == "ok" and after.loc[third, "label"] == before.loc[third, "label"]
    assert after.loc[fourth, "split"] == "exclude"
    changed = 3 + int(before.loc[second, "prediction"] != before.loc[second, "label"])
    assert driver.find_element("tag name", "body").get_attribute("data-changed") == str(changed)
    press(driver, "u")                                   # undo the exclusion
    assert current_row(driver) == fourth
    assert labels(project).loc[fourth, "split"] == before.loc[fourth, "split"]
    press(driver, Keys.ARROW_RIGHT)
    assert current_row(driver) == fifth
    press(driver, Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    assert current_row(driver) == third
    assert driver.find_element("id", "message").text.startswith("Undone")
    assert driver.find_element("tag name", "body").get_attribute("data-changed") == str(changed - 1)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert [m for m in errors if "/favicon.ico" not in m] == []  # the browser asks for one, without the token


@pytest.mark.training  # the module's project is trained once
def test_the_page_shows_a_refusal_when_the_row_was_edited_in_the_table(page, project):
    driver, _ = page
    first = current_row(driver)
    table = read_csv(project / "labels.csv")
    seen = table.loc[table["id"] == first, "label"].iloc[0]
    edited = next(k for k in CLASSES if k != seen)
    table.loc[table["id"] == first, "label"] = edited
    table.to_csv(project / "labels.csv", index=False)
    press(driver, next(k for k in CLASSES if k not in (seen, edited)))
    message = driver.find_element("id", "message")
    assert message.is_displayed() and "edited in the table since the page loaded it" in message.text
    assert labels(project).loc[first, "label"] == edited
    assert driver.find_element("tag name", "body").get_attribute("data-changed") == "0"


@pytest.mark.training  # the module's project is trained once
def test_a_sync_from_the_page_shows_its_progress_and_the_new_score(page, project):
    driver, _ = page
    press(driver, "x")
    driver.find_element("id", "sync").click()
    seen, deadline = set(), time.monotonic() + 300
    while (state := driver.find_element("tag name", "body").get_attribute("data-sync")) in (None, "running"):
        assert time.monotonic() < deadline, "the sync did not end"
        seen.add(driver.find_element("id", "sync-status").text.split(":")[0])
        time.sleep(0.2)
    assert state == "done" and "syncing" in seen
    status = driver.find_element("id", "sync-status").text
    assert status.startswith("sync done:") and "Score: val" in status
    assert len(read_csv(project / "results.csv")) == 2


def test_classes_with_names_are_typed_by_their_first_letters(tmp_path):
    root = tmp_path / "named"
    rows = split_rows(write_digits(root / "images", per_class=3))
    rows["label"] = rows["label"].map({"0": "cat", "1": "cow", "7": "dog"})
    init_project(root, rows)
    table = read_csv(root / "labels.csv")
    table["suspicion"] = [f"{0.9 - n / 100:.2f}" for n in range(len(table))]  # a queue without training
    table.to_csv(root / "labels.csv", index=False)
    order = table["id"].tolist()
    with serving(root, window=0.05) as server:
        driver = browser(tmp_path / "profile")
        try:
            driver.get(server.url)
            while driver.find_element("tag name", "body").get_attribute("data-ready") != "1":
                time.sleep(0.05)
            legend = driver.find_element("id", "keys").text.splitlines()
            assert legend[:6] == ["1 or ca", "label cat", "2 or co", "label cow", "3 or d", "label dog"]
            press(driver, "d")
            press(driver, "c", "o")
            press(driver, "3")
            press(driver, "k")
        finally:
            driver.quit()
    after = labels(root)
    assert after.loc[order[:3], "label"].tolist() == ["dog", "cow", "dog"]
    assert after.loc[order[3], "reviewed"] == "ok"


def drag(driver, points):
    """Press the mouse at the first point of the map (offsets from its centre), move through the others, release."""
    from selenium.webdriver.common.action_chains import ActionChains
    deadline = time.monotonic() + 30
    while driver.find_element("tag name", "body").get_attribute("data-map") != "1":  # it comes after the first image
        assert time.monotonic() < deadline, "the map did not load"
        time.sleep(0.05)
    canvas = driver.find_element("id", "map")
    chain = ActionChains(driver).move_to_element_with_offset(canvas, *points[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        chain = chain.move_by_offset(x1 - x0, y1 - y0)
    chain.release().perform()


@pytest.mark.training  # the module's project is trained once
def test_a_box_on_the_map_relabels_its_rows_after_a_confirmation_that_lists_them(page, project):
    from selenium.webdriver.support.ui import Select

    driver, _ = page
    drag(driver, [(-355, -205), (0, 0), (20, 205)])  # the left half of the map, and a bit
    assert driver.find_element("id", "map").get_attribute("data-points") == "60"
    picked = int(driver.find_element("id", "map").get_attribute("data-picked"))
    assert 0 < picked < 60
    Select(driver.find_element("id", "picked-class")).select_by_value("7")
    driver.find_element("id", "picked-relabel").click()
    listed = [li.get_attribute("data-id") for li in driver.find_elements("css selector", "#confirm-list li")]
    before = labels(project)
    assert sorted(listed) == sorted(i for i in listed if before.loc[i, "label"] != "7") and listed
    assert "Relabel these" in driver.find_element("id", "confirm-text").text
    driver.find_element("id", "confirm-yes").click()
    time.sleep(0.05)
    settle(driver)
    after = labels(project)
    assert (after.loc[listed, "label"] == "7").all()
    unlisted = after.index.difference(listed)
    assert after.loc[unlisted, "label"].equals(before.loc[unlisted, "label"])
    assert len(listed) + int((before.loc[after.index.difference(listed), "label"] == "7").sum()) >= picked
    press(driver, "u")  # one undo takes the whole relabel back
    assert labels(project)["label"].equals(before["label"].reindex(labels(project).index))


@pytest.mark.training  # the module's project is trained once
def test_the_filters_narrow_the_walk(page, project):
    from selenium.webdriver.support.ui import Select

    driver, server = page
    state = api(server, "api/state")
    queue = [state["id"][n] for n in state["queue"]]
    table = labels(project)
    Select(driver.find_element("id", "f-class")).select_by_value("7")
    sevens = [i for i in queue if table.loc[i, "label"] == "7"]
    assert driver.find_element("id", "position").text == f"1 / {len(sevens)}" and current_row(driver) == sevens[0]
    Select(driver.find_element("id", "f-split")).select_by_value("val")
    wanted = [i for i in sevens if table.loc[i, "split"] == "val"]
    assert driver.find_element("id", "position").text == (f"1 / {len(wanted)}" if wanted else "no rows match")
    Select(driver.find_element("id", "f-split")).select_by_value("")
    press(driver, "k")  # reviewed now; the walk keeps its rows until the filter changes
    Select(driver.find_element("id", "f-reviewed")).select_by_value("yes")
    assert driver.find_element("id", "position").text == "1 / 1" and current_row(driver) == sevens[0]
    Select(driver.find_element("id", "f-reviewed")).select_by_value("no")
    assert driver.find_element("id", "position").text == f"1 / {len(sevens) - 1}"
    kinds = [o.get_attribute("value") for o in Select(driver.find_element("id", "f-kind")).options]
    assert kinds[0] == "" and set(kinds[1:]) == set(state["kinds"])


@pytest.mark.training  # the module's project is trained once
def test_a_lasso_on_the_map_puts_its_rows_in_the_queue(page, project):
    from selenium.webdriver.support.ui import Select

    driver, server = page
    Select(driver.find_element("id", "map-mode")).select_by_value("lasso")
    drag(driver, [(-360, -210), (360, -210), (360, 210), (-360, 210), (-360, -200)])  # around everything
    assert driver.find_element("id", "map").get_attribute("data-picked") == "60"
    driver.find_element("id", "picked-queue").click()
    assert driver.find_element("id", "position").text == "1 / 60"
    assert driver.find_element("id", "selection-text").text == "Reviewing 60 selected row(s)."
    state = api(server, "api/state")
    assert current_row(driver) == state["id"][state["queue"][0]]  # suspects first, in table order
    press(driver, "k", "k")
    assert (labels(project).loc[[state["id"][n] for n in state["queue"][:2]], "reviewed"] == "ok").all()


@pytest.mark.training  # the module's project is trained once
def test_decisions_per_minute_by_keyboard(page, project, capsys):
    """Machine speed, not a person's: 20 'keep' decisions pressed as fast as the page takes them."""
    driver, _ = page
    from selenium.webdriver.common.action_chains import ActionChains
    started = time.perf_counter()
    for _ in range(20):
        ActionChains(driver).send_keys("k").perform()
    time.sleep(0.05)
    settle(driver, 60)
    minutes = (time.perf_counter() - started) / 60
    assert (labels(project)["reviewed"] == "ok").sum() == min(20, len(api(page[1], "api/state")["queue"]))
    with capsys.disabled():
        print(f"\nreview page: {20 / minutes:.0f} decisions/minute by driven keyboard (machine speed)")
