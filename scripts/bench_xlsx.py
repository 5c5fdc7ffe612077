"""Time labels.xlsx at 10,000 rows: a no-change sync's read path, and a full write-back with thumbnails.

    python scripts/bench_xlsx.py [--rows 10000]

Builds a workbook of synthetic rows in a temp folder whose images are a few small PNGs cached the
way a sync caches them, and prints: the write-back of every row's predictions and thumbnails, a
results row, a cold read (openpyxl parses the file), a warm read (the read cache), the read path
as a whole process (interpreter start, imports, pull), and the workbook's size.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dcloop import table as tbl  # noqa: E402
from dcloop.backends.xlsx import XlsxBackend  # noqa: E402
from dcloop.config import CONFIG_FILE, new_config, to_toml  # noqa: E402

CLASSES = ["cat", "dog", "bird"]
PROCESS = """
import sys, time
started = time.perf_counter()
from pathlib import Path
from dcloop.backends import open_backend
from dcloop.config import load_config
from dcloop.pull import pull
imported = time.perf_counter()
root = Path(sys.argv[1])
table = pull(open_backend(load_config(root, environ={}), root), load_config(root, environ={}))
print(f"{imported - started:.2f} {time.perf_counter() - imported:.2f} {len(table)}")
"""


def cached_images(root: Path, n: int = 4) -> list[str]:
    """n small PNGs under .dcloop/cache/blobs, named by content as sync names them; their image cells."""
    cells = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.new("RGB", (96, 64), (60 * i, 120, 255 - 60 * i)).save(buffer, format="PNG")
        sha = hashlib.sha256(buffer.getvalue()).hexdigest()
        path = root / ".dcloop" / "cache" / "blobs" / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        cells.append(str(path.relative_to(root)))
    return cells


def synthetic_table(rows: int) -> pd.DataFrame:
    frame = pd.DataFrame({"url": [f"https://img.example/{n}.png" for n in range(rows)],
                          "label": [CLASSES[n % 3] for n in range(rows)],
                          "split": [["train", "train", "val", "test"][n % 4] for n in range(rows)]})
    frame = frame.reindex(columns=tbl.COLUMNS, fill_value="")
    return tbl.with_ids(frame, tbl.assign_ids(frame), "train")


def timed(function):
    started = time.perf_counter()
    out = function()
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        config = new_config({"project": {"classes": CLASSES}, "table": {"backend": "xlsx"}})
        (root / CONFIG_FILE).write_text(to_toml(config))
        (root / ".dcloop").mkdir()
        backend = XlsxBackend(root / "labels.xlsx", root, CLASSES)
        table = synthetic_table(args.rows)
        _, created = timed(lambda: backend.create(table))
        images = cached_images(root)
        patch = pd.DataFrame({"id": table["id"], "image": [images[n % len(images)] for n in range(args.rows)],
                              "prediction": table["label"], "confidence": "0.8123", "label_prob": "0.7012",
                              "suspicion": [f"{n % 1000 / 1000:.4f}" for n in range(args.rows)],
                              "flags": ""})
        written, write_s = timed(lambda: backend.write(patch))
        backend.cache_path.unlink()
        _, cold_s = timed(backend.read)
        _, warm_s = timed(backend.read)
        again, again_s = timed(lambda: backend.write(patch))
        _, result_s = timed(lambda: backend.append_result({"run_id": "a1", "val_accuracy": "0.75"}))
        fresh = XlsxBackend(root / "labels.xlsx", root, CLASSES)  # as after another program's save
        _, loaded_result_s = timed(lambda: fresh.append_result({"run_id": "b2", "val_accuracy": "0.8"}))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROCESS, str(root)], capture_output=True, text=True,
                             env=env, check=True).stdout.split()
        process_s = time.perf_counter() - started
        print(f"rows                                   {args.rows}")
        print(f"create (no images yet)                 {created:6.2f} s")
        print(f"write-back, every row + thumbnails     {write_s:6.2f} s ({written} rows changed)")
        print(f"same patch again (re-read, no change)  {again_s:6.2f} s ({again} rows changed)")
        print(f"results row after the write-back       {result_s:6.2f} s (saves the workbook it holds)")
        print(f"results row, workbook loaded first     {loaded_result_s:6.2f} s (loads and saves it all)")
        print(f"read, cold (openpyxl parses)           {cold_s:6.2f} s")
        print(f"read, warm (read cache)                {warm_s:6.2f} s")
        print(f"no-change pull as a process            {process_s:6.2f} s (imports {out[0]} s, pull {out[1]} s, "
              f"{out[2]} rows)")
        print(f"workbook size                          {backend.path.stat().st_size / 1e6:6.2f} MB")
        print(f"load average                           {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
