"""Choosing K without labels: label-free criteria of the cheap part of the pipeline over a range of K.

For each K the representation the method clusters is rebuilt exactly as the
pipeline would build it at that K, because it depends on K: the TAC noun
filter groups the images into ``L = max(round(N / images_per_group), 3 K)``
centres, so the selected nouns, and with them the relation rows, change with
K. Spherical k-means runs once per distinct L (for N >= 900 * K the size term
wins and many K share one L). On those rows, k-means (`kmeans_fit`, as the
``ours_notrain`` baseline and the pseudo-labels use it) runs once per seed,
and four label-free criteria are measured:

- ``silhouette`` (cosine; higher is better), on a seeded sample of at most
  ``sample_size`` rows, since it costs O(n^2);
- ``davies_bouldin`` (lower is better) and ``calinski_harabasz`` (higher is
  better), scikit-learn's, on every row (they cost O(N K D));
- ``stability``: the mean adjusted Rand index between the clusterings of every
  pair of seeds, in [0, 1] in practice (chance level 0, clipped at 0). A
  seed changes both k-means' initialisation and, with ``subsample < 1``, the
  random part of the rows it is fitted on; every row is then assigned to the
  nearest centre, so the clusterings are compared on the same rows. A K that
  matches real structure gives the same partition whatever the seed; a K
  that cuts a group in two (or merges two) cuts it differently each time.

The three geometric criteria are averaged over the seeds. `suggest_k` turns
the curves into one K and says how far to trust it (its docstring gives the
rule). No label is read anywhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
import re
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from laic_core.errors import LaicError
from laic_core.validation import int_at_least

CRITERIA = ("silhouette", "davies_bouldin", "calinski_harabasz", "stability")
HIGHER_IS_BETTER = {"silhouette": True, "davies_bouldin": False, "calinski_harabasz": True, "stability": True}
REPRESENTATIONS = ("relation", "image")
DEFAULT_SAMPLE_SIZE = 5000


# ------------------------------------------------------------------ the range of K


def parse_ks(text: str) -> list[int]:
    """K values from "2-30", "2-30:2" (a step), "4,6,10" or a mix ("2-8,10,12"); sorted, unique.

    Every K must be >= 2: the criteria compare clusters with each other.
    """
    if not isinstance(text, str) or not text.strip():
        raise LaicError(f"--ks {text!r}: give a range such as 2-30, 2-30:2, or a list such as 4,6,10")
    ks: set[int] = set()
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not match:
            raise LaicError(f"--ks {text!r}: cannot read {part!r}; give a range such as 2-30, "
                            "2-30:2, or a list such as 4,6,10")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        step = int(match.group(3)) if match.group(3) else 1
        if high < low or step < 1:
            raise LaicError(f"--ks {text!r}: the range {part!r} is empty; write it low-high, e.g. 2-30")
        ks.update(range(low, high + 1, step))
    if min(ks) < 2:
        raise LaicError(f"--ks {text!r}: K={min(ks)} is too small; the criteria need K >= 2 (start at 2)")
    return sorted(ks)


# ------------------------------------------------------------------ the representation per K


@dataclass(frozen=True)
class RepresentationSettings:
    """How the pipeline would build what it clusters (params.yaml's nouns and relation sections).

    representation: "relation" (the method's normalised relation rows) or
      "image" (the CLIP features themselves: clip_kmeans; no nouns, no K dependence).
    nouns_tau and relation_tau are absolute temperatures (already resolved
    against the model's logit scale); relation_tau matters for softmax only.
    """

    representation: str = "relation"
    nouns_filter: str = "tac"
    gamma: int = 5
    images_per_group: int = 300
    nouns_tau: float = 1.0
    relation_kind: str = "ridge"
    relation_tau: float = 0.005
    ridge_lambda: float = 1.0
    seed: int = 0  # the noun filter's spherical k-means (params.yaml's seed, as the nouns stage uses it)

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise LaicError(f"representation {self.representation!r}: choose one of {', '.join(REPRESENTATIONS)}")
        if self.nouns_filter not in ("tac", "none"):
            raise LaicError(f"nouns.filter {self.nouns_filter!r}: choose tac or none")


@dataclass
class Representation:
    """What k-means clusters at one K: X (N, D) float32 unit rows, and how it was made."""

    k: int
    X: np.ndarray
    n_groups: int  # L of the noun filter (0: no filter or no nouns)
    n_nouns: int  # nouns the relation rows relate to (0 for the image features)


def representations(V: np.ndarray, T: np.ndarray | None, ks: Sequence[int],
                    settings: RepresentationSettings = RepresentationSettings(), *,
                    n_fit: int | None = None) -> Iterator[Representation]:
    """The representation the pipeline would cluster, for each K of ``ks`` in turn.

    V: (N, d) unit image embeddings; T: (M, d) unit noun embeddings (the whole
    vocabulary; unused for ``representation="image"``).
    n_fit: the number of fit images L is computed from (default N; give the
      full count when V is a sample of the fit split, so L is the pipeline's).
    Yields one `Representation` per K, in the order of ``ks``. The noun
    filter's spherical k-means runs once per distinct L; a representation
    that does not depend on K (image features, ``nouns_filter="none"``) is
    computed once and yielded for every K. Memory: one (N, D) array at a time
    beyond the inputs and the (L, d) centres.
    """
    from laic_core.method.noun_filter import default_n_groups, select_nouns
    from laic_core.method.relation import check_embeddings, relation_embedding

    V = check_embeddings(V, "image embeddings V")
    s = settings
    if s.representation == "image":
        for k in ks:
            yield Representation(int(k), V, 0, 0)
        return
    if T is None:
        raise LaicError("the relation representation needs the noun embeddings (data/vocab/text.npy)")
    T = check_embeddings(T, "noun embeddings T", dim=V.shape[1])

    def rows(nouns: np.ndarray) -> np.ndarray:
        if len(nouns) < 2:
            raise LaicError(f"the noun filter kept {len(nouns)} noun(s) of {len(T)}: use a larger "
                            "vocabulary (vocab.source), a larger nouns.gamma, or nouns.filter: none")
        X = relation_embedding(V, nouns, kind=s.relation_kind, tau=s.relation_tau, ridge_lambda=s.ridge_lambda)
        return np.ascontiguousarray(X, dtype=np.float32)

    if s.nouns_filter == "none":
        X = rows(T)
        for k in ks:
            yield Representation(int(k), X, 0, len(T))
        return

    n_fit = len(V) if n_fit is None else int(n_fit)
    built: dict[int, tuple[np.ndarray, int]] = {}  # L -> (rows, nouns): K's that share L share them
    for k in ks:
        n_groups = min(default_n_groups(n_fit, int(k), s.images_per_group), len(V))
        if n_groups not in built:
            built.clear()  # ks are usually sorted, so an L once left does not come back: keep one
            index, _, _ = select_nouns(V, T, n_groups=n_groups, gamma=s.gamma, seed=s.seed, tau=s.nouns_tau)
            built[n_groups] = (rows(T[index]), len(index))
        X, n_nouns = built[n_groups]
        yield Representation(int(k), X, n_groups, n_nouns)


# ------------------------------------------------------------------ criteria at one K


def cluster_seeds(X: np.ndarray, k: int, seeds: Sequence[int], *, n_init: int = 3,
                  subsample: float = 1.0) -> np.ndarray:
    """One k-means clustering of X per seed: (S, N) int64 labels.

    X: (N, D) rows. Seed s fits `kmeans_fit` (seed s) on a seeded random
    ``subsample`` fraction of the rows (all rows when 1) and assigns every
    row to its nearest centre, so all clusterings label the same rows.
    """
    from laic_core.method.cluster import kmeans_fit, kmeans_predict

    if not (isinstance(subsample, numbers.Real) and 0 < subsample <= 1):
        raise LaicError(f"subsample={subsample!r}: give the fraction of rows each seed fits on, in (0, 1]")
    n_rows = X.shape[0]
    n_fit = max(int(round(subsample * n_rows)), k)
    labels = np.empty((len(seeds), n_rows), dtype=np.int64)
    for i, seed in enumerate(seeds):
        if n_fit < n_rows:
            rows = np.sort(np.random.default_rng([int(seed), 1]).choice(n_rows, n_fit, replace=False))
            centers, _ = kmeans_fit(X[rows], k, seed=int(seed), n_init=n_init)
            labels[i] = kmeans_predict(X, centers)
        else:
            _, labels[i] = kmeans_fit(X, k, seed=int(seed), n_init=n_init)
    return labels


def stability(labelings: np.ndarray) -> float:
    """Mean adjusted Rand index over every pair of clusterings of the same rows, clipped at 0.

    labelings: (S, N) ints, S >= 2. 1 when every seed finds the same
    partition; about 0 when they agree no more than chance (below-chance
    agreement counts as 0, so the value stays in [0, 1]).
    """
    from laic_core.scoring.metrics import ari

    labelings = np.asarray(labelings)
    if labelings.ndim != 2 or labelings.shape[0] < 2:
        raise LaicError(f"stability needs at least 2 clusterings (seeds), got shape {labelings.shape}")
    scores = [ari(a, b) for a, b in itertools.combinations(labelings, 2)]
    return float(max(0.0, np.mean(scores)))


def criteria_at_k(X: np.ndarray, labelings: np.ndarray, *, sample: np.ndarray | None = None) -> dict[str, float]:
    """The four criteria of one K: the geometric ones averaged over seeds, and their stability.

    X: (N, D) unit rows; labelings: (S, N) one clustering per seed;
    sample: row indices the silhouette is measured on (default all rows).
    Returns {criterion: value} plus ``silhouette_std`` (its spread over seeds).
    A clustering with a single non-empty cluster has no silhouette (NaN).
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    sample = np.arange(X.shape[0]) if sample is None else np.asarray(sample)
    X_sample = X[sample]
    values: dict[str, list[float]] = {"silhouette": [], "davies_bouldin": [], "calinski_harabasz": []}
    for labels in labelings:
        if np.unique(labels).size < 2:  # k-means left one cluster: nothing to compare
            for name in values:
                values[name].append(np.nan)
            continue
        sampled = labels[sample]
        values["silhouette"].append(float(silhouette_score(X_sample, sampled, metric="cosine"))
                                    if 2 <= np.unique(sampled).size < len(sample) else np.nan)
        values["davies_bouldin"].append(float(davies_bouldin_score(X, labels)))
        values["calinski_harabasz"].append(float(calinski_harabasz_score(X, labels)))
    out = {name: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan for name, v in values.items()}
    sil = np.asarray(values["silhouette"])
    out["silhouette_std"] = float(np.nanstd(sil)) if np.isfinite(sil).any() else np.nan
    out["stability"] = stability(labelings) if len(labelings) >= 2 else np.nan
    return out


# ------------------------------------------------------------------ the curves


@dataclass
class KCurves:
    """Label-free criteria against K. Every array is (P,) for the P values of ``ks``."""

    ks: np.ndarray
    silhouette: np.ndarray
    silhouette_std: np.ndarray
    davies_bouldin: np.ndarray
    calinski_harabasz: np.ndarray
    stability: np.ndarray
    n_groups: np.ndarray
    n_nouns: np.ndarray
    settings: dict = field(default_factory=dict)  # how they were measured (for the JSON and the figure)

    def criterion(self, name: str) -> np.ndarray:
        return np.asarray(getattr(self, name), dtype=np.float64)

    def to_frame(self) -> pd.DataFrame:
        """One row per K: k, the criteria, silhouette_std, n_groups, n_nouns."""
        columns = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        return pd.DataFrame(columns).rename(columns={"ks": "k"})


def k_curves(V: np.ndarray, T: np.ndarray | None, ks: Sequence[int], seeds: Sequence[int],
             settings: RepresentationSettings = RepresentationSettings(), *, n_init: int = 3,
             subsample: float = 1.0, sample_size: int = DEFAULT_SAMPLE_SIZE, sample_seed: int = 0,
             n_fit: int | None = None, progress: bool = False) -> KCurves:
    """The label-free criteria for every K of ``ks`` (see the module docstring).

    V: (N, d) unit image embeddings; T: (M, d) unit noun embeddings (None for
    the image representation). seeds: the k-means seeds (>= 2 for stability).
    n_init: k-means restarts per seed; subsample: the fraction of rows each
    seed fits on; sample_size: rows of the silhouette sample (one seeded
    sample, ``sample_seed``, shared by every K and seed so the curve compares
    like with like). Deterministic given the seeds.
    """
    from laic_core.progress import progress_bar

    ks = [_check_k(k, len(V)) for k in ks]
    if not ks:
        raise LaicError("no K to try: give a range such as 2-30")
    if list(ks) != sorted(set(ks)):
        raise LaicError(f"ks must be increasing without repeats, got {list(ks)}")
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise LaicError(f"seeds={seeds}: give at least 2 distinct seeds; stability compares their clusterings")
    int_at_least(sample_size, "sample_size", 3, "give the number of rows the silhouette uses (>= 3)")
    n_rows = len(V)
    if ks[-1] >= min(n_rows, sample_size):
        raise LaicError(f"K={ks[-1]} needs more rows: the silhouette needs K < rows "
                        f"({min(n_rows, sample_size)} here); lower the largest K")
    sample = (np.sort(np.random.default_rng(sample_seed).choice(n_rows, sample_size, replace=False))
              if n_rows > sample_size else None)

    rows: dict[str, list[float]] = {name: [] for name in (*CRITERIA, "silhouette_std", "n_groups", "n_nouns")}
    with progress_bar(len(ks), "choose K", unit="K", enabled=progress) as bar:
        for rep in representations(V, T, ks, settings, n_fit=n_fit):
            labelings = cluster_seeds(rep.X, rep.k, seeds, n_init=n_init, subsample=subsample)
            for name, value in criteria_at_k(rep.X, labelings, sample=sample).items():
                rows[name].append(value)
            rows["n_groups"].append(rep.n_groups)
            rows["n_nouns"].append(rep.n_nouns)
            bar.update(1)
    measured = {
        **dataclasses.asdict(settings), "seeds": seeds, "n_init": int(n_init), "subsample": float(subsample),
        "silhouette_rows": int(min(n_rows, sample_size)), "rows": int(n_rows),
        "n_fit": int(n_rows if n_fit is None else n_fit),
    }
    return KCurves(
        ks=np.asarray(ks, dtype=np.int64),
        **{name: np.asarray(rows[name], dtype=np.float64) for name in (*CRITERIA, "silhouette_std")},
        n_groups=np.asarray(rows["n_groups"], dtype=np.int64),
        n_nouns=np.asarray(rows["n_nouns"], dtype=np.int64),
        settings=measured,
    )


def _check_k(k, n_rows: int) -> int:
    k = int_at_least(k, "K", 2, "every K must be an integer >= 2")
    if k >= n_rows:
        raise LaicError(f"K={k} needs more images: there are {n_rows}; try K < {n_rows}")
    return int(k)


# ------------------------------------------------------------------ the suggestion

# Confidence levels (see `suggest_k`): (stability at least, margin at least, criteria agreeing at least).
CONFIDENCE_RULES = (("high", 0.9, 0.05, 3), ("medium", 0.8, 0.02, 2))
NEAR_BEST = 0.1  # a criterion supports K when K is within this fraction of its range of its best value
CONTENDER = 0.05  # K's whose score is within this fraction of the best are named as contenders
STABLE = 0.9  # stability from which the seeds are said to agree


@dataclass
class Suggestion:
    """The suggested K and how far to trust it (see `suggest_k`)."""

    k: int
    confidence: str  # "high" | "medium" | "low"
    score: float  # the stability-weighted silhouette at k
    runner_up: int | None  # the best other K (None when only one K was tried)
    margin: float  # (score - runner-up's score) / |score|; 0 with one K
    stability: float
    supporting: list[str]  # the criteria that support k (near their own best there)
    best_by_criterion: dict[str, int]  # each criterion's own best K
    contenders: list[int]  # other K's scoring within CONTENDER of the best
    at_edge: bool  # k is the largest K tried, or the smallest when that is above 2 (the best may lie outside)
    stable_ks: list[int]  # every K whose seeds agree (stability >= STABLE)
    best_above_2: int | None  # when k is 2: the best-scoring K > 2 (None otherwise, or when none was tried)
    reasons: list[str]  # why the confidence is not higher (empty when high)

    def statement(self) -> str:
        """One paragraph for a terminal or a report."""
        parts = [f"K={self.k} ({self.confidence} confidence): stability-weighted silhouette {self.score:.3f}"]
        if self.runner_up is not None:
            parts.append(f"{100 * self.margin:.1f}% above the runner-up K={self.runner_up}")
        parts.append(f"{len(self.supporting)} of {len(CRITERIA)} criteria support it"
                     + (f" ({', '.join(self.supporting)})" if self.supporting else ""))
        parts.append(f"stability {self.stability:.2f}")
        text = "; ".join(parts) + "."
        prefer = ", ".join(f"{name.replace('_', '-')} {k}" for name, k in self.best_by_criterion.items())
        text += f" Each criterion alone prefers: {prefer}."
        if self.best_above_2 is not None:
            text += f" The best K above 2 is K={self.best_above_2}."
        if self.stable_ks:
            text += f" The seeds agree (stability >= {STABLE}) at K={compact_ks(self.stable_ks)}."
        if self.contenders:
            text += f" Nearly as good (within {100 * CONTENDER:.0f}%): K={', '.join(map(str, self.contenders))}."
        if self.reasons:
            text += " Not higher because " + "; ".join(self.reasons) + "."
        return text

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def combined_score(curves: KCurves) -> np.ndarray:
    """(P,) the stability-weighted silhouette: silhouette x stability at every K.

    A K must both separate the rows (silhouette) and be found again by every
    seed (stability): a well-separated but arbitrary cut and a reproducible
    but overlapping one both score low. NaN (no silhouette) scores -inf.
    """
    score = curves.criterion("silhouette") * curves.criterion("stability")
    return np.where(np.isfinite(score), score, -np.inf)


def _oriented(curves: KCurves, name: str) -> np.ndarray:
    """The criterion with larger always better (Davies-Bouldin negated); NaN -> -inf."""
    values = curves.criterion(name)
    values = values if HIGHER_IS_BETTER[name] else -values
    return np.where(np.isfinite(values), values, -np.inf)


def suggest_k(curves: KCurves) -> Suggestion:
    """The K of largest stability-weighted silhouette (`combined_score`), and a confidence.

    Rule: suggest ``argmax_K silhouette(K) x stability(K)`` (the smaller K on
    ties). Confidence combines three things, each reported:

    - margin: how much the best score exceeds the runner-up's, relative to it;
    - agreement: how many of the four criteria support K, a criterion
      supporting K when its value there is within ``NEAR_BEST`` (10%) of its
      range over the tried K from its own best (so near-ties count);
    - stability at K: whether the seeds found the same partition.

    "high" needs stability >= 0.9, margin >= 5% and 3 of 4 criteria;
    "medium" stability >= 0.8, margin >= 2% and 2 of 4; else "low". A best
    K at the top of the range (or at its bottom when that is above 2), or a
    silhouette <= 0 (no K separates the rows), is always "low". K=2 is at
    most "medium": on data with nested groups (animals / vehicles in
    CIFAR-10) the coarsest split is the best-separated and the most stable
    one whatever the number of classes, so the best K above 2 is named too.
    """
    ks = curves.ks
    score = combined_score(curves)
    if not np.isfinite(score).any():
        raise LaicError("no K could be scored (every clustering had a single cluster); "
                        "the features may be degenerate: check data/features/fit.npy")
    best = int(np.argmax(score))  # first maximum: the smaller K on ties
    k = int(ks[best])
    others = np.delete(np.arange(len(ks)), best)
    runner = int(others[np.argmax(score[others])]) if others.size else None
    top = float(score[best])
    margin = 0.0
    if runner is not None and top != 0:
        runner_score = score[runner] if np.isfinite(score[runner]) else 0.0  # unscored K: as a zero score
        margin = float((top - runner_score) / abs(top))
    contenders = [int(ks[i]) for i in others if top > 0 and score[i] >= (1 - CONTENDER) * top]

    supporting, best_by = [], {}
    for name in CRITERIA:
        values = _oriented(curves, name)
        best_by[name] = int(ks[int(np.argmax(values))])
        finite = values[np.isfinite(values)]
        spread = float(finite.max() - finite.min()) if finite.size else 0.0
        if np.isfinite(values[best]) and values[best] >= finite.max() - NEAR_BEST * spread:
            supporting.append(name)

    stab = float(curves.stability[best])
    # K=2 cannot be undercut, so only a first K above 2 is an edge the best may lie beyond.
    at_edge = len(ks) > 1 and (best == len(ks) - 1 or (best == 0 and bool(ks[0] > 2)))  # a bool JSON can hold
    confidence, reasons = "low", []
    for level, min_stability, min_margin, min_agree in CONFIDENCE_RULES:
        failed = []
        if stab < min_stability:
            failed.append(f"stability {stab:.2f} < {min_stability}")
        if margin < min_margin:
            failed.append(f"margin {100 * margin:.1f}% < {100 * min_margin:.0f}%")
        if len(supporting) < min_agree:
            failed.append(f"{len(supporting)} of {len(CRITERIA)} criteria support it (< {min_agree})")
        if not failed:
            confidence = level
            break
        if level == "high":
            reasons = failed  # say what stands between the suggestion and "high"
    if top <= 0:
        confidence, reasons = "low", ["the silhouette is <= 0: no K separates the rows"]
    if at_edge:
        side = "smallest" if best == 0 else "largest"
        reasons = reasons + [f"K={k} is the {side} K tried (the best may lie outside {ks[0]}..{ks[-1]}; "
                             "widen --ks)"]
        confidence = "low"
    best_above_2 = None
    if k == 2:
        above = np.flatnonzero(ks > 2)
        if above.size:
            best_above_2 = int(ks[above[np.argmax(score[above])]])
        if confidence == "high":
            confidence = "medium"
            reasons = ["K=2 is the coarsest split, which these criteria favour on data with nested groups"]
    if confidence == "high":
        reasons = []
    return Suggestion(k=k, confidence=confidence, score=top, runner_up=None if runner is None else int(ks[runner]),
                      margin=margin, stability=stab, supporting=supporting, best_by_criterion=best_by,
                      contenders=contenders, at_edge=at_edge,
                      stable_ks=[int(x) for x in ks[curves.criterion("stability") >= STABLE]],
                      best_above_2=best_above_2, reasons=reasons)


def compact_ks(values: Sequence[int]) -> str:
    """[2, 3, 4, 6, 8, 9] -> '2-4, 6, 8-9'."""
    groups: list[list[int]] = []
    for v in values:
        if groups and v == groups[-1][-1] + 1:
            groups[-1].append(v)
        else:
            groups.append([v])
    return ", ".join(f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups)


# ------------------------------------------------------------------ the figure

