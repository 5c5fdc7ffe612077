"""kill -9 at several points of a sync, then a sync that succeeds with nothing lost or duplicated."""

import http.server
import shutil
import threading
import time

import pytest
from click.testing import CliRunner

from dcloop.cli import cli
from dcloop.history import History
from tests.conftest import split_rows, write_digits
from tests.test_sync import labels, results
from tests.unattended import KILL_AT, Dcloop, one_torch_thread  # noqa: F401

HUMAN = ["id", "url", "label", "split", "note"]

# SIGKILL when the new labels.csv is complete on disk but not yet renamed over the old one.
KILL_BEFORE_LABELS_RENAME = KILL_AT + """
_replace = os.replace
def _replace_or_die(src, dst, *args, **kwargs):
    if str(dst).endswith("labels.csv") and "/.dcloop/" not in str(dst):
        _die()
    return _replace(src, dst, *args, **kwargs)
os.replace = _replace_or_die
"""
# SIGKILL after the predictions are in labels.csv, before the results row is appended.
KILL_BEFORE_RESULTS = KILL_AT + """
import dcloop.backends.csv
dcloop.backends.csv.CsvBackend.append_result = _die
"""


class SlowHost(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        time.sleep(self.server.delay)
        try:
            super().do_GET()
        except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-answer
            pass


@pytest.fixture
def slow_host(tmp_path):
    """Files from tmp_path/www on 127.0.0.1, each answer held back by ``server.delay`` seconds."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: SlowHost(*a, directory=str(www), **k))
    server.daemon_threads, server.requests, server.delay = True, [], 0.0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www, server
    server.shutdown()
    server.server_close()


def human_columns(root):
    return labels(root)[HUMAN].sort_values("id").reset_index(drop=True)


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp"))


@pytest.mark.training
def test_sigkill_during_fetch_training_and_write_back_then_a_sync_succeeds(make_project, slow_host, tmp_path,
                                                                          one_torch_thread):
    base, www, server = slow_host
    rows = split_rows(write_digits(tmp_path / "src", per_class=6))
    for url in rows["url"]:
        shutil.copy(tmp_path / url, www)
    rows["url"] = [f"{base}/{u.split('/')[-1]}" for u in rows["url"]]
    rows["note"] = ["checked by Ana" if n == 4 else "" for n in range(len(rows))]
    root = make_project(rows, {"model": {"epochs": 2}, "suspicion": {"folds": 2}})
    human = human_columns(root)

    server.delay = 0.5
    fetching = Dcloop("sync", root)
    deadline = time.monotonic() + 120
    while len(server.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    fetching.kill()
    assert fetching.proc.returncode == -9 and 3 <= len(server.requests) < len(rows)
    assert human_columns(root).equals(human) and results(root).empty
    server.delay = 0.0

    training = Dcloop("sync", root)
    training.wait_for(r"epoch 1/2", timeout=180)
    training.kill()
    assert human_columns(root).equals(human) and results(root).empty
    assert not (root / ".dcloop/last_trained.json").exists()

    writing = Dcloop("sync", root, "--epochs", "1", prelude=KILL_BEFORE_LABELS_RENAME)
    assert writing.finish(timeout=180) == -9
    assert [p.startswith(".labels.csv.") for p in leftovers(root)] == [True]  # killed mid-write, old file whole
    assert human_columns(root).equals(human) and (labels(root)["prediction"] == "").all()

    appending = Dcloop("sync", root, "--epochs", "1", prelude=KILL_BEFORE_RESULTS)
    assert appending.finish(timeout=180) == -9
    assert human_columns(root).equals(human) and (labels(root)["prediction"] != "").all()
    assert results(root).empty  # that training finished but was never recorded: it does not count

    result = CliRunner().invoke(cli, ["sync", str(root), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Run ")
    assert human_columns(root).equals(human) and labels(root)["id"].is_unique
    assert (labels(root)["prediction"] != "").all() and not labels(root)["flags"].str.contains("unreadable").any()
    [run] = results(root)["run_id"]
    assert (root / ".dcloop/runs" / run / "model.pt").exists()
    assert leftovers(root) == []
    index = History(root / ".dcloop").index()
    assert len(index) == 1 and index["version"][0] == results(root)["label_version"][0]
    again = CliRunner().invoke(cli, ["sync", str(root), "--epochs", "1"])
    assert again.exit_code == 0 and again.stdout.startswith("Nothing changed")
    assert len(results(root)) == 1
