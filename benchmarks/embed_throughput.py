"""Image-embedding throughput: the whole pipeline vs the model alone (run by hand).

    python benchmarks/embed_throughput.py --images 1024 --workers 2

Encodes `--images` images of ../shared/datasets/imagenette-val (224 px JPEG
photos) with the ViT-B-32 architecture (random weights: timing only), once
through the embed stage's DataLoader path (decode, preprocess, encode) and
once as the model's forward alone on the very same preprocessed batches held
in memory. The ratio pipeline/model says how well decoding and I/O hide
behind the model (target >= 0.9).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from laic_core.artifacts import ChunkedArray
from laic_core.data.datasets import load_split
from laic_core.data.encode import encode_images
from laic_core.data.images import FileSplit, to_rgb
from laic_core.data.models import load_clip

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenette-val"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    full = load_split("imagefolder", "", args.root, "all")
    step = max(1, len(full) // args.images)  # spread over all classes
    split = FileSplit("bench", full.paths[::step][: args.images], None, None)
    bundle = load_clip(args.model, args.pretrained, args.device)
    print(f"{args.model} on {bundle.device} ({bundle.dtype}), {torch.get_num_threads()} torch threads, "
          f"{len(split)} images from {args.root}, batch {args.batch_size}, {args.workers} workers")

    # Warm-up so that one-off allocation costs count in neither timing.
    with torch.inference_mode():
        x = torch.stack([bundle.preprocess(to_rgb(split.load_image(i))) for i in range(args.batch_size)])
        bundle.model.encode_image(x.to(bundle.device, bundle.dtype))

    with tempfile.TemporaryDirectory() as tmp:
        out = ChunkedArray(Path(tmp) / "f.npy", len(split), 4096, key="bench")
        started = time.perf_counter()
        encode_images(bundle, split, out, batch_size=args.batch_size, num_workers=args.workers)
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        pipeline = len(split) / (time.perf_counter() - started)

    batches = []
    for start in range(0, len(split), args.batch_size):
        idx = range(start, min(start + args.batch_size, len(split)))
        batches.append(torch.stack([bundle.preprocess(to_rgb(split.load_image(i))) for i in idx]))
    batches = [b.to(bundle.device, bundle.dtype) for b in batches]
    started = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            bundle.model.encode_image(b)
    if bundle.device.type == "cuda":
        torch.cuda.synchronize()
    model_only = len(split) / (time.perf_counter() - started)

    print(f"pipeline   {pipeline:8.1f} images/s")
    print(f"model only {model_only:8.1f} images/s")
    print(f"ratio      {pipeline / model_only:8.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
