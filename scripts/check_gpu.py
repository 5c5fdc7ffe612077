"""The GPU path in one short run: the recipe on cuda against the CPU, then a whole sync on cuda.

    python scripts/check_gpu.py [DATA] [--epochs 20] [--cpu-epochs 2] [--json]
    python scripts/check_gpu.py --allow-cpu --epochs 1 --cpu-epochs 1 --threads 1   # a smoke test without a GPU

DATA is a folder with train/, val/ and label_book/ (default ../shared/data/roman-numerals; scikit-learn's
bundled digits when it is missing, as the quickstart uses). It prints the device, then trains the
dcai2021 recipe through dcloop.model.train:

1. on the GPU and on the CPU for --cpu-epochs each, same seed: images/s of both, the speed-up, and
   val and test accuracy of each (they agree up to floating-point noise and the kept epoch);
2. on the GPU for --epochs (stopped at --max-train-s): images/s, val and test accuracy;
3. `dcloop init` + `dcloop sync --device cuda --json` on a throwaway project, as a person runs them:
   the results row's val and test accuracy, images/s and seconds.

Sized to finish in under 5 minutes on one GPU. Progress on stderr; with --json, one JSON object on
stdout. Exits 2 when torch sees no CUDA device, unless --allow-cpu (the same steps on the CPU).
The images are read by path; nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "roman-numerals"
NO_GPU = ("torch sees no CUDA device here (torch {version}, CUDA build {cuda}); this check needs a GPU. "
          "Run it with --allow-cpu for a smoke test of the same steps on the CPU.")


def say(message: str) -> None:
    print(f"check_gpu: {message}", file=sys.stderr, flush=True)


def table_rows(data: Path, scratch: Path):
    """url, label, split rows: DATA's train/val/label_book, or the quickstart's digits written to ``scratch``."""
    from dcloop.project import rows_from_folder
    from dcloop.quickstart import digit_rows

    if data.is_dir():
        return rows_from_folder(data), f"{data} (label_book as test)"
    rows, _ = digit_rows(scratch / "images")
    rows["url"] = [str(scratch / url) for url in rows["url"]]
    return rows, f"scikit-learn's digits ({data} not found)"


def decoded_splits(rows, size: int = 32) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """{split: (uint8 pixels, class codes)} decoded as a sync decodes them, and the class names."""
    from dcloop.images import decode_many

    classes = sorted(rows["label"].unique())
    pixels = list(decode_many([Path(u) for u in rows["url"]], size))
    bad = [u for u, p in zip(rows["url"], pixels) if isinstance(p, str)]
    if bad:
        raise SystemExit(f"check_gpu: {len(bad)} image(s) could not be decoded, e.g. {bad[0]}")
    codes = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    stacked = np.stack(pixels)
    return {split: (stacked[(rows["split"] == split).to_numpy()], codes[(rows["split"] == split).to_numpy()])
            for split in ("train", "val", "test")}, classes


def train_once(device: str, epochs: int, splits, classes, threads: int, max_s: float) -> dict:
    """One training of the recipe on ``device``: images/s, seconds, epochs run, val and test accuracy."""
    from dcloop import model as fixed
    from dcloop.config import ModelSection

    settings = ModelSection(epochs=epochs, device=device, threads=threads)
    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["val"], splits["test"]
    started = time.perf_counter()
    trained = fixed.train(x, y, x_val, y_val, len(classes), settings, say,
                          should_stop=lambda: time.perf_counter() - started > max_s)
    if device == "cuda":
        import torch
        torch.cuda.synchronize()
    proba, _ = fixed.predict(trained.model, x_test)
    test = float((proba.argmax(1) == y_test).mean()) if len(y_test) else None
    return {"device": device, "epochs": len(trained.history), "images_per_s": round(trained.images_per_s, 1),
            "train_s": round(trained.seconds, 1), "best_epoch": trained.best_epoch,
            "val_accuracy": trained.best_val_accuracy, "test_accuracy": test,
            "threads": trained.threads_used or None}


def whole_sync(device: str, rows, epochs: int, scratch: Path, threads: int) -> dict:
    """`dcloop init` + `dcloop sync --device DEVICE --json` in fresh processes: the results row."""
    table = scratch / "rows.csv"
    rows.to_csv(table, index=False)
    root = scratch / "project"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "DCLOOP_MODEL_THREADS": str(threads),
           "DCLOOP_REPORT_MAP": "pca"}  # umap's first map compiles for 20-40 s: not what is measured
    dcloop = [sys.executable, "-c", "from dcloop.cli import cli; cli()"]
    subprocess.run(dcloop + ["init", str(root), "--from-csv", str(table)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    done = subprocess.run(dcloop + ["sync", str(root), "--device", device, "--epochs", str(epochs), "--json"],
                          env=env, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"check_gpu: dcloop sync --device {device} failed (exit {done.returncode}); see above")
    result = json.loads(done.stdout)["result"]
    number = {k: float(result[k]) if result.get(k) else None
              for k in ("val_accuracy", "test_accuracy", "images_per_s", "duration_s", "epochs", "rows_train")}
    training = (number["epochs"] * number["rows_train"] / number["images_per_s"]
                if number["images_per_s"] and number["rows_train"] else None)
    return {"device": device, "val_accuracy": number["val_accuracy"], "test_accuracy": number["test_accuracy"],
            "images_per_s": number["images_per_s"], "training_s": round(training, 1) if training else None,
            "sync_s": number["duration_s"], "process_s": round(wall, 1), "run_id": result.get("run_id")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", default=DEFAULT_DATA,
                        help="folder with train/, val/, label_book/ (default: %(default)s; digits if missing)")
    parser.add_argument("--epochs", type=int, default=20, help="the GPU's longer training and the sync (default 20)")
    parser.add_argument("--cpu-epochs", type=int, default=2,
                        help="the GPU-against-CPU comparison, each device (default 2)")
    parser.add_argument("--max-train-s", type=float, default=60.0,
                        help="stop the longer training after the epoch that passes this (default 60)")
    parser.add_argument("--threads", type=int, default=0, help="[model] threads of the CPU runs (0: auto)")
    parser.add_argument("--rows", type=int, help="use only the first N rows of the table (a smoke test)")
    parser.add_argument("--allow-cpu", action="store_true", help="without a GPU, run the same steps on the CPU")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()

    import torch

    started = time.perf_counter()
    if torch.cuda.is_available():
        device, name = "cuda", torch.cuda.get_device_name(0)
    elif args.allow_cpu:
        device, name = "cpu", "cpu (--allow-cpu: no CUDA device; a smoke test, not a GPU figure)"
    else:
        print(f"check_gpu: {NO_GPU.format(version=torch.__version__, cuda=torch.version.cuda)}", file=sys.stderr)
        return 2
    say(f"device: {name}")
    figures: dict = {"device": device, "device_name": name, "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="check-gpu-") as folder:
        scratch = Path(folder)
        rows, figures["data"] = table_rows(args.data, scratch)
        rows = rows.sample(frac=1.0, random_state=0).head(args.rows) if args.rows else rows  # every split and class
        say(f"decoding {len(rows)} images of {figures['data']}")
        splits, classes = decoded_splits(rows)
        figures["rows"] = {split: len(y) for split, (_, y) in splits.items()}
        say(f"1/3 the recipe for {args.cpu_epochs} epoch(s) on {device}, then on cpu")
        short = train_once(device, args.cpu_epochs, splits, classes, args.threads, float("inf"))
        cpu = train_once("cpu", args.cpu_epochs, splits, classes, args.threads, float("inf")) \
            if device != "cpu" else short
        figures["compare"] = {device: short, "cpu": cpu, "speed_up": round(short["images_per_s"] / cpu["images_per_s"], 2)}
        say(f"2/3 the recipe for {args.epochs} epoch(s) on {device} (at most {args.max_train_s:g} s)")
        figures["long"] = train_once(device, args.epochs, splits, classes, args.threads, args.max_train_s)
        say(f"3/3 dcloop init + dcloop sync --device {device} --epochs {args.epochs} --json")
        figures["sync"] = whole_sync(device, rows, args.epochs, scratch, args.threads)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 0


def report(f: dict) -> str:
    c, long, s = f["compare"], f["long"], f["sync"]
    runs = [c[f["device"]], c["cpu"], long] if f["device"] != "cpu" else [c["cpu"], long]
    lines = [f"device: {f['device_name']} (torch {f['torch']}); data: {f['data']}, rows {f['rows']}",
             "training         epochs  img/s     s     val    test"]
    for r in runs:
        lines.append(f"  {r['device']:<14}{r['epochs']:>6}{r['images_per_s']:>8.0f}{r['train_s']:>7.1f}"
                     f"{fmt(r['val_accuracy']):>8}{fmt(r['test_accuracy']):>8}")
    lines.append(f"speed-up, {f['device']} over cpu at {c['cpu']['epochs']} epoch(s): {c['speed_up']:.2f}x")
    lines.append(f"dcloop sync --device {s['device']}: val {fmt(s['val_accuracy'])}, test {fmt(s['test_accuracy'])}, "
                 f"{s['images_per_s']:.0f} img/s, training ~{s['training_s']} s, sync {s['sync_s']} s, "
                 f"process {s['process_s']} s (run {s['run_id']})")
    lines.append(f"wall: {f['wall_s']} s")
    return "\n".join(lines)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
