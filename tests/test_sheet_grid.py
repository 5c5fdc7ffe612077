"""The pure parts of the Sheets backend: A1 names, cell values, write plans, templates."""

from __future__ import annotations


import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcloop import table as tbl
from dcloop.backends import sheet_layout as layout
from dcloop.backends.sheet_grid import (a1, cell_text, column_letter, grid_frame, image_formula, plan_write,
                                        typed)
from dcloop.backends.sheet_http import RetryPolicy, backoff, quota_floor, retry_after_seconds
from dcloop.table import RESULT_COLUMNS


@pytest.mark.parametrize("index, letters", [(0, "A"), (25, "Z"), (26, "AA"), (701, "ZZ"), (702, "AAA")])
def test_column_letter(index, letters):
    assert column_letter(index) == letters


def test_a1_quotes_titles():
    assert a1("labels", 2, 2, 9) == "'labels'!C2:C9"
    assert a1("it's", 1, 0) == "'it''s'!A1:A1"


@pytest.mark.parametrize("value, text", [(None, ""), (7, "7"), (7.0, "7"), (0.5, "0.5"), (True, "TRUE"),
                                         ("007", "007"), (1e20, "1e+20")])
def test_cell_text(value, text):
    assert cell_text(value) == text


@pytest.mark.parametrize("text, numeric, value", [("0.50", True, 0.5), ("3", True, 3), ("007", False, "007"),
                                                  ("nan", True, "nan"), ("1_0", True, "1_0"), ("", True, "")])
def test_typed(text, numeric, value):
    assert typed(text, numeric) == value and type(typed(text, numeric)) is type(value)


@pytest.mark.parametrize("url, formula", [
    ("https://x.example/a.png", '=IMAGE("https://x.example/a.png")'),
    ('http://x.example/"q".png', '=IMAGE("http://x.example/""q"".png")'),
    ("javascript:alert(1)", ""), ("/data/a.png", ""), ("https://", ""), ("https://x.example/a b.png", ""),
    ('https://x.example/")&HYPERLINK("evil', '=IMAGE("https://x.example/"")&HYPERLINK(""evil")')])
def test_image_formula(url, formula):
    assert image_formula(url) == formula


def test_grid_frame_drops_blank_rows_and_keeps_row_numbers():
    values = [["id", "url", "", "label"], ["a", "u1"], [], ["b", "u2", "", "cat", "extra"]]
    frame = grid_frame(values)
    assert list(frame.columns) == ["id", "url", "Unnamed: 2", "label", "Unnamed: 4"]
    assert list(frame.index) == [2, 4] and frame.loc[4, "Unnamed: 4"] == "extra"


def apply_plan(values: list[list], plan, tagged: dict[str, list[int]]) -> list[list]:
    """What the sheet holds after a plan's rows are written through their tags (for checking plans)."""
    grid = [list(r) for r in values]
    for item in plan.raw + plan.formulas:
        for row in tagged[item["dataFilter"]["developerMetadataLookup"]["metadataValue"]]:
            cells = item["values"][0]
            grid += [[] for _ in range(row - len(grid))]
            grid[row - 1] += [""] * (len(cells) - len(grid[row - 1]))
            for column, value in enumerate(cells):
                if value is not None:
                    grid[row - 1][column] = cell_text(value)
    return grid


ids = st.lists(st.sampled_from([f"r{i}" for i in range(8)] + [""] * 3), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None)
@given(ids, st.lists(st.sampled_from(["", "train", "val"]), min_size=8, max_size=8),
       st.lists(st.sampled_from(["0.5", "0.25", "x", ""]), min_size=8, max_size=8))
def test_a_plan_does_what_apply_patch_does_and_twice_is_once(row_ids, splits, scores):
    row_ids = list(dict.fromkeys(i for i in row_ids if i)) + [""] * row_ids.count("")
    header = ["id", "url", "label", "split", "prediction", "suspicion"]
    values = [header] + [[i, f"https://x.example/{n}.png", "cat", splits[n]] for n, i in enumerate(row_ids)]
    table = tbl.normalize(grid_frame(values), "t")
    new = tbl.assign_ids(table)
    known = [i for i in row_ids if i]
    patch = pd.DataFrame({"id": known + list(new.values()), "prediction": "p",
                          "suspicion": scores[:len(known) + len(new)], "split": "test"})
    patch[tbl.NEW_ROW_KEY] = [""] * len(known) + list(new)
    untagged = plan_write(values, patch, "labels", {"suspicion"}, "t", {})
    assert untagged.raw == untagged.formulas == [] and untagged.rows_changed == 0
    tagged = {row_id: [line] for line, row_id in untagged.to_tag.items()}  # as write_rows tags them
    plan = plan_write(values, patch, "labels", {"suspicion"}, "t", tagged)
    assert plan.to_tag == {}
    after = apply_plan(values, plan, tagged)
    expected = tbl.apply_patch(table, patch)
    got = tbl.normalize(grid_frame(after), "t")
    for column in ["id", "url", "label", "split", "prediction"]:
        assert list(got[column]) == list(expected[column])
    assert [typed(s, True) for s in got["suspicion"]] == [typed(s, True) for s in expected["suspicion"]]
    again = plan_write(after, patch, "labels", {"suspicion"}, "t", tagged)
    assert again.raw == again.formulas == [] and again.rows_changed == 0


def test_backoff_is_capped_jittered_and_honours_retry_after():
    import random
    policy, rng = RetryPolicy(base_s=1, cap_s=8), random.Random(1)
    waits = [backoff(n, policy, None, rng) for n in range(10)]
    assert all(0 <= w <= min(8, 2 ** n) for n, w in enumerate(waits))
    assert backoff(0, policy, 30.0, rng) == 30.0


def test_quota_waits_span_at_least_quota_s_over_the_tries_and_stay_in_the_deadline():
    import random
    policy, rng = RetryPolicy(), random.Random(2)
    floors = [quota_floor(n, policy) for n in range(policy.attempts - 1)]
    assert sum(floors) == pytest.approx(policy.quota_s) and floors == sorted(floors)
    waits = [backoff(n, policy, None, rng, quota=True) for n in range(policy.attempts - 1)]
    assert policy.quota_s <= sum(waits) <= policy.deadline_s
    assert backoff(0, policy, 90.0, rng, quota=True) == 90.0


def test_retry_after_seconds():
    assert retry_after_seconds("7", 0) == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470) == 10.0
    assert retry_after_seconds("soon", 0) is None and retry_after_seconds(None, 0) is None


def test_templates_match_the_schema():
    tabs = layout.load_tabs()
    labels = tabs["labels"]
    assert labels.header == tbl.COLUMNS
    assert [c.name for c in labels.columns if c.owner == "machine"] == tbl.MACHINE_COLUMNS
    assert [c.name for c in labels.columns if c.owner == "human"] == tbl.HUMAN_COLUMNS
    assert tabs["results"].header == RESULT_COLUMNS
    chart = tabs["results"].chart
    assert {chart.domain, *chart.series} <= set(RESULT_COLUMNS)
    assert tabs["classes"].header[:5] == ["class", *tbl.SPLITS]


def test_a_broken_template_is_a_clear_error(tmp_path):
    (tmp_path / "labels.json").write_text('{"title": "labels", "columns": [{"nmae": "id"}]}')
    with pytest.raises(Exception, match="not a valid sheet template"):
        layout.load_tab(tmp_path / "labels.json")
