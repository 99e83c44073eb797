"""Quality benchmark: every method on the shared real image sets with the MiniVLM-64 stand-in, over seeds.

    python benchmarks/quality.py [--workspace ../laic-bench] [--seeds 0 1 2]
        [--sets cifar10-test imagenette-val dtd10] [--out benchmarks/results/quality_minivlm64.md]
        [-S key=value ...]

Runs the real pipeline: one `dvc exp run` per (set, seed) in a benchmark
workspace (a git clone of this repository, refreshed to its HEAD plus its
uncommitted changes to tracked files), with `../shared/models/MiniVLM-64`
as the model and each of `../shared/datasets/*` as an image folder (fit =
eval = every image, K = 10). DVC computes the vocabulary once (it depends on
the model, the noun list and the templates only) and reuses it for every
experiment; `embed` runs once per set. After each experiment the workspace
holds its results: metrics/scores.json, diagnostics.json, neighbors.json,
centers.json and the cost of each stage (metrics/cost/), which this script
collects into one table: per set and method, mean and spread (standard
deviation over seeds) of ACC, NMI and ARI, plus the diagnostics that explain
them and the cost of `embed` and `centers`.

Nothing here is a test: it takes minutes (the first run: the WordNet vocab,
about 15 minutes on 2 CPU cores), and its numbers go in issue notes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
MODEL = {"model.name": SHARED / "models" / "MiniVLM-64.json",
         "model.pretrained": SHARED / "models" / "MiniVLM-64" / "open_clip_model.safetensors"}
SETS = ("cifar10-test", "imagenette-val", "dtd10")
METHODS = ("clip_kmeans", "tac_notrain", "ours_notrain", "ours_init", "ours", "tac", "scan", "zeroshot")
SCORES = ("acc", "nmi", "ari")


def sh(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"$ {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                 f"{proc.stderr[-4000:]}")
    return proc


def prepare_workspace(workspace: Path, cache_dir: Path | None) -> None:
    """A clone of this repository at its HEAD, with its uncommitted changes to tracked files on top."""
    if not (workspace / ".git").is_dir():
        sh("git", "clone", "-q", PROJECT, workspace, cwd=PROJECT.parent)
    sh("git", "fetch", "-q", PROJECT, "HEAD", cwd=workspace)
    sh("git", "reset", "-q", "--hard", "FETCH_HEAD", cwd=workspace)
    diff = sh("git", "diff", "HEAD", "--binary", cwd=PROJECT).stdout
    if diff:
        subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=workspace, input=diff, text=True,
                       check=True)
        sh("git", "commit", "-qam", "benchmark: the working tree's uncommitted changes", cwd=workspace)
    for untracked in sh("git", "ls-files", "--others", "--exclude-standard", cwd=PROJECT).stdout.split():
        if untracked.startswith(("laic_core/", "stages/")) and untracked.endswith(".py"):
            target = workspace / untracked
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PROJECT / untracked, target)
            sh("git", "add", untracked, cwd=workspace)
    if sh("git", "diff", "--cached", "--quiet", cwd=workspace, check=False).returncode:
        sh("git", "commit", "-qm", "benchmark: untracked modules", cwd=workspace)
    if cache_dir is not None:
        sh("dvc", "cache", "dir", "--local", cache_dir.resolve(), cwd=workspace)


def settings(set_name: str, seed: int, extra: dict[str, str]) -> dict[str, str]:
    out = {
        "dataset.kind": "imagefolder",
        "dataset.name": set_name,
        "dataset.root": str(SHARED / "datasets" / set_name),
        "dataset.fit_split": "all",
        "dataset.eval_split": "all",
        "dataset.num_clusters": "10",
        "seed": str(seed),
        **{k: str(v) for k, v in MODEL.items()},
        "model.device": "cpu",
    }
    out.update(extra)
    return out


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_one(workspace: Path, set_name: str, seed: int, extra: dict[str, str]) -> dict:
    cmd = ["dvc", "exp", "run", "-n", f"quality-{set_name}-s{seed}-{int(time.time())}"]
    for key, value in settings(set_name, seed, extra).items():
        cmd += ["-S", f"{key}={value}"]
    started = time.perf_counter()
    proc = sh(*cmd, cwd=workspace)
    ran = sorted(set(line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")))
    metrics = workspace / "metrics"
    cost = {p.stem: read_json(p) for p in (metrics / "cost").glob("*.json")}
    epochs = {stage: history_rows(metrics / f"{stage}_history.csv") for stage in ("tac", "scan")}
    return {
        "set": set_name, "seed": seed, "seconds": round(time.perf_counter() - started, 1), "ran": ran,
        "scores": read_json(metrics / "scores.json"), "diagnostics": read_json(metrics / "diagnostics.json"),
        "neighbors": read_json(metrics / "neighbors.json"), "centers": read_json(metrics / "centers.json"),
        "cost": cost, "epochs": epochs,
    }


def history_rows(path: Path) -> int | None:
    """Epochs a baseline trained (rows of its history), None when absent."""
    return max(len(path.read_text().splitlines()) - 1, 0) if path.is_file() else None


def mean_sd(values: list[float]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {spread:.1f}"


def table(runs: list[dict], seeds: list[int]) -> str:
    lines = [f"# Quality on real images: MiniVLM-64, mean ± sd over seeds {', '.join(map(str, seeds))}", "",
             "ACC / NMI / ARI in percent (eval split = fit split = every image, K = 10).", ""]
    sets = list(dict.fromkeys(r["set"] for r in runs))
    methods = [m for m in METHODS if any(m in r["scores"] for r in runs)]
    lines += ["| set | method | ACC | NMI | ARI |", "|---|---|---:|---:|---:|"]
    for s in sets:
        mine = [r for r in runs if r["set"] == s]
        for m in methods:
            cells = [mean_sd([r["scores"].get(m, {}).get(k) for r in mine]) for k in SCORES]
            lines.append(f"| {s} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "Differences to clip_kmeans, ACC / NMI points (mean over seeds):", "",
              "| set | " + " | ".join(m for m in methods if m != "clip_kmeans") + " |",
              "|---|" + "---:|" * (len(methods) - 1)]
    for s in sets:
        mine = [r for r in runs if r["set"] == s]
        row = []
        for m in methods:
            if m == "clip_kmeans":
                continue
            diffs = []
            for k in ("acc", "nmi"):
                pairs = [(r["scores"].get(m, {}).get(k), r["scores"].get("clip_kmeans", {}).get(k)) for r in mine]
                pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                diffs.append(f"{100 * statistics.fmean(a - b for a, b in pairs):+.1f}" if pairs else "–")
            row.append(" / ".join(diffs))
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    ks = sorted({r["neighbors"].get("k") for r in runs if r["neighbors"].get("k") is not None})
    lines += ["", "Diagnostics (fit split, mean over seeds): purity of the 10 nearest neighbours in image and "
              f"relation space; the relation-space neighbours of training (k = {', '.join(map(str, ks)) or '–'}) and the "
              "reliable filter, pseudo-label accuracy (ours_notrain on the fit split, one Hungarian "
              "matching for all subsets), and what training kept of its start.", "",
              "| set | purity@10 V | purity@10 C | reliable | pair purity all | pair purity reliable | "
              "pseudo acc all | reliable | unreliable | agreement with pseudo | empty clusters |",
              "|---|" + "---:|" * 10]
    for s in sets:
        mine = [r for r in runs if r["set"] == s]

        def avg(get) -> str:
            values = [v for v in (get(r) for r in mine) if v is not None]
            return f"{100 * statistics.fmean(values):.1f}" if values else "–"

        lines.append(f"| {s} | " + " | ".join([
            avg(lambda r: r["diagnostics"].get("purity", {}).get("clip", {}).get("k10")),
            avg(lambda r: r["diagnostics"].get("purity", {}).get("relation", {}).get("k10")),
            avg(lambda r: r["neighbors"].get("fraction_reliable")),
            avg(lambda r: r["diagnostics"].get("neighbors", {}).get("purity")),
            avg(lambda r: r["diagnostics"].get("neighbors", {}).get("pair_purity")),
            avg(lambda r: r["diagnostics"].get("pseudo_labels", {}).get("acc_all")),
            avg(lambda r: r["diagnostics"].get("pseudo_labels", {}).get("acc_reliable")),
            avg(lambda r: r["diagnostics"].get("pseudo_labels", {}).get("acc_unreliable")),
            avg(lambda r: r["centers"].get("agreement_with_pseudo_labels")),
            str(max((r["centers"].get("fit_empty_clusters", 0) for r in mine), default="–")),
        ]) + " |")
    lines += ["", "Training length (label-free stop, steps and epochs being the ceilings; mean and range over "
              "seeds), and `centers` against `embed` in the run that ran both (same machine, same moment):", "",
              "| set | centers steps | TAC epochs | SCAN epochs | centers / embed wall |", "|---|---:|---:|---:|---:|"]
    for s in sets:
        mine = [r for r in runs if r["set"] == s]

        def spread(values) -> str:
            values = [v for v in values if v is not None]
            return f"{statistics.fmean(values):.0f} ({min(values)}-{max(values)})" if values else "–"

        both = [r["cost"]["centers"]["wall_seconds"] / r["cost"]["embed"]["wall_seconds"] for r in mine
                if {"embed", "centers"} <= set(r["ran"]) and {"embed", "centers"} <= set(r["cost"])]
        lines.append(f"| {s} | {spread([r['centers'].get('steps') for r in mine])} | "
                     f"{spread([r.get('epochs', {}).get('tac') for r in mine])} | "
                     f"{spread([r.get('epochs', {}).get('scan') for r in mine])} | "
                     f"{', '.join(f'{x:.2f}' for x in both) or '–'} |")
    lines += ["", "Cost on this machine (seconds, mean over the runs that ran the stage; peak RSS MiB):", "",
              "| stage | runs | wall s | CPU s | peak RSS |", "|---|---:|---:|---:|---:|"]
    stages = sorted({name for r in runs for name in r["cost"] if name in r["ran"]})
    for stage in stages:
        rows = [r["cost"][stage] for r in runs if stage in r["ran"] and stage in r["cost"]]
        lines.append(f"| {stage} | {len(rows)} | {statistics.fmean(c['wall_seconds'] for c in rows):.1f} | "
                     f"{statistics.fmean(c['cpu_seconds'] for c in rows):.1f} | "
                     f"{max(c['peak_rss_mib'] for c in rows):.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=PROJECT.parent / "laic-bench")
    parser.add_argument("--cache-dir", type=Path, default=None, help="a DVC cache to share between workspaces")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "quality_minivlm64.md")
    parser.add_argument("-S", "--set", dest="extra", action="append", default=[], help="extra KEY=VALUE")
    parser.add_argument("--no-refresh", action="store_true", help="run the workspace's code as it is")
    parser.add_argument("--resume", action="store_true", help="keep the runs already recorded next to --out")
    args = parser.parse_args()
    if not (SHARED / "models" / "MiniVLM-64.json").is_file():
        sys.exit(f"{SHARED / 'models'} is absent: this benchmark needs the shared stand-in model and images")
    extra = dict(item.split("=", 1) for item in args.extra)
    workspace = args.workspace.resolve()
    if not args.no_refresh:
        prepare_workspace(workspace, args.cache_dir)
    # The table is rewritten after every run, so a stopped benchmark keeps what it measured and
    # --resume picks up where it stopped.
    record = args.out.with_suffix(".json")
    runs = json.loads(record.read_text()) if args.resume and record.is_file() else []
    done = {(r["set"], r["seed"]) for r in runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for set_name in args.sets:
        for seed in args.seeds:
            if (set_name, seed) in done:
                continue
            run = run_one(workspace, set_name, seed, extra)
            runs.append(run)
            ours = run["scores"].get("ours", {})
            print(f"{set_name} seed {seed}: {run['seconds']:.0f}s, ran {', '.join(run['ran'])}; ours ACC "
                  f"{ours.get('acc')}, clip_kmeans ACC {run['scores'].get('clip_kmeans', {}).get('acc')}",
                  flush=True)
            args.out.write_text(table(runs, args.seeds))
            record.write_text(json.dumps(runs, indent=1))
    print(f"-> {args.out} and {record}")


if __name__ == "__main__":
    main()
