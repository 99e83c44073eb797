"""neighbors: k nearest neighbours in relation space, pseudo-labels, and the reliable mask.

Writes data/neighbors/knn.npy ((N_fit, k) int64, relation space),
pseudo.npy ((N_fit,) int64: the ours_notrain clustering of the fit split),
reliable.npy ((N_fit,) bool: at least `min_agreement` of the neighbours share
the sample's pseudo-label; all with `neighbors.filter: none`; with
`neighbors.space: image`, neighbours among the image features and the
clip_kmeans pseudo-labels: the ablations of the paper's claims), knn_image.npy ((N_fit, image_k) int64: neighbours
in image-feature space, which the TAC and SCAN baselines train on) and
label-free statistics in metrics/neighbors.json.
"""

from __future__ import annotations

import sys
from pathlib import Path


from laic_core.artifacts import load_matrix, load_parquet, save_json, save_npy
from laic_core.data.models import array_device
from laic_core.errors import LaicError
from laic_core.method.neighbors import PSEUDO_LABELS, knn, neighbor_stats, reliable_mask
from laic_core.validation import load_embeddings
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file).params
    p = params.neighbors
    V = load_embeddings(layout.features("fit"))
    # relation rows are already normalised; neighbors.space: image mines among the image features instead
    rows = load_matrix(layout.relation_rows("fit")) if p.space == "relation" else V
    pseudo = load_parquet(layout.assignments("relation", "fit"))[PSEUDO_LABELS[p.space]].to_numpy()
    if len(pseudo) != rows.shape[0]:
        raise LaicError(f"{layout.RELATION}: rows_fit has {rows.shape[0]} rows but assign_fit {len(pseudo)}; "
                        "rerun `dvc repro relation`")
    if p.k >= rows.shape[0]:
        raise LaicError(f"neighbors.k: {p.k} neighbours need more than {p.k} fit images, "
                        f"there are {rows.shape[0]}; lower neighbors.k")
    # the exact search runs on the model's device: on a GPU it is exact and fast at ImageNet scale
    device = array_device(params.model.device)
    knn_idx = knn(rows, p.k, method=p.method, device=device, progress=True)
    reliable = reliable_mask(knn_idx, pseudo, p.min_agreement, p.filter)
    image_k = min(p.image_k, V.shape[0] - 1)
    if image_k < p.image_k:  # the baselines' published k exceeds a small collection: say so, go on
        print(f"neighbors: warning: neighbors.image_k {p.image_k} needs more than {p.image_k} fit images; "
              f"there are {V.shape[0]}, so the TAC and SCAN baselines get {image_k} image neighbours",
              file=sys.stderr)
    image_knn = knn(V, image_k, method=p.method, device=device, progress=True)
    save_npy(layout.KNN, knn_idx)
    save_npy(layout.PSEUDO, pseudo)
    save_npy(layout.RELIABLE, reliable)
    save_npy(layout.IMAGE_KNN, image_knn)
    stats = neighbor_stats(knn_idx, pseudo, reliable)
    save_json(layout.NEIGHBORS_METRICS, {**stats, "space": p.space, "filter": p.filter})
    print(f"neighbors: {int(reliable.sum())} of {len(reliable)} fit images are reliable "
          f"({stats['fraction_reliable']:.1%}; k={p.k} in {p.space} space, "
          + (f"min_agreement={p.min_agreement}" if p.filter == "consistency" else "no filter")
          + "); neighbours sharing "
          f"the pseudo-label: {stats['mean_agreement']:.1%} of all, "
          f"{stats['mean_agreement_reliable']:.1%} of the reliable images'")


if __name__ == "__main__":
    run(app)
