"""Encode texts with a CLIP text tower: plain texts, and nouns under a template ensemble.

Exact dynamic truncation everywhere the tower allows it (laic_core.text.tower),
and each template's shared prefix encoded once (laic_core.text.prefix_cache).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from laic_core.data.models import ClipBundle
from laic_core.text.prefix_cache import encode_with_prefix_batches, template_prefix, unsupported_reason
from laic_core.text.tower import TextTower, encode_token_batches
from laic_core.text.vocab import expand_templates, validate_templates


def encode_texts(
    bundle: ClipBundle,
    texts: Sequence[str],
    *,
    batch_size: int = 1024,
    truncate: bool = True,
) -> np.ndarray:
    """(len(texts),) strings -> (len(texts), D) float32 L2-normalised text embeddings.

    Uses exact dynamic truncation where the text tower allows it
    (see `laic_core.text.tower`).
    """
    if len(texts) == 0:
        raise ValueError("no texts to encode")
    tokens = bundle.tokenizer(list(texts))
    tower = TextTower(bundle.model)
    return encode_token_batches(
        tower, tokens, batch_size=batch_size, device=bundle.device, truncate=truncate
    ).numpy()


def distinct_token_rows(tokens: torch.Tensor) -> np.ndarray:
    """Indices of the first occurrence of each distinct token row, in input order.

    tokens: (M, L) int64. Two nouns with the same tokens get the same
    embedding under every template, so only one of them is worth keeping.
    """
    _, first = np.unique(tokens.numpy(), axis=0, return_index=True)
    return np.sort(first)


def ensemble_mean(features: torch.Tensor, n_templates: int) -> torch.Tensor:
    """(M * P, d) unit rows, noun-major -> (M, d): mean over the P templates, renormalised."""
    per_noun = features.reshape(-1, n_templates, features.shape[-1]).mean(dim=1)
    return torch.nn.functional.normalize(per_noun, dim=-1)


def encode_nouns(
    bundle: ClipBundle,
    tower: TextTower,
    nouns: Sequence[str],
    templates: Sequence[str],
    *,
    batch_size: int = 1024,
    truncate: bool = True,
    prefix_cache: bool = True,
) -> np.ndarray:
    """(M,) nouns -> (M, d) float32: mean of the normalised template embeddings, renormalised.

    With `prefix_cache` (and `truncate`) on a tower that supports it, each
    template's shared leading tokens are encoded once and reused
    (`laic_core.text.prefix_cache`); the features equal the plain truncated path's
    up to float rounding. Otherwise every prompt is encoded whole.
    """
    templates = validate_templates(templates)
    prompts = expand_templates(list(nouns), templates)
    tokens = bundle.tokenizer(prompts)
    if truncate and prefix_cache and unsupported_reason(tower) is None:
        prefixes = [template_prefix(tower, bundle.tokenizer, t) for t in templates]
        which = torch.arange(len(templates)).repeat(len(nouns))  # prompts are noun-major
        feats = encode_with_prefix_batches(
            tower, tokens, which, prefixes, batch_size=batch_size, device=bundle.device
        )
    else:
        feats = encode_token_batches(tower, tokens, batch_size=batch_size, device=bundle.device, truncate=truncate)
    return ensemble_mean(feats, len(templates)).numpy()
