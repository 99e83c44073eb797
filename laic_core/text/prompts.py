"""Category-wise continuous prompts (CoOp) whose text features are the semantic centers.

Each of the K clusters owns a prompt: `n_ctx` learnable context vectors in the
token-embedding space of the frozen text tower, followed by the tokens of an
initial word. The cluster's center is the L2-normalised text feature of that
prompt, so it always lies on the text tower's output manifold and can be
named by the nearest vocabulary nouns (DESIGN.md, method section 4).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from laic_core.errors import LaicError
from laic_core.text.tower import TextTower

# Initialisation scale of random context vectors (CoOp; open_clip's token-embedding init).
CTX_INIT_STD = 0.02
# Prompts per pass through the text tower (centers.prompt_chunk): above it the K prompts go through in
# chunks whose activations are recomputed in the backward pass instead of kept (ViT-B/32: ~4 MB a prompt).
DEFAULT_CHUNK = 128


def _split_template(template: str) -> tuple[str, str]:
    if template.count("{}") != 1:
        raise LaicError(f"centers.init_template: {template!r} must contain exactly one '{{}}'")
    prefix, suffix = template.split("{}")
    return prefix.strip(), suffix


class PromptLearner(torch.nn.Module):
    """K category-wise continuous prompts; `forward()` gives the (K, D) centers.

    Prompt k is the token sequence ``[SOT] X_1..X_n <words_k> [EOT] pad...``
    where X_1..X_n are cluster k's learnable context vectors and ``words_k`` the
    tokens of ``template``'s text after its prefix, with ``init_words[k]`` filled
    in (for "a photo of a {}." and "dog": the tokens of "dog.").

    Initialisation: when the template's prefix ("a photo of a") is exactly
    `n_ctx` tokens long, every cluster's context starts as those tokens'
    embeddings, so at step 0 center k is exactly the frozen tower's feature of
    the plain text ``template.format(init_words[k])``. Otherwise the context
    starts as N(0, 0.02^2) noise drawn from `seed` (the prefix is dropped, as
    in CoOp's random initialisation).

    With ``random_init`` (the ablation `centers.init: random`), every context
    starts as N(0, 0.02^2) noise drawn from `seed` whatever the template, and
    the words may be empty: prompt k is then ``[SOT] X_1..X_n . [EOT]``, a
    center tied to no noun.

    Two clusters with the same initial word and a template-initialised context
    start as the same center and, by symmetry, receive identical gradients for
    ever; give clusters distinct words (`cluster_init_nouns` does) or use a
    random initialisation.

    Only `ctx` ((K, n_ctx, width) float32) is a parameter. The text tower is
    not a sub-module: it is frozen (requires_grad False) and differentiated
    through, and the learner's state_dict holds only the prompts.

    Memory: a pass keeps every layer's activations of every prompt for the
    backward pass (ViT-B/32: about 4 MB a prompt; a step at K = 1000 peaked at 5.4 GiB, 2.2 in chunks of 128).
    With more than `chunk_size` prompts the pass runs in chunks of
    `chunk_size` under activation checkpointing: each chunk keeps only its
    inputs and outputs and is recomputed, one chunk at a time, when the
    gradient reaches it. That costs one more forward pass and gives the same
    centers and gradients up to float rounding.

    Args:
        model: an open_clip model, or a `TextTower` around one.
        tokenizer: the model's open_clip tokenizer (CLIP's BPE `SimpleTokenizer`).
        init_words: K strings, one per cluster (usually a noun).
        n_ctx: number of learnable context vectors per cluster.
        template: a string with one '{}' where the word goes.
        seed: seeds the random context initialisation.
        model_name: named in error messages.
        chunk_size: prompts per pass through the tower (see Memory above).
        random_init: random context vectors even where the template could start them (see above).
    """

    def __init__(
        self,
        model: torch.nn.Module | TextTower,
        tokenizer: Any,
        init_words: Sequence[str],
        n_ctx: int = 4,
        *,
        template: str = "a photo of a {}.",
        seed: int = 0,
        model_name: str | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        random_init: bool = False,
    ):
        super().__init__()
        tower = model if isinstance(model, TextTower) else TextTower(model)
        name = model_name or type(tower.model).__name__
        if not tower.accepts_embeddings:
            raise LaicError(
                f"model.name: {name} has a text tower that does not take token embeddings "
                "(a Hugging Face or CoCa text tower), so its prompts cannot be learned. "
                "Use a CLIP model with a native open_clip text tower, e.g. ViT-B-32 or ViT-L-14."
            )
        if tower.pool_type not in ("argmax", "eos"):
            raise LaicError(
                f"model.name: {name} pools its text tower at {tower.pool_type!r}, not at the "
                "end-of-text token; prompt learning needs EOT pooling. Use a CLIP model such as ViT-B-32."
            )
        for attr in ("sot_token_id", "eot_token_id", "encode"):
            if not hasattr(tokenizer, attr):
                raise LaicError(
                    f"model.name: {name} does not use CLIP's BPE tokenizer (its tokenizer has no "
                    f"{attr!r}); prompt learning needs it. Use a CLIP model such as ViT-B-32."
                )
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
            raise LaicError(f"centers.n_ctx: {n_ctx!r} must be an integer >= 1")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise LaicError(f"centers.prompt_chunk: {chunk_size!r} must be an integer >= 1")
        init_words = [str(w) for w in init_words]
        if not init_words:
            raise LaicError("init_words is empty: give one initial word per cluster")
        if not random_init and any(not w.strip() for w in init_words):
            raise LaicError("init_words has an empty word; give one non-empty word per cluster")
        prefix, _ = _split_template(template)

        self.tower = tower
        self.n_ctx = n_ctx
        self.chunk_size = chunk_size
        self.template = template
        self.init_words = init_words
        length = tower.context_length
        if n_ctx + 3 > length:
            raise LaicError(
                f"centers.n_ctx: {n_ctx} context vectors leave no room for a word in the "
                f"{length}-token context of {name}; use at most {length - 3}"
            )

        sot, eot = int(tokenizer.sot_token_id), int(tokenizer.eot_token_id)
        prefix_ids = tokenizer.encode(prefix) if prefix else []
        self.template_init = len(prefix_ids) == n_ctx and not random_init
        # Placeholder ids under the context vectors: replaced by `ctx` before the
        # tower, but argmax pooling finds EOT as the largest id, so they must be smaller.
        ctx_ids = list(prefix_ids) if self.template_init else tokenizer.encode("X") * n_ctx
        tokens = torch.zeros(len(init_words), length, dtype=torch.long)
        for k, word in enumerate(init_words):
            word_ids = tokenizer.encode(template[template.index("{}"):].format(word))
            word_ids = word_ids[: length - 2 - n_ctx]  # truncate over-long words, keep EOT
            row = [sot] + ctx_ids + word_ids + [eot]
            tokens[k, : len(row)] = torch.tensor(row)
        eot_pos = (tokens == eot).int().argmax(dim=1)
        if not torch.equal(tower.pooled_positions(tokens), eot_pos):
            raise LaicError(
                f"model.name: {name}: the text tower does not pool the prompts at their EOT "
                "token (a placeholder token id is not below the EOT id); prompt learning "
                "cannot locate the prompt's end. Use a CLIP model such as ViT-B-32."
            )
        # Exact truncation: the causal tower never looks past the pooled position.
        tokens = tokens[:, : tower.truncated_length(tokens)]
        device = tower.token_embedding.weight.device
        tokens = tokens.to(device)
        with torch.no_grad():
            embedded = tower.token_embedding(tokens)
        tower.model.requires_grad_(False)
        self.register_buffer("tokens", tokens)
        self.register_buffer("fixed_embeddings", embedded, persistent=False)

        width = tower.width
        if self.template_init:
            with torch.no_grad():
                base = tower.token_embedding(torch.tensor(prefix_ids, device=device)).float()
            ctx = base.unsqueeze(0).repeat(len(init_words), 1, 1)
        else:
            gen = torch.Generator().manual_seed(int(seed))
            ctx = torch.randn(len(init_words), n_ctx, width, generator=gen) * CTX_INIT_STD
        self.ctx = torch.nn.Parameter(ctx.to(device=device, dtype=torch.float32))

    @property
    def n_clusters(self) -> int:
        return int(self.ctx.shape[0])

    @property
    def init_texts(self) -> list[str]:
        """What each prompt read at initialisation (X marks random context vectors)."""
        if self.template_init:
            return [self.template.format(w) for w in self.init_words]
        rest = self.template[self.template.index("{}"):]
        return [" ".join(["X"] * self.n_ctx + [rest.format(w)]) for w in self.init_words]

    def forward(self) -> torch.Tensor:
        """(K, D) float32 L2-normalised centers, differentiable w.r.t. `ctx`; in chunks above `chunk_size`."""
        K = self.n_clusters
        if K <= self.chunk_size:
            return self._encode(self.ctx, self.fixed_embeddings, self.tokens)
        keep_for_backward = torch.is_grad_enabled() and self.ctx.requires_grad
        parts = []
        for start in range(0, K, self.chunk_size):
            rows = slice(start, start + self.chunk_size)
            chunk = (self.ctx[rows], self.fixed_embeddings[rows], self.tokens[rows])
            if keep_for_backward:  # keep the chunk's inputs only; recompute its activations in backward
                parts.append(checkpoint(self._encode, *chunk, use_reentrant=False))
            else:
                parts.append(self._encode(*chunk))
        return torch.cat(parts)

    def _encode(self, ctx: torch.Tensor, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(c, n_ctx, width) context, (c, L, width) token embeddings, (c, L) tokens -> (c, D) unit centers."""
        x = torch.cat([embeddings[:, :1], ctx.to(embeddings.dtype), embeddings[:, 1 + self.n_ctx:]], dim=1)
        return F.normalize(self.tower.encode_embeddings(x, tokens).float(), dim=-1)

    def export(self) -> dict:
        """Everything needed to rebuild the prompts (for `torch.save`)."""
        return {
            "ctx": self.ctx.detach().cpu().clone(),
            "tokens": self.tokens.cpu().clone(),
            "init_words": list(self.init_words),
            "init_texts": self.init_texts,
            "template": self.template,
            "template_init": self.template_init,
            "n_ctx": self.n_ctx,
        }

    def load_exported(self, state: dict) -> None:
        """Restore context vectors saved by `export` (same words, n_ctx and template)."""
        if (state["n_ctx"], list(state["init_words"]), state["template"]) != (
            self.n_ctx, self.init_words, self.template
        ):
            raise LaicError("saved prompts were built with other init words, n_ctx or template; "
                            "rebuild the learner with the saved ones")
        with torch.no_grad():
            self.ctx.copy_(state["ctx"].to(self.ctx.device))
