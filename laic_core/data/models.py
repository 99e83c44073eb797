"""One entry point to an open_clip model: `load_clip(name, pretrained, device)`."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from laic_core.data import weights as weights_mod
from laic_core.errors import LaicError
from laic_core.provenance import CHECKPOINT_SUFFIXES, HF_CONFIG_NAME, looks_like_path, model_config_file


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


def _register_config_file(name: str) -> tuple[str, dict]:
    """A path to a model-config JSON is registered with open_clip and loaded by its stem.

    open_clip's factory does not take a config path as the model name. Two
    forms are taken: open_clip's own (embed_dim, vision_cfg, text_cfg), and
    the open_clip_config.json of a Hugging Face download ({model_cfg,
    preprocess_cfg}), also as the folder holding it; the latter is registered
    under its folder's name, and its preprocessing (mean, std, interpolation,
    resize mode) is returned as arguments of create_model_and_transforms.
    """
    import open_clip

    path = model_config_file(name)
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LaicError(f"model.name: {path} is not a valid JSON model config ({exc})") from exc
    keys = ("embed_dim", "vision_cfg", "text_cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model_cfg"), dict) and all(k in cfg["model_cfg"] for k in keys):
        stem = path.parent.name or path.stem  # a Hugging Face folder: registered under the folder's name
        plain = Path(tempfile.mkdtemp(prefix="laic-model-")) / f"{stem}.json"
        plain.write_text(json.dumps(cfg["model_cfg"]))
        open_clip.add_model_config(plain)
        pre = cfg.get("preprocess_cfg") or {}
        keys = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
                "resize_mode": "image_resize_mode"}
        return stem, {arg: tuple(pre[k]) if isinstance(pre[k], list) else pre[k] for k, arg in keys.items() if k in pre}
    if not isinstance(cfg, dict) or not all(k in cfg for k in keys):
        raise LaicError(
            f"model.name: {path} is not an open_clip model config (it needs the keys embed_dim, vision_cfg and "
            f"text_cfg, or model_cfg holding them as in a Hugging Face {HF_CONFIG_NAME})"
        )
    open_clip.add_model_config(path)
    return path.stem, {}


def _weights_beside(name: str) -> Path | None:
    """Weights lying next to a model-config file or in a model folder (a Hugging Face download)."""
    folder = Path(name) if Path(name).is_dir() else Path(name).parent
    for candidate in ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                      "open_clip_pytorch_model.bin", "open_clip_model.bin"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


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
    model_name, preprocessing = _register_config_file(name) if looks_like_path(name) else (name, {})
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
            beside = _weights_beside(name) if looks_like_path(name) else None
            hint = f"; set model.pretrained to {beside}, the weights beside that config" if beside else ""
            raise LaicError(
                f"model.pretrained: {pretrained!r} is not a pretrained tag of {model_name} "
                f"(known: {', '.join(known) or 'none'}); or pass a local checkpoint path, or 'none'{hint}"
            )
        weights = pretrained

    hub = contextlib.nullcontext()
    if weights is not None and not Path(weights).is_file() and weights_mod.hub_files(model_name, weights):
        if weights_mod.cached_weights(model_name, weights) is not None:
            if weights_mod.offline_asked() or not weights_mod.hub_reachable():
                hub = weights_mod.hub_offline()  # read the cache without a minute of retries
        elif weights_mod.offline_asked() or not weights_mod.hub_reachable():
            raise LaicError(
                f"model.pretrained: the {model_name} weights {weights!r} are not downloaded yet "
                "(not in the Hugging Face cache, ~/.cache/huggingface/hub) and the hub cannot be reached "
                "from here. On a machine with network access, download them (python -c \"import open_clip; "
                f"open_clip.create_model_and_transforms('{model_name}', pretrained='{weights}')\") and copy "
                "~/.cache/huggingface/hub here, or set model.pretrained to a local checkpoint file."
            )
    try:
        # Random initialisation ("none") is seeded so that smoke runs and tests
        # are reproducible; the global RNG is left as it was.
        with torch.random.fork_rng(devices=[]), hub:
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=weights,
                                                                          **preprocessing)
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
