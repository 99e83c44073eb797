"""Figures of a run: confusion matrix, neighbour purity, pseudo-label accuracy, training curves.

Every function takes arrays and returns a `matplotlib.figure.Figure` built
without pyplot (no global figure registry, no GUI backend), so figures can be
drawn in tests, in worker processes and on headless machines. `save_figure`
writes a PNG atomically.
"""

from __future__ import annotations

import contextlib
import functools
import re
import textwrap
import warnings
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from laic_core.artifacts import atomic_path
from laic_core.errors import LaicError
from laic_core.scoring.choose_k import KCurves, Suggestion, combined_score

MAX_TICK_LABELS = 40  # beyond this many classes the tick labels overlap; show none
DPI = 110  # every figure of a run, the gallery included, so all PNGs read at the same scale


# Class folders, noun files and so cluster names may be Chinese, Japanese or Korean; DejaVu
# Sans, matplotlib's font, has none of their glyphs. Fonts that have them, by family name and
# (for fonts installed after matplotlib built its font cache) by file name:
_CJK_FAMILY = re.compile(r"CJK|Source Han Sans|WenQuanYi|Droid Sans Fallback|AR PL|Hiragino|PingFang|"
                         r"Microsoft YaHei|Malgun Gothic|Yu Gothic|MS Gothic", re.IGNORECASE)
_CJK_FILE = re.compile(r"NotoSansCJK|NotoSerifCJK|SourceHanSans|wqy|DroidSansFallback|uming|ukai", re.IGNORECASE)
_MISSING_GLYPH = r"Glyph \d+ .*missing from font"


@functools.cache
def cjk_fonts() -> tuple[str, ...]:
    """The installed fonts with CJK glyphs (sans-serif first), registered with matplotlib if need be."""
    def known() -> list[str]:
        names = {f.name for f in font_manager.fontManager.ttflist if _CJK_FAMILY.search(f.name)}
        return sorted(names, key=lambda n: ("Serif" in n, "Mono" in n, n))

    if not known():
        for path in font_manager.findSystemFonts():
            if _CJK_FILE.search(Path(path).name):
                font_manager.fontManager.addfont(path)
    return tuple(known())


# Every text of a figure is drawn as it is written: cluster names, class folders and nouns are a
# person's or the data's words, and matplotlib would read "$5 and $10 bills" as math (in italics,
# the dollars gone) and stop the run at "price $\\frac$ tag" (a mathtext syntax error), or hand
# it to LaTeX where a matplotlibrc asks for usetex. No figure here uses math.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def use_fallback_fonts() -> None:
    """Text falls back glyph by glyph to a CJK font where one is installed (matplotlib only falls
    back along an explicit list of families), and is plain text (PLAIN_TEXT); figures made after
    this call use both."""
    family = ["sans-serif", *cjk_fonts()]
    if matplotlib.rcParams["font.family"] != family:
        matplotlib.rcParams["font.family"] = family
    matplotlib.rcParams.update(PLAIN_TEXT)


@contextlib.contextmanager
def quiet_missing_glyphs() -> Iterator[None]:
    """Without a CJK font such glyphs are drawn as boxes; matplotlib's warning for every one of
    them, on every figure, said nothing more (docs/troubleshooting.md says which font to install)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_MISSING_GLYPH, category=UserWarning)
        yield


def cjk_text(build: Callable) -> Callable:
    """Decorator for a function that builds figures by hand (the gallery measures its text):
    the fallback fonts in use, the missing-glyph warnings quiet."""
    @functools.wraps(build)
    def with_cjk_text(*args, **kwargs):
        use_fallback_fonts()
        with quiet_missing_glyphs():
            return build(*args, **kwargs)

    return with_cjk_text


def _new_figure(width: float, height: float) -> Figure:
    use_fallback_fonts()
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attach a canvas so savefig/draw work without pyplot
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (atomically) and return the path."""
    with atomic_path(path) as tmp, quiet_missing_glyphs():
        fig.savefig(tmp, format="png")
    return Path(path)


def message_figure(text: str, title: str | None = None) -> Figure:
    """A placeholder figure that says `text` (e.g. why a plot could not be drawn)."""
    fig = _new_figure(5, 2.2)
    ax = fig.add_subplot()
    ax.set_axis_off()
    # wrapped here: matplotlib's own wrapping measures any text with two "$" as math, whatever parse_math says
    lines = [textwrap.fill(line, 60) if line else "" for line in str(text).split("\n")]
    ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=11)
    if title:
        ax.set_title(title)
    return fig


# ------------------------------------------------------------------ confusion


def confusion_figure(table, row_labels: Sequence[str] | None = None,
                     col_labels: Sequence[str] | None = None, *, title: str = "") -> Figure:
    """Heat map of a contingency table, each row normalised to fractions.

    table: (R, C) counts (classes x clusters, columns already in display order).
    row_labels / col_labels: tick labels (omitted when there are more than
    MAX_TICK_LABELS of them). Each cell shows the fraction of its class.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.size == 0:
        raise LaicError(f"table must be a non-empty 2-D array, got shape {table.shape}")
    n_rows, n_cols = table.shape
    totals = table.sum(axis=1, keepdims=True)
    fractions = np.divide(table, totals, out=np.zeros_like(table), where=totals > 0)
    side = float(np.clip(0.35 * max(n_rows, n_cols) + 2.5, 4.0, 14.0))
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the class")
    for axis, labels, count, setter in (("x", col_labels, n_cols, ax.set_xticks),
                                        ("y", row_labels, n_rows, ax.set_yticks)):
        if labels is not None and count <= MAX_TICK_LABELS:
            if len(labels) != count:
                raise LaicError(f"{len(labels)} {axis} tick labels for {count} {axis} entries")
            setter(np.arange(count), [str(s) for s in labels],
                   **({"rotation": 60, "ha": "right"} if axis == "x" else {}))
        elif count > MAX_TICK_LABELS:
            setter([])
    if n_rows * n_cols <= 400:  # numbers stay legible up to about 20 x 20
        for i in range(n_rows):
            for j in range(n_cols):
                if table[i, j] > 0:
                    ax.text(j, i, f"{fractions[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if fractions[i, j] > 0.6 else "black")
    ax.set_xlabel("cluster (matched to the class of its row)")
    ax.set_ylabel("class")
    if title:
        ax.set_title(title)
    return fig


# ------------------------------------------------------------------ diagnostics


def purity_figure(ks: Sequence[int], curves: Mapping[str, Sequence[float]], *,
                  title: str = "Neighbour purity") -> Figure:
    """Neighbour purity against k, one line per representation (the paper's Fig. 2).

    ks: (P,) neighbourhood sizes; curves: {name: (P,) purities in [0, 1]}.
    """
    ks = list(ks)
    if not ks or not curves:
        raise LaicError("purity_figure needs at least one k and one curve")
    fig = _new_figure(5.5, 3.8)
    ax = fig.add_subplot()
    for name, values in curves.items():
        values = list(values)
        if len(values) != len(ks):
            raise LaicError(f"curve {name!r} has {len(values)} values for {len(ks)} k's")
        ax.plot(ks, values, marker="o", label=name)
    ax.set_xscale("log" if max(ks) / max(min(ks), 1) >= 10 else "linear")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (nearest neighbours)")
    ax.set_ylabel("neighbours sharing the true class")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return fig


def pseudo_accuracy_figure(subsets: Sequence[str], accuracies: Sequence[float],
                           counts: Sequence[int], *, title: str = "Pseudo-label accuracy") -> Figure:
    """Bars of pseudo-label accuracy per subset (all / reliable / ...; the paper's Fig. 5).

    Each bar is annotated with its accuracy and the number of samples.
    """
    subsets, accuracies, counts = list(subsets), list(accuracies), list(counts)
    if not (len(subsets) == len(accuracies) == len(counts)) or not subsets:
        raise LaicError("subsets, accuracies and counts must be non-empty and of equal length")
    fig = _new_figure(5.0, 3.6)
    ax = fig.add_subplot()
    heights = [0.0 if a is None or not np.isfinite(a) else float(a) for a in accuracies]
    palette = ["#888888", "#2a7ab9", "#d9822b", "#5a9e4b"]
    bars = ax.bar(subsets, heights, color=[palette[i % len(palette)] for i in range(len(subsets))])
    for bar, acc, n in zip(bars, accuracies, counts):
        text = "n/a" if acc is None or not np.isfinite(acc) else f"{100 * acc:.1f}%"
        ax.annotate(f"{text}\nn={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("accuracy (matching of all samples)")
    ax.set_title(title)
    return fig


def notrain_figure(datasets: Sequence[str], methods: Sequence[str], acc, sd=None, *,
                   title: str = "Fig. 4: clustering without training") -> Figure:
    """Grouped bars: per dataset, the ACC of each no-train method (the paper's Fig. 4: k-means on the
    rows of C against CLIP k-means and TAC without training), with the sd over seeds as error bars.

    acc, sd: (datasets, methods) in percent; NaN where a dataset lacks a method.
    """
    acc = np.asarray(acc, dtype=np.float64)
    if acc.shape != (len(datasets), len(methods)) or acc.size == 0:
        raise LaicError(f"acc must be (datasets, methods) = ({len(datasets)}, {len(methods)}), got {acc.shape}")
    sd = np.zeros_like(acc) if sd is None else np.nan_to_num(np.asarray(sd, dtype=np.float64))
    fig = _new_figure(max(5.0, 1.4 * len(datasets) + 2.0), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    x = np.arange(len(datasets))
    for j, method in enumerate(methods):
        bars = ax.bar(x + (j - (len(methods) - 1) / 2) * width, np.nan_to_num(acc[:, j]), width,
                      yerr=sd[:, j], capsize=3, label=method)
        for bar, value in zip(bars, acc[:, j]):
            if np.isfinite(value):
                ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, list(datasets))
    ax.set_ylabel("ACC (%)")
    top = np.nanmax(acc + sd) if np.isfinite(acc).any() else 100.0
    ax.set_ylim(0, min(100.0, top * 1.2 + 2))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def training_figure(steps: Sequence[float], series: Mapping[str, Sequence[float]], *,
                    title: str = "Training of the semantic centers", x_label: str = "step") -> Figure:
    """One small panel per logged quantity (loss, consistency, ...) against the optimiser step."""
    steps = np.asarray(list(steps), dtype=np.float64)
    if steps.size == 0 or not series:
        raise LaicError("training_figure needs at least one logged step and one series")
    names = list(series)
    n_cols = min(2, len(names))
    n_rows = -(-len(names) // n_cols)
    fig = _new_figure(4.0 * n_cols + 0.5, 2.6 * n_rows + 0.4)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        values = np.asarray(list(series[name]), dtype=np.float64)
        if values.shape != steps.shape:
            raise LaicError(f"series {name!r} has {values.size} values for {steps.size} logged steps")
        ax.plot(steps, values, marker="." if steps.size <= 60 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


# ------------------------------------------------------------------ the paper's Figs. 1a and 3


def joint_projection(V, T, *, n_images: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One 2-D PCA projection of image features and noun features together (the paper's Fig. 1a).

    V: (N, d) unit image embeddings; T: (M, d) unit noun embeddings. A seeded
    sample of at most `n_images` images keeps the figure readable. Returns
    (image points (n, 2), noun points (M, 2), the sampled image rows (n,)).
    """
    V, T = np.asarray(V, dtype=np.float64), np.asarray(T, dtype=np.float64)
    if V.ndim != 2 or T.ndim != 2 or V.shape[1] != T.shape[1] or not len(V) or not len(T):
        raise LaicError(f"image features {V.shape} and noun features {T.shape} must be (n, d) and (m, d)")
    rows = np.arange(len(V))
    if len(V) > n_images:
        rows = np.sort(np.random.default_rng(seed).choice(len(V), size=n_images, replace=False))
    joint = np.vstack([V[rows], T])
    centred = joint - joint.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T
    return points[:len(rows)], points[len(rows):], rows


def projection_figure(image_points, noun_points, image_groups=None, *,
                      title: str = "Image and noun features in one 2-D projection (PCA)") -> Figure:
    """Images as small dots (coloured by cluster when given), nouns as black crosses.

    The nouns' cloud is far tighter than the images': text features of nouns
    are compact, which is why a mixture of them (TAC's per-image text feature)
    discriminates little and the paper turns to relations instead.
    """
    image_points, noun_points = np.asarray(image_points), np.asarray(noun_points)
    fig = _new_figure(6.2, 5.0)
    ax = fig.add_subplot()
    colours = None if image_groups is None else np.asarray(image_groups)
    ax.scatter(image_points[:, 0], image_points[:, 1], s=4, c=colours, cmap="tab20" if colours is not None else None,
               alpha=0.55, linewidths=0, label=f"images ({len(image_points)})")
    ax.scatter(noun_points[:, 0], noun_points[:, 1], s=14, marker="x", color="black", linewidths=0.8,
               label=f"selected nouns ({len(noun_points)})")
    ax.set_xlabel("first principal direction")
    ax.set_ylabel("second principal direction")
    ax.legend(loc="best", fontsize=8, markerscale=2)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig


def relation_figure(C_rows, row_clusters, *, max_columns: int = 300,
                    title: str = "Relation matrix C, rows sorted by cluster") -> Figure:
    """The paper's Fig. 3: rows of C (images) grouped by cluster, columns (nouns) grouped by the
    cluster whose members weigh them most; each row scaled by its largest |entry|.

    C_rows: (n, M') rows of C of a sample of images; row_clusters: (n,) their clusters.
    At most `max_columns` nouns are shown: those of largest mean |weight|.
    """
    C = np.asarray(C_rows, dtype=np.float64)
    clusters = np.asarray(row_clusters)
    if C.ndim != 2 or clusters.shape != (C.shape[0],) or C.size == 0:
        raise LaicError(f"C_rows {C.shape} and row_clusters {clusters.shape} must be (n, M') and (n,)")
    scale = np.abs(C).max(axis=1, keepdims=True)
    C = np.divide(C, scale, out=np.zeros_like(C), where=scale > 0)
    columns = np.argsort(-np.abs(C).mean(axis=0), kind="stable")[:max_columns]
    C = C[:, columns]
    ids = np.unique(clusters)
    means = np.stack([C[clusters == k].mean(axis=0) for k in ids])  # (clusters, columns)
    col_order = np.lexsort((-means.max(axis=0), means.argmax(axis=0)))
    row_order = np.argsort(clusters, kind="stable")
    C = C[row_order][:, col_order]
    fig = _new_figure(8.0, 5.5)
    ax = fig.add_subplot()
    signed = (C < 0).any()
    image = ax.imshow(C, aspect="auto", interpolation="nearest", cmap="RdBu_r" if signed else "viridis",
                      vmin=-1.0 if signed else 0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="weight / the row's largest")
    bounds = np.flatnonzero(np.diff(clusters[row_order])) + 0.5
    for y in bounds:
        ax.axhline(y, color="black", linewidth=0.6)
    ax.set_xlabel(f"nouns ({C.shape[1]}), grouped by the cluster that weighs them most")
    ax.set_ylabel(f"images ({C.shape[0]}), grouped by cluster")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return fig


# ---------------------------------------------------------------- choosing K

_K_CRITERIA = {
    "silhouette": "silhouette (cosine), higher is better",
    "stability": "stability (mean ARI between seeds)",
    "davies_bouldin": "Davies-Bouldin, lower is better",
    "calinski_harabasz": "Calinski-Harabasz, higher is better",
}


def choose_k_figure(curves: KCurves, suggestion: Suggestion, *, reference_k: int | None = None,
                    reference_label: str = "current K", title: str = "Choosing K without labels"):
    """Five panels against K, the suggestion marked on each, and a text panel with the confidence.

    The first panel is the combined score the suggestion maximises; the
    contenders are circled there. reference_k: another K to mark (dotted),
    e.g. params.yaml's current K, or the true K in a benchmark.
    Returns a `matplotlib.figure.Figure` (no pyplot; save with `figures.save_figure`).
    """
    ks = curves.ks
    fig = _new_figure(13.0, 7.2)
    axes = fig.subplots(2, 3).ravel()
    panels = [("score", combined_score(curves), "stability-weighted silhouette (the rule)")]
    panels += [(name, curves.criterion(name), _K_CRITERIA[name]) for name in
               ("silhouette", "stability", "davies_bouldin", "calinski_harabasz")]
    for ax, (name, values, label) in zip(axes, panels):
        shown = np.where(np.isfinite(values), values, np.nan)
        if name == "silhouette" and np.isfinite(curves.silhouette_std).any():
            ax.errorbar(ks, shown, yerr=curves.silhouette_std, marker="o", ms=3, capsize=2)
        else:
            ax.plot(ks, shown, marker="o", ms=3)
        if name == "stability":
            ax.set_ylim(-0.02, 1.05)
        ax.axvline(suggestion.k, color="#d9822b", lw=2, alpha=0.8, label=f"suggested K={suggestion.k}")
        if reference_k is not None and ks[0] <= reference_k <= ks[-1]:
            ax.axvline(reference_k, color="#555555", ls=":", lw=1.5, label=f"{reference_label}={reference_k}")
        if name == "score" and suggestion.contenders:
            chosen = np.isin(ks, suggestion.contenders)
            ax.plot(ks[chosen], shown[chosen], "o", mfc="none", mec="#d9822b", ms=9, label="within 5%")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("K")
        ax.grid(alpha=0.3)
        ax.set_xticks(ks[:: -(-len(ks) // 12)])  # at most 12 ticks: more overlap at this width
    axes[0].legend(fontsize=8)
    text_ax = axes[-1]
    text_ax.set_axis_off()
    settings = curves.settings
    how = (f"{settings.get('representation', '?')} rows, {settings.get('rows', '?')} images, "
           f"{len(settings.get('seeds', []))} seeds, k-means n_init {settings.get('n_init', '?')}")
    body = "\n".join(textwrap.wrap(suggestion.statement(), 52))
    text_ax.text(0.0, 1.0, f"{how}\n\n{body}", va="top", ha="left", fontsize=8.5, family="monospace",
                 transform=text_ax.transAxes)
    fig.suptitle(f"{title}: suggested K={suggestion.k} ({suggestion.confidence} confidence)")
    return fig
