"""Damaged internal files, a full disk, odd encodings, a stalled Google and a hung lock holder:
each ends in one clear message or a rebuilt cache, never a traceback, and human cells stay as they were."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop.backends.csv import read_csv
from dcloop.backends.gsheet import SheetBackend
from dcloop.backends.sheet_http import RetryPolicy
from dcloop.cli import cli
from dcloop.config import load_config
from dcloop.errors import BackendError, ConfigError, SchemaError
from dcloop.history import History
from dcloop.lock import project_lock
from dcloop.project import init_project
from dcloop.sync import sync
from dcloop.watch import watch
from tests.conftest import ACCOUNT, make_table, replace_setting, sheet_config, split_rows, write_digits
from tests.unattended import REPO

HUMAN = ["id", "url", "label", "split", "note"]
NOTHING_LOST = ("Nothing was lost: dcloop replaces the label table, the results and its own files only whole, "
                "so each is as it was before or complete.")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project synced once with a tiny training on one thread; tests work on copies."""
    root = tmp_path_factory.mktemp("trained") / "proj"
    init_project(root, split_rows(write_digits(root / "images")))
    text = (root / "dcloop.toml").read_text()
    for key, value in {"epochs": 2, "batch_size": 16, "threads": 1}.items():
        text = replace_setting(text, "model", key, value)
    (root / "dcloop.toml").write_text(text)
    config = load_config(root, environ={})
    with project_lock(root, config, "dcloop sync"):
        sync(root, config)
    (root / ".dcloop/cache").chmod(0o700)  # as the image cache is meant to be: private
    return root


@pytest.fixture
def project(trained, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(trained, root)
    return root


def human(root):
    return read_csv(root / "labels.csv")[HUMAN].sort_values("id").reset_index(drop=True)


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def sync_noting(root, **kwargs):
    notes = []
    report = sync(root, load_config(root, environ={}), progress=notes.append, **kwargs)
    return report, notes


def head(root):
    return History(root / ".dcloop").head()


def state_message(path, reason, root):
    return (f"Error: {path}: cannot be read ({reason}). It is project state, not a cache, so dcloop does not "
            f"rebuild it on its own: run 'dcloop doctor {root} --repair', which fixes what it safely can and "
            f"says what it changed.\n")


# --- damaged internal files -----------------------------------------------------------------

@pytest.mark.training
def test_an_empty_last_trained_json_means_no_last_training_and_the_sync_says_it_retrains(project):
    before = human(project)
    path = project / ".dcloop/last_trained.json"
    path.write_text("")
    report, notes = sync_noting(project)
    assert f"{path}: unreadable (the file is empty); treating it as no previous training: this sync retrains" in notes
    assert report.trained
    assert json.loads(path.read_text())["version"] == report.version
    assert human(project).equals(before)


def test_a_deleted_newest_version_folder_is_recorded_again_from_the_table_that_has_it(project):
    before, version = human(project), head(project)
    shutil.rmtree(project / ".dcloop/versions" / version)
    report, notes = sync_noting(project)
    assert notes[0] == (f"{project / '.dcloop/versions' / version}: the snapshot of label version {version} was "
                        f"missing; recorded it again from the table, which holds exactly that version")
    assert not report.trained  # last_trained.json still matches: nothing to retrain
    assert History(project / ".dcloop").snapshot(version)[HUMAN[:4]].shape == (90, 4)
    assert human(project).equals(before)


def test_an_edit_after_the_newest_snapshot_was_deleted_is_recorded_without_a_parent(project):
    version = head(project)
    shutil.rmtree(project / ".dcloop/versions" / version)
    table = read_csv(project / "labels.csv")
    table.loc[1, "split"] = "exclude"
    notes = []
    recorded = History(project / ".dcloop").record(table, "2026-12-01T00:00:00Z", notes.append)
    assert notes == [f"{project / '.dcloop/versions' / version}: the snapshot of label version {version} is "
                     f"missing; recording version {recorded.version} without a parent, every row counted as changed"]
    assert recorded.parent == "" and len(recorded.changes) == 90


def test_an_empty_versions_index_stops_the_sync_with_one_message_and_doctor_rebuilds_it(project):
    before = human(project)
    index = project / ".dcloop/versions/index.csv"
    version = head(project)
    index.write_text("")
    result = run("sync", project)
    assert result.exit_code == 1
    assert result.stderr.endswith(state_message(index, "the file is empty", project))
    assert "Traceback" not in result.output
    found = run("doctor", project)
    assert found.exit_code == 1
    assert (f"problem  {index}: cannot be read (the file is empty); --repair would rebuild it from the version "
            f"folders, in the order of their files' modification times (the damaged file is kept as "
            f"index.csv.broken)\n") in found.stdout
    fixed = run("doctor", project, "--repair")
    assert fixed.exit_code == 0, fixed.stdout
    assert f"repaired {index}: " in fixed.stdout
    assert (index.parent / "index.csv.broken").read_text() == ""
    assert head(project) == version
    assert run("sync", project).exit_code == 0
    assert human(project).equals(before)


@pytest.mark.parametrize("name", ["local-files.json", "urls.json"])
def test_a_garbage_image_index_is_rebuilt_with_a_note(project, name):
    path = project / ".dcloop/cache" / name
    path.write_bytes(b"\x00garbage")
    report, notes = sync_noting(project)
    assert f"{path}: unreadable cache (Expecting value: line 1 column 1 (char 0)); rebuilding it" in notes
    assert not report.trained
    if name == "local-files.json":
        assert len(json.loads(path.read_text())) == 90  # rebuilt


@pytest.mark.training
def test_a_garbage_decoded_cache_and_sizes_cache_are_rebuilt(project, caplog):
    before = human(project)
    decoded, sizes = project / ".dcloop/cache/decoded-32.npz", project / ".dcloop/cache/sizes.json"
    decoded.write_bytes(b"PK\x03\x04 not a zip")
    sizes.write_text("[1, 2")
    report, notes = sync_noting(project, force=True)
    assert f"{decoded}: unreadable cache (BadZipFile); rebuilding it" in notes
    assert any(r.getMessage().startswith(f"{sizes}: unreadable cache (") for r in caplog.records)
    assert report.trained
    with np.load(decoded) as data:
        assert data["pixels"].shape == (90, 3, 32, 32)
    assert len(json.loads(sizes.read_text())) == 90
    assert human(project).equals(before)


def test_garbage_reviews_json_is_one_error_naming_it(project):
    path = project / ".dcloop/reviews.json"
    path.write_text("{not json")
    result = run("sync", project)
    assert result.exit_code == 1
    assert result.stderr.endswith(state_message(
        path, "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)", project))


def test_a_folder_at_the_lock_path_is_one_error_and_doctor_removes_it_when_empty(project):
    lock = project / ".dcloop/lock"
    lock.unlink()
    lock.mkdir()
    result = run("sync", project)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {lock} is a folder, not dcloop's lock file, so no dcloop command can run on "
                             f"{project}. Run 'dcloop doctor {project} --repair' (it removes the folder if it "
                             f"is empty), or move the folder away.\n")
    (lock / "x").write_text("")
    kept = run("doctor", project, "--repair")
    assert kept.exit_code == 1
    assert (f"problem  {lock}: a folder that is not empty where the lock file belongs: every command fails. Look at "
            f"it, move it away by hand, then run doctor again") in kept.stdout
    (lock / "x").unlink()
    fixed = run("doctor", project, "--repair")
    assert fixed.exit_code == 0, fixed.stdout
    assert (f"repaired {lock}: an empty folder where the lock file belongs: every command fails; removed the empty "
            f"folder; the next command creates the lock file") in fixed.stdout
    assert run("sync", project).exit_code == 0


# --- doctor ---------------------------------------------------------------------------------

def test_doctor_finds_a_healthy_project_healthy(project):
    result = run("doctor", project)
    assert result.exit_code == 0, result.stdout
    assert all(line.startswith("ok ") for line in result.stdout.splitlines())
    assert f"ok       {project / '.dcloop/lock'}: a regular file, not held" in result.stdout
    assert json.loads(run("doctor", project, "--json").stdout)["healthy"] is True


@pytest.mark.training
def test_doctor_repairs_what_is_safe_and_never_touches_the_table_or_the_results(project):
    state = project / ".dcloop"
    table, results = (project / "labels.csv").read_bytes(), (project / "results.csv").read_bytes()
    run_id = json.loads((state / "last_trained.json").read_text())["run_id"]
    (state / "last_trained.json").write_text("")
    (state / "comparable.json").write_text("nope")
    (state / "reviews.json").write_text("[")
    (state / "cache/sizes.json").write_text("")
    (state / "cache/decoded-32.npz").write_bytes(b"junk")
    blob = next((state / "cache/blobs").glob("*/*"))
    blob.write_bytes(b"not the image it was")
    (state / "versions/.index.csv.abc123.tmp").write_text("half")
    (state / "cache").chmod(0o755)
    # an older version whose snapshot is gone, listed before the head
    history = History(state)
    index = history.index()
    old = index.iloc[0].copy()
    old["version"], old["time_utc"] = "0ld0ld0ld0ld", "2026-01-01T00:00:00Z"
    history.write_index(pd.concat([old.to_frame().T, index], ignore_index=True))
    found = run("doctor", project)
    assert found.exit_code == 1
    problems = [line for line in found.stdout.splitlines() if line.startswith("problem")]
    assert len(problems) == 9, found.stdout
    fixed = run("doctor", project, "--repair")
    assert fixed.exit_code == 0, fixed.stdout
    assert [line.split(":")[0] for line in fixed.stdout.splitlines() if line.startswith("repaired")] == [
        "repaired temporary files", f"repaired {state / 'versions/index.csv'}",
        f"repaired {state / 'last_trained.json'}", f"repaired {state / 'comparable.json'}",
        f"repaired {state / 'reviews.json'}", f"repaired {state / 'cache/decoded-32.npz'}",
        f"repaired {state / 'cache/sizes.json'}", f"repaired {state / 'cache/blobs'}",
        f"repaired {state / 'cache'}"]
    assert f"dropped them from the index" in fixed.stdout and "0ld0ld0ld0ld" in fixed.stdout
    assert run("doctor", project).exit_code == 0
    assert (project / "labels.csv").read_bytes() == table and (project / "results.csv").read_bytes() == results
    assert (state / "runs" / run_id).is_dir()  # runs are never deleted
    report, _ = sync_noting(project)
    assert report.trained and json.loads((state / "last_trained.json").read_text())["run_id"] != run_id


def test_doctor_writes_a_lost_newest_snapshot_again_from_the_table_or_drops_it_when_the_table_moved_on(project):
    history = History(project / ".dcloop")
    first = history.head()
    shutil.rmtree(history.folder(first))
    fixed = run("doctor", project, "--repair")
    assert (f"repaired {history.folder(first)}: the snapshot of the newest label version {first} is missing or "
            f"unreadable; recorded it again from the table, which holds exactly that version\n") in fixed.stdout
    assert fixed.exit_code == 0 and history.has_snapshot(first)
    table = read_csv(project / "labels.csv")
    table.loc[1, "split"] = "exclude"
    second = history.record(table, "2026-12-01T00:00:00Z").version  # the table file itself is unchanged
    shutil.rmtree(history.folder(second))
    found = run("doctor", project)
    assert (f"problem  {history.folder(second)}: the snapshot of the newest label version {second} is missing or "
            f"unreadable, and the table has changed since; --repair would drop it from the index") in found.stdout
    assert run("doctor", project, "--repair").exit_code == 0
    assert history.head() == first and run("doctor", project).exit_code == 0


def test_doctor_on_a_folder_that_is_no_project_changes_nothing(tmp_path):
    result = run("doctor", tmp_path, "--repair")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (f"problem  {tmp_path / 'dcloop.toml'}: no such file. Is {tmp_path} a "
                                             f"dcloop project? Create one with 'dcloop init'. (the other checks use "
                                             f"the default settings)")
    assert list(tmp_path.iterdir()) == []


# --- full disk, read-only folder ------------------------------------------------------------

@pytest.mark.training
def test_a_full_disk_at_the_write_back_is_one_message_and_loses_nothing(project, monkeypatch):
    """Simulated at the fsutil boundary: the rename of the label table's temp file fails with ENOSPC
    (a real full file system needs a mount, which these tests cannot make)."""
    table, results = (project / "labels.csv").read_bytes(), (project / "results.csv").read_bytes()
    replace = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst) == str(project / "labels.csv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr("dcloop.fsutil.os.replace", full)
    result = run("sync", project, "--force")
    assert result.exit_code == 1
    assert result.stderr.endswith(f"Error: {project / 'labels.csv'}: cannot write: no space left on the device. "
                                  f"{NOTHING_LOST} Free some space, then run the command again.\n")
    assert (project / "labels.csv").read_bytes() == table and (project / "results.csv").read_bytes() == results
    assert not list(project.glob(".labels.csv.*.tmp"))


def test_a_read_only_project_folder_is_one_message(project, monkeypatch):
    """Simulated: opening the lock file fails with EROFS, as on a read-only mount (we run as root,
    so chmod cannot make a folder read-only)."""
    lock = project / ".dcloop/lock"
    open_ = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path) == str(lock) and flags & os.O_RDWR:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return open_(path, flags, *args, **kwargs)

    monkeypatch.setattr("dcloop.lock.os.open", read_only)
    result = run("sync", project)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {lock}: cannot write: the file system is read-only. {NOTHING_LOST} Make the "
                             f"project folder writable, then run the command again.\n")


def test_a_permission_error_outside_the_atomic_writes_is_one_message(project, monkeypatch):
    """A link or folder dcloop makes directly (not through fsutil) fails with EACCES: the CLI says so."""
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(project / ".dcloop/versions/x/train"))

    monkeypatch.setattr("dcloop.sync.materialize", denied)
    result = run("sync", project, "--force")
    assert result.exit_code == 1
    assert result.stderr.endswith(f"Error: {project / '.dcloop/versions/x/train'}: permission denied. "
                                  f"{NOTHING_LOST} Give the user running dcloop write access to the project "
                                  f"folder, then run the command again.\n")


# --- encodings and bounds -------------------------------------------------------------------

def test_dcloop_toml_with_a_bom_is_read_and_one_that_is_not_utf8_names_the_byte(project):
    path = project / "dcloop.toml"
    text = path.read_text()
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(project, environ={}).model.epochs == 2
    path.write_bytes(b"# caf\xe9\n" + text.encode())
    with pytest.raises(ConfigError) as e:
        load_config(project, environ={})
    assert str(e.value) == f"{path}: not UTF-8 text: byte 5 (line 1) is 0xe9. Save the file as UTF-8."


def test_a_cp1252_label_table_names_the_line_and_says_save_as_csv_utf8(project):
    path = project / "labels.csv"
    table = read_csv(path)
    table.loc[3, "note"] = "café au lait"  # data row 4: line 5 of the file
    table.to_csv(path, index=False, encoding="cp1252")
    data = path.read_bytes()
    at = data.index(b"\xe9")
    with pytest.raises(SchemaError) as e:
        read_csv(path)
    assert str(e.value) == (f"{path}: line 5 is not UTF-8 (byte 0xe9 at position {at}); the "
                            f"file was probably saved as Windows-1252 or Latin-1. Save it as CSV UTF-8 (Excel: Save "
                            f"As > 'CSV UTF-8 (Comma delimited)'; LibreOffice: character set 'Unicode (UTF-8)'), "
                            f"then sync again.")
    result = run("sync", project)
    assert result.exit_code == 1 and result.stderr == f"Error: {e.value}\n"
    assert path.read_bytes() == data


def test_image_size_is_bounded(project):
    with pytest.raises(ConfigError, match=r"model\.image_size: Input should be less than or equal to 512$"):
        load_config(project, {"model": {"image_size": 100_000}}, environ={})


# --- Google Sheets: a request that is never answered -----------------------------------------

def stalled_backend(emulator, key_file, tmp_path):
    key = emulator.create_spreadsheet("stall", editors=[ACCOUNT])
    config = sheet_config(key, key_file, emulator.base_url)
    config.table.connect_timeout_s, config.table.read_timeout_s = 1.0, 0.3
    backend = SheetBackend.from_config(config, tmp_path)
    backend.http.policy = RetryPolicy(attempts=3, base_s=0.001, cap_s=0.01, deadline_s=10.0)
    return key, backend


@pytest.mark.parametrize("kind", ["token", "values.batchGet"])
def test_a_stalled_sheets_request_times_out_is_retried_and_ends_in_a_clear_error(emulator, key_file, tmp_path,
                                                                                 kind):
    """The token request (before any other) or a read of the sheet (with a valid token) is never answered."""
    key, backend = stalled_backend(emulator, key_file, tmp_path)
    if kind != "token":
        backend.create(make_table(6))
    emulator.reset_counts()
    emulator.stall(kind=kind, times=None)
    started = time.monotonic()
    with pytest.raises(BackendError) as e:
        backend.read()
    assert time.monotonic() - started < 5
    assert re.fullmatch(rf"Google Sheet {key}: Google did not answer in time after 3 tries over \d+s \(the last "
                        r"request waited \[table\] read_timeout_s, or connect_timeout_s to connect\); check the "
                        r"network and sync again, or raise those settings in dcloop.toml\.", str(e.value))
    assert [c.kind for c in emulator.calls] == [kind] * 3


# --- [sync] max_minutes and a lock holder that overran it ------------------------------------

def test_a_sync_past_max_minutes_stops_at_a_safe_point_with_exit_4(project):
    table, results = (project / "labels.csv").read_bytes(), (project / "results.csv").read_bytes()
    result = run("sync", project, "--force", env={"DCLOOP_SYNC_MAX_MINUTES": "0.000001"})
    assert result.exit_code == 4
    assert result.stderr.endswith("Error: stopped after fetching images: the sync ran longer than [sync] "
                                  "max_minutes = 1e-06; no predictions or results were written; the next sync "
                                  "trains again. Raise max_minutes in dcloop.toml if this project needs longer.\n")
    assert (project / "labels.csv").read_bytes() == table and (project / "results.csv").read_bytes() == results


def test_a_watch_cycle_past_max_minutes_fails_and_the_watch_goes_on(project):
    config = load_config(project, {"sync": {"max_minutes": 0.000001}}, environ={})
    stop, cycles = threading.Event(), []

    def on_cycle(cycle):
        cycles.append(cycle)
        stop.set()

    assert watch(project, config, stop, on_cycle, interval=0.05, settle=0) == 1
    assert cycles[0].error.startswith("stopped after fetching images: the sync ran longer than [sync] max_minutes")


OLD_HOLDER = """
import json, os, sys
from dcloop.lock import ProjectLock
with ProjectLock(sys.argv[1], sys.argv[2]) as lock:
    note = {"pid": os.getpid(), "host": "lab-2", "command": sys.argv[2], "started_utc": "2026-01-01T00:00:00Z"}
    os.ftruncate(lock.fd, 0)
    os.pwrite(lock.fd, json.dumps(note).encode(), 0)
    print("holding", flush=True)
    sys.stdin.read()
"""


def old_holder(state, command):
    """A real process holding the lock whose note says it started long ago."""
    proc = subprocess.Popen([sys.executable, "-c", OLD_HOLDER, str(state), command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline() == "holding\n"
    return proc


def test_a_lock_holder_past_max_minutes_exits_5_and_status_reports_it(project):
    proc = old_holder(project / ".dcloop", "dcloop sync")
    try:
        result = run("sync", project)
        assert result.exit_code == 5
        assert re.fullmatch(
            rf"Error: {re.escape(str(project))}: another dcloop process holds the project's lock: pid {proc.pid} on "
            r"lab-2 \(dcloop sync\), started 2026-01-01T00:00:00Z, \d+ minutes ago, longer than \[sync\] "
            rf"max_minutes = 180: it may be hung\. Check it \(ps -p {proc.pid}\) and stop it if it is stuck \(kill "
            rf"{proc.pid}; nothing is lost\), then try again\.\n", result.stderr)
        status = run("status", project)
        assert status.exit_code == 0
        assert re.search(rf"lock           held by pid {proc.pid} on lab-2 \(dcloop sync\), started "
                         r"2026-01-01T00:00:00Z, \d+ minutes ago: longer than \[sync\] max_minutes = 180, it may be "
                         rf"hung \(ps -p {proc.pid}; kill {proc.pid} if it is stuck\)", status.stdout)
        assert json.loads(run("status", project, "--json").stdout)["lock"]["overrun"] is True
    finally:
        proc.stdin.close()
        proc.wait()
    assert json.loads(run("status", project, "--json").stdout)["lock"] is None


def test_an_old_watch_holds_the_lock_by_design_and_exits_3(project):
    proc = old_holder(project / ".dcloop", "dcloop sync --watch")
    try:
        assert run("sync", project).exit_code == 3
    finally:
        proc.stdin.close()
        proc.wait()
