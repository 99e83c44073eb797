"""Checks that only refuse to run a stage: they never shape an output, so they are plumbing.

- `check_images_unchanged`: a stage run by hand (`python -m stages.evaluate`, `browse`,
  `choose_k`) reads the features embed wrote, whatever happened to the images since.
  `dvc repro` would see a deleted or replaced image through data/listing/dataset.json and
  embed again; by hand, the features record the listing embed saw, and the images as
  they are now are listed again and compared. Under DVC it does nothing (DVC has done it).
- `check_experiment_copy`: `dvc exp run --queue` and `--temp` run in a copy of the project
  made from git under `.dvc/tmp/exps/`, which lacks every untracked or git-ignored file, so a
  relative `dataset.root` (or model or noun file) that exists in the workspace is missing
  there. The stage says so, and what to do, instead of "does not exist".

tests/test_layout.py counts this module as plumbing (INFRASTRUCTURE): its imports, the dataset
registry among them, are not a stage's code dependencies, so a change there reruns no stage.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from laic_core.artifacts import load_parquet, load_parquet_meta
from laic_core.data.datasets import BENCHMARKS, load_split, split_listing
from laic_core.errors import LaicError, name_some
from laic_core.provenance import CHECKPOINT_SUFFIXES, looks_like_path
from stages import layout
from stages.runner import under_dvc

EXPERIMENT_COPIES = os.path.join(".dvc", "tmp", "exps")  # where dvc exp run --queue / --temp runs each one


def check_images_unchanged(artifact: str | Path, role: str, dataset: Any) -> None:
    """A LaicError when the features `artifact` (of the fit or eval split) were embedded from other
    images than dataset.root holds now, naming the images gone and new. Only for a stage run by
    hand; features that record no listing (a benchmark downloaded once, an older laic) pass."""
    if under_dvc():
        return
    meta = load_parquet_meta(artifact)
    recorded = meta.get("listing")
    if not isinstance(recorded, dict) or "sha256" not in recorded:
        return
    split = dataset.fit_split if role == "fit" else dataset.eval_split
    found = load_split(dataset.kind, dataset.name, dataset.root, split, download=False)
    mode = recorded.get("listing", "stat")  # as embed listed them, whatever dataset.listing says now
    if split_listing(found, mode, layout.IMAGE_HASH_CACHE)["sha256"] == recorded["sha256"]:
        return
    then = [str(s) for s in load_parquet(artifact)["source"]] + [str(s) for s in meta.get("skipped") or []]
    now = found.sources()
    then_set, now_set = set(then), set(now)
    gone = [s for s in then if s not in now_set]
    new = [s for s in now if s not in then_set]
    changes = [f"{len(gone)} gone: {name_some(gone, 5)}"] if gone else []
    changes += [f"{len(new)} new: {name_some(new, 5)}"] if new else []
    if not changes:
        changes = ["none gone or new: some were replaced in place, or their labels changed"]
    where = f"listed in {found.name}" if dataset.kind == "manifest" else f"under {found.name}"
    raise LaicError(f"{artifact}: the images {where} have changed since embed read them "
                    f"({'; '.join(changes)}); run `dvc repro`, which embeds them again and reruns what "
                    "follows (a stage run by hand would show the features as they were)")


def experiment_copy(cwd: str | Path | None = None) -> Path | None:
    """The project a DVC experiment copy was made from, when `cwd` lies in one (.dvc/tmp/exps/...)."""
    cwd = os.path.abspath(cwd or os.getcwd())
    at = (cwd + os.sep).find(os.sep + EXPERIMENT_COPIES + os.sep)
    return Path(cwd[:at]) if at >= 0 else None


def _path_settings(params: Any) -> list[tuple[str, str]]:
    """(key, value) of the settings that name files or folders, as params.yaml gives them."""
    ds, model, vocab = params.dataset, params.model, params.vocab
    bench = BENCHMARKS.get(ds.name)
    downloaded = ds.kind == "torchvision" and bench is not None and bench.downloaded and ds.download
    out = [] if downloaded else [("dataset.root", ds.root)]  # a download into the copy works (once per copy)
    if looks_like_path(model.name):
        out.append(("model.name", model.name))
    if model.pretrained not in ("none", "") and (looks_like_path(model.pretrained)
                                                 or model.pretrained.endswith(CHECKPOINT_SUFFIXES)):
        out.append(("model.pretrained", model.pretrained))
    if vocab.source != "wordnet":
        out.append(("vocab.source", vocab.source))
    if vocab.exclude != "none":
        out.append(("vocab.exclude", vocab.exclude))
    return out


def _git_ignored(project: Path, path: str) -> bool:
    try:
        done = subprocess.run(["git", "-C", str(project), "check-ignore", "-q", "--", path],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def check_experiment_copy(params: Any, params_file: str | Path = "params.yaml") -> None:
    """A LaicError for a relative path setting that is missing because this stage runs in a DVC
    experiment's copy of the project (which holds only what git tracks)."""
    project = experiment_copy()
    if project is None:
        return
    for key, value in _path_settings(params):
        original = os.path.normpath(project / value)
        if os.path.isabs(value) or os.path.exists(value) or not os.path.exists(original):
            continue  # there, or missing from the project too (then the usual error names it)
        outside = Path(os.path.normpath(value)).parts[:1] == ("..",)
        if outside:
            why, track = "lies outside the project, so it is looked for beside the copy", ""
        else:
            why = "is ignored by git (.gitignore)" if _git_ignored(project, value) else "is not committed to git"
            track = f", track it (`dvc add {value}` and commit the `.dvc` file, or commit it to git)"
        raise LaicError(
            f"{key}: {value} does not exist in this experiment's copy of the project ({os.getcwd()}): "
            f"`dvc exp run --queue` (and --temp) runs each experiment in a copy made from git, and {value} {why}; "
            f"set {key} in {params_file} to an absolute path ({original}){track}, or run the experiment in the "
            "workspace (`dvc exp run` without --queue or --temp)")
