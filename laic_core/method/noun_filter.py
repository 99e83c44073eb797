"""The TAC-style noun filter: the vocabulary nouns that matter for one collection of images.

Follows TAC (Li et al., "Image Clustering with External Guidance", ICML 2024;
``filter_nouns.py`` of XLearning-SCU/2024-ICML-TAC): cluster the image
embeddings into L groups with spherical k-means, classify every noun "in
reverse" into the group centres with ``softmax_l(c_l . t_j / tau)``, and keep
the ``gamma`` most confident nouns of each centre. TAC uses a plain softmax of
the cosine similarities (``tau = 1`` for CLIP's logit scale of 100) and
``gamma = 5``; both are the defaults.
"""

from __future__ import annotations

import numpy as np

from laic_core.errors import LaicError
from laic_core.method.cluster import spherical_kmeans
from laic_core.validation import float_matrix, positive_int

# Rows of the (nouns x centres) similarity block: about 16 MB of float32 per block.
_BLOCK_ELEMENTS = 1 << 22



def default_n_groups(n_fit: int, n_clusters: int, images_per_group: int = 300) -> int:
    """Number of k-means groups L = max(round(n_fit / images_per_group), 3 K) (DESIGN.md 1).

    Rounds half up (CIFAR-10: 50000 -> 167 and ImageNet-1k: 1281167 -> 4271, as
    in TAC's script) and caps L at n_fit so that every group can hold an image.
    TAC's script hard-codes 17 for STL-10, below the 3 K = 30 this rule gives.
    """
    n_fit = positive_int(n_fit, "n_fit")
    n_clusters = positive_int(n_clusters, "n_clusters")
    images_per_group = positive_int(images_per_group, "images_per_group")
    by_size = (2 * n_fit + images_per_group) // (2 * images_per_group)  # round half up
    return min(max(by_size, 3 * n_clusters), n_fit)


def select_nouns(
    V: np.ndarray,
    T: np.ndarray,
    *,
    n_groups: int,
    gamma: int = 5,
    seed: int = 0,
    tau: float = 1.0,
    device: str | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TAC noun filter: spherical k-means of the images, then the top nouns per centre.

    V: (N, d) L2-normalised image embeddings (float32 or float16).
    T: (M, d) L2-normalised noun embeddings.
    Returns ``select_nouns_from_centers(centers, T, gamma, tau=tau)`` for the
    ``n_groups`` k-means centres of V (deterministic given ``seed``).
    device: torch device of the k-means (default CPU; the same groups up to float rounding).
    progress: show the k-means iterations on a terminal.
    """
    V = float_matrix(V, "V (image embeddings)")
    n_groups = positive_int(n_groups, "n_groups")
    if n_groups > V.shape[0]:
        raise LaicError(f"n_groups={n_groups} exceeds the {V.shape[0]} images: "
                        "use at most one group per image")

    centers, _ = spherical_kmeans(V, n_groups, seed=seed, device=device, progress=progress)
    return select_nouns_from_centers(centers, T, gamma, tau=tau)


def select_nouns_from_centers(
    centers: np.ndarray,
    T: np.ndarray,
    gamma: int = 5,
    *,
    tau: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``gamma`` nouns most confidently classified into each centre.

    centers: (L, d) unit image-group centres; T: (M, d) unit noun embeddings.
    Noun j's distribution over centres is ``p_j = softmax_l(c_l . t_j / tau)``;
    it goes to ``group_j = argmax_l p_j(l)`` (the first on ties) with score
    ``p_j(group_j)``. Each centre keeps its ``gamma`` highest-scoring nouns; a
    centre no noun prefers keeps none, so M' <= gamma * L.

    Returns ``(indices (M',) int64, group (M',) int64, score (M',) float32)``:
    rows of T, their centre, their probability; ordered by group, then score
    descending, then noun index. Works in blocks of nouns: memory is
    O(M + block * L), never (M, L).
    """
    centers = float_matrix(centers, "centers")
    T = float_matrix(T, "T (noun embeddings)")
    if centers.shape[1] != T.shape[1]:
        raise LaicError(f"centers have dimension {centers.shape[1]} but noun embeddings have "
                        f"{T.shape[1]}: both must come from the same CLIP model")
    gamma = positive_int(gamma, "gamma")
    if not (isinstance(tau, (int, float, np.floating)) and np.isfinite(tau) and tau > 0):
        raise LaicError(f"tau={tau!r}: give a softmax temperature > 0 (TAC uses 1)")

    group, score = _best_center(np.ascontiguousarray(centers, dtype=np.float32), T, float(tau))

    n_nouns = T.shape[0]
    position = np.arange(n_nouns)
    order = np.lexsort((position, -score, group))  # last key is primary
    sorted_group = group[order]
    rank_in_group = position - np.searchsorted(sorted_group, sorted_group, side="left")
    keep = order[rank_in_group < gamma]
    return keep.astype(np.int64), group[keep], score[keep].astype(np.float32)


def _best_center(centers: np.ndarray, T: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Per noun: arg-max centre (M,) int64 and its softmax probability (M,) float64."""
    n_nouns, n_centers = T.shape[0], centers.shape[0]
    block = max(1, _BLOCK_ELEMENTS // n_centers)
    group = np.empty(n_nouns, dtype=np.int64)
    score = np.empty(n_nouns, dtype=np.float64)
    for start in range(0, n_nouns, block):
        stop = min(start + block, n_nouns)
        sims = np.asarray(T[start:stop], dtype=np.float32) @ centers.T  # (b, L)
        if not np.isfinite(sims).all():
            raise LaicError(f"noun embeddings {start}..{stop - 1} or the centres hold NaN or inf: "
                            "recompute them (an empty k-means group or a failed encoding)")
        best = sims.argmax(axis=1)
        top = np.take_along_axis(sims, best[:, None], axis=1)
        # p(best) = 1 / sum_l exp((s_l - s_best) / tau); float64 because with
        # tau = 1 and thousands of centres every p sits near 1 / L and the
        # ranking hangs on small differences.
        normaliser = np.exp((sims - top).astype(np.float64) / tau).sum(axis=1)
        group[start:stop] = best
        score[start:stop] = 1.0 / normaliser
    return group, score
