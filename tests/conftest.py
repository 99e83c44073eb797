"""Shared fixtures: a tiny random-weight open_clip model and generated image trees.

Nothing here touches the network: the model is a 64-wide, 2-layer ViT and
text tower built from a config JSON with random weights.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests never read or fill the user's embedding cache (~/.cache/laic); the ones about it set their own.
# An environment variable, so the stages that tests start as processes (dvc repro) see it too.
os.environ["LAIC_CACHE_DIR"] = "off"
PROJECT = Path(__file__).resolve().parents[1]

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


# ------------------------------------------------------------ tests write only under their tmp paths


def _checkout_state() -> set[str] | None:
    """`git status --porcelain --ignored` of the checkout, less Python's and pytest's own caches
    (bytecode and .pytest_cache, which any run of Python or pytest makes); None outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=PROJECT,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return {line for line in out.stdout.splitlines()
            if "__pycache__/" not in line and ".pytest_cache/" not in line and not line.endswith(".pyc")}


def pytest_sessionstart(session):
    session.config._laic_checkout = _checkout_state()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_laic_checkout", None)
    after = _checkout_state()
    if before is None or after is None or after == before:
        return
    added, removed = sorted(after - before), sorted(before - after)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = ("tests changed the checkout (they must write only under their tmp paths): "
               + "; ".join([f"new {line}" for line in added] + [f"gone {line}" for line in removed])[:2000])
    if reporter is not None:
        reporter.write_line(message, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
