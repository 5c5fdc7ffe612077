"""The split moves on the Roman numerals, end to end: check, rebalance, retrain, re-evaluate.

    python scripts/walkthrough_splits.py ../shared/data/roman-numerals [--epochs 10] [--seeds 1 2]

A project is made in a temporary folder from train/ and val/, with label_book/ as test (the
competition's val was "not representative"). Per seed: a sync on the original split; the split
check; a rebalance to the same val share, stratified by class and embedding cluster; a sync on
it; and a re-evaluation of the first model on the new split. Printed: val and label_book
accuracy before and after. The images are read by path; nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from dcloop import splits
from dcloop.config import load_config
from dcloop.project import init_project, rows_from_folder
from dcloop.reeval import reeval
from dcloop.sync import sync


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr)


def project(data: Path, folder: Path, epochs: int, seed: int, threads: int):
    init_project(folder, rows_from_folder(data))
    settings = {"model": {"epochs": epochs, "seed": seed, "threads": threads}}
    return load_config(folder, settings, environ={})


def one_seed(data: Path, work: Path, epochs: int, seed: int, threads: int) -> dict:
    root = work / f"seed{seed}"
    config = project(data, root, epochs, seed, threads)
    before = sync(root, config, progress=say).result
    check = splits.check_splits(root, config, seed=seed, progress=say)
    counts = check["per_class"]
    share = sum(c["val"] for c in counts.values()) / sum(c["train"] + c["val"] for c in counts.values())
    proposal = splits.plan(root, config, val=round(share, 3), seed=seed)
    splits.apply(root, config, proposal.moves)
    after = sync(root, config, progress=say).result
    [old_on_new] = [r for r in reeval(root, config, runs=before["run_id"]) if r["reeval_of"] == before["run_id"]]
    return {"seed": seed, "val_share": round(share, 3), "moved": len(proposal.moves),
            "leakage": len(check["leakage"]), "thin": check["thin"],
            "before": {k: before[k] for k in ("val_accuracy", "test_accuracy")},
            "after": {k: after[k] for k in ("val_accuracy", "test_accuracy")},
            "old_model_on_new_val": old_on_new["val_accuracy"], "old_model_seen": old_on_new["reeval_seen"],
            "check_text": splits.describe_check(check)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=0, help="[model] threads (1 on a busy machine)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = [one_seed(args.data.resolve(), Path(tmp), args.epochs, seed, args.threads) for seed in args.seeds]
    print(found[0]["check_text"])
    print(f"\n{'seed':>4}  {'moved':>5}  {'val before':>10}  {'book before':>11}  {'val after':>9}  "
          f"{'book after':>10}  {'old model on new val':>20}")
    for f in found:
        print(f"{f['seed']:>4}  {f['moved']:>5}  {f['before']['val_accuracy']:>10}  {f['before']['test_accuracy']:>11}  "
              f"{f['after']['val_accuracy']:>9}  {f['after']['test_accuracy']:>10}  "
              f"{f['old_model_on_new_val']:>12} ({f['old_model_seen']} seen)")
    for key in ("before", "after"):
        for metric in ("val_accuracy", "test_accuracy"):
            values = np.array([float(f[key][metric]) for f in found])
            print(f"{key:<6} {metric:<14} mean {values.mean():.4f}  spread (sd) {values.std():.4f}")
    if args.json_out:
        args.json_out.write_text(json.dumps([{k: v for k, v in f.items() if k != "check_text"} for f in found],
                                            indent=2))


if __name__ == "__main__":
    main()
