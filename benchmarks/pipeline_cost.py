"""What every stage costs with CLIP ViT-B/32's shapes on a real image folder, on this machine's CPU.

    python benchmarks/pipeline_cost.py [--root ../shared/datasets/cifar10-test] [--workspace ../laic-cost]
        [--per-class N] [--vocab-sample 2000] [--out benchmarks/results/pipeline_cost.md]

The whole pipeline runs in a scratch workspace, one stage after the other as
`dvc repro` runs them (`python -m stages.<stage>`), with params.yaml's
defaults except: the folder as an image folder (fit = eval = every image,
K = 10) and ViT-B/32 with random weights (`model.pretrained: none`; nothing
to download, and a forward pass costs the same with any weights). Each stage
records its wall time, CPU time and peak RSS in metrics/cost/; the table
gives them with each stage's wall time relative to `embed`'s.

`vocab` is measured on a seeded sample of the WordNet nouns it encodes
(the excluded ones dropped, one spelling per token row; twice: 20 nouns for
its fixed start-up, then `--vocab-sample`) and projected to all of them
(start-up + the sample's per-noun rate x every noun). The stages after it
then read a vocabulary of that list (random unit rows with the sample's
provenance), so `nouns` and the naming in `centers` cost
what they cost on the real list. With random weights the centers train on
features without structure, so their stop step says little: the table also
gives the time per step and the cost at the ceiling.

`--per-class N` runs on the first N images of every class (symbolic links in
the workspace) for a quick try. Nothing here is a test: CIFAR-10's 10,000
test images take 15-25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared"
STAGES = ("validate", "embed", "vocab", "nouns", "relation", "neighbors", "centers", "tac", "scan", "zeroshot",
          "evaluate")
STARTUP_NOUNS = 20


def write_params(workspace: Path, root: Path, vocab_source: str) -> None:
    import yaml

    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["dataset"].update(kind="imagefolder", name=root.name, root=str(root), fit_split="all", eval_split="all",
                             num_clusters=10)
    params["model"].update(name="ViT-B-32", pretrained="none", device="cpu")
    params["vocab"]["source"] = vocab_source
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def image_subset(root: Path, workspace: Path, per_class: int) -> Path:
    """workspace/images/<class>/ with links to the first `per_class` images of every class of root."""
    subset = workspace / "images"
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        (subset / folder.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.iterdir())[:per_class]:
            link = subset / folder.name / image.name
            if not link.is_symlink():
                link.symlink_to(image.resolve())
    return subset


def noun_sample(workspace: Path, nouns: list[str], n: int, name: str) -> str:
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(nouns), size=min(n, len(nouns)), replace=False))
    path = workspace / name
    path.write_text("\n".join(nouns[i] for i in picked) + "\n")
    return str(path)


def encoded_nouns(nouns: list[str]) -> list[str]:
    """The nouns `vocab` encodes with the defaults and ViT-B/32's tokenizer: the excluded ones dropped, then
    one spelling per token row (CLIP's tokenizer lower-cases: "Turkey" and "turkey" are one noun)."""
    import open_clip

    from laic_core.text.encode import distinct_token_rows
    from laic_core.text.vocab import excluded_nouns

    dropped = set(excluded_nouns(nouns))
    kept = [noun for noun in nouns if noun not in dropped]
    return [kept[i] for i in distinct_token_rows(open_clip.get_tokenizer("ViT-B-32")(kept))]


def run_stage(workspace: Path, stage: str) -> tuple[dict, str]:
    """(metrics/cost/<stage>.json, the stage's stdout) of one stage run in its own process."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=workspace, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"{stage} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    cost = json.loads((workspace / "metrics" / "cost" / f"{stage}.json").read_text())
    print(f"{stage}: {cost['wall_seconds']:.1f} s wall, {cost['cpu_seconds']:.1f} s CPU, "
          f"peak {cost['peak_rss_mib'] / 1024:.2f} GiB", flush=True)
    return cost, proc.stdout


def full_size_vocabulary(workspace: Path, nouns: list[str]) -> None:
    """Replace the sampled vocabulary by the full list: random unit rows for `nouns`, the sample's provenance."""
    import pandas as pd

    from laic_core.artifacts import load_npy, load_parquet_meta, save_npy, save_parquet
    from stages import layout

    os.chdir(workspace)
    meta = load_parquet_meta(layout.VOCAB_NOUNS)
    dim = load_npy(layout.VOCAB_TEXT).shape[1]
    rows = np.random.default_rng(0).standard_normal((len(nouns), dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    save_npy(layout.VOCAB_TEXT, rows)
    save_parquet(layout.VOCAB_NOUNS, pd.DataFrame({"noun": nouns}), meta)


def centers_steps(stdout: str) -> tuple[int, float] | None:
    """(steps, training seconds) from the centers stage's "centers: N steps in S s" line."""
    found = re.search(r"centers: (\d+) steps in ([0-9.]+)s", stdout)
    return (int(found.group(1)), float(found.group(2))) if found else None


def table(costs: dict, n_images: int, vocab: dict, centers: dict | None, root: Path, ceiling: int) -> str:
    embed = costs["embed"]["wall_seconds"]
    lines = [f"# Pipeline cost with CLIP ViT-B/32's shapes (random weights) on {root.name}: {n_images:,} images, "
             f"{os.cpu_count()} CPU cores", "",
             "One process per stage, as `dvc repro` runs them; wall, CPU and peak RSS from metrics/cost/. "
             "vocab: measured on a sample, projected to every noun it encodes (below).", "",
             "| stage | wall s | CPU s | peak RSS GiB | wall / embed |", "|---|---:|---:|---:|---:|"]
    for stage, c in costs.items():
        wall = vocab["projected_seconds"] if stage == "vocab" else c["wall_seconds"]
        name = f"vocab (projected, {vocab['nouns']:,} nouns)" if stage == "vocab" else stage
        lines.append(f"| {name} | {wall:.1f} | {c['cpu_seconds']:.1f} | {c['peak_rss_mib'] / 1024:.2f} | "
                     f"{wall / embed:.2f} |")
    after = sum(c["wall_seconds"] for stage, c in costs.items() if stage not in ("validate", "embed", "vocab"))
    lines += ["", f"Every stage after `embed` but `vocab` together: {after:.0f} s, {after / embed:.2f}x `embed`.",
              "", f"vocab: {vocab['startup_seconds']:.1f} s with {STARTUP_NOUNS} nouns (start-up), "
                  f"{vocab['sample_seconds']:.1f} s with {vocab['sample']:,} ({vocab['nouns_per_second']:.1f} "
                  f"nouns/s), so {vocab['projected_seconds'] / 60:.0f} min for all {vocab['nouns']:,} it encodes "
                  f"(WordNet's {vocab['wordnet_nouns']:,} less the excluded ones and spellings that tokenize "
                  "alike; once per model; the CPU column is the sample's)."]
    if centers:
        lines += [f"centers: {centers['steps']} steps in {centers['train_seconds']:.1f} s "
                  f"({centers['seconds_per_step'] * 1000:.0f} ms a step; {centers['stop_reason']}); "
                  f"at the {ceiling}-step ceiling training would take {centers['seconds_per_step'] * ceiling:.0f} s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=SHARED / "datasets" / "cifar10-test")
    parser.add_argument("--workspace", type=Path, default=PROJECT.parent / "laic-cost")
    parser.add_argument("--per-class", type=int, default=0, help="only the first N images of every class")
    parser.add_argument("--vocab-sample", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "pipeline_cost.md")
    args = parser.parse_args()
    from laic_core.config import load_params
    from laic_core.text.vocab import load_wordnet_nouns

    out = args.out.resolve()
    workspace = args.workspace.resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    root = image_subset(args.root.resolve(), workspace, args.per_class) if args.per_class else args.root.resolve()
    wordnet = load_wordnet_nouns()
    nouns = encoded_nouns(wordnet)  # sampled and projected: what `vocab` would encode
    costs, outputs = {}, {}
    vocab = {"wordnet_nouns": len(wordnet), "nouns": len(nouns),
             "sample": min(args.vocab_sample, len(nouns))}
    for stage in STAGES:
        if stage == "vocab":
            write_params(workspace, root, noun_sample(workspace, nouns, STARTUP_NOUNS, "nouns_startup.txt"))
            vocab["startup_seconds"] = run_stage(workspace, "vocab")[0]["wall_seconds"]
            write_params(workspace, root, noun_sample(workspace, nouns, vocab["sample"], "nouns_sample.txt"))
        elif stage == "validate":
            write_params(workspace, root, noun_sample(workspace, nouns, vocab["sample"], "nouns_sample.txt"))
        costs[stage], outputs[stage] = run_stage(workspace, stage)
        if stage == "vocab":
            vocab["sample_seconds"] = costs["vocab"]["wall_seconds"]
            vocab["nouns_per_second"] = vocab["sample"] / max(vocab["sample_seconds"] - vocab["startup_seconds"],
                                                               1e-9)
            vocab["projected_seconds"] = vocab["startup_seconds"] + vocab["nouns"] / vocab["nouns_per_second"]
            full_size_vocabulary(workspace, nouns)
    n_images = json.loads((workspace / "data" / "listing" / "dataset.json").read_text()).get("fit", {}).get("images")
    centers = None
    found = centers_steps(outputs["centers"])
    if found:
        summary = json.loads((workspace / "metrics" / "centers.json").read_text())
        centers = {"steps": found[0], "train_seconds": found[1], "seconds_per_step": found[1] / max(found[0], 1),
                   "stop_reason": summary.get("stop_reason", "")}
    ceiling = load_params(workspace / "params.yaml").centers.steps
    text = table(costs, n_images or 0, vocab, centers, args.root, ceiling)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"costs": costs, "vocab": vocab, "centers": centers,
                                                    "images": n_images, "root": str(args.root)}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
