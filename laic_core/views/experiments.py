"""The many-dataset table's domain logic: `dvc exp show --json` records in, table rows and text out.

Pure functions (no DVC calls, no subprocesses): stages/table.py runs
`dvc exp show --json` and hands its parsed output here. A `Record` is one
commit, experiment or workspace row with its params.yaml and
metrics/scores.json; `select_runs` picks the table's rows; `table_csv` and
`table_markdown` render them. Methods come in the registry's order with its
titles (laic_core.methods, through laic_core.views.report).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from laic_core.data.datasets import BENCHMARKS
from laic_core.errors import LaicError
from laic_core.methods import METHODS, ordered as ordered_methods, title as method_title
from laic_core.scoring.metrics import SCORE_KEYS
from laic_core.views.report import MISSING, markdown_table, percent

SCORES_FILE = "metrics/scores.json"  # stages/layout.py's SCORES, as dvc exp show names it
PARAMS_FILE = "params.yaml"
SEED_PARAMS = ("seed",)  # what differs between the runs a row pools


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


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'relation': {'tau': 0.02}} -> {'relation.tau': 0.02} (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def setting_key(record: Record, ignore: Sequence[str] = SEED_PARAMS) -> str:
    """What makes two runs the same setting: every parameter except `ignore` (the seed)."""
    params = {k: v for k, v in flat_params(record.params).items() if k not in ignore}
    return json.dumps(params, sort_keys=True, default=str)


def _order_key(dataset: str) -> tuple[int, str]:
    names = list(BENCHMARKS)
    return (names.index(dataset), "") if dataset in names else (len(names), dataset)


def _seed_key(seed: Any) -> tuple[int, float, str]:
    if isinstance(seed, (int, float)) and not isinstance(seed, bool):
        return (0, float(seed), "")
    return (1, 0.0, "" if seed is None else str(seed))


def _newer(a: Record, b: Record) -> bool:
    # ISO timestamps sort as strings; the workspace (no timestamp) loses ties
    return (a.timestamp or "") > (b.timestamp or "")


@dataclass
class RunGroup:
    """One row of the table: the runs of one setting, the newest run of each seed, by seed.

    `hidden` counts the other settings of the same (dataset, model,
    pretrained) left out of the table, and `hidden_keys` names the
    parameters they differ in (see select_runs).
    """

    label: str
    runs: list[Record]
    hidden: int = 0
    hidden_keys: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> list[Any]:
        return [r.param("seed") for r in self.runs]

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def newest(self) -> Record:
        newest = self.runs[0]
        for r in self.runs[1:]:
            if _newer(r, newest):
                newest = r
        return newest

    @property
    def dataset(self) -> str:
        return str(self.runs[0].param("dataset.name", self.runs[0].name))


def _by_setting(records: Sequence[Record]) -> list[list[Record]]:
    """Records grouped by setting_key; in each group the newest record per seed, ordered by seed."""
    groups: dict[str, dict[str, Record]] = {}
    for r in records:
        per_seed = groups.setdefault(setting_key(r), {})
        seed = json.dumps(r.param("seed"), default=str)
        if seed not in per_seed or _newer(r, per_seed[seed]):
            per_seed[seed] = r
    return [sorted(per_seed.values(), key=lambda r: _seed_key(r.param("seed"))) for per_seed in groups.values()]


def _differing_keys(groups: Sequence[Sequence[Record]], ignore: Sequence[str] = SEED_PARAMS) -> list[str]:
    """The parameters (dotted) whose values differ between the groups' first runs."""
    flats = [flat_params(g[0].params) for g in groups]
    keys = sorted({k for f in flats for k in f} - set(ignore))
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]


def select_runs(records: Sequence[Record], *, every_run: bool = False, every_setting: bool = False,
                include_workspace: bool = False, include_baselines: bool = True) -> list[RunGroup]:
    """The table's rows, in the benchmarks' order: one RunGroup each.

    Only records with scores count. Runs of the same setting (dataset,
    model, pretrained and every other parameter, the seed excepted) are
    pooled, one per seed (the newest when a seed ran twice), so that the
    table reports their mean and spread; runs differing in any other
    parameter are never pooled. By default one row per (dataset, model,
    pretrained): the setting with the newest run (the others are counted in
    `hidden`); with `every_setting`, one row per setting; with `every_run`,
    one row per record, nothing pooled. Labels are dataset names, extended
    with the model, then with the differing parameters, when two rows would
    otherwise share one (every_run: with the experiment name).
    """
    kinds = {"experiment"} | ({"baseline"} if include_baselines else set()) | (
        {"workspace"} if include_workspace else set())
    scored = [r for r in records if r.scores and r.kind in kinds]

    def model_key(r: Record) -> tuple:
        return (r.param("dataset.name"), r.param("model.name"), r.param("model.pretrained"))

    if every_run:
        groups = [RunGroup("", [r]) for r in scored]
    else:
        settings = _by_setting(scored)
        by_model: dict[tuple, list[list[Record]]] = {}
        for runs in settings:
            by_model.setdefault(model_key(runs[0]), []).append(runs)
        groups = []
        for same_model in by_model.values():
            if every_setting:
                groups += [RunGroup("", runs) for runs in same_model]
                continue
            shown = RunGroup("", same_model[0])
            for runs in same_model[1:]:
                if _newer(RunGroup("", runs).newest, shown.newest):
                    shown = RunGroup("", runs)
            others = [runs for runs in same_model if runs is not shown.runs]
            if others:
                shown.hidden = len(others)
                shown.hidden_keys = _differing_keys([shown.runs] + others)
            groups.append(shown)
    groups.sort(key=lambda g: (_order_key(g.dataset), g.newest.timestamp or ""))

    for g in groups:
        g.label = g.dataset
    if every_run:
        for g in groups:
            g.label = f"{g.dataset} ({g.runs[0].name})"
        return groups
    for g in groups:
        if sum(h.dataset == g.dataset for h in groups) > 1:
            r = g.runs[0]
            g.label = f"{g.dataset} ({r.param('model.name')}/{r.param('model.pretrained')})"
    for label in {g.label for g in groups}:
        same = [g for g in groups if g.label == label]
        if len(same) > 1:
            keys = _differing_keys([g.runs for g in same])
            for g in same:
                flat = flat_params(g.runs[0].params)
                g.label = f"{label} ({', '.join(f'{k}={flat.get(k)}' for k in keys)})"
    return groups


# ------------------------------------------------------------------ mean and spread over seeds


def comparison_columns(methods: Sequence[str], metrics: Sequence[str] = SCORE_KEYS) -> list[str]:
    """Flat column keys 'method.metric' in method-major order."""
    return [f"{m}.{k}" for m in methods for k in metrics]


def comparison_rows(runs: Sequence[tuple[str, Mapping[str, Mapping]]],
                    methods: Sequence[str] | None = None,
                    metrics: Sequence[str] = SCORE_KEYS) -> tuple[list[str], list[list[Any]]]:
    """(methods, rows): one row per run, [label, value per method x metric] (None where absent).

    runs: [(row label, scores dict)]; methods default to every method any run
    has, in the papers' order.
    """
    if methods is None:
        methods = ordered_methods(m for _, scores in runs for m, v in scores.items() if isinstance(v, Mapping))
    rows = []
    for label, scores in runs:
        row: list[Any] = [label]
        for m in methods:
            entry = scores.get(m) if isinstance(scores.get(m), Mapping) else {}
            row += [entry.get(k) for k in metrics]
        rows.append(row)
    return list(methods), rows


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (n - 1) of one score over the seeds that have it."""

    mean: float | None
    sd: float | None  # None for fewer than two values: a single run shows no spread
    n: int


def spread(values: Sequence[Any]) -> Spread:
    """Spread of the finite numbers among `values` (None, NaN and non-numbers are left out)."""
    xs = [float(v) for v in values
          if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not xs:
        return Spread(None, None, 0)
    # statistics computes with exact fractions: equal values give sd 0.0, not 7e-17
    return Spread(statistics.mean(xs),
                  statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


def table_methods(groups: Sequence[RunGroup], methods: Sequence[str] | None = None) -> list[str]:
    """The table's methods: `methods` as given, or every method any run has, in the registry's order.

    A requested method must be registered (laic_core.methods) or appear in a
    run's scores.
    """
    present = ordered_methods(m for g in groups for r in g.runs for m, v in (r.scores or {}).items()
                              if isinstance(v, Mapping))
    if methods is None:
        return present
    requested = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    unknown = [m for m in requested if m not in METHODS and m not in present]
    if unknown or not requested:
        known = ordered_methods(list(METHODS) + present)
        raise LaicError(f"--methods {','.join(unknown) or '(empty)'}: "
                        f"{'no such method' if unknown else 'name at least one method'}; "
                        f"choose from {', '.join(known)} (comma-separated, e.g. --methods ours,clip_kmeans)")
    return requested


def group_spreads(group: RunGroup, methods: Sequence[str],
                  metrics: Sequence[str] = SCORE_KEYS) -> list[Spread]:
    """One Spread per method x metric (method-major, as comparison_columns orders them)."""
    _, rows = comparison_rows([(r.name, r.scores or {}) for r in group.runs], methods, metrics)
    return [spread([row[1 + i] for row in rows]) for i in range(len(methods) * len(metrics))]


def _pooled(groups: Sequence[RunGroup]) -> bool:
    return any(g.n_seeds > 1 for g in groups)


def _seed_list(group: RunGroup) -> str:
    return ";".join("" if s is None else str(s) for s in group.seeds)


def table_csv(groups: Sequence[RunGroup], methods: Sequence[str] | None = None) -> str:
    """CSV text, scores as fractions.

    Single runs (no row pools seeds): dataset, experiment, rev, then
    <method>.<metric>. When any row pools several seeds: dataset,
    experiments, seeds (';'-separated), n_seeds, then <method>.<metric>.mean
    and .sd (sample sd; empty for a single run).
    """
    methods = table_methods(groups, methods)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = comparison_columns(methods)
    if not _pooled(groups):
        writer.writerow(["dataset", "experiment", "rev"] + columns)
        for g in groups:
            r = g.runs[0]
            writer.writerow([g.label, r.name, r.rev] + ["" if s.mean is None else s.mean
                                                        for s in group_spreads(g, methods)])
        return buffer.getvalue()
    writer.writerow(["dataset", "experiments", "seeds", "n_seeds"]
                    + [f"{c}.{stat}" for c in columns for stat in ("mean", "sd")])
    for g in groups:
        cells: list[Any] = []
        for s in group_spreads(g, methods):
            cells += ["" if s.mean is None else s.mean, "" if s.sd is None else s.sd]
        writer.writerow([g.label, ";".join(r.name for r in g.runs), _seed_list(g), g.n_seeds] + cells)
    return buffer.getvalue()


def spread_cell(s: Spread, n_seeds: int = 1) -> str:
    """'92.9 ± 0.4' (percent); '92.9' for a single value; '(n=2)' when fewer seeds than the row's have it."""
    if s.mean is None:
        return MISSING
    text = percent(s.mean) if s.sd is None else f"{percent(s.mean)} ± {100.0 * s.sd:.1f}"
    return text + (f" (n={s.n})" if 0 < s.n < n_seeds else "")


def _source(r: Record) -> str:
    return f"{r.kind} `{r.name}` ({r.rev[:12]}, {r.timestamp or 'uncommitted'})"


def table_markdown(groups: Sequence[RunGroup], methods: Sequence[str] | None = None) -> str:
    """The Markdown table (percentages; mean ± sd where a row pools seeds) plus where each row came from."""
    methods = table_methods(groups, methods)
    pooled = _pooled(groups)
    header = ["dataset"] + (["seeds"] if pooled else []) + [
        f"{method_title(m)} {k.upper()}" for m in methods for k in SCORE_KEYS]
    body = [[g.label] + ([str(g.n_seeds)] if pooled else [])
            + [spread_cell(s, g.n_seeds) for s in group_spreads(g, methods)] for g in groups]
    parts = ["# LAIC results (eval split; ACC, NMI, ARI in percent)", markdown_table(header, body)]
    if pooled:
        parts.append("Mean ± standard deviation over the seeds of each row (sample sd, n - 1); "
                     "a single run shows no spread; (n=2) marks a score fewer of the row's runs have.")
    lines = []
    for g in groups:
        r = g.runs[0]
        model = f"model {r.param('model.name')} ({r.param('model.pretrained')})"
        if g.n_seeds == 1:
            lines.append(f"- {g.label}: {_source(r)}, {model}")
        else:
            lines.append(f"- {g.label}: {g.n_seeds} seeds ({', '.join(map(str, g.seeds))}): "
                         + ", ".join(_source(x) for x in g.runs) + f"; {model}")
        if g.hidden:
            differ = f", differing in {', '.join(g.hidden_keys)}" if g.hidden_keys else ""
            lines.append(f"  - not shown: {g.hidden} older setting(s) of {g.label}{differ} "
                         "(`collect --every-setting` shows every setting)")
    parts.append("Rows:\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"
