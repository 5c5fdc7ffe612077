"""The demo project: scikit-learn's bundled handwritten digits, with some labels flipped on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .config import Config
from .project import init_project

FLIP_FRACTION = 0.08
SEED = 7


def digit_rows(folder: Path, seed: int = SEED, flip_fraction: float = FLIP_FRACTION) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the 1,797 digit scans as PNGs; return the table rows and the list of flipped rows.

    60% train, 20% val, 20% test; a seeded ``flip_fraction`` of the train labels is changed to
    another digit, the kind of error a person would find and fix in the sheet.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    split = np.empty(len(order), dtype=object)
    cut1, cut2 = int(0.6 * len(order)), int(0.8 * len(order))
    split[order[:cut1]], split[order[cut1:cut2]], split[order[cut2:]] = "train", "val", "test"
    labels = digits.target.copy()
    train = np.flatnonzero(split == "train")
    flipped = rng.choice(train, int(flip_fraction * len(train)), replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    folder.mkdir(parents=True, exist_ok=True)
    urls = []
    for n, image in enumerate(digits.images):
        path = folder / f"digit-{n:04d}.png"
        pixels = (image * (255 / 16)).astype(np.uint8)
        Image.fromarray(255 - pixels).resize((32, 32), Image.NEAREST).save(path)
        urls.append(f"images/{path.name}")
    rows = pd.DataFrame({"url": urls, "label": labels.astype(str), "split": split})
    truth = pd.DataFrame({"url": [urls[i] for i in flipped], "true_label": digits.target[flipped].astype(str),
                          "flipped_to": labels[flipped].astype(str)})
    return rows, truth


def create_demo(directory: Path, epochs: int = 15, batch_size: int = 32) -> tuple[Config, pd.DataFrame]:
    """A ready-to-sync project in ``directory`` with a short training schedule."""
    directory = Path(directory)
    rows, truth = digit_rows(directory / "images")
    config = Config()
    config.model.epochs, config.model.batch_size = epochs, batch_size
    config, _, _ = init_project(directory, rows, [str(d) for d in range(10)], config)
    truth.to_csv(directory / "flipped_labels.csv", index=False)
    return config, truth
