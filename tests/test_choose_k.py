"""Choosing K without labels: the criteria, the suggestion and its confidence, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from laic_core.artifacts import save_npy, save_parquet
from laic_core.errors import LaicError
from laic_core.scoring import choose_k as ck
from laic_core.views.figures import choose_k_figure
from tests.conftest import normalized, provenance_meta, unit_rows

DIM = 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """k-means on a few hundred rows is all thread overhead: with BLAS and OpenMP threads on a
    busy 2-core machine this module took 27 s instead of 6."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def blobs(n_groups: int = 6, per: int = 40, spread: float = 0.15, seed: int = 0) -> np.ndarray:
    """(n_groups * per, DIM) unit rows around n_groups orthonormal directions: well-separated groups."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:n_groups]
    labels = np.repeat(np.arange(n_groups), per)
    return normalized(centres[labels] + spread * rng.normal(size=(len(labels), DIM)))


@pytest.fixture(scope="module")
def nouns() -> np.ndarray:
    return unit_rows(np.random.default_rng(1), 200, DIM)


@pytest.fixture(scope="module")
def six_blob_curves(nouns) -> ck.KCurves:
    return ck.k_curves(blobs(), nouns, range(2, 10), [0, 1, 2])


# ------------------------------------------------------------------ the range of K


def test_parse_ks_reads_ranges_steps_and_lists():
    assert ck.parse_ks("2-5") == [2, 3, 4, 5]
    assert ck.parse_ks("2-10:4") == [2, 6, 10]
    assert ck.parse_ks("8-9, 4,2,4") == [2, 4, 8, 9]
    for bad in ("", "1-5", "5-2", "2-x", "2-10:0"):
        with pytest.raises(LaicError, match="--ks"):
            ck.parse_ks(bad)


# ------------------------------------------------------------------ the suggestion on known structure


def test_six_separated_groups_give_six_with_high_confidence(six_blob_curves):
    suggestion = ck.suggest_k(six_blob_curves)
    assert suggestion.k == 6
    assert suggestion.confidence == "high"
    assert suggestion.reasons == []
    assert suggestion.stability > 0.95
    assert suggestion.margin > 0.05
    assert len(suggestion.supporting) >= 3
    assert suggestion.best_by_criterion["silhouette"] == 6
    assert "K=6 (high confidence)" in suggestion.statement()


def test_image_representation_finds_the_groups_too(nouns):
    curves = ck.k_curves(blobs(), None, [4, 5, 6, 7, 8], [0, 1], ck.RepresentationSettings(representation="image"))
    assert ck.suggest_k(curves).k == 6
    assert (curves.n_nouns == 0).all()


def test_no_structure_is_not_suggested_with_confidence(nouns):
    curves = ck.k_curves(unit_rows(np.random.default_rng(3), 240, DIM), nouns, range(2, 10), [0, 1, 2])
    suggestion = ck.suggest_k(curves)
    assert suggestion.confidence == "low"
    assert suggestion.reasons


def test_curves_have_one_value_per_k_and_stability_in_unit_interval(six_blob_curves, nouns):
    curves = six_blob_curves
    assert curves.ks.tolist() == list(range(2, 10))
    for name in (*ck.CRITERIA, "silhouette_std", "n_groups", "n_nouns"):
        assert getattr(curves, name).shape == (8,), name
    assert np.isfinite(curves.silhouette).all() and (np.abs(curves.silhouette) <= 1).all()
    assert ((curves.stability >= 0) & (curves.stability <= 1)).all()
    assert (curves.davies_bouldin > 0).all() and (curves.calinski_harabasz > 0).all()
    # 240 images: the noun filter's L is 3K, and it keeps at most gamma = 5 nouns per group
    assert curves.n_groups.tolist() == [3 * k for k in range(2, 10)]
    assert (curves.n_nouns <= 5 * curves.n_groups).all() and (curves.n_nouns >= 2).all()
    frame = curves.to_frame()
    assert list(frame.columns[:2]) == ["k", "silhouette"] and len(frame) == 8


def test_same_seeds_same_curves_other_seeds_other_clusterings(nouns):
    V = blobs(n_groups=4, per=30)
    first = ck.k_curves(V, nouns, [3, 4, 5], [0, 1])
    again = ck.k_curves(V, nouns, [3, 4, 5], [0, 1])
    pd.testing.assert_frame_equal(first.to_frame(), again.to_frame())
    assert first.settings == again.settings
    one, other = ck.cluster_seeds(V, 5, [0, 1], n_init=1)  # K=5 over 4 groups: the extra cut varies
    assert not np.array_equal(one, other)


def test_noun_filter_runs_once_per_distinct_number_of_groups(monkeypatch, nouns):
    import laic_core.method.noun_filter as noun_filter

    calls = []
    original = noun_filter.spherical_kmeans

    def counting(X, n_clusters, **kwargs):
        calls.append(n_clusters)
        return original(X, n_clusters, **kwargs)

    monkeypatch.setattr(noun_filter, "spherical_kmeans", counting)
    V = blobs(n_groups=3, per=40)
    # As a sample of 30,000 fit images, L = max(100, 3K) = 100 for every K here: one k-means.
    reps = list(ck.representations(V, nouns, [2, 3, 4, 5], n_fit=30_000))
    assert calls == [100] and {r.n_groups for r in reps} == {100}
    assert all(r.X is reps[0].X for r in reps)
    calls.clear()
    list(ck.representations(V, nouns, [2, 3, 4], ck.RepresentationSettings()))
    assert calls == [6, 9, 12]  # L = 3K: one k-means per K


# ------------------------------------------------------------------ stability and the rule


def test_stability_is_one_for_the_same_partition_and_near_zero_for_unrelated_ones():
    labels = np.repeat(np.arange(4), 50)
    renamed = (labels + 1) % 4  # the same partition under other cluster ids
    assert ck.stability(np.stack([labels, renamed, labels])) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    unrelated = np.stack([rng.integers(0, 4, 200) for _ in range(3)])
    assert 0.0 <= ck.stability(unrelated) < 0.05
    with pytest.raises(LaicError, match="at least 2"):
        ck.stability(labels[None, :])


def curves_from(**columns) -> ck.KCurves:
    ks = np.asarray(columns.pop("ks"))
    base = {"silhouette": np.full(len(ks), 0.3), "silhouette_std": np.zeros(len(ks)),
            "davies_bouldin": np.ones(len(ks)), "calinski_harabasz": np.ones(len(ks)),
            "stability": np.ones(len(ks)), "n_groups": np.zeros(len(ks), int), "n_nouns": np.zeros(len(ks), int)}
    base.update({k: np.asarray(v, dtype=float) for k, v in columns.items()})
    return ck.KCurves(ks=ks, **base)


def test_rule_weighs_silhouette_by_stability_and_reports_the_margin():
    curves = curves_from(ks=[2, 3, 4, 5], silhouette=[0.30, 0.50, 0.60, 0.40], stability=[1.0, 1.0, 0.5, 1.0],
                         davies_bouldin=[2.0, 1.0, 1.5, 1.8], calinski_harabasz=[10, 20, 15, 12])
    s = ck.suggest_k(curves)
    assert s.k == 3  # K=4 separates best but its seeds disagree: 0.6 x 0.5 < 0.5 x 1
    assert s.runner_up == 5 and s.margin == pytest.approx(0.2)
    assert s.best_by_criterion == {"silhouette": 4, "davies_bouldin": 3, "calinski_harabasz": 3, "stability": 2}
    assert set(s.supporting) == {"davies_bouldin", "calinski_harabasz", "stability"}
    assert s.confidence == "high" and s.stable_ks == [2, 3, 5]


def test_rule_lowers_confidence_for_near_ties_and_for_the_edge_of_the_range():
    tie = ck.suggest_k(curves_from(ks=[2, 3, 4], silhouette=[0.2, 0.5, 0.49]))
    assert tie.k == 3 and tie.confidence != "high" and tie.contenders == [4]
    assert any("margin" in r for r in tie.reasons)
    edge = ck.suggest_k(curves_from(ks=[3, 4, 5], silhouette=[0.2, 0.3, 0.5]))
    assert edge.k == 5 and edge.at_edge and edge.confidence == "low"
    assert "widen --ks" in edge.statement()
    smallest = ck.suggest_k(curves_from(ks=[2, 3, 4], silhouette=[0.6, 0.3, 0.4]))
    assert smallest.k == 2 and not smallest.at_edge  # no K below 2 could do better
    assert smallest.confidence == "medium" and smallest.best_above_2 == 4  # nested groups: name the next
    assert "The best K above 2 is K=4" in smallest.statement()
    equal = ck.suggest_k(curves_from(ks=[2, 3, 4], silhouette=[0.5, 0.5, 0.2]))
    assert equal.k == 2  # ties go to the smaller K


def test_figure_marks_the_suggestion(six_blob_curves, tmp_path):
    from laic_core.views.figures import save_figure

    suggestion = ck.suggest_k(six_blob_curves)
    fig = choose_k_figure(six_blob_curves, suggestion, reference_k=4)
    assert len(fig.axes) == 6
    marked = [line for line in fig.axes[0].get_lines() if line.get_label() == "suggested K=6"]
    assert marked and marked[0].get_xdata()[0] == 6
    path = save_figure(fig, tmp_path / "k.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_bad_arguments_name_the_fix(nouns):
    V = blobs(n_groups=3, per=10)
    with pytest.raises(LaicError, match="at least 2 distinct seeds"):
        ck.k_curves(V, nouns, [2, 3], [0])
    with pytest.raises(LaicError, match="K=30 needs more images"):
        ck.k_curves(V, nouns, [2, 30], [0, 1])
    with pytest.raises(LaicError, match="representation"):
        ck.RepresentationSettings(representation="pixels")


# ------------------------------------------------------------------ the command


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder after `dvc repro embed vocab`: six groups of fit images, a small vocabulary."""
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump({"dataset": {"num_clusters": 4}}))
    V = blobs(per=30)
    save_npy("data/features/fit.npy", V)
    save_parquet("data/features/fit.parquet", pd.DataFrame({"row": range(len(V))}), provenance_meta(dim=DIM))
    T = unit_rows(np.random.default_rng(1), 120, DIM)
    save_npy("data/vocab/text.npy", T)
    save_parquet("data/vocab/nouns.parquet", pd.DataFrame({"noun": [f"noun {i}" for i in range(len(T))]}),
                 provenance_meta(dim=DIM))
    return tmp_path


def invoke(*args: str):
    from stages.choose_k import app

    return CliRunner().invoke(app, list(args))


def test_command_writes_curves_figure_and_suggestion(project):
    result = invoke("--ks", "3-8", "--seeds", "2", "--out", "out")
    assert result.exit_code == 0, result.output
    assert "dvc exp run -S dataset.num_clusters=6" in result.output
    assert "K=6 (high confidence)" in result.output
    assert "params.yaml's K=4" in result.output
    curves = pd.read_csv("out/curves.csv")
    assert curves["k"].tolist() == list(range(3, 9))
    assert {"score", *ck.CRITERIA, "n_nouns"} <= set(curves.columns)
    assert curves["score"].idxmax() == 3  # K=6
    saved = json.loads(Path("out/suggestion.json").read_text())
    assert saved["k"] == 6 and saved["confidence"] == "high"
    assert saved["command"] == "dvc exp run -S dataset.num_clusters=6"
    assert saved["settings"]["nouns_tau"] == pytest.approx(1.0)  # 100 / the recorded logit scale of 100
    assert Path("out/choose_k.png").read_bytes()[:4] == b"\x89PNG"


def test_command_when_params_already_has_the_suggested_k(project):
    Path("params.yaml").write_text(yaml.safe_dump({"dataset": {"num_clusters": 6}}))
    result = invoke("--ks", "5-7", "--seeds", "2", "--out", "out", "--max-rows", "150")
    assert result.exit_code == 0, result.output
    assert "on 150 of 180 fit images" in result.output
    assert json.loads(Path("out/suggestion.json").read_text())["command"] == "dvc repro"


def test_command_without_features_says_to_embed_first(project):
    Path("data/features/fit.npy").unlink()
    result = invoke("--ks", "2-4")
    assert isinstance(result.exception, LaicError)
    assert "dvc repro embed vocab" in str(result.exception)


def test_command_refuses_features_of_another_model(project):
    Path("params.yaml").write_text(yaml.safe_dump({"model": {"pretrained": "laion2b_s34b_b79k"}}))
    result = invoke("--ks", "2-4")
    assert isinstance(result.exception, LaicError)
    assert "now says" in str(result.exception) and "dvc repro" in str(result.exception)


def test_command_lists_the_candidates_to_compare_when_unsure(project):
    save_npy("data/features/fit.npy", unit_rows(np.random.default_rng(5), 180, DIM))  # no groups at all
    result = invoke("--ks", "2-6", "--seeds", "2", "--out", "out")
    assert result.exit_code == 0, result.output
    saved = json.loads(Path("out/suggestion.json").read_text())
    assert saved["confidence"] != "high"
    assert "dvc queue start" in result.output
    assert saved["compare_commands"][0] == f"dvc exp run --queue -S dataset.num_clusters={saved['k']}"


def test_command_where_the_smallest_k_tried_wins_writes_every_output(project):
    """The probe: the smallest K winning gave "Object of type bool is not JSON serializable"."""
    result = invoke("--ks", "6-8", "--seeds", "2", "--out", "out")
    assert result.exit_code == 0, result.output
    saved = json.loads(Path("out/suggestion.json").read_text())
    assert saved["k"] == 6 and saved["at_edge"] is True and saved["confidence"] == "low"
    assert pd.read_csv("out/curves.csv")["k"].tolist() == [6, 7, 8]


def test_command_writes_its_outputs_together_or_not_at_all(project, monkeypatch):
    import stages.choose_k

    assert invoke("--ks", "3-5", "--seeds", "2", "--out", "out").exit_code == 0
    before = {name: Path("out", name).read_bytes() for name in ("curves.csv", "choose_k.png", "suggestion.json")}

    def broken_figure(fig, path):
        raise OSError("the figure could not be written")

    monkeypatch.setattr(stages.choose_k, "save_figure", broken_figure)
    assert invoke("--ks", "6-8", "--seeds", "2", "--out", "out").exit_code != 0
    assert {name: Path("out", name).read_bytes() for name in before} == before  # the first run's, all three
    assert sorted(p.name for p in Path("out").iterdir()) == sorted(before)  # no temporary file left


def test_command_refuses_features_of_other_images_than_params_choose(project):
    """The probe: dataset.root changed without `dvc repro embed`; choose_k suggested a K for the old images."""
    from laic_core.config import params_from_dict
    from laic_core.provenance import check_dataset, dataset_settings

    dataset = {"kind": "imagefolder", "root": "photos", "fit_split": "all", "eval_split": "all", "num_clusters": 4}
    made_with = params_from_dict({"dataset": dataset}).dataset
    meta = {**provenance_meta(dim=DIM), "dataset_settings": dataset_settings(made_with, "fit")}
    save_parquet("data/features/fit.parquet", pd.DataFrame({"row": range(180)}), meta)
    check_dataset("data/features/fit.parquet", "fit", made_with)  # the same settings: no word
    Path("params.yaml").write_text(yaml.safe_dump({"dataset": {**dataset, "root": "photos_2024"}}))
    result = invoke("--ks", "2-4")
    assert isinstance(result.exception, LaicError)
    assert str(result.exception) == (
        "data/features/fit.parquet holds the features of other images (dataset.root: photos) than params.yaml "
        "now chooses (dataset.root: photos_2024); run `dvc repro embed` to embed these, or restore the "
        "dataset settings")


def test_command_checks_max_rows_against_the_largest_k(project):
    """The probe: `--max-rows 1` said "there are 1; try K < 1", a bound on K for a mistake in --max-rows."""
    result = invoke("--ks", "2-8", "--max-rows", "1", "--out", "out")
    assert isinstance(result.exception, LaicError)
    assert str(result.exception) == ("--max-rows 1: every K tried needs more images than clusters, and --ks 2-8 goes "
                                     "up to K=8; give --max-rows 9 or more (0 = all fit images), or smaller --ks")
    assert not Path("out").exists()
    result = invoke("--ks", "2-8", "--max-rows", "9", "--seeds", "2", "--out", "out")
    assert result.exit_code == 0, result.output
