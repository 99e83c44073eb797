"""table: run the pipeline on several datasets (and seeds) and collect one table (rows datasets, columns methods).

Each dataset is one DVC experiment that differs from the workspace only in
the `dataset.*` parameters (and any `--set` given for all of them); with
`--seeds`, one experiment per dataset and seed, differing also in `seed`:

    python -m stages.table run --dataset cifar10 --dataset stl10 --seeds 0 1 2
    python -m stages.table collect            # -> metrics/table.md and metrics/table.csv
    python -m stages.table ablation -d cifar10 --seeds 0 1 2   # -> metrics/ablation.md and .csv

`ablation` runs the paper's ablation (laic_core.views.ablation: the full
method and one experiment per switched component, per dataset and seed) and
writes its table; a custom dataset is given with `-S dataset.kind=... -S
dataset.root=...` instead of `-d`. `collect` and `ablation` also write the
paper's Fig. 4 (no-train methods across the table's datasets) to
metrics/fig4.csv and metrics/fig4.png, which dvc.yaml's top-level `plots:`
lists for `dvc plots show`.

`run` calls `dvc exp run -n <prefix>-<dataset>[-s<seed>]-<stamp> -S dataset.name=... [-S seed=<s>]`
once per experiment, one after the other in the workspace (`--queue` only
queues them, for `dvc queue start`). The benchmarks' K, splits and folders
come from laic_core.data.datasets.BENCHMARKS. The vocab stage depends on the
model, the vocabulary and the templates only, so it is computed once: later
experiments find its outputs up to date in the workspace, or restore them
from DVC's run-cache. After `run`, the workspace holds the last
experiment, as after any `dvc exp run`.

`collect` reads `dvc exp show --json` and hands it to laic_core.views.experiments,
which pools the runs of one setting that differ only in the seed (mean ±
sd) and keeps, per (dataset, model), the newest setting.

This module holds the command line and the subprocess calls; the command
lines are built by pure functions (`exp_run_command`, `exp_show_command`,
`experiment_plan`), so all of it is testable without DVC.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import typer

from laic_core.artifacts import atomic_path
from laic_core.data.datasets import BENCHMARK_KIND, BENCHMARKS
from laic_core.errors import LaicError
from laic_core.views import figures
from laic_core.views.ablation import (
    FIG4_METHODS, SWITCHES, ablation_columns, ablation_csv, ablation_markdown, fig4_csv, full_groups, notrain_rows,
    variant_names, variants_to_run,
)
from laic_core.views.experiments import (
    RunGroup, experiment_records, select_runs, table_csv, table_markdown, table_methods,
)
from laic_core.methods import title as method_title
from stages.runner import run as run_app

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run the pipeline over several datasets and collect one results table.")


# ------------------------------------------------------------------ commands (pure)


def dataset_settings(name: str, raw_root: str = "data/raw") -> dict[str, str]:
    """The `-S` settings that point the pipeline at benchmark `name` (from laic_core.data.datasets.BENCHMARKS)."""
    if name not in BENCHMARKS:
        raise LaicError(
            f"--dataset {name!r} is not in the table's list ({', '.join(BENCHMARKS)}); "
            "for another dataset run `dvc exp run -S dataset.name=... -S dataset.root=... "
            "-S dataset.num_clusters=...` yourself, then `python -m stages.table collect`")
    d = BENCHMARKS[name]
    root = f"{raw_root.rstrip('/')}/{d.folder or name}"
    return {
        "dataset.kind": BENCHMARK_KIND,
        "dataset.name": name,
        "dataset.root": root,
        "dataset.num_clusters": str(d.num_clusters),
        "dataset.fit_split": d.fit_split,
        "dataset.eval_split": d.eval_split,
    }


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """['model.name=ViT-B-16', ...] -> {key: value}; each item must be KEY=VALUE."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or " " in key.strip():
            raise LaicError(f"--set {item!r}: write KEY=VALUE, e.g. --set model.name=ViT-B-16")
        out[key.strip()] = value
    return out


def parse_seeds(items: Iterable[str]) -> list[int]:
    """['0', '1', '2'], ['0,1,2'] or ['0-2'] -> [0, 1, 2] (repeats dropped, order kept)."""
    seeds: list[int] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            first, dash, last = part.partition("-")
            try:
                values = (list(range(int(first), int(last) + 1)) if dash and first else [int(part)])
            except ValueError:
                values = []
            if not values or min(values) < 0:
                raise LaicError(f"--seeds {part or item!r}: give seeds as integers >= 0, e.g. --seeds 0 1 2 "
                                "(or --seeds 0-2)")
            seeds += values
    return list(dict.fromkeys(seeds))


def experiment_name(prefix: str, dataset: str, stamp: str, seed: int | None = None) -> str:
    """A fresh experiment name: re-running never collides with (or overwrites) an old one."""
    parts = [prefix, dataset] + ([f"s{seed}"] if seed is not None else []) + [stamp]
    return "-".join(p for p in parts if p)


def experiment_plan(datasets: Iterable[str], seeds: list[int] | None, extra: Mapping[str, str], *,
                    raw_root: str, prefix: str, stamp: str, queue: bool = False) -> list[tuple[str, list[str]]]:
    """[(what it runs, `dvc exp run` command)]: one experiment per dataset, or per dataset x seed."""
    plan = []
    for d in dict.fromkeys(datasets):
        for seed in seeds or [None]:
            settings = {**dataset_settings(d, raw_root), **extra}
            if seed is not None:
                settings["seed"] = str(seed)
            what = d if seed is None else f"{d} seed {seed}"
            plan.append((what, exp_run_command(settings, name=experiment_name(prefix, d, stamp, seed), queue=queue)))
    return plan


def custom_dataset(extra: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(name, its `dataset.*` settings) of a dataset given by -S settings rather than -d."""
    settings = {k: v for k, v in extra.items() if k.startswith("dataset.")}
    missing = [k for k in ("dataset.kind", "dataset.root") if k not in settings]
    if missing:
        raise LaicError(f"give a benchmark with -d (one of {', '.join(BENCHMARKS)}), or your own dataset with "
                        f"-S dataset.kind=... -S dataset.root=... (missing: {', '.join(missing)})")
    name = settings.get("dataset.name") or Path(settings["dataset.root"].rstrip("/")).name
    return name, {"dataset.name": name, **settings}


def ablation_plan(datasets: Mapping[str, Mapping[str, str]], seeds: list[int], extra: Mapping[str, str],
                  variants: Sequence[str] | None, *, prefix: str, stamp: str,
                  queue: bool = False) -> list[tuple[str, list[str]]]:
    """[(what it runs, `dvc exp run` command)]: per dataset and seed, the full method and each variant.

    datasets: {name: its dataset.* settings}. Every run sets every switch of
    laic_core.views.ablation.SWITCHES (a `dvc exp run` starts from the
    workspace, which holds the last experiment's parameters).
    """
    clashes = sorted(k for k in extra if k in SWITCHES)
    if clashes:
        raise LaicError(f"--set {', '.join(clashes)}: the ablation turns these switches itself; drop them")
    plan = []
    for name, data in datasets.items():
        for seed in seeds:
            for run_name, switches in variants_to_run(variants):
                settings = {**data, **extra, **switches, "seed": str(seed)}
                exp = "-".join(p for p in (prefix, name, run_name, f"s{seed}", stamp) if p)
                plan.append((f"{name} {run_name} seed {seed}", exp_run_command(settings, name=exp, queue=queue)))
    return plan


def exp_run_command(settings: Mapping[str, str], *, name: str | None = None, queue: bool = False,
                    dvc: str = "dvc") -> list[str]:
    """`dvc exp run [--queue] [-n name] -S k=v ...` as an argument list."""
    cmd = [dvc, "exp", "run"]
    if queue:
        cmd.append("--queue")
    if name:
        cmd += ["-n", name]
    for key, value in settings.items():
        cmd += ["-S", f"{key}={value}"]
    return cmd


def exp_show_command(*, all_commits: bool = False, dvc: str = "dvc") -> list[str]:
    """`dvc exp show --json` restricted to finished experiments."""
    cmd = [dvc, "exp", "show", "--json", "--hide-queued", "--hide-failed", "--no-pager"]
    if all_commits:
        cmd.append("--all-commits")
    return cmd


# ------------------------------------------------------------------ CLI


FIG4 = Path("metrics/fig4.csv")  # dvc.yaml's top-level plots list it and its PNG


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _exp_show(from_json: Path | None, all_commits: bool) -> list:
    if from_json is not None:
        return json.loads(Path(from_json).read_text())
    cmd = exp_show_command(all_commits=all_commits)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise LaicError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(done.stdout)


def write_fig4(groups: Sequence[RunGroup], path: Path) -> None:
    """The paper's Fig. 4 for these rows: `path` (CSV, for `dvc plots show`) and a PNG beside it."""
    rows = notrain_rows(groups)
    _write(path, fig4_csv(rows))
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    if not datasets:
        figure = figures.message_figure("no run has the no-train methods' scores", "Fig. 4")
    else:
        import numpy as np

        acc = np.full((len(datasets), len(FIG4_METHODS)), np.nan)
        sd = np.zeros_like(acc)
        for r in rows:
            i, j = datasets.index(r.dataset), FIG4_METHODS.index(r.method)
            acc[i, j], sd[i, j] = 100 * r.acc.mean, 100 * (r.acc.sd or 0.0)
        figure = figures.notrain_figure(datasets, [method_title(m) for m in FIG4_METHODS], acc, sd,
                                        title="Fig. 4: clustering without training (ACC, mean ± sd over seeds)")
    figures.save_figure(figure, path.with_suffix(".png"))
    print(f"Fig. 4 ({len(datasets)} dataset(s)) -> {path} and {path.with_suffix('.png')}")


@app.command("run", context_settings={"allow_extra_args": True})
def run_command(
    ctx: typer.Context,
    dataset: list[str] = typer.Option(..., "--dataset", "-d", help=f"benchmark name, repeatable: {', '.join(BENCHMARKS)}"),
    seeds: list[str] = typer.Option([], "--seeds", help="run every dataset once per seed: --seeds 0 1 2 "
                                    "(or 0,1,2 or 0-2); `collect` reports mean ± sd over them"),
    raw_root: str = typer.Option("data/raw", help="folder holding (or receiving) each dataset as <raw-root>/<name>"),
    set_: list[str] = typer.Option([], "--set", "-S", help="extra KEY=VALUE for every experiment, e.g. model.name=ViT-B-16"),
    prefix: str = typer.Option("table", help="experiment names are <prefix>-<dataset>[-s<seed>]-<time stamp>"),
    queue: bool = typer.Option(False, help="only queue the experiments (run them with `dvc queue start`)"),
    keep_going: bool = typer.Option(False, help="go on with the next dataset when one fails"),
    dry_run: bool = typer.Option(False, help="print the dvc commands without running them"),
) -> None:
    """Run (or queue) one DVC experiment per dataset (per dataset and seed with --seeds)."""
    # `--seeds 0 1 2`: an option takes one value, so click leaves 1 and 2 over as extra arguments.
    if ctx.args and not seeds:
        raise LaicError(f"unexpected argument(s) {' '.join(ctx.args)}: give each dataset with its own -d "
                        "(-d cifar10 -d stl10) and seeds after --seeds (--seeds 0 1 2)")
    seed_list = parse_seeds(list(seeds) + list(ctx.args)) if seeds else None
    extra = parse_overrides(set_)
    clashes = sorted(k for k in extra if k.startswith("dataset."))
    if clashes:
        raise LaicError(f"--set {', '.join(clashes)}: the dataset settings come from --dataset; "
                        "drop them (or run `dvc exp run` yourself for a custom dataset)")
    if seed_list and "seed" in extra:
        raise LaicError("--set seed: the seeds come from --seeds; drop one of the two")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    plan = experiment_plan(dataset, seed_list, extra, raw_root=raw_root, prefix=prefix, stamp=stamp, queue=queue)
    failed = _run_plan(plan, dry_run=dry_run, keep_going=keep_going)
    if dry_run:
        return
    if queue:
        print(f"queued {len(plan) - len(failed)} experiment(s): start them with `dvc queue start`, "
              "follow with `dvc queue status`, then run `python -m stages.table collect`. Queued "
              "experiments run in temporary copies of the repository: data under "
              f"{raw_root} that git ignores is not copied, so torchvision datasets are downloaded again.")
    else:
        print("done: `python -m stages.table collect` writes the table")
    if failed:
        raise LaicError(f"{len(failed)} experiment(s) failed: {', '.join(failed)}")


@app.command("collect")
def collect_command(
    out: Path = typer.Option(Path("metrics/table.md"), help="Markdown table; the CSV goes beside it (.csv)"),
    methods: str = typer.Option(None, help="only these methods' columns, comma-separated, e.g. ours,clip_kmeans"),
    all_commits: bool = typer.Option(False, help="experiments of every commit, not only HEAD's"),
    every_setting: bool = typer.Option(False, help="one row per setting (runs differing in any parameter but "
                                       "the seed) instead of the newest setting per dataset and model"),
    every_run: bool = typer.Option(False, help="one row per experiment, seeds not pooled"),
    workspace: bool = typer.Option(False, help="include the workspace's own results"),
    from_json: Path = typer.Option(None, help="read saved `dvc exp show --json` output instead of calling dvc"),
    fig4: Path = typer.Option(FIG4, help="the paper's Fig. 4 for the table's datasets: this CSV and a PNG beside it"),
) -> None:
    """Collect the experiments' scores into metrics/table.md and metrics/table.csv.

    Runs of one setting that differ only in `seed` are pooled into one row:
    mean ± standard deviation over the seeds.
    """
    raw = _exp_show(from_json, all_commits)
    rows = select_runs(experiment_records(raw), every_run=every_run, every_setting=every_setting,
                       include_workspace=workspace)
    if not rows:
        raise LaicError("no experiment with metrics/scores.json found: run "
                        "`python -m stages.table run --dataset ...` first (or pass --workspace)")
    columns = table_methods(rows, methods.split(",") if methods is not None else None)
    _write(out, table_markdown(rows, columns))
    _write(out.with_suffix(".csv"), table_csv(rows, columns))
    print(f"{len(rows)} row(s), {sum(r.n_seeds for r in rows)} run(s) -> {out} and {out.with_suffix('.csv')}")
    write_fig4(rows, fig4)


@app.command("ablation", context_settings={"allow_extra_args": True})
def ablation_command(
    ctx: typer.Context,
    dataset: list[str] = typer.Option([], "--dataset", "-d", help="benchmark name, repeatable; or give your own "
                                      "dataset with -S dataset.kind=... -S dataset.root=... instead"),
    seeds: list[str] = typer.Option(["0", "1", "2"], "--seeds", help="seeds of every variant: --seeds 0 1 2 "
                                    "(or 0,1,2 or 0-2); the table reports mean ± sd over them"),
    variant: list[str] = typer.Option([], "--variant", help=f"only these variants (repeatable; the full method "
                                      f"always runs): {', '.join(variant_names())}"),
    raw_root: str = typer.Option("data/raw", help="folder holding (or receiving) each benchmark as <raw-root>/<name>"),
    set_: list[str] = typer.Option([], "--set", "-S", help="KEY=VALUE for every experiment: a custom dataset's "
                                   "dataset.* settings, model.name=..., ..."),
    prefix: str = typer.Option("ablation", help="experiment names are <prefix>-<dataset>-<variant>-s<seed>-<time>"),
    queue: bool = typer.Option(False, help="only queue the experiments (then `dvc queue start`, and rerun with "
                               "--collect-only)"),
    keep_going: bool = typer.Option(False, help="go on with the next experiment when one fails"),
    dry_run: bool = typer.Option(False, help="print the dvc commands without running them"),
    collect_only: bool = typer.Option(False, help="run nothing: write the table from the experiments there are"),
    out: Path = typer.Option(Path("metrics/ablation.md"), help="Markdown table; the CSV goes beside it (.csv)"),
    fig4: Path = typer.Option(FIG4, help="the paper's Fig. 4 for the ablation's datasets: CSV and PNG beside it"),
    all_commits: bool = typer.Option(False, help="collect experiments of every commit, not only HEAD's"),
    from_json: Path = typer.Option(None, help="collect from saved `dvc exp show --json` output"),
) -> None:
    """The paper's ablation: per dataset and seed, the full method and each component switched off
    (one `dvc exp run -S` each), then its table (mean ± sd over seeds) and Fig. 4."""
    if ctx.args and not seeds:
        raise LaicError(f"unexpected argument(s) {' '.join(ctx.args)}: seeds go after --seeds (--seeds 0 1 2)")
    command = "python -m stages.table " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if not collect_only:
        seed_list = parse_seeds(list(seeds) + list(ctx.args))
        extra = parse_overrides(set_)
        if "seed" in extra:
            raise LaicError("--set seed: the seeds come from --seeds; drop one of the two")
        if dataset:
            clashes = sorted(k for k in extra if k.startswith("dataset."))
            if clashes:
                raise LaicError(f"--set {', '.join(clashes)}: with -d the dataset settings come from the benchmark; "
                                "give either -d or your own dataset's -S dataset.* settings")
            datasets = {d: dataset_settings(d, raw_root) for d in dict.fromkeys(dataset)}
        else:
            name, settings = custom_dataset(extra)
            datasets = {name: settings}
            extra = {k: v for k, v in extra.items() if not k.startswith("dataset.")}
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        plan = ablation_plan(datasets, seed_list, extra, variant or None, prefix=prefix, stamp=stamp, queue=queue)
        failed = _run_plan(plan, dry_run=dry_run, keep_going=keep_going)
        if dry_run:
            return
        if queue:
            print(f"queued {len(plan) - len(failed)} experiment(s): `dvc queue start`, then "
                  "`python -m stages.table ablation --collect-only`")
            return
    # a dataset of the table has runs of a variant besides the full method's (which also make no_training's)
    columns = [c for c in ablation_columns(experiment_records(_exp_show(from_json, all_commits)))
               if set(c.runs) - {"full", "no_training"}]
    if not columns:
        raise LaicError("no ablation experiment found (the full method and at least one variant of a dataset): "
                        "run `python -m stages.table ablation -d ...` first")
    _write(out, ablation_markdown(columns, command))
    _write(out.with_suffix(".csv"), ablation_csv(columns))
    print(f"ablation over {len(columns)} dataset(s) -> {out} and {out.with_suffix('.csv')}")
    write_fig4(full_groups(columns), fig4)
    if not collect_only and failed:
        raise LaicError(f"{len(failed)} experiment(s) failed: {', '.join(failed)}")


def _run_plan(plan: Sequence[tuple[str, list[str]]], *, dry_run: bool, keep_going: bool) -> list[str]:
    """Run each `dvc exp run` of the plan in turn; the names of those that failed."""
    failed = []
    for name, cmd in plan:
        print("$ " + " ".join(cmd), flush=True)
        if dry_run:
            continue
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
            if not keep_going:
                raise LaicError(f"the experiment for {name} failed (see the dvc output above); "
                                "fix it and rerun, or pass --keep-going to continue with the others")
    return failed


@app.command("datasets")
def datasets_command() -> None:
    """List the benchmarks `run` knows, with K and splits."""
    for name, d in BENCHMARKS.items():
        print(f"{name:14s} K={d.num_clusters:<5d} fit={d.fit_split:9s} eval={d.eval_split:5s} "
              f"root=<raw-root>/{d.folder or name:14s} {d.description}")


if __name__ == "__main__":
    run_app(app, record_cost=False)
