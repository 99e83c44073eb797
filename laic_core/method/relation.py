"""The relational representation C: how each image relates to each selected noun.

Row i of C describes image i by its relations to the M selected nouns
(DESIGN.md, method section 2):

- ``kind="ridge"`` (the paper's, the default): ``C = argmin ||V - C T||^2 +
  lambda ||C||^2 = V (T^T T + lambda I)^-1 T^T = V P``. The penalty is
  scale-free: ``lambda = ridge_lambda * trace(T^T T) / d``, a multiple of the
  mean eigenvalue of the nouns' Gram matrix, so its meaning does not change
  with the number of nouns M or the model;
- ``kind="softmax"``: ``C_ij = softmax_j(v_i . t_j / tau)``, the image-to-text
  distribution CLIP's contrastive loss trains (TAC's retrieval weights).

Clustering and neighbours only ever use cosines between rows of C. For ridge,
``<c_i, c_j> = v_i (P P^T) v_j^T``, so with ``P P^T = L L^T`` (L is d x d)
the rows of ``V L`` have exactly the inner products of the rows of C:
`relation_embedding` returns them normalised, (N, d) whatever M is, and C
never has to exist as an N x M matrix (ImageNet: 1.28M x 4,000 nouns would be
20 GB). `relation_weights` gives rows of C itself for the few places that
name nouns (cluster names, the centers' initial words, Fig. 3).

For softmax, C has no such factorisation: it is built in row blocks and, at
scale (``topk > 0``), only the ``topk`` largest entries of each row are kept
in a CSR matrix: peak memory O(block_size * M + N * topk).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from laic_core.errors import LaicError
from laic_core.method.neighbors import _lex_topk
from laic_core.progress import progress_bar
from laic_core.validation import check_embeddings, int_at_least, positive_float

RELATION_KINDS = ("softmax", "ridge")
DEFAULT_SPARSE_TOPK = 64  # entries kept per row when `choose_topk` decides C is too big to be dense


# ------------------------------------------------------------------ validation


def _check_pair(V, T) -> tuple[np.ndarray, np.ndarray]:
    V = check_embeddings(V, "image embeddings V")
    T = check_embeddings(T, "noun embeddings T", dim=V.shape[1])
    if T.shape[0] < 2:
        raise LaicError(
            f"the relation needs at least 2 nouns, got M={T.shape[0]}: the noun filter kept too "
            "few nouns; use a larger vocabulary or raise nouns.gamma")
    return V, T


def _check_topk(topk, n_cols: int) -> int:
    topk = int_at_least(topk, "topk", 0, "give 0 for a dense C or the number of entries kept per row")
    if topk > n_cols:
        raise LaicError(f"topk={topk} exceeds the number of nouns M={n_cols}: "
                        f"keep at most {n_cols} entries per row, or 0 for a dense C")
    return topk


# ------------------------------------------------------------------ blocks of C


def _softmax_block(V_block: torch.Tensor, T: torch.Tensor, tau: float, out: torch.Tensor | None = None):
    """(b, M) float32 softmax_j(v . t_j / tau), computed in place in one (b, M) buffer."""
    logits = torch.matmul(V_block, T.T, out=out) if out is not None else V_block @ T.T
    logits.div_(tau)
    logits.sub_(logits.amax(dim=1, keepdim=True))  # max-shift: exp never overflows
    logits.exp_()
    logits.div_(logits.sum(dim=1, keepdim=True))
    return logits


def ridge_penalty(T, ridge_lambda: float) -> float:
    """The absolute ridge penalty: ``ridge_lambda`` times the mean eigenvalue of T^T T.

    T: (M, d) noun embeddings. The mean eigenvalue is trace(T^T T) / d, which
    is M / d for unit rows: a relative penalty of 1 weighs the reconstruction
    of an average direction and the size of C alike, for any M and d.
    """
    T = np.asarray(T)
    ridge_lambda = positive_float(ridge_lambda, "ridge_lambda",
                                   "give a ridge penalty > 0, relative to the mean eigenvalue of T^T T (e.g. 1.0)")
    mean_eigenvalue = float(np.einsum("ij,ij->", T, T, dtype=np.float64)) / T.shape[1]
    return ridge_lambda * mean_eigenvalue


def ridge_projection(T, ridge_lambda: float) -> np.ndarray:
    """(d, M) float32 P = (T^T T + lambda I)^-1 T^T, so that C = V P (solved once, in float64).

    T: (M, d) unit noun embeddings; ridge_lambda: relative (see `ridge_penalty`).
    """
    T64 = np.asarray(T, dtype=np.float64)
    gram = T64.T @ T64
    gram[np.diag_indices_from(gram)] += ridge_penalty(T64, ridge_lambda)
    return np.linalg.solve(gram, T64.T).astype(np.float32)


def ridge_factor(T, ridge_lambda: float) -> np.ndarray:
    """(d, d) float32 L with L L^T = P P^T for the ridge projection P of `ridge_projection`.

    Rows of ``V L`` have the inner products of the rows of ``C = V P``; L is
    the symmetric square root of P P^T (eigendecomposition in float64; the
    tiny negative eigenvalues of round-off are clipped).
    """
    P = ridge_projection(T, ridge_lambda).astype(np.float64)
    eigenvalues, vectors = np.linalg.eigh(P @ P.T)
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return ((vectors * roots) @ vectors.T).astype(np.float32)


def relation_matrix(
    V,
    T,
    *,
    kind: str = "ridge",
    tau: float = 0.005,
    ridge_lambda: float = 1.0,
    topk: int = 0,
    block_size: int = 8192,
    progress: bool = False,
):
    """Image-to-noun relation matrix C.

    V: (N, d) unit image embeddings; T: (M, d) unit noun embeddings, M >= 2.
    kind: "ridge" (``C = V (T^T T + lambda I)^-1 T^T`` with lambda =
      `ridge_penalty(T, ridge_lambda)`) or "softmax" (``C_ij = softmax_j(v_i .
      t_j / tau)``, rows sum to 1).
    topk: 0 -> dense (N, M) float32 ndarray; > 0 -> scipy.sparse.csr_matrix
      (N, M) float32 with exactly ``topk`` stored entries per row (sorted
      column indices; entries are not renormalised), the largest ones (for
      ridge, largest in absolute value; ties go to the lower column index).
      Underflowed softmax entries may be stored as explicit zeros.
    block_size: rows of V processed at a time; peak extra memory is about
      ``block_size * M * 4`` bytes (twice that for ridge top-k, which ranks
      by magnitude) plus the output.
    progress: show a progress bar (rows/s, ETA) on a terminal.
    """
    V, T = _check_pair(V, T)
    if kind not in RELATION_KINDS:
        raise LaicError(f"relation kind {kind!r} is unknown: choose one of {', '.join(RELATION_KINDS)}")
    tau = positive_float(tau, "tau", "give a softmax temperature > 0 (TAC uses 0.005)")
    ridge_lambda = positive_float(ridge_lambda, "ridge_lambda",
                                   "give a ridge penalty > 0, relative to the mean eigenvalue of T^T T (e.g. 1.0)")
    n_rows, n_cols = V.shape[0], T.shape[0]
    topk = _check_topk(topk, n_cols)
    block_size = int_at_least(block_size, "block_size", 1, "give a positive number of rows per block")

    V_t = torch.from_numpy(V)
    if kind == "softmax":
        T_t = torch.from_numpy(T)

        def blocks(V_block, out=None):
            return _softmax_block(V_block, T_t, tau, out)
    else:
        projection = torch.from_numpy(ridge_projection(T, ridge_lambda))

        def blocks(V_block, out=None):
            if out is None:
                return V_block @ projection
            return torch.matmul(V_block, projection, out=out)

    bar = progress_bar(n_rows, "relation", unit="row", enabled=progress)
    if topk == 0:
        C = np.empty((n_rows, n_cols), dtype=np.float32)
        with bar:
            for start in range(0, n_rows, block_size):
                stop = min(start + block_size, n_rows)
                blocks(V_t[start:stop], out=torch.from_numpy(C[start:stop]))
                bar.update(stop - start)
        return C

    index_dtype = np.int32 if max(n_rows * topk, n_cols) < np.iinfo(np.int32).max else np.int64
    data = np.empty(n_rows * topk, dtype=np.float32)
    indices = np.empty(n_rows * topk, dtype=index_dtype)
    for start in range(0, n_rows, block_size):
        stop = min(start + block_size, n_rows)
        block = blocks(V_t[start:stop])
        key = block.abs() if kind == "ridge" else block
        _, columns = _lex_topk(key, topk)
        columns, _ = torch.sort(columns, dim=1)  # canonical CSR: sorted column indices
        values = torch.gather(block, 1, columns)
        data[start * topk:stop * topk] = values.numpy().ravel()
        indices[start * topk:stop * topk] = columns.numpy().ravel()
        del block, key  # free this block before the next one is allocated: one (b, M) buffer at a time
        bar.update(stop - start)
    bar.close()
    indptr = np.arange(0, n_rows * topk + 1, topk, dtype=index_dtype)
    C = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols), copy=False)
    C.has_sorted_indices = True
    return C


def relation_embedding(
    V,
    T,
    *,
    kind: str = "ridge",
    tau: float = 0.005,
    ridge_lambda: float = 1.0,
    topk: int = 0,
    block_size: int = 65536,
    progress: bool = False,
):
    """Rows whose dot products are the cosines between rows of C: what kNN and k-means use.

    V: (N, d) unit image embeddings; T: (M, d) unit noun embeddings.
    ridge: (N, d) float32 unit rows of ``V L`` (`ridge_factor`): exact, and
      d-dimensional whatever M is; a zero row of C stays a zero row.
    softmax: `normalize_rows(relation_matrix(...))`, (N, M) dense or, with
      ``topk > 0``, top-k CSR.
    Memory beyond the output: O(block_size * d) for ridge.
    """
    if kind not in RELATION_KINDS:
        raise LaicError(f"relation kind {kind!r} is unknown: choose one of {', '.join(RELATION_KINDS)}")
    if kind != "ridge":  # relation_matrix checks V and T
        return normalize_rows(relation_matrix(V, T, kind=kind, tau=tau, ridge_lambda=ridge_lambda, topk=topk,
                                              block_size=min(block_size, 8192), progress=progress))
    V, T = _check_pair(V, T)
    block_size = int_at_least(block_size, "block_size", 1, "give a positive number of rows per block")
    factor = ridge_factor(T, ridge_lambda)
    out = np.empty((V.shape[0], factor.shape[1]), dtype=np.float32)
    with progress_bar(V.shape[0], "relation", unit="row", enabled=progress) as bar:
        for start in range(0, V.shape[0], block_size):
            stop = min(start + block_size, V.shape[0])
            block = V[start:stop] @ factor
            squares = np.einsum("ij,ij->i", block, block, dtype=np.float64)
            out[start:stop] = block * _inverse_norms(squares)[:, None]
            bar.update(stop - start)
    return out


def relation_weights(V, T, *, kind: str = "ridge", tau: float = 0.005, ridge_lambda: float = 1.0) -> np.ndarray:
    """(n, M) float32 rows of C itself for a few images (naming, Fig. 3): dense, unnormalised."""
    return relation_matrix(V, T, kind=kind, tau=tau, ridge_lambda=ridge_lambda, topk=0)


def cluster_mean_relations(V, T, labels, n_clusters: int, *, rows=None, kind: str = "ridge",
                           tau: float = 0.005, ridge_lambda: float = 1.0,
                           block_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean row of C per cluster, without holding C.

    V: (N, d) unit image embeddings; T: (M, d) noun embeddings (the columns of
    C); labels: (N,) ints in 0..K-1; rows: optional (N,) bool mask of the rows
    that count. Returns ((K, M) float64 means, (K,) int64 counts); an empty
    cluster has a zero mean and count 0. Ridge is linear (the mean of C's rows
    is C of the mean image), so it costs one (K, d) x (d, M) product;
    softmax is summed over row blocks, O(block_size * M) memory.
    """
    V, T = _check_pair(V, T)
    labels = np.asarray(labels)
    if labels.shape != (V.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise LaicError(f"labels must be (N,) = ({V.shape[0]},) integers, got shape {labels.shape} "
                        f"dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_clusters):
        raise LaicError(f"labels must lie in 0..{n_clusters - 1}, got {labels.min()}..{labels.max()}")
    keep = np.ones(V.shape[0], bool) if rows is None else np.asarray(rows, bool)
    index = np.flatnonzero(keep)
    counts = np.bincount(labels[index], minlength=n_clusters).astype(np.int64)
    sums = np.zeros((n_clusters, V.shape[1] if kind == "ridge" else T.shape[0]), dtype=np.float64)
    for start in range(0, index.size, block_size):
        chosen = index[start:start + block_size]
        block = V[chosen] if kind == "ridge" else relation_matrix(V[chosen], T, kind=kind, tau=tau)
        member = sp.csr_matrix((np.ones(chosen.size), (labels[chosen], np.arange(chosen.size))),
                               shape=(n_clusters, chosen.size))
        sums += member @ block.astype(np.float64)
    means = sums / np.maximum(counts, 1)[:, None]
    if kind == "ridge":
        means = means @ ridge_projection(T, ridge_lambda).astype(np.float64)
    return means, counts


def normalize_rows(C):
    """L2-normalise the rows of C; zero rows stay zero.

    C: (N, M) dense array or scipy sparse matrix. Returns the same kind
    (ndarray, or csr_matrix for any sparse input), float32, as a new object.
    """
    if sp.issparse(C):
        C = sp.csr_matrix(C, dtype=np.float32)
        counts = np.diff(C.indptr)
        squares = np.zeros(C.shape[0], dtype=np.float64)
        nonempty = counts > 0
        if C.nnz:
            sums = np.add.reduceat(np.square(C.data, dtype=np.float64), C.indptr[:-1][nonempty])
            squares[nonempty] = sums
        inverse = _inverse_norms(squares)
        data = (C.data * np.repeat(inverse, counts)).astype(np.float32, copy=False)
        out = sp.csr_matrix((data, C.indices.copy(), C.indptr.copy()), shape=C.shape)
        out.has_sorted_indices = C.has_sorted_indices
        return out
    C = np.asarray(C)
    if C.ndim != 2:
        raise LaicError(f"C must be a 2-D (N, M) matrix, got shape {C.shape}")
    C = np.asarray(C, dtype=np.float32)
    squares = np.einsum("ij,ij->i", C, C, dtype=np.float64)
    return C * _inverse_norms(squares)[:, None]


def _inverse_norms(squares: np.ndarray) -> np.ndarray:
    norms = np.sqrt(squares)
    inverse = np.zeros_like(norms)
    np.divide(1.0, norms, out=inverse, where=norms > 0)
    return inverse.astype(np.float32)


def tac_text_features(V, T, *, tau: float = 0.005, block_size: int = 8192, out: np.ndarray | None = None,
                      device: str | None = None) -> np.ndarray:
    """TAC's per-image text feature ``s_i = normalise(sum_j softmax_j(v_i . t_j / tau) t_j)``.

    V: (N, d) unit image embeddings; T: (M, d) unit noun embeddings.
    Returns (N, d) float32 unit rows, written into ``out`` when given (an
    (N, d) float32 view, e.g. the right half of TAC's ``[V ; S]``, so that
    ImageNet-sized S is never held twice). Memory: O(block_size * M) beyond
    the output. device: torch device of the products (default CPU).
    """
    V, T = _check_pair(V, T)
    tau = positive_float(tau, "tau", "give a softmax temperature > 0 (TAC uses 0.005)")
    block_size = int_at_least(block_size, "block_size", 1, "give a positive number of rows per block")
    if out is None:
        out = np.empty_like(V)
    elif out.shape != V.shape or out.dtype != np.float32:
        raise LaicError(f"out must be a ({V.shape[0]}, {V.shape[1]}) float32 array, got {out.shape} {out.dtype}")
    return _mix_nouns(V, T, tau, block_size, out, device)


def _mix_nouns(V: np.ndarray, T: np.ndarray, tau: float, block_size: int, out: np.ndarray,
               device: str | None) -> np.ndarray:
    """`tac_text_features` of checked V, T and settings, written into `out`."""
    device = torch.device(device or "cpu")
    V_t, T_t = torch.from_numpy(V), torch.from_numpy(T).to(device)
    for start in range(0, V.shape[0], block_size):
        stop = min(start + block_size, V.shape[0])
        mixed = _softmax_block(V_t[start:stop].to(device), T_t, tau) @ T_t
        mixed = torch.nn.functional.normalize(mixed, dim=1)
        out[start:stop] = mixed.cpu().numpy()
    return out


def tac_joint_features(V, T, *, tau: float = 0.005, block_size: int = 8192,
                       device: str | None = None) -> np.ndarray:
    """(N, 2d) float32 rows ``[v_i ; s_i]``: TAC's no-train representation (`tac_text_features`),
    with S written straight into the right half so that it is never held twice."""
    V, T = _check_pair(V, T)
    tau = positive_float(tau, "tau", "give a softmax temperature > 0 (TAC uses 0.005)")
    block_size = int_at_least(block_size, "block_size", 1, "give a positive number of rows per block")
    d = V.shape[1]
    joint = np.empty((V.shape[0], 2 * d), dtype=np.float32)
    joint[:, :d] = V
    _mix_nouns(V, T, tau, block_size, joint[:, d:], device)
    return joint


def choose_topk(n_rows: int, n_cols: int, topk: int, max_dense_entries: int = 50_000_000) -> int:
    """The number of entries per row to keep in C (0 = dense).

    Rule: a given ``topk > 0`` is kept as is. ``topk == 0`` means "auto":
    dense (0) when the dense C has at most ``max_dense_entries`` entries
    (50M float32 = 200 MB by default), otherwise ``min(n_cols, 64)`` entries
    per row, which keeps C at O(N * 64) memory (ImageNet: 1.28M rows -> 0.7 GB).
    """
    n_rows = int_at_least(n_rows, "n_rows", 1, "give the number of images (>= 1)")
    n_cols = int_at_least(n_cols, "n_cols", 1, "give the number of nouns (>= 1)")
    topk = _check_topk(topk, n_cols)
    max_dense_entries = int_at_least(max_dense_entries, "max_dense_entries", 0,
                                      "give the largest dense C allowed, in entries")
    if topk > 0:
        return topk
    if n_rows * n_cols <= max_dense_entries:
        return 0
    return min(n_cols, DEFAULT_SPARSE_TOPK)
