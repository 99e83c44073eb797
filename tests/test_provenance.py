"""Model identity by content: what makes two embeddings comparable."""

from __future__ import annotations

import json
import os

import pytest

from laic_core.errors import LaicError
from laic_core.provenance import describe, file_sha256, model_identity, same_model


def test_local_files_are_identified_by_content_not_path(tmp_path):
    a = tmp_path / "a" / "tiny.json"
    b = tmp_path / "b" / "copy.json"
    for path in (a, b):
        path.parent.mkdir()
        path.write_text('{"embed_dim": 32}')
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"weights v1")
    one = model_identity(str(a), str(ckpt))
    assert same_model(one, model_identity(str(b), str(ckpt)))  # moved or copied: one model
    ckpt.write_bytes(b"weights v2")  # replaced in place, same path and size
    two = model_identity(str(a), str(ckpt))
    assert not same_model(one, two)
    assert one["checkpoint_sha256"] != two["checkpoint_sha256"]
    assert "weights.pt [sha256 " in describe(two) and "tiny.json [config sha256 " in describe(two)


def test_tags_and_random_weights():
    assert same_model(model_identity("ViT-B-32", "openai"), model_identity("ViT-B-32", "openai"))
    assert not same_model(model_identity("ViT-B-32", "openai"), model_identity("ViT-B-32", "laion2b_s34b_b79k"))
    assert not same_model(model_identity("ViT-B-32", "openai"), model_identity("ViT-B-16", "openai"))
    assert same_model(model_identity("ViT-B-32", "none"), {"name": "ViT-B-32", "pretrained": ""})
    assert describe(model_identity("ViT-B-32", "openai")) == "model ViT-B-32 (openai)"


def test_missing_files_are_named(tmp_path):
    with pytest.raises(LaicError, match=r"model.name: config file .*nope.json does not exist"):
        model_identity(str(tmp_path / "nope.json"), "none")
    with pytest.raises(LaicError, match=r"model.pretrained: checkpoint file gone.pt does not exist"):
        model_identity("ViT-B-32", "gone.pt")


def test_digests_are_cached_by_size_and_mtime(tmp_path):
    data = tmp_path / "ckpt.bin"
    data.write_bytes(b"x" * 1000)
    cache = tmp_path / "cache" / "sha256.json"
    first = file_sha256(data, cache)
    entries = json.loads(cache.read_text())
    assert entries[str(data.resolve())]["sha256"] == first
    # A cache hit is not recomputed: plant a marker digest for the unchanged stamp.
    entries[str(data.resolve())]["sha256"] = "cached"
    cache.write_text(json.dumps(entries))
    assert file_sha256(data, cache) == "cached"
    # A new mtime (or size) means new content may be there: hash again.
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert file_sha256(data, cache) == first
    cache.write_text("not json")  # a damaged cache is only a cache
    assert file_sha256(data, cache) == first


def test_a_checkpoint_cut_short_or_not_a_checkpoint_is_named_before_torch_reads_it(tmp_path):
    """The probe: a truncated checkpoint gave "[Errno 22] Invalid argument", a text file torch's
    "weights_only ... file an issue"."""
    import torch
    from safetensors.torch import save_file

    from laic_core.provenance import check_checkpoint, checkpoint_problem

    torch.save({"w": torch.zeros(256)}, tmp_path / "ok.pt")
    save_file({"w": torch.zeros(256)}, tmp_path / "ok.safetensors")
    torch.save({"w": torch.zeros(256)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("ok.pt", "ok.safetensors", "legacy.pt"):
        assert checkpoint_problem(tmp_path / name) is None
        check_checkpoint(str(tmp_path / name))
    for name in ("ok.pt", "ok.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[:len(data) // 2])
    (tmp_path / "notes.pt").write_text("these are my notes\n")
    (tmp_path / "pointer.bin").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    expected = {
        "cut_ok.pt": r"a zip archive of \d+ bytes whose end is missing: cut short, by a download or a copy\?",
        "cut_ok.safetensors": r"a safetensors file of \d+ bytes whose header promises \d+: cut short\?",
        "notes.pt": r"neither a PyTorch checkpoint \(a zip or pickle file\) nor safetensors; it begins "
                    r"'these are my notes'",
        "pointer.bin": r"a Git LFS pointer, not the weights: fetch them with `git lfs pull`",
        "empty.pt": r"it is empty \(0 bytes\)",
    }
    for name, why in expected.items():
        path = str(tmp_path / name)
        with pytest.raises(LaicError, match=rf"^model.pretrained: {path} is not a complete checkpoint \({why}\); "
                                            r"download it again, or point model.pretrained at a complete checkpoint "
                                            r"file \(or 'none'\)$"):
            check_checkpoint(path)
    check_checkpoint("none")
    check_checkpoint("openai")  # a tag: open_clip's to fetch
