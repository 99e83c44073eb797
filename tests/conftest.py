"""Shared fixtures: a tiny random-weight open_clip model and generated image trees.

Nothing here touches the network: the model is a 64-wide, 2-layer ViT and
text tower built from a config JSON with random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def normalized(rows) -> np.ndarray:
    """(n, d) rows scaled to unit L2 norm (computed in float64), as float32."""
    rows = np.asarray(rows, dtype=np.float64)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """(n, d) float32 random unit vectors."""
    return normalized(rng.normal(size=(n, d)))


def provenance_meta(name: str = "ViT-B-32", pretrained: str = "openai", dim: int = 8) -> dict:
    """Parquet metadata saying which model made an embedding artifact, as embed and vocab write it."""
    from laic_core.provenance import model_identity, record

    return {"provenance": record(model_identity(name, pretrained), dim, logit_scale=100.0)}


def write_tiny_config(folder: Path) -> Path:
    path = Path(folder) / "laic-tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    return path


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    """Path to the tiny open_clip model-config JSON."""
    return write_tiny_config(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_config):
    """The tiny model with seeded random weights, on the CPU."""
    import torch

    from laic_core.data.models import load_clip

    torch.manual_seed(0)
    return load_clip(str(tiny_config), "none", "cpu")


def make_image_tree(root: Path, classes: int = 3, per_class: int = 4, size: int = 20,
                    seed: int = 0) -> Path:
    """root/<class_i>/img_j.png with class-specific colours (plus noise)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, size=3)
        for j in range(per_class):
            noise = rng.integers(-30, 30, size=(size, size, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{j}.png")
    return root


@pytest.fixture
def image_tree(tmp_path) -> Path:
    return make_image_tree(tmp_path / "images")
