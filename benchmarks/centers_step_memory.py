"""Peak memory and time of one centers step with CLIP ViT-B/32's text tower, whole or in checkpointed chunks.

    python benchmarks/centers_step_memory.py [--ks 10 100 1000] [--chunks 128] [--whole-up-to 100]
        [--out benchmarks/results/centers_step_memory.md]

Each measurement runs in a fresh Python process, so its peak RSS (VmHWM) is
that of one stage doing that work alone: ViT-B/32 with random weights (a
step costs the same with any weights) on the CPU, K prompts, 20,000 random
unit image features, one warm-up step and then `--steps` timed steps of
1,024 anchors (`train_centers`, no early stop). `chunk` is
`centers.prompt_chunk`: with K above it the K-prompt pass runs in chunks
under activation checkpointing; "whole" is one pass (chunk >= K), what
every step did before. The peak is the process's, model included; the
setup peak (model and learner built, before any step) is given beside it.

Nothing here is a test: K = 1000 takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
N_IMAGES = 20_000

CHILD = r"""
import json, sys, time
import numpy as np, torch
from laic_core.data.models import load_clip
from laic_core.method.centers import train_centers
from laic_core.text.prompts import PromptLearner
from stages.cost import peak_rss_mib as peak_mib  # VmHWM: this process's own peak

K, chunk, steps, n = (int(a) for a in sys.argv[1:5])
bundle = load_clip("ViT-B-32", "none", "cpu")  # random weights: a step costs the same with any weights
learner = PromptLearner(bundle.model, bundle.tokenizer, [f"noun{j}" for j in range(K)], 4, seed=0, chunk_size=chunk)
rng = np.random.default_rng(0)
V = rng.standard_normal((n, 512)).astype(np.float32)
V /= np.linalg.norm(V, axis=1, keepdims=True)
knn, pseudo, reliable = rng.integers(n, size=(n, 5)), rng.integers(K, size=n), np.ones(n, bool)
kw = dict(tau=0.01, batch_size=1024, seed=0, progress=False, stop_tolerance=0)
setup = peak_mib()
train_centers(learner, torch.from_numpy(V), knn, pseudo, reliable, steps=1, **kw)  # warm-up
started = time.perf_counter()
train_centers(learner, torch.from_numpy(V), knn, pseudo, reliable, steps=steps, **kw)
seconds = (time.perf_counter() - started) / steps
print(json.dumps({"K": K, "chunk": chunk, "whole": chunk >= K, "seconds_per_step": seconds,
                  "tokens_per_prompt": int(learner.tokens.shape[1]), "setup_peak_mib": setup, "peak_mib": peak_mib(),
                  "threads": torch.get_num_threads()}))
"""


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0.0


def step_cost(K: int, chunk: int, steps: int = 2, n_images: int = N_IMAGES, rss_limit_mib: float | None = None) -> dict:
    """Time per step and peak RSS of centers steps at K with `chunk` prompts per pass, in a fresh process.

    With `rss_limit_mib` the process is stopped once its RSS passes the limit (a shared machine must not
    run out of memory): the row then says only that the peak exceeds it.
    """
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(K), str(chunk), str(steps), str(n_images)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if rss_limit_mib and _rss_mib(proc.pid) > rss_limit_mib:
            proc.kill()
            proc.wait()
            return {"K": K, "chunk": chunk, "whole": chunk >= K, "seconds_per_step": float("nan"),
                    "tokens_per_prompt": None, "setup_peak_mib": float("nan"), "peak_mib": float("nan"),
                    "exceeded_mib": rss_limit_mib}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the K={K} chunk={chunk} step failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [f"# One centers step with CLIP ViT-B/32's text tower on this CPU ({os.cpu_count()} cores)", "",
             "Fresh process per row; 1,024 anchors a step; peak RSS (VmHWM) of the whole process, the model "
             "included. `whole`: the K prompts in one pass; a number: `centers.prompt_chunk` prompts per "
             "checkpointed pass.", "",
             "| K | prompts per pass | tokens per prompt | s per step | setup peak GiB | step peak GiB |",
             "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        what = "whole" if r["whole"] else r["chunk"]
        if "exceeded_mib" in r:
            lines.append(f"| {r['K']} | {what} | | stopped | | > {r['exceeded_mib'] / 1024:.1f} |")
            continue
        lines.append(f"| {r['K']} | {what} | {r['tokens_per_prompt']} | {r['seconds_per_step']:.2f} | "
                     f"{r['setup_peak_mib'] / 1024:.2f} | {r['peak_mib'] / 1024:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--chunks", type=int, nargs="+", default=[128], help="centers.prompt_chunk values")
    parser.add_argument("--whole-up-to", type=int, default=100,
                        help="also measure one whole pass for K up to this (K = 1000 whole: 5.5 GiB)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--rss-limit-gib", type=float, default=14.0,
                        help="stop a measurement whose RSS passes this (a shared machine must not run out)")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "centers_step_memory.md")
    args = parser.parse_args()
    rows = []
    for K in args.ks:
        configs = [c for c in args.chunks if c < K] + ([K] if K <= args.whole_up_to or not
                                                       any(c < K for c in args.chunks) else [])
        for chunk in configs:
            rows.append(step_cost(K, chunk, args.steps, rss_limit_mib=args.rss_limit_gib * 1024))
            r = rows[-1]
            print(f"K={K} {'whole' if r['whole'] else f'chunk {chunk}'}: {r['seconds_per_step']:.2f} s per step, "
                  f"peak {r['peak_mib'] / 1024:.2f} GiB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(rows))
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
