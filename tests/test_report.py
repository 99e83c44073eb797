"""Report rendering, figures, and the many-dataset table (command lines and `dvc exp show` parsing)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from laic_core.errors import LaicError
from laic_core.scoring.metrics import matched_column_order
from laic_core.views import figures
from laic_core.views.report import (
    clusters_table,
    markdown_table,
    methods_table,
    percent,
    render_report,
    scores_table,
)

SCORES = {
    "ours": {"acc": 0.9291, "nmi": 0.8712, "ari": 0.85},
    "clip_kmeans": {"acc": 0.7543, "nmi": 0.7, "ari": 0.61},
    "zeroshot": {"acc": 0.88, "nmi": 0.8, "ari": 0.77},
}


# ------------------------------------------------------------------ report


def test_percent_and_markdown_table():
    assert percent(0.9291) == "92.9" and percent(1) == "100.0"
    assert percent(None) == "–" and percent(float("nan")) == "–" and percent(True) == "–"
    table = markdown_table(["a", "b"], [["x|y", 1]])
    assert table.splitlines() == ["| a | b |", "| --- | ---: |", "| x\\|y | 1 |"]
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [[1]])


def test_scores_table_orders_methods_and_shows_percentages():
    lines = scores_table(SCORES).splitlines()
    assert lines[0] == "| method | ACC | NMI | ARI |"
    # papers' order: clip_kmeans, ..., ours, zeroshot, whatever the dict order
    assert lines[2] == "| CLIP k-means | 75.4 | 70.0 | 61.0 |"
    assert lines[3] == "| ours | 92.9 | 87.1 | 85.0 |"
    assert lines[4].startswith("| zero-shot")


def test_label_free_scores_table():
    text = scores_table({"ours": {"n": 30, "min_size": 8, "max_size": 12, "n_empty": 0, "size_entropy": 0.98}})
    assert "size entropy" in text and "| ours | 30 | 8 | 12 | 0 | 0.980 |" in text


def test_clusters_table_reads_names_defensively():
    names = [
        {"id": 0, "size": 12, "nearest": ["car", "automobile"], "dominant": [["truck", 0.3]]},
        {"id": 1, "size": 7, "nearest": [{"noun": "cat", "score": 0.9}], "label": "feline"},
        "just a string",
    ]
    text = clusters_table(names)
    lines = text.splitlines()
    assert lines[0] == "| cluster | size | nearest | dominant | label | name |"
    assert "| 0 | 12 | car, automobile | truck | – | – |" in text
    assert "| 1 | 7 | cat | – | feline | – |" in text
    assert "| 2 | – | – | – | – | just a string |" in text
    many = clusters_table([{"nearest": [f"n{i}" for i in range(9)]}])
    assert "n0, n1, n2, n3, n4, …" in many


def test_render_report_contains_every_section():
    diagnostics = {
        "labelled": True, "n_eval": 30,
        "neighbors": {"k": 10, "n_reliable": 35, "fraction_reliable": 0.875, "agreement": 0.9,
                      "agreement_reliable": 1.0, "purity": 0.8, "pair_purity": 0.95},
        "purity": {"clip": {"k1": 0.9, "k10": 0.8}, "relation": {"k1": 0.95, "k10": 0.9}}, "purity_samples": 40,
        "pseudo_labels": {"acc_all": 0.9, "n_all": 40, "acc_reliable": 0.99, "n_reliable": 35},
        "zeroshot": {"available": True, "top1": 0.875},
    }
    text = render_report(
        SCORES, diagnostics, fit_scores={"ours": {"acc": 0.95, "nmi": 0.9, "ari": 0.9}},
        clusters=[{"id": 0, "size": 3, "nearest": ["dog"]}], params={"dataset": "cifar10", "seed": 0},
        figures={"confusion": "plots/confusion.png"}, title="run",
    )
    assert text.startswith("# run\n")
    assert "| ours | 92.9 | 87.1 | 85.0 |" in text
    assert "## Scores (fit split)" in text and "| ours | 95.0 | 90.0 | 90.0 |" in text
    assert "| 0 | 3 | dog |" in text
    assert "(fit split, 40 images)" in text and "| 10 | 80.0 | 90.0 |" in text  # k=10: clip, relation
    assert "| reliable | 99.0 | 35 |" in text
    assert "35 (87.5%)" in text and "87.5%." in text
    assert "![confusion](plots/confusion.png)" in text
    assert "| dataset | cifar10 |" in text
    assert "No ground-truth labels" not in text
    assert "## Scores (eval split, 30 images)" in text


def test_scores_heading_counts_the_images_scored():
    """Images without a class (a stray top-level image) are clustered but not scored: the heading says so."""
    diagnostics = {"labelled": True, "n_eval": 13, "n_eval_labelled": 12}
    assert "## Scores (eval split, 12 labelled of 13 images)" in render_report(SCORES, diagnostics)
    diagnostics["n_eval_labelled"] = 13
    assert "## Scores (eval split, 13 images)" in render_report(SCORES, diagnostics)


def test_render_report_without_labels_or_optional_parts():
    text = render_report({"ours": {"n": 5, "min_size": 1, "max_size": 2, "n_empty": 0, "size_entropy": 0.9}},
                         {"labelled": False})
    assert "cluster sizes instead of scores" in text and "No ground-truth labels" in text
    assert "## Clusters" not in text and "## Figures" not in text


def test_methods_table_says_how_each_method_clusters():
    table = methods_table(["ours", "clip_kmeans", "zeroshot", "scan"])
    rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
    assert "trained (seeded), uses the nouns" in rows["ours"]
    assert "k-means, no training, images only" in rows["clip_kmeans"]
    assert "trained (seeded), images only" in rows["scan"]
    assert "reference: reads the true class names" in rows["zeroshot"]


# ------------------------------------------------------------------ figures


def test_matched_column_order_puts_each_matched_cluster_under_its_class():
    # columns are clusters [7, 3, 5, 9]; matching 3 -> class 0, 9 -> class 1, 7 -> class 2; 5 unmatched
    order = matched_column_order(3, [7, 3, 5, 9], {3: 0, 9: 1, 7: 2}, [0, 1, 2])
    assert order.tolist() == [1, 3, 0, 2]


def test_figures_draw_on_small_inputs(tmp_path):
    table = np.array([[5, 1, 0], [0, 4, 2]])
    made = [
        figures.confusion_figure(table, ["cat", "dog"], ["0 kitten", "1 puppy", "2 car"], title="t"),
        figures.confusion_figure(np.ones((50, 50)), [str(i) for i in range(50)], None),
        figures.purity_figure([1, 5, 10, 50], {"clip": [0.9, 0.8, 0.7, 0.6], "relation": [0.95, 0.9, 0.85, 0.8]}),
        figures.pseudo_accuracy_figure(["all", "reliable"], [0.9, float("nan")], [40, 0]),
        figures.training_figure([1, 2, 3], {"loss": [1, 0.5, 0.2], "entropy": [1, 1, 1], "ce": [0, 0, 0]}),
        figures.message_figure("no labels", "Confusion"),
    ]
    for i, fig in enumerate(made):
        assert isinstance(fig, Figure)
        path = figures.save_figure(fig, tmp_path / f"f{i}.png")
        assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(LaicError, match="3 values for 2"):
        figures.purity_figure([1, 2], {"clip": [0.1, 0.2, 0.3]})
    with pytest.raises(LaicError, match="tick labels"):
        figures.confusion_figure(table, ["only one"])


# ------------------------------------------------------------------ the many-dataset table


def _exp_show(*experiments, workspace=None, baseline_scores=None):
    """`dvc exp show --json` output of DVC 3 (shape copied from a real run)."""

    def node(rev, name, timestamp, dataset, scores, model="ViT-B-32"):
        metrics = ({"metrics/scores.json": {"data": scores}} if scores is not None else
                   {"metrics/scores.json": {"error": {"type": "FileNotFoundError", "msg": "no file"}}})
        return {"rev": rev, "name": name, "data": {
            "rev": rev, "timestamp": timestamp,
            "params": {"params.yaml": {"data": {"dataset": {"name": dataset}, "model": {
                "name": model, "pretrained": "openai"}}}},
            "metrics": metrics, "deps": {}, "outs": {}, "meta": {}}, "error": None, "experiments": None}

    commit = node("a" * 40, "main", "2026-01-01T00:00:00", "cifar10", baseline_scores)
    commit["experiments"] = [{"revs": [node(*e)], "executor": None, "name": e[1]} for e in experiments]
    out = [commit]
    if workspace is not None:
        out.insert(0, node("workspace", None, None, *workspace))
    return out


def _scores(acc):
    return {"ours": {"acc": acc, "nmi": round(acc - 0.1, 6), "ari": round(acc - 0.2, 6)}, "clip_kmeans": {"acc": 0.5, "nmi": 0.4, "ari": 0.3}}


def test_dataset_settings_and_exp_run_command():
    from stages.table import dataset_settings, exp_run_command, exp_show_command, experiment_name

    settings = dataset_settings("stl10", "data/raw/")
    assert settings == {"dataset.kind": "torchvision", "dataset.name": "stl10", "dataset.root": "data/raw/stl10",
                        "dataset.num_clusters": "10", "dataset.fit_split": "train", "dataset.eval_split": "test"}
    assert dataset_settings("imagenet_dogs")["dataset.root"] == "data/raw/imagenet"
    assert dataset_settings("imagenet_dogs")["dataset.eval_split"] == "val"
    assert dataset_settings("dtd")["dataset.num_clusters"] == "47"
    name = experiment_name("table", "stl10", "20260101-000000")
    assert name == "table-stl10-20260101-000000"
    cmd = exp_run_command({**settings, "model.name": "ViT-B-16"}, name=name, queue=True)
    assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", name]
    assert cmd[6:8] == ["-S", "dataset.kind=torchvision"] and cmd[-2:] == ["-S", "model.name=ViT-B-16"]
    assert exp_run_command({"seed": "1"}) == ["dvc", "exp", "run", "-S", "seed=1"]
    assert exp_show_command()[:4] == ["dvc", "exp", "show", "--json"]
    assert "--all-commits" in exp_show_command(all_commits=True)
    with pytest.raises(LaicError, match="cifar11.*dvc exp run"):
        dataset_settings("cifar11")


def test_experiments_read_the_scores_file_the_layout_writes():
    from laic_core.views.experiments import SCORES_FILE
    from stages import layout

    assert SCORES_FILE == layout.SCORES.as_posix()


def test_parse_overrides():
    from stages.table import parse_overrides

    assert parse_overrides(["model.name=ViT-B-16", "relation.tau=0.01", "x=a=b"]) == {
        "model.name": "ViT-B-16", "relation.tau": "0.01", "x": "a=b"}
    with pytest.raises(LaicError, match="KEY=VALUE"):
        parse_overrides(["model.name"])


def test_records_keep_the_newest_run_per_dataset_in_benchmark_order():
    from laic_core.views.experiments import experiment_records, select_runs

    raw = _exp_show(
        ("b" * 40, "table-stl10-1", "2026-01-02T00:00:00", "stl10", _scores(0.98)),
        ("c" * 40, "table-cifar10-1", "2026-01-02T00:00:00", "cifar10", _scores(0.90)),
        ("d" * 40, "table-cifar10-2", "2026-01-03T00:00:00", "cifar10", _scores(0.92)),
        ("e" * 40, "broken", "2026-01-04T00:00:00", "dtd", None),
        workspace=("cifar10", _scores(0.99)),
    )
    records = experiment_records(json.loads(json.dumps(raw)))
    assert [r.kind for r in records] == ["workspace", "baseline"] + ["experiment"] * 4
    runs = select_runs(records)
    assert [(g.label, g.newest.name) for g in runs] == [("cifar10", "table-cifar10-2"), ("stl10", "table-stl10-1")]
    assert [g.n_seeds for g in runs] == [1, 1]  # a re-run of the same setting and seed replaces the older one
    every = select_runs(records, every_run=True)
    assert [g.label for g in every] == ["cifar10 (table-cifar10-1)", "cifar10 (table-cifar10-2)",
                                             "stl10 (table-stl10-1)"]
    with_ws = select_runs(records, include_workspace=True)
    assert [g.newest.name for g in with_ws] == ["table-cifar10-2", "table-stl10-1"]  # the workspace has no timestamp


def test_same_dataset_two_models_get_distinct_labels():
    from laic_core.views.experiments import experiment_records, select_runs

    raw = _exp_show(("b" * 40, "a", "2026-01-02T00:00:00", "cifar10", _scores(0.9), "ViT-B-32"),
                    ("c" * 40, "b", "2026-01-02T00:00:00", "cifar10", _scores(0.95), "ViT-L-14"))
    labels = [g.label for g in select_runs(experiment_records(raw))]
    assert labels == ["cifar10 (ViT-B-32/openai)", "cifar10 (ViT-L-14/openai)"]


def test_collect_writes_markdown_and_csv(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.table import app

    raw = _exp_show(("b" * 40, "table-stl10-1", "2026-01-02T00:00:00", "stl10", _scores(0.985)),
                    baseline_scores=_scores(0.9))
    (tmp_path / "show.json").write_text(json.dumps(raw))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["collect", "--from-json", "show.json", "--out", "out/table.md"])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "out/table.md").read_text()
    assert "| cifar10 | 50.0 | 40.0 | 30.0 | 90.0 | 80.0 | 70.0 |" in markdown
    assert "| stl10 | 50.0 | 40.0 | 30.0 | 98.5 | 88.5 | 78.5 |" in markdown
    assert "experiment `table-stl10-1`" in markdown
    csv_lines = (tmp_path / "out/table.csv").read_text().splitlines()
    assert csv_lines[0] == ("dataset,experiment,rev,clip_kmeans.acc,clip_kmeans.nmi,clip_kmeans.ari,"
                            "ours.acc,ours.nmi,ours.ari")
    assert csv_lines[2].startswith("stl10,table-stl10-1,bbbb") and csv_lines[2].endswith(",0.985,0.885,0.785")


def test_run_dry_run_prints_one_command_per_dataset(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.table import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--dataset", "cifar10", "--dataset", "cifar20", "--dataset", "cifar10",
                                      "--set", "model.name=RN50", "--dry-run"])
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if line.startswith("$ dvc exp run")]
    assert len(commands) == 2  # the repeated dataset runs once
    assert "-S dataset.num_clusters=20" in commands[1] and "-S model.name=RN50" in commands[1]
    clash = CliRunner().invoke(app, ["run", "--dataset", "cifar10", "--set", "dataset.root=x", "--dry-run"])
    assert clash.exit_code != 0 and "dataset settings come from --dataset" in str(clash.exception)


# ------------------------------------------------------------------ seeds: mean and spread


def _show_with_params(*runs):
    """`dvc exp show --json` with one commit (no scores) and experiments (name, timestamp, params, scores)."""

    def node(rev, name, timestamp, params, scores):
        return {"rev": rev, "name": name, "data": {
            "rev": rev, "timestamp": timestamp, "params": {"params.yaml": {"data": params}},
            "metrics": {"metrics/scores.json": {"data": scores}} if scores is not None else {},
            "deps": {}, "outs": {}, "meta": {}}, "error": None, "experiments": None}

    commit = node("a" * 40, "main", "2026-01-01T00:00:00", {"seed": 0}, None)
    commit["experiments"] = [{"revs": [node(f"{i:040x}", *run)], "executor": None, "name": run[0]}
                             for i, run in enumerate(runs, start=1)]
    return [commit]


def _params(dataset="cifar10", seed=0, tau=0.02, model="ViT-B-32"):
    return {"seed": seed, "dataset": {"name": dataset, "num_clusters": 10},
            "model": {"name": model, "pretrained": "openai"}, "relation": {"tau": tau, "kind": "ridge"}}


def _acc(ours, clip=0.5):
    return {"ours": {"acc": ours, "nmi": ours - 0.1, "ari": ours - 0.2},
            "clip_kmeans": {"acc": clip, "nmi": 0.4, "ari": 0.3}}


SEEDED = _show_with_params(
    ("c10-s0", "2026-01-02T00:00:00", _params(seed=0), _acc(0.90)),
    ("c10-s1-old", "2026-01-02T00:00:01", _params(seed=1), _acc(0.10)),  # replaced by the re-run below
    ("c10-s1", "2026-01-02T00:00:05", _params(seed=1), _acc(0.92)),
    ("c10-s2", "2026-01-02T00:00:02", _params(seed=2), _acc(0.94, clip=None)),
    ("stl-s0", "2026-01-02T00:00:03", _params("stl10"), _acc(0.985)),
)


def test_spread_is_mean_and_sample_sd_of_the_finite_values():
    from laic_core.views.experiments import spread

    s = spread([0.90, 0.92, 0.94, None, float("nan"), True])
    assert s.n == 3 and s.mean == pytest.approx(0.92) and s.sd == pytest.approx(0.02)
    assert spread([0.9]).sd is None and spread([0.9]).n == 1
    assert spread([None]) == spread([]) and spread([]).mean is None


def test_runs_of_one_setting_are_pooled_by_seed():
    from laic_core.views.experiments import experiment_records, group_spreads, select_runs

    rows = select_runs(experiment_records(SEEDED))
    assert [(g.label, g.seeds, [r.name for r in g.runs]) for g in rows] == [
        ("cifar10", [0, 1, 2], ["c10-s0", "c10-s1", "c10-s2"]),  # the newest run of seed 1 only
        ("stl10", [0], ["stl-s0"]),
    ]
    ours_acc, _, _, clip_acc = group_spreads(rows[0], ["ours", "clip_kmeans"])[:4]
    assert (ours_acc.n, ours_acc.mean, ours_acc.sd) == (3, pytest.approx(0.92), pytest.approx(0.02))
    assert (clip_acc.n, clip_acc.mean, clip_acc.sd) == (2, pytest.approx(0.5), pytest.approx(0.0))
    # every_run pools nothing
    assert [g.n_seeds for g in select_runs(experiment_records(SEEDED), every_run=True)] == [1] * 5


def test_seeded_table_shows_mean_and_sd_and_n_seeds():
    import csv

    from laic_core.views.experiments import experiment_records, select_runs, table_csv, table_markdown

    rows = select_runs(experiment_records(SEEDED))
    text = table_markdown(rows)
    lines = text.splitlines()
    assert lines[2].startswith("| dataset | seeds | CLIP k-means ACC |")
    assert "| cifar10 | 3 | 50.0 ± 0.0 (n=2) | 40.0 ± 0.0 | 30.0 ± 0.0 | 92.0 ± 2.0 | 82.0 ± 2.0 | 72.0 ± 2.0 |" in text
    assert "| stl10 | 1 | 50.0 | 40.0 | 30.0 | 98.5 | 88.5 | 78.5 |" in text  # a single run: no spread
    assert "- cifar10: 3 seeds (0, 1, 2): experiment `c10-s0`" in text
    table = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert list(table[0])[:6] == ["dataset", "experiments", "seeds", "n_seeds", "clip_kmeans.acc.mean",
                                  "clip_kmeans.acc.sd"]
    c10, stl = table
    assert (c10["n_seeds"], c10["seeds"], c10["experiments"]) == ("3", "0;1;2", "c10-s0;c10-s1;c10-s2")
    assert float(c10["ours.acc.mean"]) == pytest.approx(0.92) and float(c10["ours.acc.sd"]) == pytest.approx(0.02)
    assert (stl["n_seeds"], stl["ours.acc.sd"]) == ("1", "") and float(stl["ours.acc.mean"]) == 0.985
    # --methods: only those columns, in the order asked
    only = table_csv(rows, ["ours"]).splitlines()[0]
    assert only == "dataset,experiments,seeds,n_seeds,ours.acc.mean,ours.acc.sd,ours.nmi.mean,ours.nmi.sd," \
                   "ours.ari.mean,ours.ari.sd"


def test_runs_differing_in_another_param_are_not_pooled():
    from laic_core.views.experiments import experiment_records, select_runs, table_markdown

    raw = _show_with_params(
        ("tau1-s0", "2026-01-02T00:00:00", _params(seed=0, tau=0.01), _acc(0.80)),
        ("tau1-s1", "2026-01-02T00:00:01", _params(seed=1, tau=0.01), _acc(0.82)),
        ("tau2-s0", "2026-01-03T00:00:00", _params(seed=0, tau=0.02), _acc(0.90)),
        ("tau2-s1", "2026-01-03T00:00:01", _params(seed=1, tau=0.02), _acc(0.94)),
        ("b16-s0", "2026-01-01T00:00:00", _params(seed=0, model="ViT-B-16"), _acc(0.95)),
    )
    records = experiment_records(raw)
    rows = select_runs(records)  # the newest setting per dataset and model
    assert [(g.label, [r.name for r in g.runs]) for g in rows] == [  # older rows first
        ("cifar10 (ViT-B-16/openai)", ["b16-s0"]), ("cifar10 (ViT-B-32/openai)", ["tau2-s0", "tau2-s1"])]
    assert (rows[1].hidden, rows[1].hidden_keys) == (1, ["relation.tau"]) and rows[0].hidden == 0
    text = table_markdown(rows)
    assert "92.0 ± 2.8" in text and "not shown: 1 older setting(s) of cifar10 (ViT-B-32/openai), " \
                                   "differing in relation.tau" in text
    every = select_runs(records, every_setting=True)
    assert sorted((g.label, g.n_seeds) for g in every) == [
        ("cifar10 (ViT-B-16/openai)", 1),
        ("cifar10 (ViT-B-32/openai) (relation.tau=0.01)", 2), ("cifar10 (ViT-B-32/openai) (relation.tau=0.02)", 2)]
    tau1 = next(g for g in every if "0.01" in g.label)
    assert [r.name for r in tau1.runs] == ["tau1-s0", "tau1-s1"]


def test_collect_pools_seeds_and_restricts_methods(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.table import app

    (tmp_path / "show.json").write_text(json.dumps(SEEDED))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["collect", "--from-json", "show.json", "--methods", "ours,clip_kmeans"])
    assert result.exit_code == 0, result.output
    assert "2 row(s), 4 run(s)" in result.output
    markdown = (tmp_path / "metrics/table.md").read_text()
    assert "| dataset | seeds | ours ACC | ours NMI | ours ARI | CLIP k-means ACC |" in markdown
    assert "| cifar10 | 3 | 92.0 ± 2.0 |" in markdown
    assert "n_seeds" in (tmp_path / "metrics/table.csv").read_text().splitlines()[0]
    bad = CliRunner().invoke(app, ["collect", "--from-json", "show.json", "--methods", "ours,kmeans"])
    assert bad.exit_code != 0 and "--methods kmeans: no such method" in str(bad.exception)
    assert "clip_kmeans" in str(bad.exception)


def test_run_with_seeds_runs_every_dataset_once_per_seed(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stages.table import app, experiment_name, parse_seeds

    assert parse_seeds(["0", "1,2", "1-3"]) == [0, 1, 2, 3]
    with pytest.raises(LaicError, match=r"--seeds 'x'.*integers >= 0"):
        parse_seeds(["x"])
    assert experiment_name("table", "stl10", "20260101-000000", 2) == "table-stl10-s2-20260101-000000"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "-d", "cifar10", "--seeds", "0", "1", "2", "-d", "stl10", "--dry-run"])
    assert result.exit_code == 0, result.output
    commands = [line for line in result.output.splitlines() if line.startswith("$ dvc exp run")]
    assert len(commands) == 6
    assert "-n table-cifar10-s0-" in commands[0] and commands[0].endswith("-S seed=0")
    assert "-n table-stl10-s2-" in commands[5] and commands[5].endswith("-S seed=2")
    clash = CliRunner().invoke(app, ["run", "-d", "cifar10", "--seeds", "0", "-S", "seed=1", "--dry-run"])
    assert clash.exit_code != 0 and "seeds come from --seeds" in str(clash.exception)
    stray = CliRunner().invoke(app, ["run", "-d", "cifar10", "stl10", "--dry-run"])
    assert stray.exit_code != 0 and "its own -d" in str(stray.exception)


def test_the_report_says_what_each_name_and_runner_up_means():
    from laic_core.views.report import glossary

    names = [{"cluster": 0, "size": 5, "name": "ketch", "gloss": "a sailing vessel with two masts",
              "nearest_nouns": [{"noun": "ketch", "cosine": 0.9, "gloss": "a sailing vessel with two masts"},
                                {"noun": "yawl", "cosine": 0.8, "gloss": "a small | boat"},
                                {"noun": "Paris", "cosine": 0.7}]},
             {"cluster": 1, "size": 0, "empty": True, "name": "", "nearest_nouns": [{"noun": "x", "gloss": "y"}]}]
    assert glossary(names).splitlines() == ["- **ketch**: a sailing vessel with two masts",
                                            "- **yawl**: a small \\| boat"]
    table = clusters_table(names)
    assert table.splitlines()[0].startswith("| cluster | size | name | gloss | nearest nouns |")
    report = render_report({"ours": {"acc": 0.5, "nmi": 0.4, "ari": 0.3}}, {}, clusters=names)
    assert "### What the words mean" in report and "- **yawl**: a small \\| boat" in report
