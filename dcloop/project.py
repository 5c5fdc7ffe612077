"""Creating a project: rows from an ImageFolder tree or a CSV file, dcloop.toml, the state folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import table as tbl
from .backends import open_backend
from .backends.csv import read_csv
from .config import CONFIG_FILE, STATE_DIR, Config, to_toml
from .errors import ConfigError, SchemaError
from .fsutil import atomic_write_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "label_book": "test"}


def rows_from_folder(path: Path) -> pd.DataFrame:
    """url, label, split rows for ``PATH/<class>/*`` or ``PATH/<split>/<class>/*``."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise ConfigError(f"--from-folder {path}: not a folder.")
    subfolders = sorted(p for p in path.iterdir() if p.is_dir())
    if not subfolders:
        raise ConfigError(f"--from-folder {path}: no class folders inside (expected PATH/<class>/*.png).")
    if all(p.name.lower() in SPLIT_FOLDERS for p in subfolders):
        parts = [(SPLIT_FOLDERS[p.name.lower()], p) for p in subfolders]
    else:
        parts = [("train", path)]
    rows = []
    for split, folder in parts:
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            for image in sorted(class_dir.iterdir()):
                if image.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append({"url": str(image), "label": class_dir.name, "split": split})
    if not rows:
        raise ConfigError(f"--from-folder {path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found.")
    return pd.DataFrame(rows)


def rows_from_csv(path: Path) -> pd.DataFrame:
    """url, label[, split] rows from a CSV file; relative paths are taken relative to the file."""
    path = Path(path).resolve()
    frame = tbl.normalize(read_csv(path), str(path))
    local = ~frame["url"].str.contains("://") & (frame["url"].str.strip() != "")
    frame.loc[local, "url"] = [str((path.parent / u.strip()).resolve()) if not Path(u.strip()).is_absolute()
                               else u.strip() for u in frame.loc[local, "url"]]
    return frame


def discover_classes(rows: pd.DataFrame) -> list[str]:
    labels = rows["label"].map(tbl.canonical_label)
    return sorted(set(labels[labels != ""]))


def build_table(rows: pd.DataFrame, default_split: str) -> pd.DataFrame:
    """The full table with every column, ids assigned, splits filled."""
    frame = rows.copy()
    for column in tbl.COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.fillna("").astype(str)
    frame = tbl.with_assigned_ids(frame, default_split)
    return frame[tbl.COLUMNS + [c for c in frame.columns if c not in tbl.COLUMNS]]


def init_project(directory: Path, rows: pd.DataFrame, classes: list[str] | None = None,
                 config: Config | None = None, sources: list[Path] = ()) -> tuple[Config, pd.DataFrame, list[str]]:
    """Write dcloop.toml, the label and results tables and .dcloop/ in ``directory``.

    ``sources`` are the folders the rows came from: recorded as [images] local_roots, so a
    Google Sheet's local urls may read them. Returns the config, the table and what the
    backend found (a sheet may hold data already).
    """
    directory = Path(directory)
    if (directory / CONFIG_FILE).exists():
        raise ConfigError(f"{directory / CONFIG_FILE} already exists: {directory} is a dcloop project already.")
    config = config or Config()
    found = discover_classes(rows)
    config.project.classes = list(classes) if classes else found
    config.images.local_roots = list(dict.fromkeys(config.images.local_roots
                                                   + [str(Path(s).resolve()) for s in sources]))
    if not config.project.classes:
        raise SchemaError("no labels found in the input and no --classes given: dcloop needs the class names.")
    tbl.check_class_names(config.project.classes, "--classes" if classes else "the labels found in the input")
    table = build_table(rows, config.table.default_split)
    directory.mkdir(parents=True, exist_ok=True)
    findings = open_backend(config, directory).create(table) or []
    (directory / STATE_DIR).mkdir(exist_ok=True)
    atomic_write_text(directory / CONFIG_FILE, to_toml(config))
    return config, table, findings
