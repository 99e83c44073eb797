"""neighbors: k nearest neighbours in C-row space, pseudo-labels, and the reliable mask.

Writes data/neighbors/knn.npy ((N_fit, k) int64), pseudo.npy ((N_fit,)
int64: the ours_notrain clustering of the fit split), reliable.npy
((N_fit,) bool: at least `min_agreement` of the neighbours share the
sample's pseudo-label) and label-free statistics in metrics/neighbors.json.
"""

from __future__ import annotations

from pathlib import Path

import typer

from laic_core.artifacts import load_matrix, load_parquet, save_json, save_npy
from laic_core.config import load_params
from laic_core.errors import LaicError
from laic_core.neighbors import consistency_filter, knn, neighbor_stats
from laic_core.relation import normalize_rows
from stages import layout
from stages.runner import run, stage_app

app = stage_app()


@app.command()
def main(params_file: Path = typer.Option("params.yaml", "--params", help="parameters file")) -> None:
    params = load_params(params_file)
    p = params.neighbors
    C = normalize_rows(load_matrix(layout.RELATION / "C_fit.npz"))
    pseudo = load_parquet(layout.RELATION / "assign_fit.parquet")["ours_notrain"].to_numpy()
    if len(pseudo) != C.shape[0]:
        raise LaicError(f"{layout.RELATION}: C_fit has {C.shape[0]} rows but assign_fit {len(pseudo)}; "
                        "rerun `dvc repro relation`")
    if p.k >= C.shape[0]:
        raise LaicError(f"neighbors.k: k={p.k} needs more than {p.k} fit images, there are {C.shape[0]}")
    knn_idx = knn(C, p.k, method=p.method, progress=True)
    reliable = consistency_filter(knn_idx, pseudo, p.min_agreement)
    save_npy(layout.NEIGHBORS / "knn.npy", knn_idx)
    save_npy(layout.NEIGHBORS / "pseudo.npy", pseudo)
    save_npy(layout.NEIGHBORS / "reliable.npy", reliable)
    stats = neighbor_stats(knn_idx, pseudo, reliable)
    save_json(layout.METRICS / "neighbors.json", stats)
    print(f"neighbors: {int(reliable.sum())} of {len(reliable)} fit images are reliable "
          f"(k={p.k}, min_agreement={p.min_agreement})")


if __name__ == "__main__":
    run(app)
