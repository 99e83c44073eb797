"""Artifact writers: identical content gives identical bytes."""

from __future__ import annotations

import torch

from laic_core.artifacts import save_torch


def test_save_torch_bytes_depend_only_on_the_content(tmp_path):
    obj = {"ctx": torch.arange(12.0).reshape(3, 4), "model": {"name": "x"}, "dim": 4}
    save_torch(tmp_path / "a" / "prompts.pt", obj)
    save_torch(tmp_path / "b" / "other_name.pt", obj)
    first = (tmp_path / "a" / "prompts.pt").read_bytes()
    assert first == (tmp_path / "b" / "other_name.pt").read_bytes()
    loaded = torch.load(tmp_path / "a" / "prompts.pt", weights_only=True)
    assert torch.equal(loaded["ctx"], obj["ctx"]) and loaded["model"] == {"name": "x"}
    save_torch(tmp_path / "a" / "prompts.pt", {**obj, "dim": 5})
    assert (tmp_path / "a" / "prompts.pt").read_bytes() != first
