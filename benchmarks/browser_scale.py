"""How big the cluster browser gets at ImageNet scale, under the default thumbnail budget.

    python benchmarks/browser_scale.py [--n 1281167] [--clusters 1000] [--methods 8]
        [--thumb-kib 3.0] [--out benchmarks/results/browser_scale.md]

Writes the browser's data (laic_core.views.browser.write_browser: cards, member
lists, per-image chunks) for N synthetic images in ImageNet's layout
(/data/imagenet/train/<wnid>/<wnid>_<i>.JPEG, 1000 classes), K clusters per
method and `--methods` methods (each agreeing with the classes on ~60% of the
images, as real methods roughly do, so they overlap without coinciding), with
no thumbnails; counts the thumbnails the budget of params.yaml would make
(thumbnail_rows: per cluster, one per image, the total cap) and prices them
at --thumb-kib each (the mean measured on a real run; 96 px JPEG). Prints and
writes the figures. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from laic_core.config import load_params  # noqa: E402
from laic_core.views.browser import (  # noqa: E402
    STRIP, MethodView, ThumbnailBudget, member_lists, thumbnail_rows, write_browser,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_281_167)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--methods", type=int, default=8)
    parser.add_argument("--thumb-kib", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks/results/browser_scale.md")
    args = parser.parse_args()
    b = load_params(PROJECT / "params.yaml").browser
    budget = ThumbnailBudget(b.thumbnails_per_cluster, b.check, b.max_thumbnails, b.thumbnail_px)
    rng = np.random.default_rng(0)
    n, K = args.n, args.clusters
    classes = np.sort(rng.integers(0, 1000, n))
    wnids = [f"n{1440764 + 7919 * c:08d}" for c in range(1000)]
    sources = [f"/data/imagenet/train/{wnids[c]}/{wnids[c]}_{i}.JPEG" for i, c in enumerate(classes.tolist())]
    views = []
    for m in range(args.methods):
        labels = np.where(rng.random(n) < 0.6, classes % K, rng.integers(0, K, n))
        views.append(MethodView(f"method{m}", f"method {m}", labels, rng.random(n), "confidence", K,
                                [f"name {k}" for k in range(K)], runner_ups=[["a", "b", "c"]] * K))
    start = time.perf_counter()
    lists, offsets = [], []
    for i, v in enumerate(views):
        members, junk = member_lists(v.labels, v.score, K)
        lists += [*members, junk]
        offsets += [0 if i == 0 else STRIP] * (K + 1)
    wanted = thumbnail_rows(lists, n, ThumbnailBudget(budget.per_cluster, budget.check, n, budget.px), offsets).size
    chosen = np.zeros(n, bool)
    chosen[thumbnail_rows(lists, n, budget, offsets)] = True
    capped = int(chosen.sum())
    # thumbnails on a card (its strip) and on a cluster page (members with one), opening method vs the others
    strips = [min(STRIP, int(chosen[rows].sum())) for rows in lists if rows.size]
    per_page = [int(chosen[rows].sum()) for rows in lists if rows.size]
    first = sum(1 for rows in lists[:K] if rows.size)
    with tempfile.TemporaryDirectory(prefix="laic-browser-scale-") as tmp:
        stats = write_browser(Path(tmp) / "browser", views, sources, load_image=lambda row: None, classes=classes,
                              class_names=wnids, budget=ThumbnailBudget(budget.per_cluster, budget.check, 0, budget.px),
                              page_size=b.page_size, progress=False)
        per_method = {}
        for folder in ("clusters", "members", "rows"):
            per_method[folder] = sum(p.stat().st_size for p in (Path(tmp) / "browser" / "data" / folder).rglob("*.js"))
        shutil.rmtree(Path(tmp) / "browser")
    seconds = time.perf_counter() - start
    thumbs = capped * args.thumb_kib * 1024
    total = stats["bytes"] + thumbs
    mib = 2 ** 20
    lines = [
        "# The cluster browser at ImageNet scale",
        "",
        f"`python benchmarks/browser_scale.py --n {n} --clusters {K} --methods {args.methods}` "
        f"(synthetic labels, the budget of params.yaml: {budget.per_cluster} thumbnails per cluster, "
        f"{budget.check} to check, at most {budget.total} in all, {budget.px} px, ~{args.thumb_kib} KiB each).",
        "",
        "| part | size |",
        "|---|---:|",
        f"| member lists (`data/members/`, {args.methods} methods) | {per_method['members'] / mib:.0f} MiB |",
        f"| per-image chunks (`data/rows/`: sources, classes, every method's cluster) "
        f"| {per_method['rows'] / mib:.0f} MiB |",
        f"| cards (`data/clusters/`) | {per_method['clusters'] / mib:.1f} MiB |",
        f"| thumbnails: {capped:,} of the {wanted:,} the per-cluster budget asks for | {thumbs / mib:.0f} MiB |",
        f"| **total** | **{total / mib:.0f} MiB** |",
        "",
        f"Thumbnails a cluster gets, the opening method's (`{views[0].name}`) / each other method's: "
        f"{np.mean(strips[:first]):.1f} / {np.mean(strips[first:]):.1f} of its card's {STRIP}, "
        f"{np.mean(per_page[:first]):.0f} / {np.mean(per_page[first:]):.0f} on its pages in all "
        + ("(the total cap binds: the opening method's cards are served first)." if wanted > budget.total
           else "(the cap does not bind)."),
        "",
        f"Written in {seconds:.0f} s (without decoding any image); {stats['files']:,} data files.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
