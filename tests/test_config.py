"""params.yaml validation: every problem at once, 'auto' workers, '~' in paths."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from laic_core.config import load_params, params_from_dict
from laic_core.errors import LaicError

PROJECT = Path(__file__).resolve().parents[1]


def test_shipped_params_are_valid():
    params = load_params(PROJECT / "params.yaml")
    assert params.embed.num_workers == "auto"


def test_typos_in_keys_no_stage_depends_on_are_all_reported(tmp_path):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["model"]["devcie"] = raw["model"].pop("device")
    raw["embed"]["num_worker"] = raw["embed"].pop("num_workers")
    raw["sed"] = raw.pop("seed")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(LaicError) as err:
        load_params(tmp_path / "params.yaml")
    message = str(err.value)
    assert "3 invalid setting(s)" in message
    for where in ("model.devcie: unknown key", "embed.num_worker: unknown key", "sed: unknown key"):
        assert where in message


@pytest.mark.parametrize("value", ["auto", 0, 3])
def test_num_workers_takes_auto_or_an_integer(value):
    assert params_from_dict({"embed": {"num_workers": value}}).embed.num_workers == value


@pytest.mark.parametrize("value, message", [
    ("many", r"'many' must be an integer or 'auto'"),
    (-1, r"-1 must be 'auto' or an integer >= 0"),
    (True, r"True must be an integer or 'auto'"),
])
def test_bad_num_workers(value, message):
    with pytest.raises(LaicError, match=r"embed.num_workers: " + message):
        params_from_dict({"embed": {"num_workers": value}})


def test_auto_workers_leave_a_cpu_and_never_make_the_dataloader_warn(monkeypatch):
    import os

    import torch
    from torch.utils.data import DataLoader

    from laic_core.data.encode import resolve_num_workers

    for cpus, expected in ((1, 0), (2, 1), (3, 2), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda n=cpus: n)
        assert resolve_num_workers("auto") == expected
        assert resolve_num_workers(7) == 7
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the DataLoader's "suggested max number of worker" warning
            DataLoader(torch.arange(4), num_workers=expected).check_worker_number_rationality()


def test_tilde_means_home_in_every_setting_that_names_a_file(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    params = params_from_dict({
        "dataset": {"root": "~/photos"}, "vocab": {"source": "~/nouns.txt"},
        "model": {"name": "~/models/tiny.json", "pretrained": "~/models/tiny.pt"},
    })
    assert params.dataset.root == "/home/someone/photos"
    assert params.vocab.source == "/home/someone/nouns.txt"
    assert (params.model.name, params.model.pretrained) == ("/home/someone/models/tiny.json",
                                                            "/home/someone/models/tiny.pt")
    plain = params_from_dict({})
    assert (plain.model.name, plain.model.pretrained, plain.vocab.source) == ("ViT-B-32", "openai", "wordnet")


def test_a_seed_beyond_what_numpy_takes_is_refused_by_validate():
    assert params_from_dict({"seed": 2**32 - 1}).seed == 2**32 - 1
    with pytest.raises(LaicError, match=r"seed: 4294967296 must be an integer in 0..4294967295"):
        params_from_dict({"seed": 4294967296})


def test_numbers_yaml_1_1_reads_as_strings_are_taken_as_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads a float without a dot, `2e-3`, as the string "2e-3"
    (tmp_path / "params.yaml").write_text("seed: 1e3\ncenters:\n  lr: 2e-3\n  tau: 1E-2\n")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert raw["centers"]["lr"] == "2e-3"
    params = load_params(tmp_path / "params.yaml")
    assert params.seed == 1000 and isinstance(params.seed, int)
    assert params.centers.lr == 0.002 and params.centers.tau == 0.01
    assert params_from_dict({"dataset": {"num_clusters": 10.0}}).dataset.num_clusters == 10
    for bad, message in (({"seed": "1.5e0"}, "seed: '1.5e0' must be an integer"),
                         ({"centers": {"lr": "fast"}}, "centers.lr: 'fast' must be a number"),
                         ({"centers": {"lr": "nan"}}, "centers.lr: 'nan' must be a number"),
                         ({"dataset": {"num_clusters": 2.5}}, "num_clusters: 2.5 must be an integer")):
        with pytest.raises(LaicError, match=message):
            params_from_dict(bad)


def test_a_temperature_too_small_to_compute_with_is_refused_by_validate():
    with pytest.raises(LaicError, match=r"relation.tau: 1e-40 must be 'auto' or a number >= 1e-30"):
        params_from_dict({"relation": {"kind": "softmax", "tau": 1.0e-40}})
    assert params_from_dict({"relation": {"tau": 1e-30}}).relation.tau == 1e-30


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    """The probe: `dvc repro` refuses a params.yaml with a key twice, but validate said "valid" and
    the stages silently took the last value."""
    text = (PROJECT / "params.yaml").read_text()
    text = text.replace("  num_clusters: 10\n", "  num_clusters: 10\n  root: elsewhere\n  num_clusters: 12\n", 1)
    text += "seed: 3\n"
    (tmp_path / "params.yaml").write_text(text)
    lines = text.splitlines()
    at = {key: [i + 1 for i, line in enumerate(lines) if line.split("#")[0].rstrip().startswith(key)]
          for key in ("  root:", "  num_clusters:", "seed:")}
    with pytest.raises(LaicError) as err:
        load_params(tmp_path / "params.yaml")
    assert str(err.value) == (
        f"{tmp_path / 'params.yaml'} gives 3 key(s) twice, and only the last would count (`dvc repro` refuses the "
        f"file): dataset.root (lines {at['  root:'][0]} and {at['  root:'][1]}); dataset.num_clusters (lines "
        f"{at['  num_clusters:'][0]} and {at['  num_clusters:'][1]}); seed (lines {at['seed:'][0]} and "
        f"{at['seed:'][1]}); keep one of each")
    # The same key in two sections, and YAML merge keys, are not repeats.
    (tmp_path / "params.yaml").write_text("base: &b {tau: auto}\nnouns: {tau: auto}\nrelation:\n  <<: *b\n  tau: auto\n")
    with pytest.raises(LaicError, match="base: must be a section|base: unknown key"):
        load_params(tmp_path / "params.yaml")  # (refused for the unknown section, not for a repeat)
