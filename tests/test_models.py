"""load_clip: names, config files, checkpoints and the offline error."""

from __future__ import annotations

import open_clip
import pytest
import torch

from laic_core.data.models import load_clip
from laic_core.errors import LaicError


def test_config_path_loads_in_eval_mode(tiny_bundle):
    assert not tiny_bundle.model.training
    assert all(not p.requires_grad for p in tiny_bundle.model.parameters())
    assert tiny_bundle.tokenizer(["a dog"]).shape == (1, 77)


def test_random_init_is_reproducible(tiny_config):
    a = load_clip(str(tiny_config), "none", "cpu").model.state_dict()
    b = load_clip(str(tiny_config), "none", "cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_local_checkpoint_is_loaded(tiny_config, tmp_path):
    torch.manual_seed(123)
    model, _, _ = open_clip.create_model_and_transforms(tiny_config.stem, pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    loaded = load_clip(str(tiny_config), str(ckpt), "cpu").model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(LaicError, match=r"model.name: 'ViT-Q-99' is not an open_clip model"):
        load_clip("ViT-Q-99", "none", "cpu")
    with pytest.raises(LaicError, match=r"model.name: config file .*missing.json does not exist"):
        load_clip(str(tmp_path / "missing.json"), "none", "cpu")
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 3}')
    with pytest.raises(LaicError, match=r"bad.json is not an open_clip model config"):
        load_clip(str(bad), "none", "cpu")
    with pytest.raises(LaicError, match=r"model.pretrained: checkpoint file .*nope.pt does not exist"):
        load_clip("ViT-B-32", str(tmp_path / "nope.pt"), "cpu")
    with pytest.raises(LaicError, match=r"'laion9000' is not a pretrained tag of ViT-B-32.*openai"):
        load_clip("ViT-B-32", "laion9000", "cpu")


def test_offline_download_failure_says_to_pass_a_local_checkpoint(monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'openai': connection refused")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    with pytest.raises(LaicError) as err:
        load_clip("ViT-B-32", "openai", "cpu")
    message = str(err.value)
    assert "could not fetch" in message and "local path" in message and "model.pretrained" in message


def test_unavailable_device():
    if not torch.cuda.is_available():
        with pytest.raises(LaicError, match=r"model.device: 'cuda'.*no CUDA GPU"):
            load_clip("ViT-B-32", "none", "cuda")
