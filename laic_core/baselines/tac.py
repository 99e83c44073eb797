"""TAC, trained: "Image Clustering with External Guidance" (Li et al., ICML 2024), on our features.

Follows the public code XLearning-SCU/2024-ICML-TAC (train_head.py, models.py,
loss_utils.py, data_utils.py, retrieve_text.py):

- text counterpart of every image: ``s_i = normalise(sum_j softmax_j(v_i . t_j /
  tau) t_j)`` over the selected nouns, tau 0.005 for CLIP (retrieve_text.py;
  `laic_core.method.relation.tac_text_features`);
- neighbours: the top 50 of every image among the images (``v``) and among the
  text counterparts (``s``), each anchor paired with one neighbour drawn at
  random from each list per epoch (data_utils.NeighborsDataset);
- two cluster heads, ``Linear(d, d) - BatchNorm1d - ReLU - Linear(d, K) -
  softmax``, weights trunc-normal(std 0.02) (models.ClusterHead);
- loss per batch (train_head.py):
  ``distill(p_img(i), p_txt(nb_txt(i))) + distill(p_txt(i), p_img(nb_img(i)))
  + BCE(<p_txt(i), p_img(i)>, 1) - 5 (H(mean p_txt) + H(mean p_img))``,
  distill being the cluster-level InfoNCE at temperature 0.5
  (`laic_core.method.losses.cluster_contrastive`);
- Adam, lr 1e-3, betas (0.9, 0.99); 20 epochs of batches of 512 (drop_last);
  for K >= 100 (their UCF-101 and ImageNet settings) 100 epochs, batches of
  8192, temperature 5.0;
- clusters: the image head's argmax.

Deviations: TAC prints test metrics after every epoch and its paper does not
say which epoch it reports; we take the last epoch (nothing here sees a
label). TAC switches to its large-K settings by dataset name; we switch at
K >= 100, which selects exactly its UCF-101 (101) and ImageNet (1000) runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from laic_core.errors import LaicError
from laic_core.method.convergence import AssignmentStability, monitor_rows
from laic_core.method.losses import balance_entropy, cluster_contrastive, pair_consistency
from laic_core.progress import progress_bar
from laic_core.validation import check_embeddings, int_at_least, neighbor_index, positive_float

LARGE_K = 100  # TAC's UCF-101 / ImageNet settings from this many clusters on


@dataclass(frozen=True)
class TacSettings:
    """TAC's published hyperparameters for K clusters (train_head.py)."""

    epochs: int
    batch_size: int
    temperature: float
    entropy_weight: float = 5.0
    lr: float = 1e-3
    knn: int = 50
    # ours, not TAC's: stop once fewer than this share of the images moved for good over 2 x `stop_window`
    # epochs (laic_core.method.convergence; 0 = every epoch)
    stop_tolerance: float = 0.001
    stop_window: int = 2

    @classmethod
    def published(cls, n_clusters: int) -> "TacSettings":
        if n_clusters >= LARGE_K:
            return cls(epochs=100, batch_size=8192, temperature=5.0)
        return cls(epochs=20, batch_size=512, temperature=0.5)


def cluster_head(dim: int, n_clusters: int) -> torch.nn.Sequential:
    """TAC's ClusterHead branch: Linear-BN-ReLU-Linear-Softmax, trunc-normal(0.02) weights."""
    head = torch.nn.Sequential(
        torch.nn.Linear(dim, dim), torch.nn.BatchNorm1d(dim), torch.nn.ReLU(),
        torch.nn.Linear(dim, n_clusters), torch.nn.Softmax(dim=1),
    )
    torch.nn.init.trunc_normal_(head[0].weight, std=0.02)
    torch.nn.init.trunc_normal_(head[3].weight, std=0.02)
    return head


def tac_loss(p_txt, p_img, nb_p_txt, nb_p_img, *, temperature: float, entropy_weight: float):
    """TAC's loss of one batch and its terms (train_head.py)."""
    distill = cluster_contrastive(p_img, nb_p_txt, temperature) + cluster_contrastive(p_txt, nb_p_img, temperature)
    consist = pair_consistency(p_txt, p_img)
    entropy = balance_entropy(p_txt, 1e-9) + balance_entropy(p_img, 1e-9)
    loss = distill + consist - entropy_weight * entropy
    return loss, {"distill": distill.item(), "consistency": consist.item(), "entropy": entropy.item()}


def train_tac(
    V,
    S,
    knn_image,
    knn_text,
    n_clusters: int,
    *,
    settings: TacSettings,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train TAC's two heads; returns (image head in eval mode, per-epoch history).

    V: (N, d) unit image embeddings; S: (N, d) their text counterparts;
    knn_image, knn_text: (N, k) neighbour indices among the images and among
    the text counterparts. Seeded: the heads' initialisation, the batch order
    and the neighbour draws depend only on `seed`. At most `settings.epochs`
    epochs: training stops earlier once the image head's clusters of the
    fit images (a seeded sample of at most 20,000) have settled
    (`settings.stop_tolerance`); the history's `changed` and `moved` columns say how much moved.
    """
    V = check_embeddings(V, "image embeddings V")
    S = check_embeddings(S, "text counterparts S", dim=V.shape[1])
    n, dim = V.shape
    if S.shape[0] != n:
        raise LaicError(f"{S.shape[0]} text counterparts for {n} images: compute S from the same images")
    knn_image, knn_text = (neighbor_index(k, n, name) for k, name in ((knn_image, "knn_image"), (knn_text, "knn_text")))
    int_at_least(n_clusters, "K", 2, "give at least 2 clusters")
    positive_float(settings.temperature, "tac temperature", "give a temperature > 0 (TAC: 0.5)")
    batch = min(int_at_least(settings.batch_size, "tac.batch_size", 2), n)  # BatchNorm needs 2 rows
    device = torch.device(device)
    torch.manual_seed(seed)  # the heads' initialisation (TAC leaves it unseeded)
    gen = torch.Generator().manual_seed(seed)
    head_txt, head_img = cluster_head(dim, n_clusters).to(device), cluster_head(dim, n_clusters).to(device)
    optimizer = torch.optim.Adam(list(head_txt.parameters()) + list(head_img.parameters()),
                                 lr=settings.lr, betas=(0.9, 0.99))
    V_t, S_t = torch.from_numpy(V).to(device), torch.from_numpy(S).to(device)
    knn_img_t, knn_txt_t = torch.from_numpy(knn_image), torch.from_numpy(knn_text)
    steps_per_epoch = n // batch  # drop_last, as TAC's DataLoader
    history = []
    stop = AssignmentStability(settings.stop_tolerance, settings.stop_window, section="tac")
    watched = np.ascontiguousarray(V[monitor_rows(n, seed)])
    if stop.tolerance > 0:
        stop.check(0, predict(head_img, watched)[0])
    bar = progress_bar(settings.epochs * steps_per_epoch, "tac", unit="step", enabled=progress, ceiling=True)
    try:
        for epoch in range(settings.epochs):
            head_txt.train(), head_img.train()
            order = torch.randperm(n, generator=gen)
            sums = {"loss": 0.0, "distill": 0.0, "consistency": 0.0, "entropy": 0.0}
            for step in range(steps_per_epoch):
                anchors = order[step * batch:(step + 1) * batch]
                pick = torch.randint(knn_txt_t.shape[1], (len(anchors),), generator=gen)
                nb_txt = knn_txt_t[anchors, pick]
                pick = torch.randint(knn_img_t.shape[1], (len(anchors),), generator=gen)
                nb_img = knn_img_t[anchors, pick]
                p_txt, p_img = head_txt(S_t[anchors.to(device)]), head_img(V_t[anchors.to(device)])
                nb_p_txt, nb_p_img = head_txt(S_t[nb_txt.to(device)]), head_img(V_t[nb_img.to(device)])
                loss, terms = tac_loss(p_txt, p_img, nb_p_txt, nb_p_img, temperature=settings.temperature,
                                       entropy_weight=settings.entropy_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums["loss"] += loss.item()
                for key, value in terms.items():
                    sums[key] += value
                bar.update(1)
            history.append({"epoch": epoch + 1, **{k: v / max(steps_per_epoch, 1) for k, v in sums.items()}})
            if not np.isfinite(history[-1]["loss"]):
                raise LaicError(f"tac: the loss became {history[-1]['loss']} in epoch {epoch + 1}")
            if stop.tolerance > 0:
                stop.check(epoch + 1, predict(head_img, watched)[0])
            history[-1].update(stop.shares())
            if stop.converged:
                break
    finally:
        bar.close()
    head_img.eval()
    return head_img, history


def predict(head: torch.nn.Module, X, *, block_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int64 argmax, confidence (N,) float32 max probability) of a softmax head, in blocks."""
    device = next(head.parameters()).device
    labels = np.empty(X.shape[0], np.int64)
    confidence = np.empty(X.shape[0], np.float32)
    head.eval()
    with torch.no_grad():
        for start in range(0, X.shape[0], block_size):
            block = torch.from_numpy(np.array(X[start:start + block_size], dtype=np.float32)).to(device)
            top, arg = head(block).max(dim=1)
            labels[start:start + len(block)] = arg.cpu().numpy()
            confidence[start:start + len(block)] = top.cpu().numpy()
    return labels, confidence

