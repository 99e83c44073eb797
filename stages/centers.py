"""centers: learn K adaptive semantic centers by prompt learning; assign every image.

Reads the fit/eval features, the selected nouns and the relation spec (to
recompute mean rows of C per cluster), the neighbour graph (knn, reliable
mask, pseudo-labels), the noun vocabulary and the open_clip text tower.
Writes data/centers/prompts.pt, centers.npy ((K, d) float32),
assign_{fit,eval}.parquet (row, cluster, confidence, init_cluster: the
assignment to the initial centers), names.json, metrics/centers_history.csv
(every few steps) and metrics/centers.json (label-free training summary).
No label is read.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from laic_core.artifacts import (
    load_json, load_npy, load_parquet, save_csv, save_json, save_npy, save_parquet, save_torch,
)
from laic_core.data.models import load_clip
from laic_core.errors import LaicError
from laic_core.method.centers import assign_labels, steps_for, train_centers
from laic_core.method.naming import cluster_init_nouns, name_clusters, with_glosses
from laic_core.method.neighbors import agreeing_neighbours_needed
from laic_core.method.relation import cluster_mean_relations
from laic_core.scoring.metrics import cluster_accuracy
from laic_core.text.prompts import PromptLearner
from laic_core.text.wordnet import common_names, gloss, nameable_nouns
from laic_core.validation import load_embeddings
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()

def no_reliable_image(pseudo: np.ndarray, n_clusters: int, k: int, min_agreement: float) -> str:
    """Why no fit image is reliable, and what to change.

    An image can only be reliable when its pseudo-label holds more images
    than the agreeing neighbours it needs; with K equal to the number of
    images every pseudo-label holds one, and only a smaller K can help.
    """
    needed = agreeing_neighbours_needed(k, min_agreement)
    largest = int(np.bincount(pseudo, minlength=n_clusters).max())
    if largest > needed:
        return (f"{layout.RELIABLE}: no fit image is reliable, so no pseudo-label can anchor the training; "
                "lower neighbors.min_agreement (e.g. 0.8) or neighbors.k")
    crowd = "one image per pseudo-label" if largest == 1 else f"at most {largest} images per pseudo-label"
    fix = "lower dataset.num_clusters well below the number of images"
    if largest > 1:
        fix += f", or neighbors.k or neighbors.min_agreement so that fewer than {largest} neighbours must agree"
    return (f"{layout.RELIABLE}: no fit image can be reliable: K={n_clusters} clusters of {len(pseudo)} fit "
            f"images leave {crowd}, and a reliable image needs {needed} of its k={k} neighbours in its own "
            f"pseudo-label; {fix}")


def load_inputs(n_clusters: int, neighbors) -> dict:
    """Every upstream artifact, validated against each other (`neighbors`: params.neighbors)."""
    V_fit = load_embeddings(layout.features("fit"))
    d = V_fit.shape[1]
    V_eval = load_embeddings(layout.features("eval"), dim=d)
    n_fit = V_fit.shape[0]
    if n_clusters > n_fit:
        raise LaicError(f"dataset.num_clusters: {n_clusters} clusters but only {n_fit} fit images; "
                        "lower num_clusters or add images")

    selected = load_parquet(layout.SELECTED_NOUNS)
    if "noun" not in selected.columns:
        raise LaicError(f"{layout.SELECTED_NOUNS}: no 'noun' column; rerun `dvc repro nouns`")
    selected_nouns = [str(n) for n in selected["noun"]]
    noun_text = load_embeddings(layout.SELECTED_TEXT, dim=d)
    if noun_text.shape[0] != len(selected_nouns):
        raise LaicError(f"{layout.SELECTED_TEXT} has {noun_text.shape[0]} rows but "
                        f"selected.parquet lists {len(selected_nouns)} nouns; rerun `dvc repro nouns`")

    spec = load_json(layout.RELATION_SPEC)
    if spec.get("n_nouns") != len(selected_nouns):
        raise LaicError(f"{layout.RELATION_SPEC} describes {spec.get('n_nouns')} nouns but "
                        f"{layout.SELECTED_NOUNS} lists {len(selected_nouns)}; rerun `dvc repro relation`")

    knn = load_npy(layout.KNN)
    reliable = load_npy(layout.RELIABLE)
    pseudo = load_npy(layout.PSEUDO)
    for path, array in ((layout.KNN, knn), (layout.RELIABLE, reliable), (layout.PSEUDO, pseudo)):
        if array.shape[0] != n_fit:
            raise LaicError(f"{path} has {array.shape[0]} rows but there are "
                            f"{n_fit} fit images; rerun `dvc repro neighbors`")
    if pseudo.size and (pseudo.min() < 0 or pseudo.max() >= n_clusters):
        raise LaicError(
            f"{layout.PSEUDO}: pseudo-labels span {pseudo.min()}..{pseudo.max()}, "
            f"but dataset.num_clusters is {n_clusters} (they must lie in 0..{n_clusters - 1}); "
            "rerun `dvc repro` after changing num_clusters"
        )
    reliable = reliable.astype(bool)
    if not reliable.any():
        raise LaicError(no_reliable_image(pseudo, n_clusters, knn.shape[1], neighbors.min_agreement))

    vocab_table = load_parquet(layout.VOCAB_NOUNS)
    vocab_nouns = [str(n) for n in vocab_table["noun"]]
    vocab_text = load_embeddings(layout.VOCAB_TEXT, dim=d, mmap=True)
    if vocab_text.shape[0] != len(vocab_nouns):
        raise LaicError(f"{layout.VOCAB_TEXT} has {vocab_text.shape[0]} rows but nouns.parquet "
                        f"lists {len(vocab_nouns)} nouns; rerun `dvc repro vocab`")
    return dict(V_fit=V_fit, V_eval=V_eval, selected_nouns=selected_nouns, noun_text=noun_text, spec=spec, knn=knn,
                reliable=reliable, pseudo=pseudo.astype(np.int64), vocab_nouns=vocab_nouns,
                vocab_text=vocab_text)


def relation_means(inputs: dict, labels: np.ndarray, n_clusters: int, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """(K, M') mean rows of C per cluster (recomputed from features and nouns), (K,) counts."""
    spec = inputs["spec"]
    return cluster_mean_relations(inputs["V_fit"], np.asarray(inputs["noun_text"]), labels, n_clusters,
                                  rows=rows, kind=spec["kind"], tau=spec["tau"],
                                  ridge_lambda=spec["ridge_lambda"])


def init_scores(inputs: dict, n_clusters: int) -> np.ndarray:
    """(K, M') mean C row of each pseudo-cluster's reliable members; of all its members when none is
    reliable; of every image when the cluster is empty."""
    scores, counts = relation_means(inputs, inputs["pseudo"], n_clusters, inputs["reliable"])
    fallback = np.flatnonzero(counts == 0)
    if fallback.size:
        members, member_counts = relation_means(inputs, inputs["pseudo"], n_clusters)
        scores[fallback] = members[fallback]
        empty = fallback[member_counts[fallback] == 0]
        if empty.size:
            everyone, _ = relation_means(inputs, np.zeros(len(inputs["pseudo"]), np.int64), 1)
            scores[empty] = everyone[0]
    return scores


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    ctx = open_stage(params_file, [*layout.FEATURES_META, layout.SELECTED_NOUNS, layout.VOCAB_NOUNS])
    params, tau = ctx.params, ctx.temperature("centers")
    cp = params.centers
    K = params.dataset.num_clusters
    inputs = load_inputs(K, params.neighbors)
    V_fit = inputs["V_fit"]
    d = V_fit.shape[1]

    if cp.init == "nouns":
        init_nouns = cluster_init_nouns(init_scores(inputs, K), inputs["selected_nouns"])
        if len(set(init_nouns)) < K:
            print(f"centers: only {len(inputs['selected_nouns'])} selected nouns for {K} clusters, so some "
                  "clusters start from the same noun", file=sys.stderr)
    else:  # the ablation: centers start from random context vectors, tied to no noun
        init_nouns = [""] * K
    bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
    learner = PromptLearner(bundle.model, bundle.tokenizer, init_nouns, cp.n_ctx,
                            template=cp.init_template, seed=params.seed, model_name=params.model.name,
                            chunk_size=cp.prompt_chunk, random_init=cp.init == "random")
    with torch.no_grad():
        initial = learner().cpu().numpy().astype(np.float32)
    if initial.shape[1] != d:
        raise LaicError(
            f"model.name: {params.model.name} gives d={initial.shape[1]} text features but "
            f"{layout.features('fit')} has d={d}; rerun `dvc repro` so the features use this model"
        )
    steps = steps_for(cp.steps, cp.epochs, V_fit.shape[0], cp.batch_size)
    n_reliable = int(inputs["reliable"].sum())
    print(f"centers: K={K}, {n_reliable} reliable of {V_fit.shape[0]} fit images, "
          f"{inputs['knn'].shape[1]} neighbours each, tau {tau:.4g}, at most {steps} steps of {cp.batch_size} "
          f"on {bundle.device}")
    started = time.perf_counter()
    training = train_centers(
        learner, torch.from_numpy(V_fit), inputs["knn"], inputs["pseudo"], inputs["reliable"],
        tau=tau, entropy_weight=cp.entropy_weight, ce_weight=cp.ce_weight,
        steps=steps, lr=cp.lr, batch_size=cp.batch_size, seed=params.seed,
        stop_tolerance=cp.stop_tolerance, stop_window=cp.stop_window,
    )
    train_seconds = time.perf_counter() - started
    history = training.history
    with torch.no_grad():
        centers = learner().cpu().numpy().astype(np.float32)

    save_torch(layout.PROMPTS, {
        **learner.export(),
        "model": ctx.provenance["model"],  # predict checks its params against this
        "dim": d,
        "tau": tau,
    })
    save_npy(layout.CENTER_VECTORS, centers)
    labels, mean_confidence, init_labels = {}, {}, {}
    for role, V in (("fit", V_fit), ("eval", inputs["V_eval"])):
        labels[role], confidence = assign_labels(V, centers, tau)
        init_labels[role], _ = assign_labels(V, initial, tau)
        mean_confidence[role] = float(confidence.mean()) if confidence.size else 0.0
        save_parquet(layout.assignments("centers", role), pd.DataFrame({
            "row": np.arange(len(labels[role]), dtype=np.int64),
            "cluster": labels[role],
            "confidence": confidence,
            "init_cluster": init_labels[role],
        }), {"tau": tau, "steps": training.steps})
    member_scores, sizes = relation_means(inputs, labels["fit"], K)
    vocab_nouns = inputs["vocab_nouns"]
    nameable = np.array(nameable_nouns(vocab_nouns, proper=cp.name_proper_nouns, taxonomic=cp.name_taxonomic,
                                       rare=cp.name_rare), bool)
    shown = {noun for noun, ok in zip(vocab_nouns, nameable) if ok}
    selected_nameable = np.array([noun in shown for noun in inputs["selected_nouns"]], bool)
    alias = None
    if not cp.name_taxonomic:  # a taxon is shown by its common name ("Oryx gazella": "gemsbok")
        position = {noun: i for i, noun in enumerate(vocab_nouns)}
        alias = np.array([position.get(c, -1) if c else -1 for c in common_names(vocab_nouns)], np.int64)
    names = name_clusters(centers, inputs["vocab_text"], vocab_nouns, member_scores, inputs["selected_nouns"],
                          sizes, nameable=nameable, selected_nameable=selected_nameable, alias=alias)
    names = with_glosses(names, gloss)
    for entry, noun in zip(names, init_nouns):
        entry["init_noun"] = noun
    save_json(layout.NAMES, names)
    save_csv(layout.CENTERS_HISTORY, pd.DataFrame(history, columns=["step", "loss", "consistency", "entropy", "ce",
                                                                    "changed", "moved"]))
    final = history[-1]
    empty = int((sizes == 0).sum())
    # Label-free and deterministic (no timings: the file is git-tracked); scores
    # against labels are the evaluate stage's. Agreement: the share of fit images
    # whose cluster matches under the best one-to-one matching of cluster ids.
    save_json(layout.CENTERS_METRICS, {
        "steps": training.steps,  # run; the ceiling and why training stopped follow
        "steps_ceiling": steps,
        "converged": training.converged,
        "stop_reason": training.stop_reason,
        "stop_changed_share": training.changed,  # of the fit images, over the last stop_window steps
        "stop_moved_share": training.moved,  # over twice that, less the above: moved for good
        "tau": tau,
        "reliable": n_reliable,
        "final_loss": final["loss"],
        "final_consistency": final["consistency"],
        "final_entropy": final["entropy"],
        "final_ce": final["ce"],
        "agreement_with_pseudo_labels": round(cluster_accuracy(inputs["pseudo"], labels["fit"]), 6),
        "agreement_with_initial_centers": round(cluster_accuracy(init_labels["fit"], labels["fit"]), 6),
        "fit_cluster_size_min": int(sizes.min()),
        "fit_cluster_size_max": int(sizes.max()),
        "fit_empty_clusters": empty,
        "eval_empty_clusters": int((np.bincount(labels["eval"], minlength=K) == 0).sum()),
        "fit_mean_confidence": mean_confidence["fit"],
        "eval_mean_confidence": mean_confidence["eval"],
    })
    if empty:
        print(f"centers: warning: {empty} of {K} clusters received no fit image; raise "
              "centers.entropy_weight to spread the images, or lower dataset.num_clusters", file=sys.stderr)
    print(f"centers: {training.steps} steps in {train_seconds:.1f}s ({training.stop_reason}), final loss "
          f"{final['loss']:.4f}; fit cluster sizes "
          f"{sizes.min()}..{sizes.max()}, {empty} empty")


if __name__ == "__main__":
    run(app)
