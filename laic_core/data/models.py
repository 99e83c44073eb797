"""One entry point to an open_clip model: `load_clip(name, pretrained, device)`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from laic_core.errors import LaicError
from laic_core.provenance import CHECKPOINT_SUFFIXES, looks_like_path


@dataclass
class ClipBundle:
    """What every stage needs from a CLIP model, in eval mode on `device`."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]  # PIL image -> (3, H, W) tensor
    tokenizer: Callable[..., torch.Tensor]  # list[str] -> (B, context_length) int64
    device: torch.device
    dtype: torch.dtype  # the dtype the model computes in
    name: str
    pretrained: str


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise LaicError("model.device: 'cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LaicError("model.device: 'mps' was asked for but Apple MPS is unavailable; use 'auto' or 'cpu'")
    if device not in ("cpu", "cuda", "mps"):
        raise LaicError(f"model.device: {device!r} is not one of 'auto', 'cpu', 'cuda', 'mps'")
    return torch.device(device)


def array_device(device: str = "auto") -> str:
    """Where the array work of a stage runs (kNN, k-means, training heads): "cuda" when the model
    runs on CUDA, else "cpu" (those paths are not tuned for Apple MPS)."""
    return "cuda" if resolve_device(device).type == "cuda" else "cpu"


def compute_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype `load_clip` runs a model in on `device`: float16 on CUDA and MPS, else float32."""
    return torch.float16 if torch.device(device).type in ("cuda", "mps") else torch.float32


def _register_config_file(name: str) -> str:
    """A path to a model-config JSON is registered with open_clip and loaded by its stem.

    open_clip's factory does not take a config path as the model name.
    """
    import open_clip

    path = Path(name)
    if not path.is_file():
        raise LaicError(f"model.name: config file {path} does not exist")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LaicError(f"model.name: {path} is not a valid JSON model config ({exc})") from exc
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise LaicError(
            f"model.name: {path} is not an open_clip model config "
            "(it needs the keys embed_dim, vision_cfg and text_cfg)"
        )
    open_clip.add_model_config(path)
    return path.stem


def load_clip(name: str, pretrained: str = "openai", device: str = "auto") -> ClipBundle:
    """Build an open_clip model, its eval preprocessing and tokenizer.

    name: an open_clip model name (``ViT-B-32``) or a path to a model-config JSON.
    pretrained: an open_clip pretrained tag (downloaded and cached on first
        use), a local checkpoint path, or ``"none"`` for random weights.
    device: ``auto`` | ``cpu`` | ``cuda`` | ``mps``. On CUDA and MPS the model
        runs in float16.
    """
    import open_clip

    dev = resolve_device(device)
    model_name = _register_config_file(name) if looks_like_path(name) else name
    if model_name not in open_clip.list_models():
        raise LaicError(
            f"model.name: {name!r} is not an open_clip model; use a name from "
            "open_clip.list_models() (e.g. ViT-B-32) or a path to a model-config JSON"
        )

    weights: str | None
    if pretrained in ("none", "", None):
        weights = None
    elif Path(pretrained).is_file():
        weights = str(pretrained)
    elif looks_like_path(pretrained) or pretrained.endswith(CHECKPOINT_SUFFIXES):
        raise LaicError(f"model.pretrained: checkpoint file {pretrained} does not exist")
    else:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in known:
            raise LaicError(
                f"model.pretrained: {pretrained!r} is not a pretrained tag of {model_name} "
                f"(known: {', '.join(known) or 'none'}); or pass a local checkpoint path, or 'none'"
            )
        weights = pretrained

    try:
        # Random initialisation ("none") is seeded so that smoke runs and tests
        # are reproducible; the global RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=weights)
    except Exception as exc:  # open_clip raises RuntimeError/OSError/HTTP errors when offline
        if weights is not None and not Path(weights).is_file():
            raise LaicError(
                f"model.pretrained: could not fetch the {model_name} weights {weights!r} ({exc}). "
                "Without network access, download the checkpoint elsewhere and set "
                "model.pretrained to its local path."
            ) from exc
        raise LaicError(f"model: could not build {model_name} with weights {weights!r}: {exc}") from exc

    # open_clip returns models in train mode; dropout/BatchNorm would make
    # embeddings depend on the batch.
    model.eval()
    model.requires_grad_(False)
    dtype = compute_dtype(dev)
    model.to(device=dev, dtype=dtype)
    tokenizer = open_clip.get_tokenizer(model_name)
    return ClipBundle(model, preprocess, tokenizer, dev, dtype, name, str(pretrained))
