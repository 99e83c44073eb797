"""Relation matrix C: known answers (softmax, ridge), top-k sparsity, blockwise invariance, validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import softmax

from laic_core.errors import LaicError
from laic_core.method.relation import (
    check_embeddings,
    choose_topk,
    cluster_mean_relations,
    normalize_rows,
    relation_embedding,
    relation_matrix,
    ridge_factor,
    ridge_penalty,
    tac_text_features,
)
from tests.conftest import unit_rows


@pytest.fixture
def VT():
    rng = np.random.default_rng(0)
    return unit_rows(rng, 37, 16), unit_rows(rng, 23, 16)


# ------------------------------------------------------------------ check_embeddings


def test_check_embeddings_returns_float32_and_accepts_float16(VT):
    V, _ = VT
    out = check_embeddings(V.astype(np.float16), "V")
    assert out.dtype == np.float32 and out.shape == V.shape and out.flags.c_contiguous
    np.testing.assert_allclose(out, V, atol=2e-3)
    assert check_embeddings(V, "V") is V  # no copy when already float32


def test_check_embeddings_dim_mismatch_names_both_dims(VT):
    V, _ = VT
    T = unit_rows(np.random.default_rng(1), 5, 24)
    with pytest.raises(LaicError, match="24") as error:
        check_embeddings(T, "noun embeddings T", dim=16)
    message = str(error.value)
    assert "16" in message and "different models" in message
    with pytest.raises(LaicError, match="dimension 24.*dimension 16"):
        relation_matrix(V, T)


def test_check_embeddings_reports_nan_rows_count_and_first(VT):
    V, _ = VT
    bad = V.copy()
    bad[4, 0] = np.nan
    bad[9, 3] = np.inf
    with pytest.raises(LaicError, match=r"2 row\(s\) with NaN or inf.*first: row 4"):
        check_embeddings(bad, "V")


def test_check_embeddings_reports_worst_unnormalised_row(VT):
    V, _ = VT
    bad = V.copy()
    bad[3] *= 1.01
    bad[11] *= 3.0
    with pytest.raises(LaicError, match=r"row 11 has norm 3\b.*np.linalg.norm"):
        check_embeddings(bad, "V")
    check_embeddings(bad[:3], "V")  # the first rows are fine
    with pytest.raises(LaicError, match="row 0 has norm 0"):
        check_embeddings(np.zeros((2, 4), np.float32), "V")


@pytest.mark.parametrize("bad, match", [
    (np.ones(4, np.float32), "2-D"),
    (np.ones((2, 4), np.int64), "float"),
    (np.ones((0, 4), np.float32), "empty"),
    (sp.csr_matrix(np.eye(3, dtype=np.float32)), "dense"),
])
def test_check_embeddings_rejects_bad_shapes_and_types(bad, match):
    with pytest.raises(LaicError, match=match):
        check_embeddings(bad, "V")


# ------------------------------------------------------------------ softmax


def test_softmax_rows_sum_to_one_and_match_scipy(VT):
    V, T = VT
    for tau in (0.005, 0.1):
        C = relation_matrix(V, T, kind="softmax", tau=tau)
        assert C.dtype == np.float32 and C.shape == (37, 23)
        np.testing.assert_allclose(C.sum(axis=1), 1.0, atol=1e-5)
        expected = softmax(V.astype(np.float64) @ T.T.astype(np.float64) / tau, axis=1)
        np.testing.assert_allclose(C, expected, rtol=1e-3, atol=1e-6)


def test_softmax_is_stable_for_tiny_tau(VT):
    V, T = VT
    C = relation_matrix(V, T, kind="softmax", tau=1e-4)  # logits up to 1e4: a naive exp overflows
    assert np.isfinite(C).all()
    np.testing.assert_array_equal(C.argmax(axis=1), (V @ T.T).argmax(axis=1))


# ------------------------------------------------------------------ ridge


def test_ridge_matches_closed_form_and_lstsq(VT):
    V, T = VT
    C = relation_matrix(V, T, kind="ridge", ridge_lambda=0.7)
    V64, T64 = V.astype(np.float64), T.astype(np.float64)
    M, d = T.shape
    lam = 0.7 * M / d  # relative to the mean eigenvalue of T^T T: trace / d = M / d for unit rows
    assert ridge_penalty(T, 0.7) == pytest.approx(lam)
    via_nouns = V64 @ T64.T @ np.linalg.inv(T64 @ T64.T + lam * np.eye(M))  # the M x M form
    np.testing.assert_allclose(C, via_nouns, atol=1e-4)
    # row i of C solves min ||v_i - T^T c||^2 + lam ||c||^2 = lstsq on [T^T; sqrt(lam) I]
    A = np.vstack([T64.T, np.sqrt(lam) * np.eye(M)])
    B = np.vstack([V64.T, np.zeros((M, V.shape[0]))])
    solution, *_ = np.linalg.lstsq(A, B, rcond=None)
    np.testing.assert_allclose(C, solution.T, atol=1e-4)


def test_ridge_penalty_is_scale_free(VT):
    """Listing every noun twice doubles T^T T; a relative penalty doubles with it, so each
    image is explained exactly as before, its weight split evenly between the twins."""
    V, T = VT
    C = relation_matrix(V, T, kind="ridge", ridge_lambda=0.5)
    twice = relation_matrix(V, np.vstack([T, T]), kind="ridge", ridge_lambda=0.5)
    M = T.shape[0]
    np.testing.assert_allclose(twice[:, :M], C / 2, atol=1e-5)
    np.testing.assert_allclose(twice[:, :M] + twice[:, M:], C, atol=1e-5)


@pytest.mark.parametrize("shape", [(23, 16), (9, 16)])  # more nouns than dimensions, and fewer
def test_ridge_embedding_has_the_cosines_of_the_rows_of_C(shape):
    rng = np.random.default_rng(3)
    V, T = unit_rows(rng, 40, shape[1]), unit_rows(rng, *shape)
    factor = ridge_factor(T, 1.0)
    assert factor.shape == (16, 16)
    Z = relation_embedding(V, T, kind="ridge", ridge_lambda=1.0, block_size=7)
    assert Z.shape == (40, 16) and Z.dtype == np.float32
    C = normalize_rows(relation_matrix(V, T, kind="ridge", ridge_lambda=1.0))
    np.testing.assert_allclose(Z @ Z.T, C @ C.T, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    # softmax has no such factorisation: its embedding is the normalised C itself
    S = relation_embedding(V, T, kind="softmax", tau=0.1)
    np.testing.assert_allclose(S, normalize_rows(relation_matrix(V, T, kind="softmax", tau=0.1)), atol=1e-6)


@pytest.mark.parametrize("kind", ["ridge", "softmax"])
def test_cluster_mean_relations_are_the_means_of_the_rows_of_C(VT, kind):
    V, T = VT
    labels = np.arange(37) % 4
    labels[labels == 3] = 2  # cluster 3 stays empty
    rows = np.arange(37) % 3 != 0
    C = relation_matrix(V, T, kind=kind, tau=0.1, ridge_lambda=2.0).astype(np.float64)
    means, counts = cluster_mean_relations(V, T, labels, 4, rows=rows, kind=kind, tau=0.1, ridge_lambda=2.0,
                                           block_size=5)
    for k in range(3):
        chosen = rows & (labels == k)
        assert counts[k] == chosen.sum()
        np.testing.assert_allclose(means[k], C[chosen].mean(axis=0), atol=1e-5)
    assert counts[3] == 0 and not means[3].any()
    with pytest.raises(LaicError, match="0..3"):
        cluster_mean_relations(V, T, np.full(37, 4), 4)


# ------------------------------------------------------------------ top-k sparse


@pytest.mark.parametrize("kind", ["softmax", "ridge"])
def test_topk_keeps_exactly_the_largest_entries(VT, kind):
    V, T = VT
    dense = relation_matrix(V, T, kind=kind, tau=0.05)
    topk = 5
    C = relation_matrix(V, T, kind=kind, tau=0.05, topk=topk)
    assert isinstance(C, sp.csr_matrix) and C.dtype == np.float32 and C.shape == dense.shape
    np.testing.assert_array_equal(np.diff(C.indptr), topk)
    assert C.has_sorted_indices and all(np.all(np.diff(C.indices[C.indptr[i]:C.indptr[i + 1]]) > 0)
                                        for i in range(C.shape[0]))
    rows = np.repeat(np.arange(C.shape[0]), topk)
    np.testing.assert_allclose(C.data, dense[rows, C.indices], rtol=1e-5, atol=1e-6)
    key = np.abs(dense) if kind == "ridge" else dense
    kept = np.zeros(dense.shape, bool)
    kept[rows, C.indices] = True
    for i in range(dense.shape[0]):
        assert key[i][kept[i]].min() >= key[i][~kept[i]].max()
    if kind == "ridge":
        assert (C.data < 0).any()  # signed values kept, selected by magnitude


def test_topk_ties_go_to_the_lower_column():
    V = np.eye(4, dtype=np.float32)[:2]
    T = np.eye(4, dtype=np.float32)[[2, 3, 1, 0, 2, 3]]  # rows 0,4 and 1,5 are duplicates
    C = relation_matrix(V, T, kind="softmax", tau=1.0, topk=3)
    # image 0 = e0: best noun 3 (e0), then five nouns tie at 0 -> the lowest columns 0, 1
    np.testing.assert_array_equal(C.indices.reshape(2, 3), [[0, 1, 3], [0, 1, 2]])


@pytest.mark.parametrize("kind", ["softmax", "ridge"])
def test_results_do_not_depend_on_block_size(VT, kind):
    V, T = VT
    for topk in (0, 4):
        reference = relation_matrix(V, T, kind=kind, topk=topk, block_size=1000)
        for block_size in (1, 5, 36):
            other = relation_matrix(V, T, kind=kind, topk=topk, block_size=block_size)
            if topk:
                np.testing.assert_array_equal(other.indices, reference.indices)
                other, reference_dense = other.toarray(), reference.toarray()
            else:
                reference_dense = reference
            # tau = 0.005 magnifies float32 rounding of v.t (which depends on the block shape) 200x
            np.testing.assert_allclose(other, reference_dense, rtol=1e-4, atol=1e-6)


def test_tac_text_features_match_the_direct_formula(VT):
    V, T = VT
    tau = 0.05
    S = tac_text_features(V, T, tau=tau, block_size=7)
    mixed = softmax(V.astype(np.float64) @ T.T / tau, axis=1) @ T
    expected = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    assert S.dtype == np.float32 and S.shape == V.shape
    np.testing.assert_allclose(S, expected, atol=1e-5)
    np.testing.assert_allclose(tac_text_features(V, T, tau=tau, block_size=100), S, atol=1e-6)


# ------------------------------------------------------------------ normalize_rows


def test_normalize_rows_dense_and_sparse_agree_and_keep_zero_rows():
    rng = np.random.default_rng(3)
    C = rng.random((6, 5)).astype(np.float32)
    C[rng.random(C.shape) < 0.5] = 0
    C[2] = 0
    dense = normalize_rows(C)
    sparse = normalize_rows(sp.csr_matrix(C))
    assert isinstance(dense, np.ndarray) and isinstance(sparse, sp.csr_matrix)
    assert dense.dtype == np.float32 and sparse.dtype == np.float32
    norms = np.linalg.norm(dense, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 3, 4, 5]], 1.0, atol=1e-6)
    assert norms[2] == 0
    np.testing.assert_allclose(sparse.toarray(), dense, atol=1e-6)
    np.testing.assert_allclose(dense, C / np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-30),
                               atol=1e-6)
    assert C[0].sum() != 0 and np.linalg.norm(C[0]) != 1  # the input is not modified


# ------------------------------------------------------------------ validation


def test_relation_validation_errors(VT):
    V, T = VT
    with pytest.raises(LaicError, match="kind 'cosine' is unknown.*softmax, ridge"):
        relation_matrix(V, T, kind="cosine")
    with pytest.raises(LaicError, match="tau"):
        relation_matrix(V, T, kind="softmax", tau=0.0)
    with pytest.raises(LaicError, match="ridge_lambda"):
        relation_matrix(V, T, kind="ridge", ridge_lambda=-1.0)
    with pytest.raises(LaicError, match="topk=24 exceeds the number of nouns M=23"):
        relation_matrix(V, T, topk=24)
    with pytest.raises(LaicError, match="topk"):
        relation_matrix(V, T, topk=-1)
    with pytest.raises(LaicError, match="at least 2 nouns, got M=1"):
        relation_matrix(V, T[:1])
    with pytest.raises(LaicError, match="block_size"):
        relation_matrix(V, T, block_size=0)


def test_choose_topk_rule():
    assert choose_topk(100, 50, 7) == 7  # given -> kept
    assert choose_topk(1000, 1000, 0, max_dense_entries=10**6) == 0  # fits -> dense
    assert choose_topk(1001, 1000, 0, max_dense_entries=10**6) == 64  # too big -> sparse
    assert choose_topk(10**6, 30, 0, max_dense_entries=10**6) == 30  # never more than M
    assert choose_topk(1_281_167, 20_000, 0) == 64  # ImageNet default
    with pytest.raises(LaicError, match="exceeds"):
        choose_topk(10, 5, 6)
