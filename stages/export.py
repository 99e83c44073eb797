"""export: the images of each cluster in a folder of their own.

    python -m stages.export OUT [--method ours] [--mode symlink|copy|hardlink] [--force]

Lays the eval images out as OUT/<id>-<name>/<file> by the per-image table
(data/evaluate/assignments.parquet), corrected as clusters.yaml says (junk
images go to OUT/junk/), and writes OUT/clusters.csv (row, source, cluster,
name, path). Symbolic links by default (instant, no space; absolute, so OUT
can move); benchmark images that are not files are written as PNG. It never
writes into a non-empty OUT unless told (--force), never touches the source
images, refuses an OUT inside the dataset's folder (the next run would cluster
the exported images) and a clusters.yaml edited since the table was written
(run `dvc repro` first, so the folders are what the table, the report and the
browser say: lines written for another run carried or set aside as evaluate
resolved them). Not a DVC stage: it reads the pipeline's outputs and writes only OUT.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from laic_core.artifacts import load_parquet, load_parquet_meta
from laic_core.data.export import MODES, inside, plan_export, write_export
from laic_core.errors import LaicError
from laic_core.scoring.corrections import assignment_column, table_methods
from laic_core.views.gallery import dataset_loader
from stages import layout
from stages.corrections import applied, outcomes
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()


@app.command()
def main(
    out: Path = typer.Argument(..., help="folder to create (or an empty one): OUT/<id>-<name>/<images>"),
    method: str = typer.Option("ours", "--method", help="whose clusters: ours, clip_kmeans, scan, ..."),
    mode: str = typer.Option("symlink", "--mode", help="symlink | copy | hardlink"),
    force: bool = typer.Option(False, "--force", help="write into a non-empty OUT (replacing an earlier export)"),
    params_file: Path = PARAMS_OPTION,
) -> None:
    if mode not in MODES:
        raise LaicError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if out.is_file():
        raise LaicError(f"{out} is a file; give the folder to export into (a new one, or an empty one)")
    params = open_stage(params_file).params
    ds = params.dataset
    if ds.kind == "imagefolder" and inside(out, ds.root):
        raise LaicError(f"{out} is inside {ds.root}, the images being clustered (dataset.root in {params_file}): "
                        f"the next `dvc repro` would cluster the exported images as new ones; export into a "
                        f"folder outside {ds.root}")
    table = load_parquet(layout.ASSIGNMENTS_PARQUET)
    present = table_methods(table.columns)
    if method not in present:
        raise LaicError(f"--method {method!r}: {layout.ASSIGNMENTS_PARQUET} has no such method's clusters "
                        f"(it has {', '.join(present)})")
    meta = load_parquet_meta(layout.ASSIGNMENTS_PARQUET)
    applied(meta, "export")  # clusters.yaml still says what the table applied
    moved = [o for o in outcomes(meta) if o["method"] == method]
    sources = table["source"].astype(str).tolist()
    names = table[f"{method}_name"].fillna("").astype(str).tolist() if f"{method}_name" in table.columns \
        else [""] * len(table)
    plan = plan_export(sources, table[assignment_column(table.columns, method)].to_numpy(), names)
    load, problem = dataset_loader(sources, ds.kind, ds.name, ds.root, ds.eval_split)
    if problem:
        raise LaicError(f"the images are a benchmark's, to be written as PNG, but: {problem}")
    start = time.perf_counter()
    done = write_export(plan, out, mode=mode, load_image=load, force=force)
    print(f"export: {done['images']} images of {method} in {done['folders']} folders ({mode}) -> {out} "
          f"in {time.perf_counter() - start:.1f} s; the list: {out / 'clusters.csv'}", file=sys.stderr)
    if moved:  # the folders follow the lines as evaluate resolved them: say so once
        aside = [o["where"] for o in moved if o["status"] != "carried"]
        print(f"export: {len(moved) - len(aside)} line(s) of {layout.CORRECTIONS} about {method} carried from another "
              f"run, {len(aside)} set aside and not applied" + (f" ({', '.join(aside)})" if aside else "")
              + f"; {layout.REPORT} says why", file=sys.stderr)


if __name__ == "__main__":
    run(app, record_cost=False)
