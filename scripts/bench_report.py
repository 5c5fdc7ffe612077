"""Time building the HTML report for a synthetic project of N rows (default 10,000), without training.

    python scripts/bench_report.py ../shared/data/roman-numerals [--rows 10000] [--keep DIR] [--json]

The project reuses the real Roman-numeral images, each written again with one pixel changed so that
every row has its own image content (no thumbnail is shared). A sync's outputs are laid down the
way sync writes them (label versions, image cache, written-back columns, predictions.npz with
probabilities and 256-wide embeddings, three results rows), then the report is built twice: cold
(no thumbnail or map cache: the first report after a sync of new images) and warm (the next sync's
report, images unchanged). The baseline in the same run is the time to read what the report reads:
the table, the results and the run's predictions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dcloop import report as rep
from dcloop import table as tbl
from dcloop.backends import open_backend
from dcloop.backends.csv import read_csv
from dcloop.config import Config, load_config
from dcloop.history import History, write_json
from dcloop.project import init_project, rows_from_folder
from dcloop.dataset import Dataset, load_images
from dcloop.pull import pull
from dcloop.runs import save_predictions, state_dir
from dcloop.scoring import Scored, gather_evidence, merge_flags, predictions_patch


def distinct_copies(data: Path, folder: Path, rows: int, seed: int):
    """``rows`` url/label/split rows, cycling over the dataset, every image's bytes made unique."""
    source = rows_from_folder(data)
    rng = np.random.default_rng(seed)
    picked = source.iloc[np.arange(rows) % len(source)].reset_index(drop=True)
    folder.mkdir(parents=True)
    for n, url in enumerate(picked["url"]):
        pixels = np.array(Image.open(url).convert("L"))
        pixels.flat[n % pixels.size] ^= 1 + n % 7
        path = folder / f"img-{n:05d}.png"
        Image.fromarray(pixels).save(path)
        picked.loc[n, "url"] = str(path)
    # A few labels flipped, as a dataset under review has them.
    flip = rng.choice(rows, rows // 50, replace=False)
    classes = sorted(source["label"].unique())
    picked.loc[flip, "label"] = [classes[(classes.index(c) + 1) % len(classes)] for c in picked.loc[flip, "label"]]
    return picked, classes


def fake_run(root: Path, config: Config, seed: int) -> None:
    """What one sync leaves behind, with made-up but plausible probabilities and embeddings."""
    rng = np.random.default_rng(seed)
    backend = open_backend(config, root)
    table = pull(backend, config)
    checked = tbl.validate(table, config.project.classes)
    History(state_dir(root)).record(table, "2024-01-01T00:00:00Z")
    images = load_images(root, config, checked, lambda m: None)
    readable = checked.table[checked.table["id"].isin(images.sha)]
    codes = readable["label"].map({c: k for k, c in enumerate(config.project.classes)}).to_numpy()
    k = len(config.project.classes)
    centres = rng.normal(size=(k, 256)) * 3
    embeddings = centres[codes] + rng.normal(size=(len(codes), 256))
    logits = rng.normal(size=(len(codes), k))
    logits[np.arange(len(codes)), codes] += 3
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ids = list(readable["id"])
    data = Dataset(root, config, checked, images)
    evidence = gather_evidence(data, ids, proba, embeddings, set())
    patch = merge_flags(predictions_patch(evidence, proba, config.project.classes, 0.2), data)
    backend.write(patch)
    scored = Scored(readable, {i: n for n, i in enumerate(ids)}, proba, embeddings, proba, np.zeros_like(proba), patch)
    save_predictions(state_dir(root), "bench0001", scored.predictions(crossfit=0), [])
    for n, (run_id, accuracy) in enumerate([("earlier1", 0.71), ("earlier2", 0.74), ("bench0001", 0.78)]):
        backend.append_result({"run_id": run_id, "label_version": f"version{n}",
                               "labels_changed": str(40 * n), "val_accuracy": str(accuracy),
                               "test_accuracy": str(accuracy - 0.03), "model_fingerprint": config.model.fingerprint()})
    write_json(state_dir(root) / "last_trained.json", {"run_id": "bench0001"})


def timed(function, *args, **kwargs) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds of this process (all threads) and the result."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, time.process_time() - cpu, result


def forget_caches(root: Path) -> None:
    """Thumbnails and the 2-D map as before the first report: a cold build."""
    shutil.rmtree(state_dir(root) / "cache" / "thumbs", ignore_errors=True)
    (state_dir(root) / "runs" / "bench0001" / "map.npz").unlink(missing_ok=True)


def read_inputs(root: Path, config: Config) -> None:
    backend = open_backend(config, root)
    tbl.normalize(backend.read(), backend.describe())
    backend.read_results()
    rep.load_run(state_dir(root), "bench0001")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with train/, val/, label_book/")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build the project in this folder and keep it; "
                                                  "a project already there is reused")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcloop-bench-report-") as scratch:
        folder = args.keep or Path(scratch)
        root = Path(folder) / "project"
        if not (root / "dcloop.toml").exists():
            print(f"writing {args.rows} distinct images and a synthetic run", file=sys.stderr)
            rows, classes = distinct_copies(args.data, Path(folder) / "images", args.rows, args.seed)
            init_project(root, rows, classes)
            fake_run(root, load_config(root), args.seed)
        config = load_config(root)
        forget_caches(root)
        read_wall, read_cpu, _ = timed(read_inputs, root, config)
        cold_wall, cold_cpu, path = timed(rep.write_report, root, config,
                                          progress=lambda m: print(m, file=sys.stderr))
        warm_wall, warm_cpu, _ = timed(rep.write_report, root, config)
        figures = {"rows": len(read_csv(root / "labels.csv")), "read_inputs_s": round(read_wall, 2),
                   "report_cold_s": round(cold_wall, 1), "report_cold_cpu_s": round(cold_cpu, 1),
                   "report_warm_s": round(warm_wall, 1), "report_warm_cpu_s": round(warm_cpu, 1),
                   "cold_over_read": round(cold_wall / read_wall), "warm_over_read": round(warm_wall / read_wall),
                   "page_mib": round(path.stat().st_size / 2**20, 1), "map": json.loads(
                       str(np.load(state_dir(root) / "runs" / "bench0001" / "map.npz")["axes"]))["method"]}
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:<20}{value}")


if __name__ == "__main__":
    main()
