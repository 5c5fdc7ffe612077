"""The fast path: thread choice, the quick schedule, the stat index, version hashing, parallel decoding."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import torch

from dcloop import model as fixed
from dcloop import table as tbl
from dcloop.backends.csv import read_csv
from dcloop.config import ModelSection
from dcloop.images import DecodedCache, ImageStore, decode_many, decode_one
from dcloop.status import project_status
from dcloop.sync import sync


def test_auto_threads_pick_one_or_all_usable_cores_and_restore_the_setting():
    before = torch.get_num_threads()
    assert fixed.pick_threads(ModelSection(), 3, torch.device("cpu")) == fixed.usable_cores()
    picked = fixed.pick_threads(ModelSection(batch_size=2, image_size=16, threads=-1), 3, torch.device("cpu"))
    assert picked in {1, fixed.usable_cores()}
    assert torch.get_num_threads() == before


def test_a_set_thread_count_is_used_for_training_and_then_restored(tmp_path):
    before = torch.get_num_threads()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (12, 3, 16, 16), dtype=np.uint8)
    labels = np.arange(12) % 3
    settings = ModelSection(epochs=2, batch_size=4, image_size=16, threads=1, device="cpu")
    trained = fixed.train(pixels, labels, pixels[:6], labels[:6], 3, settings)
    assert trained.threads == 1 and len(trained.history) == 2
    assert torch.get_num_threads() == before
    assert trained.model.head.weight.is_contiguous()


def test_threads_do_not_change_the_model_fingerprint():
    assert ModelSection(threads=1).fingerprint() == ModelSection(threads=2).fingerprint()


def test_a_quick_sync_is_labelled_and_kept_out_of_the_score_history(make_project, config_of):
    root = make_project(overrides={"model": {"epochs": 20, "batch_size": 16, "threads": 1}})
    quick = sync(root, config_of(root), quick=True)
    assert quick.result["kind"] == "quick" and quick.result["epochs"] == "2"
    assert project_status(root, config_of(root))["last_result"] is None
    full = sync(root, config_of(root).model_copy(
        update={"model": config_of(root).model.model_copy(update={"epochs": 3})}))
    assert full.trained, "a full training follows a quick one even when no label changed"
    rows = read_csv(root / "results.csv")
    assert list(rows["kind"]) == ["quick", "full"]
    assert rows["model_fingerprint"].nunique() == 2
    assert project_status(root, config_of(root))["last_result"]["kind"] == "full"


def test_the_stat_index_restores_a_blob_deleted_from_the_cache(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"not really a png, bytes are bytes")
    store = ImageStore(tmp_path, tmp_path / "cache")
    first = store.fetch(["a.png"])["a.png"]
    first.path.unlink()
    again = store.fetch(["a.png", "missing.png"])
    assert again["a.png"].sha == first.sha and again["a.png"].path.exists()
    assert again["missing.png"].error.startswith("missing file")
    assert store.stored() == {first.sha}


def test_label_version_hashes_the_same_text_as_row_by_row(make_project):
    table = pd.DataFrame({"id": ["b", "a", "c"], "url": [" x.png", "y.png", "z.png"],
                          "label": ["1", "2 ", ""], "split": ["TRAIN", "val", "test"]})
    digest = hashlib.sha256()
    for record in tbl.versioned_rows(table).itertuples(index=False):
        digest.update("\x1f".join(record).encode())
        digest.update(b"\x1e")
    assert tbl.label_version(table) == digest.hexdigest()[:12]
    assert tbl.label_version(table.iloc[0:0]) == hashlib.sha256(b"").hexdigest()[:12]


def test_parallel_decoding_keeps_the_order_and_reports_bad_files(tmp_path):
    from PIL import Image
    paths = []
    for n in range(5):
        path = tmp_path / f"{n}.png"
        Image.fromarray(np.full((20, 30, 3), n * 40, np.uint8)).save(path)
        paths.append(path)
    (tmp_path / "bad.png").write_text("hello")
    paths.insert(2, tmp_path / "bad.png")
    results = list(decode_many(paths, 8))
    assert isinstance(results[2], str) and results[2].startswith("unreadable image")
    good = [r for r in results if not isinstance(r, str)]
    assert [int(r[0, 0, 0]) for r in good] == [0, 40, 80, 120, 160]
    assert np.array_equal(good[0], decode_one(paths[0], 8))
    pixels, errors = DecodedCache(tmp_path / "cache", 8).get({str(i): p for i, p in enumerate(paths)})
    assert set(errors) == {"2"} and len(pixels) == 5


HEAVY_MODULES = ["torch", "torchvision", "sklearn", "scipy", "umap", "numba"]


def test_a_no_change_sync_as_a_process_imports_no_heavy_module(make_project, config_of):
    """torch alone takes seconds to import: a sync that finds nothing changed must not pay for it."""
    root = make_project(overrides={"model": {"epochs": 1, "threads": 1}})
    assert sync(root, config_of(root)).trained
    probe = ("import atexit, json, sys\n"
             f"atexit.register(lambda: print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules])))\n"
             "from dcloop.cli import cli\n"
             "cli()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe, "sync", str(root)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Nothing changed since run" in done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
