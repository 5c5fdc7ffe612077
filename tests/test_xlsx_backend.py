"""labels.xlsx: layout, thumbnails, write-back that leaves a person's work alone, half-saved and held
files, the read cache, a whole project, and the real LibreOffice Calc."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import threading
import time
import zipfile

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from dcloop import table as tbl
from dcloop.backends import accepts_order, open_backend, sheet_layout
from dcloop.backends import xlsx as xlsx_module
from dcloop.backends.xlsx import XlsxBackend
from dcloop.cli import cli
from dcloop.config import new_config
from dcloop.errors import BackendError, TableBusy
from dcloop.pull import pull

from . import libreoffice
from .conftest import CLASSES, TINY_MODEL, make_table, replace_setting, split_rows, write_digits
from .test_backend_contract import predictions

LABELS = sheet_layout.load_tabs()["labels"]


@pytest.fixture
def backend(tmp_path) -> XlsxBackend:
    backend = XlsxBackend(tmp_path / "labels.xlsx", tmp_path, CLASSES)
    backend.create(make_table(6))
    return backend


def sheet_of(backend, name="labels"):
    return openpyxl.load_workbook(backend.path)[name]


def letter(name: str) -> str:
    return openpyxl.utils.get_column_letter(tbl.COLUMNS.index(name) + 1)


def blobs(root, n: int) -> list[str]:
    """n cached images as sync leaves them, as the image cells name them."""
    cells = []
    for i in range(n):
        sha = f"{i:02d}" + "ab" * 31
        path = root / ".dcloop" / "cache" / "blobs" / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.new("RGB", (120, 60), (40 * i % 255, 100, 200)).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())
        cells.append(str(path.relative_to(root)))
    return cells


def with_images(backend) -> pd.DataFrame:
    ids = list(backend.read()["id"])
    patch = predictions(ids)
    patch["image"] = blobs(backend.root, len(ids))
    return patch


# --- layout -------------------------------------------------------------------------------------

def test_layout_follows_the_template(backend):
    sheet = sheet_of(backend)
    assert [c.value for c in sheet[1]] == LABELS.header
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref.startswith("A1:K")
    rules = {(str(v.sqref).split(":")[0], v.type): v for v in sheet.data_validations.dataValidation}
    assert rules[(f"{letter('label')}2", "list")].formula1 == "classes!$A$2:$A$4"
    assert rules[(f"{letter('split')}2", "list")].formula1 == '"train,val,test,exclude"'
    for name in tbl.MACHINE_COLUMNS:
        warning = rules[(f"{letter(name)}2", "textLength")]
        assert (warning.errorStyle, warning.error) == ("warning", LABELS.protection.description)
    for name in tbl.HUMAN_COLUMNS:
        assert (f"{letter(name)}2", "textLength") not in rules
    scale = sheet.conditional_formatting
    assert [str(r.sqref) for r in scale] == [f"{letter('suspicion')}2:{letter('suspicion')}1048576"]
    assert next(iter(scale)).rules[0].type == "colorScale"
    for cell in sheet[letter("id")][1:] + sheet[letter("label")][1:]:
        assert (cell.number_format, cell.data_type) == ("@", "s")
    assert sheet.column_dimensions[letter("url")].width == pytest.approx(280 / 7)
    assert sheet[f"{letter('id')}2"].fill.fgColor.rgb.endswith("F0F0F0")
    workbook = openpyxl.load_workbook(backend.path)
    assert workbook.sheetnames == ["labels", "results", "classes"]
    assert [c.value for c in workbook["classes"]["A"]] == ["class", *CLASSES]


def test_a_write_puts_back_the_frozen_header_and_whole_column_rules_calc_trims(backend):
    from openpyxl.worksheet.cell_range import MultiCellRange
    workbook = openpyxl.load_workbook(backend.path)
    sheet = workbook["labels"]
    sheet.freeze_panes = None
    for validation in sheet.data_validations.dataValidation:
        column = str(validation.sqref)[0]
        validation.sqref = MultiCellRange(f"{column}2:{column}1005")  # as Calc saves them
    workbook.save(backend.path)
    backend.write(predictions(list(backend.read()["id"])))
    sheet = sheet_of(backend)
    assert sheet.freeze_panes == "A2"
    assert all(str(v.sqref).endswith(":" + str(v.sqref)[0] + "1048576") for v in sheet.data_validations.dataValidation)


def test_write_takes_no_order_and_reads_every_cell_as_text(backend):
    assert not accepts_order(backend)
    workbook = openpyxl.load_workbook(backend.path)
    sheet = workbook["labels"]
    note = letter("note")
    for row, value in zip(range(2, 8), [7, 0.1, 3.0, dt.datetime(2026, 1, 2), True, None]):
        sheet[f"{note}{row}"].value = value
    workbook.save(backend.path)
    assert list(backend.read()["note"]) == ["7", "0.1", "3", "2026-01-02", "TRUE", ""]


def test_a_workbook_that_misstates_its_size_is_read_whole(backend):
    with zipfile.ZipFile(backend.path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet], found = re.subn(rb'<dimension ref="[A-Z0-9:]+"\s*/>', b'<dimension ref="A1:A1"/>', parts[sheet])
    assert found == 1
    with zipfile.ZipFile(backend.path, "w") as target:  # as some programs write it
        for name, data in parts.items():
            target.writestr(name, data)
    table = backend.read()
    assert table.shape == (6, 11) and list(table["url"]) == list(make_table(6)["url"])


def test_backend_xlsx_means_labels_xlsx_unless_a_path_is_given():
    assert new_config({"table": {"backend": "xlsx"}}).table.path == "labels.xlsx"
    assert new_config({"table": {"backend": "xlsx", "path": "mine.xlsx"}}).table.path == "mine.xlsx"
    assert new_config({}).table.path == "labels.csv"


def test_init_takes_xlsx_or_sheet_not_both(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("url,label\na.png,cat\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), "--xlsx", "--sheet", "KEY", "--from-csv", str(rows)])
    assert result.exit_code == 2 and "give at most one of --xlsx and --sheet" in result.output


def test_numbers_are_written_as_numbers_and_rewriting_changes_nothing(backend):
    patch = predictions(list(backend.read()["id"]))
    patch["suspicion"] = "0.5000"
    assert backend.write(patch) == 6
    assert sheet_of(backend)[f"{letter('suspicion')}2"].value == 0.5
    assert backend.write(patch) == 0


# --- thumbnails ---------------------------------------------------------------------------------

def anchors(sheet) -> list[tuple[int, int]]:
    return sorted((image.anchor._from.row + 1, image.anchor._from.col + 1) for image in sheet._images)


def test_thumbnails_sit_in_the_image_cells_once(backend):
    patch = with_images(backend)
    backend.write(patch)
    sheet = sheet_of(backend)
    column = tbl.COLUMNS.index("image") + 1
    assert anchors(sheet) == [(row, column) for row in range(2, 8)]
    assert all(max(image.width, image.height) == 64 for image in sheet._images)
    assert sheet.row_dimensions[2].height == LABELS.image_row_height * 0.75
    assert sheet[f"{letter('image')}2"].value == patch["image"][0]  # the cell keeps the cached path
    patch["prediction"] = "dog"
    backend.write(patch)
    assert anchors(sheet_of(backend)) == [(row, column) for row in range(2, 8)]


def test_an_image_cell_outside_the_cache_gets_no_picture(backend):
    patch = with_images(backend)
    (backend.root / "secret.png").write_bytes((backend.root / patch["image"][1]).read_bytes())
    patch.loc[0, "image"] = "../secret.png"
    patch.loc[1, "image"] = "secret.png"
    backend.write(patch)
    assert len(sheet_of(backend)._images) == 4


# --- a person's work is left alone --------------------------------------------------------------

def test_write_back_leaves_a_persons_column_sheet_and_formats_alone(backend):
    workbook = openpyxl.load_workbook(backend.path)
    sheet = workbook["labels"]
    sheet.cell(1, 12).value = "reviewer"
    for row in range(2, 8):
        sheet.cell(row, 12).value = f"ann {row}"
    sheet[f"{letter('url')}3"].font = openpyxl.styles.Font(bold=True, color="FF0000")
    sheet.cell(2, 13).value = "=1+1"
    workbook.create_sheet("my notes")["A1"] = "keep me"
    workbook.save(backend.path)

    backend.write(with_images(backend))

    workbook = openpyxl.load_workbook(backend.path)
    sheet = workbook["labels"]
    assert [sheet.cell(r, 12).value for r in range(1, 8)] == ["reviewer"] + [f"ann {r}" for r in range(2, 8)]
    assert sheet[f"{letter('url')}3"].font.b and sheet[f"{letter('url')}3"].font.color.rgb == "00FF0000"
    assert sheet.cell(2, 13).value == "=1+1"
    assert workbook["my notes"]["A1"].value == "keep me"
    assert list(backend.read()["prediction"]) == [f"pred-r{i:04d}" for i in range(6)]


def test_rows_a_person_adds_at_the_bottom_get_an_id_as_text(backend):
    workbook = openpyxl.load_workbook(backend.path)
    sheet = workbook["labels"]
    sheet.cell(9, tbl.COLUMNS.index("url") + 1).value = "https://img.example/new.png"  # after a blank row
    sheet.cell(9, tbl.COLUMNS.index("label") + 1).value = "dog"
    workbook.save(backend.path)
    table = pull(backend, new_config({"project": {"classes": CLASSES}}))
    assert len(table) == 7
    sheet = sheet_of(backend)
    new_id = sheet[f"{letter('id')}9"]
    assert new_id.value == table["id"].iloc[-1] and new_id.data_type == "s" and new_id.number_format == "@"
    assert sheet[f"{letter('split')}9"].value == "train"


def test_restore_and_append_rows_write_through_the_same_core(backend):
    table = tbl.normalize(backend.read(), "t")
    snapshot = table.copy()
    XlsxPerson(backend).edit(table["id"][0], "label", "bird")
    assert backend.restore(snapshot) == 1
    extra = make_table(8).iloc[6:].assign(note="augmented from r0000: flip")
    assert backend.append_rows(pd.concat([table.iloc[:1], extra])) == 2
    after = tbl.normalize(backend.read(), "t")
    assert list(after["label"][:6]) == list(snapshot["label"]) and list(after["id"][6:]) == ["r0006", "r0007"]
    assert sheet_of(backend)[f"{letter('id')}8"].number_format == "@"


# --- files caught half-saved or held ------------------------------------------------------------

def test_a_half_saved_workbook_is_read_again_once_it_holds_still(backend):
    whole = backend.path.read_bytes()
    backend.path.write_bytes(whole[: len(whole) // 2])
    finisher = threading.Timer(0.6, lambda: backend.path.write_bytes(whole))
    finisher.start()
    try:
        assert len(backend.read()) == 6
    finally:
        finisher.join()


def test_a_workbook_that_stays_broken_is_a_clear_error(backend):
    backend.path.write_bytes(backend.path.read_bytes()[:500])
    old = time.time() - 60
    os.utime(backend.path, (old, old))
    with pytest.raises(BackendError, match="not a workbook dcloop can open.*sync again"):
        backend.read()


def test_a_workbook_another_program_holds_is_busy_and_unchanged(backend, monkeypatch):
    from dcloop import fsutil
    replace = os.replace

    def held(src, dst):
        if os.path.realpath(dst) == os.path.realpath(backend.path):
            raise PermissionError(13, "Permission denied")
        return replace(src, dst)

    before = backend.path.read_bytes()
    monkeypatch.setattr(fsutil.os, "replace", held)
    with pytest.raises(TableBusy, match="labels.xlsx is open in another program"):
        backend.write(predictions(list(backend.read()["id"])))
    assert backend.path.read_bytes() == before
    assert not list(backend.path.parent.glob(".labels.xlsx.*.tmp"))


# --- the read cache -----------------------------------------------------------------------------

def test_an_unchanged_workbook_is_not_parsed_again(backend, monkeypatch):
    first = backend.read()
    monkeypatch.setattr(xlsx_module, "load_settled", lambda *a, **k: pytest.fail("parsed again"))
    pd.testing.assert_frame_equal(backend.read(), first)
    monkeypatch.undo()
    backend.write(predictions(list(first["id"])))  # a write leaves the cache of what it wrote
    monkeypatch.setattr(xlsx_module, "load_settled", lambda *a, **k: pytest.fail("parsed again"))
    assert list(backend.read()["flags"]) == [f"flag-{i}" for i in first["id"]]
    monkeypatch.undo()
    backend.append_result({"run_id": "a1"})  # nor do the results row and classes, which leave labels alone
    backend.update_classes([{"class": c} for c in CLASSES])
    monkeypatch.setattr(xlsx_module, "load_settled", lambda *a, **k: pytest.fail("parsed again"))
    assert list(backend.read()["flags"]) == [f"flag-{i}" for i in first["id"]]
    monkeypatch.undo()
    XlsxPerson(backend).edit(first["id"][0], "label", "bird")
    assert backend.read()["label"][0] == "bird"
    backend.cache_path.write_text("{not json")
    assert backend.read()["label"][0] == "bird"


def test_the_edits_after_a_write_reuse_the_saved_workbook_until_someone_else_saves(backend, monkeypatch):
    backend.write(with_images(backend))
    monkeypatch.setattr(xlsx_module, "load_settled", lambda *a, **k: pytest.fail("loaded again"))
    backend.append_result({"run_id": "a1", "val_accuracy": "0.5"})
    backend.update_classes([{"class": c, "train": "2"} for c in CLASSES])
    backend.append_result({"run_id": "b2", "val_accuracy": "0.75"})
    monkeypatch.undo()
    workbook = openpyxl.load_workbook(backend.path)  # saved three times from one workbook, and whole
    assert len(workbook["labels"]._images) == 6 and len(workbook["results"]._charts) == 1
    assert list(backend.read_results()["run_id"]) == ["a1", "b2"]
    assert [c.value for c in workbook["classes"]["B"]] == ["train", 2, 2, 2]
    XlsxPerson(backend).edit(backend.read()["id"][0], "label", "bird")
    backend.append_result({"run_id": "c3"})
    assert backend.read()["label"][0] == "bird"
    assert len(openpyxl.load_workbook(backend.path)["labels"]._images) == 6


class XlsxPerson:
    def __init__(self, backend):
        self.backend = backend

    def edit(self, row_id, column, value):
        workbook = openpyxl.load_workbook(self.backend.path)
        sheet = workbook["labels"]
        header = [c.value for c in sheet[1]]
        for row in sheet.iter_rows(min_row=2):
            if row[header.index("id")].value == row_id:
                row[header.index(column)].value = value
        workbook.save(self.backend.path)


# --- a whole project ----------------------------------------------------------------------------

def xlsx_project(tmp_path):
    """dcloop init --xlsx --from-csv on real digit scans; tiny training on one thread."""
    source = tmp_path / "src"
    split_rows(write_digits(source / "images")).to_csv(source / "rows.csv", index=False)
    root = tmp_path / "proj"
    result = CliRunner().invoke(cli, ["init", str(root), "--xlsx", "--from-csv", str(source / "rows.csv")])
    assert result.exit_code == 0, result.output
    assert "edit the labels in labels.xlsx" in result.output
    text = (root / "dcloop.toml").read_text()
    assert 'backend = "xlsx"' in text and 'path = "labels.xlsx"' in text
    for section, values in {**TINY_MODEL, "model": {**TINY_MODEL["model"], "threads": 1}}.items():
        for key, value in values.items():
            text = replace_setting(text, section, key, value)
    (root / "dcloop.toml").write_text(text)
    return root


def sync_ok(root):
    result = CliRunner().invoke(cli, ["sync", str(root)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.training
def test_init_xlsx_and_sync(tmp_path):
    root = xlsx_project(tmp_path)
    assert not (root / "labels.csv").exists()
    assert "Run " in sync_ok(root)
    workbook = openpyxl.load_workbook(root / "labels.xlsx")
    table = XlsxBackend(root / "labels.xlsx", root).read()
    assert len(table) == 90 and (table["prediction"] != "").all() and (table["suspicion"] != "").all()
    assert len(workbook["labels"]._images) == 90
    assert workbook["results"].max_row == 2 and workbook["results"]._charts
    assert [c.value for c in workbook["classes"]["A"]][1:] == ["0", "1", "7"]
    assert "Nothing changed" in sync_ok(root)


@pytest.mark.training
def test_a_held_workbook_keeps_the_trained_run_and_the_next_sync_writes_it(tmp_path, monkeypatch):
    from dcloop import fsutil
    root = xlsx_project(tmp_path)
    real_replace = os.replace

    def excel_holds_it(src, dst):
        if str(dst) == str(root / "labels.xlsx"):
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst)

    before = (root / "labels.xlsx").read_bytes()
    monkeypatch.setattr(fsutil.os, "replace", excel_holds_it)
    result = CliRunner().invoke(cli, ["sync", str(root)])
    assert result.exit_code == 1 and "Error: labels.xlsx is open in another program" in result.output
    assert "The model trained (run " in result.output
    assert (root / "labels.xlsx").read_bytes() == before
    last = json.loads((root / ".dcloop/last_trained.json").read_text())
    assert last["unwritten"] is True

    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    result = CliRunner().invoke(cli, ["sync", str(root)])
    assert result.exit_code == 0 and result.stdout.startswith(f"Nothing changed since run {last['run_id']}")
    table = XlsxBackend(root / "labels.xlsx", root).read()
    assert (table["prediction"] != "").all()
    assert len(openpyxl.load_workbook(root / "labels.xlsx")["labels"]._images) == len(table)


# --- the real LibreOffice -----------------------------------------------------------------------

needs_libreoffice = pytest.mark.skipif(bool(libreoffice.missing()), reason=libreoffice.missing() or "")


@pytest.mark.training
@needs_libreoffice
def test_libreoffice_edits_survive_a_sync(tmp_path):
    root = xlsx_project(tmp_path)
    sync_ok(root)
    path = root / "labels.xlsx"
    workbook = openpyxl.load_workbook(path)
    sheet = workbook["labels"]
    sheet.cell(1, 12).value = "reviewer"
    for row in range(2, sheet.max_row + 1):
        sheet.cell(row, 12).value = f"ann {row}"
    workbook.save(path)
    backend = open_backend(new_config({"table": {"backend": "xlsx"}}), root)
    before = tbl.normalize(backend.read(), "before")
    first, second = before["url"][0], before["url"][5]

    libreoffice.edit(path, {first: {"label": "7"}, second: {"label": "1"}})
    assert b"LibreOffice" in zipfile.ZipFile(path).read("docProps/app.xml")  # Calc wrote it, as it writes xlsx

    assert "Run " in sync_ok(root)
    after = tbl.normalize(backend.read(), "after")
    assert list(after["id"]) == list(before["id"])
    assert list(after["url"]) == list(before["url"])
    edited = after.set_index("url")["label"]
    assert (edited[first], edited[second]) == ("7", "1")
    untouched = ~after["url"].isin([first, second])
    assert list(after.loc[untouched, "label"]) == list(before.loc[untouched, "label"])
    assert list(after["reviewer"]) == list(before["reviewer"])
    assert (after["prediction"] != "").all()
    workbook = openpyxl.load_workbook(path)
    sheet = workbook["labels"]
    assert len(sheet._images) == len(after)
    assert sheet[f"{letter('id')}2"].number_format == "@" and sheet.freeze_panes == "A2"
    kinds = {(str(v.sqref), v.type, v.errorStyle) for v in sheet.data_validations.dataValidation}
    whole = {c: f"{letter(c)}2:{letter(c)}1048576" for c in tbl.COLUMNS}  # Calc ends them near row 1,000
    assert {(whole[c], "textLength", "warning") for c in tbl.MACHINE_COLUMNS} <= kinds
    assert (whole["label"], "list", "warning") in kinds
    assert workbook["results"].max_row == 3 and workbook["classes"]["A2"].value == "0"
