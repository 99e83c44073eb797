"""The `laic` console command (stages/cli.py) and what `laic init` writes and says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from laic_core.views.first_run import first_run_lines
from stages import cli
from stages.params_file import set_params

PROJECT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command():
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "open", "choose-k", "export", "predict", "table"):
        assert command in result.output


def test_a_forwarded_command_is_the_stage_module_itself(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # forward() sets argv as `python -m` would
    with pytest.raises(SystemExit) as done:
        cli.forward("stages.table", ["datasets"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "cifar10" in out and "imagenet_dogs" in out


def test_laic_is_installed_as_a_console_script():
    scripts = (PROJECT / "pyproject.toml").read_text()
    assert 'laic = "stages.cli:main"' in scripts


def test_set_params_keeps_comments_and_refuses_unknown_keys(tmp_path):
    shutil_copy = (PROJECT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(shutil_copy)
    set_params(path, {"dataset.root": "/photos/holiday", "dataset.num_clusters": 8, "model.pretrained": "none"})
    text = path.read_text()
    assert "# torchvision | imagefolder | manifest" in text and "  - \"itap of a {}.\"" in text
    data = yaml.safe_load(text)
    assert data["dataset"]["root"] == "/photos/holiday" and data["dataset"]["num_clusters"] == 8
    assert text.count("\n") == shutil_copy.count("\n")  # the same lines, three of them changed
    from laic_core.errors import LaicError

    with pytest.raises(LaicError, match="no key dataset.rooot"):
        set_params(path, {"dataset.rooot": "x"})


def test_init_sets_the_folder_and_says_what_the_first_run_costs(tmp_path, monkeypatch, image_tree):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    result = CliRunner().invoke(cli.app, ["init", str(image_tree), "--clusters", "3", "--no-measure"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert data["dataset"] | {"download": True, "listing": "stat"} == {
        "kind": "imagefolder", "name": "images", "root": str(image_tree.resolve()), "fit_split": "all",
        "eval_split": "all", "num_clusters": 3, "download": True, "listing": "stat"}
    assert "12 images in 3 sub-folders" in result.output
    assert "embed the images" in result.output and "once per model" in result.output
    assert "Next: `dvc repro`, then `laic open`." in result.output
    bad = CliRunner().invoke(cli.app, ["init", str(image_tree), "--clusters", "40", "--no-measure"])
    assert bad.exit_code != 0 and "from 2 to the 12 images" in str(bad.exception)


def test_first_run_lines_measured_and_cached():
    lines = first_run_lines(n_images=3925, model="ViT-B-32 (openai)", embed_rate=11.0, vocab_rate=36.0,
                            n_nouns=116837, vocab_cached=False, clusters=10, k_given=False)
    text = "\n".join(lines)
    assert "about 5 min 57 s (11 images/s measured here)" in text
    assert "116,837 nouns: about 54 min" in text and "once per model" in text
    assert "laic choose-k" in lines[-1]
    cached = first_run_lines(n_images=10, model="m", embed_rate=None, vocab_rate=None, n_nouns=None,
                             vocab_cached=True, clusters=2, k_given=True)
    assert any("reused from the cache" in line for line in cached)


def test_open_says_to_run_dvc_repro_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.app, ["open"])
    assert result.exit_code != 0 and "run `dvc repro` first" in str(result.exception)
    index = tmp_path / "data" / "browser" / "index.html"
    index.parent.mkdir(parents=True)
    index.write_text("<html></html>")
    result = CliRunner().invoke(cli.app, ["open", "--print"])
    assert result.exit_code == 0 and result.output.strip() == index.resolve().as_uri()


@pytest.mark.slow
def test_laic_init_then_dvc_repro_runs(tmp_path):
    from tests.test_pipeline import make_repo, sh

    repo = make_repo(tmp_path / "project")
    photos = tmp_path / "photos"
    (repo / "images" / "train").rename(photos)  # a folder of the user's, outside the project
    env_python = [sys.executable, "-m", "stages.cli"]
    subprocess.run(env_python + ["init", str(photos), "--clusters", "3", "--model", "laic-tiny-clip.json",
                                 "--pretrained", "none", "--no-measure"], cwd=repo, check=True, timeout=300)
    data = yaml.safe_load((repo / "params.yaml").read_text())
    assert data["dataset"]["root"] == str(photos) and data["dataset"]["eval_split"] == "all"
    sh(repo, "dvc", "repro")
    assert (repo / "data" / "browser" / "index.html").is_file()
    assert (repo / "data" / "evaluate" / "assignments.csv").read_text().count("\n") == 24 + 1
