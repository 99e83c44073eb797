"""Adaptive semantic centers: training the K prompts, and assigning images to them.

The centers are the text features of K learnable prompts (`laic_core.text.prompts`).
An image's cluster distribution is ``p(k | i) = softmax_k(v_i . w_k / tau)``,
tau relative to the model's logit scale (CLIP ViT-B/32: 0.01).

Training starts from the pseudo-labels (the no-train clustering of the
relation rows), the k nearest neighbours of every fit image in relation
space, and the reliable mask (images whose neighbours all share their
pseudo-label). It reads no label. Every fit image is an anchor; its target is
what its neighbours predict, pulled towards its pseudo-label when it is
reliable:

    q_i = (1 - a_i) * mean_{j in kNN(i)} p(. | j)  +  a_i * onehot(pseudo_i),
          a_i = ce_weight if i is reliable else 0,  q_i held fixed (no gradient)
    loss = mean_i CE(q_i, p(. | i))  -  entropy_weight * H(mean_i p(. | i))

so the consistency term makes each image agree with its relational
neighbourhood (the graph smooths the k-means partition, as label
propagation does), the reliable pseudo-labels keep it anchored, and the
balance term keeps every cluster in use. SCAN's symmetric
``-log <p_i, p_j>`` over reliable pairs (DESIGN.md's first reading) rewards
confident agreement on every pair; with the 40-60% impure neighbourhoods of
real features it drifted below its own start on every set tried, while this
target improved on it (benchmarks/quality.py).

A step costs one forward and backward of the K prompts through the text tower
plus a (B * (k + 1), d) x (d, K) product (above `centers.prompt_chunk`
prompts, in checkpointed chunks: bounded memory, one more forward pass).
Training stops when the fit images' clusters have stopped changing
(`laic_core.method.convergence`, label-free), at the latest after
`centers.steps` steps, so the cost does not grow with N and a small folder
does not pay for the full budget.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from laic_core.errors import LaicError
from laic_core.method.convergence import CHECKS_PER_WINDOW, AssignmentStability, monitor_rows
from laic_core.progress import progress_bar
from laic_core.text.prompts import PromptLearner
from laic_core.validation import bool_mask, cluster_ids, neighbor_index

_ASSIGN_BLOCK = 65536  # rows per block in `assign`: (block, K) float32 temporaries
# Token rows (K x prompt length) of a K-prompt pass up to which a CPU step runs on one thread: its ops are
# too small to gain from threads, and on a busy 2-core machine waiting for the second thread made each
# step ~10x slower (MiniVLM-64, K = 10: 34-66 ms a step on one thread, 380-590 ms on two).
SMALL_PASS_ROWS = 256


# ------------------------------------------------------------------ training


def _balance_entropy(probs: torch.Tensor) -> torch.Tensor:
    # not losses.balance_entropy: clamping only inside the log keeps a gradient on a collapsed cluster
    mean = probs.mean(dim=0)
    return -(mean * torch.log(mean.clamp_min(1e-8))).sum()


def centers_loss(
    V_anchor: torch.Tensor,
    V_neighbors: torch.Tensor,
    centers: torch.Tensor,
    *,
    tau: float,
    entropy_weight: float,
    ce_weight: float = 0.0,
    pseudo: torch.Tensor | None = None,
    reliable: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch of anchors and its terms.

    V_anchor: (B, d) anchor features; V_neighbors: (B, k, d) their neighbours;
    centers: (K, d). pseudo: (B,) int64 pseudo-labels and reliable: (B,) bool,
    needed when ce_weight > 0. Returns (loss, {consistency, entropy, ce}):
    consistency = mean CE(neighbour average, p_i); ce = mean CE(pseudo, p_i)
    over reliable anchors (0 when none); entropy = H(mean p).
    """
    log_p = F.log_softmax(V_anchor @ centers.T / tau, dim=1)
    with torch.no_grad():
        neighbours = torch.softmax(V_neighbors @ centers.T / tau, dim=2).mean(dim=1)
    consistency_i = -(neighbours * log_p).sum(dim=1)
    ce = torch.zeros((), device=centers.device)
    if ce_weight > 0:
        if pseudo is None or reliable is None:
            raise LaicError("centers.ce_weight > 0 needs the pseudo-labels and the reliable mask")
        share = ce_weight * reliable.to(log_p.dtype)
        ce_i = -log_p.gather(1, pseudo[:, None]).squeeze(1)
        per_anchor = (1 - share) * consistency_i + share * ce_i
        if bool(reliable.any()):
            ce = ce_i[reliable].mean()
    else:
        per_anchor = consistency_i
    entropy = _balance_entropy(log_p.exp())
    loss = per_anchor.mean() - entropy_weight * entropy
    terms = {"consistency": consistency_i.mean().item(), "entropy": entropy.item(), "ce": ce.item()}
    return loss, terms


def _check_inputs(V, knn_idx, pseudo, reliable, n_clusters: int):
    n = V.shape[0]
    return (neighbor_index(knn_idx, n, "knn_idx"), cluster_ids(pseudo, n, "pseudo-labels", n_clusters),
            bool_mask(reliable, n, "reliable"))


@dataclass
class CentersTraining:
    """What `train_centers` did: its history, the optimiser steps it ran, and why it stopped."""

    history: list[dict]  # one row per `log_every` steps: step, loss, consistency, entropy, ce, changed, moved
    steps: int
    converged: bool
    stop_reason: str
    changed: float | None  # last measured: share of the monitored fit images that changed cluster over W steps
    moved: float | None  # ... over 2W steps minus over W: moved for good (laic_core.method.convergence)


def _check_training(tau, lr, entropy_weight, ce_weight, steps, batch_size) -> None:
    for value, name in ((tau, "tau"), (lr, "lr")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise LaicError(f"centers.{name}: {value!r} must be > 0")
    if entropy_weight < 0:
        raise LaicError(f"centers.entropy_weight: {entropy_weight!r} must be >= 0")
    if not 0 <= ce_weight <= 1:
        raise LaicError(f"centers.ce_weight: {ce_weight!r} must lie in [0, 1] (the pseudo-label's share "
                        "of a reliable image's target)")
    for value, name in ((steps, "steps"), (batch_size, "batch_size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LaicError(f"centers.{name}: {value!r} must be an integer >= 1")


def _features_on(learner: PromptLearner, V_fit) -> torch.Tensor:
    """V_fit as (N, d) float32 on the learner's device, checked against the tower's output width."""
    V = torch.as_tensor(np.asarray(V_fit) if not torch.is_tensor(V_fit) else V_fit)
    if V.ndim != 2:
        raise LaicError(f"V_fit must be (N, d), got shape {tuple(V.shape)}")
    V = V.to(device=learner.ctx.device, dtype=torch.float32)
    with torch.no_grad():
        dim = learner().shape[1]
    if V.shape[1] != dim:
        raise LaicError(f"image features have d={V.shape[1]} but the text tower gives d={dim}; "
                        "features and prompts must come from the same CLIP model")
    return V


def train_centers(
    learner: PromptLearner,
    V_fit,
    knn_idx,
    pseudo,
    reliable,
    *,
    tau: float = 0.01,
    entropy_weight: float = 5.0,
    ce_weight: float = 0.3,
    steps: int = 1000,
    lr: float = 0.002,
    batch_size: int = 1024,
    seed: int = 0,
    stop_tolerance: float = 0.001,
    stop_window: int = 50,
    log_every: int | None = None,
    progress: bool = True,
) -> CentersTraining:
    """Learn the prompts of `learner` in place, until converged or for at most `steps` steps.

    V_fit: (N, d) float32 L2-normalised image features (tensor or array).
    knn_idx: (N, k) int neighbours of every fit image (relation space);
    pseudo: (N,) int pseudo-labels in 0..K-1; reliable: (N,) bool.
    Adam on the context vectors only, steps of `batch_size` anchors drawn
    uniformly with a generator seeded by `seed`; nothing here reads labels.
    Stop: every stop_window / 5 steps the fit images (a seeded sample of at
    most 20,000) are assigned to the current centers; training ends when
    fewer than `stop_tolerance` of them moved for good over the last
    2 x `stop_window` steps (`laic_core.method.convergence`; 0 = run all `steps`).
    History: one row per `log_every` steps (default: 50 rows over the
    ceiling): step, loss, consistency, entropy, ce (means over those steps),
    changed and moved (the last measured shares; NaN before there are any).
    """
    _check_training(tau, lr, entropy_weight, ce_weight, steps, batch_size)
    monitor = AssignmentStability(stop_tolerance, stop_window)
    every = max(1, monitor.window // CHECKS_PER_WINDOW)
    device = learner.ctx.device
    V = _features_on(learner, V_fit)
    knn_idx, pseudo, reliable = _check_inputs(V, knn_idx, pseudo, reliable, learner.n_clusters)
    knn_t = torch.from_numpy(knn_idx).to(device)
    pseudo_t = torch.from_numpy(pseudo).to(device)
    reliable_t = torch.from_numpy(reliable).to(device)
    V_monitor = V[torch.from_numpy(monitor_rows(V.shape[0], seed)).to(device)]
    log_every = log_every or max(1, steps // 50)

    optimizer = torch.optim.Adam([learner.ctx], lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    history: list[dict] = []
    sums = {"loss": 0.0, "consistency": 0.0, "entropy": 0.0, "ce": 0.0}
    since = ran = 0
    watching = stop_tolerance > 0
    learner.train()
    with progress_bar(steps, "centers", unit="step", enabled=progress, ceiling=True) as bar, _threads_for(learner):
        try:
            for step in range(steps):
                centers = learner()  # the K prompts after `step` updates, once per step
                if watching and step % every == 0:
                    monitor.check(step, _nearest(V_monitor, centers))
                    if monitor.converged:
                        break
                anchors = torch.randint(V.shape[0], (batch_size,), generator=gen).to(device)
                loss, terms = centers_loss(
                    V[anchors], V[knn_t[anchors]], centers, tau=tau, entropy_weight=entropy_weight,
                    ce_weight=ce_weight, pseudo=pseudo_t[anchors], reliable=reliable_t[anchors])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                ran = step + 1
                value = loss.item()
                if not np.isfinite(value):
                    raise LaicError(f"centers: the loss became {value} at step {ran}; "
                                    "lower centers.lr or raise centers.tau")
                sums["loss"] += value
                for key, term in terms.items():
                    sums[key] += term
                since += 1
                if since == log_every:
                    history.append(_history_row(ran, sums, since, monitor))
                    sums, since = dict.fromkeys(sums, 0.0), 0
                    bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
                bar.update(1)
        finally:
            learner.eval()
    if watching and ran == steps:  # the ceiling: how settled the result is
        with torch.no_grad():
            monitor.check(steps, _nearest(V_monitor, learner()))
    if since:
        history.append(_history_row(ran, sums, since, monitor))
    return CentersTraining(history, ran, monitor.converged, monitor.reason(ran, steps), monitor.changed,
                           monitor.moved)


@contextmanager
def _threads_for(learner: PromptLearner):
    """One intra-op thread while training a small K-prompt pass on the CPU (SMALL_PASS_ROWS), else as set."""
    before = torch.get_num_threads()
    small = learner.n_clusters * learner.tokens.shape[1] <= SMALL_PASS_ROWS and learner.ctx.device.type == "cpu"
    torch.set_num_threads(1 if small else before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _nearest(V: torch.Tensor, centers: torch.Tensor) -> np.ndarray:
    """(m,) int64 index of each row's nearest center (its argmax cluster at any temperature)."""
    with torch.no_grad():
        return (V @ centers.detach().T).argmax(dim=1).cpu().numpy()


def _history_row(step: int, sums: dict, count: int, monitor: AssignmentStability) -> dict:
    return {"step": step, **{k: v / count for k, v in sums.items()}, **monitor.shares()}


def steps_for(steps: int, epochs: int, n_fit: int, batch_size: int) -> int:
    """The optimiser steps of a run: `steps`, or with `epochs` > 0 that many passes over the fit images."""
    if epochs > 0:
        return epochs * -(-n_fit // batch_size)
    return steps


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


