"""browse: the cluster browser, a static folder of HTML over the per-image table.

    python -m stages.browse            # (dvc repro runs it after evaluate)
    python -m webbrowser "file://$PWD/data/browser/index.html"

Reads data/evaluate/assignments.parquet (every method's clusters, corrected
as clusters.yaml says, the corrections it applied, the fingerprint of each
method's partition and the lines carried or set aside), data/centers/names.json
(runner-up nouns of `ours`) and the eval features (for methods without a
confidence of their own, members are ordered by their cosine to the
cluster's mean feature). Writes data/browser/ (laic_core.views.browser):
index.html opens on every cluster of `ours` as a card; thumbnails within the
`browser` budget of params.yaml.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from laic_core.artifacts import load_json, load_npy, load_parquet, load_parquet_meta
from laic_core.errors import LaicError
from laic_core.methods import METHODS
from laic_core.scoring.corrections import (
    Corrections, as_partition, assignment_column, corrected_names, table_methods,
)
from laic_core.scoring.evaluation import centroid_similarity
from laic_core.views.browser import MethodView, ThumbnailBudget, write_browser
from laic_core.views.gallery import cluster_entries, dataset_loader, name_glosses
from stages import layout
from stages.corrections import outcomes
from stages.inputs import PARAMS_OPTION, dataset_title, open_stage
from stages.runner import run, stage_app

app = stage_app()
MAIN = "ours"  # the method the overview opens with, when the run has it


def chosen_methods(wanted, present: list[str]) -> list[str]:
    """The methods to show: `browser.methods` ('all' or a list), checked against the table's."""
    if wanted == "all":
        return sorted(present, key=lambda m: m != MAIN)  # ours first, then registry order
    missing = [m for m in wanted if m not in present]
    if missing:
        raise LaicError(f"browser.methods: {', '.join(map(repr, missing))} not in {layout.ASSIGNMENTS_PARQUET} "
                        f"(it has {', '.join(present)}); name some of those, or 'all'")
    return list(dict.fromkeys(wanted))


def method_view(table, method: str, n_clusters: int, corrections: Corrections, features, names_json,
                run: str | None = None) -> MethodView:
    """What the browser shows of one method of the per-image table."""
    labels = table[assignment_column(table.columns, method)].to_numpy(np.int64)
    n = max(n_clusters, int(table[method].max()) + 1)
    if f"{method}_confidence" in table.columns:
        score, label = table[f"{method}_confidence"].to_numpy(np.float64), "confidence"
    else:
        score, label = centroid_similarity(features, as_partition(labels, n), n + 1), "similarity to the cluster mean"
    raw_names, runner_ups, glosses = [""] * n, None, None
    if method == MAIN:
        raw_names = ["" if e.get("empty") else str(e.get("name", "")) for e in names_json]
        runner_ups = [e["runner_ups"] for e in cluster_entries(names_json, [[] for _ in names_json])]
        glosses = name_glosses(names_json)
    return MethodView(method, METHODS[method].title, labels, score, label, n, corrected_names(raw_names, corrections),
                      raw_names=raw_names, runner_ups=runner_ups, corrections=corrections, glosses=glosses,
                      run=run)


@app.command()
def main(params_file: Path = PARAMS_OPTION) -> None:
    params = open_stage(params_file, [layout.features_meta("eval")]).params
    table = load_parquet(layout.ASSIGNMENTS_PARQUET)
    meta = load_parquet_meta(layout.ASSIGNMENTS_PARQUET)
    applied, runs = meta.get("corrections") or {}, meta.get("partitions") or {}
    eval_meta = load_parquet_meta(layout.features_meta("eval"))
    features = load_npy(layout.features("eval"), mmap=True)
    if features.shape[0] != len(table):
        raise LaicError(f"{layout.ASSIGNMENTS_PARQUET} has {len(table)} rows but {layout.features('eval')} "
                        f"{features.shape[0]}; the artifacts are out of date: run `dvc repro`")
    names_json = load_json(layout.NAMES)
    K, ds, b = params.dataset.num_clusters, params.dataset, params.browser
    views = [method_view(table, m, K, Corrections.from_record(applied.get(m, {})), features, names_json, runs.get(m))
             for m in chosen_methods(b.methods, table_methods(table.columns))]
    sources = table["source"].astype(str).tolist()
    load, problem = dataset_loader(sources, ds.kind, ds.name, ds.root, ds.eval_split)
    if problem:
        print(f"browse: thumbnails are placeholders ({problem})", file=sys.stderr)
    classes = table["label"].to_numpy(np.int64) if "label" in table.columns else None
    budget = ThumbnailBudget(b.thumbnails_per_cluster, b.check, b.max_thumbnails, b.thumbnail_px)
    # Written beside the final folder and moved into place: an interrupted run leaves no half browser.
    partial = layout.BROWSER.with_name(layout.BROWSER.name + ".partial")
    stats = write_browser(partial, views, sources, load_image=load, classes=classes,
                          class_names=eval_meta.get("class_names") or None, budget=budget, page_size=b.page_size,
                          title=f"Clusters of {dataset_title(params)}", moved=outcomes(meta))
    shutil.rmtree(layout.BROWSER, ignore_errors=True)
    partial.rename(layout.BROWSER)
    print(f"browse: {stats['images']} images, {len(views)} method(s), {stats['thumbnails']} thumbnails; "
          f"{stats['files']} files, {stats['bytes'] / 2**20:.1f} MiB -> {layout.BROWSER_INDEX}", file=sys.stderr)


if __name__ == "__main__":
    run(app)
