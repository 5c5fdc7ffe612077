"""The docs and scripts for running unattended say what the code does."""

import configparser
import re
import subprocess

import pytest

from click.testing import CliRunner

from dcloop.cli import cli
from tests.unattended import REPO

# The README and the documentation site, read as one text.
DOC = "\n".join(page.read_text() for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))])


def unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((REPO / "scripts/systemd" / name).read_text())
    return parser


def test_every_history_command_and_watch_option_has_help_and_is_documented():
    for command in ("log", "diff", "checkout", "restore"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Example" in result.output
        assert f"dcloop {command} roman" in DOC
    sync_help = CliRunner().invoke(cli, ["sync", "--help"]).output
    for option in ("--watch", "--interval", "--settle"):
        assert option in sync_help and option in DOC
    top_help = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    assert "3 project locked" in top_help and "4 stopped at [sync] max_minutes" in top_help
    assert "5 the lock's holder ran past max_minutes" in top_help
    assert "| 3 | another dcloop process holds the project's lock" in DOC
    assert "| 4 | the sync ran past `[sync] max_minutes`" in DOC
    assert "| 5 | the lock's holder has run past `[sync] max_minutes`" in DOC


def crontab_line() -> str:
    [line] = [raw for raw in (REPO / "scripts/crontab").read_text().splitlines() if raw and not raw.startswith("#")]
    return line


def test_the_crontab_line_and_the_systemd_units_run_a_sync():
    line = crontab_line()
    assert re.fullmatch(r"(\S+ ){5}cd \S+ && \S+/dcloop sync \. >> \S+ 2>&1; rc=\$\?; .*", line)
    assert line in DOC
    service, timer, watch = unit("dcloop-sync@.service"), unit("dcloop-sync@.timer"), unit("dcloop-watch@.service")
    # 4 (stopped at max_minutes) and 5 (an overrun lock holder) must count as failures
    assert service["Service"]["Type"] == "oneshot" and service["Service"]["SuccessExitStatus"] == "3"
    assert service["Service"]["ExecStart"].endswith("/dcloop sync .")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00" and timer["Install"]["WantedBy"] == "timers.target"
    assert watch["Service"]["ExecStart"].endswith("dcloop sync . --watch --interval 10 --settle 60")
    assert watch["Service"]["KillSignal"] == "SIGTERM"


@pytest.mark.parametrize("code, reported", [(0, False), (1, True), (3, False), (4, True), (5, True)])
def test_the_crontab_line_prints_a_line_for_cron_to_mail_on_every_exit_but_0_and_3(tmp_path, code, reported):
    fake = tmp_path / "dcloop"
    fake.write_text(f"#!/bin/sh\necho progress >&2\nexit {code}\n")
    fake.chmod(0o755)
    (tmp_path / ".dcloop").mkdir()
    command = crontab_line().split(" ", 5)[5]
    command = command.replace("/srv/dcloop/roman", str(tmp_path)).replace("/opt/dcloop/.venv/bin/dcloop", str(fake))
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True)
    expected = (f"dcloop sync in {tmp_path} failed with exit code {code}; see .dcloop/nightly.log\n"
                if reported else "")
    assert done.stdout + done.stderr == expected
    assert (tmp_path / ".dcloop/nightly.log").read_text() == "progress\n"
