"""Markdown rendering of a run's results (the many-dataset table is `experiments`).

Pure functions: dicts in (the contents of metrics/scores.json,
diagnostics.json, data/centers/names.json, params), a Markdown string out.
Scores are fractions in the JSON files and percentages with one decimal in
Markdown, as in the papers' tables.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from laic_core.methods import METHODS, ordered as ordered_methods, title as method_title
from laic_core.scoring.metrics import SCORE_KEYS

SIZE_KEYS = ("n", "min_size", "max_size", "n_empty", "size_entropy")
MISSING = "–"
_NOUNS_SHOWN = 5


# ------------------------------------------------------------------ formatting


def percent(value: Any) -> str:
    """0.9291 -> '92.9'; None/NaN/non-numbers -> '–'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return MISSING
    return f"{100.0 * value:.1f}"


def number(value: Any) -> str:
    """Integers as they are, floats with 3 decimals, anything else via str; None -> '–'."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else MISSING
    return str(value)


def text(value: Any) -> str:
    """A name or other given text as literal Markdown: `$` escaped, so that no renderer reads a
    cluster named "$5 and $10 bills" as math."""
    return str(value).replace("$", "\\$")


def code(value: Any) -> str:
    """`value` as a Markdown code span (literal whatever it holds, backticks included)."""
    value = str(value).replace("\n", " ")
    fence = "``" if "`" in value else "`"
    return f"{fence} {value} {fence}" if fence == "``" else f"`{value}`"


def _cell(value: Any) -> str:
    return text(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed and '|' escaped.

    align: per column 'l' or 'r' (default: first column left, the rest right).
    """
    header = [_cell(h) for h in header]
    align = list(align) if align is not None else ["l"] + ["r"] * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    for row in rows:
        row = [_cell(c) for c in row]
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells for {len(header)} columns: {row}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def is_labelled(scores: Mapping[str, Mapping]) -> bool:
    """Whether a scores dict holds label-based scores (ACC/NMI/ARI) rather than sizes."""
    return any(isinstance(v, Mapping) and "acc" in v for v in scores.values())


# ------------------------------------------------------------------ sections


def scores_table(scores: Mapping[str, Mapping]) -> str:
    """Methods x ACC/NMI/ARI (percent) when labelled, else methods x cluster-size figures."""
    methods = ordered_methods(k for k, v in scores.items() if isinstance(v, Mapping))
    if is_labelled(scores):
        rows = [[method_title(m)] + [percent(scores[m].get(k)) for k in SCORE_KEYS]
                for m in methods]
        return markdown_table(["method", "ACC", "NMI", "ARI"], rows)
    rows = [[method_title(m)] + [number(scores[m].get(k)) for k in SIZE_KEYS] for m in methods]
    return markdown_table(["method", "images", "smallest", "largest", "empty", "size entropy"], rows)


def noun_text(item: Any) -> str:
    """One entry of a names.json noun list: a string, {noun: ..} dict, or [noun, score] pair."""
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        for key in ("noun", "name", "word", "text"):
            if isinstance(item.get(key), str):
                return item[key]
        strings = [v for v in item.values() if isinstance(v, str)]
        return strings[0] if strings else str(item)
    if isinstance(item, (list, tuple)) and item:
        return noun_text(item[0])
    return str(item)


def _cluster_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if not value:
            return MISSING
        shown = [noun_text(v) for v in value[:_NOUNS_SHOWN]]
        return ", ".join(shown) + (", …" if len(value) > _NOUNS_SHOWN else "")
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_cluster_value(v)}" for k, v in value.items())
    return number(value)


_ID_KEYS = ("cluster", "id")


def cluster_id(entry: Any, position: int) -> int:
    """The cluster id of one names.json entry: its 'cluster' (or 'id') key, else its position."""
    if isinstance(entry, Mapping):
        for key in _ID_KEYS:
            value = entry.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return position


def clusters_table(clusters: Sequence[Any]) -> str:
    """names.json (a list of per-cluster dicts) as a table; unknown keys become columns.

    Reads defensively: the id ('cluster' or 'id') defaults to the position,
    'size' may be absent, noun lists may hold strings, dicts or [noun, score] pairs.
    """
    entries = [c if isinstance(c, Mapping) else {"name": c} for c in clusters]
    columns: list[str] = []
    for entry in entries:
        for key in entry:
            if key not in (*_ID_KEYS, "size", "empty") and key not in columns:
                columns.append(key)
    has_size = any("size" in e for e in entries)
    header = ["cluster"] + (["size"] if has_size else []) + [c.replace("_", " ") for c in columns]
    rows = []
    for position, entry in enumerate(entries):
        row = [str(cluster_id(entry, position))]
        if has_size:
            row.append(number(entry.get("size")))
        if entry.get("empty"):  # no image: nothing to name, and its center's nouns describe nobody
            row += ["(empty cluster)" if c == "name" else MISSING for c in columns]
        else:
            row += [_cluster_value(entry[c]) if c in entry else MISSING for c in columns]
        rows.append(row)
    align = ["l"] + (["r"] if has_size else []) + ["l"] * len(columns)
    return markdown_table(header, rows, align)


def glossary(clusters: Sequence[Any]) -> str:
    """A Markdown list "- **noun**: gloss" of the names and of the nouns the clusters table shows
    (the first few of each list), each once, for those names.json gives a gloss."""
    seen: dict[str, str] = {}
    for entry in clusters:
        if not isinstance(entry, Mapping) or entry.get("empty"):
            continue
        if entry.get("name") and entry.get("gloss"):
            seen.setdefault(str(entry["name"]), str(entry["gloss"]))
        for key in ("nearest_nouns", "member_nouns"):
            for item in list(entry.get(key) or [])[:_NOUNS_SHOWN]:
                if isinstance(item, Mapping) and item.get("gloss"):
                    seen.setdefault(noun_text(item), str(item["gloss"]))
    return "\n".join(f"- **{_cell(noun)}**: {_cell(text)}" for noun, text in seen.items())


def _purity_table(purity: Mapping[str, Mapping[str, float]]) -> str:
    spaces = list(purity)
    ks = list(dict.fromkeys(k for space in spaces for k in purity[space]))
    rows = [[k.lstrip("k")] + [percent(purity[s].get(k)) for s in spaces] for k in ks]
    return markdown_table(["k"] + [f"{s} purity (%)" for s in spaces], rows)


def purity_ks_note(ks: Sequence[int], n_labelled: int, purity_sample: int) -> str | None:
    """Why some evaluate.purity_ks are left out of the purity curve (None when none is).

    The curve is measured on min(purity_sample or all, n_labelled) labelled fit
    images and k nearest neighbours need k + 1 of them; a k too large used to
    vanish from the curve without a word.
    """
    sampled = bool(purity_sample) and purity_sample < n_labelled
    n = purity_sample if sampled else n_labelled
    dropped = sorted({int(k) for k in ks if int(k) > n - 1})
    if not dropped:
        return None
    fix = ("lower them or raise evaluate.purity_sample (0 = all fit images)" if sampled
           else "lower them, or add labelled fit images")
    return (f"evaluate.purity_ks {', '.join(map(str, dropped))} left out of the purity curve: "
            f"it is measured on {n} labelled fit image(s), so k can be at most {max(n - 1, 0)}; {fix}")


def one_class_note(labels: np.ndarray | None, class_names: Sequence[str] | None) -> str | None:
    """A warning when the labelled eval images hold one class (None otherwise).

    ACC, NMI and ARI compare a clustering with at least two classes: with one,
    a method that puts every image in one cluster scores 100/100/100 and the
    scores say nothing about the clusters.
    """
    if labels is None:
        return None
    present = np.unique(labels[labels >= 0])
    if len(present) != 1:
        return None
    label = int(present[0])
    name = class_names[label] if class_names and label < len(class_names) else str(label)
    return (f"the labelled eval images hold one class ({name}): ACC, NMI and ARI mean nothing with one class "
            "(a method that puts every image in one cluster scores 100); judge the clusters by the gallery "
            "and the label-free scores, or label images of more classes")


SKIPPED_LISTED = 20  # unreadable files named in the report; the rest are counted


def features_notes(meta: Mapping[str, Any], source: str) -> list[str]:
    """The notes embed recorded in a features file (how the split was read, skipped files)."""
    notes = [f"{source}: {n}" for n in meta.get("notes") or []]
    skipped = meta.get("skipped") or []
    if skipped:
        shown = ", ".join(f"`{s}`" for s in skipped[:SKIPPED_LISTED])
        more = f" and {len(skipped) - SKIPPED_LISTED} more" if len(skipped) > SKIPPED_LISTED else ""
        notes.append(f"{source}: {len(skipped)} unreadable image(s) skipped (embed.on_error: skip), not "
                     f"clustered: {shown}{more} (all are listed under 'skipped' in its metadata)")
    return notes


def corrections_section(scores: Mapping[str, Mapping], corrected: Mapping[str, Mapping],
                        changes: Mapping[str, Sequence[str]], moved: Sequence[Mapping[str, Any]] = ()) -> str:
    """What the corrections file changed: per corrected method its clusters and junk images and,
    with labels, ACC/NMI/ARI raw -> corrected; then each method's changes in words; then the lines
    written for another run of the clusters, carried to this run's or set aside.

    scores: metrics/scores.json (raw); corrected: metrics/scores_corrected.json; changes: {method:
    ["3 renamed from 'x' to 'dogs'", ...]}; moved: the carried and set-aside lines (the records of
    laic_core.scoring.corrections.Outcome).
    """
    parts = [_corrected_table(scores, corrected, changes)] if corrected else []
    if moved:
        items = []
        for o in moved:
            said = f"- {o['where']} {code(o['line'])} **{o['status']}**" + (f": {text(o['detail'])}" if o["detail"]
                                                                           else "")
            items.append(said + (f"; for this run write it as {code(o['rewrite'])}" if o.get("rewrite") else ""))
        parts.append("Lines written for other clusters than this run's (the clusters changed since: seed, K, data "
                     "or an upstream setting): each is carried to the cluster holding most of its cluster's "
                     "images when that match is clear, else set aside and not applied "
                     "(docs/browser.md says how).\n\n" + "\n".join(items))
    return "\n\n".join(parts)


def _corrected_table(scores: Mapping[str, Mapping], corrected: Mapping[str, Mapping],
                     changes: Mapping[str, Sequence[str]]) -> str:
    labelled = any("acc" in v for v in corrected.values())
    header = ["method", "clusters", "junk images"] + (["ACC", "NMI", "ARI"] if labelled else [])
    rows = []
    for m in ordered_methods(corrected):
        entry = corrected[m]
        row = [method_title(m), f"{entry['clusters_raw']} \u2192 {entry['clusters']}", number(entry["n_junk"])]
        if labelled:
            row += [f"{percent(scores.get(m, {}).get(k))} \u2192 {percent(entry.get(k))}" for k in SCORE_KEYS]
        rows.append(row)
    note = ("Raw \u2192 corrected. Junk images count as one group of their own in the scores."
            if labelled else "Raw \u2192 corrected.")
    lines = [f"- {method_title(m)}: " + text("; ".join(changes[m])) for m in ordered_methods(changes) if changes[m]]
    return note + "\n\n" + markdown_table(header, rows) + ("\n\n" + "\n".join(lines) if lines else "")


def internal_table(internal: Mapping[str, Mapping]) -> str:
    """Label-free scores per method: silhouette, Davies-Bouldin, Calinski-Harabasz, size balance."""
    rows = []
    for m in ordered_methods(internal):
        e = internal[m]
        rows.append([method_title(m), number(e.get("silhouette")), number(e.get("davies_bouldin")),
                     number(e.get("calinski_harabasz")), number(e.get("size_entropy")), number(e.get("n_empty"))])
    return markdown_table(["method", "silhouette (higher)", "Davies-Bouldin (lower)", "Calinski-Harabasz (higher)",
                           "size entropy", "empty clusters"], rows)


def cost_table(cost: Mapping[str, Mapping]) -> str:
    """What each stage's last run cost on its machine (metrics/cost/)."""
    rows = [[stage, number(c.get("wall_seconds")), number(c.get("cpu_seconds")), number(c.get("peak_rss_mib")),
             number(c.get("peak_gpu_mib"))] for stage, c in cost.items()]
    return markdown_table(["stage", "wall s", "CPU s", "peak RSS MiB", "peak GPU MiB"], rows)


def method_kind(name: str) -> str:
    """How a registered method clusters, from its registry entry: what a reader weighs its score by."""
    m = METHODS[name]
    if m.reference:
        return "reference: reads the true class names"
    how = "trained (seeded)" if m.trained else "k-means, no training"
    return how + (", uses the nouns" if m.uses_text else ", images only")


def methods_table(names: Iterable[str]) -> str:
    rows = [[METHODS[m].title, m, METHODS[m].stage, method_kind(m), METHODS[m].description]
            for m in ordered_methods(names) if m in METHODS]
    return markdown_table(["method", "key", "stage", "kind", "what it is"], rows, ["l"] * 5)


def diagnostics_section(diagnostics: Mapping[str, Any]) -> str:
    """Neighbour purity, pseudo-label accuracy and the consistency filter, as Markdown."""
    parts: list[str] = []
    notes = diagnostics.get("notes") or []
    if notes:
        parts.append("### Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    neighbors = diagnostics.get("neighbors") or {}
    if neighbors:
        rows = [
            ["neighbours per image (k)", number(neighbors.get("k"))],
            ["reliable samples", f"{number(neighbors.get('n_reliable'))} "
                                 f"({percent(neighbors.get('fraction_reliable'))}%)"],
            ["neighbours sharing the pseudo-label, all (%)", percent(neighbors.get("agreement"))],
            ["neighbours sharing the pseudo-label, reliable (%)", percent(neighbors.get("agreement_reliable"))],
        ]
        if "purity" in neighbors:
            rows.append(["mined neighbours sharing the true class (%)", percent(neighbors["purity"])])
        if "pair_purity" in neighbors:
            rows.append(["training pairs of the same class (%)", percent(neighbors["pair_purity"])])
        parts.append("### Neighbours (fit split)\n\n" + markdown_table(["", "value"], rows))
    purity = diagnostics.get("purity") or {}
    if purity:
        n = diagnostics.get("purity_samples")
        on = f", {n} images" if n is not None else ""
        parts.append(f"### Neighbour purity against k (fit split{on})\n\n" + _purity_table(purity))
    pseudo = diagnostics.get("pseudo_labels") or {}
    if pseudo:
        subsets = [s for s in ("all", "reliable", "unreliable") if f"acc_{s}" in pseudo]
        rows = [[s, percent(pseudo.get(f"acc_{s}")), number(pseudo.get(f"n_{s}"))] for s in subsets]
        parts.append("### Pseudo-label accuracy (fit split, ours no-train)\n\n"
                     + markdown_table(["samples", "accuracy (%)", "n"], rows))
    zeroshot = diagnostics.get("zeroshot") or {}
    if zeroshot.get("available") and "top1" in zeroshot:
        parts.append(f"Zero-shot top-1 accuracy with the class names: {percent(zeroshot['top1'])}%.")
    if not diagnostics.get("labelled", True):
        parts.append("_No ground-truth labels: purity, pseudo-label accuracy and the confusion "
                     "matrix need them and are left out; the tables above need no labels._")
    return "\n\n".join(parts)


def params_table(params: Mapping[str, Any]) -> str:
    """A flat {key: value} of the run's settings as a two-column table."""
    rows = [[key, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else number(v)]
            for key, v in params.items()]
    return markdown_table(["parameter", "value"], rows, ["l", "l"])


def render_report(
    scores: Mapping[str, Mapping],
    diagnostics: Mapping[str, Any] | None = None,
    *,
    fit_scores: Mapping[str, Mapping] | None = None,
    clusters: Sequence[Any] | None = None,
    params: Mapping[str, Any] | None = None,
    figures: Mapping[str, str] | None = None,
    title: str = "LAIC run report",
    internal: Mapping[str, Mapping] | None = None,
    cost: Mapping[str, Mapping] | None = None,
    gallery: Sequence[str] | None = None,
    corrections: str | None = None,
) -> str:
    """The per-run report (metrics/report.md).

    scores / fit_scores: {method: {acc, nmi, ari}} or label-free {method: {n,
    min_size, ...}}; diagnostics: as written by the evaluate stage; clusters:
    names.json; params: flat {key: value}; figures: {caption: relative path};
    internal: label-free scores per method; cost: per-stage cost; gallery:
    relative paths of the gallery pages; corrections: `corrections_section(...)`, when a person
    corrected some clusters (clusters.yaml). fit_scores only when the fit split is
    not the eval split (the caller decides). Sections whose input is None or
    empty are left out.
    """
    diagnostics = diagnostics or {}
    labelled = is_labelled(scores)
    parts = [f"# {title}"]
    if params:
        parts.append("## Settings\n\n" + params_table(params))
    n_eval, n_scored = diagnostics.get("n_eval"), diagnostics.get("n_eval_labelled")
    if n_eval is None:
        heading = "## Scores (eval split)"
    elif labelled and n_scored is not None and n_scored != n_eval:  # images without a class are not scored
        heading = f"## Scores (eval split, {n_scored} labelled of {n_eval} images)"
    else:
        heading = f"## Scores (eval split, {n_eval} images)"
    if labelled:
        note = "ACC (Hungarian matching), NMI and ARI in percent."
    else:
        note = ("No ground-truth labels: cluster sizes instead of scores "
                "(size entropy 1 = perfectly even).")
    parts.append(f"{heading}\n\n{note}\n\n{scores_table(scores)}" if scores else f"{heading}\n\nNo scores.")
    if corrections:
        parts.append("## Corrections (clusters.yaml)\n\n" + corrections)
    if fit_scores:
        parts.append("## Scores (fit split)\n\n" + scores_table(fit_scores))
    if internal:
        parts.append("## Label-free scores (eval split)\n\nOn the image features, the same seeded sample for "
                     "every method; they need no labels, so they also judge a run on unlabelled images.\n\n"
                     + internal_table(internal))
    if gallery:
        parts.append("## Gallery\n\nEach row: a cluster of `ours`, its name and runner-up nouns, its most "
                     "confident images, then a few random members.\n\n"
                     + "\n\n".join(f"![gallery page {i + 1}]({path})" for i, path in enumerate(gallery)))
    if clusters:
        parts.append("## Clusters\n\n" + clusters_table(clusters))
        words = glossary(clusters)
        if words:
            parts.append("### What the words mean\n\nWordNet's gloss of each name and runner-up noun above "
                         "(of its most frequent sense):\n\n" + words)
    section = diagnostics_section(diagnostics)
    if section:
        parts.append("## Diagnostics\n\n" + section)
    if figures:
        parts.append("## Figures\n\n" + "\n\n".join(f"![{caption}]({path})" for caption, path in figures.items()))
    if scores:
        parts.append("## Methods\n\n" + methods_table(scores))
    if cost:
        parts.append("## Cost of the last run of each stage\n\n" + cost_table(cost))
    return "\n\n".join(parts) + "\n"
