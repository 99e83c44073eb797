"""Do test-time views make the image features better? k-means and neighbour purity on view averages.

    python benchmarks/multicrop_views.py [--sets cifar10-test imagenette-val dtd10] [--seeds 0 1 2 3 4]
        [--crop 0.5] [--out benchmarks/results/multicrop_minivlm64.md]

Every image of each shared set (`../shared/datasets`) is encoded by the
MiniVLM-64 stand-in as 12 views: the image as `embed` sees it (its centre
square) and five crops of `--crop` of its shorter side (the four corners and
the centre), each also mirrored.
Each view goes through the model's own preprocessing, so view 0 is what
`embed` stores. For the average of each group of views (renormalised)
the script reports k-means ACC / NMI (mean and spread over seeds, K = the
number of classes, with the restarts `clip_kmeans` uses) and the purity of the
10 nearest neighbours.

Why it exists: where the stand-in's features hold every method level with
k-means (textures), would views, as SCAN uses them, add what k-means lacks?
This measures what they do to the features themselves, which every method
shares; it reads labels only to score. A few minutes on 2 CPU cores; its
numbers go in issue notes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from laic_core.artifacts import atomic_path
from laic_core.config import load_params
from laic_core.data.datasets import load_split
from laic_core.data.images import to_rgb
from laic_core.data.models import load_clip
from laic_core.method.cluster import clip_kmeans
from laic_core.method.neighbors import neighbor_purity_curve
from laic_core.method.relation import normalize_rows
from laic_core.scoring.metrics import clustering_scores

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
MODEL = SHARED / "models" / "MiniVLM-64.json"
WEIGHTS = SHARED / "models" / "MiniVLM-64" / "open_clip_model.safetensors"
SETS = ("cifar10-test", "imagenette-val", "dtd10")
# name -> indices into the 12 views: [full, full mirrored, then (crop, crop mirrored) x 5 positions]
GROUPS = {"centre (embed)": [0], "centre + mirror": [0, 1], "5 crops + mirrors": list(range(2, 12)),
          "all 12": list(range(12))}


def crops(img: Image.Image, frac: float) -> list[Image.Image]:
    """The image itself (the preprocessing centre-crops it, as `embed` does), then the 4 corner squares
    and the centre square of `frac` of its shorter side."""
    w, h = img.size
    c = int(min(w, h) * frac)
    boxes = [(0, 0), (w - c, 0), (0, h - c), (w - c, h - c), ((w - c) // 2, (h - c) // 2)]
    return [img] + [img.crop((x, y, x + c, y + c)) for x, y in boxes]


def encode_views(split, bundle, frac: float, batch: int = 64) -> np.ndarray:
    """(N, 12, d) float32 unit embeddings of every image's views, in GROUPS' order."""
    out = []
    start = time.time()
    with torch.no_grad():
        for lo in range(0, len(split), batch):
            views = []
            for i in range(lo, min(lo + batch, len(split))):
                for crop in crops(to_rgb(split.load_image(i)), frac):
                    x = bundle.preprocess(crop)
                    views += [x, x.flip(-1)]
            emb = bundle.model.encode_image(torch.stack(views).to(bundle.device, bundle.dtype)).float()
            emb = torch.nn.functional.normalize(emb, dim=-1)
            out.append(emb.view(-1, 12, emb.shape[-1]).cpu().numpy())
            done = min(lo + batch, len(split))
            print(f"\r  {done}/{len(split)} images, {done / (time.time() - start):.0f} images/s",
                  end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--crop", type=float, default=0.5, help="side of the five crops, as a share of the image's")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results" / "multicrop_minivlm64.md")
    args = parser.parse_args()
    if not 0 < args.crop <= 1:
        parser.error(f"--crop {args.crop}: give the crops' side as a share of the image's, in (0, 1]")
    if not MODEL.is_file():
        sys.exit(f"{MODEL} is missing: this benchmark needs the shared MiniVLM-64 stand-in")
    bundle = load_clip(str(MODEL), str(WEIGHTS), "cpu")
    n_init = load_params(PROJECT / "params.yaml").relation.kmeans_n_init
    lines = [f"# k-means on averaged views (MiniVLM-64, crops of {args.crop:g} of the side, seeds "
             f"{' '.join(map(str, args.seeds))})", "",
             "| set | views | k-means ACC | k-means NMI | purity@10 |", "|---|---|---|---|---|"]
    for name in args.sets:
        split = load_split("imagefolder", name, SHARED / "datasets" / name, "all")
        print(f"{name}: {len(split)} images", file=sys.stderr)
        E = encode_views(split, bundle, args.crop)
        K = len(np.unique(split.labels))
        for group, idx in GROUPS.items():
            X = normalize_rows(E[:, idx].mean(axis=1))
            scores = [clustering_scores(split.labels, clip_kmeans(X, X[:1], K, seed=seed, n_init=n_init)[0])
                      for seed in args.seeds]
            acc = [100 * s["acc"] for s in scores]
            nmi = [100 * s["nmi"] for s in scores]
            purity = 100 * neighbor_purity_curve(X, split.labels, [10])[10]
            mean, sd = statistics.mean, statistics.pstdev
            lines.append(f"| {name} | {group} | {mean(acc):.1f} ± {sd(acc):.1f} | "
                         f"{mean(nmi):.1f} ± {sd(nmi):.1f} | {purity:.1f} |")
            print(lines[-1], flush=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
