"""dcloop augment: seeded variants of train rows, added as rows through the backend, inside the cap."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from dcloop import table as tbl
from dcloop.augment import Transform, allot, apply_transform, fit_transform, ink_box, thin_classes
from dcloop.backends.csv import CsvBackend, read_csv
from dcloop.backends.memory import MemoryBackend
from dcloop.cli import cli
from dcloop.sync import sync
from tests.conftest import split_rows, write_digits


def thin_seven(tmp_path, name="proj"):
    """90 digit rows, then a third of the 7s dropped: 7 is the thin class."""
    rows = split_rows(write_digits(tmp_path / name / "images"))
    return rows[~((rows["label"] == "7") & (rows.index % 3 == 0))].reset_index(drop=True)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.training
def test_variants_keep_source_label_and_split_files_decode_and_sync_marks_them(make_project, config_of, tmp_path):
    root = make_project(thin_seven(tmp_path))
    result = run("augment", root, "--class", "7", "--budget", 6, "--seed", 1, "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["created"] == 6 and made["per_class"] == {"7": 6}
    table = read_csv(root / "labels.csv").set_index("id")
    for row in made["rows"]:
        source = tbl.augmented_source(row["note"])
        assert row["note"] == table.loc[row["id"], "note"]
        assert row["note"].startswith(f"augmented from {source}: rotate ")
        assert (table.loc[row["id"], "label"], table.loc[row["id"], "split"]) == ("7", "train")
        assert (table.loc[source, "label"], table.loc[source, "split"]) == ("7", "train")
        assert row["url"] == f"augmented/7/{row['id']}.png"
        with Image.open(root / row["url"]) as image, Image.open(root / table.loc[source, "url"]) as original:
            image.load()
            assert image.size == original.size
    sync(root, config_of(root))
    flags = read_csv(root / "labels.csv").set_index("id")["flags"]
    made_ids = [r["id"] for r in made["rows"]]
    assert all("augmented" in flags[i].split("; ") for i in made_ids)
    assert not any("augmented" in flags[i] for i in flags.index if i not in made_ids)


def test_same_table_and_seed_give_the_same_files_and_a_second_run_makes_new_ones(make_project, tmp_path):
    roots = [make_project(thin_seven(tmp_path, name), name=name) for name in ("a", "b")]
    outputs = [json.loads(run("augment", r, "--thin", "--budget", 4, "--seed", 7, "--json").stdout) for r in roots]
    assert outputs[0]["rows"] == outputs[1]["rows"]
    for row in outputs[0]["rows"]:
        assert (roots[0] / row["url"]).read_bytes() == (roots[1] / row["url"]).read_bytes()
    again = json.loads(run("augment", roots[0], "--class", "7", "--budget", 4, "--seed", 7, "--json").stdout)
    assert not {r["id"] for r in again["rows"]} & {r["id"] for r in outputs[0]["rows"]}
    other = json.loads(run("augment", roots[1], "--class", "7", "--budget", 4, "--seed", 8, "--json").stdout)
    assert [r["note"] for r in other["rows"]] != [r["note"] for r in again["rows"]]


def test_at_the_cap_augment_is_refused_and_near_it_the_budget_is_cut(make_project, tmp_path):
    rows = thin_seven(tmp_path)
    used = int(rows["split"].isin(["train", "val"]).sum())
    root = make_project(rows, {"project": {"cap": used}})
    refused = run("augment", root, "--thin", "--budget", 5)
    assert refused.exit_code == 1
    assert refused.stderr.endswith(f"Error: at the cap: {used} labeled train+val rows and a cap of {used} leave no "
                                   f"room for augmented rows. Make room first ('dcloop cap' lists rows cheapest "
                                   f"to drop) or raise [project] cap in dcloop.toml.\n")
    assert len(read_csv(root / "labels.csv")) == len(rows) and not (root / "augmented").exists()

    root = make_project(thin_seven(tmp_path, "near"), {"project": {"cap": used + 3}}, name="near")
    cut = run("augment", root, "--thin", "--budget", 5)
    assert cut.exit_code == 0, cut.output
    assert (f"dcloop: budget cut from 5 to 3: {used} labeled train+val rows and the cap of {used + 3} leave room "
            f"for 3 more") in cut.stderr
    assert cut.stdout.startswith("Added 3 augmented row(s) (7 3)")
    assert len(read_csv(root / "labels.csv")) == len(rows) + 3


def test_thin_means_fewer_train_rows_than_the_largest_and_the_smallest_fill_first():
    counts = {"a": 10, "b": 4, "c": 7}
    assert thin_classes(counts) == ["b", "c"] and thin_classes({"a": 3, "b": 3}) == []
    assert allot(counts, ["b", "c"], 5, ceiling=10) == {"b": 4, "c": 1}
    assert allot(counts, ["b", "c"], 100, ceiling=10) == {"b": 6, "c": 3}


@pytest.mark.training
def test_options_are_checked_and_thin_classes_stop_at_the_largest(make_project):
    root = make_project()
    both = run("augment", root, "--thin", "--class", "7", "--budget", 1)
    assert both.exit_code == 2 and "give exactly one of --class CLASS or --thin" in both.output
    unknown = run("augment", root, "--class", "9", "--budget", 1)
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: --class '9' is not one of the project's classes: 0, 1, 7.\n"
    assert not (root / "augmented").exists()
    fill = run("augment", root, "--thin", "--budget", 10)  # 0 and 7 have 22 train rows, 1 has 23
    assert fill.exit_code == 0 and fill.stdout.startswith("Added 2 augmented row(s) (0 1, 7 1)")
    assert ("budget cut from 10 to 2: that raises every thin class to the largest class's 23 train rows"
            in fill.stderr)
    level = run("augment", root, "--thin", "--budget", 1)
    assert level.exit_code == 1
    assert level.stderr.endswith("Error: no thin classes: every class with train rows has 23 of them. "
                            "Use --class CLASS to augment one class anyway.\n")


def test_fitted_transform_keeps_every_stroke_in_the_frame():
    pixels = np.full((40, 40), 255, np.uint8)
    pixels[5:35, 33:37] = 0  # a stroke near the right edge
    image = Image.fromarray(pixels)
    wild = Transform(angle=8, shift=(0.06, 0.0), scale=1.1, crop=0.85, crop_at=(0.0, 0.0))
    out = apply_transform(image, fit_transform(wild, image))
    left, top, right, bottom = ink_box(out)
    assert left > 0 and top > 0 and right < 40 and bottom < 40
    assert (np.asarray(out) < 128).sum() > 0.8 * (pixels < 128).sum()
    assert np.asarray(apply_transform(image, Transform(stroke=1))).min() == 0
    assert (np.asarray(apply_transform(image, Transform(stroke=1))) < 128).sum() > (pixels < 128).sum()


@pytest.mark.parametrize("kind", ["memory", "csv"])
def test_append_rows_keeps_edits_made_meanwhile_and_twice_is_once(kind, tmp_path):
    start = pd.DataFrame({"id": ["r1", "r2"], "url": ["a.png", "b.png"], "label": ["x", "y"], "split": "train",
                          "note": ""}).reindex(columns=tbl.COLUMNS, fill_value="")
    if kind == "memory":
        backend = MemoryBackend(start)
    else:
        start.to_csv(tmp_path / "labels.csv", index=False)
        backend = CsvBackend(tmp_path / "labels.csv", tmp_path / "results.csv")
    edited = backend.read()
    edited.loc[edited["id"] == "r1", "label"] = "y"  # a person's edit, saved before dcloop appends
    if kind == "memory":
        backend.table = edited
    else:
        edited.to_csv(tmp_path / "labels.csv", index=False)
    new = pd.DataFrame({"id": ["aug-1"], "url": ["augmented/x/aug-1.png"], "label": ["x"], "split": ["train"],
                        "note": ["augmented from r1: rotate +1.0°"]})
    assert backend.append_rows(new) == 1
    assert backend.append_rows(new) == 0
    after = backend.read()
    assert after["id"].tolist() == ["r1", "r2", "aug-1"] and after.loc[0, "label"] == "y"
    assert after.loc[2, "note"] == "augmented from r1: rotate +1.0°"


def test_append_rows_on_a_google_sheet(sheet):
    before = sheet.read()
    new = pd.DataFrame({"id": ["aug-1"], "url": ["augmented/cat/aug-1.png"], "label": ["cat"], "split": ["train"],
                        "note": ["augmented from r0000: rotate +1.0°"]})
    assert sheet.append_rows(new) == 1 and sheet.append_rows(new) == 0
    after = sheet.read()
    assert len(after) == len(before) + 1
    last = after.iloc[-1]
    assert (last["id"], last["url"], last["label"], last["split"], last["note"]) == tuple(new.iloc[0])


def test_augment_adds_its_rows_to_a_google_sheet(make_project, config_of, tmp_path, open_sheet, blank_sheet):
    from dcloop.augment import augment
    root = make_project(thin_seven(tmp_path))
    sheet = open_sheet(blank_sheet, classes=[str(c) for c in range(10)])
    sheet.create(read_csv(root / "labels.csv"))
    before = tbl.normalize(sheet.read(), "sheet")
    made = augment(root, config_of(root), 4, class_name="7", backend=sheet)
    after = tbl.normalize(sheet.read(), "sheet")
    assert len(after) == len(before) + 4 and list(after["id"][:len(before)]) == list(before["id"])
    added = after.iloc[len(before):]
    assert list(added["id"]) == list(made.rows["id"])
    assert (added["label"] == "7").all() and (added["split"] == "train").all()
    assert added["note"].map(tbl.is_augmented).all()
    assert all((root / url).is_file() for url in added["url"])
