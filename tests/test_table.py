import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcloop import table as tbl
from dcloop.errors import SchemaError


def frame(rows, columns=None):
    return pd.DataFrame(rows, columns=columns or tbl.COLUMNS).astype(object).fillna("").astype(str)


def test_normalize_adds_missing_known_columns_and_keeps_user_columns():
    raw = pd.DataFrame({"url": ["a.png"], "label": ["x"], "reviewer": ["ann"]})
    out = tbl.normalize(raw, "labels.csv")
    assert list(out.columns[:3]) == ["url", "label", "reviewer"]
    assert set(tbl.COLUMNS) <= set(out.columns)
    assert out.loc[0, "reviewer"] == "ann"


def test_missing_required_column_names_file_and_column():
    with pytest.raises(SchemaError, match=r"labels.csv: missing required column\(s\) label; the header is: url, split"):
        tbl.normalize(pd.DataFrame({"url": ["a"], "split": ["train"]}), "labels.csv")


def test_duplicate_ids_name_the_id_and_rows():
    raw = frame([{"id": "a", "url": "1"}, {"id": "b", "url": "2"}, {"id": "a", "url": "3"}])
    with pytest.raises(SchemaError, match=r"duplicate id\(s\): 'a' on rows 2, 4"):
        tbl.normalize(raw, "labels.csv")


def test_assign_ids_is_deterministic_and_distinguishes_repeated_urls():
    table = frame([{"id": "", "url": "x.png"}, {"id": "", "url": "x.png"}, {"id": "keep", "url": "y.png"}])
    ids = tbl.assign_ids(table)
    assert ids == tbl.assign_ids(table)
    assert len(set(ids.values())) == 2 and "keep" not in ids.values()


def test_with_ids_fills_blank_split_of_new_rows_only():
    table = frame([{"id": "", "url": "a", "split": ""}, {"id": "", "url": "b", "split": "val"},
                   {"id": "old", "url": "c", "split": ""}])
    out = tbl.with_ids(table, tbl.assign_ids(table), "train")
    assert list(out["split"]) == ["train", "val", ""]
    assert (out["id"] != "").all()


def test_validate_flags_unknown_label_split_and_blank_url():
    table = frame([{"id": "1", "url": "a", "label": "cat", "split": "train"},
                   {"id": "2", "url": "", "label": "dog", "split": "train"},
                   {"id": "3", "url": "c", "label": "cow", "split": "train"},
                   {"id": "4", "url": "d", "label": "", "split": "holdout"}])
    checked = tbl.validate(table, ["cat", "dog"])
    assert checked.flags == {"2": ["blank-url"], "3": ["unknown-label:cow"], "4": ["unknown-split:holdout"]}
    assert list(checked.trainable("train")) == [True, False, False, False]


def test_label_version_ignores_row_order_and_machine_columns():
    a = frame([{"id": "1", "url": "u1", "label": "x", "split": "train"},
               {"id": "2", "url": "u2", "label": "y", "split": "val", "prediction": "x"}])
    b = a.iloc[::-1].copy()
    b["prediction"] = "z"
    assert tbl.label_version(a) == tbl.label_version(b)
    b.loc[b["id"] == "1", "label"] = "y"
    assert tbl.label_version(a) != tbl.label_version(b)


def test_diff_lists_changed_added_and_removed_rows():
    before = frame([{"id": "1", "url": "u1", "label": "x", "split": "train"},
                    {"id": "2", "url": "u2", "label": "y", "split": "train"}])
    after = frame([{"id": "1", "url": "u1", "label": "y", "split": "train"},
                   {"id": "3", "url": "u3", "label": "x", "split": "val"}])
    d = tbl.diff(before, after).set_index("id")
    assert d.loc["1", "change"] == "changed" and d.loc["1", "label_before"] == "x" and d.loc["1", "label_after"] == "y"
    assert d.loc["2", "change"] == "removed" and d.loc["3", "change"] == "added"


def test_apply_patch_matches_by_id_after_a_sort_and_never_touches_human_cells():
    current = frame([{"id": "b", "url": "ub", "label": "y", "note": "mine"},
                     {"id": "a", "url": "ua", "label": "x"}])
    patch = pd.DataFrame({"id": ["a", "b"], "prediction": ["pa", "pb"], "label": ["HACK", "HACK"]})
    out = tbl.apply_patch(current, patch)
    assert list(out["prediction"]) == ["pb", "pa"]
    assert list(out["label"]) == ["y", "x"] and out.loc[0, "note"] == "mine"


def test_apply_patch_gives_new_rows_their_id_by_url_and_repeat():
    current = frame([{"id": "", "url": "same"}, {"id": "z", "url": "other"}, {"id": "", "url": "same"}])
    ids = tbl.assign_ids(current)
    patch = pd.DataFrame({tbl.NEW_ROW_KEY: list(ids), "id": list(ids.values()), "split": ["val", "val"]})
    out = tbl.apply_patch(current, patch)
    assert list(out["id"]) == [ids["same#0"], "z", ids["same#1"]]
    assert list(out["split"]) == ["val", "", "val"]


cell = st.text(alphabet="abc019 ,\"=+", max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(cell, cell, cell), min_size=1, max_size=8), st.randoms())
def test_apply_patch_is_idempotent_and_keeps_human_columns(rows, rnd):
    current = frame([{"id": f"r{n}", "url": u, "label": lab, "note": note} for n, (u, lab, note) in enumerate(rows)])
    ids = list(current["id"])
    rnd.shuffle(ids)
    patch = pd.DataFrame({"id": ids, "prediction": [i[::-1] for i in ids], "suspicion": ["0.5"] * len(ids)})
    once = tbl.apply_patch(current, patch)
    assert once.equals(tbl.apply_patch(once, patch))
    assert once[tbl.HUMAN_COLUMNS].equals(current[tbl.HUMAN_COLUMNS])
    assert (once["prediction"] == once["id"].str[::-1]).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(cell, st.sampled_from(["train", "val", "Test "]), st.sampled_from(["", "ok"])),
                min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["0", "1", "7"]), st.sampled_from(tbl.SPLITS),
                          st.sampled_from(["", "ok"]), st.booleans()), max_size=8))
def test_apply_decisions_changes_only_expected_rows_decided_cells_and_twice_is_once(rows, picks):
    current = frame([{"id": f"r{n}", "url": "u", "label": lab, "split": s, "reviewed": r, "note": "n"}
                     for n, (lab, s, r) in enumerate(rows)], tbl.COLUMNS + ["reviewed"])
    seen = current.set_index("id")
    decided = pd.DataFrame([{"id": f"r{n}", "label": lab, "split": s, "reviewed": r,
                             **{f"was_{c}": (seen.loc[f"r{n}", c] if f"r{n}" in seen.index and fresh else "stale")
                                for c in tbl.DECIDED_COLUMNS}}
                            for n, lab, s, r, fresh in picks],
                           columns=["id", *tbl.DECIDED_COLUMNS, *(f"was_{c}" for c in tbl.DECIDED_COLUMNS)])
    once, refused = tbl.apply_decisions(current, decided)
    untouched = [c for c in current.columns if c not in tbl.DECIDED_COLUMNS]
    assert once[untouched].equals(current[untouched])
    for key, row in decided.iterrows():
        if key in refused:
            assert row["was_label"] == "stale" or row["id"] not in seen.index or decided["id"].loc[:key - 1].eq(
                row["id"]).any()  # a stale view, a lost row, or a row an earlier decision changed
    assert tbl.apply_decisions(once, decided)[0].equals(once) or decided["id"].duplicated().any()


def test_atomic_writes_keep_the_file_mode(tmp_path):
    import os
    from dcloop.fsutil import atomic_write_text
    path = tmp_path / "labels.csv"
    path.write_text("url,label\n")
    os.chmod(path, 0o664)
    atomic_write_text(path, "url,label\na,b\n")
    assert os.stat(path).st_mode & 0o777 == 0o664
    atomic_write_text(tmp_path / "new.csv", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "new.csv").st_mode & 0o777 == 0o666 & ~umask


# --- unknown labels say what they nearly are; flags counted and ranked for a summary ---

@pytest.mark.parametrize("label, flag", [
    ("IV", "unknown-label:IV (did you mean 'iv'?)"),                       # case
    (" Iv\u200b", "unknown-label: Iv? (U+0020 U+0049 U+0076 U+200B) (did you mean 'iv'?)"),  # case, space, invisible
    ("\uff29\uff36", "unknown-label:\uff29\uff36 (U+FF29 U+FF36) (did you mean 'iv'?)"),    # full-width letters
    ("cow", "unknown-label:cow"),                                          # nothing near: no suggestion
    ("x", "unknown-label:x"),
])
def test_an_unknown_label_flag_suggests_the_class_it_differs_from_only_in_case_or_form(label, flag):
    assert tbl.unknown_label_flag(label, ["i", "iv", "v"]) == flag


def test_labels_stay_case_sensitive_the_suggestion_is_only_a_hint():
    table = frame([{"id": "r1", "url": "a.png", "label": "IV", "split": "train"}])
    checked = tbl.validate(table, ["iv"])
    assert checked.flags == {"r1": ["unknown-label:IV (did you mean 'iv'?)"]}
    assert list(checked.label) == ["IV"] and not checked.trainable("train").any()


def test_a_suggestion_needs_exactly_one_near_class():
    assert tbl.suggested_class("A", ["a", "\uff41"]) == ""  # two classes fold to 'a': say none
    assert tbl.suggested_class("A", ["a", "b"]) == "a"


def test_flag_counts_count_rows_per_kind_and_skip_the_augmented_mark():
    flags = pd.Series(["label? model says 7 (0.91); outlier", "dup-of:x1 (train) +1", "outlier; outlier",
                       "augmented", "", "unknown-label:IV (did you mean 'iv'?)"])
    assert tbl.flag_counts(flags) == {"outlier": 2, "dup-of": 1, "label?": 1, "unknown-label": 1}


def test_ranked_puts_rows_left_out_of_training_first_then_suspicion():
    table = frame([{"id": "a", "suspicion": "0.400", "flags": "label? model says 1 (0.80)"},
                   {"id": "b", "suspicion": "0.000", "flags": "unknown-label:IV (did you mean 'iv'?)"},
                   {"id": "c", "suspicion": "0.900", "flags": "outlier"},
                   {"id": "d", "suspicion": "0.000", "flags": ""},
                   {"id": "e", "suspicion": "", "flags": "unreadable: http 404"}])
    assert list(tbl.ranked(table, 10)["id"]) == ["b", "e", "c", "a"]
    assert list(tbl.ranked(table, 2)["id"]) == ["b", "e"]
