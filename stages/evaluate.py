"""evaluate: scores of every method, neighbour diagnostics, figures and the run report.

The only stage that reads ground-truth labels. For each method (clip_kmeans,
tac_notrain, ours_notrain, ours, and zeroshot when class names are known) it
scores the eval-split assignment with ACC (Hungarian), NMI and ARI; on the fit
split it measures neighbour purity against k in CLIP space and in the space
of normalised relation rows (the paper's Fig. 2) and the accuracy of the
pseudo-labels on all vs reliable samples (Fig. 5).

Without labels the stage still succeeds: the scores become label-free
cluster-size figures, the diagnostics keep the label-free neighbour agreement,
and every declared output still exists (CSV files with only their header,
PNGs that say there are no labels), because DVC requires declared outputs.

Writes (see OUTPUTS): metrics/scores.json, metrics/scores_fit.json,
metrics/diagnostics.json, metrics/report.md, metrics/plots/{purity,
pseudo_accuracy,confusion}.csv and metrics/plots/{confusion,purity,
pseudo_accuracy,training}.png.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import typer

from laic_core import figures
from laic_core.artifacts import (
    atomic_path,
    load_json,
    load_matrix,
    load_npy,
    load_parquet,
    load_parquet_meta,
    save_json,
)
from laic_core.config import load_params
from laic_core.errors import LaicError
from laic_core.metrics import best_mapping, cluster_accuracy, clustering_scores, confusion, size_balance
from laic_core.provenance import check_against_params
from laic_core.report import (
    SCORE_KEYS, cluster_id, features_notes, noun_text, purity_ks_note, render_report,
)
from stages import layout
from stages.runner import run, stage_app

app = stage_app()

NO_TRAIN_METHODS = ("clip_kmeans", "tac_notrain", "ours_notrain")

# Inputs (mirrored by the deps of the evaluate stage in dvc.yaml).
NEIGHBORS_KNN = layout.NEIGHBORS / "knn.npy"
NEIGHBORS_RELIABLE = layout.NEIGHBORS / "reliable.npy"
NEIGHBORS_PSEUDO = layout.NEIGHBORS / "pseudo.npy"
CENTERS_NAMES = layout.CENTERS / "names.json"
CENTERS_HISTORY = layout.METRICS / "centers_history.csv"
CENTERS_SUMMARY = layout.METRICS / "centers.json"
ZEROSHOT_ASSIGN = layout.ZEROSHOT / "assign_eval.parquet"

# Outputs (mirrored by the outs/metrics/plots of the evaluate stage in dvc.yaml).
SCORES = layout.METRICS / "scores.json"
SCORES_FIT = layout.METRICS / "scores_fit.json"
DIAGNOSTICS = layout.METRICS / "diagnostics.json"
REPORT = layout.METRICS / "report.md"
PURITY_CSV = layout.PLOTS / "purity.csv"
PSEUDO_CSV = layout.PLOTS / "pseudo_accuracy.csv"
CONFUSION_CSV = layout.PLOTS / "confusion.csv"
CONFUSION_PNG = layout.PLOTS / "confusion.png"
PURITY_PNG = layout.PLOTS / "purity.png"
PSEUDO_PNG = layout.PLOTS / "pseudo_accuracy.png"
TRAINING_PNG = layout.PLOTS / "training.png"
OUTPUTS = (SCORES, SCORES_FIT, DIAGNOSTICS, REPORT, PURITY_CSV, PSEUDO_CSV, CONFUSION_CSV,
           CONFUSION_PNG, PURITY_PNG, PSEUDO_PNG, TRAINING_PNG)


relation_assign = layout.relation_assign


def centers_assign(role: str) -> Path:
    return layout.CENTERS / f"assign_{role}.parquet"


# ------------------------------------------------------------------ reading


def labels_of(table: pd.DataFrame) -> np.ndarray | None:
    """(N,) int64 labels from a features table, or None when it has none (no column, or all < 0)."""
    if "label" not in table.columns:
        return None
    column = table["label"]
    if column.isna().any():  # a manifest with some labels missing: -1 is "unknown"
        column = column.fillna(-1)
    labels = column.to_numpy().astype(np.int64)
    return labels if (labels >= 0).any() else None


def by_row(table: pd.DataFrame, column: str, n_rows: int, source: Path | str) -> np.ndarray:
    """(n_rows,) int64 values of `column`, placed by the table's `row` column.

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
    out = np.empty(n_rows, dtype=np.int64)
    out[rows] = table[column].to_numpy().astype(np.int64)
    return out


def load_assignments(role: str, n_rows: int, zeroshot: Path | None = None) -> dict[str, np.ndarray]:
    """{method: (n_rows,) cluster ids} of the no-train baselines, ours and (optionally) zeroshot."""
    out: dict[str, np.ndarray] = {}
    relation = load_parquet(relation_assign(role))
    for method in NO_TRAIN_METHODS:
        if method in relation.columns:
            out[method] = by_row(relation, method, n_rows, relation_assign(role))
    centers = load_parquet(centers_assign(role))
    out["ours"] = by_row(centers, "cluster", n_rows, centers_assign(role))
    if "init_cluster" in centers.columns:  # what training started from: the initial centers
        out["ours_init"] = by_row(centers, "init_cluster", n_rows, centers_assign(role))
    if zeroshot is not None and zeroshot.is_file() and load_parquet_meta(zeroshot).get("available"):
        out["zeroshot"] = by_row(load_parquet(zeroshot), "cluster", n_rows, zeroshot)
    return out


def _read_names(path: Path) -> list | None:
    """names.json as a list of per-cluster entries, or None when absent or not a list."""
    if not path.is_file():
        return None
    names = load_json(path)
    if isinstance(names, Mapping):  # tolerate {"clusters": [...]}
        names = next((v for v in names.values() if isinstance(v, list)), None)
    return names if isinstance(names, list) else None


# ------------------------------------------------------------------ scores


def score_methods(assignments: Mapping[str, np.ndarray], labels: np.ndarray | None,
                  n_clusters: int) -> dict[str, dict]:
    """{method: {acc, nmi, ari}} with labels; {method: size_balance(...)} without."""
    scores = {}
    for method, pred in assignments.items():
        if labels is not None:
            full = clustering_scores(labels, pred)
            scores[method] = {k: full[k] for k in SCORE_KEYS}
        else:
            scores[method] = size_balance(pred, max(n_clusters, int(pred.max()) + 1))
    return scores


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
    """Label-free agreement of the mined neighbours with the pseudo-labels; their purity with labels."""
    from laic_core.neighbors import neighbor_agreement

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
    return out


def purity_curves(spaces: Mapping[str, Any], labels: np.ndarray, ks, *, sample: int = 0, seed: int = 0,
                  knn_options: Mapping[str, Mapping] | None = None) -> dict[str, dict[str, float]]:
    """{space: {"k<k>": mean neighbour purity}} for each representation (rows of X).

    Only labelled samples take part. With `sample` > 0 a seeded random subset
    of that many of them is used (the same one for every space), so that the
    curve stays affordable at ImageNet scale. k's >= the number of samples are
    dropped; returns {} when none is left.
    """
    from laic_core.neighbors import neighbor_purity_curve

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


def cluster_label(entry: Any, cid: int) -> str:
    """'<id>' or '<id> <name or first noun>' from one names.json entry."""
    if isinstance(entry, Mapping):
        if isinstance(entry.get("name"), str) and entry["name"]:
            return f"{cid} {entry['name']}"
        for value in entry.values():
            if isinstance(value, (list, tuple)) and value:
                return f"{cid} {noun_text(value[0])}"
    return str(cid)


def confusion_parts(labels: np.ndarray, pred: np.ndarray, class_names: list | None,
                    names: list | None) -> tuple[np.ndarray, list[str], list[str], pd.DataFrame]:
    """(table, row labels, column labels, per-sample frame) for the confusion plots.

    The table is classes x clusters with the columns reordered so the cluster
    matched to class i sits in column i. The frame has one row per labelled
    sample: actual (class name) and predicted (the class its cluster is
    matched to, or 'cluster <id>' when unmatched), dvc's confusion template.
    """
    table, class_ids, cluster_ids = confusion(labels, pred)
    mapping = best_mapping(labels, pred)
    order = figures.matched_column_order(len(class_ids), cluster_ids, mapping, class_ids)

    def class_name(c: int) -> str:
        return class_names[c] if class_names and 0 <= c < len(class_names) else str(c)

    by_id = {cluster_id(entry, position): entry for position, entry in enumerate(names or [])}
    rows = [class_name(int(c)) for c in class_ids]
    cols = [cluster_label(by_id.get(int(cluster_ids[j])), int(cluster_ids[j])) for j in order]
    labelled = labels >= 0
    predicted = {int(c): (class_name(mapping[int(c)]) if int(c) in mapping else f"cluster {int(c)}")
                 for c in cluster_ids}
    frame = pd.DataFrame({
        "actual": [class_name(int(c)) for c in labels[labelled]],
        "predicted": [predicted[int(c)] for c in pred[labelled]],
    })
    return table[:, order], rows, cols, frame


# ------------------------------------------------------------------ writing


def save_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _save(fig, path: Path) -> None:
    figures.save_figure(fig, path)


def _history_figure(path: Path):
    if not path.is_file():
        return figures.message_figure(f"no training history ({path} is missing)", "Training")
    history = pd.read_csv(path)
    if history.empty:
        return figures.message_figure("the training history is empty", "Training")
    x = next((c for c in ("step", "epoch") if c in history.columns), None)
    steps = history[x] if x else pd.Series(np.arange(1, len(history) + 1))
    # a term that is zero throughout is not in use (e.g. ce with ce_weight 0): no panel for it
    series = {c: history[c] for c in history.columns
              if c != x and pd.api.types.is_numeric_dtype(history[c]) and history[c].abs().max() > 0}
    if not series:
        return figures.message_figure("the training history has no numeric columns", "Training")
    return figures.training_figure(steps, series, x_label=x or "logged step")


def key_params(params) -> dict[str, Any]:
    """The settings a reader of the report needs, flat (temperatures as resolved for the model)."""
    p = params
    spec = load_json(layout.RELATION_SPEC) if layout.RELATION_SPEC.is_file() else {}
    trained = load_json(CENTERS_SUMMARY) if CENTERS_SUMMARY.is_file() else {}
    relation = (f"ridge (lambda {p.relation.ridge_lambda} x the mean eigenvalue of T^T T"
                + (f" = {spec['ridge_penalty']:.4g}" if spec.get("ridge_penalty") is not None else "") + ")"
                if p.relation.kind == "ridge" else f"softmax (tau {spec.get('tau', p.relation.tau)})")
    out = {
        "dataset": f"{p.dataset.name} ({p.dataset.kind}, {p.dataset.root})",
        "splits (fit / eval)": f"{p.dataset.fit_split} / {p.dataset.eval_split}",
        "clusters K": p.dataset.num_clusters,
        "model": f"{Path(p.model.name).stem if p.model.name.endswith('.json') else p.model.name} "
                 f"({p.model.pretrained})" + (f", logit scale {spec['logit_scale']:.1f}"
                                               if spec.get("logit_scale") else ""),
        "vocabulary": p.vocab.source,
        "noun filter": f"{p.nouns.filter} (gamma {p.nouns.gamma})",
        "relation": relation,
        "neighbours": f"k {p.neighbors.k}, min agreement {p.neighbors.min_agreement}",
        "centers": (f"n_ctx {p.centers.n_ctx}, tau {trained.get('tau', p.centers.tau):.4g}, "
                    f"{trained.get('steps', p.centers.steps)} steps, entropy weight {p.centers.entropy_weight}, "
                    f"ce weight {p.centers.ce_weight}, lr {p.centers.lr}") if trained else
                   f"n_ctx {p.centers.n_ctx}, tau {p.centers.tau}",
        "seed": p.seed,
    }
    return out


def _knn_options(params) -> dict[str, dict]:
    from laic_core.models import resolve_device

    device = "cuda" if resolve_device(params.model.device).type == "cuda" else "cpu"
    return {"clip": {"method": params.neighbors.method, "device": device}, "relation": {}}


@app.command()
def main(params_file: Path = typer.Option("params.yaml", "--params", help="parameters file")) -> None:
    params = load_params(params_file)
    K = params.dataset.num_clusters
    # The report names params' model: the features must be that model's.
    check_against_params([layout.features_meta("fit"), layout.features_meta("eval")], params.model,
                         params_file, layout.HASH_CACHE)
    layout.PLOTS.mkdir(parents=True, exist_ok=True)

    # ---- eval split: every method
    eval_table = load_parquet(layout.features_meta("eval"))
    class_names = load_parquet_meta(layout.features_meta("eval")).get("class_names") or None
    eval_labels = labels_of(eval_table)
    n_eval = len(eval_table)
    eval_assign = load_assignments("eval", n_eval, ZEROSHOT_ASSIGN)
    scores = score_methods(eval_assign, eval_labels, K)
    save_json(SCORES, scores)

    # ---- fit split: the methods that have a fit assignment (all but zeroshot)
    fit_table = load_parquet(layout.features_meta("fit"))
    fit_labels = labels_of(fit_table)
    n_fit = len(fit_table)
    fit_assign = load_assignments("fit", n_fit)
    scores_fit = score_methods(fit_assign, fit_labels, K)
    save_json(SCORES_FIT, scores_fit)

    # ---- neighbour and pseudo-label diagnostics (fit split)
    knn_idx = load_npy(NEIGHBORS_KNN)
    reliable = load_npy(NEIGHBORS_RELIABLE).astype(bool)
    pseudo = load_npy(NEIGHBORS_PSEUDO).astype(np.int64)
    if pseudo.shape[0] != n_fit:
        raise LaicError(f"{NEIGHBORS_PSEUDO}: {pseudo.shape[0]} pseudo-labels for {n_fit} fit images; "
                        "the artifacts are out of date: run `dvc repro`")
    diagnostics: dict[str, Any] = {
        "labelled": eval_labels is not None,
        "n_eval": n_eval,
        "n_fit": n_fit,
        "neighbors": neighbor_diagnostics(knn_idx, pseudo, reliable, fit_labels),
    }
    if eval_labels is not None:
        diagnostics["n_eval_labelled"] = int((eval_labels >= 0).sum())
    # Whatever embed had to say about the data goes into the report too.
    notes = features_notes(load_parquet_meta(layout.features_meta("fit")), str(layout.features_meta("fit")))
    if params.dataset.eval_split != params.dataset.fit_split:  # else eval.parquet is a copy of fit
        notes += features_notes(load_parquet_meta(layout.features_meta("eval")),
                                str(layout.features_meta("eval")))
    if "zeroshot" in eval_assign:
        diagnostics["zeroshot"] = {"available": True}
        if eval_labels is not None:
            lab = eval_labels >= 0
            diagnostics["zeroshot"]["top1"] = round(
                float(np.mean(eval_assign["zeroshot"][lab] == eval_labels[lab])), 6)
    else:
        diagnostics["zeroshot"] = {"available": False}

    if fit_labels is not None:
        V_fit = load_npy(layout.features("fit"), mmap=True)
        rows_fit = load_matrix(layout.relation_rows("fit"))
        if V_fit.shape[0] != n_fit or rows_fit.shape[0] != n_fit:
            raise LaicError(f"fit features ({V_fit.shape[0]} rows) and relation rows ({rows_fit.shape[0]} rows) "
                            f"do not match the {n_fit} fit images; run `dvc repro`")
        purity = purity_curves({"clip": V_fit, "relation": rows_fit}, fit_labels, params.evaluate.purity_ks,
                               sample=params.evaluate.purity_sample, seed=params.seed,
                               knn_options=_knn_options(params))
        pseudo_acc = mapped_accuracy(fit_labels, pseudo, {
            "all": np.ones(n_fit, bool), "reliable": reliable, "unreliable": ~reliable})
        n_labelled_fit = int((fit_labels >= 0).sum())
        diagnostics["purity_samples"] = min(params.evaluate.purity_sample or n_labelled_fit, n_labelled_fit)
        note = purity_ks_note(params.evaluate.purity_ks, n_labelled_fit, params.evaluate.purity_sample)
        if note:
            print(f"evaluate: warning: {note}", file=sys.stderr)
            notes.append(note)
        diagnostics["purity"] = purity
        diagnostics["pseudo_labels"] = pseudo_acc
        diagnostics["pseudo_labels"]["hungarian_acc_all"] = round(cluster_accuracy(fit_labels, pseudo), 6)
    else:
        purity, pseudo_acc = {}, {}
    if notes:
        diagnostics["notes"] = notes
    save_json(DIAGNOSTICS, diagnostics)

    # ---- plot data (CSV) and figures (PNG); every file exists with or without labels
    no_labels = "no ground-truth labels:\nthis figure needs them"
    if purity:
        ks = [int(k[1:]) for k in purity["clip"]]
        save_csv(PURITY_CSV, pd.DataFrame({"k": ks, **{s: list(purity[s].values()) for s in purity}}))
        legend = {"clip": "CLIP image features", "relation": "relation rows (normalised C)"}
        _save(figures.purity_figure(ks, {legend.get(s, s): list(c.values()) for s, c in purity.items()}),
              PURITY_PNG)
    else:
        save_csv(PURITY_CSV, pd.DataFrame(columns=["k", "clip", "relation"]))
        reason = no_labels if fit_labels is None else "too few labelled fit images for any k"
        _save(figures.message_figure(reason, "Neighbour purity"), PURITY_PNG)

    if pseudo_acc:
        subsets = ["all", "reliable", "unreliable"]
        frame = pd.DataFrame({"subset": subsets, "accuracy": [pseudo_acc[f"acc_{s}"] for s in subsets],
                              "n": [pseudo_acc[f"n_{s}"] for s in subsets]})
        save_csv(PSEUDO_CSV, frame)
        _save(figures.pseudo_accuracy_figure(subsets, [a if a is not None else float("nan")
                                                       for a in frame["accuracy"]], frame["n"]), PSEUDO_PNG)
    else:
        save_csv(PSEUDO_CSV, pd.DataFrame(columns=["subset", "accuracy", "n"]))
        _save(figures.message_figure(no_labels, "Pseudo-label accuracy"), PSEUDO_PNG)

    names = _read_names(CENTERS_NAMES)
    if eval_labels is not None:
        table, rows, cols, frame = confusion_parts(eval_labels, eval_assign["ours"], class_names, names)
        save_csv(CONFUSION_CSV, frame)
        _save(figures.confusion_figure(table, rows, cols, title=f"ours on {params.dataset.name} (eval)"),
              CONFUSION_PNG)
    else:
        save_csv(CONFUSION_CSV, pd.DataFrame(columns=["actual", "predicted"]))
        _save(figures.message_figure(no_labels, "Confusion matrix"), CONFUSION_PNG)

    _save(_history_figure(CENTERS_HISTORY), TRAINING_PNG)

    # ---- the report (links are relative to metrics/)
    plots = {"confusion matrix of ours (eval)": CONFUSION_PNG, "neighbour purity against k": PURITY_PNG,
             "pseudo-label accuracy": PSEUDO_PNG, "training curves": TRAINING_PNG}
    report = render_report(
        scores, diagnostics, fit_scores=scores_fit, clusters=names, params=key_params(params),
        figures={caption: path.relative_to(REPORT.parent).as_posix() for caption, path in plots.items()},
        title=f"LAIC run report: {params.dataset.name}",
    )
    with atomic_path(REPORT) as tmp:
        tmp.write_text(report)
    _print_summary(scores)


def _print_summary(scores: Mapping[str, Mapping]) -> None:
    for method, entry in scores.items():
        shown = ", ".join(f"{k} {v}" for k, v in entry.items())
        print(f"evaluate: {method}: {shown}")


if __name__ == "__main__":
    run(app)
