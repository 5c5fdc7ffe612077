"""Ids that spreadsheet programs leave alone, and ids given back where one changed them."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcloop import table as tbl
from dcloop.backends.csv import CsvBackend, read_csv
from dcloop.history import History
from dcloop.pull import pull

from . import libreoffice

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def a_spreadsheet_would_convert(text: str) -> bool:
    """The default-import rules of Excel, LibreOffice, Numbers and Google Sheets, as a checklist.

    Numbers (signs, separators, exponents, percentages, leading zeros), currencies around a number,
    dates and times (numeric groups with separators, month names), fractions, booleans, formulas.
    """
    t = text.strip().lower()
    number = r"[+-]?(\d[\d,. ]*|\.\d+)(e[+-]?\d+)?"
    return bool(
        t.startswith(("=", "+", "-", "@", "'"))
        or re.fullmatch(number + "%?", t)
        or re.fullmatch(r"([$€£¥₹]|r|rs|kr|fr|zł)\s?" + number, t) or re.fullmatch(number + r"\s?([$€£¥]|kr|zł)", t)
        or re.fullmatch(r"\d{1,4}[-/.]\d{1,2}([-/.]\d{1,4})?", t) or re.search(r"\d:\d", t)
        or re.fullmatch(rf"(\d{{1,2}}[-/. ]?)?({'|'.join(MONTHS)})[a-z]*([-/. ]?\d{{1,4}}){{0,2}}", t) and re.search(r"\d", t)
        or re.fullmatch(r"\d+ \d+/\d+", t)
        or t in ("true", "false", "wahr", "falsch", "vrai", "faux", "yes", "no")
        or re.search(r"\de\d", t) or re.fullmatch(r"\d+e[+-]?\d*", t)
    )


@given(st.text(max_size=80), st.integers(0, 50))
@settings(max_examples=300, deadline=None)
def test_new_ids_are_text_to_every_spreadsheet_program(url, repeat):
    row_id = tbl.new_id(f"{url}#{repeat}")
    assert re.fullmatch(r"x[0-9a-df-hj-km-np-tv-z]{10}", row_id)
    assert not a_spreadsheet_would_convert(row_id)
    assert tbl.is_safe_name(row_id)


@pytest.mark.parametrize("text", ["2741470e07", "0589138133", "1e308", "12/3", "3-Mar", "mar3", "10:30", "TRUE",
                                  "12%", "$5", "=A1", "1 1/2", "5e3", "R100"])
def test_the_checklist_catches_what_programs_convert(text):
    assert a_spreadsheet_would_convert(text)


@pytest.mark.parametrize("cell, original, same", [
    ("2.74E+13", "2741470e07", True), ("27414700000000", "2741470e07", True), ("589138133", "0589138133", True),
    ("1.79769313486232E+308", "1e999", True), ("2.75E+13", "2741470e07", False), ("589138133", "0589138134", False),
    ("0589138133", "0589138133", False), ("abc", "0589138133", False), ("5.89E+08", "0589138133", True),
])
def test_shows_number(cell, original, same):
    assert tbl.shows_number(cell, original) is same


def known_table(ids):
    return pd.DataFrame({"id": ids, "url": [f"img/{n}.png" for n in range(len(ids))], "label": ["i"] * len(ids),
                         "split": ["train"] * len(ids)})


def test_repair_ids_gives_back_ids_changed_to_numbers_or_cleared():
    known = known_table(["2741470e07", "0589138133", "1e400", "2e400", "abc0123456", "x1234567890"])
    table = known.copy()
    table["id"] = ["2.74E+13", "589138133", "1.79769313486232E+308", "1.79769313486232E+308", "", "x1234567890"]
    repairs = tbl.repair_ids(table.reindex(columns=tbl.COLUMNS, fill_value=""), known)
    assert repairs == [(0, "2.74E+13", "2741470e07"), (1, "589138133", "0589138133"),
                       (2, "1.79769313486232E+308", "1e400"), (3, "1.79769313486232E+308", "2e400"), (4, "", "abc0123456")]


def test_repair_ids_leaves_new_rows_and_ambiguous_ones_alone():
    known = known_table(["aaa", "bbb"])
    table = pd.DataFrame({"id": ["aaa", "new1", ""], "url": ["img/0.png", "img/9.png", "img/8.png"]})
    assert tbl.repair_ids(table, known) == []
    twins = pd.DataFrame({"id": ["p", "q"], "url": ["same.png", "same.png"]})
    assert tbl.repair_ids(pd.DataFrame({"id": ["z"], "url": ["same.png"]}), twins) == []


def test_pull_gives_changed_ids_back_and_counts_no_change(tmp_path, config_of):
    from dcloop.project import init_project
    ids = ["2741470e07", "0589138133", "1e400", "2e400", "abc0123456"]
    rows = known_table(ids)
    init_project(tmp_path / "p", rows[["url", "label", "split"]])
    root = tmp_path / "p"
    table = read_csv(root / "labels.csv")
    table["id"] = ids
    History(root / ".dcloop").record(table, "2026-12-01T00:00:00Z")
    version = History(root / ".dcloop").head()
    table["id"] = ["2.74E+13", "589138133", "1.79769313486232E+308", "1.79769313486232E+308", ""]
    table.to_csv(root / "labels.csv", index=False)
    said = []
    pulled = pull(CsvBackend(root / "labels.csv", root / "results.csv"), config_of(root),
                  History(root / ".dcloop").snapshot(version), progress=said.append)
    assert list(pulled["id"]) == ids and tbl.label_version(pulled) == version
    assert list(read_csv(root / "labels.csv")["id"]) == ids
    assert said == ["labels.csv: gave 5 row(s) back the id a spreadsheet program or an edit had changed: "
                    "line 2 2.74E+13 -> 2741470e07, line 3 589138133 -> 0589138133, line 4 1.79769313486232E+308 -> "
                    "1e400, line 5 1.79769313486232E+308 -> 2e400, line 6 (blank) -> abc0123456"]


def test_duplicate_ids_that_look_like_numbers_say_how_to_import_as_text():
    table = pd.DataFrame({"id": ["1.79769313486232E+308"] * 2, "url": ["a", "b"], "label": ["i", "i"]})
    with pytest.raises(Exception, match=r"look converted to numbers by a spreadsheet program\. Import the id column "
                                        r"as text"):
        tbl.normalize(table, "labels.csv")


# --- the real LibreOffice ---------------------------------------------------------------------

needs_libreoffice = pytest.mark.skipif(bool(libreoffice.missing()), reason=libreoffice.missing() or "")


@needs_libreoffice
def test_libreoffice_round_trip_keeps_new_ids_and_gives_old_ones_back(tmp_path, config_of):
    """A project whose older ids look like numbers, opened, edited and saved in LibreOffice Calc."""
    from dcloop.project import init_project
    rows = pd.DataFrame({"url": [f"img/{n}.png" for n in range(8)], "label": ["i", "ii"] * 4,
                         "split": ["train"] * 6 + ["val"] * 2, "note": ["Grüße", "", "a;b", "", "", "", "", ""]})
    root = tmp_path / "p"
    init_project(root, rows)
    table = read_csv(root / "labels.csv")
    table.loc[[0, 1, 2], "id"] = ["2741470e07", "0589138133", "1e400"]  # ids an older dcloop made
    table.insert(len(table.columns), "reviewer", ["ann"] * 8)
    table.to_csv(root / "labels.csv", index=False)
    History(root / ".dcloop").record(table, "2026-12-01T00:00:00Z")
    version = History(root / ".dcloop").head()

    libreoffice.edit(root / "labels.csv", {"img/3.png": {"label": "i"}, "img/5.png": {"label": "i"}})

    saved = read_csv(root / "labels.csv")
    assert list(saved["id"][:2]) == ["27414700000000", "589138133"]  # what Calc's default import does to them
    assert list(saved["id"][3:]) == list(table["id"][3:])  # the new ids came through untouched
    pulled = pull(CsvBackend(root / "labels.csv", root / "results.csv"), config_of(root),
                  History(root / ".dcloop").snapshot(version))
    assert list(pulled["id"]) == list(table["id"])
    changes = tbl.diff(History(root / ".dcloop").snapshot(version), pulled)
    assert sorted(changes["id"]) == sorted(table["id"][[3, 5]]) and set(changes["change"]) == {"changed"}
    after = read_csv(root / "labels.csv")
    assert list(after["id"]) == list(table["id"]) and list(after["reviewer"]) == ["ann"] * 8
    assert list(after["note"]) == list(table["note"])
