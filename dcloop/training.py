"""Training the fixed model within a sync: when to retrain, when to stop, the extra seeds.

The model itself (torch) lives in dcloop.model; this stage decides what it trains on and when.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Callable

from .config import Config
from .dataset import Images, SplitRows, stack
from .errors import Stopped, TimedOut
from .metrics import fmt, split_scores
from .progress import Progress


@dataclass
class StopRule:
    """When a cycle must end at its next safe point: a stop was asked for, or [sync] max_minutes passed."""

    asked: Callable[[], bool]
    max_minutes: float
    started: float
    clock: Callable[[], float] = time.monotonic

    def overrun(self) -> bool:
        return self.clock() - self.started > self.max_minutes * 60

    def __call__(self) -> bool:
        return self.asked() or self.overrun()


def stop_if(should_stop: StopRule, where: str) -> None:
    """End the cycle at a safe point: nothing of it has been written back yet."""
    nothing = "no predictions or results were written; the next sync trains again."
    if should_stop.asked():
        raise Stopped(f"stopped {where}; {nothing}")
    if should_stop.overrun():
        raise TimedOut(f"stopped {where}: the sync ran longer than [sync] max_minutes = "
                       f"{should_stop.max_minutes:g}; {nothing} Raise max_minutes in dcloop.toml if "
                       f"this project needs longer.")


def training_key(version: str, config: Config, images: Images) -> str:
    """Same labels, splits, image contents and model recipe -> same key -> no need to retrain."""
    seeds = f"|seeds={config.model.seeds}" if config.model.seeds > 1 else ""  # one seed keeps the old keys
    crossfit = f"|crossfit {config.suspicion.crossfit}" if config.suspicion.crossfit > 1 else ""
    digest = hashlib.sha256(f"{version}|{config.model.fingerprint()}|{config.project.classes}{seeds}{crossfit}".encode())
    for row_id in sorted(images.sha):
        digest.update(f"{row_id}:{images.sha[row_id]};".encode())
    return digest.hexdigest()[:16]


def train_other_seeds(config: Config, images: Images, parts: SplitRows, encoded, progress: Progress,
                      should_stop: Callable[[], bool]) -> list[dict]:
    """Val and test accuracy of the fixed model under seed+1, seed+2, ...: the main run is seed 1 of N.

    Only scores are kept: predictions, suspicion and the checkpoint come from the main run, so the
    table reads the same with one seed or five.
    """
    from . import model as fixed
    (train_rows, val_rows, test_rows), (y_train, y_val, _) = parts, encoded
    classes, runs = config.project.classes, []
    x_train, x_val = stack(images, train_rows["id"]), stack(images, val_rows["id"])
    for k in range(1, config.model.seeds):
        settings = config.model.model_copy(update={"seed": config.model.seed + k})
        progress(f"seed {k + 1}/{config.model.seeds} (seed {settings.seed}): training")
        trained = fixed.train(x_train, y_train, x_val, y_val, len(classes), settings, progress, should_stop)
        stop_if(should_stop, f"during training under seed {settings.seed}")
        runs.append({split: split_scores(trained.model, images, rows, classes).get("accuracy")
                     for split, rows in (("val", val_rows), ("test", test_rows))})
        progress(f"seed {settings.seed}: val accuracy {fmt(runs[-1]['val']) or '-'}, "
                 f"test accuracy {fmt(runs[-1]['test']) or '-'}")
    return runs


