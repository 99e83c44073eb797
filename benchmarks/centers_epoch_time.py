"""Time of prompt learning (the centers stage) per epoch, by number of clusters K.

    python benchmarks/centers_epoch_time.py [--ks 10 100] [--batch-sizes 512 4096]
        [--n 10000] [--k 10] [--steps 0] [--device cpu] [--threads 0]

ViT-B-32 text tower with random weights (no download), N random unit image
features, k random neighbours per image, all reliable (P = N * k pairs).
Reports, per K: one K-prompt forward+backward through the text tower (with
exact truncation and at the full 77 tokens), and per batch size: steps per
epoch, seconds per step and per epoch. `--steps S` times S steps and
extrapolates to the epoch (0 = time a whole epoch). On a shared machine the
CPU seconds (process time, all threads) are steadier than wall seconds; with
`--threads 1` on an idle core the two agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from laic_core.centers import PromptLearner, train_centers
from laic_core.models import load_clip
from laic_core.vocab import load_wordnet_nouns


def prompt_step_seconds(learner: PromptLearner, repeats: int, truncate: bool = True) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one forward+backward of the K prompts."""
    emb = learner.fixed_embeddings
    tokens = learner.tokens
    if not truncate:  # pad back to the full context, as an untruncated tower would run
        pad = learner.tower.context_length - tokens.shape[1]
        tokens = torch.nn.functional.pad(tokens, (0, pad))
        emb = torch.cat([emb, learner.tower.token_embedding(tokens[:, -pad:])], dim=1) if pad else emb
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        x = torch.cat([emb[:, :1], learner.ctx.to(emb.dtype), emb[:, 1 + learner.n_ctx:]], dim=1)
        feats = learner.tower.encode_embeddings(x, tokens, truncate=truncate)
        feats.float().sum().backward()
        learner.ctx.grad = None
        if learner.ctx.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return float(np.median(times)), float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="steps to time (0: a whole epoch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    bundle = load_clip("ViT-B-32", "none", args.device)
    rng = np.random.default_rng(0)
    V = rng.normal(size=(args.n, 512)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    pairs = np.stack([np.repeat(np.arange(args.n), args.k),
                      rng.integers(0, args.n, args.n * args.k)], axis=1).astype(np.int64)
    nouns = [w for w in load_wordnet_nouns() if w.isalpha()]
    print(f"device {bundle.device}, torch threads {torch.get_num_threads()}, N={args.n}, "
          f"k={args.k}, P={len(pairs)} pairs")
    for K in args.ks:
        learner = PromptLearner(bundle.model, bundle.tokenizer, nouns[:K], 4, model_name="ViT-B-32")
        prompt_step_seconds(learner, 1)  # warm-up
        fb, fb_cpu = prompt_step_seconds(learner, args.repeats)
        full, full_cpu = prompt_step_seconds(learner, max(1, args.repeats // 2), truncate=False)
        print(f"K={K}: prompt length {learner.tokens.shape[1]} tokens; one K-prompt forward+backward "
              f"{fb:.3f}s wall / {fb_cpu:.3f}s CPU (at the full {learner.tower.context_length} tokens: "
              f"{full:.3f}s wall / {full_cpu:.3f}s CPU)")
        for batch_size in args.batch_sizes:
            steps_per_epoch = -(-len(pairs) // batch_size)
            steps = steps_per_epoch if args.steps <= 0 else min(args.steps, steps_per_epoch)
            subset = pairs[rng.permutation(len(pairs))[: steps * batch_size]]
            start, start_cpu = time.perf_counter(), time.process_time()
            train_centers(learner, torch.from_numpy(V), subset, epochs=1, batch_size=batch_size,
                          progress=False)
            if bundle.device.type == "cuda":
                torch.cuda.synchronize()
            per_step = (time.perf_counter() - start) / steps
            cpu_step = (time.process_time() - start_cpu) / steps
            how = "measured" if steps == steps_per_epoch else f"extrapolated from {steps} steps"
            print(f"  batch_size={batch_size}: {steps_per_epoch} steps/epoch; per step {per_step:.3f}s wall / "
                  f"{cpu_step:.3f}s CPU; per epoch {per_step * steps_per_epoch:.1f}s wall / "
                  f"{cpu_step * steps_per_epoch:.1f}s CPU ({how}); the K-prompt forward+backward is "
                  f"{100 * min(fb_cpu / cpu_step, 1):.0f}% of a step's CPU time")


if __name__ == "__main__":
    main()
