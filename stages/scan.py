"""scan: the SCAN baseline (ECCV 2020) on the pipeline's image features; no text.

Reads the fit/eval features and the image-space neighbours of the fit images,
trains SCAN's heads (laic_core.baselines.scan) and assigns every image with the head of
lowest SCAN loss. Writes data/scan/assign_{fit,eval}.parquet (row, scan,
scan_confidence) and metrics/scan_history.csv. No label is read.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from laic_core.artifacts import load_npy, save_csv, save_parquet
from laic_core.baselines.scan import ScanSettings, predict, train_scan
from laic_core.method.convergence import epochs_run
from laic_core.data.models import array_device
from laic_core.method.neighbors import baseline_neighbors
from laic_core.validation import load_embeddings
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file, layout.FEATURES_META).params
    p = params.scan
    K = params.dataset.num_clusters
    V = {role: load_embeddings(layout.features(role)) for role in layout.ROLES}
    settings = ScanSettings(**dataclasses.asdict(p))
    image_knn, note = baseline_neighbors(load_npy(layout.IMAGE_KNN), len(V["fit"]), settings.knn,
                                         str(layout.IMAGE_KNN), "SCAN")
    if note:
        print(f"scan: note: {note}", file=sys.stderr)
    device = array_device(params.model.device)
    print(f"scan: K={K}, {settings.heads} heads, {settings.epochs} epochs of {settings.batch_size}")
    head, best, history = train_scan(V["fit"], image_knn, K, settings=settings, seed=params.seed,
                                     device=device)
    for role in layout.ROLES:
        labels, confidence = predict(head, V[role])
        save_parquet(layout.assignments("scan", role), pd.DataFrame({
            "row": np.arange(len(labels), dtype=np.int64), "scan": labels, "scan_confidence": confidence}),
            {"settings": vars(settings), "head": best})
    save_csv(layout.SCAN_HISTORY, pd.DataFrame(history, columns=["epoch", "loss", "consistency", "entropy",
                                                                 "changed", "moved"]))
    print(f"scan: {epochs_run(history, settings.epochs, settings.stop_window)}; kept head {best} (lowest SCAN loss)")


if __name__ == "__main__":
    run(app)
