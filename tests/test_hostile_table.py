"""Hostile and careless cells in the table: ids, labels, class names and text dcloop writes.

A row's id, label, url and note come from whoever can edit the table (a shared Google Sheet, a CSV
file in a synced folder). None of it may become a path outside the project, a formula in a file
dcloop writes, or a reason to stop the sync. Every test checks the exact outcome, that no file
appears outside the project, and that no cell a person owns changes.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop import table as tbl
from dcloop.backends.csv import CsvBackend, read_csv
from dcloop.cap import write_suggestions
from dcloop.cli import cli
from dcloop.config import load_config, new_config
from dcloop.errors import ConfigError, UnsafePath
from dcloop.fsutil import inside, is_safe_name
from dcloop.images import materialize

from .conftest import ACCOUNT, TINY_MODEL, replace_setting, split_rows, write_digits

ONE_THREAD = {"model": {**TINY_MODEL["model"], "threads": 1}}

HUMAN = ["url", "label", "split", "note"]
# From <project>/.dcloop/versions/<version>/<split>/<class>/, six steps up is the test's tmp_path.
CLIMB = "../../../../../../outside/climbed"


def files_outside(tmp_path, project) -> set[str]:
    """Every file under tmp_path that is not in the project folder (its .dcloop included)."""
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
            if p.is_file() and not p.is_relative_to(project)}


def humans(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("id")[HUMAN].sort_index()


# --- ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("row_id, ok", [
    ("a1b2c3d4e5", True), ("aug-0123456789-2", True), ("Row_7", True), ("x" * 64, True),
    ("x" * 65, False), ("../../x", False), ("/etc/profile.d/x", False), ("a b", False), ("a.b", False),
    ("2.74E+13", False), ("=1+1", False), ("i\u200b", False), ("a\x00", False), ("", False), ("\u00e9", False),
])
def test_the_id_pattern(row_id, ok):
    assert is_safe_name(row_id) is ok


def test_validate_flags_ids_that_could_become_paths():
    table = pd.DataFrame({"id": ["good_1", "../../x", "/tmp/x", "ok-2"], "url": ["a.png"] * 4,
                          "label": ["cat"] * 4, "split": ["train"] * 4}).reindex(columns=tbl.COLUMNS, fill_value="")
    checked = tbl.validate(table, ["cat"])
    assert checked.flags == {"../../x": [tbl.BAD_ID_FLAG], "/tmp/x": [tbl.BAD_ID_FLAG]}
    assert tbl.BAD_ID_FLAG == ("bad-id: an id is letters, digits, '-' and '_', at most 64 characters; "
                               "clear the id cell and the next sync gives the row a new one")
    assert list(checked.table["id"][checked.trainable("train")]) == ["good_1", "ok-2"]


@pytest.mark.training
def test_a_hostile_id_in_labels_csv_writes_nothing_outside_the_project(make_project, tmp_path):
    rows = split_rows(write_digits(tmp_path / "proj" / "images"))
    root = make_project(rows, ONE_THREAD)
    (tmp_path / "outside").mkdir()
    sentinel = tmp_path / "outside" / "profile.d"
    table = read_csv(root / "labels.csv")
    train = table.index[table["split"] == "train"]
    table.loc[train[0], "id"] = str(sentinel / "evil")             # an absolute path
    table.loc[train[1], "id"] = CLIMB                              # climbs out of the versions folder
    table.loc[train[2], "id"] = "x\x1b[31mred"                     # terminal escape codes
    table.loc[train[3], "label"] = table.loc[train[3], "label"] + "\u200b"  # looks right, is not
    table.loc[train[4], "label"] = "7\u200bx"                       # not a class, whatever its form
    table.loc[train[5], "note"] = "=HYPERLINK(\"http://evil\",\"click\")"
    table.loc[train[6], "label"] = ".."
    table.to_csv(root / "labels.csv", index=False)
    before_outside, before = files_outside(tmp_path, root), humans(table)

    result = CliRunner().invoke(cli, ["sync", str(root)])

    assert result.exit_code == 0, result.output
    assert files_outside(tmp_path, root) == before_outside
    assert not sentinel.exists() and not (tmp_path / "outside" / "climbed.png").exists()
    after = read_csv(root / "labels.csv")
    assert humans(after).equals(before)
    flags = after.set_index("id")["flags"]
    for bad in (str(sentinel / "evil"), CLIMB, "x\x1b[31mred"):
        assert flags[bad] == tbl.BAD_ID_FLAG
    assert "3 row(s) bad-id, left out of training: " in result.stdout
    assert "x?[31mred (U+0078 U+001B U+005B" in result.stdout and "\x1b" not in result.stdout
    assert flags[table.loc[train[4], "id"]] == "unknown-label:7?x (U+0037 U+200B U+0078)"
    assert flags[table.loc[train[6], "id"]] == "unknown-label:.."
    zero_width = table.loc[train[3], "id"]
    assert "unknown-label" not in flags[zero_width] and after.set_index("id").loc[zero_width, "prediction"] != ""
    # the row whose label carries a zero-width space trained under its class, in the class's folder
    version = sorted((root / ".dcloop/versions").glob("*/train"))[-1]
    assert list(version.glob(f"*/{zero_width}.png"))[0].parent.name == table.loc[train[3], "label"][:-1]
    assert "'=HYPERLINK" not in (root / "labels.csv").read_text()  # a person's cell is written back as it was


@pytest.mark.training
def test_a_hostile_id_on_a_google_sheet_is_flagged_and_never_a_path(tmp_path, emulator, key_file, monkeypatch):
    from .test_sync_gsheet import sheet_frame

    monkeypatch.setenv("DCLOOP_TABLE_ENDPOINT", emulator.base_url)
    key = emulator.create_spreadsheet("labels", editors=[ACCOUNT])
    for digit in (1, 7):
        write_digits(tmp_path / "data" / "train" / str(digit), classes=(digit,), per_class=12, seed=digit)
        write_digits(tmp_path / "data" / "val" / str(digit), classes=(digit,), per_class=4, seed=digit + 1)
    runner = CliRunner()
    project = tmp_path / "p"
    result = runner.invoke(cli, ["init", str(project), "--sheet", key, "--from-folder", str(tmp_path / "data"),
                                 "--credentials", str(key_file)])
    assert result.exit_code == 0, result.output
    toml = project / "dcloop.toml"
    text = toml.read_text()
    for section, name, value in (("model", "epochs", 2), ("model", "batch_size", 16), ("model", "threads", 1)):
        text = replace_setting(text, section, name, value)
    toml.write_text(text)
    table = sheet_frame(emulator, key)
    (tmp_path / "outside").mkdir()
    hostile = {1: str(tmp_path / "outside" / "evil"), 2: CLIMB}
    id_column = chr(65 + list(table.columns).index("id"))
    for position, value in hostile.items():
        emulator.set_values(key, f"labels!{id_column}{position + 2}", [[value]])
    before_outside = files_outside(tmp_path, project)
    before = humans(sheet_frame(emulator, key))

    result = runner.invoke(cli, ["sync", str(project)])

    assert result.exit_code == 0, result.output
    assert files_outside(tmp_path, project) == before_outside
    after = sheet_frame(emulator, key)
    assert humans(after).equals(before)
    assert all(after.set_index("id").loc[value, "flags"] == tbl.BAD_ID_FLAG for value in hostile.values())
    assert "2 row(s) bad-id, left out of training" in result.stdout


def test_materialize_refuses_a_bad_id_or_class_even_if_validation_missed_it(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    folder = tmp_path / "folder"
    with pytest.raises(UnsafePath):
        materialize(folder, [("../../x", "train", "cat", blob, "a.png")])
    with pytest.raises(UnsafePath):
        materialize(folder, [("ok", "train", "..", blob, "a.png")])
    assert not (tmp_path / "x.png").exists() and not (folder / "train" / "ok.png").exists()


def test_inside_keeps_paths_in_their_folder(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    assert inside(folder, "train", "cat", "a1.png") == folder / "train" / "cat" / "a1.png"
    for parts in (("..", "x"), ("a/../../x",), ("/etc/passwd",), ("a\x00b",), ("",), ("a\\..\\x",)):
        with pytest.raises(UnsafePath):
            inside(folder, *parts)
    os.symlink(tmp_path, folder / "link")  # a folder inside that leads out
    with pytest.raises(UnsafePath, match="leads outside"):
        inside(folder, "link", "x")


def test_checkout_skips_a_bad_id_and_writes_the_rest(make_project, tmp_path, config_of):
    from dcloop.versions import checkout
    from dcloop.history import History

    root = make_project(None, ONE_THREAD)
    table = read_csv(root / "labels.csv")
    table.loc[0, "id"] = CLIMB
    table.to_csv(root / "labels.csv", index=False)
    History(root / ".dcloop").record(table, "2026-12-01T00:00:00Z")
    dest = tmp_path / "out"
    done = checkout(root, config_of(root), History(root / ".dcloop").head(), dest)
    assert done["skipped"] == {"bad id": 1}
    assert done["images"] == len(table) - 1
    assert not (tmp_path / "outside").exists()


# --- class names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("..", "not a plain folder name"), ("a/b", "not a plain folder name"), ("a\\b", "not a plain folder name"),
    ("a\x00", "not a plain folder name"), ("=cmd", "formula"), ("@SUM(A1)", "formula"), ("-1+2", "formula"),
    ("i\u200b", "invisible"), ("e\u0301", "NFC"),
])
def test_class_names_that_cannot_be_folders_or_cells_are_refused(name, why):
    assert why in tbl.class_name_problem(name)
    with pytest.raises(ConfigError, match="class name"):
        new_config({"project": {"classes": ["ok", name]}}, environ={})


@pytest.mark.parametrize("name", ["i", "iv", "cat", "-1", "0", "caf\u00e9", "traffic light", "x.y"])
def test_ordinary_class_names_pass(name):
    assert tbl.class_name_problem(name) == ""


def test_init_refuses_bad_class_names_with_a_clear_message(tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"url": ["a.png", "b.png"], "label": ["cat", "../dog"]}).to_csv(source, index=False)
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), "--from-csv", str(source)])
    assert result.exit_code == 1
    assert result.output == ("Error: the labels found in the input: class name(s) refused: '../dog': not a plain "
                             "folder name ('.', '..', '/', '\\' and NUL are refused).\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), "--from-csv", str(source),
                                      "--classes", "cat,=HYPERLINK(1)"])
    assert result.exit_code == 1 and "Error: --classes: class name(s) refused: '=HYPERLINK(1)': starts with" in result.output
    assert not (tmp_path / "p" / "dcloop.toml").exists()


def test_a_hand_edited_class_name_is_refused_when_the_config_loads(make_project):
    root = make_project(None)
    toml = root / "dcloop.toml"
    toml.write_text(toml.read_text().replace('classes = ["0", "1", "7"]', 'classes = ["0", "1", "../7"]'))
    with pytest.raises(ConfigError, match=r"project.classes: Value error, class name\(s\) refused: '../7'"):
        load_config(root, environ={})


def test_labels_found_at_init_are_canonical(tmp_path):
    from dcloop.project import discover_classes
    rows = pd.DataFrame({"label": ["i", "i\u200b", " ii", "e\u0301", ""]})
    assert discover_classes(rows) == ["i", "ii", "\u00e9"]


# --- labels that look equal ----------------------------------------------------------------------

def test_labels_are_compared_in_nfc_without_invisible_characters():
    labels = ["cat", "cat\u200b", "\ufeffcat", "caf\u00e9", "cafe\u0301", "c\u200dat", "cot\u200b"]
    table = pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "url": ["a.png"] * len(labels),
                          "label": labels, "split": ["train"] * len(labels)}).reindex(columns=tbl.COLUMNS, fill_value="")
    checked = tbl.validate(table, ["cat", "caf\u00e9"])
    assert list(checked.label) == ["cat", "cat", "cat", "caf\u00e9", "caf\u00e9", "cat", "cot\u200b"]
    assert checked.flags == {"r6": ["unknown-label:cot? (U+0063 U+006F U+0074 U+200B)"]}
    assert list(table["label"]) == labels  # the table itself is not changed


# --- cells dcloop writes into CSV files -----------------------------------------------------------

@pytest.mark.parametrize("cell, written", [
    ("=1+1", "'=1+1"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("-0.0123", "-0.0123"), ("+4", "+4"), ("1e-5", "1e-5"), ("cat", "cat"), ("", ""),
])
def test_formula_safe(cell, written):
    assert tbl.formula_safe(cell) == written


def test_csv_write_back_neutralizes_its_own_cells_and_keeps_a_persons(tmp_path):
    backend = CsvBackend(tmp_path / "labels.csv", tmp_path / "results.csv")
    table = pd.DataFrame({"id": ["a", "b"], "url": ["=cmd|x", "b.png"], "label": ["cat", "cat"],
                          "note": ["@SUM(1)", ""]}).reindex(columns=tbl.COLUMNS, fill_value="")
    backend.create(table)
    patch = pd.DataFrame({"id": ["a", "b"], "prediction": ["cat", "cat"], "flags": ["=HYPERLINK(\"x\")", "ok"],
                          "confidence": ["0.9", "-0.5"]})
    assert backend.write(patch) == 2
    after = read_csv(tmp_path / "labels.csv").set_index("id")
    assert after.loc["a", "flags"] == "'=HYPERLINK(\"x\")" and after.loc["b", "confidence"] == "-0.5"
    assert after.loc["a", "url"] == "=cmd|x" and after.loc["a", "note"] == "@SUM(1)"
    assert backend.write(patch) == 0  # neutralized once, the same write again changes nothing
    backend.append_result({"run_id": "r1", "kind": "=cmd", "val_change": "-0.0200"})
    results = read_csv(tmp_path / "results.csv")
    assert results.loc[0, "kind"] == "'=cmd" and results.loc[0, "val_change"] == "-0.0200"


def test_cap_suggestions_neutralize_table_text(tmp_path):
    path = tmp_path / "cap-suggestions.csv"
    write_suggestions(path, pd.DataFrame({"rank": [1], "id": ["a"], "split": ["train"], "label": ["cat"],
                                          "url": ["=WEBSERVICE(\"http://evil\")"], "reason": ["duplicate"]}))
    assert read_csv(path).loc[0, "url"] == "'=WEBSERVICE(\"http://evil\")"


# --- run ids come from the results table, which a sheet's editors can change ----------------------

def test_run_ids_from_the_results_table_never_become_paths(tmp_path):
    from dcloop.reeval import trained_runs
    from dcloop.report import latest_run_id
    state = tmp_path / "proj" / ".dcloop"
    (tmp_path / "evil").mkdir(parents=True)
    for name in ("model.pt", "predictions.npz"):
        (tmp_path / "evil" / name).write_bytes(b"x")
    results = pd.DataFrame({"run_id": ["../../evil"], "kind": ["full"]})
    assert trained_runs(state, results) == []
    with pytest.raises(Exception, match="no trained run"):
        latest_run_id(state, results)


def test_report_refuses_a_run_option_that_is_a_path(make_project):
    root = make_project(None)
    result = CliRunner().invoke(cli, ["report", str(root), "--run", "../../x"])
    assert result.exit_code == 1
    assert "refused to build a path from '../../x'" in result.output
