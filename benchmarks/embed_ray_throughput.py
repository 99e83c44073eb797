"""Embedding throughput: the single-process engine vs Ray Data (run by hand).

    python benchmarks/embed_ray_throughput.py --ray-workers 2 --loader-workers 2

Encodes the images of ../shared/datasets/cifar10-test (10,000 32-px JPEGs,
imagefolder, split "all") with the MiniVLM-64 stand-in model and its real
weights, once with `encode_images` (one process, DataLoader workers decoding)
and once with `encode_images_ray` on a local Ray instance started here with
`--ray-workers` model replicas. Prints images/s both ways and the largest
absolute difference between the two feature arrays.

Timing: both figures are end to end for the encoding call, model loading
included (the single process loads its model before the call, so its load is
timed separately and added; Ray's replicas load theirs inside the call).
Starting the Ray instance itself is reported apart, as is Ray's rate after
its first batch (the steady state, without the replicas' start-up).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from laic_core.artifacts import ChunkedArray
from laic_core.data.datasets import load_split
from laic_core.data.encode import encode_images
from laic_core.data.images import FileSplit
from laic_core.data.models import load_clip

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=SHARED / "datasets" / "cifar10-test")
    parser.add_argument("--model", default=str(SHARED / "models" / "MiniVLM-64.json"))
    parser.add_argument("--pretrained", default=str(SHARED / "models" / "MiniVLM-64" / "open_clip_model.safetensors"))
    parser.add_argument("--images", type=int, default=0, help="0 = all")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader processes, single-process engine")
    parser.add_argument("--ray-workers", type=int, default=2, help="model replicas on Ray")
    args = parser.parse_args()

    from laic_core.data.ray_embed import encode_images_ray, ray_session

    split = load_split("imagefolder", "", args.root, "all")
    if args.images:
        step = max(1, len(split) // args.images)  # spread over all classes
        split = FileSplit("bench", split.paths[::step][: args.images], None, None)
    n = len(split)
    print(f"{n} images from {args.root}; model {Path(args.model).name}; batch {args.batch_size}; "
          f"{os.cpu_count()} CPU core(s), {torch.get_num_threads()} torch threads in this process")

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        bundle = load_clip(args.model, args.pretrained, "cpu")
        load_s = time.perf_counter() - started
        out = ChunkedArray(Path(tmp) / "local.npy", n, args.chunk_size, key="bench")
        started = time.perf_counter()
        encode_images(bundle, split, out, batch_size=args.batch_size, num_workers=args.loader_workers,
                      desc="single process")
        local_s = time.perf_counter() - started
        local = np.array(out.finalize())

        started = time.perf_counter()
        with ray_session("local", args.ray_workers):
            ray_start_s = time.perf_counter() - started
            out = ChunkedArray(Path(tmp) / "ray.npy", n, args.chunk_size, key="bench")
            timings: dict = {}
            encode_images_ray(bundle, split, out, batch_size=args.batch_size, workers=args.ray_workers,
                              device="cpu", desc="ray", timings=timings)
            remote = np.array(out.finalize())

    ray_s = timings["seconds"]
    steady = (n - args.batch_size) / max(ray_s - timings["first_batch_s"], 1e-9)
    print()
    print(f"single process ({args.loader_workers} loader workers): {n / (local_s + load_s):8.1f} img/s "
          f"({local_s + load_s:.1f}s, model load {load_s:.1f}s of it; {n / local_s:.1f} img/s without)")
    print(f"ray ({args.ray_workers} replicas):                  {n / ray_s:8.1f} img/s "
          f"({ray_s:.1f}s; first batch after {timings['first_batch_s']:.1f}s, "
          f"~{steady:.1f} img/s after it; starting Ray took {ray_start_s:.1f}s more)")
    print(f"max |ray - single process| = {np.abs(remote - local).max():.3g}")


if __name__ == "__main__":
    main()
