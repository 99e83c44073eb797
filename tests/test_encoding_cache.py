"""The cache of finished vocabulary encodings outside the project (laic_core.text.encoding_cache)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from laic_core.text import encoding_cache


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(encoding_cache.ENV, str(folder))
    return folder


def test_where_it_lives_and_how_it_is_turned_off(monkeypatch, tmp_path):
    monkeypatch.delenv(encoding_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert encoding_cache.cache_dir() == tmp_path / "xdg" / "laic"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert encoding_cache.cache_dir() == Path.home() / ".cache" / "laic"
    for off in ("off", "OFF", "none", "0"):
        monkeypatch.setenv(encoding_cache.ENV, off)
        assert encoding_cache.cache_dir() is None
        assert encoding_cache.store("vocab", "k", tmp_path / "x.npy") is None
        assert encoding_cache.lookup("vocab", "k", 3) is None


def test_store_lookup_restore_round_trip(cache, tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", array)
    entry = encoding_cache.store("vocab", "key1", tmp_path / "a.npy")
    assert entry == cache / "vocab" / "key1.npy"
    assert encoding_cache.lookup("vocab", "key1", 5) is None  # another vocabulary size is a miss
    assert encoding_cache.lookup("vocab", "other", 4) is None
    found = encoding_cache.lookup("vocab", "key1", 4)
    encoding_cache.restore(found, tmp_path / "out" / "text.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "text.npy"), array)
    assert not list((tmp_path / "out").glob(".*.tmp"))  # written under a temporary name, renamed


def test_a_damaged_entry_is_a_miss_and_goes(cache, tmp_path):
    (cache / "vocab").mkdir(parents=True)
    (cache / "vocab" / "bad.npy").write_bytes(b"\x93NUMPY truncated")
    assert encoding_cache.lookup("vocab", "bad", 4) is None
    assert not (cache / "vocab" / "bad.npy").exists()


def test_old_entries_are_pruned(cache, tmp_path, monkeypatch):
    for i, key in enumerate(("k1", "k2", "k3")):
        np.save(tmp_path / f"{key}.npy", np.full((2, 2), i, np.float32))  # each entry its own file (links)
        entry = encoding_cache.store("vocab", key, tmp_path / f"{key}.npy")
        os.utime(entry, (1000 + i, 1000 + i))
    encoding_cache.lookup("vocab", "k1", 2)  # used again: the newest
    monkeypatch.setattr(encoding_cache, "KEEP", 2)
    encoding_cache._prune(cache / "vocab")
    assert sorted(p.stem for p in (cache / "vocab").glob("*.npy")) == ["k1", "k3"]


def test_an_unwritable_cache_never_fails_the_stage(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(encoding_cache.ENV, str(blocker / "cache"))
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.float32))
    assert encoding_cache.store("vocab", "k", tmp_path / "a.npy") is None


def test_the_vocab_stage_reuses_an_encoding_and_recomputes_when_the_code_changes(
        cache, tmp_path, monkeypatch, tiny_config, tiny_bundle, capsys):
    import torch

    from laic_core.artifacts import load_parquet_meta
    from stages import vocab

    torch.save(tiny_bundle.model.state_dict(), tmp_path / "tiny.pt")
    monkeypatch.chdir(tmp_path)
    Path("nouns.txt").write_text("dog\ncat\nsunflower\n")
    Path("params.yaml").write_text(yaml.safe_dump({
        "model": {"name": str(tiny_config), "pretrained": str(tmp_path / "tiny.pt"), "device": "cpu"},
        "vocab": {"source": "nouns.txt", "templates": ["a photo of a {}."]}}))
    vocab.main(Path("params.yaml"))
    first = np.load("data/vocab/text.npy")
    assert first.shape[0] == 3 and len(list((cache / "vocab").glob("*.npy"))) == 1
    meta = load_parquet_meta("data/vocab/nouns.parquet")

    # As DVC does before it reruns the stage: the outputs are gone. The encoding is reused, not redone.
    for path in Path("data/vocab").iterdir():
        path.unlink()
    monkeypatch.setattr(vocab, "encode_nouns", lambda *a, **k: pytest.fail("encoded again"))
    vocab.main(Path("params.yaml"))
    assert "reused the encoding" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load("data/vocab/text.npy"), first)
    assert load_parquet_meta("data/vocab/nouns.parquet") == meta

    # A change to the code that encodes is another key: encoded afresh.
    monkeypatch.setattr(vocab, "source_digest", lambda *modules: "changed")
    with pytest.raises(pytest.fail.Exception, match="encoded again"):
        vocab.main(Path("params.yaml"))


def test_random_weights_are_never_cached(cache, tmp_path, monkeypatch, tiny_config):
    from stages import vocab

    monkeypatch.chdir(tmp_path)
    Path("nouns.txt").write_text("dog\ncat\n")
    Path("params.yaml").write_text(yaml.safe_dump({
        "model": {"name": str(tiny_config), "pretrained": "none", "device": "cpu"},
        "vocab": {"source": "nouns.txt", "templates": ["a photo of a {}."]}}))
    vocab.main(Path("params.yaml"))
    assert not cache.exists()
