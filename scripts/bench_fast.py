"""The recipe against the fast schedule (`dcloop sync --fast`) on the Roman numerals, over seeds.

    python scripts/bench_fast.py ../shared/data/roman-numerals [--seeds 123,124,125]
        [--schedules full,fast] [--classes i,ii,...] [--json-out runs.jsonl]
    python scripts/bench_fast.py --summary runs.jsonl [--epochs-of fast=30]

Each training is the fixed model's own (``model.train`` on the decoded train and val arrays, no
sync around it, so no cross-fitting and no write-back), on one thread: pin the process to one core
(``taskset -c 1``) and run nothing else, or the times measure the neighbours. train/ and val/ as
given, label_book/ as test. The images are read by path; nothing is copied into the repository.

Every run records, per epoch, the val and label_book accuracy and the wall and CPU seconds so far
(label_book is scored where the training scores val, by wrapping ``model.softmax``). Adam has no
schedule and the batch order does not depend on the number of epochs, so the first E epochs of a
run are exactly a training of E epochs: ``--epochs-of fast=30`` reads what the fast schedule would
give at 30 epochs from longer runs. Printed: per run and, per schedule, the mean and sample
standard deviation of val and label_book accuracy and of the seconds, and fast's share of full's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from dcloop.config import Config, scheduled
from dcloop.images import decode_one


def decoded(data: Path, size: int, classes: list[str] | None = None) -> dict[str, tuple]:
    """{split: (pixels, labels, classes)} for train, val and label_book; classes default to train's folders, sorted."""
    classes = classes or sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    out = {}
    for split in ("train", "val", "label_book"):
        pixels, labels = [], []
        for k, name in enumerate(classes):
            for path in sorted((data / split / name).glob("*")):
                pixels.append(decode_one(path, size))
                labels.append(k)
        out[split] = (np.stack(pixels), np.array(labels), classes)
    return out


def train_once(arrays, settings, label: str) -> dict:
    """One training under ``settings``; its scores, seconds and per-epoch curve."""
    import torch

    from dcloop import model as fixed
    (x, y, classes), (x_val, y_val, _), (x_lb, y_lb, _) = arrays["train"], arrays["val"], arrays["label_book"]
    lb_input = fixed.to_input(x_lb, torch.device("cpu")).contiguous(memory_format=torch.channels_last)
    plain, curve = fixed.softmax, []
    wall0, cpu0 = time.perf_counter(), time.process_time()

    def watched(model, inputs):  # fit scores val once per epoch through softmax: score label_book there too
        out = plain(model, inputs)
        if len(inputs) == len(x_val):
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            lb = float((plain(model, lb_input).argmax(1).numpy() == y_lb).mean())
            curve.append([float((out.argmax(1).numpy() == y_val).mean()), lb, round(wall, 2), round(cpu, 2)])
        return out

    fixed.softmax = watched
    try:
        trained = fixed.train(x, y, x_val, y_val, len(classes), settings)
    finally:
        fixed.softmax = plain
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    scores = {split: float((fixed.predict(trained.model, px)[0].argmax(1) == ys).mean())
              for split, (px, ys, _) in (("val", (x_val, y_val, 0)), ("label_book", (x_lb, y_lb, 0)))}
    return {"schedule": label, "seed": settings.seed, "epochs": settings.epochs, "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate, **scores, "best_epoch": trained.best_epoch,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load": open("/proc/loadavg").read().split()[:3],
            "curve": curve}


def at_epochs(run: dict, epochs: int) -> dict:
    """What the first ``epochs`` epochs of a run give: the best val epoch among them (the first of ties)."""
    curve = run["curve"][:epochs]
    best = max(range(len(curve)), key=lambda e: (curve[e][0], -e))
    return {**run, "epochs": len(curve), "val": curve[best][0], "label_book": curve[best][1],
            "best_epoch": best + 1, "wall_s": curve[-1][2], "cpu_s": curve[-1][3]}


def summary(runs: list[dict]) -> list[str]:
    lines, means = [], {}
    keys = ("val", "label_book", "wall_s", "cpu_s")
    lines.append(f"{'schedule':<10}{'seed':>6}{'epochs':>8}{'batch':>7}{'lr':>8}{'val':>8}{'label_book':>12}"
                 f"{'best':>6}{'wall_s':>9}{'cpu_s':>9}")
    for run in runs:
        lines.append(f"{run['schedule']:<10}{run['seed']:>6}{run['epochs']:>8}{run['batch_size']:>7}"
                     f"{run['learning_rate']:>8.0e}{run['val']:>8.3f}{run['label_book']:>12.3f}{run['best_epoch']:>6}"
                     f"{run['wall_s']:>9.0f}{run['cpu_s']:>9.0f}")
    for name in dict.fromkeys(r["schedule"] for r in runs):
        mine = [r for r in runs if r["schedule"] == name]
        means[name] = {k: float(np.mean([r[k] for r in mine])) for k in keys}
        spread = {k: float(np.std([r[k] for r in mine], ddof=1)) if len(mine) > 1 else float("nan") for k in keys}
        lines.append(f"{name}: {len(mine)} seed(s), " + ", ".join(
            f"{k} {means[name][k]:.3f} ± {spread[k]:.3f}" if k in ("val", "label_book")
            else f"{k} {means[name][k]:.0f} ± {spread[k]:.0f}" for k in keys))
    if {"full", "fast"} <= set(means):
        lines.append("fast / full: " + ", ".join(f"{k} {means['fast'][k] / means['full'][k]:.2f}"
                                                 for k in ("wall_s", "cpu_s")))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="folder with train/, val/, label_book/")
    parser.add_argument("--seeds", default="123,124,125")
    parser.add_argument("--schedules", default="full,fast", help="full, quick, fast (comma-separated)")
    parser.add_argument("--json-out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--classes", help="class order (comma-separated; it sets the head's units and the "
                        "rows' order, so the same order repeats a run bit for bit); default: sorted folders")
    parser.add_argument("--summary", type=Path, help="only summarise the runs of this JSON-lines file")
    parser.add_argument("--epochs-of", action="append", default=[], metavar="SCHEDULE=E",
                        help="read SCHEDULE's runs at their first E epochs")
    args = parser.parse_args()
    if args.summary:
        runs = [json.loads(line) for line in args.summary.read_text().splitlines() if line.strip()]
    else:
        if args.data is None:
            parser.error("give the data folder, or --summary FILE")
        config = Config.model_validate({"model": {"threads": 1, "device": "cpu"}})
        arrays = decoded(args.data, config.model.image_size, args.classes.split(",") if args.classes else None)
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in args.schedules.split(","):
                settings = scheduled(config, name).model.model_copy(update={"seed": seed})
                runs.append(train_once(arrays, settings, name))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), file=sys.stderr, flush=True)
                if args.json_out:
                    with args.json_out.open("a") as out:
                        out.write(json.dumps(runs[-1]) + "\n")
    cuts = dict(item.split("=") for item in args.epochs_of)
    runs = [at_epochs(r, int(cuts[r["schedule"]])) if r["schedule"] in cuts else r for r in runs]
    print("\n".join(summary(runs)))


if __name__ == "__main__":
    main()
