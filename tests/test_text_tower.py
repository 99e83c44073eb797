"""Exact dynamic truncation of the text tower, and the full-length fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from laic_core.data.models import load_clip
from laic_core.text.encode import distinct_token_rows, encode_nouns, encode_texts
from laic_core.text.tower import TextTower, encode_token_batches
from tests.conftest import TINY_CLIP_CONFIG

PROMPTS = [
    "dog",
    "a photo of a dog.",
    "a blurry photo of a very large and rather fluffy golden retriever sitting on a red mat",
    "x",
    "art of the ice cream.",
    "an extremely long prompt " + "with many repeated words " * 6,
]


def test_truncated_encoding_matches_full_length(tiny_bundle):
    tower = TextTower(tiny_bundle.model)
    assert tower.causal
    tokens = tiny_bundle.tokenizer(PROMPTS)
    with torch.inference_mode():
        full = tiny_bundle.model.encode_text(tokens)
        cut = tower.encode(tokens, truncate=True)
        uncut = tower.encode(tokens, truncate=False)
    assert tower.truncated_length(tokens) < tokens.shape[1]
    torch.testing.assert_close(cut, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(uncut, full, atol=1e-5, rtol=0)


def test_length_sorted_batches_keep_input_order(tiny_bundle):
    tower = TextTower(tiny_bundle.model)
    tokens = tiny_bundle.tokenizer(PROMPTS)
    batched = encode_token_batches(tower, tokens, batch_size=2, device=tiny_bundle.device)
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(tiny_bundle.model.encode_text(tokens), dim=-1)
    torch.testing.assert_close(batched, ref, atol=1e-5, rtol=0)


def test_truncation_is_used_by_encode_texts(tiny_bundle, monkeypatch):
    seen = []
    tower_encode = TextTower.encode_embeddings

    def spy(self, embeddings, tokens, *, truncate=True):
        seen.append(self.truncated_length(tokens) if truncate else tokens.shape[1])
        return tower_encode(self, embeddings, tokens, truncate=truncate)

    monkeypatch.setattr(TextTower, "encode_embeddings", spy)
    encode_texts(tiny_bundle, ["cat", "a dog", "a photo of a cat."], batch_size=8)
    assert seen and max(seen) <= 8  # SOT + a few words + EOT, not 77


@pytest.fixture(scope="module")
def bidirectional_bundle(tmp_path_factory):
    cfg = json.loads(json.dumps(TINY_CLIP_CONFIG))
    cfg["custom_text"] = True
    cfg["text_cfg"]["no_causal_mask"] = True
    path = tmp_path_factory.mktemp("bidir") / "laic-tiny-bidirectional.json"
    path.write_text(json.dumps(cfg))
    return load_clip(str(path), "none", "cpu")


def test_non_causal_tower_takes_the_full_length_path(bidirectional_bundle, monkeypatch):
    tower = TextTower(bidirectional_bundle.model)
    assert tower.native and not tower.causal
    tokens = bidirectional_bundle.tokenizer(PROMPTS[:3])
    assert tower.truncated_length(tokens) == tokens.shape[1]
    lengths = []
    forward = bidirectional_bundle.model.text.transformer.forward

    def spy(x, attn_mask=None):
        lengths.append(x.shape[1])
        return forward(x, attn_mask=attn_mask)

    monkeypatch.setattr(bidirectional_bundle.model.text.transformer, "forward", spy)
    with torch.inference_mode():
        out = tower.encode(tokens)
    assert lengths == [tokens.shape[1]]
    monkeypatch.undo()
    with torch.inference_mode():
        torch.testing.assert_close(out, bidirectional_bundle.model.encode_text(tokens), atol=1e-6, rtol=0)
        # Here truncation would NOT be exact, which is why it is not taken.
        short = tokens[:, : int(tokens.argmax(-1).max()) + 1]
        assert not torch.allclose(bidirectional_bundle.model.encode_text(short), out, atol=1e-4)


def test_noun_ensemble_is_mean_of_normalised_templates(tiny_bundle):
    tower = TextTower(tiny_bundle.model)
    templates = ["a photo of a {}.", "art of the {}."]
    got = encode_nouns(tiny_bundle, tower, ["dog", "cat"], templates, batch_size=3)
    ref = encode_texts(tiny_bundle, ["a photo of a dog.", "art of the dog.", "a photo of a cat.", "art of the cat."])
    expect = ref.reshape(2, 2, -1).mean(1)
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expect, atol=1e-6)


def test_distinct_token_rows_keeps_first_spelling(tiny_bundle):
    keep = distinct_token_rows(tiny_bundle.tokenizer(["Turkey", "dog", "turkey", "cat", "DOG"]))
    assert keep.tolist() == [0, 1, 3]
