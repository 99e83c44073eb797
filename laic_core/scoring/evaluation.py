"""Scoring the clusterings: against labels where they exist, and label-free everywhere.

Pure functions over arrays and tables; the evaluate stage reads the artifacts
and writes what these return. Labels ((N,) int, -1 = unknown) enter only here
and in `laic_core.scoring.metrics`: no other part of the library sees them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from laic_core.errors import LaicError
from laic_core.methods import ordered
from laic_core.scoring.corrections import JUNK, as_partition
from laic_core.scoring.metrics import (
    SCORE_KEYS, best_mapping, clustering_scores, confusion, matched_column_order, size_balance,
)

INTERNAL_KEYS = ("silhouette", "davies_bouldin", "calinski_harabasz")


# ------------------------------------------------------------------ reading tables


def labels_of(table: pd.DataFrame) -> np.ndarray | None:
    """(N,) int64 labels from a features table, or None when it has none (no column, or all < 0)."""
    if "label" not in table.columns:
        return None
    column = table["label"]
    if column.isna().any():  # a manifest with some labels missing: -1 is "unknown"
        column = column.fillna(-1)
    labels = column.to_numpy().astype(np.int64)
    return labels if (labels >= 0).any() else None


def by_row(table: pd.DataFrame, column: str, n_rows: int, source: str, dtype=np.int64) -> np.ndarray:
    """(n_rows,) values of `column`, placed by the table's `row` column.

    Every row 0..n_rows-1 must appear exactly once: a mismatch means the
    artifacts come from different runs.
    """
    if column not in table.columns:
        raise LaicError(f"{source}: no column {column!r} (columns: {', '.join(map(str, table.columns))}); "
                        "re-run the stage that writes it (`dvc repro`)")
    rows = table["row"].to_numpy() if "row" in table.columns else np.arange(len(table))
    if len(table) != n_rows or not np.array_equal(np.sort(rows), np.arange(n_rows)):
        raise LaicError(f"{source}: has {len(table)} rows, but the features have {n_rows} images "
                        "(rows 0..N-1 once each); the artifacts are out of date: run `dvc repro`")
    out = np.empty(n_rows, dtype=dtype)
    out[rows] = table[column].to_numpy().astype(dtype)
    return out


# ------------------------------------------------------------------ scores


def score_methods(assignments: Mapping[str, np.ndarray], labels: np.ndarray | None,
                  n_clusters: int) -> dict[str, dict]:
    """{method: {acc, nmi, ari}} with labels; {method: size_balance(...)} without. Registry order."""
    scores = {}
    for method in ordered(assignments):
        pred = assignments[method]
        if labels is not None:
            full = clustering_scores(labels, pred)
            scores[method] = {k: full[k] for k in SCORE_KEYS}
        else:
            scores[method] = size_balance(pred, max(n_clusters, int(pred.max()) + 1))
    return scores


def corrected_scores(assignments: Mapping[str, np.ndarray], corrected: Mapping[str, np.ndarray],
                     labels: np.ndarray | None, n_clusters: Mapping[str, int]) -> dict[str, dict]:
    """What a person's corrections changed, per corrected method: clusters holding images before
    (`clusters_raw`) and after (`clusters`), junk images (`n_junk`) and, with labels, ACC/NMI/ARI of
    the corrected assignment (scores.json keeps the raw ones).

    assignments / corrected: {method: (N,) the run's / the corrected clusters (JUNK = -1)};
    n_clusters: each method's K. Junk images are one group of their own for the scores
    (`as_partition`): dropping them would flatter the corrected clusters.
    """
    out = {}
    for method in ordered(corrected):
        pred = np.asarray(corrected[method], dtype=np.int64)
        entry: dict[str, Any] = {"clusters_raw": int(np.unique(assignments[method]).size),
                                 "clusters": int(np.unique(pred[pred != JUNK]).size),
                                 "n_junk": int(np.count_nonzero(pred == JUNK))}
        if labels is not None:
            full = clustering_scores(labels, as_partition(pred, n_clusters[method]))
            entry.update({k: full[k] for k in SCORE_KEYS})
        out[method] = entry
    return out


def internal_scores(X, assignments: Mapping[str, np.ndarray], n_clusters: int, *, sample: int = 10000,
                    seed: int = 0) -> dict[str, dict]:
    """Label-free quality of every clustering on the image features X (N, d) unit rows.

    Silhouette (cosine), Davies-Bouldin and Calinski-Harabasz (scikit-learn)
    on one seeded sample of at most `sample` images shared by every method (all
    images when N is smaller), plus the cluster-size balance on all images.
    A clustering with fewer than 2 clusters in the sample has no scores (None).
    Higher is better for silhouette and Calinski-Harabasz, lower for Davies-Bouldin.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    n = X.shape[0]
    chosen = np.arange(n)
    if sample and n > sample:
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    rows = np.asarray(X[chosen], dtype=np.float32)
    out = {}
    for method in ordered(assignments):
        pred = np.asarray(assignments[method])
        entry: dict[str, Any] = dict.fromkeys(INTERNAL_KEYS)
        part = pred[chosen]
        if 2 <= np.unique(part).size < len(part):
            entry["silhouette"] = round(float(silhouette_score(rows, part, metric="cosine")), 6)
            entry["davies_bouldin"] = round(float(davies_bouldin_score(rows, part)), 6)
            entry["calinski_harabasz"] = round(float(calinski_harabasz_score(rows, part)), 3)
        balance = size_balance(pred, max(n_clusters, int(pred.max()) + 1))
        entry.update(size_entropy=balance["size_entropy"], n_empty=balance["n_empty"],
                     min_size=balance["min_size"], max_size=balance["max_size"], sample=int(len(chosen)))
        out[method] = entry
    return out


def centroid_similarity(X, labels, n_clusters: int, *, block_size: int = 65536) -> np.ndarray:
    """(N,) float32 cosine of each row of X (N, d, unit rows; may be memory-mapped) to the normalised
    mean of its cluster: how typical an image is of its cluster, for methods with no confidence of
    their own. labels: (N,) in 0..n_clusters-1; a negative label (junk) counts as one more group.
    Two passes over X in row blocks, so X need not fit in memory twice."""
    labels = np.asarray(labels, dtype=np.int64)
    if X.shape[0] != labels.shape[0]:
        raise LaicError(f"{X.shape[0]} feature rows for {labels.shape[0]} labels")
    groups = np.where(labels < 0, n_clusters, labels)
    sums = np.zeros((n_clusters + 1, X.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], block_size):
        np.add.at(sums, groups[start:start + block_size], np.asarray(X[start:start + block_size], np.float64))
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    means = (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    out = np.empty(X.shape[0], dtype=np.float32)
    for start in range(0, X.shape[0], block_size):
        rows = np.asarray(X[start:start + block_size], np.float32)
        out[start:start + rows.shape[0]] = np.einsum("nd,nd->n", rows, means[groups[start:start + rows.shape[0]]])
    return out


def mapped_accuracy(labels: np.ndarray, pred: np.ndarray, subsets: Mapping[str, np.ndarray]) -> dict:
    """Accuracy of `pred` on each subset under ONE Hungarian matching found on all samples.

    A matching found on a subset alone could only flatter it (e.g. the
    reliable samples), so the matching of all labelled samples is applied to
    every subset. Returns {acc_<subset>: float or None (no labelled sample),
    n_<subset>: labelled samples in it}.
    """
    mapping = best_mapping(labels, pred)
    lookup = np.vectorize(lambda c: mapping.get(int(c), -2), otypes=[np.int64])
    clusters, inverse = np.unique(pred, return_inverse=True)
    matched_class = lookup(clusters)[inverse] if clusters.size else np.zeros(0, np.int64)
    labelled = labels >= 0
    out: dict[str, Any] = {}
    for name, mask in subsets.items():
        chosen = mask & labelled
        n = int(chosen.sum())
        out[f"acc_{name}"] = round(float(np.mean(matched_class[chosen] == labels[chosen])), 6) if n else None
        out[f"n_{name}"] = n
    return out


def neighbor_diagnostics(knn_idx: np.ndarray, pseudo: np.ndarray, reliable: np.ndarray,
                         labels: np.ndarray | None) -> dict:
    """The mined neighbours and the filter: label-free agreement with the pseudo-labels for all
    and for reliable anchors; with labels, the purity of all pairs and of the training pairs
    (the reliable anchors')."""
    from laic_core.method.neighbors import neighbor_agreement

    n = pseudo.shape[0]
    if knn_idx.shape[0] != n or reliable.shape[0] != n:
        raise LaicError(f"neighbour artifacts disagree: knn has {knn_idx.shape[0]} rows, pseudo-labels "
                        f"{n}, reliable mask {reliable.shape[0]}; run `dvc repro`")
    reliable = reliable.astype(bool)
    agreement = neighbor_agreement(knn_idx, pseudo)
    out = {
        "k": int(knn_idx.shape[1]),
        "n": int(n),
        "n_reliable": int(reliable.sum()),
        "fraction_reliable": round(float(reliable.mean()), 6),
        "agreement": round(float(agreement.mean()), 6),
        "agreement_reliable": round(float(agreement[reliable].mean()), 6) if reliable.any() else None,
    }
    if labels is not None:
        labelled = labels >= 0
        purity = neighbor_agreement(knn_idx, labels)
        out["purity"] = round(float(purity[labelled].mean()), 6)
        # every reliable anchor contributes its k pairs, so pair purity is its mean purity
        anchors = labelled & reliable
        out["pair_purity"] = round(float(purity[anchors].mean()), 6) if anchors.any() else None
        unreliable = labelled & ~reliable
        out["pair_purity_unreliable"] = round(float(purity[unreliable].mean()), 6) if unreliable.any() else None
    return out


def purity_curves(spaces: Mapping[str, Any], labels: np.ndarray, ks, *, sample: int = 0, seed: int = 0,
                  knn_options: Mapping[str, Mapping] | None = None) -> dict[str, dict[str, float]]:
    """{space: {"k<k>": mean neighbour purity}} for each representation (rows of X).

    Only labelled samples take part. With `sample` > 0 a seeded random subset
    of that many of them is used (the same one for every space), so that the
    curve stays affordable at ImageNet scale. k's >= the number of samples are
    dropped (`purity_ks_note` says so); returns {} when none is left.
    """
    from laic_core.method.neighbors import neighbor_purity_curve

    chosen = np.flatnonzero(labels >= 0)
    if sample and sample < chosen.size:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(chosen, size=sample, replace=False))
    ks = sorted({int(k) for k in ks if int(k) <= chosen.size - 1})
    if not ks:
        return {}
    everything = chosen.size == labels.shape[0]
    out = {}
    for name, X in spaces.items():
        rows = X if everything else X[chosen]
        if isinstance(rows, np.ndarray) and not rows.flags.writeable:
            rows = np.array(rows)  # torch will not wrap a read-only (memory-mapped) array
        curve = neighbor_purity_curve(rows, labels[chosen], ks, **(knn_options or {}).get(name, {}))
        out[name] = {f"k{k}": round(v, 6) for k, v in curve.items()}
    return out


# ------------------------------------------------------------------ confusion


def confusion_parts(labels: np.ndarray, pred: np.ndarray, n_clusters: int, class_names: Sequence[str] | None,
                    cluster_names: Sequence[str] | None) -> tuple[np.ndarray, list[str], list[str], pd.DataFrame]:
    """(table, row labels, column labels, per-sample frame) for the confusion plots.

    The table is classes x all K clusters (empty ones included, as zero
    columns), the columns reordered so that the cluster matched to class i
    sits in column i, then the unmatched ones. The frame has one row per
    labelled sample: actual (class name) and predicted (the class its cluster
    is matched to, or 'cluster <id>' when unmatched), dvc's confusion template.
    """

    table, class_ids, cluster_ids = confusion(labels, pred)
    full = np.zeros((table.shape[0], n_clusters), dtype=table.dtype)
    full[:, cluster_ids] = table
    mapping = best_mapping(labels, pred)
    order = matched_column_order(len(class_ids), np.arange(n_clusters), mapping, class_ids)

    def class_name(c: int) -> str:
        return class_names[c] if class_names and 0 <= c < len(class_names) else str(c)

    def cluster_label(k: int) -> str:
        name = cluster_names[k] if cluster_names and k < len(cluster_names) else ""
        return f"{k} {name}" if name else str(k)

    rows = [class_name(int(c)) for c in class_ids]
    cols = [cluster_label(int(k)) for k in order]
    labelled = labels >= 0
    predicted = {k: (class_name(mapping[k]) if k in mapping else f"cluster {k}") for k in range(n_clusters)}
    frame = pd.DataFrame({
        "actual": [class_name(int(c)) for c in labels[labelled]],
        "predicted": [predicted[int(c)] for c in pred[labelled]],
    })
    return full[:, order], rows, cols, frame


# ------------------------------------------------------------------ per-image table


def assignment_table(sources: Sequence[str], assignments: Mapping[str, np.ndarray],
                     confidences: Mapping[str, np.ndarray], cluster_names: Mapping[str, Sequence[str]],
                     labels: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                     corrected: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per image, in feature-row order: row, source, (label, class when known), then per method
    its cluster, its corrected cluster (`<method>_corrected`, -1 = junk) when a person corrected the
    method's clusters, and its cluster's name and the image's confidence where the method has them.

    cluster_names[method][k]: the name of the cluster that the images of the run's cluster k end in.
    """
    table = pd.DataFrame({"row": np.arange(len(sources), dtype=np.int64), "source": list(sources)})
    if labels is not None:
        table["label"] = labels
        if class_names:
            table["class"] = [class_names[c] if 0 <= c < len(class_names) else "" for c in labels]
    for method in ordered(assignments):
        pred = assignments[method]
        table[method] = pred
        if corrected and method in corrected:
            table[f"{method}_corrected"] = np.asarray(corrected[method], dtype=np.int64)
        if method in cluster_names:
            names = list(cluster_names[method])
            table[f"{method}_name"] = [names[k] if 0 <= k < len(names) else "" for k in pred]
        if method in confidences:
            table[f"{method}_confidence"] = np.round(confidences[method], 6)
    return table


# ------------------------------------------------------------------ summary


def headline(scores: Mapping[str, Mapping], internal: Mapping[str, Mapping], main: str = "ours",
             baseline: str = "clip_kmeans") -> dict[str, float]:
    """The few numbers worth a column in `dvc exp show`: the method's scores, the baseline's, the gap."""
    out: dict[str, float] = {}
    labelled = any("acc" in v for v in scores.values() if isinstance(v, Mapping))
    keys = SCORE_KEYS if labelled else ("size_entropy",)
    for method in (main, baseline):
        for key in keys:
            value = scores.get(method, {}).get(key)
            if value is not None:
                out[f"{method}_{key}"] = value
    if labelled and main in scores and baseline in scores:
        out[f"{main}_minus_{baseline}_acc"] = round(scores[main]["acc"] - scores[baseline]["acc"], 6)
    silhouette = internal.get(main, {}).get("silhouette")
    if silhouette is not None:
        out[f"{main}_silhouette"] = silhouette
    return out

