"""A person's corrections to a run's clusters: rename, merge, junk, each bound to the run it was made for.

The corrections file (clusters.yaml at the project root, tracked by git) is a
YAML list, one correction per line, so that the cluster browser can show the
exact line to paste:

    - {method: ours, rename: 3, to: "golden retriever", run: k3f09a1c}
    - {method: ours, merge: [2, 5]}     # 5's images join 2, which keeps its id (and name)
    - {method: ours, junk: 7}           # or junk: [7, 8]

`method` defaults to `ours`; ids are cluster ids (0..K-1) of one run of that
method. The corrected assignment keeps the run's ids (a merged group takes its
first id) and gives junk images the id `JUNK` (-1), so every cluster keeps the
id the browser, the report and the export show.

A line is bound to the partition it was written for: `run` is that partition's
fingerprint (`fingerprint`: 8 characters, the browser writes it into every line
it suggests); a line without one is bound to the partition of the run at which
it first appears (the caller keeps those bindings). `resolve` applies each line
to the run at hand: as written when it is bound to this run's partition;
carried to this run's clusters when it was written for another partition that
the caller still has and every cluster it names has a clear match here
(`carry`: more than half of the old cluster's images lie in one new cluster,
and they are more than half of that cluster); otherwise set aside with the
reason. Nothing is ever applied to a cluster a line was not made for, and a
stale line never stops a run; a malformed file still does.

`read_corrections` reads a file (UTF-8, a key given twice is an error),
`parse_lines` checks each entry's structure, `parse_corrections` takes every
line as written (for one run's ids), `resolve` binds them to runs;
`corrected_labels` and `corrected_names` apply corrections to arrays. Every
problem of a file is reported in one error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
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
_KEYS = {"method", "to", "run", *_ACTIONS}
CLEAR_SHARE = 0.5  # a clear match: MORE than this share of the old cluster's images, and of the new cluster
APPLIED, CARRIED, SET_ASIDE = "applied", "carried", "set aside"


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


@dataclass(frozen=True)
class Line:
    """One well-formed entry of a corrections file.

    where: "line 3" (or "entry 3" without line numbers), for the messages; ids: the clusters it
    names (a merge's first id keeps its id and name); name: a rename's new name; run: the
    fingerprint of the partition it was written for (None: not given).
    """

    where: str
    method: str
    action: str
    ids: tuple[int, ...]
    name: str = ""
    run: str | None = None

    def key(self) -> str:
        """What identifies a line without a `run` between runs: its method, action and ids (not the new
        name, so that renaming a carried cluster again keeps the line bound to its run)."""
        ids = sorted(self.ids) if self.action == "junk" else list(self.ids)
        return f"{self.method} {self.action} {','.join(map(str, ids))}"

    def canonical(self) -> list[Any]:
        """Everything the line says, JSON-ready: equal lists, equal lines (comments and layout aside)."""
        return [self.method, self.action, list(self.ids), self.name, self.run]

    def yaml(self, ids: Sequence[int] | None = None, run: str | None = None) -> str:
        """The line as clusters.yaml takes it, with other ids and run when given (for "write it as")."""
        ids = list(self.ids if ids is None else ids)
        if self.action == "rename":
            body = f"rename: {ids[0]}, to: {json.dumps(self.name, ensure_ascii=False)}"
        elif self.action == "merge":
            body = f"merge: [{', '.join(map(str, ids))}]"
        else:
            body = f"junk: {ids[0]}" if len(ids) == 1 else f"junk: [{', '.join(map(str, ids))}]"
        run = self.run if run is None else run
        return f"- {{method: {self.method}, {body}" + (f", run: {run}" if run else "") + "}"


# ------------------------------------------------------------------ fingerprints


def sources_digest(sources: Sequence[str]) -> bytes:
    """A digest of a run's images (in row order), shared by the fingerprints of its partitions."""
    h = hashlib.sha256()
    for source in sources:
        h.update(str(source).encode("utf-8", "surrogateescape") + b"\0")
    return h.digest()


def fingerprint(labels, digest: bytes = b"") -> str:
    """The short fingerprint of a partition: (N,) cluster ids of the images `digest` names.

    8 characters, a letter then 7 hex digits (so YAML never reads it as a number), the same for the
    same images in the same clusters under the same ids; any other partition gets another one.
    """
    h = hashlib.sha256(digest)
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    hexa = h.hexdigest()
    return "ghijklmnopqrstuv"[int(hexa[0], 16)] + hexa[1:8]


# ------------------------------------------------------------------ reading


class _Repeated:
    """An entry that gives a key more than once (YAML itself keeps the last one, silently)."""

    def __init__(self, keys: dict[str, list[Any]]):
        self.keys = keys


def _entry_nodes(node) -> list:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _repeated_keys(item) -> dict[str, list[Any]]:
    """{key: [its values]} of the keys a YAML mapping node gives more than once."""
    if not isinstance(item, yaml.MappingNode):
        return {}
    seen: dict[str, list[Any]] = {}
    for key, value in item.value:
        if isinstance(key, yaml.ScalarNode):
            seen.setdefault(str(key.value), []).append(value.value if isinstance(value, yaml.ScalarNode)
                                                       else yaml.safe_load(yaml.serialize(value)))
    return {k: v for k, v in seen.items() if len(v) > 1}


def read_corrections(path: str | Path) -> tuple[Any, list[int]]:
    """(the parsed YAML, the line of each top-level entry) of a corrections file.

    A missing file or one holding only comments gives (None, []): no corrections. A file that is
    not UTF-8, a folder in its place, or invalid YAML is an error; an entry that gives a key twice
    comes back as a marker that `parse_lines` reports (with every other problem of the file).
    """
    path = Path(path)
    if path.is_dir():
        raise LaicError(f"{path} is a folder; it should be the file of corrections, one per line such as\n"
                        f"  {EXAMPLE}\nremove the folder (or move it away) and rerun")
    if not path.is_file():
        if path.is_symlink():
            raise LaicError(f"{path} is a link to a missing file; remove it, or point it at your corrections")
        return None, []
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise LaicError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as "
                        "UTF-8 (in most editors: Save As, encoding UTF-8) and rerun") from None
    try:
        raw = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise LaicError(f"{path}: not valid YAML ({exc}); each line should read like {EXAMPLE}") from None
    items = _entry_nodes(node)
    lines = [item.start_mark.line + 1 for item in items]
    if isinstance(raw, list) and len(raw) == len(items):
        raw = [_Repeated(rep) if (rep := _repeated_keys(item)) else entry for entry, item in zip(raw, items)]
    return raw, lines


def _cluster_id(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        return None
    return int(value)


def _id_list(value: Any) -> list[int] | None:
    values = value if isinstance(value, list) else [value]
    ids = [_cluster_id(v) for v in values]
    return None if not ids or any(i is None for i in ids) else ids


def parse_lines(raw: Any, source: str = "clusters.yaml", lines: Sequence[int] | None = None,
                errors: list[str] | None = None) -> list[Line]:
    """The well-formed entries of a corrections file's parsed YAML (None: none), in file order.

    raw: a list of mappings, each with an optional `method` (default `ours`, a registered method),
    an optional `run` (the partition's fingerprint) and exactly one of `rename: <id>` (with
    `to: <name>`), `merge: [<id>, <id>, ...]` or `junk: <id or list of ids>`. lines: the file line
    of each entry, for the messages. Raises one LaicError listing every malformed entry, unless
    given `errors`, a list to append them to (the caller reports them with others).
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise LaicError(f"{source}: must be a list of corrections, one per line, such as\n  {EXAMPLE}\n"
                        f"got a {type(raw).__name__}")
    own = errors is None
    errors = [] if errors is None else errors
    out = []
    for i, entry in enumerate(raw):
        where = f"line {lines[i]}" if lines and i < len(lines) else f"entry {i + 1}"
        parsed = _parse_entry(entry, where, errors)
        if parsed:
            out.append(parsed)
    if own and errors:
        raise LaicError(f"{source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return out


def parse_corrections(raw: Any, source: str = "clusters.yaml",
                      lines: Sequence[int] | None = None) -> dict[str, Corrections]:
    """{method: Corrections} of every line taken as written, whatever run it names (None: none).

    Checks each entry (`parse_lines`) and the entries' consistency (a cluster merged twice,
    renamed after being merged away, both merged and junk); raises one LaicError listing every
    problem.
    """
    errors: list[str] = []
    parsed = parse_lines(raw, source, lines, errors)
    out = {m: combine([e for e in parsed if e.method == m], m, errors)
           for m in dict.fromkeys(e.method for e in parsed)}
    if errors:
        raise LaicError(f"{source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return out


def _parse_entry(entry: Any, where: str, errors: list[str]) -> Line | None:
    """One well-formed entry as a Line; else None and an error."""
    if isinstance(entry, _Repeated):
        twice = "; ".join(f"`{k}` {len(v)} times ({', '.join(map(repr, v))})" for k, v in entry.keys.items())
        errors.append(f"{where}: gives {twice}; YAML would keep only the last, so write each key once")
        return None
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
    run = entry.get("run")
    if run is not None and (isinstance(run, bool) or not isinstance(run, (str, int)) or not str(run).strip()
                            or any(c.isspace() for c in str(run).strip())):
        errors.append(f"{where}: `run` is the fingerprint of the run the line was written for, as the browser "
                      f"writes it (such as k3f09a1c), got {run!r}; or leave `run` out")
        return None
    run = None if run is None else str(run).strip()
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
        return Line(where, method, action, (k,), text, run)
    ids = _id_list(value)
    if action == "merge" and (ids is None or len(ids) < 2 or len(set(ids)) != len(ids)):
        errors.append(f"{where}: merge takes a list of two or more different cluster ids, such as [2, 5], "
                      f"got {value!r}")
        return None
    if ids is None:
        errors.append(f"{where}: junk takes a cluster id or a list of ids (integers >= 0), got {value!r}")
        return None
    return Line(where, method, action, tuple(dict.fromkeys(ids)), "", run)


def combine(entries: Sequence[Line], method: str, errors: list[str]) -> Corrections:
    """One method's lines (all for one partition) as Corrections; conflicts between lines become errors."""
    rename: dict[int, str] = {}
    renamed_where: dict[int, str] = {}
    merge: dict[int, int] = {}
    merged_where: dict[int, str] = {}  # every id in a merge (targets included) -> its line
    junk: dict[int, str] = {}
    for line in entries:
        where, action, ids = line.where, line.action, line.ids
        if action == "rename":
            if ids[0] in rename:
                errors.append(f"{where}: cluster {ids[0]} of {method} is renamed twice")
            rename[ids[0]], renamed_where[ids[0]] = line.name, where
        elif action == "merge":
            twice = [k for k in ids if k in merged_where]
            if twice:
                errors.append(f"{where}: cluster(s) {', '.join(map(str, twice))} of {method} already in the "
                              f"merge on {merged_where[twice[0]]}; list the whole group in one merge")
                continue
            merged_where.update(dict.fromkeys(ids, where))
            merge.update({k: ids[0] for k in ids[1:]})
        else:
            for k in ids:
                junk.setdefault(k, where)
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


def _clusters_left(corr: Corrections, n: int, labels: np.ndarray | None) -> list[int]:
    if labels is None:
        return remaining_clusters(corr, n)
    return sorted(set(np.unique(corrected_labels(labels, corr, n)).tolist()) - {JUNK})


def corrections_record(corrections: Mapping[str, Corrections]) -> dict[str, Any]:
    """{method: Corrections.record()} of the methods with corrections, sorted: what a run applied."""
    return {m: corrections[m].record() for m in sorted(corrections) if corrections[m]}



# ------------------------------------------------------------------ lines bound to runs


@dataclass(frozen=True)
class Partition:
    """One method's clusters in one run, as the lines written for that run name them.

    run: its fingerprint; labels: (N,) its cluster of each image of the run at hand (-1: an image
    it did not hold, or put in no cluster); sizes: (n_clusters,) the size of each of its clusters
    over all its images (images the run at hand no longer has included).
    """

    run: str
    labels: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, run: str, labels, n_clusters: int | None = None) -> Partition:
        """The partition of the run at hand: its own (N,) labels, sizes counted from them."""
        labels = np.asarray(labels, dtype=np.int64)
        n = max(int(n_clusters or 0), int(labels.max()) + 1 if labels.size else 0)
        return cls(run, labels, np.bincount(labels[labels >= 0], minlength=n))

    @property
    def n_clusters(self) -> int:
        return int(self.sizes.size)


def _pct(x: float) -> str:
    """A share in percent; one decimal next to a half, where the rule's "more than half" lies."""
    return f"{100 * x:.1f}%" if abs(x - CLEAR_SHARE) < 0.005 and x != CLEAR_SHARE else f"{100 * x:.0f}%"


@dataclass(frozen=True)
class Match:
    """Where the images of one cluster of an old partition are in the new one.

    best: the new cluster holding most of them (None: none is in the new run); count: how many of
    them it holds, of `size`; share = count / size; purity: the share of `best`'s images that
    come from the line's clusters; top: [(new cluster, share)] of the three that hold most;
    clear: share and purity both above CLEAR_SHARE.
    """

    old: int
    best: int | None
    count: int
    size: int
    share: float
    purity: float
    top: tuple[tuple[int, float], ...]

    @property
    def clear(self) -> bool:
        return self.best is not None and self.share > CLEAR_SHARE and self.purity > CLEAR_SHARE

    def text(self) -> str:
        """In words: "3 -> cluster 5: 88% of its images (57 of 65), 93% of cluster 5", or why not."""
        k = self.old
        if self.size == 0:
            return f"cluster {k} held no images in that run"
        if self.best is None:
            return f"none of cluster {k}'s {self.size} images is in this run"
        if self.clear:
            return (f"{k} \u2192 cluster {self.best}: {_pct(self.share)} of its images ({self.count} of "
                    f"{self.size}), {_pct(self.purity)} of cluster {self.best}")
        if self.share <= CLEAR_SHARE:
            rest = 1 - sum(s for _, s in self.top)
            parts = [f"{_pct(s)} in {j}" for j, s in self.top] + ([f"{_pct(rest)} elsewhere"] if rest > 0.005 else [])
            return f"cluster {k}'s {self.size} images are split ({', '.join(parts)}): no cluster holds most of them"
        return (f"cluster {self.best} holds {_pct(self.share)} of cluster {k}'s images, but they are only "
                f"{_pct(self.purity)} of it: it is mostly other images")


def carry(old: Partition, new_labels, n_new: int, ids: Sequence[int]) -> list[Match]:
    """Where each cluster `ids` of `old` went in the new partition (N,) new_labels in 0..n_new-1.

    The match of old cluster k is the new cluster j holding most of its images; it is clear when
    j holds more than CLEAR_SHARE of k's images (all of them, images gone since included) and
    those images, with those of the line's other clusters `ids`, are more than CLEAR_SHARE of j
    (so a junk [7, 8] or a merge [2, 5] carries to a cluster that already joins 7 and 8).
    """
    new_labels = np.asarray(new_labels, dtype=np.int64)
    in_new = new_labels >= 0
    new_sizes = np.bincount(new_labels[in_new], minlength=n_new)
    from_group = np.bincount(new_labels[np.isin(old.labels, list(ids)) & in_new], minlength=n_new)
    out = []
    for k in ids:
        size = int(old.sizes[k]) if 0 <= k < old.n_clusters else 0
        counts = np.bincount(new_labels[(old.labels == k) & in_new], minlength=n_new)
        order = np.lexsort((np.arange(counts.size), -counts))[:3]
        top = tuple((int(j), counts[j] / size) for j in order if counts[j] > 0 and size)
        if not top:
            out.append(Match(int(k), None, 0, size, 0.0, 0.0, ()))
            continue
        best = top[0][0]
        out.append(Match(int(k), best, int(counts[best]), size, float(counts[best] / size),
                         float(from_group[best] / new_sizes[best]), top))
    return out


@dataclass(frozen=True)
class Outcome:
    """What became of one line in this run.

    status: APPLIED (as written: it was made for this run's clusters), CARRIED (to this run's
    clusters `ids`) or SET_ASIDE; detail: how it was carried, or why it was set aside; run: the
    partition the line is bound to; rewrite: for a carried line, the same correction written for
    this run (paste it in place of the old line to bind it here).
    """

    line: Line
    status: str
    ids: tuple[int, ...] = ()
    detail: str = ""
    run: str | None = None
    rewrite: str = ""

    def text(self) -> str:
        """One line for a person: "line 3 `- {...}` carried: 3 -> cluster 5: 88% of its images ..."."""
        said = f"{self.line.where}: {self.line.yaml()} {self.status}"
        return said + (f": {self.detail}" if self.detail else "")

    def record(self) -> dict[str, Any]:
        return {"where": self.line.where, "method": self.line.method, "line": self.line.yaml(),
                "status": self.status, "ids": list(self.ids), "detail": self.detail, "run": self.run,
                "rewrite": self.rewrite}


@dataclass
class Resolution:
    """The lines of a corrections file resolved against one run.

    corrections: {method: Corrections} in this run's ids, only what was applied or carried;
    outcomes: one per line, in file order; bindings: {line key: [run or None per occurrence]} of
    the lines without a `run`, to keep for the next run (the caller stores them).
    """

    corrections: dict[str, Corrections]
    outcomes: list[Outcome]
    bindings: dict[str, list[str | None]]

    def of(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    def runs(self) -> set[str]:
        """The partitions the lines are bound to (what the caller must keep)."""
        return {o.run for o in self.outcomes if o.run}

    def summary(self) -> str:
        """"2 lines carried to this run's clusters, 1 set aside" ("" when every line applied as written)."""
        carried, aside = len(self.of(CARRIED)), len(self.of(SET_ASIDE))
        if not carried and not aside:
            return ""
        lines = lambda n: f"{n} line" + ("" if n == 1 else "s")  # noqa: E731
        return ", ".join(([f"{lines(carried)} carried to this run's clusters"] if carried else [])
                         + ([f"{lines(aside)} set aside" if not carried else f"{aside} set aside"] if aside else []))


def resolve(lines: Sequence[Line], current: Mapping[str, Partition], known: Mapping[str, Partition],
            bindings: Mapping[str, Sequence[str | None]] | None = None,
            source: str = "clusters.yaml", problems: Sequence[str] = ()) -> Resolution:
    """Apply each line to the run at hand, carry it from the run it was written for, or set it aside.

    current: {method: Partition} of this run (its labels are the run's own clusters); known: {run:
    Partition} of the earlier runs still kept, their labels aligned to this run's images;
    bindings: what an earlier `resolve` returned (None: no earlier run). A line's run is its `run`,
    else the binding of its key (the i-th line of a key takes the i-th binding), else this run
    (a new line: bound here when it applies). Raises one LaicError when the lines written for one
    partition contradict one another (`combine`), or when the lines made for this run alone leave
    no cluster, listing with them `problems` (the malformed entries `parse_lines` found); everything
    else a line could not do here sets it aside, with the reason.
    """
    bindings = bindings or {}
    seen: dict[str, int] = {}
    kept: dict[str, list[str | None]] = {}
    outcome: list[Outcome | None] = [None] * len(lines)
    exact: dict[str, list[tuple[int, Line]]] = {}
    older: dict[tuple[str, str], list[tuple[int, Line]]] = {}
    for i, line in enumerate(lines):
        run, fresh = line.run, False
        if run is None:
            key = line.key()
            nth = seen[key] = seen.get(key, -1) + 1
            earlier = list(bindings.get(key, []))
            run = earlier[nth] if nth < len(earlier) else None
            fresh = run is None
        now = current.get(line.method)
        if now is None:
            outcome[i] = Outcome(line, SET_ASIDE, detail=f"{line.method} has no clusters in this run (it has "
                                 f"{', '.join(current) or 'none'})", run=run)
        elif run is None or run == now.run:
            bad = [k for k in line.ids if k >= now.n_clusters]
            if bad:
                run = None if fresh else run  # never bound to a run it does not fit
                outcome[i] = Outcome(line, SET_ASIDE, run=run, detail=(
                    f"this run has no cluster {', '.join(map(str, bad))} (it has 0..{now.n_clusters - 1})"))
            else:
                run = now.run
                exact.setdefault(line.method, []).append((i, line))
        else:
            older.setdefault((line.method, run), []).append((i, line))
        if line.run is None:
            kept.setdefault(line.key(), []).append(run)

    errors: list[str] = list(problems)
    fixed = {m: combine([line for _, line in group], m, errors) for m, group in exact.items()}
    for i, line in (x for group in exact.values() for x in group):
        outcome[i] = Outcome(line, APPLIED, line.ids, run=current[line.method].run)
    candidates: list[tuple[int, Line]] = []  # (position, the line in this run's ids)
    for (method, run), group in older.items():
        combine([line for _, line in group], f"{method} (run {run})", errors)
        old, now = known.get(run), current[method]
        for i, line in group:
            bound = f"written for run {run}" if line.run else f"first seen at run {run}"
            if old is None:
                outcome[i] = Outcome(line, SET_ASIDE, run=run, detail=(
                    f"{bound}, which this project does not keep (it keeps the runs its lines name and the last "
                    f"two of each method), so nothing says where that cluster is now; write the line for this "
                    f"run (run: {now.run})"))
                continue
            bad = [k for k in line.ids if k >= old.n_clusters]
            if bad:
                outcome[i] = Outcome(line, SET_ASIDE, run=run, detail=(
                    f"run {run} had no cluster {', '.join(map(str, bad))} (it had 0..{old.n_clusters - 1})"))
                continue
            matches = carry(old, now.labels, now.n_clusters, line.ids)
            said = "; ".join(m.text() for m in matches)
            if not all(m.clear for m in matches):
                unclear = "; ".join(m.text() for m in matches if not m.clear)
                outcome[i] = Outcome(line, SET_ASIDE, run=run, detail=f"{bound}: {unclear}")
                continue
            targets = tuple(dict.fromkeys(m.best for m in matches))
            if line.action == "merge" and len(targets) < 2:
                outcome[i] = Outcome(line, CARRIED, (), f"{said}: already one cluster here, nothing to merge", run)
                continue
            if line.action == "merge" and len(targets) < len(line.ids):
                said += f" (clusters already together here count once: merge {list(targets)})"
            outcome[i] = Outcome(line, CARRIED, targets, said, run, line.yaml(targets, now.run))
            candidates.append((i, replace(line, ids=targets, run=now.run)))
    if errors:
        raise LaicError(f"{source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))

    accepted: dict[str, list[Line]] = {m: [line for _, line in g] for m, g in exact.items()}
    for i, line in sorted(candidates, key=lambda c: c[0]):
        trial: list[str] = []
        combine(accepted.get(line.method, []) + [line], line.method, trial)
        if trial:
            o = outcome[i]
            outcome[i] = replace(o, status=SET_ASIDE, ids=(), rewrite="", detail=(
                f"{o.detail}; but there it clashes with another line: {trial[0].split(': ', 1)[1]}"))
        else:
            accepted.setdefault(line.method, []).append(line)
    corrections: dict[str, Corrections] = {}
    for method, group in accepted.items():
        now = current[method]
        corr = combine(group, method, errors)
        if not _clusters_left(corr, now.n_clusters, now.labels):
            if not _clusters_left(fixed.get(method, Corrections()), now.n_clusters, now.labels):
                errors.append(f"{method}: the merges and junk leave no cluster (of {now.n_clusters}); keep at "
                              "least one")
                continue
            for i, o in enumerate(outcome):
                if o.status == CARRIED and o.line.method == method and o.line.action != "rename" and o.ids:
                    outcome[i] = replace(o, status=SET_ASIDE, ids=(), rewrite="",
                                         detail=f"{o.detail}; but with it no cluster of this run would be left")
            corr = combine([line for _, line in exact.get(method, [])]
                           + [replace(o.line, ids=o.ids) for o in outcome
                              if o.status == CARRIED and o.line.method == method and o.ids], method, [])
        corrections[method] = corr
    if errors:
        raise LaicError(f"{source} has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return Resolution({m: c for m, c in corrections.items() if c}, list(outcome), kept)


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
        parts.append(f"renamed from '{was}'" if was else "named by hand")
    return "; ".join(parts)


def change_lines(corr: Corrections, names: Sequence[str] | None = None) -> list[str]:
    """The corrections of one method in words, e.g. ["3 renamed 'dog' -> 'puppies'", "5 merged into 2",
    "junk: 7, 8"]; names: the run's names, to say what a renamed cluster was called."""
    lines = []
    for k, new in sorted(corr.rename.items()):
        was = names[k] if names is not None and k < len(names) and names[k] else ""
        lines.append(f"{k} renamed '{was}' \u2192 '{new}'" if was else f"{k} named '{new}'")  # as typed
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
