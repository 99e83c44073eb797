"""The paper's ablation on the shared real image sets with the MiniVLM-64 stand-in, over seeds.

    python benchmarks/ablation.py [--workspace ../bench-paper] [--cache-dir ../dvc-cache] [--seeds 0 1 2]
        [--sets cifar10-test imagenette-val dtd10] [--out benchmarks/results/ablation_minivlm64.md]

For each set it runs the project's own command in a benchmark workspace (a
git clone of this repository at its HEAD plus its uncommitted changes, as
benchmarks/quality.py prepares it):

    python -m stages.table ablation -S dataset.kind=imagefolder -S dataset.root=<set> ... --seeds 0 1 2

that is, per seed the full method and one `dvc exp run -S` per switched
component (laic_core.views.ablation.VARIANTS), with TAC, SCAN and the
browser at their cheapest and the diagnostics on samples (`CHEAP_BASELINES`:
no row reads them), then collects every set's
experiments into one table with `python -m stages.table ablation
--collect-only`, and copies the table, its CSV and Fig. 4 (CSV and PNG)
next to --out. Each variant reruns only the stages after its switch (the
rest is restored from DVC's run-cache), so a (set, seed) costs one full run
and four partial ones.

It also checks each figure against the metrics it is drawn from: Fig. 4's
bars against the table's no-train columns, and Figs. 2 and 5 of the last
full run of each set against its metrics/diagnostics.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import MODEL, PROJECT, SETS, SHARED, prepare_workspace, settings  # noqa: E402


# No row of the ablation reads TAC, SCAN or the browser, so they run at their cheapest, and the
# label-free scores and the purity curve (diagnostics, not ACC/NMI/ARI) use 2,000-image samples: on
# a 2-core machine shared by several people this takes about half off every (set, seed). Every run
# of one ablation has the same values (the table pools only runs whose other parameters agree).
CHEAP_BASELINES = {"tac.epochs": "1", "scan.epochs": "1", "scan.heads": "1", "browser.max_thumbnails": "0",
                   "evaluate.purity_sample": "2000", "evaluate.internal_sample": "2000"}


def run(cmd: list[str], cwd: Path) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=cwd).returncode


def set_settings(set_name: str) -> list[str]:
    """-S arguments for one shared set (the seed comes from --seeds)."""
    out = []
    for key, value in settings(set_name, 0, {}).items():
        if key != "seed":
            out += ["-S", f"{key}={value}"]
    return out


def check_fig4(fig4_csv: Path, table_csv: Path) -> list[str]:
    """Fig. 4's bars must be the ablation table's numbers (the full method's no-train columns)."""
    problems = []
    table = {(r["dataset"], r["method"]): r for r in csv.DictReader(table_csv.open())
             if r["metric"] == "acc" and r["variant"] in ("full", "no_training")}
    for bar in csv.DictReader(fig4_csv.open()):
        row = table.get((bar["dataset"], bar["method"]))
        if row is not None and not math.isclose(float(bar["acc"]), 100 * float(row["mean"]), abs_tol=1e-3):
            problems.append(f"Fig. 4 {bar['dataset']} {bar['method']}: bar {bar['acc']} but table {row['mean']}")
    return problems


def check_run_figures(workspace: Path) -> list[str]:
    """Figs. 2 and 5 of the workspace's run against its diagnostics.json."""
    problems = []
    diagnostics = json.loads((workspace / "metrics" / "diagnostics.json").read_text())
    for row in csv.DictReader((workspace / "metrics" / "plots" / "purity.csv").open()):
        for space in ("clip", "relation"):
            want = diagnostics["purity"][space][f"k{row['k']}"]
            if not math.isclose(float(row[space]), want, abs_tol=1e-6):
                problems.append(f"Fig. 2 k={row['k']} {space}: plotted {row[space]}, diagnostics {want}")
    for row in csv.DictReader((workspace / "metrics" / "plots" / "pseudo_accuracy.csv").open()):
        want = diagnostics["pseudo_labels"][f"acc_{row['subset']}"]
        if not math.isclose(float(row["accuracy"]), want, abs_tol=1e-6):
            problems.append(f"Fig. 5 {row['subset']}: plotted {row['accuracy']}, diagnostics {want}")
    return problems


def exp_show(workspace: Path) -> list:
    done = subprocess.run(["dvc", "exp", "show", "--json", "--hide-queued", "--hide-failed", "--no-pager"],
                          cwd=workspace, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{workspace}: dvc exp show failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def run_sets(workspace: Path, sets: list[str], seeds: list[str]) -> tuple[list[str], list[str]]:
    """Run the ablation of each set at each seed in one workspace; (commands, problems)."""
    commands, problems = [], []
    extra = [a for key, value in CHEAP_BASELINES.items() for a in ("-S", f"{key}={value}")]
    # seed-major: a benchmark stopped early has every set at the seeds it reached
    for seed in seeds:
        for set_name in sets:
            cmd = [sys.executable, "-m", "stages.table", "ablation", *set_settings(set_name), *extra,
                   "--seeds", seed, "--keep-going"]
            commands.append(" ".join(["python", *cmd[1:]]))
            if run(cmd, workspace) != 0:
                problems.append(f"{set_name} seed {seed}: some experiment failed (see above)")
            else:
                problems += [f"{set_name}: {p}" for p in check_run_figures(workspace)]  # its last run: a variant's
    return commands, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=PROJECT.parent / "bench-paper")
    parser.add_argument("--cache-dir", type=Path, default=None, help="a DVC cache to share between workspaces")
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--parallel", action="store_true", help="one workspace (<workspace>-<set>) and process per "
                        "set, at the same time: on a machine with cores to spare, or shared with others' jobs")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "ablation_minivlm64.md")
    parser.add_argument("--run-only", action="store_true", help="run the experiments, write no table")
    parser.add_argument("--collect-only", action="store_true", help="run nothing: tabulate the workspaces' experiments")
    parser.add_argument("--collect-from", type=Path, nargs="+", default=None,
                        help="the workspaces to tabulate (default: those this command runs in)")
    parser.add_argument("--no-refresh", action="store_true", help="run the workspace's code as it is")
    args = parser.parse_args()
    if not (SHARED / "models" / "MiniVLM-64.json").is_file():
        sys.exit(f"{SHARED / 'models'} is absent: this benchmark needs the shared stand-in model and images")
    base = args.workspace.resolve()
    workspaces = ({s: base.with_name(f"{base.name}-{s}") for s in args.sets} if args.parallel
                  else {s: base for s in args.sets})
    commands, problems = [], []
    started = time.perf_counter()
    if not args.collect_only:
        for workspace in dict.fromkeys(workspaces.values()):
            if not args.no_refresh:
                prepare_workspace(workspace, args.cache_dir)
        if args.parallel:
            jobs = [(s, subprocess.Popen([sys.executable, __file__, "--workspace", str(ws), "--sets", s, "--seeds",
                                          *args.seeds, "--run-only", "--no-refresh"]))
                    for s, ws in workspaces.items()]
            problems += [f"{s}: its process failed ({job.wait()})" for s, job in jobs if job.wait() != 0]
            commands = [f"(in <workspace>-{s}) python -m stages.table ablation <{s}'s -S settings> --seeds {seed}"
                        for seed in args.seeds for s in args.sets]
        else:
            commands, problems = run_sets(base, args.sets, args.seeds)
    if args.run_only:
        sys.exit(1 if problems else 0)
    sources = [p.resolve() for p in args.collect_from] if args.collect_from else list(dict.fromkeys(workspaces.values()))
    merged = [commit for workspace in sources for commit in exp_show(workspace)]
    first = sources[0]
    table = first / "metrics" / "ablation.md"
    fig4 = first / "metrics" / "fig4.csv"
    dump = first / "metrics" / "ablation_exp_show.json"
    dump.write_text(json.dumps(merged))
    if run([sys.executable, "-m", "stages.table", "ablation", "--collect-only", "--from-json", str(dump),
            "--out", str(table), "--fig4", str(fig4)], first) != 0:
        sys.exit("collecting the ablation failed")
    problems += check_fig4(fig4, table.with_suffix(".csv"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = [f"Measured with `python benchmarks/ablation.py {' '.join(sys.argv[1:])}` "
              f"({time.perf_counter() - started:.0f} s on this machine), which ran in its workspace(s):", ""]
    header += [f"    {c}" for c in commands] + ["", "and tabulated every set's experiments with the command below.",
                                               "Model: MiniVLM-64 (" + ", ".join(f"{k}={Path(v).name}" for k, v in MODEL.items())
                                               + "); each set: fit = eval = every image, K = 10.", ""]
    if problems:
        header += ["Checks of the figures against the metrics FAILED:", ""] + [f"- {p}" for p in problems] + [""]
    else:
        header += ["Figures checked against the metrics: Fig. 4's bars equal the table's no-train ACC; Figs. 2 "
                   "and 5 of each set's last run equal its metrics/diagnostics.json.", ""]
    text = table.read_text()
    title, _, rest = text.partition("\n\n")
    args.out.write_text(title + "\n\n" + "\n".join(header) + "\n" + rest)
    shutil.copy(table.with_suffix(".csv"), args.out.with_suffix(".csv"))
    for suffix in (".csv", ".png"):
        shutil.copy(fig4.with_suffix(suffix), args.out.with_name(args.out.stem + "_fig4" + suffix))
    print(f"-> {args.out}" + (f"; {len(problems)} problem(s): " + "; ".join(problems) if problems else ""))


if __name__ == "__main__":
    main()
