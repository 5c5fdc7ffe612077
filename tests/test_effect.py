"""The noise a score change is judged by: the measured spread of seeds, or the binomial interval of the split."""

import math

import pytest

from dcloop.render import describe_score
from dcloop.effect import score_noise, wilson_half_width


def test_wilson_half_width_matches_the_formula_on_813_rows():
    p, n, z = 0.683, 813, 1.959964
    expected = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_half_width(p, n) == pytest.approx(expected)
    assert wilson_half_width(p, n) == pytest.approx(0.0319, abs=5e-5)  # about 3 points on 813 rows


def test_wilson_half_width_stays_open_at_a_perfect_score_and_shrinks_with_rows():
    assert wilson_half_width(1.0, 50) > 0.03
    assert wilson_half_width(0.9, 4000) < wilson_half_width(0.9, 400) < wilson_half_width(0.9, 40)
    assert math.isnan(wilson_half_width(0.5, 0))


def row(**fields):
    base = {"val_accuracy": "0.6470", "val_mean": "0.6470", "rows_val": "813", "seeds": "1", "val_std": ""}
    return {**base, **fields}


def test_a_change_without_seeds_is_judged_by_the_previous_score_on_the_splits_rows():
    found = score_noise(row(val_change="-0.0360"), "val")
    assert found == {"score": 0.647, "was": 0.683, "change": -0.036, "noise": 0.0319,
                     "basis": "noise of 813 rows", "within_noise": False}
    assert describe_score(found) == "0.647 (was 0.683, -0.036; beyond the ±0.032 noise of 813 rows)"
    small = score_noise(row(val_change="-0.0200"), "val")
    assert describe_score(small) == "0.647 (was 0.667, -0.020; within the ±0.032 noise of 813 rows)"


def test_a_change_with_seeds_is_judged_by_their_measured_spread():
    found = score_noise(row(seeds="3", val_mean="0.6500", val_std="0.0120", val_change="+0.0200"), "val")
    assert found["noise"] == 0.024 and found["basis"] == "spread of 3 seeds" and found["within_noise"]
    assert describe_score(found) == "0.650 (was 0.630, +0.020; within the ±0.024 spread of 3 seeds)"


def test_a_first_run_shows_its_noise_and_a_split_without_rows_has_no_score():
    assert describe_score(score_noise(row(), "val")) == "0.647 (±0.033 noise of 813 rows)"
    assert score_noise(row(), "test") is None
