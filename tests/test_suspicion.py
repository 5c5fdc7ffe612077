"""Each suspicion signal on a tiny example where the answer is obvious, and their combination."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dcloop import suspicion as sus
from dcloop.review import realised_precision, reviewed_marks, update_reviews

PROBA = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05]])
LABELS = np.array([0, 1, 1])  # the third row's label disagrees with a confident model


def test_label_quality_scores_single_out_the_wrong_label():
    assert np.allclose(sus.self_confidence(PROBA, LABELS), [0.9, 0.8, 0.05])
    assert np.allclose(sus.normalized_margin(PROBA, LABELS), [0.9, 0.8, 0.05])
    assert sus.label_error_score(PROBA, LABELS).argmax() == 2


def test_confident_learning_thresholds_flag_only_the_row_past_another_class_threshold():
    thresholds = sus.class_thresholds(PROBA, LABELS)
    assert np.allclose(thresholds, [0.9, (0.8 + 0.05) / 2])
    assert list(sus.confident_issue(PROBA, LABELS, thresholds)) == [False, False, True]


def test_neighbours_and_their_labels():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.2]])
    index, similarity = sus.neighbours(embeddings, k=1)
    assert list(index[:, 0]) == [1, 0, 1] and similarity[0, 0] > similarity[2, 0]
    labels = np.array([0, 1, -1])
    vote = sus.knn_label_proba(index, labels, 2)
    assert np.allclose(vote, [[0.25, 0.75], [0.75, 0.25], [0.25, 0.75]])  # one neighbour, smoothed


def test_a_row_far_from_its_class_is_an_outlier():
    rng = np.random.default_rng(0)
    embeddings = np.vstack([rng.normal(0, 0.1, (8, 4)), [[5.0, 5.0, -5.0, 5.0]]])
    z = sus.class_outlier_z(embeddings, np.zeros(9, int))
    assert z.argmax() == 8 and z[8] >= sus.OUTLIER_Z and (z[:8] < sus.OUTLIER_Z).all()


def image(pattern: str) -> np.ndarray:
    """A (3, 32, 32) uint8 test picture: blank, a bar, the bar with a speck, or a cross."""
    pixels = np.full((32, 32), 255, np.uint8)
    if pattern == "bar":
        pixels[4:28, 12:18] = 0
    elif pattern == "bar-touched":  # the same bar re-saved with a speck of dirt
        pixels[4:28, 12:18] = 0
        pixels[30:32, 0:3] = 90
    elif pattern == "cross":
        pixels[14:18, :] = 0
    return np.repeat(pixels[None], 3, 0)


def test_pixel_signals_blank_hash_shape():
    pixels = np.stack([image("blank"), image("bar"), image("cross")])
    assert list(sus.ink_fraction(pixels) < sus.BLANK_INK) == [True, False, False]
    hashes = sus.perceptual_hash(np.stack([image("bar"), image("bar-touched"), image("cross")]))
    assert hashes.shape == (3, 112)
    assert (hashes[0] != hashes[1]).sum() <= sus.DUP_HAMMING < (hashes[0] != hashes[2]).sum()
    assert [sus.shape_problem(*s) for s in [(28, 28), (4, 30), (200, 20)]] == ["", "tiny 4x30", "aspect 10.0:1"]


def test_exact_duplicates_pair_up_by_content():
    pixels = np.stack([image("bar"), image("cross"), image("bar")])
    index, similarity = np.zeros((3, 0), int), np.zeros((3, 0))
    pairs = sus.duplicate_pairs(sus.content_keys(pixels), sus.perceptual_hash(pixels), index, similarity, pixels)
    assert pairs == [(0, 2)]


def test_a_shifted_copy_is_a_near_duplicate_but_another_stroke_is_not():
    pixels = np.stack([image("bar"), image("bar-touched"), image("cross")])
    index, similarity = np.array([[1], [0], [0]]), np.ones((3, 1))  # embeddings say: all alike
    pairs = sus.duplicate_pairs(sus.content_keys(pixels), sus.perceptual_hash(pixels), index, similarity, pixels)
    assert pairs == [(0, 1)]


def evidence(n=40, seed=0, reviewed=()):
    """Two well separated classes in embedding space; the pictures are distinct noise."""
    rng = np.random.default_rng(seed)
    labels = np.array([k % 2 for k in range(n)])
    embeddings = rng.normal(0, 0.3, (n, 8)) + labels[:, None] * 3
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)  # noise: no two alike
    proba = np.where(labels[:, None] == np.arange(2), 0.9, 0.1)
    return sus.Evidence(ids=[f"r{k}" for k in range(n)], labels=labels, splits=np.array(["train"] * n),
                        proba=proba, embeddings=embeddings, pixels=pixels, sizes=[(32, 32)] * n,
                        reviewed=np.isin(np.arange(n), list(reviewed)))


def test_a_duplicate_across_splits_is_flagged_on_both_rows():
    ev = evidence()
    ev.pixels[7] = ev.pixels[3]
    ev.embeddings[7] = ev.embeddings[3]
    ev.splits[7] = "val"
    out = sus.assess(ev, ["bar", "cross"]).set_index("id")
    assert out.loc["r3", "flags"] == "dup-of:r7 (val)"
    assert out.loc["r7", "flags"] == "dup-of:r3 (train)"
    assert float(out.loc["r3", "suspicion"]) >= sus.WEIGHTS["dup-split"]
    assert (out.drop(["r3", "r7"])["flags"] == "").all()


def test_an_augmented_variant_is_not_a_duplicate_of_its_source():
    ev = evidence()
    for copy in (7, 9):  # two variants of row 3, as `dcloop augment` makes them: alike by design
        ev.pixels[copy], ev.embeddings[copy] = ev.pixels[3], ev.embeddings[3]
    ev.pixels[11], ev.embeddings[11] = ev.pixels[5], ev.embeddings[5]  # a true duplicate
    ev.origins = [{7: "r3", 9: "r3"}.get(k, f"r{k}") for k in range(len(ev.ids))]
    out = sus.assess(ev, ["bar", "cross"]).set_index("id")
    assert (out.loc[["r3", "r7", "r9"], "flags"] == "").all()
    assert out.loc["r5", "flags"] == "dup-of:r11 (train)"


def test_a_wrong_label_is_flagged_and_ranked_first_unless_reviewed():
    ev = evidence()
    ev.labels[4] = 1  # its picture, embedding and model say class 0
    out = sus.assess(ev, ["bar", "cross"])
    assert out.loc[4, "flags"] == "label? model says bar (0.91); outlier"  # far from the 'cross' rows too
    assert out["sort_key"].idxmax() == 4
    ev.reviewed[4] = True
    again = sus.assess(ev, ["bar", "cross"])
    assert again.loc[4, "flags"] == "" and again.loc[4, "suspicion"] == out.loc[4, "suspicion"]
    assert again["sort_key"].idxmin() == 4


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (12, 3), elements=st.floats(0.001, 1)), st.lists(st.integers(-1, 2), min_size=12, max_size=12),
       st.integers(0, 1000))
def test_suspicion_stays_in_0_1(raw, labels, seed):
    rng = np.random.default_rng(seed)
    ev = sus.Evidence(ids=[str(k) for k in range(12)], labels=np.array(labels), splits=np.array(["train"] * 12),
                      proba=raw / raw.sum(1, keepdims=True), embeddings=rng.normal(size=(12, 4)),
                      pixels=rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8), sizes=[(16, 16)] * 12,
                      reviewed=np.zeros(12, bool))
    score = sus.assess(ev, ["a", "b", "c"])["suspicion"].astype(float)
    assert ((score >= 0) & (score <= 1)).all()


def test_reviews_stand_until_label_or_image_changes():
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "reviewed": ["ok", "TRUE", "", "yes"]})
    marks, bad = reviewed_marks(table)
    assert marks == {"a": True, "b": True, "c": False} and bad == {"d": "yes"}
    current = {"a": ["ii", "h1"], "b": ["v", "h2"], "c": ["x", "h3"]}
    kept, standing, stale = update_reviews({}, marks, current)
    assert standing == {"a", "b"} and not stale and kept == {"a": ["ii", "h1"], "b": ["v", "h2"]}
    current["a"] = ["iii", "h1"]
    kept, standing, stale = update_reviews(kept, marks, current)
    assert standing == {"b"} and stale == {"a"}
    kept, _, _ = update_reviews(kept, {**marks, "a": False}, current)  # cleared: forgotten
    assert update_reviews(kept, marks, current)[1] == {"a", "b"}


def test_realised_precision_counts_what_people_did_with_the_flags():
    before = pd.DataFrame({"id": list("abcde"), "label": ["i", "ii", "iii", "iv", "v"], "split": ["train"] * 5})
    now = before.copy()
    now.loc[0, "label"] = "ii"          # relabeled
    now.loc[1, "split"] = "exclude"     # excluded
    now = now[now["id"] != "c"]         # deleted
    out = realised_precision(["a", "b", "c", "d", "e"], before, now, confirmed={"d"})
    assert out == {"prev_flagged": "5", "prev_relabeled": "1", "prev_excluded": "2", "prev_confirmed": "1",
                   "prev_precision": "0.7500"}
    assert realised_precision([], before, now, set())["prev_precision"] == ""


def test_crossfit_folds_split_each_class_evenly():
    fold = sus.crossfit_folds(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 2, seed=0)
    assert sorted(np.bincount(fold)) == [4, 4]
    assert all(sorted(fold[k * 4:(k + 1) * 4]) == [0, 0, 1, 1] for k in range(2))


def two_networks(n=100):
    """Row 0 is a 1 labeled 0. Network A never trained on it and puts it among the 1s; network B
    trained on it (memorized its label) and puts it among the 0s; the rows are otherwise alike."""
    labels = np.array([k % 2 for k in range(n)])
    truth = labels.copy()
    truth[0] = 1
    rng = np.random.default_rng(0)
    space_a = rng.normal(0, 0.3, (n, 4)) + truth[:, None] * 3
    space_b = rng.normal(0, 0.3, (n, 4)) + labels[:, None] * 3
    held_out_a = np.arange(n) % 4 < 2          # rows 0, 1, 4, 5, ...
    return labels, [space_a, space_b], [held_out_a, ~held_out_a]


def test_crossfit_signals_judge_each_row_in_the_space_of_the_network_that_never_saw_it():
    labels, spaces, held_out = two_networks()
    fitted = sus.crossfit_signals(spaces, held_out, labels, labels, 2, folds=2, seed=0)
    assert fitted.knn_proba[0, 1] > 0.8          # its neighbours in network A's space are 1s
    assert fitted.proba[0, 1] > 0.5 and (fitted.proba[1:].argmax(1) == labels[1:]).all()
    assert fitted.outlier_z[0] == fitted.outlier_z.max()
    in_b_only = sus.crossfit_signals(spaces[1:], held_out[1:], labels, labels, 2, folds=2, seed=0)
    assert in_b_only.knn_proba[0].sum() == 0     # row 0 is no held-out row of B: no signal from B


def test_a_row_held_out_by_several_networks_gets_their_mean():
    labels = np.array([0, 0, 0, 1, 1, 1])
    space = np.array([[0.0, 1], [0.1, 1], [0.2, 1], [1, 0.0], [1, 0.1], [1, 0.2]])
    both = [np.ones(6, bool), np.ones(6, bool)]
    once = sus.crossfit_signals([space], both[:1], labels, labels, 2, folds=2, seed=0)
    twice = sus.crossfit_signals([space, space], both, labels, labels, 2, folds=2, seed=0)
    assert np.allclose(once.knn_proba, twice.knn_proba) and np.allclose(once.proba, twice.proba)


def test_assess_takes_crossfitted_neighbour_votes_instead_of_its_own():
    ev = evidence()
    plain = sus.assess(ev, ["bar", "cross"])
    votes = np.where(ev.labels[:, None] == np.arange(2), 1.0, 0.0)
    votes[5] = votes[5][::-1]   # in the network that never saw row 5, its neighbours disagree with it
    ev.knn_proba, ev.outlier_z = votes, np.zeros(len(ev.ids))
    out = sus.assess(ev, ["bar", "cross"])
    rose = out["suspicion"].astype(float) > plain["suspicion"].astype(float)
    assert list(rose[rose].index) == [5]  # the only row whose given votes doubt it more than its own neighbours


def test_training_dynamics_mix_in_only_where_a_row_has_them():
    dynamics = np.array([[0.5, 0.5], [0.0, 0.0], [0.0, 1.0]])  # row 1: not trained or validated on
    mixed = sus.with_dynamics(PROBA, dynamics, weight=0.5)
    assert np.allclose(mixed, [[0.7, 0.3], [0.2, 0.8], [0.475, 0.525]])


def test_a_label_the_network_learned_late_ranks_above_one_it_learned_at_once():
    ev = evidence()
    plain = sus.assess(ev, ["bar", "cross"])["suspicion"].astype(float)
    ev.dynamics = np.where(ev.labels[:, None] == np.arange(2), 0.95, 0.05)
    ev.dynamics[6] = [0.6, 0.4]  # row 6 (class bar) was fit only in the last epochs
    out = sus.assess(ev, ["bar", "cross"])
    assert (out["suspicion"].astype(float) - plain).idxmax() == 6  # the dynamics raise row 6 the most
    assert float(out.loc[6, "suspicion"]) > plain[6]
    assert out.loc[6, "label_prob"] == plain_label_prob(ev, 6)  # label_prob stays the out-of-sample one


def plain_label_prob(ev, row):
    return f"{ev.proba[row, ev.labels[row]]:.3f}"


def memorizing_networks(n=600, seed=0):
    """Three classes; 10% wrong labels, 9 in 10 of them in train (as in real label tables).

    The main network trained on every train row and mostly memorized its label: a train row sits
    most of the way to the centre of its GIVEN class, a val row where its picture belongs. Networks
    0 and 1 each trained on one half of train; a row they never trained on sits where its picture belongs.
    """
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    splits = np.where(np.arange(n) < int(0.7 * n), "train", "val")
    wrong = np.concatenate([rng.choice(np.flatnonzero(splits == "train"), 54, replace=False),
                            rng.choice(np.flatnonzero(splits == "val"), 6, replace=False)])
    labels = truth.copy()
    labels[wrong] = (truth[wrong] + rng.integers(1, 3, len(wrong))) % 3
    centres = rng.normal(0, 1, (3, 16))

    def space(trained_on):
        pulled = centres[truth] + 0.85 * (centres[labels] - centres[truth])
        return np.where(trained_on[:, None], pulled, centres[truth]) + rng.normal(0, 0.7, (n, 16))
    half = rng.random(n) < 0.5
    trained = [(splits == "train") & ~half, (splits == "train") & half]
    return labels, splits, np.isin(np.arange(n), wrong), space(splits == "train"), [space(t) for t in trained], \
        [~t for t in trained]


def merged_and_within(score, truth, splits):
    from sklearn.metrics import roc_auc_score
    return roc_auc_score(truth, score), [roc_auc_score(truth[splits == s], score[splits == s]) for s in ("train", "val")]


def test_every_split_is_judged_on_one_scale():
    labels, splits, wrong, main, spaces, held_out = memorizing_networks()
    pooled = sus.cross_val_proba(main, labels, 3, 5, seed=0)  # one network: train rows judged in-sample
    index = sus.neighbours(main)[0]
    one_network = sus.label_error_score(sus.blend(pooled, sus.knn_label_proba(index, labels, 3)), labels)
    merged, within = merged_and_within(one_network, wrong, splits)
    assert merged < np.mean(within) - 0.1  # val rows look worse than train rows: the merged list is poor
    top = np.argsort(-one_network)[:wrong.sum()]
    assert (splits[top] == "val").sum() > 3 * (wrong & (splits == "val")).sum()
    ev = sus.Evidence(ids=[str(k) for k in range(len(labels))], labels=labels, splits=splits, proba=pooled,
                      embeddings=main, pixels=np.zeros((len(labels), 3, 8, 8), np.uint8),
                      sizes=[(0, 0)] * len(labels), reviewed=np.zeros(len(labels), bool),
                      dynamics=np.full(pooled.shape, 1 / 3))
    fitted = sus.crossfit_signals(spaces, held_out, labels, labels, 3, folds=5, seed=0)
    judged = sus.judged_out_of_sample(ev, fitted)
    assert judged.dynamics is None
    crossfitted = sus.label_error_score(sus.blend(judged.proba, judged.knn_proba), labels)
    merged, within = merged_and_within(crossfitted, wrong, splits)
    assert merged >= min(within) - 0.02 and merged > 0.95  # the merged list is as good as each split's own


def test_robust_z_puts_each_split_on_its_own_scale():
    rng = np.random.default_rng(0)
    distance = np.concatenate([rng.normal(1.0, 0.1, 100), rng.normal(2.0, 0.2, 50)])  # train pulled in by training
    splits = np.array(["train"] * 100 + ["val"] * 50)
    distance[[5, 120]] = [1.6, 3.2]  # each six times its own split's spread out
    z = sus.robust_z(distance, splits)
    assert z[5] > 4 and z[120] > 4 and abs(np.median(z[:100])) < 0.2 and abs(np.median(z[100:])) < 0.2
    pooled = sus.robust_z(distance)
    assert pooled[5] < np.median(pooled[100:])  # on one pooled scale the odd train row hides below most val rows


def test_not_a_class_is_far_from_every_class_whatever_its_label():
    ev = evidence()
    ev.embeddings[9] = [12, -12] * 4  # pointing away from both classes (cosine), labeled cross
    out = sus.assess(ev, ["bar", "cross"])
    assert out.loc[9, "flags"].startswith("not-a-class? far from every class (z ")
    assert out["sort_key"].idxmax() == 9
    distance = sus.nearest_class_distance(ev.embeddings, ev.labels)
    assert distance.argmax() == 9
    assert sus.not_a_class_score(np.array([0.0, 3.0, 9.0]), np.zeros(3)).tolist() == [0.0, 0.25, 1.0]


def test_image_oddness_singles_out_a_scribble_among_strokes():
    strokes = np.full((30, 3, 32, 32), 255, np.uint8)
    for k, image in enumerate(strokes):
        image[:, 6:26, 14 + k % 3:17 + k % 3] = 0  # one upright bar each, a little shifted
    strokes[4] = 255
    strokes[4][:, ::3, ::3] = 0  # speckles all over: ink in every row and column
    oddness = sus.image_oddness(strokes)
    assert oddness.argmax() == 4 and oddness[4] > 6 and np.median(oddness) < 1
