"""The command line, through click's CliRunner: exit codes and exact messages."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop.cli import cli
from tests.conftest import TINY_MODEL, replace_setting, write_digits


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def tiny(root):
    text = (root / "dcloop.toml").read_text()
    for section, values in TINY_MODEL.items():
        for key, value in values.items():
            text = replace_setting(text, section, key, value)
    (root / "dcloop.toml").write_text(text)


def roman_tree(base):
    for split, per_class in (("train", 8), ("val", 3), ("label_book", 2)):
        write_digits(base / split / "1", classes=(1,), per_class=per_class, seed=len(split))
        write_digits(base / split / "7", classes=(7,), per_class=per_class, seed=len(split))
    return base


@pytest.mark.training
def test_init_from_a_split_folder_tree_then_sync_and_status(tmp_path):
    source = roman_tree(tmp_path / "data")
    result = run("init", tmp_path / "p", "--from-folder", source)
    assert result.exit_code == 0, result.output
    assert "Created" in result.output and "16 train, 6 val, 4 test" in result.output
    assert "classes 1, 7" in result.output
    root = tmp_path / "p"
    assert {p.name for p in root.iterdir()} >= {"dcloop.toml", "labels.csv", "results.csv", ".dcloop"}
    tiny(root)
    result = run("sync", root, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trained"] and report["result"]["rows_test"] == "4"
    result = run("sync", root)
    assert result.exit_code == 0 and result.stdout.startswith("Nothing changed since run")
    status = json.loads(run("status", root, "--json").stdout)
    assert status["version"] == report["version"] and status["edited_since_training"] == 0
    assert status["per_class"]["7"] == {"train": 8, "val": 3, "test": 2, "exclude": 0}
    text = run("status", root).stdout
    assert "label version  " + report["version"] in text and "last score     val " in text


def test_init_from_a_flat_folder_puts_everything_in_train(tmp_path):
    write_digits(tmp_path / "flat" / "a", classes=(1,), per_class=3)
    write_digits(tmp_path / "flat" / "b", classes=(7,), per_class=2)
    result = run("init", tmp_path / "p", "--from-folder", tmp_path / "flat")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p/labels.csv", dtype=str, keep_default_na=False)
    assert list(table["split"].unique()) == ["train"] and sorted(table["label"].unique()) == ["a", "b"]


def test_init_from_csv_with_explicit_classes_resolves_relative_paths(tmp_path):
    rows = write_digits(tmp_path / "imgs", classes=(1, 7), per_class=3)
    rows.to_csv(tmp_path / "list.csv", index=False)
    result = run("init", tmp_path / "p", "--from-csv", tmp_path / "list.csv", "--classes", "1,7,9")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p/labels.csv", dtype=str, keep_default_na=False)
    assert all((tmp_path / "imgs").as_posix() in u for u in table["url"])
    assert "classes = [\"1\", \"7\", \"9\"]" in (tmp_path / "p/dcloop.toml").read_text()


def test_init_refuses_an_existing_project_and_needs_one_source(tmp_path):
    write_digits(tmp_path / "flat" / "a", classes=(1,), per_class=1)
    assert run("init", tmp_path / "p", "--from-folder", tmp_path / "flat").exit_code == 0
    again = run("init", tmp_path / "p", "--from-folder", tmp_path / "flat")
    assert again.exit_code == 1 and "is a dcloop project already" in again.output
    neither = run("init", tmp_path / "q")
    assert neither.exit_code == 2 and "give exactly one of --from-folder PATH or --from-csv FILE" in neither.output


def test_errors_are_one_line_with_exit_code_1(tmp_path):
    result = run("sync", tmp_path / "nowhere")
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path / 'nowhere' / 'dcloop.toml'}: no such file. "
                                     f"Is {tmp_path / 'nowhere'} a dcloop project? Create one with 'dcloop init'.")


def test_a_bad_config_value_names_the_setting(tmp_path):
    write_digits(tmp_path / "flat" / "a", classes=(1,), per_class=1)
    run("init", tmp_path / "p", "--from-folder", tmp_path / "flat")
    toml = tmp_path / "p/dcloop.toml"
    toml.write_text(replace_setting(toml.read_text(), "model", "epochs", 0))
    result = run("sync", tmp_path / "p")
    assert result.exit_code == 1 and "model.epochs: Input should be greater than or equal to 1" in result.output


def test_help_and_version():
    assert "Exit codes: 0 success" in run("--help").output
    assert run("--version").output.startswith("dcloop, version ")
    for command in ("init", "sync", "quickstart", "status"):
        assert "Example" in run(command, "-h").output


def test_quick_and_fast_together_are_a_usage_error(tmp_path):
    result = run("sync", tmp_path, "--quick", "--fast")
    assert result.exit_code == 2 and "Error: --quick and --fast are two schedules: pick one." in result.output
    result = run("sync", tmp_path, "--fast", "--epochs", "3")
    assert result.exit_code == 2 and "Error: --fast sets its own epochs: drop --epochs" in result.output
