"""Clustering without training: k-means, spherical k-means, zero-shot, and the no-train baselines.

The three no-train baselines of the paper's Fig. 4 are inductive: k-means is
fitted on the fit split and both splits are assigned to the nearest centre.

- ``clip_kmeans``: k-means on the image embeddings V;
- ``tac_notrain``: k-means on TAC's concatenation ``[v_i ; s_i]``;
- ``ours_notrain``: k-means on the L2-normalised rows of the relation matrix C.
"""

from __future__ import annotations


import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans

from laic_core.errors import LaicError
from laic_core.method.relation import normalize_rows
from laic_core.progress import progress_bar
from laic_core.validation import check_embeddings, finite_rows, positive_int
from laic_core.validation import n_clusters as check_n_clusters, seed as check_seed

_BLOCK_ENTRIES = 1 << 24  # (rows x clusters) similarity entries per block: 64 MB of float32
_MINIBATCH_SIZE = 4096
# MiniBatchKMeans runs once, from the best of n_init k-means++ seedings scored on a sample of 3 batches;
# each seeding costs O(K^2 d) on that sample (~30 s at K = 1000, d = 512 on a 2-core CPU), so at most this many
# (scikit-learn's own default is one).
_MINIBATCH_MAX_SEEDINGS = 3


# ------------------------------------------------------------------ blocks


def _rows_per_block(n_cols: int) -> int:
    return max(1, _BLOCK_ENTRIES // max(n_cols, 1))


# ------------------------------------------------------------------ Euclidean k-means


def kmeans_fit(
    X,
    n_clusters: int,
    *,
    seed: int,
    n_init: int = 3,
    max_iter: int = 100,
    minibatch_above: int = 50_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean k-means (scikit-learn), deterministic given ``seed``.

    X: (N, D) dense array or sparse matrix (CSR). Uses KMeans for
    N <= ``minibatch_above`` (``n_init`` full restarts) and MiniBatchKMeans
    (batches of 4096, one run from the best of min(n_init, 3) seedings)
    beyond, where full Lloyd passes over N x D would dominate the pipeline.
    Returns (centers (K, D) float32 dense, labels (N,) int64: the nearest
    centre of every row, `kmeans_predict(X, centers)`).
    """
    X = finite_rows(X, "X")
    n_clusters = check_n_clusters(n_clusters, X.shape[0])
    seed = check_seed(seed)
    for value, name in ((n_init, "n_init"), (max_iter, "max_iter"), (minibatch_above, "minibatch_above")):
        positive_int(value, name)
    if X.shape[0] > minibatch_above:
        # no labels from the fit itself: the one pass below gives them (at N = 1.28M a pass is a minute)
        model = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed,
                                n_init=min(n_init, _MINIBATCH_MAX_SEEDINGS), max_iter=max_iter,
                                batch_size=_MINIBATCH_SIZE, compute_labels=False)
    else:
        model = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, max_iter=max_iter)
    centers = np.asarray(model.fit(X).cluster_centers_, dtype=np.float32)
    return centers, _nearest_center(X, centers)  # X is checked above, sklearn's centres are finite


def kmeans_predict(X, centers) -> np.ndarray:
    """Nearest centre (Euclidean) of every row; ties to the lower centre index.

    X: (N, D) dense array or CSR; centers: (K, D). Returns (N,) int64.
    Works in row blocks: memory O(block * K) beyond the inputs.
    """
    X = finite_rows(X, "X")
    centers = finite_rows(centers, "centers")
    if sp.issparse(centers):
        centers = centers.toarray()
    if centers.shape[1] != X.shape[1]:
        raise LaicError(f"centers have dimension {centers.shape[1]} but X has {X.shape[1]}: "
                        "they must come from the same representation")
    return _nearest_center(X, centers)


def _nearest_center(X, centers: np.ndarray) -> np.ndarray:
    """`kmeans_predict` of rows and dense centres already checked (finite, the same width)."""
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the argmin
    half_sq_norms = 0.5 * np.einsum("ij,ij->i", centers, centers, dtype=np.float64)
    labels = np.empty(X.shape[0], dtype=np.int64)
    block = _rows_per_block(centers.shape[0])
    for start in range(0, X.shape[0], block):
        stop = min(start + block, X.shape[0])
        products = np.asarray(X[start:stop] @ centers.T, dtype=np.float64)
        labels[start:stop] = np.argmin(half_sq_norms[None, :] - products, axis=1)
    return labels


# ------------------------------------------------------------------ spherical k-means


def _assign_cosine(X_t: torch.Tensor, centers: torch.Tensor, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the centre of largest dot product (first on ties) and that dot product."""
    labels = np.empty(X_t.shape[0], dtype=np.int64)
    best = np.empty(X_t.shape[0], dtype=np.float32)
    for start in range(0, X_t.shape[0], block):
        stop = min(start + block, X_t.shape[0])
        similarity = X_t[start:stop].to(centers.device) @ centers.T
        values, index = similarity.max(dim=1)
        labels[start:stop] = index.cpu().numpy()
        best[start:stop] = values.cpu().numpy()
    return labels, best


def _kmeans_pp_cosine(X: np.ndarray, n_clusters: int, rng: np.random.Generator,
                      init_sample: int) -> np.ndarray:
    """k-means++ seeding with the cosine distance 1 - x.c (proportional to squared
    Euclidean for unit rows), on a seeded subsample of at least 4 points per
    centre: seeding costs O(L * sample * d), not O(L * N * d)."""
    n_rows = X.shape[0]
    size = min(n_rows, max(init_sample, 4 * n_clusters))
    sample = np.sort(rng.choice(n_rows, size=size, replace=False)) if size < n_rows else np.arange(n_rows)
    points = X[sample]
    chosen = np.empty(n_clusters, dtype=np.int64)
    chosen[0] = rng.integers(size)
    distance = np.maximum(1.0 - points @ points[chosen[0]], 0.0).astype(np.float64)
    distance[chosen[0]] = 0.0
    for i in range(1, n_clusters):
        total = distance.sum()
        if total > 0:
            cumulative = np.cumsum(distance)
            pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            pick = min(pick, size - 1)
            if distance[pick] == 0:  # only reachable through rounding at the end of the range
                pick = int(np.flatnonzero(distance)[-1])
        else:  # every remaining point coincides with a centre: take any unchosen point
            unchosen = np.setdiff1d(np.arange(size), chosen[:i])
            pick = int(rng.choice(unchosen))
        chosen[i] = pick
        np.minimum(distance, np.maximum(1.0 - points @ points[pick], 0.0), out=distance)
        distance[pick] = 0.0
    return points[chosen].copy()


def _normalise(centers: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(centers, axis=1, keepdims=True)
    return (centers / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def spherical_kmeans(
    X,
    n_clusters: int,
    *,
    seed: int,
    n_iter: int = 50,
    init=None,
    init_sample: int = 20_000,
    device: str | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k-means on unit rows (the TAC noun filter's image grouping).

    X: (N, d) unit rows (float16/32/64). n_clusters: L in [1, N].
    Seeding: k-means++ with distance 1 - cos on a seeded subsample of
    ``max(init_sample, 4 L)`` rows, or ``init`` (L, d) given centres.
    Iterations: assign by largest dot product (row blocks of ~16M entries),
    centres = normalised member means; a cluster left empty is re-seeded with
    the points farthest from their centres. Stops early when no label changes.
    Returns (centers (L, d) unit float32, labels (N,) int64) with labels the
    nearest-centre assignment to the returned centres. Deterministic given seed.
    device: torch device for the assignment matmuls (default CPU).
    progress: show a progress bar of the iterations on a terminal.
    """
    X = check_embeddings(X, "X (rows to cluster)")
    n_rows, dim = X.shape
    n_clusters = check_n_clusters(n_clusters, n_rows, "L")
    seed = check_seed(seed)
    for value, name in ((n_iter, "n_iter"), (init_sample, "init_sample")):
        positive_int(value, name)
    rng = np.random.default_rng(seed)
    if init is None:
        centers = _kmeans_pp_cosine(X, n_clusters, rng, init_sample)
    else:
        centers = np.asarray(init, dtype=np.float32)
        if centers.shape != (n_clusters, dim) or not np.isfinite(centers).all():
            raise LaicError(f"init must be a finite ({n_clusters}, {dim}) array of centres, "
                            f"got shape {centers.shape}")
        centers = _normalise(centers)

    device = torch.device(device or "cpu")
    X_t = torch.from_numpy(X)
    block = _rows_per_block(n_clusters)
    previous = None
    with progress_bar(n_iter, "spherical k-means", unit="iter", enabled=progress) as bar:
        for _ in range(n_iter):
            labels, best = _assign_cosine(X_t, torch.from_numpy(centers).to(device), block)
            if previous is not None and np.array_equal(labels, previous):
                return centers, labels  # centres are the normalised means of exactly these labels
            previous = labels
            centers = _update_centers(X_t, labels, best, n_clusters)
            bar.update(1)
    labels, _ = _assign_cosine(X_t, torch.from_numpy(centers).to(device), block)
    return centers, labels


def _update_centers(X_t: torch.Tensor, labels: np.ndarray, best: np.ndarray, n_clusters: int) -> np.ndarray:
    """Normalised member sums; empty (or zero-sum) clusters re-seeded with the farthest points."""
    sums = torch.zeros((n_clusters, X_t.shape[1]), dtype=torch.float64)
    block = 1 << 14  # rows per float64 block: 32 MB at d=512
    labels_t = torch.from_numpy(labels)
    for start in range(0, X_t.shape[0], block):
        sums.index_add_(0, labels_t[start:start + block], X_t[start:start + block].double())
    sums = sums.numpy()
    norms = np.linalg.norm(sums, axis=1)
    empty = np.flatnonzero(norms == 0)
    centers = (sums / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
    if empty.size:
        farthest = np.argsort(best, kind="stable")[:empty.size]
        centers[empty] = X_t.numpy()[farthest]
    return centers


def zeroshot_assign(V, class_text) -> np.ndarray:
    """CLIP zero-shot: each image goes to the class text of largest dot product.

    V: (N, d) unit image embeddings; class_text: (K, d) unit class-name embeddings.
    Returns (N,) int64; ties to the lower class index.
    """
    V = check_embeddings(V, "image embeddings V")
    class_text = check_embeddings(class_text, "class-name embeddings", dim=V.shape[1])
    labels, _ = _assign_cosine(torch.from_numpy(V), torch.from_numpy(class_text),
                               _rows_per_block(class_text.shape[0]))
    return labels


# ------------------------------------------------------------------ no-train baselines


def _fit_and_assign(X_fit, X_eval, n_clusters: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    if X_eval.shape[1] != X_fit.shape[1]:
        raise LaicError(f"the eval split has {X_eval.shape[1]} columns but the fit split has "
                        f"{X_fit.shape[1]}: both must be computed with the same model and nouns")
    centers, fit_labels = kmeans_fit(X_fit, n_clusters, seed=seed, n_init=n_init)
    return fit_labels, _nearest_center(X_eval, centers)  # the callers checked X_eval


def clip_kmeans(V_fit, V_eval, K: int, *, seed: int, n_init: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the image embeddings, fitted on the fit split.

    V_fit: (N_fit, d); V_eval: (N_eval, d). Returns (labels_fit, labels_eval) int64.
    """
    V_fit = check_embeddings(V_fit, "fit image embeddings")
    V_eval = check_embeddings(V_eval, "eval image embeddings", dim=V_fit.shape[1])
    return _fit_and_assign(V_fit, V_eval, K, seed, n_init)


def tac_notrain(J_fit, J_eval, K: int, *, seed: int, n_init: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """TAC without training: k-means on the concatenation ``[v_i ; s_i]``.

    J_*: (N_*, 2d) rows ``[v_i ; s_i]`` of image embeddings and TAC text
    features (``relation.tac_joint_features``, which never holds S apart:
    at ImageNet size each copy is 2.6 GB). Returns (labels_fit, labels_eval) int64.
    """
    J_fit = finite_rows(J_fit, "J_fit ([V ; S] of the fit split)")
    J_eval = finite_rows(J_eval, "J_eval ([V ; S] of the eval split)")
    return _fit_and_assign(J_fit, J_eval, K, seed, n_init)


def ours_notrain(C_fit, C_eval, K: int, *, seed: int, n_init: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The paper's no-train variant: k-means on the L2-normalised rows of C.

    C_*: (N_*, M) relation matrices, dense or CSR, over the same nouns.
    Returns (labels_fit, labels_eval) int64.
    """
    C_fit = normalize_rows(finite_rows(C_fit, "C_fit"))
    C_eval = normalize_rows(finite_rows(C_eval, "C_eval"))
    return _fit_and_assign(C_fit, C_eval, K, seed, n_init)
