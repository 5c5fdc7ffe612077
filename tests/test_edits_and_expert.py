"""Issue 8 on small projects with tiny epochs: sync --seeds, what edits did, model vs expert."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop.backends.csv import CsvBackend, to_csv_text
from dcloop.cli import cli
from dcloop.effect import run_predictions
from dcloop.table import RESULT_COLUMNS
from dcloop.sync import sync
from tests.conftest import split_rows, write_digits
from tests.test_sync import edit, labels, results

SMALL = {"model": {"epochs": 2, "batch_size": 16}, "suspicion": {"folds": 2, "sort": False}}
OLD_COLUMNS = RESULT_COLUMNS[:RESULT_COLUMNS.index("prev_precision") + 1]  # what results.csv held before issue 8


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def small_project(make_project, tmp_path, per_class=12):
    return make_project(split_rows(write_digits(tmp_path / "proj" / "images", per_class=per_class)), SMALL)


@pytest.mark.training
def test_seeds_record_mean_and_spread_keep_the_first_seeds_predictions_and_the_skip(make_project, tmp_path):
    root = small_project(make_project, tmp_path)
    assert run("sync", root).exit_code == 0
    first = results(root).iloc[0]
    predictions = labels(root)["prediction"].tolist()
    # An older dcloop wrote results.csv without the new columns; it stays readable and gains them.
    old = results(root)[OLD_COLUMNS]
    (root / "results.csv").write_text(to_csv_text(old))

    seeded = run("sync", root, "--seeds", "2")  # a new training key: retrains without --force
    assert seeded.exit_code == 0, seeded.output
    assert "seed 2/2 (seed 124): training" in seeded.stderr
    rows = results(root)
    assert list(rows.columns[:len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert (rows.iloc[0][RESULT_COLUMNS[len(OLD_COLUMNS):]] == "").all()
    second = rows.iloc[1]
    assert second["seeds"] == "2" and second["val_std"] != ""
    # Seed 1 of 2 is the same training as the one-seed run: same score, same predictions.
    assert second["val_accuracy"] == first["val_accuracy"]
    assert labels(root)["prediction"].tolist() == predictions
    other = 2 * float(second["val_mean"]) - float(first["val_accuracy"])
    assert np.isclose(float(second["val_std"]), abs(other - float(first["val_accuracy"])) / np.sqrt(2), atol=2e-4)
    assert second["compared_run"] == first["run_id"]
    assert float(second["val_change"]) == round(float(second["val_mean"]) - float(first["val_accuracy"]), 4)
    assert second["edits"] == "0"

    again = run("sync", root, "--seeds", "2")
    assert again.exit_code == 0 and "Nothing changed" in again.output
    log = json.loads(run("log", root, "--json").output)
    assert log[0]["seeds"] == "2" and log[0]["compared_run"] == first["run_id"]


@pytest.mark.training
def test_log_shows_what_the_edits_did_against_the_previous_full_run_not_a_quick_one(make_project, tmp_path):
    rows = split_rows(write_digits(tmp_path / "proj" / "images", per_class=12))
    wrong = rows.index[rows["split"] == "train"][:3]
    truth = rows.loc[wrong, "label"].copy()
    rows.loc[wrong, "label"] = ["7" if t != "7" else "1" for t in truth]  # three planted wrong labels
    root = make_project(rows, SMALL)
    state = root / ".dcloop"
    sync(root, load(root))
    full = results(root).iloc[0]
    ids = labels(root).set_index("url").loc[rows.loc[wrong, "url"], "id"]
    for row_id, label in zip(ids, truth):
        edit(root, row_id, label=label)
    quick = sync(root, load(root), quick=True)
    assert quick.result["compared_run"] == "" and quick.result["edits"] == ""  # no earlier quick run

    report = sync(root, load(root))
    result = report.result
    assert result["compared_run"] == full["run_id"] and result["edits"] == "3"
    old_labels, old_predicted = run_predictions(state, full["run_id"], ["0", "1", "7"])
    _, new_predicted = run_predictions(state, result["run_id"], ["0", "1", "7"])
    assert int(result["edits_old_agreed"]) == sum(old_predicted[i] == t for i, t in zip(ids, truth))
    assert int(result["edits_model_agrees"]) == sum(new_predicted[i] == t for i, t in zip(ids, truth))
    assert all(old_labels[i] != t for i, t in zip(ids, truth))

    shown = run("log", root)
    assert shown.exit_code == 0
    assert (f"3 label edit(s): the new model agrees with {result['edits_model_agrees']}, "
            f"the old run had predicted {result['edits_old_agreed']}") in shown.output
    assert f"vs run {full['run_id']}: val {result['val_change']}" in shown.output


@pytest.mark.training
def test_expert_agreement_in_the_result_row_and_status_and_a_bad_expert_cell_is_flagged(make_project, tmp_path):
    root = small_project(make_project, tmp_path)
    table = labels(root)
    table["expert"] = ""
    table.loc[:5, "expert"] = table.loc[:5, "label"]
    table.loc[6, "expert"] = "7" if table.loc[6, "label"] != "7" else "0"  # the expert disagrees with the label
    table.loc[7, "expert"] = "seven"                                       # not a class
    table.to_csv(root / "labels.csv", index=False)
    bad_id = table.loc[7, "id"]

    report = sync(root, load(root))
    after = labels(root)
    assert after["expert"].tolist() == table["expert"].tolist()  # a human column: never written
    assert after.set_index("id").loc[bad_id, "flags"].endswith("expert? 'seven' is not a class")
    assert report.result["rows_train"] == str(int((table["split"] == "train").sum()))  # the row still trains
    result = results(root).iloc[0]
    assert (result["expert_label_n"], result["expert_label_agree"]) == ("7", "6")
    expert = after[after["expert"].isin(["0", "1", "7"])]
    agree = int((expert["expert"] == expert["prediction"]).sum())
    assert (result["expert_model_n"], result["expert_model_agree"]) == ("7", str(agree))

    status = run("status", root, "--json")
    info = json.loads(status.output)["expert"]
    assert info["label"]["agree"] == 6 and info["model"]["agree"] == agree
    assert [d["id"] for d in info["differ"]] == list(expert.loc[expert["expert"] != expert["prediction"], "id"])
    assert info["bad_cells"] == [{"id": bad_id, "row": 9, "column": "expert", "value": "seven"}]
    assert info["by_version"][0]["expert_label_agree"] == "6"
    text = run("status", root).output
    assert "  vs label     6/7 agree (0.857), kappa" in text
    assert f"  row 9 (id {bad_id}): expert 'seven' is not a class" in text


def test_old_results_files_stay_readable_in_every_local_backend(tmp_path):
    from dcloop.backends.memory import MemoryBackend
    path = tmp_path / "results.csv"
    path.write_text(to_csv_text(pd.DataFrame([dict.fromkeys(OLD_COLUMNS, "x")])))
    backend = CsvBackend(tmp_path / "labels.csv", path)
    backend.append_result({"run_id": "new", "seeds": "3", "expert_model_kappa": "0.5"})
    read = backend.read_results()
    assert list(read.columns) == RESULT_COLUMNS
    assert read["seeds"].tolist() == ["", "3"] and read["run_id"].tolist() == ["x", "new"]
    memory = MemoryBackend()
    memory.append_result({"run_id": "new", "seeds": "3"})
    assert memory.read_results()["val_mean"].tolist() == [""]


def load(root):
    from dcloop.config import load_config
    return load_config(root, environ={})
