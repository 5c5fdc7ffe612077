"""scripts/bench_keras.py: reading each tool's output and the table it prints (no TensorFlow needed)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_keras.py"
spec = importlib.util.spec_from_file_location("bench_keras", SCRIPT)
bk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bk)


def run(tool, seed, wall, val, book):
    return {"tool": tool, "seed": seed, "wall_s": wall, "val_accuracy": val, "label_book_accuracy": book,
            "load_avg": 0.5}


RUNS = [run("keras", 123, 400.0, 0.70, 0.50), run("default", 123, 300.0, 0.68, 0.55),
        run("recipe", 123, 200.0, 0.69, 0.52),
        run("keras", 124, 380.0, 0.68, 0.56), run("default", 124, 260.0, 0.66, 0.57),
        run("recipe", 124, 190.0, 0.67, 0.54)]


def test_the_last_json_line_of_a_process_is_its_answer():
    stdout = "Found 2067 files\n{\"early\": 1}\nEpoch 1/2\n{\"val_accuracy\": 0.5}\n\n"
    assert bk.last_json(stdout) == {"val_accuracy": 0.5}
    with pytest.raises(ValueError, match="no JSON object"):
        bk.last_json("Epoch 1/2\n")


def test_dcloop_scores_read_val_and_the_test_split_as_label_book_from_sync_json():
    sync_json = {"trained": True, "message": "trained", "result": {
        "run_id": "r1", "val_accuracy": "0.6937", "test_accuracy": "0.5000", "epochs": "100", "best_epoch": "61",
        "images_per_s": "286", "duration_s": "229.1", "threads": "2"}}
    scores = bk.dcloop_scores(sync_json)
    assert (scores["val_accuracy"], scores["label_book_accuracy"]) == (0.6937, 0.5)
    assert scores["detail"]["best_epoch"] == "61"
    with pytest.raises(ValueError, match="did not train: Nothing changed"):
        bk.dcloop_scores({"trained": False, "message": "Nothing changed", "result": {}})


def test_summaries_are_per_tool_mean_and_sample_sd_and_ratios_pair_runs_of_one_seed():
    s = bk.summarize(RUNS)
    assert list(s) == ["keras", "default", "recipe"]
    assert s["keras"]["n"] == 2
    assert s["keras"]["wall_s"] == pytest.approx((390.0, np.std([400.0, 380.0], ddof=1)))
    r = bk.ratios(RUNS)
    assert r["default"]["of_means"] == pytest.approx(390 / 280)
    assert r["recipe"]["per_seed"] == pytest.approx({123: 2.0, 124: 2.0})


def test_one_seed_has_no_spread_and_says_so():
    one = RUNS[:2]
    s = bk.summarize(one)
    assert math.isnan(s["keras"]["wall_s"][1])
    assert bk.plus_minus(s["keras"]["wall_s"], 1) == "400.0"
    diff, se = bk.difference(s["keras"], s["default"], "val_accuracy")
    assert diff == pytest.approx(-0.02) and bk.verdict(diff, se) == "one seed: no noise estimate"


def test_the_report_lists_every_run_the_means_and_the_ratio_with_its_accuracy_verdict():
    figures = {"epochs": 100, "seeds": 2, "threads": 0, "runs": RUNS,
               "machine": {"cores": 2, "load_avg_start": 0.2, "load_avg_end": 1.4, "tf_version": "2.21.0"}}
    text = bk.report(figures)
    assert "threads: each tool its default; tf 2.21.0" in text
    assert sum(line.startswith("dcloop recipe only (crossfit 0)") for line in text.splitlines()) == 3  # 2 runs, 1 mean
    assert "keras script (tf-keras)             2  390.0 ± 14.1    0.690 ± 0.014" in text
    assert "keras wall / dcloop recipe only (crossfit 0) wall: 2.00x (per seed 2.00, 2.00)" in text
    # label_book: keras 0.53 ± 0.042, default 0.56 ± 0.014: +0.030 with 2 SE of 0.063
    assert "  label_book +0.030 against keras, within 2 SE (0.063)" in text


def test_dcloop_settings_become_their_environment_variables():
    assert bk.settings_env(["model.device=cpu", "report.map=pca"]) == {"DCLOOP_MODEL_DEVICE": "cpu",
                                                                        "DCLOOP_REPORT_MAP": "pca"}
    with pytest.raises(SystemExit, match="expected SECTION.FIELD=VALUE"):
        bk.settings_env(["device=cpu"])


def image_folders(root: Path) -> Path:
    """train/, val/, label_book/ with 3 classes of small PNGs, each class its own colour."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3), ("label_book", 2)):
        for c, name in enumerate(("i", "ii", "iii")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                pixels = np.full((12, 12, 3), 60 * c, np.uint8) + rng.integers(0, 40, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")
    return root


@pytest.mark.training
def test_a_dcloop_run_is_init_and_sync_as_processes_scored_on_label_book(tmp_path):
    data = image_folders(tmp_path / "data")
    found = bk.run_dcloop("recipe", data, epochs=1, seed=5, threads=1, settings={"DCLOOP_REPORT_MAP": "pca"})
    assert found["tool"] == "recipe" and found["seed"] == 5
    assert found["wall_s"] == pytest.approx(found["init_s"] + found["sync_s"])
    assert 0 <= found["val_accuracy"] <= 1 and 0 <= found["label_book_accuracy"] <= 1
    assert found["detail"]["epochs"] == "1" and found["detail"]["threads"] == "1"
    json.dumps(found)  # goes into --json-out as it is


def test_each_run_is_saved_as_it_ends_and_the_saved_file_prints_the_same_table(tmp_path):
    path = tmp_path / "bench-keras.json"
    figures = {"epochs": 100, "seeds": 2, "threads": 0, "dcloop_settings": {}, "runs": [],
               "machine": {"cores": 2, "load_avg_start": 0.2, "tf_version": "2.21.0"}}
    for r in RUNS[:4]:  # interrupted during seed 124
        bk.record(figures, r, path)
        assert len(json.loads(path.read_text())["runs"]) == len(figures["runs"])
    saved = json.loads(path.read_text())
    assert bk.report(saved) == bk.report(figures)
    assert "keras wall / dcloop default sync wall: 1.30x (per seed 1.33)" in bk.report(saved)
