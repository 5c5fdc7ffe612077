"""`dcloop init --sheet` and `dcloop sync` end to end, through real gspread and the Sheets emulator."""

import pytest
import pandas as pd
from click.testing import CliRunner

from dcloop.cli import cli

from .conftest import ACCOUNT, replace_setting, write_digits


def sheet_frame(emulator, key, tab="labels"):
    values = emulator.values(key, tab, "FORMATTED_VALUE")
    return pd.DataFrame([r + [""] * (len(values[0]) - len(r)) for r in values[1:]], columns=values[0])


@pytest.mark.training
def test_init_and_sync_through_the_emulator(tmp_path, emulator, key_file, monkeypatch):
    monkeypatch.setenv("DCLOOP_TABLE_ENDPOINT", emulator.base_url)
    key = emulator.create_spreadsheet("labels", editors=[ACCOUNT])
    for split, every in (("train", 12), ("val", 4)):
        write_digits(tmp_path / "data" / split / "1", classes=(1,), per_class=every, seed=every)
        write_digits(tmp_path / "data" / split / "7", classes=(7,), per_class=every, seed=every)
    runner = CliRunner()
    result = runner.invoke(cli, ["init", str(tmp_path / "p"), "--sheet", key, "--from-folder",
                                 str(tmp_path / "data"), "--credentials", str(key_file)])
    assert result.exit_code == 0, result.output
    assert "tab labels: created, 32 row(s) written" in result.stderr
    assert not (tmp_path / "p/labels.csv").exists()
    toml = tmp_path / "p/dcloop.toml"
    toml.write_text(replace_setting(replace_setting(toml.read_text(), "model", "epochs", 2), "model", "batch_size", 16))

    emulator.reset_counts()
    result = runner.invoke(cli, ["sync", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Run ")
    # read, re-read before writing, one batchUpdate, the results row, the classes tab,
    # and the report's read of the results tab
    assert emulator.api_calls() == 6
    table = sheet_frame(emulator, key)
    assert (table["prediction"] != "").all() and (table["suspicion"] != "").all()
    results = sheet_frame(emulator, key, "results")
    assert len(results) == 1 and results["rows_train"][0] == "24"

    emulator.reset_counts()
    result = runner.invoke(cli, ["sync", str(tmp_path / "p")])
    assert result.stdout.startswith("Nothing changed")
    assert emulator.api_calls() == 1

    row = table["id"][3]
    column = list(table.columns).index("label")
    emulator.set_values(key, f"labels!{chr(65 + column)}5", [["7" if table["label"][3] == "1" else "1"]])
    result = runner.invoke(cli, ["sync", str(tmp_path / "p"), "--json"])
    assert '"trained": true' in result.stdout and '"labels_changed": 1' in result.stdout
    assert len(sheet_frame(emulator, key, "results")) == 2
    assert sheet_frame(emulator, key).set_index("id").loc[row, "label"] != table["label"][3]
