"""The data-centric moves on the Roman numerals, end to end: check, rebalance, re-evaluate, augment.

    python scripts/walkthrough_roman.py ../shared/data/roman-numerals [--epochs 10] [--seeds 3]
        [--threads 1] [--budget 600] [--keep DIR] [--json-out walk.json]

A project is made from train/ and val/, with label_book/ as test (the competition's val "was not
representative"; label_book is the organisers' own small, clean set). Every sync trains the fixed
model under --seeds seeds and records mean and spread. The stages:

1. sync on the split as given;
2. ``dcloop split --check``: leakage and thin classes or clusters;
3. ``dcloop split --rebalance --apply`` at the same val share (so train keeps its size), then sync;
4. ``dcloop reeval``: the first run's model scored on the rebalanced split (one yardstick);
5. ``dcloop augment --thin --budget N``: variants of the thin classes' train rows, then sync.

Printed: val and label_book accuracy, mean and sample standard deviation over the seeds, per stage.
--epochs is below the recipe's 100 so the whole walk fits in about half an hour on 2 cores; every
stage uses the same epochs, so the stages compare. The images are read by path; nothing is copied
into the repository (augmented variants are written into the temporary project folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from dcloop import splits
from dcloop.augment import augment
from dcloop.config import load_config
from dcloop.project import init_project, rows_from_folder
from dcloop.reeval import reeval
from dcloop.render import describe_check
from dcloop.sync import sync


def say(message: str) -> None:
    print(f"walkthrough: {message}", file=sys.stderr, flush=True)


def scores(result: dict) -> dict:
    keys = ("run_id", "rows_train", "rows_val", "val_accuracy", "test_accuracy",
            "seeds", "val_mean", "val_std", "test_mean", "test_std")
    return {k: result.get(k, "") for k in keys}


def walk(data: Path, root: Path, epochs: int, seeds: int, threads: int, budget: int) -> dict:
    init_project(root, rows_from_folder(data))
    config = load_config(root, {"model": {"epochs": epochs, "seeds": seeds, "threads": threads}}, environ={})
    found: dict = {"epochs": epochs, "seeds": seeds, "threads": threads}

    say("1/5 sync on the split as given")
    given = sync(root, config, progress=say).result
    found["given"] = scores(given)

    say("2/5 split --check")
    check = splits.check_splits(root, config, progress=say)
    found["check"] = {"leakage": len(check["leakage"]), "thin": check["thin"]}
    found["check_text"] = describe_check(check)

    counts = check["per_class"]
    share = round(sum(c["val"] for c in counts.values())
                  / sum(c["train"] + c["val"] for c in counts.values()), 3)
    say(f"3/5 split --rebalance --val {share} --apply, then sync")
    proposal = splits.plan(root, config, val=share, progress=say)
    splits.apply(root, config, proposal.moves)
    found["rebalance"] = {"val_share": share, "moved": len(proposal.moves)}
    found["rebalanced"] = scores(sync(root, config, progress=say).result)

    say("4/5 reeval of the first run on the rebalanced split")
    [old] = [r for r in reeval(root, config, runs=given["run_id"], progress=say)]
    found["reeval"] = {k: old[k] for k in ("reeval_of", "val_accuracy", "test_accuracy", "reeval_seen")}

    say(f"5/5 augment --thin --budget {budget}, then sync")
    made = augment(root, config, budget, thin=True, seed=1, progress=say)
    for message in made.messages:
        say(message)
    found["augment"] = made.to_json()
    found["augmented"] = scores(sync(root, config, progress=say).result)
    found["check_after"] = {"leakage": len(splits.check_splits(root, config, progress=say)["leakage"])}
    return found


def spread(s: dict, split: str) -> str:
    if s.get(f"{split}_mean") and s.get(f"{split}_std"):
        return f"{float(s[f'{split}_mean']):.4f} ± {float(s[f'{split}_std']):.4f}"
    return s.get(f"{split}_accuracy") or "-"


def report(found: dict) -> str:
    lines = [found["check_text"], "",
             f"{found['epochs']} epochs, {found['seeds']} seed(s) per sync, {found['threads']} thread(s); "
             f"mean ± sample sd over the seeds", "",
             f"{'stage':<36}{'train':>6}{'val':>5}  {'val accuracy':<18}{'label_book accuracy':<18}"]
    for name, key in (("split as given", "given"), ("rebalanced (same val share)", "rebalanced"),
                      ("rebalanced + augmented thin classes", "augmented")):
        s = found[key]
        lines.append(f"{name:<36}{s['rows_train']:>6}{s['rows_val']:>5}  {spread(s, 'val'):<18}{spread(s, 'test')}")
    r = found["reeval"]
    lines += ["", f"rebalance: {found['rebalance']['moved']} rows moved at val share {found['rebalance']['val_share']}; "
              f"run {r['reeval_of']}'s model on the new split: val {r['val_accuracy']}, label_book "
              f"{r['test_accuracy']} ({r['reeval_seen']} of the scored rows were in its training set)",
              f"augment: {len(found['augment']['rows'])} rows ({found['augment']['per_class']}); "
              f"duplicates across splits after it: {found['check_after']['leakage']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with train/, val/, label_book/")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="[model] threads (default 1: on a busy 2-core machine more threads wait on each other)")
    parser.add_argument("--budget", type=int, default=600, help="augment --thin budget (cut to what evens the classes)")
    parser.add_argument("--keep", type=Path, help="make the project here and keep it (default: a temporary folder)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcloop-walk-") as tmp:
        root = args.keep or Path(tmp) / "roman"
        found = walk(args.data.resolve(), root, args.epochs, args.seeds, args.threads, args.budget)
    print(report(found))
    if args.json_out:
        args.json_out.write_text(json.dumps({k: v for k, v in found.items() if k != "check_text"}, indent=2) + "\n")


if __name__ == "__main__":
    main()
