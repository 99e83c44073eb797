"""evaluate: scores of every method, diagnostics, the per-image table, figures and the run report.

The only stage that reads ground-truth labels (laic_core.scoring.evaluation holds the
logic). For each registered method (laic_core.methods) whose assignments
exist it scores the eval split with ACC (Hungarian), NMI and ARI, and every
method also label-free (silhouette, Davies-Bouldin, Calinski-Harabasz on the
image features, cluster-size balance). On the fit split it measures neighbour
purity against k in CLIP space and in relation space (the paper's Fig. 2)
and the pseudo-labels' accuracy on all vs reliable images (Fig. 5).

Without labels the stage still succeeds: scores become label-free, and every
declared output exists (CSV files with only their header, PNGs that say
there are no labels), because DVC requires declared outputs.

A person's corrections (clusters.yaml: renames, merges, junk; see
laic_core.scoring.corrections) are resolved against the run (stages/corrections.py):
a line made for this run's clusters is applied as written, one written for
another run is carried to the cluster that clearly holds its cluster's images
or set aside, and the console, the report and (through the table) the browser
say which. The per-image table gains `<method>_corrected` and the corrected
names (and records in its metadata the corrections applied, the lines read,
each method's partition fingerprint and what became of each line, for the
browser, export and predict), the gallery and the report show the corrected
clusters of `ours`, and metrics/scores_corrected.json scores the corrected
assignments beside the raw ones of scores.json. data/evaluate/partitions.parquet
keeps the partitions lines were written for, from run to run.

Writes layout.EVALUATE_OUTPUTS: metrics/{scores,scores_fit,scores_corrected,
internal,diagnostics,summary}.json, metrics/report.md, data/evaluate/assignments.
{parquet,csv} (one row per image: source, label, every method's cluster,
name and confidence), data/evaluate/partitions.parquet and metrics/plots/ (purity, pseudo-label accuracy,
confusion over all K clusters, training curves, the cluster gallery, the
joint projection of images and nouns, the relation matrix).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from laic_core.artifacts import (
    atomic_path, load_csv, load_json, load_matrix, load_npy, load_parquet, load_parquet_meta, save_csv, save_json,
    save_parquet,
)
from laic_core.errors import LaicError
from laic_core.method.relation import relation_weights
from laic_core.methods import METHODS
from laic_core.scoring.corrections import (
    change_lines, corrected_labels, corrected_names, corrections_record, describe, remaining_clusters,
)
from laic_core.scoring.evaluation import (
    assignment_table, by_row, confusion_parts, corrected_scores, headline, internal_scores, labels_of,
    mapped_accuracy, neighbor_diagnostics, purity_curves, score_methods,
)
from laic_core.scoring.metrics import cluster_accuracy
from laic_core.views import figures, gallery
from laic_core.views.report import corrections_section, features_notes, one_class_note, purity_ks_note, render_report
from stages import layout
from stages.corrections import announce, outcomes, resolve_run, save_store
from stages.inputs import PARAMS_OPTION, dataset_title, open_stage
from stages.runner import run, stage_app

app = stage_app()

NO_LABELS = "no ground-truth labels:\nthis figure needs them"
GALLERY_CONFIDENT = 6  # thumbnails of a cluster's most confident members, before its random ones
RELATION_ROWS_SHOWN = 600  # images in the relation-matrix figure (a seeded sample, grouped by cluster)


# ------------------------------------------------------------------ reading


def load_assignments(role: str, n_rows: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({method: (n_rows,) cluster ids}, {method: (n_rows,) confidence}) of every registered method
    whose table exists (zeroshot only when the dataset has class names)."""
    clusters, confidences = {}, {}
    tables: dict[Path, pd.DataFrame] = {}
    for method in METHODS.values():
        path = layout.assignments(method.stage, role)
        if role not in method.roles or not path.is_file():
            continue
        if path not in tables:
            tables[path] = load_parquet(path)
        table = tables[path]
        if table.empty and load_parquet_meta(path).get("available") is False:
            continue  # zeroshot without class names
        clusters[method.name] = by_row(table, method.column, n_rows, str(path))
        if method.confidence and method.confidence in table.columns:
            confidences[method.name] = by_row(table, method.confidence, n_rows, str(path), dtype=np.float32)
    return clusters, confidences


def key_params(params, title: str, spec: dict) -> dict[str, Any]:
    """The settings a reader of the report needs, flat (temperatures as resolved for the model);
    spec: data/relation/relation.json."""
    p = params
    trained = load_json(layout.CENTERS_METRICS) if layout.CENTERS_METRICS.is_file() else {}
    relation = (f"ridge (lambda {p.relation.ridge_lambda} x the mean eigenvalue of T^T T"
                + (f" = {spec['ridge_penalty']:.4g}" if spec.get("ridge_penalty") is not None else "") + ")"
                if p.relation.kind == "ridge" else f"softmax (tau {spec.get('tau', p.relation.tau)})")
    model = Path(p.model.name).stem if p.model.name.endswith(".json") else p.model.name
    weights = Path(p.model.pretrained).name if "/" in p.model.pretrained else p.model.pretrained
    return {
        "dataset": f"{title} ({p.dataset.kind}, {p.dataset.root})",
        "splits (fit / eval)": f"{p.dataset.fit_split} / {p.dataset.eval_split}",
        "clusters K": p.dataset.num_clusters,
        "model": f"{model} ({weights})" + (f", logit scale {spec['logit_scale']:.1f}" if spec.get("logit_scale")
                                          else ""),
        "vocabulary": p.vocab.source,
        "noun filter": f"{p.nouns.filter} (gamma {p.nouns.gamma})",
        "relation": relation,
        "neighbours": (f"k {p.neighbors.k} in {p.neighbors.space} space, "
                       + (f"min agreement {p.neighbors.min_agreement}" if p.neighbors.filter == "consistency"
                          else "no consistency filter (every image reliable)")),
        "centers": (f"n_ctx {p.centers.n_ctx}" + (", random start" if p.centers.init == "random" else "")
                    + f", tau {trained['tau']:.4g}, {_steps_run(trained)}, entropy weight "
                    f"{p.centers.entropy_weight}, ce weight {p.centers.ce_weight}, lr {p.centers.lr}"
                    if trained else f"n_ctx {p.centers.n_ctx}"),
        "seed": p.seed,
    }


def _steps_run(trained: dict) -> str:
    """"300 of at most 1000 steps (converged)" from metrics/centers.json (older files: "1000 steps")."""
    if "steps_ceiling" not in trained:
        return f"{trained['steps']} steps"
    why = "converged" if trained.get("converged") else "the ceiling"
    return f"{trained['steps']} of at most {trained['steps_ceiling']} steps ({why})"


def _knn_options(params) -> dict[str, dict]:
    from laic_core.data.models import array_device

    return {"clip": {"method": params.neighbors.method, "device": array_device(params.model.device)},
            "relation": {}}


def _history_figure(path: Path):
    if not path.is_file():
        return figures.message_figure(f"no training history ({path} is missing)", "Training")
    history = load_csv(path)
    if history.empty:
        return figures.message_figure("the training history is empty", "Training")
    x = next((c for c in ("step", "epoch") if c in history.columns), None)
    steps = history[x] if x else pd.Series(np.arange(1, len(history) + 1))
    # a term that is zero throughout is not in use (e.g. ce with ce_weight 0): no panel for it
    series = {c: history[c] for c in history.columns
              if c != x and pd.api.types.is_numeric_dtype(history[c]) and history[c].abs().max() > 0}
    if not series:
        return figures.message_figure("the training history has no numeric columns", "Training")
    # the consistency target is the neighbours' current prediction: it moves with the centers
    return figures.training_figure(steps, series, x_label=x or "logged step",
                                   title="Training of the semantic centers\n(the targets move with the centers, "
                                         "so the loss need not fall while the clusters improve)")


def _gallery_pages(params, sources, pred, confidence, names, labels, class_names) -> list[Path]:
    """The gallery PNGs (one per page of clusters) in layout.GALLERY, replacing any earlier pages.

    pred: (N,) the clusters to show (corrected: junk images are -1 and left out); names: names.json
    entries of the clusters to show, by their "cluster" id (merged-away and junk clusters left out).
    """
    K, ds = params.dataset.num_clusters, params.dataset
    load, problem = gallery.dataset_loader(sources, ds.kind, ds.name, ds.root, ds.eval_split)
    if problem:  # the gallery shows placeholders rather than failing the run
        print(f"evaluate: gallery without images ({problem})", file=sys.stderr)
    shown = [int(n.get("cluster", i)) for i, n in enumerate(names)]
    rows = gallery.gallery_members(pred, confidence, K, n_confident=GALLERY_CONFIDENT, seed=params.seed)
    thumbs = [gallery.load_thumbnails(load, rows[k]) for k in shown]
    lines = gallery.majority_lines(pred, labels, class_names, K) if labels is not None else None
    entries = gallery.cluster_entries(names, thumbs, label_lines=None if lines is None else [lines[k] for k in shown],
                                      n_confident=GALLERY_CONFIDENT)
    pages = gallery.gallery_figures(entries, title=f"Clusters of ours ({K})")
    shutil.rmtree(layout.GALLERY, ignore_errors=True)
    out = []
    for i, fig in enumerate(pages, start=1):
        out.append(figures.save_figure(fig, layout.GALLERY / f"gallery_{i}.png"))
    return out


# ------------------------------------------------------------------ the stage


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file, layout.FEATURES_META).params
    K = params.dataset.num_clusters
    layout.PLOTS.mkdir(parents=True, exist_ok=True)
    same_split = params.dataset.fit_split == params.dataset.eval_split

    # ---- scores of every method
    eval_table, fit_table = load_parquet(layout.features_meta("eval")), load_parquet(layout.features_meta("fit"))
    eval_meta, fit_meta = load_parquet_meta(layout.features_meta("eval")), load_parquet_meta(layout.features_meta("fit"))
    class_names = eval_meta.get("class_names") or None
    eval_labels, fit_labels = labels_of(eval_table), labels_of(fit_table)
    n_eval, n_fit = len(eval_table), len(fit_table)
    eval_assign, eval_conf = load_assignments("eval", n_eval)
    sources = eval_table["source"].astype(str).tolist()
    # a person's corrections, resolved against this run's clusters before any work: each line applied
    # as written, carried from the run it was written for, or set aside (and said so)
    counts = {m: max(K, int(pred.max()) + 1) for m, pred in eval_assign.items()}
    fixes = resolve_run(sources, eval_assign, counts)
    corrections = fixes.corrections
    announce(fixes.resolution, where=f"{layout.REPORT} and {layout.BROWSER_INDEX} list them")
    corrected = {m: corrected_labels(eval_assign[m], c, counts[m]) for m, c in corrections.items()}
    fit_assign, _ = load_assignments("fit", n_fit)
    scores = score_methods(eval_assign, eval_labels, K)
    scores_fit = score_methods(fit_assign, fit_labels, K)
    scores_fixed = corrected_scores(eval_assign, corrected, eval_labels, counts)
    V_eval = load_npy(layout.features("eval"), mmap=True)
    internal = internal_scores(V_eval, eval_assign, K, sample=params.evaluate.internal_sample, seed=params.seed)
    save_json(layout.SCORES, scores)
    save_json(layout.SCORES_FIT, scores_fit)
    save_json(layout.SCORES_CORRECTED, scores_fixed)
    save_json(layout.INTERNAL, internal)
    # nested: `dvc exp show` names the columns headline.ours_acc, ..., which --keep '^headline' selects
    save_json(layout.SUMMARY, {"headline": headline(scores, internal)})

    # ---- neighbour and pseudo-label diagnostics (fit split)
    knn_idx, pseudo = load_npy(layout.KNN), load_npy(layout.PSEUDO).astype(np.int64)
    reliable = load_npy(layout.RELIABLE).astype(bool)
    if pseudo.shape[0] != n_fit:
        raise LaicError(f"{layout.PSEUDO}: {pseudo.shape[0]} pseudo-labels for {n_fit} fit images; "
                        "the artifacts are out of date: run `dvc repro`")
    diagnostics: dict[str, Any] = {"labelled": eval_labels is not None, "n_eval": n_eval, "n_fit": n_fit,
                                   "neighbors": neighbor_diagnostics(knn_idx, pseudo, reliable, fit_labels)}
    if eval_labels is not None:
        diagnostics["n_eval_labelled"] = int((eval_labels >= 0).sum())
    notes = features_notes(fit_meta, str(layout.features_meta("fit")))
    if not same_split:  # else eval.parquet is a copy of fit.parquet
        notes += features_notes(eval_meta, str(layout.features_meta("eval")))
    one_class = one_class_note(eval_labels, class_names)
    if one_class:
        print(f"evaluate: warning: {one_class}", file=sys.stderr)
        notes.append(one_class)
    diagnostics["zeroshot"] = {"available": "zeroshot" in eval_assign}
    if "zeroshot" in eval_assign and eval_labels is not None:
        known = eval_labels >= 0
        diagnostics["zeroshot"]["top1"] = round(float(np.mean(eval_assign["zeroshot"][known] == eval_labels[known])), 6)
    V_fit = load_npy(layout.features("fit"), mmap=True)
    rows_fit = load_matrix(layout.relation_rows("fit"))
    purity, pseudo_acc = {}, {}
    if fit_labels is not None:
        if V_fit.shape[0] != n_fit or rows_fit.shape[0] != n_fit:
            raise LaicError(f"fit features ({V_fit.shape[0]} rows) and relation rows ({rows_fit.shape[0]} rows) "
                            f"do not match the {n_fit} fit images; run `dvc repro`")
        purity = purity_curves({"clip": V_fit, "relation": rows_fit}, fit_labels, params.evaluate.purity_ks,
                               sample=params.evaluate.purity_sample, seed=params.seed,
                               knn_options=_knn_options(params))
        pseudo_acc = mapped_accuracy(fit_labels, pseudo, {
            "all": np.ones(n_fit, bool), "reliable": reliable, "unreliable": ~reliable})
        pseudo_acc["hungarian_acc_all"] = round(cluster_accuracy(fit_labels, pseudo), 6)
        n_labelled_fit = int((fit_labels >= 0).sum())
        diagnostics["purity_samples"] = min(params.evaluate.purity_sample or n_labelled_fit, n_labelled_fit)
        note = purity_ks_note(params.evaluate.purity_ks, n_labelled_fit, params.evaluate.purity_sample)
        if note:
            print(f"evaluate: warning: {note}", file=sys.stderr)
            notes.append(note)
        diagnostics["purity"], diagnostics["pseudo_labels"] = purity, pseudo_acc
    if notes:
        diagnostics["notes"] = notes
    save_json(layout.DIAGNOSTICS, diagnostics)

    # ---- plot data (CSV) and figures (PNG); every file exists with or without labels
    if purity:
        ks = [int(k[1:]) for k in purity["clip"]]
        save_csv(layout.PURITY_CSV, pd.DataFrame({"k": ks, **{s: list(purity[s].values()) for s in purity}}))
        legend = {"clip": "CLIP image features", "relation": "relation rows (normalised C)"}
        figures.save_figure(figures.purity_figure(
            ks, {legend.get(s, s): list(c.values()) for s, c in purity.items()}), layout.PURITY_PNG)
    else:
        save_csv(layout.PURITY_CSV, pd.DataFrame(columns=["k", "clip", "relation"]))
        reason = NO_LABELS if fit_labels is None else "too few labelled fit images for any k"
        figures.save_figure(figures.message_figure(reason, "Neighbour purity"), layout.PURITY_PNG)
    if pseudo_acc:
        subsets = ["all", "reliable", "unreliable"]
        frame = pd.DataFrame({"subset": subsets, "accuracy": [pseudo_acc[f"acc_{s}"] for s in subsets],
                              "n": [pseudo_acc[f"n_{s}"] for s in subsets]})
        save_csv(layout.PSEUDO_CSV, frame)
        figures.save_figure(figures.pseudo_accuracy_figure(
            subsets, [a if a is not None else float("nan") for a in frame["accuracy"]], frame["n"]), layout.PSEUDO_PNG)
    else:
        save_csv(layout.PSEUDO_CSV, pd.DataFrame(columns=["subset", "accuracy", "n"]))
        figures.save_figure(figures.message_figure(NO_LABELS, "Pseudo-label accuracy"), layout.PSEUDO_PNG)

    names = load_json(layout.NAMES)
    ours_names = ["" if n.get("empty") else n.get("name", "") for n in names]
    title = dataset_title(params)
    if eval_labels is not None and "ours" in eval_assign:
        table, rows, cols, frame = confusion_parts(eval_labels, eval_assign["ours"], K, class_names, ours_names)
        save_csv(layout.CONFUSION_CSV, frame)
        figures.save_figure(figures.confusion_figure(table, rows, cols, title=f"ours on {title} (eval)"),
                            layout.CONFUSION_PNG)
    else:
        save_csv(layout.CONFUSION_CSV, pd.DataFrame(columns=["actual", "predicted"]))
        figures.save_figure(figures.message_figure(NO_LABELS, "Confusion matrix"), layout.CONFUSION_PNG)
    figures.save_figure(_history_figure(layout.CENTERS_HISTORY), layout.TRAINING_PNG)

    # The paper's Figs. 1a and 3: how compact the nouns are, and C grouped by cluster.
    T = load_npy(layout.SELECTED_TEXT)
    fit_ours = fit_assign.get("ours", pseudo)
    image_points, noun_points, shown = figures.joint_projection(V_fit, T, seed=params.seed)
    figures.save_figure(figures.projection_figure(image_points, noun_points, fit_ours[shown]), layout.PROJECTION_PNG)
    spec = load_json(layout.RELATION_SPEC)
    sample = np.sort(np.random.default_rng(params.seed).permutation(n_fit)[:RELATION_ROWS_SHOWN])
    C_rows = relation_weights(np.asarray(V_fit[sample]), T, kind=spec["kind"], tau=spec["tau"],
                              ridge_lambda=spec["ridge_lambda"])
    figures.save_figure(figures.relation_figure(C_rows, fit_ours[sample]), layout.RELATION_PNG)

    # ---- the gallery, the clusters table and the per-image table show the corrected clusters
    ours_fix = corrections.get("ours")
    shown_names = names
    if ours_fix:
        fixed_names, kept = corrected_names(ours_names, ours_fix), set(remaining_clusters(ours_fix, K))
        sizes = np.bincount(corrected["ours"][corrected["ours"] >= 0], minlength=K)
        shown_names = [{**n, "name": fixed_names[k], "size": int(sizes[k]), "empty": bool(sizes[k] == 0)}
                       for k, n in enumerate(names) if k in kept]
        names = [{**n, "correction": describe(ours_fix, k, ours_names) or "\u2013"} for k, n in enumerate(names)]
    pages = _gallery_pages(params, sources, corrected.get("ours", eval_assign["ours"]),
                           eval_conf.get("ours", np.ones(n_eval, np.float32)), shown_names, eval_labels, class_names)

    # ---- one row per image, every method
    cluster_names = {"ours": ours_names, **{m: [""] * counts[m] for m in corrections if m != "ours"}}
    cluster_names = {m: corrected_names(n, corrections[m]) if m in corrections else n for m, n in cluster_names.items()}
    per_image = assignment_table(sources, eval_assign, eval_conf, cluster_names, eval_labels, class_names,
                                 corrected=corrected)
    # the corrections it holds and what became of each line: the browser shows them, export and predict
    # use them and refuse a clusters.yaml changed since
    save_parquet(layout.ASSIGNMENTS_PARQUET, per_image, {"corrections": corrections_record(corrections),
                                                          **fixes.meta()})
    save_csv(layout.ASSIGNMENTS_CSV, per_image)
    save_store(fixes.store)

    # ---- the report (links are relative to metrics/)
    def link(path: Path) -> str:
        return path.relative_to(layout.REPORT.parent).as_posix()

    plots = {"confusion matrix of ours (eval)": layout.CONFUSION_PNG, "neighbour purity against k": layout.PURITY_PNG,
             "pseudo-label accuracy": layout.PSEUDO_PNG, "training curves of ours": layout.TRAINING_PNG,
             "images and nouns in one projection (Fig. 1a)": layout.PROJECTION_PNG,
             "relation matrix C grouped by cluster (Fig. 3)": layout.RELATION_PNG}
    cost = {p.stem: load_json(p) for p in sorted(layout.COST.glob("*.json"))} if layout.COST.is_dir() else {}
    report = render_report(
        scores, diagnostics, fit_scores=None if same_split else scores_fit, clusters=names,
        params=key_params(params, title, spec), figures={c: link(p) for c, p in plots.items()},
        title=f"LAIC run report: {title}", internal=internal, cost=cost, gallery=[link(p) for p in pages],
        corrections=corrections_section(scores, scores_fixed, {
            m: change_lines(c, ours_names if m == "ours" else None) for m, c in corrections.items()},
            outcomes(fixes.meta())) if corrections or fixes.resolution.summary() else None,
    )
    with atomic_path(layout.REPORT) as tmp:
        tmp.write_text(report)
    for method, entry in scores.items():
        print(f"evaluate: {method}: " + ", ".join(f"{k} {v}" for k, v in entry.items()))


if __name__ == "__main__":
    run(app)
