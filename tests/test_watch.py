"""Watch mode: an edit starts a cycle once settled, a no-op save does not, failures do not end the loop."""

import pytest
import json
import os
import signal
import threading
import time

from click.testing import CliRunner

from dcloop.cli import cli
from dcloop.watch import watch
from tests.test_sync import edit, labels, results
from tests.unattended import Dcloop, one_torch_thread  # noqa: F401
from tests.conftest import split_rows, write_digits

FAST = {"model": {"epochs": 1}, "suspicion": {"folds": 2}}


def small_project(make_project, tmp_path, overrides=FAST):
    return make_project(split_rows(write_digits(tmp_path / "proj" / "images", per_class=6)), overrides)


class Watcher:
    """watch() in a thread; cycles arrive in a list, with a way to wait for the n-th."""

    def __init__(self, root, config, settle=0.5, progress=lambda m: None):
        self.cycles, self.stop, self.arrived = [], threading.Event(), threading.Condition()
        self.thread = threading.Thread(target=self.run, args=(root, config, settle, progress), daemon=True)
        self.thread.start()

    def run(self, root, config, settle, progress):
        self.count = watch(root, config, self.stop, self.on_cycle, interval=0.05, settle=settle, progress=progress)

    def on_cycle(self, cycle):
        with self.arrived:
            self.cycles.append(cycle)
            self.arrived.notify_all()

    def wait_for(self, n, timeout=120):
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.cycles) >= n, timeout), f"cycles: {self.cycles}"
        return self.cycles[n - 1]

    def end(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def save_unchanged(path):
    """What an editor's save does: same bytes, a new file (new inode, new mtime)."""
    data = path.read_bytes()
    path.with_name("saved.tmp").write_bytes(data)
    os.replace(path.with_name("saved.tmp"), path)


@pytest.mark.training
def test_watch_syncs_an_edit_once_settled_ignores_a_no_op_save_and_outlives_a_failed_cycle(
        make_project, config_of, tmp_path, one_torch_thread):
    root = small_project(make_project, tmp_path)
    watcher = Watcher(root, config_of(root), settle=0.5)
    first = watcher.wait_for(1)
    assert first.ok and first.report.trained and first.number == 1

    save_unchanged(root / "labels.csv")
    time.sleep(1.5)
    assert len(watcher.cycles) == 1

    table = labels(root)  # rows are sorted by suspicion: pick them by content, not position
    ids = list(table.loc[table["split"] == "train", "id"])
    edit(root, ids[0], label="7" if table.set_index("id").loc[ids[0], "label"] != "7" else "8")
    time.sleep(0.2)
    edit(root, ids[1], split="val")  # within the settle time of the first edit: one cycle for both
    second = watcher.wait_for(2)
    assert second.report.trained and second.report.labels_changed == 2
    assert second.report.version != first.report.version

    good = (root / "labels.csv").read_bytes()
    (root / "labels.csv").write_text("path,class\na.png,1\n")
    third = watcher.wait_for(3)
    assert not third.ok and "labels.csv: missing required column(s) url, label" in third.error
    assert third.to_json()["ok"] is False and third.summary().startswith("cycle 3: failed: ")

    (root / "labels.csv").write_bytes(good)
    fourth = watcher.wait_for(4)
    assert fourth.ok and not fourth.report.trained and fourth.report.message.startswith("Nothing changed")
    assert fourth.to_json()["cycle"] == 4 and fourth.to_json()["version"] == second.report.version
    watcher.end()
    assert watcher.count == 4 and len(results(root)) == 2


@pytest.mark.training
def test_a_stop_during_training_ends_at_the_epoch_and_writes_nothing(make_project, config_of, tmp_path,
                                                                     one_torch_thread):
    root = small_project(make_project, tmp_path, {"model": {"epochs": 5}})
    before = (root / "labels.csv").read_bytes()
    messages = []

    def progress(message):
        messages.append(message)
        if message.startswith("epoch 1/"):
            watcher.stop.set()  # what the SIGINT/SIGTERM handler of `dcloop sync --watch` does

    watcher = Watcher(root, config_of(root), progress=progress)
    watcher.thread.join(120)
    assert not watcher.thread.is_alive() and watcher.cycles == []
    assert messages[-1].startswith("stopped during training (after epoch 1)")
    assert (root / "labels.csv").read_bytes() == before and results(root).empty
    assert not (root / ".dcloop/last_trained.json").exists() and not (root / ".dcloop/runs").exists()


def test_sync_watch_prints_a_json_line_per_cycle_holds_the_lock_and_exits_0_on_sigterm(make_project, tmp_path):
    root = small_project(make_project, tmp_path)
    proc = Dcloop("sync", root, "--watch", "--interval", "0.1", "--settle", "0.2", "--json")
    try:
        line = proc.wait_for(r"^\{", timeout=120, stdout=True)
        cycle = json.loads(line)
        assert cycle["cycle"] == 1 and cycle["ok"] and cycle["trained"] and cycle["version"]
        second = CliRunner().invoke(cli, ["sync", str(root)])
        assert second.exit_code == 3 and f"pid {proc.proc.pid} " in second.stderr
        assert "(dcloop sync --watch)" in second.stderr
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.finish(timeout=60) == 0
    finally:
        proc.kill()
    stderr = "".join(proc.stderr)
    assert "SIGTERM: stopping at the next safe point" in stderr and "stopped after 1 cycle(s)" in stderr
    assert "cycle 1: Run " in stderr
    assert len(results(root)) == 1


def test_the_probe_reads_a_csv_only_when_its_stamp_moved_and_matches_the_version_sync_records(tmp_path):
    import pandas as pd

    from dcloop import table as tbl
    from dcloop.backends.csv import CsvBackend
    from dcloop.watch import TableProbe

    path = tmp_path / "labels.csv"
    path.write_text("url,label,split\na.png,1,train\nb.png,7,\n")
    backend = CsvBackend(path, tmp_path / "results.csv")
    reads = []
    backend.read = lambda real=backend.read: reads.append(1) or real()
    probe = TableProbe(backend, "train")
    version = probe()
    table = tbl.normalize(pd.read_csv(path, dtype=str, keep_default_na=False), "t")
    assert version == tbl.label_version(tbl.with_ids(table, tbl.assign_ids(table), "train"))
    assert probe() == version and len(reads) == 1
    save_unchanged(path)
    assert probe() == version and len(reads) == 2
    path.write_text("url,label,split\na.png,7,train\nb.png,7,\n")
    assert probe() != version


def test_interval_and_settle_without_watch_are_a_usage_error():
    result = CliRunner().invoke(cli, ["sync", "somewhere", "--settle", "3"])
    assert result.exit_code == 2 and "Error: --settle needs --watch." in result.stderr
    result = CliRunner().invoke(cli, ["sync", "somewhere", "--interval", "1", "--settle", "3"])
    assert result.exit_code == 2 and "Error: --interval and --settle need --watch." in result.stderr
