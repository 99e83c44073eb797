"""The many-dataset table's domain logic: `dvc exp show --json` records in, table rows and text out.

Pure functions (no DVC calls, no subprocesses): stages/table.py runs
`dvc exp show --json` and hands its parsed output here. A `Record` is one
commit, experiment or workspace row with its params.yaml and
metrics/scores.json; `select_runs` picks the table's rows; `table_csv` and
`table_markdown` render them. Methods come in the registry's order with its
titles (laic_core.methods, through laic_core.report).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from laic_core.datasets import BENCHMARKS
from laic_core.errors import LaicError
from laic_core.report import comparison_columns, comparison_rows, render_comparison

SCORES_FILE = "metrics/scores.json"  # stages/layout.py's SCORES, as dvc exp show names it
PARAMS_FILE = "params.yaml"


@dataclass
class Record:
    """One row of `dvc exp show`: a commit, an experiment, or the workspace."""

    name: str
    rev: str
    timestamp: str | None
    params: dict = field(default_factory=dict)
    scores: dict | None = None
    kind: str = "experiment"  # experiment | baseline | workspace

    def param(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.params
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node


def _file_data(section: Any, path: str) -> dict | None:
    entry = section.get(path) if isinstance(section, Mapping) else None
    data = entry.get("data") if isinstance(entry, Mapping) else None
    return data if isinstance(data, dict) else None


def _record(node: Mapping, kind: str) -> Record | None:
    data = node.get("data")
    if not isinstance(data, Mapping):
        return None
    rev = str(node.get("rev") or data.get("rev") or "")
    return Record(
        name=str(node.get("name") or rev[:7]),
        rev=rev,
        timestamp=data.get("timestamp"),
        params=_file_data(data.get("params"), PARAMS_FILE) or {},
        scores=_file_data(data.get("metrics"), SCORES_FILE),
        kind="workspace" if rev == "workspace" else kind,
    )


def _walk(nodes: Any, kind: str) -> Iterator[Record]:
    for node in nodes or []:
        if not isinstance(node, Mapping):
            continue
        if "revs" in node:  # an experiment: a list of revs (checkpoints in old DVC)
            yield from _walk(node["revs"], "experiment")
            continue
        record = _record(node, kind)
        if record is not None:
            yield record
        yield from _walk(node.get("experiments"), "experiment")


def experiment_records(exp_show: Any) -> list[Record]:
    """Every commit, experiment and workspace row of `dvc exp show --json` output."""
    if not isinstance(exp_show, list):
        raise LaicError("unexpected `dvc exp show --json` output: expected a list of commits; "
                        "this command needs DVC 3")
    return list(_walk(exp_show, "baseline"))


def _order_key(dataset: str) -> tuple[int, str]:
    names = list(BENCHMARKS)
    return (names.index(dataset), "") if dataset in names else (len(names), dataset)


def select_runs(records: Sequence[Record], *, every_run: bool = False, include_workspace: bool = False,
                include_baselines: bool = True) -> list[tuple[str, Record]]:
    """[(row label, record)] for the table, in the benchmarks' order.

    Only records with scores count. By default one row per (dataset, model,
    pretrained): the newest; with `every_run`, every record, labelled with
    its experiment name. Labels are dataset names, extended with the model
    when two rows would otherwise share one.
    """
    kinds = {"experiment"} | ({"baseline"} if include_baselines else set()) | (
        {"workspace"} if include_workspace else set())
    scored = [r for r in records if r.scores and r.kind in kinds]
    if not every_run:
        newest: dict[tuple, Record] = {}
        for r in scored:
            key = (r.param("dataset.name"), r.param("model.name"), r.param("model.pretrained"))
            # ISO timestamps sort as strings; the workspace (no timestamp) loses ties
            if key not in newest or (r.timestamp or "") > (newest[key].timestamp or ""):
                newest[key] = r
        scored = list(newest.values())
    scored.sort(key=lambda r: (_order_key(str(r.param("dataset.name", r.name))), r.timestamp or ""))
    labels = [str(r.param("dataset.name", r.name)) for r in scored]
    out = []
    for label, r in zip(labels, scored):
        if every_run:
            label = f"{label} ({r.name})"
        elif labels.count(label) > 1:
            label = f"{label} ({r.param('model.name')}/{r.param('model.pretrained')})"
        out.append((label, r))
    return out


def table_csv(runs: Sequence[tuple[str, Record]], methods: Sequence[str] | None = None) -> str:
    """CSV text: dataset, experiment, rev, then <method>.<metric> as fractions."""
    methods, rows = comparison_rows([(label, r.scores or {}) for label, r in runs], methods)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "experiment", "rev"] + comparison_columns(methods))
    for (label, r), row in zip(runs, rows):
        writer.writerow([label, r.name, r.rev] + ["" if v is None else v for v in row[1:]])
    return buffer.getvalue()


def table_markdown(runs: Sequence[tuple[str, Record]], methods: Sequence[str] | None = None) -> str:
    """The Markdown table (percentages) plus where each row came from."""
    text = render_comparison([(label, r.scores or {}) for label, r in runs], methods,
                             title="LAIC results (eval split; ACC, NMI, ARI in percent)")
    sources = "\n".join(f"- {label}: {r.kind} `{r.name}` ({r.rev[:12]}, {r.timestamp or 'uncommitted'}), "
                        f"model {r.param('model.name')} ({r.param('model.pretrained')})"
                        for label, r in runs)
    return f"{text}\nRows:\n\n{sources}\n"
