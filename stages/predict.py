"""predict: assign the images of any folder to the learned clusters.

    python -m stages.predict FOLDER --out predictions.csv [--params params.yaml] [--on-error skip]

FOLDER may also be one image file. Embeds every image under FOLDER with the model in params, assigns it to the
nearest learned center (data/centers/centers.npy, at the temperature it was trained with)
and writes a CSV with the columns of data/evaluate/assignments.csv for ours: row, source,
ours, ours_name, ours_confidence, and `ours_corrected` when clusters.yaml corrects the clusters
of ours (names follow its renames and merges; junk clusters' images get -1, "junk"), as evaluate
resolved its lines against these clusters (a line written for another run carried or set aside,
see stages/corrections.py). Not a DVC stage: it reads the pipeline's outputs and clusters.yaml
and writes only --out.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import typer

from laic_core.artifacts import (
    ChunkedArray, load_json, load_npy, load_parquet, load_parquet_meta, load_torch, save_csv,
)
from laic_core.data.datasets import images_at
from laic_core.data.encode import check_on_error, encode_images, image_embedding_dim
from laic_core.data.models import load_clip
from laic_core.errors import LaicError, name_some
from laic_core.method.centers import assign_labels
from laic_core.provenance import describe, model_identity, same_model
from laic_core.methods import METHODS
from laic_core.scoring.corrections import Corrections, corrected_labels, corrected_names
from laic_core.scoring.evaluation import assignment_table, by_row
from stages import layout
from stages.corrections import applied, partitions_of, read_lines
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


def load_learned(params, params_file: Path) -> tuple[np.ndarray, list[str], float]:
    """(K, d) centers, K cluster names and the temperature they were trained with; errors when
    missing, from another model or for another K than params.yaml asks for now."""
    for path in (layout.CENTER_VECTORS, layout.PROMPTS, layout.NAMES):
        if not path.is_file():
            raise LaicError(f"{path}: missing; the clusters have not been learned yet. "
                            "Run the pipeline first (`dvc repro`), then predict")
    saved = load_torch(layout.PROMPTS)
    was = saved.get("model", {})
    now = model_identity(params.model.name, params.model.pretrained, layout.HASH_CACHE)
    if not isinstance(was, dict) or not same_model(was, now):
        raise LaicError(
            f"{layout.PROMPTS}: the centers were learned with {describe(was if isinstance(was, dict) else {})} but "
            f"params now say {describe(now)}; run `dvc repro` to relearn them, or restore the model settings"
        )
    centers = load_npy(layout.CENTER_VECTORS)
    names = load_json(layout.NAMES)
    if centers.ndim != 2 or len(names) != centers.shape[0]:
        raise LaicError(f"{layout.CENTER_VECTORS} and {layout.NAMES} disagree on the number of clusters; rerun `dvc repro`")
    if centers.shape[0] != params.dataset.num_clusters:
        raise LaicError(
            f"{layout.CENTER_VECTORS}: the centers were learned for K={centers.shape[0]} clusters but {params_file} "
            f"now says dataset.num_clusters: {params.dataset.num_clusters}; run `dvc repro` to relearn them, "
            "or restore dataset.num_clusters"
        )
    return centers.astype(np.float32), [str(n.get("name", "")) for n in names], float(saved["tau"])


def resolved_ours(n_clusters: int) -> Corrections | None:
    """The corrections of ours as evaluate resolved them against these centers' clusters (each line of
    clusters.yaml applied, carried or set aside), or None when the file has none; errors when the
    per-image table is missing, older than clusters.yaml or than the centers."""
    if not read_lines():
        return None
    if not layout.ASSIGNMENTS_PARQUET.is_file():
        raise LaicError(f"{layout.CORRECTIONS} holds corrections, but {layout.ASSIGNMENTS_PARQUET}, where evaluate "
                        "resolves them against the learned clusters, is missing; run `dvc repro` first")
    meta = load_parquet_meta(layout.ASSIGNMENTS_PARQUET)
    fix = applied(meta, "predict").get("ours")
    sources = load_parquet(layout.features_meta("eval"))["source"].astype(str).tolist()
    ours = METHODS["ours"]
    path = layout.assignments(ours.stage, "eval")
    now = partitions_of(sources, {"ours": by_row(load_parquet(path), ours.column, len(sources), str(path))},
                        {"ours": n_clusters})["ours"]
    if (meta.get("partitions") or {}).get("ours") != now.run:
        raise LaicError(f"{layout.ASSIGNMENTS_PARQUET} was written for other clusters than the centers in "
                        f"{layout.CENTERS}; run `dvc repro` first, so that the lines of {layout.CORRECTIONS} are "
                        "resolved against these clusters")
    return fix


@app.command()
def main(
    folder: Path = typer.Argument(..., help="folder of images (searched recursively), or one image file"),
    out: Path = typer.Option(..., "--out", help="CSV to write: row, source, ours, ours_name, ours_confidence"),
    params_file: Path = PARAMS_OPTION,
    on_error: str = typer.Option("fail", "--on-error", help="fail | skip unreadable images"),
) -> None:
    check_on_error(on_error, "--on-error")
    split = images_at(folder)  # found now, not after the model is loaded
    if out.is_dir():  # found now, not after embedding every image
        raise LaicError(f"--out {out}: is a folder; give the CSV file to write, e.g. --out {out / 'predictions.csv'}")
    params = open_stage(params_file).params
    centers, names, tau = load_learned(params, params_file)
    fix = resolved_ours(len(names))  # checked before the (long) embedding
    bundle = load_clip(params.model.name, params.model.pretrained, params.model.device)
    dim = image_embedding_dim(bundle)
    if dim != centers.shape[1]:
        raise LaicError(f"model {params.model.name} gives d={dim} image features but {layout.CENTER_VECTORS} has "
                        f"d={centers.shape[1]}; run `dvc repro` to relearn the centers with this model")
    with tempfile.TemporaryDirectory(prefix="laic-predict-") as tmp:
        chunks = ChunkedArray(Path(tmp) / "features.npy", len(split), params.embed.chunk_size, key="predict")
        encode_images(bundle, split, chunks, batch_size=params.model.batch_size,
                      num_workers=params.embed.num_workers, on_error=on_error, desc="predict",
                      skip_hint="rerun with --on-error skip")
        keep = chunks.finite_rows()
        if not keep.any():
            raise LaicError(f"{folder}: none of its {len(split)} image(s) could be read (--on-error skip skipped "
                            f"every one: {name_some(split.sources(), 5)}); nothing written to {out}")
        features = np.array(chunks.finalize(np.float32, keep=keep))
    labels, confidence = assign_labels(features, centers, tau)
    sources = [s for s, k in zip(split.sources(), keep) if k]
    # The columns of data/evaluate/assignments.csv for `ours`: one reader serves both files.
    table = assignment_table(sources, {"ours": labels}, {"ours": confidence},
                             {"ours": corrected_names(names, fix) if fix else names},
                             corrected={"ours": corrected_labels(labels, fix, len(names))} if fix else None)
    save_csv(out, table)
    skipped = int((~keep).sum())
    note = f", skipped {skipped} unreadable image(s)" if skipped else ""
    print(f"predict: {len(table)} image(s) -> {out}{note}", file=sys.stderr)


if __name__ == "__main__":
    run(app, record_cost=False)
