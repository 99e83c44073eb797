"""benchmarks/gpu_check.py, the script a GPU machine runs, kept working by a dry run at tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    """The script as a module (registered first: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_checks_every_step_against_the_cpu(tmp_path):
    gpu_check = load_script()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add waiting on a busy machine
    try:
        rows = gpu_check.main(["--dry", "--out", str(tmp_path / "gpu_check.md")])
    finally:
        torch.set_num_threads(before)
    steps = [r.step for r in rows]
    assert steps == ["embed", "vocab", "relation + neighbours", "centers K=4", "centers K=20", "tac", "scan"]
    assert all(r.ok for r in rows), [(r.step, r.check, r.value) for r in rows if not r.ok]
    assert all(r.wall_s > 0 for r in rows)
    text = (tmp_path / "gpu_check.md").read_text()
    assert "dry run" in text and text.count("| yes |") == len(rows)
    assert len(json.loads((tmp_path / "gpu_check.json").read_text())) == len(rows)


def test_full_sizes_are_the_issues_and_dry_ones_small():
    gpu_check = load_script()
    full, dry = gpu_check.Sizes(), gpu_check.DRY
    assert (full.images, full.nouns, full.rows, full.centers_ks, full.centers_steps) == \
        (2000, 5000, 200_000, (10, 1000), 100)
    assert max(dry.centers_ks) > dry.prompt_chunk  # the dry run goes through the chunked prompt pass too
    assert dry.rows <= 1000 and dry.images <= 32


def test_without_a_gpu_only_the_dry_run_starts(monkeypatch, tmp_path):
    gpu_check = load_script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_check.main(["--out", str(tmp_path / "x.md")])
