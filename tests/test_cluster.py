"""k-means, spherical k-means, zero-shot and the no-train baselines: recovery, determinism, validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from laic_core.errors import LaicError
from laic_core.method.cluster import (
    clip_kmeans,
    kmeans_fit,
    kmeans_predict,
    ours_notrain,
    spherical_kmeans,
    tac_notrain,
    zeroshot_assign,
)
from laic_core.method.relation import relation_matrix, tac_joint_features, tac_text_features
from tests.conftest import normalized as unit


def sphere_blobs(rng, n_per, n_classes, d, spread=0.05):
    """Unit vectors in tight caps around random, well-separated directions."""
    directions = np.linalg.qr(rng.normal(size=(d, d)))[0][:n_classes]
    labels = np.repeat(np.arange(n_classes), n_per)
    X = directions[labels] + spread * rng.normal(size=(len(labels), d))
    return unit(X), labels, directions.astype(np.float32)


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    return sphere_blobs(rng, 30, 4, 16)


# ------------------------------------------------------------------ Euclidean k-means


def test_kmeans_recovers_blobs_and_is_deterministic(blobs):
    X, labels, _ = blobs
    centers, found = kmeans_fit(X, 4, seed=0)
    assert centers.dtype == np.float32 and centers.shape == (4, 16) and found.dtype == np.int64
    assert adjusted_rand_score(labels, found) == 1.0
    again, found_again = kmeans_fit(X, 4, seed=0)
    np.testing.assert_array_equal(found, found_again)
    np.testing.assert_array_equal(centers, again)
    np.testing.assert_array_equal(kmeans_predict(X, centers), found)


def test_minibatch_kmeans_path_recovers_blobs_and_is_deterministic(blobs):
    X, labels, _ = blobs
    centers, found = kmeans_fit(X, 4, seed=1, minibatch_above=50)  # N = 120 > 50
    assert adjusted_rand_score(labels, found) == 1.0
    np.testing.assert_array_equal(kmeans_fit(X, 4, seed=1, minibatch_above=50)[1], found)


def test_kmeans_accepts_csr_and_predict_matches_brute_force():
    rng = np.random.default_rng(1)
    X = rng.random((50, 12)).astype(np.float32)
    X[rng.random(X.shape) < 0.6] = 0
    centers = rng.random((5, 12)).astype(np.float32)
    distances = ((X[:, None, :].astype(np.float64) - centers[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(kmeans_predict(X, centers), distances.argmin(axis=1))
    np.testing.assert_array_equal(kmeans_predict(sp.csr_matrix(X), centers), distances.argmin(axis=1))
    centers_csr, labels_csr = kmeans_fit(sp.csr_matrix(X), 3, seed=0)
    assert centers_csr.shape == (3, 12) and labels_csr.shape == (50,)


def test_kmeans_validation(blobs):
    X, _, _ = blobs
    with pytest.raises(LaicError, match="K=121 is larger than the number of images N=120"):
        kmeans_fit(X, 121, seed=0)
    with pytest.raises(LaicError, match="K=0"):
        kmeans_fit(X, 0, seed=0)
    with pytest.raises(LaicError, match="seed"):
        kmeans_fit(X, 2, seed=-1)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(LaicError, match="NaN"):
        kmeans_fit(bad, 2, seed=0)
    with pytest.raises(LaicError, match="dimension"):
        kmeans_predict(X, np.zeros((2, 3), np.float32))


# ------------------------------------------------------------------ spherical k-means


def test_spherical_kmeans_recovers_blobs_with_unit_centers(blobs):
    X, labels, directions = blobs
    centers, found = spherical_kmeans(X, 4, seed=0)
    assert centers.dtype == np.float32 and centers.shape == (4, 16) and found.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, atol=1e-5)
    assert adjusted_rand_score(labels, found) == 1.0
    # each centre is the normalised mean of its members, and labels are nearest centres
    for c in range(4):
        mean = X[found == c].astype(np.float64).sum(axis=0)
        np.testing.assert_allclose(centers[c], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_array_equal(found, (X @ centers.T).argmax(axis=1))
    centers_again, found_again = spherical_kmeans(X, 4, seed=0)
    np.testing.assert_array_equal(found_again, found)
    np.testing.assert_array_equal(centers_again, centers)


def test_spherical_kmeans_one_cluster_per_point_and_float16():
    X = unit(np.random.default_rng(3).normal(size=(12, 5)))
    _, labels = spherical_kmeans(X.astype(np.float16), 12, seed=0)
    assert sorted(labels.tolist()) == list(range(12))  # k-means++ never picks a point twice


def test_spherical_kmeans_reseeds_empty_clusters(blobs):
    X, labels, directions = blobs
    init = np.vstack([directions[:3], -X.mean(axis=0, keepdims=True)])  # the last centre attracts nobody
    centers, found = spherical_kmeans(X, 4, seed=0, init=init)
    assert np.bincount(found, minlength=4).min() > 0
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, atol=1e-5)


def test_spherical_kmeans_validation(blobs):
    X, _, _ = blobs
    with pytest.raises(LaicError, match="L=121 is larger than the number of images N=120"):
        spherical_kmeans(X, 121, seed=0)
    with pytest.raises(LaicError, match="L2-normalised"):
        spherical_kmeans(X * 2, 3, seed=0)
    with pytest.raises(LaicError, match=r"init must be a finite \(4, 16\)"):
        spherical_kmeans(X, 4, seed=0, init=np.ones((3, 16)))


# ------------------------------------------------------------------ zero-shot


def test_zeroshot_assign_picks_the_nearest_class_text(blobs):
    X, labels, directions = blobs
    np.testing.assert_array_equal(zeroshot_assign(X, directions), labels)
    rng = np.random.default_rng(5)
    texts = unit(rng.normal(size=(7, 16)))
    np.testing.assert_array_equal(zeroshot_assign(X, texts), (X @ texts.T).argmax(axis=1))
    with pytest.raises(LaicError, match="dimension 8.*dimension 16"):
        zeroshot_assign(X, texts[:, :8] / np.linalg.norm(texts[:, :8], axis=1, keepdims=True))


# ------------------------------------------------------------------ no-train baselines


def _split(rng):
    X, labels, directions = sphere_blobs(rng, 40, 3, 16)
    order = rng.permutation(len(labels))
    fit, ev = order[:80], order[80:]
    return X[fit], labels[fit], X[ev], labels[ev], directions


def test_clip_kmeans_is_inductive_and_recovers_blobs():
    V_fit, y_fit, V_eval, y_eval, _ = _split(np.random.default_rng(7))
    fit_labels, eval_labels = clip_kmeans(V_fit, V_eval, 3, seed=0)
    assert fit_labels.dtype == np.int64 and eval_labels.shape == (40,)
    assert adjusted_rand_score(y_fit, fit_labels) == 1.0
    assert adjusted_rand_score(y_eval, eval_labels) == 1.0
    # the same cluster ids on both splits: eval points take the id of their fit class
    mapping = {y: c for y, c in zip(y_fit, fit_labels)}
    np.testing.assert_array_equal(eval_labels, [mapping[y] for y in y_eval])
    np.testing.assert_array_equal(clip_kmeans(V_fit, V_eval, 3, seed=0)[1], eval_labels)


def test_tac_and_ours_notrain_recover_blobs():
    rng = np.random.default_rng(8)
    V_fit, y_fit, V_eval, y_eval, directions = _split(rng)
    # nouns: a few around each class direction
    T = unit(np.repeat(directions, 3, axis=0) + 0.3 * rng.normal(size=(9, 16)))
    J_fit, J_eval = tac_joint_features(V_fit, T), tac_joint_features(V_eval, T)
    np.testing.assert_allclose(J_fit, np.hstack([V_fit, tac_text_features(V_fit, T)]), atol=1e-6)
    fit_labels, eval_labels = tac_notrain(J_fit, J_eval, 3, seed=0)
    assert adjusted_rand_score(y_fit, fit_labels) == 1.0
    assert adjusted_rand_score(y_eval, eval_labels) == 1.0

    C_fit, C_eval = relation_matrix(V_fit, T, kind="softmax", tau=0.05), relation_matrix(V_eval, T, kind="softmax", tau=0.05)
    dense = ours_notrain(C_fit, C_eval, 3, seed=0)
    assert adjusted_rand_score(y_fit, dense[0]) == 1.0
    assert adjusted_rand_score(y_eval, dense[1]) == 1.0
    C_fit_sparse = relation_matrix(V_fit, T, kind="softmax", tau=0.05, topk=4)
    C_eval_sparse = relation_matrix(V_eval, T, kind="softmax", tau=0.05, topk=4)
    sparse = ours_notrain(C_fit_sparse, C_eval_sparse, 3, seed=0)
    assert adjusted_rand_score(y_fit, sparse[0]) == 1.0
    assert adjusted_rand_score(y_eval, sparse[1]) == 1.0


def test_baselines_validate_their_inputs():
    V_fit, _, V_eval, _, _ = _split(np.random.default_rng(9))
    with pytest.raises(LaicError, match="K=81 is larger than the number of images N=80"):
        clip_kmeans(V_fit, V_eval, 81, seed=0)
    with pytest.raises(LaicError, match="columns"):
        tac_notrain(np.hstack([V_fit, V_fit]), V_eval, 3, seed=0)
    with pytest.raises(LaicError, match="columns"):
        ours_notrain(np.abs(V_fit), np.abs(V_eval[:, :8]), 3, seed=0)
