"""relation: the relational representation of every image, and the no-train clusterings.

Writes data/relation/rows_{fit,eval}.npz: normalised rows whose dot products
are the cosines between rows of C (ridge: (N, d), exact, never N x M';
softmax: (N, M'), dense or top-k CSR; see `laic_core.method.relation`),
data/relation/relation.json (the kind, the resolved temperature and penalty:
enough to recompute rows of C from the features and nouns), and
data/relation/assign_{fit,eval}.parquet with the no-train clusterings
clip_kmeans, tac_notrain and ours_notrain (k-means fitted on the fit split,
every split assigned to the nearest centre).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from laic_core.artifacts import save_json, save_matrix, save_parquet
from laic_core.data.models import array_device
from laic_core.errors import LaicError
from laic_core.method.cluster import clip_kmeans, ours_notrain, tac_notrain
from laic_core.method.relation import (
    choose_topk, relation_embedding, ridge_penalty, tac_joint_features,
)
from laic_core.validation import load_embeddings
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    ctx = open_stage(params_file, [*layout.FEATURES_META, layout.SELECTED_NOUNS])
    params, tau = ctx.params, ctx.temperature("relation")
    p = params.relation
    K = params.dataset.num_clusters
    T = load_embeddings(layout.SELECTED_TEXT)
    V = {role: load_embeddings(layout.features(role), dim=T.shape[1])
         for role in layout.ROLES}
    if K > len(V["fit"]):
        raise LaicError(
            f"dataset.num_clusters: K={K} is larger than the {len(V['fit'])} images of the fit split; "
            "lower K or add images"
        )
    topk = choose_topk(len(V["fit"]), len(T), p.topk) if p.kind == "softmax" else 0
    rows = {}
    for role in layout.ROLES:
        rows[role] = relation_embedding(V[role], T, kind=p.kind, tau=tau, ridge_lambda=p.ridge_lambda,
                                        topk=topk, progress=True)
        save_matrix(layout.relation_rows(role), rows[role])
    spec = {
        "kind": p.kind,
        "tau": tau,
        "ridge_lambda": p.ridge_lambda,
        "ridge_penalty": ridge_penalty(T, p.ridge_lambda) if p.kind == "ridge" else None,
        "logit_scale": ctx.logit_scale,
        "n_nouns": int(len(T)),
        "row_dim": int(rows["fit"].shape[1]),
        "sparse_topk": topk,
    }
    save_json(layout.RELATION_SPEC, spec)
    shape = (f"ridge, lambda {p.ridge_lambda} x mean eigenvalue = {spec['ridge_penalty']:.4g}; rows kept in "
             f"d={spec['row_dim']} dimensions" if p.kind == "ridge" else
             f"softmax, tau {tau:.4g}; {'dense' if topk == 0 else f'top-{topk} sparse'}")
    print(f"relation: C is {len(V['fit'])} x {len(T)} ({shape})")

    # One representation at a time, each freed before the next: at ImageNet size (N = 1.28M, d = 512)
    # every (N, d) copy is 2.6 GB and TAC's [V ; S] twice that.
    seed, n_init = params.seed, p.kmeans_n_init
    labels = {"ours_notrain": ours_notrain(rows["fit"], rows["eval"], K, seed=seed, n_init=n_init)}
    del rows
    labels["clip_kmeans"] = clip_kmeans(V["fit"], V["eval"], K, seed=seed, n_init=n_init)
    device = array_device(params.model.device)
    joint = {role: tac_joint_features(V[role], T, tau=tau, device=device) for role in layout.ROLES}
    labels["tac_notrain"] = tac_notrain(joint["fit"], joint["eval"], K, seed=seed, n_init=n_init)
    del joint
    labels = {method: labels[method] for method in ("clip_kmeans", "tac_notrain", "ours_notrain")}
    for r, role in enumerate(layout.ROLES):
        table = pd.DataFrame({"row": np.arange(len(V[role]), dtype=np.int64)})
        for method, pair in labels.items():
            table[method] = pair[r].astype(np.int64)
        save_parquet(layout.assignments("relation", role), table, {"num_clusters": K})


if __name__ == "__main__":
    run(app)
