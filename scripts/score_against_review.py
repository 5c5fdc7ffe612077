"""Score a dcloop ranking against the by-eye review of a random sample of the Roman-numeral images.

The review (``scripts/roman_review_sample.csv``, see ``scripts/README_review.md``) says, for a seeded
random sample of train and val rows, whether each image is a usable numeral with the right label
(``keep``), a usable numeral with a wrong label (``fix``) or not a usable numeral (``remove``). A row
is a *problem* when it is ``fix`` or ``remove``. This script joins a labels table to the review by the
image's path relative to the data folder and reports, on the sampled rows only:

* the sample size and the share of problem rows, with a 95% Wilson interval;
* per score (default ``suspicion``; ``--score "1 - label_prob"`` and other columns can be added):
  AUROC of the score against problem/not problem (with a seeded, split-stratified bootstrap 95%
  interval), the precision among sampled rows that fall in the table's top K by that score for
  K = 100 and K = 15% of the table (few sampled rows fall there: read the intervals), and the recall of
  the top 15% (the share of sampled problem rows that fall in it);
* the realised precision of each flag kind in the ``flags`` column (the text before the first ':' or
  ' ' of each '; '-separated flag: ``label?``, ``outlier``, ``dup-of``, ``not-a-class?`` ...), and the
  problem rate of unflagged rows.

The table is a ``labels.csv`` written by ``dcloop sync`` on a project made with
``dcloop init --from-folder <data>`` (its ``url`` holds absolute paths ending in
``<split>/<class>/<file>``), or any CSV with a ``url`` column and the score column(s). A ``url`` under
``--data`` is made relative to it; any other ``url`` is matched on its last three parts.

Where the table has a ``label`` column, a sampled row counts as a problem against the table's label:
``remove`` is always a problem; otherwise the row is a problem when the table's label is not the
class the review says is right (``label`` for keep, ``correct_label`` for fix). On a fresh project the
two readings agree; they differ only for rows whose label was changed in the table since the review
(the script prints how many).

Ranks: rows are sorted by the score, highest first, ties in table order; a row with no score (empty
cell) ranks last and is never counted in a top K. "Top K" is the first K rows of that order over the
whole table (label_book rows, split "test", included), not over the sample.

This sample is for reporting only: never tune the ranking (weights, thresholds, features) on it, or
its figures stop being an honest estimate.

    PYTHONPATH=. python scripts/score_against_review.py --table project/labels.csv \\
        --data /work/shared/data/roman-numerals --score suspicion --score "1 - label_prob" [--json]

Only numpy, pandas and scikit-learn are used. Results go to stdout, progress to stderr.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

DEFAULT_REVIEW = Path(__file__).with_name("roman_review_sample.csv")
PROBLEM_DECISIONS = {"fix", "remove"}
Z95 = 1.959963984540054


class InputError(ValueError):
    """The table, the review or an option cannot be used; the message says which and why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float, float] | tuple[None, None, None]:
    """(estimate, low, high) of a proportion k/n with the Wilson score interval; Nones when n == 0."""
    if n == 0:
        return None, None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int) -> dict:
    p, lo, hi = wilson(k, n)
    return {"k": int(k), "n": int(n), "share": p, "ci95": [lo, hi] if n else None}


def read_review(path: Path) -> pd.DataFrame:
    review = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"path", "split", "label", "decision", "correct_label"} - set(review.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}")
    review["decision"] = review["decision"].str.strip().str.lower()
    bad = sorted(set(review["decision"]) - {"keep", "fix", "remove"})
    if bad:
        raise InputError(f"{path}: unknown decision(s) {bad}")
    review["path"] = review["path"].map(lambda p: PurePosixPath(p.strip()).as_posix())
    if review["path"].duplicated().any():
        raise InputError(f"{path}: a path appears twice")
    return review


def relative_path(url: str, data: Path | None) -> str:
    """``<split>/<class>/<file>`` of a url: relative to ``data`` when under it, else its last 3 parts."""
    url = url.strip()
    if url.startswith("'"):  # a cell neutralized against formula injection
        url = url[1:]
    url = url.replace("\\", "/")
    if data is not None:
        try:
            return Path(url).resolve().relative_to(data).as_posix()
        except (ValueError, OSError):
            pass
    return "/".join(PurePosixPath(url).parts[-3:])


def score_values(table: pd.DataFrame, spec: str) -> pd.Series:
    """A column, or ``1 - column`` / ``-column``, as floats (NaN where empty or not a number)."""
    match = re.fullmatch(r"\s*(1\s*-|-)?\s*([A-Za-z_][\w.]*)\s*", spec)
    if not match:
        raise InputError(f"--score {spec!r}: give a column name, '1 - column' or '-column'")
    prefix, column = match.groups()
    if column not in table.columns:
        raise InputError(f"--score {spec!r}: the table has no column {column!r} "
                         f"(columns: {', '.join(table.columns)})")
    values = pd.to_numeric(table[column].astype(str).str.strip().str.lstrip("'"), errors="coerce")
    if prefix is None:
        return values
    return (1 - values) if prefix.replace(" ", "") == "1-" else -values


def ranks(values: pd.Series) -> np.ndarray:
    """0-based rank of each row, highest score first, ties in table order, NaN last."""
    key = values.fillna(-np.inf).to_numpy()
    order = np.argsort(-key, kind="stable")
    out = np.empty(len(order), int)
    out[order] = np.arange(len(order))
    return out


def auc_by_ranks(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic with average ranks for ties (equals sklearn's)."""
    r = pd.Series(s).rank(method="average").to_numpy()
    n1 = int(y.sum())
    n0 = len(y) - n1
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_auc(y: np.ndarray, s: np.ndarray, strata: np.ndarray, n_boot: int, seed: int):
    """Percentile 95% interval of the AUROC over resamples drawn with replacement within each split."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(strata == g) for g in np.unique(strata)]
    stats = []
    for _ in range(n_boot):
        pick = np.concatenate([rng.choice(g, len(g), replace=True) for g in groups])
        if 0 < y[pick].sum() < len(pick):
            stats.append(auc_by_ranks(y[pick], s[pick]))
    if len(stats) < n_boot / 2:
        return None
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def flag_kinds(cell: str) -> set[str]:
    kinds = set()
    for flag in str(cell).split("; "):
        flag = flag.strip().lstrip("'")
        if flag:
            kinds.add(re.split(r"[: ]", flag, maxsplit=1)[0])
    return kinds


def evaluate(table: pd.DataFrame, review: pd.DataFrame, data: Path | None, scores: list[str],
             n_boot: int = 2000, seed: int = 17, sure_only: bool = False) -> dict:
    if "url" not in table.columns:
        raise InputError("the table has no 'url' column")
    table = table.reset_index(drop=True)
    rel = table["url"].map(lambda u: relative_path(u, data))
    if rel.duplicated().any():
        log(f"note: {int(rel.duplicated().sum())} table rows share a path with another row; the first one is used")
    position = pd.Series(np.arange(len(table)), index=rel)
    position = position[~position.index.duplicated()]
    if sure_only and "unsure" in review.columns:
        review = review[review["unsure"].str.strip() == ""]
    found = review["path"].isin(position.index)
    if not found.all():
        log(f"note: {int((~found).sum())} reviewed row(s) are not in the table and are left out, "
            f"e.g. {review.loc[~found, 'path'].iloc[0]}")
    sample = review[found].copy()
    sample["row"] = position.loc[sample["path"]].to_numpy()
    if "label" in table.columns:
        now = table["label"].astype(str).str.strip().to_numpy()[sample["row"]]
        right = np.where(sample["decision"] == "fix", sample["correct_label"].str.strip(), sample["label"])
        sample["problem"] = (sample["decision"] == "remove") | (now != right)
        changed = int((now != sample["label"].to_numpy()).sum())
    else:
        sample["problem"] = sample["decision"].isin(PROBLEM_DECISIONS)
        changed = None
    y = sample["problem"].to_numpy(bool)
    out = {
        "table_rows": int(len(table)),
        "review_rows": int(len(review)),
        "sample": int(len(sample)),
        "sure_only": bool(sure_only),
        "labels_changed_since_review": changed,
        "per_split": {},
        "problems": proportion(int(y.sum()), len(sample)),
        "scores": {},
        "flags": None,
    }
    for split, part in sample.groupby("split"):
        out["per_split"][split] = {
            "rows": int(len(part)),
            **{d: int((part["decision"] == d).sum()) for d in ("keep", "fix", "remove")},
            "problems": proportion(int(part["problem"].sum()), len(part)),
        }
    k15 = max(1, int(round(0.15 * len(table))))
    for spec in scores:
        values = score_values(table, spec)
        rank = ranks(values)
        s = values.to_numpy()[sample["row"]]
        r = rank[sample["row"]]
        scored = ~np.isnan(s)
        entry = {"scored_table_rows": int(values.notna().sum()), "scored_sample_rows": int(scored.sum()),
                 "auroc": None, "auroc_ci95": None, "top": {}}
        if scored.any() and 0 < y[scored].sum() < scored.sum():
            entry["auroc"] = float(roc_auc_score(y[scored], s[scored]))
            entry["auroc_ci95"] = bootstrap_auc(y[scored], s[scored], sample["split"].to_numpy()[scored],
                                                n_boot, seed)
        for name, k in (("top100", min(100, len(table))), ("top15pct", k15)):
            inside = (r < k) & scored  # a row with no score is never in the top K
            entry["top"][name] = {
                "K": int(k),
                "sampled_rows_inside": int(inside.sum()),
                "precision": proportion(int(y[inside].sum()), int(inside.sum())),
                "fix_inside": int((inside & (sample["decision"] == "fix").to_numpy()).sum()),
                "remove_inside": int((inside & (sample["decision"] == "remove").to_numpy()).sum()),
            }
        inside = (r < k15) & scored
        entry["recall_top15pct"] = proportion(int((inside & y).sum()), int(y.sum()))
        out["scores"][spec] = entry
        log(f"scored {spec}")
    if "flags" in table.columns:
        kinds = table["flags"].astype(str).map(flag_kinds)
        sampled_kinds = kinds.to_numpy()[sample["row"]]
        flags = {}
        for kind in sorted(set().union(*kinds)) if len(kinds) else []:
            has = np.array([kind in ks for ks in sampled_kinds], bool)
            flags[kind] = {"table_rows": int(kinds.map(lambda ks: kind in ks).sum()),
                           "precision": proportion(int(y[has].sum()), int(has.sum()))}
        none = np.array([not ks for ks in sampled_kinds], bool)
        flags["(no flag)"] = {"table_rows": int(kinds.map(lambda ks: not ks).sum()),
                              "precision": proportion(int(y[none].sum()), int(none.sum()))}
        out["flags"] = flags
    return out


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def show_prop(p: dict) -> str:
    if not p["n"]:
        return "0/0 (no sampled rows)"
    lo, hi = p["ci95"]
    return f"{p['k']}/{p['n']} = {pct(p['share'])} (95% CI {pct(lo)} to {pct(hi)})"


def report_text(result: dict) -> str:
    lines = [f"table rows: {result['table_rows']}; reviewed rows: {result['review_rows']}; "
             f"sampled rows found in the table: {result['sample']}"
             + (" (sure rows only)" if result["sure_only"] else "")]
    if result["labels_changed_since_review"]:
        lines.append(f"rows whose table label differs from the label reviewed: "
                     f"{result['labels_changed_since_review']} (judged against the table's label)")
    lines.append(f"problem rows (fix + remove): {show_prop(result['problems'])}")
    for split, s in result["per_split"].items():
        lines.append(f"  {split}: {s['rows']} rows, keep {s['keep']}, fix {s['fix']}, remove {s['remove']}; "
                     f"problems {show_prop(s['problems'])}")
    for spec, e in result["scores"].items():
        lines.append(f"\nscore {spec!r} (a value in {e['scored_table_rows']} table rows, "
                     f"{e['scored_sample_rows']} of them sampled)")
        if e["auroc"] is None:
            lines.append("  AUROC: n/a (needs problem and clean rows with a score)")
        else:
            ci = e["auroc_ci95"]
            lines.append(f"  AUROC on the sample: {e['auroc']:.3f}"
                         + (f" (bootstrap 95% CI {ci[0]:.3f} to {ci[1]:.3f})" if ci else ""))
        for name, t in e["top"].items():
            lines.append(f"  precision in the table's top {t['K']} ({name}): {show_prop(t['precision'])}; "
                         f"fix {t['fix_inside']}, remove {t['remove_inside']}")
        lines.append(f"  recall of the top {e['top']['top15pct']['K']} (15%): {show_prop(e['recall_top15pct'])}")
    if result["scores"]:
        lines.append("(top-K figures rest on the few sampled rows that fall in the top K: read the intervals)")
    if result["flags"] is not None:
        lines.append("\nflag kinds: share of problem rows among sampled rows with the flag")
        for kind, f in result["flags"].items():
            lines.append(f"  {kind:<14} table rows {f['table_rows']:>5}; sampled: {show_prop(f['precision'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, required=True, help="labels.csv or any CSV with url and score columns")
    ap.add_argument("--data", type=Path, help="the data folder the review's paths are relative to")
    ap.add_argument("--review", type=Path, default=DEFAULT_REVIEW, help=f"default {DEFAULT_REVIEW.name}")
    ap.add_argument("--score", action="append", help="score column, '1 - column' or '-column'; repeatable "
                    "(default: suspicion)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the AUROC interval")
    ap.add_argument("--seed", type=int, default=17, help="bootstrap seed")
    ap.add_argument("--sure-only", action="store_true", help="leave out the rows the reviewer marked unsure")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    log(f"reading {args.table} and {args.review}")
    try:
        table = pd.read_csv(args.table, dtype=str, keep_default_na=False)
        review = read_review(args.review)
        data = args.data.resolve() if args.data else None
        result = evaluate(table, review, data, args.score or ["suspicion"], args.bootstrap, args.seed,
                          args.sure_only)
    except (InputError, OSError, pd.errors.ParserError) as error:
        log(f"error: {error}")
        return 2
    print(json.dumps(result, indent=2) if args.json else report_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
