"""dcloop.toml, DCLOOP_* variables and command-line flags: a bad value names where it was set."""

import pytest
from click.testing import CliRunner

from dcloop.cli import cli
from dcloop.config import (FAST_SCHEDULE, SCHEDULES, Config, fast_config, fast_schedule_text, load_config, quick_config,
                           schedule_of, scheduled)
from dcloop.errors import ConfigError


@pytest.fixture
def project(make_project):
    return make_project()


def test_a_bad_value_in_the_file_names_the_file(project):
    text = (project / "dcloop.toml").read_text().replace("epochs = 3", 'epochs = "many"')
    (project / "dcloop.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"dcloop\.toml: model\.epochs: "):
        load_config(project, environ={})


def test_a_bad_environment_variable_names_the_variable(project):
    with pytest.raises(ConfigError, match=r"^the environment \(DCLOOP_MODEL_EPOCHS\): model\.epochs: "):
        load_config(project, environ={"DCLOOP_MODEL_EPOCHS": "many"})


def test_a_bad_override_names_the_flag(project):
    with pytest.raises(ConfigError, match=r"^the command line \(--batch-size\): model\.batch_size: "):
        load_config(project, {"model": {"batch_size": 0}}, environ={})


def test_a_value_outside_an_options_range_is_a_usage_error(project):
    result = CliRunner().invoke(cli, ["sync", str(project), "--epochs", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--epochs'" in result.output


def test_every_command_that_takes_dir_defaults_it_to_the_current_folder_but_those_with_versions():
    needs_dir = {name for name, command in cli.commands.items()
                 if any(p.name == "directory" and p.required for p in command.params)}
    assert needs_dir == {"init", "diff", "checkout", "restore"}


@pytest.mark.parametrize("args", [["augment", "--class", "a", "--thin", "--budget", "1"],
                                  ["split", "--check", "--apply"], ["sync", "--quick", "--fast"],
                                  ["sync", "--fast", "--epochs", "3"]])
def test_options_that_do_not_go_together_are_a_usage_error_before_the_project_is_read(tmp_path, args):
    result = CliRunner().invoke(cli, [args[0], str(tmp_path), *args[1:]])  # not a project: no dcloop.toml
    assert result.exit_code == 2 and "dcloop.toml" not in result.output
    assert not (tmp_path / ".dcloop").exists()  # no lock taken


def test_the_fast_schedule_replaces_batch_learning_rate_and_epochs_and_keeps_the_rest():
    mine = Config.model_validate({"model": {"epochs": 7, "batch_size": 4, "learning_rate": 0.5, "image_size": 16,
                                            "seed": 9, "threads": 1, "seeds": 3, "preset": "resnet18"}})
    fast = fast_config(mine).model
    assert {k: getattr(fast, k) for k in FAST_SCHEDULE} == FAST_SCHEDULE
    assert (fast.image_size, fast.seed, fast.threads, fast.seeds, fast.preset) == (16, 9, 1, 3, "resnet18")
    assert mine.model.epochs == 7, "the config passed in is left as it was"


def test_each_schedule_has_its_own_fingerprint():
    recipe = Config()
    prints = {s: scheduled(recipe, s).model.fingerprint() for s in SCHEDULES}
    assert len(set(prints.values())) == 3
    assert prints["full"] == recipe.model.fingerprint()
    assert scheduled(recipe, "quick") == quick_config(recipe) and scheduled(recipe, "fast") == fast_config(recipe)


@pytest.mark.parametrize("quick, fast, schedule", [(False, False, "full"), (True, False, "quick"),
                                                   (False, True, "fast")])
def test_schedule_of_the_flags(quick, fast, schedule):
    assert schedule_of(quick, fast) == schedule


def test_quick_and_fast_together_are_refused():
    with pytest.raises(ConfigError, match="--quick and --fast are two schedules: pick one"):
        schedule_of(quick=True, fast=True)


def test_the_sync_help_states_the_fast_schedule_it_runs():
    result = CliRunner().invoke(cli, ["sync", "-h"])
    assert fast_schedule_text() in " ".join(result.output.split())
