"""Agreement between two labelings of the same rows, the ``expert`` column, and what edits did (pure).

Labelings are dicts {row id: class name}; only the ids both have are compared.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pandas as pd

from . import table as tbl

EXPERT_FIELDS = [f"expert_{other}_{what}" for other in ("label", "model")
                 for what in ("n", "agree", "accuracy", "kappa")]


@dataclass(frozen=True)
class Agreement:
    n: int
    agree: int
    kappa: float | None

    @property
    def accuracy(self) -> float | None:
        return self.agree / self.n if self.n else None

    def fields(self, prefix: str) -> dict[str, str]:
        """Result-row cells, all blank when no row was compared."""
        return {f"{prefix}_n": str(self.n) if self.n else "", f"{prefix}_agree": str(self.agree) if self.n else "",
                f"{prefix}_accuracy": fmt(self.accuracy), f"{prefix}_kappa": fmt(self.kappa)}


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """(p_o - p_e) / (1 - p_e): agreement beyond what the two marginals give by chance.

    None when there are no rows, or when chance agreement is certain (both sides use one same class).
    """
    n = len(a)
    agree = sum(x == y for x, y in zip(a, b))
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count_a[c] * count_b[c] for c in count_a)  # p_e * n^2
    if chance == n * n:  # also true for n == 0
        return None
    # p_o = agree/n and p_e = chance/n^2, multiplied through by n^2: exact in integers.
    return (n * agree - chance) / (n * n - chance)


def agreement(first: dict[str, str], second: dict[str, str]) -> Agreement:
    """How often two labelings agree on the ids both have, and Cohen's kappa."""
    ids = [i for i in first if i in second]
    a, b = [first[i] for i in ids], [second[i] for i in ids]
    return Agreement(len(ids), sum(x == y for x, y in zip(a, b)), cohen_kappa(a, b))


def expert_cells(table: pd.DataFrame, classes: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({id: expert class}, {id: bad cell}) from the optional ``expert`` column; blank cells are skipped."""
    if "expert" not in table.columns:
        return {}, {}
    known, expert, bad = set(classes), {}, {}
    for row_id, cell in zip(table["id"], table["expert"].fillna("").astype(str).str.strip()):
        if cell in known:
            expert[row_id] = cell
        elif cell:
            bad[row_id] = cell
    return expert, bad


def expert_notes(bad: dict[str, str]) -> dict[str, str]:
    """The flags-cell note for each bad expert cell; the row still trains (expert is only an opinion)."""
    return {row_id: f"expert? {cell!r} is not a class" for row_id, cell in bad.items()}


def bad_expert_rows(table: pd.DataFrame, bad: dict[str, str]) -> list[dict]:
    """Each bad expert cell with its id and its line in the table (the header is line 1)."""
    lines = {row_id: tbl.row_number(n) for n, row_id in enumerate(table["id"])}
    return [{"id": i, "row": lines.get(i), "column": "expert", "value": v} for i, v in bad.items()]


@dataclass(frozen=True)
class ExpertAgreement:
    label: Agreement
    model: Agreement
    differ: list[str]  # ids where the model's prediction is not the expert's class

    def fields(self) -> dict[str, str]:
        return {**self.label.fields("expert_label"), **self.model.fields("expert_model")}


def expert_agreement(expert: dict[str, str], labels: dict[str, str], predicted: dict[str, str]) -> ExpertAgreement:
    """Expert vs label (rows with a class label) and expert vs model (rows with a prediction)."""
    differ = [i for i in expert if i in predicted and predicted[i] != expert[i]]
    return ExpertAgreement(agreement(expert, labels), agreement(expert, predicted), differ)


def edit_agreement(old_labels: dict[str, str], old_predicted: dict[str, str],
                   new_labels: dict[str, str], new_predicted: dict[str, str]) -> dict[str, int]:
    """For the rows both runs predicted whose label changed since the old run: how many the new model
    predicts as the new label, and how many the old run already predicted as it.

    ``new_labels`` holds class labels only, so a label cleared since is not an edit to judge.
    """
    edited = [i for i, label in new_labels.items()
              if i in old_labels and i in old_predicted and i in new_predicted and old_labels[i] != label]
    return {"edits": len(edited),
            "edits_model_agrees": sum(new_predicted[i] == new_labels[i] for i in edited),
            "edits_old_agreed": sum(old_predicted[i] == new_labels[i] for i in edited)}


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
