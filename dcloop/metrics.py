"""How a model scores on a set of rows: accuracy, macro-F1, per class; split_scores predicts with the model first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import table as tbl
from .dataset import Images, encode, stack


def scores(proba: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    from sklearn.metrics import f1_score
    if not len(labels):
        return {}
    predicted = proba.argmax(1)
    return {"accuracy": float((predicted == labels).mean()),
            "macro_f1": float(f1_score(labels, predicted, labels=range(num_classes),
                                       average="macro", zero_division=0))}


def split_scores(model, images: Images, rows: pd.DataFrame, classes: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on ``rows`` ({} for none)."""
    from . import model as fixed
    return scores(fixed.predict(model, stack(images, rows["id"]))[0], encode(rows["label"], classes), len(classes))


def per_class_accuracy(proba: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    predicted = proba.argmax(1)
    return {c: float((predicted[labels == k] == k).mean()) for k, c in enumerate(classes) if (labels == k).any()}


def class_rows(checked, classes, proba, position, val_rows, y_val) -> list[dict[str, str]]:
    val_accuracy = per_class_accuracy(proba[[position[i] for i in val_rows["id"]]], y_val, classes)
    rows = []
    for name in classes:
        mine = checked.label == name
        row = {"class": name, **{s: str(int((mine & (checked.split == s)).sum())) for s in tbl.SPLITS}}
        row["val_accuracy"] = fmt(val_accuracy.get(name))
        rows.append(row)
    return rows


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


