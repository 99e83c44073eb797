"""relation: the image-to-noun relational representation C and the no-train baselines.

Writes data/relation/C_{fit,eval}.npz ((N, M'), dense or top-k CSR; see
`relation.topk`) and data/relation/assign_{fit,eval}.parquet with the
no-train clusterings clip_kmeans, tac_notrain and ours_notrain (k-means
fitted on the fit split, every split assigned to the nearest centre).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer

from laic_core.artifacts import load_npy, save_matrix, save_parquet
from laic_core.cluster import clip_kmeans, ours_notrain, tac_notrain
from laic_core.config import load_params
from laic_core.errors import LaicError
from laic_core.provenance import check_against_params
from laic_core.relation import check_embeddings, choose_topk, relation_matrix, tac_text_features
from stages import layout
from stages.runner import run, stage_app

app = stage_app()


@app.command()
def main(params_file: Path = typer.Option("params.yaml", "--params", help="parameters file")) -> None:
    params = load_params(params_file)
    p = params.relation
    K = params.dataset.num_clusters
    check_against_params([layout.features_meta("fit"), layout.features_meta("eval"),
                          layout.NOUNS / "selected.parquet"], params.model, params_file, layout.HASH_CACHE)
    noun_file = layout.NOUNS / "text.npy"
    T = check_embeddings(load_npy(noun_file), str(noun_file))
    V = {role: check_embeddings(load_npy(layout.features(role)), str(layout.features(role)), dim=T.shape[1])
         for role in layout.ROLES}
    if K > len(V["fit"]):
        raise LaicError(
            f"dataset.num_clusters: K={K} is larger than the {len(V['fit'])} images of the fit split; "
            "lower K or add images"
        )
    topk = choose_topk(len(V["fit"]), len(T), p.topk)
    C = {}
    for role in layout.ROLES:
        C[role] = relation_matrix(V[role], T, kind=p.kind, tau=p.tau, ridge_lambda=p.ridge_lambda, topk=topk,
                                  progress=True)
        save_matrix(layout.RELATION / f"C_{role}.npz", C[role])
    print(f"relation: C is {len(V['fit'])} x {len(T)} ({p.kind}, "
          f"{'dense' if topk == 0 else f'top-{topk} sparse'})")

    seed = params.seed
    S = {role: tac_text_features(V[role], T, tau=p.tau) for role in layout.ROLES}
    labels = {
        "clip_kmeans": clip_kmeans(V["fit"], V["eval"], K, seed=seed),
        "tac_notrain": tac_notrain(V["fit"], S["fit"], V["eval"], S["eval"], K, seed=seed),
        "ours_notrain": ours_notrain(C["fit"], C["eval"], K, seed=seed),
    }
    for r, role in enumerate(layout.ROLES):
        table = pd.DataFrame({"row": np.arange(len(V[role]), dtype=np.int64)})
        for method, pair in labels.items():
            table[method] = pair[r].astype(np.int64)
        save_parquet(layout.RELATION / f"assign_{role}.parquet", table, {"num_clusters": K})


if __name__ == "__main__":
    run(app)
