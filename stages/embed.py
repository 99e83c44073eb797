"""embed: CLIP image embeddings of the fit and eval splits.

Writes data/features/{fit,eval}.npy ((N, d) float32, L2-normalised) and
data/features/{fit,eval}.parquet (row, source, label when known). Finished
chunks are kept in `<file>.partial/`, so an interrupted run resumes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from laic_core.artifacts import ChunkedArray, fingerprint, save_json, save_parquet
from laic_core.config import load_params
from laic_core.datasets import ImageSplit, load_dataset
from laic_core.encode import encode_images, image_embedding_dim
from laic_core.models import load_clip
from laic_core.provenance import model_identity, record
from stages import layout
from stages.runner import run, stage_app

app = stage_app()


def embed_split(bundle, split: ImageSplit, role: str, params) -> dict:
    for note in split.notes:
        print(f"{role}: note: {note}", file=sys.stderr)
    out_path = layout.features(role)
    ident = model_identity(params.model.name, params.model.pretrained, layout.HASH_CACHE)
    key = fingerprint({
        "model": ident,
        "data": split.identity(),
        "preprocess": repr(bundle.preprocess),
        "dtype": str(bundle.dtype),
    })
    chunks = ChunkedArray(out_path, len(split), params.embed.chunk_size, key)
    done = len(chunks.done())
    if done:
        print(f"{role}: resuming, {done}/{chunks.n_chunks} chunk(s) already encoded")
    encode_images(
        bundle, split, chunks,
        batch_size=params.model.batch_size,
        num_workers=params.embed.num_workers,
        on_error=params.embed.on_error,
        desc=f"embed {role}",
    )
    keep = chunks.finite_rows()
    sources = split.sources()
    skipped = [sources[i] for i in np.flatnonzero(~keep)]
    table = pd.DataFrame({
        "row": np.arange(int(keep.sum()), dtype=np.int64),
        "source": [s for s, k in zip(sources, keep) if k],
    })
    if split.labels is not None:
        table["label"] = split.labels[keep]
    meta = {
        "dataset": split.name,
        "model": params.model.name,
        "pretrained": params.model.pretrained,
        "class_names": split.class_names,
        "skipped": skipped,
        "notes": split.notes,
        "provenance": record(ident, image_embedding_dim(bundle), repr(bundle.preprocess), str(bundle.dtype)),
    }
    # The metadata goes first: a features file without its table would look complete.
    save_parquet(layout.features_meta(role), table, meta)
    chunks.finalize(np.float32, keep=keep)
    if skipped:
        print(f"{role}: skipped {len(skipped)} unreadable image(s), listed in {layout.features_meta(role)}")
    return {"images": int(keep.sum()), "skipped": len(skipped)}


@app.command()
def main(params_file: Path = typer.Option("params.yaml", "--params", help="parameters file")) -> None:
    params = load_params(params_file)
    ds = params.dataset
    splits = load_dataset(ds.kind, ds.name, ds.root, ds.fit_split, ds.eval_split, download=ds.download)
    bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
    print(f"model {params.model.name} ({params.model.pretrained}) on {bundle.device}")
    stats = {"fit": embed_split(bundle, splits.fit, "fit", params)}
    if splits.same:
        # Transductive use: the eval split is the fit split; copy rather than re-encode.
        for src, dst in ((layout.features("fit"), layout.features("eval")),
                         (layout.features_meta("fit"), layout.features_meta("eval"))):
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        stats["eval"] = dict(stats["fit"])
    else:
        stats["eval"] = embed_split(bundle, splits.eval, "eval", params)
    save_json(layout.METRICS / "embed.json", stats)


if __name__ == "__main__":
    run(app)
