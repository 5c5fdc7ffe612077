"""The pure agreement maths: Cohen's kappa by hand, the expert column, edits, the seeds' spread."""

import numpy as np
import pandas as pd
from hypothesis import given, strategies as st
from sklearn.metrics import cohen_kappa_score

from dcloop.agreement import (EXPERT_FIELDS, agreement, bad_expert_rows, cohen_kappa, edit_agreement,
                              expert_agreement, expert_cells)
from dcloop.effect import EFFECT_FIELDS, SEED_FIELDS, score_change, seed_fields
from dcloop.table import RESULT_COLUMNS


def test_kappa_on_a_hand_computed_example():
    # Six rows, rater a: I I I II II III, rater b: I I II II III III.
    # Observed agreement p_o: rows 1, 2, 4, 6 agree -> 4/6 = 2/3.
    # Marginals a: I 3, II 2, III 1; b: I 2, II 2, III 2.
    # Chance p_e = (3*2 + 2*2 + 1*2) / 6^2 = 12/36 = 1/3.
    # kappa = (2/3 - 1/3) / (1 - 1/3) = (1/3) / (2/3) = 0.5.
    a = ["I", "I", "I", "II", "II", "III"]
    b = ["I", "I", "II", "II", "III", "III"]
    assert cohen_kappa(a, b) == 0.5
    found = agreement(dict(zip("uvwxyz", a)), dict(zip("uvwxyz", b)))
    assert (found.n, found.agree, found.accuracy, found.kappa) == (6, 4, 4 / 6, 0.5)


def test_kappa_is_none_when_chance_agreement_is_certain_or_there_are_no_rows():
    assert cohen_kappa(["I", "I"], ["I", "I"]) is None
    assert cohen_kappa([], []) is None
    # Perfect agreement beyond chance is 1, perfect disagreement on two balanced classes is -1.
    assert cohen_kappa(["I", "II"], ["I", "II"]) == 1.0
    assert cohen_kappa(["I", "II"], ["II", "I"]) == -1.0


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("abc")), min_size=1, max_size=30))
def test_kappa_matches_scikit_learn_and_stays_in_range(pairs):
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    kappa = cohen_kappa(a, b)
    if kappa is None:
        assert len(set(a) | set(b)) == 1
    else:
        assert -1 <= kappa <= 1
        assert np.isclose(kappa, cohen_kappa_score(a, b))


def test_expert_cells_skip_blanks_and_name_bad_cells_with_their_row():
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "expert": ["I", "", " cat ", "II "]})
    expert, bad = expert_cells(table, ["I", "II"])
    assert expert == {"a": "I", "d": "II"} and bad == {"c": "cat"}
    assert bad_expert_rows(table, bad) == [{"id": "c", "row": 4, "column": "expert", "value": "cat"}]
    assert expert_cells(table.drop(columns="expert"), ["I"]) == ({}, {})


def test_expert_agreement_counts_only_rows_each_side_has():
    expert = {"a": "I", "b": "II", "c": "I", "d": "II"}
    labels = {"a": "I", "b": "I", "c": "I"}          # d is unlabeled
    predicted = {"a": "I", "b": "II", "d": "I"}      # c's image was unreadable
    found = expert_agreement(expert, labels, predicted)
    assert (found.label.n, found.label.agree) == (3, 2)
    assert (found.model.n, found.model.agree) == (3, 2)
    assert found.differ == ["d"]
    fields = found.fields()
    assert list(fields) == EXPERT_FIELDS
    assert fields["expert_model_accuracy"] == "0.6667" and fields["expert_label_n"] == "3"
    assert set(expert_agreement({}, labels, predicted).fields().values()) == {""}


def test_edit_agreement_judges_only_rows_whose_label_changed():
    old_labels = {"a": "I", "b": "I", "c": "II", "d": ""}
    old_predicted = {"a": "II", "b": "I", "c": "II", "d": "I"}
    new_labels = {"a": "II", "b": "II", "c": "II", "d": "I", "e": "I"}  # e is new: no old prediction
    new_predicted = {"a": "II", "b": "I", "c": "II", "d": "I", "e": "I"}
    # Edits: a (I->II), b (I->II), d (blank->I). New model agrees with a and d; the old run with a and d.
    assert edit_agreement(old_labels, old_predicted, new_labels, new_predicted) == {
        "edits": 3, "edits_model_agrees": 2, "edits_old_agreed": 2}


def test_seed_fields_and_the_score_change_use_the_mean():
    fields = seed_fields([{"val": 0.8, "test": 0.7}, {"val": 0.9, "test": None}, {"val": 0.7, "test": 0.5}])
    assert fields == {"seeds": "3", "val_mean": "0.8000", "val_std": "0.1000", "test_mean": "0.6000",
                      "test_std": "0.1414"}
    assert seed_fields([{"val": 0.5, "test": None}])["val_std"] == ""
    # A row written before seeds existed has only val_accuracy.
    assert score_change({"val_mean": "0.8000"}, {"val_accuracy": "0.7500"}, "val") == "+0.0500"
    assert score_change({"val_mean": "0.7"}, {"val_mean": "0.75"}, "val") == "-0.0500"
    assert score_change({"val_mean": ""}, {"val_accuracy": "0.75"}, "val") == ""


def test_the_new_fields_are_result_columns():
    assert set(SEED_FIELDS + EFFECT_FIELDS + EXPERT_FIELDS) <= set(RESULT_COLUMNS)
