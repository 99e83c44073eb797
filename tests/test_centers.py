"""Adaptive semantic centers: prompt construction, training, assignment, naming, stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from laic_core.artifacts import load_parquet_meta, save_json, save_matrix, save_npy, save_parquet
from laic_core.errors import LaicError
from laic_core.method.centers import assign, assign_labels, centers_loss, steps_for, train_centers
from laic_core.method.convergence import AssignmentStability, monitor_rows
from laic_core.method.naming import cluster_init_nouns, name_clusters
from laic_core.method.relation import relation_embedding
from laic_core.scoring.metrics import cluster_accuracy
from laic_core.text.encode import encode_texts
from laic_core.text.prompts import PromptLearner
from laic_core.text.tower import TextTower
from tests.conftest import make_image_tree

WORDS = ["apple", "river", "chair", "cloud"]  # arbitrary: nothing to do with the groups
# Settings that separate the toy groups reliably.
TRAIN = dict(tau=0.1, entropy_weight=2.0, steps=60, lr=0.02, batch_size=128, progress=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine OpenMP's
    spinning threads make each step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grouped_features(centers0: np.ndarray, n_per_group: int = 50, noise: float = 0.3, seed: int = 0):
    """K groups of unit features along directions orthogonal to every initial center.

    At step 0 the centers see only the noise, so the assignment starts near
    chance; training must rotate the centers onto the groups.
    Returns (V (K*n, d) float32, y (K*n,) int64).
    """
    rng = np.random.default_rng(seed)
    K, d = centers0.shape
    basis = np.linalg.qr(np.concatenate([centers0.T, rng.normal(size=(d, K))], axis=1))[0]
    dirs = basis[:, K:].T
    y = np.repeat(np.arange(K), n_per_group)
    V = dirs[y] + noise * rng.normal(size=(len(y), d)) / np.sqrt(d)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return V.astype(np.float32), y


def true_knn(V: np.ndarray, k: int = 5) -> np.ndarray:
    S = V @ V.T
    np.fill_diagonal(S, -np.inf)
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


def noisy_pseudo_labels(y: np.ndarray, K: int, flip: float, seed: int = 0) -> np.ndarray:
    """y with a `flip` share of the labels moved to another group (deterministic)."""
    rng = np.random.default_rng(seed)
    pseudo = y.copy()
    moved = rng.random(len(y)) < flip
    pseudo[moved] = (y[moved] + rng.integers(1, K, moved.sum())) % K
    return pseudo


def learner_for(bundle, words=WORDS, n_ctx=4, seed=0, **kw) -> PromptLearner:
    return PromptLearner(bundle.model, bundle.tokenizer, words, n_ctx, seed=seed,
                         model_name="tiny", **kw)


def centers_of(learner) -> np.ndarray:
    with torch.no_grad():
        return learner().numpy()


@pytest.fixture(scope="module")
def trained(tiny_bundle):
    """One training run on the toy groups (noisy pseudo-labels, true neighbours), with the
    tower's state before and after."""
    learner = learner_for(tiny_bundle)
    start = centers_of(learner)
    V, y = grouped_features(start)
    knn = true_knn(V)
    pseudo = noisy_pseudo_labels(y, 4, flip=0.3)
    reliable = (pseudo[knn] == pseudo[:, None]).all(axis=1)
    tower_before = {k: v.clone() for k, v in tiny_bundle.model.state_dict().items()}
    ctx_before = learner.ctx.detach().clone()
    history = train_centers(learner, torch.from_numpy(V), knn, pseudo, reliable, seed=0, ce_weight=0.3,
                            log_every=20, **TRAIN).history
    return dict(learner=learner, start=start, V=V, y=y, knn=knn, pseudo=pseudo, reliable=reliable,
                history=history, tower_before=tower_before, ctx_before=ctx_before)


# ------------------------------------------------------------------ prompts


def test_template_init_center_is_the_plain_text_feature(tiny_bundle):
    learner = learner_for(tiny_bundle, ["dog", "hot-air balloon"])
    assert learner.template_init
    assert learner.init_texts == ["a photo of a dog.", "a photo of a hot-air balloon."]
    plain = encode_texts(tiny_bundle, learner.init_texts)
    np.testing.assert_allclose(centers_of(learner), plain, atol=1e-5)
    # The prompt's tokens are the tokenizer's, cut at the longest EOT.
    full = tiny_bundle.tokenizer(learner.init_texts)
    assert torch.equal(learner.tokens, full[:, : learner.tokens.shape[1]])
    assert (full[:, learner.tokens.shape[1]:] == 0).all()
    assert [p.shape for p in learner.parameters()] == [(2, 4, 64)]


def test_random_init_uses_placeholders_below_eot(tiny_bundle):
    tok = tiny_bundle.tokenizer
    learner = learner_for(tiny_bundle, ["dog", "cat"], n_ctx=2, seed=3)
    assert not learner.template_init
    assert learner.init_texts == ["X X dog.", "X X cat."]
    x_id = tok.encode("X")[0]
    assert (learner.tokens[:, 1:3] == x_id).all() and x_id < tok.eot_token_id
    tower = TextTower(tiny_bundle.model)
    eot_at = (learner.tokens == tok.eot_token_id).int().argmax(dim=1)
    assert torch.equal(tower.pooled_positions(learner.tokens), eot_at)
    assert learner.ctx.std().item() == pytest.approx(0.02, rel=0.3)
    # Seeded: the same seed draws the same context, another seed another.
    assert torch.equal(learner.ctx, learner_for(tiny_bundle, ["dog", "cat"], n_ctx=2, seed=3).ctx)
    assert not torch.equal(learner.ctx, learner_for(tiny_bundle, ["dog", "cat"], n_ctx=2, seed=4).ctx)


def test_tower_without_embedding_input_is_refused_by_name(tiny_bundle):
    opaque = TextTower(torch.nn.Linear(2, 2))  # like an HF text tower: no token embeddings
    with pytest.raises(LaicError, match=r"hf-bert.*ViT-B-32"):
        PromptLearner(opaque, tiny_bundle.tokenizer, ["dog"], 4, model_name="hf-bert")


def test_bad_template_and_words(tiny_bundle):
    with pytest.raises(LaicError, match="exactly one"):
        learner_for(tiny_bundle, ["dog"], template="a photo")
    with pytest.raises(LaicError, match="empty word"):
        learner_for(tiny_bundle, ["dog", " "])
    with pytest.raises(LaicError, match="no room"):
        learner_for(tiny_bundle, ["dog"], n_ctx=75)


# ------------------------------------------------------------------ training


def test_training_separates_the_groups_from_near_chance(trained):
    tau = TRAIN["tau"]
    V, y = trained["V"], trained["y"]
    assert cluster_accuracy(y, assign(V, trained["start"], tau)[0]) <= 0.6
    final = centers_of(trained["learner"])
    assert cluster_accuracy(y, assign(V, final, tau)[0]) >= 0.95
    history = trained["history"]
    assert [h["step"] for h in history] == [20, 40, 60]
    assert history[-1]["loss"] < history[0]["loss"]
    assert set(history[0]) == {"step", "loss", "consistency", "entropy", "ce", "changed", "moved"}


def test_training_improves_on_the_pseudo_labels_it_starts_from(trained):
    """30% of the pseudo-labels are wrong, the neighbours are pure: agreeing with the
    neighbourhood must correct most of the wrong ones, not learn them."""
    y, pseudo = trained["y"], trained["pseudo"]
    assert cluster_accuracy(y, pseudo) == pytest.approx(0.7, abs=0.05)
    final = assign(trained["V"], centers_of(trained["learner"]), TRAIN["tau"])[0]
    assert cluster_accuracy(y, final) >= cluster_accuracy(y, pseudo) + 0.2


def test_loss_is_the_neighbour_target_cross_entropy_minus_balance():
    torch.manual_seed(0)
    B, k, d, K = 6, 3, 5, 4
    Va = torch.nn.functional.normalize(torch.randn(B, d), dim=1)
    Vn = torch.nn.functional.normalize(torch.randn(B, k, d), dim=2)
    W = torch.nn.functional.normalize(torch.randn(K, d), dim=1).requires_grad_()
    pseudo = torch.tensor([0, 1, 2, 3, 0, 1])
    reliable = torch.tensor([True, False, True, False, False, True])
    tau, eta, alpha = 0.2, 1.5, 0.4
    loss, terms = centers_loss(Va, Vn, W, tau=tau, entropy_weight=eta, ce_weight=alpha,
                               pseudo=pseudo, reliable=reliable)
    # by hand, in float64
    p = torch.softmax(Va.double() @ W.detach().double().T / tau, 1)
    q_nb = torch.softmax(Vn.double() @ W.detach().double().T / tau, 2).mean(1)
    onehot = torch.nn.functional.one_hot(pseudo, K).double()
    a = alpha * reliable.double()[:, None]
    q = (1 - a) * q_nb + a * onehot
    mean_p = p.mean(0)
    expected = -(q * p.log()).sum(1).mean() + eta * (mean_p * mean_p.log()).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["consistency"] == pytest.approx(-(q_nb * p.log()).sum(1).mean().item(), rel=1e-5)
    assert terms["ce"] == pytest.approx(-p.log()[reliable].gather(1, pseudo[reliable, None]).mean().item(),
                                        rel=1e-5)
    assert terms["entropy"] == pytest.approx(-(mean_p * mean_p.log()).sum().item(), rel=1e-5)
    # The neighbours' side is a fixed target: the gradient is that of CE(q, p) with q constant.
    loss.backward()
    W2 = W.detach().double().clone().requires_grad_()
    p2 = torch.softmax(Va.double() @ W2.T / tau, 1)
    m2 = p2.mean(0)
    (-(q * p2.log()).sum(1).mean() + eta * (m2 * m2.log()).sum()).backward()
    np.testing.assert_allclose(W.grad.numpy(), W2.grad.numpy(), atol=1e-5)


def test_only_the_prompt_vectors_learn(trained, tiny_bundle):
    after = tiny_bundle.model.state_dict()
    assert after.keys() == trained["tower_before"].keys()
    for key, before in trained["tower_before"].items():
        assert torch.equal(after[key], before), key
    for name, param in tiny_bundle.model.named_parameters():
        assert param.grad is None and not param.requires_grad, name
    assert not torch.equal(trained["learner"].ctx.detach(), trained["ctx_before"])
    assert trained["learner"].ctx.grad is not None


def test_same_seed_same_result_and_n_ctx_matters(tiny_bundle, trained):
    V, knn, pseudo, reliable = trained["V"], trained["knn"], trained["pseudo"], trained["reliable"]
    settings = dict(TRAIN, steps=10)

    def run(n_ctx, seed=0):
        learner = learner_for(tiny_bundle, n_ctx=n_ctx)
        train_centers(learner, torch.from_numpy(V), knn, pseudo, reliable, seed=seed, **settings)
        return centers_of(learner)

    first = run(4)
    np.testing.assert_array_equal(first, run(4))
    assert np.abs(first - run(4, seed=1)).max() > 1e-4  # the seed draws the anchors
    assert np.abs(first - run(2)).max() > 1e-3


def test_cross_entropy_term_only_with_weight_and_reliable_anchors(tiny_bundle, trained):
    V, y, knn = trained["V"], trained["y"], trained["knn"]
    settings = dict(TRAIN, steps=2)
    some = np.arange(len(y)) % 2 == 0
    history = train_centers(learner_for(tiny_bundle), V, knn, y, some, ce_weight=1.0, **settings).history
    assert history[-1]["ce"] > 0
    none = np.zeros(len(y), bool)
    assert train_centers(learner_for(tiny_bundle), V, knn, y, none, ce_weight=1.0, **settings).history[-1]["ce"] == 0
    assert train_centers(learner_for(tiny_bundle), V, knn, y, some, ce_weight=0.0, **settings).history[-1]["ce"] == 0
    with pytest.raises(LaicError, match=r"ce_weight.*\[0, 1\]"):
        train_centers(learner_for(tiny_bundle), V, knn, y, some, ce_weight=2.0, **settings)


def test_bad_neighbours_labels_and_dimensions(tiny_bundle):
    learner = learner_for(tiny_bundle)
    V = np.eye(5, 32, dtype=np.float32)
    knn = np.array([[1], [2], [3], [4], [0]])
    ok_pseudo, ok_reliable = np.zeros(5, np.int64), np.ones(5, bool)
    with pytest.raises(LaicError, match="rows 0..4"):
        train_centers(learner, V, knn + 1, ok_pseudo, ok_reliable, progress=False)
    with pytest.raises(LaicError, match=r"\(N, k\) = \(5, k\)"):
        train_centers(learner, V, knn[:4], ok_pseudo, ok_reliable, progress=False)
    with pytest.raises(LaicError, match="0..3"):
        train_centers(learner, V, knn, np.full(5, 4), ok_reliable, progress=False)
    with pytest.raises(LaicError, match="bool mask"):
        train_centers(learner, V, knn, ok_pseudo, np.ones(5), progress=False)
    with pytest.raises(LaicError, match="d=16.*d=32"):
        train_centers(learner, np.eye(5, 16, dtype=np.float32), knn, ok_pseudo, ok_reliable, progress=False)


def test_budget_in_steps_does_not_grow_with_n():
    assert steps_for(1000, 0, 10_000, 1024) == steps_for(1000, 0, 1_281_167, 1024) == 1000
    assert steps_for(1000, 2, 10_000, 1024) == 20  # epochs > 0: passes over the fit images


def test_training_stops_once_the_clusters_stop_moving(tiny_bundle, trained):
    """The toy groups settle long before a generous ceiling: training stops there and says why,
    with the result of a full run."""
    V, y, knn, pseudo, reliable = (trained[k] for k in ("V", "y", "knn", "pseudo", "reliable"))
    settings = dict(TRAIN, steps=3000)
    learner = learner_for(tiny_bundle)
    run = train_centers(learner, V, knn, pseudo, reliable, seed=0, ce_weight=0.3, stop_tolerance=0.001,
                        stop_window=20, log_every=20, **settings)
    assert run.converged and 40 <= run.steps < 1000 and run.steps % 4 == 0  # checked every window / 5 steps
    assert run.moved < 0.001 and run.stop_reason.startswith("converged: ")
    assert run.stop_reason.endswith("of the fit images moved for good over the last 40 steps (< 0.100%)")
    last = run.history[-1]
    assert last["step"] == run.steps and (last["changed"], last["moved"]) == (run.changed, run.moved)
    assert cluster_accuracy(y, assign(V, centers_of(learner), TRAIN["tau"])[0]) >= 0.95
    # tolerance 0 never stops early; the ceiling is then the reason
    ceiling = train_centers(learner_for(tiny_bundle), V, knn, pseudo, reliable, seed=0, stop_tolerance=0,
                            **dict(TRAIN, steps=50))
    assert ceiling.steps == 50 and not ceiling.converged
    assert ceiling.stop_reason == "ceiling: 50 of 50 steps (not measured)"
    with pytest.raises(LaicError, match=r"centers.stop_tolerance.*\[0, 1\)"):
        train_centers(learner_for(tiny_bundle), V, knn, pseudo, reliable, stop_tolerance=1.5, **settings)
    with pytest.raises(LaicError, match="centers.stop_window"):
        train_centers(learner_for(tiny_bundle), V, knn, pseudo, reliable, stop_window=0, **settings)


def test_moving_for_good_is_what_changed_over_two_windows_beyond_the_churn():
    """Image 0 moves once and stays; image 1 moves and flips back: only image 0 moved for good."""
    monitor = AssignmentStability(0.01, 2)
    assert monitor.check(0, [0, 0, 0, 0]) is None
    assert monitor.check(2, [1, 0, 0, 0]) is None and monitor.changed == 0.25  # no record 4 steps back yet
    # c2 = 2 of 4 changed since step 0, c0 = c1 = 1 of 4 in each window: one moved for good
    assert monitor.check(4, [1, 1, 0, 0]) == 0.25 and not monitor.converged
    assert monitor.check(6, [1, 0, 0, 0]) == -0.25 and monitor.converged  # image 1 is back where it was
    assert monitor.reason(6, 100) == "converged: -25.000% of the fit images moved for good over the last 4 steps " \
        "(< 1.000%)"
    # the newest records at least 2 and 4 steps back are 6 and 4: image 1 left 4's cluster and stayed away
    assert monitor.check(9, [1, 0, 0, 0]) == 0.125 and not monitor.converged
    quiet = AssignmentStability(0.01, 1)  # nothing has moved yet: not converged, not started
    assert [quiet.check(s, [0, 0]) for s in range(3)] == [None, None, 0.0] and not quiet.converged
    heads = AssignmentStability(0.3, 1, section="scan")  # (heads, m) labels: shares of all entries
    heads.check(0, [[0, 1], [1, 1]])
    heads.check(1, [[0, 1], [0, 1]])
    assert heads.check(2, [[0, 1], [0, 1]]) == 0.125 and heads.converged
    assert monitor_rows(10, seed=0).tolist() == list(range(10))
    sample = monitor_rows(100, seed=3, cap=20)
    assert len(set(sample)) == 20 and (np.diff(sample) > 0).all()
    assert sample.tolist() == monitor_rows(100, seed=3, cap=20).tolist()


def test_chunked_prompt_pass_gives_the_same_loss_and_gradients(tiny_bundle):
    """K prompts in checkpointed chunks (3 + 3 + 1) against one whole pass: same centers, loss and
    gradients on the context vectors, to float rounding."""
    words = ["apple", "river", "chair", "cloud", "horse", "violin", "harbour"]
    whole, chunked = learner_for(tiny_bundle, words), learner_for(tiny_bundle, words, chunk_size=3)
    with torch.no_grad():  # a context that is not the template's, so every position matters
        noise = 0.05 * torch.randn(whole.ctx.shape, generator=torch.Generator().manual_seed(0))
        whole.ctx.add_(noise), chunked.ctx.add_(noise)
    rng = np.random.default_rng(0)
    V = torch.from_numpy(rng.normal(size=(40, 32)).astype(np.float32))
    V = torch.nn.functional.normalize(V, dim=1)
    knn = torch.from_numpy(rng.integers(40, size=(40, 3)))
    pseudo, reliable = torch.from_numpy(rng.integers(7, size=40)), torch.arange(40) % 2 == 0
    results = []
    for learner in (whole, chunked):
        loss, _ = centers_loss(V, V[knn], learner(), tau=0.05, entropy_weight=2.0, ce_weight=0.3,
                               pseudo=pseudo, reliable=reliable)
        loss.backward()
        results.append((loss.item(), learner.ctx.grad.clone()))
    # float32 sums in another order differ in their last bits, by CPU (AVX2, AVX-512, ARM): a relative
    # tolerance of 1e-5 is about 80 float32 ulps, far below any real difference between the two passes.
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    assert results[0][1].abs().max() > 0
    scale = results[0][1].abs().max().item()  # float32 sums in another order: rounding relative to it
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(centers_of(chunked), centers_of(whole), atol=1e-6)  # no-grad chunks too
    with pytest.raises(LaicError, match="centers.prompt_chunk"):
        learner_for(tiny_bundle, words, chunk_size=0)


# ---------------------------------------------------------------- assignment


def test_assign_probabilities_and_blocks():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(10, 6)).astype(np.float32)
    W = rng.normal(size=(3, 6)).astype(np.float32)
    labels, probs = assign(V, W, 0.5)
    assert labels.shape == (10,) and labels.dtype == np.int64
    assert probs.shape == (10, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(labels, (V @ W.T).argmax(axis=1))
    small_labels, small_probs = assign(V, W, 0.5, block_size=3)
    np.testing.assert_array_equal(small_labels, labels)
    np.testing.assert_allclose(small_probs, probs, atol=1e-6)  # float32 rounding, by CPU
    top_labels, confidence = assign_labels(V, W, 0.5, block_size=4)
    np.testing.assert_array_equal(top_labels, labels)
    np.testing.assert_allclose(confidence, probs.max(axis=1), atol=1e-6)
    with pytest.raises(LaicError, match="same d"):
        assign(V, W[:, :5], 0.5)


# ------------------------------------------------------------------- nouns


NOUNS = ["cat", "dog", "car", "ship"]


def test_cluster_init_nouns_picks_each_clusters_top_noun():
    scores = np.array([[0.1, 0.55, 0.25, 0.1], [0.1, 0.1, 0.7, 0.1], [0.15, 0.1, 0.1, 0.65]])
    assert cluster_init_nouns(scores, NOUNS) == ["dog", "car", "ship"]
    with pytest.raises(LaicError, match="same selected nouns"):
        cluster_init_nouns(scores, NOUNS[:3])


def test_cluster_init_nouns_shared_top_noun():
    scores = np.array([[0.1, 0.55, 0.25, 0.1], [0.1, 0.5, 0.3, 0.1], [0.15, 0.1, 0.1, 0.65]])
    assert cluster_init_nouns(scores, NOUNS, distinct=False) == ["dog", "dog", "ship"]
    # Distinct: the matching of largest total weight (0.55 + 0.3 + 0.65 beats 0.25 + 0.5 + 0.65).
    assert cluster_init_nouns(scores, NOUNS) == ["dog", "car", "ship"]


def test_name_clusters_small_case_and_empty_cluster_unnamed():
    vocab_nouns = ["cat", "dog", "car", "ship", "tree"]
    vocab_text = np.eye(5, 4, dtype=np.float32)
    vocab_text[4] = [0.6, 0.8, 0, 0]
    centers = np.array([[0, 1, 0, 0], [0.8, 0.6, 0, 0], [0, 0, 1, 0]], np.float32)
    member_scores = np.array([[0.39, 0.37, 0.17, 0.07], [0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0]])
    names = name_clusters(centers, vocab_text, vocab_nouns, member_scores, NOUNS, [3, 4, 0], top=2)
    assert [n["cluster"] for n in names] == [0, 1, 2] and [n["size"] for n in names] == [3, 4, 0]
    assert names[0]["name"] == "dog" and not names[0]["empty"]
    assert [(x["noun"], x["cosine"]) for x in names[0]["nearest_nouns"]] == [("dog", 1.0), ("tree", 0.8)]
    assert [x["noun"] for x in names[1]["nearest_nouns"]] == ["tree", "cat"]
    assert [x["noun"] for x in names[0]["member_nouns"]] == ["cat", "dog"]
    assert names[0]["member_nouns"][0]["weight"] == pytest.approx(0.39)
    # An empty cluster describes no image: it gets no name and no member nouns.
    assert names[2]["empty"] and names[2]["name"] == "" and names[2]["member_nouns"] == []
    with pytest.raises(LaicError, match="same clusters"):
        name_clusters(centers, vocab_text, vocab_nouns, member_scores[:2], NOUNS, [3, 4])


def test_clusters_sharing_a_nearest_noun_get_distinct_names():
    vocab_nouns = ["cat", "dog", "car", "ship", "tree"]
    vocab_text = np.eye(5, 4, dtype=np.float32)
    vocab_text[4] = [0.6, 0.8, 0, 0]
    # clusters 0 and 1 are both nearest to "dog"; 1 is nearer to its runner-up "tree" than 0 to "tree"
    centers = np.array([[0.1, 0.995, 0, 0], [0.3, 0.954, 0, 0], [0, 0, 1, 0]], np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    scores = np.zeros((3, 4))
    names = name_clusters(centers, vocab_text, vocab_nouns, scores, NOUNS, [3, 4, 5], top=3)
    assert [n["nearest_nouns"][0]["noun"] for n in names] == ["dog", "dog", "car"]
    assert [n["name"] for n in names] == ["dog", "tree", "car"]
    # an empty cluster takes no name from the others
    names = name_clusters(centers, vocab_text, vocab_nouns, scores, NOUNS, [3, 0, 5], top=3)
    assert [n["name"] for n in names] == ["dog", "", "car"]


# ------------------------------------------------------------------- stages


def write_pipeline_inputs(root: Path, feats: np.ndarray, K: int, seed: int = 0) -> None:
    """Synthetic upstream artifacts (nouns, relation spec, neighbours, vocabulary) for `feats`."""
    rng = np.random.default_rng(seed)
    n, d = feats.shape
    vocab = [f"noun{j}" for j in range(12)]
    T = rng.normal(size=(12, d)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    # The text embeddings say they come from the model that embedded the images.
    same_model = {"provenance": load_parquet_meta(root / "data/features/fit.parquet")["provenance"]}
    save_parquet(root / "data/vocab/nouns.parquet", pd.DataFrame({"noun": vocab}), same_model)
    save_npy(root / "data/vocab/text.npy", T)
    sel = [0, 2, 4, 5, 7, 9]
    save_parquet(root / "data/nouns/selected.parquet", pd.DataFrame(
        {"noun": [vocab[j] for j in sel], "group": np.arange(6) % K, "score": np.ones(6)}), same_model)
    save_npy(root / "data/nouns/text.npy", T[sel])
    save_json(root / "data/relation/relation.json",
              {"kind": "ridge", "tau": 0.005, "ridge_lambda": 1.0, "n_nouns": 6, "row_dim": d})
    rows = relation_embedding(feats, T[sel], kind="ridge")
    save_matrix(root / "data/relation/rows_fit.npz", rows)
    S = rows @ rows.T
    np.fill_diagonal(S, -np.inf)
    knn = np.argsort(-S, axis=1, kind="stable")[:, :3].astype(np.int64)
    save_npy(root / "data/neighbors/knn.npy", knn)
    save_npy(root / "data/neighbors/pseudo.npy", (np.arange(n) % K).astype(np.int64))
    save_npy(root / "data/neighbors/reliable.npy", np.arange(n) % 3 != 0)


def write_params(root: Path, config: Path, K: int = 3, **centers) -> None:
    params = {
        "seed": 0,
        "dataset": {"kind": "imagefolder", "root": "images", "fit_split": "all",
                    "eval_split": "all", "num_clusters": K},
        "model": {"name": str(config), "pretrained": "none", "device": "cpu", "batch_size": 8},
        "embed": {"num_workers": 0, "chunk_size": 8},
        "centers": {"steps": 6, "batch_size": 16, "lr": 0.01, **centers},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def same_width_config(folder: Path) -> Path:
    """Another model with the tiny model's embed_dim (32): only the identity tells them apart."""

    from tests.conftest import TINY_CLIP_CONFIG

    config = json.loads(json.dumps(TINY_CLIP_CONFIG))
    config["vision_cfg"]["layers"] = 1
    path = folder / "other.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_config):
    """An image tree embedded by the embed stage, plus synthetic upstream artifacts."""
    from stages.embed import main as embed

    monkeypatch.chdir(tmp_path)
    make_image_tree(tmp_path / "images", classes=3, per_class=6)
    write_params(tmp_path, tiny_config)
    embed(Path("params.yaml"))
    write_pipeline_inputs(tmp_path, np.load("data/features/fit.npy"), K=3)
    return tmp_path


def test_centers_stage_and_predict(project, tiny_config, monkeypatch):

    from stages.centers import main as centers_stage
    from stages.predict import main as predict

    centers_stage(Path("params.yaml"))
    centers = np.load("data/centers/centers.npy")
    assert centers.shape == (3, 32) and centers.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, atol=1e-5)
    fit = pd.read_parquet("data/centers/assign_fit.parquet")
    assert list(fit.columns) == ["row", "cluster", "confidence", "init_cluster"] and len(fit) == 18
    assert fit["cluster"].between(0, 2).all() and fit["confidence"].between(1 / 3, 1).all()
    assert fit["init_cluster"].between(0, 2).all()
    names = json.loads(Path("data/centers/names.json").read_text())
    assert [n["cluster"] for n in names] == [0, 1, 2]
    assert sum(n["size"] for n in names) == 18
    assert all(n["init_noun"].startswith("noun") for n in names)
    assert all(n["name"].startswith("noun") for n in names if n["size"])
    assert len({n["init_noun"] for n in names}) == 3
    history = pd.read_csv("metrics/centers_history.csv")
    assert list(history.columns) == ["step", "loss", "consistency", "entropy", "ce", "changed", "moved"]
    assert history["step"].tolist() == [1, 2, 3, 4, 5, 6]
    summary = json.loads(Path("metrics/centers.json").read_text())
    assert summary["reliable"] == 12 and summary["steps"] == summary["steps_ceiling"] == 6
    # 6 steps is less than one stop window: trained to the ceiling, and the file says so
    assert summary["converged"] is False and summary["stop_reason"].startswith("ceiling: 6 of 6 steps")
    # random weights ("none"): CLIP's reference scale of 100, so auto gives CLIP's 0.01
    assert summary["tau"] == pytest.approx(0.01)
    assert 0 < summary["agreement_with_pseudo_labels"] <= 1
    assert summary["final_loss"] == pytest.approx(history["loss"].iloc[-1])
    assert summary["fit_empty_clusters"] == 3 - fit["cluster"].nunique()
    saved = torch.load("data/centers/prompts.pt", weights_only=True)
    assert saved["ctx"].shape == (3, 4, 64) and saved["n_ctx"] == 4 and saved["dim"] == 32

    # The same images through predict land in the same clusters.
    predict(Path("images"), Path("pred.csv"), Path("params.yaml"), "fail")
    pred = pd.read_csv("pred.csv")
    assert list(pred.columns) == ["row", "source", "ours", "ours_name", "ours_confidence"]
    sources = pd.read_parquet("data/features/eval.parquet")["source"]
    expected = pd.read_parquet("data/centers/assign_eval.parquet")["cluster"]
    by_source = dict(zip(pred["source"], pred["ours"]))
    assert [by_source[s] for s in sources] == expected.tolist()
    assert pred["ours_name"].fillna("").tolist() == [names[k]["name"] for k in pred["ours"]]

    # clusters.yaml's lines about ours, as evaluate resolved them against these clusters: merged and renamed
    # clusters, checked before anything is embedded
    Path("clusters.yaml").write_text("- {rename: 0, to: firsts}\n- {merge: [1, 2]}\n- {method: scan, junk: 0}\n")
    with pytest.raises(LaicError, match=r"clusters.yaml holds corrections, but .*assignments.parquet.*dvc repro"):
        predict(Path("images"), Path("pred_fixed.csv"), Path("params.yaml"), "fail")

    def evaluated() -> None:  # what evaluate records in the per-image table
        from laic_core.artifacts import save_parquet
        from laic_core.scoring.corrections import corrections_record
        from stages.corrections import resolve_run

        fixes = resolve_run(sources.tolist(), {"ours": expected.to_numpy(), "scan": np.arange(18) % 3},
                            {"ours": 3, "scan": 3})
        save_parquet("data/evaluate/assignments.parquet", pd.DataFrame({"row": np.arange(18)}),
                     {"corrections": corrections_record(fixes.corrections), **fixes.meta()})

    evaluated()
    predict(Path("images"), Path("pred_fixed.csv"), Path("params.yaml"), "fail")
    fixed = pd.read_csv("pred_fixed.csv")
    assert list(fixed.columns) == ["row", "source", "ours", "ours_corrected", "ours_name", "ours_confidence"]
    assert fixed["ours"].tolist() == pred["ours"].tolist()
    assert fixed["ours_corrected"].tolist() == np.where(pred["ours"] == 2, 1, pred["ours"]).tolist()
    renamed = {0: "firsts", 1: names[1]["name"], 2: names[1]["name"]}
    assert fixed["ours_name"].fillna("").tolist() == [renamed[k] for k in pred["ours"]]
    Path("clusters.yaml").write_text("- {junk: 3}\n")  # K is 3: evaluate sets the line aside
    with pytest.raises(LaicError, match=r"clusters.yaml changed since .*assignments.parquet was written; run `dvc "
                                        r"repro` first, so that predict uses the corrections"):
        predict(Path("images"), Path("pred_bad.csv"), Path("params.yaml"), "fail")
    assert not Path("pred_bad.csv").exists()
    evaluated()
    predict(Path("images"), Path("pred_aside.csv"), Path("params.yaml"), "fail")
    assert "ours_corrected" not in pd.read_csv("pred_aside.csv").columns  # set aside: nothing applied
    # the table of other clusters than these centers' (centers rerun, evaluate not): refused
    from laic_core.artifacts import save_parquet

    table = pd.read_parquet("data/centers/assign_eval.parquet")
    save_parquet("data/centers/assign_eval.parquet", table.assign(cluster=(table["cluster"] + 1) % 3))
    with pytest.raises(LaicError, match=r"assignments.parquet was written for other clusters than the centers"):
        predict(Path("images"), Path("pred_bad.csv"), Path("params.yaml"), "fail")
    save_parquet("data/centers/assign_eval.parquet", table)
    Path("clusters.yaml").unlink()

    # One image file is predicted alone; a folder without images is named as the folder given (predict
    # reads neither dataset.root nor a split), as is a file that is not an image.
    predict(Path("images/class_1/img_2.png"), Path("pred_one.csv"), Path("params.yaml"), "fail")
    one = pd.read_csv("pred_one.csv")
    assert one["source"].tolist() == ["images/class_1/img_2.png"] and one["ours"].tolist() == [by_source[
        "images/class_1/img_2.png"]]
    Path("empty").mkdir()
    with pytest.raises(LaicError, match=r"^empty: no images found \(no file with an extension the installed Pillow "
                                        r"reads\); give a folder that holds images, or an image file$"):
        predict(Path("empty"), Path("pred_bad.csv"), Path("params.yaml"), "fail")
    (project / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(LaicError, match=r"^empty: no images found \(.*; ignored 1 other file\(s\)\); give a folder"):
        predict(Path("empty"), Path("pred_bad.csv"), Path("params.yaml"), "fail")
    with pytest.raises(LaicError, match=r"^empty/notes.txt: not an image file \(its extension .txt is not a format "
                                        r"the installed Pillow reads\); give an image file or a folder of images$"):
        predict(Path("empty/notes.txt"), Path("pred_bad.csv"), Path("params.yaml"), "fail")
    assert not Path("pred_bad.csv").exists()
    # A file name that is not UTF-8 (b"caf\xe9.png") is written with its byte as \xe9.
    import os

    os.rename("images/class_1/img_2.png", b"images/class_1/caf\xe9.png")
    predict(Path("images"), Path("pred_latin1.csv"), Path("params.yaml"), "fail")
    assert "images/class_1/caf\\xe9.png" in pd.read_csv("pred_latin1.csv")["source"].tolist()
    os.rename(b"images/class_1/caf\xe9.png", "images/class_1/img_2.png")

    # names.json cut short (a truncated DVC cache object, a full disk in a copy): one line, the stage to rerun.
    whole = Path("data/centers/names.json").read_bytes()
    Path("data/centers/names.json").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(LaicError, match=r"^data/centers/names.json: damaged or incomplete \(.*\); rerun the stage "
                                        r"that writes it: `dvc repro -f centers`$"):
        predict(Path("images"), Path("pred_bad.csv"), Path("params.yaml"), "fail")
    Path("data/centers/names.json").write_bytes(whole)

    # An unreadable file: the fix named is predict's own option, not embed's setting.
    (project / "images" / "class_0" / "zero.png").write_bytes(b"")
    with pytest.raises(LaicError, match=r"(?s)cannot read 1 image.*zero.png.*--on-error skip") as err:
        predict(Path("images"), Path("pred_bad.csv"), Path("params.yaml"), "fail")
    assert "embed.on_error" not in str(err.value)
    predict(Path("images"), Path("pred_skip.csv"), Path("params.yaml"), "skip")
    assert len(pd.read_csv("pred_skip.csv")) == 18
    (project / "images" / "class_0" / "zero.png").unlink()

    # Stale centers and a folder for --out are caught before anything is embedded.
    import stages.predict

    with monkeypatch.context() as patch:
        patch.setattr(stages.predict, "load_clip", lambda *a: pytest.fail("embedded before the checks"))
        with pytest.raises(LaicError, match=r"^--out images: is a folder; give the CSV file to write, "
                                            r"e.g. --out images/predictions.csv$"):
            predict(Path("images"), Path("images"), Path("params.yaml"), "fail")
        write_params(project, tiny_config, K=4)  # num_clusters changed, `dvc repro` not run
        with pytest.raises(LaicError, match=r"^data/centers/centers.npy: the centers were learned for K=3 "
                                            r"clusters but params.yaml now says dataset.num_clusters: 4; "
                                            r"run `dvc repro` to relearn them"):
            predict(Path("images"), Path("pred3.csv"), Path("params.yaml"), "fail")

    # A changed model is caught before anything is embedded, even one of the same width.
    write_params(project, same_width_config(project))
    with pytest.raises(LaicError, match=r"prompts.pt: the centers were learned with model .*laic-tiny-clip.json"
                                        r".* but params now say model .*other.json.*relearn"):
        predict(Path("images"), Path("pred2.csv"), Path("params.yaml"), "fail")


def test_predict_before_centers_exist(tmp_path, monkeypatch, tiny_config):
    from stages.predict import main as predict

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_config)
    with pytest.raises(LaicError, match="^images: no such folder or image file; give a folder of images or one "
                                        "image file$"):
        predict(Path("images"), Path("pred.csv"), Path("params.yaml"), "fail")
    make_image_tree(tmp_path / "images", classes=1, per_class=1)
    with pytest.raises(LaicError, match=r"centers.npy: missing.*dvc repro"):
        predict(Path("images"), Path("pred.csv"), Path("params.yaml"), "fail")
    assert not Path("pred.csv").exists()


def test_centers_stage_input_checks(project, tiny_config):
    from stages.centers import main as centers_stage

    save_npy("data/nouns/text.npy", np.ones((6, 16), np.float32))
    with pytest.raises(LaicError, match=r"data/nouns/text.npy have dimension 16.*dimension 32.*different models"):
        centers_stage(Path("params.yaml"))
    write_pipeline_inputs(project, np.load("data/features/fit.npy"), K=3)
    write_params(project, tiny_config, K=2)
    with pytest.raises(LaicError, match=r"pseudo-labels span 0..2.*num_clusters is 2"):
        centers_stage(Path("params.yaml"))
    write_params(project, tiny_config, K=19)
    with pytest.raises(LaicError, match="19 clusters but only 18 fit images"):
        centers_stage(Path("params.yaml"))
    write_params(project, tiny_config)
    save_npy("data/neighbors/reliable.npy", np.zeros(18, bool))
    with pytest.raises(LaicError, match="no fit image is reliable"):
        centers_stage(Path("params.yaml"))


def test_as_many_clusters_as_images_says_why_no_image_can_be_reliable(project, tiny_config):
    """The probe: K = N gave "lower neighbors.min_agreement or neighbors.k", which cannot help."""
    from stages.centers import main as centers_stage

    write_params(project, tiny_config, K=18)
    save_npy("data/neighbors/pseudo.npy", np.arange(18, dtype=np.int64))  # k-means at K = N
    save_npy("data/neighbors/reliable.npy", np.zeros(18, bool))
    with pytest.raises(LaicError) as err:
        centers_stage(Path("params.yaml"))
    assert str(err.value) == (
        "data/neighbors/reliable.npy: no fit image can be reliable: K=18 clusters of 18 fit images leave one "
        "image per pseudo-label, and a reliable image needs 3 of its k=3 neighbours in its own pseudo-label; "
        "lower dataset.num_clusters well below the number of images")


def test_centers_refuse_features_of_another_model_of_the_same_width(project):
    """The probe: another model with the same embed_dim in params, then `dvc repro -s centers`."""
    from stages.centers import main as centers_stage

    write_params(project, same_width_config(project))
    with pytest.raises(LaicError) as err:
        centers_stage(Path("params.yaml"))
    message = str(err.value)
    assert message.startswith("data/features/fit.parquet was made with model ")
    assert "laic-tiny-clip.json" in message and "params.yaml now says model " in message
    assert "other.json" in message and "run `dvc repro`" in message
    assert not Path("data/centers/centers.npy").exists()


def test_a_cluster_nearest_to_an_excluded_or_proper_noun_gets_the_next_allowed_one():
    from laic_core.text.vocab import excluded_nouns

    vocab_nouns = ["paedophile", "Harold W. Kroto", "dog", "ship"]
    vocab_text = np.array([[1, 0, 0], [0.9, 0.436, 0], [0.8, 0.6, 0], [0, 0, 1]], np.float32)
    centers = np.array([[1, 0, 0], [0, 0, 1]], np.float32)  # cluster 0 is nearest to "paedophile"
    keep = [i for i, n in enumerate(vocab_nouns) if n not in excluded_nouns(vocab_nouns)]  # the vocab stage's cut
    nouns, text = [vocab_nouns[i] for i in keep], vocab_text[keep]
    proper = np.array([n == "Harold W. Kroto" for n in nouns])
    selected = ["Harold W. Kroto", "dog"]
    scores = np.array([[0.9, 0.1], [0.5, 0.5]])
    named = name_clusters(centers, text, nouns, scores, selected, [3, 2], top=3, nameable=~proper,
                          selected_nameable=np.array([False, True]))
    assert [n["name"] for n in named] == ["dog", "ship"]
    assert all(x["noun"] not in ("paedophile", "Harold W. Kroto") for n in named for x in n["nearest_nouns"])
    assert [x["noun"] for x in named[0]["member_nouns"]] == ["dog"]
    # with the switch on, the proper noun names the cluster again
    named = name_clusters(centers, text, nouns, scores, selected, [3, 2], top=3)
    assert named[0]["name"] == "Harold W. Kroto"
    with pytest.raises(LaicError, match="name_proper_nouns"):
        name_clusters(centers, text, nouns, scores, selected, [3, 2], nameable=np.zeros(3, bool))


def test_a_taxonomic_name_gives_way_to_its_common_name():
    from laic_core.text.wordnet import common_names, flag_mask, nameable_nouns

    nouns = ["Hyla crucifer", "spring peeper", "giant hyssop", "genus Oryx", "ship"]
    assert common_names(nouns) == ["spring peeper", None, None, None, None]
    assert flag_mask(["E. coli", "Escherichia coli", "dog"], "taxonomic") == [True, True, False]
    assert nameable_nouns(nouns) == [False, True, True, False, True]
    assert nameable_nouns(nouns, taxonomic=True) == [True] * 5
    assert nameable_nouns(["autoinjector", "dog"], rare=False) == [False, True]
    text = np.array([[1, 0, 0], [0.6, 0.8, 0], [0.9, 0.436, 0], [0.95, 0.312, 0], [0, 0, 1]], np.float32)
    centers = np.array([[1, 0, 0], [0, 0, 1]], np.float32)  # cluster 0: nearest "Hyla crucifer", then the taxon
    nameable = np.array(nameable_nouns(nouns))
    plain = name_clusters(centers, text, nouns, np.zeros((2, 1)), ["-"], [3, 2], top=2, nameable=nameable)
    assert plain[0]["name"] == "giant hyssop"  # taxa out, nothing in their place
    alias = np.array([1, -1, -1, -1, -1])
    named = name_clusters(centers, text, nouns, np.zeros((2, 1)), ["-"], [3, 2], top=2, nameable=nameable,
                          alias=alias)
    assert [n["name"] for n in named] == ["spring peeper", "ship"]
    assert named[0]["nearest_nouns"][0] == {"noun": "spring peeper", "cosine": 1.0, "as": "Hyla crucifer"}
    assert named[0]["nearest_nouns"][1] == {"noun": "giant hyssop", "cosine": pytest.approx(0.9)}
    # a penalty (a prior, a hubness correction) moves a noun down the ranking
    penalised = name_clusters(centers, text, nouns, np.zeros((2, 1)), ["-"], [3, 2], top=2, nameable=nameable,
                              alias=alias, penalty=np.array([0, 0.2, 0, 0, 0]))
    assert penalised[0]["name"] == "giant hyssop"
    with pytest.raises(LaicError, match="alias must be"):
        name_clusters(centers, text, nouns, np.zeros((2, 1)), ["-"], [3, 2], alias=np.array([9, -1, -1, -1, -1]))


def test_glosses_follow_the_names_they_explain():
    from laic_core.method.naming import with_glosses
    from laic_core.text.wordnet import gloss

    entries = [{"cluster": 0, "size": 3, "empty": False, "name": "ketch",
                "nearest_nouns": [{"noun": "ketch", "cosine": 0.9}, {"noun": "Paris", "cosine": 0.8}],
                "member_nouns": [{"noun": "yawl", "weight": 0.5}]},
               {"cluster": 1, "size": 0, "empty": True, "name": "", "nearest_nouns": [], "member_nouns": []}]
    out = with_glosses(entries, gloss)
    assert list(out[0])[:5] == ["cluster", "size", "empty", "name", "gloss"]  # the report's column order
    assert out[0]["gloss"].startswith("a sailing vessel with two masts")
    assert out[0]["nearest_nouns"][0]["gloss"] == out[0]["gloss"] and "gloss" not in out[0]["nearest_nouns"][1]
    assert out[0]["member_nouns"][0]["gloss"].startswith("a ship's small boat")
    assert "gloss" not in out[1]
