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
    from laic_core.data import weights

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'openai': connection refused")

    monkeypatch.setattr(weights, "hub_reachable", lambda: True)  # the hub answers, the download fails
    monkeypatch.setattr(weights, "cached_weights", lambda *a: None)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    with pytest.raises(LaicError) as err:
        load_clip("ViT-B-32", "openai", "cpu")
    message = str(err.value)
    assert "could not fetch" in message and "local path" in message and "model.pretrained" in message


def test_unavailable_device():
    if not torch.cuda.is_available():
        with pytest.raises(LaicError, match=r"model.device: 'cuda'.*no CUDA GPU"):
            load_clip("ViT-B-32", "none", "cuda")


def test_no_network_and_no_cached_weights_stops_at_once_with_what_to_do(monkeypatch):
    """No minute of hub retries before the one useful line: the client is never asked."""
    from laic_core.data import weights

    monkeypatch.setattr(weights, "hub_reachable", lambda: False)
    monkeypatch.setattr(weights, "cached_weights", lambda *a: None)
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda *a, **k: pytest.fail("the hub client was asked"))
    with pytest.raises(LaicError) as err:
        load_clip("ViT-B-32", "openai", "cpu")
    message = str(err.value)
    assert "not downloaded yet" in message and "~/.cache/huggingface/hub" in message
    assert "pretrained='openai'" in message and "local checkpoint file" in message


def test_cached_weights_load_with_the_hub_client_offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from laic_core.data import weights

    seen = []

    def create(*args, **kwargs):
        seen.append(constants.HF_HUB_OFFLINE)
        raise RuntimeError("stop here")

    monkeypatch.setattr(weights, "hub_reachable", lambda: False)
    monkeypatch.setattr(weights, "cached_weights", lambda *a: tmp_path / "weights.safetensors")
    monkeypatch.setattr(open_clip, "create_model_and_transforms", create)
    before = constants.HF_HUB_OFFLINE
    with pytest.raises(LaicError):
        load_clip("ViT-B-32", "openai", "cpu")
    assert seen == [True] and constants.HF_HUB_OFFLINE == before  # offline inside, restored after


def test_hub_files_follow_open_clips_naming():
    from laic_core.data.weights import hub_files

    repo, names = hub_files("ViT-B-32", "openai")
    assert repo == "timm/vit_base_patch32_clip_224.openai"
    assert names == ["open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"]


def test_a_hugging_face_open_clip_config_and_its_folder_are_model_names(tmp_path):
    """The open_clip_config.json of a Hugging Face download ({model_cfg, preprocess_cfg}), or its folder."""
    import json

    from tests.conftest import TINY_CLIP_CONFIG

    folder = tmp_path / "my-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}))
    for name in (folder, folder / "open_clip_config.json"):
        bundle = load_clip(str(name), "none", "cpu")
        assert bundle.tokenizer(["a dog"]).shape == (1, 77)
        assert "mean=(0.5, 0.5, 0.5)" in repr(bundle.preprocess)  # its preprocessing, not open_clip's default
    torch.save(bundle.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    with pytest.raises(LaicError, match=r"set model.pretrained to .*my-clip/open_clip_pytorch_model.bin"):
        load_clip(str(folder), "openai", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LaicError, match=r"folder .*empty holds no open_clip_config.json"):
        load_clip(str(tmp_path / "empty"), "none", "cpu")
    (tmp_path / "other.json").write_text('{"model": 1}')
    with pytest.raises(LaicError, match=r"not an open_clip model config .*model_cfg"):
        load_clip(str(tmp_path / "other.json"), "none", "cpu")
