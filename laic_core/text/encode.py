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


def nouns_cut_by_context(tokenizer, nouns: Sequence[str], noun_tokens: torch.Tensor,
                         templates: Sequence[str], context_length: int) -> list[str]:
    """The nouns whose prompt under some template is longer than the text tower's context.

    The tokenizer cuts such a prompt at `context_length` tokens without a
    word, so its end (the noun itself, or the template's last words) is
    never encoded. noun_tokens: (M, L) the nouns tokenized alone (as the
    vocab stage has them already). Tokenizing 100,000 nouns under every
    template again would take minutes, so only the nouns long enough to
    come near the limit are tokenized in their prompts, with one position
    more than the context: a prompt that fills it was cut.
    """
    wide = context_length + 1
    pad = tokenizer([""], context_length=wide)[0, -1]
    template_lengths = [int((row != pad).sum()) for row in tokenizer([t.format("") for t in templates],
                                                                       context_length=wide)]
    noun_lengths = (noun_tokens != pad).sum(dim=1) - 2  # without the start and end tokens
    margin = 2  # a word may split into other pieces beside the template's
    near = np.flatnonzero((noun_lengths + max(template_lengths) + margin >= context_length).numpy())
    cut: list[str] = []
    for i in near.tolist():
        prompts = tokenizer(expand_templates([nouns[i]], templates), context_length=wide)
        if bool((prompts[:, context_length] != pad).any()):
            cut.append(nouns[i])
    return cut


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
