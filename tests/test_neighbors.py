"""Neighbour mining: exact kNN vs brute force, tie order, filtering, and the Fig.-2 property."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from laic_core.errors import LaicError
from laic_core.method import neighbors
from laic_core.method.neighbors import (
    baseline_neighbors,
    choose_knn_method,
    consistency_filter,
    knn,
    neighbor_agreement,
    neighbor_purity_curve,
    neighbor_stats,
    training_pairs,
)
from laic_core.method.relation import normalize_rows, relation_embedding, relation_matrix
from tests.conftest import unit_rows


def brute_force_knn(X, k):
    """Similarity descending, ties to the lower index, self excluded (float64)."""
    X = X.toarray() if sp.issparse(X) else X
    X = np.asarray(X, dtype=np.float64)
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    index = np.arange(len(X))
    return np.stack([np.lexsort((index, -row))[:k] for row in S])


@pytest.fixture
def X():
    return unit_rows(np.random.default_rng(0), 53, 8)


@pytest.mark.parametrize("block_size", [1, 4, 7, 4096])
def test_dense_knn_matches_brute_force(X, block_size):
    idx = knn(X, 6, block_size=block_size)
    assert idx.dtype == np.int64 and idx.shape == (53, 6)
    np.testing.assert_array_equal(idx, brute_force_knn(X, 6))


@pytest.mark.parametrize("max_block_entries", [10, 50, 200])
def test_dense_knn_column_tiles_merge_exactly(X, max_block_entries):
    # tiny budgets force many column tiles per row block and the candidate merge
    np.testing.assert_array_equal(knn(X, 6, block_size=5, max_block_entries=max_block_entries),
                                  brute_force_knn(X, 6))


@pytest.mark.parametrize("block_size", [1, 3, 4096])
def test_sparse_knn_matches_brute_force(block_size):
    rng = np.random.default_rng(1)
    dense = rng.random((41, 30)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.8] = 0
    C = normalize_rows(sp.csr_matrix(dense))
    idx = knn(C, 5, block_size=block_size)
    np.testing.assert_array_equal(idx, brute_force_knn(C, 5))
    np.testing.assert_array_equal(idx, knn(C.toarray(), 5))


def test_sparse_knn_ranks_implicit_zeros_above_negative_similarities():
    # ridge-like C: signed entries, and each row shares columns with few others,
    # so most similarities are implicit zeros, which beat every negative one
    rng = np.random.default_rng(4)
    n, d = 60, 40
    dense = np.zeros((n, d), np.float32)
    for i in range(n):
        dense[i, rng.choice(d, size=2, replace=False)] = rng.normal(size=2)
    C = sp.csr_matrix(dense)
    expected = brute_force_knn(C, 8)
    for block_size, n_jobs in ((1, 1), (7, 2), (4096, 3)):
        np.testing.assert_array_equal(knn(C, 8, block_size=block_size, n_jobs=n_jobs), expected)
    assert (dense @ dense.T < 0).any()  # the case is really exercised


def test_knn_ties_go_to_the_lower_index_and_self_is_excluded():
    # small-integer rows: every dot product is exact, so ties are real
    rng = np.random.default_rng(2)
    X = rng.integers(0, 2, size=(40, 4)).astype(np.float32)  # many duplicate rows
    X[5] = 0  # a zero row: every similarity of it ties at 0
    for k in (1, 3, 10):
        expected = brute_force_knn(X, k)
        for block_size in (1, 6, 64):
            np.testing.assert_array_equal(knn(X, k, block_size=block_size), expected)
            np.testing.assert_array_equal(knn(sp.csr_matrix(X), k, block_size=block_size), expected)
        np.testing.assert_array_equal(knn(X, k, block_size=3, max_block_entries=2 * (k + 1)), expected)
    idx = knn(X, 3)
    assert not (idx == np.arange(40)[:, None]).any()
    np.testing.assert_array_equal(idx[5], [0, 1, 2])


def test_knn_validation():
    X = unit_rows(np.random.default_rng(0), 5, 3)
    with pytest.raises(LaicError, match=r"k=5.*\[1, 4\]"):
        knn(X, 5)
    with pytest.raises(LaicError, match="k=0"):
        knn(X, 0)
    with pytest.raises(LaicError, match="method 'annoy' is unknown"):
        knn(X, 2, method="annoy")
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(LaicError, match="first: row 3"):
        knn(bad, 2)
    with pytest.raises(LaicError, match="dense rows"):
        knn(sp.csr_matrix(X), 2, method="faiss")


def test_knn_faiss_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(LaicError, match="pip install faiss-cpu"):
        knn(unit_rows(np.random.default_rng(0), 5, 3), 2, method="faiss")


def test_knn_faiss_matches_exact(X):
    pytest.importorskip("faiss")
    np.testing.assert_array_equal(knn(X, 6, method="faiss", block_size=10), brute_force_knn(X, 6))


def test_auto_is_exact_where_exact_is_affordable(monkeypatch):
    assert choose_knn_method(neighbors.APPROXIMATE_ABOVE) == "exact"
    big = neighbors.APPROXIMATE_ABOVE + 1
    assert choose_knn_method(big, sparse=True) == "exact"  # faiss takes dense rows only
    assert choose_knn_method(big, device="cuda") == "exact"  # a GPU affords the exact search
    if choose_knn_method(big) != "faiss":
        pytest.skip("faiss is not installed")
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.warns(RuntimeWarning, match="pip install faiss-cpu"):
        assert choose_knn_method(big) == "exact"


def clustered_rows(rng, n: int, d: int, clusters: int) -> np.ndarray:
    centres = unit_rows(rng, clusters, d)
    rows = centres[rng.integers(clusters, size=n)] + 0.35 * rng.normal(size=(n, d)) / np.sqrt(d)
    return normalize_rows(rows.astype(np.float32))


def test_auto_beyond_the_threshold_is_an_ivf_index_of_high_recall(monkeypatch):
    pytest.importorskip("faiss")
    monkeypatch.setattr(neighbors, "APPROXIMATE_ABOVE", 1000)
    X = clustered_rows(np.random.default_rng(4), 6000, 24, 40)
    found = knn(X, 10, method="auto")
    exact = knn(X, 10, method="exact")
    assert found.shape == (6000, 10) and not (found == np.arange(6000)[:, None]).any()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    assert 0.95 <= recall < 1.0  # approximate (so the IVF path ran), and as good as the benchmark's
    np.testing.assert_array_equal(knn(X, 10, method="auto"), found)  # seeded: the same index twice


@pytest.mark.parametrize("n_nouns", [12, 300])
def test_ridge_rows_have_the_neighbours_of_the_explicit_C(n_nouns):
    """kNN in the d-space of V L equals kNN of the normalised rows of C = V P (N x M'), ties aside."""
    rng = np.random.default_rng(5)
    V, T = clustered_rows(rng, 400, 16, 8), unit_rows(rng, n_nouns, 16)
    Z = relation_embedding(V, T, kind="ridge", ridge_lambda=0.5)
    C = normalize_rows(relation_matrix(V, T, kind="ridge", ridge_lambda=0.5))
    assert Z.shape == (400, 16) and C.shape == (400, n_nouns)
    from_Z, from_C = knn(Z, 10), knn(C, 10)
    # a row may differ only where C's own similarities tie within float rounding at the k-th place
    S = C.astype(np.float64) @ C.T.astype(np.float64)
    np.fill_diagonal(S, -np.inf)
    ranked = -np.sort(-S, axis=1)
    decided = ranked[:, 9] - ranked[:, 10] > 1e-5
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(np.sort(from_Z[decided], axis=1), np.sort(from_C[decided], axis=1))


def test_baseline_neighbors_take_their_k_and_say_when_fewer_were_mined():
    mined = np.arange(60).reshape(5, 12) % 5
    taken, note = baseline_neighbors(mined, 5, 10, "knn_image.npy", "TAC")
    np.testing.assert_array_equal(taken, mined[:, :10])
    assert note is None and taken.dtype == np.int64
    taken, note = baseline_neighbors(mined, 5, 50, "knn_image.npy", "SCAN")
    assert taken.shape == (5, 12) and note == "12 image neighbours per image (SCAN mines 50)"
    with pytest.raises(LaicError, match="knn_image.npy has 5 rows for 6 fit images; rerun `dvc repro neighbors`"):
        baseline_neighbors(mined, 6, 10, "knn_image.npy", "TAC")


# ------------------------------------------------------------------ filtering


def test_consistency_filter_hand_made():
    knn_idx = np.array([[1, 2], [0, 2], [0, 3], [2, 0]])
    pseudo = np.array([0, 0, 0, 1])
    # agreement: 0 -> 1.0, 1 -> 1.0, 2 -> 0.5 (0 yes, 3 no), 3 -> 0.0
    np.testing.assert_array_equal(neighbor_agreement(knn_idx, pseudo), [1.0, 1.0, 0.5, 0.0])
    assert neighbor_agreement(knn_idx, pseudo).dtype == np.float32
    np.testing.assert_array_equal(consistency_filter(knn_idx, pseudo), [True, True, False, False])
    np.testing.assert_array_equal(consistency_filter(knn_idx, pseudo, 0.5), [True, True, True, False])
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(LaicError, match="min_agreement"):
            consistency_filter(knn_idx, pseudo, bad)


def test_consistency_filter_counts_not_float_fractions():
    # 7 of 10 neighbours agree: 7/10 in float32 is 0.69999999 < 0.7
    knn_idx = np.arange(1, 11)[None, :].repeat(11, axis=0)
    pseudo = np.array([0] * 8 + [1] * 3)  # row 0: neighbours 1..10 -> 7 share label 0
    assert consistency_filter(knn_idx, pseudo, 0.7)[0]
    assert consistency_filter(knn_idx, pseudo, np.float64(0.7))[0]
    assert not consistency_filter(knn_idx, pseudo, 0.71)[0]


def test_training_pairs_and_stats():
    knn_idx = np.array([[1, 2], [0, 2], [0, 3], [2, 0]])
    pseudo = np.array([0, 0, 0, 1])
    reliable = consistency_filter(knn_idx, pseudo)
    pairs = training_pairs(knn_idx, reliable)
    assert pairs.dtype == np.int64
    np.testing.assert_array_equal(pairs, [[0, 1], [0, 2], [1, 0], [1, 2]])
    stats = neighbor_stats(knn_idx, pseudo, reliable)
    assert stats == {
        "n": 4, "k": 2, "n_reliable": 2, "fraction_reliable": 0.5,
        "mean_agreement": 0.625, "mean_agreement_reliable": 1.0, "n_clusters": 2,
        "cluster_sizes": [3, 1], "reliable_per_cluster": [2, 0],
    }
    with pytest.raises(LaicError, match="boolean"):
        training_pairs(knn_idx, reliable.astype(int))
    with pytest.raises(LaicError, match="outside"):
        neighbor_agreement(knn_idx + 1, pseudo)
    with pytest.raises(LaicError, match="one entry per row"):
        consistency_filter(knn_idx, pseudo[:3])


def test_neighbor_purity_curve_slices_one_knn(X):
    labels = (X[:, 0] > 0).astype(int)
    curve = neighbor_purity_curve(X, labels, [1, 3, 6])
    full = brute_force_knn(X, 6)
    assert list(curve) == [1, 3, 6]
    for k, purity in curve.items():
        assert purity == pytest.approx(float((labels[full[:, :k]] == labels[:, None]).mean()))


# ------------------------------------------------------------------ the paper's Fig. 2 property


def test_relation_rows_give_purer_neighbourhoods_than_image_features():
    """Two classes whose image features are close (a small class offset under
    isotropic noise in 128 dimensions) but that relate to different nouns (half
    the nouns lean to each class): kNN in normalised C-row space is purer."""
    rng = np.random.default_rng(0)
    d, n_nouns, per_class = 128, 16, 100
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0].T  # orthonormal directions
    class_direction, shared = basis[0], basis[1]
    labels = np.repeat([0, 1], per_class)
    offset = 0.15 * np.where(labels == 0, 1.0, -1.0)[:, None] * class_direction
    V = shared + offset + 0.12 * rng.normal(size=(2 * per_class, d))
    V = (V / np.linalg.norm(V, axis=1, keepdims=True)).astype(np.float32)
    lean = np.where(np.arange(n_nouns) < n_nouns // 2, 1.0, -1.0)[:, None]
    T = 0.5 * lean * class_direction + shared + 0.2 * basis[2:2 + n_nouns]
    T = (T / np.linalg.norm(T, axis=1, keepdims=True)).astype(np.float32)

    ks = [5, 10]
    image_purity = neighbor_purity_curve(V, labels, ks)
    relation_purity = neighbor_purity_curve(normalize_rows(relation_matrix(V, T, kind="softmax")), labels, ks)
    sparse_purity = neighbor_purity_curve(normalize_rows(relation_matrix(V, T, kind="softmax", topk=4)), labels, ks)
    for k in ks:
        assert relation_purity[k] > image_purity[k] + 0.1, (k, relation_purity, image_purity)
        assert sparse_purity[k] > image_purity[k] + 0.1, (k, sparse_purity, image_purity)
