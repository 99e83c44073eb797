"""TAC and SCAN trained on our features: they recover well-separated groups, follow their papers'
losses, are seeded, and read no labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from laic_core.baselines.scan import ScanSettings, predict as scan_predict, train_scan
from laic_core.baselines.tac import TacSettings, cluster_head, predict as tac_predict, train_tac
from laic_core.method.losses import balance_entropy, cluster_contrastive, pair_consistency
from laic_core.method.neighbors import knn
from laic_core.method.relation import tac_text_features
from laic_core.scoring.metrics import cluster_accuracy
from tests.conftest import normalized


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def groups(n_per: int = 60, K: int = 4, d: int = 16, noise: float = 0.35, seed: int = 0):
    """K well-separated groups of unit vectors, with nouns near each group."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(d, d)))[0][:K]
    y = np.repeat(np.arange(K), n_per)
    V = normalized(centres[y] + noise * rng.normal(size=(len(y), d)))
    T = normalized(np.repeat(centres, 3, axis=0) + 0.3 * rng.normal(size=(3 * K, d)))
    return V, T, y


# ------------------------------------------------------------------ the loss terms


def test_cluster_contrastive_is_infonce_over_the_2k_cluster_columns():
    """By hand: cluster k of view a and cluster k of view b are each other's positive among
    the other 2K - 2 columns (TAC's DistillLoss, loss_utils.py)."""
    torch.manual_seed(0)
    a, b = torch.softmax(torch.randn(20, 3), 1), torch.softmax(torch.randn(20, 3), 1)
    cols = [c / c.norm() for c in torch.cat([a.T, b.T]).double()]
    K, temp = 3, 0.5
    total = 0.0
    for i in range(2 * K):
        partner = (i + K) % (2 * K)
        sims = {j: float(cols[i] @ cols[j]) / temp for j in range(2 * K) if j != i}
        total += -sims[partner] + math.log(sum(math.exp(v) for v in sims.values()))
    assert cluster_contrastive(a, b, temp).item() == pytest.approx(total / (2 * K), rel=1e-5)


def test_pair_consistency_and_balance_entropy():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert pair_consistency(p, q).item() == pytest.approx(-(math.log(1.0) + math.log(0.5)) / 2)
    assert balance_entropy(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).item() == pytest.approx(math.log(2))
    assert balance_entropy(torch.tensor([[1.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_tac_heads_are_its_cluster_head():
    head = cluster_head(16, 5)
    layers = [type(m).__name__ for m in head]
    assert layers == ["Linear", "BatchNorm1d", "ReLU", "Linear", "Softmax"]
    assert head[0].weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert TacSettings.published(10) == TacSettings(epochs=20, batch_size=512, temperature=0.5)
    assert TacSettings.published(1000) == TacSettings(epochs=100, batch_size=8192, temperature=5.0)
    assert (ScanSettings().heads, ScanSettings().lr, ScanSettings().knn) == (10, 5.0, 50)


# ------------------------------------------------------------------ recovery


def test_tac_recovers_well_separated_groups_and_is_seeded():
    V, T, y = groups(noise=0.25)
    S = tac_text_features(V, T, tau=0.05)
    knn_v, knn_s = knn(V, 10), knn(S, 10)
    settings = TacSettings(epochs=40, batch_size=32, temperature=0.5)
    head, history = train_tac(V, S, knn_v, knn_s, 4, settings=settings, seed=0, progress=False)
    labels, confidence = tac_predict(head, V)
    assert cluster_accuracy(y, labels) >= 0.9
    assert confidence.shape == (len(y),) and (confidence > 0).all() and (confidence <= 1).all()
    # the clusters stop moving long before the 40 epochs: training stops there (label-free), and says so
    assert 4 <= len(history) < 40 and history[-1]["moved"] < settings.stop_tolerance
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert set(history[0]) == {"epoch", "loss", "distill", "consistency", "entropy", "changed", "moved"}
    again, _ = train_tac(V, S, knn_v, knn_s, 4, settings=settings, seed=0, progress=False)
    np.testing.assert_array_equal(tac_predict(again, V)[0], labels)


def test_scan_recovers_well_separated_groups_and_keeps_its_best_head():
    V, _, y = groups()
    settings = ScanSettings(epochs=20, batch_size=64, heads=3, knn=10)
    head, best, history = train_scan(V, knn(V, 10), 4, settings=settings, seed=0, progress=False)
    labels, confidence = scan_predict(head, V)
    assert cluster_accuracy(y, labels) >= 0.9
    assert 0 <= best < 3 and len(history) == 20
    again, best_again, _ = train_scan(V, knn(V, 10), 4, settings=settings, seed=0, progress=False)
    assert best_again == best
    np.testing.assert_array_equal(scan_predict(again, V)[0], labels)


def test_the_baselines_take_no_labels():
    """Nothing in their signatures could carry a label: features, neighbours, K and settings."""
    import inspect

    for fn in (train_tac, train_scan):
        parameters = set(inspect.signature(fn).parameters)
        assert not parameters & {"y", "labels", "targets", "y_true"}, fn.__name__
