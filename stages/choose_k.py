"""choose_k: suggest a number of clusters K without labels (a command, not a DVC stage).

    python -m stages.choose_k [--ks 2-30] [--seeds 3] [--params params.yaml] [--out metrics/choose_k]
        [--representation relation|image] [--max-rows 50000] [--n-init 3] [--subsample 1.0]
        [--silhouette-rows 5000]

Runs the cheap part of the pipeline (the noun filter, the relation rows and
k-means; no prompt training) for every K of --ks, on the features `dvc repro
embed vocab` wrote (data/features/fit.npy, data/vocab/text.npy) with the
nouns and relation settings of params.yaml, and measures label-free criteria
(`laic_core.scoring.choose_k`). Writes to --out:

- curves.csv: one row per K, every criterion and the combined score;
- choose_k.png: the curves, the suggested K and params.yaml's current K marked;
- suggestion.json: the suggested K, its confidence and why, the command to run.

It prints the suggestion and the command that runs the full pipeline at that
K. Labels are never read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer

from laic_core.artifacts import atomic_paths, load_npy
from laic_core.errors import LaicError
from laic_core.scoring.choose_k import (
    DEFAULT_SAMPLE_SIZE, RepresentationSettings, combined_score, k_curves, parse_ks, suggest_k,
)
from laic_core.validation import MAX_SEED, check_embeddings, load_embeddings
from laic_core.views.figures import choose_k_figure, save_figure
from stages import layout
from stages.inputs import PARAMS_OPTION, open_stage
from stages.runner import run, stage_app

app = stage_app()

OUT = layout.METRICS / "choose_k"


def pipeline_command(k: int, current_k: int) -> str:
    """What to type to run the full pipeline at K = k."""
    if k == current_k:
        return "dvc repro"  # params.yaml already asks for this K
    return f"dvc exp run -S dataset.num_clusters={k}"


def candidates(suggestion) -> list[int]:
    """The K's worth running in full when the criteria do not single one out: the suggestion, then
    the runner-up, the contenders and the best K above 2 (at most 4 in all)."""
    if suggestion.confidence == "high":
        return [suggestion.k]
    others = list(suggestion.contenders)
    others += [k for k in (suggestion.runner_up, suggestion.best_above_2) if k is not None]
    return [suggestion.k] + sorted(set(others) - {suggestion.k})[:3]


def _inputs(representation: str) -> list[Path]:
    paths = [layout.features("fit"), layout.features_meta("fit")]
    if representation == "relation":
        paths += [layout.VOCAB_TEXT, layout.VOCAB_NOUNS]
    return paths


@app.command()
def main(
    ks: str = typer.Option("2-30", "--ks", help="the K to try: a range 2-30, a range with a step 2-30:2, "
                                                "or a list 4,6,10"),
    seeds: int = typer.Option(3, "--seeds", help="k-means seeds per K (>= 2; stability compares them): "
                                                 "params.yaml's seed, seed + 1, ..."),
    params_file: Path = PARAMS_OPTION,
    out: Path = typer.Option(OUT, "--out", help="folder for curves.csv, choose_k.png, suggestion.json"),
    representation: str = typer.Option("relation", "--representation",
                                       help="relation: what the method clusters (nouns and relation settings "
                                            "of params.yaml); image: the CLIP features (clip_kmeans)"),
    max_rows: int = typer.Option(50_000, "--max-rows", help="fit images used (a seeded sample beyond this; "
                                                           "0 = all)"),
    n_init: int = typer.Option(3, "--n-init", help="k-means restarts per seed"),
    subsample: float = typer.Option(1.0, "--subsample", help="fraction of the rows each seed fits k-means on "
                                                             "(< 1 also perturbs the data between seeds)"),
    silhouette_rows: int = typer.Option(DEFAULT_SAMPLE_SIZE, "--silhouette-rows",
                                        help="rows the silhouette is measured on (a seeded sample; O(n^2))"),
) -> None:
    started = time.perf_counter()
    k_values = parse_ks(ks)
    if seeds < 2:
        raise LaicError(f"--seeds {seeds}: give at least 2; stability compares the seeds' clusterings")
    if max_rows < 0 or n_init < 1:
        raise LaicError("--max-rows must be >= 0 (0 = all) and --n-init >= 1")
    if 0 < max_rows <= max(k_values):
        raise LaicError(f"--max-rows {max_rows}: every K tried needs more images than clusters, and --ks {ks} goes "
                        f"up to K={max(k_values)}; give --max-rows {max(k_values) + 1} or more (0 = all fit images), "
                        "or smaller --ks")
    settings = RepresentationSettings(representation=representation)  # validates the name first
    missing = [str(p) for p in _inputs(representation) if not p.is_file()]
    if missing:
        raise LaicError(f"{', '.join(missing)} missing: choose_k reads the image features"
                        + (" and the noun embeddings" if representation == "relation" else "")
                        + "; run `dvc repro embed vocab` first")
    recorded = [p for p in _inputs(representation) if p.suffix == ".parquet"]  # where the model is recorded
    ctx = open_stage(params_file, recorded)
    params = ctx.params
    if params.seed + seeds - 1 > MAX_SEED:
        raise LaicError(f"--seeds {seeds}: the seeds {params.seed}..{params.seed + seeds - 1} (from params.yaml's "
                        f"seed) pass {MAX_SEED}, the largest numpy takes; lower seed in {params_file}")

    V_all = load_npy(layout.features("fit"), mmap=True)
    n_fit = len(V_all)
    if max_rows and n_fit > max_rows:
        # k-means over tens of K and seeds is the cost: a seeded sample keeps it bounded, while
        # L is still computed from every fit image, as the nouns stage computes it.
        rows = np.sort(np.random.default_rng(params.seed).choice(n_fit, max_rows, replace=False))
        V = V_all[rows]  # fancy indexing copies: writable, as torch wants
    else:
        V = np.array(V_all)  # a writable copy: torch warns on the read-only memory map
    V = check_embeddings(V, str(layout.features("fit")))
    T = None
    if representation == "relation":
        T = load_embeddings(layout.VOCAB_TEXT, dim=V.shape[1])
        n, r = params.nouns, params.relation
        settings = RepresentationSettings(
            representation="relation", nouns_filter=n.filter, gamma=n.gamma, images_per_group=n.images_per_group,
            nouns_tau=ctx.temperature("nouns") if n.filter == "tac" else 1.0,
            relation_kind=r.kind,
            relation_tau=ctx.temperature("relation") if r.kind == "softmax" else 1.0,
            ridge_lambda=r.ridge_lambda, seed=params.seed,
        )
    print(f"choose_k: K in {ks} on {len(V)} of {n_fit} fit images ({representation} rows), "
          f"{seeds} seeds x {n_init} k-means restarts")
    curves = k_curves(V, T, k_values, [params.seed + i for i in range(seeds)], settings, n_init=n_init,
                      subsample=subsample, sample_size=silhouette_rows, sample_seed=params.seed, n_fit=n_fit,
                      progress=True)
    suggestion = suggest_k(curves)
    current_k = params.dataset.num_clusters
    command = pipeline_command(suggestion.k, current_k)
    compare = candidates(suggestion)
    queue = [f"dvc exp run --queue -S dataset.num_clusters={k}" for k in compare] + ["dvc queue start"]

    table = curves.to_frame()
    table.insert(1, "score", combined_score(curves))
    summary = json.dumps({
        **suggestion.to_dict(),
        "statement": suggestion.statement(),
        "command": command,
        "compare_commands": queue if len(compare) > 1 else [],
        "current_k": current_k,
        "settings": curves.settings,
        "rule": "argmax over K of silhouette x stability (laic_core.scoring.choose_k.suggest_k)",
    }, indent=2) + "\n"
    figure = choose_k_figure(curves, suggestion, reference_k=current_k, reference_label="params.yaml K")
    # One run's outputs together or none of them: a suggestion.json of an earlier run must never
    # sit beside these curves.
    with atomic_paths(out / "curves.csv", out / "choose_k.png", out / "suggestion.json") as (csv, png, js):
        table.to_csv(csv, index=False, float_format="%.6g")
        save_figure(figure, png)
        js.write_text(summary)

    print(f"\nsuggested K: {suggestion.statement()}")
    at_current = np.flatnonzero(curves.ks == current_k)
    if at_current.size and suggestion.k != current_k:
        i = int(at_current[0])
        print(f"params.yaml's K={current_k}: score {table['score'][i]:.3f}, silhouette "
              f"{curves.silhouette[i]:.3f}, stability {curves.stability[i]:.2f}")
    print(f"\ncurves: {out / 'curves.csv'}, figure: {out / 'choose_k.png'} ({time.perf_counter() - started:.0f} s)")
    print(f"to run the full pipeline at K={suggestion.k}:\n    {command}")
    if command != "dvc repro":
        print(f"(or set dataset.num_clusters: {suggestion.k} in {params_file} and run `dvc repro`)")
    if len(compare) > 1:
        print(f"\nthe criteria do not single out one K; to run K={', '.join(map(str, compare))} in full and "
              "compare them (`dvc exp show`, the cluster names in data/centers/names.json):")
        print("\n".join(f"    {line}" for line in queue))


if __name__ == "__main__":
    run(app, record_cost=False)
