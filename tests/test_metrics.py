"""Clustering metrics: hand-worked answers, agreement with scikit-learn, edge cases."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from laic_core.errors import LaicError
from laic_core.scoring.metrics import (
    ari,
    best_mapping,
    cluster_accuracy,
    cluster_sizes,
    clustering_scores,
    confusion,
    nmi,
    size_balance,
)

# Two classes, three clusters, worked by hand:
#            cluster 0  1  2
#   class 0:         3  2  1
#   class 1:         0  1  3
# One-to-one matchings: (c0->0, c2->1) = 3 + 3 = 6 is the best, so ACC = 6/10.
# (Majority vote, many-to-one, would give 3 + 2 + 3 = 8/10: the test tells them apart.)
Y_TRUE_2X3 = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
Y_PRED_2X3 = np.array([0, 0, 0, 1, 1, 2, 1, 2, 2, 2])


def _brute_force_accuracy(y_true, y_pred) -> float:
    """Best one-to-one matching by trying every injection of the smaller side."""
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    best = 0
    if len(clusters) <= len(classes):
        for image in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, image))
            best = max(best, sum(mapping[p] == t for t, p in zip(y_true, y_pred)))
    else:
        for image in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(image, classes))
            best = max(best, sum(mapping.get(p) == t for t, p in zip(y_true, y_pred)))
    return best / len(y_true)


# ------------------------------------------------------------ known answers


def test_permuted_labelling_scores_one():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    y_pred = np.array([2, 2, 3, 3, 3, 0, 0, 1])  # a relabelling of y_true
    assert cluster_accuracy(y_true, y_pred) == 1.0
    assert nmi(y_true, y_pred) == pytest.approx(1.0, abs=1e-12)
    assert ari(y_true, y_pred) == pytest.approx(1.0, abs=1e-12)
    assert best_mapping(y_true, y_pred) == {2: 0, 3: 1, 0: 2, 1: 3}


def test_two_by_three_hand_worked():
    table, class_ids, cluster_ids = confusion(Y_TRUE_2X3, Y_PRED_2X3)
    np.testing.assert_array_equal(table, [[3, 2, 1], [0, 1, 3]])
    assert table.dtype == np.int64
    np.testing.assert_array_equal(class_ids, [0, 1])
    np.testing.assert_array_equal(cluster_ids, [0, 1, 2])
    assert cluster_accuracy(Y_TRUE_2X3, Y_PRED_2X3) == pytest.approx(0.6)
    assert best_mapping(Y_TRUE_2X3, Y_PRED_2X3) == {0: 0, 2: 1}  # cluster 1 unmatched
    assert cluster_accuracy(Y_TRUE_2X3, Y_PRED_2X3) == pytest.approx(_brute_force_accuracy(Y_TRUE_2X3, Y_PRED_2X3))


def test_fewer_clusters_than_classes():
    # 3 classes, 2 clusters:   cluster 0  1
    #                 class 0:         2  0
    #                 class 1:         1  2
    #                 class 2:         0  3
    # Best: (0->0, 1->2) = 2 + 3 = 5 of 8; class 1 is left unmatched.
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    table, _, _ = confusion(y_true, y_pred)
    np.testing.assert_array_equal(table, [[2, 0], [1, 2], [0, 3]])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 8)
    assert best_mapping(y_true, y_pred) == {0: 0, 1: 2}


def test_class_missing_from_predictions():
    # Class 2 has no cluster of its own: its samples land in clusters 0 and 1,
    # which belong to classes 0 and 1; cluster id 2 is never used.
    y_true = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    table, class_ids, cluster_ids = confusion(y_true, y_pred)
    np.testing.assert_array_equal(class_ids, [0, 1, 2])
    np.testing.assert_array_equal(cluster_ids, [0, 1])
    np.testing.assert_array_equal(table, [[3, 0], [0, 3], [1, 1]])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(6 / 8)
    assert best_mapping(y_true, y_pred) == {0: 0, 1: 1}


def test_non_contiguous_ids_match_zero_based_ids():
    # Same partition as the 2x3 case, relabelled with arbitrary (and negative
    # predicted) ids: every score is unchanged, ids come back as given.
    class_map = {0: 42, 1: 7}
    cluster_map = {0: 100, 1: -3, 2: 5}
    y_true = np.array([class_map[t] for t in Y_TRUE_2X3])
    y_pred = np.array([cluster_map[p] for p in Y_PRED_2X3])
    table, class_ids, cluster_ids = confusion(y_true, y_pred)
    np.testing.assert_array_equal(class_ids, [7, 42])
    np.testing.assert_array_equal(cluster_ids, [-3, 5, 100])
    np.testing.assert_array_equal(table, [[1, 3, 0], [2, 1, 3]])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(0.6)
    assert best_mapping(y_true, y_pred) == {100: 42, 5: 7}
    assert nmi(y_true, y_pred) == pytest.approx(nmi(Y_TRUE_2X3, Y_PRED_2X3), abs=1e-12)
    assert ari(y_true, y_pred) == pytest.approx(ari(Y_TRUE_2X3, Y_PRED_2X3), abs=1e-12)


def test_ari_known_negative_value():
    # scikit-learn's documented example of worse-than-chance agreement.
    assert ari([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)


# ----------------------------------------------------- agreement with sklearn


@pytest.mark.parametrize("seed", range(6))
def test_nmi_and_ari_match_sklearn_on_random_labellings(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 3, 7, 40, 300):
        n_classes = int(rng.integers(1, 8))
        n_clusters = int(rng.integers(1, 11))
        y_true = rng.integers(0, n_classes, size=n)
        # Mix of independent and partly-informative predictions, odd ids.
        y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, n_clusters, size=n)) * 3 - 4
        assert nmi(y_true, y_pred) == pytest.approx(normalized_mutual_info_score(y_true, y_pred), abs=1e-10)
        assert ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred), abs=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_accuracy_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    n = 30
    y_true = rng.integers(0, int(rng.integers(1, 5)), size=n)
    y_pred = rng.integers(0, int(rng.integers(1, 6)), size=n)
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(_brute_force_accuracy(y_true, y_pred))


def test_ari_does_not_overflow_at_large_n():
    # Pair-count products exceed int64 from N ~ 80k on; sklearn uses Python ints.
    rng = np.random.default_rng(0)
    n = 200_000
    y_true = rng.integers(0, 10, size=n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 10, size=n))
    expected = adjusted_rand_score(y_true, y_pred)
    assert 0.3 < expected < 1.0
    assert ari(y_true, y_pred) == pytest.approx(expected, abs=1e-10)
    assert nmi(y_true, y_pred) == pytest.approx(normalized_mutual_info_score(y_true, y_pred), abs=1e-10)


# ---------------------------------------------------------- degenerate cases


@pytest.mark.parametrize(
    ("y_true", "y_pred", "acc"),
    [
        ([0, 0, 1, 1, 1], [5, 5, 5, 5, 5], 3 / 5),  # one cluster: majority class
        ([3, 3, 3, 3], [0, 1, 2, 3], 1 / 4),  # one class, all singletons
        ([1, 1, 1], [2, 2, 2], 1.0),  # one class, one cluster
        ([0, 1, 2, 3], [3, 2, 1, 0], 1.0),  # singletons both sides
        ([4], [9], 1.0),  # a single sample
        ([0, 0, 1, 1], [0, 1, 0, 1], 0.5),  # independent
    ],
)
def test_degenerate_cases_match_sklearn(y_true, y_pred, acc):
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(acc)
    assert nmi(y_true, y_pred) == pytest.approx(normalized_mutual_info_score(y_true, y_pred), abs=1e-12)
    assert ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred), abs=1e-12)


def test_single_cluster_scores_zero_nmi_and_ari():
    assert nmi([0, 0, 1, 1], [0, 0, 0, 0]) == 0.0
    assert ari([0, 0, 1, 1], [0, 0, 0, 0]) == 0.0
    assert nmi([7, 7, 7], [7, 7, 7]) == 1.0


# ---------------------------------------------------------- clustering_scores


def test_clustering_scores_excludes_unlabelled_and_is_json_ready():
    y_true = np.concatenate([Y_TRUE_2X3, [-1, -1, -5]])
    y_pred = np.concatenate([Y_PRED_2X3, [0, 1, 2]])
    scores = clustering_scores(y_true, y_pred)
    assert set(scores) == {"acc", "nmi", "ari", "n", "n_unlabelled"}
    assert scores["n"] == 10 and scores["n_unlabelled"] == 3
    assert scores["acc"] == 0.6
    assert scores["nmi"] == round(normalized_mutual_info_score(Y_TRUE_2X3, Y_PRED_2X3), 6)
    assert scores["ari"] == round(adjusted_rand_score(Y_TRUE_2X3, Y_PRED_2X3), 6)
    for key in ("acc", "nmi", "ari"):
        assert type(scores[key]) is float
    assert json.loads(json.dumps(scores)) == scores


def test_unlabelled_samples_are_ignored_by_every_metric():
    y_true = np.array([0, -1, 0, 1, -1, 1])
    y_pred = np.array([1, 0, 1, 0, 1, 0])
    table, class_ids, _ = confusion(y_true, y_pred)
    np.testing.assert_array_equal(class_ids, [0, 1])
    assert table.sum() == 4
    assert cluster_accuracy(y_true, y_pred) == 1.0
    assert ari(y_true, y_pred) == pytest.approx(1.0)


def test_float_labels_with_whole_values_are_accepted():
    # pandas turns an int column with missing values into float.
    assert clustering_scores(np.array([0.0, 0.0, 1.0, -1.0]), [1, 1, 0, 0])["acc"] == 1.0


# ----------------------------------------------------------------- validation


def test_length_mismatch_names_both_lengths():
    with pytest.raises(LaicError, match=r"y_true has 3 .*y_pred has 2"):
        clustering_scores([0, 1, 1], [0, 1])


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([], [], "empty"),
        ([[0, 1]], [[0, 1]], "1-D"),
        ([0.0, 1.5], [0, 1], "integer-valued"),
        ([0, np.nan], [0, 1], "NaN"),
        (["a", "b"], [0, 1], "integer labels"),
        ([True, False], [0, 1], "integer labels"),
        ([-1, -1], [0, 1], "unlabelled"),
    ],
)
def test_invalid_labels_raise(y_true, y_pred, message):
    with pytest.raises(LaicError, match=message):
        clustering_scores(y_true, y_pred)


def test_laic_error_is_a_value_error():
    with pytest.raises(ValueError):
        nmi([0, 1], [0])


# ---------------------------------------------------------------- label-free


def test_cluster_sizes_counts_empty_clusters():
    assert cluster_sizes([0, 0, 2, 2, 2], 4) == [2, 0, 3, 0]
    assert all(type(s) is int for s in cluster_sizes([0, 1], 2))


def test_size_balance_figures():
    even = size_balance([0, 1, 2, 3, 0, 1, 2, 3], 4)
    assert even == {"n": 8, "min_size": 2, "max_size": 2, "n_empty": 0, "size_entropy": 1.0}
    collapsed = size_balance([1, 1, 1, 1], 4)
    assert collapsed["size_entropy"] == 0.0
    assert (collapsed["min_size"], collapsed["max_size"], collapsed["n_empty"]) == (0, 4, 3)
    # Two equal clusters out of four: entropy log 2 / log 4 = 0.5.
    assert size_balance([0, 0, 3, 3], 4)["size_entropy"] == pytest.approx(0.5)
    assert size_balance([0, 0, 0], 1)["size_entropy"] == 1.0


@pytest.mark.parametrize(
    ("y_pred", "n_clusters", "message"),
    [
        ([0, 4], 4, r"0\.\.3"),
        ([-1, 0], 2, r"outside"),
        ([0, 1], 0, "positive integer"),
        ([], 3, "empty"),
    ],
)
def test_cluster_sizes_validation(y_pred, n_clusters, message):
    with pytest.raises(LaicError, match=message):
        cluster_sizes(y_pred, n_clusters)
