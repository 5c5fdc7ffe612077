"""The HTML report: pure builders on tiny arrays, the page of a real synced project, and that page
rendered by headless Chromium."""

import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from dcloop import report as rep
from dcloop.backends.csv import read_csv
from dcloop.cli import cli
from dcloop.config import load_config
from dcloop.project import init_project
from dcloop.sync import sync
from tests.conftest import TINY_MODEL, replace_setting, split_rows, write_digits

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def page_json(path) -> dict:
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


# ---- pure builders ---------------------------------------------------------------------------

def test_label_codes_mark_blank_and_unknown_labels():
    assert rep.label_codes(["b", "", "a", "zebra", " a "], ["a", "b"]).tolist() == [1, -1, 0, -1, 0]


def test_confusion_counts_and_the_rows_behind_each_off_diagonal_cell():
    codes = np.array([0, 0, 1, 1, 1, -1, 0])
    predicted = np.array([0, 1, 1, 0, 0, 1, 0])
    in_split = np.array([True] * 6 + [False])
    out = rep.confusion(codes, predicted, in_split, 2)
    assert out["matrix"] == [[1, 1], [2, 1]]
    assert out["cells"] == {"0,1": [1], "1,0": [3, 4]}
    assert out["rows"] == 5 and out["accuracy"] == pytest.approx(2 / 5)
    assert rep.confusion(codes, predicted, in_split, 2, limit=1)["cells"]["1,0"] == [3]
    assert rep.confusion(codes, predicted, np.zeros(7, bool), 2)["accuracy"] is None


def test_scores_come_from_the_run_and_suspicion_from_the_table():
    proba = np.array([[0.9, 0.1], [0.85, 0.15], [0.6, 0.4], [0.5, 0.5]])
    codes = np.array([0, 1, 1, -1])
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "suspicion": ["0.1", "0.9", "", "0.5"]})
    scores = rep.row_scores(proba, codes, rep.table_numbers(table, "suspicion", np.array(["a", "b", "c", "d"])))
    assert scores["predicted"].tolist() == [0, 0, 0, 0]
    assert scores["label_prob"][:3].tolist() == [0.9, 0.15, 0.4] and np.isnan(scores["label_prob"][3])
    assert scores["suspicion"][:2].tolist() == [0.1, 0.9] and np.isnan(scores["suspicion"][2:]).all()
    assert np.isnan(rep.table_numbers(table, "suspicion", np.array(["zz"]))).all()


def test_a_suspect_is_a_row_the_table_flags_label_so_the_counts_agree():
    flags = ["label? model says 7 (0.91)", "", "outlier; label? model says 1 (0.55)", "dup-of:x (val)",
             "unreadable: http 404", "review stale: label or image changed since; clear reviewed, sync, mark again"]
    assert rep.has_label_flag(flags).tolist() == [True, False, True, False, False, False]
    kinds = {k["kind"]: k["rows"] for k in rep.flag_kinds(pd.Series(flags))}
    assert kinds["label?"] == rep.has_label_flag(flags).sum() == 2


def queue_table(**columns) -> pd.DataFrame:
    base = {"id": ["a", "b", "c", "d", "e", "f", "g"], "label": ["1", "7", "1", "", "7", "1", "7"],
            "split": ["train", "val", "test", "train", "train", "val", "train"],
            "suspicion": ["0.30", "0.95", "", "0.000", "0.80", "0.60", "0.95"],
            "flags": ["outlier", "label? model says 1 (0.88)", "unreadable: http 404", "", "", "", "label? model says 1 (0.7)"]}
    return pd.DataFrame({**base, **columns})


def test_the_review_queue_is_the_table_order_the_sync_writes():
    table = queue_table()
    queue = rep.review_queue(table, {"a": "1", "b": "1", "e": "7", "f": "1", "g": "1"}, {"a": 0, "b": 1, "g": 2})
    # unusable first (blank suspicion), then most suspicious first, ties in table order, nothing-to-say rows left out
    assert [r["id"] for r in queue["rows"]] == ["c", "b", "g", "e", "f", "a"] and queue["total"] == 6
    first, second = queue["rows"][0], queue["rows"][1]
    assert first == {"id": "c", "label": "1", "model": "", "flags": "unreadable: http 404", "split": "test",
                     "thumb": -1, "suspicion": None}
    assert second == {"id": "b", "label": "7", "model": "1", "flags": "label? model says 1 (0.88)", "split": "val",
                      "thumb": 1, "suspicion": 0.95}
    assert [r["id"] for r in rep.review_queue(table, {}, {}, limit=2)["rows"]] == ["c", "b"]


def test_a_standing_review_leaves_the_queue_and_a_stale_one_stays():
    stale = "review stale: label or image changed since; clear reviewed, sync, mark again"
    table = queue_table(reviewed=["", "ok", "", "", "OK", "", ""],
                        flags=["outlier", "", "unreadable: http 404", "", stale, "", "label? model says 1 (0.7)"])
    assert [r["id"] for r in rep.review_queue(table, {}, {})["rows"]] == ["c", "g", "e", "f", "a"]
    expected = np.array([0.30, 0.95 - 2, 2.0, 0.0, 0.80, 0.60, 0.95])
    assert rep.queue_key(table) == pytest.approx(expected)


def test_the_train_matrix_says_how_its_rows_were_scored():
    plain = rep.train_scoring(None, 0)
    assert not plain["honest"] and plain["title"] == "train (optimistic)"
    assert "the network that made those embeddings trained on every train row" in plain["note"]
    assert "crossfit = 5" in plain["note"] and "The run does not record its [suspicion] crossfit" in plain["note"]
    crossed = rep.train_scoring(4, 0)
    assert crossed["honest"] and crossed["crossfit"] == 4 and crossed["title"] == "train (cross-fitted, 4 networks)"
    assert crossed["note"].startswith("Cross-fitted: each train row is scored by one of 4 networks")
    assumed = rep.train_scoring(None, 5)
    assert assumed["honest"] and assumed["note"].endswith("this follows dcloop.toml as it is now.")
    assert not rep.train_scoring(0, 5)["honest"]  # the run's own record wins over today's dcloop.toml


def test_score_series_keeps_one_fingerprint_and_the_change_is_against_the_previous_training():
    results = pd.DataFrame({"run_id": ["r1", "r2", "r3", "r4"], "label_version": ["v1", "v1", "v2", "v3"],
                            "time_utc": ["t"] * 4, "val_accuracy": ["0.5", "0.9", "0.6", ""],
                            "test_accuracy": ["0.4", "0.8", "0.7", "0.75"], "labels_changed": ["90", "0", "3", "2"],
                            "model_fingerprint": ["A", "B", "A", "A"]})
    series = rep.score_series(results, "A")
    assert [p["run_id"] for p in series] == ["r1", "r3", "r4"]
    assert series[1]["changed"] == 3 and series[2]["val"] is None
    assert rep.score_change(series, "r3", "val") == pytest.approx(0.1)
    assert rep.score_change(series, "r4", "test") == pytest.approx(0.05)
    assert rep.score_change(series, "r4", "val") is None
    assert rep.score_change(series, "r1", "val") is None
    assert rep.score_series(pd.DataFrame(), "A") == []


def test_flag_kinds_count_rows_per_kind():
    flags = pd.Series(["unreadable: http 404", "label? model says 7 (0.91)", "", "unknown-label:cat; blank-url",
                       "label? model says 1 (0.80)"])
    assert rep.flag_kinds(flags) == [{"kind": "label?", "rows": 2}, {"kind": "blank-url", "rows": 1},
                                     {"kind": "unknown-label", "rows": 1}, {"kind": "unreadable", "rows": 1}]


def test_split_balance_counts_classes_unknown_labels_and_unlabeled_rows():
    labels = pd.Series(["a", "a", "b", "", "cat", "a"])
    splits = pd.Series(["train", "val", "train", "train", "test", " Train "])
    out = rep.split_balance(labels, splits, ["a", "b"])
    assert out["names"] == ["a", "b", "cat", "(unlabeled)"]
    assert out["counts"][0] == [2, 1, 0, 0] and out["counts"][2] == [0, 0, 1, 0] and out["counts"][3] == [1, 0, 0, 0]
    assert out["known"] == [True, True, False, False]


def test_duplicates_are_found_by_content_across_splits_and_labels():
    table = pd.DataFrame({"id": ["a", "b", "c", "d", "e", "f"], "split": ["train", "test", "train", "train", "exclude", "val"],
                          "label": ["1", "1", "2", "3", "1", "4"]})
    content = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": "X", "f": "Z"}
    out = rep.duplicates_across_splits(table, content, {"a": 0})
    assert (out["total"], out["across_splits"], out["conflicting_labels"]) == (2, 1, 1)
    first, second = out["groups"]
    assert [r["id"] for r in first["rows"]] == ["a", "b"] and first["across_splits"] and not first["conflicting_labels"]
    assert first["rows"][0]["thumb"] == 0 and first["rows"][1]["thumb"] == -1
    assert [r["id"] for r in second["rows"]] == ["c", "d"] and second["conflicting_labels"]


def test_version_diff_puts_edits_before_additions_and_caps_the_list():
    index = pd.DataFrame({"version": ["v1", "v2"], "parent": ["", "v1"], "time_utc": ["t1", "t2"],
                          "rows": ["3", "4"], "changed": ["3", "3"]})
    changes = pd.DataFrame({"id": ["n", "a", "b"], "change": ["added", "changed", "changed"],
                            "url_before": ["", "u", "v"], "url_after": ["w", "u", "v"],
                            "label_before": ["", "1", "2"], "label_after": ["1", "7", "2"],
                            "split_before": ["", "train", "train"], "split_after": ["train", "train", "test"]})
    out = rep.version_diff(index, changes, {"a": 4}, limit=2)
    assert (out["version"], out["parent"], out["total"]) == ("v2", "v1", 3)
    assert out["counts"] == {"changed": 2, "added": 1}
    assert [r["id"] for r in out["rows"]] == ["a", "b"]
    assert out["rows"][0]["label"] == ["1", "7"] and out["rows"][0]["thumb"] == 4
    assert rep.version_diff(pd.DataFrame(), None, {})["version"] == ""


def test_the_map_is_umap_unless_it_is_missing_or_the_rows_are_too_few():
    assert rep.map_method(15, True) == ("UMAP", "")
    assert rep.map_method(14, True) == ("PCA", "14 rows: UMAP needs at least 15")
    assert rep.map_method(500, False) == ("PCA", "umap-learn is not installed (pip install umap-learn)")
    assert rep.map_method(500, True, "pca") == ("PCA", '[report] map = "pca" in dcloop.toml')


@pytest.mark.skipif(not rep.umap_installed(), reason="umap-learn is not installed")
def test_umap_is_seeded_and_its_map_cached_per_run(tmp_path):
    rng = np.random.default_rng(1)
    embeddings = np.vstack([rng.normal(c, 0.3, size=(20, 8)) for c in (0, 3)]).astype(np.float32)
    xy, axes = rep.projection(tmp_path, embeddings, seed=3)
    assert xy.shape == (40, 2) and axes == {"method": "UMAP", "why": "", "x": "UMAP 1", "y": "UMAP 2"}
    assert np.array_equal(rep.project_2d(embeddings, seed=3)[0], xy)  # the same run gives the same map
    with np.load(tmp_path / "map.npz") as saved:
        cached = dict(saved)
    np.savez(tmp_path / "map.npz", **{**cached, "xy": cached["xy"] + 1})
    assert np.array_equal(rep.projection(tmp_path, embeddings, seed=3)[0], xy + 1)  # read, not computed again
    assert np.array_equal(rep.projection(tmp_path, embeddings, seed=4)[0].shape, (40, 2))  # another seed: recomputed
    assert not np.array_equal(rep.projection(tmp_path, embeddings, seed=3)[0], xy + 1)


def test_a_cached_pca_map_is_replaced_when_umap_becomes_usable(tmp_path, monkeypatch):
    embeddings = np.random.default_rng(2).normal(size=(20, 4))
    monkeypatch.setattr(rep, "umap_installed", lambda: False)
    assert rep.projection(tmp_path, embeddings, seed=0)[1]["method"] == "PCA"
    calls = []
    monkeypatch.setattr(rep, "umap_installed", lambda: True)
    monkeypatch.setattr(rep, "project_2d",
                        lambda e, seed, wanted="umap": calls.append(seed) or (np.zeros((len(e), 2)), {"method": "UMAP"}))
    assert rep.projection(tmp_path, embeddings, seed=0)[1]["method"] == "UMAP" and calls == [0]
    assert rep.projection(tmp_path, embeddings, seed=0)[1]["method"] == "UMAP" and calls == [0]  # cached now


def test_pca_fallback_when_umap_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` raise ImportError
    rng = np.random.default_rng(0)
    along = rng.normal(size=(50, 1))
    embeddings = np.hstack([along * 10, along * 10, rng.normal(size=(50, 3)) * 0.01])
    xy, axes = rep.project_2d(embeddings, seed=0)
    assert xy.shape == (50, 2) and axes["method"] == "PCA" and axes["why"].startswith("umap-learn is not installed")
    assert axes["x"].startswith("principal component 1 (100%")
    assert abs(np.corrcoef(xy[:, 0], along[:, 0])[0, 1]) > 0.999
    assert rep.pca_2d(np.ones((1, 4)))[0].shape == (1, 2)


def test_script_json_cannot_close_its_script_element():
    text = rep.script_json({"note": "</script><script>alert(1)</script> <!--"})
    assert "</" not in text and "<!--" not in text
    assert json.loads(text) == {"note": "</script><script>alert(1)</script> <!--"}


def test_thumbnails_are_64_pixels_grey_when_the_image_is_and_none_for_a_bad_file():
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), (90, 90, 90)).save(buffer, format="PNG")
    thumb = Image.open(io.BytesIO(rep.thumbnail_png(buffer.getvalue(), 64)))
    assert thumb.size == (64, 32) and thumb.mode == "L"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(rep.thumbnail_png(buffer.getvalue(), 64))).size == (64, 64)
    assert rep.thumbnail_png(b"not an image", 64) is None


# ---- a real project, synced twice ------------------------------------------------------------

@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """A project trained twice (one label edited in between); returns its folder, the sync messages
    and the edited row's id (rows move: the table is written most suspicious first)."""
    root = tmp_path_factory.mktemp("report") / "proj"
    rows = split_rows(write_digits(root / "images", per_class=20), val_every=3)
    rows.loc[rows.index % 6 == 1, "split"] = "test"
    init_project(root, rows)
    text = (root / "dcloop.toml").read_text()
    for section, values in {**TINY_MODEL, "model": {**TINY_MODEL["model"], "epochs": 2}}.items():
        for key, value in values.items():
            text = replace_setting(text, section, key, value)
    (root / "dcloop.toml").write_text(text)
    messages = []
    sync(root, load_config(root, environ={}), progress=messages.append)
    table = read_csv(root / "labels.csv")
    table.loc[2, "label"] = "7" if table.loc[2, "label"] != "7" else "1"
    table.to_csv(root / "labels.csv", index=False)
    sync(root, load_config(root, environ={}), progress=messages.append)
    return root, messages, table.loc[2, "id"]


def test_sync_writes_the_report_with_every_part(synced):
    root, messages, edited = synced
    page = root / "report" / "index.html"
    assert page.exists()
    assert any(m.startswith("report for run ") for m in messages)
    data = page_json(page)
    table = read_csv(root / "labels.csv")
    assert len(data["points"]["id"]) == len(table) == 60
    queue = data["queue"]["rows"]
    assert len(queue) == min(rep.QUEUE_ROWS, data["queue"]["total"]) > 0
    assert all(t >= 0 for t in data["points"]["thumb"]) and len(data["thumbs"]) == 60 + len(queue)
    assert all(r["thumb"] >= 60 for r in queue)  # the queue's own, larger thumbnails
    order = [r["id"] for r in queue]
    assert order == table["id"].tolist()[:len(queue)]  # the table is written in the queue's order
    assert data["summary"]["suspects"] == sum(rep.has_label_flag(table["flags"]))
    assert data["summary"]["suspects"] == sum(data["points"]["suspect"])
    assert data["train_scoring"]["title"] == "train (optimistic)"
    assert len(data["scores"]) == 2 and data["scores"][1]["changed"] == 1
    assert data["summary"]["val_change"] is not None
    assert data["confusion"]["val"]["rows"] > 0 and data["confusion"]["test"]["rows"] > 0
    assert data["diff"]["total"] == 1 and data["diff"]["rows"][0]["id"] == edited
    assert [c["name"] for c in data["per_class"]] == ["0", "1", "7"]
    assert all(len(c["suspects"]) == 12 for c in data["per_class"])
    assert data["map"]["method"] in ("PCA", "UMAP")


def test_the_page_needs_nothing_from_the_network(synced):
    root, _, _ = synced
    text = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text and "@import" not in text
    assert not re.search(r"<script[^>]+src=", text)


def test_report_command_rebuilds_the_page_and_prints_its_path(synced):
    root, _, _ = synced
    (root / "report" / "index.html").unlink()
    result = CliRunner().invoke(cli, ["report", str(root), "--json"])
    assert result.exit_code == 0, result.output
    path = json.loads(result.stdout)["path"]
    assert path.endswith("report/index.html") and (root / "report" / "index.html").exists()


def test_report_on_an_untrained_project_is_a_clear_error(tmp_path):
    init_project(tmp_path / "p", split_rows(write_digits(tmp_path / "p" / "images", per_class=4)))
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert result.output.strip().endswith("no trained run with saved predictions yet. Run 'dcloop sync' first.")


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failed_sync(synced):
    root, messages, _ = synced
    assert not any(m.startswith("warning") for m in messages)
    shutil.move(root / "report", root / "report-aside")
    (root / "report").write_text("a file where the report folder should be")
    said = []
    try:
        rep.report_after_sync(root, load_config(root, environ={}), None, "", said.append)
    finally:
        (root / "report").unlink()
        shutil.move(root / "report-aside", root / "report")
    [warning] = [m for m in said if m.startswith("warning")]
    assert warning.startswith("warning: the report was not written (")
    assert warning.endswith(f"The sync itself succeeded; retry with: dcloop report {root}")


# ---- rendered by a real browser --------------------------------------------------------------

def chromium(*args, profile, timeout=120):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="headless rendering needs a Chromium browser; on Debian: "
                                              "apt-get install -y chromium")
def test_the_page_renders_in_headless_chromium_without_errors(synced, tmp_path):
    root, _, _ = synced
    rep.write_report(root, load_config(root, environ={}))
    url = (root / "report" / "index.html").resolve().as_uri()
    shown = chromium("--virtual-time-budget=15000", "--window-size=1400,3000", "--dump-dom", url,
                     profile=tmp_path / "profile")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert console_messages(shown.stderr) == []
    body = re.search(r"<body([^>]*)>", shown.stdout).group(1)
    assert 'data-ready="1"' in body and 'data-errors="0"' in body
    assert int(re.search(r'id="map-canvas" data-points="(\d+)"', shown.stdout).group(1)) == 60
    cells = [int(n) for n in re.findall(r'class="matrix" data-split="\w+" data-cells="(\d+)"', shown.stdout)]
    assert len(cells) == 3 and min(cells) > 0
    assert shown.stdout.count('<figure class="tile') >= 36
    screenshot = tmp_path / "report.png"
    shot = chromium("--virtual-time-budget=15000", "--window-size=1400,3000", "--hide-scrollbars",
                    f"--screenshot={screenshot}", url, profile=tmp_path / "profile")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert Image.open(screenshot).size == (1400, 3000)


HARNESS = """<!DOCTYPE html><html><body>
<iframe id="f" src="%s" width="1400" height="3000"></iframe>
<script>
document.getElementById("f").onload = function () {
  var d = this.contentDocument, out = {errors: d.body.getAttribute("data-errors")};
  var cells = d.querySelectorAll("#confusion td.click");
  out.clickable = cells.length;
  cells[0].click();
  out.expanded = d.querySelectorAll("#confusion-gallery img").length;
  var canvas = d.getElementById("map-canvas"), tip = d.getElementById("map-tip"), box = canvas.getBoundingClientRect();
  for (var y = 0; y < box.height && tip.style.display !== "block"; y += 4)
    for (var x = 0; x < box.width && tip.style.display !== "block"; x += 4)
      canvas.dispatchEvent(new MouseEvent("mousemove", {clientX: box.left + x, clientY: box.top + y}));
  out.tip_images = tip.querySelectorAll("img").length;
  out.tip_text = tip.textContent;
  var legend = d.querySelector("#map-legend span");
  var before = canvas.getAttribute("data-points");
  legend.click();
  out.hidden_one_class = Number(before) - Number(canvas.getAttribute("data-points"));
  document.body.setAttribute("data-result", JSON.stringify(out));
};
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless rendering needs a Chromium browser; on Debian: "
                                              "apt-get install -y chromium")
def test_clicking_a_confusion_cell_shows_its_images_and_hovering_the_map_shows_one(synced, tmp_path):
    root, _, _ = synced
    rep.write_report(root, load_config(root, environ={}))
    harness = tmp_path / "harness.html"
    harness.write_text(HARNESS % (root / "report" / "index.html").resolve().as_uri())
    shown = chromium("--allow-file-access-from-files", "--virtual-time-budget=15000", "--window-size=1400,3000",
                     "--dump-dom", harness.as_uri(), profile=tmp_path / "profile")
    found = re.search(r"data-result=\"([^\"]*)\"", shown.stdout)
    assert found, shown.stdout[-2000:] + shown.stderr[-2000:]
    out = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert out["errors"] == "0" and out["clickable"] > 0
    assert out["expanded"] >= 1
    assert out["tip_images"] == 1 and "label " in out["tip_text"] and "model says" in out["tip_text"]
    first_class = page_json(root / "report" / "index.html")["points"]["label"].count(0)
    assert out["hidden_one_class"] == first_class > 0


LAYOUT = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="%s" width="1400" height="3000" style="border:0"></iframe>
<script>
document.getElementById("f").onload = function () {
  var d = this.contentDocument, out = {errors: d.body.getAttribute("data-errors")};
  function box(node) { var r = node.getBoundingClientRect(); return {top: r.top, width: r.width, height: r.height}; }
  var queue = d.getElementById("queue");
  out.queue = box(queue);
  out.queue_tiles = queue.querySelectorAll("figure.qtile img").length;
  out.queue_first = Array.from(queue.querySelectorAll("figure.qtile")).slice(0, 3).map(function (f) { return f.getAttribute("data-id"); });
  out.queue_caption = queue.querySelector("figure.qtile figcaption").innerText;
  out.queue_thumb = box(queue.querySelector("figure.qtile img"));
  out.sections = Array.from(d.querySelectorAll("main > section")).map(function (s) { return s.id; });
  out.train_note = d.getElementById("train-note").textContent;
  out.main = box(d.querySelector("main"));
  var cells = Array.from(d.querySelectorAll("#confusion td.click")).sort(function (a, b) { return b.textContent - a.textContent; });
  cells[0].click();
  var gallery = d.getElementById("confusion-gallery");
  out.gallery = box(gallery);
  out.gallery_images = gallery.querySelectorAll("img").length;
  out.gallery_row = new Set(Array.from(gallery.querySelectorAll("figure")).map(function (f) { return f.getBoundingClientRect().top; })).size;
  out.duplicates = box(d.getElementById("duplicates"));
  out.duplicate_cards = d.querySelectorAll("#duplicates .dup").length;
  out.score_marks = d.querySelectorAll("#score-chart circle, #score-chart rect").length;
  document.body.setAttribute("data-result", JSON.stringify(out));
};
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless rendering needs a Chromium browser; on Debian: "
                                              "apt-get install -y chromium")
def test_the_queue_comes_first_and_galleries_use_the_page_width(synced, tmp_path):
    root, _, _ = synced
    rep.write_report(root, load_config(root, environ={}))
    data = page_json(root / "report" / "index.html")
    # 52 pairs of duplicates, as a project with leakage has: they must stay a compact grid
    pair = [{"id": "r1", "split": "train", "label": "1", "thumb": 0}, {"id": "r2", "split": "test", "label": "7", "thumb": 1}]
    data["duplicates"] = {"groups": [{"across_splits": True, "conflicting_labels": True, "rows": pair}] * 52,
                          "total": 52, "across_splits": 52, "conflicting_labels": 52}
    page = tmp_path / "page.html"
    page.write_text(rep.render_page(data), encoding="utf-8")
    harness = tmp_path / "layout.html"
    harness.write_text(LAYOUT % page.resolve().as_uri())
    shown = chromium("--allow-file-access-from-files", "--virtual-time-budget=15000", "--window-size=1400,3000",
                     "--dump-dom", harness.as_uri(), profile=tmp_path / "profile")
    found = re.search(r"data-result=\"([^\"]*)\"", shown.stdout)
    assert found, shown.stdout[-2000:] + shown.stderr[-2000:]
    out = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert out["errors"] == "0"
    assert out["sections"][:2] == ["summary", "queue"]
    queue = data["queue"]["rows"]
    assert out["queue_tiles"] == len(queue) and out["queue_first"] == [r["id"] for r in queue[:3]]
    assert out["queue_caption"].split("\n")[:3] == [queue[0]["id"], "label " + queue[0]["label"], "model " + queue[0]["model"]]
    assert out["queue_thumb"]["width"] >= 120  # large: a person decides from the picture
    assert out["queue"]["top"] < 1000  # within the first screen or so, under the summary
    assert "the network that made those embeddings trained on every train row" in out["train_note"]
    assert out["gallery_images"] > 3 and out["gallery"]["width"] > 0.9 * out["main"]["width"]
    assert out["duplicate_cards"] == 52 and out["duplicates"]["height"] < 1600
    assert out["score_marks"] == 2 * 2 + 2  # val and test of two trainings, and the legend's two markers
    shot = tmp_path / "report.png"
    chromium("--virtual-time-budget=15000", "--window-size=1400,1400", "--hide-scrollbars", f"--screenshot={shot}",
             page.resolve().as_uri(), profile=tmp_path / "profile")
    assert Image.open(shot).size == (1400, 1400)
