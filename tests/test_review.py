"""The reviewer's verdict through real syncs: a confirmed row is not flagged again, and the next
results row says what people did with the previous flags."""

import pytest

from dcloop.backends.csv import read_csv
from dcloop.sync import sync


def labels(root):
    return read_csv(root / "labels.csv")


@pytest.mark.training
def test_a_reviewed_row_is_not_flagged_again_and_the_next_result_counts_it(planted_error, config_of):
    root, wrong_url = planted_error
    sync(root, config_of(root))
    table = labels(root)
    planted = table.index[table["url"] == wrong_url][0]
    assert table.loc[planted, "flags"].startswith("label? model says 0")
    assert planted == 0  # written most suspicious first
    flagged = set(table.loc[table["flags"] != "", "id"])
    planted_id = table.loc[planted, "id"]

    table["reviewed"] = ""
    table.loc[planted, "reviewed"] = "ok"
    table.to_csv(root / "labels.csv", index=False)
    report = sync(root, config_of(root))
    after = labels(root)
    assert not report.trained  # a review is not a label change
    assert after["id"].iloc[-1] == planted_id and after["flags"].iloc[-1] == ""
    assert after["suspicion"].iloc[-1] == table.loc[planted, "suspicion"]
    assert after["reviewed"].iloc[-1] == "ok"

    other = after.index[after["id"].isin(flagged - {planted_id})]
    after.loc[other[:1], "split"] = "exclude"
    after.loc[after["id"] == planted_id, "label"] = "0"  # changed after the review: the review is stale
    after.to_csv(root / "labels.csv", index=False)
    assert sync(root, config_of(root)).trained
    result = read_csv(root / "results.csv").iloc[-1]
    assert result["prev_flagged"] == str(len(flagged))
    assert (result["prev_relabeled"], result["prev_excluded"]) == ("1", str(len(other[:1])))
    final = labels(root).set_index("id")
    assert "review stale" in final.loc[planted_id, "flags"]
