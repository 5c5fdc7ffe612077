"""One dcloop process per project: a second is refused with exit code 3, a dead holder's lock is taken over."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dcloop.cli import cli
from dcloop.config import Config
from dcloop.errors import LockedError
from dcloop.lock import ProjectLock, project_lock
from tests.unattended import REPO

HOLD = """
import sys
from dcloop.lock import ProjectLock
with ProjectLock(sys.argv[1], "dcloop sync"):
    print("holding", flush=True)
    sys.stdin.read()
"""


def holder(state):
    """A real process that holds the lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(state)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline() == "holding\n"
    return proc


def test_a_second_sync_is_refused_at_once_naming_the_holder(make_project):
    root = make_project()
    proc = holder(root / ".dcloop")
    try:
        result = CliRunner().invoke(cli, ["sync", str(root)])
        assert result.exit_code == 3
        assert result.stderr.startswith(f"Error: {root}: another dcloop process holds the project's lock: "
                                        f"pid {proc.pid} on ")
        assert "(dcloop sync), started 20" in result.stderr
        assert (root / "results.csv").read_text().count("\n") == 1  # header only: nothing trained
    finally:
        proc.stdin.close()
        proc.wait()
    with ProjectLock(root / ".dcloop", "test") as lock:
        assert json.loads((root / ".dcloop/lock").read_text())["command"] == "test"
        assert lock.fd is not None


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    proc = holder(tmp_path)
    with pytest.raises(LockedError, match=f"pid {proc.pid} "):
        ProjectLock(tmp_path, "second").acquire()
    proc.kill()
    proc.wait()
    assert json.loads((tmp_path / "lock").read_text())["pid"] == proc.pid  # its note is still there
    with ProjectLock(tmp_path, "third"):
        held = json.loads((tmp_path / "lock").read_text())
        assert held["command"] == "third" and held["pid"] != proc.pid


def test_a_note_from_a_dead_pid_without_a_held_lock_is_taken_over(tmp_path):
    (tmp_path / "lock").write_text(json.dumps({"pid": 999999, "started_utc": "2020-01-01T00:00:00Z"}))
    with ProjectLock(tmp_path, "dcloop sync"):
        with pytest.raises(LockedError, match=r"another dcloop process holds the project's lock: pid \d+"):
            ProjectLock(tmp_path, "again").acquire()
    with ProjectLock(tmp_path, "after release"):
        pass


def test_taking_the_lock_removes_what_killed_writers_left(tmp_path):
    root = tmp_path
    (root / ".dcloop/versions/abc").mkdir(parents=True)
    leftovers = [root / ".dcloop/versions/abc/.labels.csv.k2j3h4.tmp", root / ".labels.csv.a8d7f6.tmp",
                 root / ".results.csv.x1y2z3.tmp"]
    for path in leftovers:
        path.write_text("half")
    mine = root / ".notes.txt.tmp"
    mine.write_text("not dcloop's")
    with project_lock(root, Config(), "dcloop sync"):
        assert not any(p.exists() for p in leftovers)
    assert mine.exists()


def test_the_temp_file_sweep_finds_what_rglob_finds_and_follows_no_symlinked_folder(tmp_path):
    from dcloop.fsutil import temp_files_below
    for name in [".a.tmp", "..tmp", ".tmp", "a.tmp", ".b.tmp.x", "sub/.c.json.123.tmp", ".h/.d.tmp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    found = sorted(temp_files_below(str(tmp_path)))
    assert found == sorted(tmp_path.rglob(".*.tmp"))
    assert [p.name for p in found] == ["..tmp", ".a.tmp", ".d.tmp", ".c.json.123.tmp"]
