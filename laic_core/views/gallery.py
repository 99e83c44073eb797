"""Cluster gallery: one row per cluster with its name, size and a few of its images.

Three steps, each usable on its own:

- `gallery_members` picks, per cluster, the rows to show: the most confident
  members first, then a few random others (so a user also sees what a typical
  member looks like, not only the easy ones);
- `load_thumbnails` turns rows into small square RGB images through any
  `load_image(row)` callable (e.g. `ImageSplit.load_image`); an image that
  cannot be read becomes a grey placeholder, so one bad file never costs the
  whole figure;
- `gallery_figures` draws the rows, `per_page` clusters per figure.

`source_loader` loads feature rows from the `source` column of the features
metadata (rows are not split indices once embed skipped an image);
`cluster_entries` and `majority_lines` turn `names.json` entries and labels
into the dicts `gallery_figures` takes. Figures are built without pyplot, like
those of `laic_core.views.figures`; save them with `laic_core.views.figures.save_figure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw

from laic_core.data.images import INDEXED_SOURCE, ImageSplit, indexed_source, open_image, to_rgb
from laic_core.errors import LaicError
from laic_core.views.figures import DPI, cjk_text  # DPI: all PNGs of a run read at the same scale


# ------------------------------------------------------------------ members


def gallery_members(labels, confidence, n_clusters: int, *, n_confident: int = 6,
                    n_random: int = 2, seed: int = 0) -> list[list[int]]:
    """Rows to show for each cluster.

    labels: (N,) int cluster of each row, in [0, n_clusters) (a negative label,
    an image that was not assigned, is left out); confidence: (N,) float, e.g.
    max_k p(k | i). Returns n_clusters lists of row indices: the cluster's
    `n_confident` most confident members (descending confidence, ties by row;
    NaN counts as least confident), then up to `n_random` other members drawn
    at random without repetition. A cluster with fewer members shows all of
    them; an empty cluster gives []. The random draw of cluster k depends only
    on (seed, k) and its members, so one cluster's picks do not change when
    another cluster changes.
    """
    labels = np.asarray(labels)
    confidence = np.asarray(confidence, dtype=np.float64)
    if labels.ndim != 1 or confidence.shape != labels.shape:
        raise LaicError(f"labels {labels.shape} and confidence {confidence.shape} must be (N,) arrays "
                        "of the same length")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise LaicError(f"labels must be integers, got {labels.dtype}")
    if n_clusters < 0 or n_confident < 0 or n_random < 0:
        raise LaicError("n_clusters, n_confident and n_random must not be negative")
    if labels.size and labels.max() >= n_clusters:
        raise LaicError(f"label {int(labels.max())} is out of range for {n_clusters} clusters")
    # One stable sort for all clusters: by cluster, then confidence descending,
    # then row (NaN -> -inf so a missing confidence never ranks first).
    score = np.where(np.isnan(confidence), -np.inf, confidence)
    rows = np.arange(labels.size)
    order = np.lexsort((rows, -score, labels))
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, np.arange(n_clusters), side="left")
    ends = np.searchsorted(sorted_labels, np.arange(n_clusters), side="right")
    out: list[list[int]] = []
    for k in range(n_clusters):
        members = order[starts[k]:ends[k]]
        chosen = [int(r) for r in members[:n_confident]]
        rest = members[n_confident:]
        if n_random and rest.size:
            rng = np.random.default_rng([seed, k])
            # Sorted before drawing so the picks depend on the member set, not on ties' order.
            picks = rng.choice(np.sort(rest), size=min(n_random, rest.size), replace=False)
            chosen += [int(r) for r in picks]
        out.append(chosen)
    return out


# ------------------------------------------------------------------ thumbnails

THUMB_PX = 64  # a thumbnail's side in pixels
_PLACEHOLDER_GREY = (200, 200, 200)
_LETTERBOX_GREY = (235, 235, 235)
_MAX_CROP_ASPECT = 2.0  # beyond 2:1 a square crop would hide over half the image: letterbox instead


def placeholder(size: int = THUMB_PX) -> Image.Image:
    """A grey square with a dark "x": an image that could not be loaded."""
    img = Image.new("RGB", (size, size), _PLACEHOLDER_GREY)
    draw = ImageDraw.Draw(img)
    inset, width = max(1, size // 5), max(1, size // 20)
    draw.line([(inset, inset), (size - 1 - inset, size - 1 - inset)], fill=(90, 90, 90), width=width)
    draw.line([(inset, size - 1 - inset), (size - 1 - inset, inset)], fill=(90, 90, 90), width=width)
    return img


def square_thumbnail(img: Image.Image, size: int = THUMB_PX) -> Image.Image:
    """Any PIL image -> (size x size) RGB: centre-cropped to a square, or
    letterboxed on light grey when its aspect ratio exceeds 2:1."""
    rgb = to_rgb(img)
    w, h = rgb.size
    if w < 1 or h < 1:
        raise LaicError(f"image of size {w}x{h}")
    if max(w, h) / min(w, h) <= _MAX_CROP_ASPECT:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return rgb.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    scale = size / max(w, h)
    inner = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), _LETTERBOX_GREY)
    canvas.paste(inner, ((size - inner.width) // 2, (size - inner.height) // 2))
    return canvas


def load_thumbnails(load_image: Callable[[int], Image.Image], rows: Sequence[int],
                    size: int = THUMB_PX) -> list[Image.Image]:
    """(size x size) RGB thumbnails of `rows`, in order, loaded with `load_image(row)`.

    A row whose image cannot be loaded or decoded (missing file, truncated
    JPEG, index out of range, ...) gives `placeholder(size)`: the gallery is
    a look at the clusters, and one unreadable file must not prevent it.
    """
    if size < 1:
        raise LaicError(f"thumbnail size must be positive, got {size}")
    out = []
    for row in rows:
        try:
            img = load_image(int(row))
            try:
                thumb = square_thumbnail(img, size)
            finally:
                close = getattr(img, "close", None)
                if close is not None:  # FileSplit opens a file per image; do not leak them
                    close()
        except Exception:  # any failure of a user's file or loader: show it, do not raise
            thumb = placeholder(size)
        out.append(thumb)
    return out


def source_loader(sources: Sequence[str], split: ImageSplit | None = None,
                  thumb_px: int = THUMB_PX) -> Callable[[int], Image.Image]:
    """`load_image(row)` over the `source` column of the features metadata.

    Feature rows are not split indices once embed has skipped an unreadable
    image (the rows after it shift), so the gallery loads by source: a file
    path is read by `open_image` (upright, as embed saw it; a JPEG decoded at
    the smallest scale that covers `thumb_px`); "<dataset>:<split>[i]" (a
    torchvision image) is image i of `split` when `split.name` is
    "<dataset>:<split>". Anything else fails to load, which `load_thumbnails`
    shows as a placeholder.
    """
    sources = list(sources)

    def load(row: int) -> Image.Image:
        source = str(sources[row])
        match = INDEXED_SOURCE.match(source)
        if match and split is not None and match["name"] == split.name:
            return split.load_image(int(match["index"]))
        return open_image(source, draft_size=(thumb_px, thumb_px))

    return load


def dataset_loader(sources: Sequence[str], kind: str, name: str, root: str,
                   split_name: str) -> tuple[Callable[[int], Image.Image], str | None]:
    """(`source_loader` over `sources`, None) or, when they name a benchmark's images (not files) and
    its split cannot be opened from `root` (it is never downloaded here), (a loader whose images all
    fail, why): the gallery and the browser then show placeholders rather than fail the run."""
    split = None
    if sources and indexed_source(sources[0]) is not None and not Path(str(sources[0])).exists():
        from laic_core.data.datasets import load_split

        try:
            split = load_split(kind, name, root, split_name, download=False)
        except LaicError as error:
            return source_loader(sources, None), str(error)
    return source_loader(sources, split), None


# ------------------------------------------------------------------ entries


def majority_lines(cluster_labels, true_labels, class_names: Sequence[str] | None,
                   n_clusters: int) -> list[str]:
    """Per cluster, a line naming its most common true class, e.g. "mostly: tench (87%)".

    cluster_labels, true_labels: (N,) int; a true label < 0 (unknown) is not
    counted. class_names: name of each class id (None: the ids are shown).
    An empty cluster, or one with no labelled member, gives "".
    """
    clusters = np.asarray(cluster_labels, dtype=np.int64)
    truth = np.asarray(true_labels, dtype=np.int64)
    if clusters.shape != truth.shape or clusters.ndim != 1:
        raise LaicError(f"cluster labels {clusters.shape} and true labels {truth.shape} must be (N,) "
                        "arrays of the same length")
    known = (truth >= 0) & (clusters >= 0) & (clusters < n_clusters)
    lines = []
    for k in range(n_clusters):
        members = truth[known & (clusters == k)]
        if members.size == 0:
            lines.append("")
            continue
        counts = np.bincount(members)
        top = int(counts.argmax())
        name = class_names[top] if class_names is not None and top < len(class_names) else f"class {top}"
        lines.append(f"mostly: {name} ({100 * counts[top] / members.size:.0f}%)")
    return lines


def cluster_entries(names: Sequence[Mapping[str, Any]], thumbnails: Sequence[Sequence[Image.Image]],
                    *, label_lines: Sequence[str] | None = None, n_runner_ups: int = 3,
                    n_confident: int | None = None) -> list[dict]:
    """`names.json` entries (from `naming.name_clusters`) + thumbnails -> `gallery_figures` input.

    Runner-ups are the next nearest vocabulary nouns after the name, then the
    nouns with the largest weight among the members, without repeats.
    thumbnails[k] belongs to names[k]; label_lines[k] (optional) is shown as a
    third line; n_confident: the `gallery_members` setting the thumbnails were
    picked with, so the figure can set the random members apart.
    """
    if len(thumbnails) != len(names) or (label_lines is not None and len(label_lines) != len(names)):
        raise LaicError(f"{len(names)} clusters but {len(thumbnails)} thumbnail lists"
                        + ("" if label_lines is None else f" and {len(label_lines)} label lines"))
    out = []
    for k, entry in enumerate(names):
        name = str(entry.get("name", ""))
        seen = {name}
        runner_ups = []
        for noun in [n["noun"] for n in entry.get("nearest_nouns", [])] + \
                    [n["noun"] for n in entry.get("member_nouns", [])]:
            if noun not in seen and len(runner_ups) < n_runner_ups:
                runner_ups.append(str(noun))
                seen.add(noun)
        item = {
            "id": entry.get("cluster", k),
            "name": name,
            "runner_ups": runner_ups,
            "size": int(entry.get("size", 0)),
            "empty": bool(entry.get("empty", int(entry.get("size", 0)) == 0)),
            "thumbnails": list(thumbnails[k]),
        }
        if label_lines is not None and label_lines[k]:
            item["label"] = str(label_lines[k])
        if n_confident is not None:
            item["n_confident"] = min(int(n_confident), item["size"])
        out.append(item)
    return out


def name_glosses(names: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """{noun: its gloss} of every name, nearest noun and member noun of `names.json` that has one
    (the centers stage writes them: `laic_core.method.naming.with_glosses`)."""
    out: dict[str, str] = {}
    for entry in names:
        if entry.get("name") and entry.get("gloss"):
            out.setdefault(str(entry["name"]), str(entry["gloss"]))
        for item in list(entry.get("nearest_nouns", [])) + list(entry.get("member_nouns", [])):
            if isinstance(item, Mapping) and item.get("gloss"):
                out.setdefault(str(item["noun"]), str(item["gloss"]))
    return out


# ------------------------------------------------------------------ figures

# Layout in pixels at DPI (converted to figure fractions once), so text and
# thumbnails line up exactly and nothing depends on a layout engine's guesses.
_MARGIN = 12
_GAP = 4            # between thumbnails
_GROUP_GAP = 14     # before the random members: the eye sees where the confident ones end
_ROW_GAP = 6
_TEXT_W = 330       # widest text column; narrower when every line is shorter
_MIN_TEXT_W = 190
_TITLE_H = 46
_HEAD_PT, _LINE_PT = 10.0, 8.5
_LINE_SPACING = 1.35


def _text_width(renderer, text: str, prop: FontProperties) -> float:
    return renderer.get_text_width_height_descent(text, prop, ismath=False)[0]


def _fit_text(renderer, text: str, prop: FontProperties, max_px: float) -> str:
    """`text`, cut with an ellipsis so that it is at most `max_px` wide."""
    if _text_width(renderer, text, prop) <= max_px:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if _text_width(renderer, text[:mid].rstrip() + "\u2026", prop) <= max_px:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "\u2026"


def _fit_list(renderer, prefix: str, items: Sequence[str], prop: FontProperties, max_px: float) -> str:
    """'prefix a, b, c' with as many whole items as fit (then ', …')."""
    for n in range(len(items), 0, -1):
        text = prefix + ", ".join(items[:n]) + (", \u2026" if n < len(items) else "")
        if _text_width(renderer, text, prop) <= max_px:
            return text
    return _fit_text(renderer, prefix + ", ".join(items), prop, max_px)


def _count_text(size: int) -> str:
    return f"  ({size} image{'s' if size != 1 else ''})"


def _text_column(clusters, head_prop, count_prop, line_prop) -> int:
    """Pixel width of the text column: the widest untruncated row text, within [_MIN_TEXT_W, _TEXT_W]."""
    renderer = FigureCanvasAgg(Figure(dpi=DPI)).get_renderer()
    widest = 0.0
    for c in clusters:
        if c["empty"]:
            widest = max(widest, _text_width(renderer, f"{c['id']}  empty", head_prop))
            continue
        widest = max(widest,
                     _text_width(renderer, f"{c['id']}  {c['name'] or '(unnamed)'}", head_prop)
                     + _text_width(renderer, _count_text(int(c["size"])), count_prop),
                     _text_width(renderer, "also: " + ", ".join(map(str, c["runner_ups"])), line_prop),
                     _text_width(renderer, str(c.get("label", "")), line_prop))
    return int(np.clip(np.ceil(widest) + 16, _MIN_TEXT_W, _TEXT_W))


def _check_cluster(c: Mapping[str, Any], i: int) -> None:
    missing = [key for key in ("id", "name", "runner_ups", "size", "empty", "thumbnails") if key not in c]
    if missing:
        raise LaicError(f"gallery cluster {i} lacks {', '.join(missing)}")


@cjk_text
def gallery_figures(clusters: Sequence[Mapping[str, Any]], *, per_page: int = 25, thumb_px: int = THUMB_PX,
                    title: str = "") -> list[Figure]:
    """Figures of the gallery, `per_page` clusters each, in the order given.

    clusters: dicts with id, name, runner_ups (list[str]), size (int), empty
    (bool), thumbnails (list of PIL images, resized to thumb_px when they are
    not that size) and optionally "label" (a third line, e.g. the majority
    true class) and "n_confident" (how many leading thumbnails are the most
    confident members; a gap separates them from the rest). Each row: the
    cluster id, name and size, a line "also: <runner-ups>", the label line,
    then its thumbnails. Empty clusters are shown as "empty". Width follows
    the longest thumbnail list (8 at thumb_px 64: about 7.5 to 8.5 in at 110 dpi).
    Returns ceil(K / per_page) figures of equal length (per_page is the most
    per figure), or one saying so when K is 0.
    """
    if per_page < 1 or thumb_px < 8:
        raise LaicError(f"per_page must be >= 1 and thumb_px >= 8 (got {per_page}, {thumb_px})")
    for i, c in enumerate(clusters):
        _check_cluster(c, i)
    clusters = list(clusters)
    n_pages = max(1, -(-len(clusters) // per_page))
    # Pages of equal length (40 clusters: 20 + 20, not 25 + 15): no half-empty last page.
    page_len = max(1, -(-len(clusters) // n_pages))
    max_thumbs = max([len(c["thumbnails"]) for c in clusters] + [1])
    group_gaps = 1 if any(0 < int(c.get("n_confident", len(c["thumbnails"]))) < len(c["thumbnails"])
                          for c in clusters) else 0
    strip_w = max_thumbs * thumb_px + (max_thumbs - 1) * _GAP + group_gaps * (_GROUP_GAP - _GAP)
    line_px = _LINE_PT * _LINE_SPACING * DPI / 72
    head_px = _HEAD_PT * _LINE_SPACING * DPI / 72
    row_h = int(max(thumb_px, np.ceil(head_px + 2 * line_px))) + _ROW_GAP
    empty_h = int(np.ceil(head_px)) + _ROW_GAP  # an empty cluster has one line and no images
    head_prop = FontProperties(size=_HEAD_PT, weight="bold")
    count_prop = FontProperties(size=_HEAD_PT)
    line_prop = FontProperties(size=_LINE_PT)
    # Text column as wide as its longest line needs (short names left a wide
    # blank between the names and their images), the same on every page.
    text_w = _text_column(clusters, head_prop, count_prop, line_prop)
    width = _MARGIN + text_w + strip_w + _MARGIN
    # ... but never narrower than the title and the note under it (a gallery of one thumbnail cut them off).
    note = ("each row: cluster id, name, size; thumbnails: most confident members first"
            + (", then random members after the gap" if group_gaps else ""))
    measure = FigureCanvasAgg(Figure(dpi=DPI)).get_renderer()
    widest_heading = (title or "Cluster gallery") + (
        f"  (clusters {clusters[-1]['id']}\u2013{clusters[-1]['id']}, page {n_pages} of {n_pages})"
        if n_pages > 1 else "")
    width = int(max(width, 2 * _MARGIN + np.ceil(max(
        _text_width(measure, widest_heading, FontProperties(size=11, weight="bold")),
        _text_width(measure, note, FontProperties(size=8))))))
    figs = []
    for page in range(n_pages):
        chunk = clusters[page * page_len:(page + 1) * page_len]
        heights = [empty_h if c["empty"] else row_h for c in chunk] or [row_h]
        tops = np.concatenate([[0], np.cumsum(heights)]).astype(int)
        body_h = int(tops[-1])
        top_h = _TITLE_H  # always: the note under the heading says what the gap between thumbnails means
        height = top_h + body_h + _MARGIN
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        renderer = FigureCanvasAgg(fig).get_renderer()

        def fy(y_px):  # pixels from the top -> figure fraction from the bottom
            return 1 - y_px / height

        heading = title or "Cluster gallery"
        if n_pages > 1 and chunk:
            heading += f"  (clusters {chunk[0]['id']}\u2013{chunk[-1]['id']}, page {page + 1} of {n_pages})"
        fig.text(_MARGIN / width, fy(8), heading, ha="left", va="top", fontsize=11, weight="bold")
        fig.text(_MARGIN / width, fy(28), note if chunk else "no clusters to show",
                 ha="left", va="top", fontsize=8, color="#555555")
        strip = np.zeros((body_h, strip_w, 4), dtype=np.uint8)  # transparent between thumbnails
        x = _MARGIN / width
        for r, c in enumerate(chunk):
            y = top_h + tops[r]
            h = heights[r]
            if r % 2 == 1:  # light bands tie each text column to its own thumbnails across the width
                fig.patches.append(Rectangle((0, fy(y + h - _ROW_GAP / 2)), 1, h / height,
                                             transform=fig.transFigure, color="#f2f2f2", zorder=-1))
            if c["empty"]:
                fig.text(x, fy(y), f"{c['id']}  empty", ha="left", va="top", fontproperties=head_prop,
                         color="#999999")
                continue
            text_y = y + max(0.0, (thumb_px - (head_px + 2 * line_px)) / 2)
            size = int(c["size"])
            # The count in regular weight, placed after the bold "id  name": the name is what the eye looks for.
            count = _count_text(size)
            count_w = _text_width(renderer, count, count_prop)
            lead = f"{c['id']}  "
            room = text_w - 8 - count_w - _text_width(renderer, lead, head_prop)
            head = lead + _fit_text(renderer, str(c["name"]) or "(unnamed)", head_prop, max(room, 20))
            fig.text(x, fy(text_y), head, ha="left", va="top", fontproperties=head_prop)
            head_w = _text_width(renderer, head, head_prop)
            fig.text((_MARGIN + head_w) / width, fy(text_y), count, ha="left", va="top",
                     fontproperties=count_prop, color="#444444")
            lines = []
            if c["runner_ups"]:
                lines.append(_fit_list(renderer, "also: ", [str(s) for s in c["runner_ups"]], line_prop,
                                       text_w - 8))
            if c.get("label"):
                lines.append(_fit_text(renderer, str(c["label"]), line_prop, text_w - 8))
            for j, line in enumerate(lines):
                fig.text(x, fy(text_y + head_px + j * line_px), line, ha="left", va="top",
                         fontproperties=line_prop, color="#444444")
            thumbs = list(c["thumbnails"])
            n_conf = int(c.get("n_confident", len(thumbs)))
            tx, ry = 0, int(tops[r])
            for j, thumb in enumerate(thumbs):
                if j and j == n_conf:
                    tx += _GROUP_GAP - _GAP
                img = to_rgb(thumb)
                if img.size != (thumb_px, thumb_px):
                    img = square_thumbnail(img, thumb_px)
                strip[ry:ry + thumb_px, tx:tx + thumb_px, :3] = np.asarray(img)
                strip[ry:ry + thumb_px, tx:tx + thumb_px, 3] = 255
                tx += thumb_px + _GAP
        ax = fig.add_axes([(_MARGIN + text_w) / width, fy(top_h + body_h), strip_w / width, body_h / height])
        ax.set_axis_off()
        # One image per page, drawn 1:1 (the axes is exactly strip-sized): crisp and fast.
        ax.imshow(strip, interpolation="nearest", aspect="auto")
        figs.append(fig)
    return figs
