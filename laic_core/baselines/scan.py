"""SCAN on CLIP features: the standard strong clustering baseline that uses no text.

"SCAN: Learning to Classify Images without Labels" (Van Gansbeke et al., ECCV
2020), code wvangansbeke/Unsupervised-Classification. Our image features are
frozen, which is SCAN's own setting for its ImageNet runs
(configs/scan/scan_imagenet_*.yml: `update_cluster_head_only: True`), so its
hyperparameters come from there:

- 10 linear cluster heads on the features (models.ClusteringModel), trained
  together; the head of lowest SCAN loss over every image and its neighbours
  is kept (utils/evaluate_utils.scan_evaluate; label-free);
- loss per head: ``-mean log <p_i, p_j> - 5 H(mean p_i)`` over pairs of an
  anchor and one of its 50 nearest neighbours (in image-feature space) drawn
  at random (losses.SCANLoss, data/custom_dataset.NeighborsDataset);
- SGD, lr 5.0, momentum 0.9, no weight decay; 100 epochs of batches of 512.

Deviations: no image augmentations (the features are precomputed, as they are
for every method here) and no self-labelling step (the issue asks for SCAN's
neighbour-consistency stage). Nothing here reads labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from laic_core.baselines import tac
from laic_core.config import ScanParams
from laic_core.errors import LaicError
from laic_core.method.convergence import AssignmentStability, monitor_rows
from laic_core.method.losses import balance_entropy, pair_consistency
from laic_core.progress import progress_bar
from laic_core.validation import finite_rows, int_at_least, neighbor_index, positive_float


@dataclass(frozen=True)
class ScanSettings(ScanParams):
    """SCAN's published hyperparameters for a frozen backbone (scan_imagenet_50.yml).

    Those a user may change are params.yaml's `scan:` section, whose defaults
    live in `config.ScanParams` only; these two are fixed.
    """

    momentum: float = 0.9
    knn: int = 50


class ScanHeads(torch.nn.Module):
    """`heads` linear maps (d -> K): SCAN's cluster heads over a frozen backbone."""

    def __init__(self, dim: int, n_clusters: int, heads: int):
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(dim, n_clusters) for _ in range(heads))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [head(x) for head in self.heads]


def scan_loss(logits_anchor, logits_neighbor, entropy_weight: float):
    """SCAN's loss of one head: consistency - entropy_weight * entropy; and its terms."""
    p_a, p_n = F.softmax(logits_anchor, dim=1), F.softmax(logits_neighbor, dim=1)
    consistency = pair_consistency(p_a, p_n)
    entropy = balance_entropy(p_a)
    return consistency - entropy_weight * entropy, consistency, entropy


def train_scan(
    X,
    knn_idx,
    n_clusters: int,
    *,
    settings: ScanSettings = ScanSettings(),
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[torch.nn.Linear, int, list[dict]]:
    """Train SCAN's heads on features X (N, d) with neighbours knn_idx (N, k).

    Returns (the head of lowest SCAN loss, its index, per-epoch history of the
    mean loss over heads). Seeded by `seed` (initialisation, batch order,
    neighbour draws). At most `settings.epochs` epochs: training stops
    earlier once every head's clusters of the fit images (a seeded sample of
    at most 20,000) have settled (`settings.stop_tolerance`; the history's
    `changed` and `moved` columns).
    """
    X = finite_rows(X, "X (image features)")
    if not isinstance(X, np.ndarray):
        raise LaicError("SCAN needs dense features")
    n, dim = X.shape
    knn_idx = neighbor_index(knn_idx, n, "knn_idx")
    int_at_least(n_clusters, "K", 2, "give at least 2 clusters")
    positive_float(settings.lr, "scan.lr", "give a learning rate > 0")
    batch = min(int_at_least(settings.batch_size, "scan.batch_size", 1), n)
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ScanHeads(dim, n_clusters, int_at_least(settings.heads, "scan.heads", 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=0.0)
    X_t = torch.from_numpy(X).to(device)
    knn_t = torch.from_numpy(knn_idx.astype(np.int64))
    steps_per_epoch = -(-n // batch)
    history = []
    stop = AssignmentStability(settings.stop_tolerance, settings.stop_window, section="scan")
    watched = X_t[torch.from_numpy(monitor_rows(n, seed)).to(device)]
    if stop.tolerance > 0:
        stop.check(0, _head_clusters(model, watched))
    with progress_bar(settings.epochs * steps_per_epoch, "scan", unit="step", enabled=progress, ceiling=True) as bar:
        for epoch in range(settings.epochs):
            order = torch.randperm(n, generator=gen)
            sums = {"loss": 0.0, "consistency": 0.0, "entropy": 0.0}
            for start in range(0, n, batch):
                anchors = order[start:start + batch]
                neighbours = knn_t[anchors, torch.randint(knn_t.shape[1], (len(anchors),), generator=gen)]
                out_a, out_n = model(X_t[anchors.to(device)]), model(X_t[neighbours.to(device)])
                terms = [scan_loss(a, b, settings.entropy_weight) for a, b in zip(out_a, out_n)]
                loss = torch.stack([t[0] for t in terms]).sum()  # every head learns (SCAN sums them)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums["loss"] += loss.item() / len(terms)
                sums["consistency"] += float(np.mean([t[1].item() for t in terms]))
                sums["entropy"] += float(np.mean([t[2].item() for t in terms]))
                bar.update(1)
            history.append({"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}})
            if not np.isfinite(history[-1]["loss"]):
                raise LaicError(f"scan: the loss became {history[-1]['loss']} in epoch {epoch + 1}; lower scan.lr")
            if stop.tolerance > 0:
                stop.check(epoch + 1, _head_clusters(model, watched))
            history[-1].update(stop.shares())
            if stop.converged:
                break
    best = lowest_loss_head(model, X_t, knn_t.to(device), settings.entropy_weight, seed=seed)
    return model.heads[best].eval(), best, history


def _head_clusters(model: ScanHeads, X: torch.Tensor) -> np.ndarray:
    """(heads, m) int64: every head's cluster of every row of X."""
    with torch.no_grad():
        return torch.stack([logits.argmax(dim=1) for logits in model(X)]).cpu().numpy()


def lowest_loss_head(model: ScanHeads, X: torch.Tensor, knn_idx: torch.Tensor, entropy_weight: float,
                     *, sample: int = 20000, seed: int = 0, block_size: int = 1024) -> int:
    """The head of lowest SCAN loss over images and all their neighbours (scan_evaluate; no labels).

    SCAN scores every image of its validation split; at scale a seeded sample
    of `sample` anchors stands in (memory O(block_size * k * K)).
    """
    n = X.shape[0]
    anchors = torch.arange(n)
    if n > sample:
        anchors = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:sample].sort().values
    totals = []
    with torch.no_grad():
        for head in model.heads:
            log_sum, n_pairs, mean_p = 0.0, 0, 0.0
            for start in range(0, len(anchors), block_size):
                rows = anchors[start:start + block_size].to(X.device)
                p = F.softmax(head(X[rows]), dim=1)  # (b, K)
                p_nb = F.softmax(head(X[knn_idx[rows]]), dim=2)  # (b, k, K)
                similarity = torch.einsum("bk,bjk->bj", p, p_nb).clamp(1e-7, 1.0)
                log_sum += -similarity.log().sum().item()
                n_pairs += similarity.numel()
                mean_p = mean_p + p.sum(dim=0)
            totals.append(log_sum / n_pairs - entropy_weight * balance_entropy((mean_p / len(anchors))[None]).item())
    return int(np.argmin(totals))


def predict(head: torch.nn.Linear, X, *, block_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int64, confidence (N,) float32 = max softmax) of one linear head, in blocks."""
    return tac.predict(torch.nn.Sequential(head, torch.nn.Softmax(dim=1)), X, block_size=block_size)
