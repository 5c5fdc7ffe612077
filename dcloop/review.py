"""The reviewer's verdict: the ``reviewed`` column, what a review vouches for, how the last ranking fared.

A review vouches for the (label, image content) a row had when dcloop first saw it marked; once
either changes the review is stale and the row is judged afresh. Pure functions; scoring.judge_reviews
keeps the recorded reviews in .dcloop/reviews.json.
"""

from __future__ import annotations

import pandas as pd

# CSV cells hold ok or nothing; a Google Sheets checkbox reads as TRUE / FALSE.
MARKS = {"ok": True, "true": True, "": False, "false": False}
RESULT_FIELDS = ["prev_flagged", "prev_relabeled", "prev_excluded", "prev_confirmed", "prev_precision"]


def reviewed_marks(table: pd.DataFrame) -> tuple[dict[str, bool], dict[str, str]]:
    """({id: marked reviewed}, {id: bad cell}) from the optional ``reviewed`` column."""
    if "reviewed" not in table.columns:
        return {}, {}
    marks, bad = {}, {}
    for row_id, cell in zip(table["id"], table["reviewed"].str.strip()):
        if cell.lower() in MARKS:
            marks[row_id] = MARKS[cell.lower()]
        else:
            bad[row_id] = cell
    return marks, bad


def update_reviews(recorded: dict[str, list[str]], marks: dict[str, bool],
                   current: dict[str, list[str]]) -> tuple[dict[str, list[str]], set[str], set[str]]:
    """(reviews to record, ids with a standing review, ids whose review is stale).

    ``recorded`` and ``current`` map id -> [label, image hash]. A newly marked row records what it
    has now; an unmarked row forgets its review, so clearing and re-marking confirms it again.
    """
    kept, standing, stale = {}, set(), set()
    for row_id, marked in marks.items():
        if not marked or row_id not in current:
            continue
        before = recorded.get(row_id)
        kept[row_id] = before or current[row_id]
        if before is None or list(before) == list(current[row_id]):
            standing.add(row_id)
        else:
            stale.add(row_id)
    return kept, standing, stale


def realised_precision(flagged: list[str], before: pd.DataFrame, now: pd.DataFrame,
                       confirmed: set[str]) -> dict[str, str]:
    """What people did with the rows the last ranking flagged: relabeled, excluded, or confirmed.

    ``before`` and ``now`` have columns id, label, split. prev_precision is the share of the flagged
    rows a person acted on (relabeled, excluded or deleted) among those they looked at
    (acted on or marked reviewed); blank when nobody looked at any yet.
    """
    if not flagged:
        return {name: "" for name in RESULT_FIELDS}
    old = before.set_index("id").reindex(flagged)
    new = now.set_index("id").reindex(flagged)
    gone = new["label"].isna()
    relabeled = ~gone & (new["label"].str.strip() != old["label"].fillna("").str.strip())
    excluded = gone | (~relabeled & (new["split"].str.strip().str.lower() == "exclude")
                       & (old["split"].fillna("").str.strip().str.lower() != "exclude"))
    acted = int(relabeled.sum() + excluded.sum())
    looked = acted + len(set(flagged) & confirmed - set(new.index[relabeled | excluded]))
    return {"prev_flagged": str(len(flagged)), "prev_relabeled": str(int(relabeled.sum())),
            "prev_excluded": str(int(excluded.sum())), "prev_confirmed": str(looked - acted),
            "prev_precision": f"{acted / looked:.4f}" if looked else ""}
