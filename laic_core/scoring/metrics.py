"""Clustering metrics: ACC (Hungarian), NMI, ARI, and label-free size figures.

Conventions shared by every function that takes ground truth:

- `y_true` (N,) int: class ids, any integers; a negative id marks an
  *unlabelled* sample, which is left out of every score.
- `y_pred` (N,) int: cluster ids, any integers (negative ones included); the
  number of clusters may be larger or smaller than the number of classes.

NMI and ARI are computed here from the contingency table rather than taken
from scikit-learn, so the tests can check them against it; they follow
scikit-learn's definitions and degenerate-case conventions
(`normalized_mutual_info_score` with arithmetic-mean normalisation,
`adjusted_rand_score`). Everything works on the non-zero cells of the
contingency table, so memory is O(N + non-zero cells), never O(N^2); only ACC
(and `confusion`) densify it, to n_classes x n_clusters, for the Hungarian step.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from laic_core.errors import LaicError
from laic_core.validation import labels as check_labels

SCORE_KEYS = ("acc", "nmi", "ari")  # what a labelled run is scored by, in the papers' order
_DECIMALS = 6


# ---------------------------------------------------------------- validation


def _labelled_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated (y_true, y_pred) restricted to labelled samples, and how many were dropped."""
    true = check_labels(y_true, "y_true")
    pred = check_labels(y_pred, "y_pred")
    if true.shape[0] != pred.shape[0]:
        raise LaicError(
            f"y_true has {true.shape[0]} labels but y_pred has {pred.shape[0]}; "
            "pass exactly one predicted cluster per sample, in the same order"
        )
    if true.shape[0] == 0:
        raise LaicError("y_true and y_pred are empty; there is nothing to score")
    labelled = true >= 0
    n_unlabelled = int(true.shape[0] - np.count_nonzero(labelled))
    if n_unlabelled == true.shape[0]:
        raise LaicError(
            f"all {true.shape[0]} samples are unlabelled (y_true < 0); scores need ground-truth labels"
        )
    if n_unlabelled:
        true, pred = true[labelled], pred[labelled]
    return true, pred, n_unlabelled


# ------------------------------------------------------------- contingency


def _contingency_cells(true: np.ndarray, pred: np.ndarray):
    """The sparse contingency table of validated labels.

    Returns (class_ids (R,), cluster_ids (C,), rows (Z,), cols (Z,), counts (Z,)
    int64), one entry per non-zero cell, so memory never depends on R * C.
    """
    class_ids, class_idx = np.unique(true, return_inverse=True)
    cluster_ids, cluster_idx = np.unique(pred, return_inverse=True)
    # R * C <= N^2, which fits int64 for any N this project will see.
    codes = class_idx.astype(np.int64) * cluster_ids.shape[0] + cluster_idx
    cell_codes, counts = np.unique(codes, return_counts=True)
    rows, cols = np.divmod(cell_codes, cluster_ids.shape[0])
    return class_ids, cluster_ids, rows, cols, counts.astype(np.int64)


def _dense(cells) -> np.ndarray:
    """(n_classes, n_clusters) int64 table from `_contingency_cells` output."""
    class_ids, cluster_ids, rows, cols, counts = cells
    table = np.zeros((class_ids.shape[0], cluster_ids.shape[0]), dtype=np.int64)
    table[rows, cols] = counts
    return table


def confusion(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense contingency table of classes against clusters.

    Returns (table (n_classes, n_clusters) int64, class_ids (n_classes,) int64,
    cluster_ids (n_clusters,) int64): `table[i, j]` counts the labelled samples
    of class `class_ids[i]` put in cluster `cluster_ids[j]`. Only ids that
    occur among labelled samples appear; ids are sorted.
    """
    true, pred, _ = _labelled_pair(y_true, y_pred)
    cells = _contingency_cells(true, pred)
    return _dense(cells), cells[0], cells[1]


# ---------------------------------------------------------------------- ACC


def _hungarian(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the one-to-one matching with the most samples."""
    return linear_sum_assignment(table, maximize=True)


def _accuracy_from_table(table: np.ndarray) -> float:
    rows, cols = _hungarian(table)
    return float(table[rows, cols].sum() / table.sum())


def cluster_accuracy(y_true, y_pred) -> float:
    """Clustering accuracy: the fraction of labelled samples whose cluster is
    matched to their class by the best one-to-one (Hungarian) matching.

    With more clusters than classes, the unmatched clusters count as wrong;
    with fewer, the unmatched classes do. In [0, 1].
    """
    table, _, _ = confusion(y_true, y_pred)
    return _accuracy_from_table(table)


def best_mapping(y_true, y_pred) -> dict[int, int]:
    """The Hungarian matching as {cluster id: class id}, Python ints.

    Clusters left unmatched (when there are more clusters than classes) are
    absent from the dict.
    """
    table, class_ids, cluster_ids = confusion(y_true, y_pred)
    rows, cols = _hungarian(table)
    return {int(cluster_ids[c]): int(class_ids[r]) for r, c in zip(rows, cols)}


# ---------------------------------------------------------------- NMI / ARI


def _entropy_from_counts(counts: np.ndarray, n: int) -> float:
    """Shannon entropy (nats) of the distribution counts / n; counts > 0."""
    c = counts.astype(np.float64)
    return float(math.log(n) - np.dot(c, np.log(c)) / n)


def _margins(cells) -> tuple[np.ndarray, np.ndarray]:
    """Class sizes (n_classes,) and cluster sizes (n_clusters,), int64."""
    class_ids, cluster_ids, rows, cols, counts = cells
    class_sizes = np.zeros(class_ids.shape[0], dtype=np.int64)
    cluster_sizes = np.zeros(cluster_ids.shape[0], dtype=np.int64)
    np.add.at(class_sizes, rows, counts)
    np.add.at(cluster_sizes, cols, counts)
    return class_sizes, cluster_sizes


def _nmi_from_cells(cells, n: int) -> float:
    class_sizes, cluster_sizes = _margins(cells)
    if class_sizes.shape[0] == 1 and cluster_sizes.shape[0] == 1:
        return 1.0
    if class_sizes.shape[0] == 1 or cluster_sizes.shape[0] == 1:
        return 0.0  # MI <= min(H) = 0
    _, _, rows, cols, counts = cells
    # MI = sum_ij (n_ij / n) log(n * n_ij / (a_i * b_j)), over non-zero cells only.
    c = counts.astype(np.float64)
    log_ratio = (
        np.log(c) + math.log(n) - np.log(class_sizes[rows].astype(np.float64))
        - np.log(cluster_sizes[cols].astype(np.float64))
    )
    mutual_info = max(float(np.dot(c, log_ratio) / n), 0.0)  # round-off can dip below 0
    if mutual_info == 0.0:
        return 0.0
    mean_entropy = (_entropy_from_counts(class_sizes, n) + _entropy_from_counts(cluster_sizes, n)) / 2.0
    return float(min(mutual_info / mean_entropy, 1.0))


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information, MI / mean(H(classes), H(clusters)), natural log.

    As scikit-learn: 1.0 when both sides have a single label (nothing to tell
    apart, a perfect match); 0.0 when exactly one side has a single label.
    In [0, 1].
    """
    true, pred, _ = _labelled_pair(y_true, y_pred)
    return _nmi_from_cells(_contingency_cells(true, pred), int(true.shape[0]))


def _pairs(counts: np.ndarray) -> int:
    """sum of C(c, 2) over counts, as an exact Python int (fits int64 before the sum: c <= N)."""
    c = counts.astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def _ari_from_cells(cells, n: int) -> float:
    class_sizes, cluster_sizes = _margins(cells)
    same_both = _pairs(cells[4])
    same_class = _pairs(class_sizes)
    same_cluster = _pairs(cluster_sizes)
    all_pairs = n * (n - 1) // 2
    # ARI = (index - expected) / (mean(a, b) - expected) with expected = a b / T,
    # multiplied through by 2T to stay in Python's exact integers.
    numerator = 2 * (same_both * all_pairs - same_class * same_cluster)
    denominator = (same_class + same_cluster) * all_pairs - 2 * same_class * same_cluster
    if denominator == 0:
        # Only when both labellings are all-one-group, or both all-singletons
        # (N = 1 included): they agree on every pair.
        return 1.0
    return float(numerator / denominator)


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (Hubert and Arabie), in [-1, 1]; 0 is chance level.

    Exact integer arithmetic: products of pair counts reach ~N^4 / 4, beyond
    int64 once N is about 80k. As scikit-learn, 1.0 when both labellings are
    one group, or both all singletons.
    """
    true, pred, _ = _labelled_pair(y_true, y_pred)
    return _ari_from_cells(_contingency_cells(true, pred), int(true.shape[0]))


# ------------------------------------------------------------------ summary


def clustering_scores(y_true, y_pred) -> dict:
    """ACC, NMI, ARI of one clustering, ready for a metrics JSON.

    Returns {"acc", "nmi", "ari": float rounded to 6 decimals, "n": number of
    labelled samples scored, "n_unlabelled": samples with y_true < 0, left out}.
    """
    true, pred, n_unlabelled = _labelled_pair(y_true, y_pred)
    cells = _contingency_cells(true, pred)
    n = int(true.shape[0])
    return {
        "acc": round(_accuracy_from_table(_dense(cells)), _DECIMALS),
        "nmi": round(_nmi_from_cells(cells, n), _DECIMALS),
        "ari": round(_ari_from_cells(cells, n), _DECIMALS),
        "n": n,
        "n_unlabelled": n_unlabelled,
    }


# --------------------------------------------------------------- label-free


def cluster_sizes(y_pred, n_clusters: int) -> list[int]:
    """Samples per cluster, `n_clusters` ints (empty clusters included).

    `y_pred` (N,) int with ids in 0..n_clusters-1.
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise LaicError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    pred = check_labels(y_pred, "y_pred")
    if pred.shape[0] == 0:
        raise LaicError("y_pred is empty; there are no assignments to count")
    low, high = int(pred.min()), int(pred.max())
    if low < 0 or high >= n_clusters:
        raise LaicError(
            f"y_pred holds cluster ids from {low} to {high}, outside 0..{n_clusters - 1}; "
            "pass the n_clusters the clustering was run with, or relabel clusters to 0..K-1"
        )
    return [int(s) for s in np.bincount(pred, minlength=n_clusters)]


def size_balance(y_pred, n_clusters: int) -> dict:
    """How evenly samples spread over clusters, without labels.

    Returns {"n": samples, "min_size", "max_size": ints, "n_empty": clusters
    with no sample, "size_entropy": entropy of the size distribution divided
    by log(n_clusters), in [0, 1], 1 = perfectly even (1.0 when n_clusters = 1),
    rounded to 6 decimals}.
    """
    sizes = np.asarray(cluster_sizes(y_pred, n_clusters), dtype=np.int64)
    n = int(sizes.sum())
    nonempty = sizes[sizes > 0]
    if n_clusters == 1:
        normalised_entropy = 1.0
    else:
        normalised_entropy = min(_entropy_from_counts(nonempty, n) / math.log(n_clusters), 1.0)
    return {
        "n": n,
        "min_size": int(sizes.min()),
        "max_size": int(sizes.max()),
        "n_empty": int(np.count_nonzero(sizes == 0)),
        "size_entropy": round(max(normalised_entropy, 0.0), _DECIMALS),
    }


def matched_column_order(n_classes: int, cluster_ids: Sequence[int],
                         mapping: Mapping[int, int], class_ids: Sequence[int]) -> np.ndarray:
    """Column order that puts the cluster matched to class i under row i.

    cluster_ids (C,): the cluster id of each column; class_ids (R,): the class
    id of each row; mapping: {cluster id: class id} (the Hungarian matching).
    Returns (C,) int64 column indices: first the matched clusters in row
    order, then the unmatched ones in their original order.
    """
    cluster_ids = [int(c) for c in cluster_ids]
    row_of_class = {int(c): i for i, c in enumerate(class_ids)}
    if len(row_of_class) != n_classes:
        raise LaicError(f"class_ids has {len(row_of_class)} distinct ids for {n_classes} rows")
    matched = sorted(
        (row_of_class[mapping[c]], j) for j, c in enumerate(cluster_ids)
        if c in mapping and mapping[c] in row_of_class
    )
    first = [j for _, j in matched]
    taken = set(first)
    rest = [j for j in range(len(cluster_ids)) if j not in taken]
    return np.asarray(first + rest, dtype=np.int64)
