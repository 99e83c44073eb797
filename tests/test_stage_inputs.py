"""The nouns and relation stages refuse inconsistent inputs with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from laic_core.artifacts import save_npy, save_parquet
from laic_core.errors import LaicError
from tests.conftest import provenance_meta, unit_rows


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed), rows, dim)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = {"dataset": {"num_clusters": 3}, "nouns": {"images_per_group": 5, "gamma": 2}}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    save_npy("data/features/fit.npy", unit(30, 8, 0))
    save_npy("data/features/eval.npy", unit(10, 8, 1))
    for role, n in (("fit", 30), ("eval", 10)):
        save_parquet(f"data/features/{role}.parquet", pd.DataFrame({"row": range(n)}), provenance_meta())
    save_npy("data/vocab/text.npy", unit(12, 8, 2))
    save_parquet("data/vocab/nouns.parquet", pd.DataFrame({"noun": [f"noun {i}" for i in range(12)]}),
                 provenance_meta())
    save_npy("data/nouns/text.npy", unit(6, 8, 3))
    save_parquet("data/nouns/selected.parquet", pd.DataFrame({"noun": [f"noun {i}" for i in range(6)]}),
                 provenance_meta())
    return tmp_path


def run(stage: str):
    module = __import__(f"stages.{stage}", fromlist=["main"])
    module.main(Path("params.yaml"))


def test_the_stages_run_on_consistent_inputs(workdir):
    run("nouns")
    run("relation")
    assert Path("data/relation/assign_eval.parquet").is_file()


def test_image_and_text_dims_from_different_models(workdir):
    save_npy("data/nouns/text.npy", unit(6, 16, 3))
    with pytest.raises(LaicError, match=r"16.*8|8.*16"):
        run("relation")
    save_npy("data/vocab/text.npy", unit(12, 16, 3))
    with pytest.raises(LaicError, match=r"different models"):
        run("nouns")


def test_more_clusters_than_images(workdir):
    Path("params.yaml").write_text(yaml.safe_dump({"dataset": {"num_clusters": 31}}))
    with pytest.raises(LaicError, match=r"K=31 is larger than the 30 images"):
        run("relation")


def test_nan_and_unnormalised_features(workdir):
    bad = unit(30, 8, 0)
    bad[4] = np.nan
    save_npy("data/features/fit.npy", bad)
    with pytest.raises(LaicError, match=r"fit.npy.*NaN"):
        run("relation")
    save_npy("data/features/fit.npy", unit(30, 8, 0) * 3)
    with pytest.raises(LaicError, match=r"fit.npy.*normalis"):
        run("nouns")


def test_too_few_nouns(workdir):
    save_npy("data/nouns/text.npy", unit(1, 8, 3))
    with pytest.raises(LaicError, match=r"noun"):
        run("relation")
    Path("params.yaml").write_text(yaml.safe_dump({"dataset": {"num_clusters": 3}, "nouns": {"gamma": 1, "images_per_group": 30}}))
    save_npy("data/vocab/text.npy", unit(1, 8, 2))
    save_parquet("data/vocab/nouns.parquet", pd.DataFrame({"noun": ["only"]}), provenance_meta())
    with pytest.raises(LaicError, match=r"only 1 noun\(s\) selected"):
        run("nouns")


# ------------------------------------------------------------- model identity


def test_features_and_vocab_of_two_models_of_one_width_are_refused(workdir):
    other = provenance_meta("ViT-B-32", "laion2b_s34b_b79k", 8)  # same d=8, other weights
    save_parquet("data/vocab/nouns.parquet", pd.DataFrame({"noun": [f"noun {i}" for i in range(12)]}), other)
    with pytest.raises(LaicError) as err:
        run("nouns")
    message = str(err.value)
    assert message.startswith("data/features/fit.parquet was made with model ViT-B-32 (openai)")
    assert "data/vocab/nouns.parquet with model ViT-B-32 (laion2b_s34b_b79k)" in message
    assert "run `dvc repro`" in message
    save_parquet("data/nouns/selected.parquet", pd.DataFrame({"noun": ["a"]}), other)
    with pytest.raises(LaicError, match=r"fit.parquet was made with .*openai.* but data/nouns/selected.parquet"):
        run("relation")


def test_artifacts_of_another_model_than_params_names_are_refused(workdir):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["model"] = {"pretrained": "laion2b_s34b_b79k"}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("nouns", "relation"):
        with pytest.raises(LaicError, match=r"data/features/fit.parquet was made with model ViT-B-32 \(openai\) "
                                            r"but params.yaml now says model ViT-B-32 \(laion2b_s34b_b79k\); "
                                            r"run `dvc repro`"):
            run(stage)


def test_artifacts_that_record_no_model_are_refused(workdir):
    save_parquet("data/features/eval.parquet", pd.DataFrame({"row": range(10)}))
    with pytest.raises(LaicError, match=r"eval.parquet: does not record which model made it.*dvc repro"):
        run("relation")


def test_a_softmax_temperature_that_overflows_writes_nothing(workdir):
    """The probe: relation.kind softmax at tau 1e-40 gave NaN rows and a message to rerun, which repeats it."""
    run("nouns")
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["relation"] = {"kind": "softmax", "tau": "auto", "tau_relative": 1e-40}  # validate passes it
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(LaicError, match=r"relation.tau: 'auto' gives .* = 1e-42, below 1e-30.*tau_relative"):
        run("relation")
    assert not Path("data/relation").exists()
