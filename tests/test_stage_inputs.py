"""The nouns and relation stages refuse inconsistent inputs with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from laic_core.artifacts import save_npy, save_parquet
from laic_core.errors import LaicError
from tests.conftest import unit_rows


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed), rows, dim)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = {"dataset": {"num_clusters": 3}, "nouns": {"images_per_group": 5, "gamma": 2}}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    save_npy("data/features/fit.npy", unit(30, 8, 0))
    save_npy("data/features/eval.npy", unit(10, 8, 1))
    save_npy("data/vocab/text.npy", unit(12, 8, 2))
    save_parquet("data/vocab/nouns.parquet", pd.DataFrame({"noun": [f"noun {i}" for i in range(12)]}))
    save_npy("data/nouns/text.npy", unit(6, 8, 3))
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
    save_parquet("data/vocab/nouns.parquet", pd.DataFrame({"noun": ["only"]}))
    with pytest.raises(LaicError, match=r"only 1 noun\(s\) selected"):
        run("nouns")
