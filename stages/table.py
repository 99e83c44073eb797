"""table: run the pipeline on several datasets and collect one table (rows datasets, columns methods).

Each dataset is one DVC experiment that differs from the workspace only in
the `dataset.*` parameters (and any `--set` given for all of them):

    python -m stages.table run --dataset cifar10 --dataset stl10 --dataset cifar20
    python -m stages.table collect            # -> metrics/table.md and metrics/table.csv

`run` calls `dvc exp run -n <prefix>-<dataset>-<stamp> -S dataset.name=...`
once per dataset, one after the other in the workspace (`--queue` only
queues them, for `dvc queue start`). The vocab stage depends on the model,
the vocabulary and the templates only, so it is computed once: later
experiments find its outputs up to date in the workspace, or restore them
from DVC's run-cache. After `run`, the workspace holds the last dataset's
experiment, as after any `dvc exp run`.

`collect` reads `dvc exp show --json` and keeps, per (dataset, model), the
newest experiment that has metrics/scores.json.

Command lines are built by pure functions (`exp_run_command`,
`exp_show_command`) and `dvc exp show` output is parsed by pure functions
(`experiment_records`, `select_runs`), so all of it is testable without DVC.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping

import typer

from laic_core.artifacts import atomic_path
from laic_core.datasets import BENCHMARK_KIND, BENCHMARKS
from laic_core.errors import LaicError
from laic_core.experiments import experiment_records, select_runs, table_csv, table_markdown
from stages.runner import run as run_app

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run the pipeline over several datasets and collect one results table.")


# ------------------------------------------------------------------ commands (pure)


def dataset_settings(name: str, raw_root: str = "data/raw") -> dict[str, str]:
    """The `-S` settings that point the pipeline at benchmark `name` (from laic_core.datasets.BENCHMARKS)."""
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


def experiment_name(prefix: str, dataset: str, stamp: str) -> str:
    """A fresh experiment name: re-running never collides with (or overwrites) an old one."""
    return f"{prefix}-{dataset}-{stamp}" if prefix else f"{dataset}-{stamp}"


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


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@app.command("run")
def run_command(
    dataset: list[str] = typer.Option(..., "--dataset", "-d", help=f"benchmark name, repeatable: {', '.join(BENCHMARKS)}"),
    raw_root: str = typer.Option("data/raw", help="folder holding (or receiving) each dataset as <raw-root>/<name>"),
    set_: list[str] = typer.Option([], "--set", "-S", help="extra KEY=VALUE for every experiment, e.g. model.name=ViT-B-16"),
    prefix: str = typer.Option("table", help="experiment names are <prefix>-<dataset>-<time stamp>"),
    queue: bool = typer.Option(False, help="only queue the experiments (run them with `dvc queue start`)"),
    keep_going: bool = typer.Option(False, help="go on with the next dataset when one fails"),
    dry_run: bool = typer.Option(False, help="print the dvc commands without running them"),
) -> None:
    """Run (or queue) one DVC experiment per dataset."""
    extra = parse_overrides(set_)
    clashes = sorted(k for k in extra if k.startswith("dataset."))
    if clashes:
        raise LaicError(f"--set {', '.join(clashes)}: the dataset settings come from --dataset; "
                        "drop them (or run `dvc exp run` yourself for a custom dataset)")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    commands = [exp_run_command({**dataset_settings(d, raw_root), **extra},
                                name=experiment_name(prefix, d, stamp), queue=queue)
                for d in dict.fromkeys(dataset)]
    failed = []
    for name, cmd in zip(dict.fromkeys(dataset), commands):
        print("$ " + " ".join(cmd), flush=True)
        if dry_run:
            continue
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
            if not keep_going:
                raise LaicError(f"the experiment for {name} failed (see the dvc output above); "
                                "fix it and rerun, or pass --keep-going to continue with the others")
    if dry_run:
        return
    if queue:
        print(f"queued {len(commands) - len(failed)} experiment(s): start them with `dvc queue start`, "
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
    all_commits: bool = typer.Option(False, help="experiments of every commit, not only HEAD's"),
    every_run: bool = typer.Option(False, help="one row per experiment instead of the newest per dataset"),
    workspace: bool = typer.Option(False, help="include the workspace's own results"),
    from_json: Path = typer.Option(None, help="read saved `dvc exp show --json` output instead of calling dvc"),
) -> None:
    """Collect the experiments' scores into metrics/table.md and metrics/table.csv."""
    if from_json is not None:
        raw = json.loads(Path(from_json).read_text())
    else:
        cmd = exp_show_command(all_commits=all_commits)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise LaicError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
        raw = json.loads(done.stdout)
    runs = select_runs(experiment_records(raw), every_run=every_run, include_workspace=workspace)
    if not runs:
        raise LaicError("no experiment with metrics/scores.json found: run "
                        "`python -m stages.table run --dataset ...` first (or pass --workspace)")
    _write(out, table_markdown(runs))
    _write(out.with_suffix(".csv"), table_csv(runs))
    print(f"{len(runs)} row(s) -> {out} and {out.with_suffix('.csv')}")


@app.command("datasets")
def datasets_command() -> None:
    """List the benchmarks `run` knows, with K and splits."""
    for name, d in BENCHMARKS.items():
        print(f"{name:14s} K={d.num_clusters:<5d} fit={d.fit_split:9s} eval={d.eval_split:5s} "
              f"root=<raw-root>/{d.folder or name:14s} {d.description}")


if __name__ == "__main__":
    run_app(app, record_cost=False)
