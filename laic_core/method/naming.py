"""Words for clusters: each center's initial noun, and the names reported for each cluster.

Both read per-cluster mean relations, ``(K, M')`` float rows of mean C weight
over a cluster's members (`laic_core.method.relation.cluster_mean_relations`), so
neither ever needs C itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from laic_core.errors import LaicError
from laic_core.validation import bool_mask


def _check_scores(scores, noun_names: Sequence[str], what: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(noun_names):
        raise LaicError(f"{what} must be (K, M') with one column per selected noun ({len(noun_names)}), "
                        f"got shape {scores.shape}; they must be the same selected nouns in the same order")
    if scores.shape[1] == 0:
        raise LaicError("there are no selected nouns; no noun can be chosen")
    return scores


def cluster_init_nouns(scores, noun_names: Sequence[str], *, distinct: bool = True) -> list[str]:
    """One initial noun per cluster: the selected noun of largest mean C weight.

    scores: (K, M') mean relation of each cluster's members (usually its
    reliable members) to each selected noun; noun_names: the M' nouns.

    Distinct clusters can share a top noun. With a template-initialised context
    two such clusters would start as the same center and never separate (they
    get identical gradients), so with `distinct` (and M' >= K) ties are
    resolved by the one-to-one cluster-to-noun matching of largest total mean
    weight (Hungarian); when the top nouns are already distinct that matching
    is exactly the per-cluster argmax.
    """
    scores = _check_scores(scores, noun_names, "scores")
    n_clusters, n_nouns = scores.shape
    best = scores.argmax(axis=1)
    if distinct and n_nouns >= n_clusters and np.unique(best).size < n_clusters:
        rows, cols = linear_sum_assignment(scores, maximize=True)
        best = np.empty(n_clusters, np.int64)
        best[rows] = cols
    return [str(noun_names[j]) for j in best]


def name_clusters(
    centers,
    vocab_text,
    vocab_nouns: Sequence[str],
    member_scores,
    selected_nouns: Sequence[str],
    sizes,
    top: int = 5,
    *,
    nameable=None,
    selected_nameable=None,
    alias=None,
    penalty=None,
    block_size: int = 256,
) -> list[dict]:
    """Per cluster: its size, the vocabulary nouns nearest to its center, and
    the selected nouns with the largest mean C weight among its members.

    centers: (K, d) unit rows; vocab_text: (M, d) unit noun embeddings with
    names vocab_nouns; member_scores: (K, M') mean relation of each cluster's
    members to the selected nouns; sizes: (K,) members per cluster.
    Returns K dicts: {cluster, size, empty, name, nearest_nouns: [{noun, cosine}],
    member_nouns: [{noun, weight}]}; `name` is the nearest vocabulary noun, or
    "" for an empty cluster (it describes no image, so it is not named).
    Two clusters never share a name: when nearest nouns collide, the names are
    the one-to-one matching of clusters to their `top` nearest nouns of largest
    total cosine (Hungarian), which is the nearest noun wherever those differ.
    nameable: (M,) bool, the vocabulary nouns that may name a cluster (and be
    listed as its nearest), e.g. not proper nouns; selected_nameable: (M',)
    bool, the same for the selected nouns listed as its members'. None: all.
    A cluster whose nearest noun may not name it gets the nearest that may.
    alias: (M,) int, per vocabulary noun that may not name a cluster the index
    of a noun that may and means the same (-1: none), e.g. a taxonomic name's
    common name ("Hyla crucifer" -> "spring peeper"): the common name then
    scores as the nearer of the two, and a noun listed through its alias says
    so ({noun, cosine, as}: the cosine is the alias's).
    penalty: (M,) float subtracted from each noun's score before ranking (a
    prior against some nouns, or a hubness correction); the listed `cosine`
    is then that score.
    """
    W = torch.from_numpy(np.array(centers, dtype=np.float32))
    T = torch.from_numpy(np.array(vocab_text, dtype=np.float32))  # a copy: memmaps are read-only
    if T.ndim != 2 or T.shape[1] != W.shape[1] or len(vocab_nouns) != T.shape[0]:
        raise LaicError(f"vocabulary embeddings {tuple(T.shape)} must be (M, d) with d={W.shape[1]} "
                        f"and one row per vocabulary noun ({len(vocab_nouns)})")
    means = _check_scores(member_scores, selected_nouns, "member_scores")
    n_vocab = len(vocab_nouns)
    mask = np.ones(n_vocab, bool) if nameable is None else bool_mask(nameable, n_vocab, "nameable")
    keep = np.flatnonzero(mask)
    if keep.size == 0:
        raise LaicError("no vocabulary noun may name a cluster (all are proper nouns?); "
                        "set centers.name_proper_nouns: true or use a larger vocabulary")
    sources, targets = _alias_pairs(alias, mask, keep)
    T_sources = T[torch.from_numpy(sources)]
    source_nouns = [vocab_nouns[i] for i in sources]
    if penalty is not None:
        penalty = np.asarray(penalty, dtype=np.float32)
        if penalty.shape != (n_vocab,) or not np.isfinite(penalty).all():
            raise LaicError(f"penalty must be ({n_vocab},) finite numbers, got shape {penalty.shape}")
        penalty = torch.from_numpy(penalty[keep])
    if nameable is not None:
        T, vocab_nouns = T[torch.from_numpy(keep)], [vocab_nouns[i] for i in keep]
    targets_t = torch.from_numpy(targets)

    def scores(W_rows: torch.Tensor, columns=None) -> tuple[torch.Tensor, dict]:
        """(rows x columns) name scores (cosines, a noun's raw alias's where that is larger) and
        {(row, column): the raw noun (index into `sources`) that gave it}; columns: positions among
        the nameable nouns (None: all)."""
        cos = W_rows @ (T if columns is None else T[torch.from_numpy(columns)]).T
        via: dict[tuple[int, int], int] = {}
        if sources.size:
            at = targets_t if columns is None else _positions(columns, targets)
            hit = torch.nonzero(at >= 0).flatten()
            if hit.numel():
                raw = W_rows @ T_sources[hit].T  # (rows, aliased nouns)
                cols, back = torch.unique(at[hit], return_inverse=True)  # several taxa may share a name
                best = torch.full((raw.shape[0], cols.numel()), float("-inf"), dtype=raw.dtype)
                best.scatter_reduce_(1, back.expand(raw.shape[0], -1), raw, reduce="amax")
                better = best > cos[:, cols]
                r, j = torch.nonzero((raw == best[:, back]) & better[:, back], as_tuple=True)
                via = dict(zip(zip(r.tolist(), cols[back[j]].tolist()), hit[j].tolist()))
                cos[:, cols] = torch.where(better, best, cos[:, cols])
        if penalty is not None:
            cos -= penalty if columns is None else penalty[torch.from_numpy(columns)]
        return cos, via

    if selected_nameable is not None:  # a noun that may not name a cluster is never listed first
        mask = bool_mask(selected_nameable, len(selected_nouns), "selected_nameable")
        means = np.where(mask[None, :], means, -np.inf)
        top_sel_allowed = int(mask.sum())
    else:
        top_sel_allowed = len(selected_nouns)
    sizes = np.asarray(sizes, dtype=np.int64)
    n_clusters = W.shape[0]
    if means.shape[0] != n_clusters or sizes.shape != (n_clusters,):
        raise LaicError(f"{n_clusters} centers but member scores for {means.shape[0]} clusters and "
                        f"{sizes.shape} sizes; they must describe the same clusters")
    top_vocab = min(top, T.shape[0])
    top_sel = min(top, top_sel_allowed)
    nearest: list[list[dict]] = []
    nearest_index = np.zeros((n_clusters, top_vocab), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, n_clusters, block_size):
            block, via = scores(W[start:start + block_size])
            cos, idx = block.topk(top_vocab, dim=1)
            nearest_index[start:start + len(idx)] = idx.numpy()
            for row, (row_cos, row_idx) in enumerate(zip(cos.tolist(), idx.tolist())):
                nearest.append([{"noun": str(vocab_nouns[j]), "cosine": round(c, 6),
                                 **({"as": source_nouns[via[row, j]]} if (row, j) in via else {})}
                                for c, j in zip(row_cos, row_idx)])
    names = _distinct_names(W, scores, nearest_index, sizes > 0, vocab_nouns)
    out = []
    for k in range(n_clusters):
        empty = bool(sizes[k] == 0)
        order = [] if empty else np.argsort(-means[k], kind="stable")[:top_sel]
        out.append({
            "cluster": k,
            "size": int(sizes[k]),
            "empty": empty,
            "name": names[k],
            "nearest_nouns": nearest[k],
            "member_nouns": [{"noun": str(selected_nouns[j]), "weight": round(float(means[k, j]), 6)}
                             for j in order],
        })
    return out


def _alias_pairs(alias, nameable: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vocabulary indices of the nouns named through an alias, their aliases' positions among `keep`)."""
    if alias is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    alias = np.asarray(alias, dtype=np.int64)
    if alias.shape != nameable.shape or alias.max(initial=-1) >= nameable.size or alias.min(initial=-1) < -1:
        raise LaicError(f"alias must be ({nameable.size},) indices of vocabulary nouns or -1, got shape {alias.shape}")
    position = np.full(nameable.size, -1, np.int64)
    position[keep] = np.arange(keep.size)
    sources = np.flatnonzero((alias >= 0) & ~nameable)
    sources = sources[nameable[alias[sources]]]  # an alias must itself be allowed to name a cluster
    return sources, position[alias[sources]]


def _positions(columns: np.ndarray, targets: np.ndarray) -> torch.Tensor:
    """Per alias target (a position among the nameable nouns), its index in `columns`, or -1."""
    where = {int(c): i for i, c in enumerate(columns)}
    return torch.tensor([where.get(int(t), -1) for t in targets], dtype=torch.long)


def with_glosses(entries: list[dict], gloss) -> list[dict]:
    """names.json entries with what each shown word means: `gloss` on the entry (its name's) and on
    each of its nearest and member nouns, where `gloss(noun)` (e.g. laic_core.text.wordnet.gloss) has one."""
    for position, entry in enumerate(entries):
        text = gloss(entry["name"]) if entry.get("name") else None
        if text:  # right after the name: the report's clusters table shows its keys in this order
            items = list(entry.items())
            at = [k for k, _ in items].index("name") + 1
            entry = entries[position] = dict(items[:at] + [("gloss", text)] + items[at:])
        for key in ("nearest_nouns", "member_nouns"):
            for item in entry.get(key, []):
                text = gloss(item["noun"])
                if text:
                    item["gloss"] = text
    return entries


def _distinct_names(W: torch.Tensor, scores, nearest_index: np.ndarray, named: np.ndarray,
                    vocab_nouns: Sequence[str]) -> list[str]:
    """Per cluster: its nearest noun, or, where those collide, its noun in the one-to-one matching
    of the named clusters to the union of their nearest nouns of largest total cosine; "" if unnamed."""
    names = [""] * len(named)
    rows = np.flatnonzero(named)
    if rows.size == 0 or nearest_index.shape[1] == 0:
        return names
    best = nearest_index[rows, 0]
    if np.unique(best).size < rows.size:  # a collision: match over every named cluster's candidates
        columns = np.unique(nearest_index[rows])
        with torch.no_grad():
            cos = scores(W[torch.from_numpy(rows)], columns)[0].double().numpy()
        if columns.size >= rows.size:
            matched_rows, matched_cols = linear_sum_assignment(cos, maximize=True)
            best = np.empty(rows.size, np.int64)
            best[matched_rows] = columns[matched_cols]
    for row, noun in zip(rows, best):
        names[row] = str(vocab_nouns[noun])
    return names
