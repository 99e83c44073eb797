"""neighbors: k nearest neighbours in relation space, pseudo-labels, and the reliable mask.

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
from stages import layout
from stages.runner import run, stage_app

app = stage_app()


@app.command()
def main(params_file: Path = typer.Option("params.yaml", "--params", help="parameters file")) -> None:
    params = load_params(params_file)
    p = params.neighbors
    rows = load_matrix(layout.relation_rows("fit"))  # already normalised
    pseudo = load_parquet(layout.relation_assign("fit"))["ours_notrain"].to_numpy()
    if len(pseudo) != rows.shape[0]:
        raise LaicError(f"{layout.RELATION}: rows_fit has {rows.shape[0]} rows but assign_fit {len(pseudo)}; "
                        "rerun `dvc repro relation`")
    if p.k >= rows.shape[0]:
        raise LaicError(f"neighbors.k: k={p.k} needs more than {p.k} fit images, there are {rows.shape[0]}")
    knn_idx = knn(rows, p.k, method=p.method, progress=True)
    reliable = consistency_filter(knn_idx, pseudo, p.min_agreement)
    save_npy(layout.NEIGHBORS / "knn.npy", knn_idx)
    save_npy(layout.NEIGHBORS / "pseudo.npy", pseudo)
    save_npy(layout.NEIGHBORS / "reliable.npy", reliable)
    stats = neighbor_stats(knn_idx, pseudo, reliable)
    save_json(layout.METRICS / "neighbors.json", stats)
    print(f"neighbors: {int(reliable.sum())} of {len(reliable)} fit images are reliable "
          f"({stats['fraction_reliable']:.1%}; k={p.k}, min_agreement={p.min_agreement}); neighbours sharing "
          f"the pseudo-label: {stats['mean_agreement']:.1%} of all, "
          f"{stats['mean_agreement_reliable']:.1%} of the reliable images'")


if __name__ == "__main__":
    run(app)
