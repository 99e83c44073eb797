"""Encode templated prompts once per shared prefix: a key/value cache.

Every prompt of a template such as "a photo of the large {}." starts with the
same tokens ([SOT] a photo of the large). CLIP's text transformer is causal,
so the hidden states, keys and values at those positions are the same for
every noun: they can be computed once per template and reused. Each noun's
prompt then only runs its own remaining tokens (noun, template suffix, EOT)
through the blocks, attending to [cached prefix keys/values ; its own] under
the causal mask, and is pooled at EOT as before. The result equals the plain
truncated path (`text_tower.encode_token_batches`) up to float rounding.

Exactness rests on the tokens, not the text: a prompt takes the cached path
only when its own full tokenization starts with its template's prefix tokens
(BPE may merge a noun with characters that touch it, e.g. "a({}" or
"photo{}"), and falls back to the plain path otherwise. Everything after the
prefix (noun, suffix, EOT) is taken from the prompt's own tokenization, so a
suffix touching the noun ("{}s", "{}.") needs no check. Towers whose blocks
this module does not reproduce (custom attention, cross-attention,
bidirectional or pad-masked towers, CoCa, HF) take the plain path as a whole.

One cache holds the prefixes of all templates (padded to the longest, the
padding masked out), so a batch may mix templates: prompts are grouped by the
length of their remaining tokens only, which keeps batches few, large and
nearly unpadded (on a busy CPU many small batches cost far more than their
arithmetic).

Attention is re-implemented from each block's `nn.MultiheadAttention`
weights (open_clip's default `ResidualAttentionBlock`), with
`scaled_dot_product_attention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from laic_core.text.tower import TextTower, encode_token_batches


@dataclass(frozen=True)
class PrefixCache:
    """Keys and values of T token prefixes (one per template), padded to the longest.

    tokens: T tensors of shape (P_t,) int64 ([SOT] + a template's tokens before the noun).
    lengths: (T,) int64, the P_t, on the tower's device.
    keys, values: one (T, heads, P_max, head_dim) tensor per block, in the
        tower's compute dtype and on its device; slots >= P_t of prefix t
        hold padding that attention masks out.
    """

    tokens: tuple[torch.Tensor, ...]
    lengths: torch.Tensor
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]


def unsupported_reason(tower: TextTower) -> Optional[str]:
    """Why the prefix cache would not be exact on this tower, or None when it is."""
    from open_clip.transformer import ResidualAttentionBlock

    if not tower.native:
        return "the text tower is not an open_clip native transformer"
    if not tower.causal or not tower.accepts_embeddings:
        return "the text tower is not causal (or masks/appends tokens itself)"
    if tower.pool_type not in ("argmax", "eos"):
        # 'first' pooling reads position 0, inside the prefix: nothing to save.
        return f"the text tower pools at {tower.pool_type!r}, not at the end-of-text token"
    mask = tower.attn_mask
    above = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    if not torch.equal(torch.isneginf(mask), above) or bool((mask[~above] != 0).any()):
        return "the text tower's attention mask is not the plain causal mask"
    for i, block in enumerate(tower._src.transformer.resblocks):
        # Exact type: a subclass may change the forward this module reproduces.
        if type(block) is not ResidualAttentionBlock:
            return f"text block {i} is a {type(block).__name__}, not open_clip's default ResidualAttentionBlock"
        attn = block.attn
        if (
            hasattr(block, "ln_1_kv")
            or not isinstance(attn, torch.nn.MultiheadAttention)
            or not attn._qkv_same_embed_dim
            or attn.bias_k is not None
            or attn.add_zero_attn
        ):
            return f"text block {i} uses an attention variant the prefix cache does not reproduce"
    return None


def _require_supported(tower: TextTower) -> None:
    reason = unsupported_reason(tower)
    if reason is not None:
        raise NotImplementedError(
            f"the prefix cache is not exact here: {reason}. Encode with "
            "`encode_token_batches` (or pass prefix_cache=False to encode_nouns)."
        )


def _forward_blocks(
    tower: TextTower,
    x: torch.Tensor,
    past: Optional[tuple[PrefixCache, torch.Tensor]],
    *,
    keep_kv: bool,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Run the tower's blocks on the positions that follow each row's cached prefix.

    x: (B, S, width) token plus positional embeddings, in the compute dtype.
    past: (cache, which) with which (B,) the prefix of each row, or None for
        rows that start at position 0.
    Returns the (B, S, width) output of the last block and, with keep_kv, each
    block's (keys, values) of these S positions, (B, heads, S, head_dim) each.
    """
    B, S, width = x.shape
    if past is not None:
        cache, which = past
        P = cache.keys[0].shape[2]
        # Row b, own position i sees its prefix's P_b real slots and its own
        # positions <= i: the causal mask with the prefix padding cut out.
        sees_prefix = torch.arange(P, device=x.device) < cache.lengths[which][:, None]  # (B, P)
        causal = torch.ones(S, S, dtype=torch.bool, device=x.device).tril()
        mask = torch.cat((sees_prefix[:, None, :].expand(B, S, P), causal.expand(B, S, S)), dim=2)
        mask = mask[:, None]  # (B, 1, S, P + S): the same for every head
    kept = []
    for layer, block in enumerate(tower._src.transformer.resblocks):
        attn = block.attn
        heads = attn.num_heads
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(B, S, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
        if keep_kv:
            kept.append((k.contiguous(), v.contiguous()))
        if past is not None:
            k = torch.cat((cache.keys[layer][which], k), dim=2)
            v = torch.cat((cache.values[layer][which], v), dim=2)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = attn.out_proj(out.transpose(1, 2).reshape(B, S, width))
        x = x + block.ls_1(out)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, kept


def build_prefix_cache(tower: TextTower, prefixes: Sequence[torch.Tensor]) -> PrefixCache:
    """T prefixes, each (P_t,) int64 with 1 <= P_t < context length -> their keys/values.

    All prefixes run as one right-padded batch: the tower is causal, so the
    padding after a prefix does not change its keys and values.
    Call under `torch.inference_mode()` (or no_grad) like the encoding that
    uses it.
    """
    _require_supported(tower)
    lengths = [int(p.shape[0]) for p in prefixes]
    if not prefixes or not all(1 <= n < tower.context_length for n in lengths):
        raise ValueError(f"give at least one prefix of 1 to {tower.context_length - 1} tokens, got lengths {lengths}")
    src = tower._src
    cast = src.transformer.get_cast_dtype()
    device = src.positional_embedding.device
    P = max(lengths)
    padded = torch.zeros((len(prefixes), P), dtype=torch.long)
    for t, prefix in enumerate(prefixes):
        padded[t, :lengths[t]] = prefix
    padded = padded.to(device)
    x = (src.token_embedding(padded) + src.positional_embedding[:P]).to(cast)
    _, kept = _forward_blocks(tower, x, None, keep_kv=True)
    return PrefixCache(
        tokens=tuple(p.detach().to("cpu", torch.long) for p in prefixes),
        lengths=torch.tensor(lengths, dtype=torch.long, device=device),
        keys=tuple(k for k, _ in kept),
        values=tuple(v for _, v in kept),
    )


def encode_after_prefix(
    tower: TextTower, cache: PrefixCache, which: torch.Tensor, rest: torch.Tensor
) -> torch.Tensor:
    """Features of prompts that start with a cached prefix, from their remaining tokens.

    which: (B,) int64, the prefix (index into `cache.tokens`) each prompt starts with.
    rest: (B, S) int64, each prompt's tokens from position P_which on; every
        row must hold its pooled (EOT) token; anything after the longest
        row's EOT is cut off here (exact: the tower is causal).
    Returns (B, D) unnormalised features, as `TextTower.encode` of the full
    prompts would give (up to float rounding).
    """
    _require_supported(tower)
    src = tower._src
    cast = src.transformer.get_cast_dtype()
    device = src.positional_embedding.device
    rest, which = rest.to(device), which.to(device)
    pos = tower.pooled_positions(rest)
    if tower.pool_type == "eos" and not bool((rest == tower.eos_id).any(dim=1).all()):
        raise ValueError("every row of `rest` must hold its end-of-text token")
    S = int(pos.max().item()) + 1
    starts = cache.lengths[which]  # (B,) absolute position of each row's first rest token
    if int((starts + pos).max()) >= tower.context_length:
        raise ValueError(f"a prompt's prefix plus rest tokens exceed the context length {tower.context_length}")
    rest = rest[:, :S]
    # Positions past a row's EOT only feed its don't-care tail (causal):
    # clamping keeps rows with a long prefix and a short rest in range.
    positions = (starts[:, None] + torch.arange(S, device=device)).clamp(max=tower.context_length - 1)
    x = (src.token_embedding(rest) + src.positional_embedding[positions]).to(cast)
    x, _ = _forward_blocks(tower, x, (cache, which), keep_kv=False)
    return tower.pool_and_project(x, pos)


def template_prefix(tower: TextTower, tokenizer: Callable, template: str) -> torch.Tensor:
    """(P,) int64: the tokens every prompt of `template` should start with.

    The tokenization of the text before "{}" up to (not including) its EOT.
    When that text does not end in whitespace its last token is dropped: the
    word touching the noun may merge with it ("a({}" + "(x)" -> "((").
    Whether a given prompt really starts with these tokens is checked per
    prompt (`prefix_matches`); this only proposes the prefix. P may be 0
    (no shared tokens, as with tokenizers without a start token).
    """
    head = template.split("{}", 1)[0]
    row = tokenizer([head])
    pos = int(tower.pooled_positions(row)[0])
    prefix = row[0, :pos]
    if head and not head[-1].isspace() and prefix.shape[0] > 1:
        prefix = prefix[:-1]
    return prefix.to(torch.long)


def prefix_matches(tower: TextTower, tokens: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which rows of (N, L) `tokens` start with (P,) `prefix` and pool after it.

    Only those rows may take the cached path; the rest must be encoded whole.
    An empty prefix matches nothing (there is nothing to reuse).
    """
    P = int(prefix.shape[0])
    if P == 0 or P >= tokens.shape[1]:
        return torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    same = (tokens[:, :P] == prefix.to(tokens.device)).all(dim=1)
    return same & (tower.pooled_positions(tokens) >= P)


# A batch may pad its prompts by up to this factor of their real tokens. One
# length per batch wastes nothing, but leaves a long tail of small batches;
# on a busy CPU each batch's dozens of kernel launches (and their thread
# synchronisation) then cost more than the padding saves.
_PADDING_SLACK = 1.2


def _length_batches(sorted_lengths: torch.Tensor, batch_size: int, slack: float = _PADDING_SLACK) -> list[slice]:
    """Slices of an ascending (N,) length vector into batches of at most batch_size.

    A batch costs about (its count) x (its longest length); consecutive
    lengths share a batch while that stays within `slack` x their summed
    lengths (slack 1: one length per batch).
    """
    values, counts = torch.unique_consecutive(sorted_lengths, return_counts=True)
    batches: list[slice] = []
    start = n = total = 0  # the open batch: first row, rows, summed lengths
    for length, count in zip(values.tolist(), counts.tolist()):
        while count:
            k = min(count, batch_size - n)
            if n and (k == 0 or length * (n + k) > slack * (total + k * length)):
                batches.append(slice(start, start + n))
                start, n, total = start + n, 0, 0
                continue
            n, total, count = n + k, total + k * length, count - k
    if n:
        batches.append(slice(start, start + n))
    return batches


def encode_with_prefix_batches(
    tower: TextTower,
    tokens: torch.Tensor,
    which: torch.Tensor,
    prefixes: Sequence[torch.Tensor],
    *,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """(N, L) prompt tokens -> (N, D) float32 L2-normalised features, reusing prefixes.

    which: (N,) int64, the template of each row: row n should start with
        prefixes[which[n]], a (P_t,) tensor (see `template_prefix`).
    Rows that do start with their prefix (`prefix_matches`) share one cache of
    all prefixes, in batches of at most `batch_size` prompts of similar
    remaining lengths (`_length_batches`); the others are encoded by the
    plain truncated path.
    Rows come back in input order. The tower must support the cache
    (`unsupported_reason(tower) is None`).
    """
    _require_supported(tower)
    which = which.to(torch.long)
    lengths = torch.tensor([int(p.shape[0]) for p in prefixes], dtype=torch.long)
    ok = torch.zeros(tokens.shape[0], dtype=torch.bool)
    for t, prefix in enumerate(prefixes):
        rows = which == t
        ok[rows] = prefix_matches(tower, tokens[rows], prefix)
    if not bool(ok.any()):
        return encode_token_batches(tower, tokens, batch_size=batch_size, device=device)
    rows = ok.nonzero().squeeze(1)
    # Remaining length of each cached row (its EOT's index past the prefix).
    rest_len = tower.pooled_positions(tokens[rows]) - lengths[which[rows]] + 1
    by_length = torch.argsort(rest_len, stable=True)
    rows, rest_len = rows[by_length], rest_len[by_length]
    used = sorted(set(which[rows].tolist()))  # cache only the prefixes some row uses
    slot = torch.full((len(prefixes),), -1, dtype=torch.long)
    slot[used] = torch.arange(len(used))
    chunks = []
    with torch.inference_mode():
        cache = build_prefix_cache(tower, [prefixes[t] for t in used])
        for batch in _length_batches(rest_len, batch_size):
            idx = rows[batch]
            width = int(rest_len[batch.stop - 1])  # the longest: lengths ascend
            starts = lengths[which[idx]]
            # Past a row's EOT the gathered tokens are don't-cares (the tower
            # is causal); clamp so that short-prefix rows stay inside L.
            cols = (starts[:, None] + torch.arange(width)).clamp(max=tokens.shape[1] - 1)
            rest = tokens[idx[:, None], cols]  # (b, width)
            feats = encode_after_prefix(tower, cache, slot[which[idx]], rest)
            chunks.append(F.normalize(feats.float(), dim=-1).cpu())
    # Filled outside inference mode, like encode_token_batches' result, so
    # callers may modify it.
    out = torch.empty((tokens.shape[0], chunks[0].shape[1]), dtype=torch.float32)
    out[rows] = torch.cat(chunks)
    if not bool(ok.all()):
        out[~ok] = encode_token_batches(tower, tokens[~ok], batch_size=batch_size, device=device)
    return out
