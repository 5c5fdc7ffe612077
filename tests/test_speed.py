"""The fast path: thread choice, the quick and fast schedules, the stat index, version hashing, parallel decoding."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dcloop import model as fixed
from dcloop import table as tbl
from dcloop.backends.csv import read_csv
from dcloop.config import FAST_SCHEDULE, ModelSection, fast_config
from dcloop.images import DecodedCache, ImageStore, decode_many, decode_one, local_path, plain_path
from dcloop.render import format_status, score_lines
from dcloop.status import project_status
from dcloop.threads import ThreadGovernor
from dcloop.sync import sync


def test_auto_threads_pick_one_or_all_usable_cores_and_restore_the_setting():
    before = torch.get_num_threads()
    for threads in (0, -1):
        plan = fixed.plan_threads(ModelSection(batch_size=2, image_size=16, threads=threads), 3, torch.device("cpu"))
        assert plan.threads in {1, fixed.usable_cores()}
        assert plan.one_thread_step_s < float("inf") or fixed.usable_cores() == 1
    assert fixed.plan_threads(ModelSection(threads=3), 3, torch.device("cpu")).one_thread_step_s == float("inf")
    assert torch.get_num_threads() == before


def test_the_governor_drops_to_one_thread_once_a_window_of_steps_is_slower_than_one_thread_was():
    steady = ThreadGovernor(2, one_thread_step_s=0.030, window=3)
    assert [steady.step(s) for s in (0.02, 0.5, 0.02, 0.02, 0.02, 0.02)] == [2] * 6  # one stall is not a trend
    assert steady.used() == "2" and steady.dropped_at is None
    busy = ThreadGovernor(2, one_thread_step_s=0.030, window=3)
    assert [busy.step(s) for s in (0.02, 0.02, 0.02, 0.4, 0.5, 0.6, 0.01, 0.01, 0.01)] == [2] * 5 + [1] * 4
    assert busy.used() == "2>1" and busy.dropped_at == 6  # and it stays at one thread
    fixed_count = ThreadGovernor(2)
    assert {fixed_count.step(9.0) for _ in range(100)} == {2} and fixed_count.used() == "2"


def tiny_data():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (24, 3, 16, 16), dtype=np.uint8)
    return pixels, np.arange(24) % 3


@pytest.mark.training
def test_a_fixed_thread_count_and_seed_give_the_same_weights_twice():
    pixels, labels = tiny_data()
    for threads in sorted({1, fixed.usable_cores()}):
        settings = ModelSection(epochs=2, batch_size=4, image_size=16, threads=threads, device="cpu")
        first, second = (fixed.train(pixels, labels, pixels[:6], labels[:6], 3, settings) for _ in range(2))
        assert first.threads_used == second.threads_used == str(threads)
        for name, tensor in first.model.state_dict().items():
            assert torch.equal(tensor, second.model.state_dict()[name]), (threads, name)


@pytest.mark.training
def test_a_training_that_gets_slower_than_one_thread_goes_on_with_one_and_says_so():
    pixels, labels = tiny_data()
    settings = ModelSection(epochs=2, batch_size=4, image_size=16, device="cpu")
    before, said = torch.get_num_threads(), []
    try:
        torch.set_num_threads(2)
        trained = fixed.fit(pixels, labels, pixels[:6], labels[:6], 3, settings, torch.device("cpu"), said.append,
                            lambda: False, ThreadGovernor(2, one_thread_step_s=0.0, window=2))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert trained.threads == 2 and trained.threads_used == "2>1"
    assert any("going on with 1 thread" in m for m in said)


@pytest.mark.training
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


@pytest.mark.training
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
    assert list(rows["threads"]) == ["1", "1"]
    assert rows["model_fingerprint"].nunique() == 2
    assert project_status(root, config_of(root))["last_result"]["kind"] == "full"


@pytest.mark.training
def test_a_fast_sync_is_labelled_with_its_own_fingerprint_and_compared_only_with_fast_runs(
        make_project, config_of, monkeypatch):
    monkeypatch.setitem(FAST_SCHEDULE, "epochs", 2)  # the schedule's batch and learning rate, fewer epochs
    root = make_project(overrides={"model": {"epochs": 3, "threads": 1}})
    full = sync(root, config_of(root))
    fast = sync(root, config_of(root), fast=True)
    assert fast.trained, "a fast training follows a full one even when no label changed"
    assert fast.schedule == "fast" and fast.to_json()["schedule"] == "fast" and not fast.to_json()["quick"]
    assert (fast.result["kind"], fast.result["epochs"]) == ("fast", "2")
    assert fast.result["model_fingerprint"] == fast_config(config_of(root)).model.fingerprint()
    assert fast.result["model_fingerprint"] != full.result["model_fingerprint"]
    assert fast.result["compared_run"] == "", "never compared with the full run"
    assert any(line.startswith("A fast run (a third of the recipe's time)") for line in score_lines(fast))
    info = project_status(root, config_of(root))
    assert info["last_result"]["run_id"] == full.result["run_id"]
    assert info["last_fast_result"]["run_id"] == fast.result["run_id"]
    assert "last fast      val " in format_status(info)
    assert not sync(root, config_of(root), fast=True).trained, "nothing changed since the fast run"


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


HEAVY_MODULES = ["torch", "torchvision", "sklearn", "scipy", "umap", "numba", "requests", "PIL"]


@pytest.mark.training
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


@settings(max_examples=300, deadline=None)
@given(url=st.text(st.sampled_from("ab./~:\\ ?#%\x00é"), min_size=1, max_size=12).map(lambda t: t.replace(":", "file:")),
       root=st.sampled_from([".", "proj", "proj/sub", "/", "/srv/proj"]))
def test_a_plain_path_is_the_text_of_the_path_local_path_builds(url, root):
    """The stat index is keyed by the path's text: the fast path must give the very same text."""
    plain = plain_path(url, "" if root == "." else os.path.join(root, ""))
    assert plain is None or plain == str(local_path(url, Path(root)))


def test_the_usual_urls_take_the_plain_path():
    assert plain_path("images/a.png", "proj/") == "proj/images/a.png"
    assert plain_path("/srv/images/a b.png", "proj/") == "/srv/images/a b.png"
    assert [plain_path(u, "proj/") for u in ("file:///a.png", "~/a.png", "./a.png", "a//b.png", "a/")] == [None] * 5


def test_a_local_image_changed_in_place_is_read_again(tmp_path):
    """Same path, new bytes: the size or mtime in the stat index differs, so the new content is hashed."""
    image = tmp_path / "a.png"
    image.write_bytes(b"first bytes")
    store = ImageStore(tmp_path, tmp_path / "cache")
    first = store.fetch(["a.png", str(image)])
    image.write_bytes(b"other bytes, longer")
    again = ImageStore(tmp_path, tmp_path / "cache").fetch(["a.png", str(image)])
    assert first["a.png"].sha == first[str(image)].sha != again["a.png"].sha == again[str(image)].sha
    assert again["a.png"].path.read_bytes() == b"other bytes, longer"


def test_a_no_change_record_gives_an_empty_diff_with_diffs_columns():
    empty = pd.DataFrame({"id": [], "url": [], "label": [], "split": []}, dtype=object)
    assert list(tbl.no_changes().columns) == list(tbl.diff(empty, empty).columns) and tbl.no_changes().empty
