"""A uniform view of open_clip's text towers, with exact dynamic truncation.

CLIP's text transformer is causal and pools the end-of-text (EOT) token, so
position p only ever attends to positions <= p and the pooled feature
depends only on the tokens up to EOT. Cutting a batch of 77-token sequences
to its longest real length therefore gives the same features, at a fraction
of the cost for nouns and short prompts. `TextTower` does that where it is
exact and falls back to the full length where it is not (bidirectional or
HF text towers, CoCa's appended class token, 'last'-token pooling).

The same entry point, `encode_embeddings`, serves prompt learning: callers
may replace token embeddings (learnable context vectors) before the tower.

Causality also lets prompts that share leading tokens (a template's words
before the noun) share their keys and values: `laic_core.text.prefix_cache`
builds on this module (and not the other way round).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class TextTower:
    """Wraps the text side of an open_clip `CLIP` or `CustomTextCLIP`.

    Attributes:
        causal: whether truncation to the pooled position is exact.
        context_length: the tower's full sequence length (77 for CLIP).
        width: the token-embedding width.
    """

    def __init__(self, model: torch.nn.Module):
        from open_clip.transformer import TextTransformer

        self.model = model
        text = getattr(model, "text", None)
        if isinstance(text, TextTransformer):  # CustomTextCLIP with a native tower
            self._src = text
            self.pool_type = text.pool_type
            self.eos_id = getattr(text, "eos_id", None)
            self.cls_emb = text.cls_emb
            self.attn_mask = text.attn_mask
            self.pad_masked = bool(getattr(text, "use_pad_mask", False))
            self.native = True
        elif text is None and hasattr(model, "token_embedding") and hasattr(model, "transformer"):  # CLIP
            self._src = model
            self.pool_type = model.text_pool_type
            self.eos_id = getattr(model, "text_eos_id", None)
            self.cls_emb = None
            self.attn_mask = model.attn_mask
            self.pad_masked = False
            self.native = True
        else:  # e.g. an HF text tower: opaque, full length only
            self._src = None
            self.native = False
            self.pool_type = None
            self.cls_emb = None
            self.attn_mask = None
            self.pad_masked = False
        self.causal = (
            self.native
            and self.attn_mask is not None
            and self.cls_emb is None
            and not self.pad_masked
            and self.pool_type in ("argmax", "eos", "first")
        )

    @property
    def accepts_embeddings(self) -> bool:
        """Whether `encode_embeddings` (prompt learning) works on this tower."""
        return self.native and self.cls_emb is None and not self.pad_masked

    @property
    def context_length(self) -> int:
        if self.native:
            return int(self._src.positional_embedding.shape[0])
        return int(getattr(self.model, "context_length", 77))

    @property
    def width(self) -> int:
        return int(self._src.token_embedding.weight.shape[1])

    @property
    def token_embedding(self) -> torch.nn.Embedding:
        self._require_native("token embeddings")
        return self._src.token_embedding

    def _require_native(self, what: str) -> None:
        if not self.native:
            raise NotImplementedError(
                f"{what} need an open_clip native text transformer; this model's text tower "
                f"({type(getattr(self.model, 'text', self.model)).__name__}) is not one. "
                "Use a CLIP model with a native text tower (e.g. ViT-B-32)."
            )

    def pooled_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B,) index of the token each sequence is pooled at."""
        if self.pool_type == "argmax":
            return tokens.argmax(dim=-1)
        if self.pool_type == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "first":
            return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        return torch.full((tokens.shape[0],), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)

    def truncated_length(self, tokens: torch.Tensor) -> int:
        """The shortest length that gives exact features for this batch."""
        if not self.causal:
            return tokens.shape[1]
        return int(self.pooled_positions(tokens).max().item()) + 1

    def encode(self, tokens: torch.Tensor, *, truncate: bool = True) -> torch.Tensor:
        """(B, L) int64 tokens -> (B, D) unnormalised text features."""
        if not self.accepts_embeddings:
            # Opaque or self-masking towers (HF, CoCa): their own full-length forward.
            return self.model.encode_text(tokens)
        return self.encode_embeddings(self._src.token_embedding(tokens), tokens, truncate=truncate)

    def encode_embeddings(
        self, embeddings: torch.Tensor, tokens: torch.Tensor, *, truncate: bool = True
    ) -> torch.Tensor:
        """Run the tower on given token embeddings.

        embeddings: (B, L, width) token embeddings (before positional embeddings);
            callers may have replaced some positions by learnable vectors.
        tokens: (B, L) int64 token ids at the same positions; only used to find
            the pooled (EOT) position and the truncation length.
        Returns (B, D) unnormalised features, differentiable w.r.t. `embeddings`.
        """
        if not self.accepts_embeddings:
            self._require_native("token-embedding inputs")
            raise NotImplementedError(
                "token-embedding inputs are not supported for text towers that build their own "
                "attention masks (CoCa class token, padding masks); use a CLIP model such as ViT-B-32"
            )
        src = self._src
        cast = src.transformer.get_cast_dtype()
        length = self.truncated_length(tokens) if truncate else tokens.shape[1]
        x = embeddings[:, :length].to(cast)
        tokens = tokens[:, :length]
        x = x + src.positional_embedding[:length].to(cast)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None
        x = src.transformer(x, attn_mask=mask)
        return self.pool_and_project(x, self.pooled_positions(tokens) if self.pool_type != "none" else None)

    def pool_and_project(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """The tower's head: (B, L, width) last-block output -> (B, D) features.

        pos: (B,) index into L of the token each row is pooled at, or None for
            towers that do not pool ('none': the whole sequence is returned).
        """
        src = self._src
        x = src.ln_final(x)
        pooled = x if pos is None else x[torch.arange(x.shape[0], device=x.device), pos]
        proj = src.text_projection
        if proj is not None:
            pooled = proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj
        return pooled


def encode_token_batches(
    tower: TextTower,
    tokens: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    truncate: bool = True,
) -> torch.Tensor:
    """(N, L) tokens -> (N, D) float32 L2-normalised features, in `batch_size` batches.

    Sequences are processed in order of length so each batch truncates to
    close to its own longest sequence; rows come back in input order.
    """
    if tower.causal and truncate:
        order = torch.argsort(tower.pooled_positions(tokens), stable=True)
    else:
        order = torch.arange(tokens.shape[0])
    chunks = []
    with torch.inference_mode():
        for start in range(0, tokens.shape[0], batch_size):
            idx = order[start:start + batch_size]
            feats = tower.encode(tokens[idx].to(device), truncate=truncate)
            chunks.append(F.normalize(feats.float(), dim=-1).cpu())
    if not chunks:
        raise ValueError("no tokens to encode")
    out = torch.empty((tokens.shape[0], chunks[0].shape[1]), dtype=torch.float32)
    out[order] = torch.cat(chunks)
    return out
