"""Training the fixed model within a sync: when to retrain, when to stop, the extra seeds.

The model itself (torch) lives in dcloop.model; this stage decides what it trains on and when.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import Config
from .dataset import Dataset, Images, SplitRows, encode, stack
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
    fit = config.suspicion
    crossfit = (f"|crossfit {fit.crossfit}x{fit.crossfit_repeats}@{fit.crossfit_epoch_share:g}"
                if fit.crossfit > 1 else "")
    digest = hashlib.sha256(f"{version}|{config.model.fingerprint()}|{config.project.classes}{seeds}{crossfit}".encode())
    for row_id in sorted(images.sha):
        digest.update(f"{row_id}:{images.sha[row_id]};".encode())
    return digest.hexdigest()[:16]


@dataclass
class Networks:
    """What a sync trained: the main network, the other seeds' scores and the cross-fitting networks."""

    main: object                 # model.Trained
    other_seeds: list[dict]      # val and test accuracy under seed+1, seed+2, ...
    crossfit: list               # model.Trained of each cross-fitting network ([] when off)
    held_out: list[np.ndarray]   # per cross-fitting network: the readable rows it never trained on


def train_networks(data: Dataset, parts: SplitRows, progress: Progress, should_stop: StopRule) -> Networks:
    """The main network, its extra seeds and the cross-fitting networks, trained at once where the
    machine allows (dcloop.networks); a stop asked for during training ends the cycle here."""
    from .networks import Job, train_all
    config, images, classes = data.config, data.images, data.classes
    encoded = [encode(p["label"], classes) for p in parts]
    x_train, x_val = stack(images, parts.train["id"]), stack(images, parts.val["id"])
    model = config.model
    seeds = [("main", model)] + [(f"seed {k + 1}/{model.seeds} (seed {model.seed + k})",
                                  model.model_copy(update={"seed": model.seed + k})) for k in range(1, model.seeds)]
    jobs = [Job(name, x_train, encoded[0], x_val, encoded[1], len(classes), settings) for name, settings in seeds]
    crossfit_jobs, held_out = crossfit_plan(config, *readable_arrays(data))
    trained = train_all(jobs + crossfit_jobs, progress, should_stop)
    main = trained[0]
    stop_if(should_stop, f"during training (after epoch {len(main.history)})" if main else "during training")
    other_seeds = []
    for job, seed_run in zip(jobs[1:], trained[1:len(jobs)]):
        other_seeds.append({split: split_scores(seed_run.model, images, rows, classes).get("accuracy")
                            for split, rows in (("val", parts.val), ("test", parts.test))})
        progress(f"{job.name}: val accuracy {fmt(other_seeds[-1]['val']) or '-'}, "
                 f"test accuracy {fmt(other_seeds[-1]['test']) or '-'}")
    return Networks(main, other_seeds, trained[len(jobs):], held_out)


def readable_arrays(data: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels, class codes (-1: none or set aside) and splits of the readable rows, in table order:
    the rows scoring judges (scoring.gather_evidence), so cross-fitting masks line up with them."""
    rows = data.readable()
    codes = data.checked.code[rows.index].where(rows["split"] != "exclude", -1)
    return stack(data.images, rows["id"]), codes.to_numpy(), rows["split"].to_numpy()


def crossfit_plan(config: Config, pixels: np.ndarray, labels: np.ndarray, splits: np.ndarray):
    """[suspicion] crossfit = K: for each of ``crossfit_shape``'s repeats a split of the labeled train rows
    into K folds, and K networks, each to train on the other folds, validated on the labeled val rows;
    and for each network, the rows it never trains on ([], [] when off).

    Every train row is held out by one network per repeat, val and test rows by all of them. Repeat r
    draws its folds and its networks' weights with seed + r, so repeat 0 is the single split of old.
    """
    from .networks import Job
    from .suspicion import crossfit_folds
    k, num_classes = config.suspicion.crossfit, len(config.project.classes)
    if k < 2:
        return [], []
    train = np.flatnonzero((splits == "train") & (labels >= 0))
    val = np.flatnonzero((splits == "val") & (labels >= 0))
    repeats, epochs = crossfit_shape(config, len(train))
    jobs, held_out = [], []
    for r in range(repeats):
        seed = config.model.seed + r
        settings = config.model.model_copy(update={"seed": seed, "epochs": epochs})
        fold = crossfit_folds(labels[train], k, seed)
        for m in range(k):
            fit = train[fold != m]
            jobs.append(Job(f"cross-fitting network {r * k + m + 1}/{k * repeats}", pixels[fit], labels[fit],
                            pixels[val], labels[val], num_classes, settings))
            held_out.append(~np.isin(np.arange(len(pixels)), fit))
    return jobs, held_out


# A cross-fitting network needs about this many optimizer steps to judge labels: on the Roman
# numerals (batch 8) the embeddings of epoch 5 (650 steps) already ranked as well as later ones, and
# 16 networks of 5 epochs ranked as well as 8 of 10 or 20 (docs/explanation/suspicion.md).
MIN_CROSSFIT_STEPS = 600


def crossfit_shape(config: Config, train_rows: int) -> tuple[int, int]:
    """(repeats, epochs) of the cross-fitting networks for ``train_rows`` labeled train rows.

    Each network trains crossfit_epoch_share of [model] epochs, but at least MIN_CROSSFIT_STEPS steps
    (never more than [model] epochs). Where that makes the networks longer than the share, fewer
    repeats train (at least one), so the set never costs more than crossfit_repeats networks at the
    share would: a short schedule (the quickstart's 15 epochs at batch 32) keeps one split of
    full-length networks instead of eight networks too short to learn.
    """
    fit, model = config.suspicion, config.model
    rows_each = math.ceil(train_rows * (fit.crossfit - 1) / fit.crossfit)
    steps_per_epoch = max(1, math.ceil(rows_each / model.batch_size))
    at_share = round(model.epochs * fit.crossfit_epoch_share)
    epochs = min(model.epochs, max(at_share, math.ceil(MIN_CROSSFIT_STEPS / steps_per_epoch), 1))
    affordable = int(fit.crossfit_repeats * model.epochs * fit.crossfit_epoch_share / epochs + 1e-9)
    return max(1, min(fit.crossfit_repeats, affordable)), epochs
