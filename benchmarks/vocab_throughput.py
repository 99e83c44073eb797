"""Nouns per second of a CLIP text tower: full length, truncated, prefix cache (run by hand).

    python -m benchmarks.vocab_throughput --model ViT-B-32 --nouns 3000 --threads 2
    python -m benchmarks.vocab_throughput --model ../shared/models/MiniVLM-64.json \\
        --pretrained ../shared/models/MiniVLM-64/open_clip_model.safetensors --nouns 3000 --threads 2

(`python -m` from the repository root imports this checkout's laic_core; a
plain `python benchmarks/...` imports whichever laic_core is installed.)

Random weights are fine for timing (`--pretrained none`). Encodes `--nouns`
WordNet nouns (a deterministic sample spread over the sorted list, so that
short and long, capitalised and lower-case nouns all appear) under the seven
default templates, with each `--modes` entry:

- `full`: every prompt at the full 77 tokens;
- `truncated`: each batch cut to its longest prompt (exact; the vocab stage
  before the prefix cache);
- `prefix`: each template's leading tokens encoded once, their keys/values
  reused by every noun (`laic_core.text.prefix_cache`; the vocab stage's default);
- `sot-only`: the prefix-cache code with every prefix cut to [SOT], i.e.
  nothing reused: separates the saving of the reuse from that of the
  re-implemented attention and the equal-length batches.

Each mode runs `--repeats` times, interleaved, and the fastest run is kept:
other jobs on a shared machine slow runs down, never speed them up. Wall and
CPU time (`time.process_time`, all threads) are both reported; when the
machine is oversubscribed, CPU time is the steadier figure. Every mode is
checked against `truncated` (max |difference| of the unit-norm noun
embeddings), and the time for the full shipped list is projected.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from laic_core.data.models import load_clip
from laic_core.text.encode import encode_nouns, ensemble_mean
from laic_core.text.prefix_cache import encode_with_prefix_batches, prefix_matches, template_prefix, unsupported_reason
from laic_core.text.tower import TextTower
from laic_core.text.vocab import DEFAULT_TEMPLATES, load_wordnet_nouns

MODES = {  # mode -> encode_nouns keywords
    "full": {"truncate": False, "prefix_cache": False},
    "truncated": {"truncate": True, "prefix_cache": False},
    "prefix": {"truncate": True, "prefix_cache": True},
    "sot-only": None,  # see sot_only
}


def sot_only(bundle, tower, nouns, templates, batch_size):
    """encode_nouns' cached path with every prefix cut to its first token ([SOT])."""
    tokens = bundle.tokenizer([t.replace("{}", n) for n in nouns for t in templates])
    which = torch.arange(len(templates)).repeat(len(nouns))
    prefixes = [template_prefix(tower, bundle.tokenizer, t)[:1] for t in templates]
    feats = encode_with_prefix_batches(tower, tokens, which, prefixes, batch_size=batch_size, device=bundle.device)
    return ensemble_mean(feats, len(templates)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model name or model-config JSON")
    parser.add_argument("--pretrained", default="none", help="pretrained tag, checkpoint path, or none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nouns", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--modes", default="truncated,prefix", help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode; the fastest is reported")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or "truncated" not in modes:
        parser.error(f"--modes: {unknown or modes} - choose from {', '.join(MODES)}, including 'truncated'")
    if args.threads:
        torch.set_num_threads(args.threads)

    all_nouns = load_wordnet_nouns()
    pick = np.linspace(0, len(all_nouns) - 1, args.nouns).astype(int)
    nouns = [all_nouns[i] for i in pick]
    bundle = load_clip(args.model, args.pretrained, args.device)
    tower = TextTower(bundle.model)
    print(f"{args.model} ({args.pretrained}) text tower on {bundle.device}, {torch.get_num_threads()} threads, "
          f"{len(nouns)} nouns x {len(DEFAULT_TEMPLATES)} templates, batch {args.batch_size}, "
          f"causal={tower.causal}, prefix cache: {unsupported_reason(tower) or 'supported'}")
    if "prefix" in modes and unsupported_reason(tower) is None:
        for template in DEFAULT_TEMPLATES:
            prefix = template_prefix(tower, bundle.tokenizer, template)
            tokens = bundle.tokenizer([template.replace("{}", n) for n in nouns])
            fallback = int((~prefix_matches(tower, tokens, prefix)).sum())
            print(f"  {template!r:30} prefix {len(prefix)} tokens, mean prompt "
                  f"{float(tower.pooled_positions(tokens).float().mean()) + 1:.1f} tokens, "
                  f"{fallback} prompt(s) fall back to the plain path")

    # Warm-up (first-call allocations, tokenizer caches) outside the timings.
    encode_nouns(bundle, tower, nouns[:64], DEFAULT_TEMPLATES, batch_size=args.batch_size)
    best: dict[str, tuple[float, float]] = {}
    feats: dict[str, np.ndarray] = {}
    for rep in range(args.repeats):
        for mode in modes if rep % 2 == 0 else modes[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            if MODES[mode] is None:
                feats[mode] = sot_only(bundle, tower, nouns, DEFAULT_TEMPLATES, args.batch_size)
            else:
                feats[mode] = encode_nouns(bundle, tower, nouns, DEFAULT_TEMPLATES,
                                           batch_size=args.batch_size, **MODES[mode])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"  run {rep + 1} {mode:9}: wall {wall:7.1f} s, cpu {cpu:7.1f} s")
            old = best.get(mode)
            best[mode] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)

    base_wall, base_cpu = best["truncated"]
    print(f"\n| mode | wall s | nouns/s (wall) | CPU s | nouns/s (CPU) | speed-up wall / CPU | max abs diff vs truncated |")
    print("|---|---|---|---|---|---|---|")
    for mode in modes:
        wall, cpu = best[mode]
        diff = float(np.abs(feats[mode] - feats["truncated"]).max())
        print(f"| {mode} | {wall:.1f} | {len(nouns) / wall:.1f} | {cpu:.1f} | {len(nouns) / cpu:.1f} | "
              f"{base_wall / wall:.2f}x / {base_cpu / cpu:.2f}x | {diff:.1e} |")
    full_list = len(all_nouns)
    print(f"\nprojected full WordNet list ({full_list} nouns), wall: " + ", ".join(
        f"{mode} {full_list / len(nouns) * best[mode][0] / 60:.1f} min" for mode in modes))


if __name__ == "__main__":
    main()
