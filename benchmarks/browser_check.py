"""Check a run's cluster browser in headless Chromium, against the run's own files.

    python benchmarks/browser_check.py PROJECT [--method ours] [--screenshots DIR] [--out FILE.md]

PROJECT is a project folder after `dvc repro` (data/browser/ and
data/evaluate/assignments.parquet and data/centers/names.json in it). Opens
data/browser/index.html and every page of every cluster of --method in
headless Chromium (tests/chromium.py) and checks: one card per cluster that
holds images, named as names.json (after clusters.yaml's renames) says; every
cluster's pages list exactly the images the per-image table puts in it, each
once; no console message on any page. Saves screenshots of the overview and
of the largest cluster's first page, and reports the browser's size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from laic_core.scoring.corrections import assignment_column  # noqa: E402
from tests.chromium import dom, screenshot  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--method", default="ours")
    parser.add_argument("--screenshots", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = args.project.resolve()
    browser = root / "data" / "browser"
    table = pd.read_parquet(root / "data" / "evaluate" / "assignments.parquet")
    clusters = table[assignment_column(table.columns, args.method)]
    problems, lines = [], []
    start = time.perf_counter()

    overview, console = dom((browser / "index.html").as_uri() + f"#m={args.method}&sort=id")
    problems += [f"index.html console: {m}" for m in console]
    cards = {c.attrs["data-cluster"]: c.find_all("span", cls="name")[0].text()
             for c in overview.find_all("article", cls="card")}
    expected_ids = sorted({("junk" if k < 0 else str(k)) for k in clusters.tolist()},
                          key=lambda k: (k == "junk", k.zfill(9)))
    if sorted(cards) != sorted(expected_ids):
        problems.append(f"cards {sorted(cards)} but the table's clusters are {expected_ids}")
    if args.method == "ours":
        names = json.loads((root / "data" / "centers" / "names.json").read_text())
        for entry in names:
            k = str(entry["cluster"])
            shown = set(table.loc[clusters == entry["cluster"], "ours_name"]) if "ours_name" in table else set()
            want = shown.pop() if len(shown) == 1 else entry.get("name", "")
            if k in cards and cards[k] != want:
                problems.append(f"card {k} is named {cards[k]!r}, names.json (with clusters.yaml) says {want!r}")
        shown = sorted(cards, key=lambda k: k.zfill(9))
        lines.append("- names of the cards: " + ", ".join(f"{k} {cards[k]}" for k in shown))
    lines.append(f"- {len(cards)} cards for {len(expected_ids)} clusters of {args.method} holding images")

    pages_opened = 0
    for k in expected_ids:
        members = set(table.loc[clusters == (-1 if k == "junk" else int(k)), "row"].tolist())
        seen: list[int] = []
        page = 1
        while True:
            tree, console = dom((browser / "cluster.html").as_uri() + f"#m={args.method}&k={k}&p={page}")
            pages_opened += 1
            problems += [f"cluster {k} page {page} console: {m}" for m in console]
            grid = tree.find_all("div", id="grid")[0]
            seen += [int(f.attrs["data-row"]) for f in grid.find_all("figure", cls="member")]
            nav = tree.find_all("nav", id="pages-top")[0].text()
            if f"page {page} of {page}" in nav or not seen:
                break
            page += 1
        if sorted(seen) != sorted(members):
            problems.append(f"cluster {k}: its pages list {len(seen)} images ({len(set(seen))} distinct), "
                            f"the table puts {len(members)} in it")
        lines.append(f"- cluster {k}: {len(seen)} members over {page} page(s), the table's {len(members)}")
    args.screenshots.mkdir(parents=True, exist_ok=True)
    largest = clusters[clusters >= 0].value_counts().index[0]
    problems += [f"screenshot console: {m}" for m in
                 screenshot((browser / "index.html").as_uri(), args.screenshots / "browser_overview.png", (1400, 1000))]
    problems += [f"screenshot console: {m}" for m in
                 screenshot((browser / "cluster.html").as_uri() + f"#m={args.method}&k={largest}&c=clip_kmeans",
                            args.screenshots / "browser_cluster.png", (1400, 1000))]
    files = [p for p in browser.rglob("*") if p.is_file()]
    thumbs = [p for p in files if p.suffix == ".jpg"]
    size = sum(p.stat().st_size for p in files)
    thumb_bytes = sum(p.stat().st_size for p in thumbs)
    lines.append(f"- size: {size / 2**20:.1f} MiB in {len(files)} files; {len(thumbs)} thumbnails, "
                 f"{thumb_bytes / 2**20:.1f} MiB ({thumb_bytes / max(len(thumbs), 1) / 1024:.2f} KiB each)")
    lines.append(f"- {pages_opened + 1} pages opened in headless Chromium in {time.perf_counter() - start:.0f} s; "
                 f"console messages: {sum('console' in p for p in problems)}")
    verdict = ("all checks hold" if not problems
               else f"{len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    text = f"# Cluster browser check: {root.name}, {args.method}\n\n" + "\n".join(lines) + f"\n\n{verdict}\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
