"""Cluster gallery: member selection, thumbnails, figures (all offline, generated images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from laic_core.data.datasets import load_split
from laic_core.errors import LaicError
from laic_core.views.figures import save_figure
from laic_core.views.gallery import (cluster_entries, gallery_figures, gallery_members, load_thumbnails,
                               majority_lines, placeholder, source_loader, square_thumbnail)
from tests.conftest import make_image_tree

# ------------------------------------------------------------------ members


def test_members_most_confident_first_ties_by_row_then_distinct_random_extras():
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2])
    conf = np.array([0.5, 0.9, 0.9, 0.5, 0.1, 0.7, 0.2, 0.3, 0.1, 0.4, 0.6, 0.8])
    members = gallery_members(labels, conf, 4, n_confident=3, n_random=2, seed=1)
    assert members[0][:3] == [2, 5, 10]              # 0.9, 0.7, 0.6
    extras = members[0][3:]
    assert len(extras) == 2 == len(set(extras))
    assert set(extras) <= {0, 3, 6, 7, 8, 9}          # other members of cluster 0, never a confident one
    assert members[1] == [1, 4]                       # fewer members than asked: all of them, by confidence
    assert members[2] == [11]
    assert members[3] == []                           # empty cluster
    # ties by row: rows 0 and 3 both at 0.5
    assert gallery_members(labels, conf, 4, n_confident=6, n_random=0)[0] == [2, 5, 10, 0, 3, 9]


def test_members_random_extras_are_seeded_and_per_cluster():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 500)
    conf = rng.random(500)
    a = gallery_members(labels, conf, 5, seed=3)
    assert a == gallery_members(labels, conf, 5, seed=3)
    assert a != gallery_members(labels, conf, 5, seed=4)
    for k, rows in enumerate(a):
        assert len(rows) == 8 == len(set(rows))
        assert all(labels[r] == k for r in rows)
    # moving images between clusters 1 and 2 leaves cluster 0's picks unchanged
    moved = labels.copy()
    moved[moved == 2] = 1
    assert gallery_members(moved, conf, 5, seed=3)[0] == a[0]


def test_members_nan_confidence_ranks_last_and_bad_input_is_refused():
    members = gallery_members(np.array([0, 0, 0]), np.array([np.nan, 0.2, 0.1]), 1, n_random=0)
    assert members == [[1, 2, 0]]
    assert gallery_members(np.array([], dtype=np.int64), np.array([]), 2) == [[], []]
    assert gallery_members(np.array([-1, 0]), np.array([0.9, 0.1]), 1) == [[1]]  # unassigned: left out
    with pytest.raises(LaicError, match="out of range"):
        gallery_members(np.array([0, 3]), np.array([0.1, 0.2]), 3)
    with pytest.raises(LaicError, match="same length"):
        gallery_members(np.array([0, 1]), np.array([0.1]), 2)


# ------------------------------------------------------------------ thumbnails


def test_thumbnails_from_an_image_tree(tmp_path):
    root = make_image_tree(tmp_path / "images", classes=2, per_class=3, size=20)
    # an odd-shaped grayscale image and a wide panorama in a third class
    (root / "class_2").mkdir()
    Image.new("L", (40, 30), 128).save(root / "class_2" / "gray.png")
    Image.new("RGB", (90, 20), (255, 0, 0)).save(root / "class_2" / "wide.png")
    split = load_split("imagefolder", "", root, "all")
    thumbs = load_thumbnails(split.load_image, range(len(split)), size=32)
    assert len(thumbs) == len(split) == 8
    assert all(t.mode == "RGB" and t.size == (32, 32) for t in thumbs)
    # class colours survive: a thumbnail's mean colour is its source's mean colour
    src = np.asarray(split.load_image(0).convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
    assert np.allclose(np.asarray(thumbs[0], dtype=np.float64).mean(axis=(0, 1)), src, atol=6)
    wide = np.asarray(thumbs[split.sources().index(str(root / "class_2" / "wide.png"))])
    assert tuple(wide[16, 16]) == (255, 0, 0)               # the image sits in the middle,
    assert tuple(wide[0, 16]) == tuple(wide[31, 16]) != (255, 0, 0)  # letterboxed above and below


def test_a_failing_loader_gives_placeholders_not_exceptions(tmp_path):
    root = make_image_tree(tmp_path / "images", classes=1, per_class=2)
    (root / "class_0" / "broken.png").write_bytes(b"not an image")
    split = load_split("imagefolder", "", root, "all")

    def loader(i):
        if i == 99:
            raise RuntimeError("network share gone")
        return split.load_image(i)

    row = {Path(s).name: i for i, s in enumerate(split.sources())}
    rows = [row["img_0.png"], row["broken.png"], 99, row["img_1.png"]]
    thumbs = load_thumbnails(loader, rows, size=24)
    blank = np.asarray(placeholder(24))
    assert [np.array_equal(np.asarray(t), blank) for t in thumbs] == [False, True, True, False]
    assert blank[12, 12].tolist() != blank[1, 12].tolist()  # the "x" crosses the centre


def test_source_loader_reads_files_and_indexed_split_images(tmp_path):
    root = make_image_tree(tmp_path / "images", classes=2, per_class=2)
    split = load_split("imagefolder", "", root, "all")
    # embed skipped split image 1: feature rows 0, 1, 2 are split images 0, 2, 3
    sources = [split.source(0), split.source(2), split.source(3), str(tmp_path / "gone.png")]
    thumbs = load_thumbnails(source_loader(sources), [1, 3], size=20)
    expected = np.asarray(square_thumbnail(split.load_image(2), 20))
    assert np.array_equal(np.asarray(thumbs[0]), expected)
    assert np.array_equal(np.asarray(thumbs[1]), np.asarray(placeholder(20)))

    class Indexed:  # what a torchvision split looks like to the loader
        name = "cifar10:test"

        def load_image(self, i):
            return Image.new("RGB", (32, 32), (i, 0, 0))

    load = source_loader(["cifar10:test[7]", "cifar10:train[7]"], Indexed())
    assert load(0).getpixel((0, 0)) == (7, 0, 0)
    with pytest.raises(OSError):
        load(1)  # another split's image: not guessed


def test_square_thumbnail_crops_to_the_centre():
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    img.paste((0, 255, 0), (20, 0, 40, 40))  # green centre band, blue sides
    out = np.asarray(square_thumbnail(img, 20))
    assert out.shape == (20, 20, 3)
    assert tuple(out[10, 10]) == (0, 255, 0)


# ------------------------------------------------------------------ figures


def _clusters(k: int, thumbs: int = 8) -> list[dict]:
    rng = np.random.default_rng(0)
    tiles = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(thumbs)]
    out = []
    for i in range(k):
        empty = i % 7 == 3
        c = {"id": i, "name": "" if empty else f"noun {i}" + " with a much too long name" * 3 * (i == 5),
             "runner_ups": [] if empty else ["dog", "retriever", "puppy", "extraordinarily long noun " * 3],
             "size": 0 if empty else 10 * i + 1, "empty": empty,
             "thumbnails": [] if empty else tiles[: 1 + i % thumbs], "n_confident": 6}
        if i % 2:
            c["label"] = f"mostly: class {i} (80%)"
        out.append(c)
    return out


def test_gallery_pages_and_png(tmp_path):
    figs = gallery_figures(_clusters(60), per_page=25, title="test run")
    assert len(figs) == 3 and all(isinstance(f, Figure) for f in figs)
    assert len(gallery_figures(_clusters(25), per_page=25)) == 1
    assert len(gallery_figures(_clusters(26), per_page=25)) == 2
    paths = [save_figure(f, tmp_path / f"gallery_{i}.png") for i, f in enumerate(figs)]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as img:
            w, h = img.size
        assert 700 <= w <= 1400 and 300 <= h <= 2200   # about 9.5 x 13 in at 110 dpi for 20 rows
        assert 10_000 < len(data) < 4_000_000


def test_gallery_text_is_readable_and_stays_left_of_the_thumbnails():
    fig = gallery_figures(_clusters(20), per_page=25, title="a title")[0]
    renderer = fig.canvas.get_renderer()
    thumbs_left = fig.axes[0].get_window_extent(renderer).x0
    body = [t for t in fig.texts if t.get_position()[1] < 0.9]  # the rows, not the title lines
    assert len(body) > 40
    for text in fig.texts:
        assert text.get_fontsize() >= 8
    for text in body:
        assert text.get_window_extent(renderer).x1 <= thumbs_left, text.get_text()
    long_name = next(t.get_text() for t in body if t.get_text().startswith("5  "))
    assert long_name.endswith("\u2026")  # cut to fit, not spilling over the images


def test_gallery_draws_thumbnails_at_their_place_and_handles_edge_cases(tmp_path):
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    fig, = gallery_figures([{"id": 0, "name": "red", "runner_ups": [], "size": 1, "empty": False,
                             "thumbnails": [red]}], per_page=5)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    assert ((pixels == (255, 0, 0)).all(axis=-1)).sum() >= 60 * 60   # drawn 1:1, not shrunk
    # no clusters, odd thumbnail sizes, CMYK thumbnails: still a figure
    assert len(gallery_figures([])) == 1
    odd = {"id": 7, "name": "x", "runner_ups": ["y"], "size": 2, "empty": False,
           "thumbnails": [Image.new("CMYK", (30, 50)), Image.new("L", (200, 100))]}
    save_figure(gallery_figures([odd], thumb_px=48)[0], tmp_path / "odd.png")
    with pytest.raises(LaicError, match="lacks"):
        gallery_figures([{"id": 1}])


def _cjk_gallery(tmp_path):
    """A gallery whose cluster names and runner-up nouns are Chinese, Japanese and Korean, saved."""
    import warnings

    cluster = {"id": 0, "name": "猫", "runner_ups": ["子猫", "고양이"], "size": 3, "empty": False,
               "thumbnails": [Image.new("RGB", (64, 64))], "label": "mostly: 猫 (100%)"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_figure(gallery_figures([cluster], title="クラスタ")[0], tmp_path / "cjk.png")
    return [str(w.message) for w in caught]


def test_cjk_names_without_a_cjk_font_are_drawn_quietly(tmp_path, monkeypatch):
    """The probe: every CJK glyph of every figure warned "Glyph ... missing from font(s) DejaVu Sans"."""
    import matplotlib

    from laic_core.views import figures

    monkeypatch.setattr(figures, "cjk_fonts", lambda: ())  # a CI machine without fonts-noto-cjk
    with matplotlib.rc_context():
        assert _cjk_gallery(tmp_path) == []


def test_cjk_names_use_an_installed_cjk_font(tmp_path):
    import matplotlib
    from matplotlib import font_manager

    from laic_core.views.figures import cjk_fonts

    if not cjk_fonts():
        pytest.skip("no font with CJK glyphs installed (e.g. Debian's fonts-noto-cjk)")
    with matplotlib.rc_context():
        assert _cjk_gallery(tmp_path) == []
        used = font_manager.fontManager._find_fonts_by_props(font_manager.FontProperties())
        assert any(font_manager.get_font(path).family_name in cjk_fonts() for path in used)


# ------------------------------------------------------------------ entries


def test_cluster_entries_from_names_json_and_majority_lines():
    names = [
        {"cluster": 0, "size": 3, "empty": False, "name": "dog",
         "nearest_nouns": [{"noun": "dog", "cosine": 0.3}, {"noun": "puppy", "cosine": 0.2}],
         "member_nouns": [{"noun": "puppy", "weight": 0.1}, {"noun": "leash", "weight": 0.05},
                          {"noun": "collar", "weight": 0.04}, {"noun": "bone", "weight": 0.01}],
         "init_noun": "dog"},
        {"cluster": 1, "size": 0, "empty": True, "name": "", "nearest_nouns": [], "member_nouns": []},
    ]
    lines = majority_lines([0, 0, 0, 1], [2, 2, 1, -1], ["a", "b", "c"], 2)
    assert lines == ["mostly: c (67%)", ""]
    entries = cluster_entries(names, [[placeholder(8)], []], label_lines=lines, n_confident=6)
    assert [e["n_confident"] for e in entries] == [3, 0]
    assert entries[0]["runner_ups"] == ["puppy", "leash", "collar"]
    assert entries[0]["label"] == "mostly: c (67%)" and "label" not in entries[1]
    assert entries[1]["empty"] and entries[1]["thumbnails"] == []
    assert len(gallery_figures(entries)) == 1
    with pytest.raises(LaicError, match="thumbnail lists"):
        cluster_entries(names, [[]])


def test_names_with_dollars_are_drawn_as_typed_never_as_math(tmp_path):
    """The probes: "$5 and $10 bills" came out as "5*and*10 bills" (math italics); "price $\\frac$ tag" stopped
    evaluate with a mathtext error, and no gallery or report was written."""
    from matplotlib.text import Text

    from laic_core.views.figures import confusion_figure, message_figure

    name, broken = "$5 and $10 bills", "price $\\frac$ tag"
    fig, = gallery_figures([{"id": 0, "name": name, "runner_ups": [broken], "size": 3, "empty": False,
                             "thumbnails": [placeholder(8)], "label": "mostly: x $\\frac$ (80%)"},
                            {"id": 1, "name": broken, "runner_ups": [], "size": 2, "empty": False, "thumbnails": []}],
                           title="clusters of $HOME/photos")
    save_figure(fig, tmp_path / "gallery.png")
    matrix = confusion_figure(np.array([[3, 1], [0, 4]]), ["x $\\frac$", "cats"], [f"0 {name}", f"1 {broken}"],
                              title=f"ours on {broken}")
    save_figure(matrix, tmp_path / "confusion.png")
    save_figure(message_figure(f"no images in $\\frac$", broken), tmp_path / "message.png")
    for figure in (fig, matrix):
        renderer = figure.canvas.get_renderer()
        texts = [t for t in figure.findobj(Text) if "$" in t.get_text() and t.get_visible()]
        assert len(texts) >= 3 and any(name in t.get_text() for t in texts)
        for t in texts:
            assert not t.get_parse_math() and not t.get_usetex(), t.get_text()
            typed = renderer.get_text_width_height_descent(t.get_text(), t.get_fontproperties(), ismath=False)[0]
            if t.get_rotation() == 0:  # drawn as wide as the text as typed (math would drop the dollars)
                assert t.get_window_extent(renderer).width == pytest.approx(typed, rel=0.05, abs=2), t.get_text()
