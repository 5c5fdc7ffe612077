"""dcloop split: the check (counts, leakage, thin strata) and the rebalance (plan, --apply)."""

import json
import shutil

import numpy as np
import pandas as pd
from click.testing import CliRunner

from dcloop import splits, suspicion
from dcloop import table as tbl
from dcloop.backends.memory import MemoryBackend
from dcloop.cli import cli
from dcloop.history import History
from tests.test_sync import edit, labels


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def data(labels, split_of, pairs=(), clusters=None) -> splits.SplitData:
    n = len(labels)
    return splits.SplitData(np.array([f"r{i:02d}" for i in range(n)]), np.array(labels), np.array(split_of),
                            list(pairs), np.zeros(n, int) if clusters is None else np.array(clusters), "")


# --- the pure core ----------------------------------------------------------------------------

def test_link_groups_joins_chains_of_pairs():
    assert suspicion.link_groups(6, [(4, 1), (1, 3), (2, 5)]).tolist() == [0, 1, 2, 1, 1, 2]


def test_augmented_variants_are_linked_to_the_source_their_note_names():
    ids = ["src1", "v1", "v2", "other"]
    notes = ["", "augmented from src1: rotate 5", "augmented from gone99: shift 2,1", "from src1, by hand"]
    assert splits.augmented_pairs(ids, notes) == [(1, 0)]


def test_a_class_missing_from_val_is_absent_and_a_sparse_one_thin():
    labels = np.array([0] * 20 + [1] * 20 + [2] * 20 + [0] * 5 + [1] * 1 + [2] * 5)
    split_of = np.array(["train"] * 60 + ["val"] * 11)
    found = splits.thin_findings(labels, split_of, np.full(71, -1), ["a", "b", "c"])
    assert found == [{"class": "b", "cluster": None, "split": "val", "seen": 1, "expected": 3.7, "train": 20,
                      "status": "thin"}]
    split_of[60:65] = "test"  # a's 5 val rows become test: a is absent from val; test's 5 rows are too few to judge
    statuses = {(f["class"], f["split"]): f["status"] for f in splits.thin_findings(labels, split_of, np.full(71, -1),
                                                                                    ["a", "b", "c"])}
    assert statuses == {("a", "val"): "absent"}


def test_a_cluster_that_val_lacks_is_named_within_its_class():
    labels = np.zeros(60, int)
    clusters = np.array([0] * 25 + [1] * 25 + [0] * 10)
    split_of = np.array(["train"] * 50 + ["val"] * 10)
    [found] = splits.thin_findings(labels, split_of, clusters, ["a"])
    assert (found["cluster"], found["status"], found["expected"]) == (1, "absent", 5.0)


def test_rebalance_stratifies_keeps_groups_together_and_never_moves_test():
    rng = np.random.default_rng(0)
    labels = [0] * 40 + [1] * 40
    clusters = [0] * 20 + [1] * 20 + [0] * 40
    split_of = ["train"] * 80
    for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9):  # all of class 0's val rows sit in cluster 0
        split_of[i] = "val"
    split_of[79] = "test"
    pairs = [(20, 21, "exact"), (21, 22, "near"), (40, 41, "augmented"), (78, 79, "exact")]
    before = data(labels, split_of, pairs, clusters)
    moves = splits.plan_rebalance(before, {"val": 0.25}, seed=int(rng.integers(100)))
    after = np.array(split_of, dtype=object)
    after[[int(i[1:]) for i in moves["id"]]] = moves["to"].to_numpy()
    assert "test" not in set(moves["from"]) | set(moves["to"]) and after[79] == "test"
    assert after[78] == "train"  # a duplicate of a fixed test row cannot join it: left, and reported as stuck
    assert len(set(after[[20, 21, 22]])) == 1 and after[40] == after[41]
    for k, c in ((0, 0), (0, 1)):
        stratum = [i for i in range(40) if labels[i] == k and clusters[i] == c]
        assert (after[stratum] == "val").sum() == 5
    assert abs((after[40:78] == "val").sum() - 10) <= 1
    again = data(labels, list(after), pairs, clusters)
    assert splits.plan_rebalance(again, {"val": 0.25}, seed=5).empty  # a balanced split needs no moves


def test_apply_split_moves_writes_only_split_and_only_where_it_still_has_the_planned_value():
    current = tbl.normalize(pd.DataFrame({"id": ["a", "b", "c"], "url": ["a", "b", "c"], "label": ["1", "1", "7"],
                                          "split": ["train", "test", "Train"], "note": ["x", "", ""]}), "t")
    moves = pd.DataFrame({"id": ["a", "b", "c", "zz"], "from": ["train", "train", "train", "train"],
                          "to": ["val", "val", "val", "val"]})
    after = tbl.apply_split_moves(current, moves)
    assert list(after["split"]) == ["val", "test", "val"]  # b was edited to test meanwhile: kept
    assert after.drop(columns="split").equals(current.drop(columns="split"))
    assert tbl.apply_split_moves(after, moves).equals(after)


# --- on a project: the check, the plan, --apply -------------------------------------------------

def planted(make_project, tmp_path):
    """A project of 0, 1, 7 with a train image copied into val, and 7 thin in val (1 row where ~9 expected)."""
    from tests.conftest import write_digits

    rows = write_digits(tmp_path / "proj" / "images", per_class=30)
    rows["split"] = ["val" if n % 3 == 0 else "train" for n in range(len(rows))]
    sevens = rows.index[(rows["label"] == "7") & (rows["split"] == "val")]
    rows.loc[sevens[1:], "split"] = "train"
    source = rows.index[(rows["label"] == "0") & (rows["split"] == "train")][0]
    shutil.copy(tmp_path / "proj" / rows.loc[source, "url"], tmp_path / "proj" / "images" / "copy.png")
    copy = pd.DataFrame([{"url": "images/copy.png", "label": "0", "split": "val"}])
    rows.loc[len(rows) - 1, "split"] = "test"
    return make_project(pd.concat([rows, copy], ignore_index=True)), rows.loc[source, "url"]


def test_split_check_shows_a_planted_cross_split_duplicate_and_a_thin_class(make_project, tmp_path):
    root, source_url = planted(make_project, tmp_path)
    table = labels(root).set_index("url")
    result = run("split", root, "--check")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["class", "train", "val", "test", "exclude", "val", "%", "test", "%"]
    assert lines[3].split()[:5] == ["7", "28", "1", "1", "0"]
    assert "Duplicates across splits (leakage): 1" in result.stdout
    [leak] = [line for line in lines if line.startswith("  exact")]
    assert table.loc[source_url, "id"] in leak and table.loc["images/copy.png", "id"] in leak
    assert "class 7" in result.stdout and "thin   in val : 1 rows where 9.1 expected (28 in train)" in result.stdout
    found = json.loads(run("split", root, "--check", "--json").stdout)
    assert found["leakage"] == [{"a": found["leakage"][0]["a"], "a_split": "train", "a_label": "0",
                                 "b": found["leakage"][0]["b"], "b_split": "val", "b_label": "0", "kind": "exact"}]
    assert {(t["class"], t["split"], t["status"]) for t in found["thin"]} == {("7", "val", "thin")}
    assert found["embeddings_from"] == "" and "exact duplicates only" in result.stdout


def test_rebalance_shows_moves_and_writes_nothing_without_apply(make_project, tmp_path):
    root, _ = planted(make_project, tmp_path)
    before = (root / "labels.csv").read_bytes()
    result = run("split", root, "--rebalance", "--val", "0.25", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "Nothing written. To write these moves into the split column: add --apply." in result.stdout
    assert (root / "labels.csv").read_bytes() == before
    proposal = json.loads(run("split", root, "--rebalance", "--val", "0.25", "--seed", "3", "--json").stdout)
    assert proposal["applied"] is None and proposal["moves"]
    assert proposal["after"]["7"] == {"train": 22, "val": 7, "test": 1, "exclude": 0}  # a quarter of 29, test kept
    assert all(m["from"] != "test" and m["to"] != "test" for m in proposal["moves"])
    assert run("split", root, "--apply").exit_code == 2 and run("split", root, "--check", "--rebalance").exit_code == 2


def test_apply_writes_only_split_cells_by_id_keeps_a_concurrent_edit_and_records_a_version(make_project, tmp_path,
                                                                                         config_of):
    root, source_url = planted(make_project, tmp_path)
    config = config_of(root)
    proposal = splits.plan(root, config, val=0.25, seed=3)
    moves = proposal.moves
    table = labels(root).set_index("id")
    pair = table.index[table["url"].isin([source_url, "images/copy.png"])]
    first, second = moves["id"].iloc[:2]
    edit(root, first, label="1", note="checked by Ana")   # a person edits while the plan is shown
    edit(root, second, split="exclude")
    result = splits.apply(root, config, moves)
    assert (result["rows_written"], result["skipped"]) == (len(moves) - 1, 1)
    after = labels(root).set_index("id")
    assert after.loc[first, ["label", "note"]].tolist() == ["1", "checked by Ana"]
    assert after.loc[second, "split"] == "exclude"
    moved = moves.set_index("id")["to"].drop(second)
    assert (after.loc[moved.index, "split"] == moved).all()
    untouched = after.index.difference(moved.index).drop([first, second], errors="ignore")
    assert after.loc[untouched, "split"].equals(table.loc[untouched, "split"])
    assert after.drop(columns="split").drop(index=[first, second]).equals(
        table.drop(columns="split").drop(index=[first, second]))
    assert after.loc[pair, "split"].nunique() == 1  # the duplicate pair ended up together
    assert History(root / ".dcloop").head() == result["version"] and result["new_version"]


def test_apply_through_the_memory_backend(make_project, tmp_path, config_of):
    root, _ = planted(make_project, tmp_path)
    config = config_of(root)
    backend = MemoryBackend(labels(root))
    proposal = splits.plan(root, config, val=0.25, seed=3, backend=backend)
    done = splits.apply(root, config, proposal.moves, backend=backend)
    assert done["rows_written"] == len(proposal.moves)
    assert splits.plan(root, config, val=0.25, seed=3, backend=backend).moves.empty
