"""nouns: keep the vocabulary nouns that matter for this dataset (TAC-style filter).

Writes data/nouns/selected.parquet (noun, vocab_index, group, score; row j
describes row j of data/nouns/text.npy) and data/nouns/text.npy ((M', d)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from laic_core.artifacts import load_parquet, save_npy, save_parquet
from laic_core.data.models import array_device
from laic_core.errors import LaicError
from laic_core.method.noun_filter import default_n_groups, select_nouns
from laic_core.provenance import read_provenance
from laic_core.validation import load_embeddings
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()

MIN_NOUNS = 2


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    ctx = open_stage(params_file, [layout.features_meta("fit"), layout.VOCAB_NOUNS])
    params, tau = ctx.params, ctx.temperature("nouns")
    p = params.nouns
    V = load_embeddings(layout.features("fit"))
    T = load_embeddings(layout.VOCAB_TEXT, dim=V.shape[1])
    vocab = load_parquet(layout.VOCAB_NOUNS)["noun"].tolist()
    if len(vocab) != len(T):
        raise LaicError(f"{layout.VOCAB}: nouns.parquet has {len(vocab)} rows but text.npy {len(T)}; rerun `dvc repro vocab`")

    if p.filter == "none":
        index = np.arange(len(T), dtype=np.int64)
        group = np.full(len(T), -1, dtype=np.int64)
        score = np.ones(len(T), dtype=np.float32)
        n_groups = 0
    else:
        n_groups = default_n_groups(len(V), params.dataset.num_clusters, p.images_per_group)
        index, group, score = select_nouns(V, T, n_groups=n_groups, gamma=p.gamma, seed=params.seed, tau=tau,
                                            device=array_device(params.model.device), progress=True)
    if len(index) < MIN_NOUNS:
        raise LaicError(
            f"nouns: only {len(index)} noun(s) selected from {len(T)}; use a larger vocabulary "
            "(vocab.source), a larger nouns.gamma, or nouns.filter: none"
        )
    table = pd.DataFrame({
        "noun": [vocab[i] for i in index],
        "vocab_index": index,
        "group": group,
        "score": score,
    })
    save_parquet(layout.SELECTED_NOUNS, table,
                 {"filter": p.filter, "n_groups": n_groups, "gamma": p.gamma, "vocab_size": len(T), "tau": tau,
                  "provenance": read_provenance(layout.VOCAB_NOUNS)})
    save_npy(layout.SELECTED_TEXT, np.ascontiguousarray(T[index], dtype=np.float32))
    print(f"nouns: kept {len(index)} of {len(T)} nouns ({p.filter} filter, {n_groups} image groups)")


if __name__ == "__main__":
    run(app)
