"""Temperatures relative to the model's logit scale: CLIP's defaults, other models' own."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from laic_core.data.models import load_clip
from laic_core.errors import LaicError
from laic_core.method.temperature import CLIP_LOGIT_SCALE, model_logit_scale, resolve_temperature

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
DEFAULTS = {"relation.tau": 0.5, "centers.tau": 1.0, "nouns.tau": 100.0}  # the params' tau_relative


def resolved(scale: float) -> dict[str, float]:
    return {name: resolve_temperature("auto", relative, scale, name) for name, relative in DEFAULTS.items()}


def test_clip_vit_b32_config_resolves_to_taccs_and_the_designs_values():
    bundle = load_clip("ViT-B-32", "none", "cpu")  # random weights: no download
    scale = model_logit_scale(bundle.model, "none")
    assert scale == CLIP_LOGIT_SCALE
    taus = resolved(scale)
    assert taus["relation.tau"] == pytest.approx(0.005) and taus["centers.tau"] == pytest.approx(0.01)
    assert taus["nouns.tau"] == pytest.approx(1.0)


def test_a_trained_checkpoint_brings_its_own_scale(tiny_config, tmp_path):
    """OpenAI's ViT-B/32 checkpoint stores logit_scale = log(100); the stand-in stores log(29.3)."""
    bundle = load_clip(str(tiny_config), "none", "cpu")
    for stored, expected in ((math.log(100.0), 0.01), (math.log(29.28), 1 / 29.28)):
        state = bundle.model.state_dict()
        state["logit_scale"] = torch.tensor(stored)
        checkpoint = tmp_path / f"tiny-{expected:.4f}.pt"
        torch.save(state, checkpoint)
        trained = load_clip(str(tiny_config), str(checkpoint), "cpu")
        scale = model_logit_scale(trained.model, str(checkpoint))
        assert scale == pytest.approx(math.exp(stored), rel=1e-5)
        assert resolved(scale)["centers.tau"] == pytest.approx(expected, rel=1e-5)
        assert resolved(scale)["relation.tau"] == pytest.approx(expected / 2, rel=1e-5)


def test_a_number_is_an_absolute_temperature_and_bad_values_are_named():
    assert resolve_temperature(0.02, 1.0, 29.3, "centers.tau") == 0.02
    with pytest.raises(LaicError, match="centers.tau.*'auto' or a number >= 1e-30"):
        resolve_temperature(-1.0, 1.0, 100.0, "centers.tau")
    # So small that cosines / tau overflow float32: softmax rows would be NaN
    with pytest.raises(LaicError, match=r"relation.tau: 1e-40 must be 'auto' or a number >= 1e-30 .*overflow"):
        resolve_temperature(1e-40, 0.5, 100.0, "relation.tau")
    with pytest.raises(LaicError, match=r"relation.tau: 'auto' gives .* = 1e-42.*raise relation.tau_relative"):
        resolve_temperature("auto", 1e-40, 100.0, "relation.tau")
    with pytest.raises(LaicError, match="relation.tau: 'auto' needs the model's logit scale"):
        resolve_temperature("auto", 0.5, None, "relation.tau")
    with pytest.raises(LaicError, match="no logit_scale"):
        model_logit_scale(torch.nn.Linear(2, 2), "openai")


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_MODELS / "MiniVLM-64.json").is_file(), reason="../shared/models absent")
def test_the_stand_in_model_gets_its_own_temperatures():
    bundle = load_clip(str(SHARED_MODELS / "MiniVLM-64.json"),
                       str(SHARED_MODELS / "MiniVLM-64" / "open_clip_model.safetensors"), "cpu")
    scale = model_logit_scale(bundle.model, "MiniVLM-64/open_clip_model.safetensors")
    assert scale == pytest.approx(29.28, abs=0.05)
    assert resolved(scale)["centers.tau"] == pytest.approx(0.0342, abs=1e-4)  # 3.4x CLIP's 0.01
