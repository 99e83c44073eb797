"""Validation of the arrays and numbers the library takes: one module, one wording.

Every check raises `LaicError` with the argument's name, what it must be and,
where there is one, the fix; each returns the value in the form the caller
computes with (float32 C-contiguous rows, int64 labels, Python numbers).
"""

from __future__ import annotations

import numbers
import operator

import numpy as np
import scipy.sparse as sp

from laic_core.errors import LaicError

_CHECK_BLOCK = 65536  # rows per block when validating (bounds temporaries to ~130 MB at d=512)


# ------------------------------------------------------------------ numbers


def positive_float(value, name: str, hint: str) -> float:
    """A finite real number > 0 (bools refused), as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value <= 0:
        raise LaicError(f"{name}={value!r}: {hint}")
    return float(value)


def int_at_least(value, name: str, low: int, hint: str | None = None) -> int:
    """An integer (numpy integers included, bools refused) >= low, as int."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low:
        raise LaicError(f"{name}={value!r}: {hint or f'give an integer >= {low}'}")
    return int(number)


def positive_int(value, name: str) -> int:
    return int_at_least(value, name, 1, "give a positive integer")


MAX_SEED = 2**32 - 1  # numpy's RandomState, and so scikit-learn's random_state, take no larger seed


def seed(value) -> int:
    value = int_at_least(value, "seed", 0, f"give an integer in 0..{MAX_SEED}")
    if value > MAX_SEED:
        raise LaicError(f"seed={value}: give an integer in 0..{MAX_SEED} (the largest seed numpy and "
                        "scikit-learn take)")
    return value


def n_clusters(value, n_rows: int, what: str = "K") -> int:
    """A number of clusters in [1, n_rows]: every cluster needs at least one image."""
    value = int_at_least(value, what, 1, "give a positive integer number of clusters")
    if value > n_rows:
        raise LaicError(f"{what}={value} is larger than the number of images N={n_rows}: "
                        f"every cluster needs at least one image; use {what} <= {n_rows}")
    return value


# ------------------------------------------------------------------ matrices


def check_embeddings(X, name: str, *, dim: int | None = None, atol: float = 1e-3) -> np.ndarray:
    """Validate a matrix of L2-normalised embeddings and return it as float32.

    X: (n, d) float array (float16/float32/float64) of unit rows.
    dim: the dimension X must have (that of the embeddings it is compared with).
    Returns a C-contiguous (n, d) float32 array (X itself when it already is one).
    Raises LaicError naming the culprit: wrong type or shape, empty, NaN/inf
    rows (how many and the first), a row that is not unit norm (the worst one
    and its norm), or a dimension mismatch (both dimensions).
    """
    if sp.issparse(X):
        raise LaicError(f"{name} must be a dense (n, d) array of embeddings, got a sparse matrix")
    X = np.asarray(X)
    if X.dtype == object or not np.issubdtype(X.dtype, np.floating):
        raise LaicError(f"{name} must be a float array of embeddings, got dtype {X.dtype}")
    if X.ndim != 2:
        hint = " (a single embedding? use X.reshape(1, -1))" if X.ndim == 1 else ""
        raise LaicError(f"{name} must be a 2-D (n, d) array, got shape {X.shape}{hint}")
    n_rows, n_dims = X.shape
    if n_rows == 0 or n_dims == 0:
        raise LaicError(f"{name} is empty (shape {X.shape}): there is nothing to compare")
    if dim is not None and n_dims != dim:
        raise LaicError(
            f"{name} have dimension {n_dims}, but the embeddings they are compared with have "
            f"dimension {dim}: image and text embeddings probably come from different models; "
            "re-run the embed and vocab stages with the same model.name and model.pretrained")
    X = np.ascontiguousarray(X, dtype=np.float32)

    n_bad, first_bad = 0, -1
    worst_row, worst_dev, worst_norm = -1, -1.0, 1.0
    for start in range(0, n_rows, _CHECK_BLOCK):
        block = X[start:start + _CHECK_BLOCK]
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            if first_bad < 0:
                first_bad = start + int(np.argmax(bad))
            n_bad += int(bad.sum())
            continue
        if n_bad:
            continue  # norms are moot once there are NaN rows; keep counting them
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        deviation = np.abs(norms - 1.0)
        row = int(np.argmax(deviation))
        if deviation[row] > worst_dev:
            worst_row, worst_dev, worst_norm = start + row, float(deviation[row]), float(norms[row])
    if n_bad:
        raise LaicError(
            f"{name} has {n_bad} row(s) with NaN or inf values (first: row {first_bad}); "
            "re-run the stage that computed them, or drop those rows")
    if worst_dev > atol:
        raise LaicError(
            f"{name} rows must be L2-normalised (norm 1 within {atol:g}); row {worst_row} has norm "
            f"{worst_norm:.6g}. Normalise them first: X / np.linalg.norm(X, axis=1, keepdims=True)")
    return X


def load_embeddings(path, *, dim: int | None = None, mmap: bool = False) -> np.ndarray:
    """`check_embeddings` of the (n, d) rows stored at `path` (.npy), its errors naming the file."""
    from laic_core.artifacts import load_npy

    return check_embeddings(load_npy(path, mmap=mmap), str(path), dim=dim)


def float_matrix(array, name: str) -> np.ndarray:
    """A non-empty 2-D float array, as it is (a view of ndarrays and memmaps, never a copy)."""
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise LaicError(f"{name} must be a non-empty 2-D array (rows x dimension), "
                        f"got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise LaicError(f"{name} must hold floating-point embeddings, got dtype {array.dtype}")
    return array


def finite_rows(X, name: str = "X", purpose: str = "re-run the stage that computed it"):
    """X as float32 CSR or C-contiguous float32 ndarray: 2-D, numeric, non-empty, finite.

    A NaN or inf is reported with how many rows (or entries, for CSR) hold one
    and the first of them; `purpose` ends the message (why finite rows matter,
    or the fix).
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float32)
        bad_entries = int((~np.isfinite(X.data)).sum())
        if bad_entries:
            raise LaicError(f"{name} has {bad_entries} NaN or inf entries: {purpose}")
    else:
        X = np.asarray(X)
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.number) or X.dtype == bool:
            raise LaicError(f"{name} must be a 2-D numeric (N, D) array or sparse matrix, "
                            f"got shape {X.shape} dtype {X.dtype}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        bad = ~np.isfinite(X).all(axis=1) if X.size else np.zeros(X.shape[0], bool)
        if bad.any():
            raise LaicError(f"{name} has {int(bad.sum())} row(s) with NaN or inf (first: row "
                            f"{int(np.argmax(bad))}): {purpose}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise LaicError(f"{name} is empty (shape {X.shape}): there is nothing to compare")
    return X


# ------------------------------------------------------------------ labels


def labels(values, name: str) -> np.ndarray:
    """`values` as a 1-D int64 array; whole-number floats are accepted (pandas
    turns int columns with gaps into float), anything else is an error."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise LaicError(f"{name} must be 1-D (one label per sample), got shape {arr.shape}; flatten it first")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise LaicError(f"{name} must hold integer labels, got dtype {arr.dtype}; map labels to integers first")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise LaicError(f"{name} contains NaN or inf; mark unlabelled samples with -1 instead")
        if not np.all(arr == np.round(arr)):
            example = arr[arr != np.round(arr)][0]
            raise LaicError(f"{name} must be integer-valued, got fractional values such as {example}")
    return arr.astype(np.int64, copy=False)


def cluster_ids(values, n: int, name: str, n_clusters: int | None = None) -> np.ndarray:
    """(n,) integer cluster ids as int64, each in 0..n_clusters-1 when n_clusters is given."""
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise LaicError(f"{name} must have one entry per image ({n}), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise LaicError(f"{name} must hold integer cluster ids, got dtype {arr.dtype}")
    if n_clusters is not None and arr.size and (arr.min() < 0 or arr.max() >= n_clusters):
        raise LaicError(f"{name} must lie in 0..{n_clusters - 1}, got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64, copy=False)


def neighbor_index(knn_idx, n: int, name: str) -> np.ndarray:
    """(n, k) int64 neighbour rows of n samples, k >= 1, each in 0..n-1."""
    knn_idx = np.asarray(knn_idx)
    if knn_idx.ndim != 2 or knn_idx.shape[0] != n or knn_idx.shape[1] < 1 \
            or not np.issubdtype(knn_idx.dtype, np.integer):
        raise LaicError(f"{name} must be an (N, k) = ({n}, k) integer array of neighbour rows, "
                        f"got shape {knn_idx.shape} dtype {knn_idx.dtype}")
    if knn_idx.min() < 0 or knn_idx.max() >= n:
        raise LaicError(f"{name} indexes rows 0..{n - 1} of the features, got {knn_idx.min()}..{knn_idx.max()}")
    return knn_idx.astype(np.int64, copy=False)


def bool_mask(values, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,) or arr.dtype != bool:
        raise LaicError(f"{name} must be a bool mask of shape ({n},), got {arr.shape} {arr.dtype}")
    return arr
