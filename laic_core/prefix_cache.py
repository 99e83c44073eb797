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
only when its own full tokenization starts with the cached prefix tokens
(BPE may merge a noun with characters that touch it, e.g. "{}s" or "a({}"),
and falls back to the plain path otherwise. Towers whose blocks this module
does not reproduce (custom attention, cross-attention, bidirectional or
pad-masked towers, CoCa, HF) take the plain path as a whole.

Attention is re-implemented from each block's `nn.MultiheadAttention`
weights (open_clip's default `ResidualAttentionBlock`), with
`scaled_dot_product_attention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from laic_core.text_tower import TextTower


@dataclass(frozen=True)
class PrefixCache:
    """Keys and values of the first P positions of a family of prompts.

    tokens: (P,) int64, the shared prefix ([SOT] + template tokens before the noun).
    keys, values: one (1, heads, P, head_dim) tensor per block, in the tower's
        compute dtype and on its device.
    """

    tokens: torch.Tensor
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0])


def unsupported_reason(tower: "TextTower") -> Optional[str]:
    """Why the prefix cache would not be exact on this tower, or None when it is."""
    from open_clip.transformer import ResidualAttentionBlock

    if not tower.native:
        return "the text tower is not an open_clip native transformer"
    if not tower.causal or not tower.accepts_embeddings:
        return "the text tower is not causal (or masks/appends tokens itself)"
    if tower.pool_type not in ("argmax", "eos"):
        # 'first' pooling reads position 0, inside the prefix: nothing to save.
        return f"the text tower pools at {tower.pool_type!r}, not at the end-of-text token"
    n = int(tower.attn_mask.shape[0])
    above = torch.ones(n, n, dtype=torch.bool, device=tower.attn_mask.device).triu(1)
    if not torch.equal(torch.isneginf(tower.attn_mask), above) or bool((tower.attn_mask[~above] != 0).any()):
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


def _forward_blocks(
    tower: "TextTower", x: torch.Tensor, past: Optional[PrefixCache], *, keep_kv: bool
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Run the tower's blocks on positions P..P+S-1, given the cached positions 0..P-1.

    x: (B, S, width) token plus positional embeddings, in the compute dtype.
    past: the cache of the P earlier positions, or None (P = 0).
    Returns the (B, S, width) output of the last block and, with keep_kv, each
    block's (keys, values) of these S positions, (B, heads, S, head_dim) each.
    """
    B, S, width = x.shape
    P = past.length if past is not None else 0
    # Position P + i sees every cached position and its own positions <= i:
    # the causal mask, shifted right by P (True = may attend).
    mask = torch.ones(S, P + S, dtype=torch.bool, device=x.device).tril(diagonal=P) if P else None
    kept = []
    for layer, block in enumerate(tower._src.transformer.resblocks):
        attn = block.attn
        heads = attn.num_heads
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(B, S, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
        if keep_kv:
            kept.append((k.contiguous(), v.contiguous()))
        if P:
            k = torch.cat((past.keys[layer].expand(B, -1, -1, -1), k), dim=2)
            v = torch.cat((past.values[layer].expand(B, -1, -1, -1), v), dim=2)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = attn.out_proj(out.transpose(1, 2).reshape(B, S, width))
        x = x + block.ls_1(out)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, kept


def _require_supported(tower: "TextTower") -> None:
    reason = unsupported_reason(tower)
    if reason is not None:
        raise NotImplementedError(
            f"the prefix cache is not exact here: {reason}. Encode with "
            "`encode_token_batches` (or pass prefix_cache=False to encode_nouns)."
        )


def build_prefix_cache(tower: "TextTower", prefix: torch.Tensor) -> PrefixCache:
    """(P,) int64 prefix tokens -> their keys/values in every block.

    Call under `torch.inference_mode()` (or no_grad) like the encoding that
    uses it.
    """
    _require_supported(tower)
    P = int(prefix.shape[0])
    if not 1 <= P < tower.context_length:
        raise ValueError(f"a prefix must hold 1 to {tower.context_length - 1} tokens, got {P}")
    src = tower._src
    cast = src.transformer.get_cast_dtype()
    device = src.positional_embedding.device
    prefix = prefix.to(device=device, dtype=torch.long)
    x = (src.token_embedding(prefix) + src.positional_embedding[:P]).to(cast).unsqueeze(0)
    _, kept = _forward_blocks(tower, x, None, keep_kv=True)
    return PrefixCache(prefix.cpu(), tuple(k for k, _ in kept), tuple(v for _, v in kept))


def encode_after_prefix(tower: "TextTower", cache: PrefixCache, rest: torch.Tensor) -> torch.Tensor:
    """Features of prompts that start with `cache.tokens`, from their remaining tokens.

    rest: (B, S) int64, each prompt's tokens from position P = cache.length on;
        every row must hold its pooled (EOT) token; anything after the longest
        row's EOT is cut off here (exact: the tower is causal).
    Returns (B, D) unnormalised features, as `TextTower.encode` of the full
    prompts would (up to float rounding).
    """
    _require_supported(tower)
    src = tower._src
    cast = src.transformer.get_cast_dtype()
    P = cache.length
    rest = rest.to(src.positional_embedding.device)
    pos = tower.pooled_positions(rest)
    if tower.pool_type == "eos" and not bool((rest == tower.eos_id).any(dim=1).all()):
        raise ValueError("every row of `rest` must hold its end-of-text token")
    S = int(pos.max().item()) + 1
    if P + S > tower.context_length:
        raise ValueError(f"prefix ({P}) plus rest ({S}) tokens exceed the context length {tower.context_length}")
    rest = rest[:, :S]
    x = (src.token_embedding(rest) + src.positional_embedding[P:P + S]).to(cast)
    x, _ = _forward_blocks(tower, x, cache, keep_kv=False)
    return tower.pool_and_project(x, pos)


def template_prefix(tower: "TextTower", tokenizer: Callable, template: str) -> torch.Tensor:
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


def prefix_matches(tower: "TextTower", tokens: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which rows of (N, L) `tokens` start with `prefix` and pool after it.

    Only those rows may take the cached path; the rest must be encoded whole.
    """
    P = int(prefix.shape[0])
    if P == 0 or P >= tokens.shape[1]:
        return torch.zeros(tokens.shape[0], dtype=torch.bool)
    same = (tokens[:, :P] == prefix.to(tokens.device)).all(dim=1)
    return same & (tower.pooled_positions(tokens) >= P)


def _equal_length_batches(sorted_lengths: torch.Tensor, batch_size: int) -> list[slice]:
    """Slices of a sorted (N,) length vector: runs of one length, at most batch_size long.

    The remaining tokens of one template's prompts are short (about 6 for
    WordNet nouns) with a long tail; a batch padded to its longest prompt
    would spend much of the saving on padding, so no batch mixes lengths.
    """
    _, counts = torch.unique_consecutive(sorted_lengths, return_counts=True)
    batches, start = [], 0
    for count in counts.tolist():
        for lo in range(start, start + count, batch_size):
            batches.append(slice(lo, min(lo + batch_size, start + count)))
        start += count
    return batches


def encode_with_prefix_batches(
    tower: "TextTower",
    tokens: torch.Tensor,
    prefix: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """(N, L) tokens sharing (mostly) a (P,) prefix -> (N, D) float32 L2-normalised features.

    Rows that start with `prefix` (see `prefix_matches`) reuse one cache of
    it, in batches of at most `batch_size` prompts of one length; the others
    are encoded by the plain truncated path. Rows come back in input order.
    The tower must support the cache (`unsupported_reason(tower) is None`).
    """
    from laic_core.text_tower import encode_token_batches

    _require_supported(tower)
    ok = prefix_matches(tower, tokens, prefix)
    if not bool(ok.any()):
        return encode_token_batches(tower, tokens, batch_size=batch_size, device=device)
    P = int(prefix.shape[0])
    rows = ok.nonzero().squeeze(1)
    pos = tower.pooled_positions(tokens[rows])
    by_length = torch.argsort(pos, stable=True)
    rows, pos = rows[by_length], pos[by_length]
    chunks = []
    with torch.inference_mode():
        cache = build_prefix_cache(tower, prefix)
        for idx in _equal_length_batches(pos, batch_size):
            rest = tokens[rows[idx], P:]
            chunks.append(F.normalize(encode_after_prefix(tower, cache, rest).float(), dim=-1).cpu())
    # Filled outside inference mode, like encode_token_batches' result, so
    # callers may modify it.
    out = torch.empty((tokens.shape[0], chunks[0].shape[1]), dtype=torch.float32)
    out[rows] = torch.cat(chunks)
    if not bool(ok.all()):
        out[~ok] = encode_token_batches(tower, tokens[~ok], batch_size=batch_size, device=device)
    return out
