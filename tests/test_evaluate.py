"""The evaluate and zeroshot stages on small synthetic artifacts with hand-known answers."""

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
from tests.conftest import normalized as _unit
from tests.conftest import provenance_meta

CLASSES = ["cat", "dog", "car"]
N_FIT, N_EVAL, DIM, K = 40, 30, 8, 3
Y_FIT = np.repeat([0, 1, 2], [14, 13, 13])
Y_EVAL = np.repeat([0, 1, 2], 10)

# Eval assignments with known scores against Y_EVAL.
PRED_OURS = (Y_EVAL + 1) % 3  # a relabelled perfect clustering: ACC = NMI = ARI = 1
PRED_CLIP = np.zeros(N_EVAL, np.int64)  # one cluster: ACC 1/3, NMI 0, ARI 0
PRED_TAC = Y_EVAL.copy()
PRED_TAC[:5] = 1  # five of class 0 in class 1's cluster: ACC 25/30
PRED_OURS_NOTRAIN = Y_EVAL.copy()  # perfect, but stored in shuffled row order below
PRED_ZEROSHOT = Y_EVAL.copy()
PRED_ZEROSHOT[27:] = 0  # three mistakes: top-1 = ACC = 27/30

# Fit pseudo-labels: a relabelling of Y_FIT with two mistakes (rows 0, 1), all in
# the five unreliable rows 0..4.
PSEUDO = (Y_FIT + 2) % 3
PSEUDO[[0, 1]] = (PSEUDO[[0, 1]] + 1) % 3
RELIABLE = np.ones(N_FIT, bool)
RELIABLE[:5] = False
KNN = np.stack([(np.arange(N_FIT) + s) % N_FIT for s in (1, 2, 3)], axis=1)


def _clustered(labels: np.ndarray, rng) -> np.ndarray:
    means = np.eye(DIM)[:K] * 4.0
    return _unit(means[labels] + rng.normal(scale=0.3, size=(len(labels), DIM)))


def write_params(folder: Path, **evaluate) -> None:
    params = {
        "dataset": {"kind": "imagefolder", "name": "toy", "root": "images", "num_clusters": K,
                    "fit_split": "all", "eval_split": "all"},
        "model": {"name": "ViT-B-32", "pretrained": "none", "device": "cpu"},
        "neighbors": {"k": 3},
        "evaluate": {"purity_ks": [1, 5, 10, 50], **evaluate},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def write_artifacts(root: Path, *, labels: bool = True, zeroshot: bool = True) -> None:
    """Every input of the evaluate stage, as the upstream stages write them."""
    rng = np.random.default_rng(0)
    data = root / "data"
    names = CLASSES if labels else None
    for role, y in (("fit", Y_FIT), ("eval", Y_EVAL)):
        save_npy(data / "features" / f"{role}.npy", _clustered(y, rng))
        table = pd.DataFrame({"row": np.arange(len(y)), "source": [f"img_{i}.png" for i in range(len(y))]})
        if labels:
            table["label"] = y.astype(np.int64)
        save_parquet(data / "features" / f"{role}.parquet", table,
                     {"dataset": "toy", "class_names": names, "skipped": [],
                      **provenance_meta("ViT-B-32", "none", DIM)})
        # Relation rows carry no class information: their neighbours are less pure than CLIP's.
        rows = rng.random((len(y), 6)).astype(np.float32)
        save_matrix(data / "relation" / f"rows_{role}.npz", rows / np.linalg.norm(rows, axis=1, keepdims=True))

    order = rng.permutation(N_EVAL)  # rows stored out of order: the stage must realign them
    save_parquet(data / "relation" / "assign_eval.parquet", pd.DataFrame({
        "row": order, "clip_kmeans": PRED_CLIP[order], "tac_notrain": PRED_TAC[order],
        "ours_notrain": PRED_OURS_NOTRAIN[order]}))
    save_parquet(data / "relation" / "assign_fit.parquet", pd.DataFrame({
        "row": np.arange(N_FIT), "clip_kmeans": Y_FIT, "tac_notrain": Y_FIT, "ours_notrain": PSEUDO}))
    save_npy(data / "neighbors" / "knn.npy", KNN.astype(np.int64))
    save_npy(data / "neighbors" / "reliable.npy", RELIABLE)
    save_npy(data / "neighbors" / "pseudo.npy", PSEUDO.astype(np.int64))
    for role, pred in (("fit", Y_FIT), ("eval", PRED_OURS)):
        save_parquet(data / "centers" / f"assign_{role}.parquet", pd.DataFrame({
            "row": np.arange(len(pred)), "cluster": pred.astype(np.int64),
            "confidence": np.full(len(pred), 0.9, np.float32), "init_cluster": np.zeros(len(pred), np.int64)}))
        # TAC and SCAN: TAC perfect, SCAN puts everything in one cluster
        y = Y_FIT if role == "fit" else Y_EVAL
        save_parquet(data / "tac" / f"assign_{role}.parquet", pd.DataFrame({
            "row": np.arange(len(y)), "tac": y, "tac_confidence": np.full(len(y), 0.8, np.float32)}))
        save_parquet(data / "scan" / f"assign_{role}.parquet", pd.DataFrame({
            "row": np.arange(len(y)), "scan": np.zeros(len(y), np.int64),
            "scan_confidence": np.full(len(y), 0.5, np.float32)}))
    T = _unit(rng.normal(size=(5, DIM)))
    save_npy(data / "nouns" / "text.npy", T)
    save_parquet(data / "nouns" / "selected.parquet", pd.DataFrame({"noun": [f"n{j}" for j in range(5)]}),
                 provenance_meta("ViT-B-32", "none", DIM))
    save_json(data / "relation" / "relation.json", {"kind": "ridge", "tau": 0.005, "ridge_lambda": 1.0,
                                                    "ridge_penalty": 0.6, "logit_scale": 100.0, "n_nouns": 5})
    save_json(data / "centers" / "names.json", [
        {"cluster": 0, "size": 10, "empty": False, "name": "automobile", "init_noun": "car",
         "nearest_nouns": [{"noun": "automobile", "cosine": 0.3}, {"noun": "car", "cosine": 0.29}],
         "member_nouns": [{"noun": "car", "weight": 0.4}]},
        {"cluster": 1, "size": 10, "empty": False, "name": "kitten", "init_noun": "cat",
         "nearest_nouns": [{"noun": "kitten", "cosine": 0.3}], "member_nouns": [{"noun": "cat", "weight": 0.5}]},
        {"cluster": 2, "size": 10, "empty": False, "name": "puppy", "init_noun": "dog",
         "nearest_nouns": [{"noun": "puppy", "cosine": 0.3}], "member_nouns": []},
    ])
    (root / "metrics").mkdir(exist_ok=True)
    pd.DataFrame({"step": [1, 2, 3], "loss": [1.0, 0.5, 0.3], "consistency": [0.8, 0.4, 0.2],
                  "entropy": [1.0, 1.05, 1.09], "ce": [0.0, 0.0, 0.0]}).to_csv(
        root / "metrics" / "centers_history.csv", index=False)
    save_json(root / "metrics" / "centers.json", {"steps": 3, "tau": 0.01})
    if zeroshot and labels:
        save_parquet(data / "zeroshot" / "assign_eval.parquet", pd.DataFrame({
            "row": np.arange(N_EVAL), "cluster": PRED_ZEROSHOT}), {"available": True, "class_names": CLASSES})
    else:
        save_parquet(data / "zeroshot" / "assign_eval.parquet", pd.DataFrame({
            "row": np.zeros(0, np.int64), "cluster": np.zeros(0, np.int64)}), {"available": False})


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    return tmp_path


def run_evaluate():
    from stages.evaluate import main

    main(Path("params.yaml"))


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    """One evaluate run on the labelled artifacts, shared by the tests that only read its outputs."""
    root = tmp_path_factory.mktemp("labelled")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        write_params(root)
        write_artifacts(root)
        run_evaluate()
    return root


def _read_json(path: Path):
    return json.loads(path.read_text())


def test_scores_match_hand_worked_answers(labelled_run):
    from stages.layout import EVALUATE_OUTPUTS

    scores = _read_json(labelled_run / "metrics/scores.json")
    assert list(scores) == ["clip_kmeans", "tac_notrain", "ours_notrain", "scan", "tac", "ours_init", "ours",
                            "zeroshot"]
    assert scores["ours"] == {"acc": 1.0, "nmi": 1.0, "ari": 1.0}
    assert scores["ours_notrain"] == {"acc": 1.0, "nmi": 1.0, "ari": 1.0}  # realigned by row
    assert scores["clip_kmeans"] == {"acc": round(1 / 3, 6), "nmi": 0.0, "ari": 0.0}
    assert scores["tac_notrain"]["acc"] == round(25 / 30, 6)
    assert scores["zeroshot"]["acc"] == 0.9
    for entry in scores.values():
        assert set(entry) == {"acc", "nmi", "ari"}  # flat: `dvc metrics diff` shows ours.acc
    fit = _read_json(labelled_run / "metrics/scores_fit.json")
    assert fit["ours"]["acc"] == 1.0 and fit["ours_notrain"]["acc"] == 0.95
    assert "zeroshot" not in fit
    assert scores["tac"]["acc"] == 1.0 and scores["scan"]["nmi"] == 0.0
    for path in EVALUATE_OUTPUTS:
        assert (labelled_run / path).exists(), path
    assert sorted(p.name for p in (labelled_run / "metrics/plots/gallery").iterdir()) == ["gallery_1.png"]
    internal = _read_json(labelled_run / "metrics/internal.json")
    assert set(internal) == set(scores)  # every method, label-free
    assert internal["ours"]["silhouette"] > 0.5 and internal["scan"]["silhouette"] is None  # one cluster
    assert internal["ours"]["size_entropy"] == 1.0 and internal["scan"]["n_empty"] == 2
    summary = _read_json(labelled_run / "metrics/summary.json")["headline"]
    assert summary["ours_acc"] == 1.0 and summary["ours_minus_clip_kmeans_acc"] == round(1 - 1 / 3, 6)


def test_diagnostics_pseudo_labels_and_neighbours(labelled_run):
    diag = _read_json(labelled_run / "metrics/diagnostics.json")
    assert diag["labelled"] is True and diag["n_fit"] == N_FIT and diag["n_eval"] == N_EVAL
    pseudo = diag["pseudo_labels"]
    # One matching (found on all samples) for every subset: the two mistakes are unreliable.
    assert pseudo["acc_all"] == 0.95 and pseudo["hungarian_acc_all"] == 0.95
    assert pseudo["acc_reliable"] == 1.0 and pseudo["n_reliable"] == 35
    assert pseudo["acc_unreliable"] == 0.6 and pseudo["n_unreliable"] == 5
    neighbors = diag["neighbors"]
    assert neighbors["k"] == 3 and neighbors["n_reliable"] == 35
    assert neighbors["fraction_reliable"] == round(35 / 40, 6)
    # Independent count: neighbours i+1..i+3 (mod N) of the same class.
    same = np.array([[Y_FIT[j] == Y_FIT[i] for j in KNN[i]] for i in range(N_FIT)], float)
    agree = np.array([[PSEUDO[j] == PSEUDO[i] for j in KNN[i]] for i in range(N_FIT)], float)
    assert neighbors["purity"] == pytest.approx(same.mean(), abs=1e-6)
    assert neighbors["pair_purity"] == pytest.approx(same[RELIABLE].mean(), abs=1e-6)
    assert neighbors["agreement"] == pytest.approx(agree.mean(), abs=1e-6)
    # Purity: k=50 >= N is dropped; CLIP features separate the classes, random C rows do not.
    assert list(diag["purity"]["clip"]) == ["k1", "k5", "k10"] and diag["purity_samples"] == N_FIT
    assert diag["purity"]["clip"]["k1"] == 1.0
    assert diag["purity"]["relation"]["k10"] < 0.7
    assert diag["zeroshot"] == {"available": True, "top1": 0.9}
    # ... but not silently: the diagnostics and the report say why.
    assert diag["notes"] == [
        "evaluate.purity_ks 50 left out of the purity curve: it is measured on 40 labelled fit image(s), "
        "so k can be at most 39; lower them, or add labelled fit images"]
    assert "- evaluate.purity_ks 50 left out" in (labelled_run / "metrics/report.md").read_text()

    purity_csv = pd.read_csv(labelled_run / "metrics/plots/purity.csv")
    assert list(purity_csv.columns) == ["k", "clip", "relation"] and list(purity_csv["k"]) == [1, 5, 10]
    assert purity_csv["clip"].tolist() == [diag["purity"]["clip"][f"k{k}"] for k in (1, 5, 10)]
    pseudo_csv = pd.read_csv(labelled_run / "metrics/plots/pseudo_accuracy.csv")
    assert list(pseudo_csv["subset"]) == ["all", "reliable", "unreliable"]
    assert list(pseudo_csv["n"]) == [40, 35, 5] and list(pseudo_csv["accuracy"]) == [0.95, 1.0, 0.6]


def test_confusion_csv_and_report(labelled_run):
    frame = pd.read_csv(labelled_run / "metrics/plots/confusion.csv")
    assert len(frame) == N_EVAL
    # ours is perfect after matching: every predicted class name equals the actual one.
    assert (frame["actual"] == frame["predicted"]).all()
    assert set(frame["actual"]) == set(CLASSES)
    # the confusion PNG's columns are named after the clusters: 'id name'
    from laic_core.scoring.evaluation import confusion_parts

    table, rows, cols, _ = confusion_parts(Y_EVAL, PRED_OURS, K, CLASSES, ["automobile", "kitten", "puppy"])
    assert rows == CLASSES and cols == ["1 kitten", "2 puppy", "0 automobile"]
    np.testing.assert_array_equal(table, np.diag([10, 10, 10]))
    # every cluster is a column, the empty ones too
    table, _, cols, _ = confusion_parts(Y_EVAL, PRED_OURS, 5, CLASSES, None)
    assert table.shape == (3, 5) and cols[3:] == ["3", "4"] and not table[:, 3:].any()
    report = (labelled_run / "metrics/report.md").read_text()
    assert "| ours | 100.0 | 100.0 | 100.0 |" in report
    assert "| CLIP k-means | 33.3 | 0.0 | 0.0 |" in report
    assert "| 0 | 10 | automobile | car | automobile, car | car |" in report  # names.json
    for png in ("confusion", "purity", "pseudo_accuracy", "training", "projection", "relation"):
        assert f"(plots/{png}.png)" in report
        assert (labelled_run / "metrics/plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # named after what was clustered (the image folder), not a leftover dataset.name ("toy")
    assert report.startswith("# LAIC run report: images\n") and "toy" not in report
    assert "## Scores (fit split)" not in report  # fit = eval: one table, not the same one twice
    assert "## Label-free scores" in report and "## Gallery" in report and "(plots/gallery/gallery_1.png)" in report
    # no clusters.yaml: nothing corrected, and the file exists all the same (a declared output)
    assert "## Corrections" not in report and "correction" not in report
    assert _read_json(labelled_run / "metrics/scores_corrected.json") == {}


def test_purity_ks_note_names_the_limit_and_the_fix():
    from laic_core.views.report import features_notes, purity_ks_note

    assert purity_ks_note([1, 5, 10], 40, 50000) is None
    assert purity_ks_note([1, 20, 50, 50], 10, 0).startswith("evaluate.purity_ks 20, 50 left out")
    sampled = purity_ks_note([1, 10], 100, 8)
    assert "measured on 8 labelled" in sampled and "k can be at most 7" in sampled
    assert "raise evaluate.purity_sample" in sampled
    notes = features_notes({"notes": ["2 image(s) lie directly in x"], "skipped": ["a.png"]}, "fit.parquet")
    assert notes == ["fit.parquet: 2 image(s) lie directly in x",
                     "fit.parquet: 1 unreadable image(s) skipped (embed.on_error: skip), not clustered: `a.png` "
                     "(all are listed under 'skipped' in its metadata)"]


def test_purity_curves_sample_and_drop_large_k():
    from laic_core.scoring.evaluation import purity_curves

    rng = np.random.default_rng(0)
    X = _clustered(Y_FIT, rng)
    labels = Y_FIT.copy()
    labels[:4] = -1  # unlabelled samples take no part
    full = purity_curves({"clip": X}, labels, [1, 5, 10, 50])
    assert list(full["clip"]) == ["k1", "k5", "k10"] and full["clip"]["k1"] == 1.0
    sampled = purity_curves({"clip": X, "same": X.copy()}, labels, [1, 5, 10], sample=6, seed=3)
    assert list(sampled["clip"]) == ["k1", "k5"]  # k=10 needs more than 6 samples
    assert sampled["clip"] == sampled["same"]  # one subset for every space
    assert sampled == purity_curves({"clip": X, "same": X.copy()}, labels, [1, 5, 10], sample=6, seed=3)
    assert purity_curves({"clip": X}, labels, [50]) == {}


def test_labels_of_treats_unknowns_as_no_labels():
    from laic_core.scoring.evaluation import labels_of

    assert labels_of(pd.DataFrame({"row": [0, 1]})) is None
    assert labels_of(pd.DataFrame({"row": [0, 1], "label": [-1, -1]})) is None
    np.testing.assert_array_equal(labels_of(pd.DataFrame({"label": [2.0, None]})), [2, -1])


def test_stale_assignment_is_reported(project):
    write_artifacts(project)
    save_parquet("data/centers/assign_eval.parquet", pd.DataFrame({
        "row": np.arange(N_EVAL - 1), "cluster": np.zeros(N_EVAL - 1, np.int64)}))
    with pytest.raises(LaicError, match=r"assign_eval.parquet.*dvc repro"):
        run_evaluate()


def test_without_labels_every_output_exists_and_scores_are_label_free(project):
    write_artifacts(project, labels=False)
    run_evaluate()
    from stages.layout import EVALUATE_OUTPUTS

    for path in EVALUATE_OUTPUTS:
        assert path.exists(), path
    scores = json.loads(Path("metrics/scores.json").read_text())
    assert list(scores) == ["clip_kmeans", "tac_notrain", "ours_notrain", "scan", "tac", "ours_init",
                            "ours"]  # no zeroshot
    assert scores["clip_kmeans"] == {"n": 30, "min_size": 0, "max_size": 30, "n_empty": 2, "size_entropy": 0.0}
    assert scores["ours"]["size_entropy"] == 1.0 and scores["ours"]["n_empty"] == 0
    diag = json.loads(Path("metrics/diagnostics.json").read_text())
    assert diag["labelled"] is False
    assert "purity" not in diag and "pseudo_labels" not in diag
    assert "purity" not in diag["neighbors"]
    assert diag["neighbors"]["n_reliable"] == 35 and 0 <= diag["neighbors"]["agreement"] <= 1
    for name, header in (("purity", ["k", "clip", "relation"]), ("pseudo_accuracy", ["subset", "accuracy", "n"]),
                         ("confusion", ["actual", "predicted"])):
        frame = pd.read_csv(f"metrics/plots/{name}.csv")
        assert list(frame.columns) == header and frame.empty
    report = Path("metrics/report.md").read_text()
    assert "No ground-truth labels" in report and "size entropy" in report


def test_mapped_accuracy_uses_one_matching_for_every_subset():
    from laic_core.scoring.evaluation import mapped_accuracy

    labels = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([5, 5, 7, 7, 7, 7])  # matching: 5 -> 0, 7 -> 1
    subset = np.array([False, False, True, False, False, False])
    out = mapped_accuracy(labels, pred, {"all": np.ones(6, bool), "one": subset, "none": np.zeros(6, bool)})
    # On its own the subset {2} would match 7 -> 0 and score 1.0; under the global matching it is wrong.
    assert out == {"acc_all": round(5 / 6, 6), "n_all": 6, "acc_one": 0.0, "n_one": 1,
                   "acc_none": None, "n_none": 0}


# ------------------------------------------------------------------ zeroshot


def _zeroshot_project(folder: Path, config: Path, class_names) -> np.ndarray:
    rng = np.random.default_rng(1)
    V = _unit(rng.normal(size=(11, 32)))
    save_npy(folder / "data/features/eval.npy", V)
    save_parquet(folder / "data/features/eval.parquet",
                 pd.DataFrame({"row": np.arange(11), "source": [f"{i}.png" for i in range(11)]}),
                 {"dataset": "toy", "class_names": class_names, "skipped": [],
                  **provenance_meta(str(config), "none", 32)})
    params = {"model": {"name": str(config), "pretrained": "none", "device": "cpu"},
              "vocab": {"templates": ["a photo of a {}.", "art of the {}."]}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return V


def test_zeroshot_assigns_each_image_to_the_nearest_class_ensemble(tmp_path, monkeypatch, tiny_config, tiny_bundle):
    from laic_core.text.encode import encode_nouns
    from laic_core.text.tower import TextTower
    from stages.zeroshot import main

    monkeypatch.chdir(tmp_path)
    V = _zeroshot_project(tmp_path, tiny_config, CLASSES)
    main(Path("params.yaml"))
    out = pd.read_parquet("data/zeroshot/assign_eval.parquet")
    assert list(out["row"]) == list(range(11))
    assert out["cluster"].between(0, 2).all()
    text = encode_nouns(tiny_bundle, TextTower(tiny_bundle.model), CLASSES,
                        ["a photo of a {}.", "art of the {}."])
    np.testing.assert_array_equal(out["cluster"].to_numpy(), np.argmax(V @ text.T, axis=1))
    meta = load_parquet_meta("data/zeroshot/assign_eval.parquet")
    assert meta["available"] is True and meta["class_names"] == CLASSES


def test_zeroshot_without_class_names_writes_an_empty_table(tmp_path, monkeypatch, tiny_config):
    from stages.zeroshot import main

    monkeypatch.chdir(tmp_path)
    _zeroshot_project(tmp_path, tiny_config, None)
    main(Path("params.yaml"))
    out = pd.read_parquet("data/zeroshot/assign_eval.parquet")
    assert len(out) == 0 and list(out.columns) == ["row", "cluster"]
    assert load_parquet_meta("data/zeroshot/assign_eval.parquet")["available"] is False


def test_zeroshot_and_evaluate_refuse_features_of_another_model(tmp_path, monkeypatch, tiny_config):
    from stages.zeroshot import main as zeroshot

    monkeypatch.chdir(tmp_path)
    _zeroshot_project(tmp_path, tiny_config, CLASSES)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["model"]["pretrained"] = str(tmp_path / "other.pt")
    torch.save({"w": torch.zeros(4)}, tmp_path / "other.pt")  # not the weights the features were made with
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(LaicError, match=r"eval.parquet was made with model .*laic-tiny-clip.json.* \(none\) but "
                                        r"params.yaml now says .*other.pt \[sha256 [0-9a-f]{12}\]"):
        zeroshot(Path("params.yaml"))


def test_evaluate_refuses_features_of_another_model(project):
    write_artifacts(project)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["model"]["name"] = "ViT-B-16"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(LaicError, match=r"fit.parquet was made with model ViT-B-32 \(none\) but params.yaml "
                                        r"now says model ViT-B-16 \(none\)"):
        run_evaluate()
    assert not Path("metrics/scores.json").exists()


# ------------------------------------------------------------------ what a user sees


def test_assignments_table_follows_the_feature_rows(labelled_run):
    table = pd.read_csv(labelled_run / "data/evaluate/assignments.csv")
    features = pd.read_parquet(labelled_run / "data/features/eval.parquet")
    assert table["row"].tolist() == list(range(N_EVAL))
    assert table["source"].tolist() == features["source"].tolist()
    assert table["label"].tolist() == Y_EVAL.tolist() and table["class"].tolist() == [CLASSES[c] for c in Y_EVAL]
    # every method's cluster, realigned by row (ours_notrain was stored shuffled); names and confidences
    assert table["ours_notrain"].tolist() == PRED_OURS_NOTRAIN.tolist()
    assert table["ours"].tolist() == PRED_OURS.tolist()
    assert table["ours_name"].tolist() == [["automobile", "kitten", "puppy"][k] for k in PRED_OURS]
    assert np.allclose(table["ours_confidence"], 0.9) and np.allclose(table["tac_confidence"], 0.8)
    expected = ["row", "source", "label", "class", "clip_kmeans", "tac_notrain", "ours_notrain", "scan",
                "scan_confidence", "tac", "tac_confidence", "ours_init", "ours", "ours_name", "ours_confidence",
                "zeroshot"]
    assert list(table.columns) == expected
    parquet = pd.read_parquet(labelled_run / "data/evaluate/assignments.parquet")
    assert list(parquet.columns) == expected and len(parquet) == N_EVAL


def test_unlabelled_folder_gets_a_gallery_and_a_report_without_label_columns(project):
    write_artifacts(project, labels=False)
    run_evaluate()
    table = pd.read_csv("data/evaluate/assignments.csv")
    assert "label" not in table.columns and "class" not in table.columns and len(table) == N_EVAL
    pages = sorted(Path("metrics/plots/gallery").glob("*.png"))
    assert [p.name for p in pages] == ["gallery_1.png"] and pages[0].read_bytes()[:4] == b"\x89PNG"
    report = Path("metrics/report.md").read_text()
    assert "(plots/gallery/gallery_1.png)" in report and "mostly:" not in report
    assert "## Label-free scores" in report


def test_skipped_files_are_counted_and_listed_in_the_report(project):
    write_artifacts(project)
    skipped = [f"images/broken_{i}.jpg" for i in range(23)]
    for role in ("fit", "eval"):
        path = Path(f"data/features/{role}.parquet")
        meta = load_parquet_meta(path)
        save_parquet(path, pd.read_parquet(path), {**meta, "skipped": skipped})
    run_evaluate()
    report = Path("metrics/report.md").read_text()
    assert "23 unreadable image(s) skipped" in report
    assert "`images/broken_0.jpg`" in report and "`images/broken_19.jpg`" in report
    assert "`images/broken_20.jpg`" not in report and "and 3 more" in report
    # fit = eval split: the same note once, not twice
    assert report.count("unreadable image(s) skipped") == 1


def test_a_single_class_run_says_its_scores_mean_nothing(project, capsys):
    """The probe: one labelled class, and SCAN's one cluster for everything reported 100/100/100."""
    write_artifacts(project)
    for role in ("fit", "eval"):
        path = project / "data" / "features" / f"{role}.parquet"
        meta = load_parquet_meta(path)
        table = pd.read_parquet(path).assign(label=0)
        save_parquet(path, table, meta)
    run_evaluate()
    scores = json.loads(Path("metrics/scores.json").read_text())
    assert scores["scan"]["acc"] == pytest.approx(1.0)  # what the note is about: 100%
    note = ("the labelled eval images hold one class (cat): ACC, NMI and ARI mean nothing with one class "
            "(a method that puts every image in one cluster scores 100)")
    assert note in capsys.readouterr().err
    assert any(note in n for n in json.loads(Path("metrics/diagnostics.json").read_text())["notes"])
    assert note in Path("metrics/report.md").read_text()
