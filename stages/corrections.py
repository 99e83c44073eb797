"""clusters.yaml against a run: the partitions its lines were written for, kept between runs (not a stage).

evaluate resolves the file against the run (`resolve_run`): each line is applied
as written, carried to this run's clusters, or set aside
(laic_core.scoring.corrections.resolve); it prints what was carried and set
aside and keeps, in layout.CORRECTION_RUNS (a persistent output of evaluate, so
DVC neither deletes it before a run nor restores it from the run cache), the
partitions that the file's lines name plus the last KEEP_RECENT of each
method, and the run each line without a `run` was first seen at. export and
predict take the corrections as evaluate resolved them (`applied`), after
checking that clusters.yaml still says what evaluate read.

The partitions file: one row per image any kept partition holds (`source`),
one int32 column per partition (its fingerprint; -1 where it did not hold the
image), and in its metadata each partition's method and number of clusters,
the recent ones per method, and the bindings.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from laic_core.artifacts import load_parquet, load_parquet_meta, save_parquet
from laic_core.errors import LaicError
from laic_core.scoring.corrections import (
    CARRIED, SET_ASIDE, Corrections, Line, Partition, Resolution, fingerprint, parse_lines, read_corrections,
    resolve, sources_digest,
)
from stages import layout

KEEP_RECENT = 2  # partitions kept per method besides those lines name: this run's and the one before
STORE_VERSION = 1


def read_lines(path=layout.CORRECTIONS, errors: list[str] | None = None) -> list[Line]:
    """The well-formed lines of clusters.yaml (missing: none); a malformed entry is an error (or, given
    `errors`, appended to it)."""
    raw, lines = read_corrections(path)
    return parse_lines(raw, str(path), lines, errors)


def canonical(lines: Sequence[Line]) -> list[list[Any]]:
    """What the lines say, JSON-ready: evaluate records it, export and predict compare it."""
    return [line.canonical() for line in lines]


@dataclass
class Store:
    """The partitions kept between runs (see the module's docstring)."""

    sources: list[str] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # run -> (len(sources),) int32
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run -> {"method", "clusters"}
    recent: dict[str, list[str]] = field(default_factory=dict)  # method -> runs, newest first
    bindings: dict[str, list[str | None]] = field(default_factory=dict)

    def partitions(self, sources: Sequence[str], wanted: set[str]) -> dict[str, Partition]:
        """{run: Partition} of the `wanted` runs kept, their labels aligned to `sources` (this run's)."""
        wanted = [r for r in wanted if r in self.columns]
        if not wanted:
            return {}
        at = pd.Index(self.sources).get_indexer(pd.Index(list(sources)))
        out = {}
        for run in wanted:
            column = self.columns[run].astype(np.int64)
            n = int(self.runs[run].get("clusters", 0))
            labels = np.where(at >= 0, column[np.clip(at, 0, None)], -1) if len(column) else np.full(len(at), -1)
            out[run] = Partition(run, labels, np.bincount(column[column >= 0], minlength=n))
        return out


def load_store(path=layout.CORRECTION_RUNS) -> Store:
    """The kept partitions (missing: none). An unreadable file is said and started afresh: what it
    held only carries lines written for other runs, and such a line is then set aside, never misapplied."""
    if not path.exists():
        return Store()
    try:
        table, meta = load_parquet(path), load_parquet_meta(path)
        if meta.get("version") != STORE_VERSION or "source" not in table.columns:
            raise ValueError(f"version {meta.get('version')!r}")
        runs = {str(r): dict(v) for r, v in (meta.get("runs") or {}).items() if str(r) in table.columns}
        return Store(table["source"].astype(str).tolist(),
                     {r: table[r].to_numpy(np.int32) for r in runs}, runs,
                     {m: [r for r in v if r in runs] for m, v in (meta.get("recent") or {}).items()},
                     {str(k): list(v) for k, v in (meta.get("bindings") or {}).items()})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"evaluate: warning: {path} unreadable ({exc}); the runs earlier lines of {layout.CORRECTIONS} were "
              "written for are unknown, so such lines are set aside", file=sys.stderr)
        return Store()


def updated_store(store: Store, sources: Sequence[str], current: Mapping[str, Partition],
                  resolution: Resolution) -> Store:
    """The store after this run: this run's partitions added (the newest of each method), then only the
    partitions the lines are bound to and the KEEP_RECENT newest of each method kept."""
    recent = {m: list(v) for m, v in store.recent.items()}
    for method, part in current.items():
        recent[method] = [part.run] + [r for r in recent.get(method, []) if r != part.run]
    bound = resolution.runs() | {r for runs in resolution.bindings.values() for r in runs if r}
    keep = bound | {r for runs in recent.values() for r in runs[:KEEP_RECENT]}
    new = {p.run: (m, p) for m, p in current.items()}
    keep_old = [r for r in store.columns if r in keep and r not in new]
    # rows: this run's images first, then those only kept partitions still hold
    old_at = pd.Index(store.sources)
    rows = list(sources)
    if keep_old:
        held = np.zeros(len(old_at), dtype=bool)
        for run in keep_old:
            held |= store.columns[run] >= 0
        rows += old_at[held & ~old_at.isin(pd.Index(rows))].tolist()
    index = pd.Index(rows)
    columns: dict[str, np.ndarray] = {}
    runs: dict[str, dict[str, Any]] = {}
    for run in keep_old:
        col = np.full(len(rows), -1, dtype=np.int32)
        src = index.get_indexer(old_at)
        ok = src >= 0
        col[src[ok]] = store.columns[run][ok]
        columns[run], runs[run] = col, store.runs[run]
    for run, (method, part) in new.items():
        col = np.full(len(rows), -1, dtype=np.int32)
        col[:len(sources)] = part.labels
        columns[run], runs[run] = col, {"method": method, "clusters": part.n_clusters}
    return Store(rows, columns, runs, {m: [r for r in v if r in runs] for m, v in recent.items()},
                 {k: v for k, v in resolution.bindings.items()})


def save_store(store: Store, path=layout.CORRECTION_RUNS) -> None:
    table = pd.DataFrame({"source": store.sources, **store.columns})
    save_parquet(path, table, {"version": STORE_VERSION, "runs": store.runs, "recent": store.recent,
                               "bindings": store.bindings})


@dataclass
class RunCorrections:
    """clusters.yaml resolved against one run: what evaluate applies, prints and records."""

    lines: list[Line]
    current: dict[str, Partition]
    resolution: Resolution
    store: Store

    @property
    def corrections(self) -> dict[str, Corrections]:
        return self.resolution.corrections

    def meta(self) -> dict[str, Any]:
        """What the per-image table records: the lines read, the fingerprint of each method's partition
        (the browser writes it into the lines it suggests) and what became of each line."""
        return {"lines": canonical(self.lines), "partitions": {m: p.run for m, p in self.current.items()},
                "resolution": [o.record() for o in self.resolution.outcomes]}


def partitions_of(sources: Sequence[str], assignments: Mapping[str, np.ndarray],
                  counts: Mapping[str, int]) -> dict[str, Partition]:
    """{method: Partition} of a run: each method's clusters with its fingerprint."""
    digest = sources_digest(sources)
    return {m: Partition.of(fingerprint(labels, digest), labels, counts[m]) for m, labels in assignments.items()}


def resolve_run(sources: Sequence[str], assignments: Mapping[str, np.ndarray],
                counts: Mapping[str, int]) -> RunCorrections:
    """clusters.yaml resolved against the run whose eval images are `sources` and whose raw clusters are
    `assignments` ({method: (N,)}, counts {method: number of clusters}); the store as it should be kept."""
    problems: list[str] = []
    lines = read_lines(errors=problems)
    current = partitions_of(sources, assignments, counts)
    store = load_store()
    wanted = {line.run for line in lines if line.run} | {r for v in store.bindings.values() for r in v if r}
    # the partitions the lines name; one may also be another method's partition in this run (methods that
    # cluster alike, or put every image in one cluster, share a fingerprint)
    known = {**store.partitions(sources, wanted), **{p.run: p for p in current.values()}}
    resolution = resolve(lines, current, known, store.bindings, str(layout.CORRECTIONS), problems)
    return RunCorrections(lines, current, resolution, updated_store(store, sources, current, resolution))


def announce(resolution: Resolution, stage: str = "evaluate", where: str = "") -> None:
    """Say on stdout what was carried and what set aside (nothing when every line applied as written)."""
    summary = resolution.summary()
    if not summary:
        return
    print(f"{stage}: {layout.CORRECTIONS}: {summary}" + (f" ({where})" if where else ""))
    for o in resolution.of(CARRIED) + resolution.of(SET_ASIDE):
        print(f"{stage}:   {o.text()}")
        if o.rewrite:
            print(f"{stage}:     for this run write it as: {o.rewrite}")
    if resolution.of(SET_ASIDE):
        print(f"{stage}:   a line set aside is not applied until you write it for this run's clusters (the browser "
              "shows each cluster's line, with this run's `run:`) or delete it")


def applied(meta: Mapping[str, Any], stage: str) -> dict[str, Corrections]:
    """The corrections evaluate applied ({method: Corrections}, from the per-image table's metadata),
    once clusters.yaml is checked to say what evaluate read; `stage` names the caller in the message."""
    recorded = meta.get("lines", None if meta.get("corrections") else [])  # older tables: no lines
    if canonical(read_lines()) != recorded:
        raise LaicError(f"{layout.CORRECTIONS} changed since {layout.ASSIGNMENTS_PARQUET} was written; run "
                        f"`dvc repro` first, so that {stage} uses the corrections the table, the report and the "
                        "browser show")
    return {m: Corrections.from_record(r) for m, r in (meta.get("corrections") or {}).items()}


def outcomes(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The carried and set-aside lines evaluate recorded (records of laic_core Outcome), in file order."""
    return [o for o in meta.get("resolution") or [] if o.get("status") in (CARRIED, SET_ASIDE)]
