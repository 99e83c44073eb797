"""The template-prefix key/value cache is exact against the plain truncated path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from laic_core.data.models import load_clip
from laic_core.text.encode import encode_nouns
from laic_core.text.prefix_cache import encode_with_prefix_batches, prefix_matches, template_prefix, unsupported_reason
from laic_core.text.tower import TextTower, encode_token_batches
from laic_core.text.vocab import DEFAULT_TEMPLATES
from tests.conftest import TINY_CLIP_CONFIG

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"

# Nouns of different token lengths, with punctuation, digits and capitals that
# may touch the template's characters.
NOUNS = ["dog", "ice cream", "Mr.", "s", "C#", "golden retriever puppy", "x" * 40, "a.b", "(x)",
         "3D", "-dog", "Turkey", "rock 'n' roll"]

TEMPLATES = [
    *DEFAULT_TEMPLATES,
    "{} in a video game.",  # "{}" first: the prefix is [SOT] alone
    "{}.",                  # the noun abuts the suffix
    "a {}s",
    "a({})",                # the noun abuts the prefix: its last token is not cached
    "photo{}",
]


def _plain(bundle, prompts, batch_size=4):
    return encode_token_batches(TextTower(bundle.model), bundle.tokenizer(prompts),
                                batch_size=batch_size, device=bundle.device)


def _cached(tower, tokens, prefix, batch_size=4):
    """All rows as prompts of one template with `prefix`."""
    which = torch.zeros(tokens.shape[0], dtype=torch.long)
    return encode_with_prefix_batches(tower, tokens, which, [prefix], batch_size=batch_size, device="cpu")


def _config_bundle(tmp_path_factory, name, **text_cfg):
    cfg = json.loads(json.dumps(TINY_CLIP_CONFIG))
    cfg["text_cfg"].update(text_cfg)
    path = tmp_path_factory.mktemp(name) / f"laic-tiny-{name}.json"
    path.write_text(json.dumps(cfg))
    return load_clip(str(path), "none", "cpu")


@pytest.mark.parametrize("template", TEMPLATES)
def test_cached_prefix_matches_plain_truncation(tiny_bundle, template):
    tower = TextTower(tiny_bundle.model)
    assert unsupported_reason(tower) is None
    prompts = [template.replace("{}", n) for n in NOUNS]
    tokens = tiny_bundle.tokenizer(prompts)
    prefix = template_prefix(tower, tiny_bundle.tokenizer, template)
    assert prefix[0] == tokens[0, 0]  # at least [SOT]
    assert prefix_matches(tower, tokens, prefix).all()
    got = _cached(tower, tokens, prefix)
    assert (got - _plain(tiny_bundle, prompts)).abs().max() < 1e-5


def test_one_cache_of_all_templates_matches_plain_truncation(tiny_bundle):
    tower = TextTower(tiny_bundle.model)
    prompts = [t.replace("{}", n) for n in NOUNS for t in TEMPLATES]
    which = torch.arange(len(TEMPLATES)).repeat(len(NOUNS))
    prefixes = [template_prefix(tower, tiny_bundle.tokenizer, t) for t in TEMPLATES]
    assert len({len(p) for p in prefixes}) > 3  # prefixes of different lengths share the cache
    got = encode_with_prefix_batches(tower, tiny_bundle.tokenizer(prompts), which, prefixes,
                                     batch_size=16, device=tiny_bundle.device)
    assert (got - _plain(tiny_bundle, prompts, batch_size=16)).abs().max() < 1e-5


def test_prompts_cut_at_the_context_length_mix_safely(tiny_bundle, monkeypatch):
    # Over-long prompts are cut at 77 tokens; in one batch, a row with a long
    # prefix and one with a short prefix reach past position 76 in their tails.
    from laic_core.text import prefix_cache

    tower = TextTower(tiny_bundle.model)
    templates = ["a photo of the large {}.", "{} in a video game."]
    nouns = ["word " * 90, "dog"]
    prompts = [t.replace("{}", n) for n in nouns for t in templates]
    tokens = tiny_bundle.tokenizer(prompts)
    assert int(tower.pooled_positions(tokens).max()) == 76
    batches = []
    after = prefix_cache.encode_after_prefix
    monkeypatch.setattr(prefix_cache, "encode_after_prefix",
                        lambda tw, cache, which, rest: batches.append(set(which.tolist())) or after(tw, cache, which, rest))
    prefixes = [template_prefix(tower, tiny_bundle.tokenizer, t) for t in templates]
    got = encode_with_prefix_batches(tower, tokens, torch.tensor([0, 1, 0, 1]), prefixes,
                                     batch_size=8, device=tiny_bundle.device)
    assert {0, 1} in batches  # both long rows share a batch
    assert (got - _plain(tiny_bundle, prompts)).abs().max() < 1e-5


def test_template_prefix_keeps_the_words_before_the_noun(tiny_bundle):
    tower = TextTower(tiny_bundle.model)
    tok = tiny_bundle.tokenizer
    sot = int(tok([""])[0, 0])
    assert template_prefix(tower, tok, "{} in a video game.").tolist() == [sot]
    words = template_prefix(tower, tok, "a photo of the large {}.")
    assert words.tolist() == tok(["a photo of the large"])[0, :6].tolist()
    # Text touching the noun may merge with it: its last token is not proposed.
    assert template_prefix(tower, tok, "a({})").tolist() == template_prefix(tower, tok, "a {}").tolist()


def test_prompts_not_starting_with_the_prefix_fall_back(tiny_bundle, monkeypatch):
    tower = TextTower(tiny_bundle.model)
    tok = tiny_bundle.tokenizer
    # A prefix proposed without the safety drop: "itap of a" + "dog" fuses into
    # "adog", but "-dog" and "(cat)" keep "a" as its own token.
    prefix = tok(["itap of a"])[0, :5]
    prompts = ["itap of adog", "itap of a-dog", "itap of a(cat)", "itap of a cat"]
    tokens = tok(prompts)
    assert prefix_matches(tower, tokens, prefix).tolist() == [False, True, True, True]

    from laic_core.text import prefix_cache

    cached, plain = [], []
    after, plain_batches = prefix_cache.encode_after_prefix, prefix_cache.encode_token_batches

    def spy_cached(tower_, cache, which, rest):
        cached.append(rest.shape[0])
        return after(tower_, cache, which, rest)

    def spy_plain(tower_, tokens_, **kw):
        plain.append(tokens_.shape[0])
        return plain_batches(tower_, tokens_, **kw)

    monkeypatch.setattr(prefix_cache, "encode_after_prefix", spy_cached)
    monkeypatch.setattr(prefix_cache, "encode_token_batches", spy_plain)
    got = _cached(tower, tokens, prefix, batch_size=8)
    monkeypatch.undo()
    assert sum(cached) == 3 and plain == [1]
    assert (got - _plain(tiny_bundle, prompts)).abs().max() < 1e-5


def test_a_prefix_holding_the_pooled_token_is_never_cached(tiny_bundle):
    tower = TextTower(tiny_bundle.model)
    tokens = tiny_bundle.tokenizer(["dog", "a dog"])
    # [SOT, "dog", EOT] as a "prefix": row 0 pools inside it.
    assert prefix_matches(tower, tokens, tokens[0, :3]).tolist() == [False, False]
    assert not prefix_matches(tower, tokens, tokens[0, :0]).any()  # nothing shared, nothing cached


def test_encode_nouns_output_is_unchanged_by_the_cache(tiny_bundle, monkeypatch):
    tower = TextTower(tiny_bundle.model)
    off = encode_nouns(tiny_bundle, tower, NOUNS, TEMPLATES, batch_size=5, prefix_cache=False)
    from laic_core.text import prefix_cache

    templates_per_batch = []
    after = prefix_cache.encode_after_prefix

    def spy(tower_, cache, which, rest):
        templates_per_batch.append(len(set(which.tolist())))
        return after(tower_, cache, which, rest)

    monkeypatch.setattr(prefix_cache, "encode_after_prefix", spy)
    on = encode_nouns(tiny_bundle, tower, NOUNS, TEMPLATES, batch_size=5)
    assert templates_per_batch, "encode_nouns did not take the cached path on a causal tower"
    # One cache serves every template: prompts of different templates (and
    # prefix lengths 1 to 6) share batches.
    assert max(templates_per_batch) > 1
    assert on.shape == off.shape == (len(NOUNS), 32)
    np.testing.assert_allclose(on, off, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(on, axis=1), 1.0, atol=1e-5)


def test_layer_scale_blocks_are_reproduced(tmp_path_factory):
    bundle = _config_bundle(tmp_path_factory, "layerscale", ls_init_value=0.5)
    tower = TextTower(bundle.model)
    assert unsupported_reason(tower) is None
    with torch.no_grad():  # LayerScale starts at a constant; make it matter
        for block in bundle.model.transformer.resblocks:
            block.ls_1.gamma.uniform_(0.2, 1.5)
            block.ls_2.gamma.uniform_(0.2, 1.5)
    on = encode_nouns(bundle, tower, NOUNS, DEFAULT_TEMPLATES, batch_size=8)
    off = encode_nouns(bundle, tower, NOUNS, DEFAULT_TEMPLATES, batch_size=8, prefix_cache=False)
    np.testing.assert_allclose(on, off, atol=1e-5, rtol=0)


def test_unsupported_block_types_take_the_plain_path(tmp_path_factory, monkeypatch):
    # qk_norm switches open_clip to its CustomResidualAttentionBlock.
    bundle = _config_bundle(tmp_path_factory, "custom", qk_norm=True)
    tower = TextTower(bundle.model)
    assert tower.causal
    assert "CustomResidualAttentionBlock" in unsupported_reason(tower)
    from laic_core.text import prefix_cache

    monkeypatch.setattr(prefix_cache, "encode_after_prefix",
                        lambda *a: pytest.fail("the prefix cache ran on an unsupported tower"))
    got = encode_nouns(bundle, tower, ["dog", "cat"], ["a photo of a {}."], batch_size=4)
    ref = _plain(bundle, ["a photo of a dog.", "a photo of a cat."]).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    with pytest.raises(NotImplementedError, match="prefix_cache=False"):
        prefix_cache.build_prefix_cache(tower, [torch.tensor([49406])])


def test_non_causal_towers_have_no_prefix_cache(tmp_path_factory):
    cfg = json.loads(json.dumps(TINY_CLIP_CONFIG))
    cfg["custom_text"] = True
    cfg["text_cfg"]["no_causal_mask"] = True
    path = tmp_path_factory.mktemp("bidir") / "laic-tiny-bidir-prefix.json"
    path.write_text(json.dumps(cfg))
    tower = TextTower(load_clip(str(path), "none", "cpu").model)
    assert "not causal" in unsupported_reason(tower)


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_MODELS / "MiniVLM-64.json").is_file(),
                    reason="needs ../shared/models/MiniVLM-64 (the shared real small model)")
def test_cache_is_exact_on_the_shared_real_model():
    bundle = load_clip(str(SHARED_MODELS / "MiniVLM-64.json"),
                       str(SHARED_MODELS / "MiniVLM-64" / "open_clip_model.safetensors"), "cpu")
    tower = TextTower(bundle.model)
    nouns = NOUNS + ["tabby cat", "airliner", "Persian", "sea anemone"]
    on = encode_nouns(bundle, tower, nouns, TEMPLATES, batch_size=16)
    off = encode_nouns(bundle, tower, nouns, TEMPLATES, batch_size=16, prefix_cache=False)
    np.testing.assert_allclose(on, off, atol=1e-5, rtol=0)


def test_batches_bound_their_size_and_padding():
    from laic_core.text.prefix_cache import _length_batches

    lengths = torch.tensor([2] * 7 + [3] * 5 + [4] * 2 + [9])
    one_length = _length_batches(lengths, batch_size=4, slack=1.0)
    assert [(b.start, b.stop) for b in one_length] == [(0, 4), (4, 7), (7, 11), (11, 12), (12, 14), (14, 15)]
    for slack in (1.0, 1.2, 2.0):
        batches = _length_batches(lengths, batch_size=4, slack=slack)
        assert [b.start for b in batches] == [0] + [b.stop for b in batches[:-1]] and batches[-1].stop == 15
        for b in batches:
            part = lengths[b]
            assert len(part) <= 4 and int(part.max()) * len(part) <= slack * int(part.sum())
    assert len(_length_batches(lengths, batch_size=100, slack=2.0)) < len(_length_batches(lengths, 100, 1.0))


def test_cached_batches_respect_batch_size(tiny_bundle, monkeypatch):
    from laic_core.text import prefix_cache

    tower = TextTower(tiny_bundle.model)
    sizes = []
    after = prefix_cache.encode_after_prefix

    def spy(tower_, cache, which, rest):
        sizes.append(rest.shape[0])
        return after(tower_, cache, which, rest)

    monkeypatch.setattr(prefix_cache, "encode_after_prefix", spy)
    nouns = ["dog"] * 5 + ["ice cream"] * 2 + ["golden retriever puppy"]
    tokens = tiny_bundle.tokenizer([f"art of the {n}." for n in nouns])
    prefix = template_prefix(tower, tiny_bundle.tokenizer, "art of the {}.")
    got = _cached(tower, tokens, prefix, batch_size=3)
    assert sum(sizes) == len(nouns) and max(sizes) <= 3
    assert (got - _plain(tiny_bundle, [f"art of the {n}." for n in nouns])).abs().max() < 1e-5


def test_vocab_prefix_cache_param(tmp_path, monkeypatch, tiny_config, capsys):
    import yaml

    from laic_core.config import params_from_dict
    from laic_core.errors import LaicError
    from stages.vocab import main

    assert params_from_dict({}).vocab.prefix_cache is True
    with pytest.raises(LaicError, match=r"vocab.prefix_cache: 'yes' must be true or false"):
        params_from_dict({"vocab": {"prefix_cache": "yes"}})

    monkeypatch.chdir(tmp_path)
    Path("nouns.txt").write_text("dog\ncat\nice cream\nC#\n")
    out = {}
    for flag in (True, False):
        Path("params.yaml").write_text(yaml.safe_dump({
            "model": {"name": str(tiny_config), "pretrained": "none", "device": "cpu"},
            "vocab": {"source": "nouns.txt", "prefix_cache": flag}}))
        main(Path("params.yaml"))
        out[flag] = np.load("data/vocab/text.npy")
        Path("data/vocab/text.npy").unlink()  # no resuming from the other run's chunks
    log = capsys.readouterr().out
    assert "template prefixes cached" in log and "prefix cache off (vocab.prefix_cache: false)" in log
    np.testing.assert_allclose(out[True], out[False], atol=1e-5, rtol=0)
