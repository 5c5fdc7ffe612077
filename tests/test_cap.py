"""The cap: counts per class and split in the error, and a ranked file of rows cheapest to drop."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop.backends.csv import read_csv
from dcloop.cap import drop_candidates, format_counts
from dcloop.cli import cli
from dcloop.errors import CapError
from dcloop.sync import sync
from tests.conftest import split_rows, write_digits


def with_copies(tmp_path, copies=3):
    """Digit rows plus ``copies`` exact copies (new file names) of train images, appended at the end."""
    images = tmp_path / "proj" / "images"
    rows = split_rows(write_digits(images))
    extra = []
    for url in rows.loc[rows["split"] == "train", "url"].iloc[:copies]:
        copy = url.replace(".png", "-copy.png")
        shutil.copy(tmp_path / "proj" / url, tmp_path / "proj" / copy)
        extra.append({"url": copy, "label": rows.loc[rows["url"] == url, "label"].iloc[0], "split": "train"})
    return pd.concat([rows, pd.DataFrame(extra)], ignore_index=True), [e["url"] for e in extra]


def test_over_the_cap_counts_per_class_and_lists_exact_duplicates_first(make_project, config_of, tmp_path):
    rows, copies = with_copies(tmp_path)
    root = make_project(rows, {"project": {"cap": 80}})
    with pytest.raises(CapError) as raised:
        sync(root, config_of(root))
    message = str(raised.value)
    assert message.startswith("93 labeled rows in train+val (70 train, 23 val) exceed the cap of 80. "
                              "Per class: train: 0 25, 1 23, 7 22; val: 0 8, 7 8, 1 7.")
    path = root / "cap-suggestions.csv"
    assert f"listed in {path}; dropping the first 13 gets under the cap" in message
    table = read_csv(root / "labels.csv")
    suggested = read_csv(path)
    assert len(suggested) >= 13 and suggested["rank"].tolist() == [str(n) for n in range(1, len(suggested) + 1)]
    first = suggested.iloc[:3]
    assert set(first["url"]) == set(copies)  # the copies go, the originals (earlier rows) are kept
    assert first["reason"].str.startswith("exact duplicate of ").all()
    kept = first["reason"].str.extract(r"of (\S+)")[0]
    assert set(table.set_index("id").loc[kept, "url"]) == {c.replace("-copy", "") for c in copies}
    assert not suggested["id"].duplicated().any() and set(suggested["split"]) <= {"train", "val"}


def test_cap_command_reports_within_the_cap_and_json_over_a_target(make_project):
    root = make_project()
    ok = CliRunner().invoke(cli, ["cap", str(root)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("90 labeled rows in train+val, within the cap of 10000 (9910 to spare). "
                                "Per class: train: ")
    assert not (root / "cap-suggestions.csv").exists()
    over = CliRunner().invoke(cli, ["cap", str(root), "--target", "60", "--json"])
    assert over.exit_code == 0, over.output
    found = json.loads(over.stdout)
    assert (found["used"], found["cap"], found["excess"]) == (90, 60, 30)
    assert sum(found["counts"]["train"].values()) == 67 and sum(found["counts"]["val"].values()) == 23
    assert len(found["suggestions"]) == 30 and (root / "cap-suggestions.csv").exists()
    # no run yet, so no flags: near duplicates (judged on pixels), then redundant train rows of the largest classes
    reasons = [s["reason"].split(":")[0].split(" of ")[0] for s in found["suggestions"]]
    assert reasons == sorted(reasons, key=["near duplicate", "redundant"].index)
    redundant = [s for s in found["suggestions"] if s["reason"].startswith("redundant")]
    assert len(redundant) >= 25 and all(s["split"] == "train" for s in redundant)
    assert re.fullmatch(r"redundant: [017] is the largest class in train \(2[23] rows at this point\), most like \w+",
                        redundant[0]["reason"])


def test_tiers_rank_duplicates_then_augmented_then_flagged_then_redundant():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (8, 3, 32, 32), dtype=np.uint8)
    pixels[5] = pixels[1]  # an exact duplicate of row 1
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(8)], "label": list("aaaabbbb"),
                         "split": ["train"] * 7 + ["val"], "url": [f"{i}.png" for i in range(8)],
                         "note": [""] * 6 + ["augmented from r0: rotate +1.0°", ""]})
    out = drop_candidates(rows, pixels, None, {"r2": "label? model says b (0.90)"}, excess=5)
    assert out["id"].tolist()[:3] == ["r5", "r6", "r2"]
    assert out["reason"].tolist()[:3] == ["exact duplicate of r1 (kept)", "augmented variant of r0",
                                          "flagged by the last run: label? model says b (0.90)"]
    assert len(out) == 5 and out["reason"].iloc[3:].str.startswith("redundant: ").all()


def test_counts_name_the_largest_classes_and_sum_the_rest():
    counts = {"train": {f"c{i}": i for i in range(1, 6)}, "val": {}}
    assert format_counts(counts, shown=2) == "train: c5 5, c4 4, +3 more classes with 6; val: none"
