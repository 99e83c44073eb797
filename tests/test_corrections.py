"""A person's corrections (clusters.yaml): parsing, checking, applying, and the stages that honour them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from laic_core.errors import LaicError
from laic_core.scoring.corrections import (
    JUNK, Corrections, as_partition, check_corrections, corrected_labels, corrected_names, corrections_record,
    load_corrections, parse_corrections, read_corrections,
)
from laic_core.scoring.evaluation import corrected_scores
from tests.test_evaluate import PRED_OURS, Y_EVAL, run_evaluate, write_artifacts, write_params

FILE = """# comments and blank lines are fine

- {method: ours, rename: 3, to: "golden retriever"}
- {merge: [2, 5, 6]}
- {method: clip_kmeans, junk: [0, 1]}
- {rename: 2, to: 42}
"""


def test_a_file_of_one_line_per_correction_parses_with_ours_as_the_default(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_text(FILE)
    raw, lines = read_corrections(path)
    assert lines == [3, 4, 5, 6]
    parsed = parse_corrections(raw, str(path), lines)
    assert parsed == {"ours": Corrections({3: "golden retriever", 2: "42"}, {5: 2, 6: 2}),
                      "clip_kmeans": Corrections(junk=frozenset({0, 1}))}
    # a missing file, or one of comments only, corrects nothing
    assert read_corrections(tmp_path / "absent.yaml") == (None, [])
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert parse_corrections(*read_corrections(tmp_path / "empty.yaml")) == {}


def test_every_problem_of_a_file_is_named_in_one_error_with_its_line(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_text("- {method: ourz, junk: 1}\n"         # line 1: unknown method
                    "- {rename: 5, to: cats}\n"            # 2: 5 is merged away on line 3
                    "- {merge: [2, 5]}\n"
                    "- {merge: [5, 6]}\n"                  # 4: 5 already merged
                    "- {junk: 2}\n"                        # 5: 2 is a merge's target
                    "- {rename: 1}\n"                      # 6: no new name
                    "- {merge: [4]}\n"                     # 7: one id
                    "- {junk: -3}\n"                       # 8: negative id
                    "- {rename: 8, to: x, junk: 8}\n"      # 9: two actions
                    "- {colour: red}\n")                   # 10: unknown key
    with pytest.raises(LaicError) as err:
        load_corrections(path, {"ours": 10})
    message = str(err.value)
    assert "has 9 problem(s)" in message
    for expected in ("line 1: unknown method 'ourz' (the methods are clip_kmeans",
                     "line 2: cluster 5 of ours is renamed, but merged into 2 on line 3; rename 2",
                     "line 4: cluster(s) 5 of ours already in the merge on line 3",
                     "line 5: cluster 2 of ours is both junk and in the merge on line 3",
                     "line 6: rename 1 needs `to: <new name>`", "line 7: merge takes a list of two or more",
                     "line 8: junk takes a cluster id", "line 9: give exactly one of rename, merge, junk",
                     "line 10: unknown key(s) colour"):
        assert expected in message
    path.write_text("rename: 3\n")
    with pytest.raises(LaicError, match=r"must be a list of corrections, one per line"):
        load_corrections(path, {"ours": 10})
    path.write_text("- {rename: 3, to: [unclosed\n")
    with pytest.raises(LaicError, match=r"not valid YAML"):
        load_corrections(path, {"ours": 10})


def test_a_file_is_checked_against_the_run():
    with pytest.raises(LaicError, match=r"ours: unknown cluster id\(s\) 10, 12: the run has clusters 0\.\.9"):
        check_corrections(parse_corrections([{"rename": 12, "to": "x"}, {"junk": 10}]), {"ours": 10})
    with pytest.raises(LaicError, match=r"method 'scan' has no clusters in this run \(it has ours\)"):
        check_corrections(parse_corrections([{"method": "scan", "junk": 0}]), {"ours": 10})
    # merging everything leaves one cluster, which is fine; junking what is left leaves none
    check_corrections(parse_corrections([{"merge": [0, 1, 2]}]), {"ours": 3})
    with pytest.raises(LaicError, match=r"ours: the merges and junk leave no cluster \(of 3\)"):
        check_corrections(parse_corrections([{"junk": [0, 1, 2]}]), {"ours": 3})
    with pytest.raises(LaicError, match=r"both junk and in the merge"):  # junk cannot undo a merge's last cluster
        parse_corrections([{"merge": [0, 1, 2]}, {"junk": 0}])
    # with the labels, clusters that hold no image do not count as left
    labels = {"ours": np.array([0, 0, 1, 1])}
    with pytest.raises(LaicError, match=r"leave no cluster"):
        check_corrections(parse_corrections([{"junk": [0, 1]}]), {"ours": 3}, labels=labels)
    check_corrections(parse_corrections([{"junk": [0, 1]}]), {"ours": 3})  # without them, 2 is left


def test_merges_keep_the_first_id_and_junk_becomes_minus_one():
    corr = parse_corrections([{"merge": [4, 1]}, {"junk": 2}, {"rename": 4, "to": "dogs"}])["ours"]
    labels = np.array([0, 1, 2, 3, 4, -1])
    assert corrected_labels(labels, corr, 5).tolist() == [0, 4, JUNK, 3, 4, -1]
    assert corrected_names(["a", "b", "c", "d", "e"], corr) == ["a", "dogs", "junk", "d", "dogs"]
    assert as_partition([0, 4, JUNK, 3], 5).tolist() == [0, 4, 5, 3]
    with pytest.raises(LaicError, match="out of range"):
        corrected_labels([0, 7], corr, 5)
    assert Corrections.from_record(corr.record()) == corr
    assert corrections_record({"ours": corr, "scan": Corrections()}) == {"ours": corr.record()}


def test_corrected_scores_merge_a_split_class_and_count_junk_as_a_group():
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    raw = np.array([0, 0, 1, 1, 2, 2, 2, 3])  # class 0 split in two; one image of class 1 alone
    fix = corrected_labels(raw, parse_corrections([{"merge": [0, 1]}, {"junk": 3}])["ours"], 4)
    scores = corrected_scores({"ours": raw}, {"ours": fix}, truth, {"ours": 4})["ours"]
    assert scores["clusters_raw"] == 4 and scores["clusters"] == 2 and scores["n_junk"] == 1
    # 0+1 -> class 0 (4 right), 2 -> class 1 (3 right), the junk image is a group of its own: 7/8
    assert scores["acc"] == pytest.approx(7 / 8)
    assert corrected_scores({"ours": raw}, {"ours": fix}, None, {"ours": 4})["ours"] == {
        "clusters_raw": 4, "clusters": 2, "n_junk": 1}


# ------------------------------------------------------------------ the stages


@pytest.fixture
def evaluated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    write_artifacts(tmp_path)
    return tmp_path


def test_evaluate_applies_the_corrections_to_the_table_scores_gallery_and_report(evaluated):
    # ours: cluster k holds class (k - 1) % 3 (PRED_OURS); names automobile, kitten, puppy
    Path("clusters.yaml").write_text('- {rename: 1, to: "cats & kittens"}\n- {merge: [0, 2]}\n'
                                     "- {method: tac, junk: 2}\n")
    run_evaluate()
    table = pd.read_parquet("data/evaluate/assignments.parquet")
    assert table["ours"].tolist() == PRED_OURS.tolist()  # the raw clusters stay
    assert table["ours_corrected"].tolist() == np.where(PRED_OURS == 2, 0, PRED_OURS).tolist()
    assert set(table.loc[table["ours"] == 1, "ours_name"]) == {"cats & kittens"}
    assert set(table.loc[table["ours"].isin([0, 2]), "ours_name"]) == {"automobile"}
    assert table["tac_corrected"].tolist() == np.where(Y_EVAL == 2, JUNK, Y_EVAL).tolist()
    assert set(table.loc[table["tac"] == 2, "tac_name"]) == {"junk"}
    assert "clip_kmeans_corrected" not in table.columns  # uncorrected methods keep one column
    csv = pd.read_csv("data/evaluate/assignments.csv")
    assert list(csv.columns) == list(table.columns)
    scores = json.loads(Path("metrics/scores.json").read_text())
    fixed = json.loads(Path("metrics/scores_corrected.json").read_text())
    assert scores["ours"]["acc"] == 1.0 and fixed["ours"]["acc"] == pytest.approx(20 / 30)
    assert fixed["ours"]["clusters"] == 2 and fixed["tac"]["n_junk"] == 10
    report = Path("metrics/report.md").read_text()
    assert "## Corrections (clusters.yaml)" in report
    assert "| ours | 3 → 2 | 0 | 100.0 → 66.7 |" in report
    assert "- ours: 1 renamed 'kitten' → 'cats & kittens'; 2 merged into 0" in report and "- TAC: junk: 2" in report
    assert "merged into 0" in report.split("## Clusters")[1]  # the clusters table says what became of 2


def test_evaluate_stops_on_a_bad_corrections_file_before_any_work(evaluated):
    Path("clusters.yaml").write_text("- {rename: 7, to: x}\n- {method: zeroshot, merge: [0, 9]}\n")
    with pytest.raises(LaicError, match=r"(?s)clusters.yaml has 2 problem.*ours: unknown cluster id\(s\) 7.*"
                                        r"zeroshot: unknown cluster id\(s\) 9"):
        run_evaluate()
    assert not Path("metrics/scores.json").exists()
