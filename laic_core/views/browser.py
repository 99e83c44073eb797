"""The cluster browser: a static, self-contained folder of HTML over a run's clusters.

No server, no network, nothing from a CDN: the pages (`browser_assets/`) read
their data from JavaScript files that assign it (`LAIC.put(key, value)`), because a
page opened from `file://` may load scripts but not fetch JSON. The folder
works from disk and from a zip sent to someone else (links to the source
images then point at files they may not have).

What it holds, for each method shown (`MethodView`):

- `data/run.js`: the run's title, the methods (with the fingerprint of each one's partition,
  which the correction lines it suggests carry), the class names, the budget, and the lines of
  clusters.yaml that were written for another run (carried or set aside), for the overview's notice;
- `data/clusters/<method>.js`: per cluster its name, size, runner-up nouns,
  mean score, a strip of its most confident members, its class mix (with
  labels), its overlap with every other method's clusters and what a person's
  corrections did to it;
- `data/members/<method>/<id>.js`: the cluster's members ordered by score,
  most confident first, with their scores in hundredths (a page shows
  `page_size` of them; the file is about 10 bytes a member, so a
  5,000-member cluster opens at once);
- `data/rows/<c>.js`: per image (ROWS_PER_CHUNK rows a file) its source,
  class, whether it has a thumbnail and its cluster in every method; a page
  loads only the chunks of the members it shows;
- `thumbs/<row // 1000>/<row>.jpg`: thumbnails, one per image at most, for
  the images the pages show first (`thumbnail_rows` spends the budget).

`write_browser` writes it all; `thumbnail_rows` and `member_lists` are the
array logic, usable on their own.
"""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

import numpy as np
from PIL import Image

from laic_core.data.images import indexed_source, source_parts
from laic_core.errors import LaicError
from laic_core.progress import progress_bar
from laic_core.scoring.corrections import JUNK, Corrections, describe
from laic_core.views.gallery import gallery_members, load_thumbnails

ASSETS = Path(__file__).with_name("browser_assets")
ASSET_FILES = ("index.html", "cluster.html", "browser.js", "browser.css")
ROWS_PER_CHUNK = 500  # rows per data/rows/*.js: a page of 100 scattered members loads at most 100 small files
THUMBS_PER_FOLDER = 1000
STRIP = 8  # thumbnails on a cluster's card
JPEG_QUALITY = 80
JUNK_KEY = "junk"  # the file and URL key of a method's junk images


@dataclass(frozen=True)
class ThumbnailBudget:
    """How many thumbnails the browser makes: at most `per_cluster` per cluster of each method (its
    most confident members, and its `check` least confident ones, which the pages mark as the ones to
    check), at most `total` in all (one per image, whichever methods show it), each px x px."""

    per_cluster: int = 120
    check: int = 24
    total: int = 40_000
    px: int = 96

    def __post_init__(self):
        if not (isinstance(self.per_cluster, int) and self.per_cluster >= STRIP):
            raise LaicError(f"browser.thumbnails_per_cluster={self.per_cluster!r}: give an integer >= {STRIP} "
                            "(a cluster's card shows its 8 most confident members)")
        if not (isinstance(self.check, int) and 0 <= self.check <= self.per_cluster - STRIP):
            raise LaicError(f"browser.check={self.check!r}: give an integer in 0..{self.per_cluster - STRIP} "
                            "(browser.thumbnails_per_cluster less the 8 of the card)")
        if not (isinstance(self.total, int) and self.total >= 0):
            raise LaicError(f"browser.max_thumbnails={self.total!r}: give an integer >= 0")
        if not (isinstance(self.px, int) and 16 <= self.px <= 512):
            raise LaicError(f"browser.thumbnail_px={self.px!r}: give an integer in 16..512")


@dataclass
class MethodView:
    """One method as the browser shows it.

    labels: (N,) its clusters after the corrections (JUNK = -1 for junk images);
    score: (N,) the score its members are ordered by (its confidence, or another
    per-image score); names: (n_clusters,) the name of the cluster each id ends
    in ("" unnamed); raw_names: the run's names, before renames; runner_ups:
    per cluster the next nouns, when the method names its clusters; glosses:
    {noun: its WordNet gloss} for the names and runner-ups that have one; run: the
    fingerprint of its partition (laic_core.scoring.corrections.fingerprint).
    """

    name: str
    title: str
    labels: np.ndarray
    score: np.ndarray
    score_label: str
    n_clusters: int
    names: Sequence[str]
    raw_names: Sequence[str] | None = None
    runner_ups: Sequence[Sequence[str]] | None = None
    corrections: Corrections | None = None
    glosses: Mapping[str, str] | None = None  # what a shown name or runner-up means (WordNet), by noun
    run: str | None = None  # the fingerprint of its partition: the lines the pages suggest name it

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.score = np.asarray(self.score, dtype=np.float64)
        if self.labels.ndim != 1 or self.score.shape != self.labels.shape:
            raise LaicError(f"{self.name}: labels {self.labels.shape} and score {self.score.shape} must be (N,) "
                            "arrays of the same length")
        if len(self.names) != self.n_clusters:
            raise LaicError(f"{self.name}: {len(self.names)} names for {self.n_clusters} clusters")
        if self.labels.size and (self.labels.max() >= self.n_clusters or self.labels.min() < JUNK):
            raise LaicError(f"{self.name}: cluster ids must lie in 0..{self.n_clusters - 1} (or {JUNK}, junk)")


# ------------------------------------------------------------------ members and thumbnails


def member_lists(labels, score, n_clusters: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(per cluster its rows by score, descending; the JUNK rows by score) for labels (N,) in
    {JUNK} u 0..n_clusters-1 and score (N,) float (NaN counts as lowest; ties by row)."""
    labels = np.asarray(labels, dtype=np.int64)
    lists = gallery_members(labels, score, n_clusters, n_confident=labels.size, n_random=0)
    junk = gallery_members(np.where(labels == JUNK, 0, -1), score, 1, n_confident=labels.size, n_random=0)[0]
    return [np.asarray(rows, dtype=np.int64) for rows in lists], np.asarray(junk, dtype=np.int64)


def n_to_check(size: int, check: int) -> int:
    """How many of a cluster's least confident members its page marks as the ones to check: `check`,
    but never more than a quarter of the cluster (in a cluster of 12 every member is not suspect)."""
    return int(min(check, size // 4, max(size - STRIP, 0)))


def thumbnail_depths(members: np.ndarray, check: int) -> np.ndarray:
    """(len(members),) the order in which one cluster's members (by score, descending) get a thumbnail:
    the card's STRIP most confident first, then the `n_to_check` least confident (least first), then
    the rest by score."""
    n = members.size
    depth = np.empty(n, dtype=np.int64)
    head = min(STRIP, n)
    depth[:head] = np.arange(head)
    tail = n_to_check(n, check)
    middle = n - head - tail
    depth[head:head + middle] = head + tail + np.arange(middle)
    depth[n - tail:] = head + np.arange(tail)[::-1]
    return depth


def thumbnail_rows(lists: Sequence[np.ndarray], n_rows: int, budget: ThumbnailBudget,
                   offsets: Sequence[int] | None = None) -> np.ndarray:
    """Sorted rows that get a thumbnail, given every (method, cluster) member list (rows by score).

    Each list spends up to budget.per_cluster thumbnails in `thumbnail_depths` order; an image shown
    by several lists counts once. When the rows so chosen exceed budget.total, the shallowest win,
    a list's depths counted from offsets[i] (default 0): every card keeps its strip before any
    cluster gets its 9th thumbnail, and an offset of STRIP for the methods the overview does not
    open with serves the opening method's strips first.
    """
    best = np.full(n_rows, np.iinfo(np.int64).max, dtype=np.int64)
    for i, rows in enumerate(lists):
        rows = np.asarray(rows, dtype=np.int64)
        depth = thumbnail_depths(rows, budget.check)
        keep = depth < budget.per_cluster
        np.minimum.at(best, rows[keep], depth[keep] + (offsets[i] if offsets is not None else 0))
    chosen = np.flatnonzero(best < np.iinfo(np.int64).max)
    if chosen.size > budget.total:
        chosen = chosen[np.lexsort((chosen, best[chosen]))[:budget.total]]
    return np.sort(chosen)


def thumbnail_path(row: int) -> str:
    """A thumbnail's path inside the browser folder (folders of THUMBS_PER_FOLDER files)."""
    return f"thumbs/{row // THUMBS_PER_FOLDER}/{row}.jpg"


def write_thumbnails(out: Path, rows: np.ndarray, load_image: Callable[[int], Image.Image], px: int,
                     *, workers: int = 2, progress: bool = True) -> None:
    """JPEG thumbnails of `rows` (loaded by `load_image(row)`, cropped like the gallery's; an image
    that cannot be read becomes the gallery's placeholder) under out/thumbs/."""
    batches = [rows[i:i + 64] for i in range(0, rows.size, 64)]
    for folder in {int(r) // THUMBS_PER_FOLDER for r in rows}:
        (out / "thumbs" / str(folder)).mkdir(parents=True, exist_ok=True)

    def one_batch(batch: np.ndarray) -> int:
        for row, thumb in zip(batch, load_thumbnails(load_image, batch, size=px)):
            thumb.save(out / thumbnail_path(int(row)), "JPEG", quality=JPEG_QUALITY, optimize=True)
        return batch.size

    with progress_bar(rows.size, "browse: thumbnails", unit="img", enabled=progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # decoding releases the GIL
        for done in pool.map(one_batch, batches):
            bar.update(done)


# ------------------------------------------------------------------ per-cluster summaries


def _top_counts(values: np.ndarray, n: int, top: int) -> list[list[int]]:
    counts = np.bincount(values, minlength=n)
    order = np.lexsort((np.arange(counts.size), -counts))[:top]
    return [[int(i), int(counts[i])] for i in order if counts[i] > 0]


def cluster_records(view: MethodView, members: Sequence[np.ndarray], junk: np.ndarray, has_thumb: np.ndarray,
                    classes: np.ndarray | None, n_classes: int, others: Sequence[MethodView],
                    check: int) -> list[dict]:
    """The overview's card of every cluster of `view` that still holds images (then its junk, if any).

    Each: id, name, size, mean score, runner-ups, strip (rows with a thumbnail, best first), class mix
    ([class, count] of the 3 commonest and the labelled count), overlap with each other method's
    clusters ({method: [[its cluster, count] x 3]}), what the corrections did, and how many of its
    least confident members to mark (`n_to_check`).
    """
    corr = view.corrections or Corrections()
    out = []
    for key, rows in [(k, members[k]) for k in range(view.n_clusters)] + [(JUNK_KEY, junk)]:
        if rows.size == 0 and (key == JUNK_KEY or key in corr.merge or key in corr.junk):
            continue  # merged away or junk: its images are in another card
        k = -1 if key == JUNK_KEY else key
        record: dict[str, Any] = {
            "id": key, "name": "junk" if key == JUNK_KEY else str(view.names[k]), "size": int(rows.size),
            "mean_score": (round(float(np.nanmean(view.score[rows])), 4) if np.isfinite(view.score[rows]).any()
                           else None),
            "strip": [int(r) for r in rows[has_thumb[rows]][:STRIP]], "check": n_to_check(rows.size, check),
        }
        if key != JUNK_KEY:
            record["runner_ups"] = list(view.runner_ups[k]) if view.runner_ups else []
            record["change"] = describe(corr, k, view.raw_names)
            if view.glosses:  # what the name and each runner-up mean ("" where WordNet has no gloss)
                record["gloss"] = view.glosses.get(record["name"], "")
                record["runner_up_glosses"] = [view.glosses.get(n, "") for n in record["runner_ups"]]
        if classes is not None:
            known = classes[rows][classes[rows] >= 0]
            record["classes"] = _top_counts(known, n_classes, 3) if known.size else []
            record["labelled"] = int(known.size)
        record["overlap"] = {}
        for other in others:
            theirs = other.labels[rows]
            record["overlap"][other.name] = [[JUNK_KEY if c == other.n_clusters else c, n] for c, n in
                                             _top_counts(np.where(theirs == JUNK, other.n_clusters, theirs),
                                                         other.n_clusters + 1, 3)]
        out.append(record)
    return out


# ------------------------------------------------------------------ writing


def _script(key: str, value: Any) -> str:
    """A JavaScript file that hands `value` to the pages: LAIC.put(key, value)."""
    return f"LAIC.put({json.dumps(key)},{json.dumps(value, separators=(',', ':'), ensure_ascii=False)});\n"


def _write(path: Path, text: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def source_links(sources: Sequence[str]) -> tuple[list[list[Any]], np.ndarray, list[str]]:
    """(folders [[text, href]], (N,) folder index of each source, file names) of `sources`.

    href: where the folder is as seen from the browser folder (data/browser/ of the project: a
    relative source gets "../../<folder>/", an absolute one a file:// URL); None for an image that is
    not a file ("cifar10:test[3]"), whose whole source is its name. Folders are stored once.
    """
    folders: dict[str, int] = {}
    texts: list[list[Any]] = []
    index = np.empty(len(sources), dtype=np.int64)
    names = []
    for i, source in enumerate(map(str, sources)):
        if indexed_source(source) is not None:
            folder, name, href = "", source, None
        else:
            folder, name = source_parts(source)
            path = Path(folder or ".")
            href = (path.as_uri() + "/" if path.is_absolute() else "../../" + quote(folder + "/" if folder else ""))
        key = f"{folder}\0{href}"
        if key not in folders:
            folders[key] = len(texts)
            texts.append([folder, href])
        index[i] = folders[key]
        names.append(name)
    return texts, index, names


def write_browser(out: str | Path, views: Sequence[MethodView], sources: Sequence[str], *,
                  load_image: Callable[[int], Image.Image], classes=None,
                  class_names: Sequence[str] | None = None, budget: ThumbnailBudget = ThumbnailBudget(),
                  page_size: int = 100, title: str = "Clusters", workers: int = 2,
                  progress: bool = True, moved: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Write the browser into `out` (replacing what is there); returns what it holds.

    views: the methods, the first being the one the overview opens with (its cards' strips get their
    thumbnails first when budget.total binds); sources: (N,) the source of
    each row; classes: (N,) int class of each row (-1 unknown) or None; load_image(row): a PIL image;
    moved: the lines of clusters.yaml carried from another run or set aside (records of
    laic_core.scoring.corrections.Outcome), which the overview lists at its top.
    Returns {"images", "thumbnails", "files", "bytes", "thumbnail_bytes"}.
    """
    out = Path(out)
    if not views:
        raise LaicError("the browser needs at least one method's clusters")
    if not (isinstance(page_size, int) and 10 <= page_size <= 2000):
        raise LaicError(f"browser.page_size={page_size!r}: give an integer in 10..2000")
    n = len(sources)
    for view in views:
        if view.labels.shape != (n,):
            raise LaicError(f"{view.name}: {view.labels.size} cluster labels for {n} images")
    names_seen = [v.name for v in views]
    if len(set(names_seen)) != len(names_seen) or any(not re.fullmatch(r"[A-Za-z0-9_]+", v) for v in names_seen):
        raise LaicError(f"method names must be distinct identifiers, got {names_seen}")
    classes = None if classes is None else np.asarray(classes, dtype=np.int64)
    n_classes = max(len(class_names or []), int(classes.max()) + 1 if classes is not None and n else 0)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, out / name)

    lists = {v.name: member_lists(v.labels, v.score, v.n_clusters) for v in views}
    every = [(i, rows) for i, (members, junk) in enumerate(lists.values()) for rows in [*members, junk]]
    thumbs = thumbnail_rows([rows for _, rows in every], n, budget, [0 if i == 0 else STRIP for i, _ in every])
    has_thumb = np.zeros(n, dtype=bool)
    has_thumb[thumbs] = True
    write_thumbnails(out, thumbs, load_image, budget.px, workers=workers, progress=progress)

    size = 0
    for view in views:
        members, junk = lists[view.name]
        others = [v for v in views if v is not view]
        records = cluster_records(view, members, junk, has_thumb, classes, n_classes, others, budget.check)
        size += _write(out / "data" / "clusters" / f"{view.name}.js", _script(f"clusters/{view.name}", records))
        for record in records:
            rows = junk if record["id"] == JUNK_KEY else members[record["id"]]
            # scores in hundredths (null: none): 3 bytes a member instead of 5, at 1.28M images x 8 methods
            score = [None if np.isnan(x) else int(x) for x in np.round(view.score[rows] * 100)]
            size += _write(out / "data" / "members" / view.name / f"{record['id']}.js", _script(
                f"members/{view.name}/{record['id']}", {"rows": rows.tolist(), "score": score}))
    folders, folder_of, file_names = source_links(sources)
    for c in range(-(-n // ROWS_PER_CHUNK)):
        at = slice(c * ROWS_PER_CHUNK, min(n, (c + 1) * ROWS_PER_CHUNK))
        used = sorted(set(folder_of[at].tolist()))
        local = {f: i for i, f in enumerate(used)}
        chunk = {"folders": [folders[f] for f in used], "folder": [local[f] for f in folder_of[at].tolist()],
                 "file": file_names[at], "thumb": "".join("1" if t else "0" for t in has_thumb[at]),
                 "cluster": {v.name: v.labels[at].tolist() for v in views}}
        if classes is not None:
            chunk["class"] = classes[at].tolist()
        size += _write(out / "data" / "rows" / f"{c}.js", _script(f"rows/{c}", chunk))
    run = {
        "title": title, "images": n, "rows_per_chunk": ROWS_PER_CHUNK, "page_size": page_size,
        "thumbs_per_folder": THUMBS_PER_FOLDER, "thumbnail_px": budget.px,
        "strip": STRIP, "class_names": list(class_names) if class_names is not None else None,
        "methods": [{"name": v.name, "title": v.title, "score": v.score_label, "clusters": v.n_clusters,
                     "named": bool(v.runner_ups) or any(v.names), "run": v.run} for v in views],
        "thumbnails": int(thumbs.size),
        "moved": [{k: o.get(k) for k in ("where", "method", "line", "status", "ids", "detail", "rewrite")}
                  for o in moved],
    }
    size += _write(out / "data" / "run.js", _script("run", run))
    thumb_bytes = sum(p.stat().st_size for p in (out / "thumbs").rglob("*.jpg")) if thumbs.size else 0
    assets = sum((out / name).stat().st_size for name in ASSET_FILES)
    files = sum(1 for p in out.rglob("*") if p.is_file())
    return {"images": n, "thumbnails": int(thumbs.size), "files": files, "bytes": size + thumb_bytes + assets,
            "thumbnail_bytes": thumb_bytes}
