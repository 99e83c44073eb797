"""The paper's ablation table and its Fig. 4, from `dvc exp show` records: which run is which variant.

The paper's claims are that relations to nouns give better neighbours and
pseudo-labels than the image features, that the consistency filter keeps
the pseudo-labels that are right, and that centers learned from nouns beat
k-means. Each claim has a switch in params.yaml (`SWITCHES`), and each
ablation `Variant` is the full method with one switch turned, so it is one
`dvc exp run -S key=value` that reruns only the stages after that switch.
`ours_notrain` (no center training) needs no run of its own: it is a
method column of every run.

Pure functions: stages/table.py runs the experiments (`variant_settings`)
and hands `dvc exp show --json` output here (`ablation_rows`,
`ablation_markdown`, `ablation_csv`); `notrain_rows` and `fig4_csv` give
Fig. 4 (k-means on C vs CLIP k-means vs TAC no-train) for the datasets of a
table, from any table's rows.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from laic_core.errors import LaicError
from laic_core.methods import title as method_title
from laic_core.scoring.metrics import SCORE_KEYS
from laic_core.views.experiments import (
    SEED_PARAMS, Record, RunGroup, Spread, _newer, _order_key, _seed_key, setting_key, spread, spread_cell,
)
from laic_core.views.report import MISSING, markdown_table

# The switch of each claim and its value in the full method (params.yaml's defaults).
SWITCHES: dict[str, str] = {
    "neighbors.space": "relation",
    "neighbors.filter": "consistency",
    "centers.init": "nouns",
    "relation.kind": "ridge",
}


@dataclass(frozen=True)
class Variant:
    name: str  # a short key: the CSV's and the experiment names'
    title: str  # the table's row
    settings: Mapping[str, str] = field(default_factory=dict)  # the switches it turns (SWITCHES' keys)
    method: str = "ours"  # the method of its runs that it scores

    @property
    def switches(self) -> dict[str, str]:
        """Every switch's value in its runs."""
        return {**SWITCHES, **self.settings}


VARIANTS: tuple[Variant, ...] = (
    Variant("full", "full method (ours)"),
    Variant("image_space", "neighbours and pseudo-labels from image features (no relational signal)",
            {"neighbors.space": "image"}),
    Variant("no_filter", "no consistency filter (every image reliable)", {"neighbors.filter": "none"}),
    Variant("no_training", "no center training (ours_notrain: k-means on C)", method="ours_notrain"),
    Variant("random_init", "centers started at random, not from nouns", {"centers.init": "random"}),
    Variant("softmax", "TAC's softmax relation instead of ridge", {"relation.kind": "softmax"}),
)
FULL = VARIANTS[0]
FIG4_METHODS = ("clip_kmeans", "tac_notrain", "ours_notrain")


def variant_names() -> list[str]:
    return [v.name for v in VARIANTS]


def variants_to_run(names: Sequence[str] | None = None) -> list[tuple[str, dict[str, str]]]:
    """[(run name, every switch's setting)]: one run per distinct setting of the chosen variants
    (`no_training` is scored on the full method's runs, so it adds none). Unknown names are an error."""
    chosen = list(VARIANTS) if not names else []
    for name in names or ():
        match = [v for v in VARIANTS if v.name == name]
        if not match:
            raise LaicError(f"--variant {name!r}: no such ablation variant; choose from {', '.join(variant_names())}")
        chosen.append(match[0])
    if not any(v.method == "ours" and not v.settings for v in chosen):
        chosen.insert(0, FULL)  # every comparison is with the full method
    runs: dict[str, tuple[str, dict[str, str]]] = {}
    for v in chosen:
        key = json.dumps(v.switches, sort_keys=True)
        if key not in runs:
            runs[key] = ("full" if not v.settings else v.name, v.switches)
    return list(runs.values())


def record_switches(record: Record) -> dict[str, str]:
    """A run's switch values (a key its params.yaml lacks, from before the switch existed, is the default)."""
    return {key: str(record.param(key, default)) for key, default in SWITCHES.items()}


def variants_of(record: Record) -> list[Variant]:
    """The variants a run is a run of (the full method's runs are also `no_training`'s); [] for none."""
    switches = record_switches(record)
    return [v for v in VARIANTS if v.switches == switches]


def base_key(record: Record) -> str:
    """What the runs of one ablation share: every parameter but the seed and the switches."""
    return setting_key(record, ignore=tuple(SEED_PARAMS) + tuple(SWITCHES))


@dataclass
class AblationColumn:
    """One dataset of the ablation table: per variant, its runs (the newest of each seed)."""

    dataset: str
    runs: dict[str, list[Record]]  # variant name -> runs, by seed
    label: str = ""
    hidden: int = 0  # other base settings of the same dataset and model left out

    def group(self, variant: str) -> RunGroup:
        return RunGroup(self.label, self.runs.get(variant, []))

    @property
    def newest(self) -> Record:
        best = None
        for runs in self.runs.values():
            for r in runs:
                if best is None or _newer(r, best):
                    best = r
        return best


def ablation_columns(records: Sequence[Record], *, include_workspace: bool = False) -> list[AblationColumn]:
    """The ablation's datasets in the benchmarks' order: per (dataset, model, pretrained) the newest
    base setting (parameters other than seed and switches) that has runs of the full method."""
    kinds = {"experiment", "baseline"} | ({"workspace"} if include_workspace else set())
    by_base: dict[str, dict[str, dict[str, Record]]] = {}
    for r in records:
        if not r.scores or r.kind not in kinds:
            continue
        for v in variants_of(r):
            per_seed = by_base.setdefault(base_key(r), {}).setdefault(v.name, {})
            seed = json.dumps(r.param("seed"), default=str)
            if seed not in per_seed or _newer(r, per_seed[seed]):
                per_seed[seed] = r
    columns: dict[tuple, list[AblationColumn]] = {}
    for variants in by_base.values():
        if FULL.name not in variants:
            continue
        runs = {name: sorted(per_seed.values(), key=lambda r: _seed_key(r.param("seed")))
                for name, per_seed in variants.items()}
        first = runs[FULL.name][0]
        column = AblationColumn(str(first.param("dataset.name", first.name)), runs)
        key = (first.param("dataset.name"), first.param("model.name"), first.param("model.pretrained"))
        columns.setdefault(key, []).append(column)
    out = []
    for same in columns.values():
        newest = same[0]
        for c in same[1:]:
            if _newer(c.newest, newest.newest):
                newest = c
        newest.hidden = len(same) - 1
        out.append(newest)
    out.sort(key=lambda c: (_order_key(c.dataset), c.newest.timestamp or ""))
    for c in out:
        c.label = c.dataset
        if sum(d.dataset == c.dataset for d in out) > 1:
            r = c.runs[FULL.name][0]
            c.label = f"{c.dataset} ({r.param('model.name')}/{r.param('model.pretrained')})"
    return out


def _score(record: Record, method: str, metric: str) -> Any:
    entry = (record.scores or {}).get(method)
    return entry.get(metric) if isinstance(entry, Mapping) else None


def variant_spread(column: AblationColumn, variant: Variant, metric: str) -> Spread:
    runs = column.runs.get(variant.name, [])
    return spread([_score(r, variant.method, metric) for r in runs])


def difference_spread(column: AblationColumn, variant: Variant, metric: str = "acc") -> Spread:
    """The variant minus the full method, paired by seed (the seeds both have)."""
    full = {json.dumps(r.param("seed"), default=str): r for r in column.runs.get(FULL.name, [])}
    diffs = []
    for r in column.runs.get(variant.name, []):
        other = full.get(json.dumps(r.param("seed"), default=str))
        a, b = _score(r, variant.method, metric), _score(other, FULL.method, metric) if other else None
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            diffs.append(a - b)
    return spread(diffs)


def _signed(s: Spread) -> str:
    if s.mean is None:
        return MISSING
    text = f"{100 * s.mean:+.1f}"
    return text if s.sd is None else f"{text} ± {100 * s.sd:.1f}"


def ablation_markdown(columns: Sequence[AblationColumn], command: str | None = None,
                      title: str = "Ablation of the paper's components") -> str:
    """The ablation table (rows: variants; columns: dataset x ACC/NMI/ARI, mean ± sd over seeds), the
    paired ACC differences to the full method, and where each column's runs came from."""
    if not columns:
        raise LaicError("no run of the full method found: run `python -m stages.table ablation` first")
    header = ["variant", "seeds"] + [f"{c.label} {k.upper()}" for c in columns for k in SCORE_KEYS]
    body = []
    for v in VARIANTS:
        n = [len(c.runs.get(v.name, [])) for c in columns]
        cells = [spread_cell(variant_spread(c, v, k), len(c.runs.get(v.name, []))) for c in columns for k in SCORE_KEYS]
        body.append([v.title, "/".join(map(str, n))] + cells)
    diff_header = ["variant"] + [f"{c.label} ACC" for c in columns] + [f"{c.label} NMI" for c in columns]
    diffs = [[v.title] + [_signed(difference_spread(c, v, "acc")) for c in columns]
             + [_signed(difference_spread(c, v, "nmi")) for c in columns] for v in VARIANTS if v is not FULL]
    parts = [f"# {title} (eval split; ACC, NMI, ARI in percent)"]
    if command:
        parts.append(f"Made by `{command}`.")
    parts += [markdown_table(header, body),
              "Mean ± standard deviation over seeds (sample sd); `seeds`: its runs of each dataset, in column order. "
              "Each variant is "
              f"the full method with one switch turned ({', '.join(f'`{k}`' for k in SWITCHES)}); "
              f"`no_training` is the {method_title('ours_notrain')} column of the full method's runs.",
              "Each variant minus the full method, paired by seed (points, mean ± sd):",
              markdown_table(diff_header, diffs)]
    lines = []
    for c in columns:
        r = c.runs[FULL.name][0]
        counts = ", ".join(f"{v.name} {len(c.runs.get(v.name, []))}" for v in VARIANTS if v.settings or v is FULL)
        lines.append(f"- {c.label}: model {r.param('model.name')} ({r.param('model.pretrained')}), "
                     f"seeds {', '.join(str(s) for s in c.group(FULL.name).seeds)}; runs: {counts}"
                     + (f"; {c.hidden} older setting(s) not shown" if c.hidden else ""))
    parts.append("Columns:\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"


def ablation_csv(columns: Sequence[AblationColumn]) -> str:
    """Long CSV: variant, title, dataset, method, metric, mean, sd, n_seeds, seeds, diff_mean, diff_sd
    (fractions; diff = the variant minus the full method, paired by seed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["variant", "title", "dataset", "method", "metric", "mean", "sd", "n_seeds", "seeds",
                     "diff_mean", "diff_sd"])
    for v in VARIANTS:
        for c in columns:
            runs = c.runs.get(v.name, [])
            for k in SCORE_KEYS:
                s, d = variant_spread(c, v, k), difference_spread(c, v, k)
                writer.writerow([v.name, v.title, c.label, v.method, k, _blank(s.mean), _blank(s.sd), s.n,
                                 ";".join(str(r.param("seed")) for r in runs),
                                 "" if v is FULL else _blank(d.mean), "" if v is FULL else _blank(d.sd)])
    return buffer.getvalue()


def _blank(value: float | None) -> Any:
    return "" if value is None else round(value, 6)


# ------------------------------------------------------------------ Fig. 4


@dataclass(frozen=True)
class NotrainRow:
    dataset: str
    method: str
    acc: Spread


def notrain_rows(groups: Sequence[RunGroup], metric: str = "acc") -> list[NotrainRow]:
    """Fig. 4's bars: per dataset (a table row), k-means on C (ours_notrain), CLIP k-means and TAC
    without training, mean and sd over the row's seeds."""
    out = []
    for g in groups:
        for m in FIG4_METHODS:
            s = spread([_score(r, m, metric) for r in g.runs])
            if s.mean is not None:
                out.append(NotrainRow(g.label, m, s))
    return out


def fig4_csv(rows: Sequence[NotrainRow]) -> str:
    """dataset, method, label, acc, sd, n_seeds (ACC in percent: the plot's axis); `label` is
    "<dataset> · <method title>", one bar each in `dvc plots show` (template bar_horizontal)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "method", "label", "acc", "sd", "n_seeds"])
    for r in rows:
        writer.writerow([r.dataset, r.method, f"{r.dataset} · {method_title(r.method)}",
                         round(100 * r.acc.mean, 3), "" if r.acc.sd is None else round(100 * r.acc.sd, 3), r.acc.n])
    return buffer.getvalue()


def full_groups(columns: Sequence[AblationColumn]) -> list[RunGroup]:
    """The full method's runs of each dataset, as table rows (for Fig. 4)."""
    return [c.group(FULL.name) for c in columns]
