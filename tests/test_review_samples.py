"""scripts/roman_review_sample.csv (reporting) and scripts/roman_tuning_sample.csv (tuning): valid
columns and decisions, the two samples disjoint, and (where the data folder is here) exactly the rows
scripts/roman_review_sample.py draws. The decisions themselves are not read beyond their form."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
REPORTING = SCRIPTS / "roman_review_sample.csv"
TUNING = SCRIPTS / "roman_tuning_sample.csv"
DATA = Path("/work/shared/data/roman-numerals")
COLUMNS = ["path", "split", "label", "decision", "correct_label", "unsure", "reason"]
CLASSES = {"i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"}

spec = importlib.util.spec_from_file_location("roman_review_sample", SCRIPTS / "roman_review_sample.py")
rrs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rrs)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.mark.parametrize("path,n", [(REPORTING, 320), (TUNING, 300)])
def test_columns_and_decisions(path, n):
    df = read(path)
    assert list(df.columns) == COLUMNS
    assert len(df) == n and df["path"].is_unique
    assert set(df["decision"]) <= {"keep", "fix", "remove"}
    assert set(df["unsure"]) <= {"", "yes"}
    assert set(df["split"]) == {"train", "val"}
    parts = df["path"].str.split("/")
    assert (parts.str.len() == 3).all()
    assert (parts.str[0] == df["split"]).all() and (parts.str[1] == df["label"]).all()
    assert set(df["label"]) <= CLASSES
    fix = df["decision"] == "fix"
    assert df.loc[fix, "correct_label"].isin(CLASSES).all()
    assert (df.loc[fix, "correct_label"] != df.loc[fix, "label"]).all()
    assert (df.loc[~fix, "correct_label"] == "").all()


def test_tuning_is_disjoint_from_reporting():
    assert not set(read(TUNING)["path"]) & set(read(REPORTING)["path"])


@pytest.mark.skipif(not DATA.is_dir(), reason="the Roman-numeral data folder is not here")
def test_rows_are_the_ones_the_script_draws():
    reporting = rrs.draw(DATA)
    assert list(reporting["path"]) == list(read(REPORTING)["path"])
    tuning = rrs.draw_tuning(DATA)
    assert list(tuning["path"]) == list(read(TUNING)["path"])
    assert tuning["split"].value_counts().to_dict() == {"train": 215, "val": 85}
