"""Label-quality signals: small pure functions of probabilities, labels and embeddings.

Each signal maps arrays to one number per row; ``combine`` is the one place they meet.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline


def self_confidence(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability given to each row's own label."""
    return proba[np.arange(len(labels)), labels]


def normalized_margin(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p(label) minus the largest other probability, mapped from [-1, 1] to [0, 1]."""
    own = self_confidence(proba, labels)
    others = proba.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return (own - others.max(axis=1) + 1) / 2


def suspicion_score(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """In [0, 1], higher = more likely a wrong label: one minus the normalized margin."""
    return np.clip(1 - normalized_margin(proba, labels), 0.0, 1.0)


def cross_val_proba(embeddings: np.ndarray, labels: np.ndarray, num_classes: int,
                    folds: int, seed: int) -> np.ndarray:
    """Out-of-sample class probabilities: each row scored by a classifier that never saw it.

    A logistic regression on the fixed model's embeddings, fitted on the other folds.
    Classes absent from a fold's training part get probability 0 there.
    """
    n = len(labels)
    proba = np.zeros((n, num_classes))
    if n < 2:
        proba[:] = 1 / num_classes
        return proba
    counts = np.bincount(labels, minlength=num_classes)
    smallest = counts[counts > 0].min()
    k = min(folds, n)
    splitter = (StratifiedKFold(k, shuffle=True, random_state=seed) if smallest >= k
                else KFold(k, shuffle=True, random_state=seed))
    for fit_rows, score_rows in splitter.split(embeddings, labels):
        seen = np.unique(labels[fit_rows])
        if len(seen) == 1:
            proba[np.ix_(score_rows, seen)] = 1.0
            continue
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            classifier.fit(embeddings[fit_rows], labels[fit_rows])
        proba[np.ix_(score_rows, seen)] = classifier.predict_proba(embeddings[score_rows])
    return proba
