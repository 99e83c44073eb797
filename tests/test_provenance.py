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
