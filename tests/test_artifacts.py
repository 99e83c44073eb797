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


def _cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("path, stage, write, read", [
    ("data/features/fit.npy", "embed", "npy", "load_npy"),
    ("data/features/eval.npy", "embed", "npy", "load_npy_mmap"),
    ("data/features/fit.npy", "embed", "npy", "load_embeddings"),
    ("data/features/fit.parquet", "embed", "parquet", "load_parquet_meta"),
    ("data/evaluate/assignments.parquet", "evaluate", "parquet", "load_parquet"),
    ("data/centers/names.json", "centers", "json", "load_json"),
    ("data/relation/rows_fit.npz", "relation", "npz", "load_matrix"),
    ("data/centers/prompts.pt", "centers", "torch", "load_torch"),
    ("metrics/centers_history.csv", "centers", "csv", "load_csv"),
    ("metrics/plots/gallery/gallery_1.json", "evaluate", "json", "load_json"),  # inside an output folder
])
def test_a_damaged_artifact_is_one_line_naming_it_and_the_stage_to_rerun(tmp_path, monkeypatch, path, stage,
                                                                         write, read):
    """The probes: a truncated DVC cache object restored by `dvc checkout` ("EOF: reading array header"),
    names.json or assignments.parquet cut short (JSONDecodeError, ArrowInvalid): tracebacks."""
    import pandas as pd

    import stages.inputs  # noqa: F401  (registers which stage writes which artifact)
    from laic_core import artifacts
    from laic_core.validation import load_embeddings

    monkeypatch.chdir(tmp_path)
    rows = np.eye(8, dtype=np.float32)[np.arange(64) % 8]  # unit rows
    {"npy": lambda: artifacts.save_npy(path, rows),
     "parquet": lambda: artifacts.save_parquet(path, pd.DataFrame({"row": range(64)}), {"k": list(range(50))}),
     "json": lambda: artifacts.save_json(path, [{"cluster": i, "name": f"n{i}"} for i in range(8)]),
     "npz": lambda: artifacts.save_matrix(path, rows),
     "torch": lambda: save_torch(path, {"ctx": torch.zeros(8, 4), "tau": 0.01}),
     "csv": lambda: artifacts.save_csv(path, pd.DataFrame({"step": range(5), "loss": range(5)}))}[write]()
    readers = {"load_npy_mmap": lambda p: artifacts.load_npy(p, mmap=True), "load_embeddings": load_embeddings}
    reader = readers.get(read) or getattr(artifacts, read)
    reader(path)  # whole: read as written
    target = tmp_path / path
    _cut(target, 0.0 if write == "csv" else 0.5)
    with pytest.raises(LaicError, match=rf"^{path}: damaged or incomplete \([^\n]+\); rerun the stage that writes "
                                        rf"it: `dvc repro -f {stage}`$"):
        reader(path)
    target.write_bytes(b"")
    with pytest.raises(LaicError, match=rf"^{path}: damaged or incomplete"):
        reader(path)


def test_a_damaged_file_outside_the_pipeline_gets_the_generic_fix(tmp_path):
    from laic_core.artifacts import load_json

    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(LaicError, match=r"x.json: damaged or incomplete \(Expecting .*\); rerun the stage that "
                                        r"writes it: `dvc repro -f <the stage that writes it>`$"):
        load_json(tmp_path / "x.json")
