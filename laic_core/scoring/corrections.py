"""A person's corrections to a run's clusters: rename, merge, junk.

The corrections file (clusters.yaml at the project root, tracked by git) is a
YAML list, one correction per line, so that the cluster browser can show the
exact line to paste:

    - {method: ours, rename: 3, to: "golden retriever"}
    - {method: ours, merge: [2, 5]}     # 5's images join 2, which keeps its id (and name)
    - {method: ours, junk: 7}           # or junk: [7, 8]

`method` defaults to `ours`; ids are the run's cluster ids (0..K-1). The
corrected assignment keeps the run's ids (a merged group takes its first id)
and gives junk images the id `JUNK` (-1), so every cluster keeps the id the
browser, the report and the export show.

`parse_corrections` checks a file's structure and its internal consistency
(a cluster merged twice, renamed after being merged away, both merged and
junk), `check_corrections` checks it against a run (known methods, ids in
range, at least one cluster left); `corrected_labels` and `corrected_names`
apply it to arrays. Every problem of a file is reported in one error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from laic_core.errors import LaicError
from laic_core.methods import METHODS

JUNK = -1  # the corrected cluster id of an image in a junk cluster
JUNK_NAME = "junk"
DEFAULT_METHOD = "ours"
EXAMPLE = '- {method: ours, rename: 3, to: "golden retriever"}'
_ACTIONS = ("rename", "merge", "junk")
_KEYS = {"method", "to", *_ACTIONS}


@dataclass(frozen=True)
class Corrections:
    """One method's corrections; every id is a cluster id of the run."""

    rename: dict[int, str] = field(default_factory=dict)  # cluster -> its new name
    merge: dict[int, int] = field(default_factory=dict)  # merged-away cluster -> the cluster it joins
    junk: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.rename or self.merge or self.junk)

    def ids(self) -> set[int]:
        """Every cluster id these corrections name."""
        return set(self.rename) | set(self.merge) | set(self.merge.values()) | set(self.junk)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Corrections:
        """The inverse of `record` (what the per-image table's metadata holds)."""
        return cls({int(k): str(v) for k, v in record.get("rename", {}).items()},
                   {int(k): int(v) for k, v in record.get("merge", {}).items()},
                   frozenset(int(k) for k in record.get("junk", [])))

    def record(self) -> dict[str, Any]:
        """A JSON-ready form (str keys), equal for equal corrections: what the outputs record."""
        return {"rename": {str(k): v for k, v in sorted(self.rename.items())},
                "merge": {str(k): v for k, v in sorted(self.merge.items())},
                "junk": sorted(self.junk)}


# ------------------------------------------------------------------ reading


def read_corrections(path: str | Path) -> tuple[Any, list[int]]:
    """(the parsed YAML, the line of each top-level entry) of a corrections file.

    A missing file or one holding only comments gives (None, []): no corrections.
    """
    path = Path(path)
    if not path.is_file():
        return None, []
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise LaicError(f"{path}: not valid YAML ({exc}); each line should read like {EXAMPLE}") from exc
    lines = [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else []
    return raw, lines


def _cluster_id(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        return None
    return int(value)


def _id_list(value: Any) -> list[int] | None:
    values = value if isinstance(value, list) else [value]
    ids = [_cluster_id(v) for v in values]
    return None if not ids or any(i is None for i in ids) else ids


def parse_corrections(raw: Any, source: str = "clusters.yaml",
                      lines: Sequence[int] | None = None) -> dict[str, Corrections]:
    """{method: Corrections} from the parsed YAML of a corrections file (None: no corrections).

    raw: a list of mappings, each with an optional `method` (default `ours`, a
    registered method) and exactly one of `rename: <id>` (with `to: <name>`),
    `merge: [<id>, <id>, ...]` (the first id keeps its id and name) or
    `junk: <id or list of ids>`. lines: the file line of each entry, for the
    messages. Raises one LaicError listing every problem.
    """
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise LaicError(f"{source}: must be a list of corrections, one per line, such as\n  {EXAMPLE}\n"
                        f"got a {type(raw).__name__}")
    errors: list[str] = []
    entries: list[tuple[str, str, str, list[int], str]] = []  # (where, method, action, ids, new name)
    for i, entry in enumerate(raw):
        where = f"line {lines[i]}" if lines and i < len(lines) else f"entry {i + 1}"
        parsed = _parse_entry(entry, where, errors)
        if parsed:
            entries.append(parsed)
    out = {}
    for method in dict.fromkeys(e[1] for e in entries):
        out[method] = _combine([e for e in entries if e[1] == method], method, errors)
    if errors:
        raise LaicError(f"{source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return out


def _parse_entry(entry: Any, where: str, errors: list[str]) -> tuple[str, str, str, list[int], str] | None:
    """(where, method, action, ids, new name) of one well-formed entry; else None and an error."""
    if not isinstance(entry, dict):
        errors.append(f"{where}: {entry!r} is not a correction; write it like {EXAMPLE}")
        return None
    unknown = sorted(str(k) for k in entry if k not in _KEYS)
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
        return None
    actions = [a for a in _ACTIONS if a in entry]
    if len(actions) != 1:
        errors.append(f"{where}: give exactly one of rename, merge, junk (got {', '.join(actions) or 'none'})")
        return None
    action = actions[0]
    method = entry.get("method", DEFAULT_METHOD)
    if not isinstance(method, str) or method not in METHODS:
        errors.append(f"{where}: unknown method {method!r} (the methods are {', '.join(METHODS)})")
        return None
    if action != "rename" and "to" in entry:
        errors.append(f"{where}: `to` goes with rename only")
        return None
    value = entry[action]
    if action == "rename":
        k, name = _cluster_id(value), entry.get("to")
        if k is None:
            errors.append(f"{where}: rename takes one cluster id (an integer >= 0), got {value!r}")
            return None
        text = "" if isinstance(name, bool) or not isinstance(name, (str, int, float)) else str(name).strip()
        if not text or "\n" in text:
            errors.append(f"{where}: rename {k} needs `to: <new name>`, a name on one line (got {name!r})")
            return None
        return where, method, action, [k], text
    ids = _id_list(value)
    if action == "merge" and (ids is None or len(ids) < 2 or len(set(ids)) != len(ids)):
        errors.append(f"{where}: merge takes a list of two or more different cluster ids, such as [2, 5], "
                      f"got {value!r}")
        return None
    if ids is None:
        errors.append(f"{where}: junk takes a cluster id or a list of ids (integers >= 0), got {value!r}")
        return None
    return where, method, action, ids, ""


def _combine(entries, method: str, errors: list[str]) -> Corrections:
    """One method's entries as Corrections; conflicts between entries become errors."""
    rename: dict[int, str] = {}
    renamed_where: dict[int, str] = {}
    merge: dict[int, int] = {}
    merged_where: dict[int, str] = {}  # every id in a merge (targets included) -> its line
    junk: dict[int, str] = {}
    for where, _, action, ids, name in entries:
        if action == "rename":
            if ids[0] in rename:
                errors.append(f"{where}: cluster {ids[0]} of {method} is renamed twice")
            rename[ids[0]], renamed_where[ids[0]] = name, where
        elif action == "merge":
            twice = [k for k in ids if k in merged_where]
            if twice:
                errors.append(f"{where}: cluster(s) {', '.join(map(str, twice))} of {method} already in the "
                              f"merge on {merged_where[twice[0]]}; list the whole group in one merge")
                continue
            merged_where.update(dict.fromkeys(ids, where))
            merge.update({k: ids[0] for k in ids[1:]})
        else:
            junk.update(dict.fromkeys(ids, where))
    for k, where in junk.items():
        if k in merged_where:
            errors.append(f"{where}: cluster {k} of {method} is both junk and in the merge on {merged_where[k]}; "
                          "to junk a group, junk each of its clusters and drop the merge")
        if k in rename:
            errors.append(f"{where}: cluster {k} of {method} is both junk and renamed; keep one of the two")
    for k in rename:
        if k in merge:
            errors.append(f"{renamed_where[k]}: cluster {k} of {method} is renamed, but merged into {merge[k]} on "
                          f"{merged_where[k]}; rename {merge[k]}, the merged group's id, instead")
    return Corrections(rename, merge, frozenset(junk))


def check_corrections(corrections: Mapping[str, Corrections], cluster_counts: Mapping[str, int],
                      source: str = "clusters.yaml", labels: Mapping[str, np.ndarray] | None = None) -> None:
    """Check parsed corrections against a run: {method: its number of clusters} of the run's methods.

    A method the run does not have, an id out of 0..n-1, or corrections that
    would leave no cluster (every cluster merged away or junk; with `labels`,
    {method: (N,) its clusters}, every image junk) are errors.
    """
    errors = []
    for method, corr in corrections.items():
        if method not in cluster_counts:
            errors.append(f"method {method!r} has no clusters in this run (it has "
                          f"{', '.join(cluster_counts) or 'none'}); remove its lines")
            continue
        n = int(cluster_counts[method])
        bad = sorted(k for k in corr.ids() if k >= n)
        if bad:
            errors.append(f"{method}: unknown cluster id(s) {', '.join(map(str, bad))}: the run has clusters "
                          f"0..{n - 1}")
            continue
        left = remaining_clusters(corr, n)
        if labels is not None and method in labels:
            left = sorted(set(np.unique(corrected_labels(labels[method], corr, n)).tolist()) - {JUNK})
        if not left:
            errors.append(f"{method}: the merges and junk leave no cluster (of {n}); keep at least one")
    if errors:
        raise LaicError(f"{source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))


def load_corrections(path: str | Path, cluster_counts: Mapping[str, int],
                     labels: Mapping[str, np.ndarray] | None = None) -> dict[str, Corrections]:
    """Read, parse and check a corrections file against a run (missing file: {})."""
    raw, lines = read_corrections(path)
    corrections = parse_corrections(raw, str(path), lines)
    check_corrections(corrections, cluster_counts, str(path), labels)
    return corrections


def corrections_record(corrections: Mapping[str, Corrections]) -> dict[str, Any]:
    """{method: Corrections.record()} of the methods with corrections, sorted: what a run applied."""
    return {m: corrections[m].record() for m in sorted(corrections) if corrections[m]}


def same_record(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return json.dumps(a or {}, sort_keys=True) == json.dumps(b or {}, sort_keys=True)


# ------------------------------------------------------------------ applying


def remaining_clusters(corr: Corrections, n_clusters: int) -> list[int]:
    """The ids (ascending) that still name a cluster: neither merged away nor junk."""
    return [k for k in range(n_clusters) if k not in corr.merge and k not in corr.junk]


def cluster_map(corr: Corrections, n_clusters: int) -> np.ndarray:
    """(n_clusters,) int64: the corrected id of each cluster (itself, its merge's target, or JUNK)."""
    out = np.arange(n_clusters, dtype=np.int64)
    for k, target in corr.merge.items():
        out[k] = target
    for k in corr.junk:
        out[k] = JUNK
    return out


def corrected_labels(labels, corr: Corrections, n_clusters: int) -> np.ndarray:
    """(N,) int64 corrected cluster of each image (JUNK for junk) from its (N,) cluster in 0..n_clusters-1.

    A negative input label (an image no cluster took) stays as it is.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and labels.max() >= n_clusters:
        raise LaicError(f"cluster id {int(labels.max())} is out of range for {n_clusters} clusters")
    mapping = cluster_map(corr, n_clusters)
    return np.where(labels >= 0, mapping[np.clip(labels, 0, None)], labels)


def corrected_names(names: Sequence[str], corr: Corrections) -> list[str]:
    """Per cluster id of the run, the name of the cluster its images end in.

    names: (K,) the run's names ("" where a cluster has none). A merged-away
    cluster takes its target's (corrected) name, a junk one JUNK_NAME.
    """
    renamed = [corr.rename.get(k, str(name)) for k, name in enumerate(names)]
    mapping = cluster_map(corr, len(names))
    return [JUNK_NAME if t == JUNK else renamed[t] for t in mapping]


def as_partition(corrected, n_clusters: int) -> np.ndarray:
    """(N,) corrected labels as a partition for ACC/NMI/ARI: junk images form one group of their own
    (id n_clusters), so the scores neither drop them nor count them in a real cluster."""
    corrected = np.asarray(corrected, dtype=np.int64)
    return np.where(corrected == JUNK, n_clusters, corrected)


def describe(corr: Corrections, k: int, names: Sequence[str] | None = None) -> str:
    """What happened to cluster k, in words ("" when nothing): renamed, merged, junk."""
    parts = []
    if k in corr.junk:
        return "junk"
    if k in corr.merge:
        return f"merged into {corr.merge[k]}"
    joined = sorted(j for j, t in corr.merge.items() if t == k)
    if joined:
        parts.append("merged with " + ", ".join(map(str, joined)))
    if k in corr.rename:
        was = names[k] if names is not None and k < len(names) and names[k] else ""
        parts.append(f"renamed from {was!r}" if was else "named by hand")
    return "; ".join(parts)


def change_lines(corr: Corrections, names: Sequence[str] | None = None) -> list[str]:
    """The corrections of one method in words, e.g. ["3 renamed 'dog' -> 'puppies'", "5 merged into 2",
    "junk: 7, 8"]; names: the run's names, to say what a renamed cluster was called."""
    lines = []
    for k, new in sorted(corr.rename.items()):
        was = names[k] if names is not None and k < len(names) and names[k] else ""
        lines.append(f"{k} renamed {was!r} \u2192 {new!r}" if was else f"{k} named {new!r}")
    targets = sorted(set(corr.merge.values()))
    for t in targets:
        lines.append(", ".join(map(str, sorted(k for k, v in corr.merge.items() if v == t))) + f" merged into {t}")
    if corr.junk:
        lines.append("junk: " + ", ".join(map(str, sorted(corr.junk))))
    return lines


# ------------------------------------------------------------------ the per-image table


def assignment_column(columns: Sequence[str], method: str) -> str:
    """The per-image table's column holding `method`'s final clusters: corrected when there is one."""
    return f"{method}_corrected" if f"{method}_corrected" in columns else method


def table_methods(columns: Sequence[str]) -> list[str]:
    """The registered methods that have a cluster column in a per-image table, in registry order."""
    return [m for m in METHODS if m in columns]
