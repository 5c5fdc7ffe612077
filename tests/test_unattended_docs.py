"""The docs and scripts for running unattended say what the code does."""

import configparser
import re

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
    assert "3 project locked" in " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    assert "| 3 | another dcloop process holds the project's lock" in DOC


def test_the_crontab_line_and_the_systemd_units_run_a_sync():
    [line] = [raw for raw in (REPO / "scripts/crontab").read_text().splitlines() if raw and not raw.startswith("#")]
    assert re.fullmatch(r"(\S+ ){5}cd \S+ && \S+/dcloop sync \. >> \S+ 2>&1", line)
    assert line in DOC
    service, timer, watch = unit("dcloop-sync@.service"), unit("dcloop-sync@.timer"), unit("dcloop-watch@.service")
    assert service["Service"]["Type"] == "oneshot" and service["Service"]["SuccessExitStatus"] == "3"
    assert service["Service"]["ExecStart"].endswith("/dcloop sync .")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00" and timer["Install"]["WantedBy"] == "timers.target"
    assert watch["Service"]["ExecStart"].endswith("dcloop sync . --watch --interval 10 --settle 60")
    assert watch["Service"]["KillSignal"] == "SIGTERM"
