"""Adaptive semantic centers by prompt learning (DESIGN.md, method section 4).

Each of the K clusters owns a CoOp-style continuous prompt: `n_ctx` learnable
context vectors in the token-embedding space of the frozen text tower,
followed by the tokens of an initial noun. The cluster's center is the
L2-normalised text feature of that prompt, so it always lies on the text
tower's output manifold and can be named by the nearest vocabulary nouns.

Training sees image features and neighbour pairs only (never labels):

    p(k | i) = softmax_k(v_i . w_k / tau)
    loss = -mean log <p(.|i), p(.|j)>                 (neighbour consistency)
           - entropy_weight * H(mean_i p(.|i))        (balance)
           + ce_weight * CE(p(.|i), pseudo_i)         (optional self-labelling)

Every optimisation step runs the K prompts once through the text tower
(forward and backward); the image side of a step is a (B, d) x (d, K) product.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from laic_core.errors import LaicError
from laic_core.text_tower import TextTower

# Initialisation scale of random context vectors (CoOp; open_clip's token-embedding init).
CTX_INIT_STD = 0.02
_ASSIGN_BLOCK = 65536  # rows per block in `assign`: (block, K) float32 temporaries


# ------------------------------------------------------------------ prompts


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

    Two clusters with the same initial word and a template-initialised context
    start as the same center and, by symmetry, receive identical gradients for
    ever; give clusters distinct words (`cluster_init_nouns` does) or use a
    random initialisation.

    Only `ctx` ((K, n_ctx, width) float32) is a parameter. The text tower is
    not a sub-module: it is frozen (requires_grad False) and differentiated
    through, and the learner's state_dict holds only the prompts.

    Args:
        model: an open_clip model, or a `TextTower` around one.
        tokenizer: the model's open_clip tokenizer (CLIP's BPE `SimpleTokenizer`).
        init_words: K strings, one per cluster (usually a noun).
        n_ctx: number of learnable context vectors per cluster.
        template: a string with one '{}' where the word goes.
        seed: seeds the random context initialisation.
        model_name: named in error messages.
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
        init_words = [str(w) for w in init_words]
        if not init_words:
            raise LaicError("init_words is empty: give one initial word per cluster")
        if any(not w.strip() for w in init_words):
            raise LaicError("init_words has an empty word; give one non-empty word per cluster")
        prefix, _ = _split_template(template)

        self.tower = tower
        self.n_ctx = n_ctx
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
        self.template_init = len(prefix_ids) == n_ctx
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
        """(K, D) float32 L2-normalised centers, differentiable w.r.t. `ctx`."""
        emb = self.fixed_embeddings
        x = torch.cat(
            [emb[:, :1], self.ctx.to(emb.dtype), emb[:, 1 + self.n_ctx:]], dim=1
        )
        return F.normalize(self.tower.encode_embeddings(x, self.tokens).float(), dim=-1)

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


# ------------------------------------------------------------- initial nouns


def _check_labels(labels, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise LaicError(f"{name} must have one entry per image ({n}), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise LaicError(f"{name} must hold integer cluster ids, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def cluster_mean_weights(C, labels, n_clusters: int, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean row of C per cluster.

    C: (N, M) dense array or scipy sparse matrix; labels: (N,) ints in 0..K-1;
    rows: optional (N,) bool mask of the rows that count.
    Returns ((K, M) float64 means, (K,) int64 counts); a cluster without rows
    has a zero mean and count 0. Memory: O(K * M + nnz(C)), never dense N x M.
    """
    n = C.shape[0]
    labels = _check_labels(labels, n, "labels")
    if labels.size and (labels.min() < 0 or labels.max() >= n_clusters):
        raise LaicError(f"labels must lie in 0..{n_clusters - 1}, got {labels.min()}..{labels.max()}")
    keep = np.ones(n, bool) if rows is None else np.asarray(rows, bool)
    idx = np.flatnonzero(keep)
    counts = np.bincount(labels[idx], minlength=n_clusters).astype(np.int64)
    member = sp.csr_matrix(
        (np.ones(idx.size), (labels[idx], idx)), shape=(n_clusters, n)
    )
    sums = member @ C
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums, dtype=np.float64)
    means = sums / np.maximum(counts, 1)[:, None]
    return means, counts


def cluster_init_nouns(C_fit, pseudo, reliable, noun_names: Sequence[str], K: int,
                       *, distinct: bool = True) -> list[str]:
    """One initial noun per pseudo-cluster: its selected noun of largest mean C weight.

    C_fit: (N, M') dense or CSR relation matrix; pseudo: (N,) pseudo-labels in
    0..K-1; reliable: (N,) bool; noun_names: M' nouns, the columns of C.
    The mean runs over the cluster's reliable members, or over all its members
    when none is reliable, or over all images when the cluster is empty.

    Distinct clusters can share a top noun. With a template-initialised context
    two such clusters would start as the same center and never separate (they
    get identical gradients), so with `distinct` (and M' >= K) ties are
    resolved by the one-to-one cluster-to-noun matching of largest total mean
    weight (Hungarian); when the top nouns are already distinct that matching
    is exactly the per-cluster argmax.
    """
    n, m = C_fit.shape
    if len(noun_names) != m:
        raise LaicError(f"noun_names has {len(noun_names)} nouns but C has {m} columns; "
                        "they must be the same selected nouns in the same order")
    if m == 0:
        raise LaicError("C has no noun columns; no initial noun can be chosen")
    pseudo = _check_labels(pseudo, n, "pseudo")
    reliable = np.asarray(reliable)
    if reliable.shape != (n,) or reliable.dtype != bool:
        raise LaicError(f"reliable must be a bool mask of shape ({n},), got {reliable.shape} {reliable.dtype}")
    scores, counts = cluster_mean_weights(C_fit, pseudo, K, reliable)
    fallback = np.flatnonzero(counts == 0)
    if fallback.size:
        member_means, member_counts = cluster_mean_weights(C_fit, pseudo, K)
        scores[fallback] = member_means[fallback]
        empty = fallback[member_counts[fallback] == 0]
        if empty.size:
            scores[empty] = np.asarray(C_fit.mean(axis=0), dtype=np.float64).ravel()
    best = scores.argmax(axis=1)
    if distinct and m >= K and np.unique(best).size < K:
        rows, cols = linear_sum_assignment(scores, maximize=True)
        best = np.empty(K, np.int64)
        best[rows] = cols
    return [str(noun_names[j]) for j in best]


# ------------------------------------------------------------------ training


def _balance_entropy(probs: torch.Tensor) -> torch.Tensor:
    mean = probs.mean(dim=0)
    return -(mean * torch.log(mean.clamp_min(1e-8))).sum()


def centers_loss(
    V_a: torch.Tensor,
    V_b: torch.Tensor,
    centers: torch.Tensor,
    *,
    tau: float,
    entropy_weight: float,
    ce_weight: float = 0.0,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch of pairs and its terms.

    V_a, V_b: (B, d) features of anchors i and neighbours j; centers: (K, d).
    targets: (B,) int64 pseudo-labels, -1 where an anchor does not count for
    the cross-entropy term.
    """
    log_p_a = F.log_softmax(V_a @ centers.T / tau, dim=1)
    log_p_b = F.log_softmax(V_b @ centers.T / tau, dim=1)
    # log <p_i, p_j> computed in log space: the product of two near one-hot
    # distributions underflows in float32.
    consistency = -torch.logsumexp(log_p_a + log_p_b, dim=1).mean()
    entropy = _balance_entropy(log_p_a.exp())
    loss = consistency - entropy_weight * entropy
    ce = torch.zeros((), device=centers.device)
    if ce_weight > 0 and targets is not None and bool((targets >= 0).any()):
        ce = F.nll_loss(log_p_a, targets, ignore_index=-1)
        loss = loss + ce_weight * ce
    terms = {"consistency": consistency.item(), "entropy": entropy.item(), "ce": ce.item()}
    return loss, terms


def _as_pairs(pairs, n: int) -> torch.Tensor:
    pairs = torch.as_tensor(np.asarray(pairs) if not torch.is_tensor(pairs) else pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] == 0:
        raise LaicError(f"pairs must be a non-empty (P, 2) array of row indices, got shape {tuple(pairs.shape)}")
    pairs = pairs.to(torch.long)
    if int(pairs.min()) < 0 or int(pairs.max()) >= n:
        raise LaicError(f"pairs index rows 0..{n - 1} of the features, got {int(pairs.min())}..{int(pairs.max())}")
    return pairs


def train_centers(
    learner: PromptLearner,
    V_fit,
    pairs,
    *,
    pseudo=None,
    reliable=None,
    tau: float = 0.01,
    entropy_weight: float = 5.0,
    ce_weight: float = 0.0,
    epochs: int = 50,
    lr: float = 0.002,
    batch_size: int = 512,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Learn the prompts of `learner` in place; returns the per-epoch history.

    V_fit: (N, d) float32 L2-normalised image features (tensor or array).
    pairs: (P, 2) int64 (anchor i, neighbour j) rows of V_fit.
    pseudo, reliable: (N,) pseudo-labels and bool mask, needed only when
        ce_weight > 0 (cross-entropy to the pseudo-label of reliable anchors).
    Adam on the context vectors only, a fixed number of epochs over the pairs
    in an order shuffled by `seed`; nothing here reads labels.
    Returns one dict per epoch: epoch, loss, consistency, entropy, ce (means over steps).
    """
    for value, name, low in ((tau, "tau", 0.0), (lr, "lr", 0.0)):
        if not value > low:
            raise LaicError(f"centers.{name}: {value!r} must be > 0")
    if entropy_weight < 0 or ce_weight < 0:
        raise LaicError("centers.entropy_weight and centers.ce_weight must be >= 0")
    if epochs < 1 or batch_size < 1:
        raise LaicError("centers.epochs and centers.batch_size must be >= 1")
    device = learner.ctx.device
    V = torch.as_tensor(np.asarray(V_fit) if not torch.is_tensor(V_fit) else V_fit)
    if V.ndim != 2:
        raise LaicError(f"V_fit must be (N, d), got shape {tuple(V.shape)}")
    V = V.to(device=device, dtype=torch.float32)
    with torch.no_grad():
        dim = learner().shape[1]
    if V.shape[1] != dim:
        raise LaicError(f"image features have d={V.shape[1]} but the text tower gives d={dim}; "
                        "features and prompts must come from the same CLIP model")
    pairs = _as_pairs(pairs, V.shape[0])
    targets = None
    if ce_weight > 0:
        if pseudo is None or reliable is None:
            raise LaicError("centers.ce_weight > 0 needs pseudo-labels and the reliable mask")
        pseudo_t = torch.as_tensor(_check_labels(pseudo, V.shape[0], "pseudo"))
        if int(pseudo_t.max()) >= learner.n_clusters or int(pseudo_t.min()) < 0:
            raise LaicError(f"pseudo-labels must lie in 0..{learner.n_clusters - 1}")
        mask = torch.as_tensor(np.asarray(reliable, bool))
        targets = torch.where(mask, pseudo_t, torch.full_like(pseudo_t, -1)).to(device)

    optimizer = torch.optim.Adam([learner.ctx], lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    n_pairs = pairs.shape[0]
    steps = -(-n_pairs // batch_size)
    history = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * steps, desc="centers", unit="step", dynamic_ncols=True,
                   file=sys.stderr, disable=None)
    learner.train()
    try:
        for epoch in range(epochs):
            order = pairs[torch.randperm(n_pairs, generator=gen)]
            sums = {"loss": 0.0, "consistency": 0.0, "entropy": 0.0, "ce": 0.0}
            for start in range(0, n_pairs, batch_size):
                batch = order[start:start + batch_size].to(device)
                centers = learner()  # the K prompts, once per step
                loss, terms = centers_loss(
                    V[batch[:, 0]], V[batch[:, 1]], centers, tau=tau,
                    entropy_weight=entropy_weight, ce_weight=ce_weight,
                    targets=None if targets is None else targets[batch[:, 0]],
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums["loss"] += loss.item()
                for key, value in terms.items():
                    sums[key] += value
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
            if not np.isfinite(sums["loss"]):
                raise LaicError(
                    f"centers: the loss became {sums['loss']} in epoch {epoch + 1}; "
                    "lower centers.lr or raise centers.tau"
                )
            history.append({"epoch": epoch + 1, **{k: v / steps for k, v in sums.items()}})
    finally:
        if bar is not None:
            bar.close()
        learner.eval()
    return history


# ---------------------------------------------------------------- assignment


def _assign_blocks(V, centers, tau: float, block_size: int):
    if not tau > 0:
        raise LaicError(f"centers.tau: {tau!r} must be > 0")
    W = torch.as_tensor(np.asarray(centers) if not torch.is_tensor(centers) else centers)
    W = W.detach().to(torch.float32)
    if W.ndim != 2 or V.ndim != 2 or V.shape[1] != W.shape[1]:
        raise LaicError(f"features {tuple(V.shape)} and centers {tuple(W.shape)} must be (N, d) and (K, d) "
                        "with the same d (the same CLIP model)")
    with torch.no_grad():
        for start in range(0, V.shape[0], block_size):
            block = V[start:start + block_size]
            if not torch.is_tensor(block):  # a copy: memory-mapped blocks are read-only
                block = torch.from_numpy(np.array(block, dtype=np.float32))
            block = block.to(device=W.device, dtype=torch.float32)
            yield start, torch.softmax(block @ W.T / tau, dim=1)


def assign(V, centers, tau: float, *, block_size: int = _ASSIGN_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Soft and hard assignment to the centers: p(k | i) = softmax_k(v_i . w_k / tau).

    V: (N, d) features (array, memmap or tensor); centers: (K, d).
    Returns (labels (N,) int64 argmax, probs (N, K) float32); blockwise.
    At large N * K use `assign_labels`, which keeps only the top probability.
    """
    n, k = V.shape[0], centers.shape[0]
    labels = np.empty(n, np.int64)
    probs = np.empty((n, k), np.float32)
    for start, p in _assign_blocks(V, centers, tau, block_size):
        probs[start:start + p.shape[0]] = p.cpu().numpy()
        labels[start:start + p.shape[0]] = p.argmax(dim=1).cpu().numpy()
    return labels, probs


def assign_labels(V, centers, tau: float, *, block_size: int = _ASSIGN_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int64, confidence (N,) float32 = max_k p(k | i)); memory O(N + block * K)."""
    n = V.shape[0]
    labels = np.empty(n, np.int64)
    confidence = np.empty(n, np.float32)
    for start, p in _assign_blocks(V, centers, tau, block_size):
        top, arg = p.max(dim=1)
        labels[start:start + p.shape[0]] = arg.cpu().numpy()
        confidence[start:start + p.shape[0]] = top.cpu().numpy()
    return labels, confidence


# -------------------------------------------------------------------- naming


def name_clusters(
    centers,
    vocab_text,
    vocab_nouns: Sequence[str],
    C_members,
    selected_nouns: Sequence[str],
    labels,
    top: int = 5,
    *,
    block_size: int = 256,
) -> list[dict]:
    """Per cluster: its size, the vocabulary nouns nearest to its center, and
    the selected nouns with the largest mean C weight among its members.

    centers: (K, d) unit rows; vocab_text: (M, d) unit noun embeddings with
    names vocab_nouns; C_members: (N, M') dense or CSR relation matrix of the
    images in `labels` ((N,) cluster ids), columns named by selected_nouns.
    Returns K dicts: {cluster, size, name, nearest_nouns: [{noun, cosine}],
    member_nouns: [{noun, weight}]}; `name` is the nearest vocabulary noun.
    """
    W = torch.from_numpy(np.array(centers, dtype=np.float32))
    T = torch.from_numpy(np.array(vocab_text, dtype=np.float32))  # a copy: memmaps are read-only
    if T.ndim != 2 or T.shape[1] != W.shape[1] or len(vocab_nouns) != T.shape[0]:
        raise LaicError(f"vocabulary embeddings {tuple(T.shape)} must be (M, d) with d={W.shape[1]} "
                        f"and one row per vocabulary noun ({len(vocab_nouns)})")
    if C_members.shape[1] != len(selected_nouns):
        raise LaicError(f"C has {C_members.shape[1]} columns but there are {len(selected_nouns)} selected nouns")
    n_clusters = W.shape[0]
    top_vocab = min(top, T.shape[0])
    top_sel = min(top, len(selected_nouns))
    nearest: list[list[dict]] = []
    with torch.no_grad():
        for start in range(0, n_clusters, block_size):
            cos, idx = (W[start:start + block_size] @ T.T).topk(top_vocab, dim=1)
            for row_cos, row_idx in zip(cos.tolist(), idx.tolist()):
                nearest.append([{"noun": str(vocab_nouns[j]), "cosine": round(c, 6)}
                                for c, j in zip(row_cos, row_idx)])
    means, sizes = cluster_mean_weights(C_members, labels, n_clusters)
    out = []
    for k in range(n_clusters):
        order = np.argsort(-means[k], kind="stable")[:top_sel] if sizes[k] else []
        out.append({
            "cluster": k,
            "size": int(sizes[k]),
            "name": nearest[k][0]["noun"] if nearest[k] else "",
            "nearest_nouns": nearest[k],
            "member_nouns": [{"noun": str(selected_nouns[j]), "weight": round(float(means[k, j]), 6)}
                             for j in order],
        })
    return out
