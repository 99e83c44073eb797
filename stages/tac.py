"""tac: the TAC baseline (ICML 2024) trained on the pipeline's features and nouns.

Reads the fit/eval features, the selected nouns and the image-space
neighbours of the fit images; builds every image's text counterpart (TAC's
retrieval, at relation.tau) and its text-space neighbours; trains TAC's two
heads (laic_core.baselines.tac) and assigns every image with the image head. Writes
data/tac/assign_{fit,eval}.parquet (row, tac, tac_confidence) and
metrics/tac_history.csv. No label is read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from laic_core.artifacts import load_npy, save_csv, save_parquet
from laic_core.baselines.tac import TacSettings, predict, train_tac
from laic_core.method.convergence import epochs_run
from laic_core.data.models import array_device
from laic_core.method.neighbors import baseline_neighbors, knn
from laic_core.method.relation import tac_text_features
from laic_core.validation import load_embeddings
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


def settings_from(params) -> TacSettings:
    """TAC's published settings for K, with any value params give instead of auto."""
    p = params.tac
    published = TacSettings.published(params.dataset.num_clusters)
    return TacSettings(
        epochs=published.epochs if p.epochs == "auto" else p.epochs,
        batch_size=published.batch_size if p.batch_size == "auto" else p.batch_size,
        temperature=published.temperature if p.temperature == "auto" else p.temperature,
        entropy_weight=p.entropy_weight, lr=p.lr, knn=published.knn, stop_tolerance=p.stop_tolerance,
        stop_window=p.stop_window)


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    ctx = open_stage(params_file, [*layout.FEATURES_META, layout.SELECTED_NOUNS])
    params, tau = ctx.params, ctx.temperature("relation")  # TAC's retrieval temperature is the relation's
    K = params.dataset.num_clusters
    T = load_embeddings(layout.SELECTED_TEXT)
    V = {role: load_embeddings(layout.features(role), dim=T.shape[1])
         for role in layout.ROLES}
    settings = settings_from(params)
    image_knn, note = baseline_neighbors(load_npy(layout.IMAGE_KNN), len(V["fit"]), settings.knn,
                                         str(layout.IMAGE_KNN), "TAC")
    if note:
        print(f"tac: note: {note}", file=sys.stderr)
    S = {role: tac_text_features(V[role], T, tau=tau) for role in layout.ROLES}
    device = array_device(params.model.device)
    text_knn = knn(S["fit"], min(settings.knn, len(V["fit"]) - 1), method=params.neighbors.method, progress=True,
                   device=device)
    print(f"tac: K={K}, {settings.epochs} epochs of {settings.batch_size}, temperature {settings.temperature}, "
          f"retrieval tau {tau:.4g}")
    head, history = train_tac(V["fit"], S["fit"], image_knn, text_knn, K, settings=settings,
                              seed=params.seed, device=device)
    for role in layout.ROLES:
        labels, confidence = predict(head, V[role])
        save_parquet(layout.assignments("tac", role), pd.DataFrame({
            "row": np.arange(len(labels), dtype=np.int64), "tac": labels, "tac_confidence": confidence}),
            {"settings": vars(settings), "retrieval_tau": tau})
    save_csv(layout.TAC_HISTORY, pd.DataFrame(history, columns=["epoch", "loss", "distill", "consistency",
                                                                "entropy", "changed", "moved"]))
    print(f"tac: {epochs_run(history, settings.epochs, settings.stop_window)}")


if __name__ == "__main__":
    run(app)
