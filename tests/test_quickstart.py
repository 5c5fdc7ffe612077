"""The README's main job, on the bundled digits, with one epoch."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dcloop.cli import cli
from dcloop.quickstart import digit_rows


def test_digit_rows_flip_a_seeded_fraction_of_train_labels_only(tmp_path):
    rows, truth = digit_rows(tmp_path / "images")
    assert len(rows) == 1797 and len(list((tmp_path / "images").glob("*.png"))) == 1797
    assert rows["split"].value_counts().to_dict() == {"train": 1078, "val": 359, "test": 360}
    assert len(truth) == int(0.08 * 1078)
    flipped = rows.set_index("url").loc[truth["url"]]
    assert (flipped["split"] == "train").all() and (flipped["label"].values == truth["flipped_to"].values).all()
    assert (truth["true_label"] != truth["flipped_to"]).all()
    again, _ = digit_rows(tmp_path / "again")
    assert again["label"].equals(rows["label"])


@pytest.mark.training
def test_quickstart_builds_a_project_trains_and_lists_suspects(tmp_path):
    result = CliRunner().invoke(cli, ["quickstart", str(tmp_path / "demo"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Run ") and "The 10 rows to look at first (* = a label the demo flipped on purpose)" in out
    assert "Next: open" in out and f"dcloop sync {tmp_path / 'demo'}" in out
    assert f"open {tmp_path / 'demo' / 'report' / 'index.html'} in a browser" in out
    table = pd.read_csv(tmp_path / "demo/labels.csv", dtype=str, keep_default_na=False)
    assert (table["suspicion"] != "").all()
    as_json = CliRunner().invoke(cli, ["status", str(tmp_path / "demo"), "--json"])
    assert json.loads(as_json.stdout)["edited_since_training"] == 0


def test_every_command_is_in_the_readme():
    readme = open("README.md").read()
    for name in cli.commands:
        assert f"dcloop {name}" in readme, f"README.md does not mention 'dcloop {name}'"
