"""Loss terms shared by the trained clustering methods (ours, TAC, SCAN).

Probabilities are (B, K) rows that sum to 1; every term is a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def balance_entropy(probs: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """H(mean_i p_i): the entropy of the batch's mean cluster distribution (maximal when balanced).

    Subtracted (times a weight) from a loss, it keeps every cluster in use (SCAN, TAC; ours clamps
    only inside the log, so a collapsed cluster still gets a gradient: centers._balance_entropy).
    """
    mean = probs.mean(dim=0).clamp_min(eps)
    return -(mean * mean.log()).sum()


def pair_consistency(p_anchor: torch.Tensor, p_neighbor: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """SCAN's consistency: mean over pairs of -log <p_i, p_j> (their BCE of the dot product with 1)."""
    similarity = (p_anchor * p_neighbor).sum(dim=1).clamp(eps, 1.0)
    return -similarity.log().mean()


def cluster_contrastive(p_a: torch.Tensor, p_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """TAC's distillation loss: cluster k of view a must match cluster k of view b among all 2K clusters.

    p_a, p_b: (B, K) probabilities of the same images (or neighbours) in two views. Each
    cluster is the (B,) column of its probabilities, L2-normalised; InfoNCE over the 2K
    columns at `temperature`, summed over the 2K anchors and divided by 2K
    (`DistillLoss` of XLearning-SCU/2024-ICML-TAC, loss_utils.py).
    """
    n_clusters = p_a.shape[1]
    columns = F.normalize(torch.cat([p_a.T, p_b.T], dim=0), dim=1)  # (2K, B)
    sim = columns @ columns.T / temperature
    eye = torch.eye(2 * n_clusters, dtype=torch.bool, device=sim.device)
    partner = torch.arange(2 * n_clusters, device=sim.device).roll(n_clusters)  # k <-> K + k
    logits = sim.masked_fill(eye, float("-inf"))  # a cluster is never its own candidate
    return F.cross_entropy(logits, partner, reduction="sum") / (2 * n_clusters)
