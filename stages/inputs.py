"""What a stage does before its work: read params.yaml, check what it reads against it, resolve temperatures.

    ctx = open_stage(params_file, [layout.features_meta("fit"), layout.SELECTED_NOUNS])
    params, tau = ctx.params, ctx.temperature("relation")

The check (`laic_core.provenance.check_against_params`) refuses artifacts made
by another model than the one params.yaml names now, and features of other
images than its dataset settings choose (`check_dataset`) or than the folder
holds now, when a stage is run by hand (`stages.guards`), naming the stale
file and `dvc repro`; a local checkpoint that is not complete is refused before
torch reads it, and a relative path missing from a DVC experiment's copy of
the project is named as such (`stages.guards`); temperatures set to `auto` resolve against the logit
scale those artifacts record (`laic_core.method.temperature`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import typer

from laic_core.artifacts import register_producers
from laic_core.config import Params, load_params
from laic_core.method.temperature import resolve_temperature
from laic_core.provenance import check_against_params, check_checkpoint, check_dataset
from stages import layout
from stages.guards import check_experiment_copy, check_images_unchanged

# Every stage's `--params` option: the parameters file, params.yaml unless told.
PARAMS_OPTION = typer.Option("params.yaml", "--params", help="parameters file")

# A damaged artifact (a truncated DVC cache object, a file cut short) names the stage to rerun.
register_producers({path: stage for stage, io in layout.STAGES.items() for path in io.outputs})


@dataclass(frozen=True)
class StageContext:
    params: Params
    provenance: dict[str, Any] = field(default_factory=dict)  # the model the checked artifacts record

    @property
    def logit_scale(self) -> float | None:
        return self.provenance.get("logit_scale")

    def temperature(self, section: str) -> float:
        """`<section>.tau` resolved for the model ('auto' -> `<section>.tau_relative` / its logit scale)."""
        settings = getattr(self.params, section)
        return resolve_temperature(settings.tau, settings.tau_relative, self.logit_scale, f"{section}.tau")


def open_stage(params_file: str | Path, checked: Sequence[str | Path] = ()) -> StageContext:
    """params.yaml, validated, and the provenance of `checked` artifacts, checked against its model
    (and the features among them against its dataset settings)."""
    params = load_params(params_file)
    check_experiment_copy(params, params_file)
    check_checkpoint(params.model.pretrained)  # before any stage hands it to torch
    provenance = (check_against_params(checked, params.model, params_file, layout.HASH_CACHE)
                  if checked else {})
    for role in layout.ROLES:
        if layout.features_meta(role) in map(Path, checked):
            check_dataset(layout.features_meta(role), role, params.dataset, params_file)
            check_images_unchanged(layout.features_meta(role), role, params.dataset)
    return StageContext(params, provenance)


def dataset_title(params: Params) -> str:
    """What was clustered: the benchmark's name, or the folder or manifest that was read."""
    if params.dataset.kind == "torchvision":
        return params.dataset.name
    return Path(params.dataset.root).name or str(params.dataset.root)
