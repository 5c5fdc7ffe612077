"""dcloop.runs: the one reader and writer of a run's files, older runs' defaults, untrusted run ids."""

import io
import json

import numpy as np
import pytest

from dcloop.errors import StateError, UnsafePath
from dcloop.runs import (PREDICTIONS, Predictions, load_predictions, read_flagged, read_last_trained, read_result,
                         run_file, save_predictions, write_flagged, write_last_trained, write_result)


def predictions(rows=3, classes=2) -> Predictions:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(classes), rows).astype(np.float32)
    return Predictions(np.array([f"r{n}" for n in range(rows)]), np.array(["a", "b", ""][:rows]),
                       np.array(["train", "val", "test"][:rows]), proba, rng.normal(size=(rows, 4)).astype(np.float32),
                       proba[::-1].copy(), proba * 0.5, crossfit=2)


def test_saved_predictions_come_back_as_saved(tmp_path):
    saved = predictions()
    save_predictions(tmp_path, "run1", saved, [{"epoch": 1}])
    loaded = load_predictions(tmp_path, "run1")
    for name in ("ids", "labels", "splits", "proba", "embeddings", "label_proba", "dynamics"):
        assert np.array_equal(getattr(loaded, name), getattr(saved, name)), name
    assert loaded.crossfit == 2
    assert json.loads(run_file(tmp_path, "run1", "epochs.json").read_text()) == [{"epoch": 1}]


def test_a_run_saved_before_label_proba_dynamics_and_crossfit_gets_their_defaults(tmp_path):
    old = predictions()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=old.ids, labels=old.labels, splits=old.splits, proba=old.proba,
                        embeddings=old.embeddings)
    path = run_file(tmp_path, "old1", PREDICTIONS)
    path.parent.mkdir(parents=True)
    path.write_bytes(buffer.getvalue())
    loaded = load_predictions(tmp_path, "old1")
    assert np.array_equal(loaded.label_proba, old.proba)  # what suspicion judged with: the probabilities
    assert loaded.dynamics is None and loaded.crossfit is None


def test_a_missing_run_is_none_and_a_damaged_one_names_its_file(tmp_path):
    assert load_predictions(tmp_path, "nothere") is None
    path = run_file(tmp_path, "bad1", PREDICTIONS)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    with pytest.raises(StateError, match="predictions.npz"):
        load_predictions(tmp_path, "bad1")


@pytest.mark.parametrize("run_id", ["../../etc", "a/b", "..", "", "x y", "\x1b[31m"])
def test_a_run_id_from_the_results_table_never_becomes_a_path(tmp_path, run_id):
    with pytest.raises(UnsafePath):
        run_file(tmp_path, run_id, PREDICTIONS)
    assert load_predictions(tmp_path, run_id) is None
    assert read_result(tmp_path, run_id) == {} and read_flagged(tmp_path, run_id) == []


def test_last_trained_names_the_run_the_table_shows_only_while_its_predictions_exist(tmp_path):
    notes = []
    assert read_last_trained(tmp_path, notes.append) == {}  # never trained
    write_last_trained(tmp_path, "key1", "run1", "v1", unwritten=True)
    assert read_last_trained(tmp_path, notes.append) == {}  # its predictions are gone: retrain
    assert "whose predictions" in notes[-1] and "are gone" in notes[-1]
    save_predictions(tmp_path, "run1", predictions(), [])
    assert read_last_trained(tmp_path) == {"key": "key1", "run_id": "run1", "version": "v1", "unwritten": True}
    (tmp_path / "last_trained.json").write_text("{")
    assert read_last_trained(tmp_path, notes.append) == {} and "unreadable" in notes[-1]


def test_flagged_and_result_round_trip(tmp_path):
    write_flagged(tmp_path, "run1", ["a", "b"])
    write_result(tmp_path, "run1", {"run_id": "run1", "val_accuracy": "0.5000"})
    assert read_flagged(tmp_path, "run1") == ["a", "b"]
    assert read_result(tmp_path, "run1") == {"run_id": "run1", "val_accuracy": "0.5000"}
