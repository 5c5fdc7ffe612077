"""[suspicion] crossfit (issue 4): train rows' labels judged by networks that never saw them."""

import numpy as np
from click.testing import CliRunner

from dcloop.cli import cli
from dcloop.config import load_config
from dcloop.history import read_json
from dcloop.sync import state_dir, sync
from tests.test_sync import labels


def test_crossfitting_scores_a_planted_wrong_train_label_out_of_sample(planted_error, config_of):
    root, wrong_url = planted_error
    assert sync(root, config_of(root)).trained
    config = config_of(root)
    config.suspicion.crossfit = 2
    said = []
    report = sync(root, config, progress=said.append)
    assert report.trained  # switching cross-fitting on is a reason to train again
    assert sum(m.startswith("cross-fitting network") for m in said) == 2
    table = labels(root)
    planted = table.index[table["url"] == wrong_url][0]
    assert float(table.loc[planted, "label_prob"]) < 0.5
    assert table.loc[planted, "flags"].startswith("label? model says 0")
    assert table["suspicion"].astype(float).rank(ascending=False)[planted] <= 3
    run = read_json(state_dir(root) / "last_trained.json", {})["run_id"]
    with np.load(state_dir(root) / "runs" / run / "predictions.npz") as saved:
        ids, proba = list(saved["ids"]), saved["proba"]
    assert proba[ids.index(table.loc[planted, "id"])].argmax() == 0  # its prediction: from a network that never saw it


def test_the_crossfit_flag_and_setting(planted_error):
    root, _ = planted_error
    assert load_config(root, environ={}).suspicion.crossfit == 0
    assert load_config(root, environ={"DCLOOP_SUSPICION_CROSSFIT": "3"}).suspicion.crossfit == 3
    result = CliRunner().invoke(cli, ["sync", str(root), "--crossfit", "-1"])
    assert result.exit_code == 2 and "-1 is not in the range x>=0" in result.output
