"""log, diff, checkout and restore on a project with three label versions."""

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop.cli import cli
from dcloop.config import load_config
from dcloop.errors import DcloopError
from dcloop.history import History
from dcloop.lock import ProjectLock
from dcloop.history import utc_now
from dcloop.pull import current_table
from dcloop.backends.csv import CsvBackend
from dcloop.project import init_project
from tests.conftest import replace_setting, split_rows, write_digits
from tests.test_sync import edit, labels, results


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """v1 and v2 trained (one label edited between them), v3 recorded untrained (a split edited, a row deleted)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("history") / "proj"
    init_project(root, split_rows(write_digits(root / "images", per_class=6)))
    text = (root / "dcloop.toml").read_text()
    for section, key, value in (("model", "epochs", 1), ("model", "batch_size", 16), ("suspicion", "folds", 2)):
        text = replace_setting(text, section, key, value)
    (root / "dcloop.toml").write_text(text)
    assert run("sync", root).exit_code == 0
    table = labels(root)
    first, second, third, noted = table["id"][:4]
    edit(root, first, label="7" if table["label"][0] != "7" else "1")
    edit(root, noted, note="looked at it twice")
    assert run("sync", root).exit_code == 0
    edit(root, second, split="exclude")
    table = labels(root)
    table[table["id"] != third].to_csv(root / "labels.csv", index=False)
    config = load_config(root, environ={})
    History(root / ".dcloop").record(current_table(CsvBackend(root / "labels.csv", root / "results.csv"), config),
                                     utc_now())
    torch.set_num_threads(threads)
    return root, list(History(root / ".dcloop").index()["version"]), (first, second, third, noted)


@pytest.fixture
def three_versions(built, tmp_path):
    """A copy of the built project for each test, so a test may change it."""
    root, versions, ids = built
    copy = tmp_path / "proj"
    shutil.copytree(root, copy)
    return copy, versions, ids


def test_log_shows_each_version_newest_first_with_its_changes_and_score(three_versions):
    root, (v1, v2, v3), _ = three_versions
    lines = run("log", root).stdout.splitlines()
    assert lines[0].split() == ["version", "recorded", "(UTC)", "rows", "changes", "val", "test", "run"]
    assert [line.split()[0] for line in lines[1:]] == [v3, v2, v1]
    assert "-1 rows, 1 splits" in lines[1] and lines[1].rstrip().endswith("-  -")
    assert "1 labels" in lines[2] and "+18 rows" in lines[3]
    entries = json.loads(run("log", root, "--json").stdout)
    scores = results(root).set_index("label_version")
    assert [e["val_accuracy"] for e in entries] == ["", scores.loc[v2, "val_accuracy"], scores.loc[v1, "val_accuracy"]]
    assert [e["run_id"] for e in entries[1:]] == [scores.loc[v2, "run_id"], scores.loc[v1, "run_id"]]
    assert (entries[0]["rows"], entries[0]["removed"], entries[0]["split_changed"]) == ("17", 1, 1)


def test_diff_between_two_versions_by_prefix(three_versions):
    root, (v1, v2, v3), (first, second, third, _) = three_versions
    result = run("diff", root, v1[:6], v3[:7])
    assert result.exit_code == 0 and result.stderr.strip() == f"dcloop: 3 row(s) differ from version {v1} to {v3}"
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {first, second, third}
    assert " -> " in rows[first].split("changed")[1] and "train -> exclude" in rows[second]
    assert rows[third].split()[1] == "removed"
    data = json.loads(run("diff", root, v2, v3, "--json").stdout)
    assert (data["a"], data["b"]) == (v2, v3) and {r["id"] for r in data["rows"]} == {second, third}
    missing = run("diff", root, "zzz", v1)
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ") and "no label version 'zzz'" in missing.stderr


def test_a_version_prefix_must_be_unique(tmp_path):
    history = History(tmp_path)
    history.root.mkdir(parents=True)
    pd.DataFrame({"version": ["abc111", "abc222"], "parent": ["", "abc111"], "time_utc": ["t1", "t2"],
                  "rows": ["1", "1"], "changed": ["1", "1"]}).to_csv(history.root / "index.csv", index=False)
    assert history.resolve("abc2") == "abc222"
    with pytest.raises(DcloopError, match="prefix 'abc' is ambiguous: it matches abc111, abc222"):
        history.resolve("abc")


def test_checkout_copies_a_versions_class_folders(three_versions, tmp_path):
    root, (v1, v2, v3), (first, *_) = three_versions
    dest = tmp_path / "out"
    result = run("checkout", root, v2[:8], "--to", dest)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Wrote 18 images of version {v2} to {dest} (13 train, 5 val, 0 test).")
    split, label = History(root / ".dcloop").snapshot(v2).set_index("id").loc[first, ["split", "label"]]
    [copied] = (dest / split / label).glob(f"{first}.png")
    assert copied.stat().st_nlink == 1  # a copy: editing it cannot touch dcloop's cache
    assert len(list(dest.glob("*/*/*.png"))) == 18
    again = run("checkout", root, v3, "--to", dest)
    assert again.exit_code == 1 and "not an empty folder" in again.stderr
    done = json.loads(run("checkout", root, v3, "--to", tmp_path / "v3", "--json").stdout)
    assert done["images"] == 16 and done["skipped"] == {"not in train/val/test": 1}


def test_restore_asks_then_writes_labels_and_splits_back_as_a_new_version(three_versions):
    root, (v1, v2, v3), (first, second, third, noted) = three_versions
    before = (root / "labels.csv").read_bytes()
    declined = run("restore", root, v1, input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert (root / "labels.csv").read_bytes() == before

    result = run("restore", root, v1[:5], "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Restored the labels and splits of version {v1}: 3 row(s) written, "
                                    f"recorded as version {v1}.")
    table = labels(root).set_index("id")
    snapshot = History(root / ".dcloop").snapshot(v1).set_index("id")
    assert table.loc[snapshot.index, ["url", "label", "split"]].equals(snapshot[["url", "label", "split"]])
    assert table.index[-1] == third and table.loc[third, "prediction"] == ""  # added back at the end
    assert table.loc[noted, "note"] == "looked at it twice" and table.loc[first, "prediction"] != ""
    log = json.loads(run("log", root, "--json").stdout)
    assert [e["version"] for e in log] == [v1, v3, v2, v1] and log[0]["parent"] == v3
    with ProjectLock(root / ".dcloop", "dcloop sync --watch"):
        locked = run("restore", root, v2, "--yes")
    assert locked.exit_code == 3 and "(dcloop sync --watch)" in locked.stderr
    assert labels(root).set_index("id").loc[first, "label"] == snapshot.loc[first, "label"]  # not v2's
    assert run("restore", root, v1, "--yes").stdout.startswith(f"The table already has the labels and splits of version {v1}")


def test_apply_restore_sets_label_and_split_by_id_adds_lost_rows_and_is_idempotent():
    from dcloop import table as tbl

    snapshot = pd.DataFrame({"id": ["a", "b", "c"], "url": ["a.png", "b.png", "c.png"],
                             "label": ["1", "7", "0"], "split": ["train", "val", "train"]})
    current = tbl.normalize(pd.DataFrame({
        "id": ["b", "a", "d"], "url": ["b.png", "a-moved.png", "d.png"], "label": ["1", "1", "7"],
        "split": ["train", "TRAIN", "val"], "note": ["mine", "", ""], "prediction": ["7", "1", "7"],
        "mine": ["x", "y", "z"]}), "t")
    restored = tbl.apply_restore(current, snapshot)
    assert list(restored["id"]) == ["b", "a", "d", "c"]
    assert list(restored["label"]) == ["7", "1", "7", "0"] and list(restored["split"]) == ["val", "train", "val", "train"]
    assert list(restored["url"]) == ["b.png", "a-moved.png", "d.png", "c.png"]  # urls are not restored
    assert list(restored["note"]) == ["mine", "", "", ""] and list(restored["mine"]) == ["x", "y", "z", ""]
    assert list(restored["prediction"]) == ["7", "1", "7", ""]
    assert tbl.apply_restore(restored, snapshot).equals(restored)
    assert tbl.rows_changed(current, restored) == 3 and tbl.rows_changed(restored, restored) == 0


def test_a_results_row_belongs_to_the_latest_entry_of_its_version_recorded_before_it():
    from dcloop.history import scores_by_entry

    index = pd.DataFrame({"version": ["v1", "v2", "v1"], "time_utc": ["2026-01-01T00:00:00Z",
                                                                      "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]})
    results = pd.DataFrame({"label_version": ["v1", "v2", "v1", "v1"], "run_id": ["r1", "r2", "r3", "r4"],
                            "time_utc": ["2026-01-01T01:00:00Z", "2026-01-02T01:00:00Z",
                                         "2026-01-01T02:00:00Z", "2026-01-03T01:00:00Z"]})
    assert {n: row["run_id"] for n, row in scores_by_entry(index, results).items()} == {0: "r3", 1: "r2", 2: "r4"}
