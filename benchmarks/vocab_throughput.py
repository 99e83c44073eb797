"""Nouns per second of a CLIP text tower, truncated vs full-length (run by hand).

    python benchmarks/vocab_throughput.py --model ViT-B-32 --nouns 2000

Random weights are fine for timing (`--pretrained none`). Encodes the first
`--nouns` WordNet nouns (a deterministic sample spread over the list) under
the seven default templates, both ways, checks that the two agree, and
projects the time for the full shipped list.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from laic_core.encode import encode_nouns
from laic_core.models import load_clip
from laic_core.text_tower import TextTower
from laic_core.vocab import DEFAULT_TEMPLATES, load_wordnet_nouns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nouns", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    all_nouns = load_wordnet_nouns()
    pick = np.linspace(0, len(all_nouns) - 1, args.nouns).astype(int)
    nouns = [all_nouns[i] for i in pick]
    bundle = load_clip(args.model, args.pretrained, args.device)
    tower = TextTower(bundle.model)
    print(f"{args.model} text tower on {bundle.device}, {torch.get_num_threads()} threads, "
          f"{len(nouns)} nouns x {len(DEFAULT_TEMPLATES)} templates, causal={tower.causal}")

    results = {}
    for truncate in (True, False):
        started = time.perf_counter()
        feats = encode_nouns(bundle, tower, nouns, DEFAULT_TEMPLATES, batch_size=args.batch_size, truncate=truncate)
        seconds = time.perf_counter() - started
        results[truncate] = (feats, len(nouns) / seconds)
        print(f"  {'truncated' if truncate else 'full 77 '}: {seconds:7.1f} s  {len(nouns) / seconds:8.1f} nouns/s")
    diff = float(np.abs(results[True][0] - results[False][0]).max())
    speedup = results[True][1] / results[False][1]
    full_list = len(all_nouns)
    print(f"  max |truncated - full| = {diff:.2e}; speed-up {speedup:.2f}x")
    print(f"  projected full WordNet list ({full_list} nouns): truncated {full_list / results[True][1] / 60:.1f} min, "
          f"full length {full_list / results[False][1] / 60:.1f} min")


if __name__ == "__main__":
    main()
