"""One sync cycle on real image files and a real CSV, with a tiny training schedule."""

import shutil

import pandas as pd
import pytest

from dcloop.backends.csv import read_csv
from dcloop.errors import CapError, SchemaError
from dcloop.history import History
from dcloop.sync import sync
from tests.conftest import split_rows, write_digits


KEEP_ROW_ORDER = {"suspicion": {"sort": False}}  # for tests that find rows by position


def labels(root):
    return read_csv(root / "labels.csv")


def results(root):
    return read_csv(root / "results.csv")


def edit(root, row_id, **cells):
    table = labels(root)
    for column, value in cells.items():
        table.loc[table["id"] == row_id, column] = value
    table.to_csv(root / "labels.csv", index=False)


@pytest.mark.training
def test_sync_trains_writes_back_every_row_and_records_a_result(make_project, config_of):
    root = make_project()
    report = sync(root, config_of(root))
    assert report.trained and report.new_version
    table = labels(root)
    assert (table["prediction"] != "").all() and (table["suspicion"] != "").all()
    assert table["suspicion"].astype(float).between(0, 1).all()
    assert table["confidence"].astype(float).between(0, 1).all()
    [result] = results(root).to_dict("records")
    assert result["label_version"] == report.version
    assert (result["rows_train"], result["rows_val"]) == ("67", "23")
    assert 0 <= float(result["val_accuracy"]) <= 1 and result["model_fingerprint"]
    assert (root / ".dcloop/versions" / report.version / "train/7").is_dir()
    materialized = list((root / ".dcloop/versions" / report.version).glob("*/*/*.png"))
    assert len(materialized) == 90


@pytest.mark.training
def test_second_sync_without_changes_does_not_retrain(make_project, config_of):
    root = make_project()
    sync(root, config_of(root))
    before = (root / "labels.csv").read_bytes()
    report = sync(root, config_of(root))
    assert not report.trained
    assert report.message.startswith("Nothing changed since run ")
    assert "Use --force to retrain" in report.message
    assert len(results(root)) == 1
    assert (root / "labels.csv").read_bytes() == before
    assert sync(root, config_of(root), force=True).trained
    assert len(results(root)) == 2


@pytest.mark.training
def test_an_edited_label_makes_a_new_version_and_a_new_result(make_project, config_of):
    root = make_project()
    first = sync(root, config_of(root))
    row_id = labels(root).query("label != '7'")["id"].iloc[0]  # rows are sorted by suspicion now
    edit(root, row_id, label="7")
    second = sync(root, config_of(root))
    assert second.trained and second.version != first.version
    assert len(results(root)) == 2 and results(root)["labels_changed"].iloc[-1] == "1"
    changes = History(root / ".dcloop").changes(second.version)
    assert list(changes["id"]) == [row_id] and changes["label_after"][0] == "7"


@pytest.mark.training
def test_same_data_config_and_seed_give_the_same_score(make_project, config_of):
    # The thread count is pinned: 1 and 2 threads differ in floating-point noise.
    pinned = {"model": {"epochs": 3, "batch_size": 16, "threads": 1}}
    first = make_project(name="a", overrides=pinned)
    second = make_project(name="b", overrides=pinned)
    sync(first, config_of(first))
    sync(second, config_of(second))
    columns = ["val_accuracy", "val_macro_f1", "best_epoch"]
    assert results(first)[columns].equals(results(second)[columns])
    assert labels(first)["suspicion"].equals(labels(second)["suspicion"])


@pytest.mark.training
def test_a_wrong_training_label_gets_a_high_out_of_sample_suspicion(planted_error, config_of):
    root, wrong_url = planted_error
    sync(root, config_of(root))
    table = labels(root)
    suspicion = table["suspicion"].astype(float)
    planted = table.index[table["url"] == wrong_url][0]
    assert suspicion[planted] > 0.5
    assert suspicion.rank(ascending=False)[planted] <= 3
    assert table.loc[planted, "flags"].startswith("label? model says 0")


@pytest.mark.training
def test_bad_rows_are_flagged_left_out_and_the_sync_goes_on(make_project, config_of, image_host):
    base, www, _ = image_host
    root = make_project(overrides=KEEP_ROW_ORDER)
    (root / "images/not-an-image.png").write_text("hello")
    good = (root / "images").glob("*.png").__next__().read_bytes()
    (root / "images/truncated.png").write_bytes(good[: len(good) // 2])
    extra = pd.DataFrame({"url": ["images/missing.png", "images/not-an-image.png", "images/truncated.png",
                                  "", "images/d0-0000.png", f"{base}/status/404"],
                          "label": ["0", "1", "7", "0", "cat", "1"]})
    table = labels(root)
    pd.concat([table, extra], ignore_index=True).fillna("").to_csv(root / "labels.csv", index=False)
    report = sync(root, config_of(root))
    assert report.trained
    after = labels(root).tail(6)
    flags = list(after["flags"])
    assert flags[0].startswith("unreadable: missing file")
    assert flags[1].startswith("unreadable: unreadable image")
    assert flags[2].startswith("unreadable: unreadable image")
    assert flags[3] == "blank-url" and flags[4].startswith("unknown-label:cat")
    assert flags[5] == "unreadable: http 404"
    assert set(after["id"]) <= set(report.flagged)
    assert results(root)["rows_train"].iloc[0] == "67"
    assert (after["url"] == extra["url"].values).all() and (after["label"] == extra["label"].values).all()


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a text CSV file"),
    (b"", "the file is empty"),
    (b'url,label\n"a.png,1\n', "not a valid CSV file"),
    (b"path,class\na.png,1\n", r"missing required column\(s\) url, label"),
    (b"id,url,label\nx,a.png,1\nx,b.png,1\n", r"duplicate id\(s\): 'x' on rows 2, 3"),
])
def test_a_broken_table_is_a_clear_error_and_nothing_is_written(make_project, config_of, content, message):
    root = make_project()
    (root / "labels.csv").write_bytes(content)
    with pytest.raises(SchemaError, match=message) as info:
        sync(root, config_of(root))
    assert "labels.csv" in str(info.value)
    assert (root / "labels.csv").read_bytes() == content
    assert not (root / ".dcloop/versions").exists() and results(root).empty


@pytest.mark.training
def test_a_label_edit_saved_during_training_is_kept(make_project, config_of):
    root = make_project()
    row_id = labels(root)["id"][0]

    def person_saves_during_training(message):
        if message.startswith("epoch 2/"):
            edit(root, row_id, label="1", note="fixed by hand")

    sync(root, config_of(root), progress=person_saves_during_training)
    table = labels(root).set_index("id")
    assert (table.loc[row_id, "label"], table.loc[row_id, "note"]) == ("1", "fixed by hand")
    assert (table["prediction"] != "").all()
    assert sync(root, config_of(root)).trained  # the edit is a change: the next sync trains on it


@pytest.mark.training
def test_rows_added_without_id_get_one_and_are_trained_on(make_project, config_of):
    root = make_project(overrides=KEEP_ROW_ORDER)
    sync(root, config_of(root))
    table = labels(root)
    new = table.iloc[:2].copy()
    new["id"] = ""
    new[["prediction", "confidence", "label_prob", "suspicion", "flags", "split"]] = ""
    pd.concat([table, new], ignore_index=True).to_csv(root / "labels.csv", index=False)
    report = sync(root, config_of(root))
    after = labels(root)
    assert after["id"].is_unique and (after["id"] != "").all() and report.trained
    assert list(after["split"].tail(2)) == ["train", "train"]
    assert results(root)["rows_train"].iloc[-1] == "69"


def test_over_the_cap_is_an_error_with_the_counts(make_project, config_of):
    root = make_project(overrides={"project": {"cap": 50}})
    with pytest.raises(CapError, match=r"90 labeled rows in train\+val \(67 train, 23 val\) exceed the cap of 50"):
        sync(root, config_of(root))


@pytest.mark.training
def test_http_images_are_fetched_once_and_cached(make_project, config_of, image_host, tmp_path):
    base, www, server = image_host
    rows = split_rows(write_digits(tmp_path / "src", per_class=10))
    for url in rows["url"]:
        shutil.copy(tmp_path / url, www)
    rows["url"] = [f"{base}/{u.split('/')[-1]}" for u in rows["url"]]
    root = make_project(rows)
    sync(root, config_of(root))
    assert len(server.requests) == 30
    sync(root, config_of(root), force=True)
    assert len(server.requests) == 30
