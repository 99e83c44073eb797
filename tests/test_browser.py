"""The cluster browser: what it writes (fast), and what a real browser shows (headless Chromium, slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from laic_core.errors import LaicError
from laic_core.scoring.corrections import JUNK, parse_corrections
from laic_core.views.browser import (
    STRIP, MethodView, ThumbnailBudget, member_lists, n_to_check, source_links, thumbnail_depths, thumbnail_rows,
    write_browser,
)
from laic_core.views.gallery import source_loader
from tests.chromium import dom, needs_chromium, screenshot
from tests.conftest import make_image_tree


# ------------------------------------------------------------------ the array logic


def test_members_are_ordered_by_score_then_row_with_nan_last_and_junk_apart():
    labels = np.array([1, 0, 1, JUNK, 1, 0, JUNK])
    score = np.array([0.2, 0.9, np.nan, 0.5, 0.2, 0.95, 0.7])
    lists, junk = member_lists(labels, score, 3)
    assert [x.tolist() for x in lists] == [[5, 1], [0, 4, 2], []]
    assert junk.tolist() == [6, 3]


def test_thumbnails_go_to_the_strip_then_the_ones_to_check_then_the_rest():
    assert n_to_check(200, 24) == 24 and n_to_check(40, 24) == 10 and n_to_check(9, 24) == 1
    assert n_to_check(5, 24) == 0
    members = np.arange(100, 140)  # 40 members by score: 8 strip, 10 to check, 22 others
    depth = thumbnail_depths(members, 24)
    assert depth[:STRIP].tolist() == list(range(8))
    assert depth[-10:].tolist() == list(range(17, 7, -1))  # the least confident first
    assert depth[8:30].tolist() == list(range(18, 40))
    assert sorted(depth.tolist()) == list(range(40))


def test_the_budget_caps_each_cluster_and_the_total_shallowest_first():
    a, b = np.arange(0, 50), np.arange(50, 100)
    both = thumbnail_rows([a, b], 100, ThumbnailBudget(per_cluster=20, check=4, total=1000))
    assert both.size == 40
    assert set(a[:16]) | set(a[-4:]) <= set(both.tolist())  # 16 best and 4 to check (n_to_check(50) = 4... of 24)
    capped = thumbnail_rows([a, b], 100, ThumbnailBudget(per_cluster=20, check=4, total=16))
    assert sorted(capped.tolist()) == list(range(8)) + list(range(50, 58))  # each cluster's strip first
    # offsets: the opening method's strips first, then the others' strips beside its next members
    first = thumbnail_rows([a, b], 100, ThumbnailBudget(per_cluster=20, check=4, total=20), offsets=[0, STRIP])
    # a: its strip 0-7, then beside b's strip (8..13 = depth 8..13) its 4 to check (49..46) and 8, 9
    assert first.tolist() == list(range(10)) + [46, 47, 48, 49] + list(range(50, 56))
    # an image two methods show gets one thumbnail
    shared = thumbnail_rows([a, a[::-1].copy()], 100, ThumbnailBudget(per_cluster=8, check=0, total=1000))
    assert shared.tolist() == list(range(8)) + list(range(42, 50))
    with pytest.raises(LaicError, match="browser.check"):
        ThumbnailBudget(per_cluster=10, check=5)
    with pytest.raises(LaicError, match="browser.thumbnails_per_cluster"):
        ThumbnailBudget(per_cluster=4, check=0)


def test_source_links_are_relative_to_the_browser_folder():
    folders, index, names = source_links(["images/a b/x.png", "/abs/y.jpg", "cifar10:test[3]", "images/a b/z.png"])
    assert folders == [["images/a b", "../../images/a%20b/"], ["/abs", "file:///abs/"], ["", None]]
    assert index.tolist() == [0, 1, 2, 0] and names == ["x.png", "y.jpg", "cifar10:test[3]", "z.png"]


# ------------------------------------------------------------------ a browser on disk


K = 4
SIZES = [230, 40, 20, 10]  # cluster 0 spans three pages of 100


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A browser over 300 image files: ours (named, cluster 3 merged into 1 and 2 junk) and clip_kmeans."""
    root = tmp_path_factory.mktemp("browser")
    tree = make_image_tree(root / "images", classes=3, per_class=100, size=24)
    sources = sorted(str(p) for p in tree.rglob("*.png"))
    rng = np.random.default_rng(0)
    raw = rng.permutation(np.repeat(np.arange(K), SIZES))
    classes = np.array([int(Path(s).parent.name.split("_")[1]) for s in sources])
    fix = parse_corrections([{"merge": [1, 3]}, {"junk": 2}, {"rename": 0, "to": "big <one> & \"co\""}])["ours"]
    from laic_core.scoring.corrections import corrected_labels, corrected_names

    raw_names = ["zero", "one", "two", "three"]
    ours = MethodView("ours", "ours", corrected_labels(raw, fix, K), rng.random(300), "confidence", K,
                      corrected_names(raw_names, fix), raw_names=raw_names,
                      runner_ups=[[f"noun{k}a", f"noun{k}b"] for k in range(K)], corrections=fix,
                      glosses={"one": "the number after zero", "noun0a": "what noun0a means"}, run="k3f09a1c")
    kmeans = MethodView("clip_kmeans", "CLIP k-means", classes, rng.random(300), "similarity to the cluster mean", 3,
                        [""] * 3)
    out = root / "data" / "browser"
    stats = write_browser(out, [ours, kmeans], sources, load_image=source_loader(sources), classes=classes,
                          class_names=["red", "green", "blue"], budget=ThumbnailBudget(40, 8, 150, 48),
                          page_size=100, title="Test clusters", workers=2, progress=False, moved=MOVED)
    return out, stats, ours, kmeans, sources


def test_cards_carry_the_glosses_of_their_name_and_runner_ups(made):
    out = made[0]
    records = {r["id"]: r for r in _data(out, "clusters/ours")}
    assert records[1]["gloss"] == "the number after zero" and records[0]["gloss"] == ""  # renamed: no gloss
    assert records[0]["runner_up_glosses"] == ["what noun0a means", ""]
    assert "gloss" not in _data(out, "clusters/clip_kmeans")[0]  # a method without names has none


# what evaluate records of two lines written for an earlier run (laic_core.scoring.corrections.Outcome.record)
MOVED = [
    {"where": "line 4", "method": "ours", "line": '- {method: ours, rename: 3, to: "parachutes", run: g0aa1b2c}',
     "status": "carried", "ids": [0], "run": "g0aa1b2c",
     "detail": "3 \u2192 cluster 0: 88% of its images (57 of 65), 93% of cluster 0",
     "rewrite": '- {method: ours, rename: 0, to: "parachutes", run: k3f09a1c}'},
    {"where": "line 5", "method": "ours", "line": "- {method: ours, junk: 7, run: g0aa1b2c}", "status": "set aside",
     "ids": [], "run": "g0aa1b2c", "rewrite": "",
     "detail": "written for run g0aa1b2c: cluster 1 holds 54% of cluster 7's images, but they are only 35% of it: "
               "it is mostly other images"},
]


def _data(out: Path, key: str):
    text = (out / "data" / f"{key}.js").read_text(encoding="utf-8")
    match = re.fullmatch(r"LAIC\.put\((\"[^\"]+\"),(.*)\);\n", text, re.S)
    assert match and json.loads(match[1]) == key
    return json.loads(match[2])


def test_the_folder_holds_every_member_once_and_thumbnails_within_budget(made):
    out, stats, ours, kmeans, sources = made
    assert sorted(p.name for p in out.iterdir()) == ["browser.css", "browser.js", "cluster.html", "data", "index.html",
                                                     "thumbs"]
    cards = _data(out, "clusters/ours")
    assert [c["id"] for c in cards] == [0, 1, "junk"]  # 3 merged into 1, 2 junk: no cards of their own
    assert [c["size"] for c in cards] == [230, 50, 20] and cards[0]["name"] == 'big <one> & "co"'
    assert cards[1]["change"] == "merged with 3" and cards[0]["change"] == "renamed from 'zero'"
    seen = []
    for card in cards:
        members = _data(out, f"members/ours/{card['id']}")
        scores = members["score"]
        assert scores == sorted(scores, reverse=True) and len(members["rows"]) == card["size"]
        seen += members["rows"]
    assert sorted(seen) == list(range(300))
    kmeans_rows = sum((_data(out, f"members/clip_kmeans/{k}")["rows"] for k in range(3)), [])
    assert sorted(kmeans_rows) == list(range(300))
    thumbs = sorted(int(p.stem) for p in (out / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == stats["thumbnails"] == 150
    chunk = _data(out, "rows/0")
    assert [i for i, t in enumerate(chunk["thumb"]) if t == "1"] == thumbs  # the pages know which exist
    assert chunk["cluster"]["ours"] == ours.labels.tolist() and chunk["class"] == kmeans.labels.tolist()
    with Image.open(out / "thumbs" / "0" / f"{thumbs[0]}.jpg") as img:
        assert img.size == (48, 48)
    assert stats["bytes"] > stats["thumbnail_bytes"] > 0


def test_the_browse_stage_writes_every_method_of_the_table(tmp_path, monkeypatch):
    from stages.browse import main as browse
    from tests.test_evaluate import run_evaluate, write_artifacts, write_params

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    write_artifacts(tmp_path)
    Path("clusters.yaml").write_text("- {rename: 1, to: cats}\n")
    run_evaluate()
    browse(Path("params.yaml"))
    out = Path("data/browser")
    run = _data(out, "run")
    assert [m["name"] for m in run["methods"]][:2] == ["ours", "clip_kmeans"]  # ours opens first
    assert run["methods"][0]["score"] == "confidence"
    assert run["methods"][1]["score"] == "similarity to the cluster mean"  # k-means has no confidence
    assert [c["name"] for c in _data(out, "clusters/ours")] == ["automobile", "cats", "puppy"]
    # the sources are not files here: placeholders, and no link
    assert _data(out, "rows/0")["folders"] == [["", "../../"]]
    params = Path("params.yaml").read_text() + "browser:\n  methods: [scan, nope]\n"
    Path("params.yaml").write_text(params)
    with pytest.raises(LaicError, match=r"browser.methods: 'nope' not in .*assignments.parquet"):
        browse(Path("params.yaml"))


# ------------------------------------------------------------------ in a real browser


@pytest.mark.slow
@needs_chromium
def test_overview_in_chromium_shows_one_card_per_cluster_with_its_name(made, tmp_path):
    out, _, ours, _, _ = made
    root, console = dom((out / "index.html").as_uri())
    assert console == []
    cards = root.find_all("article", cls="card")
    assert [c.attrs["data-cluster"] for c in cards] == ["0", "1", "junk"]  # by size, junk last
    assert [c.find_all("span", cls="name")[0].text() for c in cards] == ['big <one> & "co"', "one", "junk"]
    first = cards[0]
    assert "230 images" in first.find_all("div", cls="meta")[0].text()
    assert first.find_all("div", cls="also")[0].text() == "also: noun0a, noun0b"
    assert first.find_all("span", cls="glossed")[0].attrs["title"] == "what noun0a means"  # a runner-up's gloss
    assert first.find_all("div", cls="gloss") == []  # a person's rename has no WordNet gloss
    assert cards[1].find_all("div", cls="gloss")[0].text() == "the number after zero"
    assert len(first.find_all("img")) == STRIP and "red" in first.find_all("div", cls="mixtext")[0].text()
    # the line to paste names the run it was written for
    assert first.find_all("code", cls="paste")[0].text() == ('- {method: ours, rename: 0, to: "big <one> & \\"co\\"", '
                                                             'run: k3f09a1c}')
    # the notice: the lines written for another run, carried or set aside
    notice = root.find_all("section", id="moved")[0]
    assert "hidden" not in notice.attrs
    head = notice.find_all("h2")[0]  # (Node.text() puts a node's own text before its children's)
    assert head.find_all("code")[0].text() == "clusters.yaml"
    assert "".join(head.text_parts) == ": 1 line carried to this run's clusters, 1 line set aside (not applied)"
    (carried,), (aside,) = notice.find_all("li", cls="carried"), notice.find_all("li", cls="aside")
    assert [c.text() for c in carried.find_all("code")] == [MOVED[0]["line"], MOVED[0]["rewrite"]]
    assert carried.find_all("strong")[0].text() == "carried"
    assert ": 3 \u2192 cluster 0: 88% of its images (57 of 65), 93% of cluster 0" in carried.text()
    assert aside.find_all("strong")[0].text() == "set aside" and "only 35% of it" in aside.text()
    assert len(aside.find_all("code", cls="paste")) == 0  # nothing to paste: a person decides
    for img in root.find_all("img"):
        assert (out / img.attrs["src"]).is_file()
    # the switch between methods, and the comparison with another
    root, console = dom((out / "index.html").as_uri() + "#m=clip_kmeans&c=ours&sort=id")
    assert console == []
    cards = root.find_all("article", cls="card")
    assert [c.attrs["data-cluster"] for c in cards] == ["0", "1", "2"]
    assert all(c.find_all("div", cls="overlap")[0].text().startswith("in ours: ") for c in cards)
    assert screenshot((out / "index.html").as_uri(), tmp_path / "overview.png") == []
    assert (tmp_path / "overview.png").stat().st_size > 20_000  # cards and thumbnails, not a blank page


@pytest.mark.slow
@needs_chromium
def test_a_cluster_page_lists_all_members_over_its_pages_and_marks_the_ones_to_check(made, tmp_path):
    out, _, ours, _, sources = made
    members = _data(out, "members/ours/0")["rows"]
    listed = []
    for page in (1, 2, 3):
        root, console = dom((out / "cluster.html").as_uri() + f"#m=ours&k=0&c=clip_kmeans&p={page}")
        assert console == []
        grid = root.find_all("div", id="grid")[0]
        rows = [int(f.attrs["data-row"]) for f in grid.find_all("figure", cls="member")]
        assert len(rows) == (100 if page < 3 else 30)
        listed += rows
        assert f"page {page} of 3" in root.find_all("nav", id="pages-top")[0].text()
        check = root.find_all("div", id="check-grid")[0].find_all("figure", cls="tocheck")
        assert [int(f.attrs["data-row"]) for f in check] == members[::-1][:n_to_check(230, 8)]
        for tile in grid.find_all("figure", cls="member"):
            link = tile.find_all("a", cls="src")[0]
            assert Path(unquote(urlparse(link.attrs["href"]).path)).is_file()  # the source file itself
            assert "\u2192" in tile.find_all("span", cls="other")[0].text()  # its cluster in clip_kmeans
        for img in root.find_all("img"):
            assert (out / img.attrs["src"]).is_file()
    assert listed == members  # every member, most confident first, once
    head, console = dom((out / "cluster.html").as_uri() + "#m=ours&k=1")
    assert console == [] and head.find_all("div", cls="gloss")[0].text() == "the number after zero"
    head, _ = dom((out / "cluster.html").as_uri() + "#m=ours&k=0")
    assert [d.text() for d in head.find_all("div", cls="also-noun")] == ["noun0a \u2013 what noun0a means", "noun0b"]
    junk, console = dom((out / "cluster.html").as_uri() + "#m=ours&k=junk")
    assert console == [] and len(junk.find_all("figure", cls="member")) == 20 + n_to_check(20, 8)
    gone, console = dom((out / "cluster.html").as_uri() + "#m=ours&k=3")  # merged into 1
    assert "no cluster 3 of ours" in gone.find_all("p", cls="error")[0].text()
    assert console == ["no cluster 3 of ours (merged away, or not in this run)"]
    assert screenshot((out / "cluster.html").as_uri() + "#m=ours&k=1", tmp_path / "cluster.png") == []
