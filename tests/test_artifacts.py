"""Artifact writers: identical content gives identical bytes; a full disk is one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laic_core.artifacts import save_torch
from laic_core.errors import LaicError


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


@pytest.mark.parametrize("free", [0, 10**12])
def test_a_short_write_is_a_full_disk_only_when_the_disk_is_full(tmp_path, monkeypatch, free):
    """numpy reports a full disk as "2048 requested and 992 written", with no errno."""
    import shutil

    from laic_core.artifacts import save_npy

    def short_write(fh, array, *args, **kwargs):
        raise OSError("2048 requested and 992 written")

    monkeypatch.setattr(np, "save", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - free, free))
    if free:
        with pytest.raises(OSError, match="requested"):  # not a full disk: not reported as one
            save_npy(tmp_path / "x.npy", np.zeros((16, 32), np.float32))
    else:
        with pytest.raises(LaicError, match=r"^no space left on the device while writing .*x.npy \(it needs "
                                            r"2.0 KiB; 0 bytes free there\): free space and rerun to resume$"):
            save_npy(tmp_path / "x.npy", np.zeros((16, 32), np.float32))
    assert list(tmp_path.iterdir()) == []  # no temporary file left
