"""The project's table as rows the model can use: each row's decoded image, the rows of each split.

Fetching and decoding live in dcloop.images; this stage turns what they give into the arrays and
row sets that training, scoring and the peer commands read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import table as tbl
from .config import Config
from .images import DecodedCache, ImageStore, Seen
from .progress import Progress
from .runs import state_dir


@dataclass
class Images:
    """What fetching and decoding gave: pixels by content hash, each row's hash and blob."""

    sha: dict[str, str]            # row id -> content hash (readable rows only)
    blob: dict[str, Path]          # row id -> cached file
    pixels: dict[str, np.ndarray]  # content hash -> uint8 (3, H, W)
    seen: Seen = field(default_factory=Seen)  # what the fetch looked at (dcloop.unchanged)


@dataclass
class Dataset:
    """A pulled table, validated, with its images decoded: what every stage after fetching reads."""

    root: Path
    config: Config
    checked: tbl.Validated
    images: Images

    @property
    def classes(self) -> list[str]:
        return self.config.project.classes

    @property
    def state(self) -> Path:
        return state_dir(self.root)

    def readable(self) -> pd.DataFrame:
        """The rows whose image was fetched and decoded, in table order: the rows a run predicts."""
        return self.checked.table[self.checked.table["id"].isin(self.images.sha)]

    def split_rows(self) -> SplitRows:
        return SplitRows(*(rows_of(self.checked, self.images, split) for split in ("train", "val", "test")))


class SplitRows(NamedTuple):
    """The labeled, readable, unflagged rows of each split the model uses."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def load_images(root: Path, config: Config, checked: tbl.Validated, progress: Progress,
                refetch: bool = False) -> Images:
    """Fetch and decode every row's image; rows that fail are flagged, the sync goes on.

    ``refetch`` asks every http image's server whether the image changed at its url.
    """
    cache = state_dir(root) / "cache"
    table = checked.table
    urls = dict(zip(table["id"].tolist(), table["url"].tolist()))
    store = ImageStore.of_project(root, config, progress, refetch)
    fetched = store.fetch([u for i, u in urls.items() if u])
    sha, blob = {}, {}
    for row_id, url in urls.items():
        result = fetched.get(url)
        if result is None:
            continue
        if not result.ok:
            checked.flag(row_id, f"unreadable: {result.error}")
        else:
            sha[row_id], blob[row_id] = result.sha, result.path
    pixels, errors = DecodedCache(cache, config.model.image_size).get(
        {sha[i]: blob[i] for i in sha}, progress)
    for row_id in [i for i in sha if sha[i] in errors]:
        checked.flag(row_id, f"unreadable: {errors[sha.pop(row_id)]}")
    return Images(sha, blob, pixels, store.seen)


def counted_rows(checked: tbl.Validated, images: Images) -> pd.DataFrame:
    """The rows the cap counts: labeled, readable, unflagged train and val rows."""
    ready = checked.usable() & checked.table["id"].isin(images.sha) & (checked.label != "")
    return checked.table[ready & checked.split.isin(["train", "val"])]


def rows_of(checked: tbl.Validated, images: Images, split: str) -> pd.DataFrame:
    mask = checked.trainable(split) & checked.table["id"].isin(images.sha)
    return checked.table[mask]


def stack(images: Images, ids) -> np.ndarray:
    size = next(iter(images.pixels.values())).shape if images.pixels else (3, 1, 1)
    return np.stack([images.pixels[images.sha[i]] for i in ids]) if len(ids) else np.zeros((0, *size), np.uint8)


def encode(labels: pd.Series, classes: list[str]) -> np.ndarray:
    return labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)


