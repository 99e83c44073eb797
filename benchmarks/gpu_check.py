"""The pipeline's CUDA paths, timed and checked against the CPU, with CLIP ViT-B/32's shapes.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.md]   # on a CUDA machine
    python benchmarks/gpu_check.py --dry --out /tmp/gpu_check.md             # any machine: tiny sizes

On a CUDA machine, with ViT-B/32 and random weights (no download: the
shapes, not the weights, set the cost), it runs what every stage does on
the GPU and reports, per step, the wall time and the peak GPU memory
(torch.cuda.max_memory_allocated, reset before each step):

- embed: 2,000 generated 64-px PNGs through the DataLoader and the image tower (float16);
- vocab: 5,000 WordNet nouns x 7 templates, with the prefix cache (float16);
- relation and neighbours on 200,000 synthetic CLIP-like rows (benchmarks/synthetic.py, d = 512,
  100 classes, 4,000 nouns): the ridge rows, TAC's text features, the exact kNN in relation space
  (k = 5) and image space (k = 50), the consistency filter;
- centers: 100 steps of 1,024 anchors at K = 10 and at K = 1000 (prompt chunks of 128);
- TAC (its K >= 100 settings) and SCAN for one epoch on the 200,000 rows.

Every step is checked against the same computation on the CPU in float32
(on a sample where the whole would take long there), to the tolerance in
its row: min cosine >= 0.99 between GPU (float16) and CPU features; recall
>= 0.999 of the exact neighbours; the first centers step's loss within 1%
and its gradient at cosine >= 0.99; TAC's and SCAN's epoch loss within 1%
and >= 98% of the images in the same cluster. It generates everything it
reads, downloads nothing, and needs nothing beside the repository. On one
H100 it is meant to finish in well under 8 minutes.

`--dry` runs every step at tiny sizes with a tiny random model on the CPU
(or the GPU when there is one), comparing the device with itself where
there is no GPU: the test suite runs it so the script cannot rot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "benchmarks"))

COS_MIN = 0.99  # float16 on the GPU against float32 on the CPU
RECALL_MIN = 0.999  # exact search on both: only ties may differ
LOSS_REL = 0.01
AGREE_MIN = 0.98
TINY_MODEL = {  # --dry: a 2-layer tower of ViT-B/32's output width
    "embed_dim": 512,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@dataclass(frozen=True)
class Sizes:
    images: int = 2000
    nouns: int = 5000
    rows: int = 200_000
    classes: int = 100
    selected_nouns: int = 4000
    centers_ks: tuple[int, ...] = (10, 1000)
    centers_steps: int = 100
    prompt_chunk: int = 128
    cpu_images: int = 64  # rows compared with the CPU where the whole would take long there
    cpu_nouns: int = 100
    cpu_queries: int = 2000


DRY = Sizes(images=16, nouns=20, rows=600, classes=10, selected_nouns=100, centers_ks=(4, 20), centers_steps=3,
            prompt_chunk=8, cpu_images=8, cpu_nouns=10, cpu_queries=100)


@dataclass
class Row:
    step: str
    size: str
    wall_s: float
    peak_gpu_mib: float | None
    check: str  # what was compared with the CPU, and the tolerance
    value: float
    ok: bool


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measured(device: str, work: Callable[[], object]) -> tuple[object, float, float | None]:
    """(work's result, wall seconds, peak GPU MiB during it or None on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = work()
    _sync(device)
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return result, wall, peak


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


# ------------------------------------------------------------------ steps


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n 64-px PNGs of smooth random colour fields (what a decoder and the preprocessing really do)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
        path = folder / f"img_{i:05d}.png"
        Image.fromarray(low).resize((64, 64), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def encode_files(bundle, paths: list[Path], work: Path, name: str) -> np.ndarray:
    from laic_core.artifacts import ChunkedArray
    from laic_core.data.encode import encode_images, image_embedding_dim
    from laic_core.data.images import FileSplit

    split = FileSplit(name, paths, None, None)
    out = ChunkedArray(work / f"{name}.npy", len(paths), 4096, key=name)
    encode_images(bundle, split, out, batch_size=256, desc=name)
    features = np.array(out.finalize())
    assert features.shape[1] == image_embedding_dim(bundle)
    return features


def check_embed(gpu, cpu, sizes: Sizes, work: Path) -> Row:
    paths = make_images(work / "images", sizes.images)
    features, wall, peak = measured(gpu.device.type, lambda: encode_files(gpu, paths, work, "embed_gpu"))
    reference = encode_files(cpu, paths[:sizes.cpu_images], work, "embed_cpu")
    value = min_cosine(features[:sizes.cpu_images], reference)
    return Row("embed", f"{sizes.images} images", wall, peak,
               f"min cosine to the CPU on {sizes.cpu_images} images >= {COS_MIN}", value, value >= COS_MIN)


def noun_features(bundle, nouns: list[str]) -> np.ndarray:
    from laic_core.text.encode import encode_nouns
    from laic_core.text.tower import TextTower
    from laic_core.text.vocab import DEFAULT_TEMPLATES

    return encode_nouns(bundle, TextTower(bundle.model), nouns, DEFAULT_TEMPLATES, batch_size=1024)


def check_vocab(gpu, cpu, sizes: Sizes) -> Row:
    from laic_core.text.vocab import load_wordnet_nouns

    nouns = load_wordnet_nouns()[:sizes.nouns]
    features, wall, peak = measured(gpu.device.type, lambda: noun_features(gpu, nouns))
    value = min_cosine(features[:sizes.cpu_nouns], noun_features(cpu, nouns[:sizes.cpu_nouns]))
    return Row("vocab", f"{sizes.nouns} nouns x 7 templates", wall, peak,
               f"min cosine to the CPU on {sizes.cpu_nouns} nouns >= {COS_MIN}", value, value >= COS_MIN)


def synthetic(sizes: Sizes) -> dict:
    from synthetic import SyntheticClip

    generator = SyntheticClip(n_classes=sizes.classes, n_supers=max(1, sizes.classes // 10))
    V = generator.images(generator.labels(sizes.rows, seed=0), seed=0)
    per_class = max(1, (sizes.selected_nouns * 3 // 4) // sizes.classes)
    T, _ = generator.nouns(per_class=per_class, extra=sizes.selected_nouns - per_class * sizes.classes, seed=0)
    return {"V": V, "T": T}


def exact_recall(X: np.ndarray, found: np.ndarray, queries: np.ndarray) -> float:
    """Share of the exact (CPU, float32) neighbours of `queries` that `found` lists."""
    k = found.shape[1]
    scores = torch.from_numpy(X[queries]) @ torch.from_numpy(X).T
    scores[torch.arange(len(queries)), torch.from_numpy(queries)] = -torch.inf  # never one's own neighbour
    exact = scores.topk(k, dim=1).indices.numpy()
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found[queries], exact)]))


def relation_and_neighbours(data: dict, device: str) -> dict:
    from laic_core.method.cluster import spherical_kmeans
    from laic_core.method.neighbors import consistency_filter, knn
    from laic_core.method.relation import relation_embedding, tac_text_features

    rows = relation_embedding(data["V"], data["T"], kind="ridge", ridge_lambda=1.0)
    S = tac_text_features(data["V"], data["T"], tau=0.005, device=device)
    # the stage's pseudo-labels come from scikit-learn's k-means on the CPU; the GPU's k-means stands in
    _, pseudo = spherical_kmeans(rows, 10, seed=0, n_iter=20, device=device)
    knn_rows = knn(rows, 5, method="exact", device=device)
    return {"rows": rows, "S": S, "pseudo": pseudo, "knn": knn_rows,
            "reliable": consistency_filter(knn_rows, pseudo, 1.0),
            "knn_image": knn(data["V"], 50, method="exact", device=device),
            "knn_text": knn(S, 50, method="exact", device=device)}


def check_relation(data: dict, sizes: Sizes, device: str) -> tuple[Row, dict]:
    from laic_core.method.relation import tac_text_features

    out, wall, peak = measured(device, lambda: relation_and_neighbours(data, device))
    queries = np.random.default_rng(0).choice(sizes.rows, size=min(sizes.cpu_queries, sizes.rows), replace=False)
    recall = min(exact_recall(out["rows"], out["knn"], queries), exact_recall(data["V"], out["knn_image"], queries))
    S_cpu = tac_text_features(data["V"][queries], data["T"], tau=0.005)
    mixed = min_cosine(out["S"][queries], S_cpu)
    ok = recall >= RECALL_MIN and mixed >= 1 - 1e-5
    return Row("relation + neighbours", f"{sizes.rows:,} rows, {sizes.selected_nouns} nouns", wall, peak,
               f"recall of the CPU's exact neighbours (k 5 and 50) on {len(queries)} queries >= {RECALL_MIN}; "
               f"TAC text features at cosine >= 1 - 1e-5 (measured {mixed:.7f})", recall, ok), out


def first_step(bundle, words: list[str], chunk: int, data: dict, out: dict, anchors: np.ndarray):
    """Loss and context gradient of one step on fixed anchors, from the initial prompts."""
    from laic_core.method.centers import centers_loss
    from laic_core.text.prompts import PromptLearner

    learner = PromptLearner(bundle.model, bundle.tokenizer, words, 4, seed=0, chunk_size=chunk)
    dev = learner.ctx.device
    V = torch.from_numpy(data["V"]).to(dev)
    a = torch.from_numpy(anchors).to(dev)
    knn_t = torch.from_numpy(out["knn"]).to(dev)
    pseudo = torch.from_numpy(out["pseudo"] % len(words)).to(dev)
    reliable = torch.from_numpy(out["reliable"]).to(dev)
    loss, _ = centers_loss(V[a], V[knn_t[a]], learner(), tau=0.01, entropy_weight=5.0, ce_weight=0.3,
                           pseudo=pseudo[a], reliable=reliable[a])
    loss.backward()
    return loss.item(), learner.ctx.grad.detach().float().cpu().numpy().reshape(len(words), -1)


def train_steps(bundle, words: list[str], chunk: int, data: dict, out: dict, steps: int):
    from laic_core.method.centers import train_centers
    from laic_core.text.prompts import PromptLearner

    learner = PromptLearner(bundle.model, bundle.tokenizer, words, 4, seed=0, chunk_size=chunk)
    return train_centers(learner, data["V"], out["knn"], out["pseudo"] % len(words), out["reliable"],
                         tau=0.01, steps=steps, batch_size=1024, seed=0, stop_tolerance=0, progress=False)


def check_centers(gpu, cpu, K: int, sizes: Sizes, data: dict, out: dict) -> Row:
    words = [f"noun{j}" for j in range(K)]
    device = gpu.device.type
    _, wall, peak = measured(device, lambda: train_steps(gpu, words, sizes.prompt_chunk, data, out,
                                                         sizes.centers_steps))
    anchors = np.random.default_rng(0).integers(sizes.rows, size=1024)
    loss_gpu, grad_gpu = first_step(gpu, words, sizes.prompt_chunk, data, out, anchors)
    loss_cpu, grad_cpu = first_step(cpu, words, sizes.prompt_chunk, data, out, anchors)
    rel = abs(loss_gpu - loss_cpu) / abs(loss_cpu)
    cos = min_cosine(grad_gpu.reshape(1, -1), grad_cpu.reshape(1, -1))
    return Row(f"centers K={K}", f"{sizes.centers_steps} steps of 1,024 anchors", wall, peak,
               f"first step vs the CPU: loss within {LOSS_REL:.0%} (measured {rel:.2%}), gradient at cosine "
               f">= {COS_MIN}", cos, rel <= LOSS_REL and cos >= COS_MIN)


def check_baseline(name: str, train: Callable[[str], tuple], sizes: Sizes, device: str) -> Row:
    (labels_gpu, loss_gpu), wall, peak = measured(device, lambda: train(device))
    labels_cpu, loss_cpu = train("cpu")
    rel = abs(loss_gpu - loss_cpu) / abs(loss_cpu)
    agree = float(np.mean(labels_gpu == labels_cpu))
    return Row(name, f"1 epoch on {sizes.rows:,} rows, K={sizes.classes}", wall, peak,
               f"epoch loss within {LOSS_REL:.0%} of the CPU's (measured {rel:.2%}), same cluster for >= "
               f"{AGREE_MIN:.0%} of the images", agree, rel <= LOSS_REL and agree >= AGREE_MIN)


def tac_epoch(data: dict, out: dict, K: int) -> Callable[[str], tuple]:
    from laic_core.baselines.tac import TacSettings, predict, train_tac

    settings = dataclasses.replace(TacSettings.published(K), epochs=1)

    def train(device: str):
        head, history = train_tac(data["V"], out["S"], out["knn_image"], out["knn_text"], K, settings=settings,
                                  seed=0, device=device, progress=False)
        return predict(head, data["V"])[0], history[0]["loss"]
    return train


def scan_epoch(data: dict, out: dict, K: int) -> Callable[[str], tuple]:
    from laic_core.baselines.scan import ScanSettings, predict, train_scan

    def train(device: str):
        head, _, history = train_scan(data["V"], out["knn_image"], K, settings=ScanSettings(epochs=1), seed=0,
                                      device=device, progress=False)
        return predict(head, data["V"])[0], history[0]["loss"]
    return train


# ------------------------------------------------------------------ driver


def load_models(dry: bool, work: Path):
    from laic_core.data.models import load_clip

    name = "ViT-B-32"
    if dry:
        name = str(work / "gpu-check-tiny.json")
        Path(name).write_text(json.dumps(TINY_MODEL))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_clip(name, "none", device), load_clip(name, "none", "cpu")


def run_checks(sizes: Sizes, dry: bool, work: Path) -> list[Row]:
    gpu, cpu = load_models(dry, work)
    device = gpu.device.type
    rows = [check_embed(gpu, cpu, sizes, work), check_vocab(gpu, cpu, sizes)]
    print(_line(rows[0]), _line(rows[1]), sep="\n", flush=True)
    data = synthetic(sizes)
    row, out = check_relation(data, sizes, device)
    rows.append(row)
    print(_line(row), flush=True)
    for K in sizes.centers_ks:
        rows.append(check_centers(gpu, cpu, K, sizes, data, out))
        print(_line(rows[-1]), flush=True)
    for name, make in (("tac", tac_epoch), ("scan", scan_epoch)):
        rows.append(check_baseline(name, make(data, out, sizes.classes), sizes, device))
        print(_line(rows[-1]), flush=True)
    return rows


def _line(row: Row) -> str:
    peak = "-" if row.peak_gpu_mib is None else f"{row.peak_gpu_mib:.0f} MiB"
    return f"{row.step}: {row.wall_s:.2f} s, peak GPU {peak}, {'ok' if row.ok else 'MISMATCH'} ({row.value:.5f})"


def table(rows: list[Row], device: str, total: float, dry: bool) -> str:
    lines = [f"# GPU check on {device}" + (" (dry run: tiny model and sizes)" if dry else ", CLIP ViT-B/32 shapes"),
             "", f"Total {total:.0f} s. Peak GPU memory: torch.cuda.max_memory_allocated during the step.", "",
             "| step | size | wall s | peak GPU MiB | against the CPU | value | ok |",
             "|---|---|---:|---:|---|---:|---|"]
    for r in rows:
        peak = "-" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib:.0f}"
        lines.append(f"| {r.step} | {r.size} | {r.wall_s:.2f} | {peak} | {r.check} | {r.value:.5f} | "
                     f"{'yes' if r.ok else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="tiny model and sizes; runs without a GPU")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "gpu_check.md")
    args = parser.parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device is visible; run it on a GPU machine, or with --dry to try it here")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="laic-gpu-check-") as tmp:
        rows = run_checks(DRY if args.dry else Sizes(), args.dry, Path(tmp))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    text = table(rows, device, time.perf_counter() - started, args.dry)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    print(text)
    return rows


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
