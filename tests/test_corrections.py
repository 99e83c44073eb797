"""A person's corrections (clusters.yaml): parsing, checking, applying, and the stages that honour them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from laic_core.errors import LaicError
import yaml

from laic_core.scoring.corrections import (
    APPLIED, CARRIED, JUNK, SET_ASIDE, Corrections, Partition, as_partition, carry, corrected_labels,
    corrected_names, corrections_record, fingerprint, parse_corrections, parse_lines, read_corrections, resolve,
    sources_digest,
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
        parse_corrections(*_read(path))
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
        parse_corrections(*_read(path))
    path.write_text("- {rename: 3, to: [unclosed\n")
    with pytest.raises(LaicError, match=r"not valid YAML"):
        parse_corrections(*_read(path))


def _read(path: Path) -> tuple:
    raw, lines = read_corrections(path)
    return raw, str(path), lines


def test_a_file_is_checked_against_the_run():
    def run(entries, n=10, labels=None):
        labels = np.arange(n) if labels is None else labels
        return resolve(_lines(*entries), {"ours": Partition.of("gaaaaaaa", labels, n)}, {})

    # ids or a method the run does not have: set aside (the line may be another run's), never an error
    res = run([{"rename": 12, "to": "x"}, {"junk": 10}, {"method": "scan", "junk": 0}])
    assert [o.status for o in res.outcomes] == [SET_ASIDE] * 3 and res.corrections == {}
    assert [o.detail for o in res.outcomes] == ["this run has no cluster 12 (it has 0..9)",
                                                "this run has no cluster 10 (it has 0..9)",
                                                "scan has no clusters in this run (it has ours)"]
    # merging everything leaves one cluster, which is fine; junking what is left leaves none
    assert run([{"merge": [0, 1, 2]}], 3).corrections == {"ours": Corrections(merge={1: 0, 2: 0})}
    with pytest.raises(LaicError, match=r"ours: the merges and junk leave no cluster \(of 3\)"):
        run([{"junk": [0, 1, 2]}], 3)
    with pytest.raises(LaicError, match=r"both junk and in the merge"):  # junk cannot undo a merge's last cluster
        parse_corrections([{"merge": [0, 1, 2]}, {"junk": 0}])
    # clusters that hold no image do not count as left
    with pytest.raises(LaicError, match=r"leave no cluster"):
        run([{"junk": [0, 1]}], 3, labels=np.array([0, 0, 1, 1]))


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
    Path("clusters.yaml").write_text("- {rename: 1, to: x}\n- {merge: [0, 1]}\n- {method: ourz, junk: 0}\n")
    with pytest.raises(LaicError, match=r"(?s)clusters.yaml has 2 problem.*line 3: unknown method 'ourz'.*"
                                        r"line 1: cluster 1 of ours is renamed, but merged into 0 on line 2"):
        run_evaluate()
    assert not Path("metrics/scores.json").exists()


def test_evaluate_sets_aside_ids_the_run_does_not_have_and_goes_on(evaluated, capsys):
    # the K-change probe: ids of a run with more clusters stopped every experiment
    Path("clusters.yaml").write_text("- {rename: 7, to: x}\n- {method: zeroshot, merge: [0, 9]}\n- {junk: 2}\n")
    run_evaluate()
    said = capsys.readouterr().out
    assert "evaluate: clusters.yaml: 2 lines set aside" in said
    assert 'line 1: - {method: ours, rename: 7, to: "x"} set aside: this run has no cluster 7 (it has 0..2)' in said
    assert "line 2: - {method: zeroshot, merge: [0, 9]} set aside: this run has no cluster 9 (it has 0..2)" in said
    table = pd.read_parquet("data/evaluate/assignments.parquet")
    assert table["ours_corrected"].tolist() == np.where(PRED_OURS == 2, JUNK, PRED_OURS).tolist()  # line 3 applied
    assert "zeroshot_corrected" not in table.columns and "x" not in set(table["ours_name"])
    assert set(json.loads(Path("metrics/scores_corrected.json").read_text())) == {"ours"}
    report = Path("metrics/report.md").read_text()
    assert '- line 1 `- {method: ours, rename: 7, to: "x"}` **set aside**: this run has no cluster 7' in report


# ------------------------------------------------------------------ reading: the probes


def test_a_file_that_is_not_utf8_is_one_clear_error(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_bytes('# corrections\n- {rename: 3, to: "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(LaicError, match=r"^.*clusters.yaml is not UTF-8 text \(byte 0xe9 on line 2\); save it as "
                                        r"UTF-8") as err:
        read_corrections(path)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    path.write_bytes(b"\xef\xbb\xbf- {rename: 3, to: x}\n")  # UTF-8 with a byte-order mark is fine
    assert parse_corrections(read_corrections(path)[0]) == {"ours": Corrections({3: "x"})}


def test_a_folder_in_place_of_the_file_is_an_error_not_no_corrections(tmp_path):
    (tmp_path / "clusters.yaml").mkdir()
    with pytest.raises(LaicError, match=r"clusters.yaml is a folder; it should be the file of corrections"):
        read_corrections(tmp_path / "clusters.yaml")


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_text("- {rename: 1, to: a}\n- {rename: 3, to: a, to: b}\n- {junk: 2, junk: 4}\n- {junk: [x]}\n")
    raw, lines = read_corrections(path)
    with pytest.raises(LaicError) as err:
        parse_corrections(raw, str(path), lines)
    message = str(err.value)
    assert "has 3 problem(s)" in message
    assert "line 2: gives `to` 2 times ('a', 'b'); YAML would keep only the last, so write each key once" in message
    assert "line 3: gives `junk` 2 times ('2', '4')" in message and "line 4: junk takes a cluster id" in message


# ------------------------------------------------------------------ lines bound to runs


def test_a_fingerprint_names_one_partition_and_reads_back_from_yaml_as_text():
    digest = sources_digest([f"img_{i}.png" for i in range(6)])
    labels = np.array([0, 0, 1, 1, 2, 2])
    run = fingerprint(labels, digest)
    assert len(run) == 8 and run[0].isalpha() and not run[0] in "abcdef"
    assert fingerprint(labels.copy(), digest) == run
    assert fingerprint((labels + 1) % 3, digest) != run  # the same groups under other ids: another run
    assert fingerprint(labels, sources_digest([f"img_{i}.png" for i in range(1, 7)])) != run
    for i in range(300):  # never a number, a date or a boolean to YAML
        r = fingerprint(np.array([i]), digest)
        assert yaml.safe_load(f"{{run: {r}}}") == {"run": r}


def test_a_cluster_carries_only_to_a_cluster_that_holds_most_of_it_and_is_mostly_it():
    old = Partition.of("old", np.repeat([0, 1, 2, 3], 10))
    new = np.repeat([5, 1, 0, 2], 10)
    new[30:33] = 5  # 3 of old 3's ten go to 5
    m = carry(old, new, 6, [0, 3])
    assert (m[0].best, m[0].clear, m[0].share, m[0].purity) == (5, True, 1.0, pytest.approx(13 / 13))
    assert m[0].text() == "0 \u2192 cluster 5: 100% of its images (10 of 10), 100% of cluster 5"
    assert (m[1].best, m[1].count, m[1].clear) == (2, 7, True)
    assert m[1].text() == "3 \u2192 cluster 2: 70% of its images (7 of 10), 100% of cluster 2"
    # the parachutes probe: the cluster that holds most of old 1 is mostly other images
    new2 = np.repeat([0, 0, 1, 2], 10)
    new2[10:14] = 3  # old 1: six in 0 (with old 0's ten), four in 3
    (m1,) = carry(old, new2, 4, [1])
    assert m1.best == 0 and m1.share == pytest.approx(0.6) and m1.purity == pytest.approx(6 / 16) and not m1.clear
    assert m1.text() == ("cluster 0 holds 60% of cluster 1's images, but they are only 38% of it: it is mostly "
                         "other images")
    # split evenly: no cluster holds most of it
    new3 = np.repeat([0, 1, 2, 3], 10)
    new3[10:15] = 4
    (m2,) = carry(old, new3, 5, [1])
    assert not m2.clear and m2.text() == ("cluster 1's 10 images are split (50% in 1, 50% in 4): no cluster holds "
                                          "most of them")
    # images gone since count against the share: 6 of 10 left, all in one cluster, is not most of them
    gone = Partition("old", np.r_[np.repeat([0, 1], 10)[:16], -np.ones(4, int)], np.array([10, 10]))
    (m3,) = carry(gone, np.repeat([0, 1], [10, 10]), 2, [1])
    assert m3.count == 6 and m3.share == pytest.approx(0.6) and m3.clear
    (m4,) = carry(Partition("old", -np.ones(20, int), np.array([10, 10])), np.zeros(20, int), 1, [1])
    assert not m4.clear and m4.text() == "none of cluster 1's 10 images is in this run"


def _lines(*entries) -> list:
    return parse_lines(list(entries), "clusters.yaml", list(range(1, len(entries) + 1)))


OLD = np.repeat([0, 1, 2, 3], 10)  # four clusters of ten images


def test_lines_of_this_run_apply_as_written():
    now = {"ours": Partition.of("gaaaaaaa", OLD)}
    lines = _lines({"rename": 3, "to": "dogs"}, {"merge": [1, 2], "run": "gaaaaaaa"}, {"junk": 0})
    res = resolve(lines, now, {})
    assert res.corrections == parse_corrections([{"rename": 3, "to": "dogs"}, {"merge": [1, 2]}, {"junk": 0}])
    assert [o.status for o in res.outcomes] == [APPLIED] * 3 and res.summary() == ""
    # lines without a run are bound to the run they were first seen at
    assert res.bindings == {"ours rename 3": ["gaaaaaaa"], "ours junk 0": ["gaaaaaaa"]}


def test_after_a_seed_change_each_line_is_carried_or_set_aside_never_misapplied():
    old = Partition.of("gold0000", OLD)
    new = np.repeat([2, 0, 3, 1], 10)  # the same groups under other ids ...
    new[20:26] = 0  # ... but old 2 now split: 6 in 0 (with old 1's ten), 4 in 3
    now = {"ours": Partition.of("gnew0000", new)}
    lines = _lines({"rename": 0, "to": "parachutes", "run": "gold0000"}, {"junk": 2, "run": "gold0000"},
                   {"merge": [3, 1], "run": "gold0000"}, {"rename": 2, "to": "cats", "run": "gnot0000"})
    res = resolve(lines, now, {"gold0000": old})
    assert [o.status for o in res.outcomes] == [CARRIED, SET_ASIDE, CARRIED, SET_ASIDE]
    assert res.outcomes[0].ids == (2,) and res.outcomes[0].rewrite == (
        '- {method: ours, rename: 2, to: "parachutes", run: gnew0000}')
    assert res.outcomes[0].detail == "0 \u2192 cluster 2: 100% of its images (10 of 10), 100% of cluster 2"
    assert "only 38% of it" in res.outcomes[1].detail and res.outcomes[1].ids == ()
    # old 1 went to 0, which holds 6 of old 2's as well: still mostly old 1's (10 of 16)
    assert res.outcomes[2].ids == (1, 0) and res.outcomes[2].detail.endswith("1 \u2192 cluster 0: 100% of its "
                                                                             "images (10 of 10), 62% of cluster 0")
    assert res.outcomes[3].detail.startswith("written for run gnot0000, which this project does not keep")
    assert res.corrections == {"ours": Corrections({2: "parachutes"}, {0: 1})}
    assert res.summary() == "2 lines carried to this run's clusters, 2 set aside"


def test_a_merge_is_carried_member_by_member_and_collapses_when_the_run_already_joined_them():
    old = Partition.of("gold0000", OLD)
    new = np.repeat([1, 0, 0, 2], 10)  # old 1 and 2 are one cluster now (0); old 0 is 1, old 3 is 2
    now = {"ours": Partition.of("gnew0000", new)}
    res = resolve(_lines({"merge": [1, 2], "run": "gold0000"}, {"merge": [3, 0], "run": "gold0000"},
                         {"junk": [1, 2], "run": "gold0001"}), now, {"gold0000": old, "gold0001": old})
    both, moved, junk = res.outcomes
    assert both.status == CARRIED and both.ids == () and both.detail.endswith("already one cluster here, nothing "
                                                                              "to merge")
    assert moved.status == CARRIED and moved.ids == (2, 1)
    assert moved.rewrite.startswith("- {method: ours, merge: [2, 1]")
    # junk [1, 2] (of another run) -> 0, a cluster of old 1's and 2's images only: carried; the merge of line 1
    # did nothing here, so nothing clashes
    assert junk.status == CARRIED and junk.ids == (0,)
    assert res.corrections == {"ours": Corrections(merge={1: 2}, junk=frozenset({0}))}


def test_after_a_k_change_lines_are_carried_from_the_run_they_were_first_seen_at():
    first = {"ours": Partition.of("gold0000", OLD)}
    lines = _lines({"rename": 3, "to": "dogs"}, {"junk": 2})
    res = resolve(lines, first, {})
    assert res.bindings == {"ours rename 3": ["gold0000"], "ours junk 2": ["gold0000"]}
    new = np.repeat([0, 0, 2, 1], 10)  # K 4 -> 3: old 0 and 1 joined; old 3 is now 1, old 2 is 2
    later = resolve(lines, {"ours": Partition.of("gnew0000", new, 3)}, {"gold0000": Partition.of("gold0000", OLD)},
                    res.bindings)
    assert [o.status for o in later.outcomes] == [CARRIED, CARRIED]
    assert later.corrections == {"ours": Corrections({1: "dogs"}, junk=frozenset({2}))}
    assert later.bindings == res.bindings  # still bound to the run they were written for
    # the same file with an id the new run lacks, and no record of the old run: set aside, not an error
    gone = resolve(_lines({"rename": 3, "to": "dogs"}), {"ours": Partition.of("gnew0000", new, 3)}, {})
    assert gone.outcomes[0].status == SET_ASIDE and gone.bindings == {"ours rename 3": [None]}
    # a second line of the same key is a new line, bound to the run it first appears at
    again = resolve(_lines({"rename": 3, "to": "dogs"}, {"rename": 3, "to": "cats"}),
                    {"ours": Partition.of("gnew0001", np.repeat([0, 1, 2, 3], 10))},
                    {"gold0000": Partition.of("gold0000", OLD)}, res.bindings)
    assert again.bindings["ours rename 3"] == ["gold0000", "gnew0001"]


def test_a_carried_line_that_clashes_with_a_line_of_this_run_is_set_aside():
    old = Partition.of("gold0000", OLD)
    now = {"ours": Partition.of("gnew0000", np.repeat([1, 0, 2, 3], 10))}
    res = resolve(_lines({"rename": 1, "to": "mine", "run": "gnew0000"}, {"rename": 0, "to": "old", "run": "gold0000"},
                         {"junk": 2, "run": "gold0001"}), now, {"gold0000": old, "gold0001": old})
    applied, clash, junk = res.outcomes
    assert applied.status == APPLIED and clash.status == SET_ASIDE and junk.status == CARRIED
    assert clash.detail.endswith("but there it clashes with another line: cluster 1 of ours is renamed twice")
    assert res.corrections == {"ours": Corrections({1: "mine"}, junk=frozenset({2}))}
    # junking every cluster of this run, carried, would leave none: set aside, the run goes on
    res = resolve(_lines({"rename": 2, "to": "mine"}, {"junk": [0, 1, 3], "run": "gold0001"},
                         {"junk": 2, "run": "gold0000"}), now, {"gold0000": old, "gold0001": old})
    assert [o.status for o in res.outcomes] == [APPLIED, CARRIED, SET_ASIDE]
    assert res.outcomes[2].detail.endswith("cluster 2 of ours is both junk and renamed; keep one of the two")
    res = resolve(_lines({"junk": [0, 1, 3], "run": "gold0001"}, {"junk": 2, "run": "gold0000"}), now,
                  {"gold0000": old, "gold0001": old})
    assert [o.status for o in res.outcomes] == [SET_ASIDE, SET_ASIDE]
    assert res.outcomes[1].detail.endswith("but with it no cluster of this run would be left")
    assert res.corrections == {}
    # lines written for one run that contradict one another are a malformed file, whatever the run
    with pytest.raises(LaicError, match=r"line 2: cluster 0 of ours \(run gold0000\) is renamed twice"):
        resolve(_lines({"rename": 0, "to": "a", "run": "gold0000"}, {"rename": 0, "to": "b", "run": "gold0000"}),
                now, {"gold0000": old})
    with pytest.raises(LaicError, match=r"ours: the merges and junk leave no cluster \(of 4\)"):
        resolve(_lines({"junk": [0, 1, 2, 3]}), now, {})


# ------------------------------------------------------------------ the stages, when the clusters change


def _recluster(labels: np.ndarray) -> None:
    """The centers stage again, with other clusters (another seed): ours' eval assignment replaced."""
    from laic_core.artifacts import save_parquet

    save_parquet("data/centers/assign_eval.parquet", pd.DataFrame({
        "row": np.arange(len(labels)), "cluster": labels.astype(np.int64),
        "confidence": np.full(len(labels), 0.9, np.float32), "init_cluster": np.zeros(len(labels), np.int64)}))


def _meta() -> dict:
    from laic_core.artifacts import load_parquet_meta

    return load_parquet_meta("data/evaluate/assignments.parquet")


def test_after_the_clusters_change_evaluate_browse_and_export_carry_or_set_aside_each_line(evaluated, capsys):
    from stages.browse import main as browse
    from stages.export import main as export
    from tests.test_browser import _data

    # ours: cluster 0 holds class 2 (automobile), 1 class 0 (kitten), 2 class 1 (puppy)
    run_evaluate()
    first = _meta()["partitions"]["ours"]
    # a line the browser suggested (with the run) and one written by hand (bound to the run it is first seen at)
    Path("clusters.yaml").write_text(f'- {{method: ours, rename: 1, to: "cats", run: {first}}}\n- {{junk: 2}}\n')
    run_evaluate()
    assert "carried" not in capsys.readouterr().out  # the same clusters: applied as written, nothing said
    table = pd.read_parquet("data/evaluate/assignments.parquet")
    assert table["ours_corrected"].tolist() == np.where(PRED_OURS == 2, JUNK, PRED_OURS).tolist()
    assert [o["status"] for o in _meta()["resolution"]] == ["applied", "applied"]

    # another seed: class c in cluster c, and six of class 1's ten (old cluster 2, junk) joined cluster 0
    new = Y_EVAL.copy()
    new[10:16] = 0
    _recluster(new)
    run_evaluate()
    said = capsys.readouterr().out
    second = _meta()["partitions"]["ours"]
    assert second != first
    assert "evaluate: clusters.yaml: 1 line carried to this run's clusters, 1 set aside" in said
    assert (f'line 1: - {{method: ours, rename: 1, to: "cats", run: {first}}} carried: 1 \u2192 cluster 0: 100% of '
            "its images (10 of 10), 62% of cluster 0") in said
    assert f'for this run write it as: - {{method: ours, rename: 0, to: "cats", run: {second}}}' in said
    assert ("line 2: - {method: ours, junk: 2} set aside: first seen at run " + first + ": cluster 0 holds 60% of "
            "cluster 2's images, but they are only 38% of it") in said
    table = pd.read_parquet("data/evaluate/assignments.parquet")
    assert table["ours_corrected"].tolist() == new.tolist()  # nothing junk: the line was set aside
    assert set(table.loc[table["ours"] == 0, "ours_name"]) == {"cats"}
    fixed = json.loads(Path("metrics/scores_corrected.json").read_text())
    assert fixed["ours"]["n_junk"] == 0 and fixed["ours"]["clusters"] == 3
    report = Path("metrics/report.md").read_text()
    assert "Lines written for other clusters than this run's" in report
    assert (f"- line 2 `- {{method: ours, junk: 2}}` **set aside**: first seen at run {first}: cluster 0 holds 60%"
            in report)
    assert f'for this run write it as `- {{method: ours, rename: 0, to: "cats", run: {second}}}`' in report

    # the browser: the fingerprint in the lines it suggests, and the notice of the overview
    browse(Path("params.yaml"))
    run = _data(Path("data/browser"), "run")
    assert run["methods"][0]["run"] == second
    assert [(o["where"], o["status"]) for o in run["moved"]] == [("line 1", "carried"), ("line 2", "set aside")]
    assert [c["name"] for c in _data(Path("data/browser"), "clusters/ours")][0] == "cats"

    # export lays out what the table shows, and says which lines were carried or set aside
    for s in table["source"]:
        Path(s).write_bytes(b"")
    capsys.readouterr()
    export(Path("out"), "ours", "symlink", False, Path("params.yaml"))
    listed = pd.read_csv("out/clusters.csv")
    assert listed["cluster"].tolist() == new.tolist()
    assert ("export: 1 line(s) of clusters.yaml about ours carried from another run, 1 set aside and not applied "
            "(line 2); metrics/report.md says why") in capsys.readouterr().err

    # K changes (a K the suggestion of choose_k gives): the lines are carried or set aside, the run goes on
    _recluster(np.where(Y_EVAL == 0, 0, 1))
    run_evaluate()
    outcome = {o["where"]: o for o in _meta()["resolution"]}
    assert outcome["line 1"]["status"] == "carried" and outcome["line 1"]["ids"] == [0]
    assert outcome["line 2"]["status"] == "set aside"
    # the hand-written line stays bound to the run it was first seen at
    store = _store_meta()
    assert store["bindings"] == {"ours junk 2": [first]}
    assert first in store["runs"] and second in store["runs"]


def _store_meta() -> dict:
    from laic_core.artifacts import load_parquet_meta

    return load_parquet_meta("data/evaluate/partitions.parquet")


def test_the_kept_partitions_are_the_ones_lines_name_and_the_last_two(tmp_path, monkeypatch):
    from stages.corrections import resolve_run, save_store

    monkeypatch.chdir(tmp_path)
    sources = [f"img_{i}.png" for i in range(30)]
    rng = np.random.default_rng(1)
    runs = []
    for i in range(4):
        labels = PRED_OURS if i == 0 else rng.permutation(PRED_OURS)
        if i == 3:  # the fourth run has other images: five gone, five new
            sources = sources[5:] + [f"new_{j}.png" for j in range(5)]
        fixes = resolve_run(sources, {"ours": labels, "scan": np.zeros(30, int)}, {"ours": 3, "scan": 3})
        save_store(fixes.store)
        runs.append(fixes.current["ours"].run)
        if i == 0:
            Path("clusters.yaml").write_text(f"- {{rename: 1, to: cats, run: {runs[0]}}}\n")
        else:
            assert fixes.resolution.outcomes[0].status in ("carried", "set aside")
    kept = _store_meta()
    ours = [r for r, v in kept["runs"].items() if v["method"] == "ours"]
    assert sorted(ours) == sorted([runs[0], runs[2], runs[3]])  # the line's run and the last two
    assert kept["recent"]["ours"][:2] == [runs[3], runs[2]]
    assert len([r for r, v in kept["runs"].items() if v["method"] == "scan"]) == 2  # scan's two runs differ in images
    table = pd.read_parquet("data/evaluate/partitions.parquet")
    assert len(table) == 35 and table["source"].tolist()[:30] == sources  # this run's images first
    assert (table[runs[3]].to_numpy()[30:] == -1).all() and (table[runs[0]].to_numpy()[-5:] >= 0).all()


def test_names_that_look_like_math_are_drawn_as_typed_by_evaluate(evaluated):
    """The probe: a rename `price $\\frac$ tag` (or a class folder `x $\\frac$`) stopped evaluate with a
    matplotlib mathtext traceback, and the report and the gallery were gone."""
    from laic_core.artifacts import load_parquet_meta, save_parquet

    for role in ("fit", "eval"):
        path = Path(f"data/features/{role}.parquet")
        meta = load_parquet_meta(path)
        save_parquet(path, pd.read_parquet(path), {**meta, "class_names": ["x $\\frac$", "dog", "$5 and $10 bills"]})
    Path("clusters.yaml").write_text('- {rename: 1, to: "price $\\\\frac$ tag"}\n'
                                     '- {rename: 2, to: "$5 and $10 bills"}\n')
    run_evaluate()
    assert sorted(p.name for p in Path("metrics/plots/gallery").iterdir()) == ["gallery_1.png"]
    assert Path("metrics/plots/confusion.png").stat().st_size > 5_000
    report = Path("metrics/report.md").read_text()
    # in the Markdown too, as typed: no renderer takes the dollars for math
    assert ("1 renamed 'kitten' \u2192 'price \\$\\frac\\$ tag'; 2 renamed 'puppy' \u2192 '\\$5 and \\$10 bills'"
            in report)
    table = pd.read_parquet("data/evaluate/assignments.parquet")
    assert set(table.loc[table["ours"] == 1, "ours_name"]) == {"price $\\frac$ tag"}


def test_a_line_is_carried_from_a_partition_another_method_has_now(tmp_path, monkeypatch):
    """Methods that cluster alike share a fingerprint: the run a line of ours was written for may be scan's now
    (on the tiny random model, every method put every image in one cluster)."""
    from stages.corrections import resolve_run, save_store

    monkeypatch.chdir(tmp_path)
    sources = [f"img_{i}.png" for i in range(40)]
    first = resolve_run(sources, {"ours": OLD}, {"ours": 4})
    save_store(first.store)
    Path("clusters.yaml").write_text(f"- {{rename: 1, to: cats, run: {first.current['ours'].run}}}\n- {{junk: 2}}\n")
    save_store(resolve_run(sources, {"ours": OLD}, {"ours": 4}).store)  # binds the junk line to this run
    now = resolve_run(sources, {"ours": np.repeat([3, 2, 1, 0], 10), "scan": OLD}, {"ours": 4, "scan": 4})
    assert [o.status for o in now.resolution.outcomes] == [CARRIED, CARRIED]
    assert now.corrections == {"ours": Corrections({2: "cats"}, junk=frozenset({1}))}
