"""The documentation cannot drift from the code: the site builds strictly, every command and option
has help and is documented, every documented command and option exists, and the tutorial runs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from dcloop import reference
from dcloop.cli import cli
from dcloop.config import Config

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]
GLOBAL_OPTIONS = {"-h", "--help", "--version"}


def options_of(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts} | GLOBAL_OPTIONS


def code_of(text: str) -> list[str]:
    """The code in a Markdown page: fenced blocks' lines and inline `code` spans."""
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [line for block in fenced for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", prose)


def mentions(text: str):
    """(command, options) for each 'dcloop COMMAND ... --option ...' in the page's code, up to the next 'dcloop '."""
    for line in code_of(text):
        # a command line: dcloop at the start, after a path, or after &&, ; or a prompt (not inside a message)
        for part in re.split(r"(?:^\s*|&&\s*|;\s*|\$\s*|/)(?=dcloop )", line)[1:]:
            part = re.split(r"\s(?:;|&&|\|\|?|>>?|2>|#)", part)[0]  # the command ends at a shell separator
            words = part.split()
            if len(words) > 1 and re.fullmatch(r"[a-z]+", words[1]):
                yield words[1], {w.split("=")[0] for w in re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", part)}


def test_every_command_and_option_has_help_with_an_example():
    for name, command in cli.commands.items():
        assert command.help and "Example" in command.help, f"dcloop {name} has no example in its help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"dcloop {name} {param.opts[0]} has no help text"


def test_every_documented_command_and_option_exists():
    wrong = []
    for page in PAGES:
        for command, options in mentions(page.read_text()):
            if command not in cli.commands:
                wrong.append(f"{page.relative_to(REPO)}: dcloop {command} is not a command")
                continue
            for option in options - options_of(cli.commands[command]):
                wrong.append(f"{page.relative_to(REPO)}: dcloop {command} has no option {option}")
    assert wrong == []


def test_every_command_and_config_key_is_in_the_reference():
    commands, config = reference.render("commands"), reference.render("config")
    for name, command in cli.commands.items():
        assert f"## `dcloop {name}`" in commands
        for option in options_of(command) - GLOBAL_OPTIONS:
            assert f"`{option}`" in commands, f"{option} of dcloop {name}"
    for section, info in Config.model_fields.items():
        for key, field in info.annotation.model_fields.items():
            assert f"| `{key}` |" in config
            assert field.description, f"[{section}] {key} has no description"


def test_the_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists():
        pytest.skip("mkdocs is not installed (pip install -e '.[test]' installs it)")
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    built = (tmp_path / "site" / "reference" / "commands" / "index.html").read_text()
    assert "dcloop sync" in built and "--accept-row-drop" in built


def tutorial_commands() -> list[str]:
    """The lines of the tutorial's code blocks marked <!-- test: run -->."""
    text = (REPO / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"<!-- test: run -->\s*```bash\n(.*?)```", text, re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_tutorial_runs(tmp_path):
    commands = tutorial_commands()
    assert commands[0] == "dcloop quickstart demo" and len(commands) >= 4
    env = {**os.environ, "DCLOOP_MODEL_EPOCHS": "1", "DCLOOP_MODEL_THREADS": "1"}  # the same steps, one epoch
    dcloop = str(Path(sys.executable).parent / "dcloop")
    for line in commands:
        words = shlex.split(line)
        assert words[0] == "dcloop"
        result = subprocess.run([dcloop, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{line}:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "demo" / "report" / "index.html").exists()
