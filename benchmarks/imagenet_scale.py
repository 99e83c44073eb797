"""ImageNet-1K on one machine: relation -> neighbors -> centers at N = 1.28M, K = 1000, with the defaults.

    python benchmarks/imagenet_scale.py [--workspace ../laic-scale] [--n 1281167] [--n-eval 50000]
        [--classes 1000] [--nouns 4000] [--skip-vit] [--out benchmarks/results/imagenet_scale.md]

Synthetic CLIP-like features of ImageNet's size (benchmarks/synthetic.py: d =
512, K = 1000 classes in 100 super-classes, M' = 4,000 selected nouns near
the classes or unrelated) are written into a scratch workspace in the
pipeline's own layout, with the provenance that embed and vocab record.
Then the real stages run there, one process each, exactly as `dvc repro`
runs them (`python -m stages.relation`, `...neighbors`, `...centers`) with
params.yaml's defaults, except K = 1000 and, as the model, a tiny
random-weight text tower of output width 512 (a real checkpoint cannot be
downloaded here; the centers step's cost is the K-prompt text pass, so the
per-step cost of the ViT-B/32 text tower at K = 1000 is measured beside it).
Each stage records its wall time, CPU time and peak RSS in metrics/cost/.

Afterwards: recall@10 of the neighbours the stage found (an approximate faiss
index beyond 200k rows, `neighbors.method: auto`) against the exact
neighbours of a seeded 10k-row sample, in relation space and in image space;
and, as a sanity check that nothing broke at scale, ACC/NMI of every method
against the synthetic classes (the trained centers use a random text tower:
their figure is not a quality claim).

Nothing here is a test: it takes about half an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "benchmarks"))

IMAGENET_N = 1_281_167
TEXT_TOWER = {  # the tests' tiny open_clip model, widened to CLIP ViT-B/32's output width
    "embed_dim": 512,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
STAGES = ("relation", "neighbors", "centers")


def prepare(workspace: Path, args) -> np.ndarray:
    """Synthetic features, vocabulary and selected nouns in the pipeline's layout; returns fit labels."""
    import pandas as pd
    import yaml

    from laic_core.artifacts import save_npy, save_parquet
    from laic_core.provenance import model_identity, record
    from stages import layout
    from synthetic import SyntheticClip

    os.chdir(workspace)
    config = workspace / "text-tower-512.json"
    config.write_text(json.dumps(TEXT_TOWER))
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["dataset"].update(num_clusters=args.classes, kind="manifest", name="synthetic-imagenet")
    params["model"].update(name=str(config), pretrained="none", device="cpu")
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    stamp = {"n": args.n, "n_eval": args.n_eval, "classes": args.classes, "nouns": args.nouns, "v": 1}
    done = workspace / "synthetic.json"
    labels_path = workspace / "labels_fit.npy"
    if done.is_file() and json.loads(done.read_text()) == stamp:
        return np.load(labels_path)
    started = time.perf_counter()
    # logit scale 100: the temperatures resolve to CLIP ViT-B/32's, as for the model users run
    prov = {"provenance": record(model_identity(str(config), "none", layout.HASH_CACHE), 512, logit_scale=100.0)}
    generator = SyntheticClip(n_classes=args.classes, n_supers=max(1, args.classes // 10))
    y_fit = generator.labels(args.n, seed=0)
    for role, n, seed in (("fit", args.n, 0), ("eval", args.n_eval, 1)):
        labels = y_fit if role == "fit" else generator.labels(n, seed=seed)
        save_npy(layout.features(role), generator.images(labels, seed=seed))
        save_parquet(layout.features_meta(role), pd.DataFrame({"row": np.arange(n)}), prov)
    per_class = max(1, (args.nouns * 3 // 4) // args.classes)
    selected, _ = generator.nouns(per_class=per_class, extra=args.nouns - per_class * args.classes, seed=0)
    unrelated, _ = generator.nouns(per_class=0, extra=6000, seed=1)
    vocab = np.vstack([selected, unrelated])
    words = [f"noun{j}" for j in range(len(vocab))]
    save_npy(layout.VOCAB_TEXT, vocab)
    save_parquet(layout.VOCAB_NOUNS, pd.DataFrame({"noun": words}), prov)
    save_npy(layout.SELECTED_TEXT, selected)
    save_parquet(layout.SELECTED_NOUNS, pd.DataFrame({
        "noun": words[:len(selected)], "vocab_index": np.arange(len(selected)),
        "group": np.zeros(len(selected), np.int64), "score": np.ones(len(selected), np.float32)}), prov)
    np.save(labels_path, y_fit)
    done.write_text(json.dumps(stamp))
    print(f"synthetic features: {args.n} + {args.n_eval} images, {len(selected)} selected nouns "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    return y_fit


def run_stage(workspace: Path, stage: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=workspace, env=env, check=True)
    cost = json.loads((workspace / "metrics" / "cost" / f"{stage}.json").read_text())
    print(f"{stage}: {time.perf_counter() - started:.0f} s, peak RSS {cost['peak_rss_mib'] / 1024:.1f} GiB",
          flush=True)
    return cost


def exact_top(queries: np.ndarray, rows: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """(q, k) exact neighbours of `queries` among `rows` (dot product), each query's own row excluded."""
    import torch

    Q, X = torch.from_numpy(queries), torch.from_numpy(rows)
    best_v = torch.full((len(Q), k + 1), -torch.inf)
    best_i = torch.zeros((len(Q), k + 1), dtype=torch.long)
    for start in range(0, len(X), 131072):
        scores = Q @ X[start:start + 131072].T
        v, i = scores.topk(k + 1, dim=1)
        v, i = torch.cat([best_v, v], 1), torch.cat([best_i, i + start], 1)
        best_v, order = v.topk(k + 1, dim=1)
        best_i = torch.gather(i, 1, order)
    found = best_i.numpy()
    return np.stack([row[row != q][:k] for row, q in zip(found, own)])


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(found, exact)]))


def check_neighbours(workspace: Path, sample: int = 10_000) -> dict:
    from laic_core.artifacts import load_matrix
    from stages import layout

    os.chdir(workspace)
    rng = np.random.default_rng(0)
    out = {}
    for space, rows, found in (
        ("relation", load_matrix(layout.relation_rows("fit")), np.load(layout.KNN)),
        ("image", np.load(layout.features("fit")), np.load(layout.IMAGE_KNN)),
    ):
        queries = np.sort(rng.choice(len(rows), size=min(sample, len(rows)), replace=False))
        started = time.perf_counter()
        exact = exact_top(np.ascontiguousarray(rows[queries]), rows, queries, 10)
        out[space] = {"recall_at_10": recall_at(found[queries], exact), "queries": int(len(queries)),
                      "exact_seconds_for_sample": round(time.perf_counter() - started, 1)}
        print(f"recall@10 in {space} space: {out[space]['recall_at_10']:.4f} on {len(queries)} queries", flush=True)
    return out


def sanity_scores(workspace: Path, y_fit: np.ndarray) -> dict:
    import pandas as pd
    from sklearn.metrics import normalized_mutual_info_score

    from laic_core.scoring.metrics import cluster_accuracy
    from stages import layout

    os.chdir(workspace)
    relation = pd.read_parquet(layout.assignments("relation", "fit"))
    centers = pd.read_parquet(layout.assignments("centers", "fit"))
    labels = {m: relation[m].to_numpy() for m in ("clip_kmeans", "tac_notrain", "ours_notrain")}
    labels["ours (random text tower)"] = centers["cluster"].to_numpy()
    return {m: {"acc": round(cluster_accuracy(y_fit, pred), 4),
                "nmi": round(float(normalized_mutual_info_score(y_fit, pred)), 4)} for m, pred in labels.items()}


def vit_step_cost(classes: int) -> dict:
    """One centers step with ViT-B/32's text tower at K = classes (benchmarks/centers_step_memory.py)."""
    from centers_step_memory import step_cost

    result = step_cost(classes, chunk=128)
    print(f"ViT-B/32 text tower, K={classes}: {result['seconds_per_step']:.1f} s per step, "
          f"peak RSS {result['peak_mib'] / 1024:.1f} GiB", flush=True)
    return result


def report(args, costs: dict, neighbours: dict, scores: dict, vit: dict | None, centers: dict) -> str:
    total = sum(c["wall_seconds"] for c in costs.values())
    peak = max(c["peak_rss_mib"] for c in costs.values())
    lines = [f"# ImageNet-size run on this machine ({os.cpu_count()} CPUs): N = {args.n:,} fit + "
             f"{args.n_eval:,} eval, d = 512, K = {args.classes}, M' = {args.nouns:,}", "",
             "Default settings (params.yaml) but K; the centers stage with a tiny random-weight text tower.", "",
             "| stage | wall s | CPU s | peak RSS GiB |", "|---|---:|---:|---:|"]
    for stage, c in costs.items():
        lines.append(f"| {stage} | {c['wall_seconds']:.0f} | {c['cpu_seconds']:.0f} | {c['peak_rss_mib'] / 1024:.2f} |")
    lines += [f"| **total** | **{total:.0f}** ({total / 60:.1f} min) | | **{peak / 1024:.2f}** (max) |", "",
              f"Targets: under 30 minutes ({'met' if total < 1800 else 'MISSED'}) and under 12 GB "
              f"({'met' if peak / 1024 * 1.0737 < 12 else 'MISSED'}).", "",
              "Recall@10 of the stage's neighbours against the exact ones (seeded sample):", "",
              "| space | recall@10 | queries |", "|---|---:|---:|"]
    for space, r in neighbours.items():
        lines.append(f"| {space} | {r['recall_at_10']:.4f} | {r['queries']} |")
    steps = centers.get("steps")
    lines += ["", f"Centers: {steps} steps of {centers.get('batch_size', 1024)} anchors."]
    if vit:
        lines += [f"The ViT-B/32 text tower at K = {args.classes} costs {vit['seconds_per_step']:.1f} s per step "
                  f"on this CPU (peak RSS {vit['peak_mib'] / 1024:.1f} GiB, prompts in chunks of {vit['chunk']}), "
                  f"so {steps} steps would take {vit['seconds_per_step'] * (steps or 0) / 3600:.1f} h here: that "
                  "stage wants a GPU at this K."]
    lines += ["", "Sanity against the synthetic classes (fit split):", "", "| method | ACC | NMI |",
              "|---|---:|---:|"]
    for method, s in scores.items():
        lines.append(f"| {method} | {100 * s['acc']:.1f} | {100 * s['nmi']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=PROJECT.parent / "laic-scale")
    parser.add_argument("--n", type=int, default=IMAGENET_N)
    parser.add_argument("--n-eval", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--nouns", type=int, default=4000)
    parser.add_argument("--skip-vit", action="store_true", help="do not measure the ViT-B/32 text tower's step")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "imagenet_scale.md")
    args = parser.parse_args()
    out = args.out.resolve()
    workspace = args.workspace.resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    y_fit = prepare(workspace, args)
    costs = {stage: run_stage(workspace, stage) for stage in STAGES}
    neighbours = check_neighbours(workspace)
    scores = sanity_scores(workspace, y_fit)
    centers = json.loads((workspace / "metrics" / "centers.json").read_text())
    vit = None if args.skip_vit else vit_step_cost(args.classes)
    text = report(args, costs, neighbours, scores, vit, centers)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"costs": costs, "neighbours": neighbours, "scores": scores,
                                                    "vit_b32_step": vit, "centers": centers}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
