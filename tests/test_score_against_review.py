"""scripts/score_against_review.py on a tiny synthetic review and table (no shared data needed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "score_against_review.py"
spec = importlib.util.spec_from_file_location("score_against_review", SCRIPT)
sar = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sar)

CLASSES = ["i", "ii", "iii", "iv", "v"]


def make_review_and_table(tmp_path: Path, n_table=1000, n_review=400, seed=0):
    """A data folder's paths (no files), a review of a random sample of them and a dcloop-like table."""
    rng = np.random.default_rng(seed)
    data = tmp_path / "data"
    split = np.where(rng.random(n_table) < 0.7, "train", "val")
    label = rng.choice(CLASSES, n_table)
    rel = [f"{s}/{c}/img{i:04d}.png" for i, (s, c) in enumerate(zip(split, label))]
    picked = rng.choice(n_table, n_review, replace=False)
    decision = rng.choice(["keep", "fix", "remove"], n_review, p=[0.88, 0.04, 0.08])
    correct = [(CLASSES[(CLASSES.index(label[i]) + 1) % 5] if d == "fix" else "") for i, d in zip(picked, decision)]
    review = pd.DataFrame({"path": [rel[i] for i in picked], "split": split[picked], "label": label[picked],
                           "decision": decision, "correct_label": correct, "unsure": "", "reason": ""})
    problem_paths = set(review.loc[review["decision"] != "keep", "path"])
    is_problem = np.array([r in problem_paths for r in rel])
    table = pd.DataFrame({
        "id": [f"r{i}" for i in range(n_table)],
        "url": [str(data / r) for r in rel],
        "label": label,
        "split": split,
        "suspicion": rng.random(n_table).round(4),
        "label_prob": rng.random(n_table).round(4),
        "oracle": is_problem.astype(int),
        "flags": np.where(is_problem, "label? model says ii (0.91)",
                          np.where(rng.random(n_table) < 0.1, "dup-of:r1 (train); outlier far", "")),
    })
    review_csv, table_csv = tmp_path / "review.csv", tmp_path / "labels.csv"
    review.to_csv(review_csv, index=False)
    table.to_csv(table_csv, index=False)
    return data, review_csv, table_csv, review, table


def run_json(capsys, *argv) -> dict:
    assert sar.main([*map(str, argv), "--json", "--bootstrap", "300"]) == 0
    return json.loads(capsys.readouterr().out)


def test_random_score_is_near_half_and_an_oracle_is_one(tmp_path, capsys):
    data, review_csv, table_csv, review, _ = make_review_and_table(tmp_path)
    out = run_json(capsys, "--table", table_csv, "--data", data, "--review", review_csv,
                   "--score", "suspicion", "--score", "1 - label_prob", "--score", "oracle")
    problems = int((review["decision"] != "keep").sum())
    assert out["sample"] == 400 and out["problems"]["k"] == problems
    assert out["per_split"]["train"]["rows"] + out["per_split"]["val"]["rows"] == 400
    for name in ("suspicion", "1 - label_prob"):
        score = out["scores"][name]
        assert abs(score["auroc"] - 0.5) < 0.12
        lo, hi = score["auroc_ci95"]
        assert lo < score["auroc"] < hi and lo < 0.5 < hi
    oracle = out["scores"]["oracle"]
    assert oracle["auroc"] == pytest.approx(1.0) and oracle["auroc_ci95"] == [1.0, 1.0]
    assert oracle["recall_top15pct"]["share"] == pytest.approx(1.0)  # problems are < 15% of the table
    assert oracle["top"]["top15pct"]["K"] == 150
    assert oracle["top"]["top100"]["precision"]["k"] == min(problems, 100)
    flags = out["flags"]
    assert flags["label?"]["precision"]["share"] == pytest.approx(1.0)
    assert flags["dup-of"]["precision"]["k"] == 0 and flags["outlier"]["precision"]["k"] == 0
    assert flags["(no flag)"]["precision"]["k"] == 0


def test_text_report_and_fallback_join_without_data(tmp_path, capsys):
    data, review_csv, table_csv, *_ = make_review_and_table(tmp_path, n_table=300, n_review=120)
    table = pd.read_csv(table_csv, dtype=str, keep_default_na=False)
    table["url"] = "/elsewhere/copy/" + table["url"].str.split("/").str[-3:].str.join("/")
    table[["url", "suspicion"]].to_csv(tmp_path / "plain.csv", index=False)  # any CSV with url + score
    assert sar.main(["--table", str(tmp_path / "plain.csv"), "--review", str(review_csv),
                     "--bootstrap", "100"]) == 0
    text = capsys.readouterr().out
    assert "sampled rows found in the table: 120" in text
    assert "AUROC on the sample" in text and "95% CI" in text and "top 45" in text


def test_a_label_fixed_in_the_table_stops_counting(tmp_path, capsys):
    data, review_csv, table_csv, review, table = make_review_and_table(tmp_path, n_table=300, n_review=120)
    fixes = review[review["decision"] == "fix"]
    assert len(fixes)
    position = {str(data / p): i for i, p in enumerate(table["url"].map(lambda u: u[len(str(data)) + 1:]))}
    for path, right in zip(fixes["path"], fixes["correct_label"]):
        table.loc[position[str(data / path)], "label"] = right
    table.to_csv(table_csv, index=False)
    out = run_json(capsys, "--table", table_csv, "--data", data, "--review", review_csv)
    assert out["labels_changed_since_review"] == len(fixes)
    assert out["problems"]["k"] == int((review["decision"] == "remove").sum())


def test_wilson_auc_and_flag_kinds():
    p, lo, hi = sar.wilson(5, 10)
    assert p == 0.5 and lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert sar.wilson(0, 10)[2] == pytest.approx(0.2775, abs=1e-4)
    assert sar.wilson(0, 0) == (None, None, None)
    rng = np.random.default_rng(3)
    y, s = rng.random(200) < 0.2, rng.integers(0, 5, 200).astype(float)  # many ties
    assert sar.auc_by_ranks(y, s) == pytest.approx(roc_auc_score(y, s))
    assert sar.flag_kinds("label? model says x (0.8); dup-of:ab12 (val) +1; not-a-class? far") == \
        {"label?", "dup-of", "not-a-class?"}
    assert sar.flag_kinds("") == set()
    assert sar.relative_path("'/x/data/train/iv/a.png", None) == "train/iv/a.png"
