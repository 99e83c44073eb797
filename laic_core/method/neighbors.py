"""Neighbour mining in a representation space, and neighbourhood-consistency filtering.

``knn`` finds the k most similar rows (dot product; cosine for unit rows) of
every row without ever holding an N x N matrix: dense rows are compared
block x tile with torch matmuls and the per-tile top-k candidates merged;
sparse (CSR) rows, such as the top-k relation matrix C, are compared with a
sparse x sparse product per small row block, whose cost is the number of
shared non-zero columns rather than N x M.

At scale (``method="auto"``, the default) the exact search stays where it
is affordable, on a GPU or up to ``APPROXIMATE_ABOVE`` rows, and an
approximate faiss IVF index takes over beyond that on the CPU, whose exact
cost grows as N^2 (about 1.8 h at N = 1.28M on 2 cores); its recall@10 on
ImageNet-sized data is measured in benchmarks/imagenet_scale.py.

Neighbour order is a total order: similarity descending, then index
ascending, so results do not depend on block sizes or thread counts (up to
the float32 rounding of dense similarities, which can differ with block
shapes in the last bit).
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numpy as np
import scipy.sparse as sp
import torch

from laic_core.errors import LaicError
from laic_core.progress import progress_bar
from laic_core.validation import finite_rows, int_at_least

KNN_METHODS = ("auto", "exact", "faiss")
_DEFAULT_MAX_BLOCK_ENTRIES = 1 << 25  # similarity entries per dense block/tile (128 MB of float32)
_SPARSE_MAX_BLOCK_ENTRIES = 1 << 22  # rows x N per sparse block (its product holds a fraction of that)
APPROXIMATE_ABOVE = 200_000  # rows above which "auto" on a CPU (and "faiss") search an IVF index
# The approximate index, chosen on ImageNet-sized synthetic CLIP features (benchmarks/imagenet_scale.py):
# 4 sqrt(N) inverted lists (faiss's guideline: 4 to 16 sqrt(N)) over a flat, deterministic coarse
# quantiser; in each list 4-bit fast-scan product codes of 2 dimensions per byte rank the candidates and
# the best 200 are re-ranked with the exact vectors. A flat IVF is as accurate and ~3x slower
# on 2 cores, where scanning 2 KB per vector is memory bound.
_IVF_LISTS_PER_SQRT_N = 4
_IVF_NPROBE = 16  # lists visited per query
_IVF_RERANK = 200  # candidates re-ranked with the exact vectors per query (k_factor = this / k, >= 2)
_IVF_TRAIN_PER_LIST = 40  # training rows per list (faiss warns below 39)


# ------------------------------------------------------------------ top-k under a total order


def _lex_topk(scores: torch.Tensor, k: int, col_offset: int = 0,
              column_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row top-k of a (B, W) tensor under the order (score desc, column asc).

    Columns are ``position + col_offset``, or ``column_ids[row, position]``
    when given ((B, W) int64, distinct within a row). Returns (values
    (B, min(k, W)), columns (B, min(k, W)) int64), each row sorted by that
    order. torch.topk picks an arbitrary member of a tie at the k-th place;
    rows where the (k+1)-th score equals the k-th are redone exactly (rare for
    float data).
    """
    n_rows, width = scores.shape
    kept = min(k, width)
    if kept == width:
        values = scores.clone()
        positions = torch.arange(width, device=scores.device).expand(n_rows, width).clone()
    else:
        values, positions = torch.topk(scores, kept + 1, dim=1, largest=True, sorted=True)
        tied = torch.nonzero(values[:, kept] == values[:, kept - 1]).flatten().tolist()
        values, positions = values[:, :kept].clone(), positions[:, :kept].clone()
        for row in tied:
            line = scores[row]
            threshold = values[row, kept - 1]
            above = torch.nonzero(line > threshold).flatten()
            at = torch.nonzero(line == threshold).flatten()
            if column_ids is not None:  # the lowest column ids among the tied, not the first positions
                at = at[torch.argsort(column_ids[row, at])]
            positions[row] = torch.cat([above, at[: kept - above.numel()]])
            values[row] = line[positions[row]]
    if column_ids is not None:
        return _sort_lex(values, torch.gather(column_ids, 1, positions))
    return _sort_lex(values, positions + col_offset)


def _lex_topk_numpy(values: np.ndarray, k: int, column_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of `_lex_topk` for (B, W) arrays with W > k and given column ids.

    Used on the many small blocks of the sparse kNN path, where np.argpartition
    (one thread per block, GIL released) beats torch.topk's per-call threading.
    Returns (values (B, k), columns (B, k)) sorted by (value desc, column asc).
    """
    cut = values.shape[1] - (k + 1)
    positions = np.argpartition(values, cut, axis=1)[:, cut:]  # the k+1 largest, unordered
    top = np.take_along_axis(values, positions, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    positions, top = np.take_along_axis(positions, order, axis=1), np.take_along_axis(top, order, axis=1)
    tied = np.flatnonzero(top[:, k] == top[:, k - 1])
    positions, top = positions[:, :k].copy(), top[:, :k].copy()
    for row in tied:  # which of the tied entries is kept is arbitrary above: pick the lowest column ids
        line, threshold = values[row], top[row, k - 1]
        above = np.flatnonzero(line > threshold)
        at = np.flatnonzero(line == threshold)
        at = at[np.argsort(column_ids[row, at], kind="stable")]
        positions[row] = np.concatenate([above, at[: k - above.size]])
        top[row] = line[positions[row]]
    columns = np.take_along_axis(column_ids, positions, axis=1)
    order = np.lexsort((columns, -top), axis=1)  # last key is primary
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(columns, order, axis=1)


def _sort_lex(values: torch.Tensor, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by (value desc, column asc); columns are distinct within a row."""
    columns, order = torch.sort(columns, dim=1)
    values = torch.gather(values, 1, order)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, torch.gather(columns, 1, order)


def _merge_lex(best: tuple[torch.Tensor, torch.Tensor] | None, values: torch.Tensor,
               columns: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of the union of two candidate sets (exact: top-k under a total order is decomposable)."""
    if best is not None:
        values = torch.cat([best[0], values], dim=1)
        columns = torch.cat([best[1], columns], dim=1)
        values, columns = _sort_lex(values, columns)
    return values[:, :k], columns[:, :k]


# ------------------------------------------------------------------ kNN


def _check_k(k, n_rows: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_rows - 1:
        raise LaicError(f"k={k!r} neighbours: give an integer in [1, N-1] = [1, {n_rows - 1}] "
                        f"for N={n_rows} rows" + (" (one row has no neighbours)" if n_rows < 2 else ""))
    return int(k)


def _as_rows(X):
    """X as float32 CSR or C-contiguous float32 ndarray, validated 2-D and finite."""
    return finite_rows(X, "X", "neighbours need finite rows")


def knn(
    X,
    k: int,
    *,
    block_size: int = 4096,
    method: str = "exact",
    max_block_entries: int = _DEFAULT_MAX_BLOCK_ENTRIES,
    device: str | None = None,
    n_jobs: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The k nearest neighbours of every row by dot product (cosine for unit rows).

    X: (N, D) dense array or scipy sparse matrix (CSR), rows normalised by the caller.
    k: neighbours per row, 1 <= k <= N - 1; a row is never its own neighbour
      (an exact duplicate of it can be).
    Returns (N, k) int64 indices, per row by similarity descending, ties to the
      lower index (method="exact").
    block_size: most query rows per block. max_block_entries: most similarity
      entries held at once (dense: block x column tile, default 128 MB; sparse
      rows use blocks of at most 4M rows x N, of which only the stored
      entries of the product are held).
    method: "exact" (blockwise, never N x N in memory), "faiss" (dense X only;
      IndexFlatIP, exact, up to APPROXIMATE_ABOVE rows, and beyond an IVF index
      of product codes re-ranked exactly, approximate and seeded; ties are not
      ordered by index there; the flat index runs on a GPU when `device` is
      CUDA and faiss was built with GPU support) or "auto": exact
      on a CUDA device, for sparse X and up to APPROXIMATE_ABOVE rows, faiss
      beyond (exact, with a warning, when faiss is not installed).
    device: torch device for the dense exact path (default CPU).
    n_jobs: threads for the sparse exact path (default: torch.get_num_threads());
      results do not depend on it.
    progress: show a progress bar (rows/s, ETA) on a terminal.
    """
    if method not in KNN_METHODS:
        raise LaicError(f"knn method {method!r} is unknown: choose one of {', '.join(KNN_METHODS)}")
    int_at_least(block_size, "block_size", 1, "give a positive number of rows per block")
    int_at_least(max_block_entries, "max_block_entries", 1, "give a positive number of entries")
    if n_jobs is None:
        n_jobs = torch.get_num_threads()
    int_at_least(n_jobs, "n_jobs", 1, "give a positive number of threads")
    X = _as_rows(X)
    k = _check_k(k, X.shape[0])
    if method == "auto":
        method = choose_knn_method(X.shape[0], sparse=sp.issparse(X), device=device)
    if method == "faiss":
        if sp.issparse(X):
            raise LaicError("knn(method='faiss') needs dense rows; use method='exact' for a sparse C")
        return _knn_faiss(X, k, block_size, device, progress)
    with progress_bar(X.shape[0], "neighbors", unit="row", enabled=progress) as bar:
        if sp.issparse(X):
            return _knn_sparse(X, k, block_size, min(max_block_entries, _SPARSE_MAX_BLOCK_ENTRIES),
                               int(n_jobs), bar)
        return _knn_dense(X, k, block_size, max_block_entries, torch.device(device or "cpu"), bar)


def _knn_dense(X: np.ndarray, k: int, block_size: int, max_block_entries: int,
               device: torch.device, bar) -> np.ndarray:
    n_rows = X.shape[0]
    rows_per_block = max(1, min(block_size, n_rows, max_block_entries // (k + 1)))
    tile = min(n_rows, max(k + 1, max_block_entries // rows_per_block))
    X_t = torch.from_numpy(X).to(device)
    out = np.empty((n_rows, k), dtype=np.int64)
    for start in range(0, n_rows, rows_per_block):
        stop = min(start + rows_per_block, n_rows)
        queries = X_t[start:stop]
        best = None
        for col in range(0, n_rows, tile):
            col_stop = min(col + tile, n_rows)
            scores = queries @ X_t[col:col_stop].T
            # the rows of this block that fall inside this column tile: mask themselves
            lo, hi = max(start, col), min(stop, col_stop)
            if lo < hi:
                own = torch.arange(lo, hi, device=device)
                scores[own - start, own - col] = -torch.inf
            values, columns = _lex_topk(scores, k, col_offset=col)
            del scores  # one tile of scores alive at a time
            best = _merge_lex(best, values, columns, k)
        out[start:stop] = best[1].cpu().numpy()
        bar.update(stop - start)
    return out


def _knn_sparse(X: sp.csr_matrix, k: int, block_size: int, max_block_entries: int,
                n_jobs: int, bar) -> np.ndarray:
    """Exact kNN of CSR rows: per row block, S = X_block @ X^T as a sparse product
    (work = shared non-zero columns), then top-k among the stored entries of S,
    packed left-aligned into a (b, max stored) array. Rows where the stored
    entries cannot decide (fewer than k, or a k-th value <= 0, which the
    implicit zeros of S tie or beat) are redone on their dense row."""
    n_rows = X.shape[0]
    X_transposed = X.T.tocsr()  # (D, N): row j lists the rows that use column j
    rows_per_block = max(1, min(block_size, n_rows, max_block_entries // n_rows))
    starts = list(range(0, n_rows, rows_per_block))
    out = np.empty((n_rows, k), dtype=np.int64)

    def run(start: int) -> None:
        stop = min(start + rows_per_block, n_rows)
        block = (X[start:stop] @ X_transposed).astype(np.float32, copy=False)
        counts = np.diff(block.indptr)
        width = max(int(counts.max()), k + 1)
        stored = np.arange(width)[None, :] < counts[:, None]  # CSR order is row-major: fill left-aligned
        values = np.full((stop - start, width), -np.inf, dtype=np.float32)
        values[stored] = block.data
        columns = np.full((stop - start, width), n_rows, dtype=block.indices.dtype)
        columns[stored] = block.indices
        values[columns == np.arange(start, stop, dtype=columns.dtype)[:, None]] = -np.inf  # not oneself
        top_values, top_columns = _lex_topk_numpy(values, k, columns)
        # padding (-inf) or a k-th value <= 0 in the top-k: implicit zeros compete, use the dense row
        for row in np.flatnonzero(~(top_values[:, k - 1] > 0)):
            dense = block[row].toarray()
            dense[0, start + row] = -np.inf
            top_columns[row] = _lex_topk_numpy(dense, k, np.arange(n_rows)[None, :])[1][0]
        out[start:stop] = top_columns
        bar.update(stop - start)  # tqdm's update is thread-safe

    def run_every(offset: int) -> None:
        for start in starts[offset::n_jobs]:
            run(start)

    if n_jobs == 1 or len(starts) == 1:
        for start in starts:
            run(start)
    else:  # scipy's sparse product releases the GIL: threads share X and X^T without copies
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            list(pool.map(run_every, range(n_jobs)))
    return out


def choose_knn_method(n_rows: int, *, sparse: bool = False, device: str | None = None) -> str:
    """What ``method="auto"`` runs for N rows: "exact" or "faiss" (see `knn`)."""
    if sparse or n_rows <= APPROXIMATE_ABOVE or torch.device(device or "cpu").type == "cuda":
        return "exact"
    try:
        import faiss  # noqa: F401
    except ImportError:
        warnings.warn(f"knn: {n_rows} rows and faiss is not installed, so the neighbours are exact, which "
                      "takes O(N^2) time; `pip install faiss-cpu` for an approximate index",
                      RuntimeWarning, stacklevel=3)
        return "exact"
    return "faiss"


def _knn_faiss(X: np.ndarray, k: int, block_size: int, device: str | None = None,
               progress: bool = False) -> np.ndarray:
    try:
        import faiss
    except ImportError as error:
        raise LaicError("knn(method='faiss') needs faiss: install it with `pip install faiss-cpu` "
                        "(or faiss-gpu), or use method='exact'") from error
    n_rows, dim = X.shape
    faiss.omp_set_num_threads(torch.get_num_threads())
    if n_rows > APPROXIMATE_ABOVE:
        n_lists = int(_IVF_LISTS_PER_SQRT_N * np.sqrt(n_rows))
        codes = f"PQ{dim // 2}x4fs,RFlat" if dim % 2 == 0 else "SQ8"  # product codes need an even d
        index = faiss.index_factory(dim, f"IVF{n_lists},{codes}", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed, ivf.cp.niter = 0, 10
        # a seeded sample trains the quantisers: the same rows give the same index
        sample = np.random.default_rng(0).choice(n_rows, size=min(n_rows, _IVF_TRAIN_PER_LIST * n_lists),
                                                 replace=False)
        index.train(X[np.sort(sample)])
        ivf.nprobe = min(_IVF_NPROBE, n_lists)
        if codes.endswith("RFlat"):  # re-ranking reads 2 KB per candidate: a fixed number, not per neighbour
            faiss.downcast_index(index).k_factor = max(2.0, _IVF_RERANK / min(k + 1, n_rows))
    else:
        index = faiss.IndexFlatIP(dim)
    if torch.device(device or "cpu").type == "cuda" and getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
        try:
            index = faiss.index_cpu_to_all_gpus(index)
        except RuntimeError:  # faiss-gpu has no fast-scan codes: that index stays on the CPU
            pass
    index.add(X)
    n_search = min(k + 1, n_rows)
    out = np.empty((n_rows, k), dtype=np.int64)
    block_size = max(block_size, 16384)  # faiss parallelises over the queries of one call
    with progress_bar(n_rows, "neighbors (faiss)", unit="row", enabled=progress) as bar:
        for start in range(0, n_rows, block_size):
            stop = min(start + block_size, n_rows)
            similarity, found = index.search(X[start:stop], n_search)
            if (found < 0).any():
                raise LaicError("faiss found fewer than k+1 candidates for some rows (IVF lists too "
                                "small); use method='exact' or a smaller k")
            own = found == np.arange(start, stop)[:, None]
            # drop the row itself; rows whose self was not returned (ties) drop their last hit
            own[~own.any(axis=1), -1] = True
            keep = ~own
            values = similarity[keep].reshape(stop - start, k)
            columns = found[keep].reshape(stop - start, k)
            out[start:stop] = _sort_lex(torch.from_numpy(values), torch.from_numpy(columns))[1].numpy()
            bar.update(stop - start)
    return out


def baseline_neighbors(image_knn, n_fit: int, k: int, source: str, method: str) -> tuple[np.ndarray, str | None]:
    """The first `k` image-space neighbours per fit image for a baseline that mines `k` (TAC, SCAN: 50).

    image_knn: (n_fit, k_mined) int neighbours (``source`` names its file).
    Returns ((n_fit, min(k, k_mined)) int64, a note when fewer than `k` were
    mined: a small collection, or neighbors.image_k below the method's own).
    """
    image_knn = np.asarray(image_knn)
    if image_knn.ndim != 2 or image_knn.shape[0] != n_fit:
        raise LaicError(f"{source} has {image_knn.shape[0] if image_knn.ndim else 0} rows for {n_fit} fit "
                        "images; rerun `dvc repro neighbors`")
    note = None
    if image_knn.shape[1] < k:
        note = f"{image_knn.shape[1]} image neighbours per image ({method} mines {k})"
    return image_knn[:, :k].astype(np.int64, copy=False), note


# ------------------------------------------------------------------ consistency filtering


def _check_knn_labels(knn_idx, labels, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    knn_idx = np.asarray(knn_idx)
    labels = np.asarray(labels)
    if knn_idx.ndim != 2 or knn_idx.shape[1] < 1 or not np.issubdtype(knn_idx.dtype, np.integer):
        raise LaicError(f"knn_idx must be an (N, k) integer array with k >= 1, got shape "
                        f"{knn_idx.shape} dtype {knn_idx.dtype}")
    if labels.ndim != 1 or labels.shape[0] != knn_idx.shape[0]:
        raise LaicError(f"{labels_name} must be a 1-D array with one entry per row of knn_idx "
                        f"({knn_idx.shape[0]}), got shape {labels.shape}")
    if knn_idx.size and (knn_idx.min() < 0 or knn_idx.max() >= knn_idx.shape[0]):
        raise LaicError(f"knn_idx holds indices outside [0, {knn_idx.shape[0] - 1}]: it does not "
                        "belong to these samples")
    return knn_idx, labels


def neighbor_agreement(knn_idx, labels) -> np.ndarray:
    """Per sample, the fraction of its k neighbours whose label equals its own.

    knn_idx: (N, k) int indices into the same N samples; labels: (N,) any labels.
    Returns (N,) float32 in [0, 1]. With true labels this is neighbour purity;
    with pseudo-labels it is a label-free agreement score.
    """
    knn_idx, labels = _check_knn_labels(knn_idx, labels, "labels")
    same = labels[knn_idx] == labels[:, None]
    return same.mean(axis=1, dtype=np.float64).astype(np.float32)


def consistency_filter(knn_idx, pseudo_labels, min_agreement: float = 1.0) -> np.ndarray:
    """Reliable samples: at least ``min_agreement`` of the k neighbours share the pseudo-label.

    knn_idx: (N, k) int; pseudo_labels: (N,) int; min_agreement in (0, 1]
    (1.0 = all neighbours agree). Returns (N,) bool.
    """
    if isinstance(min_agreement, bool) or not isinstance(min_agreement, (int, float, np.floating)) \
            or not 0 < min_agreement <= 1:
        raise LaicError(f"min_agreement={min_agreement!r}: give a fraction in (0, 1] "
                        "(1.0 keeps samples whose neighbours all agree)")
    knn_idx, labels = _check_knn_labels(knn_idx, pseudo_labels, "pseudo_labels")
    n_same = (labels[knn_idx] == labels[:, None]).sum(axis=1)
    return n_same >= agreeing_neighbours_needed(knn_idx.shape[1], min_agreement)


# neighbors.space -> the no-train clustering (a column of the relation stage's assignments) that gives
# the pseudo-labels: the relation rows' k-means (the paper's), or the image features' for the ablation
# without relational signal, whose neighbours are mined among the image features too.
PSEUDO_LABELS = {"relation": "ours_notrain", "image": "clip_kmeans"}
FILTERS = ("consistency", "none")


def reliable_mask(knn_idx, pseudo_labels, min_agreement: float = 1.0, filter: str = "consistency") -> np.ndarray:
    """The reliable samples: `consistency_filter`'s, or every sample with ``filter="none"`` (the
    ablation without the filter, where every image's pseudo-label anchors the training)."""
    if filter not in FILTERS:
        raise LaicError(f"neighbors.filter: {filter!r} is not one of {', '.join(FILTERS)}")
    if filter == "none":
        knn_idx, labels = _check_knn_labels(knn_idx, pseudo_labels, "pseudo_labels")
        return np.ones(labels.shape[0], dtype=bool)
    return consistency_filter(knn_idx, pseudo_labels, min_agreement)


def agreeing_neighbours_needed(k: int, min_agreement: float) -> int:
    """How many of its k neighbours must share an image's pseudo-label for it to be reliable.

    Counts, not float fractions: 7 of 10 must pass min_agreement=0.7. An
    image can only be reliable when its pseudo-label holds more images than this.
    """
    return math.ceil(float(min_agreement) * k - 1e-9)


def neighbor_purity_curve(X, labels, ks: Iterable[int], **knn_kwargs) -> dict[int, float]:
    """Mean neighbour purity for each k in ``ks`` (the paper's Fig. 2).

    X: (N, D) rows (dense or CSR); labels: (N,). kNN is computed once at
    max(ks) and sliced. Returns {k: mean fraction of the k neighbours with the
    same label}, in the order of ``ks``.
    """
    ks = [int(k) for k in ks]
    if not ks:
        raise LaicError("ks is empty: give the neighbourhood sizes to evaluate, e.g. [1, 5, 10]")
    idx = knn(X, max(ks), **knn_kwargs)
    labels = np.asarray(labels)
    _check_knn_labels(idx, labels, "labels")
    for k in ks:
        _check_k(k, idx.shape[0])
    return {k: float(neighbor_agreement(idx[:, :k], labels).mean()) for k in ks}


def training_pairs(knn_idx, reliable) -> np.ndarray:
    """(P, 2) int64 pairs (i, j) for every reliable i and each j in its neighbourhood.

    Ordered by i, then by neighbour rank. P = k * reliable.sum().
    """
    knn_idx, reliable = _check_knn_labels(knn_idx, reliable, "reliable")
    if reliable.dtype != bool:
        raise LaicError(f"reliable must be a boolean mask, got dtype {reliable.dtype}")
    anchors = np.flatnonzero(reliable)
    k = knn_idx.shape[1]
    return np.stack([np.repeat(anchors, k), knn_idx[anchors].ravel()], axis=1).astype(np.int64)


def neighbor_stats(knn_idx, pseudo_labels, reliable) -> dict:
    """Label-free summary of the neighbour graph and the filter (JSON-ready).

    Keys: n, k, n_reliable, fraction_reliable, mean_agreement (all samples),
    mean_agreement_reliable, n_clusters (max pseudo-label + 1),
    cluster_sizes and reliable_per_cluster (lists indexed by pseudo-label).
    """
    knn_idx, labels = _check_knn_labels(knn_idx, pseudo_labels, "pseudo_labels")
    reliable = np.asarray(reliable)
    if reliable.shape != labels.shape or reliable.dtype != bool:
        raise LaicError(f"reliable must be a boolean mask of shape {labels.shape}, got shape "
                        f"{reliable.shape} dtype {reliable.dtype}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise LaicError("pseudo_labels must be non-negative integers (cluster indices)")
    agreement = neighbor_agreement(knn_idx, labels)
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    n_reliable = int(reliable.sum())
    return {
        "n": int(labels.shape[0]),
        "k": int(knn_idx.shape[1]),
        "n_reliable": n_reliable,
        "fraction_reliable": n_reliable / labels.shape[0] if labels.size else 0.0,
        "mean_agreement": float(agreement.mean()) if labels.size else 0.0,
        "mean_agreement_reliable": float(agreement[reliable].mean()) if n_reliable else 0.0,
        "n_clusters": n_clusters,
        "cluster_sizes": np.bincount(labels, minlength=n_clusters).astype(int).tolist(),
        "reliable_per_cluster": np.bincount(labels[reliable], minlength=n_clusters).astype(int).tolist(),
    }
