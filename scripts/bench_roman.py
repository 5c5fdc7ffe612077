"""Train the fixed dcai2021 model on the competition's Roman numerals and print the scores.

    python scripts/bench_roman.py ../shared/data/roman-numerals [--epochs 100] [--seed 123] [--json]

train/ and val/ are used as given and label_book/ as the test split. The images are read by path
into a throwaway project folder; nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from dcloop.config import load_config
from dcloop.project import init_project, rows_from_folder
from dcloop.sync import sync


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with train/, val/, label_book/")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--preset", default="dcai2021")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    overrides = {"model": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                           "preset": args.preset}}
    with tempfile.TemporaryDirectory(prefix="dcloop-bench-") as folder:
        root = Path(folder) / "roman"
        init_project(root, rows_from_folder(args.data))
        started = time.perf_counter()
        report = sync(root, load_config(root, overrides), progress=lambda m: print(m, file=sys.stderr))
        wall = time.perf_counter() - started
    result = report.result
    figures = {"preset": args.preset, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
               "rows_train": int(result["rows_train"]), "rows_val": int(result["rows_val"]),
               "rows_label_book": int(result["rows_test"]), "val_accuracy": float(result["val_accuracy"]),
               "label_book_accuracy": float(result["test_accuracy"]), "best_epoch": int(result["best_epoch"]),
               "train_images_per_s": float(result["images_per_s"]), "wall_s": round(wall, 1)}
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:<22}{value}")


if __name__ == "__main__":
    main()
