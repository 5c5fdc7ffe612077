"""One contract, every backend: memory, csv, xlsx and gsheet (real gspread against the local emulator).

A "person" per backend changes the table between dcloop's read and write, the way people sort
and add rows while a model trains.
"""

from __future__ import annotations

import pandas as pd
import pytest

from dcloop import table as tbl
from dcloop.backends.csv import CsvBackend
from dcloop.backends.memory import MemoryBackend
from dcloop.backends.xlsx import XlsxBackend

from .conftest import make_table

COMPARED = [c for c in tbl.COLUMNS if c != "image"]  # image is a path in a CSV, an =IMAGE formula in a sheet


class MemoryPerson:
    def __init__(self, backend):
        self.backend = backend

    def sort_by(self, column, descending=True):
        self.backend.table = self.backend.table.sort_values(column, ascending=not descending).reset_index(drop=True)

    def add_row(self, cells: dict):
        self.backend.table = pd.concat([self.backend.table, pd.DataFrame([cells])], ignore_index=True).fillna("")


    def edit(self, row_id, column, value):
        self.backend.table.loc[self.backend.table["id"] == row_id, column] = value


class CsvPerson:
    def __init__(self, backend):
        self.backend = backend

    def table(self):
        return tbl.normalize(self.backend.read(), "test")

    def save(self, frame):
        frame.to_csv(self.backend.path, index=False)

    def sort_by(self, column, descending=True):
        self.save(self.table().sort_values(column, ascending=not descending))

    def add_row(self, cells: dict):
        self.save(pd.concat([self.table(), pd.DataFrame([cells])], ignore_index=True).fillna(""))


    def edit(self, row_id, column, value):
        table = self.table()
        table.loc[table["id"] == row_id, column] = value
        self.save(table)


class XlsxPerson:
    """Edits labels.xlsx the way a person in Excel does: cells change, rows move, formats stay."""

    def __init__(self, backend):
        self.backend = backend

    def sheet(self):
        import openpyxl
        workbook = openpyxl.load_workbook(self.backend.path)
        return workbook, workbook["labels"]

    def sort_by(self, column, descending=True):
        workbook, sheet = self.sheet()
        header = [c.value for c in sheet[1]]
        rows = sorted((list(r) for r in sheet.iter_rows(min_row=2, values_only=True)),
                      key=lambda r: r[header.index(column)] or "", reverse=descending)
        for n, row in enumerate(rows, 2):
            for m, value in enumerate(row, 1):
                sheet.cell(n, m).value = value
        workbook.save(self.backend.path)

    def add_row(self, cells: dict):
        workbook, sheet = self.sheet()
        header = [c.value for c in sheet[1]]
        sheet.append([cells.get(c, None) for c in header])
        workbook.save(self.backend.path)

    def edit(self, row_id, column, value):
        workbook, sheet = self.sheet()
        header = [c.value for c in sheet[1]]
        for row in sheet.iter_rows(min_row=2):
            if row[header.index("id")].value == row_id:
                row[header.index(column)].value = value
        workbook.save(self.backend.path)


class SheetPerson:
    def __init__(self, backend, emulator):
        self.backend, self.emulator = backend, emulator

    def sort_by(self, column, descending=True):
        self.emulator.sort(self.backend.key, "labels", column, descending)

    def add_row(self, cells: dict):
        header = self.emulator.values(self.backend.key, "labels!1:1")[0]
        row = len(self.emulator.values(self.backend.key, "labels")) + 1
        self.emulator.set_values(self.backend.key, f"labels!A{row}", [[cells.get(c, "") for c in header]])

    def edit(self, row_id, column, value):
        from dcloop.backends.sheet_grid import column_letter
        values = self.emulator.values(self.backend.key, "labels")
        row = [r[values[0].index("id")] for r in values].index(row_id) + 1
        self.emulator.set_values(self.backend.key, f"labels!{column_letter(values[0].index(column))}{row}", [[value]])


@pytest.fixture(params=["memory", "csv", "xlsx", "gsheet"])
def backend_and_person(request, tmp_path):
    if request.param == "memory":
        backend = MemoryBackend()
        return backend, MemoryPerson(backend)
    if request.param == "csv":
        backend = CsvBackend(tmp_path / "labels.csv", tmp_path / "results.csv")
        return backend, CsvPerson(backend)
    if request.param == "xlsx":
        backend = XlsxBackend(tmp_path / "labels.xlsx", tmp_path, ["cat", "dog", "bird"])
        return backend, XlsxPerson(backend)
    emulator = request.getfixturevalue("emulator")
    backend = request.getfixturevalue("open_sheet")(request.getfixturevalue("blank_sheet"))
    return backend, SheetPerson(backend, emulator)


def current(backend) -> pd.DataFrame:
    return tbl.normalize(backend.read(), backend.describe())


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("id").sort_index()[[c for c in COMPARED if c != "id"]]


def predictions(ids, offset: int = 0) -> pd.DataFrame:
    """A patch of dcloop's columns whose values are easy to check: each names its own row."""
    return pd.DataFrame({"id": ids, "image": [f"images/{i}.png" for i in ids],
                         "prediction": [f"pred-{i}" for i in ids],
                         "confidence": [str((n + offset) % 7 / 8) for n, _ in enumerate(ids)],
                         "label_prob": ["0.25"] * len(ids), "suspicion": ["0.5"] * len(ids),
                         "flags": [f"flag-{i}" for i in ids]})


def test_round_trip(backend_and_person):
    backend, _ = backend_and_person
    table = make_table(8)
    backend.create(table)
    pd.testing.assert_frame_equal(by_id(current(backend)), by_id(table))


def test_write_back_by_id_after_a_sort(backend_and_person):
    backend, person = backend_and_person
    backend.create(make_table(10))
    ids = list(current(backend)["id"])
    person.sort_by("id", descending=True)
    assert backend.write(predictions(ids)) == 10
    after = current(backend)
    assert list(after["id"]) == sorted(ids, reverse=True)  # the person's order is kept
    for row in after.itertuples():
        assert (row.prediction, row.flags) == (f"pred-{row.id}", f"flag-{row.id}")


def test_new_rows_without_id_get_one(backend_and_person):
    backend, person = backend_and_person
    backend.create(make_table(4))
    person.add_row({"url": "https://img.example/new.png", "label": "dog"})
    table = current(backend)
    ids = tbl.assign_ids(table)
    assert len(ids) == 1
    patch = pd.DataFrame({tbl.NEW_ROW_KEY: list(ids), "id": list(ids.values()), "split": ["train"]})
    assert backend.write(patch) == 1
    after = current(backend)
    new = after[after["url"] == "https://img.example/new.png"].iloc[0]
    assert (new["id"], new["split"], new["label"]) == (list(ids.values())[0], "train", "dog")
    assert len(after) == 5


def test_human_columns_are_never_written(backend_and_person):
    backend, _ = backend_and_person
    table = make_table(6)
    backend.create(table)
    patch = predictions(list(table["id"]))
    patch["url"], patch["label"], patch["note"] = "https://evil.example/x.png", "hacked", "overwritten"
    patch["split"] = "test"  # split is written only where blank, and no split here is blank
    backend.write(patch)
    after = by_id(current(backend))
    pd.testing.assert_frame_equal(after[tbl.HUMAN_COLUMNS], by_id(table)[tbl.HUMAN_COLUMNS])
    assert (after["prediction"] == [f"pred-{i}" for i in after.index]).all()


def test_rewriting_the_same_patch_changes_nothing(backend_and_person):
    backend, _ = backend_and_person
    table = make_table(6)
    backend.create(table)
    patch = predictions(list(table["id"]))
    assert backend.write(patch) == 6
    once = current(backend)
    assert backend.write(patch) == 0
    pd.testing.assert_frame_equal(current(backend), once)


def test_results_round_trip(backend_and_person):
    backend, _ = backend_and_person
    backend.create(make_table(2))
    backend.append_result({"run_id": "a1", "val_accuracy": "0.75", "rows_train": "10"})
    backend.append_result({"run_id": "b2", "val_accuracy": "0.5", "rows_train": "12"})
    results = backend.read_results()
    assert list(results["run_id"]) == ["a1", "b2"]
    assert list(results["val_accuracy"]) == ["0.75", "0.5"]
    assert list(results["rows_train"]) == ["10", "12"]


def test_split_moves_write_only_split_by_id_and_a_persons_edit_meanwhile_wins(backend_and_person):
    backend, person = backend_and_person
    table = make_table(8)
    backend.create(table)
    ids = list(table["id"])
    moves = pd.DataFrame({"id": ids[:3] + ["gone"], "from": ["train", "train", "val", "train"],
                          "to": ["val", "val", "train", "val"]})
    person.sort_by("id", descending=True)
    person.edit(ids[1], "split", "exclude")  # the person set it aside after dcloop planned the move
    person.edit(ids[0], "label", "bird")
    assert backend.move_splits(moves) == 2
    after = by_id(current(backend))
    assert after.loc[ids[:3], "split"].tolist() == ["val", "exclude", "train"]
    assert after.loc[ids[0], "label"] == "bird"
    expected = by_id(table)
    expected.loc[ids[:3], "split"] = ["val", "exclude", "train"]
    expected.loc[ids[0], "label"] = "bird"
    pd.testing.assert_frame_equal(after, expected)
    assert backend.move_splits(moves) == 0


def decisions(*rows) -> pd.DataFrame:
    """Review decisions: (id, label, split, reviewed, was_label, was_split, was_reviewed)."""
    return pd.DataFrame(rows, columns=["id", *tbl.DECIDED_COLUMNS, *(f"was_{c}" for c in tbl.DECIDED_COLUMNS)])


def test_decide_sets_label_split_and_reviewed_by_id_and_refuses_rows_edited_since(backend_and_person):
    backend, person = backend_and_person
    table = make_table(6)
    backend.create(table)
    backend.write(predictions(list(table["id"])))
    person.sort_by("id", descending=True)
    person.edit("r0001", "label", "bird")  # edited after the reviewer saw 'dog'
    person.edit("r0002", "note", "kept")   # another column: no conflict
    before = by_id(current(backend))
    refused = backend.decide(decisions(
        ("r0000", "dog", "train", "", "cat", "train", ""),        # relabel
        ("r0001", "cat", "train", "", "dog", "train", ""),        # refused: label edited
        ("r0002", "bird", "exclude", "", "bird", "val", ""),      # exclude
        ("r0003", "cat", "test", "ok", "cat", "test", ""),        # keep: reviewed = ok, a new column
        ("r0000", "cat", "train", "", "dog", "train", ""),        # undo of the first, in the same batch
        ("zz9", "cat", "train", "", "cat", "train", "")))         # not in the table
    assert set(refused) == {1, 5}
    assert "label 'dog' is now 'bird'" in refused[1] and "not in the table" in refused[5]
    after = current(backend).set_index("id").sort_index()
    assert after["label"].tolist() == ["cat", "bird", "bird", "cat", "dog", "bird"]
    assert after["split"].tolist() == ["train", "train", "exclude", "test", "train", "train"]
    assert after["reviewed"].tolist() == ["", "", "", "ok", "", ""]
    others = [c for c in before.columns if c not in ("label", "split")]
    pd.testing.assert_frame_equal(by_id(current(backend))[others], before[others])  # no other cell changed
    again = backend.decide(decisions(("r0003", "cat", "test", "ok", "cat", "test", "")))  # twice = once
    assert list(again) == [0] and current(backend).set_index("id").loc["r0003", "reviewed"] == "ok"


def test_a_changed_id_is_given_back(backend_and_person):
    backend, person = backend_and_person
    table = make_table(4)
    backend.create(table)
    person.sort_by("id", descending=True)
    person.edit("r0001", "id", "1")  # a spreadsheet program read the id as a number
    patch = predictions(["r0001"])
    patch[tbl.ID_WAS] = f"1\x1f{table['url'][1]}"  # as sync's id_repairs_patch names the row
    backend.write(patch)
    after = by_id(current(backend))
    assert list(after.index) == list(table["id"])
    assert after.loc["r0001", "prediction"] == "pred-r0001" and after.loc["r0001", "url"] == table["url"][1]


def test_restore_sets_label_and_split_by_id_and_adds_lost_rows(backend_and_person):
    backend, person = backend_and_person
    table = make_table(6)
    backend.create(table)
    backend.write(predictions(list(table["id"])))
    person.sort_by("id", descending=True)
    person.edit("r0000", "label", "bird")
    person.edit("r0001", "split", "exclude")
    person.edit("r0002", "note", "kept")
    snapshot = pd.concat([table, pd.DataFrame([{"id": "r0099", "url": "https://img.example/99.png",
                                                 "label": "dog", "split": "val"}])],
                         ignore_index=True).fillna("")
    assert backend.restore(snapshot) == 3
    after = by_id(current(backend))
    assert after.loc[list(table["id"]), "label"].tolist() == list(table["label"])
    assert after.loc[list(table["id"]), "split"].tolist() == list(table["split"])
    assert after.loc["r0002", "note"] == "kept" and after.loc["r0000", "prediction"] == "pred-r0000"
    assert (after.loc["r0099", "url"], after.loc["r0099", "label"]) == ("https://img.example/99.png", "dog")
    assert backend.restore(snapshot) == 0


def test_append_rows_adds_at_the_end_and_skips_known_ids(backend_and_person):
    backend, person = backend_and_person
    table = make_table(3)
    backend.create(table)
    rows = pd.DataFrame({"id": ["r0001", "a1", "a2"], "url": ["https://img.example/a.png"] * 3,
                         "label": ["cat"] * 3, "split": ["train"] * 3,
                         "note": ["augmented from r0001: flip"] * 3})
    assert backend.append_rows(rows) == 2
    assert backend.append_rows(rows) == 0
    after = current(backend)
    assert list(after["id"]) == list(table["id"]) + ["a1", "a2"]
    assert after.set_index("id").loc["r0001", "url"] == table["url"][1]
    assert after.set_index("id").loc["a2", "note"] == "augmented from r0001: flip"


def test_order_is_written_where_the_backend_declares_it(backend_and_person):
    from dcloop.backends import ORDER
    backend, _ = backend_and_person
    table = make_table(5)
    backend.create(table)
    ids = list(table["id"])
    if ORDER in backend.capabilities:
        backend.write(predictions(ids), order=ids[::-1])
        assert list(current(backend)["id"]) == ids[::-1]
    else:
        backend.write(predictions(ids))
        assert list(current(backend)["id"]) == ids  # rows stay where people put them
    backend.update_classes([{"class": "cat", "train": "1"}])  # every backend takes it; some show it
