"""[suspicion] crossfit: train rows' labels judged by networks that never saw them; training dynamics."""

import numpy as np
import pytest
from click.testing import CliRunner

from dcloop import model as fixed
from dcloop.cli import cli
from dcloop.config import Config, ModelSection, load_config
from dcloop.history import read_json
from dcloop.runs import state_dir
from dcloop.sync import sync
from tests.test_sync import labels


@pytest.mark.training
def test_crossfitting_scores_a_planted_wrong_train_label_out_of_sample(planted_error, config_of):
    root, wrong_url = planted_error
    assert sync(root, config_of(root)).trained
    config = config_of(root)
    config.suspicion.crossfit = 2
    said = []
    report = sync(root, config, progress=said.append)
    assert report.trained  # switching cross-fitting on is a reason to train again
    # a 3-epoch schedule cannot make networks shorter than the main one: one split of 2 (crossfit_shape)
    assert sum(m.startswith("cross-fitting network") for m in said) == 2
    table = labels(root)
    planted = table.index[table["url"] == wrong_url][0]
    assert float(table.loc[planted, "label_prob"]) < 0.5
    assert table.loc[planted, "flags"].startswith("label? model says 0")
    labeled = table["label_prob"] != ""
    assert table.loc[labeled, "label_prob"].astype(float).idxmin() == planted  # the most doubted label
    # (thin 1s among round 0s can look like odd images in so small a table; they may rank above it)
    assert table["suspicion"].astype(float).rank(ascending=False)[planted] <= 5
    run = read_json(state_dir(root) / "last_trained.json", {})["run_id"]
    with np.load(state_dir(root) / "runs" / run / "predictions.npz") as saved:
        ids, proba, crossfit = list(saved["ids"]), saved["proba"], int(saved["crossfit"])
        kept = set(saved.files)
    assert {"knn_proba", "outlier_z"} <= kept  # a rescore judges the rows as this run did, on one scale
    assert proba[ids.index(table.loc[planted, "id"])].argmax() == 0  # its prediction: from a network that never saw it
    # the run records it was cross-fitted, so its report says so whatever dcloop.toml says later
    assert crossfit == 2
    from dcloop import report as rep
    assert rep.load_run(state_dir(root), run).crossfit == 2


def test_the_crossfitting_networks_are_short_where_they_can_learn_and_never_cost_more():
    from dcloop.training import crossfit_shape
    recipe = Config()  # 100 epochs at batch 8: 16 networks of 5 epochs (130 steps an epoch on 1,034 rows)
    assert crossfit_shape(recipe, 2067) == (8, 5)
    quickstart = Config(model=ModelSection(epochs=15, batch_size=32))  # 20 steps an epoch: 2 networks, full length
    assert crossfit_shape(quickstart, 1078) == (1, 15)
    thirty = Config(model=ModelSection(epochs=30))  # 5 epochs reach 600 steps; the budget (8 x 1.5 epochs) buys 2 splits
    assert crossfit_shape(thirty, 2067) == (2, 5)
    fast = Config(model=ModelSection(epochs=40, batch_size=32))  # 19 epochs reach 600 steps: one split
    assert crossfit_shape(fast, 2067) == (1, 19)


def test_the_crossfit_flag_and_setting(planted_error):
    root, _ = planted_error
    assert load_config(root, environ={}).suspicion.crossfit == 0  # as the test projects set it
    assert Config().suspicion.crossfit == 2  # the default: every labeled row judged out of sample
    assert load_config(root, environ={"DCLOOP_SUSPICION_CROSSFIT": "3"}).suspicion.crossfit == 3
    result = CliRunner().invoke(cli, ["sync", str(root), "--crossfit", "-1"])
    assert result.exit_code == 2 and "-1 is not in the range x>=0" in result.output


@pytest.mark.training
def test_a_sync_keeps_each_train_and_val_rows_training_dynamics(planted_error, config_of):
    root, wrong_url = planted_error
    assert sync(root, config_of(root)).trained
    run = read_json(state_dir(root) / "last_trained.json", {})["run_id"]
    with np.load(state_dir(root) / "runs" / run / "predictions.npz") as saved:
        ids, given, splits, dynamics = list(saved["ids"]), saved["labels"], saved["splits"], saved["dynamics"]
    assert np.allclose(dynamics[np.isin(splits, ["train", "val"])].sum(1), 1, atol=1e-4)
    table = labels(root)
    planted = ids.index(table.loc[table["url"] == wrong_url, "id"].iloc[0])
    ones = (splits == "train") & (given == "1")
    # The planted row is a 0 labeled 1: the network learned that label late, if at all.
    assert dynamics[planted, 1] < np.median(dynamics[ones, 1])


@pytest.mark.training
def test_the_dynamics_stop_at_the_epoch_of_the_kept_weights():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (24, 3, 16, 16), dtype=np.uint8)
    labels, val_labels = np.arange(24) % 3, rng.integers(0, 3, 12)  # random val labels: accuracy peaks early
    settings = ModelSection(epochs=6, batch_size=4, image_size=16, threads=1, device="cpu")
    longer = fixed.train(pixels, labels, pixels[:12], val_labels, 3, settings)
    assert longer.best_epoch < 6
    shorter = fixed.train(pixels, labels, pixels[:12], val_labels, 3,
                          settings.model_copy(update={"epochs": longer.best_epoch}))
    assert shorter.best_epoch == longer.best_epoch  # the same first epochs, the same best
    assert np.allclose(longer.train_dynamics, shorter.train_dynamics)
    assert np.allclose(longer.val_dynamics, shorter.val_dynamics)
    assert np.allclose(longer.train_dynamics.sum(1), 1, atol=1e-5)
