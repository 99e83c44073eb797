"""The paper's ablation: its switches, the command that runs it, its table and Fig. 4."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from laic_core.config import params_from_dict
from laic_core.errors import LaicError
from laic_core.method.neighbors import PSEUDO_LABELS, consistency_filter, reliable_mask
from laic_core.text.prompts import PromptLearner
from laic_core.views.ablation import (
    SWITCHES, VARIANTS, ablation_columns, ablation_csv, ablation_markdown, fig4_csv, full_groups, notrain_rows,
    variants_of, variants_to_run,
)
from laic_core.views.experiments import experiment_records

# ------------------------------------------------------------------ switches


def test_switches_default_to_the_method_and_are_validated():
    p = params_from_dict({})
    assert (p.neighbors.space, p.neighbors.filter, p.centers.init, p.relation.kind) == (
        "relation", "consistency", "nouns", "ridge")
    assert {k: str(v) for k, v in SWITCHES.items()} == {
        "neighbors.space": p.neighbors.space, "neighbors.filter": p.neighbors.filter,
        "centers.init": p.centers.init, "relation.kind": p.relation.kind}
    with pytest.raises(LaicError) as err:
        params_from_dict({"neighbors": {"space": "pixels", "filter": "off"}, "centers": {"init": "zeros"}})
    text = str(err.value)
    assert "neighbors.space: 'pixels'" in text and "neighbors.filter: 'off'" in text and "centers.init: 'zeros'" in text


def test_every_switch_is_a_param_of_the_stage_it_changes():
    import yaml
    from pathlib import Path

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]

    def listed(stage, key):
        section = key.split(".")[0]
        return key in stages[stage]["params"] or section in stages[stage]["params"]

    assert listed("neighbors", "neighbors.space") and listed("neighbors", "neighbors.filter")
    assert listed("centers", "centers.init") and listed("relation", "relation.kind")
    # the variants rerun only from their stage on: nothing upstream lists them
    for stage in ("embed", "vocab", "nouns", "relation"):
        assert not any(listed(stage, k) for k in ("neighbors.space", "neighbors.filter", "centers.init"))


def test_no_filter_makes_every_image_reliable():
    knn = np.array([[1, 2], [0, 2], [0, 1], [0, 1]])
    pseudo = np.array([0, 0, 0, 1])
    assert reliable_mask(knn, pseudo, 1.0).tolist() == consistency_filter(knn, pseudo, 1.0).tolist() == [
        True, True, True, False]
    assert reliable_mask(knn, pseudo, 1.0, "none").tolist() == [True] * 4
    with pytest.raises(LaicError, match="neighbors.filter"):
        reliable_mask(knn, pseudo, 1.0, "off")
    assert PSEUDO_LABELS == {"relation": "ours_notrain", "image": "clip_kmeans"}


def test_random_centers_start_tied_to_no_noun(tiny_bundle):
    learner = PromptLearner(tiny_bundle.model, tiny_bundle.tokenizer, [""] * 3, 4, seed=0, random_init=True)
    assert not learner.template_init and learner.init_texts == ["X X X X ."] * 3
    with torch.no_grad():
        centers = learner()
    assert centers.shape[0] == 3 and torch.allclose(centers.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (centers @ centers.T - torch.eye(3)).abs().max() < 0.9999  # distinct: random contexts differ
    again = PromptLearner(tiny_bundle.model, tiny_bundle.tokenizer, [""] * 3, 4, seed=0, random_init=True)
    assert torch.equal(learner.ctx, again.ctx)  # seeded
    with pytest.raises(LaicError, match="empty word"):
        PromptLearner(tiny_bundle.model, tiny_bundle.tokenizer, ["dog", ""], 4)


# ------------------------------------------------------------------ the runs


def test_variants_to_run_share_the_full_methods_runs():
    runs = variants_to_run()
    assert [name for name, _ in runs] == ["full", "image_space", "no_filter", "random_init", "softmax"]
    assert all(set(s) == set(SWITCHES) for _, s in runs)  # every run sets every switch
    assert dict(runs)["image_space"] == {**SWITCHES, "neighbors.space": "image"}
    assert [name for name, _ in variants_to_run(["softmax"])] == ["full", "softmax"]
    assert [name for name, _ in variants_to_run(["no_training"])] == ["full"]  # a column of the full runs
    with pytest.raises(LaicError, match="no_trainning.*full, image_space"):
        variants_to_run(["no_trainning"])


def test_ablation_plan_for_a_benchmark_and_for_a_folder():
    from stages.table import ablation_plan, custom_dataset, dataset_settings

    plan = ablation_plan({"cifar10": dataset_settings("cifar10")}, [0, 1], {"model.name": "RN50"}, None,
                         prefix="ablation", stamp="T")
    assert len(plan) == 2 * 5
    what, cmd = plan[1]
    assert what == "cifar10 image_space seed 0"
    assert cmd[:5] == ["dvc", "exp", "run", "-n", "ablation-cifar10-image_space-s0-T"]
    line = " ".join(cmd)
    assert "-S neighbors.space=image" in line and "-S neighbors.filter=consistency" in line
    assert "-S model.name=RN50" in line and line.endswith("-S seed=0")
    name, settings = custom_dataset({"dataset.kind": "imagefolder", "dataset.root": "/photos/holiday/",
                                     "model.name": "x"})
    assert name == "holiday" and settings == {"dataset.name": "holiday", "dataset.kind": "imagefolder",
                                              "dataset.root": "/photos/holiday/"}
    with pytest.raises(LaicError, match="missing: dataset.root"):
        custom_dataset({"dataset.kind": "imagefolder"})
    with pytest.raises(LaicError, match="turns these switches itself"):
        ablation_plan({"x": {}}, [0], {"relation.kind": "softmax"}, None, prefix="a", stamp="T")


def _show(runs):
    """`dvc exp show --json` (DVC 3's shape) with one commit and experiments
    (name, timestamp, dataset, seed, switches, ours acc, ours_notrain acc)."""
    def node(name, timestamp, dataset, seed, switches, acc, notrain):
        params = {"seed": seed, "dataset": {"name": dataset}, "model": {"name": "m", "pretrained": "p"},
                  "tac": {"epochs": 1}}
        for key, value in switches.items():
            section, leaf = key.split(".")
            params.setdefault(section, {})[leaf] = value
        scores = {m: {"acc": a, "nmi": a - 0.1, "ari": a - 0.2} for m, a in (
            ("ours", acc), ("ours_notrain", notrain), ("clip_kmeans", 0.30), ("tac_notrain", 0.28))}
        rev = f"{abs(hash(name)):040x}"[:40]
        return {"rev": rev, "name": name, "data": {
            "rev": rev, "timestamp": timestamp, "params": {"params.yaml": {"data": params}},
            "metrics": {"metrics/scores.json": {"data": scores}}, "deps": {}, "outs": {}, "meta": {}},
            "error": None, "experiments": None}

    commit = {"rev": "a" * 40, "name": "main", "data": {"rev": "a" * 40, "timestamp": "2026-01-01T00:00:00",
                                                        "params": {}, "metrics": {}}, "experiments": None}
    commit["experiments"] = [{"revs": [node(*r)], "executor": None, "name": r[0]} for r in runs]
    return [commit]


def _runs():
    runs = []
    for seed in (0, 1):
        for variant in ("full", "image_space", "softmax"):
            switches = dict(next(s for n, s in variants_to_run() if n == variant))
            acc = {"full": 0.40, "image_space": 0.36, "softmax": 0.30}[variant] + 0.02 * seed
            runs.append((f"ablation-cifar10-{variant}-s{seed}", f"2026-01-02T00:0{seed}:00", "cifar10", seed,
                         switches, acc, 0.35 + 0.02 * seed))
    # a run from before the switches existed (no such keys in its params) counts as the full method
    runs.append(("table-dtd", "2026-01-02T00:05:00", "dtd", 0, {}, 0.25, 0.20))
    # a run that turned two switches is no variant
    runs.append(("two-switches", "2026-01-02T00:06:00", "cifar10", 0,
                 {"relation.kind": "softmax", "neighbors.filter": "none"}, 0.1, 0.1))
    return runs


def test_runs_are_recognised_by_their_switches():
    records = experiment_records(_show(_runs()))
    by_name = {r.name: [v.name for v in variants_of(r)] for r in records}
    assert by_name["ablation-cifar10-full-s0"] == ["full", "no_training"]
    assert by_name["ablation-cifar10-softmax-s1"] == ["softmax"]
    assert by_name["table-dtd"] == ["full", "no_training"]
    assert by_name["two-switches"] == []


def test_ablation_table_pools_seeds_and_pairs_differences():
    columns = ablation_columns(experiment_records(_show(_runs())))
    assert [c.label for c in columns] == ["cifar10", "dtd"]
    markdown = ablation_markdown(columns, "python -m stages.table ablation -d cifar10")
    assert "Made by `python -m stages.table ablation -d cifar10`." in markdown
    main = markdown.split("Each variant minus")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in main.splitlines() if line.startswith("| ")}
    assert "| 2/1 | 41.0 ± 1.4 | 31.0 ± 1.4 | 21.0 ± 1.4 | 25.0 |" in rows["full method (ours)"]
    assert "| 2/1 | 36.0 ± 1.4 |" in rows["no center training (ours_notrain: k-means on C)"]
    assert "| 2/0 | 31.0 ± 1.4 |" in rows["TAC's softmax relation instead of ridge"]
    # paired by seed: softmax is 10 points below the full method at both seeds (sd 0)
    assert "| TAC's softmax relation instead of ridge | -10.0 ± 0.0 | – |" in markdown
    assert "| neighbours and pseudo-labels from image features (no relational signal) | -4.0 ± 0.0 |" in markdown
    lines = ablation_csv(columns).splitlines()
    assert lines[0] == "variant,title,dataset,method,metric,mean,sd,n_seeds,seeds,diff_mean,diff_sd"
    softmax = [line for line in lines if line.startswith("softmax,") and ",cifar10,ours,acc," in line]
    assert len(softmax) == 1 and softmax[0].endswith(",0.31,0.014142,2,0;1,-0.1,0.0")
    with pytest.raises(LaicError, match="no run of the full method"):
        ablation_markdown([])


def test_fig4_has_the_no_train_methods_of_every_dataset():
    columns = ablation_columns(experiment_records(_show(_runs())))
    rows = notrain_rows(full_groups(columns))
    assert [(r.dataset, r.method) for r in rows] == [
        ("cifar10", "clip_kmeans"), ("cifar10", "tac_notrain"), ("cifar10", "ours_notrain"),
        ("dtd", "clip_kmeans"), ("dtd", "tac_notrain"), ("dtd", "ours_notrain")]
    lines = fig4_csv(rows).splitlines()
    assert lines[0] == "dataset,method,label,acc,sd,n_seeds"
    assert lines[3] == "cifar10,ours_notrain,cifar10 · ours (no train),36.0,1.414,2"
    assert lines[6] == "dtd,ours_notrain,dtd · ours (no train),20.0,,1"


def test_ablation_command_collects_the_table_and_fig4(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.table import app

    (tmp_path / "show.json").write_text(json.dumps(_show(_runs())))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ablation", "--collect-only", "--from-json", "show.json"])
    assert result.exit_code == 0, result.output
    assert "| full method (ours) |" in (tmp_path / "metrics/ablation.md").read_text()
    assert (tmp_path / "metrics/ablation.csv").is_file()
    assert (tmp_path / "metrics/fig4.csv").read_text().startswith("dataset,method,label,acc")
    assert (tmp_path / "metrics/fig4.png").read_bytes()[:4] == b"\x89PNG"
    # only the datasets with a variant besides the full method are ablation columns
    assert "| dtd" not in (tmp_path / "metrics/ablation.md").read_text()


def test_ablation_dry_run_for_a_folder_prints_every_variant(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.table import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ablation", "-S", "dataset.kind=imagefolder", "-S", "dataset.root=photos",
                                      "-S", "dataset.num_clusters=4", "--seeds", "0", "1", "--dry-run"])
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if line.startswith("$ dvc exp run")]
    assert len(commands) == 10 and all("-S dataset.root=photos" in c for c in commands)
    assert sum("-S centers.init=random" in c for c in commands) == 2
    clash = CliRunner().invoke(app, ["ablation", "-d", "cifar10", "-S", "dataset.root=x", "--dry-run"])
    assert clash.exit_code != 0 and "either -d or your own dataset" in str(clash.exception)


def test_collect_also_draws_fig4(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.table import app

    (tmp_path / "show.json").write_text(json.dumps(_show(_runs())))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["collect", "--from-json", "show.json", "--fig4", "out/f4.csv"])
    assert result.exit_code == 0, result.output
    assert "ours_notrain" in (tmp_path / "out/f4.csv").read_text() and (tmp_path / "out/f4.png").is_file()


def test_notrain_figure_draws_grouped_bars():
    from laic_core.views import figures

    fig = figures.notrain_figure(["a", "b"], ["x", "y", "z"], [[30, 28, 35], [40, np.nan, 41]],
                                 [[1, 0, 2], [0, 0, 1]])
    assert len(fig.axes[0].patches) == 6
    with pytest.raises(LaicError, match="datasets, methods"):
        figures.notrain_figure(["a"], ["x"], [[1, 2]])


def test_variants_are_listed_once_each():
    assert len({v.name for v in VARIANTS}) == len(VARIANTS) == 6
