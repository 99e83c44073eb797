"""embed: CLIP image embeddings of the fit and eval splits.

Writes data/features/{fit,eval}.npy ((N, d) float32, L2-normalised) and
data/features/{fit,eval}.parquet (row, source, label when known). Finished
chunks are kept in `<file>.partial/`, so an interrupted run resumes, with
either engine (`embed.engine`: local, or ray for a Ray cluster).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from laic_core.artifacts import ChunkedArray, ensure_free_space, fingerprint, save_json, save_parquet
from laic_core.data.datasets import ImageSplit, dataset_split_listing, load_dataset
from laic_core.data.encode import encode_images, image_embedding_dim
from laic_core.data.models import ClipBundle, compute_dtype, load_clip
from laic_core.errors import LaicError, name_some
from laic_core.method.temperature import model_logit_scale
from laic_core.provenance import dataset_settings, model_identity, record
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


@dataclass
class Engine:
    """What computes the missing chunks: the dtype its model runs in, and the call."""

    dtype: torch.dtype
    encode: Callable[[ImageSplit, ChunkedArray, str], object]  # (split, chunks, desc)


def local_engine(bundle: ClipBundle, params) -> Engine:
    def encode(split, chunks, desc):
        return encode_images(bundle, split, chunks, batch_size=params.model.batch_size,
                             num_workers=params.embed.num_workers, on_error=params.embed.on_error, desc=desc)

    return Engine(bundle.dtype, encode)


def ray_engine(bundle: ClipBundle, params, device: str) -> Engine:
    from laic_core.data.ray_embed import encode_images_ray

    def encode(split, chunks, desc):
        return encode_images_ray(bundle, split, chunks, batch_size=params.model.batch_size,
                                 on_error=params.embed.on_error, workers=params.embed.ray_workers,
                                 address=params.embed.ray_address, device=device, desc=desc)

    # The key names the dtype the replicas compute in, not the driver's copy.
    return Engine(compute_dtype(device), encode)


def embed_split(bundle, split: ImageSplit, role: str, params, engine: Engine | None = None) -> dict:
    engine = engine or local_engine(bundle, params)
    for note in split.notes:
        print(f"{role}: note: {note}", file=sys.stderr)
    out_path = layout.features(role)
    ident = model_identity(params.model.name, params.model.pretrained, layout.HASH_CACHE)
    # The same key for both engines: chunks from one are reused by the other.
    key = fingerprint({
        "model": ident,
        "data": split.identity(),
        "preprocess": repr(bundle.preprocess),
        "dtype": str(engine.dtype),
    })
    chunks = ChunkedArray(out_path, len(split), params.embed.chunk_size, key)
    done = len(chunks.done())
    if done:
        print(f"{role}: resuming, {done}/{chunks.n_chunks} chunk(s) already encoded")
    # The missing chunks, then the final array beside all of them while they are joined: found
    # short now, not after an hour of encoding.
    row_bytes = image_embedding_dim(bundle) * np.dtype(np.float32).itemsize
    missing_rows = sum(len(chunks.chunk_rows(c)) for c in chunks.missing())
    ensure_free_space(out_path.parent, (missing_rows + len(split)) * row_bytes,
                      f"embedding the {len(split)} {role} images")
    engine.encode(split, chunks, f"embed {role}")
    keep = chunks.finite_rows()
    sources = split.sources()
    skipped = [sources[i] for i in np.flatnonzero(~keep)]
    if not keep.any():  # nothing to cluster: stop here, not in the next stage on an empty array
        raise LaicError(f"{role}: none of the {len(split)} images of {split.name} could be read (embed.on_error: "
                        f"skip skipped every one: {name_some(skipped, 5)}); fix or replace these files, or point "
                        "dataset.root at your images")
    if role == "fit" and keep.sum() < params.dataset.num_clusters:
        raise LaicError(f"fit: only {int(keep.sum())} of the {len(split)} images of {split.name} could be read, "
                        f"fewer than dataset.num_clusters: {params.dataset.num_clusters} (every cluster needs an "
                        f"image; skipped: {name_some(skipped, 5)}); fix these files or lower dataset.num_clusters")
    table = pd.DataFrame({
        "row": np.arange(int(keep.sum()), dtype=np.int64),
        "source": [s for s, k in zip(sources, keep) if k],
    })
    if split.labels is not None:
        table["label"] = split.labels[keep]
    ds = params.dataset
    meta = {
        "dataset": split.name,
        "dataset_settings": dataset_settings(ds, role),
        # What validate lists of these images now: a stage run by hand compares it with the folder
        # as it is then (stages/guards.py), as `dvc repro` compares data/listing/dataset.json.
        "listing": dataset_split_listing(ds.kind, ds.name, ds.root, ds.fit_split if role == "fit" else ds.eval_split,
                                         download=False, listing=ds.listing, cache=layout.IMAGE_HASH_CACHE,
                                         found=split),
        "model": params.model.name,
        "pretrained": params.model.pretrained,
        "class_names": split.class_names,
        "skipped": skipped,
        "notes": split.notes,
        "provenance": record(ident, image_embedding_dim(bundle), repr(bundle.preprocess), str(engine.dtype),
                             model_logit_scale(bundle.model, params.model.pretrained)),
    }
    # The metadata goes first: a features file without its table would look complete.
    save_parquet(layout.features_meta(role), table, meta)
    chunks.finalize(np.float32, keep=keep)
    if skipped:
        print(f"{role}: skipped {len(skipped)} unreadable image(s), listed in {layout.features_meta(role)}")
    return {"images": int(keep.sum()), "skipped": len(skipped)}


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file).params
    ds = params.dataset
    splits = load_dataset(ds.kind, ds.name, ds.root, ds.fit_split, ds.eval_split, download=ds.download)
    with contextlib.ExitStack() as stack:
        if params.embed.engine == "ray":
            from laic_core.data.ray_embed import ray_session, worker_device

            stack.enter_context(ray_session(params.embed.ray_address, params.embed.ray_workers))
            device = worker_device(params.model.device)
            # The driver only preprocesses (in Ray tasks) and fingerprints; replicas encode.
            bundle = load_clip(params.model.name, params.model.pretrained, "cpu")
            engine = ray_engine(bundle, params, device)
            print(f"model {params.model.name} ({params.model.pretrained}) on Ray: "
                  f"{params.embed.ray_workers} replica(s) on {device}")
        else:
            bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
            engine = local_engine(bundle, params)
            print(f"model {params.model.name} ({params.model.pretrained}) on {bundle.device}")
        stats = _embed_splits(bundle, splits, params, engine)
    save_json(layout.EMBED_METRICS, stats)


def _embed_splits(bundle, splits, params, engine: Engine) -> dict:
    stats = {"fit": embed_split(bundle, splits.fit, "fit", params, engine)}
    if splits.same:
        # Transductive use: the eval split is the fit split; copy rather than re-encode.
        for src, dst in ((layout.features("fit"), layout.features("eval")),
                         (layout.features_meta("fit"), layout.features_meta("eval"))):
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        stats["eval"] = dict(stats["fit"])
    else:
        stats["eval"] = embed_split(bundle, splits.eval, "eval", params, engine)
    return stats


if __name__ == "__main__":
    run(app)
