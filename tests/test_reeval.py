"""dcloop reeval: stored checkpoints scored again on the current split, as results rows of kind reeval."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop import splits
from dcloop.backends.csv import CsvBackend
from dcloop.cli import cli
from dcloop.errors import DcloopError
from dcloop.reeval import pick_runs
from dcloop.sync import sync
from tests.test_sync import labels, results


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_pick_runs():
    trained = ["aaa111", "bbb222", "ccc333"]
    assert pick_runs("all", trained) == trained
    assert pick_runs("last 2", trained) == pick_runs("last:2", trained) == pick_runs("2", trained) == trained[1:]
    assert pick_runs("ccc, aa", trained) == ["aaa111", "ccc333"]
    with pytest.raises(DcloopError, match="--runs: 'zz' matches no stored run"):
        pick_runs("zz", trained)


@pytest.mark.training
def test_a_split_change_followed_by_reeval_scores_the_old_model_on_the_new_split(make_project, config_of):
    root = make_project(overrides={"model": {"epochs": 2}, "suspicion": {"folds": 2}})
    config = config_of(root)
    first = sync(root, config)
    trained = first.result

    same = run("reeval", root, "--json")
    assert same.exit_code == 0, same.output
    [again] = json.loads(same.stdout)
    # Same split, same model: the re-evaluation reproduces the training's own scores.
    assert (again["val_accuracy"], again["val_macro_f1"]) == (trained["val_accuracy"], trained["val_macro_f1"])
    assert (again["kind"], again["reeval_of"], again["reeval_seen"]) == ("reeval", trained["run_id"], "0")
    assert again["label_version"] == first.version and again["run_id"] != trained["run_id"]

    proposal = splits.plan(root, config, val=0.5, seed=1)
    to_val = set(proposal.moves.loc[proposal.moves["to"] == "val", "id"])
    assert to_val
    applied = splits.apply(root, config, proposal.moves)
    result = run("reeval", root, "--runs", "last 1")
    assert result.exit_code == 0, result.output
    rows = results(root)
    assert list(rows["kind"]) == ["full", "reeval", "reeval"]
    after = rows.iloc[-1]
    assert (after["reeval_of"], after["label_version"]) == (trained["run_id"], applied["version"])
    val_rows = (labels(root)["split"] == "val").sum()
    assert after["rows_val"] == str(val_rows) and after["rows_val"] != trained["rows_val"]
    assert after["reeval_seen"] == str(len(to_val))  # rows moved from train into val: the old model saw them
    assert after["val_accuracy"] != ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "val", "test", "seen", "label", "version"]
    assert lines[1].split()[:2] == [trained["run_id"], after["val_accuracy"]]
    assert "flattered" in result.stdout

    log = json.loads(run("log", root, "--json").stdout)
    assert log[0]["version"] == applied["version"] and log[0]["run_id"] == ""  # no training under it yet
    assert [r["reeval_of"] for r in log[0]["reevals"]] == [trained["run_id"]]
    assert log[1]["run_id"] == trained["run_id"] and log[1]["val_accuracy"] == trained["val_accuracy"]
    text = run("log", root).stdout
    assert f"reeval of run {trained['run_id']}" in text
    status = json.loads(run("status", root, "--json").stdout)
    assert status["last_result"]["kind"] == "full"


def test_reeval_without_a_trained_run_says_what_to_do(make_project):
    root = make_project()
    result = run("reeval", root)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {root}: no stored checkpoints to re-evaluate (runs: 'all'); "
                             f"run dcloop sync first.\n")


def test_old_results_files_without_the_reeval_columns_stay_readable(tmp_path):
    old = pd.DataFrame([{"run_id": "a1", "kind": "full", "val_accuracy": "0.5"}])
    old.to_csv(tmp_path / "results.csv", index=False)
    backend = CsvBackend(tmp_path / "labels.csv", tmp_path / "results.csv")
    backend.append_result({"run_id": "b2", "kind": "reeval", "reeval_of": "a1", "val_accuracy": "0.75"})
    rows = backend.read_results()
    assert list(rows["run_id"]) == ["a1", "b2"] and list(rows["reeval_of"]) == ["", "a1"]
