"""The report: one static HTML page, readable offline, built from a run's saved predictions.

The builders are pure (arrays and DataFrames in, JSON-ready dicts out); ``write_report`` is the
thin adapter that reads the project (table, results, versions, the run's predictions.npz, cached
images), makes the thumbnails and writes ``<project>/report/index.html`` with everything inlined:
no server, no CDN, no script from anywhere else.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import table as tbl
from .config import STATE_DIR, Config
from .errors import DcloopError
from .fsutil import atomic_write_bytes, atomic_write_text, sha256_bytes
from .history import History, is_reeval, utc_now
from .images import MAX_IMAGE_BYTES, Access, access_of, allowed_path, cached_urls, read_regular
from .runs import PREDICTIONS, has_run_file, last_run_id, load_predictions, run_file
from .review import MARKS

REPORT_DIR = "report"
THUMB_SIZE = 64
SUSPECTS_PER_CLASS = 12
QUEUE_ROWS = 60  # about two screens of large thumbnails
QUEUE_THUMB_SIZE = 160
IMAGES_PER_CELL = 240
DIFF_ROWS_SHOWN = 120
DUPLICATE_GROUPS_SHOWN = 60
TOP_FLAG_KINDS = 6
# Below this UMAP's neighbour graph is too thin to mean anything (and its spectral start can fail).
MIN_UMAP_ROWS = 15
UMAP_NEIGHBOURS = 15
SHA256 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class Run:
    """What a sync saved about one training: every readable row's probabilities and embedding."""

    run_id: str
    ids: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    proba: np.ndarray
    embeddings: np.ndarray
    crossfit: int | None = None  # [suspicion] crossfit of the run, when its predictions record it


# ---- pure builders ---------------------------------------------------------------------------

def label_codes(labels, classes: list[str]) -> np.ndarray:
    """Each label's class index; -1 for blank or unknown labels."""
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index.get(str(label).strip(), -1) for label in labels], dtype=np.int64)


def row_scores(proba: np.ndarray, codes: np.ndarray, suspicion: np.ndarray) -> dict[str, np.ndarray]:
    """prediction, confidence, and for labeled rows label_prob and suspicion (NaN elsewhere).

    ``suspicion`` is what the sync wrote into the table, so the page ranks rows as the sheet does.
    """
    labeled = codes >= 0
    label_prob = np.full(len(codes), np.nan)
    label_prob[labeled] = proba[labeled, codes[labeled]]
    predicted = proba.argmax(1) if len(proba) else np.zeros(0, np.int64)
    confidence = proba.max(1) if len(proba) else np.zeros(0)
    return {"predicted": predicted, "confidence": confidence, "label_prob": label_prob,
            "suspicion": np.where(labeled, suspicion, np.nan)}


def table_numbers(table: pd.DataFrame, column: str, ids: np.ndarray) -> np.ndarray:
    """A numeric column of the table for the given ids; NaN where blank, missing or not a number."""
    values = pd.to_numeric(table.set_index("id")[column], errors="coerce")
    values = values[~values.index.duplicated()]
    return values.reindex(ids).to_numpy(dtype=np.float64)


def has_label_flag(flags) -> np.ndarray:
    """Rows whose flags cell holds a 'label?' flag: the suspects, exactly as the table counts them.

    Read from the table, not recomputed from the saved probabilities: the sync's rule also blends in
    the neighbours' votes and the training dynamics, so a recomputed count would differ from the sheet's.
    """
    return np.array(["label?" in tbl.kinds_in(cell) for cell in flags], dtype=bool)


def queue_key(table: pd.DataFrame) -> np.ndarray:
    """The sync's sort key (suspicion.assess, sync.write_back) recovered from the written table.

    suspicion, 2 where it is blank (rows without a usable image sort first), minus 2 for a review
    that stands (marked reviewed, and not flagged stale by the sync).
    """
    key = pd.to_numeric(table["suspicion"], errors="coerce").fillna(2.0).to_numpy(dtype=np.float64)
    if "reviewed" in table.columns:
        marked = table["reviewed"].str.strip().str.lower().map(MARKS).fillna(False).to_numpy(dtype=bool)
        stale = table["flags"].str.contains("review stale", regex=False).to_numpy(dtype=bool)
        key = key - 2 * (marked & ~stale)
    return key


def queued_rows(table: pd.DataFrame) -> np.ndarray:
    """Positions of the rows to review, in the order the sync writes the table.

    Rows with nothing against them (key 0) and reviewed rows (key < 0) are not queued.
    """
    key = queue_key(table)
    order = np.argsort(-key, kind="stable")
    return order[key[order] > 0]


def review_queue(table: pd.DataFrame, predicted: dict[str, str], thumb_of: dict[str, int],
                 limit: int = QUEUE_ROWS) -> dict:
    """The first ``limit`` queued rows with what a person needs to pick the ones to open in the sheet."""
    key, queued = queue_key(table), queued_rows(table)
    rows = [{"id": table["id"].iat[n], "label": table["label"].iat[n].strip(),
             "model": predicted.get(table["id"].iat[n], ""), "flags": table["flags"].iat[n].strip(),
             "split": table["split"].iat[n].strip().lower(), "thumb": thumb_of.get(table["id"].iat[n], -1),
             "suspicion": None if key[n] >= 2 else round(float(key[n]), 3)} for n in queued[:limit]]
    return {"rows": rows, "total": int(len(queued))}


def train_scoring(recorded: int | None, configured: int) -> dict:
    """How the train matrix was scored, and the note the page puts beside it.

    ``recorded`` is the run's own [suspicion] crossfit when its predictions say (None when they do not);
    then the current dcloop.toml's value stands in, and the note says so.
    """
    k = configured if recorded is None else recorded
    source = ("" if recorded is not None else
              " The run does not record its [suspicion] crossfit; this follows dcloop.toml as it is now.")
    if k >= 2:
        return {"crossfit": k, "honest": True, "title": f"train (cross-fitted, {k} networks)",
                "note": f"Cross-fitted: each train row is scored by one of {k} networks that never trained on it, "
                        f"so train accuracy is out of sample and comparable to val.{source}"}
    return {"crossfit": 0, "honest": False, "title": "train (optimistic)",
            "note": "Optimistic: each train row is scored by a classifier fitted on the other train rows' "
                    "embeddings, but the network that made those embeddings trained on every train row, "
                    "mislabeled ones included. Judge the model by val and test; set [suspicion] crossfit = 5 "
                    f"(or dcloop sync --crossfit 5) for out-of-sample train figures.{source}"}


def confusion(codes: np.ndarray, predicted: np.ndarray, in_split: np.ndarray, num_classes: int,
              limit: int = IMAGES_PER_CELL) -> dict:
    """Counts by (label, prediction) for one split, and the rows behind each off-diagonal cell."""
    rows = np.flatnonzero(in_split & (codes >= 0))
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (codes[rows], predicted[rows]), 1)
    cells: dict[str, list[int]] = {}
    for n in rows[codes[rows] != predicted[rows]]:
        members = cells.setdefault(f"{codes[n]},{predicted[n]}", [])
        if len(members) < limit:
            members.append(int(n))
    correct = int(np.trace(matrix))
    return {"matrix": matrix.tolist(), "cells": cells, "rows": int(len(rows)),
            "accuracy": correct / len(rows) if len(rows) else None}


def number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def score_series(results: pd.DataFrame, fingerprint: str) -> list[dict]:
    """One point per training under one model fingerprint, oldest first: scores are comparable only there."""
    if results.empty or "model_fingerprint" not in results.columns:
        return []
    mine = results[(results["model_fingerprint"] == fingerprint) & ~is_reeval(results)]  # trainings only
    return [{"run_id": r.get("run_id", ""), "version": r.get("label_version", ""), "time": r.get("time_utc", ""),
             "val": number(r.get("val_accuracy")), "test": number(r.get("test_accuracy")),
             "changed": int(number(r.get("labels_changed")) or 0)}
            for r in mine.to_dict("records")]


def score_change(series: list[dict], run_id: str, metric: str) -> float | None:
    """The run's score minus the previous training's, under the same fingerprint."""
    at = next((n for n, point in enumerate(series) if point["run_id"] == run_id), None)
    if not at or series[at][metric] is None or series[at - 1][metric] is None:
        return None
    return series[at][metric] - series[at - 1][metric]


def flag_kinds(flags: pd.Series) -> list[dict]:
    """How many rows carry each kind of flag, most common first."""
    counts: dict[str, int] = {}
    for cell in flags:
        for kind in tbl.kinds_in(cell):
            counts[kind] = counts.get(kind, 0) + 1
    return [{"kind": k, "rows": n} for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def split_balance(labels: pd.Series, splits: pd.Series, classes: list[str]) -> dict:
    """Rows per class (and unlabeled, and labels outside the class list) in each split."""
    labels, splits = labels.str.strip(), splits.str.strip().str.lower()
    names = classes + sorted(set(labels) - set(classes) - {""}) + (["(unlabeled)"] if (labels == "").any() else [])
    keyed = labels.where(labels != "", "(unlabeled)")
    counts = [[int(((keyed == name) & (splits == s)).sum()) for s in tbl.SPLITS] for name in names]
    return {"splits": tbl.SPLITS, "names": names, "counts": counts,
            "known": [name in classes for name in names]}


def duplicates_across_splits(table: pd.DataFrame, content: dict[str, str], thumb_of: dict[str, int],
                             limit: int = DUPLICATE_GROUPS_SHOWN) -> dict:
    """Groups of rows with the same image bytes in more than one split (leakage), or with two labels."""
    rows = table.assign(key=table["id"].map(content), split=table["split"].str.strip().str.lower(),
                        label=table["label"].str.strip()).dropna(subset=["key"])
    rows = rows[(rows["split"] != "exclude")]
    rows = rows[rows["key"].duplicated(keep=False)]
    groups = []
    for _, group in rows.groupby("key", sort=False):
        if len(group) < 2:
            continue
        across, conflicting = group["split"].nunique() > 1, group["label"].nunique() > 1
        if across or conflicting:
            groups.append({"across_splits": bool(across), "conflicting_labels": bool(conflicting),
                           "rows": [{"id": i, "split": s, "label": lab, "thumb": thumb_of.get(i, -1)}
                                    for i, s, lab in zip(group["id"], group["split"], group["label"])]})
    groups.sort(key=lambda g: (not g["across_splits"], not g["conflicting_labels"], -len(g["rows"])))
    return {"groups": groups[:limit], "total": len(groups),
            "across_splits": sum(g["across_splits"] for g in groups),
            "conflicting_labels": sum(g["conflicting_labels"] for g in groups)}


def version_diff(index: pd.DataFrame, changes: pd.DataFrame | None, thumb_of: dict[str, int],
                 limit: int = DIFF_ROWS_SHOWN) -> dict:
    """The newest label version and the rows it changed against its parent."""
    if index.empty or changes is None:
        return {"version": "", "parent": "", "time": "", "counts": {}, "rows": [], "total": 0}
    head = index.iloc[-1]
    kinds = changes["change"].value_counts()
    # Label and split edits first: they are what a reviewer came to see; additions are bulk.
    order = changes.assign(rank=changes["change"].map({"changed": 0, "removed": 1, "added": 2}))
    shown = order.sort_values("rank", kind="stable").head(limit)
    rows = [{"id": r["id"], "change": r["change"], "thumb": thumb_of.get(r["id"], -1),
             "label": [r["label_before"], r["label_after"]], "split": [r["split_before"], r["split_after"]],
             "url": [r["url_before"], r["url_after"]]} for r in shown.to_dict("records")]
    return {"version": head["version"], "parent": head["parent"], "time": head["time_utc"],
            "counts": {k: int(v) for k, v in kinds.items()}, "rows": rows, "total": len(changes)}


def class_details(classes: list[str], codes: np.ndarray, splits: np.ndarray, scores: dict[str, np.ndarray],
                  per_class: int = SUSPECTS_PER_CLASS) -> list[dict]:
    """Per class: labeled rows per split, val and test accuracy, its most suspicious rows."""
    predicted, suspicion = scores["predicted"], scores["suspicion"]
    out = []
    for k, name in enumerate(classes):
        mine = codes == k
        accuracy = {}
        for split in ("train", "val", "test"):
            rows = mine & (splits == split)
            accuracy[split] = float((predicted[rows] == k).mean()) if rows.any() else None
        ranked = np.flatnonzero(mine)[np.argsort(-suspicion[mine], kind="stable")]
        out.append({"name": name, "counts": {s: int((mine & (splits == s)).sum()) for s in tbl.SPLITS},
                    "accuracy": accuracy, "suspects": [int(n) for n in ranked[:per_class]]})
    return out


def pca_2d(embeddings: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The first two principal components and the share of variance each explains."""
    centered = embeddings.astype(np.float64) - embeddings.mean(0)
    if len(centered) < 2:
        return np.zeros((len(centered), 2)), [0.0, 0.0]
    _, singular, vt = np.linalg.svd(centered, full_matrices=False)
    xy = centered @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.hstack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])
    variance = singular ** 2
    share = (variance[:2] / variance.sum()).tolist() if variance.sum() > 0 else [0.0, 0.0]
    return xy, (share + [0.0, 0.0])[:2]


def umap_installed() -> bool:
    """Whether umap-learn can be imported, without paying for the import (numba makes it slow)."""
    import importlib.util
    try:
        return importlib.util.find_spec("umap") is not None
    except ValueError:  # a test replaced the module with None: not installed
        return False


def map_method(rows: int, umap_ok: bool, wanted: str = "umap") -> tuple[str, str]:
    """("UMAP" or "PCA", why PCA when it is): UMAP unless [report] map asks for PCA, umap-learn is
    missing, or there are too few rows for it to work."""
    if wanted == "pca":
        return "PCA", "[report] map = \"pca\" in dcloop.toml"
    if not umap_ok:
        return "PCA", "umap-learn is not installed (pip install umap-learn)"
    if rows < MIN_UMAP_ROWS:
        return "PCA", f"{rows} rows: UMAP needs at least {MIN_UMAP_ROWS}"
    return "UMAP", ""


def project_2d(embeddings: np.ndarray, seed: int, wanted: str = "umap") -> tuple[np.ndarray, dict]:
    """UMAP (seeded: the same run gives the same map), else PCA; returns xy and the axes' names."""
    method, why = map_method(len(embeddings), umap_installed(), wanted)
    if method == "UMAP":
        try:
            import umap
        except ImportError as e:  # found but broken (numba, llvmlite): say so on the page
            method, why = "PCA", f"umap-learn could not be imported ({e})"
    if method == "UMAP":
        reducer = umap.UMAP(n_components=2, n_neighbors=min(UMAP_NEIGHBOURS, len(embeddings) - 1),
                            min_dist=0.1, random_state=seed, n_jobs=1)  # seeded: one thread anyway
        xy = reducer.fit_transform(np.asarray(embeddings, dtype=np.float32))
        return xy.astype(np.float64), {"method": "UMAP", "why": "", "x": "UMAP 1", "y": "UMAP 2"}
    xy, share = pca_2d(embeddings)
    return xy, {"method": "PCA", "why": why, "x": f"principal component 1 ({share[0]:.0%} of variance)",
                "y": f"principal component 2 ({share[1]:.0%} of variance)"}


def rounded(values: np.ndarray, digits: int = 3) -> list:
    """A JSON-ready list: NaN becomes null, floats keep ``digits`` decimals."""
    return [None if np.isnan(v) else round(float(v), digits) for v in np.asarray(values, dtype=np.float64)]


def points(run: Run, classes: list[str], scores: dict, suspect: np.ndarray, xy: np.ndarray,
           flags: dict[str, str], thumb_of: dict[str, int]) -> dict:
    """The run's rows as columns, the way the page's map and galleries read them."""
    split_index = {s: k for k, s in enumerate(tbl.SPLITS)}
    return {"id": run.ids.tolist(), "label": label_codes(run.labels, classes).tolist(),
            "raw_label": run.labels.tolist(),
            "pred": scores["predicted"].tolist(), "split": [split_index.get(s, -1) for s in run.splits],
            "conf": rounded(scores["confidence"]),
            "susp": rounded(scores["suspicion"]), "suspect": suspect.astype(int).tolist(),
            "flags": [flags.get(i, "") for i in run.ids], "thumb": [thumb_of.get(i, -1) for i in run.ids],
            "x": rounded(xy[:, 0], 4), "y": rounded(xy[:, 1], 4)}


def result_of(results: pd.DataFrame, run_id: str) -> dict:
    """The run's row of the results table ({} when it has none)."""
    if "run_id" not in results.columns or not (results["run_id"] == run_id).any():
        return {}
    return results[results["run_id"] == run_id].iloc[-1].to_dict()


def summary(project: str, run_id: str, table: pd.DataFrame, result: dict, series: list[dict],
            matrices: dict, model) -> dict:
    """The one-screen summary at the top of the page."""
    return {
        "project": project, "version": result.get("label_version", ""), "run_id": run_id,
        "time": result.get("time_utc", ""), "rows": len(table),
        "splits": {s: int((table["split"].str.strip().str.lower() == s).sum()) for s in tbl.SPLITS},
        "unlabeled": int((table["label"].str.strip() == "").sum()),
        "flagged": int((table["flags"].str.strip() != "").sum()),
        "suspects": int(has_label_flag(table["flags"]).sum()),
        "val": matrices["val"]["accuracy"], "test": matrices["test"]["accuracy"],
        "val_change": score_change(series, run_id, "val"), "test_change": score_change(series, run_id, "test"),
        "labels_changed": result.get("labels_changed", ""), "flags": flag_kinds(table["flags"])[:TOP_FLAG_KINDS],
        "model": {"preset": result.get("preset") or model.preset,
                  "fingerprint": result.get("model_fingerprint") or model.fingerprint(),
                  "best_epoch": result.get("best_epoch", ""), "epochs": result.get("epochs", ""),
                  "duration_s": result.get("duration_s", "")},
    }


@dataclass
class Project:
    """What the page is made of, as read from the project (write_report reads it)."""

    name: str
    run: Run
    config: Config
    table: pd.DataFrame
    results: pd.DataFrame
    index: pd.DataFrame               # the label versions
    changes: pd.DataFrame | None      # the newest version's changes


@dataclass
class Pictures:
    """The map's coordinates and the thumbnails the page embeds."""

    xy: np.ndarray
    axes: dict
    thumbs: list[str]                 # data urls
    thumb_of: dict[str, int]          # row id -> thumbnail
    content: dict[str, str]           # row id -> content hash
    large_of: dict[str, int]          # row id -> the review queue's larger thumbnail


def page_data(project: Project, pictures: Pictures, generated: str) -> dict:
    """Everything the page shows, as one JSON-ready dict (pure)."""
    run, config, table, results = project.run, project.config, project.table, project.results
    thumb_of, classes = pictures.thumb_of, config.project.classes
    codes = label_codes(run.labels, classes)
    scores = row_scores(run.proba, codes, table_numbers(table, "suspicion", run.ids))
    flags = dict(zip(table["id"], table["flags"].str.strip()))
    suspect = has_label_flag([flags.get(i, "") for i in run.ids])
    result = result_of(results, run.run_id)
    series = score_series(results, result.get("model_fingerprint") or config.model.fingerprint())
    matrices = {s: confusion(codes, scores["predicted"], run.splits == s, len(classes)) for s in ("val", "test", "train")}
    predicted = {i: classes[k] for i, k in zip(run.ids, scores["predicted"])}
    return {
        "generated": generated, "classes": classes, "splits": tbl.SPLITS,
        "summary": summary(project.name, run.run_id, table, result, series, matrices, config.model),
        "queue": review_queue(table, predicted, {**thumb_of, **pictures.large_of}), "scores": series,
        "confusion": matrices, "train_scoring": train_scoring(run.crossfit, config.suspicion.crossfit),
        "map": pictures.axes, "points": points(run, classes, scores, suspect, pictures.xy, flags, thumb_of),
        "per_class": class_details(classes, codes, run.splits, scores),
        "balance": split_balance(table["label"], table["split"], classes),
        "duplicates": duplicates_across_splits(table, pictures.content, thumb_of),
        "diff": version_diff(project.index, project.changes, thumb_of), "thumbs": pictures.thumbs,
        "low_label_prob": config.suspicion.low_label_prob,
    }


def script_json(data: dict) -> str:
    """JSON that is safe inside a <script> element: with every '<' escaped, nothing can close it early."""
    return json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def render_page(data: dict) -> str:
    """The page: the template with its stylesheet, script and data inlined."""
    folder = resources.files("dcloop") / "templates"
    page = (folder / "report.html").read_text(encoding="utf-8")
    title = f"dcloop report: {data['summary']['project']}"
    # Data last: it is the only part that could contain text looking like a placeholder.
    for placeholder, text in (("{{title}}", html.escape(title)),
                              ("{{style}}", (folder / "report.css").read_text(encoding="utf-8")),
                              ("{{script}}", (folder / "report.js").read_text(encoding="utf-8")),
                              ("{{data}}", script_json(data))):
        page = page.replace(placeholder, text, 1)
    return page


# ---- adapters: reading the project, thumbnails ----------------------------------------------

def load_run(state: Path, run_id: str) -> Run:
    saved = load_predictions(state, run_id)
    if saved is None:
        raise DcloopError(f"{run_file(state, run_id, PREDICTIONS)}: no saved predictions for run {run_id}. "
                          f"Run 'dcloop sync' to train first.")
    return Run(run_id, saved.ids, saved.labels, saved.splits, saved.proba.astype(np.float64), saved.embeddings,
               saved.crossfit)


def latest_run_id(state: Path, results: pd.DataFrame) -> str:
    """The last trained run: last_trained.json, else the newest result row whose predictions exist."""
    last = last_run_id(state)
    if last:
        return last
    for run_id in reversed(results.get("run_id", pd.Series(dtype=str)).tolist()):
        if has_run_file(state, run_id, PREDICTIONS):  # run ids from the results table are untrusted
            return run_id
    raise DcloopError(f"{state.parent}: no trained run with saved predictions yet. Run 'dcloop sync' first.")


def image_files(root: Path, table: pd.DataFrame, access: Access = Access()) -> dict[str, Path]:
    """Each row's image on disk, without any network: the cached blob, the local file, or the url's blob.

    The table's cells are untrusted: an image cell counts only when it names a cached blob, and a
    local url only when ``access`` allows it, as for fetching.
    """
    url_index = cached_urls(root / STATE_DIR / "cache")
    blobs = root / STATE_DIR / "cache" / "blobs"
    real_blobs = Path(os.path.realpath(blobs))
    out = {}
    for row_id, cell, url in zip(table["id"], table["image"].str.strip(), table["url"].str.strip()):
        candidates = []
        if cell and not cell.startswith("=") and is_inside(root / cell, real_blobs):
            candidates.append(root / cell)
        if url in url_index:
            candidates.append(blobs / url_index[url][:2] / url_index[url])
        elif url and not url.startswith(("http://", "https://")):
            try:
                candidates.append(allowed_path(url, root, access.roots))
            except ValueError:  # outside the allowed folders, or a NUL byte
                pass
        found = next((p for p in candidates if p.is_file()), None)
        if row_id and found is not None:
            out[row_id] = found
    return out


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, symlinks and .. resolved, lies in ``folder`` (itself resolved)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(folder)
    except ValueError:  # a NUL byte
        return False


class Thumbnails:
    """PNG thumbnails by image content, cached under the project's image cache."""

    def __init__(self, cache: Path, size: int = THUMB_SIZE):
        self.folder = Path(cache) / "thumbs"
        self.blobs = Path(cache) / "blobs"
        self.size = size

    def make(self, files: dict[str, Path], progress: Progress = quiet) -> tuple[list[str], dict[str, int], dict[str, str]]:
        """(base64 PNGs, row id -> index into them, row id -> content hash); unreadable images get none."""
        paths = sorted(set(files.values()))
        with ThreadPoolExecutor(4) as pool:
            made = dict(zip(paths, pool.map(self.one, paths)))
        thumbs, position, thumb_of, content = [], {}, {}, {}
        for row_id, path in files.items():
            sha, png = made[path]
            if sha:
                content[row_id] = sha
            if png is None:
                continue
            if sha not in position:
                position[sha] = len(thumbs)
                thumbs.append(base64.b64encode(png).decode("ascii"))
            thumb_of[row_id] = position[sha]
        progress(f"report: {len(thumbs)} thumbnail(s) for {len(files)} row(s)")
        return thumbs, thumb_of, content

    def one(self, path: Path) -> tuple[str, bytes | None]:
        # A blob of the image cache is named by its content hash: no need to read it to know it.
        sha = path.name if path.parent.parent == self.blobs and SHA256.fullmatch(path.name) else ""
        cached = self.folder / sha[:2] / f"{sha}-{self.size}.png"
        if sha and cached.exists():
            return sha, cached.read_bytes()
        try:
            data = read_regular(path, MAX_IMAGE_BYTES)
        except (OSError, ValueError):  # gone, not a regular file, or over the size limit
            return "", None
        sha = sha256_bytes(data)
        cached = self.folder / sha[:2] / f"{sha}-{self.size}.png"
        if cached.exists():
            return sha, cached.read_bytes()
        png = thumbnail_png(data, self.size)
        if png is not None:
            atomic_write_bytes(cached, png)
        return sha, png


def thumbnail_png(data: bytes, size: int) -> bytes | None:
    """A PNG whose longer side is ``size`` pixels (grey when the image is), or None for a bad image."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            image = image.convert("L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    scale = size / max(image.size)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap: a fast box reduction first, then Lanczos; twice as fast, looks the same at 64 px.
    image = (image.resize(target, Image.LANCZOS, reducing_gap=2.0) if scale < 1
             else image.resize(target, Image.BICUBIC))
    if image.mode == "RGB":
        r, g, b = image.split()
        if r.tobytes() == g.tobytes() == b.tobytes():
            image = r
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def projection(run_dir: Path, embeddings: np.ndarray, seed: int, wanted: str = "umap") -> tuple[np.ndarray, dict]:
    """The run's 2-D map, computed once per run and kept next to its predictions.

    The cache is keyed by rows, seed and method, so installing umap-learn replaces a PCA map.
    """
    path = run_dir / "map.npz"
    key = json.dumps({"rows": len(embeddings), "seed": seed,
                      "method": map_method(len(embeddings), umap_installed(), wanted)[0]})
    if path.exists():
        with np.load(path, allow_pickle=False) as saved:
            if "key" in saved and str(saved["key"]) == key:
                return saved["xy"], json.loads(str(saved["axes"]))
    xy, axes = project_2d(embeddings, seed, wanted)
    buffer = io.BytesIO()
    np.savez(buffer, xy=xy, axes=json.dumps(axes), key=key)
    atomic_write_bytes(path, buffer.getvalue())
    return xy, axes


def queue_thumbnails(cache: Path, table: pd.DataFrame, files: dict[str, Path], thumbs: list[str]) -> dict[str, int]:
    """Larger thumbnails for the review queue's rows, appended to ``thumbs``; row id -> index."""
    queued = [table["id"].iat[n] for n in queued_rows(table)[:QUEUE_ROWS]]
    large, large_of, _ = Thumbnails(cache, QUEUE_THUMB_SIZE).make({i: files[i] for i in queued if i in files})
    thumbs.extend(large)
    return {row_id: len(thumbs) - len(large) + k for row_id, k in large_of.items()}


def write_report(root: Path, config: Config, backend=None, run_id: str = "", progress: Progress = quiet,
                 table: pd.DataFrame | None = None) -> Path:
    """Build ``root/report/index.html`` for a run (default: the last one trained); return its path.

    ``table``, when the caller has it (a sync that just wrote it back), saves reading it again.
    """
    from .backends import open_backend

    started = time.perf_counter()
    root, state = Path(root), Path(root) / STATE_DIR
    backend = backend or open_backend(config, root)
    table = tbl.normalize(backend.read() if table is None else table, backend.describe())
    results = backend.read_results()
    run = load_run(state, run_id or latest_run_id(state, results))
    history = History(state)
    index = history.index()
    changes = history.changes(index["version"].iloc[-1]) if len(index) else None
    files = image_files(root, table, access_of(root, config))
    thumbs, thumb_of, content = Thumbnails(state / "cache").make(files, progress)
    large_of = queue_thumbnails(state / "cache", table, files, thumbs)
    xy, axes = projection(state / "runs" / run.run_id, run.embeddings, config.model.seed, config.report.map)
    data = page_data(Project(root.resolve().name, run, config, table, results, index, changes),
                     Pictures(xy, axes, thumbs, thumb_of, content, large_of), utc_now())
    path = root / REPORT_DIR / "index.html"
    atomic_write_text(path, render_page(data))
    path.chmod(0o644)  # a page to share or serve, not a private temp file
    progress(f"report for run {run.run_id} written to {path} in {time.perf_counter() - started:.1f}s")
    return path


def report_after_sync(root: Path, config: Config, backend, run_id: str, progress: Progress,
                      table: pd.DataFrame | None = None) -> None:
    """The sync's last step: a report that cannot be built is a warning, never a failed sync."""
    try:
        write_report(root, config, backend, run_id, progress, table)
    except Exception as e:  # noqa: BLE001 - labels and results are already written; say so, go on
        progress(f"warning: the report was not written ({type(e).__name__}: {e}). "
                 f"The sync itself succeeded; retry with: dcloop report {root}")
